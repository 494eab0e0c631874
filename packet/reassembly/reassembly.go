// Package reassembly turns decoded TCP/UDP packets into capture.Segments:
// per connection and direction, in-order payload with known gaps, plus
// capture.Closed when a connection ends.
//
// It is written here rather than using gopacket's tcpassembly because that
// package allocates per packet (page cache, reassembly structs, interface
// callbacks), does not report snaplen-truncated bytes as gaps, and has no
// notion of the per-packet timestamps, TTL and sequence numbers that
// capture.Segment carries. Here in-order packets are passed through without
// copying; only out-of-order data is copied, into bounded per-connection
// buffers.
//
// An Assembler is not safe for concurrent use.
package reassembly

import (
	"cmp"
	"container/list"
	"slices"
	"time"

	"github.com/sightline-io/sightline/agent/capture"
	"github.com/sightline-io/sightline/packet/decode"
)

// Config bounds the Assembler. Zero fields take the defaults below.
type Config struct {
	MaxConns           int           // connections tracked at once; the least recently active is evicted beyond it
	MaxBufferedPerDir  int           // out-of-order bytes held per connection direction
	MaxBufferedTotal   int           // out-of-order bytes held across all connections
	MaxPendingSegments int           // out-of-order segments held per connection direction
	HoleTimeout        time.Duration // a hole older than this (capture time) is given up
	IdleTimeout        time.Duration // an idle connection is closed after this
	CloseLinger        time.Duration // a closed connection's tuple absorbs late packets this long
}

// Defaults.
const (
	DefaultMaxConns           = 1 << 16
	DefaultMaxBufferedPerDir  = 1 << 20
	DefaultMaxBufferedTotal   = 256 << 20
	DefaultMaxPendingSegments = 1024
	DefaultHoleTimeout        = 5 * time.Second
	DefaultIdleTimeout        = 120 * time.Second
	DefaultCloseLinger        = 10 * time.Second
)

func (c *Config) setDefaults() {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&c.MaxConns, DefaultMaxConns)
	def(&c.MaxBufferedPerDir, DefaultMaxBufferedPerDir)
	def(&c.MaxBufferedTotal, DefaultMaxBufferedTotal)
	def(&c.MaxPendingSegments, DefaultMaxPendingSegments)
	defd := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	defd(&c.HoleTimeout, DefaultHoleTimeout)
	defd(&c.IdleTimeout, DefaultIdleTimeout)
	defd(&c.CloseLinger, DefaultCloseLinger)
}

// Stats counts what the Assembler saw, emitted and dropped.
type Stats struct {
	Packets    uint64 // packets passed to Packet
	TCPPackets uint64
	UDPPackets uint64

	ConnsOpened  uint64
	ConnsClosed  uint64 // capture.Closed emitted (FIN/RST, idle, eviction, flush)
	ConnsIdle    uint64 // closed by IdleTimeout
	ConnsEvicted uint64 // closed early because MaxConns was reached
	PortReuse    uint64 // new SYN on a live tuple with a different ISN

	Segments     uint64 // segments emitted (data and gap)
	SegmentBytes uint64 // captured payload bytes emitted

	Retransmitted  uint64 // packets whose payload was entirely seen before (incl. keep-alives)
	OverlapBytes   uint64 // bytes trimmed from partially repeated packets
	OutOfOrder     uint64 // packets buffered ahead of a hole
	PendingDupes   uint64 // buffered packets repeated while still buffered
	TruncatedBytes uint64 // payload bytes on the wire but not captured (snaplen)

	HolesSkipped    uint64 // holes given up (emitted as gap segments)
	GapBytes        uint64 // bytes in those holes
	HolesByAck      uint64 // ... because the peer acknowledged past them
	HolesByTimeout  uint64 // ... because they outlived HoleTimeout
	HolesByOverflow uint64 // ... because out-of-order buffers hit a bound
	HolesAtClose    uint64 // ... because the connection ended

	LateAfterClose uint64 // non-SYN packets on a closed connection's tuple (dropped)
	EmptyUDP       uint64 // zero-length UDP datagrams (dropped)
}

