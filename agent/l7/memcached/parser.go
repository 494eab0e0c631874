package memcached

import (
	"encoding/binary"
	"math"

	"github.com/sightline-io/sightline/agent/capture"
	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/agent/l7/stream"
	"github.com/sightline-io/sightline/agent/l7/textline"
	"github.com/sightline-io/sightline/flowlog"
)

// Bounds on what one direction holds.
const (
	maxLine      = 2048 // bytes of a line kept; a longer line's tail is skipped
	maxResource  = 256
	maxException = 256
	maxData      = 1 << 30 // memcached's item size limit is far below this
	// A get reply cut short right after its value usually lost just "END\r\n".
	endLen = 5
)

// Stats counts what a Parser saw, dropped and recovered from.
type Stats struct {
	Requests     uint64 // requests emitted
	Responses    uint64 // replies emitted
	QuietReplies uint64 // binary replies to quiet opcodes and non-final STAT replies, not emitted
	LostSync     uint64 // times text framing was lost
	Resyncs      uint64 // times a segment starting with a command or reply restored framing
	GapBytes     uint64 // uncaptured bytes announced by segments
	Truncated    uint64 // messages emitted with Length -1
}

type mode uint8

const (
	modeUnknown mode = iota
	modeText
	modeBinary
)

type role uint8

const (
	roleUnknown role = iota
	roleRequest
	roleResponse
)

// direction is the text scan state of one direction.
type direction struct {
	dir  capture.Direction
	role role
	lost bool

	line     textline.Buffer
	dataLeft int64 // data block bytes plus CRLF still to come

	inMsg    bool
	msg      *l7.Message // request awaiting its data block, or reply in progress
	first    capture.Segment
	firstSeq uint32
	wire     int64
	seen     int64
	hits     int
	statLine bool // the reply has STAT/ITEM lines (not a retrieval)
	single   bool // the reply ends with its data block (meta VA)
}

// Parser parses both directions of one memcached connection. It is not safe
// for concurrent use.
type Parser struct {
	mode    mode
	dirs    [2]direction
	bin     [2]stream.Buffer
	fields  fields
	scratch []byte
	stats   Stats
	// Bound once so that binary frames need no closure per segment.
	onFrameFn [2]func(*stream.Frame) bool
	emit      func(*l7.Message)
}

var _ l7.Parser = (*Parser)(nil)

func newParser() *Parser {
	p := &Parser{}
	p.dirs[0].dir, p.dirs[1].dir = capture.AtoB, capture.BtoA
	p.onFrameFn[0] = func(f *stream.Frame) bool { return p.onFrame(f) }
	p.onFrameFn[1] = p.onFrameFn[0]
	return p
}

// Stats returns the parser's counters.
func (p *Parser) Stats() Stats { return p.stats }

// Feed parses one segment, calling emit for each message it completes.
func (p *Parser) Feed(seg *capture.Segment, emit func(*l7.Message)) {
	gap := int64(max(seg.Len-len(seg.Data), 0))
	p.stats.GapBytes += uint64(gap)
	if p.mode == modeUnknown {
		if len(seg.Data) == 0 {
			return
		}
		p.mode = modeText
		if c := seg.Data[0]; c == magicRequest || c == magicResponse {
			p.mode = modeBinary
		}
	}
	if p.mode == modeBinary {
		p.emit = emit
		p.bin[seg.Dir&1].Feed(seg, frameLen, p.onFrameFn[seg.Dir&1])
		p.emit = nil
		return
	}
	d := &p.dirs[seg.Dir&1]
	data := seg.Data
	if d.lost {
		if !p.looksLikeStart(d, data) {
			return
		}
		d.lost = false
		p.stats.Resyncs++
	}
	off := 0
	for off < len(data) && !d.lost {
		off = p.step(d, seg, off, emit)
	}
	if gap > 0 && !d.lost {
		p.gap(d, seg, gap, emit)
	}
}

