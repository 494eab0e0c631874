package http1

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sightline-io/sightline/agent/capture"
	"github.com/sightline-io/sightline/agent/l7"
)

func TestTraceHeaders(t *testing.T) {
	tests := []struct {
		name                    string
		headers                 string
		trace, span, parentSpan string
	}{
		{"w3c", "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n",
			"4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", ""},
		{"jaeger", "uber-trace-id: 5e1b3f2a9c8d7e6f:4a3b2c1d0e9f8a7b:1a2b3c4d5e6f7a8b:1\r\n",
			"5e1b3f2a9c8d7e6f", "4a3b2c1d0e9f8a7b", "1a2b3c4d5e6f7a8b"},
		{"jaeger root", "Uber-Trace-Id: 5e1b3f2a9c8d7e6f:4a3b2c1d0e9f8a7b:0:1\r\n",
			"5e1b3f2a9c8d7e6f", "4a3b2c1d0e9f8a7b", ""},
		{"b3 multi", "X-B3-TraceId: 80f198ee56343ba864fe8b2a57d3eff7\r\nX-B3-SpanId: e457b5a2e4d86bd1\r\nX-B3-ParentSpanId: 05e3ac9a4f6e3b90\r\nX-B3-Sampled: 1\r\n",
			"80f198ee56343ba864fe8b2a57d3eff7", "e457b5a2e4d86bd1", "05e3ac9a4f6e3b90"},
		{"b3 single", "b3: 80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90\r\n",
			"80f198ee56343ba864fe8b2a57d3eff7", "e457b5a2e4d86bd1", "05e3ac9a4f6e3b90"},
		{"skywalking", "sw8: 1-YTFiMmMzZDQ=-c2VnbWVudDE=-3-c3Zj-aW5zdA==-L2FwaQ==-aG9zdDo4MA==\r\n",
			"a1b2c3d4", "segment1-3", ""},
		{"w3c wins over b3", "X-B3-TraceId: 80f198ee56343ba864fe8b2a57d3eff7\r\ntraceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n",
			"4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", ""},
		{"malformed traceparent ignored", "traceparent: 00-zzzz-00f067aa0ba902b7-01\r\n", "", "", ""},
		{"malformed sw8 ignored", "sw8: 1-!!!-x\r\n", "", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msgs, _ := run(t, []rec{{out, "GET /t HTTP/1.1\r\nHost: h\r\n" + tt.headers + "\r\n", 0}}, false)
			if len(msgs) != 1 {
				t.Fatalf("got %d messages", len(msgs))
			}
			m := msgs[0]
			if m.TraceID != tt.trace || m.SpanID != tt.span || m.ParentSpanID != tt.parentSpan {
				t.Errorf("trace %q span %q parent %q, want %q %q %q", m.TraceID, m.SpanID, m.ParentSpanID, tt.trace, tt.span, tt.parentSpan)
			}
		})
	}
}

func TestAttributesAndRequestID(t *testing.T) {
	msgs, _ := run(t, []rec{
		{out, "POST /v1/events HTTP/1.1\r\nhost: ingest.local\r\nUSER-AGENT: okhttp/4.12.0\r\n" +
			"Content-Type: application/x-ndjson\r\nX-Forwarded-For: 203.0.113.7, 10.0.0.1\r\n" +
			"X-Request-ID: 7f3c-req-1\r\nContent-Length: 0\r\n\r\n", 0},
		{in, "HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/html\r\nX-Request-Id: 7f3c-resp-1\r\nContent-Length: 0\r\n\r\n", 0},
	}, false)
	if len(msgs) != 2 {
		t.Fatalf("got %d messages", len(msgs))
	}
	rq, rs := msgs[0], msgs[1]
	wantAttrs := map[string]string{AttrUserAgent: "okhttp/4.12.0", AttrContentType: "application/x-ndjson", AttrProxyClient: "203.0.113.7, 10.0.0.1"}
	if fmt.Sprint(rq.Attributes) != fmt.Sprint(wantAttrs) {
		t.Errorf("request attributes %v, want %v", rq.Attributes, wantAttrs)
	}
	if rq.Domain != "ingest.local" || rq.XRequestID != "7f3c-req-1" {
		t.Errorf("request domain %q x-request-id %q", rq.Domain, rq.XRequestID)
	}
	if rs.XRequestID != "7f3c-resp-1" || rs.Exception != "Bad Gateway" || rs.Attributes[AttrContentType] != "text/html" {
		t.Errorf("response x-request-id %q exception %q attrs %v", rs.XRequestID, rs.Exception, rs.Attributes)
	}
}

