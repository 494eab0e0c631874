package http1

import (
	"strings"
	"testing"

	"github.com/sightline-io/sightline/agent/capture"
	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/internal/parsertest"
)

// BenchmarkParseRequestResponse parses small keep-alive request/response
// pairs on one connection, one segment per message.
func BenchmarkParseRequestResponse(b *testing.B) {
	reqSeg := &capture.Segment{Dir: capture.AtoB, Data: []byte(curlGet), Len: len(curlGet)}
	respSeg := &capture.Segment{Dir: capture.BtoA, Data: []byte(nginxOK), Len: len(nginxOK)}
	parsertest.Bench(b, New().NewParser(), 2, reqSeg, respSeg)
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
