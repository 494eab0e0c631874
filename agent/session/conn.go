package session

import (
	"time"

	"github.com/sightline-io/sightline/agent/capture"
	"github.com/sightline-io/sightline/agent/l7"
)

type connState uint8

const (
	stateInferring connState = iota // no protocol has claimed the connection yet
	stateKnown                      // parser is running
	stateUnknown                    // inference gave up (or the parser failed): segments are skipped
)

// conn is one tracked connection.
type conn struct {
	id     uint64
	tuple  capture.Tuple
	source capture.Source

	// Process identity (eBPF): the latest seen, since a socket outlives fork.
	pid  uint32
	comm string
	// socket is the kernel's key for the socket (eBPF), roleTold whether
	// Config.Role has been called for it.
	socket   uint64
	roleTold bool
	// tls: the stream is TLS plaintext from the library probes.
	tls bool

	state    connState
	attempts int
	// held is, per direction, a short segment inference asked more bytes
	// for: servers often read a message's header in one syscall and its
	// body in the next, so inference looks at the two together.
	held     [2]heldSegment
	proto    l7.Protocol
	matching l7.Matching
	timeout  time.Duration
	parser   l7.Parser

	lastSeen time.Time
	// ttl is the first non-zero TTL seen per direction (packets only).
	ttl [2]uint8

	// pending holds unanswered requests in arrival order.
	pending []*l7.Message

	prev, next *conn // LRU list
}

// maxHeld bounds the bytes held for inference per direction.
const maxHeld = 256

type heldSegment struct {
	seg  capture.Segment // identity; Data points into data
	data []byte
}

// observe records what every segment says about its connection.
func (c *conn) observe(seg *capture.Segment, now func() time.Time) {
	t := seg.End
	if t.IsZero() {
		t = seg.Start
	}
	if t.IsZero() {
		t = now()
	}
	if t.After(c.lastSeen) {
		c.lastSeen = t
	}
	if seg.TLS {
		c.tls = true
	}
	if seg.Source == capture.SourceEBPF {
		c.socket = seg.Socket
		c.pid = seg.PID
		if seg.Comm != c.comm {
			c.comm = seg.Comm
		}
	}
	if d := seg.Dir & 1; seg.TTL != 0 && c.ttl[d] == 0 {
		c.ttl[d] = seg.TTL
	}
}

func (c *conn) setProtocol(p l7.Protocol, parser l7.Parser) {
	c.state = stateKnown
	c.proto = p
	c.parser = parser
	c.matching = p.Matching()
	c.timeout = p.Timeout()
	if c.timeout <= 0 {
		c.timeout = DefaultRequestTimeout
	}
}

// match returns the index of the pending request that resp answers, or -1.
func (c *conn) match(resp *l7.Message) int {
	if len(c.pending) == 0 {
		return -1
	}
	if c.matching != l7.MatchByID {
		return 0
	}
	// By id: the oldest request with the same id (a retransmitted request
	// keeps its id). A response without an id answers the oldest request
	// without one. The scan is bounded by MaxPendingPerConn and usually short.
	for i, req := range c.pending {
		if req.HasRequestID == resp.HasRequestID && (!req.HasRequestID || req.RequestID == resp.RequestID) {
			return i
		}
	}
	return -1
}

// popPending removes and returns pending[i].
func (c *conn) popPending(i int) *l7.Message {
	m := c.pending[i]
	n := len(c.pending)
	copy(c.pending[i:], c.pending[i+1:])
	c.pending[n-1] = nil
	c.pending = c.pending[:n-1]
	if len(c.pending) == 0 && cap(c.pending) > 64 {
		// Give back the memory of a burst.
		c.pending = nil
	}
	return m
}
