package doctor

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
)

// TestRunLive probes the real kernel. The expectations are this project's
// CI/dev host: Linux 6.18 with BTF, root, tracepoints and uprobes usable,
// kprobes and fentry not available.
func TestRunLive(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("live probes need root")
	}
	r := Run(context.Background())
	var text bytes.Buffer
	if err := r.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", text.String())

	if len(r.Checks) != 14 {
		t.Errorf("got %d checks, want 14", len(r.Checks))
	}
	for _, name := range []string{CheckKernel, CheckPrivileges, CheckBTF, CheckTracefs, CheckSyscallTracepoints,
		CheckRawTracepoints, CheckUprobes, CheckPerfEvents, CheckRingBuffer, CheckAFPacket, CheckCgroup, CheckLockdown} {
		c, found := r.Check(name)
		if !found || !c.OK {
			t.Errorf("check %q = %+v, want OK", name, c)
		}
	}
	for _, name := range []string{CheckKprobes, CheckFentry} {
		c, found := r.Check(name)
		if !found || c.OK {
			t.Errorf("check %q = %+v, want not OK on this host", name, c)
		}
		if c.Detail == "" {
			t.Errorf("check %q failed without a reason", name)
		}
	}
	if !r.CanCapture || r.Reason != "" {
		t.Errorf("CanCapture = %v (%q), want true", r.CanCapture, r.Reason)
	}
	if f, _ := r.Feature(FeatureKprobeFastPath); f.Enabled || !f.Optional || !strings.Contains(f.Detail, CheckKprobes) {
		t.Errorf("kprobe fast path = %+v, want disabled optional naming kprobes", f)
	}
	if f, _ := r.Feature(FeatureTLSPlaintext); !f.Enabled {
		t.Errorf("TLS plaintext = %+v, want enabled", f)
	}
}

func TestProbeCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	checks := Probe(ctx)
	if len(checks) != 14 {
		t.Fatalf("got %d checks, want all 14 reported", len(checks))
	}
	for _, c := range checks {
		if c.OK || !strings.Contains(c.Detail, "not probed") {
			t.Errorf("canceled check %+v, want not probed", c)
		}
	}
	if r := Evaluate(checks); r.CanCapture {
		t.Error("CanCapture true with nothing probed")
	}
}

func TestUprobeTargetSymbolPath(t *testing.T) {
	if got, want := packagePath(), "github.com/sightline-io/sightline/doctor"; got != want {
		t.Errorf("packagePath() = %q, want %q", got, want)
	}
}

func TestElfEntryOffset(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	off, err := elfEntryOffset(exe)
	if err != nil || off == 0 {
		t.Errorf("elfEntryOffset(%s) = %#x, %v", exe, off, err)
	}
	if _, err := elfEntryOffset("/proc/self/status"); err == nil {
		t.Error("elfEntryOffset of a non-ELF file succeeded")
	}
}
