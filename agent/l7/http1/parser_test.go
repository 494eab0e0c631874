package http1

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sightline-io/sightline/agent/capture"
	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/flowlog"
)

// Recorded-style traffic (curl client, nginx and Go net/http servers).
const (
	curlGet = "GET /api/v1/users/42?verbose=1 HTTP/1.1\r\n" +
		"Host: api.example.com\r\n" +
		"User-Agent: curl/8.5.0\r\n" +
		"Accept: */*\r\n\r\n"
	nginxOK = "HTTP/1.1 200 OK\r\n" +
		"Server: nginx/1.24.0\r\n" +
		"Date: Wed, 25 Nov 2026 11:05:25 GMT\r\n" +
		"Content-Type: application/json\r\n" +
		"Content-Length: 22\r\n" +
		"Connection: keep-alive\r\n\r\n" +
		`{"id":42,"name":"ada"}`
	goNotFound = "HTTP/1.1 404 Not Found\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\n" +
		"X-Content-Type-Options: nosniff\r\n" +
		"Date: Wed, 25 Nov 2026 11:05:26 GMT\r\n" +
		"Content-Length: 19\r\n\r\n" +
		"404 page not found\n"
	goChunkedHead = "HTTP/1.1 200 OK\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\n" +
		"Date: Wed, 25 Nov 2026 11:05:27 GMT\r\n" +
		"Transfer-Encoding: chunked\r\n\r\n"
	goChunkedBody = "1a\r\nabcdefghijklmnopqrstuvwxyz\r\n" +
		"7;name=value\r\n, world\r\n" +
		"0\r\nX-Checksum: 1234\r\n\r\n"
	goPost = "POST /api/v1/orders HTTP/1.1\r\n" +
		"Host: shop.internal:8080\r\n" +
		"User-Agent: Go-http-client/1.1\r\n" +
		"Content-Length: 13\r\n" +
		"Content-Type: application/json\r\n" +
		"Accept-Encoding: gzip\r\n\r\n" +
		`{"item":1234}`
	created = "HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"
)

// rec is one segment of a recorded exchange: data, plus gap uncaptured bytes.
type rec struct {
	dir  capture.Direction
	data string
	gap  int
}

const (
	out = capture.AtoB // client egress in these recordings
	in  = capture.BtoA
)

// summary is the part of a Message that the table tests compare.
type summary struct {
	Type     l7.MessageType
	Dir      capture.Direction
	Method   string
	Domain   string
	Resource string
	Endpoint string
	Version  string
	Code     int32
	Status   flowlog.ResponseStatus
	Exc      string
	Length   int64
	Captured uint32
}

func req(method, domain, resource, endpoint string, length int, captured int) summary {
	return summary{Type: l7.Request, Dir: out, Method: method, Domain: domain, Resource: resource,
		Endpoint: endpoint, Version: "1.1", Length: int64(length), Captured: uint32(captured)}
}

func resp(code int32, status flowlog.ResponseStatus, exc string, length int, captured int) summary {
	return summary{Type: l7.Response, Dir: in, Version: "1.1", Code: code, Status: status, Exc: exc,
		Length: int64(length), Captured: uint32(captured)}
}

func summarize(m *l7.Message) summary {
	return summary{Type: m.Type, Dir: m.Dir, Method: m.RequestType, Domain: m.Domain, Resource: m.Resource,
		Endpoint: m.Endpoint, Version: m.Version, Code: m.Code, Status: m.Status, Exc: m.Exception,
		Length: m.Length, Captured: m.Captured}
}

var t0 = time.Date(2026, 11, 25, 11, 5, 25, 0, time.UTC)

// run feeds recs to a fresh parser (one segment per millisecond), optionally
// closes it, and returns the messages.
func run(t *testing.T, recs []rec, close bool) ([]*l7.Message, *Parser) {
	t.Helper()
	p := New().NewParser().(*Parser)
	var msgs []*l7.Message
	emit := func(m *l7.Message) { msgs = append(msgs, m) }
	for i, r := range recs {
		seg := &capture.Segment{
			Source: capture.SourceEBPF, ConnID: 1, Dir: r.dir,
			Start: t0.Add(time.Duration(i) * time.Millisecond),
			End:   t0.Add(time.Duration(i)*time.Millisecond + 100*time.Microsecond),
			Data:  []byte(r.data), Len: len(r.data) + r.gap,
			TID: 100 + uint32(i), CapSeq: uint32(i), SyscallTraceID: 1000 + uint64(i),
		}
		p.Feed(seg, emit)
		// Parsers must not retain Data: scribble over it.
		for j := range seg.Data {
			seg.Data[j] = 'X'
		}
	}
	if close {
		p.Close(emit)
	}
	return msgs, p
}

