package http2

import (
	"testing"

	"github.com/sightline-io/sightline/agent/capture"
	"github.com/sightline-io/sightline/agent/l7"
)

// BenchmarkParseHTTP2 parses gRPC unary calls on one connection in steady
// state: after a first call, the HPACK tables hold the repeated fields and
// each call's request and response are one segment each.
func BenchmarkParseHTTP2(b *testing.B) {
	c := newConv(b)
	handshake(c).unary(1, check, "0", "")
	warm := len(c.recs)
	c.unary(3, check, "0", "")
	p := newTestParser()
	var n int
	emit := func(*l7.Message) { n++ }
	for _, r := range c.recs[:warm] {
		p.Feed(&capture.Segment{Dir: r.dir, Data: r.data, Len: len(r.data)}, emit)
	}
	reqSeg := &capture.Segment{Dir: cli, Data: c.recs[warm].data, Len: len(c.recs[warm].data)}
	respSeg := &capture.Segment{Dir: srv, Data: c.recs[warm+1].data, Len: len(c.recs[warm+1].data)}
	n = 0
	b.SetBytes(int64(reqSeg.Len + respSeg.Len))
	b.ReportAllocs()
	for b.Loop() {
		p.Feed(reqSeg, emit)
		p.Feed(respSeg, emit)
	}
	if n != 2*b.N {
		b.Fatalf("parsed %d messages, want %d", n, 2*b.N)
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "msgs/s")
}