// Assembler reassembles packets into segments.
type Assembler struct {
	cfg     Config
	segment func(*capture.Segment)
	closed  func(capture.Closed)

	conns    map[flowKey]*conn
	live     *list.List // *conn, least recently active at the back
	lingered *list.List // *conn closed, oldest at the front
	holes    *list.List // *half with pending data, oldest hole at the front
	buffered int        // out-of-order bytes held in total
	nextID   uint64
	seg      capture.Segment // reused for every emit

	stats Stats
}

// New makes an Assembler. segment receives each segment (the Segment and its
// Data are only valid during the call); closed receives connection ends.
func New(cfg Config, segment func(*capture.Segment), closed func(capture.Closed)) *Assembler {
	cfg.setDefaults()
	return &Assembler{
		cfg:      cfg,
		segment:  segment,
		closed:   closed,
		conns:    make(map[flowKey]*conn),
		live:     list.New(),
		lingered: list.New(),
		holes:    list.New(),
	}
}

// Stats returns the counters so far.
func (a *Assembler) Stats() Stats { return a.stats }

// Conns returns how many connections are tracked (live and lingering).
func (a *Assembler) Conns() int { return len(a.conns) }

// Buffered returns the out-of-order bytes currently held.
func (a *Assembler) Buffered() int { return a.buffered }

type endpoint struct {
	addr [16]byte
	port uint16
}

// flowKey identifies a flow regardless of direction: lo <= hi.
type flowKey struct {
	lo, hi endpoint
	l4     uint8
}

func makeKey(p *decode.Packet) flowKey {
	s := endpoint{p.Src.As16(), p.SrcPort}
	d := endpoint{p.Dst.As16(), p.DstPort}
	if less(d, s) {
		s, d = d, s
	}
	return flowKey{s, d, p.L4}
}

func less(x, y endpoint) bool {
	if c := slices.Compare(x.addr[:], y.addr[:]); c != 0 {
		return c < 0
	}
	return x.port < y.port
}

type conn struct {
	id     uint64
	key    flowKey
	tuple  capture.Tuple
	half   [2]half // by capture.Direction
	last   time.Time
	closed bool
	elem   *list.Element // in live or lingered
}

type half struct {
	c   *conn
	dir capture.Direction

	init   bool   // next is known
	next   uint32 // sequence number of the next byte expected
	syn    bool
	isn    uint32
	done   bool // FIN reached in order
	finSeq uint32

	pending   []pendingSeg // sorted by seq
	bytes     int          // captured bytes in pending
	holeSince time.Time
	holeElem  *list.Element
}

type pendingSeg struct {
	seq  uint32
	data []byte
	wire int // payload bytes on the wire (>= len(data))
	fin  bool
	ts   time.Time
	ttl  uint8
}

// seqDiff is a-b in sequence space (RFC 1982 style).
func seqDiff(a, b uint32) int32 { return int32(a - b) }

// Packet feeds one decoded TCP or UDP packet captured at ts.
func (a *Assembler) Packet(p *decode.Packet, ts time.Time) {
	a.stats.Packets++
	switch p.L4 {
	case 6:
		a.stats.TCPPackets++
		a.tcp(p, ts)
	case 17:
		a.stats.UDPPackets++
		a.udp(p, ts)
	}
	if p.WireLen > len(p.Payload) {
		a.stats.TruncatedBytes += uint64(p.WireLen - len(p.Payload))
	}
}

func (a *Assembler) udp(p *decode.Packet, ts time.Time) {
	if p.WireLen == 0 {
		a.stats.EmptyUDP++
		return
	}
	key := makeKey(p)
	c := a.conns[key]
	if c != nil && c.closed { // evicted or expired: start afresh
		a.forget(c)
		c = nil
	}
	if c == nil {
		c = a.open(key, p, false)
	}
	a.touch(c, ts)
	a.emit(c, a.dirOf(c, p), p.Payload, p.WireLen, 0, ts, ts, p.TTL)
}

