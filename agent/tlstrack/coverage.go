package tlstrack

import (
	"encoding/json"
	"net/http"
	"slices"
)

// Coverage is what GET /debug/tls serves.
type Coverage struct {
	// Processes are the processes with TLS files, probed or not, by pid.
	Processes []Process `json:"processes"`
	Stats     Stats     `json:"stats"`
}

// Process is one process with TLS files.
type Process struct {
	PID  uint32 `json:"pid"`
	Comm string `json:"comm"`
	Exe  string `json:"exe"`
	// Covered is set when at least one of its files is probed (and, with
	// a process filter, the process is allowed).
	Covered   bool      `json:"covered"`
	Libraries []Library `json:"libraries,omitempty"`
	// Uncovered lists its TLS files that are not probed, with the reason.
	Uncovered []Failure `json:"uncovered,omitempty"`
}

// Library is a probed file.
type Library struct {
	Path    string `json:"path"`              // as the process sees it
	Kind    string `json:"kind"`              // "openssl", "static-openssl" or "go"
	Version string `json:"version,omitempty"` // "OpenSSL 3.0.19", "3" (from libssl.so.3), "go1.26.8"...
}

// Failure is a TLS file that is not probed.
type Failure struct {
	Path   string `json:"path"`
	Reason string `json:"reason"` // e.g. "no SSL symbols: ...", "attach: ...", "limit reached: ..."
}

// Coverage returns the processes with TLS files and the counters.
func (t *Tracker) Coverage() Coverage {
	c := Coverage{Processes: []Process{}, Stats: t.Stats()}
	t.mu.Lock()
	for pid, p := range t.procs {
		if len(p.files) == 0 && len(p.failures) == 0 {
			continue // allowed by the filter, no TLS seen (yet)
		}
		cp := Process{PID: pid, Comm: p.comm, Exe: p.exe, Covered: t.covered(p), Uncovered: slices.Clone(p.failures)}
		for _, r := range p.files {
			if f := t.files[r.id]; f != nil {
				cp.Libraries = append(cp.Libraries, Library{Path: r.path, Kind: f.kind, Version: f.version})
			}
		}
		c.Processes = append(c.Processes, cp)
	}
	t.mu.Unlock()
	slices.SortFunc(c.Processes, func(a, b Process) int { return int(a.PID) - int(b.PID) })
	return c
}

// Handler serves Coverage as JSON (GET only).
func (t *Tracker) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, errNotGet.Error(), http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(t.Coverage())
	})
}
