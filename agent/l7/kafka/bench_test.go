package kafka

import (
	"strconv"
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

// BenchmarkParseKafkaRecords parses traced Produce and Fetch exchanges whose
// batches hold n records: allocations do not grow with n.
func BenchmarkParseKafkaRecords(b *testing.B) {
	for _, n := range []int{1, 100} {
		b.Run(strconv.Itoa(n)+"-records", func(b *testing.B) {
			batch := recordBatch(0, n, 0, "traceparent", testParent)
			msgs := [][]byte{
				reqFrame(0, "kgo", produceWith(9, "orders", producePart(0, batch))),
				respFrame(0, produceRespParts(9, "orders", [3]int64{0, 0, 42})),
				reqFrame(1, "kgo", fetchReq(12, "orders")),
				respFrame(1, fetchRespParts(12, batch)),
			}
			p := New(l7.Config{}).NewParser()
			segs := make([]*capture.Segment, len(msgs))
			size := 0
			for i, m := range msgs {
				segs[i] = parsertest.Whole(capture.Direction(i%2), m)
				size += len(m)
			}
			b.SetBytes(int64(size))
			var corr int32
			parsertest.BenchFunc(b, 4, func(emit func(*l7.Message)) {
				corr += 2
				for i, m := range msgs {
					c := corr + int32(i/2)
					off := 8 // request correlation id
					if i%2 == 1 {
						off = 4
					}
					m[off], m[off+1], m[off+2], m[off+3] = byte(c>>24), byte(c>>16), byte(c>>8), byte(c)
					p.Feed(segs[i], emit)
				}
			})
		})
	}
}
