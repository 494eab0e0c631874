package http2

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/net/http2"

	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/flowlog"
)

const (
	grpcG = flowlog.L7GRPC
	h2    = flowlog.L7HTTP2
	ok    = flowlog.StatusSuccess
	cErr  = flowlog.StatusClientError
	sErr  = flowlog.StatusServerError
)

const (
	check     = "/grpc.health.v1.Health/Check"
	healthSvc = "grpc.health.v1.Health"
)

// handshake is the connection start: client preface and settings, server
// settings and acknowledgements.
func handshake(c *conv) *conv {
	c.preface().flush(cli)
	c.settings(false).settings(true).flush(srv)
	return c.settings(true).flush(cli)
}

func h2get(c *conv, id uint32, path string, extra ...string) *conv {
	kv := append([]string{":method", "GET", ":scheme", "http", ":authority", "localhost:8080", ":path", path,
		"user-agent", "curl/8.5.0", "accept", "*/*"}, extra...)
	return c.headers(cli, id, true, kv...).flush(cli)
}

func h2resp(c *conv, id uint32, status, body string) *conv {
	c.headers(srv, id, body == "", ":status", status, "content-type", "text/plain; charset=utf-8",
		"content-length", fmt.Sprint(len(body)))
	if body != "" {
		c.data(id, true, []byte(body))
	}
	return c.flush(srv)
}

