// Package flow keeps the TCP/UDP flow table behind l4_flow_log: one entry per
// 5-tuple (both directions map to one flow), per-period counters, TCP
// handshake and close classification, and bounded memory.
//
// Direction. The client (_0, "tx") is decided on a flow's first packet:
//   - a SYN without ACK: its sender is the client;
//   - a SYN-ACK: its receiver is the client;
//   - anything else (a TCP flow met mid-stream, UDP): if exactly one port is
//     below 1024, that side is the server; else if one port is an ephemeral
//     port (>= 32768) and the other is not, the lower port is the server;
//     otherwise the sender of the first packet is the client.
//
// Metrics. Bytes count whole frames (frameLen). A segment with payload that
// starts below the highest sequence already sent in its direction is a
// retransmission (gap fills included: a capture cannot tell one from
// reordering), except a keepalive probe (one byte just below what the peer
// acknowledged); one that starts beyond it is out of order. SYNs and
// SYN-ACKs repeating their first sequence number are retrans_syn and
// retrans_synack. zero_win counts non-RST packets advertising window 0, by
// sender. rtt_server is SYN (the latest) → first SYN-ACK, rtt_client that
// SYN-ACK (the latest) → the client's ACK of it, rtt their sum. SRT runs from
// the first unacknowledged client data segment to the server ACK covering
// it; a client retransmission cancels the sample. ART runs from the last
// client data segment (or datagram) of a request to the first server data
// after it: one sample per request/response turn.
//
// Close types. Both FINs: Normal (a client RST after them, or after the
// server's FIN: Normal Client RST). RST from the server answering a SYN:
// Est. Server Direct RST; after its SYN-ACK, before the client's ACK: Est.
// Server Other RST; from the client in the handshake: Est. Client Other RST;
// after the handshake: Transfer Server RST / Transfer Client RST. A SYN with
// a new ISN on a tuple whose flow has not ended: the old flow closes as Est.
// Client Port Reuse and a new one starts (a repeated ISN is a retransmission).
// Timeouts as below. End of input (FlushAll) and eviction report an ended
// flow with its type, a live one as Force Report.
//
// Accept queue overflow (Transfer Server Queue Overflow): Linux with
// tcp_abort_on_overflow=0 drops the handshake's last ACK when the accept
// queue is full and retransmits its SYN-ACK; with a SYN cookie handshake it
// keeps no state, so nothing follows but the client's retransmissions. A
// flow whose server sent no data and either retransmitted its SYN-ACK after
// the client's ACK, or sent nothing after the handshake while the client
// retransmitted, closes (by timeout, RST or end of input) with this type; so
// does a server RST answering the handshake's ACK (tcp_abort_on_overflow=1).
//
// Reporting. Rows are emitted through the callback given to New; the row
// pointer is valid only during the call. Every live flow is reported once per
// ReportEvery period (close_type Force Report) at the aligned period
// boundaries, and once more when it closes. Each row carries the period's
// deltas; rtt is reported in the row of the period it was measured in. A
// period's row is cut when Tick passes its boundary, so packets between the
// boundary and that Tick count in the ending period. Rows are numbered (_id)
// from 1 in emission order.
//
// Timeouts (on the packets' clock, driven by Tick): handshake states
// HandshakeIdle (SYN unanswered: Est. Server SYN Miss; SYN-ACK unanswered:
// Est. Client ACK Miss), established TCPIdle (Transfer Timeout), one FIN
// only HalfCloseIdle (Close Client/Server Half Close), UDPIdle (Transfer
// Timeout). A flow that ended (both FINs, or an RST) lingers ClosedLinger to
// absorb trailing ACKs and RSTs, then is reported with its close type.
package flow

import (
	"net/netip"
	"time"

	"github.com/sightline-io/sightline/flowlog"
	"github.com/sightline-io/sightline/packet/decode"
)

