// Package doctor probes what the running kernel offers (BTF, tracepoints,
// kprobes, uprobes, ring buffers, ...) and derives which Sightline features
// can work on this host. It backs the `sightline doctor` command and the
// agent's startup self-check.
package doctor

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// Check names, as they appear in Report.Checks and Feature.Needs.
const (
	CheckKernel             = "kernel"
	CheckPrivileges         = "privileges"
	CheckLockdown           = "lockdown"
	CheckBTF                = "btf"
	CheckTracefs            = "tracefs"
	CheckSyscallTracepoints = "syscall tracepoints"
	CheckRawTracepoints     = "raw tracepoints"
	CheckKprobes            = "kprobes"
	CheckFentry             = "fentry"
	CheckUprobes            = "uprobes"
	CheckPerfEvents         = "perf events"
	CheckRingBuffer         = "ring buffer"
	CheckAFPacket           = "af_packet"
	CheckCgroup             = "cgroup"
)

// Feature names, as they appear in Report.Features.
const (
	FeatureSocketCapture     = "socket capture (syscall tracepoints)"
	FeatureTLSPlaintext      = "TLS plaintext (uprobes)"
	FeaturePacketCapture     = "packet capture"
	FeatureKprobeFastPath    = "kprobe fast path"
	FeatureFentryFastPath    = "fentry fast path"
	FeatureCPUProfiling      = "CPU profiling"
	FeatureContainerIdentity = "container identity"
)

// Check is the outcome of one probe.
type Check struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
}

// Feature is a Sightline capability and whether this host supports it.
type Feature struct {
	Name     string   `json:"name"`
	Enabled  bool     `json:"enabled"`
	Optional bool     `json:"optional"` // Sightline works without it (a faster or extra path)
	Needs    []string `json:"needs"`    // names of the checks it requires
	Detail   string   `json:"detail"`
}

// Report is the result of Run.
type Report struct {
	Checks     []Check   `json:"checks"`
	Features   []Feature `json:"features"`
	CanCapture bool      `json:"can_capture"` // socket capture works
	Reason     string    `json:"reason,omitempty"`
}

// Run probes the kernel and derives the features it enables. It needs no
// arguments because it inspects the host it runs on; probes that load BPF
// programs need root (or CAP_BPF+CAP_PERFMON) and report failure otherwise.
// Probes not yet run when ctx is done are reported as not OK.
func Run(ctx context.Context) Report {
	return Evaluate(Probe(ctx))
}

type featureSpec struct {
	name     string
	optional bool
	needs    []string
}

// featureSpecs lists the features in report order with the checks each needs.
func featureSpecs() []featureSpec {
	return []featureSpec{
		{name: FeatureSocketCapture, needs: []string{CheckPrivileges, CheckLockdown, CheckBTF, CheckTracefs, CheckSyscallTracepoints, CheckRingBuffer}},
		{name: FeatureTLSPlaintext, needs: []string{CheckPrivileges, CheckLockdown, CheckUprobes, CheckRingBuffer}},
		{name: FeaturePacketCapture, needs: []string{CheckAFPacket}},
		{name: FeatureKprobeFastPath, optional: true, needs: []string{CheckKprobes}},
		{name: FeatureFentryFastPath, optional: true, needs: []string{CheckBTF, CheckFentry}},
		{name: FeatureCPUProfiling, needs: []string{CheckPerfEvents}},
		{name: FeatureContainerIdentity, needs: []string{CheckCgroup}},
	}
}

// Evaluate derives features from check results. It is pure: a check that
// is absent from checks counts as failed ("not probed").
func Evaluate(checks []Check) Report {
	byName := make(map[string]Check, len(checks))
	for _, c := range checks {
		byName[c.Name] = c
	}
	r := Report{Checks: checks}
	for _, spec := range featureSpecs() {
		f := Feature{Name: spec.name, Optional: spec.optional, Needs: spec.needs, Enabled: true}
		var missing []string
		for _, need := range spec.needs {
			c, ok := byName[need]
			switch {
			case !ok:
				missing = append(missing, need+": not probed")
			case !c.OK:
				missing = append(missing, need+": "+c.Detail)
			}
		}
		if len(missing) > 0 {
			f.Enabled = false
			f.Detail = "missing " + strings.Join(missing, "; ")
		}
		if spec.name == FeatureSocketCapture {
			r.CanCapture = f.Enabled
			if !f.Enabled {
				r.Reason = "socket capture unavailable: " + f.Detail
			}
		}
		r.Features = append(r.Features, f)
	}
	return r
}

// Check returns the named check result.
func (r Report) Check(name string) (Check, bool) {
	for _, c := range r.Checks {
		if c.Name == name {
			return c, true
		}
	}
	return Check{}, false
}

// Feature returns the named feature.
func (r Report) Feature(name string) (Feature, bool) {
	for _, f := range r.Features {
		if f.Name == name {
			return f, true
		}
	}
	return Feature{}, false
}

// WriteText prints the report as aligned tables for humans.
func (r Report) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CHECK\tSTATUS\tDETAIL")
	for _, c := range r.Checks {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", c.Name, status(c.OK, "ok", "FAIL"), oneLine(c.Detail))
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "FEATURE\tSTATUS\tNEEDS\tDETAIL")
	for _, f := range r.Features {
		st := status(f.Enabled, "enabled", "DISABLED")
		if !f.Enabled && f.Optional {
			st = "disabled (optional)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", f.Name, st, strings.Join(f.Needs, ", "), oneLine(f.Detail))
	}
	fmt.Fprintln(tw)
	if r.CanCapture {
		fmt.Fprintln(tw, "Sightline can capture on this host.")
	} else {
		fmt.Fprintf(tw, "Sightline CANNOT capture on this host: %s\n", oneLine(r.Reason))
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write doctor report: %w", err)
	}
	return nil
}

func status(ok bool, yes, no string) string {
	if ok {
		return yes
	}
	return no
}

// oneLine keeps kernel error text (which may span lines, e.g. verifier
// logs) from breaking the table.
func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	const max = 160
	if len(s) > max {
		// Cutting may split a UTF-8 sequence; drop the fragment.
		s = strings.ToValidUTF8(s[:max], "") + "..."
	}
	return s
}
