package amqp

import (
	"encoding/binary"
	"strings"
	"testing"

	"github.com/sightline-io/sightline/agent/capture"
	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/flowlog"
	"github.com/sightline-io/sightline/internal/parsertest"
)

func frame(typ byte, channel uint16, payload ...[]byte) []byte {
	var p []byte
	for _, x := range payload {
		p = append(p, x...)
	}
	b := []byte{typ, byte(channel >> 8), byte(channel)}
	b = binary.BigEndian.AppendUint32(b, uint32(len(p)))
	b = append(b, p...)
	return append(b, frameEnd)
}

func meth(channel, class, id uint16, args ...[]byte) []byte {
	return frame(frameMethod, channel, append([][]byte{{byte(class >> 8), byte(class), byte(id >> 8), byte(id)}}, args...)...)
}

func ss(s string) []byte { return append([]byte{byte(len(s))}, s...) }
func ls(s string) []byte { return binary.BigEndian.AppendUint32(nil, uint32(len(s))) }
func u16(v uint16) []byte {
	return []byte{byte(v >> 8), byte(v)}
}

// content is a content header and body frame pair.
func content(channel uint16, body string) []byte {
	h := frame(frameHeader, channel, u16(60), u16(0), binary.BigEndian.AppendUint64(nil, uint64(len(body))), u16(0))
	return append(h, frame(frameBody, channel, []byte(body))...)
}

type step struct {
	dir capture.Direction
	b   []byte
}

const (
	c2s = capture.AtoB
	s2c = capture.BtoA
)

type want struct {
	typ      l7.MessageType
	reqType  string
	domain   string
	resource string
	endpoint string
	channel  uint64
	oneWay   bool
	code     int32
	hasCode  bool
	status   flowlog.ResponseStatus
	exc      string
}

const notFound = "NOT_FOUND - no queue 'missing' in vhost '/'"

func conversation() ([]step, []want) {
	steps := []step{
		{c2s, []byte(protocolHeader)},
		{s2c, meth(0, 10, 10, []byte{0, 9}, []byte{0, 0, 0, 0}, append(ls("PLAIN"), "PLAIN"...), append(ls("en_US"), "en_US"...))},
		{c2s, meth(0, 10, 11, []byte{0, 0, 0, 0}, ss("PLAIN"), append(ls("\x00guest\x00s3cret"), "\x00guest\x00s3cret"...), ss("en_US"))},
		{s2c, meth(0, 10, 30, u16(2047), []byte{0, 2, 0, 0}, u16(60))},
		{c2s, meth(0, 10, 31, u16(2047), []byte{0, 2, 0, 0}, u16(60))},
		{c2s, meth(0, 10, 40, ss("/"), ss(""), []byte{0})},
		{s2c, meth(0, 10, 41, ss(""))},
		{c2s, meth(1, 20, 10, ss(""))},
		{s2c, meth(1, 20, 11, ls(""))},
		{c2s, meth(1, 50, 10, u16(0), ss("orders"), []byte{0x02}, ls(""))},
		{s2c, meth(1, 50, 11, ss("orders"), ls(""), ls(""))},
		{c2s, append(meth(1, 60, 40, u16(0), ss(""), ss("orders"), []byte{0}), content(1, "hello")...)},
		{c2s, append(meth(1, 60, 40, u16(0), ss("events"), ss("order.12345678.created"), []byte{0}), content(1, "hi")...)},
		{c2s, meth(1, 60, 70, u16(0), ss("orders"), []byte{0})},
		{s2c, append(meth(1, 60, 71, make([]byte, 8), []byte{0}, ss(""), ss("orders"), ls("")), content(1, "hello")...)},
		{c2s, meth(1, 60, 70, u16(0), ss("orders"), []byte{0})},
		{s2c, meth(1, 60, 72, ss(""))},
		{c2s, meth(1, 60, 20, u16(0), ss("orders"), ss(""), []byte{0}, ls(""))},
		{s2c, meth(1, 60, 21, ss("ctag-1"))},
		{s2c, append(meth(1, 60, 60, ss("ctag-1"), make([]byte, 8), []byte{0}, ss(""), ss("orders")), content(1, "x")...)},
		{c2s, meth(1, 60, 80, make([]byte, 8), []byte{0})},
		{c2s, meth(1, 50, 10, u16(0), ss("missing"), []byte{0x01}, ls(""))},
		{s2c, meth(1, 20, 40, u16(404), ss(notFound), u16(50), u16(10))},
		{c2s, meth(1, 20, 41)},
		{c2s, append(meth(2, 60, 40, u16(0), ss("nope"), ss("k"), []byte{0}), content(2, "z")...)},
		{s2c, meth(2, 20, 40, u16(404), ss("NOT_FOUND - no exchange 'nope'"), u16(60), u16(40))},
		{c2s, meth(2, 20, 41)},
		{c2s, meth(0, 10, 50, u16(200), ss("bye"), u16(0), u16(0))},
		{s2c, meth(0, 10, 51)},
	}
	ok := flowlog.StatusSuccess
	wants := []want{
		{typ: l7.Request, reqType: "Connection.Open", domain: "/", resource: "/"},
		{typ: l7.Response, status: ok},
		{typ: l7.Request, reqType: "Channel.Open", domain: "/", channel: 1},
		{typ: l7.Response, channel: 1, status: ok},
		{typ: l7.Request, reqType: "Queue.Declare", domain: "/", resource: "orders", endpoint: "orders", channel: 1},
		{typ: l7.Response, channel: 1, status: ok},
		{typ: l7.Request, reqType: "Basic.Publish", domain: "/", resource: "/orders", endpoint: "/orders", channel: 1, oneWay: true},
		{typ: l7.Request, reqType: "Basic.Publish", domain: "/", resource: "events/order.12345678.created", endpoint: "events/order.*.created", channel: 1, oneWay: true},
		{typ: l7.Request, reqType: "Basic.Get", domain: "/", resource: "orders", endpoint: "orders", channel: 1},
		{typ: l7.Response, channel: 1, status: ok},
		{typ: l7.Request, reqType: "Basic.Get", domain: "/", resource: "orders", endpoint: "orders", channel: 1},
		{typ: l7.Response, channel: 1, status: ok},
		{typ: l7.Request, reqType: "Basic.Consume", domain: "/", resource: "orders", endpoint: "orders", channel: 1},
		{typ: l7.Response, channel: 1, status: ok},
		{typ: l7.Request, reqType: "Basic.Deliver", domain: "/", resource: "/orders", endpoint: "/orders", channel: 1, oneWay: true},
		{typ: l7.Request, reqType: "Queue.Declare", domain: "/", resource: "missing", endpoint: "missing", channel: 1},
		{typ: l7.Response, channel: 1, code: 404, hasCode: true, status: flowlog.StatusClientError, exc: notFound},
		{typ: l7.Request, reqType: "Basic.Publish", domain: "/", resource: "nope/k", endpoint: "nope/k", channel: 2, oneWay: true},
		{typ: l7.Response, channel: 2, code: 404, hasCode: true, status: flowlog.StatusClientError, exc: "NOT_FOUND - no exchange 'nope'"},
		{typ: l7.Request, reqType: "Connection.Close", domain: "/"},
		{typ: l7.Response, status: ok},
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
			m.Endpoint != w.endpoint || m.RequestID != w.channel || !m.HasRequestID || m.OneWay != w.oneWay ||
			m.Code != w.code || m.HasCode != w.hasCode || m.Status != w.status || m.Exception != w.exc ||
			m.Version != "0-9-1" || m.Protocol != flowlog.L7AMQP || m.Length != int64(m.Captured) {
			t.Errorf("message %d = %+v\nwant %+v", i, m, w)
		}
	}
}

