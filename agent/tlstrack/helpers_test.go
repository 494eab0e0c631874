package tlstrack

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sightline-io/sightline/agent/capture/socktrace"
)

const libssl3 = "/usr/lib/x86_64-linux-gnu/libssl.so.3"

// builtPrograms are the programs the tests build once per run.
type builtPrograms struct {
	static, staticStripped, dynamic string // C with OpenSSL: static, its stripped copy, linked to libssl.so
	goTLS, goTLSStripped            string // Go with crypto/tls, and built with -ldflags=-s -w
	goNoTLS                         string // Go without crypto/tls
	versioned                       string // a fake libssl.so with SSL_read@OSSL_1 and SSL_read@@OSSL_2
}

var (
	buildOnce sync.Once
	built     builtPrograms
	buildErr  error
	buildDir  string
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "tlstrack-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	buildDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// programs builds the test programs (C with gcc against Debian's libssl-dev
// archives, Go with the toolchain running the tests).
func programs(t *testing.T) builtPrograms {
	t.Helper()
	buildOnce.Do(func() {
		b := builtPrograms{
			static:         filepath.Join(buildDir, "sslprog"),
			staticStripped: filepath.Join(buildDir, "sslprog-stripped"),
			dynamic:        filepath.Join(buildDir, "sslprog-dynamic"),
			goTLS:          filepath.Join(buildDir, "gotls"),
			goTLSStripped:  filepath.Join(buildDir, "gotls-stripped"),
			goNoTLS:        filepath.Join(buildDir, "gonotls"),
			versioned:      filepath.Join(buildDir, "libssl.so.9"),
		}
		goBin, err := exec.LookPath("go")
		if err != nil {
			goBin = "/usr/local/go/bin/go"
		}
		src := filepath.Join("testdata", "sslprog.c")
		steps := [][]string{
			{"gcc", "-O1", "-o", b.static, src, "/usr/lib/x86_64-linux-gnu/libssl.a", "/usr/lib/x86_64-linux-gnu/libcrypto.a", "-ldl", "-lpthread"},
			{"strip", "-o", b.staticStripped, b.static},
			{"gcc", "-O1", "-o", b.dynamic, src, "-lssl", "-lcrypto"},
			{goBin, "build", "-o", b.goTLS, "./testdata/gotls"},
			{goBin, "build", "-ldflags=-s -w", "-o", b.goTLSStripped, "./testdata/gotls"},
			{goBin, "build", "-o", b.goNoTLS, "./testdata/gonotls"},
			{"gcc", "-shared", "-fPIC", "-O1", "-o", b.versioned, "-Wl,--version-script=testdata/versioned.map", "testdata/versioned.c"},
		}
		for _, s := range steps {
			if out, err := exec.Command(s[0], s[1:]...).CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("%s: %w\n%s", strings.Join(s, " "), err, out)
				return
			}
		}
		built = b
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return built
}

// process is a program started by startReady.
type process struct {
	Cmd *exec.Cmd
	out *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startReady starts a program in its own process group, waits until it
// prints "ready", and kills it when the test ends. (internal/livetest
// imports the agent, which imports this package: not usable here.)
func startReady(t *testing.T, name string, args ...string) *process {
	t.Helper()
	p := &process{Cmd: exec.Command(name, args...), out: &syncBuffer{}}
	p.Cmd.Stdout, p.Cmd.Stderr = p.out, p.out
	p.Cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.Cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	t.Cleanup(func() {
		stop(p)
		if t.Failed() {
			t.Logf("output of %s: %s", name, p.out.String())
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(p.out.String(), "ready") {
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready: %q", name, p.out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	return p
}

// stop kills a started process (its group) and waits for it.
func stop(p *process) {
	if p.Cmd.ProcessState != nil {
		return
	}
	_ = syscall.Kill(-p.Cmd.Process.Pid, syscall.SIGKILL)
	_ = p.Cmd.Wait()
}

// requireTools fails the test when a program is missing.
func requireTools(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not installed (run scripts/install-test-deps.sh): %v", tool, err)
		}
	}
}

// fakeKernel records attachments and allowed pids.
type fakeKernel struct {
	mu         sync.Mutex
	ssl        []socktrace.SSLProbes
	goTLS      []socktrace.GoTLSProbes
	paths      []string
	open       int // attached, not closed
	closed     int
	allowed    map[uint32]bool
	disallowed int
	failAttach bool
	failAllow  bool
}

func newFakeKernel() *fakeKernel { return &fakeKernel{allowed: map[uint32]bool{}} }

type closer func() error

func (c closer) Close() error { return c() }

func (k *fakeKernel) attach(path string) (io.Closer, error) {
	if k.failAttach {
		return nil, errors.New("attach refused")
	}
	// The path must name the open file while attaching.
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("fake: %w", err)
	}
	k.paths = append(k.paths, path)
	k.open++
	var once sync.Once
	return closer(func() error {
		once.Do(func() {
			k.mu.Lock()
			defer k.mu.Unlock()
			k.open--
			k.closed++
		})
		return nil
	}), nil
}

func (k *fakeKernel) AttachSSL(path string, p socktrace.SSLProbes) (io.Closer, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	c, err := k.attach(path)
	if err == nil {
		k.ssl = append(k.ssl, p)
	}
	return c, err
}

func (k *fakeKernel) AttachGoTLS(path string, p socktrace.GoTLSProbes) (io.Closer, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	c, err := k.attach(path)
	if err == nil {
		k.goTLS = append(k.goTLS, p)
	}
	return c, err
}

func (k *fakeKernel) AllowTLS(pid uint32) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.failAllow {
		return errors.New("map full")
	}
	k.allowed[pid] = true
	return nil
}

func (k *fakeKernel) DisallowTLS(pid uint32) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.allowed, pid)
	k.disallowed++
	return nil
}

func (k *fakeKernel) state() (open, closed, allowed int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.open, k.closed, len(k.allowed)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// runTracker runs tr until the test ends and checks that Run returns.
func runTracker(t *testing.T, tr *Tracker) context.CancelFunc {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tr.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Error(err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not return")
		}
	})
	return cancel
}

// readLines returns the lines of a small file (for nm output etc.).
func readLines(s string) []string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	return out
}

// scanned reports whether the first full scan has completed with files
// probed: Files moves as soon as a file is attached, before the process
// using it is recorded, so a test waiting on Files alone could read the
// process table half filled.
func scanned(tr *Tracker, files uint64) bool {
	st := tr.Stats()
	return st.Scans >= 1 && st.Files == files
}
