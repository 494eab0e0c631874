package dubbo

import (
	"testing"

	"github.com/sightline-io/sightline/agent/capture"
	"github.com/sightline-io/sightline/internal/parsertest"
	"github.com/sightline-io/sightline/internal/rpctest"
)

// BenchmarkParseDubbo parses a Hessian2 request/response pair (with
// attachments and a traceparent) on one connection, one segment each.
func BenchmarkParseDubbo(b *testing.B) {
	p := newParser()
	req := rpctest.Seg(capture.AtoB, hello(1), 0)
	resp := rpctest.Seg(capture.BtoA, okResp(1), 0)
	parsertest.Bench(b, p, 2, req, resp)
}
