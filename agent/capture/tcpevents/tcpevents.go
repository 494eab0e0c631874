// Package tcpevents reports TCP lifecycle events (connect attempts and
// their outcome, server-side establishment, close, retransmissions, resets
// sent and received) from BTF-typed kernel tracepoints, attributed to the
// owning process where the kernel side could learn it.
//
// The kernel side is bpf/tcp_events.c (tp_btf programs only: no kprobes,
// no tracefs needed). Attribution (Event.Owner): client sockets to the
// task that called connect(); accepted sockets to the task that called
// listen() on that port in that network namespace (the parent, for
// prefork servers); listeners to their listen() caller. Not attributed
// (PID 0): sockets that existed before the tracer started, and resets sent
// for packets matching no socket (closed ports). tcp:tcp_probe (cwnd/srtt)
// is not hooked: it fires per ACK. ConnectStart carries local port 0 (the
// kernel picks it after the SYN_SENT transition).
//
// Counters aggregates events per process and endpoint; Collector exports
// them to Prometheus with bounded label cardinality.
package tcpevents

import (
	"errors"
	"fmt"
	"log/slog"
	"math/bits"
	"os"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/cilium/ebpf/rlimit"

	"github.com/sightline-io/sightline/agent/capture/bpfevent"
)

const (
	// DefaultRingBufferBytes sizes the ring buffer (about 10k events).
	DefaultRingBufferBytes = 1 << 20
	// DefaultPollInterval bounds how long an event waits in the ring
	// buffer below Config.WakeupBytes.
	DefaultPollInterval = 100 * time.Millisecond
)

// Config configures a Tracer. The zero value is usable.
type Config struct {
	// RingBufferBytes: a power of two, at least a page (0 = default).
	RingBufferBytes int
	// WakeupBytes: the kernel wakes the reader once this much waits;
	// below it the reader polls every PollInterval.
	// 0 = RingBufferBytes/16; negative = wake per event.
	WakeupBytes int
	// PollInterval (0 = DefaultPollInterval).
	PollInterval time.Duration
	// Logger receives diagnostics; nil means slog.Default().
	Logger *slog.Logger
}

func (c Config) withDefaults() (Config, error) {
	if c.RingBufferBytes == 0 {
		c.RingBufferBytes = DefaultRingBufferBytes
	}
	if c.RingBufferBytes < os.Getpagesize() || bits.OnesCount(uint(c.RingBufferBytes)) != 1 {
		return c, fmt.Errorf("ring buffer size %d: must be a power of two of at least %d",
			c.RingBufferBytes, os.Getpagesize())
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
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c, nil
}

// Programs of bpf/tcp_events.c, each a tp_btf program attached to the
// tracepoint in its section name.
var programNames = []string{"on_set_state", "on_retransmit", "on_send_reset", "on_receive_reset", "on_destroy_sock"}

// Tracer owns the loaded programs, their links and the ring buffer reader.
type Tracer struct {
	cfg    Config
	log    *slog.Logger
	coll   *ebpf.Collection
	events *ebpf.Map
	counts *ebpf.Map
	links  []link.Link
	reader *ringbuf.Reader
	clock  bpfevent.MonoClock
	stats  userStats
}

// New loads bpf/tcp_events.c and attaches its programs. It needs root
// (CAP_BPF + CAP_PERFMON) and a kernel with BTF (tp_btf programs).
func New(cfg Config) (*Tracer, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("tcpevents config: %w", err)
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("remove memlock rlimit: %w", err)
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
	rd, err := ringbuf.NewReader(t.events)
	if err != nil {
		t.Close()
		return nil, fmt.Errorf("open tcp events ring buffer: %w", err)
	}
	t.reader = rd
	return t, nil
}

func (t *Tracer) load() error {
	spec, err := loadTcpEvents()
	if err != nil {
		return fmt.Errorf("load tcp_events spec: %w", err)
	}
	v, ok := spec.Variables["wakeup_bytes"]
	if !ok {
		return errors.New("tcp_events spec has no variable wakeup_bytes")
	}
	if err := v.Set(uint64(t.cfg.WakeupBytes)); err != nil {
		return fmt.Errorf("set wakeup_bytes: %w", err)
	}
	rb, ok := spec.Maps["tcp_events"]
	if !ok {
		return errors.New("tcp_events spec has no tcp_events map")
	}
	rb.MaxEntries = uint32(t.cfg.RingBufferBytes)
	coll, err := ebpf.NewCollection(spec)
	if err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return fmt.Errorf("load tcp_events objects: %+v", ve)
		}
		return fmt.Errorf("load tcp_events objects: %w", err)
	}
	t.coll = coll
	t.events, t.counts = coll.Maps["tcp_events"], coll.Maps["tcp_counters"]
	if t.events == nil || t.counts == nil {
		return errors.New("tcp_events objects lack the tcp_events or tcp_counters map")
	}
	return nil
}

func (t *Tracer) attach() error {
	for _, name := range programNames {
		prog, ok := t.coll.Programs[name]
		if !ok {
			return fmt.Errorf("attach %s: program not loaded", name)
		}
		l, err := link.AttachTracing(link.TracingOptions{Program: prog})
		if err != nil {
			return fmt.Errorf("attach program %s: %w", name, err)
		}
		t.links = append(t.links, l)
	}
	return nil
}

// Programs returns the loaded programs by name (for bpf_stats benchmarks).
// They stay owned by the Tracer.
func (t *Tracer) Programs() map[string]*ebpf.Program {
	out := make(map[string]*ebpf.Program, len(programNames))
	for _, n := range programNames {
		out[n] = t.coll.Programs[n]
	}
	return out
}

// Close detaches the programs and releases the kernel objects; a
// concurrent Run returns.
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
		t.coll = nil
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close tcp events tracer: %w", err)
	}
	return nil
}
