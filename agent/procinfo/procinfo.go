// Package procinfo resolves a pid to the identity of its process (comm, exe,
// command line, container) from /proc, with a bounded LRU cache so that the
// hot path of the agent does not hit /proc for every captured syscall.
package procinfo

import (
	"bytes"
	"container/list"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Defaults for Options fields left zero.
const (
	DefaultProcRoot    = "/proc"
	DefaultMaxEntries  = 16384
	DefaultTTL         = 30 * time.Second
	DefaultNegativeTTL = 2 * time.Second

	// MaxCmdline caps Info.Cmdline; the kernel allows far longer argv.
	MaxCmdline = 4 << 10
)

// Options configures a Resolver.
type Options struct {
	// ProcRoot is where procfs is mounted ("/proc", or e.g. "/host/proc" when
	// the agent runs in a container). Default "/proc".
	ProcRoot string
	// MaxEntries bounds the cache (live and negative entries together).
	// Default 16384.
	MaxEntries int
	// TTL is how long a cached entry is trusted before it is revalidated
	// against /proc/<pid>/stat (start time compared to detect pid reuse).
	// Default 30s.
	TTL time.Duration
	// NegativeTTL is how long a vanished pid is remembered as absent.
	// Default 2s.
	NegativeTTL time.Duration
}

// Info is the identity of one process.
type Info struct {
	PID         uint32 `json:"pid"`
	PPID        uint32 `json:"ppid"`
	Name        string `json:"name"`    // comm, at most 15 bytes
	Exe         string `json:"exe"`     // target of /proc/<pid>/exe; empty for kernel threads or when unreadable
	Cmdline     string `json:"cmdline"` // argv joined by spaces, capped at MaxCmdline bytes
	ContainerID string `json:"container_id"`
	Runtime     string `json:"runtime,omitempty"` // container runtime when known
	PodUID      string `json:"pod_uid,omitempty"`
	CgroupPath  string `json:"cgroup_path"`
	StartTime   uint64 `json:"start_time"` // clock ticks after boot (stat field 22); identifies the process across pid reuse
}

// Stats are cumulative counters of a Resolver.
type Stats struct {
	Hits          uint64 // served from a valid cache entry
	NegativeHits  uint64 // served "absent" from a negative entry
	Loads         uint64 // full reads of /proc/<pid>
	Revalidations uint64 // TTL expiries checked against stat
	PIDReuses     uint64 // revalidation found a different process under the pid
	Vanished      uint64 // lookups of pids with no /proc entry
	Errors        uint64 // /proc reads that failed for other reasons (treated as absent)
	Evictions     uint64 // entries dropped to stay within MaxEntries
	RacedStores   uint64 // results not cached because a Forget/Invalidate ran during the read
	Entries       int    // current cache size
}

type entry struct {
	pid     uint32
	info    Info
	present bool      // false: negative entry
	expires time.Time // after this, revalidate (present) or retry (negative)
}

// Resolver looks up process identity. It is safe for concurrent use.
type Resolver struct {
	root   string
	max    int
	ttl    time.Duration
	negTTL time.Duration
	now    func() time.Time

	mu      sync.Mutex
	entries map[uint32]*list.Element // of *entry
	lru     list.List                // front = most recently used
	stats   Stats
	// gen advances on every Forget/Invalidate so that a /proc read that
	// raced with one is returned but not cached (it may describe the
	// process from before the exit or exec).
	gen uint64
}

// New returns a Resolver; zero Options fields take their defaults.
func New(opts Options) *Resolver {
	r := &Resolver{
		root:    opts.ProcRoot,
		max:     opts.MaxEntries,
		ttl:     opts.TTL,
		negTTL:  opts.NegativeTTL,
		now:     time.Now,
		entries: make(map[uint32]*list.Element),
	}
	if r.root == "" {
		r.root = DefaultProcRoot
	}
	if r.max <= 0 {
		r.max = DefaultMaxEntries
	}
	if r.ttl <= 0 {
		r.ttl = DefaultTTL
	}
	if r.negTTL <= 0 {
		r.negTTL = DefaultNegativeTTL
	}
	return r
}

// Lookup returns the identity of pid, or false if no such process exists
// (or /proc could not be read). Results are cached; see Options.
func (r *Resolver) Lookup(pid uint32) (Info, bool) {
	if pid == 0 {
		return Info{}, false
	}
	now := r.now()

	r.mu.Lock()
	gen := r.gen
	var cached *entry
	if el, ok := r.entries[pid]; ok {
		e := el.Value.(*entry)
		if now.Before(e.expires) {
			r.lru.MoveToFront(el)
			if e.present {
				r.stats.Hits++
			} else {
				r.stats.NegativeHits++
			}
			info, present := e.info, e.present
			r.mu.Unlock()
			return info, present
		}
		if e.present {
			c := *e
			cached = &c
		}
	}
	r.mu.Unlock()

	// Read /proc without holding the lock: it can be slow and concurrent
	// lookups of other pids must not wait on it.
	if cached != nil {
		start, err := r.readStartTime(pid)
		r.mu.Lock()
		r.stats.Revalidations++
		r.mu.Unlock()
		if err == nil && start == cached.info.StartTime {
			r.store(pid, cached.info, true, now, gen)
			return cached.info, true
		}
		if err == nil {
			r.mu.Lock()
			r.stats.PIDReuses++
			r.mu.Unlock()
		}
	}

	info, err := r.load(pid)
	r.mu.Lock()
	r.stats.Loads++
	switch {
	case err == nil:
	case errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ESRCH):
		r.stats.Vanished++
	default:
		r.stats.Errors++
	}
	r.mu.Unlock()
	r.store(pid, info, err == nil, now, gen)
	return info, err == nil
}

