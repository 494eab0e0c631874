package tlstrack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sightline-io/sightline/agent/capture/socktrace"
)

// Kernel is the part of socktrace.Tracer the tracker drives.
type Kernel interface {
	AttachSSL(path string, p socktrace.SSLProbes) (io.Closer, error)
	AttachGoTLS(path string, p socktrace.GoTLSProbes) (io.Closer, error)
	AllowTLS(pid uint32) error
	DisallowTLS(pid uint32) error
}

// Config bounds and scopes the tracker.
type Config struct {
	ProcRoot string // default /proc
	MaxFiles int    // files with probes attached at once; default 256
	MaxProcs int    // processes tracked at once; default 8192 (the kernel's tls_pids size)
	QueueLen int    // pending exec/exit events, and pending post-exec rescans; default 1024
	SelfPID  int    // never tracked (the agent); default os.Getpid()
	// Processes, when set, limits decryption to processes whose comm or
	// executable path matches: they get Kernel.AllowTLS (the tracer must
	// filter: socktrace Config.TLSFilter). Others are not looked at.
	Processes *regexp.Regexp
	// RescanEvery is the period of the full rescan that finds libraries
	// loaded late (dlopen, Python's import ssl); default 10 s.
	RescanEvery time.Duration
	Logger      *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.ProcRoot == "" {
		c.ProcRoot = "/proc"
	}
	if c.MaxFiles <= 0 {
		c.MaxFiles = 256
	}
	if c.MaxProcs <= 0 {
		c.MaxProcs = 8192
	}
	if c.QueueLen <= 0 {
		c.QueueLen = 1024
	}
	if c.SelfPID == 0 {
		c.SelfPID = os.Getpid()
	}
	if c.RescanEvery <= 0 {
		c.RescanEvery = 10 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// execRescans are the delays after an exec at which the process is looked
// at again: ld.so maps the libraries just after exec, and programs dlopen
// theirs early.
var execRescans = [...]time.Duration{50 * time.Millisecond, time.Second}

// maxFailures bounds the uncovered files remembered per process.
const maxFailures = 8

// Stats are the tracker's counters; the gauges (tagged for promstats) say
// what is covered now, the rest count events by reason since start.
type Stats struct {
	Files     uint64 `json:"files" prom:"gauge"`     // files with probes attached now
	Processes uint64 `json:"processes" prom:"gauge"` // processes covered now (a probed file; allowed, with a filter)
	Allowed   uint64 `json:"allowed" prom:"gauge"`   // processes allowed by Config.Processes now

	Inspected     uint64 `json:"inspected"`      // files inspected (each once, unless limits forced a retry)
	NoTLS         uint64 `json:"no_tls"`         // inspected files without a TLS library
	NoSymbols     uint64 `json:"no_symbols"`     // TLS files without SSL_read/SSL_write symbols (stripped): not covered
	InspectFailed uint64 `json:"inspect_failed"` // TLS files that could not be opened or parsed
	AttachFailed  uint64 `json:"attach_failed"`  // probes the kernel refused
	AllowFailed   uint64 `json:"allow_failed"`   // AllowTLS refused (kernel map full)
	LimitReached  uint64 `json:"limit_reached"`  // skipped: MaxFiles or MaxProcs reached
	QueueFull     uint64 `json:"queue_full"`     // exec/exit events or rescans dropped: queue full
	FilteredOut   uint64 `json:"filtered_out"`   // processes not matching Config.Processes (at exec or first scan)
	MapsTruncated uint64 `json:"maps_truncated"` // maps files too large to read whole
	CacheResets   uint64 `json:"cache_resets"`   // the cache of inspected files filled and was emptied
	Scans         uint64 `json:"scans"`          // full scans of the processes completed
}

// file is a probed file, shared by the processes mapping it.
type file struct {
	closer        io.Closer
	kind, version string
	users         int
}

// rejection remembers a file that is not probed, so it is inspected once.
type rejection struct {
	noTLS  bool
	reason string
}

type fileRef struct {
	id   fileID
	path string
}

// proc is a tracked process: one with probed or TLS-looking files, or one
// allowed by the filter.
type proc struct {
	comm, exe string
	exeID     fileID
	files     []fileRef // probed, distinct
	failures  []Failure
	allowed   bool
}

type event struct {
	pid  uint32
	exit bool
}

type delayed struct {
	due time.Time
	pid uint32
}

// Tracker finds TLS libraries in processes and keeps their probes attached
// while a process uses them. Create with New, feed with ProcessExec and
// ProcessExit, run with Run.
type Tracker struct {
	k     Kernel
	cfg   Config
	queue chan event
	// rescans holds one FIFO per execRescans delay (so each is sorted by
	// due time); owned by Run's goroutine.
	rescans [len(execRescans)][]delayed

	// The maps are written by Run's goroutine under mu, and read by it
	// without; other goroutines read them under mu.
	mu       sync.Mutex
	files    map[fileID]*file
	rejected map[fileID]rejection
	procs    map[uint32]*proc

	inspected, noTLS, noSymbols, inspectFailed, attachFailed, allowFailed, limit, queueFull, filteredOut,
	mapsTruncated, cacheResets, scans atomic.Uint64
}

// New returns a tracker; nothing happens until Run.
func New(k Kernel, cfg Config) *Tracker {
	cfg = cfg.withDefaults()
	return &Tracker{
		k:        k,
		cfg:      cfg,
		queue:    make(chan event, cfg.QueueLen),
		files:    make(map[fileID]*file),
		rejected: make(map[fileID]rejection),
		procs:    make(map[uint32]*proc),
	}
}

// ProcessExec queues pid for a look at its new image. It never blocks.
func (t *Tracker) ProcessExec(pid uint32) { t.enqueue(event{pid: pid}) }

// ProcessExit queues pid's removal. It never blocks.
func (t *Tracker) ProcessExit(pid uint32) { t.enqueue(event{pid: pid, exit: true}) }

func (t *Tracker) enqueue(e event) {
	select {
	case t.queue <- e:
	default:
		t.queueFull.Add(1)
	}
}

// Run scans the running processes, then handles queued events, post-exec
// rescans and periodic full rescans until ctx is done; it then detaches
// everything (and disallows the allowed processes).
func (t *Tracker) Run(ctx context.Context) error {
	defer t.closeAll()
	t.scanAll(true)
	tick := time.NewTicker(t.cfg.RescanEvery)
	defer tick.Stop()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		t.armTimer(timer)
		select {
		case <-ctx.Done():
			return nil
		case e := <-t.queue:
			if e.exit {
				t.forget(e.pid)
				continue
			}
			t.track(e.pid, true)
			now := time.Now()
			for i, d := range execRescans {
				if len(t.rescans[i]) >= t.cfg.QueueLen {
					t.queueFull.Add(1)
					continue
				}
				t.rescans[i] = append(t.rescans[i], delayed{due: now.Add(d), pid: e.pid})
			}
		case <-timer.C:
			now := time.Now()
			for i := range t.rescans {
				for len(t.rescans[i]) > 0 && !t.rescans[i][0].due.After(now) {
					pid := t.rescans[i][0].pid
					t.rescans[i] = t.rescans[i][1:]
					t.track(pid, false)
				}
			}
		case <-tick.C:
			t.scanAll(false)
		}
	}
}

// armTimer sets timer to the earliest pending rescan.
func (t *Tracker) armTimer(timer *time.Timer) {
	var next time.Time
	for _, q := range t.rescans {
		if len(q) > 0 && (next.IsZero() || q[0].due.Before(next)) {
			next = q[0].due
		}
	}
	if next.IsZero() {
		timer.Stop()
		return
	}
	timer.Reset(max(0, time.Until(next)))
}

// scanAll looks at every process, and forgets tracked ones that are gone
// (their exit event may have been dropped).
func (t *Tracker) scanAll(initial bool) {
	// Counted when done: a reader seeing Scans move knows every process of
	// that scan is recorded (Files alone moves at attach, before its process).
	defer t.scans.Add(1)
	ents, err := os.ReadDir(t.cfg.ProcRoot)
	if err != nil {
		t.cfg.Logger.Warn("tlstrack: list processes", "err", err)
		return
	}
	alive := make(map[uint32]bool, len(ents))
	for _, e := range ents {
		pid, err := strconv.ParseUint(e.Name(), 10, 32)
		if err != nil {
			continue
		}
		alive[uint32(pid)] = true
		t.track(uint32(pid), initial)
	}
	for pid := range t.procs {
		if !alive[pid] {
			t.forget(pid)
		}
	}
}

func (t *Tracker) procDir(pid uint32) string {
	return filepath.Join(t.cfg.ProcRoot, strconv.FormatUint(uint64(pid), 10))
}

// track looks at pid's executable and mapped libssl files, attaches what is
// new and updates the process's set of files. fresh (an exec, the first
// scan) re-reads its name and counts it when filtered out.
func (t *Tracker) track(pid uint32, fresh bool) {
	if int(pid) == t.cfg.SelfPID || pid == 0 {
		return
	}
	dir := t.procDir(pid)
	var st syscall.Stat_t
	if err := syscall.Stat(filepath.Join(dir, "exe"), &st); err != nil {
		t.forget(pid) // gone, or a kernel thread
		return
	}
	exeID := fileID{dev: st.Dev, ino: st.Ino}
	old := t.procs[pid]
	var comm, exe string
	if old != nil && !fresh && old.exeID == exeID {
		comm, exe = old.comm, old.exe
	} else {
		comm, exe = readComm(dir), readExe(dir)
	}
	if re := t.cfg.Processes; re != nil && !re.MatchString(comm) && !re.MatchString(exe) {
		if old != nil {
			t.forget(pid)
		}
		if fresh {
			t.filteredOut.Add(1)
		}
		return
	}
	if old == nil && len(t.procs) >= t.cfg.MaxProcs {
		t.limit.Add(1) // before any inspection: nothing to attach and detach again
		return
	}
	maps, truncated, err := readMaps(filepath.Join(dir, "maps"), maxMapsBytes, isLibSSL)
	if err != nil {
		t.forget(pid)
		return
	}
	if truncated {
		t.mapsTruncated.Add(1)
	}
	var covered []fileRef
	var failures []Failure
	var added []fileID // attached by this call
	consider := func(id fileID, path string, isExe bool, open func() (*os.File, error)) {
		if slices.ContainsFunc(covered, func(r fileRef) bool { return r.id == id }) {
			return
		}
		ok, isNew, fail := t.fileFor(id, path, isExe, open)
		if ok {
			covered = append(covered, fileRef{id: id, path: path})
			if isNew {
				added = append(added, id)
			}
		} else if fail != nil && len(failures) < maxFailures {
			failures = append(failures, *fail)
		}
	}
	consider(exeID, exe, true, func() (*os.File, error) { return os.Open(filepath.Join(dir, "exe")) })
	for _, m := range maps {
		consider(m.id, m.path, false, func() (*os.File, error) { return openMapped(dir, m) })
	}
	t.apply(pid, old, &proc{comm: comm, exe: exe, exeID: exeID, files: covered, failures: failures}, added)
}

// apply replaces pid's state by p, moving the file reference counts.
func (t *Tracker) apply(pid uint32, old, p *proc, added []fileID) {
	filter := t.cfg.Processes != nil
	need := len(p.files) > 0 || len(p.failures) > 0 || filter
	t.mu.Lock()
	defer func() {
		// Files attached for nobody (limits) are detached again.
		for _, id := range added {
			if f := t.files[id]; f != nil && f.users == 0 {
				t.release(id, f)
			}
		}
		t.mu.Unlock()
	}()
	if old == nil && !need {
		return
	}
	if old == nil && len(t.procs) >= t.cfg.MaxProcs {
		t.limit.Add(1)
		return
	}
	for _, r := range p.files {
		if old == nil || !slices.ContainsFunc(old.files, func(o fileRef) bool { return o.id == r.id }) {
			t.files[r.id].users++
		}
	}
	if old != nil {
		for _, o := range old.files {
			if !slices.ContainsFunc(p.files, func(r fileRef) bool { return r.id == o.id }) {
				t.unuse(o.id)
			}
		}
		p.allowed = old.allowed
	}
	if !need {
		delete(t.procs, pid)
		return
	}
	t.procs[pid] = p
	if filter && !p.allowed {
		if err := t.k.AllowTLS(pid); err != nil {
			t.allowFailed.Add(1)
			t.cfg.Logger.Debug("tlstrack: allow tls", "pid", pid, "err", err) // retried at each rescan: counted, not logged loudly
			if len(p.failures) < maxFailures {
				p.failures = append(p.failures, Failure{Path: p.exe, Reason: fmt.Sprintf("allow: %v", err)})
			}
		} else {
			p.allowed = true
		}
	}
}

// fileFor returns whether the file is probed, attaching it if it is new
// (isNew); for a TLS file that cannot be probed it returns why. Each file is
// inspected once: verdicts are remembered.
func (t *Tracker) fileFor(id fileID, path string, isExe bool, open func() (*os.File, error)) (ok, isNew bool, fail *Failure) {
	if t.files[id] != nil {
		return true, false, nil
	}
	if r, known := t.rejected[id]; known {
		if r.noTLS {
			return false, false, nil
		}
		return false, false, &Failure{Path: path, Reason: r.reason}
	}
	f, err := open()
	if err != nil {
		if isExe {
			return false, false, nil // gone, or not ours to read
		}
		t.inspectFailed.Add(1)
		return false, false, &Failure{Path: path, Reason: fmt.Sprintf("open: %v", err)}
	}
	defer f.Close()
	fd := "/proc/self/fd/" + strconv.Itoa(int(f.Fd()))
	t.inspected.Add(1)
	var in inspection
	if isExe {
		in = inspectExe(fd, f)
	} else {
		in = inspectLib(f, filepath.Base(path))
	}
	switch {
	case in.noTLS:
		t.noTLS.Add(1)
		t.reject(id, rejection{noTLS: true})
		return false, false, nil
	case in.err != nil:
		if in.failed {
			t.inspectFailed.Add(1)
		} else {
			t.noSymbols.Add(1)
		}
		t.cfg.Logger.Info("tlstrack: TLS library not covered", "path", path, "kind", in.kind, "version", in.version, "err", in.err)
		t.reject(id, rejection{reason: in.err.Error()})
		return false, false, &Failure{Path: path, Reason: in.err.Error()}
	}
	if len(t.files) >= t.cfg.MaxFiles {
		t.limit.Add(1)
		return false, false, &Failure{Path: path, Reason: fmt.Sprintf("limit reached: %d files probed (MaxFiles)", t.cfg.MaxFiles)}
	}
	var c io.Closer
	if in.kind == KindGo {
		c, err = t.k.AttachGoTLS(fd, in.goTLS)
	} else {
		c, err = t.k.AttachSSL(fd, in.ssl)
	}
	if err != nil {
		t.attachFailed.Add(1)
		t.cfg.Logger.Warn("tlstrack: attach", "path", path, "kind", in.kind, "err", err)
		t.reject(id, rejection{reason: fmt.Sprintf("attach: %v", err)})
		return false, false, &Failure{Path: path, Reason: fmt.Sprintf("attach: %v", err)}
	}
	t.cfg.Logger.Debug("tlstrack: probes attached", "path", path, "kind", in.kind, "version", in.version)
	t.mu.Lock()
	t.files[id] = &file{closer: c, kind: in.kind, version: in.version}
	t.mu.Unlock()
	return true, true, nil
}

// reject remembers a verdict; the cache is bounded and emptied when full.
func (t *Tracker) reject(id fileID, r rejection) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.rejected) >= 4*t.cfg.MaxFiles+1024 {
		clear(t.rejected)
		t.cacheResets.Add(1)
	}
	t.rejected[id] = r
}

