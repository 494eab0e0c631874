package doctor

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// allChecks returns every check OK except those named in failing, which
// fail with detail "<name> broken".
func allChecks(failing ...string) []Check {
	names := []string{CheckKernel, CheckPrivileges, CheckLockdown, CheckBTF, CheckTracefs, CheckSyscallTracepoints,
		CheckRawTracepoints, CheckKprobes, CheckFentry, CheckUprobes, CheckPerfEvents, CheckRingBuffer, CheckAFPacket, CheckCgroup}
	var checks []Check
	for _, n := range names {
		c := Check{Name: n, OK: true, Detail: "fine"}
		for _, f := range failing {
			if f == n {
				c = Check{Name: n, Detail: n + " broken"}
			}
		}
		checks = append(checks, c)
	}
	return checks
}

func without(checks []Check, name string) []Check {
	var out []Check
	for _, c := range checks {
		if c.Name != name {
			out = append(out, c)
		}
	}
	return out
}

func TestEvaluate(t *testing.T) {
	tests := []struct {
		name         string
		checks       []Check
		canCapture   bool
		reasonHas    []string
		disabled     []string // features expected disabled; all others enabled
		detailHasFor map[string]string
	}{
		{name: "everything works", checks: allChecks(), canCapture: true},
		{
			name: "this host: no kprobes, no fentry", checks: allChecks(CheckKprobes, CheckFentry), canCapture: true,
			disabled:     []string{FeatureKprobeFastPath, FeatureFentryFastPath},
			detailHasFor: map[string]string{FeatureKprobeFastPath: "kprobes broken", FeatureFentryFastPath: "fentry broken"},
		},
		{
			name: "missing BTF", checks: allChecks(CheckBTF), canCapture: false,
			reasonHas: []string{"btf: btf broken"},
			disabled:  []string{FeatureSocketCapture, FeatureFentryFastPath},
		},
		{
			name: "BTF never probed", checks: without(allChecks(), CheckBTF), canCapture: false,
			reasonHas: []string{"btf: not probed"},
			disabled:  []string{FeatureSocketCapture, FeatureFentryFastPath},
		},
		{
			name: "no syscall tracepoints", checks: allChecks(CheckSyscallTracepoints), canCapture: false,
			reasonHas: []string{"syscall tracepoints"},
			disabled:  []string{FeatureSocketCapture},
		},
		{
			name: "no ring buffer breaks socket capture and TLS", checks: allChecks(CheckRingBuffer), canCapture: false,
			reasonHas: []string{"ring buffer"},
			disabled:  []string{FeatureSocketCapture, FeatureTLSPlaintext},
		},
		{
			name: "unprivileged, no raw sockets, no perf events", checks: allChecks(CheckPrivileges, CheckAFPacket, CheckPerfEvents),
			canCapture: false, reasonHas: []string{"privileges"},
			disabled: []string{FeatureSocketCapture, FeatureTLSPlaintext, FeaturePacketCapture, FeatureCPUProfiling},
		},
		{
			name: "lockdown confidentiality and no tracefs, both named", checks: allChecks(CheckLockdown, CheckTracefs), canCapture: false,
			reasonHas: []string{"lockdown: lockdown broken", "tracefs: tracefs broken"},
			disabled:  []string{FeatureSocketCapture, FeatureTLSPlaintext},
		},
		{
			name: "uprobes missing keeps capture", checks: allChecks(CheckUprobes), canCapture: true,
			disabled: []string{FeatureTLSPlaintext},
		},
		{
			name: "no cgroup", checks: allChecks(CheckCgroup), canCapture: true,
			disabled: []string{FeatureContainerIdentity},
		},
		{
			name: "nothing probed", checks: nil, canCapture: false,
			reasonHas: []string{"privileges: not probed", "btf: not probed"},
			disabled: []string{FeatureSocketCapture, FeatureTLSPlaintext, FeaturePacketCapture, FeatureKprobeFastPath,
				FeatureFentryFastPath, FeatureCPUProfiling, FeatureContainerIdentity},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := Evaluate(tt.checks)
			if r.CanCapture != tt.canCapture {
				t.Errorf("CanCapture = %v, want %v (reason %q)", r.CanCapture, tt.canCapture, r.Reason)
			}
			if tt.canCapture && r.Reason != "" {
				t.Errorf("Reason = %q with CanCapture", r.Reason)
			}
			for _, s := range tt.reasonHas {
				if !strings.Contains(r.Reason, s) {
					t.Errorf("Reason %q does not mention %q", r.Reason, s)
				}
			}
			if len(r.Features) != len(featureSpecs()) {
				t.Fatalf("got %d features, want %d", len(r.Features), len(featureSpecs()))
			}
			for _, f := range r.Features {
				wantDisabled := false
				for _, d := range tt.disabled {
					wantDisabled = wantDisabled || d == f.Name
				}
				if f.Enabled == wantDisabled {
					t.Errorf("feature %q Enabled = %v, want %v (detail %q)", f.Name, f.Enabled, !wantDisabled, f.Detail)
				}
				if !f.Enabled && f.Detail == "" {
					t.Errorf("feature %q disabled without detail", f.Name)
				}
				if want, ok := tt.detailHasFor[f.Name]; ok && !strings.Contains(f.Detail, want) {
					t.Errorf("feature %q detail %q, want it to contain %q", f.Name, f.Detail, want)
				}
			}
		})
	}
}

