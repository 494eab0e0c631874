// Package socktrace captures socket payloads of IPv4/IPv6 TCP and UDP
// sockets with syscall tracepoints and hands them to the protocol layer as
// capture.Segments (Source = capture.SourceEBPF).
//
// The kernel side is bpf/socket_trace.c. One Tracer loads it, attaches every
// hook listed in hookTable, and reads the single ring buffer in Run.
package socktrace

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/bits"
	"os"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"github.com/sightline-io/sightline/agent/capture/bpfevent"
)

const (
	// DefaultMaxPayload is the payload prefix captured per syscall.
	DefaultMaxPayload = 1024
	// MaxPayloadLimit is the largest MaxPayload accepted (MAX_PAYLOAD_LIMIT in C).
	MaxPayloadLimit = 16384
	// DefaultRingBufferBytes is the ring buffer size shared by all CPUs.
	DefaultRingBufferBytes = 8 << 20
	// DefaultPollInterval is how often the reader drains the ring buffer
	// when the kernel has not woken it (see Config.WakeupBytes).
	DefaultPollInterval = 100 * time.Millisecond
	// maxPIDFilter mirrors max_entries of excluded_pids and traced_pids.
	maxPIDFilter = 1024
)

// Config configures a Tracer. The zero value is usable: defaults apply.
type Config struct {
	// MaxPayload is how many payload bytes are captured per syscall
	// (0 = DefaultMaxPayload, at most MaxPayloadLimit). Segment.Len is
	// always the full byte count.
	MaxPayload int
	// RingBufferBytes sizes the ring buffer: a power of two and a multiple
	// of the page size (0 = DefaultRingBufferBytes).
	RingBufferBytes int
	// WakeupBytes is how much data must wait in the ring buffer before the
	// kernel wakes the reader; below it the reader drains the ring every
	// PollInterval. Waking per event costs a context switch per traced
	// syscall. 0 = RingBufferBytes/16; negative = wake per event.
	WakeupBytes int
	// PollInterval bounds how long an event waits below WakeupBytes
	// (0 = DefaultPollInterval).
	PollInterval time.Duration
	// ExcludeSelf keeps the tracer's own process out of the trace, so an
	// agent that talks to itself over loopback does not trace its exports.
	ExcludeSelf bool
	// ExcludePIDs are process ids (tgids) never traced.
	ExcludePIDs []uint32
	// OnlyPIDs, when non-empty, restricts tracing to these tgids (tests,
	// benchmarks, targeted capture). Exclusions still win.
	OnlyPIDs []uint32
	// DisableTLS loads no TLS plaintext support: no uprobes can be
	// attached, and socket syscalls skip the TLS bookkeeping (kill switch).
	DisableTLS bool
	// TLSFilter makes TLS plaintext events opt-in per process (AllowTLS);
	// otherwise every process whose TLS library is probed is decrypted.
	TLSFilter bool
	// Logger receives diagnostics; nil means slog.Default().
	Logger *slog.Logger
}

