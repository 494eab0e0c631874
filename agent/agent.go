// Package agent is the live capture pipeline on one host: the eBPF socket
// tracer feeds the session layer, rows are enriched with process identity and
// handed to the wire shipper. Nothing here ever blocks the traced processes:
// a slow consumer fills the kernel ring buffer (counted drops) and a slow
// server fills the shipper's queue (counted drops).
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"regexp"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/sightline-io/sightline/agent/capture"
	"github.com/sightline-io/sightline/agent/capture/afpacket"
	"github.com/sightline-io/sightline/agent/capture/netcap"
	"github.com/sightline-io/sightline/agent/capture/socktrace"
	"github.com/sightline-io/sightline/agent/capture/tcpevents"
	"github.com/sightline-io/sightline/agent/gotrack"
	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/agent/procinfo"
	"github.com/sightline-io/sightline/agent/reorder"
	"github.com/sightline-io/sightline/agent/session"
	"github.com/sightline-io/sightline/agent/tlstrack"
	"github.com/sightline-io/sightline/flowlog"
	"github.com/sightline-io/sightline/internal/promstats"
	"github.com/sightline-io/sightline/packet/decode"
	"github.com/sightline-io/sightline/packet/flow"
	"github.com/sightline-io/sightline/wire"
)

// Config configures an Agent.
type Config struct {
	// Server is the gRPC address of the Sightline server (host:port).
	Server string
	// AgentID names this agent in every row (default: host name).
	AgentID string
	// Host is the host column (default: host name).
	Host string
	// MaxPayload is how many bytes of each syscall's payload are captured (default 1024, max 16384).
	MaxPayload int
	// RingBufferBytes sizes the kernel→user ring buffer (default 8 MiB).
	RingBufferBytes int
	// ExcludePIDs are never traced; the agent's own process is always excluded.
	ExcludePIDs []uint32
	// MaxRowsPerSecond caps the rows shipped per second (0: no cap). Rows
	// beyond it are dropped before shipping and counted, so a traffic spike
	// costs parsing only, not shipping and storage; the same knob as
	// DeepFlow's l7_log_collect_nps_threshold.
	MaxRowsPerSecond int
	// ReorderWindow is how long events are held so that a late one (a
	// write whose exit ran after the peer's answer was read) can be put
	// back in causal order (default 20 ms; see package reorder).
	ReorderWindow time.Duration
	// ExpireEvery is how often pending requests are checked for timeouts (default 1 s).
	ExpireEvery time.Duration
	// Protocols are the parsers, in inference order (required; the CLI
	// builds them with agent/l7/registry from the user's settings).
	Protocols []l7.Protocol
	// Sink, when set, receives every row instead of the wire shipper, and
	// Server is not needed: for running the agent in-process with a
	// consumer of its own (tests, and later `up`). It runs on the capture
	// goroutine and must not block.
	Sink func(*flowlog.L7FlowLog)
	// Packets configures packet capture (flows and, optionally, L7 rows
	// from the network). Packets.Disable turns it off.
	Packets PacketConfig
	// L4Sink, when set (with Sink), receives l4_flow_log rows instead of
	// the shipper.
	L4Sink func(*flowlog.L4FlowLog)
	// DisableTCPEvents turns off the TCP lifecycle tracer (connects, failed
	// connects, retransmits and resets per process, on /metrics).
	DisableTCPEvents bool
	// DisableGoTracking turns off goroutine tracking (uprobes on the Go
	// runtime of every Go process). Go processes are still found, and get
	// no syscall_trace_ids: thread-level ids are wrong for goroutines.
	DisableGoTracking bool
	// DisableTLS turns off TLS plaintext capture (uprobes on OpenSSL-API
	// libraries and Go crypto/tls): the kill switch.
	DisableTLS bool
	// TLSProcesses, when set, limits TLS plaintext capture to processes
	// whose comm or executable path matches (nil: every process).
	TLSProcesses *regexp.Regexp
	// Registerer receives the agent's metrics (nil: none).
	Registerer prometheus.Registerer
	Logger     *slog.Logger
}

