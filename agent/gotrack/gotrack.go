// Package gotrack finds Go processes on the host and turns on goroutine
// tracking for them: it inspects each process's executable once per file
// (device, inode), attaches the goroutine probes to it (socktrace.AttachGo)
// and registers the process so the kernel keys request state by goroutine
// instead of by thread.
//
// Work happens on one goroutine fed by a bounded queue: exec events come
// from the ring buffer reader, which must never wait on ELF parsing. A full
// queue drops the process and counts it.
package gotrack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/sightline-io/sightline/agent/capture/socktrace"
	"github.com/sightline-io/sightline/agent/goinfo"
)

// Kernel is the part of socktrace.Tracer the tracker drives.
type Kernel interface {
	RegisterGoProcess(pid uint32, p socktrace.GoProc) error
	UnregisterGoProcess(pid uint32) error
	AttachGo(path string, p socktrace.GoProbes) (io.Closer, error)
}

// Config bounds the tracker.
type Config struct {
	ProcRoot    string // default /proc
	MaxBinaries int    // distinct executables probed at once; default 64
	MaxProcs    int    // processes registered at once; default 4096 (the kernel map's size)
	QueueLen    int    // pending exec/exit events; default 1024
	SelfPID     int    // never tracked (the agent); default os.Getpid()
	// ProbesOff finds Go processes but attaches nothing: they are
	// registered untracked, so they get no thread-level syscall_trace_ids.
	ProbesOff bool
	Logger    *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.ProcRoot == "" {
		c.ProcRoot = "/proc"
	}
	if c.MaxBinaries <= 0 {
		c.MaxBinaries = 64
	}
	if c.MaxProcs <= 0 {
		c.MaxProcs = 4096
	}
	if c.QueueLen <= 0 {
		c.QueueLen = 1024
	}
	if c.SelfPID == 0 {
		c.SelfPID = os.Getpid()
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Stats are the tracker's counters. Failures are by reason so a user can
// tell why a Go service is not tracked (doctor, /metrics).
type Stats struct {
	Processes      uint64 // Go processes tracked now
	Untracked      uint64 // Go processes registered without probes (off or failed): no syscall trace ids
	Binaries       uint64 // executables with probes attached now
	NotGo          uint64 // executables inspected that are not Go (or not amd64)
	InspectFailed  uint64 // Go executables whose functions or offsets could not be read
	AttachFailed   uint64 // probes that could not be attached
	RegisterFailed uint64 // kernel map full or refused
	LimitReached   uint64 // skipped: MaxBinaries or MaxProcs reached
	QueueFull      uint64 // exec/exit events dropped: queue full
}

type fileID struct{ dev, ino uint64 }

// binary is one probed executable, shared by the processes running it.
type binary struct {
	probes io.Closer
	proc   socktrace.GoProc
	users  int
}

// verdict remembers executables that are not tracked, so each is inspected
// once; goUntracked marks Go executables whose processes are registered
// without probes.
type verdict struct {
	err         error
	goUntracked bool
}

var errProbesOff = errors.New("goroutine probes are off")

type event struct {
	pid  uint32
	exit bool
}

// Tracker tracks Go processes. Create with New, feed with ProcessExec and
// ProcessExit, run with Run.
type Tracker struct {
	k     Kernel
	cfg   Config
	queue chan event

	mu       sync.Mutex
	binaries map[fileID]*binary
	rejected map[fileID]verdict
	procs    map[uint32]fileID
	// untracked counts registered Go processes without probes.
	untracked int

	notGo, inspectFailed, attachFailed, registerFailed, limit, queueFull atomic.Uint64
}

// New returns a tracker; nothing happens until Run.
func New(k Kernel, cfg Config) *Tracker {
	cfg = cfg.withDefaults()
	return &Tracker{
		k:        k,
		cfg:      cfg,
		queue:    make(chan event, cfg.QueueLen),
		binaries: make(map[fileID]*binary),
		rejected: make(map[fileID]verdict),
		procs:    make(map[uint32]fileID),
	}
}

// ProcessExec queues pid for a look at its new executable. It never blocks.
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

// Run scans the processes already running, then handles queued events until
// ctx is done; it then detaches everything.
func (t *Tracker) Run(ctx context.Context) error {
	defer t.closeAll()
	t.scan()
	batch := make([]event, 0, 64)
	for {
		select {
		case <-ctx.Done():
			return nil
		case e := <-t.queue:
			// Take what is queued, then turn thread-level ids off for every
			// new Go process at once (a cheap build-info read) before the
			// slow part, inspecting and probing binaries one by one: until
			// its probes are on, a Go process must carry no ids rather
			// than thread-level ones, which would join unrelated requests.
			batch = append(batch[:0], e)
			for len(batch) < cap(batch) && len(t.queue) > 0 {
				batch = append(batch, <-t.queue)
			}
			for _, e := range batch {
				t.forget(e.pid) // an exit, or an exec replacing the process image
				if !e.exit {
					t.quietGo(e.pid)
				}
			}
			for _, e := range batch {
				if !e.exit {
					t.track(e.pid)
				}
			}
		}
	}
}

// quietGo registers pid untracked (no ids) when its executable is Go and not
// yet known; track then registers it properly.
func (t *Tracker) quietGo(pid uint32) {
	if int(pid) == t.cfg.SelfPID {
		return
	}
	exe := filepath.Join(t.cfg.ProcRoot, strconv.FormatUint(uint64(pid), 10), "exe")
	if _, err := goinfo.GoVersionOf(exe); err != nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.procs[pid]; ok {
		return
	}
	t.register(pid, fileID{}, nil, socktrace.GoProc{})
}

// Probed reports whether pid runs with goroutine probes on.
func (t *Tracker) Probed(pid uint32) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	id, ok := t.procs[pid]
	return ok && t.binaries[id] != nil
}

func (t *Tracker) scan() {
	ents, err := os.ReadDir(t.cfg.ProcRoot)
	if err != nil {
		t.cfg.Logger.Warn("gotrack: list processes", "err", err)
		return
	}
	for _, e := range ents {
		pid, err := strconv.ParseUint(e.Name(), 10, 32)
		if err != nil || !e.IsDir() {
			continue
		}
		t.track(uint32(pid))
	}
}

// Tracked reports whether pid is tracked as a Go process.
func (t *Tracker) Tracked(pid uint32) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	_, ok := t.procs[pid]
	return ok
}

