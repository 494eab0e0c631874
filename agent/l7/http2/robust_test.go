package http2

import (
	"bytes"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/sightline-io/sightline/agent/capture"
	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/flowlog"
)

// mixed is a connection with a gRPC call and an h2c GET.
func mixed(t testing.TB) []rec {
	c := newConv(t)
	handshake(c).unary(1, check, "5", "no such service")
	h2get(c, 3, "/x?y=1", "traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"x-request-id", "req-7")
	h2resp(c, 3, "200", "hello")
	return c.recs
}

func TestSplitEveryByte(t *testing.T) {
	recs := mixed(t)
	want := summaries(feed(t, newTestParser(), recs))
	if len(want) != 4 {
		t.Fatalf("baseline: %d messages", len(want))
	}
	for r := range recs {
		for i := 1; i < len(recs[r].data); i++ {
			split := append([]rec(nil), recs[:r]...)
			split = append(split, rec{dir: recs[r].dir, data: recs[r].data[:i]}, rec{dir: recs[r].dir, data: recs[r].data[i:]})
			split = append(split, recs[r+1:]...)
			if got := summaries(feed(t, newTestParser(), split)); !reflect.DeepEqual(got, want) {
				t.Fatalf("segment %d split at %d:\n%s\nwant:\n%s", r, i, dump(got), dump(want))
			}
		}
	}
	// And one byte per segment throughout.
	var bytewise []rec
	for _, r := range recs {
		for i := range r.data {
			bytewise = append(bytewise, rec{dir: r.dir, data: r.data[i : i+1]})
		}
	}
	if got := summaries(feed(t, newTestParser(), bytewise)); !reflect.DeepEqual(got, want) {
		t.Fatalf("byte per segment:\n%s\nwant:\n%s", dump(got), dump(want))
	}
}

func TestFieldsAndLengths(t *testing.T) {
	recs := mixed(t)
	ms := feed(t, newTestParser(), recs)
	// Request 1: HEADERS and DATA frames of the client's segment after the handshake.
	if got, want := ms[0].Length, int64(len(recs[3].data)); got != want || ms[0].Captured != uint32(want) {
		t.Errorf("grpc request length %d captured %d, want %d", got, ms[0].Captured, want)
	}
	if got, want := ms[1].Length, int64(len(recs[4].data)); got != want {
		t.Errorf("grpc response length %d, want %d", got, want)
	}
	if ms[1].Exception != "no such service" || ms[1].Code != 5 || ms[1].Status != flowlog.StatusClientError {
		t.Errorf("grpc response %+v", summarize(&ms[1]))
	}
	r := ms[2]
	if r.TraceID != "4bf92f3577b34da6a3ce929d0e0e4736" || r.SpanID != "00f067aa0ba902b7" || r.XRequestID != "req-7" {
		t.Errorf("trace fields %q %q %q", r.TraceID, r.SpanID, r.XRequestID)
	}
	if !ms[3].End.After(ms[3].Start) || ms[3].Start.Before(ms[2].Start) {
		t.Errorf("response times %v..%v, request at %v", ms[3].Start, ms[3].End, ms[2].Start)
	}
	if ms[2].Dir != cli || ms[3].Dir != srv || ms[2].TCPSeq == 0 {
		t.Errorf("identity: dirs %d %d tcpseq %d", ms[2].Dir, ms[3].Dir, ms[2].TCPSeq)
	}
}

func TestTruncated(t *testing.T) {
	c := newConv(t)
	handshake(c)
	// A response whose DATA frame is mostly not captured: the trailers in
	// the next segment still end it.
	c.headers(cli, 1, false, grpcReq("/demo.Blob/Get")...).data(1, true, grpcMsg("k")).flush(cli)
	c.headers(srv, 1, false, grpcRespHeaders...).data(1, false, bytes.Repeat([]byte{'z'}, 3000)).flush(srv)
	cut := &c.recs[len(c.recs)-1]
	cut.gap, cut.data = len(cut.data)-200, cut.data[:200]
	c.headers(srv, 1, true, "grpc-status", "0").flush(srv)
	// A request whose header block is cut: what was captured is used, the
	// dynamic table restarts, later fields resolve as far as they can.
	c.headers(cli, 3, true, ":method", "GET", ":scheme", "http", ":path", "/first", ":authority", "cut.example",
		"user-agent", "curl/8.5.0").flush(cli)
	cut = &c.recs[len(c.recs)-1]
	cut.gap, cut.data = 5, cut.data[:len(cut.data)-5] // user-agent lost
	h2resp(c, 3, "200", "")
	// :authority and user-agent are now references to entries the parser's
	// table, restarted after the cut, does not hold.
	c.headers(cli, 5, true, ":method", "GET", ":scheme", "http", ":path", "/second", ":authority", "cut.example",
		"user-agent", "curl/8.5.0").flush(cli)
	h2resp(c, 5, "200", "")
	p := newTestParser()
	got := summaries(feed(t, p, c.recs))
	want := []summary{
		reqSum(grpcG, "POST", "demo.Blob", "/demo.Blob/Get", "/demo.Blob/Get", 1),
		respSum(grpcG, 1, 0, ok, ""),
		reqSum(h2, "GET", "cut.example", "/first", "/first", 3),
		respSum(h2, 3, 200, ok, ""),
		reqSum(h2, "GET", "", "/second", "/second", 5),
		respSum(h2, 5, 200, ok, ""),
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got:\n%s\nwant:\n%s", dump(got), dump(want))
	}
	if s := p.Stats(); s.HPACKResets == 0 || s.UnresolvedFields == 0 {
		t.Errorf("stats %+v", s)
	}
}

func TestMidConnection(t *testing.T) {
	c := newConv(t)
	handshake(c)
	for i, path := range []string{"/demo.Svc/A", "/demo.Svc/B", "/demo.Svc/B", "/demo.Svc/C"} {
		c.unary(uint32(2*i+1), path, "0", "")
	}
	h2get(c, 9, "/plain")
	h2resp(c, 9, "404", "")
	// Start after the first call: the dynamic tables miss its entries.
	got := summaries(feed(t, newTestParser(), c.recs[5:]))
	// content-type application/grpc and :authority are references to
	// entries of the first call, which the parser's tables lack: the method
	// (static) and the paths (literal in call 2, then a reference to the
	// entry call 2 added) come out, and the calls are known as gRPC by their
	// DATA framing and path. grpc-status 0 is such a reference too: those
	// responses have no code and an unknown status.
	unknown := func(id uint64) summary {
		return summary{Type: l7.Response, Dir: srv, Proto: grpcG, ID: id, Status: flowlog.StatusUnknown}
	}
	want := []summary{
		reqSum(grpcG, "POST", "demo.Svc", "/demo.Svc/B", "/demo.Svc/B", 3),
		unknown(3),
		reqSum(grpcG, "POST", "demo.Svc", "/demo.Svc/B", "/demo.Svc/B", 5),
		unknown(5),
		reqSum(grpcG, "POST", "demo.Svc", "/demo.Svc/C", "/demo.Svc/C", 7),
		unknown(7),
		reqSum(h2, "GET", "localhost:8080", "/plain", "/plain", 9),
		respSum(h2, 9, 404, cErr, "Not Found"),
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got:\n%s\nwant:\n%s", dump(got), dump(want))
	}
}

func TestGarbage(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	junk := make([]byte, 4000)
	for i := range junk {
		junk[i] = byte(rng.Uint32())
	}
	hdr := func(length int, typ, flags byte, id uint32) []byte {
		return []byte{byte(length >> 16), byte(length >> 8), byte(length), typ, flags,
			byte(id >> 24), byte(id >> 16), byte(id >> 8), byte(id)}
	}
	good := newConv(t)
	h2get(good, 1, "/after")
	h2resp(good, 1, "200", "ok")
	tests := []struct {
		name string
		recs []rec
	}{
		{"random", []rec{{cli, junk, 0}, {srv, junk[100:], 0}}},
		{"http1 text", []rec{{cli, []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), 0}}},
		{"huge length", []rec{{cli, append(hdr(1<<24-1, frameData, 0, 1), junk[:50]...), 0}}},
		{"bad flags and types", []rec{{cli, hdr(0, 0x42, 0, 1), 0}, {cli, hdr(4, frameSettings, 0x80, 0), 0}}},
		{"headers of garbage", []rec{{cli, append(hdr(200, frameHeaders, flagEndHeaders|flagEndStream, 1), junk[:200]...), 0}}},
		{"deep continuation", func() []rec {
			rs := []rec{{cli, hdr(0, frameHeaders, 0, 1), 0}}
			for range 8000 { // past maxHeaderBlock
				rs = append(rs, rec{cli, append(hdr(40, frameContinuation, 0, 1), junk[:40]...), 0})
			}
			return rs
		}()},
		{"short RST_STREAM after a valid frame", []rec{{cli, append(append(hdr(8, framePing, 0, 0), 1, 2, 3, 4, 5, 6, 7, 8),
			append(hdr(2, frameRSTStream, 0, 1), 0, 8)...), 0}}},
		{"padding longer than payload", []rec{{cli, append(hdr(3, frameHeaders, flagPadded|flagEndHeaders, 1), 9, 0x82, 0x84), 0}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newTestParser()
			ms := feed(t, p, append(tt.recs, good.recs...))
			// Garbage yields no message of its own; the valid exchange that
			// follows (it starts a segment) is parsed, perhaps without the
			// fields a garbage-fed table would get wrong.
			var paths []string
			for _, m := range ms {
				if m.Type == l7.Request {
					paths = append(paths, m.Resource)
				}
			}
			if len(paths) > 2 || len(paths) == 0 || paths[len(paths)-1] != "/after" {
				t.Errorf("requests %q", paths)
			}
		})
	}
}

