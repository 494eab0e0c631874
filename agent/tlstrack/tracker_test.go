package tlstrack

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// fixProc is one process of a /proc fixture: its exe symlink points at a
// real file, and each library gets a maps line (with the file's real device
// and inode) and a map_files symlink.
type fixProc struct {
	comm string
	exe  string
	libs []string
	maps string // extra maps text
}

func addProc(t *testing.T, root string, pid int, p fixProc) {
	t.Helper()
	dir := filepath.Join(root, strconv.Itoa(pid))
	if err := os.MkdirAll(filepath.Join(dir, "map_files"), 0o755); err != nil {
		t.Fatal(err)
	}
	maps := p.maps
	for i, lib := range p.libs {
		var st syscall.Stat_t
		if err := syscall.Stat(lib, &st); err != nil {
			t.Fatal(err)
		}
		rng := fmt.Sprintf("7f%04x000-7f%04x000", i*16, i*16+8)
		maps += fmt.Sprintf("%s r-xp 00000000 %02x:%02x %d                %s\n", rng, unix.Major(st.Dev), unix.Minor(st.Dev), st.Ino, lib)
		if err := os.Symlink(lib, filepath.Join(dir, "map_files", rng)); err != nil {
			t.Fatal(err)
		}
	}
	for name, content := range map[string]string{"comm": p.comm + "\n", "maps": maps} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for name, target := range map[string]string{"exe": p.exe, "root": "/"} {
		if err := os.Symlink(target, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
}

func removeProc(t *testing.T, root string, pid int) {
	t.Helper()
	if err := os.RemoveAll(filepath.Join(root, strconv.Itoa(pid))); err != nil {
		t.Fatal(err)
	}
}

func processOf(c Coverage, pid uint32) (Process, bool) {
	for _, p := range c.Processes {
		if p.PID == pid {
			return p, true
		}
	}
	return Process{}, false
}

// fixture builds the common /proc tree of the lifecycle tests.
func fixture(t *testing.T) string {
	b := programs(t)
	root := t.TempDir()
	addProc(t, root, 100, fixProc{comm: "alpha", exe: b.static, libs: []string{libssl3}})
	addProc(t, root, 101, fixProc{comm: "alpha", exe: "/bin/sh", libs: []string{libssl3}})
	addProc(t, root, 102, fixProc{comm: "beta", exe: b.staticStripped})
	addProc(t, root, 103, fixProc{comm: "gamma", exe: b.goTLS})
	addProc(t, root, 104, fixProc{comm: "delta", exe: "/bin/sh", libs: []string{"/usr/lib/x86_64-linux-gnu/libssl3.so"}}) // NSS
	addProc(t, root, 105, fixProc{comm: "agent", exe: b.goTLSStripped, libs: []string{libssl3}})                          // SelfPID
	if err := os.MkdirAll(filepath.Join(root, "sys"), 0o755); err != nil {
		t.Fatal(err)
	}
	return root
}

// TestTrackerLifecycle: files attached once, shared by reference counts,
// detached after the last user; verdicts cached; the agent skipped.
func TestTrackerLifecycle(t *testing.T) {
	root := fixture(t)
	k := newFakeKernel()
	tr := New(k, Config{ProcRoot: root, SelfPID: 105, RescanEvery: time.Hour})
	cancel := runTracker(t, tr)
	waitFor(t, "three files probed", func() bool { return scanned(tr, 3) })
	st := tr.Stats()
	if st.Processes != 3 || st.NoSymbols != 1 || st.NoTLS < 1 || st.InspectFailed != 0 || st.AttachFailed != 0 {
		t.Errorf("stats %+v", st)
	}
	k.mu.Lock()
	if len(k.ssl) != 2 || len(k.goTLS) != 1 {
		t.Errorf("attached %d ssl, %d go", len(k.ssl), len(k.goTLS))
	}
	for _, p := range k.paths {
		if !strings.HasPrefix(p, "/proc/self/fd/") {
			t.Errorf("attached through %s", p)
		}
	}
	k.mu.Unlock()

	cov := tr.Coverage()
	p, _ := processOf(cov, 100)
	if !p.Covered || p.Comm != "alpha" || len(p.Libraries) != 2 || p.Libraries[0].Kind != KindStaticOpenSSL || p.Libraries[1].Kind != KindOpenSSL ||
		p.Libraries[1].Path != libssl3 || p.Libraries[1].Version != "3" || !strings.HasPrefix(p.Libraries[0].Version, "OpenSSL 3.") {
		t.Errorf("pid 100: %+v", p)
	}
	p, _ = processOf(cov, 102)
	if p.Covered || len(p.Uncovered) != 1 || !strings.HasPrefix(p.Uncovered[0].Reason, "no SSL symbols") {
		t.Errorf("pid 102: %+v", p)
	}
	p, _ = processOf(cov, 103)
	if !p.Covered || len(p.Libraries) != 1 || p.Libraries[0].Kind != KindGo || !strings.HasPrefix(p.Libraries[0].Version, "go1.") {
		t.Errorf("pid 103: %+v", p)
	}
	for _, pid := range []uint32{104, 105} {
		if p, ok := processOf(cov, pid); ok {
			t.Errorf("pid %d listed: %+v", pid, p)
		}
	}
	if !tr.Covered(101) || tr.Covered(102) || tr.Covered(105) {
		t.Error("Covered wrong")
	}

	// Exec events for known processes and a new one: nothing inspected
	// again, the new process shares libssl.
	inspected := tr.Stats().Inspected
	addProc(t, root, 106, fixProc{comm: "alpha", exe: "/bin/sh", libs: []string{libssl3}})
	tr.ProcessExec(102)
	tr.ProcessExec(101)
	tr.ProcessExec(106)
	waitFor(t, "pid 106 covered", func() bool { return tr.Covered(106) })
	if st := tr.Stats(); st.Inspected != inspected || st.Files != 3 {
		t.Errorf("after execs: %+v (inspected %d before)", st, inspected)
	}

	removeProc(t, root, 100)
	tr.ProcessExit(100)
	waitFor(t, "static program released", func() bool { return tr.Stats().Files == 2 })
	for _, pid := range []int{101, 106} {
		removeProc(t, root, pid)
		tr.ProcessExit(uint32(pid))
	}
	waitFor(t, "libssl released", func() bool { return tr.Stats().Files == 1 })
	if open, closed, _ := k.state(); open != 1 || closed != 2 {
		t.Errorf("open %d closed %d", open, closed)
	}
	cancel()
	waitFor(t, "all detached", func() bool { open, _, _ := k.state(); return open == 0 })
}

// TestTrackerRescan: the periodic scan finds libraries mapped late and
// forgets processes whose exit event was lost.
func TestTrackerRescan(t *testing.T) {
	b := programs(t)
	root := t.TempDir()
	addProc(t, root, 200, fixProc{comm: "py", exe: "/bin/sh"})
	k := newFakeKernel()
	tr := New(k, Config{ProcRoot: root, RescanEvery: 50 * time.Millisecond})
	runTracker(t, tr)
	waitFor(t, "first scan", func() bool { return tr.Stats().Scans >= 1 })
	if tr.Covered(200) {
		t.Fatal("covered without TLS")
	}
	// "import ssl": libssl appears in the maps.
	removeProc(t, root, 200)
	addProc(t, root, 200, fixProc{comm: "py", exe: "/bin/sh", libs: []string{libssl3}})
	addProc(t, root, 201, fixProc{comm: "go", exe: b.goTLS})
	waitFor(t, "late libssl and new process found", func() bool { return tr.Covered(200) && tr.Covered(201) })
	removeProc(t, root, 200)
	removeProc(t, root, 201)
	waitFor(t, "vanished processes forgotten", func() bool { return tr.Stats().Files == 0 })
	if st := tr.Stats(); st.Processes != 0 {
		t.Errorf("stats %+v", st)
	}
}

// TestTrackerLimits: MaxFiles and MaxProcs are counted and reported.
func TestTrackerLimits(t *testing.T) {
	root := fixture(t)
	k := newFakeKernel()
	tr := New(k, Config{ProcRoot: root, SelfPID: 105, MaxFiles: 1, RescanEvery: time.Hour})
	runTracker(t, tr)
	waitFor(t, "first scan", func() bool { return tr.Stats().Scans == 1 && tr.Stats().LimitReached > 0 })
	time.Sleep(50 * time.Millisecond)
	if st := tr.Stats(); st.Files != 1 {
		t.Errorf("stats %+v", st)
	}
	p, _ := processOf(tr.Coverage(), 100)
	if !p.Covered || len(p.Uncovered) != 1 || !strings.HasPrefix(p.Uncovered[0].Reason, "limit reached") {
		t.Errorf("pid 100: %+v", p)
	}

	k2 := newFakeKernel()
	tr2 := New(k2, Config{ProcRoot: root, SelfPID: 105, MaxProcs: 1, RescanEvery: time.Hour})
	runTracker(t, tr2)
	waitFor(t, "procs limit", func() bool { return tr2.Stats().LimitReached >= 2 })
	time.Sleep(50 * time.Millisecond)
	if st := tr2.Stats(); st.Processes != 1 || st.Files != 2 {
		t.Errorf("stats %+v: want pid 100 alone, with its two files", st)
	}
	if open, _, _ := k2.state(); open != 2 {
		t.Errorf("%d files open, want 2 (files attached for refused processes are detached)", open)
	}
}

// TestTrackerAttachFailure: a refused attach is counted once per file and
// reported per process.
func TestTrackerAttachFailure(t *testing.T) {
	root := fixture(t)
	k := newFakeKernel()
	k.failAttach = true
	tr := New(k, Config{ProcRoot: root, SelfPID: 105, RescanEvery: time.Hour})
	runTracker(t, tr)
	waitFor(t, "attach failures", func() bool { return tr.Stats().AttachFailed == 3 })
	tr.ProcessExec(100)
	tr.ProcessExec(101)
	addProc(t, root, 107, fixProc{comm: "x", exe: "/bin/sh", libs: []string{libssl3}})
	tr.ProcessExec(107)
	waitFor(t, "pid 107 reported", func() bool { _, ok := processOf(tr.Coverage(), 107); return ok })
	if st := tr.Stats(); st.AttachFailed != 3 || st.Files != 0 || st.Processes != 0 {
		t.Errorf("stats %+v", st)
	}
	p, _ := processOf(tr.Coverage(), 107)
	if p.Covered || len(p.Uncovered) != 1 || !strings.Contains(p.Uncovered[0].Reason, "attach refused") {
		t.Errorf("pid 107: %+v", p)
	}
}

// TestTrackerFilter: only matching processes (comm or exe path) are
// tracked and allowed; exits disallow them.
func TestTrackerFilter(t *testing.T) {
	root := fixture(t)
	addProc(t, root, 108, fixProc{comm: "alpha", exe: "/bin/sh"}) // matches, no TLS
	k := newFakeKernel()
	tr := New(k, Config{ProcRoot: root, SelfPID: 105, RescanEvery: time.Hour, Processes: regexp.MustCompile(`^alpha$|/gotls$`)})
	runTracker(t, tr)
	waitFor(t, "allowed", func() bool { _, _, n := k.state(); return n == 4 })
	k.mu.Lock()
	for _, pid := range []uint32{100, 101, 103, 108} {
		if !k.allowed[pid] {
			t.Errorf("pid %d not allowed", pid)
		}
	}
	k.mu.Unlock()
	st := tr.Stats()
	if st.Allowed != 4 || st.FilteredOut != 2 || st.Processes != 3 || st.NoSymbols != 0 {
		t.Errorf("stats %+v", st)
	}
	if _, ok := processOf(tr.Coverage(), 108); ok {
		t.Error("pid 108 listed without TLS files")
	}
	removeProc(t, root, 100)
	tr.ProcessExit(100)
	waitFor(t, "disallowed", func() bool { _, _, n := k.state(); return n == 3 })
	// An exec into a non-matching program drops the process.
	removeProc(t, root, 101)
	addProc(t, root, 101, fixProc{comm: "other", exe: "/bin/sh", libs: []string{libssl3}})
	tr.ProcessExec(101)
	waitFor(t, "exec'd away", func() bool { _, _, n := k.state(); return n == 2 })
	if st := tr.Stats(); st.FilteredOut != 3 || st.Files != 1 {
		t.Errorf("stats %+v", st)
	}
}

// TestTrackerAllowFailure: a process the kernel refuses to allow is not
// covered, and says why.
func TestTrackerAllowFailure(t *testing.T) {
	root := fixture(t)
	k := newFakeKernel()
	k.failAllow = true
	tr := New(k, Config{ProcRoot: root, SelfPID: 105, RescanEvery: time.Hour, Processes: regexp.MustCompile(`^alpha$`)})
	runTracker(t, tr)
	waitFor(t, "allow failures", func() bool { return tr.Stats().AllowFailed == 2 })
	p, _ := processOf(tr.Coverage(), 101)
	if tr.Covered(101) || p.Covered || len(p.Libraries) != 1 || len(p.Uncovered) != 1 || !strings.HasPrefix(p.Uncovered[0].Reason, "allow: ") {
		t.Errorf("pid 101: %+v", p)
	}
	if st := tr.Stats(); st.Processes != 0 || st.Allowed != 0 {
		t.Errorf("stats %+v", st)
	}
}

// TestQueueBounded: events beyond the queue are dropped and counted, never
// block.
func TestQueueBounded(t *testing.T) {
	tr := New(newFakeKernel(), Config{ProcRoot: t.TempDir(), QueueLen: 2})
	for i := range 5 {
		tr.ProcessExec(uint32(1000 + i))
	}
	if got := tr.Stats().QueueFull; got != 3 {
		t.Errorf("queue full %d, want 3", got)
	}
}

// TestHandler: GET /debug/tls serves the documented JSON fields.
func TestHandler(t *testing.T) {
	root := fixture(t)
	tr := New(newFakeKernel(), Config{ProcRoot: root, SelfPID: 105, RescanEvery: time.Hour})
	runTracker(t, tr)
	waitFor(t, "three files probed", func() bool { return scanned(tr, 3) })
	srv := httptest.NewServer(tr.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/debug/tls")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("%s %s", resp.Status, body)
	}
	var doc struct {
		Processes []map[string]any `json:"processes"`
		Stats     map[string]any   `json:"stats"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Processes) != 4 {
		t.Fatalf("%d processes:\n%s", len(doc.Processes), body)
	}
	first := doc.Processes[0]
	for _, k := range []string{"pid", "comm", "exe", "covered", "libraries"} {
		if _, ok := first[k]; !ok {
			t.Errorf("field %q missing: %v", k, first)
		}
	}
	lib := first["libraries"].([]any)[0].(map[string]any)
	for _, k := range []string{"path", "kind", "version"} {
		if _, ok := lib[k]; !ok {
			t.Errorf("library field %q missing: %v", k, lib)
		}
	}
	if !strings.Contains(string(body), `"reason": "no SSL symbols`) {
		t.Errorf("no uncovered reason:\n%s", body)
	}
	for _, k := range []string{"files", "processes", "no_symbols", "attach_failed", "limit_reached", "queue_full", "filtered_out"} {
		if _, ok := doc.Stats[k]; !ok {
			t.Errorf("stats field %q missing", k)
		}
	}
	resp, err = http.Post(srv.URL, "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST: %s", resp.Status)
	}
}

// TestTrackerMapsFiles: maps files with garbage still yield their libssl;
// one larger than the read bound is truncated and counted.
func TestTrackerMapsFiles(t *testing.T) {
	root := t.TempDir()
	garbage := "garbage line\n\x00\x01\x02\n7f00-7f01 r-xp zz 00:00 x /libssl.so.3\n" + strings.Repeat("y", 20000) + "\n"
	addProc(t, root, 300, fixProc{comm: "junk", exe: "/bin/sh", libs: []string{libssl3}, maps: garbage})
	huge := strings.Repeat("7f1c2b000000-7f1c2b010000 r-xp 00000000 fd:01 99 /usr/lib/x86_64-linux-gnu/libfoo.so\n", maxMapsBytes/80+1000)
	addProc(t, root, 301, fixProc{comm: "huge", exe: "/bin/sh", libs: []string{libssl3}, maps: huge})
	tr := New(newFakeKernel(), Config{ProcRoot: root, RescanEvery: time.Hour})
	runTracker(t, tr)
	waitFor(t, "first scan", func() bool { return tr.Stats().MapsTruncated == 1 })
	if !tr.Covered(300) || tr.Covered(301) {
		t.Errorf("covered: 300 %t, 301 %t", tr.Covered(300), tr.Covered(301))
	}
}
