package http1

import (
	"bytes"
	"math"
	"time"

	"github.com/sightline-io/sightline/agent/capture"
	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/flowlog"
)

// Bounds on non-head lines; a longer line means the stream is not HTTP.
const (
	maxChunkExt     = 4096
	maxChunkDigits  = 15 // 2^60 bytes: no real chunk is larger
	pendingRequests = 32 // requests awaiting a response, per direction
	keptHeadBuffer  = 4096
	maxSkippedLine  = 1024 // header line buffered after a head overflowed
)

// Stats counts what a Parser saw, dropped and recovered from.
type Stats struct {
	Requests   uint64 // requests emitted
	Responses  uint64 // responses emitted
	Interim    uint64 // 1xx interim responses (not emitted; they do not answer a request)
	Incomplete uint64 // messages emitted with Length -1 (framing lost or connection closed early)

	TruncatedHeads uint64 // heads longer than the head buffer, parsed as far as buffered
	LostSync       uint64 // times framing was lost (gap in a head/chunk line, garbage, bad length)
	Resyncs        uint64 // times a segment starting with a start line restored framing
	UntilCloseCuts uint64 // close-delimited bodies ended early by a new status line

	SkippedBytes   uint64 // captured bytes skipped while out of sync
	TunnelBytes    uint64 // bytes after CONNECT or 101 Switching Protocols, not parsed
	GapBytes       uint64 // uncaptured bytes announced by segments (Len > len(Data))
	DroppedMethods uint64 // pending request methods dropped from the bounded queue
}

type state uint8

const (
	stStart      state = iota // between messages: expect a start line
	stHead                    // reading start line and headers
	stHeadSkip                // head overflowed the buffer: skipping to its end
	stBody                    // Content-Length body: remaining bytes
	stChunkSize               // chunk-size line with optional extensions
	stChunkData               // chunk data: remaining bytes
	stChunkEnd                // CRLF after chunk data
	stTrailers                // trailer lines after the last chunk
	stUntilClose              // response body delimited by connection close
	stTunnel                  // after CONNECT 2xx or 101: opaque bytes
	stLost                    // framing lost: wait for a segment starting with a start line
)

// methodKind is the part of a request method that response framing needs.
type methodKind uint8

const (
	methodOther methodKind = iota
	methodHead
	methodConnect
)

func kindOf(method string) methodKind {
	switch method {
	case "HEAD":
		return methodHead
	case "CONNECT":
		return methodConnect
	}
	return methodOther
}

// methodQueue holds the methods of requests awaiting responses (bounded ring).
type methodQueue struct {
	buf     [pendingRequests]methodKind
	head, n int
}

// push appends k, dropping the oldest entry when full; it reports whether
// one was dropped.
func (q *methodQueue) push(k methodKind) (dropped bool) {
	if q.n == len(q.buf) {
		q.head = (q.head + 1) % len(q.buf)
		q.n--
		dropped = true
	}
	q.buf[(q.head+q.n)%len(q.buf)] = k
	q.n++
	return dropped
}

// pop returns the oldest method, or methodOther when none is known (capture
// started mid-connection).
func (q *methodQueue) pop() methodKind {
	if q.n == 0 {
		return methodOther
	}
	k := q.buf[q.head]
	q.head = (q.head + 1) % len(q.buf)
	q.n--
	return k
}

// segIdent is the identity of a message's first segment.
type segIdent struct {
	start          time.Time
	tcpSeq         uint32
	tid            uint32
	capSeq         uint32
	syscallTraceID uint64
	coroutine      uint64
}

// direction is the parse state of one direction of the connection.
type direction struct {
	dir   capture.Direction
	state state
	head  []byte // buffered head bytes, at most maxHead

	msg   *l7.Message // message whose head is parsed, awaiting its body
	fr    framing
	first segIdent
	wire  int64 // message bytes so far, including uncaptured ones
	seen  int64 // message bytes so far that were captured

	remaining   int64 // body or chunk bytes still expected
	chunkDigits int
	inExt       bool
	lineLen     int   // bytes in the current chunk extension or trailer line
	trailer     int   // trailer bytes so far
	sawCR       bool  // stChunkEnd: CR seen
	headDFA     uint8 // stHeadSkip: progress through LF CR? LF
	longLine    bool  // stHeadSkip: the current line is not fully buffered

	lastEnd time.Time
	pending methodQueue // methods of requests sent this way
}

