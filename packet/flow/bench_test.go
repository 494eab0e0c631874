package flow

import (
	"encoding/binary"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/sightline-io/sightline/flowlog"
	"github.com/sightline-io/sightline/packet/decode"
)

// mixedTraffic builds an interleaved packet sequence of n connections: 80%
// TCP (handshake, three request/response turns, one retransmission in every
// tenth, FIN close) and 20% UDP request/response pairs.
func mixedTraffic(n int) []decode.Packet {
	var conns [][]decode.Packet
	for i := range n {
		c := netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)})
		s := netip.AddrFrom4([4]byte{10, 2, 0, byte(i % 7)})
		cp := uint16(32768 + i%20000)
		mk := func(fromCli bool, l4, flags uint8, seq, ack uint32, n int) decode.Packet {
			p := decode.Packet{Src: c, Dst: s, SrcPort: cp, DstPort: 443, L4: l4, TTL: 64, Seq: seq, Ack: ack, Flags: flags, Window: 5000, WireLen: n}
			if !fromCli {
				p.Src, p.Dst, p.SrcPort, p.DstPort, p.TTL = s, c, 443, cp, 60
			}
			return p
		}
		var seq []decode.Packet
		if i%5 == 4 {
			seq = append(seq, mk(true, 17, 0, 0, 0, 60), mk(false, 17, 0, 0, 0, 300))
		} else {
			cs, ss := uint32(i*7919), uint32(i*104729)
			seq = append(seq, mk(true, 6, fS, cs, 0, 0), mk(false, 6, fSA, ss, cs+1, 0), mk(true, 6, fA, cs+1, ss+1, 0))
			cs, ss = cs+1, ss+1
			for turn := range 3 {
				seq = append(seq, mk(true, 6, fPA, cs, ss, 200))
				if turn == 1 && i%10 == 0 {
					seq = append(seq, mk(true, 6, fPA, cs, ss, 200))
				}
				cs += 200
				seq = append(seq, mk(false, 6, fPA, ss, cs, 1400), mk(true, 6, fA, cs, ss+1400, 0))
				ss += 1400
			}
			seq = append(seq, mk(true, 6, fFA, cs, ss, 0), mk(false, 6, fFA, ss, cs+1, 0), mk(true, 6, fA, cs+1, ss+1, 0))
		}
		conns = append(conns, seq)
	}
	var out []decode.Packet
	for k := 0; ; k++ {
		added := false
		for _, c := range conns {
			if k < len(c) {
				out = append(out, c[k])
				added = true
			}
		}
		if !added {
			return out
		}
	}
}

func BenchmarkFlowTable(b *testing.B) {
	pkts := mixedTraffic(2000)
	tab := New(Config{}, func(*flowlog.L4FlowLog) {})
	ts := t0
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		ts = ts.Add(20 * time.Microsecond)
		tab.Packet(&pkts[i%len(pkts)], ts, 1454)
		if i&4095 == 0 {
			tab.Tick(ts)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "packets/s")
}

// flowMemory returns the heap bytes per flow held by a table of n flows.
func flowMemory(n int) float64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	tab := New(Config{MaxFlows: n}, nil)
	var p decode.Packet
	for i := range n {
		var a [4]byte
		binary.BigEndian.PutUint32(a[:], 0x0a000000+uint32(i>>4))
		p = decode.Packet{Src: netip.AddrFrom4(a), Dst: netip.AddrFrom4([4]byte{10, 255, 0, 1}),
			SrcPort: uint16(40000 + i&15), DstPort: 80, L4: 6, Flags: fS, TTL: 64, Window: 100}
		tab.Packet(&p, t0, 74)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if tab.Len() != n {
		return -1
	}
	runtime.KeepAlive(tab)
	return float64(after.HeapAlloc-before.HeapAlloc) / float64(n)
}

func TestFlowMemory(t *testing.T) {
	per := flowMemory(100_000)
	t.Logf("100000 concurrent flows: %.0f bytes per flow", per)
	if per <= 0 || per > 1024 {
		t.Fatalf("bytes per flow = %.0f, want (0, 1024]", per)
	}
}

func BenchmarkFlowMemory(b *testing.B) {
	var per float64
	for range b.N {
		per = flowMemory(100_000)
	}
	b.ReportMetric(per, "bytes/flow")
}

func TestSteadyStateAllocs(t *testing.T) {
	pkts := mixedTraffic(500)
	tab := New(Config{}, func(*flowlog.L4FlowLog) {})
	ts := t0
	run := func() {
		for i := range pkts {
			ts = ts.Add(20 * time.Microsecond)
			tab.Packet(&pkts[i], ts, 1454)
		}
		ts = ts.Add(10 * time.Second)
		tab.Tick(ts)
	}
	run() // warm the map and the slab
	if a := testing.AllocsPerRun(5, run); a > 0 {
		t.Errorf("%.1f allocations per pass of %d packets", a, len(pkts))
	}
}
