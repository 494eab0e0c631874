package traceotlp

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/sightline-io/sightline/flowlog"
	"github.com/sightline-io/sightline/server/store/duckdb"
	"github.com/sightline-io/sightline/server/trace"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func mustHex(t *testing.T, s string) pcommon.TraceID {
	t.Helper()
	id, err := ParseTraceID(s)
	if err != nil {
		t.Fatalf("ParseTraceID(%q): %v", s, err)
	}
	return id
}

func TestParseTraceID(t *testing.T) {
	tests := []struct {
		in      string
		want    string // hex, "" for error
		wantErr bool
	}{
		{in: "0af7651916cd43dd8448eb211c80319c", want: "0af7651916cd43dd8448eb211c80319c"},
		{in: "0AF7651916CD43DD8448EB211C80319C", want: "0af7651916cd43dd8448eb211c80319c"},
		{in: "8448eb211c80319c", want: "00000000000000008448eb211c80319c"},
		{in: "1", want: "00000000000000000000000000000001"},
		{in: "abc", want: "00000000000000000000000000000abc"},
		{in: "", wantErr: true},
		{in: "0af7651916cd43dd8448eb211c80319c0", wantErr: true},
		{in: "xyz", wantErr: true},
		{in: "0000", wantErr: true},
		{in: "12 4", wantErr: true},
	}
	for _, tc := range tests {
		got, err := ParseTraceID(tc.in)
		if tc.wantErr {
			if err == nil || !errors.Is(err, ErrBadTraceID) {
				t.Errorf("ParseTraceID(%q) = %v, %v; want ErrBadTraceID", tc.in, got, err)
			}
			continue
		}
		if err != nil || got.String() != tc.want {
			t.Errorf("ParseTraceID(%q) = %v, %v; want %s", tc.in, got, err, tc.want)
		}
	}
}

func TestTraceIDFor(t *testing.T) {
	tests := []struct {
		name    string
		tr      trace.Trace
		want    string
		wantRow uint64 // synthetic: the row id SyntheticRowID returns
	}{
		{name: "w3c", tr: trace.Trace{TraceID: "0af7651916cd43dd8448eb211c80319c", Roots: []uint64{5}},
			want: "0af7651916cd43dd8448eb211c80319c"},
		{name: "64-bit", tr: trace.Trace{TraceID: "8448eb211c80319c", Roots: []uint64{5}},
			want: "00000000000000008448eb211c80319c"},
		{name: "all zero", tr: trace.Trace{TraceID: "00000000000000000000000000000000", Roots: []uint64{7}},
			want: "534c5452000000000000000000000007", wantRow: 7},
		{name: "not hex", tr: trace.Trace{TraceID: "req-1234-abcd-zzzz-0000000000000", Roots: []uint64{0x0102030405060708}},
			want: "534c5452000000000102030405060708", wantRow: 0x0102030405060708},
		{name: "odd length", tr: trace.Trace{TraceID: "abc", Roots: []uint64{9, 3}},
			want: "534c5452000000000000000000000009", wantRow: 9},
		{name: "no roots", tr: trace.Trace{Spans: []trace.Span{{ID: 40}, {ID: 12}, {ID: 30}}},
			want: "534c545200000000000000000000000c", wantRow: 12},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := TraceIDFor(&tc.tr)
			if got.String() != tc.want {
				t.Errorf("TraceIDFor = %s, want %s", got, tc.want)
			}
			row, ok := SyntheticRowID(got)
			if tc.wantRow != 0 {
				if !ok || row != tc.wantRow {
					t.Errorf("SyntheticRowID(%v) = %d, %v; want %d", got, row, ok, tc.wantRow)
				}
				if SyntheticTraceID(tc.wantRow) != got {
					t.Errorf("SyntheticTraceID(%d) != %v", tc.wantRow, got)
				}
				return
			}
			if ok {
				t.Errorf("SyntheticRowID(%v) = %d, true for a real trace id", got, row)
			}
		})
	}
	if _, ok := SyntheticRowID(mustHex(t, "0af7651916cd43dd8448eb211c80319c")); ok {
		t.Error("SyntheticRowID accepted a real id")
	}
	if _, ok := SyntheticRowID(SyntheticTraceID(0)); ok {
		t.Error("SyntheticRowID accepted row 0")
	}
	if got := SyntheticTraceID(1).String(); got != "534c5452000000000000000000000001" {
		t.Errorf("SyntheticTraceID(1) = %s", got)
	}
}

