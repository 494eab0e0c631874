package mqtt

import (
	"testing"

	"github.com/sightline-io/sightline/agent/capture"
	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/internal/parsertest"
)

const (
	testTrace  = "4bf92f3577b34da6a3ce929d0e0e4736"
	testSpan   = "00f067aa0ba902b7"
	testParent = "00-" + testTrace + "-" + testSpan + "-01"
)

// propBlock is an MQTT 5 property block (one-byte length) of raw properties.
func propBlock(ps ...[]byte) []byte {
	var b []byte
	for _, p := range ps {
		b = append(b, p...)
	}
	return append([]byte{byte(len(b))}, b...)
}

func userProp(k, v string) []byte { return append(append([]byte{propUser}, str(k)...), str(v)...) }

func TestPublishLinking(t *testing.T) {
	full := propBlock([]byte{0x01, 1}, []byte{0x02, 0, 0, 0, 9}, append([]byte{0x03}, str("text/plain")...),
		[]byte{0x0B, 0x81, 0x01}, userProp("tenant", "a"), userProp("traceparent", testParent))
	cases := []struct {
		name   string
		level  byte
		dir    capture.Direction
		pkt    []byte
		id     string
		traced bool
	}{
		{"v5 QoS 1 traced", 5, capture.AtoB, packet(0x32, str("orders/1"), u16(7), full, []byte("x")), "7", true},
		{"v5 QoS 0 traced", 5, capture.AtoB, packet(0x30, str("orders/1"), full, []byte("x")), "", true},
		{"v5 QoS 2 from the broker", 5, capture.BtoA, packet(0x34, str("orders/1"), u16(65535), full), "65535", true},
		{"v5 unknown property first", 5, capture.AtoB,
			packet(0x32, str("t"), u16(1), propBlock([]byte{0x7f, 0}, userProp("traceparent", testParent))), "1", false},
		{"v5 bad traceparent", 5, capture.AtoB, packet(0x32, str("t"), u16(2), propBlock(userProp("traceparent", "00-1-2-3"))), "2", false},
		{"v5 block longer than the packet", 5, capture.AtoB, packet(0x32, str("t"), u16(3), []byte{100}, userProp("traceparent", testParent)), "3", true},
		{"3.1.1 QoS 1: no properties", 4, capture.AtoB, packet(0x32, str("t"), u16(4), []byte("payload")), "4", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := New(l7.Config{}).NewParser()
			var col parsertest.Collector
			p.Feed(parsertest.Whole(capture.AtoB, connect(c.level, "cli", "", "")), col.Emit)
			p.Feed(parsertest.Whole(capture.BtoA, connack(0, c.level == 5)), col.Emit)
			p.Feed(parsertest.Whole(c.dir, c.pkt), col.Emit)
			if len(col.Msgs) != 3 {
				t.Fatalf("%d messages: %+v", len(col.Msgs), col.Msgs)
			}
			m := col.Msgs[2]
			if got := m.Attributes[AttrPacketID]; got != c.id || (c.id == "" && len(m.Attributes) != 0) {
				t.Errorf("packet id attribute %q, want %q", got, c.id)
			}
			if c.traced != (m.TraceID == testTrace && m.SpanID == testSpan) || (!c.traced && m.TraceID != "") {
				t.Errorf("trace %q %q, traced %v", m.TraceID, m.SpanID, c.traced)
			}
		})
	}
}