// openMapped opens a file mapped by a process. /proc/PID/map_files names
// the very inode mapped, also when it was deleted or replaced since (a
// package upgrade) and whatever the process's mount namespace; it needs
// CAP_SYS_ADMIN (or CAP_CHECKPOINT_RESTORE), so /proc/PID/root + path is the
// fallback.
func openMapped(dir string, m mapping) (*os.File, error) {
	f, err := os.Open(filepath.Join(dir, "map_files", m.rng))
	if err == nil {
		return f, nil
	}
	if m.deleted {
		return nil, fmt.Errorf("%s deleted and map_files unreadable: %w", m.path, err)
	}
	f, err2 := os.Open(filepath.Join(dir, "root", m.path))
	if err2 != nil {
		return nil, fmt.Errorf("map_files: %w; root: %w", err, err2)
	}
	return f, nil
}

// forget drops pid: its files lose a user, and it is disallowed.
func (t *Tracker) forget(pid uint32) {
	p := t.procs[pid]
	if p == nil {
		return
	}
	t.mu.Lock()
	delete(t.procs, pid)
	for _, r := range p.files {
		t.unuse(r.id)
	}
	t.mu.Unlock()
	if p.allowed {
		if err := t.k.DisallowTLS(pid); err != nil {
			t.cfg.Logger.Warn("tlstrack: disallow tls", "pid", pid, "err", err)
		}
	}
}

