package nats

import (
	"strings"
	"testing"

	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/flowlog"
)

type want struct {
	typ      l7.MessageType
	reqType  string
	domain   string
	endpoint string
	oneWay   bool
	status   flowlog.ResponseStatus
	exc      string
	code     int32 // -1: none
	hasID    bool
	length   int64 // -2: not checked
}

func rq(t, domain, ep string) want {
	return want{typ: l7.Request, reqType: t, domain: domain, endpoint: ep, code: -1, length: -2}
}
func ow(t, domain, ep string) want { w := rq(t, domain, ep); w.oneWay = true; return w }
func rp() want                     { return want{typ: l7.Response, code: -1, length: -2} }
func rpErr(st flowlog.ResponseStatus, exc string) want {
	return want{typ: l7.Response, status: st, exc: exc, code: -1, length: -2}
}
func withID(w want) want { w.hasID = true; return w }

func check(t *testing.T, got []l7.Message, wants []want) {
	t.Helper()
	if len(got) != len(wants) {
		for _, m := range got {
			t.Logf("  type=%d %q %q ep=%q oneway=%v status=%d exc=%q id=%v len=%d", m.Type, m.RequestType, m.Domain, m.Endpoint, m.OneWay, m.Status, m.Exception, m.HasRequestID, m.Length)
		}
		t.Fatalf("got %d messages, want %d", len(got), len(wants))
	}
	var ids = map[uint64]bool{}
	for i, w := range wants {
		m := got[i]
		if m.Type != w.typ || m.Protocol != flowlog.L7NATS {
			t.Errorf("#%d: type %d, want %d", i, m.Type, w.typ)
			continue
		}
		if w.typ == l7.Request {
			if m.RequestType != w.reqType || m.Domain != w.domain || m.Resource != w.domain || m.Endpoint != w.endpoint || m.OneWay != w.oneWay {
				t.Errorf("#%d: request %q %q %q endpoint %q oneway %v, want %q %q %q %v", i, m.RequestType, m.Domain, m.Resource, m.Endpoint, m.OneWay, w.reqType, w.domain, w.endpoint, w.oneWay)
			}
		} else if m.Status != w.status || m.Exception != w.exc {
			t.Errorf("#%d: reply status %d %q, want %d %q", i, m.Status, m.Exception, w.status, w.exc)
		}
		if w.code >= 0 && (!m.HasCode || m.Code != w.code) {
			t.Errorf("#%d: code %d (%v), want %d", i, m.Code, m.HasCode, w.code)
		}
		if m.HasRequestID != w.hasID {
			t.Errorf("#%d: has id %v, want %v", i, m.HasRequestID, w.hasID)
		}
		if m.HasRequestID {
			if m.Type == l7.Request {
				ids[m.RequestID] = true
			} else if !ids[m.RequestID] {
				t.Errorf("#%d: reply id %d matches no request", i, m.RequestID)
			}
		}
		if w.length != -2 && m.Length != w.length {
			t.Errorf("#%d: length %d, want %d", i, m.Length, w.length)
		}
	}
}

const (
	info    = "INFO {\"server_id\":\"NABC\",\"version\":\"2.10.0\",\"max_payload\":1048576}\r\n"
	connect = "CONNECT {\"verbose\":false,\"pedantic\":false,\"pass\":\"secret\",\"auth_token\":\"tok\",\"lang\":\"go\",\"protocol\":1}\r\nPING\r\n"
)