func (c Config) withDefaults() (Config, error) {
	if c.MaxPayload == 0 {
		c.MaxPayload = DefaultMaxPayload
	}
	if c.MaxPayload < 0 || c.MaxPayload > MaxPayloadLimit {
		return c, fmt.Errorf("max payload %d: must be in 1..%d", c.MaxPayload, MaxPayloadLimit)
	}
	if c.RingBufferBytes == 0 {
		c.RingBufferBytes = DefaultRingBufferBytes
	}
	switch {
	case c.WakeupBytes == 0:
		c.WakeupBytes = c.RingBufferBytes / 16
	case c.WakeupBytes < 0:
		c.WakeupBytes = 0
	}
	if c.PollInterval <= 0 {
		c.PollInterval = DefaultPollInterval
	}
	page := os.Getpagesize()
	if c.RingBufferBytes < page || bits.OnesCount(uint(c.RingBufferBytes)) != 1 {
		return c, fmt.Errorf("ring buffer size %d: must be a power of two of at least %d", c.RingBufferBytes, page)
	}
	if n := len(c.ExcludePIDs) + 1; n > maxPIDFilter {
		return c, fmt.Errorf("%d excluded pids: at most %d", n, maxPIDFilter-1)
	}
	if len(c.OnlyPIDs) > maxPIDFilter {
		return c, fmt.Errorf("%d traced pids: at most %d", len(c.OnlyPIDs), maxPIDFilter)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c, nil
}

// hook is one program and the tracepoint it attaches to.
type hook struct {
	prog        string // program (C function) name
	group, name string // tracepoint
}

// hookTable is every program of socket_trace.c and where it attaches. The
// Tracer attaches these in order and detaches them all on Close.
var hookTable = []hook{
	{"enter_read", "syscalls", "sys_enter_read"},
	{"exit_read", "syscalls", "sys_exit_read"},
	{"enter_write", "syscalls", "sys_enter_write"},
	{"exit_write", "syscalls", "sys_exit_write"},
	{"enter_readv", "syscalls", "sys_enter_readv"},
	{"exit_readv", "syscalls", "sys_exit_readv"},
	{"enter_writev", "syscalls", "sys_enter_writev"},
	{"exit_writev", "syscalls", "sys_exit_writev"},
	{"enter_sendto", "syscalls", "sys_enter_sendto"},
	{"exit_sendto", "syscalls", "sys_exit_sendto"},
	{"enter_recvfrom", "syscalls", "sys_enter_recvfrom"},
	{"exit_recvfrom", "syscalls", "sys_exit_recvfrom"},
	{"enter_sendmsg", "syscalls", "sys_enter_sendmsg"},
	{"exit_sendmsg", "syscalls", "sys_exit_sendmsg"},
	{"enter_recvmsg", "syscalls", "sys_enter_recvmsg"},
	{"exit_recvmsg", "syscalls", "sys_exit_recvmsg"},
	{"enter_sendmmsg", "syscalls", "sys_enter_sendmmsg"},
	{"exit_sendmmsg", "syscalls", "sys_exit_sendmmsg"},
	{"enter_recvmmsg", "syscalls", "sys_enter_recvmmsg"},
	{"exit_recvmmsg", "syscalls", "sys_exit_recvmmsg"},
	{"enter_connect", "syscalls", "sys_enter_connect"},
	{"exit_connect", "syscalls", "sys_exit_connect"},
	{"exit_accept", "syscalls", "sys_exit_accept"},
	{"exit_accept4", "syscalls", "sys_exit_accept4"},
	{"enter_close", "syscalls", "sys_enter_close"},
	{"enter_futex", "syscalls", "sys_enter_futex"},
	{"exit_futex", "syscalls", "sys_exit_futex"},
	{"sched_exec", "sched", "sched_process_exec"},
	{"sched_exit", "sched", "sched_process_exit"},
}

// btfHooks are the tp_btf programs (attached by BTF id, not through tracefs).
var btfHooks = []string{"sched_fork"}

// Tracer owns the loaded eBPF objects, their links and the ring buffer reader.
type Tracer struct {
	cfg    Config
	log    *slog.Logger
	coll   *ebpf.Collection
	maps   kernelMaps
	links  []link.Link
	reader *ringbuf.Reader
	clock  bpfevent.MonoClock
	stats  userStats
}

// New loads the socket tracer and attaches all hooks. It needs root (or
// CAP_BPF+CAP_PERFMON+CAP_SYS_ADMIN for the tracefs mount).
func New(cfg Config) (*Tracer, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("socktrace config: %w", err)
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("remove memlock rlimit: %w", err)
	}
	if err := ensureTracefs(cfg.Logger); err != nil {
		return nil, err
	}
	clock, err := bpfevent.NewMonoClock()
	if err != nil {
		return nil, err
	}
	t := &Tracer{cfg: cfg, log: cfg.Logger, clock: clock}
	if err := t.load(); err != nil {
		return nil, err
	}
	if err := t.attach(); err != nil {
		t.Close()
		return nil, err
	}
	rd, err := ringbuf.NewReader(t.maps.events)
	if err != nil {
		t.Close()
		return nil, fmt.Errorf("open ring buffer reader: %w", err)
	}
	t.reader = rd
	return t, nil
}