func TestConversation(t *testing.T) {
	steps, wants := conversation()
	p := New(l7.Config{}).NewParser()
	var c parsertest.Collector
	for _, s := range steps {
		p.Feed(parsertest.Whole(s.dir, s.b), c.Emit)
	}
	check(t, c.Msgs, wants)
	for _, m := range c.Msgs {
		if strings.Contains(m.Domain+m.Resource+m.Exception, "s3cret") {
			t.Fatalf("credentials leaked: %+v", m)
		}
	}
}

// TestSplitEveryByte cuts each direction's byte stream at every boundary.
func TestSplitEveryByte(t *testing.T) {
	steps, wants := conversation()
	var dirs [2][]byte
	for _, s := range steps {
		dirs[s.dir] = append(dirs[s.dir], s.b...)
	}
	for cut := 1; cut < len(dirs[0]); cut++ {
		p := New(l7.Config{}).NewParser()
		var c parsertest.Collector
		p.Feed(parsertest.Whole(c2s, dirs[0][:cut]), c.Emit)
		p.Feed(parsertest.Whole(c2s, dirs[0][cut:]), c.Emit)
		p.Feed(parsertest.Whole(s2c, dirs[1][:cut%len(dirs[1])]), c.Emit)
		p.Feed(parsertest.Whole(s2c, dirs[1][cut%len(dirs[1]):]), c.Emit)
		if len(c.Msgs) != len(wants) {
			t.Fatalf("cut %d: %d messages, want %d", cut, len(c.Msgs), len(wants))
		}
	}
}

// TestTruncated delivers a large publish body captured in part: the frames
// after it still parse.
func TestTruncated(t *testing.T) {
	pub := append(meth(1, 60, 40, u16(0), ss("ex"), ss("key"), []byte{0}), content(1, strings.Repeat("x", 100000))...)
	next := meth(1, 60, 70, u16(0), ss("orders"), []byte{0})
	p := New(l7.Config{}).NewParser()
	var c parsertest.Collector
	p.Feed(parsertest.Whole(c2s, []byte(protocolHeader)), c.Emit)
	s := parsertest.Whole(c2s, pub[:4096])
	s.Len = len(pub)
	p.Feed(s, c.Emit)
	p.Feed(parsertest.Whole(c2s, next), c.Emit)
	if len(c.Msgs) != 2 || c.Msgs[0].Resource != "ex/key" || c.Msgs[1].RequestType != "Basic.Get" {
		t.Fatalf("%+v", c.Msgs)
	}
}

