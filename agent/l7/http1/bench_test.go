package http1

import (
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sightline-io/sightline/agent/capture"
	"github.com/sightline-io/sightline/agent/l7"
)

// BenchmarkParseRequestResponse parses small keep-alive request/response
// pairs on one connection, one segment per message.
func BenchmarkParseRequestResponse(b *testing.B) {
	p := New().NewParser()
	reqSeg := &capture.Segment{Dir: capture.AtoB, Data: []byte(curlGet), Len: len(curlGet)}
	respSeg := &capture.Segment{Dir: capture.BtoA, Data: []byte(nginxOK), Len: len(nginxOK)}
	var n int
	emit := func(*l7.Message) { n++ }
	b.SetBytes(int64(len(curlGet) + len(nginxOK)))
	b.ReportAllocs()
	cpu0 := processCPU(b)
	for b.Loop() {
		p.Feed(reqSeg, emit)
		p.Feed(respSeg, emit)
	}
	cpu := processCPU(b) - cpu0
	if n != 2*b.N {
		b.Fatalf("parsed %d messages, want %d", n, 2*b.N)
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "msgs/s")
	// On a shared machine wall time overstates the cost; process CPU time
	// (including GC) per message is the per-core figure.
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

// BenchmarkParseChunkedSplit parses a chunked response delivered in small
// segments, the slow path through the byte-level state machine.
func BenchmarkParseChunkedSplit(b *testing.B) {
	p := New().NewParser()
	body := goChunkedHead + strings.Repeat("10\r\n0123456789abcdef\r\n", 20) + "0\r\n\r\n"
	var segs []*capture.Segment
	for s := body; len(s) > 0; {
		n := min(len(s), 37)
		segs = append(segs, &capture.Segment{Dir: capture.BtoA, Data: []byte(s[:n]), Len: n})
		s = s[n:]
	}
	var n int
	emit := func(*l7.Message) { n++ }
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		for _, s := range segs {
			p.Feed(s, emit)
		}
	}
	if n != b.N {
		b.Fatalf("parsed %d messages, want %d", n, b.N)
	}
}