// Forget drops pid from the cache; call it when the process exits.
func (r *Resolver) Forget(pid uint32) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.gen++
	if el, ok := r.entries[pid]; ok {
		r.lru.Remove(el)
		delete(r.entries, pid)
	}
}

// Invalidate forces the next Lookup of pid to reread /proc; call it when
// the process execs (comm, exe and cmdline change, pid and start time do not).
func (r *Resolver) Invalidate(pid uint32) {
	// An exec'd process keeps its start time, so revalidation would wrongly
	// keep the old identity: drop the entry instead of expiring it.
	r.Forget(pid)
}

// Stats returns a snapshot of the counters.
func (r *Resolver) Stats() Stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.stats
	s.Entries = len(r.entries)
	return s
}

// Hostname returns the host name. With the default ProcRoot it is
// os.Hostname; with another ProcRoot (host procfs mounted into a container)
// it is read from <ProcRoot>/sys/kernel/hostname, falling back to os.Hostname.
func (r *Resolver) Hostname() (string, error) {
	if r.root != DefaultProcRoot {
		b, err := readBounded(filepath.Join(r.root, "sys", "kernel", "hostname"), 256)
		if err == nil {
			if h := strings.TrimSpace(string(b)); h != "" {
				return h, nil
			}
		}
	}
	h, err := os.Hostname()
	if err != nil {
		return "", fmt.Errorf("hostname: %w", err)
	}
	return h, nil
}

