package trace

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sightline-io/sightline/flowlog"
)

func TestHandler(t *testing.T) {
	st := openStore(t)
	const tid = "0af7651916cd43dd8448eb211c80319c"
	insert(t, st,
		sp(10, "s-p", "B", 0, 100*time.Millisecond, withSyscall(7, 7, 0, 3), withTrace(tid, "aa", "")),
		sp(11, "c-p", "B", 10*time.Millisecond, 20*time.Millisecond, withSyscall(7, 0, 3, 0),
			withProto(flowlog.L7Redis, "GET", "GET k"), func(r *flowlog.L7FlowLog) { c := int32(0); r.ResponseCode = &c }),
	)
	srv := httptest.NewServer(NewHandler(st, Options{}))
	defer srv.Close()

	cases := []struct {
		name, method, path string
		status             int
		spans              int
		errContains        string
	}{
		{"by span", "GET", "/api/v1/traces?span=11", 200, 2, ""},
		{"by trace id", "GET", "/api/v1/traces/" + tid, 200, 2, ""},
		{"span not a number", "GET", "/api/v1/traces?span=abc", 400, 0, "positive integer"},
		{"span zero", "GET", "/api/v1/traces?span=0", 400, 0, "positive integer"},
		{"span negative", "GET", "/api/v1/traces?span=-1", 400, 0, "positive integer"},
		{"span missing", "GET", "/api/v1/traces", 400, 0, "span=<_id>"},
		{"span twice", "GET", "/api/v1/traces?span=1&span=2", 400, 0, "exactly one"},
		{"span unknown", "GET", "/api/v1/traces?span=999", 404, 0, "no span"},
		{"trace unknown", "GET", "/api/v1/traces/ffff", 404, 0, "no span with trace id"},
		{"trace id with quote", "GET", "/api/v1/traces/a%27b", 400, 0, "printable ASCII"},
		{"trace id too long", "GET", "/api/v1/traces/" + strings.Repeat("a", 300), 400, 0, "printable ASCII"},
		{"wrong method", "POST", "/api/v1/traces?span=11", 405, 0, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req, err := http.NewRequest(c.method, srv.URL+c.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != c.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, c.status, body)
			}
			if c.status == 405 {
				return
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("content type %q", ct)
			}
			if c.status != 200 {
				var e struct {
					Error string `json:"error"`
				}
				if err := json.Unmarshal(body, &e); err != nil || !strings.Contains(e.Error, c.errContains) {
					t.Errorf("error body %s (%v), want it to contain %q", body, err, c.errContains)
				}
				return
			}
			var tr map[string]any
			if err := json.Unmarshal(body, &tr); err != nil {
				t.Fatalf("decode %s: %v", body, err)
			}
			if tr["trace_id"] != tid {
				t.Errorf("trace_id %v", tr["trace_id"])
			}
			spans, _ := tr["spans"].([]any)
			if len(spans) != c.spans {
				t.Fatalf("%d spans: %s", len(spans), body)
			}
			if roots, _ := tr["roots"].([]any); len(roots) != 1 || roots[0] != float64(10) {
				t.Errorf("roots %v", tr["roots"])
			}
			child, _ := spans[1].(map[string]any)
			want := map[string]any{
				"_id": float64(11), "parent_id": float64(10), "depth": float64(1), "parent_link": "syscall",
				"observation_point": "c-p", "l7_protocol": float64(80), "l7_protocol_str": "Redis",
				"request_type": "GET", "endpoint": "GET k", "response_code": float64(0),
				"duration_us": float64(20000), "self_time_us": float64(20000),
				"start_time": "2026-03-01T12:00:00.01Z", "end_time": "2026-03-01T12:00:00.03Z",
			}
			for k, v := range want {
				if child[k] != v {
					t.Errorf("span field %s = %v (%T), want %v", k, child[k], child[k], v)
				}
			}
			for _, k := range []string{"process_kname_0", "ip_0", "ip_1", "client_port", "server_port", "link", "linked_from", "self_time_us", "response_status"} {
				if _, ok := child[k]; !ok {
					t.Errorf("span lacks %s", k)
				}
			}
		})
	}
}

func TestHandlerStoreFailure(t *testing.T) {
	st := openStore(t)
	srv := httptest.NewServer(NewHandler(st, Options{}))
	defer srv.Close()
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(srv.URL + "/api/v1/traces?span=1")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusInternalServerError || !strings.Contains(string(body), "trace assembly failed") {
		t.Errorf("status %d: %s", resp.StatusCode, body)
	}
}