func (a *Assembler) tcp(p *decode.Packet, ts time.Time) {
	key := makeKey(p)
	c := a.conns[key]
	syn := p.Has(decode.FlagSYN)
	if c != nil && c.closed {
		if !syn {
			a.stats.LateAfterClose++
			return
		}
		a.forget(c)
		c = nil
	}
	if c != nil && syn && !p.Has(decode.FlagACK) {
		h := &c.half[a.dirOf(c, p)]
		if h.syn && h.isn == p.Seq {
			a.stats.Retransmitted++
			a.touch(c, ts)
			return
		}
		// A fresh SYN on a live tuple: the old connection is gone (port
		// reuse, or its end was not captured).
		a.stats.PortReuse++
		a.end(c, ts)
		a.forget(c)
		c = nil
	}
	if c == nil {
		// A SYN-ACK seen first means the SYN was missed: its receiver is A.
		c = a.open(key, p, syn && p.Has(decode.FlagACK))
	}
	a.touch(c, ts)
	d := a.dirOf(c, p)

	if p.Has(decode.FlagRST) {
		a.end(c, ts)
		return
	}
	h := &c.half[d]
	seq := p.Seq
	if syn {
		if !h.syn {
			h.syn, h.isn = true, p.Seq
			if !h.init {
				h.init, h.next = true, p.Seq+1
			}
		}
		seq++ // SYN occupies one sequence number (data may follow: TFO)
	}
	fin := p.Has(decode.FlagFIN)
	if p.Has(decode.FlagACK) {
		a.acked(&c.half[d.Reverse()], p.Ack, ts)
	}
	if p.WireLen == 0 && !fin {
		return // pure ACK, keep-alive without data, window update
	}
	if !h.init {
		h.init, h.next = true, seq
	}
	a.add(h, seq, p.Payload, p.WireLen, fin, ts, p.TTL)
	if c.half[0].done && c.half[1].done && !c.closed {
		a.end(c, ts)
	}
}

// dirOf says which way p travels on c.
func (a *Assembler) dirOf(c *conn, p *decode.Packet) capture.Direction {
	if p.SrcPort == c.tuple.APort && p.Src == c.tuple.AIP {
		return capture.AtoB
	}
	return capture.BtoA
}

func (a *Assembler) open(key flowKey, p *decode.Packet, dstIsA bool) *conn {
	for len(a.conns) >= a.cfg.MaxConns {
		if e := a.lingered.Front(); e != nil {
			a.forget(e.Value.(*conn))
			continue
		}
		old := a.live.Back().Value.(*conn)
		a.stats.ConnsEvicted++
		a.end(old, old.last)
		a.forget(old)
	}
	a.nextID++
	a.stats.ConnsOpened++
	c := &conn{id: a.nextID, key: key}
	c.tuple = capture.Tuple{AIP: p.Src, BIP: p.Dst, APort: p.SrcPort, BPort: p.DstPort, L4: p.L4}
	if dstIsA {
		c.tuple = capture.Tuple{AIP: p.Dst, BIP: p.Src, APort: p.DstPort, BPort: p.SrcPort, L4: p.L4}
	}
	c.half[capture.AtoB] = half{c: c, dir: capture.AtoB}
	c.half[capture.BtoA] = half{c: c, dir: capture.BtoA}
	c.elem = a.live.PushFront(c)
	a.conns[key] = c
	return c
}

func (a *Assembler) touch(c *conn, ts time.Time) {
	if ts.After(c.last) {
		c.last = ts
	}
	a.live.MoveToFront(c.elem)
}

// end flushes c (giving up any holes), emits Closed and lets the tuple
// linger to absorb late packets.
func (a *Assembler) end(c *conn, ts time.Time) {
	if c.closed {
		return
	}
	for i := range c.half {
		h := &c.half[i]
		for len(h.pending) > 0 {
			a.stats.HolesAtClose++
			a.skipHole(h, ts)
		}
	}
	c.closed = true
	a.stats.ConnsClosed++
	a.closed(capture.Closed{ConnID: c.id, Time: ts})
	a.live.Remove(c.elem)
	c.elem = a.lingered.PushBack(c)
}

