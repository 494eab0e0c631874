package kafka

import (
	"testing"

	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/flowlog"
	"github.com/sightline-io/sightline/internal/parsertest"
)

// FuzzKafkaParser feeds arbitrary bytes split into segments by plan: each
// pair of plan bytes gives a segment size, its direction and an optional gap.
func FuzzKafkaParser(f *testing.F) {
	for _, x := range exchanges()[:6] {
		f.Add(append(append([]byte(nil), x.req...), x.resp...), []byte{byte(len(x.req) - 1), 0, 255, 1})
	}
	// Record batches with a traced first record: Produce and Fetch.
	tp := []string{"traceparent", testParent}
	prod := reqFrame(1, "c", produceWith(9, "orders", producePart(2, recordBatch(0, 3, 0, tp...))))
	fetch := reqFrame(2, "c", fetchReq(12, "orders"))
	f.Add(append(append(prod, respFrame(1, produceRespParts(9, "orders", [3]int64{2, 0, 42}))...), fetch...),
		[]byte{byte(len(prod) - 1), 0, 255, 1})
	f.Add(append(fetch, respFrame(2, fetchRespParts(12, nil, recordBatch(10, 2, 0, tp...)))...), []byte{byte(len(fetch) - 1), 0, 255, 1})
	f.Fuzz(func(t *testing.T, data, plan []byte) {
		p := New(l7.Config{}).NewParser().(*Parser)
		check := func(m *l7.Message, fed *[2]int64) {
			if len(m.Attributes) > 4 || (m.TraceID != "" && (len(m.TraceID) != 32 || len(m.SpanID) != 16)) {
				t.Fatalf("attributes %v trace %q %q", m.Attributes, m.TraceID, m.SpanID)
			}
			if m.Protocol != flowlog.L7Kafka || m.Dir > 1 {
				t.Fatalf("bad message identity %+v", m)
			}
			if m.Length < int64(m.Captured) || int64(m.Captured) > fed[m.Dir] {
				t.Fatalf("length %d captured %d fed %d", m.Length, m.Captured, fed[m.Dir])
			}
			if m.Type == l7.Request && (m.RequestType == "" || !m.HasRequestID) {
				t.Fatalf("request without type or id: %+v", m)
			}
		}
		parsertest.Fuzz(p, data, plan, check, func() {
			for i := range p.bufs {
				if p.bufs[i].Buffered() > p.bufs[i].Max {
					t.Fatalf("buffer holds %d bytes", p.bufs[i].Buffered())
				}
			}
			if p.npen > maxPending {
				t.Fatalf("%d pending", p.npen)
			}
		})
	})
}