// Parser parses both directions of one HTTP/1.x connection. It is not safe
// for concurrent use.
type Parser struct {
	maxHead int
	dirs    [2]direction
	stats   Stats

	// Per-connection caches: keep-alive traffic repeats these values.
	lastTarget                                         targetCache
	host, userAgent, contentType, forwardedFor, reason stringCache
	method                                             stringCache
	authScheme                                         schemeCache
}

var _ l7.Parser = (*Parser)(nil)

func newParser(maxHead int) *Parser {
	p := &Parser{maxHead: maxHead}
	p.dirs[0].dir, p.dirs[1].dir = capture.AtoB, capture.BtoA
	return p
}

// Stats returns the parser's counters.
func (p *Parser) Stats() Stats { return p.stats }

// Feed parses one segment, calling emit for each message it completes.
func (p *Parser) Feed(seg *capture.Segment, emit func(*l7.Message)) {
	d := &p.dirs[seg.Dir&1]
	data := seg.Data
	gap := max(seg.Len-len(data), 0)
	p.stats.GapBytes += uint64(gap)

	switch d.state {
	case stLost:
		if r := classify(data); r != l7.IsRequest && r != l7.IsResponse {
			p.stats.SkippedBytes += uint64(len(data))
			d.lastEnd = seg.End
			return
		}
		p.stats.Resyncs++
		d.state = stStart
	case stUntilClose:
		// A server that sends no length yet keeps the connection open would
		// swallow every later response; a segment that starts with a status
		// line ends the body instead.
		if classifyResponse(data) == l7.IsResponse {
			p.stats.UntilCloseCuts++
			p.finish(d, d.lastEnd, d.wire, emit)
		}
	}

	off := 0
	for off < len(data) {
		switch d.state {
		case stLost:
			p.stats.SkippedBytes += uint64(len(data) - off)
			off = len(data)
		case stTunnel:
			p.stats.TunnelBytes += uint64(len(data) - off)
			off = len(data)
		default:
			off = p.step(d, seg, off, emit)
		}
	}
	if gap > 0 {
		p.gap(d, seg, int64(gap), emit)
	}
	d.lastEnd = seg.End
}

