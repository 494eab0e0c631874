// Package livetest runs the real agent (eBPF socket tracer, parsers,
// sessions) inside a test and collects its rows in memory, and starts the
// real servers and clients that protocol tests drive. It needs root, as CI
// has; without root the tests fail with a clear message rather than skip.
package livetest

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sightline-io/sightline/agent"
	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/flowlog"
	"github.com/sightline-io/sightline/replay"
)

// Agent is a running in-process agent whose rows are kept in memory.
type Agent struct {
	mu      sync.Mutex
	rows    []flowlog.L7FlowLog
	changed chan struct{}
}

// StartAgent starts the agent with protos and stops it when the test ends.
// It fails the test without root. (This package cannot build the default
// set: agent/l7/registry imports the protocol packages whose tests use it.)
func StartAgent(t testing.TB, protos ...l7.Protocol) *Agent {
	t.Helper()
	RequireRoot(t)
	if len(protos) == 0 {
		t.Fatal("livetest: StartAgent needs at least one protocol")
	}
	h := &Agent{changed: make(chan struct{}, 1)}
	cfg := agent.Config{
		Protocols:   protos,
		ExpireEvery: 200 * time.Millisecond,
		Sink:        h.add,
		// Protocol tests send requests larger than the default prefix.
		MaxPayload: 4096,
		// Protocol tests need neither flows nor TCP lifecycle events, nor
		// TLS plaintext: its tracker would scan every process on the host
		// (CI runs many test binaries at once) at each agent's start.
		Packets:          agent.PacketConfig{Disable: true},
		DisableTCPEvents: true,
		DisableTLS:       true,
	}
	a, err := agent.New(cfg)
	if err != nil {
		t.Fatalf("livetest: start agent: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("livetest: agent run: %v", err)
		}
	})
	return h
}

func (h *Agent) add(r *flowlog.L7FlowLog) {
	h.mu.Lock()
	h.rows = append(h.rows, *r)
	h.mu.Unlock()
	select {
	case h.changed <- struct{}{}:
	default:
	}
}

// Rows returns a copy of every row so far.
func (h *Agent) Rows() []flowlog.L7FlowLog {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]flowlog.L7FlowLog(nil), h.rows...)
}

// Match returns the rows so far for which pred holds.
func (h *Agent) Match(pred func(*flowlog.L7FlowLog) bool) []flowlog.L7FlowLog {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []flowlog.L7FlowLog
	for i := range h.rows {
		if pred(&h.rows[i]) {
			out = append(out, h.rows[i])
		}
	}
	return out
}

// WaitRows waits (up to timeout) until at least n rows satisfy pred and
// returns them; on timeout it fails the test listing what rows it has.
func (h *Agent) WaitRows(t testing.TB, what string, n int, timeout time.Duration, pred func(*flowlog.L7FlowLog) bool) []flowlog.L7FlowLog {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		if got := h.Match(pred); len(got) >= n {
			return got
		}
		select {
		case <-h.changed:
		case <-time.After(50 * time.Millisecond):
		case <-deadline.C:
			got := h.Match(pred)
			t.Fatalf("livetest: %s: %d of %d rows after %v; all rows:\n%s", what, len(got), n, timeout, Describe(h.Rows()))
		}
	}
}

// ServerPort selects rows whose server port is port.
func ServerPort(port int) func(*flowlog.L7FlowLog) bool {
	return func(r *flowlog.L7FlowLog) bool { return int(r.ServerPort) == port }
}

// Describe prints rows one per line for failure messages.
func Describe(rows []flowlog.L7FlowLog) string {
	var b strings.Builder
	for i := range rows {
		r := &rows[i]
		code := "-"
		if r.ResponseCode != nil {
			code = fmt.Sprint(*r.ResponseCode)
		}
		id := "-"
		if r.RequestID != nil {
			id = fmt.Sprint(*r.RequestID)
		}
		fmt.Fprintf(&b, "  %s %s type=%d %s:%d→%s:%d %q %q %q endpoint=%q code=%s status=%d exc=%q id=%s dur=%dµs\n",
			r.L7ProtocolStr, r.ObservationPoint, r.Type, r.IP0, r.ClientPort, r.IP1, r.ServerPort,
			r.RequestType, r.RequestDomain, r.RequestResource, r.Endpoint, code, r.ResponseStatus,
			r.ResponseException, id, r.ResponseDuration)
	}
	return b.String()
}

