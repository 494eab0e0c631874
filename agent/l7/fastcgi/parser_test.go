package fastcgi

import (
	"encoding/binary"
	"strings"
	"testing"
	"time"

	"github.com/sightline-io/sightline/agent/capture"
	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/flowlog"
)

const (
	out = capture.AtoB
	in  = capture.BtoA
)

func record(typ byte, id uint16, content string) []byte {
	pad := (8 - len(content)%8) % 8
	b := []byte{1, typ, byte(id >> 8), byte(id), byte(len(content) >> 8), byte(len(content)), byte(pad), 0}
	b = append(b, content...)
	return append(b, make([]byte, pad)...)
}

func pairs(kv ...string) string {
	// Lengths and bytes interleave: name length, value length, name, value.
	var r []byte
	for i := 0; i+1 < len(kv); i += 2 {
		for _, s := range kv[i : i+2] {
			if len(s) < 128 {
				r = append(r, byte(len(s)))
			} else {
				r = binary.BigEndian.AppendUint32(r, uint32(len(s))|1<<31)
			}
		}
		r = append(r, kv[i]...)
		r = append(r, kv[i+1]...)
	}
	return string(r)
}

func cat(bs ...[]byte) []byte {
	var o []byte
	for _, b := range bs {
		o = append(o, b...)
	}
	return o
}

var begin = string([]byte{0, 1, 0, 0, 0, 0, 0, 0})

// nginxRequest builds a request as nginx sends it: BEGIN_REQUEST, PARAMS,
// an empty PARAMS, STDIN body and an empty STDIN.
func nginxRequest(id uint16, method, uri, body string, extra ...string) []byte {
	kv := append([]string{"QUERY_STRING", "", "REQUEST_METHOD", method, "CONTENT_TYPE", "", "SCRIPT_NAME", strings.SplitN(uri, "?", 2)[0],
		"REQUEST_URI", uri, "SERVER_PROTOCOL", "HTTP/1.1", "SERVER_NAME", "_", "HTTP_HOST", "shop.example", "HTTP_COOKIE", "session=" + strings.Repeat("s", 200)}, extra...)
	b := cat(record(typeBeginRequest, id, begin), record(typeParams, id, pairs(kv...)), record(typeParams, id, ""))
	if body != "" {
		b = cat(b, record(typeStdin, id, body))
	}
	return cat(b, record(typeStdin, id, ""))
}

func fpmResponse(id uint16, head, body, stderr string, protoStatus byte) []byte {
	b := []byte{}
	if stderr != "" {
		b = cat(b, record(typeStderr, id, stderr))
	}
	if head != "" || body != "" {
		b = cat(b, record(typeStdout, id, head+"\r\n"+body))
	}
	return cat(b, record(typeStdout, id, ""), record(typeEndRequest, id, string([]byte{0, 0, 0, 0, protoStatus, 0, 0, 0})))
}

type rec struct {
	dir  capture.Direction
	data []byte
	gap  int
}

type summary struct {
	Type                             l7.MessageType
	Dir                              capture.Direction
	Method, Domain, Resource, Endpnt string
	ID                               uint64
	Code                             int32
	Status                           flowlog.ResponseStatus
	Exception                        string
	TraceID, SpanID, XRequestID      string
	Length                           int64
	Captured                         uint32
}

func run(t *testing.T, p *Parser, recs []rec, close bool) []summary {
	t.Helper()
	var got []summary
	emit := func(m *l7.Message) {
		if m.Protocol != flowlog.L7FastCGI || !m.HasRequestID || m.Version != "1" {
			t.Fatalf("bad message %+v", m)
		}
		got = append(got, summary{Type: m.Type, Dir: m.Dir, Method: m.RequestType, Domain: m.Domain, Resource: m.Resource, Endpnt: m.Endpoint,
			ID: m.RequestID, Code: m.Code, Status: m.Status, Exception: m.Exception, TraceID: m.TraceID, SpanID: m.SpanID,
			XRequestID: m.XRequestID, Length: m.Length, Captured: m.Captured})
	}
	now := time.Unix(1700000000, 0)
	for i, r := range recs {
		seg := &capture.Segment{Dir: r.dir, Data: r.data, Len: len(r.data) + r.gap, Tuple: capture.Tuple{L4: 6},
			Start: now.Add(time.Duration(i) * time.Millisecond), End: now.Add(time.Duration(i)*time.Millisecond + 10)}
		p.Feed(seg, emit)
	}
	if close {
		p.Close(emit)
	}
	return got
}

