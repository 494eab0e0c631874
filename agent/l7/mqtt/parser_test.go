package mqtt

import (
	"strings"
	"testing"

	"github.com/sightline-io/sightline/agent/capture"
	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/flowlog"
	"github.com/sightline-io/sightline/internal/parsertest"
)

// packet builds a control packet from its first byte and variable part.
func packet(first byte, body ...[]byte) []byte {
	var b []byte
	for _, p := range body {
		b = append(b, p...)
	}
	out := []byte{first}
	n := len(b)
	for {
		c := byte(n & 0x7f)
		n >>= 7
		if n > 0 {
			c |= 0x80
		}
		out = append(out, c)
		if n == 0 {
			break
		}
	}
	return append(out, b...)
}

func str(s string) []byte { return append([]byte{byte(len(s) >> 8), byte(len(s))}, s...) }
func u16(v uint16) []byte { return []byte{byte(v >> 8), byte(v)} }
func props(v5 bool) []byte {
	if v5 {
		return []byte{5, 0x11, 0, 0, 0, 60} // session expiry interval
	}
	return nil
}

func connect(level byte, clientID, user, pass string) []byte {
	flags := byte(0x02)
	var tail []byte
	if user != "" {
		flags |= 0xc0
		tail = append(str(user), str(pass)...)
	}
	return packet(0x10, str("MQTT"), []byte{level, flags, 0, 60}, props(level == 5), str(clientID), tail)
}

func connack(code byte, v5 bool) []byte {
	if v5 {
		return packet(0x20, []byte{0, code}, []byte{3, 0x21, 0, 10})
	}
	return packet(0x20, []byte{0, code})
}

func publish(qos byte, topic string, id uint16, v5 bool, payload string) []byte {
	var pid []byte
	if qos > 0 {
		pid = u16(id)
	}
	var pr []byte
	if v5 {
		pr = []byte{2, 0x01, 1} // payload format indicator
	}
	return packet(0x30|qos<<1, str(topic), pid, pr, []byte(payload))
}

func puback(typ byte, id uint16, v5 bool, code byte) []byte {
	if v5 && code != 0 {
		return packet(typ<<4, u16(id), []byte{code, 0})
	}
	return packet(typ<<4, u16(id))
}

func subscribe(id uint16, v5 bool, filters ...string) []byte {
	var b []byte
	for _, f := range filters {
		b = append(append(b, str(f)...), 1)
	}
	var pr []byte
	if v5 {
		pr = []byte{0}
	}
	return packet(0x82, u16(id), pr, b)
}

func suback(id uint16, v5 bool, codes ...byte) []byte {
	var pr []byte
	if v5 {
		pr = []byte{0}
	}
	return packet(0x90, u16(id), pr, codes)
}

var (
	pingreq    = []byte{0xc0, 0}
	pingresp   = []byte{0xd0, 0}
	disconnect = []byte{0xe0, 0}
)

type step struct {
	dir capture.Direction
	b   []byte
}

// want describes one emitted message.
type want struct {
	typ      l7.MessageType
	reqType  string
	domain   string
	resource string
	endpoint string
	id       uint64
	hasID    bool
	oneWay   bool
	code     int32
	hasCode  bool
	status   flowlog.ResponseStatus
	exc      string
	version  string
}

const (
	c2s = capture.AtoB
	s2c = capture.BtoA
)