func TestStreamLimit(t *testing.T) {
	c := newConv(t)
	handshake(c)
	for i := range maxStreams + 76 {
		c.headers(cli, uint32(2*i+1), true, ":method", "GET", ":scheme", "http", ":path", "/p", ":authority", "a")
	}
	c.flush(cli)
	h2resp(c, 1, "200", "")
	p := newTestParser()
	ms := feed(t, p, c.recs)
	if s := p.Stats(); s.DroppedStreams != 77 || s.Requests != maxStreams+76 {
		t.Fatalf("stats %+v", s)
	}
	last := ms[len(ms)-1]
	if last.Type != l7.Response || last.RequestID != 1 || last.Code != 200 {
		t.Fatalf("response to a dropped stream: %+v", summarize(&last))
	}
}

// A request whose client keeps sending is held to learn its length, but
// not past holdMax; a response cut by the connection's end is reported.
func TestHoldAndClose(t *testing.T) {
	c := newConv(t)
	c.headers(cli, 1, false, grpcReq("/demo.Up/Load")...).data(1, false, grpcMsg("1")).flush(cli)
	c.data(1, false, grpcMsg("2")).flush(cli)
	c.headers(srv, 1, false, grpcRespHeaders...).flush(srv)
	p := newTestParser()
	var got []summary
	emit := func(m *l7.Message) { got = append(got, summarize(m)) }
	t0 := time.Unix(100, 0)
	for i, r := range c.recs {
		at := t0.Add(time.Duration(i) * 1100 * time.Millisecond)
		p.Feed(&capture.Segment{Dir: r.dir, Start: at, End: at, Data: r.data, Len: len(r.data)}, emit)
		if i == 0 && len(got) != 0 {
			t.Fatalf("request emitted before its client finished: %v", got)
		}
		if i == 1 && len(got) != 1 {
			t.Fatalf("request still held after %v", at.Sub(t0))
		}
	}
	p.Close(emit)
	want := []summary{
		reqSum(grpcG, "POST", "demo.Up", "/demo.Up/Load", "/demo.Up/Load", 1),
		{Type: l7.Response, Dir: srv, Proto: grpcG, ID: 1, Status: sErr, Exc: "connection closed before END_STREAM"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got:\n%s\nwant:\n%s", dump(got), dump(want))
	}
}

func TestPushPromiseIgnored(t *testing.T) {
	c := newConv(t)
	handshake(c)
	h2get(c, 1, "/index")
	c.check(c.fr.WritePushPromise(http2.PushPromiseParam{StreamID: 1, PromiseID: 2, EndHeaders: true,
		BlockFragment: c.block(srv, ":method", "GET", ":scheme", "http", ":path", "/style.css", ":authority", "a")}))
	c.headers(srv, 2, false, ":status", "200").data(2, true, []byte("css"))
	c.flush(srv)
	h2resp(c, 1, "200", "page")
	got := summaries(feed(t, newTestParser(), c.recs))
	want := []summary{
		reqSum(h2, "GET", "localhost:8080", "/index", "/index", 1),
		respSum(h2, 1, 200, ok, ""),
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got:\n%s\nwant:\n%s", dump(got), dump(want))
	}
}

func TestConfig(t *testing.T) {
	if p := New(l7.Config{}); p.Timeout() != DefaultTimeout || p.Matching() != l7.MatchByID || p.ID() != flowlog.L7HTTP2 {
		t.Errorf("defaults: %v %v %v", p.Timeout(), p.Matching(), p.ID())
	}
	if p := New(l7.Config{Timeout: 3 * time.Second}); p.Timeout() != 3*time.Second {
		t.Errorf("timeout %v", p.Timeout())
	}
	c := newConv(t)
	h2get(c, 1, "/login?password=hunter2")
	for _, keep := range []bool{false, true} {
		ms := feed(t, New(l7.Config{KeepSecrets: keep}).NewParser().(*Parser), c.recs)
		want := "/login?password=***"
		if keep {
			want = "/login?password=hunter2"
		}
		if len(ms) != 1 || ms[0].Resource != want || ms[0].Endpoint != "/login" {
			t.Errorf("keep=%v: %v", keep, summaries(ms))
		}
	}
}
