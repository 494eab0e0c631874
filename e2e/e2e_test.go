// Package e2e runs Sightline end to end on this host: the real agent (eBPF)
// and server in the test process, real nginx, curl and a Go net/http backend
// in their own processes, rows checked through the query API. Needs root,
// nginx and curl (CI installs them; see scripts/install-test-deps.sh).
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sightline-io/sightline/agent"
	"github.com/sightline-io/sightline/agent/l7/registry"
	"github.com/sightline-io/sightline/internal/nginxconf"
	"github.com/sightline-io/sightline/server"
)

// backendEnv makes the test binary act as the Go net/http backend: the agent
// never traces its own process, so the backend must be another one.
const backendEnv = "SIGHTLINE_E2E_BACKEND_ADDR"

func TestMain(m *testing.M) {
	if addr := os.Getenv(backendEnv); addr != "" {
		runBackend(addr)
		return
	}
	os.Exit(m.Run())
}

func runBackend(addr string) {
	mux := http.NewServeMux()
	mux.HandleFunc("/api/users/{id}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"id":%q,"name":"user"}`, r.PathValue("id"))
	})
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	// /hang never answers (until the client goes away): the timeout path.
	mux.HandleFunc("/hang", func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	if err := http.ListenAndServe(addr, mux); err != nil {
		fmt.Fprintln(os.Stderr, "backend:", err)
		os.Exit(1)
	}
}

func requireRootAndTools(t *testing.T, tools ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("e2e tests need root (eBPF); CI runs them as root")
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not installed (run scripts/install-test-deps.sh): %v", tool, err)
		}
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func waitOK(t *testing.T, url string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready: %v", url, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stack is a running Sightline (server + agent in this process).
type stack struct {
	api string
}

func startStack(t *testing.T) *stack {
	t.Helper()
	return startStackWith(t, agent.Config{})
}

// startStackWith starts a stack whose agent has cfg's settings.
func startStackWith(t *testing.T, cfg agent.Config) *stack {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	reg := prometheus.NewRegistry()
	srv, err := server.Start(ctx, server.Config{
		DataDir: t.TempDir(), Listen: "127.0.0.1:0", GRPCListen: "127.0.0.1:0", Registry: reg,
	})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Server, cfg.Registerer, cfg.ExpireEvery = srv.GRPCAddr(), reg, 200*time.Millisecond
	if cfg.Protocols == nil {
		cfg.Protocols = registry.Default()
	}
	a, err := agent.New(cfg)
	if err != nil {
		srv.Shutdown(context.Background())
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("agent run: %v", err)
		}
		sctx, c := context.WithTimeout(context.Background(), 15*time.Second)
		defer c()
		if err := srv.Shutdown(sctx); err != nil {
			t.Errorf("server shutdown: %v", err)
		}
	})
	return &stack{api: "http://" + srv.HTTPAddr()}
}

type answer struct {
	Columns []string `json:"columns"`
	Rows    [][]any  `json:"rows"`
	Error   string   `json:"error"`
}

// query runs SQL through the HTTP API and returns rows as column→value maps.
func (s *stack) query(t *testing.T, sql string) []map[string]any {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"sql": sql})
	resp, err := http.Post(s.api+"/api/v1/query", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var ans answer
	dec := json.NewDecoder(resp.Body)
	dec.UseNumber()
	if err := dec.Decode(&ans); err != nil {
		t.Fatalf("decode answer: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("query %q: %s: %s", sql, resp.Status, ans.Error)
	}
	out := make([]map[string]any, len(ans.Rows))
	for i, r := range ans.Rows {
		m := make(map[string]any, len(r))
		for j, c := range ans.Columns {
			m[c] = r[j]
		}
		out[i] = m
	}
	return out
}

func num(t *testing.T, v any) int64 {
	t.Helper()
	n, ok := v.(json.Number)
	if !ok {
		t.Fatalf("value %v (%T) is not a number", v, v)
	}
	i, err := strconv.ParseInt(n.String(), 10, 64)
	if err != nil {
		u, uerr := strconv.ParseUint(n.String(), 10, 64)
		if uerr != nil {
			t.Fatalf("value %v: %v", v, err)
		}
		return int64(u)
	}
	return i
}

func str(v any) string {
	if v == nil {
		return ""
	}
	return fmt.Sprint(v)
}

// startNginx runs a private nginx proxying to backendPort.
func startNginx(t *testing.T, backendPort int) int {
	t.Helper()
	dir := t.TempDir()
	port := freePort(t)
	confPath, err := nginxconf.Write(nginxconf.Config{Dir: dir, HTTP: fmt.Sprintf(`  server {
    listen 127.0.0.1:%d;
    location / { proxy_pass http://127.0.0.1:%d; }
  }`, port, backendPort)})
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("nginx", "-c", confPath, "-p", dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start nginx: %v", err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGQUIT)
		_ = cmd.Wait()
		if t.Failed() {
			errLog, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Logf("nginx stderr: %s\nerror.log: %s", stderr.String(), errLog)
		}
	})
	return port
}