func (t *Tracer) load() error {
	spec, err := loadSocketTrace()
	if err != nil {
		return fmt.Errorf("load socket_trace spec: %w", err)
	}
	if err := setVar(spec, "max_payload", uint32(t.cfg.MaxPayload)); err != nil {
		return err
	}
	if err := setVar(spec, "wakeup_bytes", uint64(t.cfg.WakeupBytes)); err != nil {
		return err
	}
	only := uint8(0)
	if len(t.cfg.OnlyPIDs) > 0 {
		only = 1
	}
	if err := setVar(spec, "only_traced_pids", only); err != nil {
		return err
	}
	if err := setVar(spec, "tls_on", boolByte(!t.cfg.DisableTLS)); err != nil {
		return err
	}
	if err := setVar(spec, "tls_filter", boolByte(t.cfg.TLSFilter)); err != nil {
		return err
	}
	events, ok := spec.Maps["events"]
	if !ok {
		return errors.New("socket_trace spec has no events map")
	}
	events.MaxEntries = uint32(t.cfg.RingBufferBytes)
	scratch, ok := spec.Maps["scratch_buf"]
	if !ok {
		return errors.New("socket_trace spec has no scratch_buf map")
	}
	ncpu, err := ebpf.PossibleCPU()
	if err != nil {
		return fmt.Errorf("count possible cpus: %w", err)
	}
	scratch.MaxEntries = uint32(ncpu)

	coll, err := ebpf.NewCollection(spec)
	if err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return fmt.Errorf("load socket_trace objects: %+v", ve)
		}
		return fmt.Errorf("load socket_trace objects: %w", err)
	}
	t.coll = coll
	if t.maps, err = lookupMaps(coll); err != nil {
		coll.Close()
		return err
	}

	// Seed the id counter with the monotonic clock so conn_uid and
	// syscall_trace_id values stay unique across agent restarts in one boot
	// (ids are drawn far slower than one per nanosecond).
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		t.coll.Close()
		return fmt.Errorf("read monotonic clock: %w", err)
	}
	if err := t.maps.idCounter.Put(uint32(0), uint64(ts.Nano())); err != nil {
		t.coll.Close()
		return fmt.Errorf("seed id counter: %w", err)
	}

	excluded := append([]uint32(nil), t.cfg.ExcludePIDs...)
	if t.cfg.ExcludeSelf {
		excluded = append(excluded, uint32(os.Getpid()))
	}
	for _, pid := range excluded {
		if err := t.maps.excludedPIDs.Put(pid, uint8(1)); err != nil {
			t.coll.Close()
			return fmt.Errorf("exclude pid %d: %w", pid, err)
		}
	}
	for _, pid := range t.cfg.OnlyPIDs {
		if err := t.maps.tracedPIDs.Put(pid, uint8(1)); err != nil {
			t.coll.Close()
			return fmt.Errorf("trace pid %d: %w", pid, err)
		}
	}
	return nil
}

// kernelMaps are the maps user space touches.
type kernelMaps struct {
	events, counters, idCounter, excludedPIDs, tracedPIDs, sockStates *ebpf.Map
	sockRoles, goProcs, tlsPIDs                                       *ebpf.Map
}

func lookupMaps(coll *ebpf.Collection) (kernelMaps, error) {
	var m kernelMaps
	for name, dst := range map[string]**ebpf.Map{
		"events":        &m.events,
		"counters":      &m.counters,
		"id_counter":    &m.idCounter,
		"excluded_pids": &m.excludedPIDs,
		"traced_pids":   &m.tracedPIDs,
		"sock_states":   &m.sockStates,
		"sock_roles":    &m.sockRoles,
		"go_procs":      &m.goProcs,
		"tls_pids":      &m.tlsPIDs,
	} {
		mp, ok := coll.Maps[name]
		if !ok {
			return m, fmt.Errorf("socket_trace objects have no map %q", name)
		}
		*dst = mp
	}
	return m, nil
}

func boolByte(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}

func setVar(spec *ebpf.CollectionSpec, name string, v any) error {
	vs, ok := spec.Variables[name]
	if !ok {
		return fmt.Errorf("socket_trace spec has no variable %q", name)
	}
	if err := vs.Set(v); err != nil {
		return fmt.Errorf("set %s: %w", name, err)
	}
	return nil
}

