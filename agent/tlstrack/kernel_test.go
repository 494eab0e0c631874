package tlstrack

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sightline-io/sightline/agent/capture/socktrace"
)

// probeFDs counts this process's file descriptors that hold probes (BPF
// links, perf events): the uprobes attached by the test are among them.
func probeFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		target, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name()))
		if err == nil && (strings.Contains(target, "bpf_link") || strings.Contains(target, "perf_event")) {
			n++
		}
	}
	return n
}

// TestKernelAttach: the real socktrace.Tracer attaches the probes to the
// real libssl.so.3 and a Go program found in running processes, allows
// them, and everything is detached when Run ends.
func TestKernelAttach(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root (eBPF); CI runs as root")
	}
	requireTools(t, python)
	b := programs(t)
	py := startReady(t, python, "-c", "import ssl, time; print('ready', flush=True); time.sleep(30)")
	gop := startReady(t, b.goTLSStripped)
	root := t.TempDir()
	linkProc(t, root, py.Cmd.Process.Pid)
	linkProc(t, root, gop.Cmd.Process.Pid)

	start := time.Now()
	k, err := socktrace.New(socktrace.Config{OnlyPIDs: []uint32{uint32(py.Cmd.Process.Pid)}, TLSFilter: true})
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	before := probeFDs(t)
	t.Logf("socktrace.New took %v", time.Since(start).Round(time.Millisecond))
	start = time.Now()

	tr := New(k, Config{ProcRoot: root, RescanEvery: time.Hour, Processes: regexp.MustCompile(`.`)})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tr.Run(ctx) }()
	waitFor(t, "probes attached", func() bool { return scanned(tr, 2) || tr.Stats().AttachFailed > 0 })
	st := tr.Stats()
	if st.Files != 2 || st.AttachFailed != 0 || st.Allowed != 2 || st.AllowFailed != 0 {
		t.Fatalf("stats %+v\n%+v", st, tr.Coverage())
	}
	t.Logf("found and attached in %v", time.Since(start).Round(time.Millisecond))
	during := probeFDs(t)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	after := probeFDs(t)
	t.Logf("probe fds: %d before, %d attached, %d after", before, during, after)
	if during <= before || after != before {
		t.Errorf("probe fds: %d before, %d attached, %d after Run ended", before, during, after)
	}
}
