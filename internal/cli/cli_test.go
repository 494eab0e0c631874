package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sightline-io/sightline/agent/tlstrack"
	"github.com/sightline-io/sightline/flowlog"
	"github.com/sightline-io/sightline/server/api"
	"github.com/sightline-io/sightline/server/store/duckdb"
)

func run(args ...string) (code int, stdout, stderr string) {
	var out, errOut bytes.Buffer
	code = Main(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestHelpForEveryCommand(t *testing.T) {
	for _, c := range commands() {
		t.Run(c.name, func(t *testing.T) {
			code, _, stderr := run(c.name, "--help")
			if code != 0 {
				t.Errorf("exit %d", code)
			}
			if !strings.HasPrefix(stderr, "Usage: sightline "+c.name) {
				t.Errorf("help output: %q", stderr)
			}
		})
	}
	code, stdout, _ := run("--help")
	if code != 0 {
		t.Errorf("top-level --help exit %d", code)
	}
	for _, c := range commands() {
		if !strings.Contains(stdout, "  "+c.name+" ") {
			t.Errorf("top-level help does not list %s:\n%s", c.name, stdout)
		}
	}
}

func TestUsageErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{nil, "Usage: sightline <command>"},
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"query"}, "exactly one SQL argument"},
		{[]string{"query", "--format", "xml", "SELECT 1"}, `unknown --format "xml"`},
		{[]string{"replay"}, "exactly one capture FILE"},
		{[]string{"replay", "--format", "csv", "x.pcap"}, `unknown --format "csv"`},
		{[]string{"up", "--no-such-flag"}, "flag provided but not defined"},
		{[]string{"trace"}, "give either one TRACE_ID or --span ROW_ID"},
		{[]string{"trace", "--span", "3", "abc"}, "give either one TRACE_ID or --span ROW_ID"},
		{[]string{"trace", "--format", "xml", "abc"}, `unknown --format "xml"`},
	}
	for _, tt := range tests {
		code, stdout, stderr := run(tt.args...)
		if code != 2 {
			t.Errorf("%q: exit %d, want 2", tt.args, code)
		}
		if !strings.Contains(stdout+stderr, tt.want) {
			t.Errorf("%q: output %q lacks %q", tt.args, stdout+stderr, tt.want)
		}
	}
}

func TestVersion(t *testing.T) {
	code, stdout, _ := run("version")
	if code != 0 || stdout != "sightline dev\n" {
		t.Errorf("exit %d, %q", code, stdout)
	}
}

