package brpc

import (
	"testing"

	"github.com/sightline-io/sightline/agent/capture"
	"github.com/sightline-io/sightline/internal/parsertest"
	"github.com/sightline-io/sightline/internal/rpctest"
)

// BenchmarkParseBRPC parses a baidu_std request (service, method, trace,
// span and request ids) and its response, one segment each.
func BenchmarkParseBRPC(b *testing.B) {
	p := newParser()
	rq := rpctest.Seg(capture.AtoB, req(1), 0)
	rs := rpctest.Seg(capture.BtoA, okResp(1), 0)
	parsertest.Bench(b, p, 2, rq, rs)
}
