package krpc

import (
	"testing"

	"github.com/sightline-io/sightline/agent/capture"
	"github.com/sightline-io/sightline/internal/parsertest"
	"github.com/sightline-io/sightline/internal/rpctest"
)

// BenchmarkParseKRPC parses a KRPC request with trace ids and its
// response, one segment each.
func BenchmarkParseKRPC(b *testing.B) {
	p := newParser()
	rq := rpctest.Seg(capture.AtoB, req(1), 0)
	rs := rpctest.Seg(capture.BtoA, resp(1, 0, rpctest.ProtoString("hi")), 0)
	parsertest.Bench(b, p, 2, rq, rs)
}