// PacketConfig configures the agent's packet capture.
type PacketConfig struct {
	// Disable turns packet capture off (no l4_flow_log rows).
	Disable bool
	// Interfaces to capture on (nil: every up interface, loopback
	// included, re-scanned as interfaces come and go).
	Interfaces []string
	// SnapLen is the bytes kept of each frame (default 256 for flows only,
	// 1024 with L7).
	SnapLen int
	// L7 also parses the captured packets into l7_flow_log rows
	// (signal_source 0, observation_point c/s/local). Off by default: the
	// eBPF rows of the same requests would be counted twice.
	L7 bool
	// ReportEvery is the l4_flow_log period (default 60 s).
	ReportEvery time.Duration
}

// releaseEvery is how often held events are released when the ring is quiet.
const releaseEvery = 25 * time.Millisecond

// Agent runs the capture pipeline until its context ends.
type Agent struct {
	cfg      Config
	log      *slog.Logger
	tracer   *socktrace.Tracer
	tcp      *tcpevents.Tracer // nil when disabled
	goTrack  *gotrack.Tracker
	tlsTrack *tlstrack.Tracker // nil when TLS capture is off
	packets  *afpacket.Capture // nil when disabled
	netPipe  *netcap.Pipeline
	flows    *flow.Table
	owners   *owners
	flowMet  *flowMetrics
	// local knows this host's addresses, to name the observation point of
	// rows built from packets; refreshed by the packet goroutine.
	local        netcap.LocalAddrs
	localFetched time.Time
	tcpSeen      *tcpevents.Counters
	shipper      *wire.Shipper
	procs        *procinfo.Resolver

	// mu serialises the session Assembler: the ring-buffer reader feeds it and
	// the expiry ticker expires it.
	mu    sync.Mutex
	asm   *session.Assembler
	order *reorder.Buffer
	// rowLimit is nil without a cap; used under mu.
	rowLimit *rate.Limiter
	stats    agentStats
}

// Stats are the agent's own counters (exported as sightline_agent_*).
type Stats struct {
	RowsShipped   uint64 // rows handed to the shipper
	RowsThrottled uint64 // rows dropped by MaxRowsPerSecond
	// SocketsSkipped counts TCP sockets no parser claimed, which the
	// kernel was told to stop sending; SkipErrors the failures to tell it.
	SocketsSkipped uint64
	SkipErrors     uint64
	RoleErrors     uint64 // socket roles user space could not pass to the kernel
	L4Rows         uint64 // l4_flow_log rows produced by the flow table
}

type agentStats struct {
	rowsShipped, rowsThrottled             atomic.Uint64
	socketsSkipped, skipErrors, roleErrors atomic.Uint64
	l4Rows                                 atomic.Uint64
}

// Stats returns the agent's counters.
func (a *Agent) Stats() Stats {
	return Stats{
		RowsShipped:    a.stats.rowsShipped.Load(),
		RowsThrottled:  a.stats.rowsThrottled.Load(),
		SocketsSkipped: a.stats.socketsSkipped.Load(),
		SkipErrors:     a.stats.skipErrors.Load(),
		RoleErrors:     a.stats.roleErrors.Load(),
		L4Rows:         a.stats.l4Rows.Load(),
	}
}