func (t *Tracer) attach() error {
	for _, h := range hookTable {
		prog, ok := t.coll.Programs[h.prog]
		if !ok {
			return fmt.Errorf("attach %s/%s: program %s not loaded", h.group, h.name, h.prog)
		}
		l, err := link.Tracepoint(h.group, h.name, prog, nil)
		if err != nil {
			return fmt.Errorf("attach program %s to tracepoint %s/%s: %w", h.prog, h.group, h.name, err)
		}
		t.links = append(t.links, l)
	}
	for _, name := range btfHooks {
		prog, ok := t.coll.Programs[name]
		if !ok {
			return fmt.Errorf("attach %s: program not loaded", name)
		}
		l, err := link.AttachTracing(link.TracingOptions{Program: prog})
		if err != nil {
			return fmt.Errorf("attach tp_btf program %s: %w", name, err)
		}
		t.links = append(t.links, l)
	}
	return nil
}

// Close detaches all hooks and releases the kernel objects. A concurrent
// Run returns once the reader is closed.
func (t *Tracer) Close() error {
	var errs []error
	if t.reader != nil {
		errs = append(errs, t.reader.Close())
	}
	for i := len(t.links) - 1; i >= 0; i-- {
		errs = append(errs, t.links[i].Close())
	}
	t.links = nil
	if t.coll != nil {
		t.coll.Close()
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close socket tracer: %w", err)
	}
	return nil
}

// ExcludePID stops tracing a process (tgid) from now on.
func (t *Tracer) ExcludePID(pid uint32) error {
	if err := t.maps.excludedPIDs.Put(pid, uint8(1)); err != nil {
		return fmt.Errorf("exclude pid %d: %w", pid, err)
	}
	return nil
}

// ensureTracefs mounts tracefs at /sys/kernel/tracing unless a tracefs is
// already reachable there or under debugfs: tracepoint attachment reads
// event ids from it.
func ensureTracefs(log *slog.Logger) error {
	const dir = "/sys/kernel/tracing"
	for _, p := range []string{dir, "/sys/kernel/debug/tracing"} {
		var st unix.Statfs_t
		if err := unix.Statfs(p, &st); err == nil && st.Type == unix.TRACEFS_MAGIC {
			return nil
		}
	}
	if err := unix.Mount("tracefs", dir, "tracefs", 0, ""); err != nil {
		return fmt.Errorf("tracefs is not mounted and mounting it failed "+
			"(try: mount -t tracefs tracefs %s): %w", dir, err)
	}
	log.Info("mounted tracefs", "path", dir)
	return nil
}

// l7Skip mirrors L7_SKIP in bpf/socket_trace.h.
const l7Skip = 2

// SkipSocket tells the kernel to stop sending data events for the socket
// (capture.Segment.Socket): user space found no parser for it. The socket's
// close is still reported; a new connection on the same socket starts
// afresh. A socket the kernel no longer tracks is not an error.
func (t *Tracer) SkipSocket(sock uint64) error {
	var st socketTraceSockState
	if err := t.maps.sockStates.Lookup(sock, &st); err != nil {
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return nil
		}
		return fmt.Errorf("socktrace: look up socket state: %w", err)
	}
	// Only l7_state changes; a racing cap_seq increment is lost, which does
	// not matter: a skipped socket sends no more data events.
	st.L7State = l7Skip
	if err := t.maps.sockStates.Update(sock, &st, ebpf.UpdateExist); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("socktrace: skip socket: %w", err)
	}
	return nil
}

// SkipTLS tells the kernel to stop sending the socket's TLS plaintext: user
// space found no parser for it. A new connection on the socket starts afresh.
func (t *Tracer) SkipTLS(sock uint64) error {
	var st socketTraceSockState
	if err := t.maps.sockStates.Lookup(sock, &st); err != nil {
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return nil
		}
		return fmt.Errorf("socktrace: look up socket state: %w", err)
	}
	st.TlsSkip = 1
	if err := t.maps.sockStates.Update(sock, &st, ebpf.UpdateExist); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("socktrace: skip tls socket: %w", err)
	}
	return nil
}

