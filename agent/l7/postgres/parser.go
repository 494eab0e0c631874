package postgres

import (
	"github.com/sightline-io/sightline/agent/capture"
	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/agent/l7/stream"
	"github.com/sightline-io/sightline/flowlog"
)

// Bounds on per-connection state.
const (
	maxUnits      = 64   // requests awaiting their response
	maxStatements = 256  // prepared statements remembered
	maxPortals    = 64   // bound portals remembered
	maxSQL        = 8192 // SQL bytes masked into Resource
	maxException  = 256
	maxBuffer     = 64 << 10
)

// Stats counts what a Parser did.
type Stats struct {
	Requests  uint64
	Responses uint64
	Unknown   uint64 // messages in an unknown direction or unexpected
	SSL       uint64 // connections that switched to TLS or GSS encryption
	Dropped   uint64 // requests dropped from the full queue
}

type unitKind uint8

const (
	unitQuery   unitKind = iota // simple Query: answered at ReadyForQuery
	unitExecute                 // Execute: answered at CommandComplete / error
	unitPrepare                 // Parse in a batch without Execute: answered at ReadyForQuery
	unitLogin                   // startup: answered at ReadyForQuery / error
	unitSync                    // end of an extended batch: ReadyForQuery
	unitSSL                     // SSL/GSS request: answered by one byte
)

// unit is one frontend step the backend will answer.
type unit struct {
	kind    unitKind
	emitted bool // request emitted
	dropped bool // a Parse superseded by an Execute in its batch
	req     l7.Message
	// Query: what the backend said so far.
	failed   bool
	code     [5]byte
	exc      string
	tag      string
	affected uint64
	hasRows  bool
}

// statement is a parsed statement's masked text.
type statement struct {
	command, resource, endpoint string
}

// Parser parses one PostgreSQL connection. It is not safe for concurrent use.
type Parser struct {
	keepSecrets bool
	bufs        [2]stream.Buffer
	frameLens   [2]stream.FrameLen
	client      capture.Direction
	dirKnown    bool
	// startup: the client's next message is untyped (startup, SSL/GSS
	// request); awaitSSL: the server's next byte answers an SSL/GSS request.
	startup  bool
	awaitSSL bool
	off      bool // TLS/GSS or cancel: the rest is not parsed
	db       string

	units      []unit
	batchStart int // index in units of the first unit of the open batch
	stmts      map[string]statement
	portals    map[string]statement

	// last caches the latest SQL text's masking: connections repeat their
	// statements.
	last struct {
		sql string
		st  statement
	}

	resp  l7.Message
	stats Stats
}

var _ l7.Parser = (*Parser)(nil)

func newParser(keepSecrets bool) *Parser {
	p := &Parser{keepSecrets: keepSecrets, startup: true}
	p.bufs[0].Max, p.bufs[1].Max = maxBuffer, maxBuffer
	for i := range p.frameLens {
		dir := capture.Direction(i)
		p.frameLens[i] = func(b []byte) (int, error) { return p.frameLen(dir, b) }
	}
	return p
}

// Stats returns the parser's counters.
func (p *Parser) Stats() Stats { return p.stats }

// Close has nothing to flush: a request waits for its response.
func (p *Parser) Close(func(*l7.Message)) {}

// Feed parses one segment.
func (p *Parser) Feed(seg *capture.Segment, emit func(*l7.Message)) {
	if p.off {
		return
	}
	dir := seg.Dir & 1
	p.bufs[dir].Feed(seg, p.frameLens[dir], func(f *stream.Frame) bool {
		if p.off {
			return false
		}
		if !p.dirKnown && !p.learnDirection(dir, f.Data) {
			p.stats.Unknown++
			return true
		}
		if dir == p.client {
			return p.frontend(f, emit)
		}
		return p.backend(f, emit)
	})
}

