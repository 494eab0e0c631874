package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sightline-io/sightline/agent"
	"github.com/sightline-io/sightline/agent/l7/registry"
	"github.com/sightline-io/sightline/agent/tlstrack"
	"github.com/sightline-io/sightline/internal/livetest"
	"github.com/sightline-io/sightline/internal/nginxconf"
	"github.com/sightline-io/sightline/packet/decode"
	"github.com/sightline-io/sightline/packet/pcapfile"
	"github.com/sightline-io/sightline/server"
	"github.com/sightline-io/sightline/server/trace"
)

// The TLS tests (issue 6) drive real TLS clients and servers (OpenSSL in
// curl, nginx, Python, libpq, PostgreSQL and Redis; Go crypto/tls in
// net/http and grpc-go) through a live agent and check the rows it stores
// for the plaintext: is_tls, method/path/status, HTTP/2 stream ids, and
// TCP sequence numbers that join the two ends of a hop and match the
// ciphertext on the wire.
//
// Every client waits, after starting and before its first request, until
// the agent reports its TLS library covered (Agent.TLSCovered): the tests
// check what the probes see, not how fast they attach.

// tlsStack is a stack whose agent the test can ask about TLS coverage.
type tlsStack struct {
	*stack
	agent *agent.Agent
	pids  []int // the test's processes (for coverage reports)
}

// startTLSStack is startStackWith (e2e_test.go) keeping the agent, without
// packet capture (the rows checked here come from the syscall and TLS
// probes; the wire is checked with tcpdump).
func startTLSStack(t *testing.T) *tlsStack {
	t.Helper()
	return startTLSStackWith(t, agent.Config{})
}

// startTLSStackWith is startTLSStack with cfg's TLS settings.
func startTLSStackWith(t *testing.T, cfg agent.Config) *tlsStack {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	reg := prometheus.NewRegistry()
	srv, err := server.Start(ctx, server.Config{
		DataDir: t.TempDir(), Listen: "127.0.0.1:0", GRPCListen: "127.0.0.1:0", Registry: reg,
	})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	a, err := agent.New(agent.Config{
		Server: srv.GRPCAddr(), Registerer: reg, ExpireEvery: 200 * time.Millisecond,
		Protocols: registry.Default(), Packets: agent.PacketConfig{Disable: true},
		DisableTLS: cfg.DisableTLS, TLSProcesses: cfg.TLSProcesses,
	})
	if err != nil {
		cancel()
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
	return &tlsStack{stack: &stack{api: "http://" + srv.HTTPAddr()}, agent: a}
}

// waitCovered waits until the agent's TLS probes cover every pid.
func (s *tlsStack) waitCovered(t *testing.T, what string, pids ...int) {
	t.Helper()
	s.pids = append(s.pids, pids...)
	start := time.Now()
	deadline := start.Add(30 * time.Second)
	var took []string
	for _, pid := range pids {
		for !s.agent.TLSCovered(uint32(pid)) {
			if time.Now().After(deadline) {
				t.Fatalf("%s (pid %d): TLS probes do not cover it after %v; coverage: %s",
					what, pid, time.Since(start).Round(time.Millisecond), s.coverage(t))
			}
			time.Sleep(20 * time.Millisecond)
		}
		took = append(took, fmt.Sprintf("%d:%v", pid, time.Since(start).Round(time.Millisecond)))
	}
	t.Logf("%s covered (pid:after) %s", what, strings.Join(took, " "))
}

// coverage is the agent's GET /debug/tls answer for the test's processes.
func (s *tlsStack) coverage(t *testing.T) string {
	t.Helper()
	rec := httptest.NewRecorder()
	s.agent.TLSCoverage().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/debug/tls", nil))
	var c tlstrack.Coverage
	if err := json.Unmarshal(rec.Body.Bytes(), &c); err != nil {
		return fmt.Sprintf("%s: %v", rec.Body.Bytes(), err)
	}
	all := len(c.Processes)
	c.Processes = slices.DeleteFunc(c.Processes, func(p tlstrack.Process) bool { return !slices.Contains(s.pids, int(p.PID)) })
	b, err := json.MarshalIndent(c, "", " ")
	if err != nil {
		return err.Error()
	}
	return fmt.Sprintf("%d processes, the test's: %s", all, b)
}

// proc is a process whose stdin the test writes (the go-ahead) and whose
// output it reads while it runs.
type proc struct {
	name  string
	cmd   *exec.Cmd
	stdin io.WriteCloser
	mu    sync.Mutex
	out   bytes.Buffer // stdout
	errb  bytes.Buffer // stderr
	done  chan struct{}
	err   error
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// startProc starts name with extra environment env; it is killed (its
// process group) when the test ends, and its output logged on failure.
func startProc(t *testing.T, env []string, name string, args ...string) *proc {
	t.Helper()
	p := &proc{name: filepath.Base(name), cmd: exec.Command(name, args...), done: make(chan struct{})}
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = lockedWriter{&p.mu, &p.out}, lockedWriter{&p.mu, &p.errb}
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	in, err := p.cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.stdin = in
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
		if t.Failed() {
			t.Logf("%s (pid %d) %s\nstdout: %s\nstderr: %s", p.name, p.pid(), p.err, p.stdout(), p.stderr())
		}
	})
	return p
}

// startRole starts the test binary as a TLS role (tlsroles_test.go).
func startRole(t *testing.T, r tlsRole) *proc {
	t.Helper()
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	p := startProc(t, []string{tlsRoleEnv + "=" + string(b)}, os.Args[0])
	p.name = r.Kind
	return p
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) stdout() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

