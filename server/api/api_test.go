package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sightline-io/sightline/flowlog"
	"github.com/sightline-io/sightline/server/store"
	"github.com/sightline-io/sightline/server/store/duckdb"
)

type apiResponse struct {
	Columns []string `json:"columns"`
	Rows    [][]any  `json:"rows"`
	Error   string   `json:"error"`
}

func newTestServer(t *testing.T, st store.Store, opts Options) (*httptest.Server, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	opts.Registerer = reg
	srv := httptest.NewServer(NewHandler(st, reg, opts))
	t.Cleanup(srv.Close)
	return srv, reg
}

func openStore(t *testing.T) *duckdb.Store {
	t.Helper()
	st, err := duckdb.Open(context.Background(), t.TempDir(), duckdb.Options{Retention: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	t0 := time.Date(2026, 5, 4, 3, 2, 1, 500000000, time.UTC)
	code := int32(404)
	rows := []flowlog.L7FlowLog{
		{
			Time: t0, StartTime: t0, EndTime: t0.Add(2 * time.Millisecond), ResponseDuration: 2000,
			L7Protocol: flowlog.L7HTTP1, L7ProtocolStr: "HTTP", Type: flowlog.TypeSession,
			ResponseStatus: flowlog.StatusClientError, ResponseCode: &code,
			RequestType: "GET", RequestResource: "/missing", Protocol: 6,
			IP0: netip.MustParseAddr("10.1.2.3"), IP1: netip.MustParseAddr("10.1.2.4"),
			Attributes: map[string]string{"user_agent": "curl/8.5"},
		},
		{
			Time: t0.Add(time.Second), L7Protocol: flowlog.L7Redis, L7ProtocolStr: "Redis",
			Type: flowlog.TypeRequest, RequestType: "GET", Protocol: 6,
		},
	}
	if err := st.InsertL7(context.Background(), rows); err != nil {
		t.Fatal(err)
	}
	return st
}

func postJSON(t *testing.T, srv *httptest.Server, body string) (int, apiResponse) {
	t.Helper()
	resp, err := http.Post(srv.URL+"/api/v1/query", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	return decode(t, resp)
}

func decode(t *testing.T, resp *http.Response) (int, apiResponse) {
	t.Helper()
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	var out apiResponse
	dec := json.NewDecoder(resp.Body)
	dec.UseNumber()
	if err := dec.Decode(&out); err != nil {
		t.Fatalf("decode response: %v", err)
	}
	return resp.StatusCode, out
}

func sqlBody(sql string) string {
	b, _ := json.Marshal(QueryRequest{SQL: sql})
	return string(b)
}

func TestQueryRoundTrip(t *testing.T) {
	srv, _ := newTestServer(t, openStore(t), Options{})
	status, got := postJSON(t, srv, sqlBody(
		`SELECT _id, time, Enum(l7_protocol), response_code, attributes, ip_0, response_duration
		 FROM l7_flow_log ORDER BY _id`))
	if status != http.StatusOK {
		t.Fatalf("status %d: %s", status, got.Error)
	}
	wantCols := []string{"_id", "time", "Enum(l7_protocol)", "response_code", "attributes", "ip_0", "response_duration"}
	if !reflect.DeepEqual(got.Columns, wantCols) {
		t.Errorf("columns %v, want %v", got.Columns, wantCols)
	}
	want := [][]any{
		{json.Number("1"), "2026-05-04T03:02:01.5Z", "HTTP", json.Number("404"),
			map[string]any{"user_agent": "curl/8.5"}, "10.1.2.3", json.Number("2000")},
		{json.Number("2"), "2026-05-04T03:02:02.5Z", "Redis", nil, map[string]any{}, "", json.Number("0")},
	}
	if !reflect.DeepEqual(got.Rows, want) {
		t.Errorf("rows\n got %#v\nwant %#v", got.Rows, want)
	}
}

func TestQueryEmptyResultIsEmptyArray(t *testing.T) {
	srv, _ := newTestServer(t, openStore(t), Options{})
	resp, err := http.Post(srv.URL+"/api/v1/query", "application/json",
		strings.NewReader(sqlBody("SELECT _id FROM flow_log.l7_flow_log WHERE _id > 100")))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if want := `{"columns":["_id"],"rows":[]}` + "\n"; string(body) != want {
		t.Errorf("body %q, want %q", body, want)
	}
}

func TestQueryErrors(t *testing.T) {
	srv, _ := newTestServer(t, openStore(t), Options{})
	for _, tc := range []struct {
		name, body string
		status     int
		msg        string
	}{
		{"bad JSON", `{"sql": `, http.StatusBadRequest, "invalid JSON"},
		{"wrong JSON type", `{"sql": 1}`, http.StatusBadRequest, "invalid JSON"},
		{"empty SQL", `{"sql": "  "}`, http.StatusBadRequest, "empty sql"},
		{"no body", ``, http.StatusBadRequest, "empty sql"},
		{"bad SQL", sqlBody("SELEC 1"), http.StatusBadRequest, "syntax error"},
		{"unknown column", sqlBody("SELECT nope FROM l7_flow_log"), http.StatusBadRequest, `"nope" not found`},
		{"write statement", sqlBody("DELETE FROM l7_flow_log"), http.StatusBadRequest, "read-only"},
		{"multiple statements", sqlBody("SELECT 1; SELECT 2"), http.StatusBadRequest, "one statement"},
		{"Enum of non-enum", sqlBody("SELECT Enum(host) FROM l7_flow_log"), http.StatusBadRequest, "not an enum column"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, got := postJSON(t, srv, tc.body)
			if status != tc.status || !strings.Contains(got.Error, tc.msg) {
				t.Errorf("got %d %q, want %d containing %q", status, got.Error, tc.status, tc.msg)
			}
		})
	}
	// The rejected DELETE did not run.
	status, got := postJSON(t, srv, sqlBody("SELECT count(*) FROM l7_flow_log"))
	if status != http.StatusOK || got.Rows[0][0] != json.Number("2") {
		t.Fatalf("count after rejected writes: %d %v %s", status, got.Rows, got.Error)
	}
}

func TestOversizedBody(t *testing.T) {
	srv, _ := newTestServer(t, openStore(t), Options{MaxBodyBytes: 1024})
	big := sqlBody("SELECT '" + strings.Repeat("x", 2048) + "'")
	status, got := postJSON(t, srv, big)
	if status != http.StatusRequestEntityTooLarge || !strings.Contains(got.Error, "1024") {
		t.Errorf("JSON: got %d %q, want 413", status, got.Error)
	}
	resp, err := http.PostForm(srv.URL+"/api/v1/query", url.Values{"sql": {strings.Repeat("x", 2048)}})
	if err != nil {
		t.Fatal(err)
	}
	if status, got := decode(t, resp); status != http.StatusRequestEntityTooLarge {
		t.Errorf("form: got %d %q, want 413", status, got.Error)
	}
	// Just under the limit is fine.
	status, got = postJSON(t, srv, sqlBody("SELECT '"+strings.Repeat("x", 900)+"' AS s"))
	if status != http.StatusOK {
		t.Errorf("small body: %d %s", status, got.Error)
	}
}

func TestDefaultBodyLimitIsOneMiB(t *testing.T) {
	srv, _ := newTestServer(t, openStore(t), Options{})
	status, _ := postJSON(t, srv, sqlBody("SELECT '"+strings.Repeat("x", 1<<20)+"'"))
	if status != http.StatusRequestEntityTooLarge {
		t.Errorf("got %d, want 413", status)
	}
}

func TestQueryFormAndURLParameter(t *testing.T) {
	srv, _ := newTestServer(t, openStore(t), Options{})
	q := "SELECT Enum(type) FROM l7_flow_log ORDER BY _id"
	want := [][]any{{"Session"}, {"Request"}}

	resp, err := http.PostForm(srv.URL+"/api/v1/query", url.Values{"sql": {q}})
	if err != nil {
		t.Fatal(err)
	}
	if status, got := decode(t, resp); status != http.StatusOK || !reflect.DeepEqual(got.Rows, want) {
		t.Errorf("form: %d %v %s", status, got.Rows, got.Error)
	}

	// curl -d '{"sql": ...}' sends JSON labelled as a form.
	body, _ := json.Marshal(QueryRequest{SQL: q})
	resp, err = http.Post(srv.URL+"/api/v1/query", "application/x-www-form-urlencoded", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if status, got := decode(t, resp); status != http.StatusOK || !reflect.DeepEqual(got.Rows, want) {
		t.Errorf("JSON sent as a form: %d %v %s", status, got.Rows, got.Error)
	}

	for _, method := range []string{http.MethodGet, http.MethodPost} {
		req, _ := http.NewRequest(method, srv.URL+"/api/v1/query?sql="+url.QueryEscape(q), nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if status, got := decode(t, resp); status != http.StatusOK || !reflect.DeepEqual(got.Rows, want) {
			t.Errorf("%s with URL parameter: %d %v %s", method, status, got.Rows, got.Error)
		}
	}
}

func TestMethodNotAllowed(t *testing.T) {
	srv, _ := newTestServer(t, openStore(t), Options{})
	req, _ := http.NewRequest(http.MethodDelete, srv.URL+"/api/v1/query", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("DELETE: %d, want 405", resp.StatusCode)
	}
}

// failingStore fails every call with err, to reach the non-user error paths.
type failingStore struct{ err error }

func (f failingStore) InsertL7(context.Context, []flowlog.L7FlowLog) error  { return f.err }
func (f failingStore) InsertL4(context.Context, []flowlog.L4FlowLog) error  { return f.err }
func (f failingStore) Query(context.Context, string) (*store.Result, error) { return nil, f.err }
func (f failingStore) Close() error                                         { return nil }

func TestStoreFailures(t *testing.T) {
	for _, tc := range []struct {
		err    error
		status int
	}{
		{errors.New("disk on fire"), http.StatusInternalServerError},
		{fmt.Errorf("query: %w", context.DeadlineExceeded), http.StatusGatewayTimeout},
		{&store.QueryError{Msg: "user mistake"}, http.StatusBadRequest},
	} {
		srv, _ := newTestServer(t, failingStore{tc.err}, Options{})
		status, got := postJSON(t, srv, sqlBody("SELECT 1"))
		if status != tc.status || got.Error == "" {
			t.Errorf("%v: got %d %q, want %d", tc.err, status, got.Error, tc.status)
		}
		resp, err := http.Get(srv.URL + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("healthz with failing store: %d, want 503", resp.StatusCode)
		}
	}
}

func TestQueryTimeoutOption(t *testing.T) {
	srv, _ := newTestServer(t, openStore(t), Options{QueryTimeout: 100 * time.Millisecond})
	status, got := postJSON(t, srv, sqlBody("SELECT count(*) FROM range(1000000000000)"))
	if status != http.StatusGatewayTimeout {
		t.Errorf("got %d %q, want 504", status, got.Error)
	}
}

func TestHealthz(t *testing.T) {
	st := openStore(t)
	srv, _ := newTestServer(t, st, Options{})
	resp, err := http.Get(srv.URL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || strings.TrimSpace(string(body)) != "ok" {
		t.Errorf("healthz: %d %q", resp.StatusCode, body)
	}

	st.Close()
	resp, err = http.Get(srv.URL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("healthz after store close: %d, want 503", resp.StatusCode)
	}
}

func TestMetrics(t *testing.T) {
	srv, _ := newTestServer(t, openStore(t), Options{})
	postJSON(t, srv, sqlBody("SELECT 1"))
	postJSON(t, srv, sqlBody("SELEC 1"))
	postJSON(t, srv, `{`)

	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		"sightline_api_queries_total 3",
		`sightline_api_query_errors_total{reason="query"} 1`,
		`sightline_api_query_errors_total{reason="bad_request"} 1`,
		`sightline_api_query_errors_total{reason="internal"} 0`,
		"sightline_api_query_duration_seconds_count 3",
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %q:\n%s", want, body)
		}
	}
}

func TestTwoHandlersShareRegistry(t *testing.T) {
	st := openStore(t)
	reg := prometheus.NewRegistry()
	a := httptest.NewServer(NewHandler(st, reg, Options{Registerer: reg}))
	defer a.Close()
	b := httptest.NewServer(NewHandler(st, reg, Options{Registerer: reg}))
	defer b.Close()
	postJSON(t, a, sqlBody("SELECT 1"))
	postJSON(t, b, sqlBody("SELECT 1"))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "sightline_api_queries_total" {
			if got := mf.GetMetric()[0].GetCounter().GetValue(); got != 2 {
				t.Errorf("shared counter = %v, want 2", got)
			}
			return
		}
	}
	t.Error("sightline_api_queries_total not gathered")
}

func TestQueryMultipartForm(t *testing.T) {
	srv, _ := newTestServer(t, openStore(t), Options{MaxBodyBytes: 4096})
	post := func(sql string) (int, apiResponse) {
		var buf strings.Builder
		mw := multipart.NewWriter(&buf)
		if err := mw.WriteField("sql", sql); err != nil {
			t.Fatal(err)
		}
		mw.Close()
		resp, err := http.Post(srv.URL+"/api/v1/query", mw.FormDataContentType(), strings.NewReader(buf.String()))
		if err != nil {
			t.Fatal(err)
		}
		return decode(t, resp)
	}
	if status, got := post("SELECT count(*) AS n FROM l7_flow_log"); status != http.StatusOK || got.Rows[0][0] != json.Number("2") {
		t.Errorf("multipart: %d %v %s", status, got.Rows, got.Error)
	}
	if status, got := post("SELECT '" + strings.Repeat("x", 8192) + "'"); status != http.StatusRequestEntityTooLarge {
		t.Errorf("oversized multipart: %d %s, want 413", status, got.Error)
	}
}