// New loads and attaches the eBPF programs and connects the shipper. The
// caller must call Run (which releases everything when it returns).
func New(cfg Config) (*Agent, error) {
	if cfg.Server == "" && cfg.Sink == nil {
		return nil, errors.New("agent: no server address")
	}
	if len(cfg.Protocols) == 0 {
		return nil, errors.New("agent: no protocols to parse")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.ExpireEvery <= 0 {
		cfg.ExpireEvery = time.Second
	}
	hostname, _ := os.Hostname()
	if cfg.Host == "" {
		cfg.Host = hostname
	}
	if cfg.AgentID == "" {
		cfg.AgentID = cfg.Host
	}
	a := &Agent{cfg: cfg, log: cfg.Logger, procs: procinfo.New(procinfo.Options{})}
	if cfg.MaxRowsPerSecond < 0 {
		return nil, fmt.Errorf("agent: max rows per second %d: must be 0 (no cap) or more", cfg.MaxRowsPerSecond)
	}
	if cfg.MaxRowsPerSecond > 0 {
		// A burst of one second's budget: short spikes pass whole.
		a.rowLimit = rate.NewLimiter(rate.Limit(cfg.MaxRowsPerSecond), cfg.MaxRowsPerSecond)
	}
	if cfg.Sink == nil {
		shipper, err := wire.NewShipper(cfg.Server, wire.ShipperOptions{
			AgentID:    cfg.AgentID,
			Registerer: cfg.Registerer,
			Logger:     cfg.Logger,
		})
		if err != nil {
			return nil, fmt.Errorf("agent: shipper: %w", err)
		}
		a.shipper = shipper
	}
	a.asm = session.New(session.Config{
		Protocols: cfg.Protocols,
		AgentID:   cfg.AgentID,
		Host:      cfg.Host,
		Logger:    cfg.Logger,
		Verdict:   a.verdict,
		Role:      a.socketRole,
	}, a.emit)

	a.order = reorder.New(reorder.Config{Window: cfg.ReorderWindow}, sessionSink{a.asm})

	tracer, err := socktrace.New(socktrace.Config{
		MaxPayload:      cfg.MaxPayload,
		RingBufferBytes: cfg.RingBufferBytes,
		ExcludeSelf:     true,
		ExcludePIDs:     cfg.ExcludePIDs,
		DisableTLS:      cfg.DisableTLS,
		TLSFilter:       cfg.TLSProcesses != nil,
	})
	if err != nil {
		a.release()
		return nil, fmt.Errorf("agent: socket tracer: %w", err)
	}
	a.tracer = tracer
	if !cfg.DisableTCPEvents {
		tcp, err := tcpevents.New(tcpevents.Config{Logger: cfg.Logger})
		if err != nil {
			a.release()
			return nil, fmt.Errorf("agent: tcp events tracer: %w", err)
		}
		a.tcp, a.tcpSeen, a.owners = tcp, tcpevents.NewCounters(0), newOwners()
		if cfg.Registerer != nil {
			cfg.Registerer.MustRegister(tcpevents.NewCollector(a.tcpSeen, 0, tcp.Stats))
		}
	}
	a.goTrack = gotrack.New(a.tracer, gotrack.Config{Logger: cfg.Logger, ProbesOff: cfg.DisableGoTracking})
	if cfg.Registerer != nil {
		cfg.Registerer.MustRegister(promstats.New("sightline_agent_gotrack", func() any { return a.goTrack.Stats() }))
	}
	if !cfg.DisableTLS {
		a.tlsTrack = tlstrack.New(a.tracer, tlstrack.Config{Processes: cfg.TLSProcesses, Logger: cfg.Logger})
		if cfg.Registerer != nil {
			cfg.Registerer.MustRegister(promstats.New("sightline_agent_tlstrack", func() any { return a.tlsTrack.Stats() }))
		}
	}
	if !cfg.Packets.Disable {
		if err := a.openPackets(); err != nil {
			a.release()
			return nil, err
		}
	}
	if cfg.Registerer != nil {
		cfg.Registerer.MustRegister(
			promstats.New("sightline_agent_socktrace", func() any { return a.tracer.Stats() }),
			promstats.New("sightline_agent_session", func() any {
				a.mu.Lock()
				defer a.mu.Unlock()
				return a.asm.Stats()
			}),
			promstats.New("sightline_agent_procinfo", func() any { return a.procs.Stats() }),
			promstats.New("sightline_agent_reorder", func() any {
				a.mu.Lock()
				defer a.mu.Unlock()
				return a.order.Stats()
			}),
			promstats.New("sightline_agent", func() any { return a.Stats() }),
		)
	}
	return a, nil
}

// Run captures until ctx is done, then flushes pending sessions and queued
// rows (bounded by a shutdown timeout) and detaches from the kernel.
func (a *Agent) Run(ctx context.Context) error {
	defer a.tracer.Close()
	tcpDone := make(chan struct{})
	defer func() { <-tcpDone }() // after the Close below: Close ends Run
	if a.tcp != nil {
		defer a.tcp.Close()
		go func() {
			defer close(tcpDone)
			if err := a.tcp.Run(ctx, func(e *tcpevents.Event) {
				a.tcpSeen.Add(e)
				a.owners.observe(e)
			}); err != nil {
				a.log.Warn("agent: tcp events tracer stopped", "err", err)
			}
		}()
	} else {
		close(tcpDone)
	}
	if a.goTrack != nil {
		goCtx, stopGo := context.WithCancel(ctx)
		goDone := make(chan struct{})
		// Probes come off before the tracer closes (defers run last first).
		defer func() { stopGo(); <-goDone }()
		go func() {
			defer close(goDone)
			if err := a.goTrack.Run(goCtx); err != nil {
				a.log.Warn("agent: goroutine tracking stopped", "err", err)
			}
		}()
	}
	if a.tlsTrack != nil {
		tlsCtx, stopTLS := context.WithCancel(ctx)
		tlsDone := make(chan struct{})
		// Probes come off before the tracer closes (defers run last first).
		defer func() { stopTLS(); <-tlsDone }()
		go func() {
			defer close(tlsDone)
			if err := a.tlsTrack.Run(tlsCtx); err != nil {
				a.log.Warn("agent: tls tracking stopped", "err", err)
			}
		}()
	}
	packetsDone := make(chan struct{})
	defer func() { <-packetsDone }() // after the Close below: Close ends Run
	if a.packets != nil {
		defer a.packets.Close()
		go func() {
			defer close(packetsDone)
			if err := a.netPipe.Run(ctx, a.packets); err != nil && !errors.Is(err, context.Canceled) {
				a.log.Warn("agent: packet capture stopped", "err", err)
			}
			a.flows.FlushAll(time.Now())
		}()
	} else {
		close(packetsDone)
	}
	shipCtx, stopShip := context.WithCancel(context.Background())
	shipDone := make(chan struct{})
	go func() {
		defer close(shipDone)
		if a.shipper != nil {
			a.shipper.Run(shipCtx)
		}
	}()

	tick := time.NewTicker(a.cfg.ExpireEvery)
	defer tick.Stop()
	// Held events are released as newer ones arrive; this ticker releases
	// them when the ring is quiet.
	releaseTick := time.NewTicker(releaseEvery)
	defer releaseTick.Stop()
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-releaseTick.C:
				a.mu.Lock()
				a.order.Release(now)
				a.mu.Unlock()
			case now := <-tick.C:
				a.mu.Lock()
				a.order.Release(now)
				a.asm.Expire(now)
				a.mu.Unlock()
			}
		}
	}()

	a.log.Info("agent capturing", "server", a.cfg.Server, "agent_id", a.cfg.AgentID)
	err := a.tracer.Run(ctx, handler{a})
	if errors.Is(err, context.Canceled) {
		err = nil
	}

	// Shutdown: everything pending becomes rows, then the shipper drains.
	a.mu.Lock()
	a.order.Flush()
	a.asm.FlushAll(time.Now())
	a.mu.Unlock()
	if a.shipper != nil {
		flushCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if ferr := a.shipper.Flush(flushCtx); ferr != nil {
			a.log.Warn("agent: flush at shutdown incomplete", "err", ferr)
		}
	}
	stopShip()
	<-shipDone
	if a.shipper != nil {
		a.shipper.Close()
	}
	return err
}