// unuse drops a user of a file, detaching it after the last. Caller holds mu.
func (t *Tracker) unuse(id fileID) {
	f := t.files[id]
	if f == nil {
		return
	}
	f.users--
	if f.users <= 0 {
		t.release(id, f)
	}
}

// release detaches a file's probes. Caller holds mu.
func (t *Tracker) release(id fileID, f *file) {
	delete(t.files, id)
	if err := f.closer.Close(); err != nil {
		t.cfg.Logger.Warn("tlstrack: detach", "kind", f.kind, "err", err)
	}
}

func (t *Tracker) closeAll() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for pid, p := range t.procs {
		if p.allowed {
			_ = t.k.DisallowTLS(pid)
		}
		delete(t.procs, pid)
	}
	for id, f := range t.files {
		t.release(id, f)
	}
}

// readComm returns the process name (/proc/PID/comm, at most 64 bytes).
func readComm(dir string) string {
	f, err := os.Open(filepath.Join(dir, "comm"))
	if err != nil {
		return ""
	}
	defer f.Close()
	b := make([]byte, 64)
	n, _ := io.ReadFull(f, b)
	return strings.TrimRight(string(b[:n]), "\n")
}

// readExe returns the executable's path as the process sees it.
func readExe(dir string) string {
	p, err := os.Readlink(filepath.Join(dir, "exe"))
	if err != nil {
		return ""
	}
	return strings.TrimSuffix(p, " (deleted)")
}

