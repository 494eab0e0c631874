package memcached

import (
	"encoding/binary"
	"strings"
	"testing"

	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/flowlog"
)

type want struct {
	typ      l7.MessageType
	reqType  string
	resource string
	oneWay   bool
	status   flowlog.ResponseStatus
	exc      string
	result   string
	code     int32 // -1: none
	length   int64 // -2: not checked
	id       int64 // -1: none
}

func rq(t, res string) want {
	return want{typ: l7.Request, reqType: t, resource: res, code: -1, length: -2, id: -1}
}
func ow(t, res string) want { w := rq(t, res); w.oneWay = true; return w }
func rp(result string) want {
	return want{typ: l7.Response, result: result, code: -1, length: -2, id: -1}
}
func rpErr(st flowlog.ResponseStatus, exc string) want {
	return want{typ: l7.Response, status: st, exc: exc, code: -1, length: -2, id: -1}
}

func check(t *testing.T, got []l7.Message, wants []want) {
	t.Helper()
	if len(got) != len(wants) {
		for _, m := range got {
			t.Logf("  type=%d %q %q oneway=%v status=%d exc=%q result=%q len=%d", m.Type, m.RequestType, m.Resource, m.OneWay, m.Status, m.Exception, m.Result, m.Length)
		}
		t.Fatalf("got %d messages, want %d", len(got), len(wants))
	}
	for i, w := range wants {
		m := got[i]
		if m.Type != w.typ || m.Protocol != flowlog.L7Memcached {
			t.Errorf("#%d: type %d, want %d", i, m.Type, w.typ)
			continue
		}
		if w.typ == l7.Request {
			if m.RequestType != w.reqType || m.Resource != w.resource || m.Endpoint != w.reqType || m.OneWay != w.oneWay {
				t.Errorf("#%d: request %q %q endpoint %q oneway %v, want %q %q %v", i, m.RequestType, m.Resource, m.Endpoint, m.OneWay, w.reqType, w.resource, w.oneWay)
			}
		} else if m.Status != w.status || m.Exception != w.exc || m.Result != w.result {
			t.Errorf("#%d: reply status %d %q result %q, want %d %q %q", i, m.Status, m.Exception, m.Result, w.status, w.exc, w.result)
		}
		if w.code >= 0 && (!m.HasCode || m.Code != w.code) {
			t.Errorf("#%d: code %d (%v), want %d", i, m.Code, m.HasCode, w.code)
		}
		if w.id >= 0 && (!m.HasRequestID || m.RequestID != uint64(w.id)) {
			t.Errorf("#%d: request id %d (%v), want %d", i, m.RequestID, m.HasRequestID, w.id)
		}
		if w.length != -2 && m.Length != w.length {
			t.Errorf("#%d: length %d, want %d", i, m.Length, w.length)
		}
	}
}

const (
	setCmd = "set user:1 0 0 5\r\nhello\r\n"
	getCmd = "get user:1\r\n"
	getHit = "VALUE user:1 0 5\r\nhello\r\nEND\r\n"
)