func TestSecretsAreMasked(t *testing.T) {
	const (
		bearer   = "eyJhbGciOiJIUzI1NiJ9.c2VjcmV0LXBheWxvYWQ.sig"
		basic    = "YWxhZGRpbjpvcGVuc2VzYW1l"
		cookie   = "sessionid=SESS-8c1f2e"
		setCook  = "refresh=REFRESH-99aa; HttpOnly"
		password = "hunter2"
		apiKey   = "AKIA-KEY-123"
	)
	msgs, _ := run(t, []rec{
		{out, "GET /login?user=bob&password=" + password + "&api_key=" + apiKey + " HTTP/1.1\r\nHost: auth\r\n" +
			"Authorization: Bearer " + bearer + "\r\nProxy-Authorization: Basic " + basic + "\r\nCookie: " + cookie + "\r\n\r\n", 0},
		{in, "HTTP/1.1 401 Unauthorized\r\nSet-Cookie: " + setCook + "\r\nWWW-Authenticate: Bearer\r\nContent-Length: 0\r\n\r\n", 0},
	}, false)
	if len(msgs) != 2 {
		t.Fatalf("got %d messages", len(msgs))
	}
	if got, want := msgs[0].Resource, "/login?user=bob&password=***&api_key=***"; got != want {
		t.Errorf("Resource %q, want %q", got, want)
	}
	if got := msgs[0].Attributes[AttrAuthorization]; got != "Basic ***" && got != "Bearer ***" {
		t.Errorf("authorization attribute %q", got)
	}
	for i, m := range msgs {
		dump := fmt.Sprintf("%+v", *m)
		for _, secret := range []string{bearer, basic, cookie, "SESS-8c1f2e", "REFRESH-99aa", password, apiKey} {
			if strings.Contains(dump, secret) {
				t.Errorf("message %d leaks %q: %s", i, secret, dump)
			}
		}
	}
}

func TestIdentityAndTiming(t *testing.T) {
	p := New().NewParser().(*Parser)
	var msgs []*l7.Message
	emit := func(m *l7.Message) { msgs = append(msgs, m) }
	two := curlGet + goPost[:40]
	p.Feed(&capture.Segment{Dir: out, Start: t0, End: t0.Add(time.Millisecond), Data: []byte(two), Len: len(two),
		TCPSeq: 1000, TID: 7, CapSeq: 3, SyscallTraceID: 99, Coroutine: 5}, emit)
	rest := goPost[40:]
	p.Feed(&capture.Segment{Dir: out, Start: t0.Add(time.Second), End: t0.Add(2 * time.Second), Data: []byte(rest), Len: len(rest),
		TCPSeq: 1000 + uint32(len(two)), TID: 8, CapSeq: 4, SyscallTraceID: 100}, emit)
	if len(msgs) != 2 {
		t.Fatalf("got %d messages", len(msgs))
	}
	a, b := msgs[0], msgs[1]
	if a.TCPSeq != 1000 || a.TID != 7 || a.CapSeq != 3 || a.SyscallTraceID != 99 || a.Coroutine != 5 ||
		!a.Start.Equal(t0) || !a.End.Equal(t0.Add(time.Millisecond)) {
		t.Errorf("first message identity %+v", a)
	}
	// The second message starts mid-segment and ends in the next one.
	if b.TCPSeq != 1000+uint32(len(curlGet)) || b.TID != 7 || b.CapSeq != 3 || b.SyscallTraceID != 99 ||
		!b.Start.Equal(t0) || !b.End.Equal(t0.Add(2*time.Second)) || b.Dir != out {
		t.Errorf("second message identity: seq %d tid %d capseq %d start %v end %v", b.TCPSeq, b.TID, b.CapSeq, b.Start, b.End)
	}
	// TCPSeq 0 means unknown: no offset is added.
	p2 := New().NewParser()
	var got []*l7.Message
	p2.Feed(&capture.Segment{Dir: out, Data: []byte(curlGet + curlGet), Len: 2 * len(curlGet)}, func(m *l7.Message) { got = append(got, m) })
	if len(got) != 2 || got[1].TCPSeq != 0 {
		t.Errorf("TCPSeq with unknown base: %d messages", len(got))
	}
}

