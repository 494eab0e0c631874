package tracesearch

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sightline-io/sightline/flowlog"
	"github.com/sightline-io/sightline/server/store/duckdb"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func openStore(t testing.TB) *duckdb.Store {
	t.Helper()
	st, err := duckdb.Open(context.Background(), t.TempDir(), duckdb.Options{Retention: -1})
	if err != nil {
		t.Fatalf("duckdb.Open: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

type mod func(*flowlog.L7FlowLog)

func row(id uint64, obs string, start, dur time.Duration, mods ...mod) flowlog.L7FlowLog {
	r := flowlog.L7FlowLog{
		ID: id, Time: t0.Add(start), StartTime: t0.Add(start), EndTime: t0.Add(start + dur),
		ResponseDuration: uint64(dur / time.Microsecond), AgentID: "A", Host: "A", OrgID: 1, TeamID: 1,
		SignalSource: flowlog.SourceEBPF, ObservationPoint: obs, L7Protocol: flowlog.L7HTTP1, L7ProtocolStr: "HTTP",
		Type: flowlog.TypeSession, RequestType: "GET", RequestResource: "/", Endpoint: "/", Protocol: 6,
	}
	for _, m := range mods {
		m(&r)
	}
	return r
}

func proc(k0, k1 string) mod {
	return func(r *flowlog.L7FlowLog) { r.ProcessKName0, r.ProcessKName1 = k0, k1 }
}

func ep(e string) mod {
	return func(r *flowlog.L7FlowLog) { r.Endpoint, r.RequestResource = e, e }
}

func code(c int32, s flowlog.ResponseStatus) mod {
	return func(r *flowlog.L7FlowLog) { r.ResponseCode, r.ResponseStatus = &c, s }
}

func traced(tid, sid, parent string) mod {
	return func(r *flowlog.L7FlowLog) { r.TraceID, r.SpanID, r.ParentSpanID = tid, sid, parent }
}

func hop(ip0, ip1 string, cport, sport uint16, seq uint32) mod {
	return func(r *flowlog.L7FlowLog) {
		r.IP0, r.IP1 = netip.MustParseAddr(ip0), netip.MustParseAddr(ip1)
		r.ClientPort, r.ServerPort, r.ReqTCPSeq = cport, sport, seq
	}
}

func proto(p flowlog.L7Protocol, typ, res string) mod {
	return func(r *flowlog.L7FlowLog) {
		r.L7Protocol, r.L7ProtocolStr, r.RequestType, r.RequestResource, r.Endpoint = p, p.String(), typ, res, res
	}
}

func attrs(kv ...string) mod {
	return func(r *flowlog.L7FlowLog) {
		r.Attributes = map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			r.Attributes[kv[i]] = kv[i+1]
		}
	}
}

// fixture: two traced requests, one eBPF-only request seen at four points, a
// redis call, an error, and noise outside the range.
func fixture(t *testing.T) *duckdb.Store {
	st := openStore(t)
	const tA = "0af7651916cd43dd8448eb211c80319c"
	rows := []flowlog.L7FlowLog{
		// Trace A: nginx s-p (root) → api s-p (child by traceparent).
		row(1, "s-p", 0, 120*time.Millisecond, proc("", "nginx"), ep("/api/users"), code(200, 0), traced(tA, "a1", "")),
		row(2, "s-p", 5*time.Millisecond, 100*time.Millisecond, proc("", "api"), ep("/api/users"), code(200, 0), traced(tA, "a2", "a1")),
		// eBPF-only request to api seen at c-p, c, s, s-p (one hop).
		row(10, "c-p", time.Second, 50*time.Millisecond, proc("curl", ""), ep("/api/orders/1"), hop("10.0.0.1", "10.0.0.2", 40000, 8080, 77), code(500, flowlog.StatusServerError)),
		row(11, "c", time.Second+time.Millisecond, 48*time.Millisecond, ep("/api/orders/1"), hop("10.0.0.1", "10.0.0.2", 40000, 8080, 77), code(500, flowlog.StatusServerError)),
		row(12, "s", time.Second+2*time.Millisecond, 46*time.Millisecond, ep("/api/orders/1"), hop("10.0.0.1", "10.0.0.2", 40000, 8080, 77), code(500, flowlog.StatusServerError)),
		row(13, "s-p", time.Second+3*time.Millisecond, 44*time.Millisecond, proc("", "api"), ep("/api/orders/1"), hop("10.0.0.1", "10.0.0.2", 40000, 8080, 77), code(500, flowlog.StatusServerError), attrs("tenant", "o'brien")),
		// The api's redis call (client process span without a parent).
		row(14, "c-p", time.Second+10*time.Millisecond, 2*time.Millisecond, proc("api", ""), proto(flowlog.L7Redis, "GET", "GET k"), hop("10.0.0.2", "10.0.0.3", 50000, 6379, 99)),
		// A client error, a timeout, and an app span.
		row(20, "s-p", 2*time.Second, 10*time.Millisecond, proc("", "api"), ep("/login"), code(404, flowlog.StatusClientError)),
		row(21, "s-p", 3*time.Second, 5*time.Second, proc("", "api"), ep("/slow"), code(0, flowlog.StatusTimeout)),
		row(22, "s-app", 4*time.Second, 30*time.Millisecond, proc("", "checkout"), ep("/pay"), code(200, 0), traced("1234", "c1", ""),
			func(r *flowlog.L7FlowLog) { r.SignalSource = flowlog.SourceOTel }),
		// Outside the range.
		row(30, "s-p", 3*time.Hour, time.Millisecond, proc("", "api"), ep("/api/users")),
	}
	if err := st.InsertL7(context.Background(), rows); err != nil {
		t.Fatalf("InsertL7: %v", err)
	}
	return st
}

func ids(rs []Result) []uint64 {
	out := make([]uint64, len(rs))
	for i, r := range rs {
		out[i] = r.ID
	}
	return out
}

func TestSearch(t *testing.T) {
	st := fixture(t)
	base := Query{Start: t0.Add(-time.Minute), End: t0.Add(time.Hour)}
	with := func(f func(*Query)) Query { q := base; f(&q); return q }
	cases := []struct {
		name string
		q    Query
		want []uint64
	}{
		{"all, newest first, collapsed", base, []uint64{22, 21, 20, 14, 13, 1}},
		{"service server side", with(func(q *Query) { q.Service = "api" }), []uint64{21, 20, 14, 13, 2}},
		{"service of a child span", with(func(q *Query) { q.Service = "nginx" }), []uint64{1}},
		{"endpoint exact", with(func(q *Query) { q.Endpoint = "/login" }), []uint64{20}},
		{"endpoint prefix", with(func(q *Query) { q.Endpoint = "/api/*" }), []uint64{13, 1}},
		{"endpoint prefix with underscore is literal", with(func(q *Query) { q.Endpoint = "/api_*" }), []uint64{}},
		{"status error", with(func(q *Query) { q.Status = "error" }), []uint64{21, 20, 13}},
		{"status client_error", with(func(q *Query) { q.Status = "client_error" }), []uint64{20}},
		{"status server_error", with(func(q *Query) { q.Status = "server_error" }), []uint64{13}},
		{"status timeout", with(func(q *Query) { q.Status = "timeout" }), []uint64{21}},
		{"status ok", with(func(q *Query) { q.Status = "ok" }), []uint64{22, 14, 1}},
		{"min duration", with(func(q *Query) { q.MinDuration = 100 * time.Millisecond }), []uint64{21, 1}},
		{"max duration", with(func(q *Query) { q.MaxDuration = 10 * time.Millisecond }), []uint64{20, 14}},
		{"min and max", with(func(q *Query) { q.MinDuration, q.MaxDuration = 20*time.Millisecond, time.Second }), []uint64{22, 13, 1}},
		{"protocol name", with(func(q *Query) { q.Protocol = "redis" }), []uint64{14}},
		{"protocol number", with(func(q *Query) { q.Protocol = "80" }), []uint64{14}},
		{"tag column", with(func(q *Query) { q.Tags = map[string]string{"response_code": "404"} }), []uint64{20}},
		{"tag attribute with quote", with(func(q *Query) { q.Tags = map[string]string{"attributes['tenant']": "o'brien"} }), []uint64{13}},
		{"tag attribute dotted", with(func(q *Query) { q.Tags = map[string]string{"attributes.tenant": "o'brien"} }), []uint64{13}},
		{"filter range", with(func(q *Query) { q.Filters = []Filter{{"response_code", ">=", "400"}} }), []uint64{20, 13}},
		{"filter not equal", with(func(q *Query) { q.Filters = []Filter{{"observation_point", "!=", "s-p"}} }), []uint64{22, 14, 12}},
		{"name endpoint", with(func(q *Query) { q.Name = "/login" }), []uint64{20}},
		{"name type and resource", with(func(q *Query) { q.Name = "GET GET k" }), []uint64{}},
		{"observation points", with(func(q *Query) { q.ObservationPoints = []string{"s-app", "c-p"} }), []uint64{22, 14, 10}},
		{"limit", with(func(q *Query) { q.Limit = 2 }), []uint64{22, 21}},
		{"range excludes", Query{Start: t0.Add(time.Hour), End: t0.Add(4 * time.Hour)}, []uint64{30}},
		{"injection attempt is a value", with(func(q *Query) { q.Service = "x' OR '1'='1" }), []uint64{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rs, err := Search(context.Background(), st, c.q)
			if err != nil {
				t.Fatalf("Search: %v", err)
			}
			if got := ids(rs); !slices.Equal(got, c.want) {
				t.Errorf("got %v, want %v", got, c.want)
			}
		})
	}
}

func TestSearchResultFields(t *testing.T) {
	st := fixture(t)
	rs, err := Search(context.Background(), st, Query{Start: t0.Add(-time.Minute), End: t0.Add(time.Hour), Endpoint: "/api/*"})
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 2 {
		t.Fatalf("got %d results", len(rs))
	}
	hop, root := rs[0], rs[1]
	if root.TraceID != "0af7651916cd43dd8448eb211c80319c" || root.RootService != "nginx" || root.RootName != "/api/users" ||
		root.DurationUS != 120000 || root.Status != "ok" || root.ObservationPoint != "s-p" || !root.StartTime.Equal(t0) {
		t.Errorf("root result %+v", root)
	}
	if hop.TraceID != "" || hop.RootService != "api" || hop.Status != "server_error" || hop.ResponseCode == nil || *hop.ResponseCode != 500 {
		t.Errorf("hop result %+v", hop)
	}
}

func TestSearchErrors(t *testing.T) {
	st := openStore(t)
	cases := []struct {
		name string
		q    Query
		msg  string
	}{
		{"bad status", Query{Status: "bad"}, "status must be"},
		{"end before start", Query{Start: t0, End: t0.Add(-time.Second)}, "must be after"},
		{"limit too large", Query{Limit: MaxLimit + 1}, "limit"},
		{"negative limit", Query{Limit: -1}, "limit"},
		{"max below min", Query{MinDuration: time.Second, MaxDuration: time.Millisecond}, "below"},
		{"backslash", Query{Service: `a\b`}, "backslash"},
		{"control char", Query{Endpoint: "a\nb"}, "control"},
		{"unknown column", Query{Tags: map[string]string{"password": "x"}}, "unknown"},
		{"int column not int", Query{Tags: map[string]string{"response_code": "abc"}}, "integer"},
		{"bad attribute key", Query{Tags: map[string]string{"attributes['a'']": "x"}}, "attribute key"},
		{"range on string", Query{Filters: []Filter{{"endpoint", ">", "a"}}}, "only supports"},
		{"bad operator", Query{Filters: []Filter{{"response_code", "~", "1"}}}, "operator"},
		{"non-ASCII prefix", Query{Endpoint: "/é*"}, "ASCII"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Search(context.Background(), st, c.q)
			if !errors.Is(err, ErrBadQuery) || !strings.Contains(err.Error(), c.msg) {
				t.Errorf("err = %v, want ErrBadQuery containing %q", err, c.msg)
			}
		})
	}
}

func TestDefaultRange(t *testing.T) {
	now := t0.Add(30 * time.Minute)
	sql, err := SQL(Query{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	want := "time BETWEEN '2026-03-01 11:30:00.000000' AND '2026-03-01 12:30:00.000000'"
	if !strings.Contains(sql, want) || !strings.Contains(sql, "LIMIT 80") {
		t.Errorf("sql = %s", sql)
	}
}

func TestHandler(t *testing.T) {
	st := fixture(t)
	srv := httptest.NewServer(NewHandler(st))
	defer srv.Close()
	start, end := url.QueryEscape(t0.Add(-time.Minute).Format(time.RFC3339)), "1772370000" // 2026-03-01T13:00:00Z
	cases := []struct {
		name   string
		query  string
		status int
		want   []uint64
		msg    string
	}{
		{"service and min duration", "service=api&min_duration=40ms&start=" + start + "&end=" + end, 200, []uint64{21, 13, 2}, ""},
		{"status and limit", "status=error&limit=1&start=" + start + "&end=" + end, 200, []uint64{21}, ""},
		{"protocol and tag", "protocol=HTTP&tag.response_code=404&start=" + start + "&end=" + end, 200, []uint64{20}, ""},
		{"microsecond durations", "max_duration=10000&start=" + start + "&end=" + end, 200, []uint64{20, 14}, ""},
		{"default range finds nothing old", "", 200, []uint64{}, ""},
		{"bad duration", "min_duration=fast", 400, nil, "min_duration"},
		{"bad start", "start=yesterday", 400, nil, "start"},
		{"bad limit", "limit=0", 400, nil, "limit"},
		{"repeated", "service=a&service=b", 400, nil, "2 times"},
		{"bad status", "status=weird", 400, nil, "status"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp, err := http.Get(srv.URL + "/api/v1/traces/search?" + c.query)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != c.status || resp.Header.Get("Content-Type") != "application/json" {
				t.Fatalf("status %d %s, want %d", resp.StatusCode, resp.Header.Get("Content-Type"), c.status)
			}
			if c.status != 200 {
				var e struct{ Error string }
				if err := json.NewDecoder(resp.Body).Decode(&e); err != nil || !strings.Contains(e.Error, c.msg) {
					t.Errorf("error %q (%v), want %q", e.Error, err, c.msg)
				}
				return
			}
			var body Response
			if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
				t.Fatal(err)
			}
			if body.Traces == nil {
				t.Errorf("traces is null, want a list")
			}
			if got := ids(body.Traces); !slices.Equal(got, c.want) {
				t.Errorf("got %v, want %v", got, c.want)
			}
		})
	}
}

func TestSearchName(t *testing.T) {
	st := openStore(t)
	rows := []flowlog.L7FlowLog{
		row(1, "s-p", 0, time.Millisecond, proto(flowlog.L7MySQL, "SELECT", "SELECT 1 FROM t"), func(r *flowlog.L7FlowLog) { r.Endpoint = "" }),
		row(2, "s-p", time.Second, time.Millisecond, ep("/users/{id}"), func(r *flowlog.L7FlowLog) { r.RequestResource = "/users/7" }),
	}
	if err := st.InsertL7(context.Background(), rows); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string][]uint64{
		"SELECT SELECT 1 FROM t": {1}, "SELECT 1 FROM t": {1}, "/users/{id}": {2}, "/users/7": {2}, "GET /users/7": {},
	} {
		rs, err := Search(context.Background(), st, Query{Name: name, Start: t0.Add(-time.Minute), End: t0.Add(time.Minute)})
		if err != nil {
			t.Fatal(err)
		}
		if got := ids(rs); !slices.Equal(got, want) {
			t.Errorf("name %q: got %v, want %v", name, got, want)
		}
	}
}

