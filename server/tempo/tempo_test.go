package tempo

import (
	"bufio"
	"context"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/sightline-io/sightline/flowlog"
	"github.com/sightline-io/sightline/server/store/duckdb"
	"github.com/sightline-io/sightline/server/trace"
	"github.com/sightline-io/sightline/server/traceotlp"
	"github.com/sightline-io/sightline/server/tracesearch"
)

const (
	fixtureTraceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	missingTraceID = "0123456789abcdef0123456789abcdef"
)

// fixture is a store with one multi-hop trace (nginx → api → redis, api →
// postgres) carrying a W3C trace id on its HTTP hops, and one eBPF-only
// trace (api /health → redis).
type fixture struct {
	url         string
	t0          time.Time
	syntheticID string
	// parents maps each span's row _id to its parent row _id (0 for the root).
	parents map[uint64]uint64
	// syntheticParents is the same for the eBPF-only trace.
	syntheticParents map[uint64]uint64
}

type mod func(*flowlog.L7FlowLog)

func span(t0 time.Time, id uint64, obs, agent string, start, dur time.Duration, mods ...mod) flowlog.L7FlowLog {
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

func tuple(ip0, ip1 string, cport, sport uint16, req, resp uint32) mod {
	return func(r *flowlog.L7FlowLog) {
		r.IP0, r.IP1 = netip.MustParseAddr(ip0), netip.MustParseAddr(ip1)
		r.ClientPort, r.ServerPort, r.ReqTCPSeq, r.RespTCPSeq = cport, sport, req, resp
	}
}

func syscall(req, resp uint64, pid0, pid1 uint32) mod {
	return func(r *flowlog.L7FlowLog) {
		r.SyscallTraceIDRequest, r.SyscallTraceIDResponse, r.ProcessID0, r.ProcessID1 = req, resp, pid0, pid1
	}
}

func procs(k0, k1 string) mod {
	return func(r *flowlog.L7FlowLog) { r.ProcessKName0, r.ProcessKName1 = k0, k1 }
}

func http1(method, path string, code int32) mod {
	return func(r *flowlog.L7FlowLog) {
		r.RequestType, r.RequestResource, r.Endpoint, r.ResponseCode = method, path, path, &code
	}
}

func l7(p flowlog.L7Protocol, typ, res string) mod {
	return func(r *flowlog.L7FlowLog) {
		r.L7Protocol, r.L7ProtocolStr, r.RequestType, r.RequestResource, r.Endpoint = p, p.String(), typ, res, res
	}
}

func traceCtx(tid, sid, parent string) mod {
	return func(r *flowlog.L7FlowLog) { r.TraceID, r.SpanID, r.ParentSpanID = tid, sid, parent }
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	st, err := duckdb.Open(context.Background(), t.TempDir(), duckdb.Options{Retention: -1})
	if err != nil {
		t.Fatalf("duckdb.Open: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	t0 := time.Now().UTC().Add(-10 * time.Minute).Truncate(time.Millisecond)
	ms := time.Millisecond
	in := tuple("10.0.0.1", "10.0.0.10", 51000, 80, 1001, 2001)
	toAPI := tuple("10.0.0.10", "10.0.0.20", 52000, 8080, 3001, 4001)
	toRedis := tuple("10.0.0.20", "10.0.0.30", 53000, 6379, 5001, 6001)
	toPG := tuple("10.0.0.20", "10.0.0.40", 54000, 5432, 7001, 8001)
	rows := []flowlog.L7FlowLog{
		// nginx (host N) serves /checkout and calls the api.
		span(t0, 1, "s-p", "N", 0, 150*ms, in, syscall(11, 11, 0, 100), procs("", "nginx"), http1("POST", "/checkout", 200),
			traceCtx(fixtureTraceID, "00f067aa0ba902b7", "")),
		span(t0, 2, "c-p", "N", 5*ms, 140*ms, toAPI, syscall(11, 0, 100, 0), procs("nginx", ""), http1("POST", "/api/checkout", 200),
			traceCtx(fixtureTraceID, "00f067aa0ba902b7", "")),
		// The api (host A) sees the same hop, then calls redis and postgres.
		span(t0, 3, "s-p", "A", 8*ms, 130*ms, toAPI, syscall(21, 21, 0, 200), procs("", "api"), http1("POST", "/api/checkout", 200),
			traceCtx(fixtureTraceID, "00f067aa0ba902b7", "")),
		span(t0, 4, "c-p", "A", 10*ms, 3*ms, toRedis, syscall(21, 0, 200, 0), procs("api", ""), l7(flowlog.L7Redis, "GET", "GET cart")),
		span(t0, 5, "s-p", "R", 11*ms, 1*ms, toRedis, procs("", "redis-server"), l7(flowlog.L7Redis, "GET", "GET cart")),
		span(t0, 6, "c-p", "A", 20*ms, 100*ms, toPG, syscall(21, 0, 200, 0), procs("api", ""), l7(flowlog.L7Postgres, "SELECT", "SELECT * FROM orders")),
		// An eBPF-only request: api /health → redis PING.
		span(t0, 10, "s-p", "A", time.Minute, 20*ms, tuple("10.0.0.9", "10.0.0.20", 55000, 8080, 9001, 9101), syscall(31, 31, 0, 200),
			procs("", "api"), http1("GET", "/health", 503), func(r *flowlog.L7FlowLog) { r.ResponseStatus = flowlog.StatusServerError }),
		span(t0, 11, "c-p", "A", time.Minute+2*ms, 2*ms, tuple("10.0.0.20", "10.0.0.30", 56000, 6379, 9201, 9301), syscall(31, 0, 200, 0),
			procs("api", ""), l7(flowlog.L7Redis, "PING", "PING")),
	}
	if err := st.InsertL7(context.Background(), rows); err != nil {
		t.Fatalf("InsertL7: %v", err)
	}
	srv := httptest.NewServer(NewHandler(st, trace.Options{}))
	t.Cleanup(srv.Close)
	synth := traceotlp.SyntheticTraceID(10)
	return &fixture{
		url: srv.URL, t0: t0, syntheticID: hex.EncodeToString(synth[:]),
		parents:          map[uint64]uint64{1: 0, 2: 1, 3: 2, 4: 3, 5: 4, 6: 3},
		syntheticParents: map[uint64]uint64{10: 0, 11: 10},
	}
}

// recorded is one request of testdata/grafana_requests.txt.
type recorded struct {
	name, source, path string
	header             http.Header
	status             int
	contentType, check string
}

func loadRecorded(t *testing.T) []recorded {
	t.Helper()
	f, err := os.Open("testdata/grafana_requests.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []recorded
	cur := recorded{header: http.Header{}}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "name: "):
			cur.name = strings.TrimPrefix(line, "name: ")
		case strings.HasPrefix(line, "source: "):
			cur.source = strings.TrimPrefix(line, "source: ")
		case strings.HasPrefix(line, "GET "):
			cur.path = strings.TrimPrefix(line, "GET ")
		case strings.HasPrefix(line, "expect: "):
			f := strings.Fields(strings.TrimPrefix(line, "expect: "))
			if len(f) != 3 {
				t.Fatalf("line %d: expect needs status, content type, check", n)
			}
			cur.status, err = strconv.Atoi(f[0])
			if err != nil {
				t.Fatalf("line %d: %v", n, err)
			}
			cur.contentType, cur.check = f[1], f[2]
			if cur.name == "" || cur.source == "" || cur.path == "" {
				t.Fatalf("line %d: block lacks name, source or request", n)
			}
			out = append(out, cur)
			cur = recorded{header: http.Header{}}
		default:
			k, v, ok := strings.Cut(line, ": ")
			if !ok {
				t.Fatalf("line %d: unexpected %q", n, line)
			}
			cur.header.Add(k, v)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestGrafanaRequests(t *testing.T) {
	fx := newFixture(t)
	reqs := loadRecorded(t)
	if len(reqs) < 20 {
		t.Fatalf("only %d recorded requests", len(reqs))
	}
	start := strconv.FormatInt(fx.t0.Add(-time.Hour).Unix(), 10)
	end := strconv.FormatInt(time.Now().Add(time.Minute).Unix(), 10)
	repl := strings.NewReplacer("{traceID}", fixtureTraceID, "{syntheticID}", fx.syntheticID,
		"{missingID}", missingTraceID, "{start}", start, "{end}", end)
	for _, rq := range reqs {
		t.Run(rq.name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodGet, fx.url+repl.Replace(rq.path), nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Header = rq.header.Clone()
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != rq.status {
				t.Fatalf("%s (%s): status %d, want %d; body %s", rq.path, rq.source, resp.StatusCode, rq.status, body)
			}
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, rq.contentType) {
				t.Fatalf("content type %q, want %q", ct, rq.contentType)
			}
			fx.check(t, rq.check, body)
		})
	}
}

func (fx *fixture) check(t *testing.T, check string, body []byte) {
	t.Helper()
	switch check {
	case "echo":
		if string(body) != "echo" {
			t.Errorf("body %q", body)
		}
	case "buildinfo":
		var bi BuildInfo
		mustJSON(t, body, &bi)
		if bi.Version != buildVersion || bi.GoVersion == "" {
			t.Errorf("buildinfo %+v", bi)
		}
	case "tags-v1":
		var v struct{ TagNames []string }
		mustJSON(t, body, &v)
		for _, want := range []string{"service.name", "http.method", "http.status_code", "name", "status.code"} {
			if !slices.Contains(v.TagNames, want) {
				t.Errorf("tagNames %v lack %s", v.TagNames, want)
			}
		}
	case "tags-v2", "tags-v2-resource":
		var v struct {
			Scopes []struct {
				Name string
				Tags []string
			}
		}
		mustJSON(t, body, &v)
		got := map[string][]string{}
		for _, s := range v.Scopes {
			got[s.Name] = s.Tags
		}
		if !slices.Contains(got["resource"], "service.name") {
			t.Errorf("scopes %v: resource lacks service.name", got)
		}
		if check == "tags-v2" && (!slices.Contains(got["span"], "http.status_code") || !slices.Contains(got["intrinsic"], "duration")) {
			t.Errorf("scopes %v", got)
		}
		if check == "tags-v2-resource" && len(got) != 1 {
			t.Errorf("scope=resource answered %v", got)
		}
	case "values-v1-services":
		var v struct{ TagValues []string }
		mustJSON(t, body, &v)
		if want := []string{"api", "nginx", "redis-server"}; !slices.Equal(v.TagValues, want) {
			t.Errorf("tagValues %v, want %v", v.TagValues, want)
		}
	case "values-v2-services", "values-v2-methods", "values-v2-status":
		var v struct{ TagValues []TagValue }
		mustJSON(t, body, &v)
		want := map[string][]TagValue{
			"values-v2-services": {{"string", "api"}, {"string", "nginx"}, {"string", "redis-server"}},
			"values-v2-methods":  {{"string", "GET"}, {"string", "POST"}},
			"values-v2-status":   {{"keyword", "error"}, {"keyword", "ok"}, {"keyword", "unset"}},
		}[check]
		if !slices.Equal(v.TagValues, want) {
			t.Errorf("tagValues %v, want %v", v.TagValues, want)
		}
	case "search-trace", "search-any", "search-synthetic":
		var v SearchResponse
		mustJSON(t, body, &v)
		var ids []string
		for _, tr := range v.Traces {
			ids = append(ids, tr.TraceID)
			if tr.StartTimeUnixNano == "" || len(tr.SpanSets) != 1 || len(tr.SpanSets[0].Spans) != 1 {
				t.Errorf("incomplete hit %+v", tr)
			}
		}
		switch check {
		case "search-trace":
			if len(v.Traces) != 1 || ids[0] != fixtureTraceID {
				t.Fatalf("traces %v, want [%s]", ids, fixtureTraceID)
			}
			tr := v.Traces[0]
			root := traceotlp.SpanIDFor(1)
			if tr.RootServiceName != "nginx" || tr.RootTraceName != "/checkout" || tr.DurationMs != 150 ||
				tr.StartTimeUnixNano != strconv.FormatInt(fx.t0.UnixNano(), 10) || tr.SpanSets[0].Spans[0].SpanID != hex.EncodeToString(root[:]) {
				t.Errorf("hit %+v", tr)
			}
		case "search-any":
			if !slices.Contains(ids, fixtureTraceID) || !slices.Contains(ids, fx.syntheticID) {
				t.Errorf("traces %v lack %s or %s", ids, fixtureTraceID, fx.syntheticID)
			}
			if v.Traces[0].TraceID != fx.syntheticID {
				t.Errorf("newest first: got %v", ids)
			}
		case "search-synthetic":
			if !slices.Equal(ids, []string{fx.syntheticID}) || v.Traces[0].RootServiceName != "api" {
				t.Errorf("traces %+v, want [%s]", v.Traces, fx.syntheticID)
			}
		}
	case "error":
		var v struct{ Error, Message string }
		mustJSON(t, body, &v)
		if v.Error == "" || v.Message == "" {
			t.Errorf("error body %s", body)
		}
	case "trace-v1-proto":
		td, err := (&ptrace.ProtoUnmarshaler{}).UnmarshalTraces(body)
		if err != nil {
			t.Fatalf("tempopb.Trace as TracesData: %v", err)
		}
		fx.checkTrace(t, td, fixtureTraceID, fx.parents)
	case "trace-v2-proto", "trace-v2-proto-synthetic":
		inner := unwrapField1(t, body)
		td, err := (&ptrace.ProtoUnmarshaler{}).UnmarshalTraces(inner)
		if err != nil {
			t.Fatalf("TraceByIDResponse.trace as TracesData: %v", err)
		}
		if check == "trace-v2-proto" {
			fx.checkTrace(t, td, fixtureTraceID, fx.parents)
		} else {
			fx.checkTrace(t, td, fx.syntheticID, fx.syntheticParents)
		}
	case "trace-v1-json":
		var v map[string]json.RawMessage
		mustJSON(t, body, &v)
		if _, ok := v["batches"]; !ok || len(v) != 1 {
			t.Fatalf("v1 JSON keys: %s", body[:min(len(body), 200)])
		}
		otlp, _ := json.Marshal(map[string]json.RawMessage{"resourceSpans": v["batches"]})
		td, err := (&ptrace.JSONUnmarshaler{}).UnmarshalTraces(otlp)
		if err != nil {
			t.Fatal(err)
		}
		fx.checkTrace(t, td, fixtureTraceID, fx.parents)
	case "trace-v2-json":
		var v struct{ Trace json.RawMessage }
		mustJSON(t, body, &v)
		td, err := (&ptrace.JSONUnmarshaler{}).UnmarshalTraces(v.Trace)
		if err != nil {
			t.Fatal(err)
		}
		fx.checkTrace(t, td, fixtureTraceID, fx.parents)
	default:
		t.Fatalf("unknown check %q", check)
	}
}

func mustJSON(t *testing.T, body []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("decode %s: %v", body[:min(len(body), 300)], err)
	}
}

// unwrapField1 returns the bytes of field 1 of a TraceByIDResponse, failing
// on any other field.
func unwrapField1(t *testing.T, b []byte) []byte {
	t.Helper()
	var out []byte
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			t.Fatalf("bad tag: %v", protowire.ParseError(n))
		}
		b = b[n:]
		if num != 1 || typ != protowire.BytesType {
			t.Fatalf("unexpected field %d type %d", num, typ)
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			t.Fatalf("bad field 1: %v", protowire.ParseError(n))
		}
		out = append(out, v...)
		b = b[n:]
	}
	return out
}

