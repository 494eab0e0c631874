package dubbo

import (
	"testing"

	"github.com/sightline-io/sightline/agent/capture"
	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/internal/rpctest"
)

// BenchmarkParseDubbo parses a Hessian2 request/response pair (with
// attachments and a traceparent) on one connection, one segment each.
func BenchmarkParseDubbo(b *testing.B) {
	p := newParser()
	req := rpctest.Seg(capture.AtoB, hello(1), 0)
	resp := rpctest.Seg(capture.BtoA, okResp(1), 0)
	var n int
	emit := func(*l7.Message) { n++ }
	b.SetBytes(int64(len(req.Data) + len(resp.Data)))
	b.ReportAllocs()
	for b.Loop() {
		p.Feed(req, emit)
		p.Feed(resp, emit)
	}
	if n != 2*b.N {
		b.Fatalf("%d messages, want %d", n, 2*b.N)
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "msgs/s")
}