// Config configures a Table. Zero fields take the defaults below.
type Config struct {
	// MaxFlows bounds the table (default 262144). Past it the least
	// recently seen flow is evicted: reported as FlushAll would report it
	// (Force Report unless it had already ended) and counted in
	// Stats.FlowsEvicted.
	MaxFlows int
	// ReportEvery is the reporting period (default 60 s).
	ReportEvery time.Duration
	// TCPIdle is the idle timeout of an established TCP flow (default 300 s).
	TCPIdle time.Duration
	// HandshakeIdle is the idle timeout of a TCP flow still in its handshake
	// (default 5 s).
	HandshakeIdle time.Duration
	// HalfCloseIdle is the idle timeout after a FIN from one side only
	// (default 35 s).
	HalfCloseIdle time.Duration
	// ClosedLinger is how long an ended flow (both FINs, or RST) is kept to
	// absorb its last packets before its final row (default 2 s).
	ClosedLinger time.Duration
	// UDPIdle is the idle timeout of a UDP flow (default 60 s).
	UDPIdle time.Duration

	AgentID, Host string
	OrgID, TeamID uint16
	// ObservationPoint, when set, is every row's observation_point. When
	// empty: "local" when both ends are the same or loopback addresses or
	// both sides' packets carry an initial TTL (64/128/255), "s" when only
	// the server's do, else "c".
	ObservationPoint string
}

// Defaults.
const (
	DefaultMaxFlows      = 1 << 18
	DefaultReportEvery   = 60 * time.Second
	DefaultTCPIdle       = 300 * time.Second
	DefaultHandshakeIdle = 5 * time.Second
	DefaultHalfCloseIdle = 35 * time.Second
	DefaultClosedLinger  = 2 * time.Second
	DefaultUDPIdle       = 60 * time.Second
)

func (c Config) withDefaults() Config {
	if c.MaxFlows <= 0 {
		c.MaxFlows = DefaultMaxFlows
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.ReportEvery, DefaultReportEvery)
	def(&c.TCPIdle, DefaultTCPIdle)
	def(&c.HandshakeIdle, DefaultHandshakeIdle)
	def(&c.HalfCloseIdle, DefaultHalfCloseIdle)
	def(&c.ClosedLinger, DefaultClosedLinger)
	def(&c.UDPIdle, DefaultUDPIdle)
	if c.OrgID == 0 {
		c.OrgID = 1
	}
	if c.TeamID == 0 {
		c.TeamID = 1
	}
	return c
}

// Stats counts what the table saw and did.
type Stats struct {
	Packets      uint64 // packets passed to Packet
	Ignored      uint64 // not TCP/UDP, or no valid addresses
	Flows        uint64 // flows created
	FlowsClosed  uint64 // flows removed (closed, timed out, evicted, flushed)
	FlowsEvicted uint64 // removed early because the table was full
	PortReuse    uint64 // flows ended by a new SYN on their tuple
	Reports      uint64 // rows emitted
	Active       uint64 // flows in the table now
}

// flowKey is the canonical 5-tuple: (A, PortA) <= (B, PortB).
type flowKey struct {
	a, b   netip.Addr
	pa, pb uint16
	proto  uint8
}

// Table is the flow table. It is not safe for concurrent use.
type Table struct {
	cfg  Config
	emit func(*flowlog.L4FlowLog)

	index map[flowKey]int32
	flows []flow // slab; freed slots are chained through next
	free  int32  // head of the free list, -1 when empty
	lists [numClasses]list

	timeouts   [numClasses]int64 // ns
	period     int64             // ns
	nextReport int64             // ns; 0 until the first packet or tick
	nextID     uint64
	row        flowlog.L4FlowLog // reused for every emitted row

	stats Stats
}

// New returns an empty table that reports rows to emit.
func New(cfg Config, emit func(*flowlog.L4FlowLog)) *Table {
	cfg = cfg.withDefaults()
	t := &Table{
		cfg:    cfg,
		emit:   emit,
		index:  make(map[flowKey]int32),
		free:   -1,
		period: int64(cfg.ReportEvery),
	}
	t.timeouts = [numClasses]int64{
		clsHandshake: int64(cfg.HandshakeIdle),
		clsEstab:     int64(cfg.TCPIdle),
		clsHalfClose: int64(cfg.HalfCloseIdle),
		clsClosed:    int64(cfg.ClosedLinger),
		clsUDP:       int64(cfg.UDPIdle),
	}
	for i := range t.lists {
		t.lists[i] = list{head: -1, tail: -1}
	}
	return t
}