func TestParseText(t *testing.T) {
	big := strings.Repeat("v", 1000)
	for _, tt := range []struct {
		name  string
		segs  []seg
		want  []want
		split bool
	}{
		{"set get", []seg{req(setCmd), resp("STORED\r\n"), req(getCmd), resp(getHit)},
			[]want{rq("set", "set user:1"), rp(""), rq("get", "get user:1"), rp("hit")}, true},
		{"multi get miss", []seg{req("get a b c\r\n"), resp("VALUE b 0 1\r\nx\r\nEND\r\n"), req("gets a\r\n"), resp("END\r\n")},
			[]want{rq("get", "get a b c"), rp("hit"), rq("gets", "gets a"), rp("miss")}, true},
		{"pipeline and noreply", []seg{req("set a 0 0 1 noreply\r\n1\r\nincr a 5\r\ndelete b\r\ntouch a 10 noreply\r\ncas a 0 0 1 99\r\n2\r\n"),
			resp("6\r\nNOT_FOUND\r\nEXISTS\r\n")},
			[]want{ow("set", "set a"), rq("incr", "incr a"), rq("delete", "delete b"), ow("touch", "touch a"), rq("cas", "cas a"),
				rp(""), rp(""), rp("")}, true},
		{"errors", []seg{req(getCmd), resp("END\r\n"), req("bogus\r\n"), resp("ERROR\r\n"), req("incr a x\r\n"), resp("CLIENT_ERROR invalid numeric delta argument\r\n"),
			req(setCmd), resp("SERVER_ERROR out of memory storing object\r\n")},
			[]want{rq("get", "get user:1"), rp("miss"), rq("unknown", "unknown"), rpErr(flowlog.StatusClientError, "ERROR"), rq("incr", "incr a"),
				rpErr(flowlog.StatusClientError, "invalid numeric delta argument"), rq("set", "set user:1"),
				rpErr(flowlog.StatusServerError, "out of memory storing object")}, true},
		{"stats version", []seg{req("stats\r\n"), resp("STAT pid 1\r\nSTAT uptime 5\r\nEND\r\n"), req("version\r\n"), resp("VERSION 1.6.18\r\n"),
			req("flush_all\r\n"), resp("OK\r\n"), req("quit\r\n")},
			[]want{rq("stats", "stats"), rp(""), rq("version", "version"), rp(""), rq("flush_all", "flush_all"), rp(""), ow("quit", "quit")}, true},
		{"meta", []seg{req("ms k 2 T0\r\nhi\r\nmg k v\r\nmg x v\r\nmn\r\n"), resp("HD\r\nVA 2\r\nhi\r\nEN\r\nMN\r\n")},
			[]want{rq("ms", "ms k"), rq("mg", "mg k"), rq("mg", "mg x"), rq("mn", "mn"), rp(""), rp("hit"), rp("miss"), rp("")}, true},
		{"large value cut by the capture", []seg{{Dir: 0, Data: "set big 0 0 1000\r\n" + big[:100], Gap: 902}, resp("STORED\r\n"),
			req("get big\r\n"), {Dir: 1, Data: "VALUE big 0 1000\r\n" + big[:50], Gap: 957}, req(getCmd), resp(getHit)},
			[]want{{typ: l7.Request, reqType: "set", resource: "set big", code: -1, length: 1020, id: -1}, rp(""),
				rq("get", "get big"), {typ: l7.Response, result: "hit", code: -1, length: 1025, id: -1}, rq("get", "get user:1"), rp("hit")}, false},
		{"gap in a line loses then recovers", []seg{{Dir: 0, Data: "get ab", Gap: 100}, resp("END\r\n"), req("gibberish"), req(getCmd), resp(getHit)},
			[]want{rp("miss"), rq("get", "get user:1"), rp("hit")}, false},
		{"mid-connection start", []seg{req("llo\r\n" + getCmd), resp("lo\r\nEND\r\n"), req(getCmd), resp(getHit)},
			[]want{rq("get", "get user:1"), rp("hit")}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			check(t, run(newParser(), tt.segs, false), tt.want)
			if tt.split {
				check(t, run(newParser(), split(tt.segs, 1), false), tt.want)
				check(t, run(newParser(), split(tt.segs, 5), false), tt.want)
			}
		})
	}
}

// frame builds a binary frame.
func frame(magic, op byte, status uint16, opaque uint32, extras, key, value string) string {
	h := make([]byte, headerLen, headerLen+len(extras)+len(key)+len(value))
	h[0], h[1] = magic, op
	binary.BigEndian.PutUint16(h[2:], uint16(len(key)))
	h[4] = byte(len(extras))
	binary.BigEndian.PutUint16(h[6:], status)
	binary.BigEndian.PutUint32(h[8:], uint32(len(extras)+len(key)+len(value)))
	binary.BigEndian.PutUint32(h[12:], opaque)
	return string(append(append(append(h, extras...), key...), value...))
}

