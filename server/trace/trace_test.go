package trace

import (
	"context"
	"maps"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/sightline-io/sightline/flowlog"
	"github.com/sightline-io/sightline/server/store/duckdb"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func openStore(t testing.TB) *duckdb.Store {
	t.Helper()
	// With link keys, so that mustAssemble compares key lookups with scans.
	st, err := duckdb.Open(context.Background(), t.TempDir(), duckdb.Options{Retention: -1, LinkIndex: duckdb.LinkIndexKeys})
	if err != nil {
		t.Fatalf("duckdb.Open: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func insert(t testing.TB, st *duckdb.Store, rows ...flowlog.L7FlowLog) {
	t.Helper()
	if err := st.InsertL7(context.Background(), rows); err != nil {
		t.Fatalf("InsertL7: %v", err)
	}
}

// tuple is a 5-tuple with a tcp sequence pair.
type tuple struct {
	ip0, ip1     string
	cport, sport uint16
	req, resp    uint32
}

// sp builds a span row; offsets are from t0.
func sp(id uint64, obs, agent string, start, dur time.Duration, mods ...func(*flowlog.L7FlowLog)) flowlog.L7FlowLog {
	r := flowlog.L7FlowLog{
		ID: id, Time: t0.Add(start), StartTime: t0.Add(start), EndTime: t0.Add(start + dur),
		ResponseDuration: uint64(dur / time.Microsecond), AgentID: agent, Host: agent, OrgID: 1, TeamID: 1,
		SignalSource: flowlog.SourceEBPF, ObservationPoint: obs, L7Protocol: flowlog.L7HTTP1, L7ProtocolStr: "HTTP",
		Type: flowlog.TypeSession, RequestType: "GET", RequestResource: "/", Endpoint: "/", Protocol: 6,
	}
	for _, m := range mods {
		m(&r)
	}
	return r
}

func withTuple(tp tuple) func(*flowlog.L7FlowLog) {
	return func(r *flowlog.L7FlowLog) {
		r.IP0, r.IP1 = netip.MustParseAddr(tp.ip0), netip.MustParseAddr(tp.ip1)
		r.ClientPort, r.ServerPort, r.ReqTCPSeq, r.RespTCPSeq = tp.cport, tp.sport, tp.req, tp.resp
	}
}

func withSyscall(req, resp uint64, pid0, pid1 uint32) func(*flowlog.L7FlowLog) {
	return func(r *flowlog.L7FlowLog) {
		r.SyscallTraceIDRequest, r.SyscallTraceIDResponse, r.ProcessID0, r.ProcessID1 = req, resp, pid0, pid1
	}
}

func withProto(p flowlog.L7Protocol, reqType, resource string) func(*flowlog.L7FlowLog) {
	return func(r *flowlog.L7FlowLog) {
		r.L7Protocol, r.L7ProtocolStr, r.RequestType, r.RequestResource, r.Endpoint = p, p.String(), reqType, resource, resource
	}
}

func withTrace(traceID, spanID, parent string) func(*flowlog.L7FlowLog) {
	return func(r *flowlog.L7FlowLog) { r.TraceID, r.SpanID, r.ParentSpanID = traceID, spanID, parent }
}

func withXReqID(x string) func(*flowlog.L7FlowLog) {
	return func(r *flowlog.L7FlowLog) { r.XRequestID0 = x }
}

// shape is a trace as (_id → parent _id, parent link).
type edge struct {
	parent uint64
	link   Rule
}

func shape(tr *Trace) map[uint64]edge {
	m := make(map[uint64]edge, len(tr.Spans))
	for _, s := range tr.Spans {
		m[s.ID] = edge{s.ParentID, s.ParentLink}
	}
	return m
}

func assertShape(t *testing.T, tr *Trace, want map[uint64]edge) {
	t.Helper()
	got := shape(tr)
	if len(got) != len(want) {
		t.Errorf("got %d spans %v, want %d %v", len(got), got, len(want), want)
	}
	for id, w := range want {
		g, ok := got[id]
		if !ok {
			t.Errorf("span %d missing (got %v)", id, got)
			continue
		}
		if g != w {
			t.Errorf("span %d: parent %d via %q, want %d via %q", id, g.parent, g.link, w.parent, w.link)
		}
	}
	if t.Failed() {
		var sb strings.Builder
		_ = tr.WriteTree(&sb)
		t.Logf("tree:\n%s", sb.String())
	}
}

func mustAssemble(t *testing.T, st *duckdb.Store, id uint64, opt Options) *Trace {
	t.Helper()
	tr, err := Assemble(context.Background(), st, id, opt)
	if err != nil {
		t.Fatalf("Assemble(%d): %v", id, err)
	}
	// Link key lookups and scans must find the same trace.
	other := opt
	other.Scan = !opt.Scan
	tr2, err := Assemble(context.Background(), st, id, other)
	if err != nil {
		t.Fatalf("Assemble(%d, Scan=%v): %v", id, other.Scan, err)
	}
	if a, b := shape(tr), shape(tr2); !maps.Equal(a, b) || tr.Truncated != tr2.Truncated {
		t.Errorf("Assemble(%d): Scan=%v gives %v (truncated %v), Scan=%v gives %v (truncated %v)",
			id, opt.Scan, a, tr.Truncated, other.Scan, b, tr2.Truncated)
	}
	return tr
}

func TestTCPSeqHop(t *testing.T) {
	st := openStore(t)
	hop := tuple{"10.0.0.1", "10.0.0.2", 40000, 80, 1000, 5000}
	insert(t, st,
		// One request seen at four points, two hosts; listed out of order.
		sp(3, "s", "B", 2*time.Millisecond, 46*time.Millisecond, withTuple(hop)),
		sp(1, "c-p", "A", 0, 50*time.Millisecond, withTuple(hop), withSyscall(0, 0, 11, 0)),
		sp(4, "s-p", "B", 3*time.Millisecond, 44*time.Millisecond, withTuple(hop), withSyscall(0, 0, 0, 22)),
		sp(2, "c", "A", time.Millisecond, 48*time.Millisecond, withTuple(hop)),
		// Adversarial: the same seq on another tuple.
		sp(5, "s", "B", 2*time.Millisecond, 46*time.Millisecond, withTuple(tuple{"10.0.0.9", "10.0.0.2", 40000, 80, 1000, 5000})),
		// Same seq and tuple, 10 minutes later (sequence wrap / port reuse).
		sp(6, "s-p", "B", 10*time.Minute, 44*time.Millisecond, withTuple(hop)),
		// Same req seq and tuple, close in time, but a conflicting resp seq.
		sp(7, "s", "C", 4*time.Millisecond, 10*time.Millisecond, withTuple(tuple{"10.0.0.1", "10.0.0.2", 40000, 80, 1000, 9999})),
		// resp_tcp_seq alone (a response-only row) still links.
		sp(8, "c", "A", 30*time.Millisecond, 0, withTuple(tuple{"10.0.0.1", "10.0.0.2", 40000, 80, 0, 5000})),
	)
	want := map[uint64]edge{
		1: {0, ""}, 2: {1, RuleTCPSeq}, 8: {2, RuleTCPSeq}, 3: {8, RuleTCPSeq}, 4: {3, RuleTCPSeq},
	}
	for _, seed := range []uint64{1, 2, 3, 4, 8} {
		tr := mustAssemble(t, st, seed, Options{})
		assertShape(t, tr, want)
		if len(tr.Roots) != 1 || tr.Roots[0] != 1 {
			t.Errorf("seed %d: roots %v, want [1]", seed, tr.Roots)
		}
		depth := map[uint64]int{}
		for _, s := range tr.Spans {
			depth[s.ID] = s.Depth
		}
		if depth[4] != 4 || depth[1] != 0 {
			t.Errorf("seed %d: depths %v", seed, depth)
		}
	}
	// The adversarial rows stay alone.
	for _, seed := range []uint64{5, 6, 7} {
		if tr := mustAssemble(t, st, seed, Options{}); len(tr.Spans) != 1 {
			t.Errorf("seed %d linked to %v", seed, shape(tr))
		}
	}
}

func TestSyscallDownstream(t *testing.T) {
	st := openStore(t)
	in := tuple{"10.0.0.1", "10.0.0.2", 40000, 8080, 1, 2}
	insert(t, st,
		// The kernel keeps the request's id through the replies to the
		// thread's own calls: both calls and the response carry 777.
		sp(10, "s-p", "B", 0, 100*time.Millisecond, withTuple(in), withSyscall(777, 777, 0, 300)),
		sp(11, "c-p", "B", 10*time.Millisecond, 20*time.Millisecond, withSyscall(777, 777, 300, 0),
			withProto(flowlog.L7Redis, "GET", "GET key"), withTuple(tuple{"10.0.0.2", "10.0.0.3", 50000, 6379, 11, 12})),
		sp(12, "c-p", "B", 40*time.Millisecond, 20*time.Millisecond, withSyscall(777, 777, 300, 0),
			withProto(flowlog.L7MySQL, "SELECT", "SELECT * FROM t"), withTuple(tuple{"10.0.0.2", "10.0.0.4", 50001, 3306, 21, 22})),
		// The MySQL server's view of the same call.
		sp(15, "s-p", "D", 41*time.Millisecond, 18*time.Millisecond,
			withProto(flowlog.L7MySQL, "SELECT", "SELECT * FROM t"), withTuple(tuple{"10.0.0.2", "10.0.0.4", 50001, 3306, 21, 22})),
		// Adversarial: same id on another host; same id outside the window; another pid.
		sp(13, "c-p", "C", 10*time.Millisecond, 20*time.Millisecond, withSyscall(777, 0, 300, 0)),
		sp(14, "c-p", "B", 5*time.Second, 20*time.Millisecond, withSyscall(777, 0, 300, 0)),
		sp(16, "c-p", "B", 20*time.Millisecond, 5*time.Millisecond, withSyscall(777, 0, 301, 0)),
		// An event loop answered request 20 with the id of a later request
		// (778) whose call 21 falls in 20's window: the response id never links.
		sp(20, "s-p", "B", 0, 100*time.Millisecond, withSyscall(776, 778, 0, 302)),
		sp(21, "c-p", "B", 50*time.Millisecond, 5*time.Millisecond, withSyscall(778, 778, 302, 0)),
	)
	want := map[uint64]edge{10: {0, ""}, 11: {10, RuleSyscall}, 12: {10, RuleSyscall}, 15: {12, RuleTCPSeq}}
	for _, seed := range []uint64{10, 11, 12, 15} {
		tr := mustAssemble(t, st, seed, Options{})
		assertShape(t, tr, want)
		for _, s := range tr.Spans {
			if s.ID == 10 && s.SelfTimeUS != 60000 {
				t.Errorf("seed %d: self time of 10 = %d µs, want 60000", seed, s.SelfTimeUS)
			}
			if s.ID == 12 && s.SelfTimeUS != 2000 {
				t.Errorf("seed %d: self time of 12 = %d µs, want 2000", seed, s.SelfTimeUS)
			}
		}
	}
	for _, seed := range []uint64{13, 14, 16, 20, 21} {
		if tr := mustAssemble(t, st, seed, Options{}); len(tr.Spans) != 1 {
			t.Errorf("seed %d linked to %v", seed, shape(tr))
		}
	}
}

func TestSyscallBackToBack(t *testing.T) {
	st := openStore(t)
	// One thread serves two requests; the kernel id is recycled between them.
	insert(t, st,
		sp(20, "s-p", "B", 0, 100*time.Millisecond, withSyscall(555, 555, 0, 300)),
		sp(21, "s-p", "B", 101*time.Millisecond, 100*time.Millisecond, withSyscall(555, 555, 0, 300)),
		sp(22, "c-p", "B", 10*time.Millisecond, 80*time.Millisecond, withSyscall(555, 0, 300, 0)),
		sp(23, "c-p", "B", 111*time.Millisecond, 80*time.Millisecond, withSyscall(555, 0, 300, 0)),
		// Straddles both windows: belongs to neither.
		sp(24, "c-p", "B", 95*time.Millisecond, 10*time.Millisecond, withSyscall(555, 0, 300, 0)),
	)
	cases := []struct {
		seed uint64
		want map[uint64]edge
	}{
		{20, map[uint64]edge{20: {0, ""}, 22: {20, RuleSyscall}}},
		{22, map[uint64]edge{20: {0, ""}, 22: {20, RuleSyscall}}},
		{21, map[uint64]edge{21: {0, ""}, 23: {21, RuleSyscall}}},
		{23, map[uint64]edge{21: {0, ""}, 23: {21, RuleSyscall}}},
		{24, map[uint64]edge{24: {0, ""}}},
	}
	for _, c := range cases {
		assertShape(t, mustAssemble(t, st, c.seed, Options{}), c.want)
	}
}

func TestTraceIDTree(t *testing.T) {
	st := openStore(t)
	const tid = "4bf92f3577b34da6a3ce929d0e0e4736"
	call := tuple{"10.0.1.1", "10.0.1.2", 41000, 9000, 77, 88}
	app := func(r *flowlog.L7FlowLog) { r.SignalSource = flowlog.SourceOTel }
	insert(t, st,
		sp(30, "s-app", "A", 0, 200*time.Millisecond, withTrace(tid, "a1", ""), app),
		sp(31, "c-app", "A", 10*time.Millisecond, 100*time.Millisecond, withTrace(tid, "b2", "a1"), app),
		// eBPF spans of the call carry the traceparent's parent id (b2) as span id.
		sp(34, "c-p", "A", 11*time.Millisecond, 98*time.Millisecond, withTrace(tid, "b2", ""), withTuple(call)),
		sp(35, "s-p", "B", 13*time.Millisecond, 94*time.Millisecond, withTrace(tid, "b2", ""), withTuple(call)),
		sp(32, "s-app", "B", 14*time.Millisecond, 90*time.Millisecond, withTrace(tid, "c3", "b2"), app),
		sp(33, "c-app", "A", 150*time.Millisecond, 20*time.Millisecond, withTrace(tid, "d4", "a1"), app),
		// The same trace id an hour later (id reuse): not joined from a span.
		sp(36, "s-app", "A", time.Hour, 20*time.Millisecond, withTrace(tid, "e5", ""), app),
		sp(37, "s-app", "A", 0, 20*time.Millisecond, withTrace("other", "a1", ""), app),
	)
	want := map[uint64]edge{
		30: {0, ""}, 31: {30, RuleTraceID}, 34: {31, RuleSpanID}, 35: {34, RuleTCPSeq},
		32: {35, RuleTraceID}, 33: {30, RuleTraceID},
	}
	for _, seed := range []uint64{30, 32, 34} {
		tr := mustAssemble(t, st, seed, Options{})
		assertShape(t, tr, want)
		if tr.TraceID != tid {
			t.Errorf("trace id %q", tr.TraceID)
		}
	}
	tr, err := AssembleTraceID(context.Background(), st, tid, Options{})
	if err != nil {
		t.Fatal(err)
	}
	want[36] = edge{0, ""} // the trace id lookup itself has no window
	assertShape(t, tr, want)
	if len(tr.Roots) != 2 {
		t.Errorf("roots %v", tr.Roots)
	}
}

func TestXRequestIDProxy(t *testing.T) {
	st := openStore(t)
	up := tuple{"10.0.2.1", "10.0.2.2", 42000, 8080, 500, 600}
	insert(t, st,
		// nginx: its server span and the upstream call share only the request id.
		sp(40, "s-p", "P", 0, 100*time.Millisecond, withXReqID("req-1"), withTuple(tuple{"10.0.9.9", "10.0.2.1", 43000, 80, 1, 2})),
		sp(41, "c-p", "P", 5*time.Millisecond, 85*time.Millisecond, withXReqID("req-1"), withTuple(up)),
		sp(42, "s-p", "U", 6*time.Millisecond, 83*time.Millisecond, withXReqID("req-1"), withTuple(up)),
		// The same id an hour later, and another id at the same time.
		sp(43, "s-p", "P", time.Hour, 10*time.Millisecond, withXReqID("req-1")),
		sp(44, "c-p", "P", 6*time.Millisecond, 10*time.Millisecond, withXReqID("req-2")),
	)
	want := map[uint64]edge{40: {0, ""}, 41: {40, RuleXReqID}, 42: {41, RuleTCPSeq}}
	for _, seed := range []uint64{40, 41, 42} {
		assertShape(t, mustAssemble(t, st, seed, Options{}), want)
	}
	if tr := mustAssemble(t, st, 43, Options{}); len(tr.Spans) != 1 {
		t.Errorf("seed 43 linked to %v", shape(tr))
	}
}

// TestXRequestIDSameHost: a proxy and its upstream on one host, every span
// carrying the request id (the client's in its response). The upstream
// server span starts a moment after the proxy's call but must not become
// the parent of the client or of the proxy's call: on one agent the window
// must really contain the span.
func TestXRequestIDSameHost(t *testing.T) {
	st := openStore(t)
	front := tuple{"127.0.0.1", "127.0.0.1", 45000, 80, 11, 12}
	up := tuple{"127.0.0.1", "127.0.0.1", 46000, 8080, 21, 22}
	withResp := func(x string) func(*flowlog.L7FlowLog) {
		return func(r *flowlog.L7FlowLog) { r.XRequestID1 = x }
	}
	insert(t, st,
		sp(50, "c-p", "H", 0, 100*time.Millisecond, withResp("r-1"), withTuple(front)),
		sp(51, "s-p", "H", time.Millisecond, 98*time.Millisecond, withResp("r-1"), withTuple(front)),
		sp(52, "c-p", "H", 2*time.Millisecond, 95*time.Millisecond, withXReqID("r-1"), withTuple(up)),
		sp(53, "s-p", "H", 2*time.Millisecond+100*time.Microsecond, 94*time.Millisecond, withXReqID("r-1"), withTuple(up)),
	)
	want := map[uint64]edge{50: {0, ""}, 51: {50, RuleTCPSeq}, 52: {51, RuleXReqID}, 53: {52, RuleTCPSeq}}
	for _, seed := range []uint64{50, 51, 52, 53} {
		assertShape(t, mustAssemble(t, st, seed, Options{}), want)
	}
}

// TestUDPHop: a DNS query seen by the client and the server process has no
// TCP sequence: the same tuple and transaction id close in time make it one
// hop. Another id, another tuple or the same id much later do not.
func TestUDPHop(t *testing.T) {
	st := openStore(t)
	dns := func(id int64, cport uint16) func(*flowlog.L7FlowLog) {
		return func(r *flowlog.L7FlowLog) {
			r.Protocol, r.L7Protocol, r.L7ProtocolStr = 17, flowlog.L7DNS, "DNS"
			r.IP0, r.IP1 = netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.53")
			r.ClientPort, r.ServerPort, r.RequestID = cport, 53, &[]uint64{uint64(id)}[0]
		}
	}
	insert(t, st,
		sp(60, "c-p", "H", 0, 2*time.Millisecond, dns(4242, 51000)),
		sp(61, "s-p", "H", 100*time.Microsecond, time.Millisecond, dns(4242, 51000)),
		sp(62, "s-p", "H", 100*time.Microsecond, time.Millisecond, dns(4243, 51000)),
		sp(63, "s-p", "H", 100*time.Microsecond, time.Millisecond, dns(4242, 51001)),
		sp(64, "s-p", "H", time.Minute, time.Millisecond, dns(4242, 51000)),
	)
	want := map[uint64]edge{60: {0, ""}, 61: {60, RuleTCPSeq}}
	for _, seed := range []uint64{60, 61} {
		assertShape(t, mustAssemble(t, st, seed, Options{}), want)
	}
	for _, seed := range []uint64{62, 63, 64} {
		if tr := mustAssemble(t, st, seed, Options{}); len(tr.Spans) != 1 {
			t.Errorf("seed %d linked to %v", seed, shape(tr))
		}
	}
}

// TestAppRootUnderProcessSpan: an instrumented service got no context
// from its caller, so its server span is the root of its own trace; its
// outgoing call carried that trace's traceparent and was sent while the
// process served the eBPF server span: the app's root goes under it.
func TestAppRootUnderProcessSpan(t *testing.T) {
	st := openStore(t)
	const tid = "4bf92f3577b34da6a3ce929d0e0e4736"
	app := func(r *flowlog.L7FlowLog) { r.SignalSource = flowlog.SourceOTel }
	insert(t, st,
		sp(70, "s-p", "H", 0, 50*time.Millisecond, withSyscall(900, 900, 0, 7)),
		sp(71, "s-app", "", time.Millisecond, 45*time.Millisecond, app, withTrace(tid, "00f067aa0ba902b7", "")),
		sp(72, "app", "", 2*time.Millisecond, 5*time.Millisecond, app, withTrace(tid, "00f067aa0ba902b8", "00f067aa0ba902b7")),
		sp(73, "c-app", "", 10*time.Millisecond, 20*time.Millisecond, app, withTrace(tid, "00f067aa0ba902b9", "00f067aa0ba902b7")),
		sp(74, "c-p", "H", 11*time.Millisecond, 18*time.Millisecond, withSyscall(900, 900, 7, 0), withTrace(tid, "00f067aa0ba902b9", "")),
		// The same trace id on a c-p span of another request's window: no parent from it.
		sp(75, "s-p", "H", time.Second, 50*time.Millisecond, withSyscall(901, 901, 0, 7)),
	)
	want := map[uint64]edge{70: {0, ""}, 71: {70, RuleSyscall}, 72: {71, RuleTraceID}, 73: {71, RuleTraceID}, 74: {73, RuleSpanID}}
	for _, seed := range []uint64{70, 71, 74} {
		assertShape(t, mustAssemble(t, st, seed, Options{}), want)
	}
}

func TestClockSkew(t *testing.T) {
	st := openStore(t)
	hop := tuple{"10.0.3.1", "10.0.3.2", 44000, 80, 42, 43}
	other := tuple{"10.0.3.1", "10.0.3.2", 44001, 80, 44, 45}
	insert(t, st,
		// Server host's clock is 2.5 s ahead.
		sp(50, "c-p", "A", 0, 10*time.Millisecond, withTuple(hop)),
		sp(51, "s-p", "B", 2500*time.Millisecond, 8*time.Millisecond, withTuple(hop)),
		// Same host 2.5 s apart: skew does not apply.
		sp(52, "c-p", "A", 0, 10*time.Millisecond, withTuple(other)),
		sp(53, "c", "A", 2500*time.Millisecond, 8*time.Millisecond, withTuple(other)),
	)
	cases := []struct {
		name string
		opt  Options
		seed uint64
		n    int
	}{
		{"skew within tolerance", Options{TimeTolerance: time.Second, ClockSkew: 2 * time.Second}, 50, 2},
		{"skew within tolerance from server", Options{TimeTolerance: time.Second, ClockSkew: 2 * time.Second}, 51, 2},
		{"skew beyond tolerance", Options{TimeTolerance: time.Second, ClockSkew: time.Second}, 50, 1},
		{"default tolerance", Options{}, 51, 1},
		{"same host ignores skew", Options{TimeTolerance: time.Second, ClockSkew: 2 * time.Second}, 52, 1},
		{"same host within tolerance", Options{TimeTolerance: 3 * time.Second}, 52, 2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if tr := mustAssemble(t, st, c.seed, c.opt); len(tr.Spans) != c.n {
				t.Errorf("%d spans %v, want %d", len(tr.Spans), shape(tr), c.n)
			}
		})
	}
}

func TestAssembleErrors(t *testing.T) {
	st := openStore(t)
	insert(t, st, sp(1, "c-p", "A", 0, time.Millisecond))
	ctx := context.Background()
	if _, err := Assemble(ctx, st, 0, Options{}); err == nil || !strings.Contains(err.Error(), "bad input") {
		t.Errorf("Assemble(0): %v", err)
	}
	if _, err := Assemble(ctx, st, 99, Options{}); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("Assemble(99): %v", err)
	}
	for _, id := range []string{"", "a'b", `a\b`, strings.Repeat("a", 300), "ä"} {
		if _, err := AssembleTraceID(ctx, st, id, Options{}); err == nil || !strings.Contains(err.Error(), "bad input") {
			t.Errorf("AssembleTraceID(%q): %v", id, err)
		}
	}
}

func TestMaxSpansTruncates(t *testing.T) {
	st := openStore(t)
	var rows []flowlog.L7FlowLog
	rows = append(rows, sp(1, "s-p", "B", 0, time.Second, withSyscall(9, 9, 0, 1)))
	for i := range 20 {
		rows = append(rows, sp(uint64(2+i), "c-p", "B", time.Duration(i+1)*time.Millisecond, time.Millisecond, withSyscall(9, 0, 1, 0)))
	}
	insert(t, st, rows...)
	tr := mustAssemble(t, st, 1, Options{MaxSpans: 5})
	if len(tr.Spans) != 5 || !tr.Truncated {
		t.Errorf("%d spans, truncated %v", len(tr.Spans), tr.Truncated)
	}
	tr = mustAssemble(t, st, 1, Options{})
	if len(tr.Spans) != 21 || tr.Truncated {
		t.Errorf("%d spans, truncated %v", len(tr.Spans), tr.Truncated)
	}
}

func TestWriteTree(t *testing.T) {
	st := openStore(t)
	insert(t, st,
		sp(10, "s-p", "B", 0, 100*time.Millisecond, withSyscall(7, 7, 0, 3), func(r *flowlog.L7FlowLog) { r.ProcessKName1 = "api" }),
		sp(11, "c-p", "B", 10*time.Millisecond, 20*time.Millisecond, withSyscall(7, 0, 3, 0), withProto(flowlog.L7Redis, "GET", "GET k")),
	)
	var sb strings.Builder
	if err := mustAssemble(t, st, 11, Options{}).WriteTree(&sb); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(sb.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("tree:\n%s", sb.String())
	}
	if !strings.HasPrefix(lines[1], "[s-p] HTTP GET / status=0 100ms self=80ms proc=api") {
		t.Errorf("line 1: %q", lines[1])
	}
	if !strings.HasPrefix(lines[2], "  [c-p] Redis GET GET k status=0 20ms self=20ms") || !strings.Contains(lines[2], "via=syscall") {
		t.Errorf("line 2: %q", lines[2])
	}
}

func TestSelfTime(t *testing.T) {
	ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }
	cases := []struct {
		name string
		kids []interval
		want uint64
	}{
		{"no children", nil, 100000},
		{"disjoint", []interval{{ms(10), ms(20)}, {ms(30), ms(50)}}, 70000},
		{"overlapping", []interval{{ms(10), ms(40)}, {ms(30), ms(50)}}, 60000},
		{"nested", []interval{{ms(10), ms(90)}, {ms(20), ms(30)}}, 20000},
		{"clipped", []interval{{ms(-10), ms(10)}, {ms(95), ms(200)}}, 85000},
		{"outside", []interval{{ms(200), ms(300)}}, 100000},
		{"covers all", []interval{{ms(-1), ms(101)}}, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := selfTime(ms(0), ms(100), 100000, c.kids); got != c.want {
				t.Errorf("selfTime = %d, want %d", got, c.want)
			}
		})
	}
}