// step consumes bytes of seg.Data from off in d's current state and returns
// the new offset. Every call consumes at least one byte or changes state to
// one that will.
func (p *Parser) step(d *direction, seg *capture.Segment, off int, emit func(*l7.Message)) int {
	data := seg.Data
	switch d.state {
	case stStart:
		for off < len(data) && (data[off] == '\r' || data[off] == '\n') {
			off++ // RFC 9112 2.2: ignore empty lines before a request line
		}
		if off == len(data) {
			return off
		}
		if classify(data[off:]) == l7.NotMine {
			p.lose(d, seg, emit)
			return off
		}
		d.begin(seg, off)
		return off

	case stHead:
		return p.readHead(d, seg, off, emit)

	case stHeadSkip:
		// Lines after the overflow are still read, one bounded line at a
		// time, so a late Content-Length or Transfer-Encoding keeps framing.
		for off < len(data) {
			c := data[off]
			off++
			d.wire++
			d.seen++
			if len(d.head) < min(maxSkippedLine, p.maxHead) {
				d.head = append(d.head, c)
			} else {
				d.longLine = true
			}
			if c == '\n' {
				if !d.longLine {
					p.parseHeaders(d.head, d.msg, &d.fr)
				}
				d.head, d.longLine = d.head[:0], false
			}
			var done bool
			if d.headDFA, done = headDFA(d.headDFA, c); done {
				d.releaseHead()
				p.startBody(d, seg, emit)
				break
			}
		}
		return off

	case stBody, stChunkData:
		n := min(int64(len(data)-off), d.remaining)
		off += int(n)
		d.wire += n
		d.seen += n
		d.remaining -= n
		if d.remaining == 0 {
			if d.state == stBody {
				p.finish(d, seg.End, d.wire, emit)
			} else {
				d.state, d.sawCR = stChunkEnd, false
			}
		}
		return off

	case stChunkSize:
		for off < len(data) {
			c := data[off]
			off++
			d.wire++
			d.seen++
			switch v := hexValue(c); {
			case c == '\n':
				if d.chunkDigits == 0 {
					p.lose(d, seg, emit)
					return off
				}
				if d.remaining == 0 {
					d.state, d.lineLen, d.trailer = stTrailers, 0, 0
				} else {
					d.state = stChunkData
				}
				return off
			case c == '\r':
			case !d.inExt && v >= 0:
				if d.chunkDigits == maxChunkDigits {
					p.lose(d, seg, emit)
					return off
				}
				d.remaining = d.remaining<<4 | int64(v)
				d.chunkDigits++
			case !d.inExt && d.chunkDigits > 0 && (c == ';' || c == ' ' || c == '\t'):
				d.inExt = true
			case d.inExt && d.lineLen < maxChunkExt:
				d.lineLen++
			default:
				p.lose(d, seg, emit)
				return off
			}
		}
		return off

	case stChunkEnd:
		c := data[off]
		off++
		d.wire++
		d.seen++
		switch {
		case c == '\r' && !d.sawCR:
			d.sawCR = true
		case c == '\n':
			d.state, d.remaining, d.chunkDigits, d.inExt, d.lineLen = stChunkSize, 0, 0, false, 0
		default:
			p.lose(d, seg, emit)
		}
		return off

	case stTrailers:
		for off < len(data) {
			c := data[off]
			off++
			d.wire++
			d.seen++
			d.trailer++
			switch {
			case c == '\n':
				if d.lineLen == 0 {
					p.finish(d, seg.End, d.wire, emit)
					return off
				}
				d.lineLen = 0
			case c == '\r':
			case d.trailer > p.maxHead:
				p.lose(d, seg, emit)
				return off
			default:
				d.lineLen++
			}
		}
		return off

	case stUntilClose:
		n := int64(len(data) - off)
		d.wire += n
		d.seen += n
		return len(data)
	}
	// stLost and stTunnel are handled by Feed; never loop forever.
	return len(data)
}

// begin starts a message at data offset off of seg.
func (d *direction) begin(seg *capture.Segment, off int) {
	d.state = stHead
	d.head = d.head[:0]
	d.wire, d.seen = 0, 0
	d.first = segIdent{
		start:          seg.Start,
		tid:            seg.TID,
		capSeq:         seg.CapSeq,
		syscallTraceID: seg.SyscallTraceID,
		coroutine:      seg.Coroutine,
	}
	if seg.TCPSeq != 0 {
		d.first.tcpSeq = seg.SeqAt(off)
	}
}

// readHead accumulates the head; when it ends (or overflows) it is parsed.
func (p *Parser) readHead(d *direction, seg *capture.Segment, off int, emit func(*l7.Message)) int {
	data := seg.Data[off:]
	if len(d.head) == 0 {
		// Fast path: the whole head is in this segment; parse it in place.
		if end := headEnd(data, 0); end >= 0 && end <= p.maxHead {
			d.wire += int64(end)
			d.seen += int64(end)
			p.onHead(d, seg, data[:end], false, emit)
			return off + end
		}
	}
	prev := len(d.head)
	take := min(len(data), p.maxHead-prev)
	d.head = append(d.head, data[:take]...)
	if end := headEnd(d.head, max(prev-3, 0)); end >= 0 {
		used := end - prev
		d.wire += int64(used)
		d.seen += int64(used)
		p.onHead(d, seg, d.head[:end], false, emit)
		d.releaseHead()
		return off + used
	}
	d.wire += int64(take)
	d.seen += int64(take)
	if len(d.head) >= p.maxHead {
		p.stats.TruncatedHeads++
		d.headDFA = 0
		for _, c := range d.head[len(d.head)-3:] {
			d.headDFA, _ = headDFA(d.headDFA, c)
		}
		// If the buffer ended mid-line, that line's tail is not a header.
		longLine := d.head[len(d.head)-1] != '\n'
		p.onHead(d, seg, d.head, true, emit)
		if d.state == stHeadSkip {
			d.head, d.longLine = d.head[:0], longLine
		}
	}
	return off + take
}