// emit enriches a row with process identity and queues it for shipping.
// It runs under a.mu (called by the Assembler).
func (a *Agent) emit(row *flowlog.L7FlowLog) {
	if a.rowLimit != nil && !a.rowLimit.Allow() {
		a.stats.rowsThrottled.Add(1)
		return
	}
	if row.ProcessID0 != 0 {
		if info, ok := a.procs.Lookup(row.ProcessID0); ok {
			row.ContainerID0 = info.ContainerID
		}
	}
	if row.ProcessID1 != 0 {
		if info, ok := a.procs.Lookup(row.ProcessID1); ok {
			row.ContainerID1 = info.ContainerID
		}
	}
	a.stats.rowsShipped.Add(1)
	if a.cfg.Sink != nil {
		a.cfg.Sink(row)
		return
	}
	a.shipper.Enqueue(*row)
}

// verdict closes the loop of two-stage inference: a TCP socket that no
// parser claimed stops sending data events from the kernel, so unknown
// traffic costs a map lookup per syscall. UDP sockets are left alone: one
// unconnected socket serves many peers, and one peer's garbage must not
// silence the others. Runs under a.mu.
func (a *Agent) verdict(seg *capture.Segment, p l7.Protocol) {
	if p != nil || seg.Source != capture.SourceEBPF || seg.Tuple.L4 != 6 || seg.Socket == 0 || a.tracer == nil {
		return
	}
	skip := a.tracer.SkipSocket
	if seg.TLS {
		// Only the plaintext stream: the ciphertext is skipped already.
		skip = a.tracer.SkipTLS
	}
	if err := skip(seg.Socket); err != nil {
		a.stats.skipErrors.Add(1)
		return
	}
	a.stats.socketsSkipped.Add(1)
}

