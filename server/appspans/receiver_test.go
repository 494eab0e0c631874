package appspans

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/sightline-io/sightline/flowlog"
	"github.com/sightline-io/sightline/server/store/duckdb"
)

func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

func openStore(t *testing.T) *duckdb.Store {
	t.Helper()
	s, err := duckdb.Open(context.Background(), t.TempDir(), duckdb.Options{Retention: -1})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// testTraces builds one trace of five spans: an HTTP server span, a redis
// client span, an internal span, a failing gRPC client span and a 404.
func testTraces(tid byte) ptrace.Traces {
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", "frontend")
	rs.Resource().Attributes().PutStr("host.name", "node-a")
	spans := rs.ScopeSpans().AppendEmpty().Spans()
	traceID := pcommon.TraceID{tid, 0xa1, 0xb2, 0xc3, 0xd4, 0xe5, 0xf6, 0x07, 8, 9, 10, 11, 12, 13, 14, 15}
	add := func(id byte, parent byte, kind ptrace.SpanKind, name string, startUS, durUS int64, attrs map[string]any) ptrace.Span {
		sp := spans.AppendEmpty()
		sp.SetTraceID(traceID)
		sp.SetSpanID(pcommon.SpanID{0, 0, 0, 0, 0, 0, 0xee, id})
		if parent != 0 {
			sp.SetParentSpanID(pcommon.SpanID{0, 0, 0, 0, 0, 0, 0xee, parent})
		}
		sp.SetKind(kind)
		sp.SetName(name)
		sp.SetStartTimestamp(ts(time.Duration(startUS) * time.Microsecond))
		sp.SetEndTimestamp(ts(time.Duration(startUS+durUS) * time.Microsecond))
		_ = sp.Attributes().FromRaw(attrs)
		return sp
	}
	add(1, 0, ptrace.SpanKindServer, "GET /users/{id}", 0, 1500, map[string]any{
		"http.request.method": "GET", "url.path": "/users/42", "http.route": "/users/{id}",
		"server.address": "api.example.com", "server.port": int64(8080), "client.address": "10.0.0.5", "client.port": int64(51234),
		"http.response.status_code": int64(200), "user_agent.original": "curl/8", "http.request.header.authorization": "Bearer s3cret",
	})
	add(2, 1, ptrace.SpanKindClient, "GET", 100, 300, map[string]any{
		"db.system": "redis", "db.statement": "GET user:42", "db.namespace": "0",
		"server.address": "10.0.0.7", "server.port": int64(6379), "peer.service": "cache",
	})
	add(3, 1, ptrace.SpanKindInternal, "render", 500, 200, nil)
	e := add(4, 1, ptrace.SpanKindClient, "shop.Cart/Add", 800, 400, map[string]any{
		"rpc.system": "grpc", "rpc.service": "shop.Cart", "rpc.method": "Add", "rpc.grpc.status_code": int64(14),
	})
	e.Status().SetCode(ptrace.StatusCodeError)
	e.Status().SetMessage("upstream unavailable")
	add(5, 0, ptrace.SpanKindServer, "POST /orders", 2000, 50, map[string]any{
		"http.request.method": "POST", "http.target": "/orders?id=9", "http.route": "/orders", "http.status_code": int64(404),
	})
	return td
}

const spanColumns = `span_id, observation_point, parent_span_id, signal_source, l7_protocol, l7_protocol_str, request_type,
	request_domain, request_resource, endpoint, response_code, response_status, response_exception, response_duration,
	process_kname_0, process_kname_1, attributes['service.name'], ip_0, ip_1, client_port, server_port, host, type`

// wantSpans is what testTraces(tid) reads back, in span_id order.
var wantSpans = [][]string{
	{"000000000000ee01", "s-app", "", "4", "20", "HTTP", "GET", "api.example.com", "/users/42", "/users/{id}", "200", "0", "", "1500",
		"", "frontend", "frontend", "10.0.0.5", "", "51234", "8080", "node-a", "2"},
	{"000000000000ee02", "c-app", "000000000000ee01", "4", "80", "Redis", "GET", "0", "GET user:42", "GET", "<nil>", "0", "", "300",
		"frontend", "cache", "frontend", "", "10.0.0.7", "0", "6379", "node-a", "2"},
	{"000000000000ee03", "app", "000000000000ee01", "4", "0", "N/A", "render", "", "", "render", "<nil>", "0", "", "200",
		"frontend", "", "frontend", "", "", "0", "0", "node-a", "2"},
	{"000000000000ee04", "c-app", "000000000000ee01", "4", "41", "gRPC", "Add", "", "shop.Cart/Add", "shop.Cart/Add", "14", "3",
		"upstream unavailable", "400", "frontend", "", "frontend", "", "", "0", "0", "node-a", "2"},
	{"000000000000ee05", "s-app", "", "4", "20", "HTTP", "POST", "", "/orders?id=9", "/orders", "404", "4", "", "50",
		"", "frontend", "frontend", "", "", "0", "0", "node-a", "2"},
}

func traceHex(tid byte) string { return fmt.Sprintf("%02xa1b2c3d4e5f60708090a0b0c0d0e0f", tid) }

func querySpans(t *testing.T, s *duckdb.Store, tid byte) [][]string {
	t.Helper()
	res, err := s.Query(context.Background(), "SELECT "+spanColumns+" FROM l7_flow_log WHERE trace_id = '"+traceHex(tid)+"' ORDER BY span_id")
	if err != nil {
		t.Fatalf("query: %v", err)
	}
	out := make([][]string, len(res.Rows))
	for i, row := range res.Rows {
		for _, v := range row {
			out[i] = append(out[i], fmt.Sprint(v))
		}
	}
	return out
}

func assertSpans(t *testing.T, s *duckdb.Store, tid byte) {
	t.Helper()
	got := querySpans(t, s, tid)
	if len(got) != len(wantSpans) {
		t.Fatalf("trace %s: %d rows, want %d: %v", traceHex(tid), len(got), len(wantSpans), got)
	}
	cols := strings.Split(strings.Join(strings.Fields(spanColumns), " "), ", ")
	for i := range got {
		for j := range got[i] {
			if got[i][j] != wantSpans[i][j] {
				t.Errorf("span %d column %s = %q, want %q", i+1, cols[j], got[i][j], wantSpans[i][j])
			}
		}
	}
	res, err := s.Query(context.Background(), "SELECT attributes['http.request.header.authorization'], attributes['user_agent.original'], "+
		"start_time = TIMESTAMP '2026-03-01 12:00:00', time = start_time FROM l7_flow_log WHERE span_id = '000000000000ee01' AND trace_id = '"+traceHex(tid)+"'")
	if err != nil {
		t.Fatalf("query: %v", err)
	}
	if got := fmt.Sprint(res.Rows); got != "[[*** curl/8 true true]]" {
		t.Errorf("attributes/time row = %s", got)
	}
}

func startHTTP(t *testing.T, r *Receiver) string {
	t.Helper()
	srv := httptest.NewServer(r.Handler())
	t.Cleanup(srv.Close)
	return srv.URL
}

func post(t *testing.T, url, ct, enc string, body []byte) (int, string, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	if enc != "" {
		req.Header.Set("Content-Encoding", enc)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Content-Type"), out
}

func gz(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	if _, err := w.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestOTLPHTTPIntoStore(t *testing.T) {
	s := openStore(t)
	reg := prometheus.NewRegistry()
	r := New(s.InsertL7, Options{Registerer: reg})
	url := startHTTP(t, r) + PathOTLPTraces

	tests := []struct {
		name string
		tid  byte
		ct   string
		gzip bool
	}{
		{"protobuf", 0x11, ctProtobuf, false},
		{"json", 0x12, ctJSON, false},
		{"protobuf gzip", 0x13, ctProtobuf + "; charset=binary", true},
		{"json gzip", 0x14, "application/json; charset=utf-8", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := ptraceotlp.NewExportRequestFromTraces(testTraces(tc.tid))
			var (
				body []byte
				err  error
			)
			if strings.HasPrefix(tc.ct, ctJSON) {
				body, err = req.MarshalJSON()
			} else {
				body, err = req.MarshalProto()
			}
			if err != nil {
				t.Fatal(err)
			}
			enc := ""
			if tc.gzip {
				body, enc = gz(t, body), "gzip"
			}
			code, ct, out := post(t, url, tc.ct, enc, body)
			if code != http.StatusOK {
				t.Fatalf("status %d: %s", code, out)
			}
			resp := ptraceotlp.NewExportResponse()
			if strings.HasPrefix(tc.ct, ctJSON) {
				if ct != ctJSON {
					t.Errorf("response Content-Type %q", ct)
				}
				err = resp.UnmarshalJSON(out)
			} else {
				if ct != ctProtobuf {
					t.Errorf("response Content-Type %q", ct)
				}
				err = resp.UnmarshalProto(out)
			}
			if err != nil {
				t.Errorf("response does not decode: %v (%q)", err, out)
			}
			assertSpans(t, s, tc.tid)
		})
	}
	if st := r.Stats(); st != (Stats{Received: 20, Converted: 20}) {
		t.Errorf("stats %+v", st)
	}
	mfs, err := reg.Gather()
	if err != nil || len(mfs) != 1 || mfs[0].GetName() != "sightline_appspans_spans_total" {
		t.Errorf("metrics %v %v", mfs, err)
	}
}

func TestOTLPGRPCIntoStore(t *testing.T) {
	s := openStore(t)
	r := New(s.InsertL7, Options{})
	gs := grpc.NewServer()
	r.RegisterGRPC(gs)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)

	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := ptraceotlp.NewGRPCClient(cc).Export(ctx, ptraceotlp.NewExportRequestFromTraces(testTraces(0x21))); err != nil {
		t.Fatalf("Export: %v", err)
	}
	assertSpans(t, s, 0x21)
	if st := r.Stats(); st != (Stats{Received: 5, Converted: 5}) {
		t.Errorf("stats %+v", st)
	}

	// A failing sink is reported as Unavailable (retryable) and counted.
	failing := New(func(context.Context, []flowlog.L7FlowLog) error { return errors.New("disk full") }, Options{Logger: quietLogger()})
	gs2 := grpc.NewServer()
	failing.RegisterGRPC(gs2)
	lis2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = gs2.Serve(lis2) }()
	t.Cleanup(gs2.Stop)
	cc2, err := grpc.NewClient(lis2.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc2.Close() })
	_, err = ptraceotlp.NewGRPCClient(cc2).Export(ctx, ptraceotlp.NewExportRequestFromTraces(testTraces(0x22)))
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "disk full") {
		t.Errorf("failing sink: %v", err)
	}
	if st := failing.Stats(); st != (Stats{Received: 5, Rejected: 5}) {
		t.Errorf("stats %+v", st)
	}
}