// releaseHead empties the head buffer, freeing it if a long head grew it.
func (d *direction) releaseHead() {
	if cap(d.head) > keptHeadBuffer {
		d.head = nil
	} else {
		d.head = d.head[:0]
	}
}

// onHead parses a complete (or, if truncated, overflowed) head and sets up
// the body.
func (p *Parser) onHead(d *direction, seg *capture.Segment, h []byte, truncated bool, emit func(*l7.Message)) {
	m, f, ok := p.buildMessage(d, h, truncated)
	if !ok {
		p.lose(d, seg, emit)
		return
	}
	d.msg, d.fr = m, f
	if truncated {
		d.state = stHeadSkip // framing applies once the rest of the head is skipped
		return
	}
	p.startBody(d, seg, emit)
}

// buildMessage turns head bytes into a Message. partial accepts a head cut
// short (its last line, even the start line, may be incomplete).
func (p *Parser) buildMessage(d *direction, h []byte, partial bool) (*l7.Message, framing, bool) {
	f := framing{contentLength: -1}
	line, rest := h, []byte(nil)
	if nl := bytes.IndexByte(h, '\n'); nl >= 0 {
		line, rest = h[:nl], h[nl+1:]
	} else if !partial {
		return nil, f, false
	}
	line = bytes.TrimSuffix(line, []byte("\r"))
	m := &l7.Message{
		Protocol:       flowlog.L7HTTP1,
		Dir:            d.dir,
		Start:          d.first.start,
		TCPSeq:         d.first.tcpSeq,
		TID:            d.first.tid,
		CapSeq:         d.first.capSeq,
		SyscallTraceID: d.first.syscallTraceID,
		Coroutine:      d.first.coroutine,
	}
	if !p.parseStartLine(line, partial && rest == nil, m, &f) {
		return nil, f, false
	}
	p.parseHeaders(rest, m, &f)
	if partial {
		if m.Attributes == nil {
			m.Attributes = make(map[string]string, 1)
		}
		m.Attributes[AttrTruncated] = "headers"
	}
	switch {
	case f.isRequest:
		if d.pending.push(f.method) {
			p.stats.DroppedMethods++
		}
	case f.status >= 200 || f.status == 101:
		f.method = p.dirs[d.dir^1].pending.pop()
	}
	return m, f, true
}

// startBody decides the body framing of d.msg from its head.
func (p *Parser) startBody(d *direction, seg *capture.Segment, emit func(*l7.Message)) {
	f := &d.fr
	d.remaining, d.chunkDigits, d.inExt, d.lineLen = 0, 0, false, 0
	if f.isRequest {
		switch {
		case f.chunked:
			d.state = stChunkSize
		case f.otherCoding || f.badLength:
			p.lose(d, seg, emit) // RFC 9112 6.3: the length cannot be determined
		case f.contentLength > 0:
			d.state, d.remaining = stBody, f.contentLength
		default:
			p.finish(d, seg.End, d.wire, emit)
		}
		return
	}
	switch {
	case f.status < 200 && f.status != 101:
		// Interim (100 Continue, 103 Early Hints): the final response follows.
		p.stats.Interim++
		d.msg = nil
		d.state = stStart
	case f.status == 101 || f.method == methodConnect && f.status < 300:
		p.finish(d, seg.End, d.wire, emit)
		d.state = stTunnel
		if o := &p.dirs[d.dir^1]; o.state == stStart || o.state == stLost {
			o.state = stTunnel
		}
	case f.method == methodHead || f.status == 204 || f.status == 304:
		p.finish(d, seg.End, d.wire, emit)
	case f.chunked:
		d.state = stChunkSize
	case f.badLength:
		p.lose(d, seg, emit)
	case f.contentLength == 0 && !f.otherCoding:
		p.finish(d, seg.End, d.wire, emit)
	case f.contentLength > 0 && !f.otherCoding:
		d.state, d.remaining = stBody, f.contentLength
	default:
		d.state = stUntilClose
	}
}

// finish emits d.msg with the given length (-1: unknown) and ends the message.
func (p *Parser) finish(d *direction, end time.Time, length int64, emit func(*l7.Message)) {
	m := d.msg
	d.msg = nil
	d.state = stStart
	if m == nil {
		return
	}
	m.Length = length
	m.Captured = uint32(min(d.seen, math.MaxUint32))
	m.End = end
	if length < 0 {
		p.stats.Incomplete++
	}
	if m.Type == l7.Request {
		p.stats.Requests++
	} else {
		p.stats.Responses++
	}
	emit(m)
}