func TestParseBinary(t *testing.T) {
	set := frame(magicRequest, 0x01, 0, 1, "\x00\x00\x00\x00\x00\x00\x00\x00", "k", "value")
	get := frame(magicRequest, 0x00, 0, 2, "", "k", "")
	hit := frame(magicResponse, 0x00, 0, 2, "\x00\x00\x00\x00", "", "value")
	miss := frame(magicResponse, 0x00, 1, 3, "", "", "Not found")
	bid := func(w want, id, code int32) want { w.id, w.code = int64(id), code; return w }
	for _, tt := range []struct {
		name string
		segs []seg
		want []want
	}{
		{"set get", []seg{req(set), resp(frame(magicResponse, 0x01, 0, 1, "", "", "")), req(get), resp(hit)},
			[]want{bid(rq("set", "set k"), 1, -1), bid(rp(""), 1, 0), bid(rq("get", "get k"), 2, -1), bid(rp("hit"), 2, 0)}},
		{"quiet and noop", []seg{req(frame(magicRequest, 0x09, 0, 7, "", "a", "") + frame(magicRequest, 0x09, 0, 8, "", "b", "") +
			frame(magicRequest, 0x0a, 0, 9, "", "", "")),
			resp(frame(magicResponse, 0x09, 0, 7, "\x00\x00\x00\x00", "", "x") + frame(magicResponse, 0x0a, 0, 9, "", "", ""))},
			[]want{ow("getq", "getq a"), ow("getq", "getq b"), bid(rq("noop", "noop"), 9, -1), bid(rp(""), 9, 0)}},
		{"miss and errors", []seg{req(frame(magicRequest, 0x00, 0, 3, "", "zz", "")), resp(miss),
			req(frame(magicRequest, 0x05, 0, 4, strings.Repeat("\x00", 20), "k", "")), resp(frame(magicResponse, 0x05, 6, 4, "", "", "Non-numeric server-side value for incr or decr")),
			req(frame(magicRequest, 0x01, 0, 5, strings.Repeat("\x00", 8), "k", "v")), resp(frame(magicResponse, 0x01, 0x82, 5, "", "", "Out of memory"))},
			[]want{bid(rq("get", "get zz"), 3, -1), bid(rp("miss"), 3, 1),
				bid(rq("incr", "incr k"), 4, -1), bid(rpErr(flowlog.StatusClientError, "Incr/Decr on non-numeric value"), 4, 6),
				bid(rq("set", "set k"), 5, -1), bid(rpErr(flowlog.StatusServerError, "Out of memory"), 5, 0x82)}},
		{"stats", []seg{req(frame(magicRequest, 0x10, 0, 6, "", "", "")),
			resp(frame(magicResponse, 0x10, 0, 6, "", "pid", "1") + frame(magicResponse, 0x10, 0, 6, "", "uptime", "2") + frame(magicResponse, 0x10, 0, 6, "", "", ""))},
			[]want{bid(rq("stats", "stats"), 6, -1), bid(rp(""), 6, 0)}},
		{"sasl value never stored", []seg{req(frame(magicRequest, 0x21, 0, 1, "", "PLAIN", "\x00user\x00secret")), resp(frame(magicResponse, 0x21, 0x20, 1, "", "", "Auth failure"))},
			[]want{rq("sasl_auth", "sasl_auth PLAIN"), rpErr(flowlog.StatusClientError, "Authentication required")}},
		{"large value cut", []seg{{Dir: 0, Data: frame(magicRequest, 0x01, 0, 1, strings.Repeat("\x00", 8), "k", strings.Repeat("v", 2000))[:100], Gap: 2000 + 33 - 100},
			resp(frame(magicResponse, 0x01, 0, 1, "", "", "")), req(get), resp(hit)},
			[]want{{typ: l7.Request, reqType: "set", resource: "set k", code: -1, length: 2033, id: 1}, rp(""), rq("get", "get k"), rp("hit")}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			check(t, run(newParser(), tt.segs, false), tt.want)
			if !strings.Contains(tt.name, "cut") {
				check(t, run(newParser(), split(tt.segs, 1), false), tt.want)
			}
		})
	}
}

func TestHostile(t *testing.T) {
	for _, tt := range []struct {
		name string
		segs []seg
		want []want
	}{
		{"huge data length", []seg{req("set a 0 0 99999999999999\r\n"), req(getCmd), resp("END\r\n")}, []want{rq("get", "get user:1"), rp("miss")}},
		{"bad VALUE", []seg{req(getCmd), resp("VALUE a 0 zz\r\n"), resp("END\r\n")}, []want{rq("get", "get user:1"), rpErr(flowlog.StatusParseFailed, ""), rp("miss")}},
		{"long line", []seg{req("get " + strings.Repeat("k", 5000) + "\r\n"), resp("END\r\n")}, []want{rq("get", "get "+strings.Repeat("k", 252)), rp("miss")}},
		{"binary huge body", []seg{req("\x80\x00\x00\x01\x00\x00\x00\x00\xff\xff\xff\xff" + strings.Repeat("\x00", 12)), req(frame(magicRequest, 0, 0, 1, "", "k", "")),
			resp(frame(magicResponse, 0, 1, 1, "", "", ""))}, []want{rq("get", "get k"), rp("miss")}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := newParser()
			check(t, run(p, tt.segs, false), tt.want)
			for _, d := range p.dirs {
				if d.line.Len() > maxLine {
					t.Fatalf("line buffer %d", d.line.Len())
				}
			}
		})
	}
}

func TestInfer(t *testing.T) {
	p := New(l7.Config{})
	for _, tt := range []struct {
		in   string
		want l7.Inference
	}{
		{setCmd, l7.IsRequest},
		{getCmd, l7.IsRequest},
		{"get", l7.NeedMore},
		{"set a 0 0 x\r\n", l7.NotMine},
		{"version\r\n", l7.IsRequest},
		{"quit\r\n", l7.NotMine},
		{"STORED\r\n", l7.IsResponse},
		{"VALUE k 0 5\r\nhello", l7.IsResponse},
		{"OK\r\n", l7.NotMine},
		{"GET / HTTP/1.1\r\n", l7.NotMine},
		{"*1\r\n$4\r\nPING\r\n", l7.NotMine},
		{"+OK\r\n", l7.NotMine},
		{frame(magicRequest, 0, 0, 1, "", "k", ""), l7.IsRequest},
		{frame(magicResponse, 0, 1, 1, "", "", ""), l7.IsResponse},
		{"\x80\x00\x00", l7.NeedMore},
		{"\x80\x99", l7.NotMine},
		{"\x16\x03\x01\x00", l7.NotMine},
	} {
		if got := p.Infer([]byte(tt.in), 6); got != tt.want {
			t.Errorf("Infer(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}
