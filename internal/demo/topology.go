// Package demo is Sightline's reference topology for distributed tracing:
// real processes on 127.0.0.1, each its own pid,
//
//	driver → nginx → goapi → { dnsmasq, redis-server, postgres, a Python
//	ThreadPoolExecutor worker (→ redis), a Kafka broker (kfake) with a
//	consumer process, otelsvc (OTel Go SDK → Sightline's OTLP/HTTP) }
//
// a driver that sends concurrent requests and records the ground truth, and
// a checker that assembles each request's trace and counts, per expected
// hop, whether its spans are in the trace with the right parents and
// whether any span of another request got in. `sightline demo` and the e2e
// test run the same code. The Go roles (goapi, otelsvc, broker, consumer,
// driver) are the calling binary re-executed with RoleEnv set.
package demo

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sightline-io/sightline/internal/nginxconf"
)

//go:embed worker.py
var workerPy []byte

// Tools are the programs the topology runs (besides the calling binary).
var Tools = []string{"nginx", "redis-server", "dnsmasq", "python3", "runuser"}

// Options configure Start.
type Options struct {
	// Self is the command that re-executes the calling binary as a role:
	// the binary's path, then arguments that reach RunRole (e.g. "demo"
	// for sightline; none for a test binary that checks RoleEnv in init).
	Self []string
	// OTLP is the URL otelsvc exports spans to (Sightline's /v1/traces).
	OTLP string
	// Dir holds configuration and data; the caller owns it.
	Dir string
}

// Ports are the topology's listening ports on 127.0.0.1.
type Ports struct {
	Nginx, GoAPI, DNS, Redis, Postgres, Python, Kafka, OTelSvc int
}

// PIDs are the processes of the roles the checker tells apart.
type PIDs struct {
	Nginx, GoAPI, Python, Broker, Consumer, OTelSvc int
}

// Topology is the running reference topology.
type Topology struct {
	Ports Ports
	PIDs  PIDs
	opt   Options
	pgDir string

	mu    sync.Mutex
	procs []*proc
}

// proc is a started program; the tail of its output is kept for errors.
type proc struct {
	name string
	cmd  *exec.Cmd
	out  *tailBuffer
	done chan struct{}
	err  error
}

// tailBuffer keeps the last max bytes written.
type tailBuffer struct {
	mu  sync.Mutex
	b   []byte
	max int
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}

// CheckTools reports the first missing program, with how to get it.
func CheckTools() error {
	for _, tool := range Tools {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("demo: %s not installed (run scripts/install-test-deps.sh): %w", tool, err)
		}
	}
	if _, err := pgBin("postgres"); err != nil {
		return err
	}
	return nil
}

func pgBin(name string) (string, error) {
	m, _ := filepath.Glob("/usr/lib/postgresql/*/bin/" + name)
	if len(m) == 0 {
		return "", fmt.Errorf("demo: %s not installed (postgresql; run scripts/install-test-deps.sh)", name)
	}
	return m[len(m)-1], nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// start runs a program in its own process group; Close kills the group.
func (t *Topology) start(name string, env []string, argv ...string) (*proc, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	out := &tailBuffer{max: 16 << 10}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("demo: start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, out: out, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.mu.Lock()
	t.procs = append(t.procs, p)
	t.mu.Unlock()
	return p, nil
}

// role starts the calling binary as a Go role.
func (t *Topology) role(cfg roleConfig) (*proc, error) {
	b, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	return t.start(cfg.Role, []string{RoleEnv + "=" + string(b)}, t.opt.Self...)
}

// waitTCP waits until addr accepts connections or p exits.
func waitTCP(ctx context.Context, p *proc, addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("demo: %s exited (%v) before listening on %s:\n%s", p.name, p.err, addr, p.out.String())
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("demo: %s not listening on %s after %v: %w\n%s", p.name, addr, timeout, err, p.out.String())
		}
	}
}

// waitHTTP waits until url answers 200 or p exits.
func waitHTTP(ctx context.Context, p *proc, url string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	client := &http.Client{Timeout: 2 * time.Second}
	for {
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("status %s", resp.Status)
		}
		select {
		case <-p.done:
			return fmt.Errorf("demo: %s exited (%v) before %s answered:\n%s", p.name, p.err, url, p.out.String())
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("demo: %s not ready after %v: %w\n%s", url, timeout, err, p.out.String())
		}
	}
}

func addr(port int) string { return "127.0.0.1:" + strconv.Itoa(port) }

