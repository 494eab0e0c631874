package afpacket

import (
	"context"
	"errors"
	"net"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestOpenBadConfig(t *testing.T) {
	requireRoot(t)
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"unknown interface", Config{Interfaces: []string{"lo", "nosuchif0"}}, `interface "nosuchif0"`},
		{"block not page multiple", Config{Interfaces: []string{"lo"}, BlockSize: 5000}, "not a multiple of the page size"},
		{"snaplen over block", Config{Interfaces: []string{"lo"}, BlockSize: 4096, SnapLen: 4096}, "does not fit"},
		{"ring too large", Config{Interfaces: []string{"lo"}, BlockSize: 1 << 20, NumBlocks: 1 << 14}, "too large"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Open(tc.cfg)
			if err == nil {
				c.Close()
				t.Fatalf("Open succeeded, want error containing %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestCloseDuringRun(t *testing.T) {
	requireRoot(t)
	c, err := Open(Config{Interfaces: []string{"lo"}, PollTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- c.Run(context.Background(), func(*Frame) {}) }()
	time.Sleep(100 * time.Millisecond) // let Run reach poll
	start := time.Now()
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, ErrClosed) {
			t.Errorf("Run returned %v, want ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after Close")
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Close took %v despite a 10 s poll timeout", d)
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := c.Run(context.Background(), func(*Frame) {}); !errors.Is(err, ErrClosed) {
		t.Errorf("Run after Close: %v", err)
	}
}

func TestCancelAndTick(t *testing.T) {
	requireRoot(t)
	c, err := Open(Config{Interfaces: []string{"lo"}, PollTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithCancel(context.Background())
	ticks := 0
	errc := make(chan error, 1)
	go func() {
		errc <- c.RunTick(ctx, func(*Frame) {}, 20*time.Millisecond, func(time.Time) { ticks++ })
	}()
	time.Sleep(300 * time.Millisecond)
	if err := c.Run(ctx, func(*Frame) {}); err == nil || !strings.Contains(err.Error(), "already") {
		t.Errorf("second Run: %v", err)
	}
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Run returned %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	if ticks < 5 {
		t.Errorf("%d ticks in 300 ms at a 20 ms period", ticks)
	}
}

// TestRescan opens all interfaces and sees a new veth appear and go away.
func TestRescan(t *testing.T) {
	requireRoot(t)
	c, err := Open(Config{Rescan: 100 * time.Millisecond, NumBlocks: 2, BlockSize: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if !slices.Contains(c.Interfaces(), "lo") {
		t.Fatalf("default interfaces %v lack lo", c.Interfaces())
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = c.Run(ctx, func(*Frame) {}) }()

	id := uniqueName("")
	a, b := "afr"+id, "afs"+id
	run(t, "ip", "link", "add", a, "type", "veth", "peer", "name", b)
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", a).Run() })
	run(t, "ip", "link", "set", a, "up")
	run(t, "ip", "link", "set", b, "up")
	waitUntil(t, "new veth captured", func() bool { return slices.Contains(c.Interfaces(), a) })
	run(t, "ip", "link", "del", a)
	waitUntil(t, "deleted veth dropped", func() bool {
		ifs := c.Interfaces()
		return !slices.Contains(ifs, a) && !slices.Contains(ifs, b)
	})
	st := c.Stats()
	if st.Opened < 3 || st.Closed < 2 {
		t.Errorf("opened %d closed %d", st.Opened, st.Closed)
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestSlowConsumerDropsBounded floods loopback while the callback is slow:
// the ring fills, the kernel drops (counted in Stats), and memory stays
// bounded by the ring.
func TestSlowConsumerDropsBounded(t *testing.T) {
	requireRoot(t)
	c, err := Open(Config{Interfaces: []string{"lo"}, Filter: true, BlockSize: 64 << 10, NumBlocks: 4, BlockTimeout: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	port := uint16(pc.LocalAddr().(*net.UDPAddr).Port)
	var frames, payload atomic.Uint64
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	stop := captureLoop(c, port, &frames, &payload, 2*time.Millisecond)

	conn, err := net.Dial("udp4", pc.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	msg := make([]byte, 512)
	end := time.Now().Add(1500 * time.Millisecond)
	sent := 0
	for time.Now().Before(end) {
		for range 64 {
			_, _ = conn.Write(msg)
			sent++
		}
		var buf [1024]byte
		_ = pc.SetReadDeadline(time.Now().Add(time.Millisecond))
		for {
			if _, _, err := pc.ReadFrom(buf[:]); err != nil {
				break
			}
		}
	}
	stop()
	st := c.Stats()
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	t.Logf("sent %d, captured %d of ours, stats %+v", sent, frames.Load(), st.IfaceStats)
	if st.Drops == 0 {
		t.Errorf("no kernel drops counted with a slow consumer (sent %d, captured %d)", sent, frames.Load())
	}
	if frames.Load() >= uint64(sent) {
		t.Errorf("captured %d of %d despite drops", frames.Load(), sent)
	}
	if grow := int64(after.HeapInuse) - int64(before.HeapInuse); grow > 8<<20 {
		t.Errorf("heap grew by %d bytes", grow)
	}
}
