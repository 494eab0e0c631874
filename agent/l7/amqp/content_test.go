package amqp

import (
	"encoding/binary"
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

// longstr is a long string field value or table: 4-byte size, bytes.
func longstr(s []byte) []byte {
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(s))), s...)
}

// table encodes a field table of already-encoded name+type+value entries.
func table(entries ...[]byte) []byte {
	var b []byte
	for _, e := range entries {
		b = append(b, e...)
	}
	return longstr(b)
}

func entry(name string, typ byte, value []byte) []byte {
	return append(append(ss(name), typ), value...)
}

// propsHeader is a content header frame with content type, headers,
// delivery mode, correlation id and message id (flags bits 15, 13, 12, 10, 7).
func propsHeader(channel uint16, headers []byte, messageID string) []byte {
	flags := uint16(1<<15 | 1<<12 | 1<<10)
	var props [][]byte
	props = append(props, ss("text/plain"))
	if headers != nil {
		flags |= 1 << 13
		props = append(props, headers)
	}
	props = append(props, []byte{2}, ss("corr-1"))
	if messageID != "" {
		flags |= 1 << 7
		props = append(props, ss(messageID))
	}
	payload := [][]byte{u16(60), u16(0), binary.BigEndian.AppendUint64(nil, 5), u16(flags)}
	return frame(frameHeader, channel, append(payload, props...)...)
}

func TestContentProperties(t *testing.T) {
	traced := table(
		entry("x-retries", 'I', []byte{0, 0, 0, 3}),
		entry("flag", 't', []byte{1}),
		entry("when", 'T', make([]byte, 8)),
		entry("nested", 'F', table(entry("a", 'S', longstr([]byte("b"))))),
		entry("traceparent", 'S', longstr([]byte(testParent))),
	)
	publish := meth(1, 60, 40, u16(0), ss(""), ss("orders"), []byte{0})
	deliver := meth(1, 60, 60, ss("ctag"), make([]byte, 8), []byte{0}, ss(""), ss("orders"))
	getOk := meth(1, 60, 71, make([]byte, 8), []byte{0}, ss(""), ss("orders"), ls(""))
	body := frame(frameBody, 1, []byte("hello"))
	cases := []struct {
		name   string
		dir    capture.Direction
		frames [][]byte
		mid    string
		traced bool
	}{
		{"publish with id and traceparent", c2s, [][]byte{publish, propsHeader(1, traced, "msg-1"), body}, "msg-1", true},
		{"deliver with id", s2c, [][]byte{deliver, propsHeader(1, nil, "msg-2"), body}, "msg-2", false},
		{"get-ok with traceparent", s2c, [][]byte{getOk, propsHeader(1, traced, ""), body}, "", true},
		{"header on another channel", c2s, [][]byte{publish, propsHeader(2, traced, "msg-3")}, "", false},
		{"no header before the next method", c2s, [][]byte{publish, publish}, "", false},
		{"unknown field type first", c2s, [][]byte{publish, propsHeader(1, table(entry("x", '?', nil),
			entry("traceparent", 'S', longstr([]byte(testParent)))), "msg-4")}, "msg-4", false},
		{"bad traceparent", c2s, [][]byte{publish, propsHeader(1, table(entry("traceparent", 'S', longstr([]byte("00-xyz")))), "m")}, "m", false},
		{"truncated header", c2s, [][]byte{publish, propsHeader(1, traced, "msg-5")[:40]}, "", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := New(l7.Config{}).NewParser()
			var col parsertest.Collector
			p.Feed(parsertest.Whole(c2s, []byte(protocolHeader)), col.Emit) // the client's side
			for _, f := range c.frames {
				p.Feed(parsertest.Whole(c.dir, f), col.Emit)
			}
			p.Close(col.Emit)
			if len(col.Msgs) == 0 {
				t.Fatal("no message")
			}
			m := col.Msgs[0]
			if got := m.Attributes[AttrMessageID]; got != c.mid {
				t.Errorf("message id %q, want %q (%+v)", got, c.mid, m)
			}
			if c.traced != (m.TraceID == testTrace && m.SpanID == testSpan) || (!c.traced && m.TraceID != "") {
				t.Errorf("trace %q %q, traced %v", m.TraceID, m.SpanID, c.traced)
			}
			if c.name == "no header before the next method" && len(col.Msgs) != 2 {
				t.Errorf("%d messages", len(col.Msgs))
			}
		})
	}
}

// TestContentHeaderSplit feeds a traced publish cut at every byte: the
// properties are read whatever the segmentation.
func TestContentHeaderSplit(t *testing.T) {
	b := append(meth(1, 60, 40, u16(0), ss(""), ss("orders"), []byte{0}),
		propsHeader(1, table(entry("traceparent", 'S', longstr([]byte(testParent)))), "msg-1")...)
	for cut := 1; cut < len(b); cut++ {
		p := New(l7.Config{}).NewParser()
		var col parsertest.Collector
		p.Feed(parsertest.Whole(c2s, []byte(protocolHeader)), col.Emit)
		p.Feed(parsertest.Whole(c2s, b[:cut]), col.Emit)
		p.Feed(parsertest.Whole(c2s, b[cut:]), col.Emit)
		if len(col.Msgs) != 1 || col.Msgs[0].Attributes[AttrMessageID] != "msg-1" || col.Msgs[0].TraceID != testTrace {
			t.Fatalf("cut %d: %+v", cut, col.Msgs)
		}
	}
}
