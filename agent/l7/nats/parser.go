package nats

import (
	"bytes"
	"math"

	"github.com/sightline-io/sightline/agent/capture"
	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/agent/l7/textline"
	"github.com/sightline-io/sightline/flowlog"
)

// Bounds on what a connection holds.
const (
	maxLine       = 4096     // the server's default max_control_line
	maxPayload    = 64 << 20 // the largest max_payload a server accepts
	maxException  = 256
	maxResource   = 256
	maxAwaiting   = 256  // answers awaited (CONNECT, PING, verbose +OK)
	maxSubs       = 64   // subscriptions remembered to recognise request-reply
	maxReplies    = 1024 // reply subjects awaited
	statusCapture = 64   // HMSG header bytes kept for the status line
)

// Stats counts what a Parser saw, dropped and recovered from.
type Stats struct {
	Requests   uint64 // requests emitted (one-way ones included)
	Responses  uint64 // answers emitted (synthetic CONNECT successes included)
	KeepAlives uint64 // server PINGs and client PONGs, not emitted
	LostSync   uint64 // times framing was lost
	Resyncs    uint64 // times a segment starting with a control line restored framing
	GapBytes   uint64 // uncaptured bytes announced by segments
	Truncated  uint64 // messages emitted with Length -1
}

type role uint8

const (
	roleUnknown role = iota
	roleClient
	roleServer
)

// awaited is what a pending client message expects.
type awaited uint8

const (
	awaitConnect awaited = iota // CONNECT (verbose off): -ERR, or success implied by the next answer
	awaitPing                   // PONG
	awaitOK                     // verbose: +OK or -ERR
)

type direction struct {
	dir  capture.Direction
	role role
	lost bool

	line    textline.Buffer
	payLeft int64 // payload bytes plus CRLF still to come

	inMsg    bool
	msg      *l7.Message // message waiting for its payload
	first    capture.Segment
	firstSeq uint32
	wire     int64
	seen     int64
	hdr      []byte // HMSG: start of the headers (status line)
	hdrWant  bool
	reply    bool // the MSG being read answers a request
}

type sub struct {
	sid     string
	subject string
}

// Parser parses both directions of one NATS connection. It is not safe for
// concurrent use.
type Parser struct {
	dirs    [2]direction
	fields  fields
	verbose bool

	await     [maxAwaiting]awaited
	awaitHead int
	awaitN    int

	subs    [maxSubs]sub
	subNext int
	replies map[uint64]struct{}

	// fatal is the -ERR after which the server closes the connection: what
	// the client still sends is answered by it (no answer will come).
	fatal       string
	fatalStatus flowlog.ResponseStatus

	stats Stats
}

var _ l7.Parser = (*Parser)(nil)

func newParser() *Parser {
	p := &Parser{}
	p.dirs[0].dir, p.dirs[1].dir = capture.AtoB, capture.BtoA
	return p
}

// Stats returns the parser's counters.
func (p *Parser) Stats() Stats { return p.stats }