func TestParse(t *testing.T) {
	tests := []struct {
		name  string
		build func(c *conv)
		want  []summary
	}{{
		name: "grpc unary ok",
		build: func(c *conv) {
			handshake(c).unary(1, check, "0", "")
		},
		want: []summary{
			reqSum(grpcG, "POST", healthSvc, check, check, 1),
			respSum(grpcG, 1, 0, ok, ""),
		},
	}, {
		name: "grpc errors: percent-encoded message, trailers-only, status without message",
		build: func(c *conv) {
			handshake(c).unary(1, "/demo.Store/Get", "5", "key %22k%22 not found")
			c.headers(cli, 3, false, grpcReq("/demo.Store/Put")...).data(3, true, grpcMsg("x")).flush(cli)
			c.headers(srv, 3, true, ":status", "200", "content-type", "application/grpc",
				"grpc-status", "13", "grpc-message", "boom").flush(srv)
			c.unary(5, "/demo.Store/Del", "16", "")
		},
		want: []summary{
			reqSum(grpcG, "POST", "demo.Store", "/demo.Store/Get", "/demo.Store/Get", 1),
			respSum(grpcG, 1, 5, cErr, `key "k" not found`),
			reqSum(grpcG, "POST", "demo.Store", "/demo.Store/Put", "/demo.Store/Put", 3),
			respSum(grpcG, 3, 13, sErr, "boom"),
			reqSum(grpcG, "POST", "demo.Store", "/demo.Store/Del", "/demo.Store/Del", 5),
			respSum(grpcG, 5, 16, cErr, "UNAUTHENTICATED"),
		},
	}, {
		name: "h2c GET 200, GET 404, POST with masked query",
		build: func(c *conv) {
			handshake(c)
			h2get(c, 1, "/api/users/42?verbose=1")
			h2resp(c, 1, "200", "hello")
			h2get(c, 3, "/missing")
			h2resp(c, 3, "404", "404 page not found\n")
			c.headers(cli, 5, false, ":method", "POST", ":scheme", "http", ":authority", "localhost:8080",
				":path", "/login?token=s3cret&x=1", "content-type", "application/json").
				data(5, true, []byte(`{"a":1}`)).flush(cli)
			h2resp(c, 5, "500", "")
		},
		want: []summary{
			reqSum(h2, "GET", "localhost:8080", "/api/users/42?verbose=1", "/api/users/{id}", 1),
			respSum(h2, 1, 200, ok, ""),
			reqSum(h2, "GET", "localhost:8080", "/missing", "/missing", 3),
			respSum(h2, 3, 404, cErr, "Not Found"),
			reqSum(h2, "POST", "localhost:8080", "/login?token=***&x=1", "/login", 5),
			respSum(h2, 5, 500, sErr, "Internal Server Error"),
		},
	}, {
		name: "concurrent streams answered out of order, interim 100, host header",
		build: func(c *conv) {
			handshake(c)
			c.headers(cli, 1, true, ":method", "GET", ":scheme", "http", ":path", "/a", "host", "h1").
				headers(cli, 3, true, ":method", "GET", ":scheme", "http", ":path", "/b", "host", "h1").
				headers(cli, 5, false, ":method", "PUT", ":scheme", "http", ":path", "/c", "host", "h1").flush(cli)
			c.headers(srv, 5, false, ":status", "100").flush(srv)
			c.data(5, true, []byte("body")).flush(cli)
			c.headers(srv, 3, true, ":status", "204").
				headers(srv, 5, true, ":status", "201").
				headers(srv, 1, false, ":status", "200").data(1, true, []byte("x")).flush(srv)
		},
		want: []summary{
			reqSum(h2, "GET", "h1", "/a", "/a", 1),
			reqSum(h2, "GET", "h1", "/b", "/b", 3),
			reqSum(h2, "PUT", "h1", "/c", "/c", 5),
			respSum(h2, 3, 204, ok, ""),
			respSum(h2, 5, 201, ok, ""),
			respSum(h2, 1, 200, ok, ""),
		},
	}, {
		name: "streaming: server stream and bidi give one row per call",
		build: func(c *conv) {
			handshake(c)
			c.headers(cli, 1, false, grpcReq("/demo.Feed/Watch")...).data(1, true, grpcMsg("q")).flush(cli)
			c.headers(srv, 1, false, grpcRespHeaders...).data(1, false, grpcMsg("1")).flush(srv)
			c.data(1, false, grpcMsg("2")).flush(srv)
			c.data(1, false, grpcMsg("3")).headers(srv, 1, true, "grpc-status", "0").flush(srv)
			c.headers(cli, 3, false, grpcReq("/demo.Feed/Chat")...).data(3, false, grpcMsg("a")).flush(cli)
			c.headers(srv, 3, false, grpcRespHeaders...).data(3, false, grpcMsg("A")).flush(srv)
			c.data(3, false, grpcMsg("b")).flush(cli)
			c.data(3, false, grpcMsg("B")).flush(srv)
			c.data(3, true, nil).flush(cli)
			c.headers(srv, 3, true, "grpc-status", "0").flush(srv)
		},
		want: []summary{
			reqSum(grpcG, "POST", "demo.Feed", "/demo.Feed/Watch", "/demo.Feed/Watch", 1),
			respSum(grpcG, 1, 0, ok, ""),
			reqSum(grpcG, "POST", "demo.Feed", "/demo.Feed/Chat", "/demo.Feed/Chat", 3),
			respSum(grpcG, 3, 0, ok, ""),
		},
	}, {
		name: "RST_STREAM: client cancel, server internal error, reset of unknown stream",
		build: func(c *conv) {
			handshake(c)
			c.headers(cli, 1, false, grpcReq("/demo.Feed/Watch")...).data(1, true, grpcMsg("q")).flush(cli)
			c.headers(srv, 1, false, grpcRespHeaders...).data(1, false, grpcMsg("1")).flush(srv)
			c.rst(1, http2.ErrCodeCancel).flush(cli)
			h2get(c, 3, "/slow")
			c.rst(3, http2.ErrCodeInternal).rst(99, http2.ErrCodeCancel).flush(srv)
		},
		want: []summary{
			reqSum(grpcG, "POST", "demo.Feed", "/demo.Feed/Watch", "/demo.Feed/Watch", 1),
			{Type: l7.Response, Dir: srv, Proto: grpcG, ID: 1, Status: cErr, Exc: "RST_STREAM CANCEL"},
			reqSum(h2, "GET", "localhost:8080", "/slow", "/slow", 3),
			{Type: l7.Response, Dir: srv, Proto: h2, ID: 3, Status: sErr, Exc: "RST_STREAM INTERNAL_ERROR"},
		},
	}, {
		name: "GOAWAY ends the streams the server did not process",
		build: func(c *conv) {
			handshake(c)
			h2get(c, 1, "/a")
			h2get(c, 3, "/b")
			c.check(c.fr.WriteGoAway(1, http2.ErrCodeNo, nil))
			c.flush(srv)
			h2resp(c, 1, "200", "ok")
		},
		want: []summary{
			reqSum(h2, "GET", "localhost:8080", "/a", "/a", 1),
			reqSum(h2, "GET", "localhost:8080", "/b", "/b", 3),
			{Type: l7.Response, Dir: srv, Proto: h2, ID: 3, Status: sErr, Exc: "GOAWAY NO_ERROR"},
			respSum(h2, 1, 200, ok, ""),
		},
	}, {
		name: "CONTINUATION, PADDED and PRIORITY",
		build: func(c *conv) {
			handshake(c)
			blk := c.block(cli, ":method", "GET", ":scheme", "http", ":authority", "big.example", ":path", "/big",
				"x-long", strings.Repeat("v", 300))
			c.check(c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: blk[:7], EndStream: true,
				PadLength: 3, Priority: http2.PriorityParam{StreamDep: 0, Weight: 15}}))
			c.check(c.fr.WriteContinuation(1, false, blk[7:100]))
			c.check(c.fr.WriteContinuation(1, true, blk[100:]))
			c.flush(cli)
			c.headers(srv, 1, false, ":status", "200")
			c.check(c.fr.WriteDataPadded(1, true, []byte("padded"), []byte{0, 0, 0, 0}))
			c.flush(srv)
		},
		want: []summary{
			reqSum(h2, "GET", "big.example", "/big", "/big", 1),
			respSum(h2, 1, 200, ok, ""),
		},
	}, {
		name: "request seen without preface (mid-connection) and response without request",
		build: func(c *conv) {
			c.headers(srv, 7, false, ":status", "200").data(7, true, []byte("late")).flush(srv)
			h2get(c, 9, "/next")
			h2resp(c, 9, "200", "x")
		},
		want: []summary{
			{Type: l7.Response, Dir: srv, Proto: h2, ID: 7, Code: 200, HasCode: true, Status: ok},
			reqSum(h2, "GET", "localhost:8080", "/next", "/next", 9),
			respSum(h2, 9, 200, ok, ""),
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newConv(t)
			tt.build(c)
			got := summaries(feed(t, newTestParser(), c.recs))
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got:\n%s\nwant:\n%s", dump(got), dump(tt.want))
			}
		})
	}
}

func dump(s []summary) string {
	var b strings.Builder
	for _, x := range s {
		fmt.Fprintf(&b, "  %+v\n", x)
	}
	return b.String()
}