func (p *proc) stderr() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.errb.String()
}

// waitOutput waits until the process has printed want.
func (p *proc) waitOutput(t *testing.T, want string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(p.stdout(), want) {
		select {
		case <-p.done:
			if strings.Contains(p.stdout(), want) {
				return
			}
			t.Fatalf("%s exited (%v) before printing %q: %s %s", p.name, p.err, want, p.stdout(), p.stderr())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no %q after 20s: %s %s", p.name, want, p.stdout(), p.stderr())
		}
	}
}

// finish writes input to the process's stdin, closes it and waits for a
// successful exit; it returns the process's stdout.
func (p *proc) finish(t *testing.T, input string) string {
	t.Helper()
	if _, err := io.WriteString(p.stdin, input); err != nil {
		t.Fatalf("%s: write stdin: %v", p.name, err)
	}
	p.stdin.Close()
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		t.Fatalf("%s did not finish: %s %s", p.name, p.stdout(), p.stderr())
	}
	if p.err != nil {
		t.Fatalf("%s: %v\nstdout: %s\nstderr: %s", p.name, p.err, p.stdout(), p.stderr())
	}
	return p.stdout()
}

// tlsCols are the columns the TLS tests read and print.
const tlsCols = `observation_point, l7_protocol_str, is_tls, version, request_type, request_resource, request_id,
  response_code, response_status, response_exception, req_tcp_seq, resp_tcp_seq, client_port, server_port,
  process_id_0, process_id_1, process_kname_0, process_kname_1, syscall_trace_id_request, type`

// rowWant describes one expected row; empty fields are not checked.
type rowWant struct {
	name     string // in messages
	op       string // observation_point
	proto    string // l7_protocol_str
	port     int    // server_port
	method   string // request_type
	resource string // request_resource, exact
	// resourceHas is a substring of request_resource (instead of resource).
	resourceHas string
	pid         int    // process_id_0 (c-p) or process_id_1 (s-p)
	comm        string // process_kname_0 (c-p) or process_kname_1 (s-p)
	streamID    int64  // request_id (HTTP/2); 0: not checked
	code        int64  // response_code; 0: not checked
}

func (w *rowWant) matches(t *testing.T, r map[string]any) bool {
	side := "1"
	if w.op == "c-p" {
		side = "0"
	}
	switch {
	case w.op != "" && str(r["observation_point"]) != w.op,
		w.proto != "" && str(r["l7_protocol_str"]) != w.proto,
		w.port != 0 && num(t, r["server_port"]) != int64(w.port),
		w.method != "" && str(r["request_type"]) != w.method,
		w.resource != "" && str(r["request_resource"]) != w.resource,
		w.resourceHas != "" && !strings.Contains(str(r["request_resource"]), w.resourceHas),
		w.pid != 0 && num(t, r["process_id_"+side]) != int64(w.pid),
		w.comm != "" && str(r["process_kname_"+side]) != w.comm,
		w.streamID != 0 && (r["request_id"] == nil || num(t, r["request_id"]) != w.streamID):
		return false
	}
	return true
}