// checkTrace asserts every span has trace id wantID and the parents expected.
func (fx *fixture) checkTrace(t *testing.T, td ptrace.Traces, wantID string, parents map[uint64]uint64) {
	t.Helper()
	if td.SpanCount() != len(parents) {
		t.Errorf("span count %d, want %d", td.SpanCount(), len(parents))
	}
	bySpanID := map[pcommon.SpanID]uint64{}
	type got struct {
		row    uint64
		parent pcommon.SpanID
	}
	var spans []got
	services := map[string]bool{}
	for i := 0; i < td.ResourceSpans().Len(); i++ {
		rs := td.ResourceSpans().At(i)
		if sv, ok := rs.Resource().Attributes().Get("service.name"); ok {
			services[sv.Str()] = true
		}
		for j := 0; j < rs.ScopeSpans().Len(); j++ {
			ss := rs.ScopeSpans().At(j).Spans()
			for k := 0; k < ss.Len(); k++ {
				sp := ss.At(k)
				if id := sp.TraceID(); hex.EncodeToString(id[:]) != wantID {
					t.Errorf("span %s has trace id %s, want %s", sp.Name(), hex.EncodeToString(id[:]), wantID)
				}
				row, ok := sp.Attributes().Get(traceotlp.AttrRowID)
				if !ok {
					t.Fatalf("span %s lacks %s", sp.Name(), traceotlp.AttrRowID)
				}
				bySpanID[sp.SpanID()] = uint64(row.Int())
				spans = append(spans, got{uint64(row.Int()), sp.ParentSpanID()})
			}
		}
	}
	for _, s := range spans {
		want, ok := parents[s.row]
		if !ok {
			t.Errorf("unexpected span row %d", s.row)
			continue
		}
		var p uint64
		if !s.parent.IsEmpty() {
			if p, ok = bySpanID[s.parent]; !ok {
				t.Errorf("row %d: parent span id %s not in the trace", s.row, hex.EncodeToString(s.parent[:]))
			}
		}
		if p != want {
			t.Errorf("row %d: parent row %d, want %d", s.row, p, want)
		}
	}
	if !services["api"] {
		t.Errorf("services %v lack api", services)
	}
}

