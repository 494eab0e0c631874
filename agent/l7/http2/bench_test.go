package http2

import (
	"testing"

	"github.com/sightline-io/sightline/agent/capture"
	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/internal/parsertest"
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
	for _, r := range c.recs[:warm] {
		p.Feed(&capture.Segment{Dir: r.dir, Data: r.data, Len: len(r.data)}, func(*l7.Message) {})
	}
	reqSeg := &capture.Segment{Dir: cli, Data: c.recs[warm].data, Len: len(c.recs[warm].data)}
	respSeg := &capture.Segment{Dir: srv, Data: c.recs[warm+1].data, Len: len(c.recs[warm+1].data)}
	parsertest.Bench(b, p, 2, reqSeg, respSeg)
}