// forget drops a closed connection's state.
func (a *Assembler) forget(c *conn) {
	if !c.closed {
		return
	}
	a.lingered.Remove(c.elem)
	if a.conns[c.key] == c {
		delete(a.conns, c.key)
	}
}

// acked handles the peer acknowledging up to ack on h: when h is waiting on
// a hole, bytes the peer has acknowledged will not be sent again, so the
// part of the hole below ack is a capture loss.
func (a *Assembler) acked(h *half, ack uint32, ts time.Time) {
	if !h.init || h.done || len(h.pending) == 0 || seqDiff(ack, h.next) <= 0 {
		return
	}
	a.stats.HolesByAck++
	if seqDiff(ack, h.pending[0].seq) >= 0 {
		a.skipHole(h, ts)
		return
	}
	gap := int(seqDiff(ack, h.next))
	a.emitGap(h, gap, ts)
	h.next = ack
}

// add places a packet's payload (and FIN) at seq on h.
func (a *Assembler) add(h *half, seq uint32, data []byte, wire int, fin bool, ts time.Time, ttl uint8) {
	if h.done {
		a.stats.Retransmitted++
		return
	}
	if d := seqDiff(seq, h.next); d < 0 {
		// Starts before what we have: all of it, or its front, is a repeat.
		trim := int(-d)
		if trim > wire || (trim == wire && !fin) {
			a.stats.Retransmitted++
			return
		}
		a.stats.OverlapBytes += uint64(trim)
		data, wire = trimFront(data, wire, trim)
		seq = h.next
	} else if d > 0 {
		a.buffer(h, pendingSeg{seq: seq, data: data, wire: wire, fin: fin, ts: ts, ttl: ttl})
		return
	}
	a.deliver(h, data, wire, fin, ts, ttl)
	a.drain(h, ts)
}

// deliver emits in-order payload at h.next and advances it.
func (a *Assembler) deliver(h *half, data []byte, wire int, fin bool, ts time.Time, ttl uint8) {
	if wire > 0 {
		a.emit(h.c, h.dir, data, wire, h.next, ts, ts, ttl)
		h.next += uint32(wire)
	}
	if fin {
		h.done, h.finSeq = true, h.next
		h.next++
	}
}

// drain delivers buffered segments that have become in order.
func (a *Assembler) drain(h *half, ts time.Time) {
	for len(h.pending) > 0 && !h.done {
		p := h.pending[0]
		d := seqDiff(p.seq, h.next)
		if d > 0 {
			break
		}
		a.popPending(h)
		trim := int(-d)
		if trim > p.wire || (trim == p.wire && !p.fin) {
			a.stats.Retransmitted++
			continue
		}
		if trim > 0 {
			a.stats.OverlapBytes += uint64(trim)
		}
		data, wire := trimFront(p.data, p.wire, trim)
		a.deliver(h, data, wire, p.fin, p.ts, p.ttl)
	}
	if h.done {
		for len(h.pending) > 0 {
			a.popPending(h)
			a.stats.Retransmitted++
		}
	}
	a.trackHole(h, ts)
}

func (a *Assembler) popPending(h *half) {
	n := len(h.pending[0].data)
	h.bytes -= n
	a.buffered -= n
	h.pending[0] = pendingSeg{}
	h.pending = h.pending[1:]
	if len(h.pending) == 0 {
		h.pending = nil
	}
}

// buffer holds an out-of-order segment, copying its data, within bounds.
func (a *Assembler) buffer(h *half, p pendingSeg) {
	i, found := slices.BinarySearchFunc(h.pending, p.seq, func(q pendingSeg, seq uint32) int {
		return int(seqDiff(q.seq, seq))
	})
	if found && h.pending[i].wire >= p.wire && (h.pending[i].fin || !p.fin) {
		a.stats.PendingDupes++
		return
	}
	a.stats.OutOfOrder++
	p.data = append([]byte(nil), p.data...)
	if found {
		old := len(h.pending[i].data)
		h.bytes -= old
		a.buffered -= old
		h.pending[i] = p
	} else {
		h.pending = slices.Insert(h.pending, i, p)
	}
	h.bytes += len(p.data)
	a.buffered += len(p.data)
	a.trackHole(h, p.ts)
	for len(h.pending) > 0 && (h.bytes > a.cfg.MaxBufferedPerDir ||
		len(h.pending) > a.cfg.MaxPendingSegments || a.buffered > a.cfg.MaxBufferedTotal) {
		a.stats.HolesByOverflow++
		a.skipHole(h, p.ts)
	}
}