func chunks(s string, sizes ...int) []string {
	var out []string
	for _, n := range sizes {
		out = append(out, s[:n])
		s = s[n:]
	}
	return append(out, s)
}

func TestParser(t *testing.T) {
	bigBody := 1 << 20
	bigPostHead := fmt.Sprintf("POST /upload HTTP/1.1\r\nHost: files\r\nContent-Length: %d\r\n\r\n", bigBody)
	bigRespHead := fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", bigBody)
	filler := strings.Repeat("x", 1024)
	// 1 MiB written in 64 KiB syscalls, 1 KiB captured of each.
	var bigUpload, bigDownload []rec
	bigUpload = append(bigUpload, rec{out, bigPostHead + filler, 64<<10 - 1024})
	bigDownload = append(bigDownload, rec{in, bigRespHead + filler, 64<<10 - 1024})
	for range 15 {
		bigUpload = append(bigUpload, rec{out, filler, 64<<10 - 1024})
		bigDownload = append(bigDownload, rec{in, filler, 64<<10 - 1024})
	}

	split3 := chunks(goPost, 10, 60) // request line, mid-header, rest
	chunked := goChunkedHead + goChunkedBody
	midSize := chunks(chunked, len(goChunkedHead)+1, 10) // "1" | "a\r\nabcdef" | ...

	headReq := "HEAD /big.iso HTTP/1.1\r\nHost: mirror\r\n\r\n"
	deleteReq := "DELETE /items/7 HTTP/1.1\r\nHost: mirror\r\n\r\n"
	condReq := "GET /logo.png HTTP/1.1\r\nHost: mirror\r\nIf-None-Match: \"abc\"\r\n\r\n"
	headResp := "HTTP/1.1 200 OK\r\nContent-Length: 734003200\r\nContent-Type: application/octet-stream\r\n\r\n"
	noContent := "HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n"
	notModified := "HTTP/1.1 304 Not Modified\r\nETag: \"abc\"\r\n\r\n"
	putContinue := "PUT /objects/report.csv HTTP/1.1\r\nHost: s3.local\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
	unavailable := "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n"
	proxyReq := "GET http://user:pw@example.org:8080/a/123?token=abc HTTP/1.1\r\nHost: example.org:8080\r\n\r\n"
	lfResp := "HTTP/1.1 200 OK\nContent-Length: 2\n\nok"
	http10 := "HTTP/1.0 200 OK\r\nServer: SimpleHTTP/0.6 Python/3.12.3\r\nContent-type: text/html\r\n\r\n"
	tests := []struct {
		name  string
		recs  []rec
		close bool
		want  []summary
	}{
		{
			name: "keep-alive request/response pairs",
			recs: []rec{{out, curlGet, 0}, {in, nginxOK, 0}, {out, curlGet, 0}, {in, goNotFound, 0}},
			want: []summary{
				req("GET", "api.example.com", "/api/v1/users/42?verbose=1", "/api/v1/users/{id}", len(curlGet), len(curlGet)),
				resp(200, flowlog.StatusSuccess, "", len(nginxOK), len(nginxOK)),
				req("GET", "api.example.com", "/api/v1/users/42?verbose=1", "/api/v1/users/{id}", len(curlGet), len(curlGet)),
				resp(404, flowlog.StatusClientError, "Not Found", len(goNotFound), len(goNotFound)),
			},
		},
		{
			name: "pipelined requests and responses in one segment each",
			recs: []rec{{out, curlGet + goPost + "\r\n" + curlGet, 0}, {in, nginxOK + created + goNotFound, 0}},
			want: []summary{
				req("GET", "api.example.com", "/api/v1/users/42?verbose=1", "/api/v1/users/{id}", len(curlGet), len(curlGet)),
				req("POST", "shop.internal:8080", "/api/v1/orders", "/api/v1/orders", len(goPost), len(goPost)),
				req("GET", "api.example.com", "/api/v1/users/42?verbose=1", "/api/v1/users/{id}", len(curlGet), len(curlGet)),
				resp(200, flowlog.StatusSuccess, "", len(nginxOK), len(nginxOK)),
				resp(201, flowlog.StatusSuccess, "", len(created), len(created)),
				resp(404, flowlog.StatusClientError, "Not Found", len(goNotFound), len(goNotFound)),
			},
		},
		{
			name: "headers split across three segments",
			recs: []rec{{out, split3[0], 0}, {out, split3[1], 0}, {out, split3[2], 0}, {in, created, 0}},
			want: []summary{
				req("POST", "shop.internal:8080", "/api/v1/orders", "/api/v1/orders", len(goPost), len(goPost)),
				resp(201, flowlog.StatusSuccess, "", len(created), len(created)),
			},
		},
		{
			name: "message spanning segments byte by byte",
			recs: func() []rec {
				var r []rec
				for i := range len(curlGet) {
					r = append(r, rec{out, curlGet[i : i+1], 0})
				}
				return append(r, rec{in, nginxOK, 0})
			}(),
			want: []summary{
				req("GET", "api.example.com", "/api/v1/users/42?verbose=1", "/api/v1/users/{id}", len(curlGet), len(curlGet)),
				resp(200, flowlog.StatusSuccess, "", len(nginxOK), len(nginxOK)),
			},
		},
		{
			name: "chunked response split mid-chunk-size, then keep-alive",
			recs: []rec{{out, curlGet, 0}, {in, midSize[0], 0}, {in, midSize[1], 0}, {in, midSize[2], 0},
				{out, curlGet, 0}, {in, nginxOK, 0}},
			want: []summary{
				req("GET", "api.example.com", "/api/v1/users/42?verbose=1", "/api/v1/users/{id}", len(curlGet), len(curlGet)),
				resp(200, flowlog.StatusSuccess, "", len(chunked), len(chunked)),
				req("GET", "api.example.com", "/api/v1/users/42?verbose=1", "/api/v1/users/{id}", len(curlGet), len(curlGet)),
				resp(200, flowlog.StatusSuccess, "", len(nginxOK), len(nginxOK)),
			},
		},
		{
			name: "chunked body byte by byte",
			recs: func() []rec {
				r := []rec{{in, goChunkedHead, 0}}
				for i := range len(goChunkedBody) {
					r = append(r, rec{in, goChunkedBody[i : i+1], 0})
				}
				return append(r, rec{in, created, 0})
			}(),
			want: []summary{
				resp(200, flowlog.StatusSuccess, "", len(chunked), len(chunked)),
				resp(201, flowlog.StatusSuccess, "", len(created), len(created)),
			},
		},
		{
			name: "Content-Length bodies with gaps keep framing",
			recs: append(append(append(bigUpload, bigDownload...), rec{out, curlGet, 0}), rec{in, nginxOK, 0}),
			want: []summary{
				req("POST", "files", "/upload", "/upload", len(bigPostHead)+bigBody, len(bigPostHead)+16*1024),
				resp(200, flowlog.StatusSuccess, "", len(bigRespHead)+bigBody, len(bigRespHead)+16*1024),
				req("GET", "api.example.com", "/api/v1/users/42?verbose=1", "/api/v1/users/{id}", len(curlGet), len(curlGet)),
				resp(200, flowlog.StatusSuccess, "", len(nginxOK), len(nginxOK)),
			},
		},
		{
			name: "gap inside chunk data keeps framing",
			recs: []rec{{in, goChunkedHead + "400\r\n" + strings.Repeat("y", 100), 0x400 - 100},
				{in, "\r\n0\r\n\r\n", 0}, {in, created, 0}},
			want: []summary{
				resp(200, flowlog.StatusSuccess, "", len(goChunkedHead)+5+0x400+7, len(goChunkedHead)+5+100+7),
				resp(201, flowlog.StatusSuccess, "", len(created), len(created)),
			},
		},
		{
			name: "HEAD, 204 and 304 responses have no body",
			recs: []rec{
				{out, headReq, 0}, {out, deleteReq, 0}, {out, condReq, 0},
				{in, headResp + noContent + notModified, 0},
			},
			want: []summary{
				req("HEAD", "mirror", "/big.iso", "/big.iso", len(headReq), len(headReq)),
				req("DELETE", "mirror", "/items/7", "/items/{id}", len(deleteReq), len(deleteReq)),
				req("GET", "mirror", "/logo.png", "/logo.png", len(condReq), len(condReq)),
				resp(200, flowlog.StatusSuccess, "", len(headResp), len(headResp)),
				resp(204, flowlog.StatusSuccess, "", len(noContent), len(noContent)),
				resp(304, flowlog.StatusSuccess, "", len(notModified), len(notModified)),
			},
		},
		{
			name:  "HTTP/1.0 body delimited by close",
			recs:  []rec{{out, "GET / HTTP/1.0\r\n\r\n", 0}, {in, http10, 0}, {in, "<html>", 0}, {in, "</html>\n", 100}},
			close: true,
			want: []summary{
				{Type: l7.Request, Dir: out, Method: "GET", Resource: "/", Endpoint: "/", Version: "1.0", Length: 18, Captured: 18},
				{Type: l7.Response, Dir: in, Version: "1.0", Code: 200, Length: int64(len(http10) + 14 + 100), Captured: uint32(len(http10) + 14)},
			},
		},
		{
			name: "close-delimited body is not emitted before close",
			recs: []rec{{out, "GET / HTTP/1.0\r\n\r\n", 0}, {in, http10 + "<html>", 0}},
			want: []summary{
				{Type: l7.Request, Dir: out, Method: "GET", Resource: "/", Endpoint: "/", Version: "1.0", Length: 18, Captured: 18},
			},
		},
		{
			name: "close-delimited body ended by a new status line",
			recs: []rec{{in, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nbody", 0}, {in, created, 0}},
			want: []summary{
				resp(200, flowlog.StatusSuccess, "", 49, 49),
				resp(201, flowlog.StatusSuccess, "", len(created), len(created)),
			},
		},
		{
			name: "100-continue interim response is not a message",
			recs: []rec{
				{out, putContinue, 0},
				{in, "HTTP/1.1 100 Continue\r\n\r\n", 0},
				{out, "a,b\r\n", 0},
				{in, unavailable, 0},
			},
			want: []summary{
				req("PUT", "s3.local", "/objects/report.csv", "/objects/report.csv", len(putContinue)+5, len(putContinue)+5),
				resp(503, flowlog.StatusServerError, "Service Unavailable", len(unavailable), len(unavailable)),
			},
		},
		{
			name: "gap inside headers: partial message, then resync",
			recs: []rec{
				{out, "GET /search?q=cats HTTP/1.1\r\nHost: web\r\nCookie: a=", 2000},
				{out, "more cookie bytes that are not a start line\r\n\r\n", 0},
				{out, curlGet, 0},
			},
			want: []summary{
				{Type: l7.Request, Dir: out, Method: "GET", Domain: "web", Resource: "/search?q=cats", Endpoint: "/search", Version: "1.1", Length: -1, Captured: 50},
				req("GET", "api.example.com", "/api/v1/users/42?verbose=1", "/api/v1/users/{id}", len(curlGet), len(curlGet)),
			},
		},
		{
			name: "request line cut by capture",
			recs: []rec{{out, "GET /reports/2026/11/very-long", 5000}, {out, curlGet, 0}},
			want: []summary{
				{Type: l7.Request, Dir: out, Method: "GET", Resource: "/reports/2026/11/very-long", Endpoint: "/reports/{id}/{id}/very-long", Length: -1, Captured: 30},
				req("GET", "api.example.com", "/api/v1/users/42?verbose=1", "/api/v1/users/{id}", len(curlGet), len(curlGet)),
			},
		},
		{
			name: "gap in a chunk-size line loses framing until a status line",
			recs: []rec{
				{in, goChunkedHead + "10\r\n0123456789abcdef\r\n4", 50},
				{in, "some body bytes\r\n0\r\n\r\n", 0},
				{in, goNotFound, 0},
			},
			want: []summary{
				{Type: l7.Response, Dir: in, Version: "1.1", Code: 200, Length: -1, Captured: uint32(len(goChunkedHead) + 23)},
				resp(404, flowlog.StatusClientError, "Not Found", len(goNotFound), len(goNotFound)),
			},
		},
		{
			name: "Content-Length body overrun by a gap",
			recs: []rec{{in, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123", 20}, {in, "tail of the next response", 0}, {in, created, 0}},
			want: []summary{
				resp(200, flowlog.StatusSuccess, "", 39+10, 39+4), // the gap held the last 6 body bytes and 14 more
				resp(201, flowlog.StatusSuccess, "", len(created), len(created)),
			},
		},
		{
			name: "garbage is skipped until a start line",
			recs: []rec{
				{out, "\x00\x01\x02garbage\r\n\r\n", 0},
				{out, "GET /x HTTP/1.1\r\n\r\n", 0},
				{in, "\xff\xfeHTTP/1.1 200 OK\r\n\r\n", 0},
				{in, created, 0},
			},
			want: []summary{
				req("GET", "", "/x", "/x", 19, 19),
				resp(201, flowlog.StatusSuccess, "", len(created), len(created)),
			},
		},
		{
			name: "garbage after a complete message mid-segment",
			recs: []rec{{out, curlGet + "\x16\x03\x01junk", 0}, {out, curlGet, 0}},
			want: []summary{
				req("GET", "api.example.com", "/api/v1/users/42?verbose=1", "/api/v1/users/{id}", len(curlGet), len(curlGet)),
				req("GET", "api.example.com", "/api/v1/users/42?verbose=1", "/api/v1/users/{id}", len(curlGet), len(curlGet)),
			},
		},
		{
			name:  "request body cut short by close",
			recs:  []rec{{out, goPost[:len(goPost)-5], 0}},
			close: true,
			want: []summary{
				req("POST", "shop.internal:8080", "/api/v1/orders", "/api/v1/orders", -1, len(goPost)-5),
			},
		},
		{
			name:  "partial head flushed on close",
			recs:  []rec{{out, "GET /partial HTTP/1.1\r\nHost: h\r\nAcc", 0}},
			close: true,
			want: []summary{
				req("GET", "h", "/partial", "/partial", -1, 35),
			},
		},
		{
			name: "CONNECT tunnel bytes are not parsed",
			recs: []rec{
				{out, "CONNECT db.example.com:443 HTTP/1.1\r\nHost: db.example.com:443\r\n\r\n", 0},
				{in, "HTTP/1.1 200 Connection established\r\n\r\n", 0},
				{out, "\x16\x03\x01\x00\xa5GET / HTTP/1.1\r\n\r\n", 0},
				{out, "GET / HTTP/1.1\r\n\r\n", 0}, // inside TLS-less tunnel: still opaque
				{in, "HTTP/1.1 200 OK\r\n\r\n", 0},
			},
			want: []summary{
				req("CONNECT", "db.example.com:443", "db.example.com:443", "db.example.com:443", 65, 65),
				resp(200, flowlog.StatusSuccess, "", 39, 39),
			},
		},
		{
			name: "absolute-form target through a proxy",
			recs: []rec{{out, proxyReq, 0}},
			want: []summary{
				req("GET", "example.org:8080", "http://user:***@example.org:8080/a/123?token=***", "/a/{id}", len(proxyReq), len(proxyReq)),
			},
		},
		{
			name: "bare LF line ends",
			recs: []rec{{out, "GET /lf HTTP/1.1\nHost: old\n\n", 0}, {in, lfResp, 0}},
			want: []summary{
				req("GET", "old", "/lf", "/lf", 28, 28),
				resp(200, flowlog.StatusSuccess, "", len(lfResp), len(lfResp)),
			},
		},
		{
			name: "invalid Content-Length loses framing",
			recs: []rec{{out, "POST /x HTTP/1.1\r\nContent-Length: 12abc\r\n\r\nbody", 0}, {out, curlGet, 0}},
			want: []summary{
				req("POST", "", "/x", "/x", -1, 43),
				req("GET", "api.example.com", "/api/v1/users/42?verbose=1", "/api/v1/users/{id}", len(curlGet), len(curlGet)),
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msgs, p := run(t, tt.recs, tt.close)
			var got []summary
			for _, m := range msgs {
				got = append(got, summarize(m))
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %d messages, want %d:\n got %+v\nwant %+v\nstats %+v", len(got), len(tt.want), got, tt.want, p.Stats())
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Errorf("message %d:\n got %+v\nwant %+v", i, got[i], tt.want[i])
				}
			}
		})
	}
}
