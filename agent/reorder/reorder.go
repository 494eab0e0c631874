// Package reorder puts the eBPF tracer's events back in causal order before
// the parsers see them.
//
// The kernel ring buffer orders events by when their syscall exited. Exit
// order is not the order in which bytes crossed a connection: a client's
// write can deliver its request, the server can answer, and the client's
// reader thread can return the response before the writing thread has run
// its exit tracepoint. The parsers and sessions would then see the response
// first. Causal order is recoverable from the times: written bytes leave
// after the write syscall entered, read bytes arrived before the read
// syscall exited. So egress segments are ordered by entry time and ingress
// segments by exit time, and a short window lets late events overtake.
package reorder

import (
	"time"

	"github.com/sightline-io/sightline/agent/capture"
)

// Defaults for Config's zero fields.
const (
	DefaultWindow   = 20 * time.Millisecond
	DefaultMaxItems = 1 << 16
)

// Config bounds a Buffer.
type Config struct {
	// Window is how long an event is held for earlier ones to arrive.
	Window time.Duration
	// MaxItems bounds the events held; past it the oldest is released early
	// (counted in Stats.Forced).
	MaxItems int
}

// Stats counts what a Buffer did.
type Stats struct {
	Held     int    // events held now
	Released uint64 // events handed on
	Forced   uint64 // released before their window ended: the buffer was full
	Reorders uint64 // events released ahead of one that arrived before them
}

// Sink receives the events in order.
type Sink interface {
	Segment(*capture.Segment)
	Closed(capture.Closed)
}

// Buffer holds events for Window and releases them in causal order. Not
// safe for concurrent use.
type Buffer struct {
	cfg  Config
	sink Sink
	h    items
	seq  uint64
	// latest is the latest event time seen (unix ns): events older than
	// latest-Window are released as newer ones arrive.
	latest int64
	// lastArrival is the arrival number of the last released event, to count
	// reorders.
	lastArrival uint64
	free        []*item
	stats       Stats
}

type item struct {
	key int64 // unix nanoseconds

	arrival uint64
	seg     capture.Segment // Data is a copy owned by the Buffer
	closed  capture.Closed
	isClose bool
}

// items is a queue sorted by (key, arrival): q[head:] are held. Events
// come nearly in order, so inserting from the back is O(1) amortised; the
// rare late one moves a few entries.
type items struct {
	q    []*item
	head int
}

func (h *items) len() int { return len(h.q) - h.head }

func (h *items) first() *item { return h.q[h.head] }

func less(a, b *item) bool {
	if a.key != b.key {
		return a.key < b.key
	}
	return a.arrival < b.arrival
}

func (h *items) insert(it *item) {
	if h.head > 0 && h.head == len(h.q) {
		h.q, h.head = h.q[:0], 0
	} else if h.head > 1024 && h.head > len(h.q)/2 {
		// Compact so the slice does not grow without bound.
		n := copy(h.q, h.q[h.head:])
		clear(h.q[n:])
		h.q, h.head = h.q[:n], 0
	}
	h.q = append(h.q, it)
	i := len(h.q) - 1
	for i > h.head && less(it, h.q[i-1]) {
		h.q[i] = h.q[i-1]
		i--
	}
	h.q[i] = it
}

func (h *items) popFirst() *item {
	it := h.q[h.head]
	h.q[h.head] = nil
	h.head++
	return it
}

// New returns a Buffer handing events to sink.
func New(cfg Config, sink Sink) *Buffer {
	if cfg.Window <= 0 {
		cfg.Window = DefaultWindow
	}
	if cfg.MaxItems <= 0 {
		cfg.MaxItems = DefaultMaxItems
	}
	return &Buffer{cfg: cfg, sink: sink}
}

// Key is the causal time of a segment: when its bytes crossed.
func Key(seg *capture.Segment) time.Time {
	if seg.Dir == capture.BtoA && !seg.End.IsZero() {
		return seg.End // ingress: the bytes had arrived by exit
	}
	if !seg.Start.IsZero() {
		return seg.Start // egress: the bytes left after entry
	}
	return seg.End
}

// Segment holds a copy of seg (its Data is copied) and releases what is due.
func (b *Buffer) Segment(seg *capture.Segment) {
	it := b.alloc()
	data := it.seg.Data[:0]
	it.seg = *seg
	it.seg.Data = append(data, seg.Data...)
	it.key = Key(seg).UnixNano()
	b.push(it)
}

// Closed holds a connection's end; it is released after every segment of
// the connection that came before it.
func (b *Buffer) Closed(c capture.Closed) {
	it := b.alloc()
	it.key, it.closed, it.isClose = c.Time.UnixNano(), c, true
	b.push(it)
}

func (b *Buffer) push(it *item) {
	b.seq++
	it.arrival = b.seq
	b.h.insert(it)
	b.latest = max(b.latest, it.key)
	for b.h.len() > b.cfg.MaxItems {
		b.stats.Forced++
		b.pop()
	}
	b.release(b.latest)
}

// Release hands on every event older than now minus the window. The agent
// calls it with the wall clock when the ring is quiet; Segment and Closed
// call it with the latest event time.
func (b *Buffer) Release(now time.Time) { b.release(now.UnixNano()) }

func (b *Buffer) release(now int64) {
	cut := now - int64(b.cfg.Window)
	for b.h.len() > 0 && b.h.first().key <= cut {
		b.pop()
	}
}

// Flush hands on everything held, in order.
func (b *Buffer) Flush() {
	for b.h.len() > 0 {
		b.pop()
	}
}

// Stats returns the counters.
func (b *Buffer) Stats() Stats {
	s := b.stats
	s.Held = b.h.len()
	return s
}

func (b *Buffer) pop() {
	it := b.h.popFirst()
	b.stats.Released++
	if it.arrival < b.lastArrival {
		b.stats.Reorders++
	}
	b.lastArrival = max(b.lastArrival, it.arrival)
	if it.isClose {
		b.sink.Closed(it.closed)
	} else {
		b.sink.Segment(&it.seg)
	}
	b.recycle(it)
}

// maxFree bounds the recycled items (each keeps its payload buffer).
const maxFree = 4096

func (b *Buffer) alloc() *item {
	if n := len(b.free); n > 0 {
		it := b.free[n-1]
		b.free = b.free[:n-1]
		return it
	}
	return new(item)
}

func (b *Buffer) recycle(it *item) {
	if len(b.free) >= maxFree {
		return
	}
	data := it.seg.Data[:0]
	*it = item{}
	it.seg.Data = data
	b.free = append(b.free, it)
}
