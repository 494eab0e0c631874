package mysql

import (
	"github.com/sightline-io/sightline/agent/capture"
	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/agent/l7/stream"
)

// Bounds on per-connection state.
const (
	maxPending    = 32   // commands awaiting their first response packet
	maxStatements = 256  // prepared statements remembered per connection
	maxSQL        = 8192 // SQL bytes masked into Resource
	maxException  = 256
	maxBuffer     = 64 << 10
)

type phase uint8

const (
	phaseUnknown phase = iota // capture started mid-connection: commands only
	phaseGreeted              // greeting seen: the login comes next
	phaseAuth                 // login sent: the server's OK/ERR ends it
	phaseCommand              // command phase
	phaseOff                  // TLS or a stream we do not follow: ignore the rest
)

// Stats counts what a Parser did.
type Stats struct {
	Requests  uint64
	Responses uint64
	Skipped   uint64 // server packets that are not a first response packet (rows ...)
	Unknown   uint64 // packets in an unknown direction or of an unknown command
	SSL       uint64 // connections that switched to TLS
	Inflated  uint64 // compressed packets decompressed
	BadInflat uint64 // compressed packets that failed to decompress
}

// stmt is what a prepared statement's id stands for.
type stmt struct {
	command, resource, endpoint string
}

// pendingCmd is a command awaiting its response.
type pendingCmd struct {
	cmd  byte
	stmt stmt   // COM_STMT_PREPARE: remembered under the id the OK returns
	db   string // COM_INIT_DB / USE: the database once the server agrees
	// any: the response's first packet no longer has sequence 1 (after a
	// LOCAL INFILE request or during COM_CHANGE_USER authentication).
	any  bool
	auth bool // COM_CHANGE_USER: skip auth switch / more-data packets
}

// direction is one direction's framing.
type direction struct {
	buf   stream.Buffer
	inner stream.Buffer // packets inside decompressed payloads
	z     inflater
	// compressed: frames are compressed packets; outerSeq is the TCP
	// sequence of the compressed frame being unpacked.
	compressed bool
	outerSeq   uint32
	frameLen   stream.FrameLen
	// Plain packets: the last packet's sequence (-1: unknown) and whether
	// it was 16 MiB long (the next one continues it).
	lastSeq int
	cont    bool
}

// Parser parses one MySQL connection. It is not safe for concurrent use.
type Parser struct {
	keepSecrets bool
	dirs        [2]direction
	client      capture.Direction
	dirKnown    bool
	phase       phase
	serverCaps  uint32
	clientCaps  uint32
	version     string
	serverVer   string
	db          string
	user        string
	seenCommand bool
	// compress: CLIENT_COMPRESS was negotiated by the login.
	compress bool

	pending     [maxPending]pendingCmd
	head, count int
	stmts       map[uint32]stmt
	// lastPrepare is the latest COM_STMT_PREPARE's statement: MariaDB
	// clients pipeline PREPARE and EXECUTE with statement id 0xffffffff.
	lastPrepare stmt

	// last caches the latest SQL text's masking: connections repeat their
	// statements.
	last struct {
		sql string
		st  stmt
	}

	msg   l7.Message
	stats Stats
}

var _ l7.Parser = (*Parser)(nil)

func newParser(keepSecrets bool) *Parser {
	p := &Parser{keepSecrets: keepSecrets}
	for i := range p.dirs {
		d := &p.dirs[i]
		d.buf.Max, d.inner.Max = maxBuffer, maxBuffer
		d.lastSeq = -1
		d.frameLen = func(b []byte) (int, error) { return p.frameLen(d, b) }
	}
	return p
}

// Stats returns the parser's counters.
func (p *Parser) Stats() Stats { return p.stats }