// waitTLSRows polls rows where cond holds until every want has a row (or
// 20 s pass); it returns the row found for each want (nil: none) and the
// rows seen.
func (s *tlsStack) waitTLSRows(t *testing.T, cond string, wants []rowWant) ([]map[string]any, []map[string]any) {
	t.Helper()
	sql := fmt.Sprintf("SELECT %s FROM l7_flow_log WHERE %s ORDER BY start_time", tlsCols, cond)
	deadline := time.Now().Add(20 * time.Second)
	for {
		rows := s.query(t, sql)
		found := make([]map[string]any, len(wants))
		missing := 0
		for i := range wants {
			for _, r := range rows {
				if wants[i].matches(t, r) {
					found[i] = r
					break
				}
			}
			if found[i] == nil {
				missing++
			}
		}
		if missing == 0 || time.Now().After(deadline) {
			return found, rows
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// checkTLSRows waits for wants' rows and checks each one: is_tls, a
// successful response with the wanted code, and non-zero TCP sequence
// numbers. It returns the rows found (nil for a missing one).
func (s *tlsStack) checkTLSRows(t *testing.T, cond string, wants []rowWant) []map[string]any {
	t.Helper()
	found, rows := s.waitTLSRows(t, cond, wants)
	bad := false
	for i, w := range wants {
		r := found[i]
		if r == nil {
			t.Errorf("%s: no row (%+v)", w.name, w)
			bad = true
			continue
		}
		var errs []string
		if r["is_tls"] != true {
			errs = append(errs, fmt.Sprintf("is_tls = %v", r["is_tls"]))
		}
		if num(t, r["type"]) != 2 {
			errs = append(errs, fmt.Sprintf("type = %v, want 2 (session)", r["type"]))
		}
		if num(t, r["response_status"]) != 0 {
			errs = append(errs, fmt.Sprintf("response_status = %v (%v)", r["response_status"], r["response_exception"]))
		}
		if w.code != 0 && (r["response_code"] == nil || num(t, r["response_code"]) != w.code) {
			errs = append(errs, fmt.Sprintf("response_code = %v, want %d", r["response_code"], w.code))
		}
		if num(t, r["req_tcp_seq"]) == 0 || num(t, r["resp_tcp_seq"]) == 0 {
			errs = append(errs, fmt.Sprintf("tcp seqs = %v/%v, want non-zero", r["req_tcp_seq"], r["resp_tcp_seq"]))
		}
		if len(errs) > 0 {
			t.Errorf("%s: %s\n  row: %s", w.name, strings.Join(errs, "; "), fmtRow(r))
			bad = true
		}
	}
	if bad {
		t.Logf("rows where %s (%d):\n%s", cond, len(rows), fmtRows(rows))
		s.logTLSSummary(t)
		t.Logf("coverage: %s", s.coverage(t))
	} else if testing.Verbose() {
		var b strings.Builder
		for i, r := range found {
			fmt.Fprintf(&b, "  %s: %s\n", wants[i].name, fmtRow(r))
		}
		t.Logf("rows checked:\n%s", b.String())
	}
	return found
}

// sameHop checks that the two ends of one hop carry the same TCP sequence
// numbers and client port.
func sameHop(t *testing.T, what string, a, b map[string]any) {
	t.Helper()
	if a == nil || b == nil {
		return
	}
	for _, col := range []string{"req_tcp_seq", "resp_tcp_seq", "client_port"} {
		if num(t, a[col]) != num(t, b[col]) {
			t.Errorf("%s: %s differs between the two ends: %v vs %v\n  %s\n  %s", what, col, a[col], b[col], fmtRow(a), fmtRow(b))
		}
	}
}

// logTLSSummary logs how many TLS rows the store holds per protocol, port
// and observation point: what the agent decrypted at all.
func (s *tlsStack) logTLSSummary(t *testing.T) {
	t.Helper()
	rows := s.query(t, `SELECT l7_protocol_str, server_port, observation_point, is_tls, process_kname_0, process_kname_1,
	  count(*) AS n FROM l7_flow_log WHERE is_tls GROUP BY ALL ORDER BY server_port, observation_point`)
	var b strings.Builder
	for _, r := range rows {
		fmt.Fprintf(&b, "  %v port=%v %v tls=%v %v→%v: %v\n", r["l7_protocol_str"], r["server_port"], r["observation_point"],
			r["is_tls"], r["process_kname_0"], r["process_kname_1"], r["n"])
	}
	t.Logf("all is_tls rows by protocol/port/side:\n%s", b.String())
}

func fmtRow(r map[string]any) string {
	code := "-"
	if r["response_code"] != nil {
		code = str(r["response_code"])
	}
	id := "-"
	if r["request_id"] != nil {
		id = str(r["request_id"])
	}
	return fmt.Sprintf("%v %v tls=%v v=%v %v:%v %q %q id=%s code=%s status=%v exc=%q seq=%v/%v pid=%v(%v)→%v(%v) strace=%v type=%v",
		r["l7_protocol_str"], r["observation_point"], r["is_tls"], r["version"], r["client_port"], r["server_port"],
		r["request_type"], r["request_resource"], id, code, r["response_status"], r["response_exception"],
		r["req_tcp_seq"], r["resp_tcp_seq"], r["process_id_0"], r["process_kname_0"], r["process_id_1"], r["process_kname_1"],
		r["syscall_trace_id_request"], r["type"])
}

func fmtRows(rows []map[string]any) string {
	var b strings.Builder
	for _, r := range rows {
		b.WriteString("  " + fmtRow(r) + "\n")
	}
	return b.String()
}

// capture is a tcpdump of loopback traffic.
type capture struct {
	path string
	cmd  *exec.Cmd
	errb *bytes.Buffer
	mu   *sync.Mutex
	once sync.Once
}

// startCapture records loopback TCP traffic on ports into a file.
func startCapture(t *testing.T, ports ...int) *capture {
	t.Helper()
	var filter []string
	for _, p := range ports {
		filter = append(filter, fmt.Sprintf("tcp port %d", p))
	}
	c := &capture{path: filepath.Join(t.TempDir(), "hop.pcap"), errb: new(bytes.Buffer), mu: new(sync.Mutex)}
	// --immediate-mode and -U: nothing held in tcpdump's buffers at SIGINT.
	c.cmd = exec.Command("tcpdump", "-i", "lo", "-n", "--immediate-mode", "-U", "-s", "0", "-w", c.path, strings.Join(filter, " or "))
	c.cmd.Stderr = lockedWriter{c.mu, c.errb}
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("tcpdump: %v", err)
	}
	t.Cleanup(func() { c.stop() })
	deadline := time.Now().Add(5 * time.Second)
	for {
		c.mu.Lock()
		ok := strings.Contains(c.errb.String(), "listening on")
		c.mu.Unlock()
		if ok {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("tcpdump did not start: %s", c.errb.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (c *capture) stop() {
	c.once.Do(func() {
		_ = c.cmd.Process.Signal(os.Interrupt)
		_ = c.cmd.Wait()
	})
}

// segment is one captured TCP segment with payload.
type segment struct {
	srcPort, dstPort uint16
	seq              uint32
	payload          []byte
}

// maxCaptured bounds the payload bytes kept from a capture.
const maxCaptured = 4 << 20

// segments waits until every captured connection has ended (a FIN or RST:
// the clients have exited, so tcpdump has the whole exchange; it drops what
// it has not read when stopped), stops the capture and returns its TCP
// segments with payload.
func (c *capture) segments(t *testing.T) []segment {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, open := c.read(t)
		if open == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Logf("capture: %d connections still open after 10s", open)
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.stop()
	segs, _ := c.read(t)
	return segs
}

// read parses what tcpdump wrote so far (a last partial record ends it): the
// segments with payload, and how many connections carried payload without
// a FIN or RST yet.
func (c *capture) read(t *testing.T) ([]segment, int) {
	t.Helper()
	f, err := pcapfile.Open(c.path)
	if err != nil {
		return nil, 1 // no header written yet
	}
	defer f.Close()
	type conn struct{ a, b uint16 }
	key := func(p *decode.Packet) conn { return conn{min(p.SrcPort, p.DstPort), max(p.SrcPort, p.DstPort)} }
	ended := map[conn]bool{}
	var d decode.Decoder
	var out []segment
	kept := 0
	for kept < maxCaptured {
		fr, err := f.Next()
		if err != nil {
			break
		}
		var p decode.Packet
		if d.Decode(fr.LinkType, fr.Data, &p) != nil || p.L4 != 6 {
			continue
		}
		k := key(&p)
		if p.Flags&(decode.FlagFIN|decode.FlagRST) != 0 {
			ended[k] = true
		} else if _, seen := ended[k]; !seen {
			ended[k] = false
		}
		if len(p.Payload) == 0 {
			continue
		}
		kept += len(p.Payload)
		out = append(out, segment{srcPort: p.SrcPort, dstPort: p.DstPort, seq: p.Seq, payload: append([]byte(nil), p.Payload...)})
	}
	open := 0
	for _, e := range ended {
		if !e {
			open++
		}
	}
	return out, open
}

// tlsAppData is the start of a TLS 1.2/1.3 application-data record.
var tlsAppData = []byte{0x17, 0x03, 0x03}

// checkWire checks that row's request and response TCP sequence numbers
// point, on its connection's captured segments, at the start of a TLS
// application-data record: the plaintext row names the ciphertext that
// carried it. (A record usually starts its segment; small writes may share
// one on loopback, so the sequence number may fall inside a segment.) A
// zero sequence number is reported by checkTLSRows, not here.
func checkWire(t *testing.T, what string, segs []segment, row map[string]any) {
	t.Helper()
	if row == nil {
		return
	}
	cport, sport := uint16(num(t, row["client_port"])), uint16(num(t, row["server_port"]))
	for _, c := range []struct {
		dir      string
		seq      uint32
		src, dst uint16
	}{
		{"request", uint32(num(t, row["req_tcp_seq"])), cport, sport},
		{"response", uint32(num(t, row["resp_tcp_seq"])), sport, cport},
	} {
		if c.seq == 0 {
			continue
		}
		var near []string
		ok := false
		for _, s := range segs {
			if s.srcPort != c.src || s.dstPort != c.dst {
				continue
			}
			if off := c.seq - s.seq; off < uint32(len(s.payload)) && bytes.HasPrefix(s.payload[off:], tlsAppData) {
				ok = true
				break
			}
			near = append(near, fmt.Sprintf("seq=%d len=%d head=% x", s.seq, len(s.payload), s.payload[:min(8, len(s.payload))]))
		}
		if !ok {
			t.Errorf("%s: no %s segment %d→%d with a TLS application-data record at seq %d; segments that way:\n  %s\n  row: %s",
				what, c.dir, c.src, c.dst, c.seq, strings.Join(near, "\n  "), fmtRow(row))
		}
	}
}

// checkWireAll runs checkWire on every row found.
func checkWireAll(t *testing.T, segs []segment, wants []rowWant, rows []map[string]any) {
	t.Helper()
	for i, r := range rows {
		checkWire(t, wants[i].name, segs, r)
	}
}

// nginxWorkers returns the pids of the children of nginx's master.
func nginxWorkers(t *testing.T, master int) []int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", master, master))
		var pids []int
		for _, f := range strings.Fields(string(b)) {
			if n, err := strconv.Atoi(f); err == nil {
				pids = append(pids, n)
			}
		}
		if len(pids) > 0 {
			return pids
		}
		if time.Now().After(deadline) {
			t.Fatalf("nginx %d has no workers", master)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// startTLSNginx runs nginx terminating TLS on its port and proxying over
// TLS (HTTP/1.1, no verification) to the backend port.
func startTLSNginx(t *testing.T, certs tlsFiles, backendPort int) (port int, p *proc) {
	t.Helper()
	dir := t.TempDir()
	port = freePort(t)
	confPath, err := nginxconf.Write(nginxconf.Config{Dir: dir, HTTP: fmt.Sprintf(`  server {
    listen 127.0.0.1:%d ssl;
    ssl_certificate %s;
    ssl_certificate_key %s;
    location / {
      proxy_pass https://127.0.0.1:%d;
      proxy_http_version 1.1;
      proxy_ssl_verify off;
    }
  }`, port, certs.Cert, certs.Key, backendPort)})
	if err != nil {
		t.Fatal(err)
	}
	p = startProc(t, nil, "nginx", "-c", confPath, "-p", dir)
	t.Cleanup(func() {
		if t.Failed() {
			errLog, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Logf("nginx error.log: %s", errLog)
		}
	})
	return port, p
}

// startHTTPSServer runs the Go HTTPS server role and waits until it answers.
func startHTTPSServer(t *testing.T, certs tlsFiles) (port int, p *proc) {
	t.Helper()
	port = freePort(t)
	p = startRole(t, tlsRole{Kind: "https-server", Addr: fmt.Sprintf("127.0.0.1:%d", port), Cert: certs.Cert, Key: certs.Key})
	p.waitOutput(t, "ready")
	waitTLS(t, fmt.Sprintf("127.0.0.1:%d", port), certs.pool)
	return port, p
}

// TestTLSCurlNginxGoBackend: curl (OpenSSL) → nginx (OpenSSL, TLS on both
// sides) → Go net/http over TLS. Each of the four ends stores its row of
// the request with is_tls, both hops' ends agree on the TCP sequence
// numbers, and those are the sequence numbers of the ciphertext records on
// the wire.
func TestTLSCurlNginxGoBackend(t *testing.T) {
	requireRootAndTools(t, "nginx", "curl", "tcpdump")
	st := startTLSStack(t)
	certs := writeTestCerts(t, t.TempDir())
	backendPort, backend := startHTTPSServer(t, certs)
	nginxPort, nginx := startTLSNginx(t, certs, backendPort)
	waitTLS(t, fmt.Sprintf("127.0.0.1:%d", nginxPort), certs.pool)
	st.waitCovered(t, "backend and nginx", append([]int{backend.pid(), nginx.pid()}, nginxWorkers(t, nginx.pid())...)...)

	wire := startCapture(t, nginxPort, backendPort)
	// curl reads its configuration (the URL) from stdin: it waits there,
	// libssl loaded, until the agent covers it.
	curl := startProc(t, nil, "curl", "-sS", "--http1.1", "--cacert", certs.CA, "-o", "/dev/null", "-w", "%{http_code}", "-K", "-")
	st.waitCovered(t, "curl", curl.pid())
	if out := curl.finish(t, fmt.Sprintf("url = \"https://127.0.0.1:%d/api/users/7\"\n", nginxPort)); out != "200" {
		t.Fatalf("curl: %q, want 200", out)
	}
	segs := wire.segments(t)
	t.Logf("%d TCP segments with payload captured", len(segs))

	const path = "/api/users/7"
	rows := st.checkTLSRows(t, fmt.Sprintf("server_port IN (%d, %d)", nginxPort, backendPort), []rowWant{
		{name: "curl c-p", op: "c-p", proto: "HTTP", port: nginxPort, method: "GET", resource: path, pid: curl.pid(), code: 200},
		{name: "nginx s-p", op: "s-p", proto: "HTTP", port: nginxPort, method: "GET", resource: path, comm: "nginx", code: 200},
		{name: "nginx c-p", op: "c-p", proto: "HTTP", port: backendPort, method: "GET", resource: path, comm: "nginx", code: 200},
		{name: "backend s-p", op: "s-p", proto: "HTTP", port: backendPort, method: "GET", resource: path, pid: backend.pid(), code: 200},
	})
	sameHop(t, "curl → nginx", rows[0], rows[1])
	sameHop(t, "nginx → backend", rows[2], rows[3])
	checkWire(t, "curl c-p", segs, rows[0])
	checkWire(t, "nginx s-p", segs, rows[1])
	checkWire(t, "nginx c-p", segs, rows[2])
	checkWire(t, "backend s-p", segs, rows[3])

	// The hops join into one trace as plaintext ones do: TCP sequence numbers
	// across each TLS hop, nginx's request id from its TLS read to its call.
	seed := st.query(t, fmt.Sprintf(`SELECT _id FROM l7_flow_log WHERE observation_point = 'c-p' AND server_port = %d
		AND process_id_0 = %d AND request_resource = '%s'`, nginxPort, curl.pid(), path))
	if len(seed) != 1 {
		t.Fatalf("curl's span: %v", seed)
	}
	resp, err := http.Get(fmt.Sprintf("%s/api/v1/traces?span=%d", st.api, num(t, seed[0]["_id"])))
	if err != nil {
		t.Fatal(err)
	}
	var tr trace.Trace
	err = json.NewDecoder(resp.Body).Decode(&tr)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("trace: %s %v", resp.Status, err)
	}
	links := map[string]string{}
	for _, sp := range tr.Spans {
		links[fmt.Sprintf("%s:%d", sp.ObservationPoint, sp.ServerPort)] = string(sp.Link)
	}
	want := map[string]string{
		fmt.Sprintf("c-p:%d", nginxPort):   string(trace.RuleSeed),
		fmt.Sprintf("s-p:%d", nginxPort):   string(trace.RuleTCPSeq),
		fmt.Sprintf("c-p:%d", backendPort): string(trace.RuleSyscall),
		fmt.Sprintf("s-p:%d", backendPort): string(trace.RuleTCPSeq),
	}
	if len(tr.Spans) != 4 || !maps.Equal(links, want) {
		b, _ := json.MarshalIndent(tr, "", " ")
		t.Errorf("trace across the TLS hops: spans by link %v, want %v:\n%s", links, want, b)
	}
}

// goHTTPSCase is one Go client/server pair of TestTLSGoHTTP1AndHTTP2.
type goHTTPSCase struct {
	name           string
	server, client func(t *testing.T, port int, proto string, paths []string) *proc
}

// TestTLSGoHTTP1AndHTTP2: a Go net/http client and server over TLS, HTTP/1.1
// and HTTP/2 (ALPN h2), built normally (the test binary) and stripped (-s
// -w): rows with is_tls, method, path and status on both ends; HTTP/2 rows
// carry the client's stream ids 1, 3, 5 of its sequential requests.
func TestTLSGoHTTP1AndHTTP2(t *testing.T) {
	requireRootAndTools(t, "go", "tcpdump")
	// Build the stripped program while the stack starts.
	stripped := filepath.Join(t.TempDir(), "gohttps")
	built := make(chan error, 1)
	go func() {
		out, err := exec.Command("go", "build", "-ldflags=-s -w", "-o", stripped, "./testdata/tls/gohttps").CombinedOutput()
		if err != nil {
			err = fmt.Errorf("go build -ldflags='-s -w' ./testdata/tls/gohttps: %w\n%s", err, out)
		}
		built <- err
	}()
	st := startTLSStack(t)
	certs := writeTestCerts(t, t.TempDir())
	if err := <-built; err != nil {
		t.Fatal(err)
	}

	roleServer := func(t *testing.T, port int, _ string, _ []string) *proc {
		return startRole(t, tlsRole{Kind: "https-server", Addr: fmt.Sprintf("127.0.0.1:%d", port), Cert: certs.Cert, Key: certs.Key})
	}
	roleClient := func(t *testing.T, port int, proto string, paths []string) *proc {
		return startRole(t, tlsRole{Kind: "https-client", Addr: fmt.Sprintf("https://127.0.0.1:%d", port), CA: certs.CA, Proto: proto, Paths: paths})
	}
	strippedServer := func(t *testing.T, port int, _ string, _ []string) *proc {
		return startProc(t, nil, stripped, "server", fmt.Sprintf("127.0.0.1:%d", port), certs.Cert, certs.Key)
	}
	strippedClient := func(t *testing.T, port int, proto string, paths []string) *proc {
		return startProc(t, nil, stripped, append([]string{"client", fmt.Sprintf("https://127.0.0.1:%d", port), certs.CA, proto}, paths...)...)
	}
	for i, c := range []goHTTPSCase{
		{"test-binary", roleServer, roleClient},
		{"stripped", strippedServer, strippedClient},
	} {
		t.Run(c.name, func(t *testing.T) {
			port := freePort(t)
			srv := c.server(t, port, "", nil)
			srv.waitOutput(t, "ready")
			waitTLS(t, fmt.Sprintf("127.0.0.1:%d", port), certs.pool)
			st.waitCovered(t, c.name+" server", srv.pid())
			wire := startCapture(t, port)
			base := 100 * (i + 1)
			var wants []rowWant
			for k, proto := range []string{"h1", "h2"} {
				var paths []string
				for j := range 3 {
					paths = append(paths, fmt.Sprintf("/api/users/%d", base+50*k+j))
				}
				cli := c.client(t, port, proto, paths)
				cli.waitOutput(t, "ready")
				st.waitCovered(t, c.name+" "+proto+" client", cli.pid())
				out := cli.finish(t, "go\n")
				wantProto, rowProto := "HTTP/1.1", "HTTP"
				if proto == "h2" {
					wantProto, rowProto = "HTTP/2.0", "HTTP2"
				}
				for j, p := range paths {
					if line := fmt.Sprintf("%s 200 %s", p, wantProto); !strings.Contains(out, line) {
						t.Fatalf("%s client: output %q lacks %q", proto, out, line)
					}
					var stream int64
					if proto == "h2" {
						stream = int64(2*j + 1)
					}
					wants = append(wants,
						rowWant{name: fmt.Sprintf("%s client %s", proto, p), op: "c-p", proto: rowProto, port: port, method: "GET",
							resource: p, pid: cli.pid(), streamID: stream, code: 200},
						rowWant{name: fmt.Sprintf("%s server %s", proto, p), op: "s-p", proto: rowProto, port: port, method: "GET",
							resource: p, pid: srv.pid(), streamID: stream, code: 200})
				}
			}
			segs := wire.segments(t)
			rows := st.checkTLSRows(t, fmt.Sprintf("server_port = %d", port), wants)
			for k := 0; k+1 < len(rows); k += 2 {
				sameHop(t, wants[k].name, rows[k], rows[k+1])
			}
			checkWireAll(t, segs, wants, rows)
		})
	}
}

// TestTLSGRPC: one unary call (grpc.health.v1.Health/Check) from a grpc-go
// client to a grpc-go server over TLS: gRPC rows on both ends with is_tls,
// the method path and grpc-status 0.
func TestTLSGRPC(t *testing.T) {
	requireRootAndTools(t, "tcpdump")
	st := startTLSStack(t)
	certs := writeTestCerts(t, t.TempDir())
	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	srv := startRole(t, tlsRole{Kind: "grpc-server", Addr: addr, Cert: certs.Cert, Key: certs.Key})
	srv.waitOutput(t, "ready")
	waitTLS(t, addr, certs.pool)
	cli := startRole(t, tlsRole{Kind: "grpc-client", Addr: addr, CA: certs.CA})
	cli.waitOutput(t, "ready")
	st.waitCovered(t, "grpc server and client", srv.pid(), cli.pid())
	wire := startCapture(t, port)
	if out := cli.finish(t, "go\n"); !strings.Contains(out, "check SERVING") {
		t.Fatalf("grpc client: %q", out)
	}
	segs := wire.segments(t)
	const method = "/grpc.health.v1.Health/Check"
	wants := []rowWant{
		{name: "grpc client", op: "c-p", proto: "gRPC", port: port, resource: method, pid: cli.pid(), streamID: 1},
		{name: "grpc server", op: "s-p", proto: "gRPC", port: port, resource: method, pid: srv.pid(), streamID: 1},
	}
	rows := st.checkTLSRows(t, fmt.Sprintf("server_port = %d", port), wants)
	checkWireAll(t, segs, wants, rows)
	for _, r := range rows {
		if r != nil && (r["response_code"] == nil || num(t, r["response_code"]) != 0 || str(r["request_type"]) != "POST") {
			t.Errorf("grpc row: want POST and grpc-status 0: %s", fmtRow(r))
		}
	}
	sameHop(t, "grpc", rows[0], rows[1])
}

// pythonClient is run by /usr/bin/python3: requests, then urllib, after the
// test's go-ahead on stdin (ssl is loaded by then: requests imports it).
const pythonClient = `
import ssl, sys, urllib.request
import requests
base, ca = sys.argv[1], sys.argv[2]
print("ready", flush=True)
sys.stdin.readline()
r = requests.get(base + "/api/users/301", verify=ca, timeout=10)
print("requests", r.status_code, flush=True)
with urllib.request.urlopen(base + "/api/users/302", context=ssl.create_default_context(cafile=ca), timeout=10) as u:
    u.read()
    print("urllib", u.status, flush=True)
`

// TestTLSPython: Debian's Python (_ssl: SSL_read_ex/SSL_write_ex) with
// requests and urllib against the Go HTTPS server.
func TestTLSPython(t *testing.T) {
	requireRootAndTools(t, "/usr/bin/python3", "tcpdump", "curl")
	// Only Python and the Go server are decrypted: curl shares Python's
	// probed libssl.so.3, and the kernel must drop its plaintext.
	st := startTLSStackWith(t, agent.Config{TLSProcesses: regexp.MustCompile(`^python3|/e2e\.test$`)})
	certs := writeTestCerts(t, t.TempDir())
	port, srv := startHTTPSServer(t, certs)
	script := filepath.Join(t.TempDir(), "client.py")
	if err := os.WriteFile(script, []byte(pythonClient), 0o644); err != nil {
		t.Fatal(err)
	}
	py := startProc(t, nil, "/usr/bin/python3", script, fmt.Sprintf("https://127.0.0.1:%d", port), certs.CA)
	py.waitOutput(t, "ready")
	st.waitCovered(t, "python and the server", py.pid(), srv.pid())
	wire := startCapture(t, port)
	if out := py.finish(t, "go\n"); !strings.Contains(out, "requests 200") || !strings.Contains(out, "urllib 200") {
		t.Fatalf("python: %q", out)
	}
	var wants []rowWant
	for _, c := range []struct{ lib, path string }{{"requests", "/api/users/301"}, {"urllib", "/api/users/302"}} {
		wants = append(wants,
			rowWant{name: c.lib + " client", op: "c-p", proto: "HTTP", port: port, method: "GET", resource: c.path, pid: py.pid(), code: 200},
			rowWant{name: c.lib + " server", op: "s-p", proto: "HTTP", port: port, method: "GET", resource: c.path, pid: srv.pid(), code: 200})
	}
	segs := wire.segments(t)
	rows := st.checkTLSRows(t, fmt.Sprintf("server_port = %d", port), wants)
	sameHop(t, "requests", rows[0], rows[1])
	sameHop(t, "urllib", rows[2], rows[3])
	checkWireAll(t, segs, wants, rows)

	// --tls-processes: curl is not decrypted, the server's side of its
	// request is.
	curl := startProc(t, nil, "curl", "-sS", "--http1.1", "--cacert", certs.CA, "-o", "/dev/null", "-w", "%{http_code}", "-K", "-")
	time.Sleep(300 * time.Millisecond) // libssl mapped: curl waits on stdin
	if st.agent.TLSCovered(uint32(curl.pid())) {
		t.Errorf("curl covered although --tls-processes does not match it; coverage: %s", st.coverage(t))
	}
	if out := curl.finish(t, fmt.Sprintf("url = \"https://127.0.0.1:%d/api/users/303\"\n", port)); out != "200" {
		t.Fatalf("curl: %q", out)
	}
	st.checkTLSRows(t, fmt.Sprintf("server_port = %d", port), []rowWant{
		{name: "server s-p of curl's request", op: "s-p", proto: "HTTP", port: port, method: "GET", resource: "/api/users/303", pid: srv.pid(), code: 200},
	})
	if n := st.query(t, fmt.Sprintf("SELECT count(*) AS n FROM l7_flow_log WHERE server_port = %d AND process_id_0 = %d", port, curl.pid())); num(t, n[0]["n"]) != 0 {
		t.Errorf("%v rows from curl, which --tls-processes leaves out", n[0]["n"])
	}
}

// pgBinary finds a PostgreSQL program (Debian installs them per version).
func pgBinary(t *testing.T, name string) string {
	t.Helper()
	m, _ := filepath.Glob("/usr/lib/postgresql/*/bin/" + name)
	if len(m) == 0 {
		t.Fatalf("%s not installed (postgresql; run scripts/install-test-deps.sh)", name)
	}
	sort.Strings(m)
	return m[len(m)-1]
}

// TestTLSPostgres: psql (libpq, OpenSSL) with sslmode=require against a
// PostgreSQL with ssl=on: PostgreSQL rows with is_tls and the query on both
// ends.
func TestTLSPostgres(t *testing.T) {
	requireRootAndTools(t, "runuser", "tcpdump")
	initdb, postgres, psql := pgBinary(t, "initdb"), pgBinary(t, "postgres"), pgBinary(t, "psql")
	u, err := user.Lookup("postgres")
	if err != nil {
		t.Fatalf("no postgres user (install postgresql): %v", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	// Outside t.TempDir: the postgres user must traverse it.
	dir, err := os.MkdirTemp("", "sightline-e2e-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	certs := writeTestCerts(t, dir)
	for _, p := range []string{dir, certs.Cert, certs.Key} {
		if err := os.Chown(p, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	data := filepath.Join(dir, "data")
	st := startTLSStack(t)
	if out, err := exec.Command("runuser", "-u", "postgres", "--", initdb, "-D", data, "-U", "app",
		"--auth=trust", "--no-sync", "--no-locale", "-E", "UTF8").CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	port := freePort(t)
	pg := startProc(t, nil, "runuser", "-u", "postgres", "--", postgres, "-D", data, "-p", strconv.Itoa(port), "-k", dir,
		"-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "shared_buffers=16MB", "-c", "max_connections=20",
		"-c", "ssl=on", "-c", "ssl_cert_file="+certs.Cert, "-c", "ssl_key_file="+certs.Key)
	livetest.WaitTCP(t, fmt.Sprintf("127.0.0.1:%d", port), 20*time.Second)
	postmaster := pgPostmaster(t, pg.pid())
	// libssl is probed once per file: with the server covered, psql is
	// covered from its exec on, its handshake and login included (a call
	// already in progress when probes attach is not seen).
	st.waitCovered(t, "postgres", postmaster)
	// psql connects (TLS handshake, login) and then reads the queries from stdin.
	cli := startProc(t, nil, psql, fmt.Sprintf("host=127.0.0.1 port=%d user=app dbname=postgres sslmode=require", port),
		"-X", "-A", "-t", "-v", "ON_ERROR_STOP=1")
	st.waitCovered(t, "psql", cli.pid())
	wire := startCapture(t, port)
	const query = "SELECT count(*) FROM pg_class WHERE relname = 'sightline_tls';"
	if out := cli.finish(t, query+"\nSELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid();\n"); out != "0\nt\n" {
		t.Fatalf("psql: %q, want 0 and t (the connection uses TLS)", out)
	}
	segs := wire.segments(t)
	wants := []rowWant{
		{name: "psql c-p", op: "c-p", proto: "PostgreSQL", port: port, method: "SELECT", resourceHas: "FROM pg_class WHERE relname", pid: cli.pid()},
		{name: "postgres s-p", op: "s-p", proto: "PostgreSQL", port: port, method: "SELECT", resourceHas: "FROM pg_class WHERE relname", comm: "postgres"},
	}
	rows := st.checkTLSRows(t, fmt.Sprintf("server_port = %d", port), wants)
	checkWireAll(t, segs, wants, rows)
	for _, r := range rows {
		if r != nil && strings.Contains(str(r["request_resource"]), "sightline_tls") {
			t.Errorf("literal stored unmasked: %s", fmtRow(r))
		}
	}
	sameHop(t, "psql → postgres", rows[0], rows[1])
}

// pgPostmaster returns the postgres server's pid: runuser's child.
func pgPostmaster(t *testing.T, runuser int) int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", runuser, runuser))
		if f := strings.Fields(string(b)); len(f) > 0 {
			if n, err := strconv.Atoi(f[0]); err == nil {
				return n
			}
		}
		// runuser may exec the server itself.
		if comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", runuser)); strings.TrimSpace(string(comm)) == "postgres" {
			return runuser
		}
		if time.Now().After(deadline) {
			t.Fatalf("no postgres process under runuser %d", runuser)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestTLSRedis: redis-cli --tls against redis-server --tls-port (both
// OpenSSL): Redis rows with is_tls for PING, SET and GET on both ends.
func TestTLSRedis(t *testing.T) {
	requireRootAndTools(t, "redis-server", "redis-cli", "tcpdump")
	st := startTLSStack(t)
	certs := writeTestCerts(t, t.TempDir())
	port := freePort(t)
	srv := startProc(t, nil, "redis-server", "--port", "0", "--tls-port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--tls-cert-file", certs.Cert, "--tls-key-file", certs.Key, "--tls-ca-cert-file", certs.CA, "--tls-auth-clients", "no",
		"--save", "", "--appendonly", "no", "--dir", t.TempDir())
	waitTLS(t, fmt.Sprintf("127.0.0.1:%d", port), certs.pool)
	// redis-cli connects (TLS handshake), then reads commands from stdin.
	cli := startProc(t, nil, "redis-cli", "--tls", "--cacert", certs.CA, "-h", "127.0.0.1", "-p", strconv.Itoa(port))
	st.waitCovered(t, "redis-server and redis-cli", srv.pid(), cli.pid())
	wire := startCapture(t, port)
	if out := cli.finish(t, "PING\nSET tls:key s3cr3t-value\nGET tls:key\n"); out != "PONG\nOK\ns3cr3t-value\n" {
		t.Fatalf("redis-cli: %q", out)
	}
	var wants []rowWant
	for _, c := range []struct{ cmd, res string }{{"PING", ""}, {"SET", "tls:key"}, {"GET", "tls:key"}} {
		wants = append(wants,
			rowWant{name: "redis-cli " + c.cmd, op: "c-p", proto: "Redis", port: port, method: c.cmd, resourceHas: c.res, pid: cli.pid()},
			rowWant{name: "redis-server " + c.cmd, op: "s-p", proto: "Redis", port: port, method: c.cmd, resourceHas: c.res, pid: srv.pid()})
	}
	segs := wire.segments(t)
	rows := st.checkTLSRows(t, fmt.Sprintf("server_port = %d", port), wants)
	for k := 0; k+1 < len(rows); k += 2 {
		sameHop(t, wants[k].name, rows[k], rows[k+1])
	}
	checkWireAll(t, segs, wants, rows)
	for _, r := range rows {
		if r != nil && strings.Contains(str(r["request_resource"]), "s3cr3t") {
			t.Errorf("value stored unmasked: %s", fmtRow(r))
		}
	}
}