// skipHole gives up the hole before h's first pending segment: it emits the
// missing bytes as a gap segment and delivers what follows.
func (a *Assembler) skipHole(h *half, ts time.Time) {
	if len(h.pending) == 0 {
		return
	}
	first := h.pending[0]
	if gap := int(seqDiff(first.seq, h.next)); gap > 0 {
		a.emitGap(h, gap, first.ts)
		h.next = first.seq
	}
	a.drain(h, ts)
}

func (a *Assembler) emitGap(h *half, gap int, ts time.Time) {
	a.stats.HolesSkipped++
	a.stats.GapBytes += uint64(gap)
	a.emit(h.c, h.dir, nil, gap, h.next, ts, ts, 0)
}

// trackHole keeps h in the hole list iff it has pending data, stamped with
// when its current hole was first waited on (ts).
func (a *Assembler) trackHole(h *half, ts time.Time) {
	switch {
	case len(h.pending) == 0 && h.holeElem != nil:
		a.holes.Remove(h.holeElem)
		h.holeElem = nil
	case len(h.pending) > 0 && h.holeElem == nil:
		h.holeSince = ts
		h.holeElem = a.holes.PushBack(h)
	}
}

func trimFront(data []byte, wire, n int) ([]byte, int) {
	if n >= len(data) {
		return nil, wire - n
	}
	return data[n:], wire - n
}

func (a *Assembler) emit(c *conn, d capture.Direction, data []byte, wire int, seq uint32, start, end time.Time, ttl uint8) {
	a.stats.Segments++
	a.stats.SegmentBytes += uint64(len(data))
	a.seg = capture.Segment{
		Source: capture.SourcePacket,
		ConnID: c.id,
		Tuple:  c.tuple,
		Dir:    d,
		Start:  start,
		End:    end,
		Data:   data,
		Len:    wire,
		TCPSeq: seq,
		TTL:    ttl,
	}
	a.segment(&a.seg)
}

// Expire advances capture time to now: holes older than HoleTimeout are
// given up, connections idle longer than IdleTimeout are closed, and closed
// tuples stop lingering after CloseLinger.
func (a *Assembler) Expire(now time.Time) {
	for e := a.holes.Front(); e != nil; e = a.holes.Front() {
		h := e.Value.(*half)
		if now.Sub(h.holeSince) < a.cfg.HoleTimeout {
			break
		}
		a.stats.HolesByTimeout++
		a.holes.Remove(e)
		h.holeElem = nil
		a.skipHole(h, now) // re-tracks h if another hole remains
	}
	for e := a.live.Back(); e != nil; e = a.live.Back() {
		c := e.Value.(*conn)
		if now.Sub(c.last) < a.cfg.IdleTimeout {
			break
		}
		a.stats.ConnsIdle++
		a.end(c, c.last)
	}
	for e := a.lingered.Front(); e != nil; e = a.lingered.Front() {
		c := e.Value.(*conn)
		if now.Sub(c.last) < a.cfg.CloseLinger {
			break
		}
		a.forget(c)
	}
}

// FlushAll ends every connection (e.g. at end of file), in the order they
// were opened, and forgets all state.
func (a *Assembler) FlushAll(now time.Time) {
	open := make([]*conn, 0, a.live.Len())
	for e := a.live.Front(); e != nil; e = e.Next() {
		open = append(open, e.Value.(*conn))
	}
	slices.SortFunc(open, func(x, y *conn) int { return cmp.Compare(x.id, y.id) })
	for _, c := range open {
		a.end(c, now)
	}
	for e := a.lingered.Front(); e != nil; e = a.lingered.Front() {
		a.forget(e.Value.(*conn))
	}
}