// Feed parses one segment.
func (p *Parser) Feed(seg *capture.Segment, emit func(*l7.Message)) {
	if p.phase == phaseOff {
		return
	}
	dir := seg.Dir & 1
	d := &p.dirs[dir]
	d.buf.Feed(seg, d.frameLen, func(f *stream.Frame) bool {
		if p.phase == phaseOff {
			return false
		}
		if d.compressed {
			p.unpack(dir, d, f, emit)
			return true
		}
		if len(f.Data) >= 4 {
			d.lastSeq, d.cont = int(f.Data[3]), plen(f.Data) == maxPacket
		}
		p.packet(dir, f, f.TCPSeq, emit)
		return true
	})
	if d.buf.Buffered() == 0 && seg.Gap() > 0 {
		d.lastSeq = -1 // framing may have been lost in the gap
	}
}

// Close has nothing to flush: every message is emitted when parsed.
func (p *Parser) Close(func(*l7.Message)) {}

// frameLen frames plain packets (4-byte header) or, once compression is
// on in this direction, compressed ones (7-byte header). Compression starts
// right after the login (MariaDB) or after its OK (MySQL): the first frame
// that looks compressed switches the direction.
func (p *Parser) frameLen(d *direction, b []byte) (int, error) {
	if p.compress && !d.compressed && p.phase >= phaseAuth {
		if len(b) < 11 {
			return 0, nil
		}
		if looksCompressed(b) {
			d.compressed = true
		}
	}
	if d.compressed {
		if len(b) < 7 {
			return 0, nil
		}
		return 7 + plen(b), nil
	}
	if len(b) < 4 {
		return 0, nil
	}
	if !p.plausibleStart(d, b) {
		return 0, stream.ErrNotFrame
	}
	return 4 + plen(b), nil
}

// plausibleStart checks a plain packet header against the conversation in
// the command phase, so that a capture starting inside a packet (or
// garbage) loses framing at once instead of swallowing what follows: a
// client packet is a command (sequence 0, known command byte) unless it
// continues a 16 MiB one or answers a LOCAL INFILE request; a server packet
// follows the previous one's sequence, or starts a response with 1.
func (p *Parser) plausibleStart(d *direction, b []byte) bool {
	if p.phase != phaseCommand && p.phase != phaseUnknown || d.cont {
		return true
	}
	seq := int(b[3])
	if !p.dirKnown {
		// Only what can tell the direction: a command, a greeting, OK/ERR.
		if len(b) < 5 {
			return true
		}
		return seq == 0 && (commandName(b[4]) != "" || b[4] == 10) || seq >= 1 && (b[4] == 0 || b[4] == 0xff)
	}
	if d == &p.dirs[p.client&1] {
		if p.count > 0 && p.pending[p.head].any {
			return true
		}
		return seq == 0 && (len(b) < 5 || commandName(b[4]) != "")
	}
	if p.count > 0 && (seq == 1 || p.pending[p.head].any) {
		return true
	}
	return d.lastSeq >= 0 && seq == (d.lastSeq+1)&0xff
}

// packet handles one (plain or decompressed) packet.
func (p *Parser) packet(dir capture.Direction, f *stream.Frame, tcpSeq uint32, emit func(*l7.Message)) {
	b := f.Data
	if len(b) < 5 {
		return // empty payload: the end of a 16 MiB run, or an empty row
	}
	seq, payload := b[3], b[4:]
	if !p.dirKnown && !p.learnDirection(dir, seq, payload) {
		p.stats.Unknown++
		return
	}
	if dir == p.client {
		p.clientPacket(f, seq, payload, tcpSeq, emit)
	} else {
		p.serverPacket(f, seq, payload, tcpSeq, emit)
	}
}

// learnDirection tells the client's direction from a first packet.
func (p *Parser) learnDirection(dir capture.Direction, seq byte, payload []byte) bool {
	switch {
	case seq == 0 && payload[0] == 10 && p.phase == phaseUnknown:
		p.client = dir ^ 1 // greeting
	case seq == 0 && commandName(payload[0]) != "":
		p.client = dir
	case seq >= 1 && (payload[0] == 0x00 || payload[0] == 0xff):
		p.client = dir ^ 1
	default:
		return false
	}
	p.dirKnown = true
	return true
}