// zipkinBody follows the Zipkin v2 JSON model: a server span, its client
// call with a 64-bit trace id sibling trace, an error span and a span
// without an id (skipped).
const zipkinBody = `[
  {
    "traceId": "5982fe77008310cc80f1da5e10147517",
    "id": "67fae42571535f60",
    "parentId": "90394f6bcffb5d13",
    "kind": "SERVER",
    "name": "get /api",
    "timestamp": 1772366400000000,
    "duration": 2000,
    "localEndpoint": {"serviceName": "backend", "ipv4": "192.168.99.101", "port": 9000},
    "remoteEndpoint": {"ipv4": "172.19.0.2", "port": 58648},
    "tags": {"http.method": "GET", "http.path": "/api", "http.status_code": "200", "http.route": "/api"},
    "shared": true
  },
  {
    "traceId": "5982fe77008310cc80f1da5e10147517",
    "id": "7a1b2c3d4e5f6071",
    "parentId": "67fae42571535f60",
    "kind": "CLIENT",
    "name": "query",
    "timestamp": 1772366400000500,
    "duration": 700,
    "localEndpoint": {"serviceName": "backend", "ipv4": "192.168.99.101"},
    "remoteEndpoint": {"serviceName": "mysql", "ipv6": "2001:db8::3306", "port": 3306},
    "annotations": [{"timestamp": 1772366400000600, "value": "ws"}],
    "tags": {"db.system": "mysql", "sql.query": "select 1", "error": "Lock wait timeout"}
  },
  {
    "traceId": "80f1da5e10147517",
    "id": "0000000000000abc",
    "kind": "PRODUCER",
    "name": "send",
    "timestamp": 1772366400001000,
    "duration": 10,
    "localEndpoint": {"serviceName": "backend"},
    "tags": {"messaging.system": "kafka", "messaging.destination.name": "orders", "api_token": "t0k"}
  },
  {"traceId": "5982fe77008310cc80f1da5e10147517", "name": "no id", "timestamp": 1772366400000000}
]`

