// Package session assembles the messages of L7 parsers into l7_flow_log rows.
//
// An Assembler takes capture.Segments from any data source, infers each
// connection's protocol from a list of l7.Protocols, runs that protocol's
// parser, pairs requests with responses (in order, or by request id) and
// emits one flowlog.L7FlowLog per session, lone request (timed out) or lone
// response. Every table it keeps is bounded and every drop is counted.
package session

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/sightline-io/sightline/agent/capture"
	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/flowlog"
)

// Defaults applied by New to zero (or negative) Config fields.
const (
	DefaultMaxConns          = 65536
	DefaultMaxPendingPerConn = 1024
	DefaultMaxPending        = 1 << 18
	DefaultInferenceAttempts = 4
	DefaultIdleTimeout       = 5 * time.Minute
	// DefaultRequestTimeout stands in for a Protocol whose Timeout is not positive.
	DefaultRequestTimeout = time.Minute
	DefaultOrgID          = 1
	DefaultTeamID         = 1
)

// maxFreeMessages bounds the pool of recycled pending-request slots.
const maxFreeMessages = 4096

// Config configures an Assembler. Zero values take the defaults above.
type Config struct {
	// Protocols are tried in order on a connection's first segments; the
	// first to claim a segment (IsRequest or IsResponse) wins.
	Protocols []l7.Protocol
	// MaxConns bounds the tracked connections; past it the least recently
	// used one is evicted (its pending requests reported as timeouts).
	MaxConns int
	// MaxPendingPerConn bounds unanswered requests per connection; past it the
	// oldest is reported as a timeout.
	MaxPendingPerConn int
	// MaxPending bounds unanswered requests over all connections, so memory
	// stays bounded below MaxConns*MaxPendingPerConn. Past it a connection's
	// oldest request is reported as a timeout to make room, or, if it has
	// none, the new request itself is.
	MaxPending int
	// InferenceAttempts is how many segments with data a connection may show
	// before, no protocol having claimed it, it is marked unknown.
	InferenceAttempts int
	// IdleTimeout drops connections without traffic (checked by Expire).
	IdleTimeout time.Duration

	AgentID, Host string
	OrgID, TeamID uint16

	// Verdict, when set, is told once per connection whether inference
	// found its protocol (p non-nil) or gave up (p nil), with the segment
	// that decided: the agent uses it to stop the kernel sending a socket
	// no parser reads. Called on the feeding goroutine; must not block.
	Verdict func(seg *capture.Segment, p l7.Protocol)
	// Role, when set, is told once per eBPF connection which side the
	// traced socket is (client: it sent the first request), for the kernel
	// to learn the roles of connections it did not see open. Called on the
	// feeding goroutine; must not block.
	Role func(socket uint64, client bool)
	// Now is the clock used when a segment carries no time. Optional.
	Now func() time.Time
	// Logger receives rare warnings (a parser that panicked). Optional.
	Logger *slog.Logger
}