// GoProbed reports whether the Go process pid runs with goroutine probes on
// (its calls then carry the ids of the requests that caused them).
func (a *Agent) GoProbed(pid uint32) bool { return a.goTrack.Probed(pid) }

// TLSCovered reports whether a TLS library of process pid is probed, so its
// TLS traffic comes out as plaintext rows.
func (a *Agent) TLSCovered(pid uint32) bool { return a.tlsTrack != nil && a.tlsTrack.Covered(pid) }

// TLSCoverage serves which processes' TLS is decrypted, and why not (JSON,
// GET /debug/tls); 404 when TLS capture is off.
func (a *Agent) TLSCoverage() http.Handler {
	if a.tlsTrack == nil {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "TLS plaintext capture is off (--no-tls)", http.StatusNotFound)
		})
	}
	return a.tlsTrack.Handler()
}

// socketRole tells the kernel which side a socket is once a row shows it,
// so replies on connections older than the agent keep the thread's
// syscall_trace_id. Runs under a.mu.
func (a *Agent) socketRole(sock uint64, client bool) {
	if a.tracer == nil {
		return
	}
	role := socktrace.RoleServer
	if client {
		role = socktrace.RoleClient
	}
	if err := a.tracer.SetSocketRole(sock, role); err != nil {
		a.stats.roleErrors.Add(1)
	}
}

// handler adapts the Agent to socktrace.Handler.
type handler struct{ a *Agent }

func (h handler) Segment(seg *capture.Segment) {
	h.a.mu.Lock()
	h.a.order.Segment(seg)
	h.a.mu.Unlock()
}

func (h handler) Closed(c capture.Closed) {
	h.a.mu.Lock()
	h.a.order.Closed(c)
	h.a.mu.Unlock()
}

func (h handler) ConnOpened(socktrace.ConnInfo) {}

func (h handler) ProcessExec(pid uint32) {
	h.a.procs.Invalidate(pid)
	if h.a.goTrack != nil {
		h.a.goTrack.ProcessExec(pid)
	}
	if h.a.tlsTrack != nil {
		h.a.tlsTrack.ProcessExec(pid)
	}
}

// ProcessFork lets TLS tracking cover a forked child (nginx workers) at once:
// it maps its parent's libraries.
func (h handler) ProcessFork(_, child uint32) {
	if h.a.tlsTrack != nil {
		h.a.tlsTrack.ProcessExec(child)
	}
}

func (h handler) ProcessExit(pid uint32) {
	h.a.procs.Forget(pid)
	if h.a.goTrack != nil {
		h.a.goTrack.ProcessExit(pid)
	}
	if h.a.tlsTrack != nil {
		h.a.tlsTrack.ProcessExit(pid)
	}
	if h.a.tcpSeen != nil {
		h.a.tcpSeen.Retire(pid)
	}
}