func TestCollapseGroups(t *testing.T) {
	st := openStore(t)
	sys := func(req, resp uint64) mod {
		return func(r *flowlog.L7FlowLog) { r.SyscallTraceIDRequest, r.SyscallTraceIDResponse = req, resp }
	}
	agent := func(a string) mod { return func(r *flowlog.L7FlowLog) { r.AgentID, r.Host = a, a } }
	rows := []flowlog.L7FlowLog{
		// api s-p and the client calls its thread made: one trace.
		row(1, "s-p", 0, 100*time.Millisecond, proc("", "api"), sys(7, 8)),
		row(2, "c-p", 10*time.Millisecond, 5*time.Millisecond, proc("api", ""), sys(7, 0), hop("10.0.0.2", "10.0.0.3", 50000, 6379, 5)),
		row(3, "s-p", 11*time.Millisecond, 3*time.Millisecond, proc("", "redis"), hop("10.0.0.2", "10.0.0.3", 50000, 6379, 5)),
		row(4, "c-p", 50*time.Millisecond, 5*time.Millisecond, proc("api", ""), sys(8, 0)),
		// Same syscall id outside the window, and on another agent: separate.
		row(5, "c-p", 200*time.Millisecond, 5*time.Millisecond, proc("api", ""), sys(7, 0)),
		row(6, "c-p", 20*time.Millisecond, 5*time.Millisecond, proc("api", ""), sys(7, 0), agent("B")),
		// A trace id lent to the group's rows that have none.
		row(7, "s-p", time.Second, 50*time.Millisecond, proc("", "web"), sys(9, 9), traced("abc", "s1", "")),
		row(8, "c-p", time.Second+time.Millisecond, 10*time.Millisecond, proc("web", ""), sys(9, 0)),
	}
	if err := st.InsertL7(context.Background(), rows); err != nil {
		t.Fatal(err)
	}
	rs, err := Search(context.Background(), st, Query{Start: t0.Add(-time.Minute), End: t0.Add(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := ids(rs), []uint64{7, 5, 6, 1}; !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	rs, err = Search(context.Background(), st, Query{Start: t0.Add(-time.Minute), End: t0.Add(time.Minute), Service: "web", ObservationPoints: []string{"c-p"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 1 || rs[0].ID != 8 || rs[0].TraceID != "" {
		t.Errorf("client-only search: %+v", rs)
	}
}