func conversation(level byte) ([]step, []want) {
	v5 := level == 5
	ver := "3.1.1"
	if v5 {
		ver = "5"
	}
	steps := []step{
		{c2s, connect(level, "sensor-1", "alice", "s3cret")},
		{s2c, connack(0, v5)},
		{c2s, publish(0, "devices/12345678/temp", 0, v5, "21.5")},
		{c2s, publish(1, "devices/12345678/temp", 7, v5, "21.6")},
		{s2c, puback(typePuback, 7, v5, 0)},
		{c2s, publish(2, "alerts", 8, v5, "x")},
		{s2c, puback(typePubrec, 8, v5, 0)},
		{c2s, packet(0x62, u16(8))},
		{s2c, packet(0x70, u16(8))},
		{c2s, subscribe(9, v5, "cmd/#", "other")},
		{s2c, suback(9, v5, 1, 0x80)},
		{s2c, publish(1, "cmd/reboot", 7, v5, "now")}, // same id as the client's, other space
		{c2s, puback(typePuback, 7, v5, 0)},
		{c2s, pingreq},
		{s2c, pingresp},
		{c2s, disconnect},
	}
	subCode, subExc := int32(0x80), "Failure"
	if v5 {
		subExc = "Unspecified error"
	}
	wants := []want{
		{typ: l7.Request, reqType: "CONNECT", domain: "sensor-1", version: ver},
		{typ: l7.Response, hasCode: true, version: ver},
		{typ: l7.Request, reqType: "PUBLISH", domain: "sensor-1", resource: "devices/12345678/temp", endpoint: "devices/+/temp", oneWay: true, version: ver},
		{typ: l7.Request, reqType: "PUBLISH", domain: "sensor-1", resource: "devices/12345678/temp", endpoint: "devices/+/temp", id: 7, hasID: true, version: ver},
		{typ: l7.Response, id: 7, hasID: true, hasCode: v5, version: ver},
		{typ: l7.Request, reqType: "PUBLISH", domain: "sensor-1", resource: "alerts", endpoint: "alerts", id: 8, hasID: true, version: ver},
		{typ: l7.Response, id: 8, hasID: true, hasCode: v5, version: ver},
		{typ: l7.Request, reqType: "SUBSCRIBE", domain: "sensor-1", resource: "cmd/#", endpoint: "cmd/#", id: 9, hasID: true, version: ver},
		{typ: l7.Response, id: 9, hasID: true, code: subCode, hasCode: true, status: flowlog.StatusClientError, exc: subExc, version: ver},
		{typ: l7.Request, reqType: "PUBLISH", domain: "sensor-1", resource: "cmd/reboot", endpoint: "cmd/reboot", id: 7 + serverIDs, hasID: true, version: ver},
		{typ: l7.Response, id: 7 + serverIDs, hasID: true, hasCode: v5, version: ver},
		{typ: l7.Request, reqType: "PINGREQ", domain: "sensor-1", version: ver},
		{typ: l7.Response, version: ver},
		{typ: l7.Request, reqType: "DISCONNECT", domain: "sensor-1", oneWay: true, version: ver},
	}
	return steps, wants
}

func check(t *testing.T, got []l7.Message, wants []want) {
	t.Helper()
	if len(got) != len(wants) {
		for _, m := range got {
			t.Logf("%+v", m)
		}
		t.Fatalf("got %d messages, want %d", len(got), len(wants))
	}
	for i, w := range wants {
		m := got[i]
		if m.Type != w.typ || m.RequestType != w.reqType || m.Domain != w.domain || m.Resource != w.resource ||
			m.Endpoint != w.endpoint || m.RequestID != w.id || m.HasRequestID != w.hasID || m.OneWay != w.oneWay ||
			m.Code != w.code || m.HasCode != w.hasCode || m.Status != w.status || m.Exception != w.exc ||
			m.Version != w.version || m.Protocol != flowlog.L7MQTT || m.Length < int64(m.Captured) {
			t.Errorf("message %d = %+v\nwant %+v", i, m, w)
		}
	}
}

func TestConversation(t *testing.T) {
	for _, level := range []byte{4, 5} {
		steps, wants := conversation(level)
		p := New(l7.Config{}).NewParser()
		var c parsertest.Collector
		for _, s := range steps {
			p.Feed(parsertest.Whole(s.dir, s.b), c.Emit)
		}
		check(t, c.Msgs, wants)
		for _, m := range c.Msgs {
			if strings.Contains(m.Domain+m.Resource, "s3cret") || strings.Contains(m.Domain+m.Resource, "alice") {
				t.Fatalf("credentials leaked: %+v", m)
			}
		}
	}
}

// TestSplitEveryByte cuts each direction's whole byte stream at every
// boundary.
func TestSplitEveryByte(t *testing.T) {
	for _, level := range []byte{4, 5} {
		steps, wants := conversation(level)
		var dirs [2][]byte
		for _, s := range steps {
			dirs[s.dir] = append(dirs[s.dir], s.b...)
		}
		// Feeding all of one direction then the other keeps message order
		// per direction; compare as multisets by type.
		for cut := 1; cut < len(dirs[0]); cut++ {
			p := New(l7.Config{}).NewParser()
			var c parsertest.Collector
			p.Feed(parsertest.Whole(c2s, dirs[0][:cut]), c.Emit)
			p.Feed(parsertest.Whole(c2s, dirs[0][cut:]), c.Emit)
			p.Feed(parsertest.Whole(s2c, dirs[1][:cut%len(dirs[1])]), c.Emit)
			p.Feed(parsertest.Whole(s2c, dirs[1][cut%len(dirs[1]):]), c.Emit)
			if len(c.Msgs) != len(wants) {
				t.Fatalf("level %d cut %d: %d messages, want %d", level, cut, len(c.Msgs), len(wants))
			}
		}
	}
}