func TestHeadOverflow(t *testing.T) {
	big := "GET /big HTTP/1.1\r\nHost: h\r\nX-Padding: " + strings.Repeat("p", 20000) + "\r\nContent-Length: 3\r\n\r\nabc"
	msgs, p := run(t, []rec{{out, big[:5000], 0}, {out, big[5000:17000], 0}, {out, big[17000:], 0}, {out, curlGet, 0}}, false)
	if len(msgs) != 2 {
		t.Fatalf("got %d messages, stats %+v", len(msgs), p.Stats())
	}
	m := msgs[0]
	if m.Resource != "/big" || m.Domain != "h" || m.Attributes[AttrTruncated] != "headers" || m.Length != int64(len(big)) {
		t.Errorf("overflowed head: resource %q domain %q attrs %v length %d (want %d)", m.Resource, m.Domain, m.Attributes, m.Length, len(big))
	}
	if msgs[1].Resource != "/api/v1/users/42?verbose=1" {
		t.Errorf("after overflow: %q", msgs[1].Resource)
	}
	if s := p.Stats(); s.TruncatedHeads != 1 || s.LostSync != 0 {
		t.Errorf("stats %+v", s)
	}
	if c := cap(p.dirs[out].head); c > keptHeadBuffer {
		t.Errorf("head buffer kept %d bytes after use", c)
	}
}

func TestStats(t *testing.T) {
	_, p := run(t, []rec{
		{out, "garbage!", 0},
		{out, "more garbage", 0},
		{out, curlGet, 0},
		{in, "HTTP/1.1 100 Continue\r\n\r\n" + nginxOK, 30},
	}, false)
	want := Stats{Requests: 1, Responses: 1, Interim: 1, LostSync: 2, Resyncs: 1,
		SkippedBytes: uint64(len("garbage!") + len("more garbage")), GapBytes: 30}
	if got := p.Stats(); got != want {
		t.Errorf("stats\n got %+v\nwant %+v", got, want)
	}
}

func TestPendingMethodQueueBounded(t *testing.T) {
	var recs []rec
	for range pendingRequests + 5 {
		recs = append(recs, rec{out, "HEAD / HTTP/1.1\r\n\r\n", 0})
	}
	_, p := run(t, recs, false)
	if s := p.Stats(); s.DroppedMethods != 5 || s.Requests != pendingRequests+5 {
		t.Errorf("stats %+v", s)
	}
}

func TestClosedParserIsReusable(t *testing.T) {
	p := New().NewParser()
	var n int
	emit := func(*l7.Message) { n++ }
	p.Feed(&capture.Segment{Dir: in, Data: []byte("HTTP/1.0 200 OK\r\n\r\npartial"), Len: 26}, emit)
	p.Close(emit)
	p.Close(emit)
	p.Feed(&capture.Segment{Dir: out, Data: []byte(curlGet), Len: len(curlGet)}, emit)
	if n != 2 {
		t.Errorf("emitted %d messages, want 2", n)
	}
}