func TestTraceQLParser(t *testing.T) {
	ok := map[string]int{
		"":    0,
		"{}":  0,
		"{ }": 0,
		`{ resource.service.name = "x" && span.http.status_code >= 500 && duration > 100ms && name = "GET /a" && status = error }`: 5,
		`{.service.name="a\"b" && kind=server && span.http.method = "GET" && span.custom.key != "v" && duration <= 1.5s}`:          5,
		"{ traceDuration >= 300µs && span:status = unset }":                                                                        2,
	}
	for q, n := range ok {
		conds, err := parseTraceQL(q)
		if err != nil || len(conds) != n {
			t.Errorf("parseTraceQL(%q) = %d conditions, %v; want %d", q, len(conds), err, n)
			continue
		}
		sq := newQuery()
		for _, cd := range conds {
			if err := applyCond(cd, &sq); err != nil {
				t.Errorf("applyCond(%q) in %q: %v", cd.attr, q, err)
			}
		}
	}
	bad := []struct{ q, msg string }{
		{`{ .a = "x" || .b = "y" }`, "||"},
		{`{ .a = "x" } && { .b = "y" }`, "several spansets"},
		{`{ .a = "x" } | count() > 2`, "pipeline"},
		{`{ .a =~ "x.*" }`, "regular expression"},
		{`{ (.a = "x") }`, "parentheses"},
		{`{ .a }`, "without a comparison"},
		{`{ .a = "x" `, "expected && or }"},
		{`.a = "x"`, "must start with '{'"},
		{`{ .a = "x }`, "unterminated"},
		{`{ .a = "x" } >> { .b = "y" }`, ">>"},
		{`{ .a & .b }`, "&&"},
		{`{ 5 = 5 }`, "attribute"},
	}
	for _, c := range bad {
		_, err := parseTraceQL(c.q)
		if err == nil || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("parseTraceQL(%q) = %v, want error containing %q", c.q, err, c.msg)
		}
	}
	badApply := []struct{ q, msg string }{
		{`{ resource.service.name != "x" }`, "only supports ="},
		{`{ kind = producer }`, "kind"},
		{`{ status = weird }`, "status must be"},
		{`{ duration > fast }`, "duration"},
		{`{ duration > 100 }`, "needs a unit"},
		{`{ span.http.status_code = "x" }`, "integer"},
		{`{ span.http.method > "GET" }`, "only supports = and !="},
		{`{ span.a'b = "x" }`, "unexpected character"},
		{`{ resource.service.name = "a" && resource.service.name = "b" }`, "two different"},
	}
	for _, c := range badApply {
		sq := newQuery()
		err := applyTraceQL(c.q, &sq)
		if err == nil || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("applyTraceQL(%q) = %v, want error containing %q", c.q, err, c.msg)
		}
	}
}

