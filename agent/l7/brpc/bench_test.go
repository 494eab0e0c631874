package brpc

import (
	"testing"

	"github.com/sightline-io/sightline/agent/capture"
	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/internal/rpctest"
)

// BenchmarkParseBRPC parses a baidu_std request (service, method, trace,
// span and request ids) and its response, one segment each.
func BenchmarkParseBRPC(b *testing.B) {
	p := newParser()
	rq := rpctest.Seg(capture.AtoB, req(1), 0)
	rs := rpctest.Seg(capture.BtoA, okResp(1), 0)
	var n int
	emit := func(*l7.Message) { n++ }
	b.SetBytes(int64(len(rq.Data) + len(rs.Data)))
	b.ReportAllocs()
	for b.Loop() {
		p.Feed(rq, emit)
		p.Feed(rs, emit)
	}
	if n != 2*b.N {
		b.Fatalf("%d messages, want %d", n, 2*b.N)
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "msgs/s")
}