// SetSocketRole records which side of a connection this socket is, for a
// socket whose connect or accept the tracer did not see (a connection older
// than the agent): user space learned it from the protocol. The kernel uses
// it to keep a thread's syscall_trace_id across the replies to its own calls.
func (t *Tracer) SetSocketRole(sock uint64, role Role) error {
	if err := t.maps.sockRoles.Put(sock, uint8(role)); err != nil {
		return fmt.Errorf("socktrace: set socket role: %w", err)
	}
	return nil
}

// GoProc tells the kernel where the goroutine probes find their fields in one
// Go process (agent/goinfo reads them from the binary). The zero GoProc
// registers a Go process whose goroutines are not tracked: its events then
// carry no syscall_trace_id, since thread-level ids are wrong for goroutines.
type GoProc struct {
	GoidOffset     uint32 // runtime.g.goid
	ElemsizeOffset uint32 // runtime.hchan.elemsize
	ScaseSize      uint32 // sizeof(runtime.scase)
	ScaseElem      uint32 // offset of runtime.scase.elem
}

// RegisterGoProcess makes the kernel key trace state by goroutine for pid and
// lets the goroutine probes act for it.
func (t *Tracer) RegisterGoProcess(pid uint32, p GoProc) error {
	v := socketTraceGoProc{GoidOff: p.GoidOffset, ElemsizeOff: p.ElemsizeOffset, ScaseSize: p.ScaseSize, ScaseElem: p.ScaseElem}
	if err := t.maps.goProcs.Put(pid, &v); err != nil {
		return fmt.Errorf("socktrace: register go process %d: %w", pid, err)
	}
	return nil
}

// UnregisterGoProcess forgets pid (it exited). Unknown pids are not an error.
func (t *Tracer) UnregisterGoProcess(pid uint32) error {
	if err := t.maps.goProcs.Delete(pid); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("socktrace: unregister go process %d: %w", pid, err)
	}
	return nil
}

// GoProbes are the file offsets (as link.UprobeOptions.Address expects) of the
// Go runtime functions the goroutine probes watch in one binary. Returns are
// the offsets of their RET instructions: Go binaries never get uretprobes.
type GoProbes struct {
	Newproc1, Goexit1, Chansend, Chanrecv, Selectgo   uint64
	Newproc1Returns, ChanrecvReturns, SelectgoReturns []uint64
}

// AttachGo puts the goroutine probes on the Go binary at path, for every
// process running it. Close the returned closer to detach them. Nothing
// stays attached when an error is returned.
func (t *Tracer) AttachGo(path string, p GoProbes) (io.Closer, error) {
	ex, err := link.OpenExecutable(path)
	if err != nil {
		return nil, fmt.Errorf("socktrace: open %s: %w", path, err)
	}
	var ls multiLink
	add := func(progName string, addrs ...uint64) error {
		prog, ok := t.coll.Programs[progName]
		if !ok {
			return fmt.Errorf("socktrace: program %s not loaded", progName)
		}
		for _, a := range addrs {
			l, err := ex.Uprobe("", prog, &link.UprobeOptions{Address: a})
			if err != nil {
				return fmt.Errorf("socktrace: uprobe %s at %#x in %s: %w", progName, a, path, err)
			}
			ls = append(ls, l)
		}
		return nil
	}
	steps := []struct {
		prog  string
		addrs []uint64
	}{
		{"go_newproc1", []uint64{p.Newproc1}}, // names also in goProbeNames
		{"go_newproc1_ret", p.Newproc1Returns},
		{"go_goexit1", []uint64{p.Goexit1}},
		{"go_chansend", []uint64{p.Chansend}},
		{"go_chanrecv", []uint64{p.Chanrecv}},
		{"go_recv_ret", append(append([]uint64(nil), p.ChanrecvReturns...), p.SelectgoReturns...)},
		{"go_selectgo", []uint64{p.Selectgo}},
	}
	for _, s := range steps {
		if len(s.addrs) == 0 || s.addrs[0] == 0 {
			ls.Close()
			return nil, fmt.Errorf("socktrace: %s: no address in %s", s.prog, path)
		}
		if err := add(s.prog, s.addrs...); err != nil {
			ls.Close()
			return nil, err
		}
	}
	return ls, nil
}

