package main

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"time"

	"github.com/sightline-io/sightline/flowlog"
	"github.com/sightline-io/sightline/internal/testcapture"
	"github.com/sightline-io/sightline/packet/decode"
	"github.com/sightline-io/sightline/packet/flow"
)

// p7: the flow table. Packets per CPU-second of `sightline replay --table
// l4_flow_log` (decode + flow table, no L7) on a generated capture, and
// heap bytes per flow with 100K concurrent flows.
func (b *bench) p7(ctx context.Context) error {
	dir, err := os.MkdirTemp("", "sightline-bench-p7")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "http.pcap")
	if err := testcapture.WriteHTTP(path, 2000, 50); err != nil {
		return fmt.Errorf("generate capture: %w", err)
	}
	var cpus []float64
	var frames, rows int
	for range b.rounds {
		cmd := exec.CommandContext(ctx, b.bin, "replay", "--table", "l4_flow_log", "--stats", path)
		var lc lineCounter
		cmd.Stdout = &lc
		var errOut lineCapture
		cmd.Stderr = &errOut
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("replay: %w: %s", err, errOut.b)
		}
		st := cmd.ProcessState
		cpus = append(cpus, (st.UserTime() + st.SystemTime()).Seconds())
		rows = lc.n
		frames = errOut.frames()
	}
	cpu := median(cpus)
	fmt.Printf("P7 flow table: replay --table l4_flow_log of %d frames (2000 HTTP connections): %d rows, CPU %.2fs (median of %d) = %.0f packets/s per core (decode + flow table, file reading included)\n",
		frames, rows, cpu, b.rounds, float64(frames)/cpu)

	// Memory per flow: 100K concurrent TCP flows (handshake seen, open).
	const n = 100000
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	tab := flow.New(flow.Config{MaxFlows: 2 * n}, func(*flowlog.L4FlowLog) {})
	now := time.Now()
	var p decode.Packet
	for i := range n {
		p = decode.Packet{
			Src: netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), Dst: netip.AddrFrom4([4]byte{10, 255, 0, 1}),
			SrcPort: uint16(30000 + i%30000), DstPort: 80, L4: 6, Flags: decode.FlagSYN, Seq: uint32(i), Window: 65535, TTL: 64,
		}
		tab.Packet(&p, now, 74)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	fmt.Printf("P7 flow table memory: %d concurrent flows held in %.1f MB of heap = %.0f bytes per flow\n",
		tab.Len(), float64(after.HeapAlloc-before.HeapAlloc)/1e6, float64(after.HeapAlloc-before.HeapAlloc)/float64(tab.Len()))
	runtime.KeepAlive(tab)
	return nil
}

// lineCapture keeps stderr and finds replay's frame count in its --stats line.
type lineCapture struct{ b []byte }

func (l *lineCapture) Write(p []byte) (int, error) {
	if len(l.b) < 1<<16 {
		l.b = append(l.b, p...)
	}
	return len(p), nil
}

func (l *lineCapture) frames() int {
	var n int
	// The --stats line is a %+v of replay.Stats: "{Format:pcap Frames:123 ...".
	for i := 0; i+7 < len(l.b); i++ {
		if string(l.b[i:i+7]) == "Frames:" {
			fmt.Sscanf(string(l.b[i+7:]), "%d", &n)
			break
		}
	}
	return n
}