// Stats returns the counters.
func (t *Table) Stats() Stats {
	s := t.stats
	s.Active = uint64(len(t.index))
	return s
}

// Len returns the number of flows in the table.
func (t *Table) Len() int { return len(t.index) }

// Packet accounts one decoded packet seen at ts; frameLen is the frame's
// length on the wire (the byte counters count whole frames).
func (t *Table) Packet(p *decode.Packet, ts time.Time, frameLen int) {
	t.stats.Packets++
	if (p.L4 != 6 && p.L4 != 17) || !p.Src.IsValid() || !p.Dst.IsValid() {
		t.stats.Ignored++
		return
	}
	now := ts.UnixNano()
	if t.nextReport == 0 {
		t.nextReport = t.boundaryAfter(now)
	}
	if frameLen <= 0 {
		frameLen = p.WireLen
	}
	key, srcIsA := makeKey(p)
	idx, ok := t.index[key]
	if ok && p.L4 == 6 && t.endsOnSYN(&t.flows[idx], p, srcIsA) {
		t.finish(idx, t.flows[idx].closeType, now)
		ok = false
	}
	if !ok {
		idx = t.newFlow(key, p, srcIsA, now)
	}
	f := &t.flows[idx]
	dir := dirOf(f, srcIsA)
	f.count(p, dir, frameLen, now)
	if p.L4 == 6 {
		f.tcp(p, dir, now)
	} else {
		f.udp(p, dir, now)
	}
	t.touch(idx, f.class())
}

// makeKey returns p's canonical key and whether p's source is the key's A.
func makeKey(p *decode.Packet) (flowKey, bool) {
	c := p.Src.Compare(p.Dst)
	if c < 0 || (c == 0 && p.SrcPort <= p.DstPort) {
		return flowKey{a: p.Src, b: p.Dst, pa: p.SrcPort, pb: p.DstPort, proto: p.L4}, true
	}
	return flowKey{a: p.Dst, b: p.Src, pa: p.DstPort, pb: p.SrcPort, proto: p.L4}, false
}

func (t *Table) newFlow(key flowKey, p *decode.Packet, srcIsA bool, now int64) int32 {
	if len(t.index) >= t.cfg.MaxFlows {
		t.evictOldest(now)
	}
	var idx int32
	if t.free >= 0 {
		idx = t.free
		t.free = t.flows[idx].next
	} else {
		t.flows = append(t.flows, flow{})
		idx = int32(len(t.flows) - 1)
	}
	f := &t.flows[idx]
	*f = flow{key: key, start: now, last: now, prev: -1, next: -1, cls: noClass}
	f.clientIsA = clientIsA(p, srcIsA)
	if p.L4 == 17 {
		f.state = stUDP
	}
	t.index[key] = idx
	t.stats.Flows++
	return idx
}

// clientIsA applies the direction rule of the package comment.
func clientIsA(p *decode.Packet, srcIsA bool) bool {
	srcIsClient := true
	switch {
	case p.L4 == 6 && p.Flags&(decode.FlagSYN|decode.FlagACK) == decode.FlagSYN:
		srcIsClient = true
	case p.L4 == 6 && p.Flags&(decode.FlagSYN|decode.FlagACK) == decode.FlagSYN|decode.FlagACK:
		srcIsClient = false
	default:
		sp, dp := p.SrcPort, p.DstPort
		switch {
		case sp < 1024 && dp >= 1024:
			srcIsClient = false
		case dp < 1024 && sp >= 1024:
			srcIsClient = true
		case sp >= 32768 && dp < 32768:
			srcIsClient = true
		case dp >= 32768 && sp < 32768:
			srcIsClient = false
		}
	}
	return srcIsClient == srcIsA
}

// dirOf returns dirTx for a packet from the client, dirRx from the server.
func dirOf(f *flow, srcIsA bool) int {
	if srcIsA == f.clientIsA {
		return dirTx
	}
	return dirRx
}

// boundaryAfter returns the first period boundary strictly after now.
func (t *Table) boundaryAfter(now int64) int64 {
	b := now - now%t.period
	if now < 0 && now%t.period != 0 {
		b -= t.period
	}
	return b + t.period
}
