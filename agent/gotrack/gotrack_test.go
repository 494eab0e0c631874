package gotrack

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/sightline-io/sightline/agent/capture/socktrace"
)

type fakeKernel struct {
	mu         sync.Mutex
	procs      map[uint32]socktrace.GoProc
	attached   map[string]socktrace.GoProbes
	detached   int
	failAttach bool
}

func (k *fakeKernel) RegisterGoProcess(pid uint32, p socktrace.GoProc) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.procs[pid] = p
	return nil
}

func (k *fakeKernel) UnregisterGoProcess(pid uint32) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.procs, pid)
	return nil
}

type closer func() error

func (c closer) Close() error { return c() }

func (k *fakeKernel) AttachGo(path string, p socktrace.GoProbes) (io.Closer, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.failAttach {
		return nil, errors.New("attach refused")
	}
	k.attached[path] = p
	return closer(func() error {
		k.mu.Lock()
		defer k.mu.Unlock()
		k.detached++
		return nil
	}), nil
}

// procTree builds a /proc fixture: pid -> exe symlink target.
func procTree(t *testing.T, exes map[string]string) string {
	root := t.TempDir()
	for pid, target := range exes {
		if err := os.MkdirAll(filepath.Join(root, pid), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, filepath.Join(root, pid, "exe")); err != nil {
			t.Fatal(err)
		}
	}
	return root
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

// TestTracker: the Go executable (this test binary) is probed once for its
// two processes, /bin/sh is not Go, exits release the probes.
func TestTracker(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	sh, err := filepath.EvalSymlinks("/bin/sh")
	if err != nil {
		t.Fatal(err)
	}
	root := procTree(t, map[string]string{"100": self, "101": self, "102": sh, "self": self})
	k := &fakeKernel{procs: map[uint32]socktrace.GoProc{}, attached: map[string]socktrace.GoProbes{}}
	tr := New(k, Config{ProcRoot: root, SelfPID: 1})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- tr.Run(ctx) }()
	waitFor(t, "two go processes and /bin/sh", func() bool { st := tr.Stats(); return st.Processes == 2 && st.NotGo == 1 })
	st := tr.Stats()
	if st.Binaries != 1 || st.NotGo != 1 || st.InspectFailed != 0 {
		t.Errorf("stats %+v", st)
	}
	k.mu.Lock()
	p := k.procs[100]
	var probes socktrace.GoProbes
	for _, v := range k.attached {
		probes = v
	}
	k.mu.Unlock()
	if p.GoidOffset == 0 || p.ElemsizeOffset == 0 || p.ScaseSize == 0 || p.ScaseElem == 0 {
		t.Errorf("offsets %+v", p)
	}
	if probes.Newproc1 == 0 || len(probes.Newproc1Returns) == 0 || len(probes.ChanrecvReturns) == 0 ||
		len(probes.SelectgoReturns) == 0 || probes.Chansend == 0 || probes.Goexit1 == 0 {
		t.Errorf("probes %+v", probes)
	}
	if !tr.Tracked(100) || tr.Tracked(102) {
		t.Error("tracked set wrong")
	}
	tr.ProcessExit(100)
	waitFor(t, "one process left", func() bool { return tr.Stats().Processes == 1 })
	if tr.Stats().Binaries != 1 {
		t.Error("probes released while a process still runs the binary")
	}
	tr.ProcessExit(101)
	waitFor(t, "probes released", func() bool { return tr.Stats().Binaries == 0 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if k.detached != 1 {
		t.Errorf("detached %d times", k.detached)
	}
}

// TestTrackerAttachFailure: a refused attach is counted and not retried per
// process; the processes are registered untracked (no syscall trace ids).
func TestTrackerAttachFailure(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	root := procTree(t, map[string]string{"200": self, "201": self})
	k := &fakeKernel{procs: map[uint32]socktrace.GoProc{}, attached: map[string]socktrace.GoProbes{}, failAttach: true}
	tr := New(k, Config{ProcRoot: root, SelfPID: 1})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go func() { _ = tr.Run(ctx) }()
	waitFor(t, "both processes registered untracked", func() bool { return tr.Stats().Untracked == 2 })
	if st := tr.Stats(); st.AttachFailed != 1 || st.Processes != 0 {
		t.Errorf("stats %+v", st)
	}
	k.mu.Lock()
	if p, ok := k.procs[200]; !ok || p != (socktrace.GoProc{}) {
		t.Errorf("pid 200 registered as %+v (%t), want the zero GoProc", p, ok)
	}
	k.mu.Unlock()
	tr.ProcessExit(200)
	waitFor(t, "exit", func() bool { return tr.Stats().Untracked == 1 })
}

// TestQueueBounded: events beyond the queue are dropped and counted, never block.
func TestQueueBounded(t *testing.T) {
	tr := New(&fakeKernel{}, Config{ProcRoot: t.TempDir(), QueueLen: 2})
	for i := range 5 {
		tr.ProcessExec(uint32(1000 + i))
	}
	if got := tr.Stats().QueueFull; got != 3 {
		t.Errorf("queue full %d, want 3", got)
	}
}

// TestProbesOff: with probes off, Go processes are found and registered
// untracked, nothing is attached.
func TestProbesOff(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	root := procTree(t, map[string]string{"300": self})
	k := &fakeKernel{procs: map[uint32]socktrace.GoProc{}, attached: map[string]socktrace.GoProbes{}}
	tr := New(k, Config{ProcRoot: root, SelfPID: 1, ProbesOff: true})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go func() { _ = tr.Run(ctx) }()
	waitFor(t, "registered untracked", func() bool { return tr.Stats().Untracked == 1 })
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(k.attached) != 0 {
		t.Errorf("attached %v with probes off", k.attached)
	}
}