// learnDirection tells the client's direction from a first message (whole
// or cut by the capture).
func (p *Parser) learnDirection(dir capture.Direction, b []byte) bool {
	if len(b) < 5 {
		return false
	}
	switch {
	case b[0] == 0 && len(b) >= 8:
		switch be32(b[4:]) {
		case protocol30, sslRequest, gssRequest, cancelCode:
			p.client = dir
		default:
			return false
		}
	case frontendFirst[b[0]] && firstFrontendOK(b):
		p.client, p.startup = dir, false
	case backendFirst[b[0]] && firstBackendOK(b):
		p.client, p.startup = dir^1, false
	default:
		return false
	}
	p.dirKnown = true
	return true
}

// frameLen frames typed messages (type byte, int32 length including
// itself), the client's untyped startup messages, and the one-byte answer
// to an SSL/GSS request.
func (p *Parser) frameLen(dir capture.Direction, b []byte) (int, error) {
	if !p.dirKnown {
		if len(b) == 0 {
			return 0, nil
		}
		if b[0] == 0 { // untyped startup message: only a client sends one
			return startupLen(b)
		}
		if !frontendType[b[0]] && !backendType[b[0]] {
			return 0, stream.ErrNotFrame
		}
	} else if dir == p.client {
		if p.startup {
			return startupLen(b)
		}
		if len(b) > 0 && !frontendType[b[0]] {
			return 0, stream.ErrNotFrame
		}
	} else {
		if p.awaitSSL {
			return 1, nil
		}
		if len(b) > 0 && !backendType[b[0]] {
			return 0, stream.ErrNotFrame
		}
	}
	if len(b) < 5 {
		return 0, nil
	}
	n := be32(b[1:])
	bounds := &backendMax
	if dir == p.client && p.dirKnown {
		bounds = &frontendMax
	}
	if !p.dirKnown && frontendType[b[0]] && !backendType[b[0]] {
		bounds = &frontendMax
	}
	if !lengthOK(b[0], n, bounds) {
		return 0, stream.ErrNotFrame
	}
	return int(n) + 1, nil
}

func startupLen(b []byte) (int, error) {
	if len(b) < 4 {
		return 0, nil
	}
	n := be32(b)
	if n < 8 || n > maxStartup {
		return 0, stream.ErrNotFrame
	}
	return int(n), nil
}

// request fills a request message from a frame.
func (p *Parser) request(m *l7.Message, f *stream.Frame, typ string) {
	*m = l7.Message{Type: l7.Request, Protocol: flowlog.L7Postgres, Version: "3.0", RequestType: typ, Domain: p.db}
	m.From(f.Start, f.TCPSeq)
	m.EndAt(f.End)
	m.Length = int64(len(f.Data) + f.Missing)
	m.Captured = uint32(len(f.Data))
}

// add appends a unit, dropping the oldest when the queue is full (its
// request, if emitted, becomes a timeout in the session layer).
func (p *Parser) add(k unitKind) *unit {
	if len(p.units) >= maxUnits {
		p.stats.Dropped++
		p.units = append(p.units[:0], p.units[1:]...)
		p.batchStart = max(p.batchStart-1, 0)
	}
	p.units = append(p.units, unit{kind: k})
	return &p.units[len(p.units)-1]
}

// closeBatch starts a new batch after the last unit.
func (p *Parser) closeBatch() { p.batchStart = len(p.units) }

// flush emits the requests not emitted yet.
func (p *Parser) flush(emit func(*l7.Message)) {
	for i := range p.units {
		u := &p.units[i]
		if u.emitted || u.dropped || u.kind == unitSync {
			continue
		}
		u.emitted = true
		p.stats.Requests++
		emit(&u.req)
	}
}

// popFront removes the first unit. The queue is short (usually one to a
// few units), so shifting is cheaper than a ring of big slots.
func (p *Parser) popFront() {
	n := copy(p.units, p.units[1:])
	p.units[n] = unit{}
	p.units = p.units[:n]
	p.batchStart = max(p.batchStart-1, 0)
}