// Covered reports whether pid has at least one probed file (and, with
// Config.Processes, is allowed).
func (t *Tracker) Covered(pid uint32) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.covered(t.procs[pid])
}

// covered: caller holds mu.
func (t *Tracker) covered(p *proc) bool {
	return p != nil && len(p.files) > 0 && (t.cfg.Processes == nil || p.allowed)
}

// Stats returns the counters.
func (t *Tracker) Stats() Stats {
	t.mu.Lock()
	s := Stats{Files: uint64(len(t.files))}
	for _, p := range t.procs {
		if t.covered(p) {
			s.Processes++
		}
		if p.allowed {
			s.Allowed++
		}
	}
	t.mu.Unlock()
	s.Inspected = t.inspected.Load()
	s.NoTLS = t.noTLS.Load()
	s.NoSymbols = t.noSymbols.Load()
	s.InspectFailed = t.inspectFailed.Load()
	s.AttachFailed = t.attachFailed.Load()
	s.AllowFailed = t.allowFailed.Load()
	s.LimitReached = t.limit.Load()
	s.QueueFull = t.queueFull.Load()
	s.FilteredOut = t.filteredOut.Load()
	s.MapsTruncated = t.mapsTruncated.Load()
	s.CacheResets = t.cacheResets.Load()
	s.Scans = t.scans.Load()
	return s
}

var errNotGet = errors.New("method not allowed: use GET")