// store caches a lookup result unless a Forget/Invalidate happened since
// generation gen was read.
func (r *Resolver) store(pid uint32, info Info, present bool, now time.Time, gen uint64) {
	ttl := r.ttl
	if !present {
		ttl = r.negTTL
		info = Info{}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.gen != gen {
		r.stats.RacedStores++
		return
	}
	if el, ok := r.entries[pid]; ok {
		*el.Value.(*entry) = entry{pid: pid, info: info, present: present, expires: now.Add(ttl)}
		r.lru.MoveToFront(el)
		return
	}
	for len(r.entries) >= r.max {
		oldest := r.lru.Back()
		delete(r.entries, oldest.Value.(*entry).pid)
		r.lru.Remove(oldest)
		r.stats.Evictions++
	}
	r.entries[pid] = r.lru.PushFront(&entry{pid: pid, info: info, present: present, expires: now.Add(ttl)})
}

// errMalformedStat reports a stat file that does not parse (truncated or
// not procfs at all).
var errMalformedStat = errors.New("malformed stat")

// load reads the full identity of pid from /proc.
func (r *Resolver) load(pid uint32) (Info, error) {
	dir := filepath.Join(r.root, strconv.FormatUint(uint64(pid), 10))
	stat, err := readBounded(filepath.Join(dir, "stat"), 4096)
	if err != nil {
		return Info{}, fmt.Errorf("read stat of pid %d: %w", pid, err)
	}
	st, err := parseStat(stat)
	if err != nil {
		return Info{}, fmt.Errorf("parse stat of pid %d: %w", pid, err)
	}
	info := Info{PID: pid, PPID: st.ppid, Name: st.comm, StartTime: st.startTime}

	// The remaining files are best effort: kernel threads have no exe or
	// cmdline, and exe needs ptrace access. A process that exits midway
	// still yields what was read before.
	if comm, err := readBounded(filepath.Join(dir, "comm"), 64); err == nil {
		if c := strings.TrimRight(string(comm), "\n"); c != "" {
			info.Name = c
		}
	}
	if exe, err := os.Readlink(filepath.Join(dir, "exe")); err == nil {
		info.Exe = exe
	}
	if cmd, err := readBounded(filepath.Join(dir, "cmdline"), MaxCmdline+1); err == nil {
		info.Cmdline = formatCmdline(cmd)
	}
	if f, err := os.Open(filepath.Join(dir, "cgroup")); err == nil {
		cg := ParseCgroup(f)
		f.Close()
		info.CgroupPath, info.ContainerID, info.Runtime, info.PodUID = cg.Path, cg.ContainerID, cg.Runtime, cg.PodUID
	}
	return info, nil
}

func (r *Resolver) readStartTime(pid uint32) (uint64, error) {
	b, err := readBounded(filepath.Join(r.root, strconv.FormatUint(uint64(pid), 10), "stat"), 4096)
	if err != nil {
		return 0, err
	}
	st, err := parseStat(b)
	if err != nil {
		return 0, err
	}
	return st.startTime, nil
}

// formatCmdline turns NUL-separated argv into a space-joined string of at
// most MaxCmdline bytes.
func formatCmdline(b []byte) string {
	if len(b) > MaxCmdline {
		b = b[:MaxCmdline]
	}
	b = bytes.TrimRight(b, "\x00")
	out := bytes.ReplaceAll(b, []byte{0}, []byte{' '})
	// Truncation may have split a UTF-8 sequence; argv may be binary anyway.
	return strings.ToValidUTF8(string(out), "\uFFFD")
}

type statFields struct {
	comm      string
	ppid      uint32
	startTime uint64
}

// parseStat parses /proc/<pid>/stat. comm is parenthesised and may itself
// contain spaces and parentheses, so fields are split after the last ')'.
func parseStat(b []byte) (statFields, error) {
	open := bytes.IndexByte(b, '(')
	closing := bytes.LastIndexByte(b, ')')
	if open < 0 || closing < open {
		return statFields{}, fmt.Errorf("%w: no parenthesised comm", errMalformedStat)
	}
	// fields[0] is field 3 (state); ppid is field 4, starttime field 22.
	fields := strings.Fields(string(b[closing+1:]))
	if len(fields) < 20 {
		return statFields{}, fmt.Errorf("%w: stat has %d fields after comm", errMalformedStat, len(fields))
	}
	ppid, err := strconv.ParseUint(fields[1], 10, 32)
	if err != nil {
		return statFields{}, fmt.Errorf("%w: ppid: %v", errMalformedStat, err)
	}
	start, err := strconv.ParseUint(fields[19], 10, 64)
	if err != nil {
		return statFields{}, fmt.Errorf("%w: starttime: %v", errMalformedStat, err)
	}
	return statFields{comm: string(b[open+1 : closing]), ppid: uint32(ppid), startTime: start}, nil
}

// readBounded reads at most limit bytes of a (proc) file.
func readBounded(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return b, nil
}