// Feed parses one segment, calling emit for each message it completes.
func (p *Parser) Feed(seg *capture.Segment, emit func(*l7.Message)) {
	d := &p.dirs[seg.Dir&1]
	data := seg.Data
	gap := int64(max(seg.Len-len(data), 0))
	p.stats.GapBytes += uint64(gap)
	if d.lost {
		if v := verbOf(word(data)); v == opNone || len(word(data)) == len(data) {
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
		if d.inMsg && d.payLeft > 0 && gap <= d.payLeft {
			d.payLeft -= gap
			d.wire += gap
			if d.payLeft == 0 {
				p.payloadDone(d, seg, emit)
			}
			return
		}
		if d.inMsg && d.payLeft > 0 {
			d.wire += d.payLeft
			d.payLeft = 0
			p.payloadDone(d, seg, emit)
		}
		p.lose(d, seg, emit) // the next control line started in the gap
	}
}

func (p *Parser) step(d *direction, seg *capture.Segment, off int, emit func(*l7.Message)) int {
	data := seg.Data
	if !d.inMsg {
		d.inMsg = true
		d.first = *seg
		d.first.Data = nil
		d.firstSeq = seg.SeqAt(off)
		d.wire, d.seen, d.msg, d.hdrWant, d.reply = 0, 0, nil, false, false
		d.hdr = d.hdr[:0]
	}
	if d.payLeft > 0 {
		n := min(int64(len(data)-off), d.payLeft)
		if d.hdrWant {
			if room := statusCapture - len(d.hdr); room > 0 {
				d.hdr = append(d.hdr, data[off:off+int(min(n, int64(room)))]...)
			}
		}
		d.payLeft -= n
		d.wire += n
		d.seen += n
		if d.payLeft == 0 {
			p.payloadDone(d, seg, emit)
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

// onLine handles one control line (CRLF removed).
func (p *Parser) onLine(d *direction, seg *capture.Segment, line []byte, emit func(*l7.Message)) {
	f := &p.fields
	f.split(line)
	o := verbOf(f.get(0))
	if o == opNone {
		if f.n == 0 {
			d.inMsg = false // an empty line: tolerated
			return
		}
		p.lose(d, seg, emit)
		return
	}
	if d.role == roleUnknown {
		switch {
		case clientOp(o):
			p.setRoles(d, roleClient)
		case serverOp(o):
			p.setRoles(d, roleServer)
		}
	}
	switch {
	case o == opConnect || o == opInfo:
		// JSON options: for CONNECT only "verbose" matters, and the rest
		// (credentials) is never stored.
	case o == opPing || o == opPong || o == opOK || o == opErr:
		if f.all != 1 && o != opErr {
			p.lose(d, seg, emit)
			return
		}
	case !validLine(o, f):
		p.lose(d, seg, emit)
		return
	}
	if d.role == roleClient {
		p.clientLine(d, seg, o, line, emit)
	} else if d.role == roleServer {
		p.serverLine(d, seg, o, line, emit)
	} else {
		// PING/PONG before either side showed its role: cannot tell a
		// keep-alive from a client's PING.
		p.stats.KeepAlives++
		d.inMsg = false
	}
}

func (p *Parser) setRoles(d *direction, r role) {
	d.role = r
	p.dirs[d.dir^1].role = roleClient + roleServer - r
}

func (p *Parser) newMessage(d *direction, t l7.MessageType) *l7.Message {
	m := &l7.Message{Type: t, Protocol: flowlog.L7NATS}
	m.From(&d.first, d.firstSeq)
	return m
}

// clientLine handles a line from the client.
func (p *Parser) clientLine(d *direction, seg *capture.Segment, o op, line []byte, emit func(*l7.Message)) {
	f := &p.fields
	if !clientOp(o) && o != opPing && o != opPong {
		p.lose(d, seg, emit)
		return
	}
	if o == opPong {
		p.stats.KeepAlives++ // the answer to a server PING
		d.inMsg = false
		return
	}
	m := p.newMessage(d, l7.Request)
	m.RequestType = opNames[o]
	switch o {
	case opConnect:
		p.verbose = bytes.Contains(line, []byte(`"verbose":true`))
		m.Endpoint = m.RequestType
		if p.verbose {
			p.pushAwait(awaitOK)
		} else {
			p.pushAwait(awaitConnect)
		}
	case opPing:
		m.Endpoint = m.RequestType
		p.pushAwait(awaitPing)
	case opSub:
		p.addSub(f.get(f.n-1), f.get(1))
		p.subject(m, f.get(1))
		p.ackOrOneWay(m)
	case opUnsub:
		if s := p.subjectOf(f.get(1)); s != "" {
			m.Domain, m.Resource, m.Endpoint = s, s, endpoint(s)
			if f.n == 2 {
				p.removeSub(f.get(1)) // without a max: gone at once
			}
		}
		p.ackOrOneWay(m)
	case opPub, opHpub:
		p.subject(m, f.get(1))
		size, _ := atoi(f.get(f.n - 1))
		replyIdx := 2
		if (o == opPub && f.n == 4) || (o == opHpub && f.n == 5) {
			reply := f.get(replyIdx)
			if !p.verbose && p.expectsReply(reply) {
				m.RequestID, m.HasRequestID = fnv(reply), true
				p.addReply(m.RequestID)
			}
		}
		if !m.HasRequestID {
			p.ackOrOneWay(m)
		}
		if size > maxPayload {
			p.lose(d, seg, emit)
			return
		}
		d.msg = m
		d.payLeft = size + 2
		return
	}
	p.finish(d, m, seg, d.wire, emit)
}

// ackOrOneWay makes m wait for +OK in verbose mode, or one-way.
func (p *Parser) ackOrOneWay(m *l7.Message) {
	if p.verbose {
		p.pushAwait(awaitOK)
		return
	}
	m.OneWay = true
}

// subject sets the subject columns of m.
func (p *Parser) subject(m *l7.Message, s []byte) {
	if len(s) > maxResource {
		s = s[:maxResource]
	}
	m.Domain = string(s)
	m.Resource = m.Domain
	m.Endpoint = endpoint(m.Domain)
}

// serverLine handles a line from the server.
func (p *Parser) serverLine(d *direction, seg *capture.Segment, o op, line []byte, emit func(*l7.Message)) {
	f := &p.fields
	switch o {
	case opInfo:
		d.inMsg = false
	case opPing:
		p.stats.KeepAlives++ // the server's keep-alive; the client's PONG is dropped too
		d.inMsg = false
	case opPong, opOK:
		p.answer(d, seg, emit)
		if o == opOK {
			if p.popAwait(awaitOK) {
				p.finish(d, p.newMessage(d, l7.Response), seg, d.wire, emit)
				return
			}
		} else if p.popAwait(awaitPing) {
			p.finish(d, p.newMessage(d, l7.Response), seg, d.wire, emit)
			return
		}
		d.inMsg = false // unsolicited
	case opErr:
		m := p.newMessage(d, l7.Response)
		text := bytes.TrimSpace(line[len(f.get(0)):])
		text = bytes.Trim(text, "'")
		m.Exception = string(text[:min(len(text), maxException)])
		m.Status = flowlog.StatusClientError
		if errorStatus(m.Exception) {
			m.Status = flowlog.StatusServerError
		}
		if p.awaitN > 0 {
			p.awaitHead = (p.awaitHead + 1) % maxAwaiting
			p.awaitN--
		}
		status, exc := m.Status, m.Exception
		p.finish(d, m, seg, d.wire, emit)
		if fatalError(exc) {
			p.fatal, p.fatalStatus = exc, status
			// The server closes the connection: what waited behind the
			// failed message (the PING after CONNECT) fails with it.
			for ; p.awaitN > 0; p.awaitN-- {
				p.awaitHead = (p.awaitHead + 1) % maxAwaiting
				f := p.newMessage(d, l7.Response)
				f.Status, f.Exception = status, exc
				f.EndAt(seg)
				p.stats.Responses++
				emit(f)
			}
		}
	case opMsg, opHmsg:
		p.answer(d, seg, emit)
		size, _ := atoi(f.get(f.n - 1))
		if size > maxPayload {
			p.lose(d, seg, emit)
			return
		}
		subject := f.get(1)
		var m *l7.Message
		if id := fnv(subject); p.replies != nil {
			if _, ok := p.replies[id]; ok {
				delete(p.replies, id)
				m = p.newMessage(d, l7.Response)
				m.RequestID, m.HasRequestID = id, true
				d.reply = true
			}
		}
		if m == nil {
			m = p.newMessage(d, l7.Request)
			m.RequestType = opNames[o]
			m.OneWay = true
			p.subject(m, subject)
		}
		d.hdrWant = o == opHmsg
		d.msg = m
		d.payLeft = size + 2
	default:
		p.lose(d, seg, emit)
	}
}

// answer emits the success of a CONNECT awaiting its verdict: the server
// answering anything else than -ERR means it accepted the connection.
func (p *Parser) answer(d *direction, seg *capture.Segment, emit func(*l7.Message)) {
	for p.awaitN > 0 && p.await[p.awaitHead] == awaitConnect {
		p.awaitHead = (p.awaitHead + 1) % maxAwaiting
		p.awaitN--
		m := p.newMessage(d, l7.Response)
		m.Length, m.End = 0, d.first.Start
		p.stats.Responses++
		emit(m)
	}
}

// popAwait removes the oldest awaited answer if it is of kind k.
func (p *Parser) popAwait(k awaited) bool {
	if p.awaitN == 0 || p.await[p.awaitHead] != k {
		return false
	}
	p.awaitHead = (p.awaitHead + 1) % maxAwaiting
	p.awaitN--
	return true
}

func (p *Parser) pushAwait(k awaited) {
	if p.awaitN == maxAwaiting {
		p.awaitHead = (p.awaitHead + 1) % maxAwaiting
		p.awaitN--
	}
	p.await[(p.awaitHead+p.awaitN)%maxAwaiting] = k
	p.awaitN++
}

// payloadDone completes the message whose payload ended.
func (p *Parser) payloadDone(d *direction, seg *capture.Segment, emit func(*l7.Message)) {
	m := d.msg
	if m != nil && d.reply && d.hdrWant {
		if code, desc := statusLine(d.hdr); code != 0 {
			if desc == "" {
				desc = statusText(code)
			}
			m.Code, m.HasCode = int32(code), true
			switch {
			case code >= 500:
				m.Status, m.Exception = flowlog.StatusServerError, desc
			case code >= 400:
				m.Status, m.Exception = flowlog.StatusClientError, desc
			}
			if len(m.Exception) > maxException {
				m.Exception = m.Exception[:maxException]
			}
		}
	}
	p.finish(d, m, seg, d.wire, emit)
}

// finish emits m (length -1: cut short) and ends the message in d.
func (p *Parser) finish(d *direction, m *l7.Message, seg *capture.Segment, length int64, emit func(*l7.Message)) {
	d.inMsg, d.msg, d.payLeft, d.hdrWant, d.reply = false, nil, 0, false, false
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
	if m.Type == l7.Request && !m.OneWay && p.fatal != "" && d.role == roleClient {
		// Sent after the server's fatal error, reported with it.
		f := p.newMessage(d, l7.Response)
		f.Dir = d.dir.Reverse()
		f.Status, f.Exception = p.fatalStatus, p.fatal
		f.RequestID, f.HasRequestID = m.RequestID, m.HasRequestID
		f.EndAt(seg)
		if !m.HasRequestID && p.awaitN > 0 {
			p.awaitN-- // the entry just pushed for m
		}
		p.stats.Responses++
		emit(f)
	}
}

// lose gives up framing in d: a message waiting for its payload is emitted
// cut short; d waits for a segment that starts with a verb.
func (p *Parser) lose(d *direction, seg *capture.Segment, emit func(*l7.Message)) {
	p.stats.LostSync++
	if d.inMsg && d.msg != nil {
		p.finish(d, d.msg, seg, -1, emit)
	}
	d.inMsg, d.msg, d.lost = false, nil, true
	d.line.Reset()
	d.payLeft, d.hdrWant, d.reply = 0, false, false
}

// addSub remembers a subscription (bounded ring: the oldest is forgotten).
func (p *Parser) addSub(sid, subject []byte) {
	if len(subject) > maxResource || len(sid) > 32 {
		return
	}
	p.subs[p.subNext] = sub{sid: string(sid), subject: string(subject)}
	p.subNext = (p.subNext + 1) % maxSubs
}

// subjectOf returns the subject of subscription sid, or "".
func (p *Parser) subjectOf(sid []byte) string {
	for i := range p.subs {
		if p.subs[i].sid != "" && p.subs[i].sid == string(sid) {
			return p.subs[i].subject
		}
	}
	return ""
}

// removeSub forgets subscription sid.
func (p *Parser) removeSub(sid []byte) {
	for i := range p.subs {
		if p.subs[i].sid == string(sid) {
			p.subs[i] = sub{}
		}
	}
}

// expectsReply reports whether this connection subscribed to reply: only
// then will the answer to the request arrive here.
func (p *Parser) expectsReply(reply []byte) bool {
	for i := range p.subs {
		if s := p.subs[i].subject; s != "" && matchSubject(s, reply) {
			return true
		}
	}
	return false
}

// addReply records an awaited reply subject; when the table is full (old
// requests never answered) it starts again.
func (p *Parser) addReply(id uint64) {
	if p.replies == nil || len(p.replies) >= maxReplies {
		p.replies = make(map[uint64]struct{}, 16)
	}
	p.replies[id] = struct{}{}
}

// fnv is the 64-bit FNV-1a hash of b: the id pairing a request with the
// message on its reply subject.
func fnv(b []byte) uint64 {
	h := uint64(14695981039346656037)
	for _, c := range b {
		h ^= uint64(c)
		h *= 1099511628211
	}
	return h
}

// Close emits a message cut short by the connection's end and resets the
// parser (but its Stats).
func (p *Parser) Close(emit func(*l7.Message)) {
	for i := range p.dirs {
		d := &p.dirs[i]
		if d.inMsg && d.msg != nil {
			end := d.first
			p.finish(d, d.msg, &end, -1, emit)
		}
	}
	st := p.stats
	*p = *newParser()
	p.stats = st
}
