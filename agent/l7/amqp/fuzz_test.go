package amqp

import (
	"testing"

	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/flowlog"
	"github.com/sightline-io/sightline/internal/parsertest"
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
	traced := append(meth(1, 60, 40, u16(0), ss(""), ss("orders"), []byte{0}),
		propsHeader(1, table(entry("n", 'I', []byte{0, 0, 0, 1}), entry("traceparent", 'S', longstr([]byte(testParent)))), "msg-1")...)
	f.Add(append([]byte(protocolHeader), traced...), []byte{7, 0, byte(len(traced) - 1), 0})
	f.Fuzz(func(t *testing.T, data, plan []byte) {
		p := New(l7.Config{}).NewParser().(*Parser)
		check := func(m *l7.Message, fed *[2]int64) {
			if len(m.Attributes) > 1 || (m.TraceID != "" && (len(m.TraceID) != 32 || len(m.SpanID) != 16)) {
				t.Fatalf("attributes %v trace %q %q", m.Attributes, m.TraceID, m.SpanID)
			}
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
		parsertest.Fuzz(p, data, plan, check, func() {
			for i := range p.bufs {
				if p.bufs[i].Buffered() > p.bufs[i].Max {
					t.Fatalf("buffer holds %d bytes", p.bufs[i].Buffered())
				}
			}
		})
	})
}
