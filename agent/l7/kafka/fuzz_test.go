package kafka

import (
	"testing"
	"time"

	"github.com/sightline-io/sightline/agent/capture"
	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/flowlog"
)

// FuzzKafkaParser feeds arbitrary bytes split into segments by plan: each
// pair of plan bytes gives a segment size, its direction and an optional gap.
func FuzzKafkaParser(f *testing.F) {
	for _, x := range exchanges()[:6] {
		f.Add(append(append([]byte(nil), x.req...), x.resp...), []byte{byte(len(x.req) - 1), 0, 255, 1})
	}
	f.Fuzz(func(t *testing.T, data, plan []byte) {
		p := New(l7.Config{}).NewParser().(*Parser)
		var fed [2]int64
		emit := func(m *l7.Message) {
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
		feedPlan(data, plan, func(s *capture.Segment) {
			fed[s.Dir] += int64(len(s.Data))
			p.Feed(s, emit)
			for i := range p.bufs {
				if p.bufs[i].Buffered() > p.bufs[i].Max {
					t.Fatalf("buffer holds %d bytes", p.bufs[i].Buffered())
				}
			}
			if p.npen > maxPending {
				t.Fatalf("%d pending", p.npen)
			}
		})
		p.Close(emit)
	})
}

// feedPlan cuts data into segments following plan.
func feedPlan(data, plan []byte, feed func(*capture.Segment)) {
	now := time.Unix(0, 0)
	for len(data) > 0 {
		size, flags := len(data), byte(0)
		if len(plan) >= 2 {
			size, flags, plan = min(int(plan[0])+1, len(data)), plan[1], plan[2:]
		}
		s := &capture.Segment{Dir: capture.Direction(flags & 1), Start: now, End: now,
			Data: data[:size], Len: size, TCPSeq: uint32(len(data))}
		if flags&2 != 0 {
			s.Len += int(flags>>2) * 37
		}
		feed(s)
		data = data[size:]
	}
}
