package tlstrack

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

const python = "/usr/bin/python3"

// linkProc exposes a real process in a /proc view made of links, so that a
// test sees only its own processes (others on the host map libssl too).
func linkProc(t *testing.T, root string, pid int) {
	t.Helper()
	if err := os.Symlink(filepath.Join("/proc", strconv.Itoa(pid)), filepath.Join(root, strconv.Itoa(pid))); err != nil {
		t.Fatal(err)
	}
}

func unlinkProc(t *testing.T, root string, pid int) {
	t.Helper()
	if err := os.Remove(filepath.Join(root, strconv.Itoa(pid))); err != nil {
		t.Fatal(err)
	}
}

// TestLiveProcesses: real processes through the real /proc files: Python's
// _ssl (libssl.so.3, also loaded late after the exec), a static OpenSSL
// program and its stripped copy, a Go crypto/tls program; reference counts
// over exits.
func TestLiveProcesses(t *testing.T) {
	requireTools(t, python)
	b := programs(t)
	root := t.TempDir()
	py1 := startReady(t, python, "-c", "import ssl, time; print('ready', flush=True); time.sleep(30)")
	py2 := startReady(t, python, "-c", "import ssl, time; print('ready', flush=True); time.sleep(30)")
	static := startReady(t, b.static, "sleep")
	stripped := startReady(t, b.staticStripped, "sleep")
	gop := startReady(t, b.goTLSStripped)
	for _, p := range []*process{py1, py2, static, stripped, gop} {
		linkProc(t, root, p.Cmd.Process.Pid)
	}
	pid := func(p *process) uint32 { return uint32(p.Cmd.Process.Pid) }

	k := newFakeKernel()
	tr := New(k, Config{ProcRoot: root, RescanEvery: time.Hour})
	runTracker(t, tr)
	waitFor(t, "libssl, static program and go program probed", func() bool { return scanned(tr, 3) })
	cov := tr.Coverage()
	for _, c := range []struct {
		p       *process
		kind    string
		version string
	}{{py1, KindOpenSSL, "3"}, {py2, KindOpenSSL, "3"}, {static, KindStaticOpenSSL, "OpenSSL 3."}, {gop, KindGo, "go1."}} {
		p, _ := processOf(cov, pid(c.p))
		if !p.Covered || len(p.Libraries) != 1 || p.Libraries[0].Kind != c.kind || !strings.HasPrefix(p.Libraries[0].Version, c.version) {
			t.Errorf("pid %d: %+v, want %s %s", pid(c.p), p, c.kind, c.version)
		}
	}
	if p, _ := processOf(cov, pid(py1)); len(p.Libraries) == 1 && !strings.HasSuffix(p.Libraries[0].Path, "/libssl.so.3") {
		t.Errorf("python's library %q", p.Libraries[0].Path)
	}
	if p, _ := processOf(cov, pid(stripped)); p.Covered || len(p.Uncovered) != 1 || !strings.HasPrefix(p.Uncovered[0].Reason, "no SSL symbols") {
		t.Errorf("stripped static program: %+v", p)
	}

	// A Python importing ssl after its exec: found by the 1 s rescan.
	late := startReady(t, python, "-c", "import time; print('ready', flush=True); time.sleep(0.3); import ssl; time.sleep(30)")
	linkProc(t, root, late.Cmd.Process.Pid)
	start := time.Now()
	tr.ProcessExec(pid(late))
	waitFor(t, "late import found", func() bool { return tr.Covered(pid(late)) })
	t.Logf("late import ssl covered %v after the exec event", time.Since(start).Round(time.Millisecond))

	// Exits: libssl stays while a Python runs.
	for _, p := range []*process{py1, py2} {
		stop(p)
		unlinkProc(t, root, p.Cmd.Process.Pid)
		tr.ProcessExit(pid(p))
	}
	waitFor(t, "pythons forgotten", func() bool { return !tr.Covered(pid(py1)) && !tr.Covered(pid(py2)) })
	if st := tr.Stats(); st.Files != 3 {
		t.Errorf("libssl detached while a process maps it: %+v", st)
	}
	stop(late)
	unlinkProc(t, root, late.Cmd.Process.Pid)
	tr.ProcessExit(pid(late))
	waitFor(t, "libssl detached", func() bool { return tr.Stats().Files == 2 })
	k.mu.Lock()
	if len(k.ssl) != 2 || len(k.goTLS) != 1 {
		t.Errorf("attached %d ssl, %d go: each file once", len(k.ssl), len(k.goTLS))
	}
	k.mu.Unlock()
}

// TestLiveHostScan: a scan of the host's real /proc finds a Python with
// ssl, and measures what a full scan and a rescan cost.
func TestLiveHostScan(t *testing.T) {
	requireTools(t, python)
	py := startReady(t, python, "-c", "import ssl, time; print('ready', flush=True); time.sleep(30)")
	k := newFakeKernel()
	tr := New(k, Config{})
	defer tr.closeAll()
	start := time.Now()
	tr.scanAll(true)
	first := time.Since(start)
	start = time.Now()
	tr.scanAll(false)
	again := time.Since(start)
	if !tr.Covered(uint32(py.Cmd.Process.Pid)) {
		t.Errorf("python not covered: %+v", tr.Coverage())
	}
	ents, _ := os.ReadDir("/proc")
	st := tr.Stats()
	t.Logf("%d /proc entries: first scan %v, rescan %v; stats %+v", len(ents), first.Round(time.Millisecond), again.Round(time.Millisecond), st)
	if tr.Covered(uint32(os.Getpid())) {
		t.Error("the agent itself is tracked")
	}
}