// Stats returns the counters.
func (t *Tracker) Stats() Stats {
	t.mu.Lock()
	s := Stats{Processes: uint64(len(t.procs) - t.untracked), Untracked: uint64(t.untracked), Binaries: uint64(len(t.binaries))}
	t.mu.Unlock()
	s.NotGo = t.notGo.Load()
	s.InspectFailed = t.inspectFailed.Load()
	s.AttachFailed = t.attachFailed.Load()
	s.RegisterFailed = t.registerFailed.Load()
	s.LimitReached = t.limit.Load()
	s.QueueFull = t.queueFull.Load()
	return s
}

func (t *Tracker) track(pid uint32) {
	if int(pid) == t.cfg.SelfPID {
		return
	}
	exe := filepath.Join(t.cfg.ProcRoot, strconv.FormatUint(uint64(pid), 10), "exe")
	var st syscall.Stat_t
	if err := syscall.Stat(exe, &st); err != nil {
		return // kernel thread, gone, or not ours to read
	}
	id := fileID{dev: uint64(st.Dev), ino: st.Ino}
	t.mu.Lock()
	defer t.mu.Unlock()
	if v, ok := t.rejected[id]; ok {
		if v.goUntracked {
			t.register(pid, id, nil, socktrace.GoProc{})
		}
		return
	}
	if len(t.procs) >= t.cfg.MaxProcs {
		t.limit.Add(1)
		return
	}
	b, ok := t.binaries[id]
	if !ok {
		if len(t.binaries) >= t.cfg.MaxBinaries {
			t.limit.Add(1)
			return
		}
		var err error
		if b, err = t.probe(exe); err != nil {
			goBin := !errors.Is(err, goinfo.ErrNotGo) && !errors.Is(err, goinfo.ErrUnsupportedArch)
			if len(t.rejected) < 4*t.cfg.MaxBinaries+1024 {
				t.rejected[id] = verdict{err: err, goUntracked: goBin}
			}
			if goBin {
				if !errors.Is(err, errProbesOff) {
					t.cfg.Logger.Info("gotrack: go process not tracked: it gets no syscall trace ids", "pid", pid, "err", err)
				}
				t.register(pid, id, nil, socktrace.GoProc{})
			}
			return
		}
		t.binaries[id] = b
	}
	t.register(pid, id, b, b.proc)
}

// register tells the kernel about a Go process (b nil: untracked). A pid
// registered untracked by quietGo is registered again.
func (t *Tracker) register(pid uint32, id fileID, b *binary, p socktrace.GoProc) {
	if old, ok := t.procs[pid]; ok {
		if t.binaries[old] != nil {
			return // already tracked
		}
		delete(t.procs, pid)
		t.untracked--
	}
	if len(t.procs) >= t.cfg.MaxProcs {
		t.limit.Add(1)
		return
	}
	if err := t.k.RegisterGoProcess(pid, p); err != nil {
		t.registerFailed.Add(1)
		t.cfg.Logger.Warn("gotrack: register", "pid", pid, "err", err)
		if b != nil {
			t.release(id, b)
		}
		return
	}
	if b != nil {
		b.users++
	} else {
		t.untracked++
	}
	t.procs[pid] = id
}

