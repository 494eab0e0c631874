package redis

import (
	"strings"
	"testing"

	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/flowlog"
)

// want is the expected summary of one emitted message.
type want struct {
	typ      l7.MessageType
	reqType  string
	resource string
	status   flowlog.ResponseStatus
	exc      string
	length   int64
}

func rq(t, res string) want { return want{typ: l7.Request, reqType: t, resource: res, length: -2} }
func ok() want              { return want{typ: l7.Response, length: -2} }
func fail(st flowlog.ResponseStatus, exc string) want {
	return want{typ: l7.Response, status: st, exc: exc, length: -2}
}

func bad() want { return fail(flowlog.StatusParseFailed, "") }

func check(t *testing.T, got []l7.Message, wants []want) {
	t.Helper()
	if len(got) != len(wants) {
		for _, m := range got {
			t.Logf("  type=%d %q %q status=%d exc=%q len=%d", m.Type, m.RequestType, m.Resource, m.Status, m.Exception, m.Length)
		}
		t.Fatalf("got %d messages, want %d", len(got), len(wants))
	}
	for i, w := range wants {
		m := got[i]
		if m.Type != w.typ || m.Protocol != flowlog.L7Redis {
			t.Errorf("#%d: type %d protocol %v, want %d", i, m.Type, m.Protocol, w.typ)
			continue
		}
		if w.typ == l7.Request {
			if m.RequestType != w.reqType || m.Resource != w.resource || m.Endpoint != w.reqType {
				t.Errorf("#%d: request %q %q endpoint %q, want %q %q", i, m.RequestType, m.Resource, m.Endpoint, w.reqType, w.resource)
			}
		} else if m.Status != w.status || m.Exception != w.exc {
			t.Errorf("#%d: reply status %d %q, want %d %q", i, m.Status, m.Exception, w.status, w.exc)
		}
		if w.length != -2 && m.Length != w.length {
			t.Errorf("#%d: length %d, want %d", i, m.Length, w.length)
		}
	}
}

const (
	setReq = "*3\r\n$3\r\nSET\r\n$5\r\nmykey\r\n$7\r\nmyvalue\r\n"
	getReq = "*2\r\n$3\r\nGET\r\n$5\r\nmykey\r\n"
	getRep = "$7\r\nmyvalue\r\n"
)