func check(t *testing.T, got, want []summary) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d messages, want %d:\n got %+v\nwant %+v", len(got), len(want), got, want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Errorf("message %d:\n got %+v\nwant %+v", i, got[i], want[i])
		}
	}
}

func reqSum(dir capture.Direction, id uint64, method, resource, endpoint string, msg []byte) summary {
	return summary{Type: l7.Request, Dir: dir, Method: method, Domain: "shop.example", Resource: resource, Endpnt: endpoint, ID: id,
		Length: int64(len(msg)), Captured: uint32(len(msg))}
}

func respSum(dir capture.Direction, id uint64, code int32, st flowlog.ResponseStatus, exc string, msg []byte) summary {
	return summary{Type: l7.Response, Dir: dir, ID: id, Code: code, Status: st, Exception: exc, Length: int64(len(msg)), Captured: uint32(len(msg))}
}

func TestParser(t *testing.T) {
	get := nginxRequest(1, "GET", "/api/users/42?name=alice&password=hunter2", "")
	ok := fpmResponse(1, "X-Powered-By: PHP/8.2\r\nContent-type: text/html; charset=UTF-8\r\n", "hello", "", 0)
	post := nginxRequest(1, "POST", "/upload.php", "a=1&b=2")
	notFound := fpmResponse(1, "Status: 404 Not Found\r\nContent-type: text/html\r\n", "nope", "", 0)
	fatal := fpmResponse(1, "Status: 500 Internal Server Error\r\nContent-type: text/html\r\n", "", "PHP message: PHP Fatal error: boom", 0)
	redirect := fpmResponse(1, "Location: /login\n", "", "", 0)
	overloaded := fpmResponse(1, "", "", "", 2)
	traced := nginxRequest(1, "GET", "/t.php", "", "HTTP_TRACEPARENT", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "HTTP_X_REQUEST_ID", "abc-1")
	wGet := reqSum(out, 1, "GET", "/api/users/42?name=alice&password=***", "/api/users/{id}", get)
	wOK := respSum(in, 1, 200, flowlog.StatusSuccess, "", ok)
	wTraced := reqSum(out, 1, "GET", "/t.php", "/t.php", traced)
	wTraced.TraceID, wTraced.SpanID, wTraced.XRequestID = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", "abc-1"

	// Params split over two records, a pair straddling them.
	longParams := pairs("REQUEST_METHOD", "PUT", "HTTP_HOST", "shop.example", "REQUEST_URI", "/items/"+strings.Repeat("x", 300))
	split := cat(record(typeBeginRequest, 3, begin), record(typeParams, 3, longParams[:100]), record(typeParams, 3, longParams[100:]),
		record(typeParams, 3, ""), record(typeStdin, 3, ""))
	// Two requests multiplexed on one connection, answered out of order.
	r5, r6 := nginxRequest(5, "GET", "/a", ""), nginxRequest(6, "GET", "/b", "")
	a5, a6 := fpmResponse(5, "Status: 200 OK\r\n", "a", "", 0), fpmResponse(6, "Status: 403 Forbidden\r\n", "b", "", 0)
	// A big response body cut by the capture.
	bigBody := fpmResponse(1, "Content-type: text/plain\r\n", strings.Repeat("z", 30000), "", 0)
	// The server side: php-fpm reads headers and contents separately and
	// answers before reading the empty STDIN.
	serverGet := get[:len(get)-8]
	var serverRecs []rec
	for b := serverGet; len(b) > 0; {
		n := recordHeader + int(binary.BigEndian.Uint16(b[4:])) + int(b[6])
		serverRecs = append(serverRecs, rec{in, b[:8], 0}, rec{in, b[8:n], 0})
		b = b[n:]
	}
	serverRecs = append(serverRecs, rec{out, ok, 0}, rec{in, get[len(get)-8:], 0})

	tests := []struct {
		name  string
		recs  []rec
		close bool
		want  []summary
	}{
		{"GET with masked query", []rec{{out, get, 0}, {in, ok, 0}}, false, []summary{wGet, wOK}},
		{"POST, 404, 500 with stderr, redirect, overloaded", []rec{{out, post, 0}, {in, notFound, 0}, {out, post, 0}, {in, fatal, 0},
			{out, post, 0}, {in, redirect, 0}, {out, post, 0}, {in, overloaded, 0}}, false, []summary{
			reqSum(out, 1, "POST", "/upload.php", "/upload.php", post), respSum(in, 1, 404, flowlog.StatusClientError, "Not Found", notFound),
			reqSum(out, 1, "POST", "/upload.php", "/upload.php", post), respSum(in, 1, 500, flowlog.StatusServerError, "Internal Server Error", fatal),
			reqSum(out, 1, "POST", "/upload.php", "/upload.php", post), respSum(in, 1, 302, flowlog.StatusSuccess, "", redirect),
			reqSum(out, 1, "POST", "/upload.php", "/upload.php", post), {Type: l7.Response, Dir: in, ID: 1, Status: flowlog.StatusServerError,
				Exception: "FCGI_OVERLOADED", Length: int64(len(overloaded)), Captured: uint32(len(overloaded))},
		}},
		{"trace context", []rec{{out, traced, 0}}, false, []summary{wTraced}},
		{"params split over records", []rec{{out, split, 0}}, false, []summary{
			{Type: l7.Request, Dir: out, Method: "PUT", Domain: "shop.example", Resource: "/items/" + strings.Repeat("x", 300), Endpnt: "/items/" + strings.Repeat("x", 300),
				ID: 3, Length: int64(len(split)), Captured: uint32(len(split))}}},
		{"multiplexed", []rec{{out, cat(r5, r6), 0}, {in, cat(a6, a5), 0}}, false, []summary{
			reqSum(out, 5, "GET", "/a", "/a", r5), reqSum(out, 6, "GET", "/b", "/b", r6),
			respSum(in, 6, 403, flowlog.StatusClientError, "Forbidden", a6), respSum(in, 5, 200, flowlog.StatusSuccess, "", a5)}},
		// Captured counts the bytes of delivered records: the 8 captured
		// bytes that end the cut record are skipped, not counted.
		{"response body cut by the capture", []rec{{out, get, 0}, {in, bigBody[:1024], len(bigBody) - 1024 - 32}, {in, bigBody[len(bigBody)-32:], 0}}, false, []summary{
			wGet, {Type: l7.Response, Dir: in, ID: 1, Code: 200, Status: flowlog.StatusSuccess, Length: int64(len(bigBody)), Captured: 1024 + 24}}},
		{"server side reads", serverRecs, false, []summary{
			{Type: l7.Request, Dir: in, Method: "GET", Domain: "shop.example", Resource: wGet.Resource, Endpnt: wGet.Endpnt, ID: 1,
				Length: int64(len(serverGet)), Captured: uint32(len(serverGet))},
			respSum(out, 1, 200, flowlog.StatusSuccess, "", ok)}},
		{"mid-record start resyncs on the next segment", []rec{{out, get[20:], 0}, {out, post, 0}, {in, notFound, 0}}, false, []summary{
			reqSum(out, 1, "POST", "/upload.php", "/upload.php", post), respSum(in, 1, 404, flowlog.StatusClientError, "Not Found", notFound)}},
		{"response without its request", []rec{{in, ok, 0}}, false, []summary{wOK}},
		{"garbage", []rec{{out, []byte("GET / HTTP/1.1\r\n\r\n"), 0}, {out, []byte{2, 1, 0, 1, 0, 8, 0, 0}, 0}, {out, get, 0}}, false, []summary{wGet}},
		{"close emits the unanswered request", []rec{{out, get[:len(get)-8], 0}}, true, []summary{
			{Type: l7.Request, Dir: out, Method: "GET", Domain: "shop.example", Resource: wGet.Resource, Endpnt: wGet.Endpnt, ID: 1,
				Length: int64(len(get) - 8), Captured: uint32(len(get) - 8)}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			check(t, run(t, newParser(false), tt.recs, tt.close), tt.want)
		})
	}

	t.Run("split at every byte boundary", func(t *testing.T) {
		for i := 1; i < len(get); i++ {
			j := 1 + i%(len(ok)-1)
			got := run(t, newParser(false), []rec{{out, get[:i], 0}, {out, get[i:], 0}, {in, ok[:j], 0}, {in, ok[j:], 0}}, false)
			check(t, got, []summary{wGet, wOK})
		}
	})

	t.Run("keep secrets", func(t *testing.T) {
		got := run(t, New(l7.Config{KeepSecrets: true}).NewParser().(*Parser), []rec{{out, get, 0}}, false)
		if len(got) != 1 || got[0].Resource != "/api/users/42?name=alice&password=hunter2" {
			t.Errorf("got %+v", got)
		}
	})

	t.Run("hostile params", func(t *testing.T) {
		huge := []byte{0x80, 0, 0, 1} // a 4-byte length of 1, then a value length far past the end
		huge = append(huge, 0xff, 0xff, 0xff, 0xff, 'A')
		b := cat(record(typeBeginRequest, 9, begin), record(typeParams, 9, string(huge)), record(typeParams, 9, ""), record(typeStdin, 9, ""))
		many := cat(record(typeBeginRequest, 10, begin))
		for range 10 {
			many = cat(many, record(typeParams, 10, strings.Repeat("\x01\x01ab", 1000)))
		}
		got := run(t, newParser(false), []rec{{out, b, 0}, {out, many, 0}, {out, cat(record(typeParams, 10, ""), record(typeStdin, 10, "")), 0}}, false)
		if len(got) != 2 || got[0].Method != "UNKNOWN" || got[1].Length != -1 {
			t.Errorf("got %+v", got)
		}
	})
}