func TestTraceQLMapping(t *testing.T) {
	sq := newQuery()
	err := applyTraceQL(`{ resource.service.name = "api" && span.http.status_code >= 500 && duration > 100ms && duration < 2s && name = "GET /a" && status = error && kind = server }`, &sq)
	if err != nil {
		t.Fatal(err)
	}
	if sq.Service != "api" || sq.Name != "GET /a" || sq.Status != "error" || sq.MinDuration != 100*time.Millisecond+time.Microsecond ||
		sq.MaxDuration != 2*time.Second-time.Microsecond || len(sq.ObservationPoints) != 4 {
		t.Errorf("query %+v", sq)
	}
	if len(sq.Filters) != 3 || sq.Filters[0].Column != "response_code" || sq.Filters[0].Op != ">=" || sq.Filters[0].Value != "500" {
		t.Errorf("filters %+v", sq.Filters)
	}
	tags := newQuery()
	if err := applyTags(`service.name="my svc" http.status_code=500 name=/a error=true custom.k=v`, &tags); err != nil {
		t.Fatal(err)
	}
	if tags.Service != "my svc" || tags.Name != "/a" || tags.Status != "error" || len(tags.Filters) != 4 || tags.Filters[3].Column != "attributes['custom.k']" {
		t.Errorf("tags query %+v", tags)
	}
	for _, bad := range []string{`novalue`, `a="unterminated`, `a'b=c`, `http.status_code=abc`, `error=false`} {
		q := newQuery()
		if err := applyTags(bad, &q); err == nil {
			t.Errorf("applyTags(%q) succeeded", bad)
		}
	}
}

