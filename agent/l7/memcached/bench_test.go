package memcached

import (
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sightline-io/sightline/agent/capture"
	"github.com/sightline-io/sightline/agent/l7"
)

// BenchmarkParseMemcached parses text set/get exchanges, one segment per
// command and per reply, as gomemcache produces them.
func BenchmarkParseMemcached(b *testing.B) {
	value := strings.Repeat("x", 64)
	exchanges := []string{
		"set session:12345 0 300 64\r\n" + value + "\r\n", "STORED\r\n",
		"get session:12345\r\n", "VALUE session:12345 0 64\r\n" + value + "\r\nEND\r\n",
	}
	var segs []*capture.Segment
	var size int
	for i, s := range exchanges {
		segs = append(segs, &capture.Segment{Dir: capture.Direction(i & 1), Data: []byte(s), Len: len(s)})
		size += len(s)
	}
	benchSegments(b, segs, size)
}

// BenchmarkParseMemcachedBinary parses binary get exchanges.
func BenchmarkParseMemcachedBinary(b *testing.B) {
	reqs := frame(magicRequest, 0x00, 0, 1, "", "session:12345", "")
	reps := frame(magicResponse, 0x00, 0, 1, "\x00\x00\x00\x00", "", strings.Repeat("x", 64))
	segs := []*capture.Segment{
		{Dir: capture.AtoB, Data: []byte(reqs), Len: len(reqs)},
		{Dir: capture.BtoA, Data: []byte(reps), Len: len(reps)},
	}
	benchSegments(b, segs, len(reqs)+len(reps))
}

func benchSegments(b *testing.B, segs []*capture.Segment, size int) {
	p := newParser()
	var n int
	emit := func(*l7.Message) { n++ }
	b.SetBytes(int64(size))
	b.ReportAllocs()
	cpu0 := processCPU(b)
	for b.Loop() {
		for _, s := range segs {
			p.Feed(s, emit)
		}
	}
	cpu := processCPU(b) - cpu0
	if n != len(segs)*b.N {
		b.Fatalf("parsed %d messages, want %d", n, len(segs)*b.N)
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "msgs/s")
	if cpu > 0 {
		b.ReportMetric(float64(n)/cpu.Seconds(), "msgs/cpu-s")
	}
}

func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