// TestPipelined sends the whole conversation as two segments.
func TestPipelined(t *testing.T) {
	steps, _ := conversation(5)
	var dirs [2][]byte
	for _, s := range steps {
		dirs[s.dir] = append(dirs[s.dir], s.b...)
	}
	p := New(l7.Config{}).NewParser()
	var c parsertest.Collector
	p.Feed(parsertest.Whole(c2s, dirs[0]), c.Emit)
	p.Feed(parsertest.Whole(s2c, dirs[1]), c.Emit)
	if len(c.Msgs) != 14 {
		t.Fatalf("%d messages", len(c.Msgs))
	}
}

func TestConnackCodes(t *testing.T) {
	tests := []struct {
		level  byte
		code   byte
		status flowlog.ResponseStatus
		exc    string
	}{
		{4, 0, flowlog.StatusSuccess, ""},
		{4, 3, flowlog.StatusServerError, "server unavailable"},
		{4, 5, flowlog.StatusClientError, "not authorized"},
		{4, 4, flowlog.StatusClientError, "bad user name or password"},
		{5, 0x86, flowlog.StatusClientError, "Bad User Name or Password"},
		{5, 0x88, flowlog.StatusServerError, "Server unavailable"},
		{5, 0x89, flowlog.StatusServerError, "Server busy"},
		{5, 0x87, flowlog.StatusClientError, "Not authorized"},
	}
	for _, tt := range tests {
		p := New(l7.Config{}).NewParser()
		var c parsertest.Collector
		p.Feed(parsertest.Whole(c2s, connect(tt.level, "c", "", "")), c.Emit)
		p.Feed(parsertest.Whole(s2c, connack(tt.code, tt.level == 5)), c.Emit)
		m := c.Msgs[1]
		if m.Code != int32(tt.code) || !m.HasCode || m.Status != tt.status || m.Exception != tt.exc {
			t.Errorf("level %d code %#x: %+v", tt.level, tt.code, m)
		}
	}
}

// TestHeadless starts with a CONNECT whose fixed header was read in unseen
// syscalls, as mosquitto reads it.
func TestHeadless(t *testing.T) {
	steps, wants := conversation(5)
	p := New(l7.Config{}).NewParser()
	var c parsertest.Collector
	p.Feed(parsertest.Whole(steps[0].dir, steps[0].b[2:]), c.Emit)
	for _, s := range steps[1:] {
		for i := range s.b { // byte by byte, as mosquitto reads
			p.Feed(parsertest.Whole(s.dir, s.b[i:i+1]), c.Emit)
		}
	}
	check(t, c.Msgs, wants)
	if c.Msgs[0].Length != int64(len(steps[0].b)) || c.Msgs[0].Captured != uint32(len(steps[0].b)-2) {
		t.Fatalf("CONNECT length %d captured %d", c.Msgs[0].Length, c.Msgs[0].Captured)
	}
}

// TestTruncatedPublish: a large PUBLISH captured in part still names its
// topic, and the next packets parse.
func TestTruncatedPublish(t *testing.T) {
	big := publish(1, "big/topic", 3, false, strings.Repeat("x", 100000))
	p := New(l7.Config{}).NewParser()
	var c parsertest.Collector
	p.Feed(parsertest.Whole(c2s, connect(4, "c", "", "")), c.Emit)
	s := parsertest.Whole(c2s, big[:4096])
	s.Len = len(big)
	p.Feed(s, c.Emit)
	p.Feed(parsertest.Whole(c2s, pingreq), c.Emit)
	if len(c.Msgs) != 3 || c.Msgs[1].Resource != "big/topic" || c.Msgs[1].Length != int64(len(big)) ||
		c.Msgs[1].Captured != 4096 || c.Msgs[2].RequestType != "PINGREQ" {
		t.Fatalf("%+v", c.Msgs)
	}
}

// TestMidConnection starts inside a PUBLISH: framing recovers at the next
// segment and the client side is learnt from SUBSCRIBE/PINGRESP.
func TestMidConnection(t *testing.T) {
	pub := publish(1, "a/b", 1, false, "payload")
	p := New(l7.Config{}).NewParser()
	var c parsertest.Collector
	p.Feed(parsertest.Whole(c2s, pub[5:]), c.Emit)
	p.Feed(parsertest.Whole(s2c, pingresp), c.Emit)
	p.Feed(parsertest.Whole(s2c, publish(1, "x", 4, false, "p")), c.Emit)
	p.Feed(parsertest.Whole(c2s, puback(typePuback, 4, false, 0)), c.Emit)
	if len(c.Msgs) < 3 {
		t.Fatalf("%+v", c.Msgs)
	}
	last := c.Msgs[len(c.Msgs)-2:]
	if last[0].RequestID != 4+serverIDs || last[1].RequestID != 4+serverIDs || last[1].Type != l7.Response {
		t.Fatalf("%+v", last)
	}
}