// queryServer is the real API handler over a real DuckDB store with two rows.
func queryServer(t *testing.T) string {
	t.Helper()
	st, err := duckdb.Open(context.Background(), t.TempDir(), duckdb.Options{Retention: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	t0 := time.Date(2026, 5, 4, 3, 2, 1, 0, time.UTC)
	code := int32(200)
	rows := []flowlog.L7FlowLog{
		{Time: t0, L7Protocol: flowlog.L7HTTP1, Type: flowlog.TypeSession, RequestType: "GET",
			RequestResource: "/a,b\t\"c\"", ResponseCode: &code, ResponseDuration: 1500, Protocol: 6,
			IP0: netip.MustParseAddr("10.0.0.1"), IP1: netip.MustParseAddr("10.0.0.2")},
		{Time: t0.Add(time.Second), L7Protocol: flowlog.L7HTTP1, Type: flowlog.TypeRequest, RequestType: "POST",
			RequestResource: "/b", Protocol: 6, ResponseStatus: flowlog.StatusTimeout},
	}
	if err := st.InsertL7(context.Background(), rows); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api.NewHandler(st, nil, api.Options{}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestQueryFormats(t *testing.T) {
	url := queryServer(t)
	const sql = "SELECT request_type, request_resource, response_code, Enum(response_status) AS status FROM l7_flow_log ORDER BY time"
	tests := []struct {
		format string
		want   string
	}{
		{"table", "request_type  request_resource  response_code  status\n" +
			"GET           /a,b \"c\"          200            Success\n" +
			"POST          /b                NULL           Timeout\n" +
			"(2 rows)\n"},
		{"csv", "request_type,request_resource,response_code,status\n" +
			"GET,\"/a,b\t\"\"c\"\"\",200,Success\n" +
			"POST,/b,,Timeout\n"},
		{"json", `{"columns":["request_type","request_resource","response_code","status"],` +
			`"rows":[["GET","/a,b\t\"c\"",200,"Success"],["POST","/b",null,"Timeout"]]}` + "\n"},
	}
	for _, tt := range tests {
		t.Run(tt.format, func(t *testing.T) {
			code, stdout, stderr := run("query", "--server", url, "--format", tt.format, sql)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			if stdout != tt.want {
				t.Errorf("got\n%s\nwant\n%s", stdout, tt.want)
			}
		})
	}
}

func TestQueryErrors(t *testing.T) {
	url := queryServer(t)
	code, _, stderr := run("query", "--server", url, "SELECT no_such_column FROM l7_flow_log")
	if code != 1 || !strings.Contains(stderr, "400 Bad Request") || !strings.Contains(stderr, "no_such_column") {
		t.Errorf("bad SQL: exit %d, %q", code, stderr)
	}
	code, _, stderr = run("query", "--server", url, "DELETE FROM l7_flow_log")
	if code != 1 || !strings.Contains(stderr, "read-only") {
		t.Errorf("write: exit %d, %q", code, stderr)
	}
	// Nothing listens on a port just released.
	srv := httptest.NewServer(nil)
	dead := srv.URL
	srv.Close()
	code, _, stderr = run("query", "--server", dead, "--timeout", "5s", "SELECT 1")
	if code != 1 || !strings.Contains(stderr, "connect") {
		t.Errorf("dead server: exit %d, %q", code, stderr)
	}
}

func TestReplayCommand(t *testing.T) {
	capture := filepath.Join("..", "..", "testdata", "pcap", "http_curl_nginx.pcap")
	code, stdout, stderr := run("replay", capture)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	if len(lines) != 7 || !strings.Contains(lines[0], `"request_resource":"/index.html"`) {
		t.Errorf("%d lines, first %q", len(lines), lines[0])
	}

	garbage := filepath.Join(t.TempDir(), "garbage.pcap")
	if err := os.WriteFile(garbage, []byte("this is not a capture"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr = run("replay", garbage)
	if code != 1 || stdout != "" || !strings.Contains(stderr, "not a pcap or pcapng file") {
		t.Errorf("garbage: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}

// TestTraceCommand assembles the trace of two spans sharing a trace id (the
// second a child of the first) through the real API and prints the tree.
func TestTraceCommand(t *testing.T) {
	st, err := duckdb.Open(context.Background(), t.TempDir(), duckdb.Options{Retention: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	t0 := time.Now().UTC()
	rows := []flowlog.L7FlowLog{
		{Time: t0, StartTime: t0, EndTime: t0.Add(50 * time.Millisecond), ResponseDuration: 50000, ObservationPoint: "s-app",
			RequestType: "GET", RequestResource: "/checkout", TraceID: "0af7651916cd43dd8448eb211c80319c", SpanID: "b7ad6b7169203331"},
		{Time: t0.Add(time.Millisecond), StartTime: t0.Add(time.Millisecond), EndTime: t0.Add(11 * time.Millisecond), ResponseDuration: 10000,
			ObservationPoint: "c-app", RequestType: "GET", RequestResource: "user:1", L7Protocol: flowlog.L7Redis,
			TraceID: "0af7651916cd43dd8448eb211c80319c", SpanID: "00f067aa0ba902b7", ParentSpanID: "b7ad6b7169203331"},
	}
	if err := st.InsertL7(context.Background(), rows); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api.NewHandler(st, nil, api.Options{}))
	defer srv.Close()
	code, stdout, stderr := run("trace", "--server", srv.URL, "0af7651916cd43dd8448eb211c80319c")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	first, second := strings.Index(stdout, "/checkout"), strings.Index(stdout, "user:1")
	if first < 0 || second < first {
		t.Fatalf("tree:\n%s", stdout)
	}
	code, _, stderr = run("trace", "--server", srv.URL, "ffffffffffffffffffffffffffffffff")
	if code != 1 || !strings.Contains(stderr, "404") {
		t.Errorf("unknown trace: exit %d, %q", code, stderr)
	}
}

func TestDoctorTLSCoverage(t *testing.T) {
	cov := tlstrack.Coverage{
		Processes: []tlstrack.Process{
			{PID: 42, Comm: "nginx", Exe: "/usr/sbin/nginx", Covered: true,
				Libraries: []tlstrack.Library{{Path: "/usr/lib/x86_64-linux-gnu/libssl.so.3", Kind: tlstrack.KindOpenSSL, Version: "3"}}},
			{PID: 43, Comm: "envoy", Exe: "/usr/local/bin/envoy",
				Uncovered: []tlstrack.Failure{{Path: "/usr/local/bin/envoy", Reason: "no SSL symbols: stripped"}}},
		},
		Stats: tlstrack.Stats{Files: 1, Processes: 1, NoSymbols: 1},
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/debug/tls" {
			http.NotFound(w, r)
			return
		}
		json.NewEncoder(w).Encode(cov)
	}))
	defer srv.Close()
	code, stdout, stderr := run("doctor", "--tls", srv.URL+"/")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{"42", "nginx", "libssl.so.3 (openssl 3)", "envoy", "false", "NOT /usr/local/bin/envoy: no SSL symbols",
		"processes covered 1, not covered (no symbols) 1"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, stdout)
		}
	}
	code, _, stderr = run("doctor", "--tls", srv.URL+"/nothing-here")
	if code == 0 || !strings.Contains(stderr, "404") {
		t.Errorf("bad agent URL: exit %d, %s", code, stderr)
	}
}