// sessionSink hands reordered events to the session Assembler.
type sessionSink struct{ asm *session.Assembler }

func (s sessionSink) Segment(seg *capture.Segment) { s.asm.Feed(seg) }
func (s sessionSink) Closed(c capture.Closed)      { s.asm.CloseConn(c) }

// release closes what a failed New had opened.
func (a *Agent) release() {
	if a.packets != nil {
		a.packets.Close()
	}
	if a.tcp != nil {
		a.tcp.Close()
	}
	if a.tracer != nil {
		a.tracer.Close()
	}
	if a.shipper != nil {
		a.shipper.Close()
	}
}

// openPackets opens the packet capture and the flow table (and, with
// Packets.L7, a session Assembler of its own for network L7 rows).
func (a *Agent) openPackets() error {
	pc := a.cfg.Packets
	snap := pc.SnapLen
	if snap <= 0 {
		snap = 256
		if pc.L7 {
			snap = 1024
		}
	}
	capt, err := afpacket.Open(afpacket.Config{Interfaces: pc.Interfaces, SnapLen: snap, Filter: true})
	if err != nil {
		return fmt.Errorf("agent: packet capture: %w", err)
	}
	a.flows = flow.New(flow.Config{ReportEvery: pc.ReportEvery, AgentID: a.cfg.AgentID, Host: a.cfg.Host}, a.emitL4)
	a.flowMet = newFlowMetrics(a.cfg.Registerer)
	var l7 netcap.L7Sink
	if pc.L7 {
		l7 = session.New(session.Config{
			Protocols: a.cfg.Protocols,
			AgentID:   a.cfg.AgentID,
			Host:      a.cfg.Host,
			Logger:    a.cfg.Logger,
		}, func(r *flowlog.L7FlowLog) {
			r.ObservationPoint = a.observationPoint(r.IP0, r.IP1)
			a.mu.Lock()
			a.emit(r)
			a.mu.Unlock()
		})
	}
	a.packets = capt
	a.netPipe = netcap.New(netcap.Config{}, flowSink{a.flows}, l7)
	if a.cfg.Registerer != nil {
		a.cfg.Registerer.MustRegister(
			promstats.New("sightline_agent_packets", func() any { return capt.Stats() }),
			promstats.New("sightline_agent_netcap", func() any { return a.netPipe.Stats() }),
		)
	}
	return nil
}

// emitL4 ships an l4_flow_log row. It runs on the packet goroutine; the row
// is reused by the flow table after the call.
func (a *Agent) emitL4(r *flowlog.L4FlowLog) {
	a.stats.l4Rows.Add(1)
	r.ObservationPoint = a.observationPoint(r.IP0, r.IP1)
	if a.owners != nil {
		a.owners.attribute(r)
	}
	a.flowMet.observe(r)
	if a.cfg.L4Sink != nil {
		a.cfg.L4Sink(r)
		return
	}
	if a.shipper != nil {
		a.shipper.EnqueueL4(*r)
	}
}

// observationPoint names where a packet row was seen from which of its ends
// are this host's addresses: live capture knows them, so it need not guess
// from TTLs as replay does (packets between namespaces of one host keep
// their initial TTL). Runs on the packet goroutine.
func (a *Agent) observationPoint(client, server netip.Addr) string {
	if now := time.Now(); now.Sub(a.localFetched) > localAddrsRefresh {
		a.localFetched = now
		if err := a.local.Refresh(); err != nil {
			a.log.Warn("agent: read local addresses", "err", err)
		}
	}
	return netcap.ObservationPoint(a.local.Contains(client), a.local.Contains(server))
}

// localAddrsRefresh is how often this host's addresses are re-read.
const localAddrsRefresh = 10 * time.Second

// flowSink adapts the flow table to netcap (Expire is its Tick).
type flowSink struct{ t *flow.Table }

func (f flowSink) Packet(p *decode.Packet, ts time.Time, frameLen int) { f.t.Packet(p, ts, frameLen) }
func (f flowSink) Expire(now time.Time)                                { f.t.Tick(now) }