// Start starts the topology and waits until nginx serves goapi's /healthz.
// On error everything started is stopped.
func Start(ctx context.Context, opt Options) (*Topology, error) {
	if len(opt.Self) == 0 || opt.OTLP == "" || opt.Dir == "" {
		return nil, errors.New("demo: Options need Self, OTLP and Dir")
	}
	if err := CheckTools(); err != nil {
		return nil, err
	}
	t := &Topology{opt: opt}
	if err := t.startAll(ctx); err != nil {
		return nil, errors.Join(err, t.Close())
	}
	return t, nil
}

func (t *Topology) startAll(ctx context.Context) error {
	ports := []*int{&t.Ports.Nginx, &t.Ports.GoAPI, &t.Ports.DNS, &t.Ports.Redis, &t.Ports.Postgres,
		&t.Ports.Python, &t.Ports.Kafka, &t.Ports.OTelSvc}
	for _, p := range ports {
		var err error
		if *p, err = freePort(); err != nil {
			return err
		}
	}
	pg, err := t.startPostgres()
	if err != nil {
		return err
	}
	dir := t.opt.Dir
	redisP, err := t.start("redis-server", nil, "redis-server", "--port", strconv.Itoa(t.Ports.Redis),
		"--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--protected-mode", "no", "--dir", dir)
	if err != nil {
		return err
	}
	dnsP, err := t.start("dnsmasq", nil, "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null",
		"--no-resolv", "--no-hosts", "--listen-address=127.0.0.1", "--bind-interfaces",
		"--port="+strconv.Itoa(t.Ports.DNS), "--address=/demo.test/127.0.0.1",
		"--pid-file="+filepath.Join(dir, "dnsmasq.pid"), "--user=root", "--log-facility=-")
	if err != nil {
		return err
	}
	script := filepath.Join(dir, "worker.py")
	if err := os.WriteFile(script, workerPy, 0o644); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	pyP, err := t.start("python worker", nil, "python3", "-u", script, strconv.Itoa(t.Ports.Python), strconv.Itoa(t.Ports.Redis))
	if err != nil {
		return err
	}
	brokerP, err := t.role(roleConfig{Role: roleBroker, Listen: addr(t.Ports.Kafka)})
	if err != nil {
		return err
	}
	otelP, err := t.role(roleConfig{Role: roleOTelSvc, Listen: addr(t.Ports.OTelSvc), OTLP: t.opt.OTLP})
	if err != nil {
		return err
	}
	for _, w := range []struct {
		p    *proc
		port int
	}{{redisP, t.Ports.Redis}, {dnsP, t.Ports.DNS}, {pyP, t.Ports.Python}, {brokerP, t.Ports.Kafka}, {otelP, t.Ports.OTelSvc}} {
		if err := waitTCP(ctx, w.p, addr(w.port), 30*time.Second); err != nil {
			return err
		}
	}
	consumerP, err := t.role(roleConfig{Role: roleConsumer, Kafka: addr(t.Ports.Kafka)})
	if err != nil {
		return err
	}
	if err := waitTCP(ctx, pg, addr(t.Ports.Postgres), 60*time.Second); err != nil {
		return err
	}
	goP, err := t.role(roleConfig{Role: roleGoAPI, Listen: addr(t.Ports.GoAPI), DNS: addr(t.Ports.DNS),
		Redis: addr(t.Ports.Redis), Postgres: fmt.Sprintf("postgres://app@%s/postgres?sslmode=disable", addr(t.Ports.Postgres)),
		Python: addr(t.Ports.Python), Kafka: addr(t.Ports.Kafka), OTelSvc: addr(t.Ports.OTelSvc)})
	if err != nil {
		return err
	}
	if err := waitHTTP(ctx, goP, fmt.Sprintf("http://%s/healthz", addr(t.Ports.GoAPI)), 90*time.Second); err != nil {
		return err
	}
	nginxP, err := t.startNginx()
	if err != nil {
		return err
	}
	if err := waitHTTP(ctx, nginxP, fmt.Sprintf("http://%s/healthz", addr(t.Ports.Nginx)), 30*time.Second); err != nil {
		return err
	}
	t.PIDs = PIDs{Nginx: nginxP.cmd.Process.Pid, GoAPI: goP.cmd.Process.Pid, Python: pyP.cmd.Process.Pid,
		Broker: brokerP.cmd.Process.Pid, Consumer: consumerP.cmd.Process.Pid, OTelSvc: otelP.cmd.Process.Pid}
	return nil
}