func TestZipkinIntoStore(t *testing.T) {
	s := openStore(t)
	r := New(s.InsertL7, Options{})
	code, _, out := post(t, startHTTP(t, r)+PathZipkinSpans, "application/json", "", []byte(zipkinBody))
	if code != http.StatusAccepted {
		t.Fatalf("status %d: %s", code, out)
	}
	res, err := s.Query(context.Background(), `SELECT trace_id, span_id, parent_span_id, observation_point, signal_source, l7_protocol,
		request_type, request_resource, endpoint, response_code, response_status, response_exception, response_duration,
		process_kname_0, process_kname_1, ip_0, client_port, ip_1, server_port, attributes['service.name'], attributes['api_token'],
		start_time = TIMESTAMP '2026-03-01 12:00:00'
		FROM l7_flow_log ORDER BY start_time`)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"[5982fe77008310cc80f1da5e10147517 67fae42571535f60 90394f6bcffb5d13 s-app 4 20 GET /api /api 200 0  2000 " +
			" backend 172.19.0.2 58648 192.168.99.101 9000 backend <nil> true]",
		"[5982fe77008310cc80f1da5e10147517 7a1b2c3d4e5f6071 67fae42571535f60 c-app 4 60 SELECT select 1 query <nil> 3 Lock wait timeout 700 " +
			"backend mysql 192.168.99.101 0 2001:db8::3306 3306 backend <nil> false]",
		"[000000000000000080f1da5e10147517 0000000000000abc  c-app 4 100  orders orders <nil> 0  10 " +
			"backend   0  0 backend *** false]",
	}
	if len(res.Rows) != len(want) {
		t.Fatalf("%d rows: %v", len(res.Rows), res.Rows)
	}
	for i, row := range res.Rows {
		if got := fmt.Sprint(row); got != want[i] {
			t.Errorf("row %d\n got %s\nwant %s", i, got, want[i])
		}
	}
	if st := r.Stats(); st != (Stats{Received: 4, Converted: 3, Rejected: 1}) {
		t.Errorf("stats %+v", st)
	}
}