// goProbeNames lists the uprobe programs AttachGo attaches (a test checks
// every uprobe program of the object is among them).
const goProbeNames = "go_newproc1 go_newproc1_ret go_goexit1 go_chansend go_chanrecv go_recv_ret go_selectgo"

// multiLink closes a set of links together.
type multiLink []link.Link

func (m multiLink) Close() error {
	var errs []error
	for _, l := range m {
		errs = append(errs, l.Close())
	}
	return errors.Join(errs...)
}

// tlsProbeNames lists the uprobe programs AttachSSL and AttachGoTLS attach.
const tlsProbeNames = "ssl_enter ssl_return go_tls_enter go_tls_return"

// SSLProbes are the file offsets (as link.UprobeOptions.Address expects) of
// the OpenSSL API functions in one ELF file: a shared libssl (OpenSSL 1.1/3,
// LibreSSL, BoringSSL) or an executable that links one statically. 0 means
// the file has no such function; Read and Write are required.
type SSLProbes struct {
	Read, Write, ReadEx, WriteEx uint64
}

// Kinds of TLS call, passed to the kernel as the uprobe's cookie (mirrors
// enum tls_kind in bpf/socket_trace.h).
const (
	tlsKindSSLRead    = 1
	tlsKindSSLWrite   = 2
	tlsKindSSLReadEx  = 3
	tlsKindSSLWriteEx = 4
)

// AttachSSL puts the TLS plaintext probes on the OpenSSL API functions of the
// ELF file at path (entry and return probes: this is C code), for every
// process that maps it. Close the returned closer to detach them. Nothing
// stays attached when an error is returned.
func (t *Tracer) AttachSSL(path string, p SSLProbes) (io.Closer, error) {
	if p.Read == 0 || p.Write == 0 {
		return nil, fmt.Errorf("socktrace: %s: SSL_read and SSL_write are required", path)
	}
	ex, err := link.OpenExecutable(path)
	if err != nil {
		return nil, fmt.Errorf("socktrace: open %s: %w", path, err)
	}
	entry, ret := t.coll.Programs["ssl_enter"], t.coll.Programs["ssl_return"]
	if entry == nil || ret == nil {
		return nil, errors.New("socktrace: TLS probes not loaded (Config.DisableTLS?)")
	}
	var ls multiLink
	for _, f := range []struct {
		off  uint64
		kind uint64
	}{{p.Read, tlsKindSSLRead}, {p.Write, tlsKindSSLWrite}, {p.ReadEx, tlsKindSSLReadEx}, {p.WriteEx, tlsKindSSLWriteEx}} {
		if f.off == 0 {
			continue
		}
		l, err := ex.Uprobe("", entry, &link.UprobeOptions{Address: f.off, Cookie: f.kind})
		if err != nil {
			ls.Close()
			return nil, fmt.Errorf("socktrace: uprobe at %#x in %s: %w", f.off, path, err)
		}
		ls = append(ls, l)
		l, err = ex.Uretprobe("", ret, &link.UprobeOptions{Address: f.off})
		if err != nil {
			ls.Close()
			return nil, fmt.Errorf("socktrace: uretprobe at %#x in %s: %w", f.off, path, err)
		}
		ls = append(ls, l)
	}
	return ls, nil
}

// GoTLSProbes locate crypto/tls.(*Conn).Read and Write in one Go executable:
// entry and RET-instruction file offsets (Go binaries never get uretprobes),
// and the struct offsets (agent/goinfo.Offsets) that lead from a *tls.Conn
// to its file descriptor and to its read buffers.
type GoTLSProbes struct {
	Read, Write                                uint64
	ReadReturns, WriteReturns                  []uint64
	ConnConn, NetConnFD, NetFDPfd, PollFDSysfd uint64
	// RawInput and Input are crypto/tls.Conn.rawInput and .input (0: not
	// known; reads then take their TCP sequence from syscalls only).
	// BytesBufferOff and BytesReaderI must be 24 when known, as the probes
	// assume (stable since Go 1.0).
	RawInput, Input, BytesBufferOff, BytesReaderI uint64
}

