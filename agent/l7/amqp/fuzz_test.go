package amqp

import (
	"testing"
	"time"

	"github.com/sightline-io/sightline/agent/capture"
	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/flowlog"
)

// FuzzAMQPParser feeds arbitrary bytes split into segments by plan: each
// pair of plan bytes gives a segment size, its direction and an optional gap.
func FuzzAMQPParser(f *testing.F) {
	steps, _ := conversation()
	var data, plan []byte
	for _, s := range steps {
		data = append(data, s.b...)
		plan = append(plan, byte(min(len(s.b), 256)-1), byte(s.dir))
	}
	f.Add(data, plan)
	f.Fuzz(func(t *testing.T, data, plan []byte) {
		p := New(l7.Config{}).NewParser().(*Parser)
		emit := func(m *l7.Message) {
			if m.Protocol != flowlog.L7AMQP || m.Dir > 1 || !m.HasRequestID || m.RequestID > 0xffff {
				t.Fatalf("bad message identity %+v", m)
			}
			if m.Length < int64(m.Captured) {
				t.Fatalf("length %d captured %d", m.Length, m.Captured)
			}
			if m.Type == l7.Request && m.RequestType == "" {
				t.Fatalf("request without type: %+v", m)
			}
			if len(m.Exception) > maxReplyText {
				t.Fatalf("exception of %d bytes", len(m.Exception))
			}
		}
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
			p.Feed(s, emit)
			data = data[size:]
			for i := range p.bufs {
				if p.bufs[i].Buffered() > p.bufs[i].Max {
					t.Fatalf("buffer holds %d bytes", p.bufs[i].Buffered())
				}
			}
		}
		p.Close(emit)
	})
}