func startBackend(t *testing.T) (port, pid int) {
	t.Helper()
	port = freePort(t)
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=127.0.0.1:%d", backendEnv, port))
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	waitOK(t, fmt.Sprintf("http://127.0.0.1:%d/healthz", port))
	return port, cmd.Process.Pid
}

// TestCurlNginxGoBackend drives curl → nginx (reverse proxy) → Go net/http and
// checks the four rows of each request (curl c-p, nginx s-p, nginx c-p,
// backend s-p) stored by the live agent.
func TestCurlNginxGoBackend(t *testing.T) {
	requireRootAndTools(t, "nginx", "curl")
	st := startStack(t)
	backendPort, backendPID := startBackend(t)
	nginxPort := startNginx(t, backendPort)
	waitOK(t, fmt.Sprintf("http://127.0.0.1:%d/healthz", nginxPort))

	const n = 5
	for i := 0; i < n; i++ {
		url := fmt.Sprintf("http://127.0.0.1:%d/api/users/%d?token=hunter2", nginxPort, 1000+i)
		out, err := exec.Command("curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}",
			"-H", fmt.Sprintf("X-Request-ID: e2e-%d", i), "-H", "Authorization: Bearer s3cr3t-token",
			url).CombinedOutput()
		if err != nil || string(out) != "200" {
			t.Fatalf("curl %s: %v %s", url, err, out)
		}
	}
	sentAt := time.Now()

	const sql = `SELECT observation_point, request_type, request_domain, request_resource, endpoint, response_code,
	  response_status, response_duration, type, l7_protocol, version, client_port, server_port, ip_0, ip_1,
	  process_id_0, process_id_1, process_kname_0, process_kname_1, req_tcp_seq, resp_tcp_seq,
	  syscall_trace_id_request, syscall_trace_id_response, x_request_id_0, signal_source, protocol
	FROM l7_flow_log WHERE request_resource LIKE '/api/users/%' ORDER BY time`
	var rows []map[string]any
	deadline := time.Now().Add(20 * time.Second)
	for {
		rows = st.query(t, sql)
		if len(rows) >= 4*n || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("%d rows visible %.2fs after the last request", len(rows), time.Since(sentAt).Seconds())

	type hop struct{ curl, nginxIn, nginxOut, backend map[string]any }
	hops := map[string]*hop{}
	for _, r := range rows {
		id := str(r["x_request_id_0"])
		h := hops[id]
		if h == nil {
			h = &hop{}
			hops[id] = h
		}
		op, sport := str(r["observation_point"]), int(num(t, r["server_port"]))
		switch {
		case op == "c-p" && sport == nginxPort && str(r["process_kname_0"]) == "curl":
			h.curl = r
		case op == "s-p" && sport == nginxPort && str(r["process_kname_1"]) == "nginx":
			h.nginxIn = r
		case op == "c-p" && sport == backendPort && str(r["process_kname_0"]) == "nginx":
			h.nginxOut = r
		case op == "s-p" && sport == backendPort && num(t, r["process_id_1"]) == int64(backendPID):
			h.backend = r
		default:
			t.Logf("other row: %v", r)
		}
	}
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("e2e-%d", i)
		h := hops[id]
		if h == nil || h.curl == nil || h.nginxIn == nil || h.nginxOut == nil || h.backend == nil {
			t.Errorf("request %s: missing rows: %+v", id, h)
			continue
		}
		path := fmt.Sprintf("/api/users/%d?token=***", 1000+i)
		for name, r := range map[string]map[string]any{"curl": h.curl, "nginx-in": h.nginxIn, "nginx-out": h.nginxOut, "backend": h.backend} {
			if str(r["request_type"]) != "GET" || num(t, r["response_code"]) != 200 || num(t, r["response_status"]) != 0 {
				t.Errorf("%s %s: method/status = %v %v %v", id, name, r["request_type"], r["response_code"], r["response_status"])
			}
			if str(r["request_resource"]) != path {
				t.Errorf("%s %s: request_resource = %v, want %s (secret masked)", id, name, r["request_resource"], path)
			}
			if str(r["endpoint"]) != "/api/users/{id}" {
				t.Errorf("%s %s: endpoint = %v", id, name, r["endpoint"])
			}
			if num(t, r["type"]) != 2 || num(t, r["l7_protocol"]) != 20 || num(t, r["signal_source"]) != 3 || num(t, r["protocol"]) != 6 {
				t.Errorf("%s %s: type/l7_protocol/signal_source/protocol = %v/%v/%v/%v", id, name, r["type"], r["l7_protocol"], r["signal_source"], r["protocol"])
			}
			if num(t, r["response_duration"]) <= 0 {
				t.Errorf("%s %s: response_duration = %v", id, name, r["response_duration"])
			}
			if num(t, r["req_tcp_seq"]) == 0 || num(t, r["resp_tcp_seq"]) == 0 {
				t.Errorf("%s %s: tcp seqs = %v/%v", id, name, r["req_tcp_seq"], r["resp_tcp_seq"])
			}
			if num(t, r["client_port"]) == 0 || str(r["ip_0"]) != "127.0.0.1" || str(r["ip_1"]) != "127.0.0.1" {
				t.Errorf("%s %s: client %v:%v server %v", id, name, r["ip_0"], r["client_port"], r["ip_1"])
			}
		}
		// Pids: the observed side of each row.
		if num(t, h.curl["process_id_0"]) == 0 || num(t, h.nginxIn["process_id_1"]) == 0 ||
			num(t, h.nginxOut["process_id_0"]) != num(t, h.nginxIn["process_id_1"]) {
			t.Errorf("%s: pids curl=%v nginx-in=%v nginx-out=%v", id, h.curl["process_id_0"], h.nginxIn["process_id_1"], h.nginxOut["process_id_0"])
		}
		// The same hop seen from both ends carries the same TCP sequence numbers and client port.
		for _, pair := range [][2]map[string]any{{h.curl, h.nginxIn}, {h.nginxOut, h.backend}} {
			for _, col := range []string{"req_tcp_seq", "resp_tcp_seq", "client_port"} {
				if num(t, pair[0][col]) != num(t, pair[1][col]) {
					t.Errorf("%s: %s differs across the two ends of a hop: %v vs %v", id, col, pair[0][col], pair[1][col])
				}
			}
		}
		// nginx's inbound request and the upstream request it caused share a syscall trace id.
		in, out := num(t, h.nginxIn["syscall_trace_id_request"]), num(t, h.nginxOut["syscall_trace_id_request"])
		if in == 0 || in != out {
			t.Errorf("%s: nginx inbound syscall_trace_id_request %d, upstream %d: want equal and non-zero", id, in, out)
		}
	}

	// Secrets never reach the store.
	leaks := st.query(t, `SELECT count(*) AS n FROM l7_flow_log
	  WHERE request_resource LIKE '%hunter2%' OR CAST(attributes AS VARCHAR) LIKE '%s3cr3t%'`)
	if num(t, leaks[0]["n"]) != 0 {
		t.Errorf("%v rows leak a secret", leaks[0]["n"])
	}
}