// TestMidConnection starts inside a body frame: framing recovers at the
// next segment, and the client side is learnt from server-only methods.
func TestMidConnection(t *testing.T) {
	body := content(1, strings.Repeat("y", 300))
	p := New(l7.Config{}).NewParser()
	var c parsertest.Collector
	p.Feed(parsertest.Whole(c2s, body[20:]), c.Emit)
	p.Feed(parsertest.Whole(s2c, meth(1, 50, 11, ss("q"), ls(""), ls(""))), c.Emit)
	p.Feed(parsertest.Whole(c2s, meth(1, 60, 70, u16(0), ss("orders"), []byte{0})), c.Emit)
	p.Feed(parsertest.Whole(s2c, meth(1, 60, 72, ss(""))), c.Emit)
	p.Feed(parsertest.Whole(c2s, meth(1, 20, 40, u16(200), ss("ok"), u16(0), u16(0))), c.Emit)
	p.Feed(parsertest.Whole(s2c, meth(1, 20, 41)), c.Emit)
	if len(c.Msgs) != 5 || c.Msgs[1].RequestType != "Basic.Get" || c.Msgs[2].Result != "empty" ||
		c.Msgs[3].RequestType != "Channel.Close" || c.Msgs[4].Type != l7.Response {
		t.Fatalf("%+v", c.Msgs)
	}
}

func TestHostile(t *testing.T) {
	cases := [][]byte{
		{1, 0, 1, 0xff, 0xff, 0xff, 0xff},          // huge size
		{9, 0, 0, 0, 0, 0, 0, frameEnd},            // unknown frame type
		frame(frameMethod, 1, []byte{0, 99, 0, 1}), // unknown class
		frame(frameMethod, 1, []byte{0, 50}),       // method id cut
		{1, 0, 1, 0, 0, 0, 4, 0, 50, 0, 10, 0x00},  // bad frame end
		meth(1, 50, 10, u16(0), []byte{200, 'a'}),  // short string past the end
		meth(1, 20, 40, u16(404)),                  // Close without text
		[]byte("AMQP\x01\x01\x00\x0a"),
		[]byte("GET / HTTP/1.1\r\n\r\n"),
	}
	get := meth(1, 60, 70, u16(0), ss("orders"), []byte{0})
	empty := meth(1, 60, 72, ss(""))
	for i, g := range cases {
		p := New(l7.Config{}).NewParser()
		var c parsertest.Collector
		p.Feed(parsertest.Whole(c2s, []byte(protocolHeader)), c.Emit)
		p.Feed(parsertest.Whole(c2s, g), c.Emit)
		p.Feed(parsertest.Whole(s2c, g), c.Emit)
		for range 3 {
			p.Feed(parsertest.Whole(c2s, get), c.Emit)
			p.Feed(parsertest.Whole(s2c, empty), c.Emit)
		}
		n := len(c.Msgs)
		if n < 2 || c.Msgs[n-2].RequestType != "Basic.Get" || c.Msgs[n-1].Result != "empty" {
			t.Errorf("case %d did not recover: %+v", i, c.Msgs)
		}
	}
}

func TestInfer(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want l7.Inference
	}{
		{"header", []byte(protocolHeader), l7.IsRequest},
		{"header prefix", []byte("AMQ"), l7.NeedMore},
		{"amqp 1.0", []byte("AMQP\x00\x01\x00\x00"), l7.NotMine},
		{"method frame", meth(1, 60, 70, u16(0), ss("orders"), []byte{0}), l7.IsRequest},
		{"method frame prefix", meth(1, 60, 70, u16(0), ss("orders"), []byte{0})[:6], l7.NeedMore},
		{"method bad end", append(meth(1, 60, 70, u16(0))[:13], 0, 0), l7.NotMine},
		{"unknown method", meth(1, 60, 99), l7.NotMine},
		{"body frame", frame(frameBody, 1, []byte("x")), l7.NotMine},
		{"http", []byte("GET / HTTP/1.1\r\n"), l7.NotMine},
		{"tls", []byte("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"), l7.NotMine},
		{"mqtt", []byte("\x10\x10\x00\x04MQTT\x04\x02\x00\x3c"), l7.NotMine},
	}
	p := New(l7.Config{})
	for _, tt := range tests {
		if got := p.Infer(tt.in, 6); got != tt.want {
			t.Errorf("%s: Infer = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestNormalizeKey(t *testing.T) {
	tests := map[string]string{
		"order.12345678.created": "order.*.created",
		"orders":                 "orders",
		"user.42":                "user.*",
		"v2.events":              "v2.events",
		"":                       "",
	}
	for in, want := range tests {
		if got := normalizeKey(in); got != want {
			t.Errorf("normalizeKey(%q) = %q, want %q", in, got, want)
		}
	}
	if queueEndpoint("amq.gen-JzTY20BRgKO-HjmUJj0wLg") != "amq.gen-*" {
		t.Error("generated queue name kept")
	}
}