// RequireRoot fails the test when not root: eBPF needs it, and CI is root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("livetest: needs root (eBPF); CI runs as root: sudo make test")
	}
}

// RequireTools fails the test when a program is missing.
func RequireTools(t testing.TB, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("livetest: %s not installed (run scripts/install-test-deps.sh): %v", tool, err)
		}
	}
}

// FreePort returns a TCP port free on 127.0.0.1 at the time of the call.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// WaitTCP waits until addr accepts TCP connections.
func WaitTCP(t testing.TB, addr string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("livetest: %s not accepting connections after %v: %v", addr, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Process is a program started by Start; its output is kept for failures.
type Process struct {
	Cmd *exec.Cmd
	Out *bytes.Buffer // read it through Output while the process runs
	w   *syncBuffer
}

// Output returns what the process has printed so far (stdout and stderr).
func (p *Process) Output() string {
	p.w.mu.Lock()
	defer p.w.mu.Unlock()
	return p.Out.String()
}

type syncBuffer struct {
	mu sync.Mutex
	b  *bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// Start runs a program in the background and kills it (SIGKILL to its
// process group) when the test ends; its output is logged if the test failed.
func Start(t testing.TB, name string, args ...string) *Process {
	t.Helper()
	return StartEnv(t, nil, name, args...)
}

// StartEnv is Start with extra environment variables ("K=V").
func StartEnv(t testing.TB, env []string, name string, args ...string) *Process {
	t.Helper()
	out := new(bytes.Buffer)
	cmd := exec.Command(name, args...)
	if len(env) > 0 {
		cmd.Env = append(os.Environ(), env...)
	}
	w := &syncBuffer{b: out}
	cmd.Stdout, cmd.Stderr = w, w
	cmd.SysProcAttr = procAttr()
	if err := cmd.Start(); err != nil {
		t.Fatalf("livetest: start %s: %v", name, err)
	}
	t.Cleanup(func() {
		killGroup(cmd)
		_ = cmd.Wait()
		if t.Failed() {
			w.mu.Lock()
			t.Logf("output of %s %s:\n%s", name, strings.Join(args, " "), out.String())
			w.mu.Unlock()
		}
	})
	return &Process{Cmd: cmd, Out: out, w: w}
}

// Run runs a program to completion and returns its combined output,
// failing the test if it fails.
func Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("livetest: %s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// RecordEnv, when set to a directory, makes Record capture the test's
// traffic with tcpdump into that directory: how the committed testdata
// captures were made (see docs/testing.md).
const RecordEnv = "SIGHTLINE_RECORD_DIR"

// Record starts tcpdump on the loopback interface with filter, writing
// name (e.g. "redis.pcap") under $SIGHTLINE_RECORD_DIR, when that variable is
// set; otherwise it does nothing. The returned stop function waits until
// tcpdump has written everything.
func Record(t testing.TB, name, filter string) (stop func()) {
	t.Helper()
	dir := os.Getenv(RecordEnv)
	if dir == "" {
		return func() {}
	}
	RequireTools(t, "tcpdump")
	path := filepath.Join(dir, name)
	// --immediate-mode: without it tcpdump hands packets over only when its
	// buffer times out, and what it holds at SIGINT is lost.
	cmd := exec.Command("tcpdump", "-i", "lo", "--immediate-mode", "-U", "-s", "0", "-w", path, filter)
	var errBuf bytes.Buffer
	cmd.Stderr = &errBuf
	if err := cmd.Start(); err != nil {
		t.Fatalf("livetest: tcpdump: %v", err)
	}
	// tcpdump says "listening on" once the capture is open.
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(errBuf.String(), "listening on") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			time.Sleep(300 * time.Millisecond)
			_ = cmd.Process.Signal(os.Interrupt)
			_ = cmd.Wait()
			t.Logf("livetest: recorded %s", path)
		})
	}
	t.Cleanup(stop)
	return stop
}

// Replay runs the capture at path through `sightline replay`'s library with
// protos and returns its rows.
func Replay(t testing.TB, path string, protos ...l7.Protocol) []flowlog.L7FlowLog {
	t.Helper()
	var buf bytes.Buffer
	opts := replay.Options{Protocols: protos}
	if _, err := replay.Run(context.Background(), path, &buf, opts); err != nil {
		t.Fatalf("livetest: replay %s: %v", path, err)
	}
	return decodeRows(t, buf.Bytes())
}