func TestHostile(t *testing.T) {
	cases := [][]byte{
		{0x30, 0xff, 0xff, 0xff, 0xff, 0x7f},  // 5-byte remaining length
		{0x00, 0x00},                          // reserved type
		{0x82, 0x02},                          // SUBSCRIBE with bad flags... fine, then short
		{0x90, 0x02, 0x00},                    // SUBACK cut short
		{0x36, 0x02, 0x00, 0x01},              // QoS 3
		{0x20, 0x00},                          // CONNACK without a code
		packet(0x30, []byte{0xff, 0xff, 'a'}), // topic length beyond the packet
		packet(0x82, u16(1), []byte{0xff, 0xff, 0xff, 0xff}),
		[]byte("GET / HTTP/1.1\r\n\r\n"),
	}
	for i, g := range cases {
		for _, level := range []byte{4, 5} {
			p := New(l7.Config{}).NewParser()
			var c parsertest.Collector
			p.Feed(parsertest.Whole(c2s, connect(level, "c", "", "")), c.Emit)
			p.Feed(parsertest.Whole(c2s, g), c.Emit)
			p.Feed(parsertest.Whole(s2c, g), c.Emit)
			// Garbage that frames validly eats what follows: recover
			// within three exchanges.
			for range 3 {
				p.Feed(parsertest.Whole(c2s, pingreq), c.Emit)
				p.Feed(parsertest.Whole(s2c, pingresp), c.Emit)
			}
			for _, m := range c.Msgs {
				if m.Type == l7.Response && m.Status == flowlog.StatusParseFailed {
					continue
				}
				if m.Type == l7.Response && m.HasCode && m.Status == flowlog.StatusSuccess && m.Code >= 0x80 {
					t.Errorf("case %d: %+v", i, m)
				}
			}
			if n := len(c.Msgs); n < 3 || c.Msgs[n-1].Type != l7.Response || c.Msgs[n-2].RequestType != "PINGREQ" {
				t.Errorf("case %d level %d: did not recover: %+v", i, level, c.Msgs)
			}
		}
	}
}

func TestInfer(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want l7.Inference
	}{
		{"connect 3.1.1", connect(4, "c", "", ""), l7.IsRequest},
		{"connect 5", connect(5, "c", "u", "p"), l7.IsRequest},
		{"connect 3.1", packet(0x10, str("MQIsdp"), []byte{3, 2, 0, 60}, str("c")), l7.IsRequest},
		{"prefix", connect(4, "c", "", "")[:5], l7.NeedMore},
		{"fixed header alone", connect(4, "c", "", "")[:2], l7.NeedMore},
		{"headless connect", connect(5, "c", "", "")[2:], l7.IsRequest},
		{"headless other", []byte("\x00\x04MQTX\x04\x02"), l7.NotMine},
		{"one byte", []byte{0x10}, l7.NeedMore},
		{"level 6", connect(6, "c", "", ""), l7.NotMine},
		{"reserved flag", packet(0x10, str("MQTT"), []byte{4, 3, 0, 60}, str("c")), l7.NotMine},
		{"publish", publish(0, "a", 0, false, "x"), l7.NotMine},
		{"pingreq", pingreq, l7.NotMine},
		{"http", []byte("GET / HTTP/1.1\r\n"), l7.NotMine},
		{"tls", []byte("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"), l7.NotMine},
		{"kafka", []byte{0, 0, 0, 0x10, 0, 18, 0, 3}, l7.NotMine},
	}
	p := New(l7.Config{})
	for _, tt := range tests {
		if got := p.Infer(tt.in, 6); got != tt.want {
			t.Errorf("%s: Infer = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestEndpoint(t *testing.T) {
	tests := map[string]string{
		"devices/12345678/temp":       "devices/+/temp",
		"sensors/42":                  "sensors/+",
		"home/livingroom/temperature": "home/livingroom/temperature",
		"v2/things/3f2504e0-4f89-11d3-9a0c-0305e82c3301/shadow": "v2/things/+/shadow",
		"a//b": "a//b",
		"":     "",
	}
	for in, want := range tests {
		if got := endpoint(in); got != want {
			t.Errorf("endpoint(%q) = %q, want %q", in, got, want)
		}
	}
}