func TestSearchParamErrors(t *testing.T) {
	fx := newFixture(t)
	for _, q := range []string{
		"limit=0", "limit=x", "start=yesterday", "end=-5", "minDuration=fast", "maxDuration=-1s",
		"start=2000&end=1000", "q=%7B&limit=5", "q=a&q=b", "tags=a%27b%3Dc",
	} {
		resp, err := http.Get(fx.url + "/api/search?" + q)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), `"message"`) {
			t.Errorf("%s: %d %s, want 400 with a message", q, resp.StatusCode, body)
		}
	}
	for _, p := range []string{"/api/v2/search/tags?scope=bogus", "/api/v2/search/tag/status/values?start=x", "/api/search/tag/name/values?limit=-1"} {
		resp, err := http.Get(fx.url + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s: %d, want 400", p, resp.StatusCode)
		}
	}
	// An unknown or unusable tag has no values, as in Tempo.
	resp, err := http.Get(fx.url + "/api/v2/search/tag/span.we%27ird/values")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || strings.TrimSpace(string(body)) != `{"tagValues":[]}` {
		t.Errorf("unknown tag: %d %s", resp.StatusCode, body)
	}
}

func newQuery() tracesearch.Query { return tracesearch.Query{} }

func TestWantsProtobuf(t *testing.T) {
	for accept, want := range map[string]bool{
		"application/protobuf": true, "application/json, application/protobuf;q=0.9": true,
		"application/json": false, "": false, "*/*": false, "Application/Protobuf": true,
	} {
		r := httptest.NewRequest(http.MethodGet, "/api/traces/1", nil)
		if accept != "" {
			r.Header.Set("Accept", accept)
		}
		if got := wantsProtobuf(r); got != want {
			t.Errorf("Accept %q: %v, want %v", accept, got, want)
		}
	}
}