// lose gives up framing in d: the message in progress, if its start line is
// known, is emitted with Length -1 (so FIFO pairing stays aligned), and d
// waits for a segment that starts with a start line.
func (p *Parser) lose(d *direction, seg *capture.Segment, emit func(*l7.Message)) {
	p.flush(d, seg.End, emit)
	p.stats.LostSync++
	d.state = stLost
	d.releaseHead()
}

// flush emits the message in progress in d with Length -1, building it from
// a partial head if needed.
func (p *Parser) flush(d *direction, end time.Time, emit func(*l7.Message)) {
	if d.msg == nil && d.state == stHead && len(d.head) > 0 {
		if m, _, ok := p.buildMessage(d, d.head, true); ok {
			d.msg = m
		}
	}
	p.finish(d, end, -1, emit)
}

// gap accounts for n uncaptured bytes at the end of seg.
func (p *Parser) gap(d *direction, seg *capture.Segment, n int64, emit func(*l7.Message)) {
	switch d.state {
	case stBody:
		if n < d.remaining {
			d.remaining -= n
			d.wire += n
			return
		}
		d.wire += d.remaining
		extra := n - d.remaining
		d.remaining = 0
		p.finish(d, seg.End, d.wire, emit)
		if extra > 0 {
			p.lose(d, seg, emit) // the next message started in the gap
		}
	case stChunkData:
		if n > d.remaining {
			p.lose(d, seg, emit)
			return
		}
		d.remaining -= n
		d.wire += n
		if d.remaining == 0 {
			d.state, d.sawCR = stChunkEnd, false
		}
	case stUntilClose:
		d.wire += n
	case stTunnel:
		p.stats.TunnelBytes += uint64(n)
	case stLost:
	default:
		// A gap in a head, a chunk line or between messages: framing is lost.
		p.lose(d, seg, emit)
	}
}

// Close emits what the connection's end completes: close-delimited bodies,
// and messages cut short (with Length -1). The parser is reset.
func (p *Parser) Close(emit func(*l7.Message)) {
	// Requests first, so a FIFO matcher sees a request before its response.
	order := [2]int{0, 1}
	if p.dirs[1].holdsRequest() || p.dirs[0].holdsResponse() {
		order = [2]int{1, 0}
	}
	for _, i := range order {
		d := &p.dirs[i]
		if d.state == stUntilClose {
			p.finish(d, d.lastEnd, d.wire, emit)
		} else {
			p.flush(d, d.lastEnd, emit)
		}
	}
	for i := range p.dirs {
		p.dirs[i] = direction{dir: p.dirs[i].dir}
	}
}

// holdsRequest reports whether d has a request in progress.
func (d *direction) holdsRequest() bool {
	if d.msg != nil {
		return d.msg.Type == l7.Request
	}
	return d.state == stHead && len(d.head) > 0 && classifyResponse(d.head) == l7.NotMine
}

// holdsResponse reports whether d has a response in progress.
func (d *direction) holdsResponse() bool {
	if d.msg != nil {
		return d.msg.Type == l7.Response
	}
	return d.state == stHead && len(d.head) > 0 && classifyResponse(d.head) != l7.NotMine
}

// headEnd returns the offset just past the empty line that ends a head in b
// (searching from from), or -1. Bare LF line ends are accepted.
func headEnd(b []byte, from int) int {
	for i := from; i < len(b); {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			return -1
		}
		k := i + j + 1
		if k < len(b) && b[k] == '\n' {
			return k + 1
		}
		if k+1 < len(b) && b[k] == '\r' && b[k+1] == '\n' {
			return k + 2
		}
		i = k
	}
	return -1
}

// headDFA advances the search for LF CR? LF by one byte.
func headDFA(st uint8, c byte) (uint8, bool) {
	switch c {
	case '\n':
		if st != 0 {
			return 0, true
		}
		return 1, false
	case '\r':
		if st == 1 {
			return 2, false
		}
	}
	return 0, false
}

func hexValue(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c-'a') + 10
	case 'A' <= c && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}