func TestParse(t *testing.T) {
	long := strings.Repeat("k", 300)
	for _, tt := range []struct {
		name        string
		keepSecrets bool
		segs        []seg
		want        []want
	}{
		{"set get", false, []seg{req(setReq), resp("+OK\r\n"), req(getReq), resp(getRep)},
			[]want{rq("SET", "SET mykey ?"), ok(), rq("GET", "GET mykey"), ok()}},
		{"keep secrets", true, []seg{req(setReq), resp("+OK\r\n")},
			[]want{rq("SET", "SET mykey myvalue"), ok()}},
		{"pipeline", false, []seg{req(setReq + getReq + "*2\r\n$4\r\nINCR\r\n$5\r\nmykey\r\n"),
			resp("+OK\r\n" + getRep + "-ERR value is not an integer or out of range\r\n")},
			[]want{rq("SET", "SET mykey ?"), rq("GET", "GET mykey"), rq("INCR", "INCR mykey"),
				ok(), ok(), fail(flowlog.StatusClientError, "ERR value is not an integer or out of range")}},
		{"wrongtype", false, []seg{req("*3\r\n$5\r\nLPUSH\r\n$5\r\nmykey\r\n$1\r\nx\r\n"),
			resp("-WRONGTYPE Operation against a key holding the wrong kind of value\r\n")},
			[]want{rq("LPUSH", "LPUSH mykey ?"), fail(flowlog.StatusClientError, "WRONGTYPE Operation against a key holding the wrong kind of value")}},
		{"server error", false, []seg{req(getReq), resp("-LOADING Redis is loading the dataset in memory\r\n")},
			[]want{rq("GET", "GET mykey"), fail(flowlog.StatusServerError, "LOADING Redis is loading the dataset in memory")}},
		{"auth masked even when keeping secrets", true, []seg{req("*2\r\n$4\r\nAUTH\r\n$6\r\nsecret\r\n"), resp("+OK\r\n"),
			req("*3\r\n$4\r\nAUTH\r\n$4\r\nuser\r\n$6\r\nsecret\r\n"), resp("-WRONGPASS invalid username-password pair\r\n")},
			[]want{rq("AUTH", "AUTH ?"), ok(), rq("AUTH", "AUTH ? ?"), fail(flowlog.StatusClientError, "WRONGPASS invalid username-password pair")}},
		{"hello auth", true, []seg{req("*5\r\n$5\r\nHELLO\r\n$1\r\n3\r\n$4\r\nAUTH\r\n$7\r\ndefault\r\n$6\r\nsecret\r\n"),
			resp("%1\r\n$6\r\nserver\r\n$5\r\nredis\r\n")},
			[]want{rq("HELLO", "HELLO 3 AUTH ? ?"), ok()}},
		{"mset", false, []seg{req("*5\r\n$4\r\nMSET\r\n$1\r\na\r\n$1\r\n1\r\n$1\r\nb\r\n$1\r\n2\r\n"), resp("+OK\r\n")},
			[]want{rq("MSET", "MSET a ? b ?"), ok()}},
		{"subcommand", false, []seg{req("*3\r\n$6\r\nconfig\r\n$3\r\nget\r\n$9\r\nmaxmemory\r\n"), resp("*2\r\n$9\r\nmaxmemory\r\n$1\r\n0\r\n"),
			req("*4\r\n$6\r\nCONFIG\r\n$3\r\nSET\r\n$9\r\nmaxmemory\r\n$3\r\n100\r\n"), resp("+OK\r\n")},
			[]want{rq("CONFIG GET", "CONFIG GET maxmemory"), ok(), rq("CONFIG SET", "CONFIG SET maxmemory ?"), ok()}},
		{"module command", false, []seg{req(getReq), resp(getRep), req("*3\r\n$8\r\nJSON.GET\r\n$3\r\ndoc\r\n$1\r\n$\r\n"), resp("$2\r\n{}\r\n")},
			[]want{rq("GET", "GET mykey"), ok(), rq("JSON.GET", "JSON.GET doc ?"), ok()}},
		{"inline", false, []seg{req("PING\r\n"), resp("+PONG\r\n"), req("GET mykey\r\n"), resp("$-1\r\n")},
			[]want{rq("PING", "PING"), ok(), rq("GET", "GET mykey"), ok()}},
		{"resource cut", false, []seg{req("*2\r\n$3\r\nGET\r\n$300\r\n" + long + "\r\n"), resp("$-1\r\n")},
			[]want{rq("GET", "GET "+long[:252]), ok()}},
		{"nested reply", false, []seg{req("*2\r\n$4\r\nEXEC\r\n$0\r\n\r\n"),
			resp("*3\r\n+OK\r\n*2\r\n:1\r\n-ERR inner\r\n%1\r\n+a\r\n,1.5\r\n")},
			[]want{rq("EXEC", "EXEC "), ok()}},
		{"resp3 bulk error and attribute", false, []seg{req(getReq + getReq),
			resp("!21\r\nSYNTAX invalid syntax\r\n|1\r\n+key-popularity\r\n%1\r\n$1\r\na\r\n,0.1923\r\n" + getRep)},
			[]want{rq("GET", "GET mykey"), rq("GET", "GET mykey"), fail(flowlog.StatusClientError, "SYNTAX invalid syntax"), ok()}},
		{"resp2 pubsub", false, []seg{req("*3\r\n$9\r\nSUBSCRIBE\r\n$2\r\nch\r\n$3\r\nch2\r\n"),
			resp("*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n*3\r\n$9\r\nsubscribe\r\n$3\r\nch2\r\n:2\r\n"),
			resp("*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$5\r\nhello\r\n"),
			req("*1\r\n$4\r\nPING\r\n"), resp("*2\r\n$4\r\npong\r\n$0\r\n\r\n"),
			req("*1\r\n$11\r\nUNSUBSCRIBE\r\n"),
			resp("*3\r\n$11\r\nunsubscribe\r\n$2\r\nch\r\n:1\r\n*3\r\n$11\r\nunsubscribe\r\n$3\r\nch2\r\n:0\r\n")},
			[]want{rq("SUBSCRIBE", "SUBSCRIBE ch ch2"), ok(), rq("PING", "PING"), ok(), rq("UNSUBSCRIBE", "UNSUBSCRIBE"), ok()}},
		{"resp3 push", false, []seg{req("*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n"), resp("%1\r\n$5\r\nproto\r\n:3\r\n"),
			req("*2\r\n$9\r\nSUBSCRIBE\r\n$2\r\nch\r\n"), resp(">3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n"),
			resp(">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n"), req(getReq),
			resp(">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n" + getRep)},
			[]want{rq("HELLO", "HELLO 3"), ok(), rq("SUBSCRIBE", "SUBSCRIBE ch"), ok(), rq("GET", "GET mykey"), ok()}},
		{"large value cut by the capture", false, []seg{
			{Dir: 0, Data: "*3\r\n$3\r\nSET\r\n$3\r\nbig\r\n$1000\r\n" + strings.Repeat("v", 100), Gap: 902},
			resp("+OK\r\n"), req(getReq), {Dir: 1, Data: "$1000\r\n" + strings.Repeat("v", 50), Gap: 952}, req(getReq), resp(getRep)},
			[]want{{typ: l7.Request, reqType: "SET", resource: "SET big ?", length: int64(len("*3\r\n$3\r\nSET\r\n$3\r\nbig\r\n$1000\r\n")) + 1002},
				ok(), rq("GET", "GET mykey"), {typ: l7.Response, length: 1009}, rq("GET", "GET mykey"), ok()}},
		{"gap in a header loses then recovers", false, []seg{
			{Dir: 0, Data: "*3\r\n$3\r\nSET\r\n$3\r\nbig\r\n$10", Gap: 500}, resp("+OK\r\n"),
			req("garbage in the middle\r\n"), req(getReq), resp(getRep)},
			[]want{{typ: l7.Request, reqType: "SET", resource: "SET big ?", length: -1}, ok(), rq("GET", "GET mykey"), ok()}},
		{"mid-connection start", false, []seg{req("lue\r\n" + getReq), resp("alue\r\n"), req(setReq), resp("+OK\r\n")},
			[]want{rq("SET", "SET mykey ?"), ok()}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			check(t, run(newParser(tt.keepSecrets), tt.segs, false), tt.want)
			// The same exchange split at every byte boundary.
			if tt.name != "mid-connection start" && !strings.Contains(tt.name, "gap") && !strings.Contains(tt.name, "cut by") {
				check(t, run(newParser(tt.keepSecrets), split(tt.segs, 1), false), tt.want)
				check(t, run(newParser(tt.keepSecrets), split(tt.segs, 7), false), tt.want)
			}
		})
	}
}