func (cfg Config) withDefaults() Config {
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = DefaultMaxConns
	}
	if cfg.MaxPendingPerConn <= 0 {
		cfg.MaxPendingPerConn = DefaultMaxPendingPerConn
	}
	if cfg.MaxPending <= 0 {
		cfg.MaxPending = DefaultMaxPending
	}
	if cfg.InferenceAttempts <= 0 {
		cfg.InferenceAttempts = DefaultInferenceAttempts
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.OrgID == 0 {
		cfg.OrgID = DefaultOrgID
	}
	if cfg.TeamID == 0 {
		cfg.TeamID = DefaultTeamID
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return cfg
}

// Assembler turns segments into l7_flow_log rows. It is not safe for
// concurrent use: one goroutine feeds it (Feed, CloseConn, Expire, FlushAll).
// Stats may be called from any goroutine.
type Assembler struct {
	cfg  Config
	emit func(*flowlog.L7FlowLog)

	conns map[uint64]*conn
	// lru is the sentinel of a circular list of conns, most recently fed
	// first; it orders eviction, expiry and flushing deterministically.
	lru conn

	// cur is the connection whose parser is running; onMessage (bound once
	// to avoid a closure per call) reads it.
	cur       *conn
	onMessage func(*l7.Message)

	free []*l7.Message
	// pendingTotal counts requests held over all connections.
	pendingTotal int

	stats counters
}

// New returns an Assembler that hands each row to emit. emit owns the row;
// its Attributes map may be the one a parser put in a Message, so parsers
// must not change a map after emitting it. emit must not call back into the
// Assembler, and runs inside the parser's panic guard.
func New(cfg Config, emit func(*flowlog.L7FlowLog)) *Assembler {
	if emit == nil {
		emit = func(*flowlog.L7FlowLog) {}
	}
	a := &Assembler{
		cfg:   cfg.withDefaults(),
		emit:  emit,
		conns: make(map[uint64]*conn),
	}
	a.lru.prev, a.lru.next = &a.lru, &a.lru
	a.onMessage = a.handleMessage
	return a
}

// Feed processes one segment. Segments of a connection must come in order
// per direction; the segment's Data is not retained.
func (a *Assembler) Feed(seg *capture.Segment) {
	if seg == nil {
		return
	}
	a.stats.segments.Add(1)
	c := a.conns[seg.ConnID]
	if c == nil {
		c = a.openConn(seg)
	} else {
		a.touch(c)
	}
	c.observe(seg, a.cfg.Now)

	switch c.state {
	case stateUnknown:
		a.stats.segmentsSkipped.Add(1)
		return
	case stateInferring:
		if !a.infer(c, seg) {
			return
		}
	}
	a.feedParser(c, seg)
}

// CloseConn ends a connection: the parser flushes what the close completes,
// pending requests are reported as timeouts and the connection is forgotten.
func (a *Assembler) CloseConn(cl capture.Closed) {
	c := a.conns[cl.ConnID]
	if c == nil {
		return
	}
	a.stats.connsClosed.Add(1)
	a.closeConn(c, true)
}

// Expire reports requests that waited longer than their protocol's Timeout
// as timeouts, and drops connections idle for IdleTimeout (closing their
// parser and reporting their pending requests first). now is on the clock of
// the segments' times (wall clock live, capture clock in replay).
func (a *Assembler) Expire(now time.Time) {
	// Oldest first, so rows come out in a stable order.
	for c := a.lru.prev; c != &a.lru; {
		prev := c.prev
		if now.Sub(c.lastSeen) >= a.cfg.IdleTimeout {
			// Closing first lets the parser complete a response that its
			// pending request is waiting for.
			a.stats.connsIdle.Add(1)
			a.closeConn(c, true)
		} else {
			a.expirePending(c, now)
		}
		c = prev
	}
}

// FlushAll ends every connection, as CloseConn does, oldest first: for the
// end of input or shutdown.
func (a *Assembler) FlushAll(now time.Time) {
	_ = now // every pending request becomes a timeout whatever its age
	for c := a.lru.prev; c != &a.lru; {
		prev := c.prev
		a.stats.connsFlushed.Add(1)
		a.closeConn(c, true)
		c = prev
	}
}

// openConn starts tracking a connection, evicting the least recently used
// one if the table is full.
func (a *Assembler) openConn(seg *capture.Segment) *conn {
	for len(a.conns) >= a.cfg.MaxConns && a.lru.prev != &a.lru {
		a.stats.connsEvicted.Add(1)
		// An evicted connection may still be alive: do not run the parser's
		// Close, which would complete messages delimited by a close.
		a.closeConn(a.lru.prev, false)
	}
	c := &conn{
		id:     seg.ConnID,
		tuple:  seg.Tuple,
		source: seg.Source,
	}
	a.conns[c.id] = c
	c.next, c.prev = a.lru.next, &a.lru
	a.lru.next.prev = c
	a.lru.next = c
	a.stats.connsOpened.Add(1)
	a.stats.connsTracked.Add(1)
	return c
}

// touch moves c to the front of the LRU list.
func (a *Assembler) touch(c *conn) {
	if a.lru.next == c {
		return
	}
	c.prev.next, c.next.prev = c.next, c.prev
	c.next, c.prev = a.lru.next, &a.lru
	a.lru.next.prev = c
	a.lru.next = c
}

// closeConn optionally runs the parser's Close, reports pending requests as
// timeouts and forgets c.
func (a *Assembler) closeConn(c *conn, closeParser bool) {
	if closeParser && c.parser != nil {
		a.closeParser(c)
	}
	for _, req := range c.pending {
		a.emitRequestOnly(c, req)
		a.release(req)
	}
	clear(c.pending)
	c.pending = nil
	c.parser = nil
	c.prev.next, c.next.prev = c.next, c.prev
	c.prev, c.next = nil, nil
	delete(a.conns, c.id)
	a.stats.connsTracked.Add(-1)
}

// infer runs the protocols' inference on seg and reports whether one
// claimed the connection.
func (a *Assembler) infer(c *conn, seg *capture.Segment) bool {
	if len(seg.Data) == 0 {
		// Nothing to look at (a gap, or an empty read): not an attempt.
		return false
	}
	// A held prefix from this direction is looked at with these bytes.
	h := &c.held[seg.Dir&1]
	data := seg.Data
	if h.data != nil {
		data = append(h.data, seg.Data...)
	}
	p, verdict, err := inferProtocol(a.cfg.Protocols, seg.ProtoHint, data, c.tuple.L4)
	if p == nil && err == nil && h.data != nil {
		// The held bytes were not this message's start after all.
		h.data, data = nil, seg.Data
		p, verdict, err = inferProtocol(a.cfg.Protocols, seg.ProtoHint, data, c.tuple.L4)
	}
	if err != nil {
		a.stats.parserPanics.Add(1)
		a.cfg.Logger.Warn("session: protocol inference panicked", "conn", c.id, "err", err)
	}
	if p != nil {
		parser, err := newParser(p)
		if err != nil {
			a.stats.parserPanics.Add(1)
			a.cfg.Logger.Warn("session: parser construction panicked", "conn", c.id, "protocol", p.ID(), "err", err)
		} else {
			c.setProtocol(p, parser)
			a.stats.connsInferred.Add(1)
			if a.cfg.Verdict != nil {
				a.cfg.Verdict(seg, p)
			}
			// The parser sees held bytes first, as their own segments: the
			// other direction's (it came earlier), then this one's.
			other := c.held[(seg.Dir&1)^1]
			this := *h
			c.held = [2]heldSegment{}
			for _, held := range []heldSegment{other, this} {
				if held.data == nil {
					continue
				}
				hs := held.seg
				hs.Data = held.data
				a.feedParser(c, &hs)
				if c.state != stateKnown {
					return false // the parser failed on them
				}
			}
			return true
		}
	}
	switch {
	case verdict == l7.NeedMore && seg.Gap() == 0 && len(data) <= maxHeld:
		if h.data == nil {
			h.seg = *seg
			h.seg.Data = nil
			h.data = append([]byte(nil), seg.Data...)
		} else {
			h.data = data
			h.seg.End = seg.End
		}
	default:
		h.data = nil
	}
	c.attempts++
	if c.attempts >= a.cfg.InferenceAttempts {
		c.state = stateUnknown
		a.stats.inferenceFailures.Add(1)
		if a.cfg.Verdict != nil {
			a.cfg.Verdict(seg, nil)
		}
	}
	return false
}

// inferProtocol returns the first protocol that claims data, the one the
// kernel hinted at (an l7_protocol number, 0 for none) tried first, recovering
// from a protocol that panics on hostile input.
//
// When none claims data, verdict is NeedMore if some protocol asked for
// more bytes, else NotMine.
func inferProtocol(protos []l7.Protocol, hint uint8, data []byte, l4 uint8) (p l7.Protocol, verdict l7.Inference, err error) {
	defer func() {
		if r := recover(); r != nil {
			p, verdict, err = nil, l7.NotMine, fmt.Errorf("infer: %v", r)
		}
	}()
	verdict = l7.NotMine
	if hint != 0 {
		for _, p := range protos {
			if uint8(p.ID()) == hint {
				switch p.Infer(data, l4) {
				case l7.IsRequest, l7.IsResponse:
					return p, l7.IsRequest, nil
				}
				break
			}
		}
	}
	for _, p := range protos {
		switch p.Infer(data, l4) {
		case l7.IsRequest, l7.IsResponse:
			return p, l7.IsRequest, nil
		case l7.NeedMore:
			verdict = l7.NeedMore
		}
	}
	return nil, verdict, nil
}

func newParser(p l7.Protocol) (parser l7.Parser, err error) {
	defer func() {
		if r := recover(); r != nil {
			parser, err = nil, fmt.Errorf("new parser: %v", r)
		}
	}()
	parser = p.NewParser()
	if parser == nil {
		return nil, fmt.Errorf("protocol %v returned a nil parser", p.ID())
	}
	return parser, nil
}

// feedParser runs c's parser on seg. A parser that panics loses the
// connection, which is then treated as unknown.
func (a *Assembler) feedParser(c *conn, seg *capture.Segment) {
	defer func() {
		a.cur = nil
		if r := recover(); r != nil {
			a.parserFailed(c, fmt.Errorf("feed: %v", r))
		}
	}()
	a.cur = c
	c.parser.Feed(seg, a.onMessage)
}

func (a *Assembler) closeParser(c *conn) {
	defer func() {
		a.cur = nil
		if r := recover(); r != nil {
			a.parserFailed(c, fmt.Errorf("close: %v", r))
		}
	}()
	a.cur = c
	c.parser.Close(a.onMessage)
}

func (a *Assembler) parserFailed(c *conn, err error) {
	a.stats.parserPanics.Add(1)
	a.cfg.Logger.Warn("session: parser panicked; connection no longer parsed",
		"conn", c.id, "protocol", c.proto.ID(), "err", err)
	c.parser = nil
	c.state = stateUnknown
}

// handleMessage receives the messages of the running parser (a.cur).
func (a *Assembler) handleMessage(m *l7.Message) {
	c := a.cur
	if m == nil || c == nil {
		return
	}
	if m.Status == flowlog.StatusParseFailed {
		a.stats.parseFailed.Add(1)
	}
	switch m.Type {
	case l7.Request:
		a.stats.requests.Add(1)
		if m.OneWay {
			a.emitOneWay(c, m)
			return
		}
		full := a.pendingTotal >= a.cfg.MaxPending
		if len(c.pending) > 0 && (full || len(c.pending) >= a.cfg.MaxPendingPerConn) {
			old := c.popPending(0)
			a.stats.pendingDropped.Add(1)
			a.emitRequestOnly(c, old)
			a.release(old)
		} else if full {
			a.stats.pendingDropped.Add(1)
			a.emitRequestOnly(c, m)
			return
		}
		req := a.alloc()
		*req = *m
		c.pending = append(c.pending, req)
	case l7.Response:
		a.stats.responses.Add(1)
		i := c.match(m)
		if i < 0 {
			a.emitResponseOnly(c, m)
			return
		}
		req := c.popPending(i)
		a.emitSession(c, req, m)
		a.release(req)
	default:
		a.stats.badMessages.Add(1)
	}
}

// expirePending reports c's requests older than the protocol's timeout.
func (a *Assembler) expirePending(c *conn, now time.Time) {
	// Pending requests are in arrival order, which is start order but for
	// reordering between threads; stopping at the first young one is enough.
	for len(c.pending) > 0 && now.Sub(c.pending[0].Start) > c.timeout {
		req := c.popPending(0)
		a.emitRequestOnly(c, req)
		a.release(req)
	}
}

func (a *Assembler) alloc() *l7.Message {
	a.pendingTotal++
	a.stats.pending.Add(1)
	if n := len(a.free); n > 0 {
		m := a.free[n-1]
		a.free[n-1] = nil
		a.free = a.free[:n-1]
		return m
	}
	return new(l7.Message)
}

func (a *Assembler) release(m *l7.Message) {
	a.pendingTotal--
	a.stats.pending.Add(-1)
	*m = l7.Message{} // drop references (attributes) held by the slot
	if len(a.free) < maxFreeMessages {
		a.free = append(a.free, m)
	}
}
