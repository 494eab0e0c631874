package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cilium/ebpf"

	"github.com/sightline-io/sightline/internal/nginxconf"
)

type bench struct {
	bin      string
	rounds   int
	duration time.Duration
	log      *slog.Logger
}

func (b *bench) dur(def time.Duration) time.Duration {
	if b.duration > 0 {
		return b.duration
	}
	return def
}

// freePort asks the kernel for an unused loopback port.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// nginx is a private nginx instance serving a 1 KiB file.
type nginx struct {
	cmd  *exec.Cmd
	port int
	dir  string
}

func startNginx(ctx context.Context, workers int) (*nginx, error) {
	return startNginxServing(ctx, "", workers, "", "")
}

// startNginxServing starts a private nginx (its directory under parent; ""
// is the system temp directory) serving a 1 KiB file, over HTTPS when cert
// and key are given.
func startNginxServing(ctx context.Context, parent string, workers int, cert, key string) (*nginx, error) {
	dir, err := os.MkdirTemp(parent, "sightline-bench-nginx")
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "1k.bin"), []byte(strings.Repeat("x", 1024)), 0o644); err != nil {
		return nil, err
	}
	listen, scheme, wait := fmt.Sprintf("listen 127.0.0.1:%d;", port), "http", waitHTTP
	if cert != "" {
		listen = fmt.Sprintf("listen 127.0.0.1:%d ssl;\n    ssl_certificate %s;\n    ssl_certificate_key %s;", port, cert, key)
		scheme, wait = "https", waitHTTPS
	}
	confPath, err := nginxconf.Write(nginxconf.Config{Dir: dir, Workers: workers, WorkerConnections: 1024,
		HTTP: fmt.Sprintf(`  keepalive_requests 1000000;
  server {
    %s
    root %s;
  }`, listen, dir)})
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, "nginx", "-c", confPath, "-p", dir)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start nginx: %w", err)
	}
	n := &nginx{cmd: cmd, port: port, dir: dir}
	url := fmt.Sprintf("%s://127.0.0.1:%d/1k.bin", scheme, port)
	if err := wait(ctx, url); err != nil {
		n.stop()
		return nil, fmt.Errorf("nginx not serving %s: %w", url, err)
	}
	return n, nil
}

func (n *nginx) stop() {
	if n.cmd.Process != nil {
		_ = syscall.Kill(-n.cmd.Process.Pid, syscall.SIGQUIT)
		_ = n.cmd.Wait()
	}
	os.RemoveAll(n.dir)
}

func waitHTTP(ctx context.Context, url string) error {
	return waitHTTPWith(ctx, http.DefaultClient, url)
}

// waitHTTPWith polls url with client until it answers 200 (15 s at most).
func waitHTTPWith(ctx context.Context, client *http.Client, url string) error {
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("status %s", resp.Status)
		}
		if time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// sightlineProc is a sightline subprocess (up, server or agent).
type sightlineProc struct {
	cmd *exec.Cmd
	dir string
}

func (b *bench) startSightline(ctx context.Context, args ...string) (*sightlineProc, error) {
	dir, err := os.MkdirTemp("", "sightline-bench-data")
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, b.bin, args...)
	cmd.Dir = dir
	logf, err := os.Create(filepath.Join(dir, "sightline.log"))
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 20 * time.Second
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s %v: %w", b.bin, args, err)
	}
	return &sightlineProc{cmd: cmd, dir: dir}, nil
}

func (p *sightlineProc) stop() {
	if p.cmd.Process != nil {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		_ = p.cmd.Wait()
	}
}

func (p *sightlineProc) cleanup() { os.RemoveAll(p.dir) }

// cpuSeconds is utime+stime of a process from /proc/<pid>/stat.
func cpuSeconds(pid int) (float64, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(raw)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, errors.New("malformed stat")
	}
	f := strings.Fields(s[i+2:])
	if len(f) < 13 {
		return 0, errors.New("short stat")
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100, nil // USER_HZ is 100 on Linux
}

// bpfRuntime sums run time of every loaded BPF program of the tracepoint and
// raw tracepoint kinds (kernel.bpf_stats_enabled must be 1). Deltas of it
// measure the kernel-side cost of the socket tracer.
func bpfRuntime() (time.Duration, error) {
	var total time.Duration
	var id ebpf.ProgramID
	for {
		next, err := ebpf.ProgramGetNextID(id)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return total, nil
			}
			return total, err
		}
		id = next
		prog, err := ebpf.NewProgramFromID(id)
		if err != nil {
			continue
		}
		switch prog.Type() {
		case ebpf.TracePoint, ebpf.RawTracepoint, ebpf.Tracing:
			if st, err := prog.Stats(); err == nil {
				total += st.Runtime
			}
		}
		prog.Close()
	}
}

func setBPFStats(on bool) error {
	v := "0"
	if on {
		v = "1"
	}
	return os.WriteFile("/proc/sys/kernel/bpf_stats_enabled", []byte(v), 0o644)
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