func code(v int64) *int64 { return &v }

// handTrace: an HTTP request from A (c-p, c) to B (s, s-p), B calling MySQL
// (c-p), and an app span (s-app) under B's s-p.
func handTrace() *trace.Trace {
	return &trace.Trace{
		TraceID: "",
		Roots:   []uint64{1},
		Spans: []trace.Span{
			{ID: 1, Link: trace.RuleSeed, ObservationPoint: "c-p", AgentID: "agA", Host: "hostA",
				L7Protocol: uint8(flowlog.L7HTTP1), L7ProtocolStr: "HTTP", RequestType: "GET", RequestResource: "/api/x?y=1", Endpoint: "/api/x",
				ResponseCode: code(200), StartTime: t0, EndTime: t0.Add(50 * time.Millisecond), DurationUS: 50000, SelfTimeUS: 2000,
				ProcessKName0: "frontend", ProcessKName1: "", IP0: "10.0.0.1", IP1: "10.0.0.2", ClientPort: 40000, ServerPort: 80, Protocol: 6,
				TraceID: "", SpanID: "", XRequestID0: "rid-1"},
			{ID: 2, ParentID: 1, Link: trace.RuleTCPSeq, ParentLink: trace.RuleTCPSeq, ObservationPoint: "c", AgentID: "agA", Host: "hostA",
				L7Protocol: uint8(flowlog.L7HTTP1), RequestType: "GET", RequestResource: "/api/x",
				StartTime: t0.Add(time.Millisecond), EndTime: t0.Add(49 * time.Millisecond),
				IP0: "10.0.0.1", IP1: "10.0.0.2", ClientPort: 40000, ServerPort: 80, Protocol: 6},
			{ID: 3, ParentID: 2, Link: trace.RuleTCPSeq, ParentLink: trace.RuleTCPSeq, ObservationPoint: "s", AgentID: "agB", Host: "hostB",
				L7Protocol: uint8(flowlog.L7HTTP1), StartTime: t0.Add(2 * time.Millisecond), EndTime: t0.Add(48 * time.Millisecond),
				IP0: "10.0.0.1", IP1: "10.0.0.2", ClientPort: 40000, ServerPort: 80, Protocol: 6},
			{ID: 4, ParentID: 3, Link: trace.RuleTCPSeq, ParentLink: trace.RuleTCPSeq, ObservationPoint: "s-p", AgentID: "agB", Host: "hostB",
				L7Protocol: uint8(flowlog.L7HTTP1), Endpoint: "/api/x", ResponseStatus: uint8(flowlog.StatusServerError),
				ResponseCode: code(503), ResponseException: "Service Unavailable",
				StartTime: t0.Add(3 * time.Millisecond), EndTime: t0.Add(47 * time.Millisecond),
				ProcessKName1: "backend", IP0: "10.0.0.1", IP1: "10.0.0.2", ClientPort: 40000, ServerPort: 80, Protocol: 6},
			{ID: 5, ParentID: 4, Link: trace.RuleSyscall, ParentLink: trace.RuleSyscall, ObservationPoint: "c-p", AgentID: "agB", Host: "hostB",
				L7Protocol: uint8(flowlog.L7MySQL), L7ProtocolStr: "MySQL", RequestType: "COM_QUERY", RequestResource: "SELECT 1",
				StartTime: t0.Add(10 * time.Millisecond), EndTime: t0.Add(20 * time.Millisecond),
				ProcessKName0: "backend", IP0: "10.0.0.2", IP1: "10.0.0.3", ClientPort: 50000, ServerPort: 3306, Protocol: 6,
				ResponseStatus: uint8(flowlog.StatusClientError), ResponseException: "Table doesn't exist"},
			{ID: 6, ParentID: 4, Link: trace.RuleTraceID, ParentLink: trace.RuleSpanID, ObservationPoint: "s-app", AgentID: "agB", Host: "hostB",
				L7Protocol: uint8(flowlog.L7GRPC), Endpoint: "/pkg.Svc/Do", ResponseCode: code(0),
				StartTime: t0.Add(4 * time.Millisecond), EndTime: t0.Add(46 * time.Millisecond),
				ProcessKName1: "backend-app", IP1: "10.0.0.2", ServerPort: 80,
				TraceID: "abc", SpanID: "00f067aa0ba902b7", ParentSpanID: "b7ad6b7169203331"},
			{ID: 7, ParentID: 6, ObservationPoint: "local", L7Protocol: uint8(flowlog.L7Redis), RequestType: "GET",
				StartTime: t0.Add(30 * time.Millisecond), DurationUS: 1500, ResponseStatus: uint8(flowlog.StatusTimeout)},
			{ID: 8, ParentID: 1, ObservationPoint: "c", L7Protocol: uint8(flowlog.L7DNS), IP0: "10.0.0.1", IP1: "10.0.0.53", ServerPort: 53, Protocol: 17,
				StartTime: t0, EndTime: t0.Add(time.Millisecond)},
			{ID: 9, ParentID: 8, ObservationPoint: "s", L7Protocol: uint8(flowlog.L7DNS), IP1: "10.0.0.53", ServerPort: 53,
				StartTime: t0, EndTime: t0.Add(time.Millisecond)},
		},
	}
}

