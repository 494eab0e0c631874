package mqtt

import (
	"testing"

	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/flowlog"
	"github.com/sightline-io/sightline/internal/parsertest"
)

// FuzzMQTTParser feeds arbitrary bytes split into segments by plan: each
// pair of plan bytes gives a segment size, its direction and an optional gap.
func FuzzMQTTParser(f *testing.F) {
	for _, level := range []byte{4, 5} {
		steps, _ := conversation(level)
		var data, plan []byte
		for _, s := range steps {
			data = append(data, s.b...)
			plan = append(plan, byte(len(s.b)-1), byte(s.dir))
		}
		f.Add(data, plan)
	}
	// An MQTT 5 QoS 1 PUBLISH with a traceparent user property.
	conn := connect(5, "cli", "", "")
	pub := packet(0x32, str("orders/1"), u16(7), propBlock([]byte{0x01, 1}, userProp("traceparent", testParent)), []byte("x"))
	f.Add(append(conn, pub...), []byte{byte(len(conn) - 1), 0, byte(len(pub) - 1), 0})
	f.Fuzz(func(t *testing.T, data, plan []byte) {
		p := New(l7.Config{}).NewParser().(*Parser)
		check := func(m *l7.Message, fed *[2]int64) {
			if len(m.Attributes) > 1 || (m.TraceID != "" && (len(m.TraceID) != 32 || len(m.SpanID) != 16)) {
				t.Fatalf("attributes %v trace %q %q", m.Attributes, m.TraceID, m.SpanID)
			}
			if m.Protocol != flowlog.L7MQTT || m.Dir > 1 {
				t.Fatalf("bad message identity %+v", m)
			}
			if m.Length < int64(m.Captured) || int64(m.Captured) > fed[m.Dir] {
				t.Fatalf("length %d captured %d fed %d", m.Length, m.Captured, fed[m.Dir])
			}
			if m.Type == l7.Request && m.RequestType == "" {
				t.Fatalf("request without type: %+v", m)
			}
			if m.OneWay && m.HasRequestID {
				t.Fatalf("one-way message with an id: %+v", m)
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