func TestParse(t *testing.T) {
	for _, tt := range []struct {
		name  string
		segs  []seg
		want  []want
		split bool
	}{
		{"connect pub sub", []seg{resp(info), req(connect), resp("PONG\r\n"),
			req("SUB orders.* 1\r\nPUB orders.42 5\r\nhello\r\n"), resp("MSG orders.42 1 5\r\nhello\r\n"),
			req("UNSUB 1\r\nPING\r\n"), resp("PONG\r\n")},
			[]want{rq("CONNECT", "", "CONNECT"), rq("PING", "", "PING"), rp(), rp(),
				ow("SUB", "orders.*", "orders.*"), ow("PUB", "orders.42", "orders.*"), ow("MSG", "orders.42", "orders.*"),
				ow("UNSUB", "orders.*", "orders.*"), rq("PING", "", "PING"), rp()}, true},
		{"request reply", []seg{resp(info), req(connect), resp("PONG\r\n"),
			req("SUB _INBOX.abcdefghijklmnopqrstuv.* 1\r\nPUB svc.echo _INBOX.abcdefghijklmnopqrstuv.k1 2\r\nhi\r\nPUB svc.echo _INBOX.abcdefghijklmnopqrstuv.k2 2\r\nho\r\n"),
			resp("MSG _INBOX.abcdefghijklmnopqrstuv.k2 1 2\r\nHO\r\nHMSG _INBOX.abcdefghijklmnopqrstuv.k1 1 28 28\r\nNATS/1.0 503 No Responders\r\n\r\n\r\n"),
			req("PUB other.subject _INBOX.elsewhere.x 0\r\n\r\n")},
			[]want{rq("CONNECT", "", "CONNECT"), rq("PING", "", "PING"), rp(), rp(),
				ow("SUB", "_INBOX.abcdefghijklmnopqrstuv.*", "_INBOX.*"), withID(rq("PUB", "svc.echo", "svc.echo")), withID(rq("PUB", "svc.echo", "svc.echo")),
				withID(rp()), withID(want{typ: l7.Response, status: flowlog.StatusServerError, exc: "No Responders", code: 503, length: -2}),
				ow("PUB", "other.subject", "other.subject")}, true},
		{"verbose", []seg{resp(info), req("CONNECT {\"verbose\":true}\r\nPING\r\n"), resp("+OK\r\nPONG\r\n"),
			req("PUB a 1\r\nx\r\nSUB b 2\r\nPUB c.d 1\r\ny\r\n"), resp("+OK\r\n+OK\r\n-ERR 'Permissions Violation for Publish to \"c.d\"'\r\n")},
			[]want{rq("CONNECT", "", "CONNECT"), rq("PING", "", "PING"), rp(), rp(),
				rq("PUB", "a", "a"), rq("SUB", "b", "b"), rq("PUB", "c.d", "c.d"), rp(), rp(),
				rpErr(flowlog.StatusClientError, "Permissions Violation for Publish to \"c.d\"")}, true},
		{"auth error", []seg{resp(info), req(connect), resp("-ERR 'Authorization Violation'\r\n")},
			[]want{rq("CONNECT", "", "CONNECT"), rq("PING", "", "PING"), rpErr(flowlog.StatusClientError, "Authorization Violation"),
				rpErr(flowlog.StatusClientError, "Authorization Violation")}, true},
		{"auth error before the ping", []seg{resp(info), req("CONNECT {\"auth_token\":\"x\"}\r\n"), resp("-ERR 'Authorization Violation'\r\n"), req("PING\r\n")},
			[]want{rq("CONNECT", "", "CONNECT"), rpErr(flowlog.StatusClientError, "Authorization Violation"),
				rq("PING", "", "PING"), rpErr(flowlog.StatusClientError, "Authorization Violation")}, true},
		{"server error and keep-alives", []seg{resp(info), req(connect), resp("PONG\r\nPING\r\n"), req("PONG\r\n"), resp("-ERR 'Slow Consumer'\r\n")},
			[]want{rq("CONNECT", "", "CONNECT"), rq("PING", "", "PING"), rp(), rp(), rpErr(flowlog.StatusServerError, "Slow Consumer")}, true},
		{"hpub", []seg{req("HPUB orders.new 21 26\r\nNATS/1.0\r\nX-Id: 1\r\n\r\nhello\r\n")},
			[]want{ow("HPUB", "orders.new", "orders.new")}, true},
		{"large payload cut by the capture", []seg{req("SUB x 1\r\n"), {Dir: 0, Data: "PUB big 10000\r\n" + strings.Repeat("x", 100), Gap: 9902},
			req("PUB small 1\r\ny\r\n"), {Dir: 1, Data: "MSG x 1 5000\r\nzz", Gap: 5000}, req("PING\r\n"), resp("PONG\r\n")},
			[]want{ow("SUB", "x", "x"), {typ: l7.Request, reqType: "PUB", domain: "big", endpoint: "big", oneWay: true, code: -1, length: 10017},
				ow("PUB", "small", "small"), ow("MSG", "x", "x"), rq("PING", "", "PING"), rp()}, false},
		{"mid-connection start", []seg{req("llo\r\nPUB a 1\r\nx\r\n"), resp("PING\r\n"), req("PUB b 1\r\ny\r\n")},
			[]want{ow("PUB", "b", "b")}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			check(t, run(newParser(), tt.segs, false), tt.want)
			if tt.split {
				check(t, run(newParser(), split(tt.segs, 1), false), tt.want)
				check(t, run(newParser(), split(tt.segs, 6), false), tt.want)
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
		{"huge payload", []seg{req("PUB a 99999999999\r\n"), req("PUB b 0\r\n\r\n")}, []want{ow("PUB", "b", "b")}},
		{"bad line", []seg{req("PUB a\r\n"), req("PUB b 0\r\n\r\n")}, []want{ow("PUB", "b", "b")}},
		{"long line", []seg{req("PUB " + strings.Repeat("a", 9000) + " 0\r\n\r\n"), req("PUB b 0\r\n\r\n")},
			[]want{ow("PUB", strings.Repeat("a", maxResource), strings.Repeat("a", maxResource)), ow("PUB", "b", "b")}},
		{"long line split", split([]seg{req("PUB " + strings.Repeat("a", 9000) + " 0\r\n\r\n"), req("PUB b 0\r\n\r\n")}, 1000), []want{ow("PUB", "b", "b")}},
		{"many subs", []seg{req(strings.Repeat("SUB x.y 1\r\n", 500) + "PUB b 0\r\n\r\n")}, append(repeat(ow("SUB", "x.y", "x.y"), 500), ow("PUB", "b", "b"))},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := newParser()
			check(t, run(p, tt.segs, false), tt.want)
			if p.dirs[0].line.Len() > maxLine || len(p.replies) > maxReplies {
				t.Fatal("buffers over their bounds")
			}
		})
	}
}