func TestInfer(t *testing.T) {
	p := New(l7.Config{})
	get := nginxRequest(1, "GET", "/", "")
	ok := fpmResponse(1, "X-Powered-By: PHP/8.2\r\nContent-type: text/html\r\n", "hello", "", 0)
	tests := []struct {
		name string
		data []byte
		want l7.Inference
	}{
		{"nginx request", get, l7.IsRequest},
		{"header only", get[:8], l7.IsRequest},
		{"first byte", get[:1], l7.NeedMore},
		{"stdout with CGI headers", ok, l7.IsResponse},
		{"stdout body", record(typeStdout, 1, "<html><body>hello world</body></html>"), l7.NotMine},
		{"role 7", cat(record(typeBeginRequest, 1, string([]byte{0, 7, 0, 0, 0, 0, 0, 0}))), l7.NotMine},
		{"request id 0", cat(record(typeBeginRequest, 0, begin)), l7.NotMine},
		{"http", []byte("GET / HTTP/1.1\r\n\r\n"), l7.NotMine},
		{"tls", []byte{0x16, 3, 1, 0, 0xa5, 1, 0, 0}, l7.NotMine},
		{"mongo-like", []byte{1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, l7.NotMine},
	}
	for _, tt := range tests {
		if got := p.Infer(tt.data, 6); got != tt.want {
			t.Errorf("%s: Infer = %v, want %v", tt.name, got, tt.want)
		}
	}
	if p.Infer(get, 17) != l7.NotMine {
		t.Error("claimed UDP")
	}
}