// probe inspects an executable and attaches the goroutine probes. The file is
// opened once and reached through /proc/self/fd, so a process that exits
// meanwhile (or whose mount namespace differs) does not matter.
func (t *Tracker) probe(exe string) (*binary, error) {
	f, err := os.Open(exe)
	if err != nil {
		t.inspectFailed.Add(1)
		return nil, fmt.Errorf("open %s: %w", exe, err)
	}
	defer f.Close()
	path := "/proc/self/fd/" + strconv.Itoa(int(f.Fd()))
	if t.cfg.ProbesOff {
		if _, err := goinfo.GoVersionOf(path); err != nil {
			t.notGo.Add(1)
			return nil, err
		}
		return nil, errProbesOff
	}
	bin, err := goinfo.Inspect(path)
	if err != nil {
		if errors.Is(err, goinfo.ErrNotGo) || errors.Is(err, goinfo.ErrUnsupportedArch) {
			t.notGo.Add(1)
		} else {
			t.inspectFailed.Add(1)
		}
		return nil, err
	}
	defer bin.Close()
	probes, proc, err := resolve(bin)
	if err != nil {
		t.inspectFailed.Add(1)
		return nil, fmt.Errorf("%s (%s): %w", exe, bin.GoVersion, err)
	}
	c, err := t.k.AttachGo(path, probes)
	if err != nil {
		t.attachFailed.Add(1)
		return nil, fmt.Errorf("%s: %w", exe, err)
	}
	t.cfg.Logger.Debug("gotrack: probes attached", "exe", exe, "go", bin.GoVersion)
	return &binary{probes: c, proc: proc}, nil
}

// resolve finds the probed functions and the struct offsets in a binary.
func resolve(bin *goinfo.Binary) (socktrace.GoProbes, socktrace.GoProc, error) {
	var p socktrace.GoProbes
	off, err := bin.Offsets()
	if err != nil {
		return p, socktrace.GoProc{}, err
	}
	fn := func(name string, returns *[]uint64) (uint64, error) {
		f, err := bin.Func(name)
		if err != nil {
			return 0, err
		}
		if returns != nil {
			if len(f.Returns) == 0 {
				return 0, fmt.Errorf("%s: no RET instruction found", name)
			}
			*returns = f.Returns
		}
		return f.Offset, nil
	}
	steps := []struct {
		name    string
		entry   *uint64
		returns *[]uint64
	}{
		{"runtime.newproc1", &p.Newproc1, &p.Newproc1Returns},
		{"runtime.goexit1", &p.Goexit1, nil},
		{"runtime.chansend", &p.Chansend, nil},
		{"runtime.chanrecv", &p.Chanrecv, &p.ChanrecvReturns},
		{"runtime.selectgo", &p.Selectgo, &p.SelectgoReturns},
	}
	for _, s := range steps {
		if *s.entry, err = fn(s.name, s.returns); err != nil {
			return p, socktrace.GoProc{}, err
		}
	}
	if off.ScaseC != 0 {
		return p, socktrace.GoProc{}, fmt.Errorf("runtime.scase.c at %d, the probes expect 0", off.ScaseC)
	}
	proc := socktrace.GoProc{
		GoidOffset:     uint32(off.GGoid),
		ElemsizeOffset: uint32(off.HchanElemsize),
		ScaseSize:      uint32(off.ScaseSize),
		ScaseElem:      uint32(off.ScaseElem),
	}
	return p, proc, nil
}

func (t *Tracker) forget(pid uint32) {
	t.mu.Lock()
	defer t.mu.Unlock()
	id, ok := t.procs[pid]
	if !ok {
		return
	}
	delete(t.procs, pid)
	if err := t.k.UnregisterGoProcess(pid); err != nil {
		t.cfg.Logger.Warn("gotrack: unregister", "pid", pid, "err", err)
	}
	if b := t.binaries[id]; b != nil {
		b.users--
		t.release(id, b)
	} else if t.untracked > 0 {
		t.untracked--
	}
}

// release detaches an executable's probes once no process runs it.
func (t *Tracker) release(id fileID, b *binary) {
	if b.users > 0 {
		return
	}
	delete(t.binaries, id)
	if err := b.probes.Close(); err != nil {
		t.cfg.Logger.Warn("gotrack: detach", "err", err)
	}
}

func (t *Tracker) closeAll() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for pid := range t.procs {
		_ = t.k.UnregisterGoProcess(pid)
	}
	clear(t.procs)
	for id, b := range t.binaries {
		_ = b.probes.Close()
		delete(t.binaries, id)
	}
}