// startPostgres runs initdb and postgres as the postgres user (the server
// refuses root), trust auth for user app, in a directory outside Dir (whose
// parents may not be traversable by that user).
func (t *Topology) startPostgres() (*proc, error) {
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("demo: no postgres user (install postgresql): %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	initdb, err := pgBin("initdb")
	if err != nil {
		return nil, err
	}
	server, err := pgBin("postgres")
	if err != nil {
		return nil, err
	}
	if t.pgDir, err = os.MkdirTemp("", "sightline-demo-pg-"); err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	if err := os.Chown(t.pgDir, uid, gid); err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	data := filepath.Join(t.pgDir, "data")
	out, err := exec.Command("runuser", "-u", "postgres", "--", initdb, "-D", data, "-U", "app",
		"--auth=trust", "--no-sync", "--no-locale", "-E", "UTF8").CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("demo: initdb: %w\n%s", err, out)
	}
	return t.start("postgres", nil, "runuser", "-u", "postgres", "--", server, "-D", data,
		"-p", strconv.Itoa(t.Ports.Postgres), "-k", t.pgDir, "-c", "listen_addresses=127.0.0.1",
		"-c", "fsync=off", "-c", "shared_buffers=16MB", "-c", "max_connections=40")
}

func (t *Topology) startNginx() (*proc, error) {
	dir := filepath.Join(t.opt.Dir, "nginx")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	path, err := nginxconf.Write(nginxconf.Config{Dir: dir, WorkerConnections: 4096, RlimitNofile: 8192,
		HTTP: fmt.Sprintf(`  upstream goapi {
    server 127.0.0.1:%[2]d;
    keepalive 64;
  }
  server {
    listen 127.0.0.1:%[1]d backlog=1024;
    location / {
      proxy_pass http://goapi;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      # X-Request-ID injection by the proxy (docs/tracing.md rule 4): an
      # event loop serves many requests on one thread, so nothing at the
      # thread level ties its inbound request to its upstream call.
      proxy_set_header X-Request-ID $request_id;
      add_header X-Request-ID $request_id always;
      proxy_read_timeout 60s;
    }
  }`, t.Ports.Nginx, t.Ports.GoAPI)})
	if err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	return t.start("nginx", nil, "nginx", "-c", path, "-p", dir)
}

// Truth is what the driver knows about a run.
type Truth struct {
	Ports     Ports
	PIDs      PIDs
	DriverPID int
	Requests  []Request
}

// Drive runs the driver process: n requests GET /order/<N> for N = first,
// first+1, ... with c in flight, and returns the ground truth.
func (t *Topology) Drive(ctx context.Context, first, n, c int) (Truth, error) {
	out := filepath.Join(t.opt.Dir, fmt.Sprintf("truth-%d.json", first))
	p, err := t.role(roleConfig{Role: roleDriver, URL: "http://" + addr(t.Ports.Nginx), First: first,
		Requests: n, Concurrency: c, Out: out})
	if err != nil {
		return Truth{}, err
	}
	select {
	case <-p.done:
	case <-ctx.Done():
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
		return Truth{}, ctx.Err()
	}
	if p.err != nil {
		return Truth{}, fmt.Errorf("demo: driver: %w\n%s", p.err, p.out.String())
	}
	b, err := os.ReadFile(out)
	if err != nil {
		return Truth{}, fmt.Errorf("demo: driver output: %w", err)
	}
	tr := Truth{Ports: t.Ports, PIDs: t.PIDs, DriverPID: p.cmd.Process.Pid}
	if err := json.Unmarshal(b, &tr.Requests); err != nil {
		return Truth{}, fmt.Errorf("demo: driver output: %w", err)
	}
	return tr, nil
}

// Failed lists the requests that did not succeed, one per line.
func (tr Truth) Failed() string {
	var b strings.Builder
	for _, r := range tr.Requests {
		if r.Err != "" || r.Status != http.StatusOK {
			fmt.Fprintf(&b, "order %d: status %d: %s\n", r.N, r.Status, strings.TrimSpace(r.Err))
		}
	}
	return b.String()
}

// Close stops every process (SIGKILL to each process group, newest first)
// and removes the Postgres directory.
func (t *Topology) Close() error {
	t.mu.Lock()
	procs := t.procs
	t.procs = nil
	t.mu.Unlock()
	for i := len(procs) - 1; i >= 0; i-- {
		p := procs[i]
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
		}
	}
	if t.pgDir != "" {
		if err := os.RemoveAll(t.pgDir); err != nil {
			return fmt.Errorf("demo: %w", err)
		}
	}
	return nil
}

// Logs returns the tail of every process's output (for failures).
func (t *Topology) Logs() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var b bytes.Buffer
	for _, p := range t.procs {
		fmt.Fprintf(&b, "== %s (pid %d)\n%s\n", p.name, p.cmd.Process.Pid, p.out.String())
	}
	return b.String()
}