// goTLSCookie packs the struct offsets into the uprobe cookie, so the probes
// need no per-process registration (layout in bpf/socket_trace.c,
// go_tls_enter).
func goTLSCookie(p GoTLSProbes, write bool) (uint64, error) {
	for _, f := range []struct {
		name string
		v    uint64
		bits uint
	}{{"conn", p.ConnConn, 12}, {"net.conn.fd", p.NetConnFD, 8}, {"netFD.pfd", p.NetFDPfd, 8},
		{"poll.FD.Sysfd", p.PollFDSysfd, 8}, {"rawInput", p.RawInput, 12}, {"input", p.Input, 12}} {
		if f.v >= 1<<f.bits {
			return 0, fmt.Errorf("socktrace: go tls offset %s = %d does not fit %d bits", f.name, f.v, f.bits)
		}
	}
	for _, v := range []uint64{p.BytesBufferOff, p.BytesReaderI} {
		if v != 0 && v != 24 {
			return 0, fmt.Errorf("socktrace: bytes.Buffer.off/bytes.Reader.i at %d, the probes expect 24", v)
		}
	}
	c := p.ConnConn | p.NetConnFD<<12 | p.NetFDPfd<<20 | p.PollFDSysfd<<28 | p.RawInput<<36 | p.Input<<48
	if write {
		c |= 1 << 63
	}
	return c, nil
}

// AttachGoTLS puts the TLS plaintext probes on crypto/tls in the Go executable
// at path, for every process running it. Close the returned closer to detach
// them. Nothing stays attached when an error is returned.
func (t *Tracer) AttachGoTLS(path string, p GoTLSProbes) (io.Closer, error) {
	if p.Read == 0 || p.Write == 0 || len(p.ReadReturns) == 0 || len(p.WriteReturns) == 0 {
		return nil, fmt.Errorf("socktrace: %s: crypto/tls Read and Write with their returns are required", path)
	}
	ex, err := link.OpenExecutable(path)
	if err != nil {
		return nil, fmt.Errorf("socktrace: open %s: %w", path, err)
	}
	entry, ret := t.coll.Programs["go_tls_enter"], t.coll.Programs["go_tls_return"]
	if entry == nil || ret == nil {
		return nil, errors.New("socktrace: TLS probes not loaded (Config.DisableTLS?)")
	}
	var ls multiLink
	for _, f := range []struct {
		off     uint64
		returns []uint64
		write   bool
	}{{p.Read, p.ReadReturns, false}, {p.Write, p.WriteReturns, true}} {
		cookie, err := goTLSCookie(p, f.write)
		if err != nil {
			return nil, err
		}
		l, err := ex.Uprobe("", entry, &link.UprobeOptions{Address: f.off, Cookie: cookie})
		if err != nil {
			ls.Close()
			return nil, fmt.Errorf("socktrace: uprobe at %#x in %s: %w", f.off, path, err)
		}
		ls = append(ls, l)
		for _, r := range f.returns {
			l, err := ex.Uprobe("", ret, &link.UprobeOptions{Address: r})
			if err != nil {
				ls.Close()
				return nil, fmt.Errorf("socktrace: return uprobe at %#x in %s: %w", r, path, err)
			}
			ls = append(ls, l)
		}
	}
	return ls, nil
}

// AllowTLS lets pid's TLS calls produce plaintext events when the tracer was
// built with Config.TLSFilter (only chosen processes are decrypted).
func (t *Tracer) AllowTLS(pid uint32) error {
	if err := t.maps.tlsPIDs.Put(pid, uint8(1)); err != nil {
		return fmt.Errorf("socktrace: allow tls for pid %d: %w", pid, err)
	}
	return nil
}

// DisallowTLS forgets pid (it exited or no longer matches). Unknown pids are
// not an error.
func (t *Tracer) DisallowTLS(pid uint32) error {
	if err := t.maps.tlsPIDs.Delete(pid); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("socktrace: disallow tls for pid %d: %w", pid, err)
	}
	return nil
}
