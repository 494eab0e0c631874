package redis

import (
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sightline-io/sightline/agent/capture"
	"github.com/sightline-io/sightline/agent/l7"
)

// BenchmarkParseRedis parses a pipeline of 50 GET/SET pairs per write and
// their 100 replies per read, as a pipelining client produces them.
func BenchmarkParseRedis(b *testing.B) {
	p := newParser(false)
	reqs := strings.Repeat("*3\r\n$3\r\nSET\r\n$10\r\nuser:12345\r\n$16\r\n0123456789abcdef\r\n"+
		"*2\r\n$3\r\nGET\r\n$10\r\nuser:12345\r\n", 50)
	reps := strings.Repeat("+OK\r\n$16\r\n0123456789abcdef\r\n", 50)
	reqSeg := &capture.Segment{Dir: capture.AtoB, Data: []byte(reqs), Len: len(reqs)}
	respSeg := &capture.Segment{Dir: capture.BtoA, Data: []byte(reps), Len: len(reps)}
	var n int
	emit := func(*l7.Message) { n++ }
	b.SetBytes(int64(len(reqs) + len(reps)))
	b.ReportAllocs()
	cpu0 := processCPU(b)
	for b.Loop() {
		p.Feed(reqSeg, emit)
		p.Feed(respSeg, emit)
	}
	cpu := processCPU(b) - cpu0
	if n != 200*b.N {
		b.Fatalf("parsed %d messages, want %d", n, 200*b.N)
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