func TestHostile(t *testing.T) {
	deep := strings.Repeat("*1\r\n", 100) + ":1\r\n"
	for _, tt := range []struct {
		name string
		segs []seg
		want []want
	}{
		{"huge array", []seg{req("*99999999999\r\n"), req(getReq), resp(getRep)}, []want{rq("GET", "GET mykey"), ok()}},
		{"huge bulk", []seg{req(getReq), resp("$99999999999999\r\nabc"), resp(getRep)}, []want{rq("GET", "GET mykey"), bad(), ok()}},
		{"negative count", []seg{req(getReq), resp("*-5\r\n"), req(getReq), resp(getRep)}, []want{rq("GET", "GET mykey"), bad(), rq("GET", "GET mykey"), ok()}},
		{"deep nesting", []seg{req(getReq), resp(deep), resp(getRep)}, []want{rq("GET", "GET mykey"), bad(), ok()}},
		{"long line", []seg{req(getReq), resp("+" + strings.Repeat("x", 5000) + "\r\n")}, []want{rq("GET", "GET mykey"), ok()}},
		{"binary garbage", []seg{req("\x16\x03\x01\x00\xff"), req(getReq), resp(getRep)}, []want{rq("GET", "GET mykey"), ok()}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := newParser(false)
			check(t, run(p, tt.segs, false), tt.want)
			for _, d := range p.dirs {
				if d.line.Len() > maxLine || len(d.args) > argBufSize || len(d.errText) > maxException {
					t.Fatalf("buffers over their bounds: line %d args %d err %d", d.line.Len(), len(d.args), len(d.errText))
				}
			}
		})
	}
}

func TestCloseFlushes(t *testing.T) {
	got := run(newParser(false), []seg{req(getReq), resp("$7\r\nmyva")}, true)
	check(t, got, []want{rq("GET", "GET mykey"), {typ: l7.Response, length: -1}})
}

func TestInfer(t *testing.T) {
	p := New(l7.Config{})
	for _, tt := range []struct {
		in   string
		want l7.Inference
	}{
		{setReq, l7.IsRequest},
		{"*1\r\n$4\r\nPI", l7.NeedMore},
		{"*", l7.NeedMore},
		{"*2\r\n$4\r\nabcd\r\n", l7.IsResponse},
		{"+OK\r\n", l7.IsResponse},
		{"+OK", l7.NeedMore},
		{"-ERR unknown command 'x'\r\n", l7.IsResponse},
		{"-ERR 'Authorization Violation'\r\n", l7.NotMine},
		{":12\r\n", l7.IsResponse},
		{"$5\r\nhello\r\n", l7.IsResponse},
		{"$-1\r\n", l7.IsResponse},
		{"%2\r\n", l7.IsResponse},
		{"_\r\n", l7.IsResponse},
		{"INFO\r\n", l7.IsRequest},
		{"INFO {\"server_id\":\"x\"}\r\n", l7.NotMine},
		{"PING\r\n", l7.NotMine},
		{"get foo\r\n", l7.NotMine},
		{"GET / HTTP/1.1\r\n", l7.IsRequest}, // an inline GET: HTTP's parser is tried first
		{"HTTP/1.1 200 OK\r\n", l7.NotMine},
		{"\x16\x03\x01\x02\x00", l7.NotMine},
		{"+\x00\x01\r\n", l7.NotMine},
		{"*abc\r\n", l7.NotMine},
	} {
		if got := p.Infer([]byte(tt.in), 6); got != tt.want {
			t.Errorf("Infer(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
	if p.Infer([]byte(setReq), 17) != l7.NotMine {
		t.Error("UDP claimed")
	}
}