func repeat(w want, n int) []want {
	out := make([]want, n)
	for i := range out {
		out[i] = w
	}
	return out
}

func TestEndpoint(t *testing.T) {
	for in, want := range map[string]string{
		"orders.created":  "orders.created",
		"orders.42.items": "orders.*.items",
		"user.123e4567-e89b-12d3-a456-426614174000": "user.*",
		"_INBOX.Ldhc3mFQ2sXZ7Q8pG1eC9k.ab12":        "_INBOX.*",
		"$JS.ACK.orders.c1.1.5.5.1700000000000.0":   "$JS.ACK.orders.c1.*.*.*.*.*",
		"svc.Ldhc3mFQ2sXZ7Q8pG1eC9k":                "svc.*",
		"events.>":                                  "events.>",
	} {
		if got := endpoint(in); got != want {
			t.Errorf("endpoint(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestInfer(t *testing.T) {
	p := New(l7.Config{})
	for _, tt := range []struct {
		in   string
		want l7.Inference
	}{
		{info, l7.IsResponse},
		{"INF", l7.NeedMore},
		{connect, l7.IsRequest},
		{"CONNECT example.com:443 HTTP/1.1\r\n", l7.NotMine},
		{"PUB a.b 5\r\nhello\r\n", l7.IsRequest},
		{"SUB a.b 1\r\n", l7.IsRequest},
		{"MSG a.b 1 5\r\nhello\r\n", l7.IsResponse},
		{"PING\r\n", l7.IsRequest},
		{"PONG\r\n", l7.IsResponse},
		{"-ERR 'Unknown Protocol Operation'\r\n", l7.IsResponse},
		{"+OK\r\n", l7.NotMine},
		{"+PONG\r\n", l7.NotMine},
		{"GET / HTTP/1.1\r\n", l7.NotMine},
		{"INFO\r\n", l7.NotMine},
		{"*1\r\n$4\r\nPING\r\n", l7.NotMine},
		{"\x16\x03\x01", l7.NotMine},
	} {
		if got := p.Infer([]byte(tt.in), 6); got != tt.want {
			t.Errorf("Infer(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestMatchSubject(t *testing.T) {
	for _, tt := range []struct {
		pattern, subject string
		want             bool
	}{
		{"a.b", "a.b", true}, {"a.*", "a.b", true}, {"a.*", "a.b.c", false}, {"a.>", "a.b.c", true},
		{"a.>", "a", false}, {">", "a", true}, {"a.b", "a", false}, {"a", "a.b", false}, {"*", "", false},
	} {
		if got := matchSubject(tt.pattern, []byte(tt.subject)); got != tt.want {
			t.Errorf("matchSubject(%q, %q) = %v, want %v", tt.pattern, tt.subject, got, tt.want)
		}
	}
}