// TestRequestTimeout: a request the server never answers becomes a Timeout
// row (response_status 2, no code) after the configured window, on both
// the client's and the server's side, while the connection is still open.
func TestRequestTimeout(t *testing.T) {
	requireRootAndTools(t, "curl")
	protos, err := registry.New(registry.Config{RequestTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	st := startStackWith(t, agent.Config{Protocols: protos})
	backendPort, _ := startBackend(t)
	curl := exec.Command("curl", "-sS", "--max-time", "8", fmt.Sprintf("http://127.0.0.1:%d/hang", backendPort))
	if err := curl.Start(); err != nil {
		t.Fatal(err)
	}
	curlDone := make(chan struct{})
	go func() {
		_ = curl.Wait()
		close(curlDone)
	}()
	defer func() {
		_ = curl.Process.Kill()
		<-curlDone
	}()
	sql := fmt.Sprintf(`SELECT observation_point, type, response_status, response_code, request_resource
	  FROM l7_flow_log WHERE server_port = %d AND request_resource = '/hang' ORDER BY observation_point`, backendPort)
	var rows []map[string]any
	for deadline := time.Now().Add(6 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if rows = st.query(t, sql); len(rows) == 2 {
			break
		}
	}
	select {
	case <-curlDone:
		t.Fatal("curl ended before the timeout rows were checked: rows may come from the close, not the timeout")
	default:
	}
	if len(rows) != 2 {
		t.Fatalf("rows while the request hangs: %v", rows)
	}
	for i, op := range []string{"c-p", "s-p"} {
		r := rows[i]
		if str(r["observation_point"]) != op || num(t, r["type"]) != 0 || num(t, r["response_status"]) != 2 || r["response_code"] != nil {
			t.Errorf("row %d: %v, want %s request-only Timeout without code", i, r, op)
		}
	}
}

// metricValue reads one unlabelled metric from the stack's /metrics.
func (s *stack) metricValue(t *testing.T, name string) float64 {
	t.Helper()
	resp, err := http.Get(s.api + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, line := range bytes.Split(body, []byte("\n")) {
		if v, ok := bytes.CutPrefix(line, []byte(name+" ")); ok {
			f, err := strconv.ParseFloat(string(v), 64)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			return f
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// TestRowRateLimit: past MaxRowsPerSecond rows are dropped before shipping
// and counted.
func TestRowRateLimit(t *testing.T) {
	requireRootAndTools(t, "curl")
	st := startStackWith(t, agent.Config{MaxRowsPerSecond: 5})
	backendPort, _ := startBackend(t) // its health checks use up some of the budget
	start := time.Now()
	const n = 30
	for i := range n {
		url := fmt.Sprintf("http://127.0.0.1:%d/api/users/%d", backendPort, i)
		if out, err := exec.Command("curl", "-sS", "-o", "/dev/null", url).CombinedOutput(); err != nil {
			t.Fatalf("curl: %v %s", err, out)
		}
	}
	elapsed := time.Since(start)
	time.Sleep(2 * time.Second) // ring poll + shipper interval
	rows := st.query(t, fmt.Sprintf(`SELECT count(*) AS n FROM l7_flow_log
	  WHERE server_port = %d AND request_resource LIKE '/api/users/%%'`, backendPort))
	stored := num(t, rows[0]["n"])
	// Budget: a burst of 5 plus 5 per second while the requests ran.
	budget := int64(5 + 5*elapsed.Seconds() + 1)
	if stored == 0 || stored > budget {
		t.Errorf("%d rows stored for %d requests (2 rows each) in %.1fs, want 1..%d", stored, n, elapsed.Seconds(), budget)
	}
	// Other traffic on the host only adds to both counters.
	throttled := st.metricValue(t, "sightline_agent_rows_throttled_total")
	shipped := st.metricValue(t, "sightline_agent_rows_shipped_total")
	if throttled < float64(2*n-budget) || shipped < float64(stored) {
		t.Errorf("throttled %v (want ≥ %d), shipped %v (want ≥ %d)", throttled, 2*n-budget, shipped, stored)
	}
}

// TestFailedConnectAttributed: a connect to a closed port is counted on the
// agent's /metrics, attributed to the connecting program.
func TestFailedConnectAttributed(t *testing.T) {
	requireRootAndTools(t, "curl")
	s := startStack(t)
	closed := freePort(t)
	_ = exec.Command("curl", "-s", "--max-time", "2", fmt.Sprintf("http://127.0.0.1:%d/", closed)).Run()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(s.api + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, line := range bytes.Split(body, []byte("\n")) {
			if bytes.HasPrefix(line, []byte("sightline_agent_tcp_connect_failures_total{")) &&
				bytes.Contains(line, []byte(`comm="curl"`)) && bytes.Contains(line, []byte(fmt.Sprintf(`remote="127.0.0.1:%d"`, closed))) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no connect failure for curl → :%d on /metrics:\n%s", closed, grepLines(body, "sightline_agent_tcp_"))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func grepLines(b []byte, prefix string) string {
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, prefix) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}