type flatSpan struct {
	span     ptrace.Span
	resource pcommon.Map
}

func flatten(td ptrace.Traces) map[uint64]flatSpan {
	out := make(map[uint64]flatSpan)
	for i := 0; i < td.ResourceSpans().Len(); i++ {
		rs := td.ResourceSpans().At(i)
		for j := 0; j < rs.ScopeSpans().Len(); j++ {
			ss := rs.ScopeSpans().At(j)
			for k := 0; k < ss.Spans().Len(); k++ {
				sp := ss.Spans().At(k)
				id := sp.SpanID()
				var row uint64
				for _, b := range id {
					row = row<<8 | uint64(b)
				}
				out[row] = flatSpan{sp, rs.Resource().Attributes()}
			}
		}
	}
	return out
}

func attrStr(m pcommon.Map, k string) string {
	v, ok := m.Get(k)
	if !ok {
		return "<none>"
	}
	return v.AsString()
}

func TestConvertHandTrace(t *testing.T) {
	tr := handTrace()
	id := TraceIDFor(tr)
	if row, ok := SyntheticRowID(id); !ok || row != 1 {
		t.Fatalf("TraceIDFor: synthetic row %d %v, want 1", row, ok)
	}
	td := Convert(tr, id)
	if td.SpanCount() != len(tr.Spans) {
		t.Fatalf("SpanCount = %d, want %d", td.SpanCount(), len(tr.Spans))
	}
	spans := flatten(td)
	for row, fs := range spans {
		if fs.span.TraceID() != id {
			t.Errorf("span %d: trace id %v, want %v (coherence)", row, fs.span.TraceID(), id)
		}
	}
	// Resources: one per (service, host, agent).
	if got, want := td.ResourceSpans().Len(), 8; got != want {
		t.Errorf("ResourceSpans = %d, want %d", got, want)
	}
	tests := []struct {
		row                        uint64
		parent                     uint64
		kind                       ptrace.SpanKind
		name, service, host, agent string
		status                     ptrace.StatusCode
		statusMsg                  string
		attrs                      map[string]string
		absent                     []string
	}{
		{row: 1, kind: ptrace.SpanKindClient, name: "/api/x", service: "frontend", host: "hostA", agent: "agA",
			attrs: map[string]string{"http.request.method": "GET", "url.path": "/api/x", "url.query": "y=1",
				"http.response.status_code": "200", "server.address": "10.0.0.2", "server.port": "80",
				"client.address": "10.0.0.1", "client.port": "40000", "network.transport": "tcp",
				AttrObservationPoint: "c-p", AttrRowID: "1", AttrLink: "seed", AttrSelfTimeUS: "2000",
				AttrXRequestID: "rid-1", AttrL7Protocol: "HTTP"},
			absent: []string{AttrParentLink, AttrOriginalTraceID, AttrOriginalSpanID, AttrOriginalParentID}},
		{row: 2, parent: 1, kind: ptrace.SpanKindClient, name: "GET /api/x", service: "10.0.0.1", host: "hostA", agent: "agA",
			attrs: map[string]string{AttrParentLink: "tcp_seq", AttrLink: "tcp_seq"}},
		{row: 3, parent: 2, kind: ptrace.SpanKindServer, name: "HTTP", service: "10.0.0.2:80", host: "hostB", agent: "agB"},
		{row: 4, parent: 3, kind: ptrace.SpanKindServer, name: "/api/x", service: "backend", host: "hostB", agent: "agB",
			status: ptrace.StatusCodeError, statusMsg: "Service Unavailable",
			attrs: map[string]string{"http.response.status_code": "503"}},
		{row: 5, parent: 4, kind: ptrace.SpanKindClient, name: "COM_QUERY SELECT 1", service: "backend", host: "hostB", agent: "agB",
			status: ptrace.StatusCodeError, statusMsg: "Table doesn't exist",
			attrs:  map[string]string{"db.system.name": "mysql", "db.system": "mysql", "db.query.text": "SELECT 1", "server.port": "3306"},
			absent: []string{"http.request.method"}},
		{row: 6, parent: 4, kind: ptrace.SpanKindServer, name: "/pkg.Svc/Do", service: "backend-app", host: "hostB", agent: "agB",
			attrs: map[string]string{"rpc.system": "grpc", "rpc.service": "pkg.Svc", "rpc.method": "Do", "rpc.grpc.status_code": "0",
				AttrOriginalTraceID: "abc", AttrOriginalSpanID: "00f067aa0ba902b7", AttrOriginalParentID: "b7ad6b7169203331",
				AttrParentLink: "span_id"}},
		{row: 7, parent: 6, kind: ptrace.SpanKindInternal, name: "GET", service: "unknown", host: "<none>", agent: "<none>",
			status: ptrace.StatusCodeError, statusMsg: "timeout",
			attrs: map[string]string{"db.system.name": "redis"}, absent: []string{"db.query.text", "server.address"}},
		{row: 8, parent: 1, kind: ptrace.SpanKindClient, name: "DNS", service: "10.0.0.1", host: "<none>", agent: "<none>",
			attrs: map[string]string{"network.transport": "udp"}},
		{row: 9, parent: 8, kind: ptrace.SpanKindServer, name: "DNS", service: "10.0.0.53:53", host: "<none>", agent: "<none>"},
	}
	for _, tc := range tests {
		fs, ok := spans[tc.row]
		if !ok {
			t.Errorf("span %d missing", tc.row)
			continue
		}
		sp := fs.span
		if tc.parent == 0 {
			if !sp.ParentSpanID().IsEmpty() {
				t.Errorf("span %d: parent %v, want none", tc.row, sp.ParentSpanID())
			}
		} else if sp.ParentSpanID() != SpanIDFor(tc.parent) {
			t.Errorf("span %d: parent %v, want %v", tc.row, sp.ParentSpanID(), SpanIDFor(tc.parent))
		} else if _, ok := spans[tc.parent]; !ok {
			t.Errorf("span %d: parent %d does not resolve", tc.row, tc.parent)
		}
		if sp.Kind() != tc.kind {
			t.Errorf("span %d: kind %v, want %v", tc.row, sp.Kind(), tc.kind)
		}
		if sp.Name() != tc.name {
			t.Errorf("span %d: name %q, want %q", tc.row, sp.Name(), tc.name)
		}
		if got := attrStr(fs.resource, AttrServiceName); got != tc.service {
			t.Errorf("span %d: service %q, want %q", tc.row, got, tc.service)
		}
		if got := attrStr(fs.resource, AttrHostName); got != tc.host {
			t.Errorf("span %d: host %q, want %q", tc.row, got, tc.host)
		}
		if got := attrStr(fs.resource, AttrAgentID); got != tc.agent {
			t.Errorf("span %d: agent %q, want %q", tc.row, got, tc.agent)
		}
		if sp.Status().Code() != tc.status || sp.Status().Message() != tc.statusMsg {
			t.Errorf("span %d: status %v %q, want %v %q", tc.row, sp.Status().Code(), sp.Status().Message(), tc.status, tc.statusMsg)
		}
		for k, v := range tc.attrs {
			if got := attrStr(sp.Attributes(), k); got != v {
				t.Errorf("span %d: %s = %q, want %q", tc.row, k, got, v)
			}
		}
		for _, k := range tc.absent {
			if _, ok := sp.Attributes().Get(k); ok {
				t.Errorf("span %d: unexpected attribute %s", tc.row, k)
			}
		}
	}
	// Times: span 7 has no end time: start + duration.
	s7 := spans[7].span
	if got := s7.EndTimestamp().AsTime().Sub(s7.StartTimestamp().AsTime()); got != 1500*time.Microsecond {
		t.Errorf("span 7 duration %v, want 1.5ms", got)
	}
	if got := spans[1].span.StartTimestamp().AsTime(); !got.Equal(t0) {
		t.Errorf("span 1 start %v, want %v", got, t0)
	}
	// A real trace id is kept, and an equal original id is not repeated.
	tr.TraceID = "0af7651916cd43dd8448eb211c80319c"
	tr.Spans[0].TraceID = "0AF7651916CD43DD8448EB211C80319C"
	tr.Spans[0].SpanID = "0000000000000001"
	id = TraceIDFor(tr)
	sp1 := flatten(Convert(tr, id))[1].span
	if sp1.TraceID().String() != tr.TraceID {
		t.Errorf("trace id %v, want %s", sp1.TraceID(), tr.TraceID)
	}
	for _, k := range []string{AttrOriginalTraceID, AttrOriginalSpanID} {
		if _, ok := sp1.Attributes().Get(k); ok {
			t.Errorf("%s set although equal", k)
		}
	}
	if Convert(nil, id).SpanCount() != 0 {
		t.Error("Convert(nil) has spans")
	}
}