// TestMountedWithTraceAPI mounts the handlers as server/api does (its own
// GET /api/v1/traces and /api/v1/traces/{trace_id}, plus tracesearch and the
// Tempo patterns) and checks each route reaches the right handler.
func TestMountedWithTraceAPI(t *testing.T) {
	st, err := duckdb.Open(context.Background(), t.TempDir(), duckdb.Options{Retention: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	mux := http.NewServeMux()
	th := trace.NewHandler(st, trace.Options{})
	mux.Handle("GET /api/v1/traces", th)
	mux.Handle("GET /api/v1/traces/{trace_id}", th)
	mux.Handle("GET /api/v1/traces/search", tracesearch.NewHandler(st))
	tp := NewHandler(st, trace.Options{})
	for _, p := range Patterns() {
		mux.Handle(p, tp)
	}
	srv := httptest.NewServer(mux)
	defer srv.Close()
	for path, want := range map[string]string{
		"/api/v1/traces/search":                   `{"traces":[]}`,
		"/api/v1/traces/abc":                      `"error"`,
		"/api/echo":                               "echo",
		"/api/status/buildinfo":                   `"version":"2.1.0"`,
		"/api/search?q=%7B%7D":                    `"traces":[]`,
		"/api/search/tags":                        `"tagNames"`,
		"/api/v2/search/tags":                     `"scopes"`,
		"/api/search/tag/service.name/values":     `{"tagValues":[]}`,
		"/api/v2/search/tag/.service.name/values": `{"tagValues":[]}`,
		"/api/traces/" + missingTraceID:           "trace not found",
		"/api/v2/traces/" + missingTraceID:        "trace not found",
	} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(body), want) {
			t.Errorf("%s: %d %s, want %s", path, resp.StatusCode, body, want)
		}
	}
}
