package sofarpc

import (
	"testing"

	"github.com/sightline-io/sightline/agent/capture"
	"github.com/sightline-io/sightline/internal/parsertest"
	"github.com/sightline-io/sightline/internal/rpctest"
)

// BenchmarkParseSofaRPC parses a Bolt v1 request (header map with service,
// method and trace context) and its Hessian2 SofaResponse, one segment each.
func BenchmarkParseSofaRPC(b *testing.B) {
	p := newParser()
	rq := rpctest.Seg(capture.AtoB, req(1, false), 0)
	rs := rpctest.Seg(capture.BtoA, okResp(1, false), 0)
	parsertest.Bench(b, p, 2, rq, rs)
}