func TestFeatureNeedsNameRealChecks(t *testing.T) {
	known := map[string]bool{}
	for _, c := range allChecks() {
		known[c.Name] = true
	}
	for _, f := range featureSpecs() {
		if len(f.needs) == 0 {
			t.Errorf("feature %q needs nothing", f.name)
		}
		for _, n := range f.needs {
			if !known[n] {
				t.Errorf("feature %q needs unknown check %q", f.name, n)
			}
		}
	}
}

func TestReportJSONAndText(t *testing.T) {
	r := Evaluate(allChecks(CheckBTF, CheckKprobes))
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var back map[string]any
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"checks", "features", "can_capture", "reason"} {
		if _, ok := back[key]; !ok {
			t.Errorf("JSON lacks %q: %s", key, b)
		}
	}
	var round Report
	if err := json.Unmarshal(b, &round); err != nil || round.CanCapture || round.Reason != r.Reason || len(round.Features) != len(r.Features) {
		t.Errorf("JSON round trip = %+v, %v", round, err)
	}

	var text bytes.Buffer
	if err := r.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	out := text.String()
	for _, want := range []string{"CHECK", "FEATURE", "btf", "FAIL", "DISABLED", "disabled (optional)", "CANNOT capture", "btf broken"} {
		if !strings.Contains(out, want) {
			t.Errorf("text output lacks %q:\n%s", want, out)
		}
	}
}

func TestOneLine(t *testing.T) {
	if got := oneLine("a\n  b\tc"); got != "a b c" {
		t.Errorf("oneLine = %q", got)
	}
	long := strings.Repeat("é", 200)
	got := oneLine(long)
	if len(got) > 170 || !strings.HasSuffix(got, "...") {
		t.Errorf("oneLine did not truncate: len %d", len(got))
	}
}

func TestParseLockdown(t *testing.T) {
	tests := map[string]string{
		"[none] integrity confidentiality\n": "none",
		"none [integrity] confidentiality\n": "integrity",
		"none integrity [confidentiality]":   "confidentiality",
		"garbage":                            "",
		"[unterminated":                      "",
	}
	for in, want := range tests {
		if got := parseLockdown(in); got != want {
			t.Errorf("parseLockdown(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseMountinfo(t *testing.T) {
	in := "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n" +
		"41 31 0:38 / /sys/fs/cgroup/unified rw,relatime shared:5 - cgroup2 cgroup2 rw\n" +
		"50 23 0:40 / /mnt/with\\040space rw - tracefs tracefs rw\n" +
		"garbage line\n" +
		"1 2 3 - onlyfstype\n"
	got := parseMountinfo([]byte(in))
	want := []mount{{"/sys/fs/cgroup", "tmpfs"}, {"/sys/fs/cgroup/unified", "cgroup2"}, {"/mnt/with space", "tracefs"}}
	if len(got) != len(want) {
		t.Fatalf("parseMountinfo = %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("mount %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	if dir := findTracefs(got); dir != "/mnt/with space" {
		t.Errorf("findTracefs = %q", dir)
	}
	if got := unescapeMount(`a\134b\0`); got != `a\b\0` {
		t.Errorf("unescapeMount = %q", got)
	}
}