func TestBadInput(t *testing.T) {
	var stored int
	r := New(func(_ context.Context, rows []flowlog.L7FlowLog) error { stored += len(rows); return nil }, Options{MaxBodyBytes: 4096, Logger: quietLogger()})
	base := startHTTP(t, r)
	otlp, zipkin := base+PathOTLPTraces, base+PathZipkinSpans
	big := bytes.Repeat([]byte{'a'}, 5000)
	bomb := gz(t, bytes.Repeat([]byte{'['}, 100000)) // small compressed, large decompressed
	noise := make([]byte, 8000)
	for i := range noise {
		noise[i] = byte(i*7919 + i/3)
	}
	bigGzip := gz(t, noise) // compressed body itself over the limit

	tests := []struct {
		name     string
		method   string
		url      string
		ct, enc  string
		body     []byte
		code     int
		contains string
	}{
		{"malformed protobuf", "POST", otlp, ctProtobuf, "", []byte{0x0a, 0xff, 0xff}, 400, "bad OTLP"},
		{"malformed json", "POST", otlp, ctJSON, "", []byte(`{"resourceSpans": [`), 400, "bad OTLP"},
		{"bad gzip", "POST", otlp, ctJSON, "gzip", []byte("not gzip"), 400, "gzip"},
		{"too large", "POST", otlp, ctProtobuf, "", big, 413, "larger than 4096"},
		{"too large after gzip", "POST", otlp, ctJSON, "gzip", bomb, 413, "larger than 4096"},
		{"too large compressed", "POST", otlp, ctProtobuf, "gzip", bigGzip, 413, "larger than 4096"},
		{"wrong method", "GET", otlp, ctJSON, "", nil, 405, "POST"},
		{"unknown content type", "POST", otlp, "text/plain", "", []byte("x"), 415, "Content-Type"},
		{"no content type", "POST", otlp, "", "", []byte("x"), 415, "Content-Type"},
		{"unknown encoding", "POST", otlp, ctJSON, "br", []byte("x"), 415, "Content-Encoding"},
		{"zipkin malformed", "POST", zipkin, ctJSON, "", []byte(`[{"traceId": 5}]`), 400, "zipkin"},
		{"zipkin not an array", "POST", zipkin, ctJSON, "", []byte(`{"traceId": "x"}`), 400, "array"},
		{"zipkin too large", "POST", zipkin, ctJSON, "", big, 413, "larger"},
		{"zipkin wrong method", "PUT", zipkin, ctJSON, "", nil, 405, "POST"},
		{"zipkin protobuf", "POST", zipkin, ctProtobuf, "", []byte("x"), 415, "Content-Type"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, tc.url, bytes.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			if tc.ct != "" {
				req.Header.Set("Content-Type", tc.ct)
			}
			if tc.enc != "" {
				req.Header.Set("Content-Encoding", tc.enc)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			out, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.code || !strings.Contains(string(out), tc.contains) {
				t.Errorf("got %d %q, want %d containing %q", resp.StatusCode, out, tc.code, tc.contains)
			}
			if tc.code == 405 && resp.Header.Get("Allow") != "POST" {
				t.Errorf("Allow = %q", resp.Header.Get("Allow"))
			}
		})
	}
	if stored != 0 {
		t.Errorf("bad input stored %d rows", stored)
	}
	// An empty OTLP request is valid and stores nothing.
	if code, _, out := post(t, otlp, ctProtobuf, "", nil); code != 200 {
		t.Errorf("empty request: %d %s", code, out)
	}
}

func TestSinkFailureHTTP(t *testing.T) {
	r := New(func(context.Context, []flowlog.L7FlowLog) error { return errors.New("store closed") }, Options{Logger: quietLogger()})
	body, err := ptraceotlp.NewExportRequestFromTraces(testTraces(1)).MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	base := startHTTP(t, r)
	if code, _, out := post(t, base+PathOTLPTraces, ctJSON, "", body); code != 503 || !strings.Contains(string(out), "store closed") {
		t.Errorf("otlp: %d %s", code, out)
	}
	if code, _, out := post(t, base+PathZipkinSpans, ctJSON, "", []byte(zipkinBody)); code != 503 {
		t.Errorf("zipkin: %d %s", code, out)
	}
	if st := r.Stats(); st != (Stats{Received: 9, Rejected: 9}) {
		t.Errorf("stats %+v", st)
	}
}