func TestConvertAssembledFromStore(t *testing.T) {
	ctx := context.Background()
	st, err := duckdb.Open(ctx, t.TempDir(), duckdb.Options{Retention: -1})
	if err != nil {
		t.Fatalf("duckdb.Open: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	rows := ebpfTraceRows(t0, 100, "frontend", "backend")
	if err := st.InsertL7(ctx, rows); err != nil {
		t.Fatalf("InsertL7: %v", err)
	}
	tr, err := trace.Assemble(ctx, st, 104, trace.Options{})
	if err != nil {
		t.Fatalf("Assemble: %v", err)
	}
	if len(tr.Spans) != len(rows) {
		var sb strings.Builder
		_ = tr.WriteTree(&sb)
		t.Fatalf("assembled %d spans, want %d:\n%s", len(tr.Spans), len(rows), sb.String())
	}
	id := TraceIDFor(tr)
	if row, ok := SyntheticRowID(id); !ok || row != 101 {
		t.Fatalf("trace id %v: synthetic row %d %v, want root 101", id, row, ok)
	}
	td := Convert(tr, id)
	spans := flatten(td)
	if len(spans) != len(rows) {
		t.Fatalf("converted %d spans, want %d", len(spans), len(rows))
	}
	roots := 0
	for row, fs := range spans {
		if fs.span.TraceID() != id {
			t.Errorf("span %d: trace id %v, want %v", row, fs.span.TraceID(), id)
		}
		if fs.span.ParentSpanID().IsEmpty() {
			roots++
			continue
		}
		var parent uint64
		for _, b := range fs.span.ParentSpanID() {
			parent = parent<<8 | uint64(b)
		}
		if _, ok := spans[parent]; !ok {
			t.Errorf("span %d: parent %d not in trace", row, parent)
		}
	}
	if roots != 1 {
		t.Errorf("%d roots, want 1", roots)
	}
	want := map[uint64]struct {
		parent  uint64
		service string
		kind    ptrace.SpanKind
	}{
		101: {0, "frontend", ptrace.SpanKindClient},
		102: {101, "10.1.0.1", ptrace.SpanKindClient},
		103: {102, "10.1.0.2:8080", ptrace.SpanKindServer},
		104: {103, "backend", ptrace.SpanKindServer},
		105: {104, "backend", ptrace.SpanKindClient},
	}
	for row, w := range want {
		fs := spans[row]
		var parent uint64
		for _, b := range fs.span.ParentSpanID() {
			parent = parent<<8 | uint64(b)
		}
		if parent != w.parent || attrStr(fs.resource, AttrServiceName) != w.service || fs.span.Kind() != w.kind {
			t.Errorf("span %d: parent %d service %q kind %v; want %d %q %v", row, parent,
				attrStr(fs.resource, AttrServiceName), fs.span.Kind(), w.parent, w.service, w.kind)
		}
	}
	if got := attrStr(spans[105].span.Attributes(), "db.system.name"); got != "mysql" {
		t.Errorf("span 105 db.system.name = %q", got)
	}
	if got := attrStr(spans[105].span.Attributes(), AttrParentLink); got != "syscall" {
		t.Errorf("span 105 parent link = %q", got)
	}
}

// ebpfTraceRows is one eBPF-only trace: frontend (c-p, c) → backend (s, s-p),
// backend → MySQL (c-p, linked by syscall). Row ids are base+1..base+5.
func ebpfTraceRows(start time.Time, base uint64, client, server string) []flowlog.L7FlowLog {
	mk := func(id uint64, obs, agent string, off, dur time.Duration) flowlog.L7FlowLog {
		return flowlog.L7FlowLog{
			ID: id, Time: start.Add(off), StartTime: start.Add(off), EndTime: start.Add(off + dur),
			ResponseDuration: uint64(dur / time.Microsecond), AgentID: agent, Host: agent, OrgID: 1, TeamID: 1,
			SignalSource: flowlog.SourceEBPF, ObservationPoint: obs, L7Protocol: flowlog.L7HTTP1, L7ProtocolStr: "HTTP",
			Type: flowlog.TypeSession, RequestType: "GET", RequestResource: "/orders", Endpoint: "/orders", Protocol: 6,
			IP0: netip.MustParseAddr("10.1.0.1"), IP1: netip.MustParseAddr("10.1.0.2"), ClientPort: uint16(30000 + base%20000), ServerPort: 8080,
			ReqTCPSeq: uint32(1000 + base), RespTCPSeq: uint32(9000 + base),
		}
	}
	r1 := mk(base+1, "c-p", "agA", 0, 50*time.Millisecond)
	r1.ProcessKName0, r1.ProcessID0 = client, 11
	r2 := mk(base+2, "c", "agA", time.Millisecond, 48*time.Millisecond)
	r3 := mk(base+3, "s", "agB", 2*time.Millisecond, 46*time.Millisecond)
	r4 := mk(base+4, "s-p", "agB", 3*time.Millisecond, 44*time.Millisecond)
	r4.ProcessKName1, r4.ProcessID1 = server, 22
	r4.SyscallTraceIDRequest, r4.SyscallTraceIDResponse = 7000+base, 7000+base
	r5 := mk(base+5, "c-p", "agB", 10*time.Millisecond, 10*time.Millisecond)
	r5.ProcessKName0, r5.ProcessID0 = server, 22
	r5.SyscallTraceIDRequest = 7000 + base
	r5.L7Protocol, r5.L7ProtocolStr, r5.RequestType, r5.RequestResource, r5.Endpoint = flowlog.L7MySQL, "MySQL", "COM_QUERY", "SELECT 1", ""
	r5.IP0, r5.IP1 = netip.MustParseAddr("10.1.0.2"), netip.MustParseAddr("10.1.0.3")
	r5.ClientPort, r5.ServerPort, r5.ReqTCPSeq, r5.RespTCPSeq = uint16(40000+base%20000), 3306, uint32(500+base), uint32(600+base)
	return []flowlog.L7FlowLog{r1, r2, r3, r4, r5}
}