// looksLikeStart reports whether b starts with a command (request side) or
// a reply line (reply side).
func (p *Parser) looksLikeStart(d *direction, b []byte) bool {
	w := word(b)
	if len(w) == len(b) {
		return false // no end to the first word: cannot tell
	}
	switch d.role {
	case roleRequest:
		return commandKind(w) != kindNone
	case roleResponse:
		return isReplyWord(w) || isShortReply(w)
	}
	return commandKind(w) != kindNone || isReplyWord(w) || isShortReply(w)
}

// isShortReply matches the replies too generic for inference.
func isShortReply(w []byte) bool {
	switch string(w) {
	case "OK", "ERROR", "HD", "EN", "NF", "NS", "EX", "MN", "VA", "ITEM", "RESET":
		return true
	}
	_, ok := atoi(w)
	return ok
}

// step consumes bytes from off and returns the new offset.
func (p *Parser) step(d *direction, seg *capture.Segment, off int, emit func(*l7.Message)) int {
	data := seg.Data
	if !d.inMsg {
		d.inMsg = true
		d.first = *seg
		d.first.Data = nil
		d.firstSeq = seg.SeqAt(off)
		d.wire, d.seen, d.hits, d.statLine, d.single, d.msg = 0, 0, 0, false, false, nil
	}
	if d.dataLeft > 0 {
		n := min(int64(len(data)-off), d.dataLeft)
		d.dataLeft -= n
		d.wire += n
		d.seen += n
		if d.dataLeft == 0 {
			p.dataDone(d, seg, emit)
		}
		return off + int(n)
	}
	line, n, ok := d.line.Scan(data[off:], maxLine)
	d.wire += int64(n)
	d.seen += int64(n)
	if !ok {
		return len(data)
	}
	p.onLine(d, seg, line, emit)
	return off + n
}

// onLine handles one complete text line (CRLF removed).
func (p *Parser) onLine(d *direction, seg *capture.Segment, line []byte, emit func(*l7.Message)) {
	f := &p.fields
	f.split(line)
	if f.n == 0 {
		p.lose(d, seg, emit)
		return
	}
	if d.role == roleUnknown {
		r := roleResponse
		if commandKind(f.get(0)) != kindNone {
			r = roleRequest
		} else if !isReplyWord(f.get(0)) && !isShortReply(f.get(0)) {
			p.lose(d, seg, emit)
			return
		}
		d.role = r
		p.dirs[d.dir^1].role = roleRequest + roleResponse - r
	}
	if d.role == roleRequest {
		p.onCommand(d, seg, line, emit)
	} else {
		p.onReplyLine(d, seg, emit)
	}
}

// onCommand builds a request from its command line.
func (p *Parser) onCommand(d *direction, seg *capture.Segment, line []byte, emit func(*l7.Message)) {
	f := &p.fields
	cmd, known := textCommands[string(f.get(0))]
	if !known {
		if !isToken(f.get(0)) {
			p.lose(d, seg, emit)
			return
		}
		cmd = command{name: "unknown", kind: kindOther}
	}
	m := p.newMessage(d)
	m.RequestType, m.Endpoint = cmd.name, cmd.name
	m.Resource = p.textResource(cmd, line)
	m.OneWay = cmd.kind == kindQuit || string(f.last()) == "noreply" && f.n == f.all
	// Meta commands with the q flag are answered only on failure; they are
	// parsed as answered commands (see the package comment).
	n := dataLen(cmd.kind, f)
	if n > maxData {
		p.lose(d, seg, emit)
		return
	}
	if n >= 0 {
		d.msg = m
		d.dataLeft = n + 2
		return
	}
	p.finish(d, m, seg, d.wire, emit)
}

// textResource is the command with its key(s), or with its arguments for
// commands without keys; values are never part of it.
func (p *Parser) textResource(cmd command, line []byte) string {
	f := &p.fields
	b := append(p.scratch[:0], cmd.name...)
	switch cmd.kind {
	case kindStorage, kindCas, kindKeyed, kindMeta, kindMetaSet:
		b = append(append(b, ' '), f.get(1)...)
	case kindRetrieve, kindTouchGet:
		for i := 1; i < f.n && len(b) < maxResource; i++ {
			b = append(append(b, ' '), f.get(i)...)
		}
	default:
		if len(line) > len(f.get(0)) {
			b = append(b, line[len(f.get(0)):]...)
		}
	}
	if len(b) > maxResource {
		b = b[:maxResource]
	}
	p.scratch = b
	if len(b) == len(cmd.name) {
		return cmd.name
	}
	return string(b)
}

