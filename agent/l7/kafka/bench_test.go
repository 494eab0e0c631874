package kafka

import (
	"testing"

	"github.com/sightline-io/sightline/agent/capture"
	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/internal/parsertest"
)

// BenchmarkParseKafka parses Produce v9 request/response pairs (one
// partition, 1 KiB of records) on one connection, one segment per message.
func BenchmarkParseKafka(b *testing.B) {
	pr := produceReq(9, -1, "orders", 3)
	pr.Topics[0].Partitions[0].Records = make([]byte, 1024)
	p := New(l7.Config{}).NewParser()
	reqSeg := parsertest.Whole(capture.AtoB, nil)
	respSeg := parsertest.Whole(capture.BtoA, nil)
	var corr int32
	req := reqFrame(0, "kgo", pr)
	resp := respFrame(0, produceResp(9, "orders", 0))
	b.SetBytes(int64(len(req) + len(resp)))
	parsertest.BenchFunc(b, 2, func(emit func(*l7.Message)) {
		corr++
		// Fresh correlation ids, as a client sends them.
		req[8], req[9], req[10], req[11] = byte(corr>>24), byte(corr>>16), byte(corr>>8), byte(corr)
		resp[4], resp[5], resp[6], resp[7] = byte(corr>>24), byte(corr>>16), byte(corr>>8), byte(corr)
		reqSeg.Data, reqSeg.Len = req, len(req)
		respSeg.Data, respSeg.Len = resp, len(resp)
		p.Feed(reqSeg, emit)
		p.Feed(respSeg, emit)
	})
}