func isToken(b []byte) bool {
	if len(b) == 0 || len(b) > 32 {
		return false
	}
	for _, c := range b {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// onReplyLine handles a reply line: VALUE/STAT/ITEM lines continue a
// multi-line reply, END and every other line end the reply.
func (p *Parser) onReplyLine(d *direction, seg *capture.Segment, emit func(*l7.Message)) {
	f := &p.fields
	if d.msg == nil {
		d.msg = p.newMessage(d)
		d.msg.Type = l7.Response
	}
	m := d.msg
	switch w := f.get(0); string(w) {
	case "VALUE", "VA":
		i := 3
		if w[0] == 'V' && len(w) == 2 {
			i, d.single = 1, true
		}
		n, ok := atoi(f.get(i))
		if !ok || n > maxData {
			m.Status = flowlog.StatusParseFailed
			p.lose(d, seg, emit)
			return
		}
		d.hits++
		d.dataLeft = n + 2
		return
	case "STAT", "ITEM":
		d.statLine = true
		return
	case "END":
		if !d.statLine {
			m.Result = "miss"
			if d.hits > 0 {
				m.Result = "hit"
			}
		}
	case "EN":
		m.Result = "miss"
	case "ERROR":
		m.Status, m.Exception = flowlog.StatusClientError, "ERROR"
	case "CLIENT_ERROR", "SERVER_ERROR":
		m.Status = flowlog.StatusClientError
		if w[0] == 'S' {
			m.Status = flowlog.StatusServerError
		}
		m.Exception = exceptionText(p.fields.tok[:p.fields.n])
	}
	p.finish(d, m, seg, d.wire, emit)
}

// exceptionText joins an error line's words after the first, bounded.
func exceptionText(toks [][]byte) string {
	var buf [maxException]byte
	b := buf[:0]
	for i, t := range toks[1:] {
		if i > 0 && len(b) < len(buf) {
			b = append(b, ' ')
		}
		b = append(b, t[:min(len(t), len(buf)-len(b))]...)
	}
	return string(b)
}

// dataDone is called when a data block ends.
func (p *Parser) dataDone(d *direction, seg *capture.Segment, emit func(*l7.Message)) {
	if d.role == roleRequest || d.single {
		if d.single {
			d.msg.Result = "hit"
		}
		p.finish(d, d.msg, seg, d.wire, emit)
	}
	// A VALUE block: more VALUE lines or END follow.
}

func (p *Parser) newMessage(d *direction) *l7.Message {
	m := &l7.Message{Protocol: flowlog.L7Memcached}
	m.From(&d.first, d.firstSeq)
	return m
}

// finish emits m (length -1: cut short) and ends the message in d.
func (p *Parser) finish(d *direction, m *l7.Message, seg *capture.Segment, length int64, emit func(*l7.Message)) {
	d.inMsg, d.msg, d.dataLeft = false, nil, 0
	if m == nil {
		return
	}
	m.Length = length
	m.Captured = uint32(min(d.seen, math.MaxUint32))
	m.EndAt(seg)
	if length < 0 {
		p.stats.Truncated++
	}
	if m.Type == l7.Request {
		p.stats.Requests++
	} else {
		p.stats.Responses++
	}
	emit(m)
}

// gap accounts for n uncaptured bytes at the end of seg.
func (p *Parser) gap(d *direction, seg *capture.Segment, n int64, emit func(*l7.Message)) {
	if !d.inMsg || d.dataLeft == 0 {
		p.lose(d, seg, emit)
		return
	}
	if n < d.dataLeft {
		d.dataLeft -= n
		d.wire += n
		return
	}
	d.wire += d.dataLeft
	n -= d.dataLeft
	d.dataLeft = 0
	if d.role == roleRequest || d.single {
		p.dataDone(d, seg, emit)
	} else if n == endLen && d.hits == 1 {
		// "VALUE k f n\r\n<data>\r\nEND\r\n" read at once: the gap is the END.
		d.msg.Result = "hit"
		d.wire += n
		p.finish(d, d.msg, seg, d.wire, emit)
		return
	}
	if n > 0 || d.inMsg {
		p.lose(d, seg, emit)
	}
}

// lose gives up text framing in d: a message in progress is emitted cut
// short (Length -1) so pairing stays aligned; d waits for a segment that
// starts with a command or reply line.
func (p *Parser) lose(d *direction, seg *capture.Segment, emit func(*l7.Message)) {
	p.stats.LostSync++
	if d.inMsg && d.msg != nil {
		if d.msg.Type == l7.Response && d.hits > 0 && d.msg.Result == "" && d.msg.Status == flowlog.StatusSuccess {
			d.msg.Result = "hit"
		}
		p.finish(d, d.msg, seg, -1, emit)
	}
	d.inMsg, d.msg, d.lost = false, nil, true
	d.line.Reset()
	d.dataLeft = 0
}

// onFrame handles one binary frame.
func (p *Parser) onFrame(f *stream.Frame) bool {
	h := f.Data
	if len(h) < headerLen {
		return false
	}
	op := h[1]
	keyLen := int(binary.BigEndian.Uint16(h[2:4]))
	extLen := int(h[4])
	status := binary.BigEndian.Uint16(h[6:8])
	opaque := binary.BigEndian.Uint32(h[12:16])
	name := opcodeName(op)
	m := &l7.Message{Protocol: flowlog.L7Memcached, RequestID: uint64(opaque), HasRequestID: true}
	m.From(f.Start, f.TCPSeq)
	m.EndAt(f.End)
	m.Length = int64(len(h) + f.Missing)
	m.Captured = uint32(len(h))
	if h[0] == magicRequest {
		m.RequestType, m.Endpoint = name, name
		m.Resource = name
		if keyLen > 0 && headerLen+extLen < len(h) {
			key := h[headerLen+extLen : min(len(h), headerLen+extLen+keyLen)]
			b := append(append(p.scratch[:0], name...), ' ')
			b = append(b, key[:min(len(key), maxResource-len(b))]...)
			p.scratch = b
			m.Resource = string(b)
		}
		m.OneWay = quiet(op)
		p.stats.Requests++
		p.emit(m)
		return true
	}
	if quiet(op) || op == 0x10 && keyLen > 0 {
		p.stats.QuietReplies++
		return true
	}
	m.Type = l7.Response
	m.Code, m.HasCode = int32(status), true
	m.Status = binaryStatus(status)
	if m.Status != flowlog.StatusSuccess {
		m.Exception = statusName(status)
		if m.Exception == "" {
			m.Exception = "Unknown status"
		}
	}
	if retrieval(op) {
		switch status {
		case 0:
			m.Result = "hit"
		case 1:
			m.Result = "miss"
		}
	}
	p.stats.Responses++
	p.emit(m)
	return true
}

// binaryStatus classifies a binary status: "not found", "exists" and "not
// stored" are ordinary outcomes, as NOT_FOUND/EXISTS/NOT_STORED are in text.
func binaryStatus(s uint16) flowlog.ResponseStatus {
	switch s {
	case 0x00, 0x01, 0x02, 0x05, 0x09, 0x21:
		return flowlog.StatusSuccess
	case 0x82, 0x84, 0x85, 0x86:
		return flowlog.StatusServerError
	}
	return flowlog.StatusClientError
}

// Close emits text messages cut short by the connection's end (Length -1),
// requests first, and resets the parser (but its Stats).
func (p *Parser) Close(emit func(*l7.Message)) {
	order := [2]int{0, 1}
	if p.dirs[1].role == roleRequest {
		order = [2]int{1, 0}
	}
	for _, i := range order {
		d := &p.dirs[i]
		if d.inMsg && d.msg != nil {
			end := d.first
			p.finish(d, d.msg, &end, -1, emit)
		}
	}
	p.mode = modeUnknown
	p.dirs = [2]direction{{dir: capture.AtoB}, {dir: capture.BtoA}}
	p.bin = [2]stream.Buffer{}
}
