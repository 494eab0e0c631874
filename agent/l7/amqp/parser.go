package amqp

import (
	"encoding/binary"
	"strings"

	"github.com/sightline-io/sightline/agent/capture"
	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/agent/l7/stream"
	"github.com/sightline-io/sightline/flowlog"
)

// version is the Version column of every message.
const version = "0-9-1"

// Bounds on per-connection state.
const (
	maxReplyText = 256 // bytes of a Close's reply text kept as Exception
)

// Stats counts what a Parser saw.
type Stats struct {
	Requests  uint64 // requests emitted (one-way included)
	Responses uint64 // responses emitted
	Skipped   uint64 // frames consumed without a message (handshake, content, heartbeats, acks)
	BadFrames uint64 // frames that were not AMQP (framing restarted)
}

// Parser parses one AMQP connection.
type Parser struct {
	bufs [2]stream.Buffer
	// client is the client's direction (-1: not yet known).
	client int
	vhost  string
	stats  Stats
	handle [2]func(*stream.Frame) bool
	emit   func(*l7.Message)
	// held is each direction's message waiting for its content header.
	held [2]held
}

func newParser() *Parser {
	p := &Parser{client: -1}
	for d := range p.bufs {
		p.bufs[d].Max = 16 << 10
		p.handle[d] = func(f *stream.Frame) bool { return p.frame(d, f) }
	}
	return p
}

// Stats returns the parser's counters.
func (p *Parser) Stats() Stats { return p.stats }

// Close emits the messages still waiting for their content header.
func (p *Parser) Close(emit func(*l7.Message)) {
	p.emit = emit
	p.flush(0)
	p.flush(1)
	p.emit = nil
}

// Feed frames seg's direction and emits the messages it completes.
func (p *Parser) Feed(seg *capture.Segment, emit func(*l7.Message)) {
	p.emit = emit
	d := int(seg.Dir & 1)
	p.bufs[d].Feed(seg, frameLen, p.handle[d])
	p.emit = nil
}

// frameLen frames the protocol header or a frame: type, channel, size,
// payload, frame-end.
func frameLen(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	if b[0] == 'A' {
		n := min(len(b), 4)
		if string(b[:n]) != protocolHeader[:n] {
			return 0, stream.ErrNotFrame
		}
		return len(protocolHeader), nil
	}
	switch b[0] {
	case frameMethod, frameHeader, frameBody, frameHeartbeat:
	default:
		return 0, stream.ErrNotFrame
	}
	if len(b) < 7 {
		return 0, nil
	}
	size := binary.BigEndian.Uint32(b[3:])
	if size > maxFrame {
		return 0, stream.ErrNotFrame
	}
	return 7 + int(size) + 1, nil
}

// frame handles one frame; false means framing is lost.
func (p *Parser) frame(d int, f *stream.Frame) bool {
	b := f.Data
	if b[0] == 'A' {
		// The protocol header: the client speaks first (a server answers
		// one only to refuse the version, after the client's).
		if p.client < 0 && string(b) == protocolHeader {
			p.client = d
		}
		p.stats.Skipped++
		return true
	}
	if f.Missing == 0 && b[len(b)-1] != frameEnd {
		p.stats.BadFrames++
		return false
	}
	channel := binary.BigEndian.Uint16(b[1:])
	if h := p.held[d]; h.m != nil && b[0] == frameHeader && channel == h.channel {
		payload := b[7:]
		if f.Missing == 0 {
			payload = payload[:len(payload)-1]
		}
		contentHeader(h.m, payload)
	}
	p.flush(d)
	if b[0] != frameMethod {
		p.stats.Skipped++ // content headers and bodies, heartbeats
		return true
	}
	r := reader{b: b[7:]}
	if f.Missing == 0 {
		r.b = r.b[:len(r.b)-1]
	}
	class, id := r.u16(), r.u16()
	m, ok := methodOf(class, id)
	if !ok {
		p.stats.BadFrames++
		return false
	}
	if p.client < 0 && fromServer(class, id) {
		p.client = 1 - d
	}
	if class == classConnection && id == 11 {
		// Start-Ok: the client's side, whatever was missed. Its
		// credentials are never read.
		p.client = d
	}
	client := p.client < 0 || d == p.client
	switch m.role {
	case roleSkip:
		p.stats.Skipped++
	case roleRequest, roleOneWay:
		p.request(d, f, &r, channel, class, id, m)
	case roleClose:
		p.close(f, &r, channel, m, client)
	case roleResponse:
		if !client || p.client < 0 {
			p.response(d, f, channel, class, id)
		} else {
			p.stats.Skipped++ // the client's Close-Ok to a server Close
		}
	}
	return true
}

func (p *Parser) message(f *stream.Frame, t l7.MessageType, channel uint16) *l7.Message {
	m := &l7.Message{Type: t, Protocol: flowlog.L7AMQP, Version: version,
		RequestID: uint64(channel), HasRequestID: true}
	m.From(f.Start, f.TCPSeq)
	m.EndAt(f.End)
	m.Length = int64(len(f.Data) + f.Missing)
	m.Captured = uint32(len(f.Data))
	return m
}

// request emits a synchronous request or an asynchronous method.
func (p *Parser) request(d int, f *stream.Frame, r *reader, channel, class, id uint16, md method) {
	m := p.message(f, l7.Request, channel)
	m.RequestType = md.name
	m.Domain = p.vhost
	m.OneWay = md.role == roleOneWay
	flags := describe(m, r, class, id)
	if class == classConnection && id == 40 && !r.failed() {
		p.vhost = m.Resource
	}
	m.Domain = p.vhost
	if md.noWait >= 0 && flags&(1<<md.noWait) != 0 {
		m.OneWay = true // no-wait: the server sends no -Ok
	}
	p.stats.Requests++
	if carriesContent(class, id) {
		p.hold(d, m, channel)
		return
	}
	p.emit(m)
}

// response emits an -Ok (or Get-Empty) answering the channel's oldest request.
func (p *Parser) response(d int, f *stream.Frame, channel, class, id uint16) {
	m := p.message(f, l7.Response, channel)
	m.Status = flowlog.StatusSuccess
	if class == classBasic && id == 72 {
		m.Result = "empty"
	}
	p.stats.Responses++
	if carriesContent(class, id) {
		p.hold(d, m, channel)
		return
	}
	p.emit(m)
}

// close handles Channel.Close and Connection.Close. From the client it is
// a request (answered by Close-Ok). From the server it reports an error:
// the answer to the channel's pending request if there is one, else (an
// asynchronous Basic.Publish failed, say) a response without a request, so
// that its reply code and text are still stored.
func (p *Parser) close(f *stream.Frame, r *reader, channel uint16, md method, client bool) {
	code := r.u16()
	text := r.shortstr()
	if client {
		m := p.message(f, l7.Request, channel)
		m.RequestType = md.name
		m.Domain = p.vhost
		p.stats.Requests++
		p.emit(m)
		return
	}
	m := p.message(f, l7.Response, channel)
	if r.failed() {
		m.Status = flowlog.StatusParseFailed
	} else {
		m.Code, m.HasCode = int32(code), true
		m.Status = replyStatus(code)
		m.Exception = string(text[:min(len(text), maxReplyText)])
	}
	p.stats.Responses++
	p.emit(m)
}

// replyStatus classes a Close reply code: 200 is a normal close; 320
// CONNECTION_FORCED and the 5xx hard errors (frame/syntax errors, internal
// error, not implemented ...) are server errors; 3xx soft errors such as
// 312 NO_ROUTE and the 4xx ones (403 ACCESS_REFUSED, 404 NOT_FOUND,
// 405 RESOURCE_LOCKED, 406 PRECONDITION_FAILED) are client errors.
func replyStatus(code uint16) flowlog.ResponseStatus {
	switch {
	case code == 200:
		return flowlog.StatusSuccess
	case code == 320 || code >= 500:
		return flowlog.StatusServerError
	}
	return flowlog.StatusClientError
}

// describe reads the arguments that name what a request touches and
// returns the flags octet that carries its no-wait bit (0 if none).
func describe(m *l7.Message, r *reader, class, id uint16) (flags byte) {
	switch class<<8 | id {
	case classConnection<<8 | 40: // Open: virtual host
		m.Resource = string(r.shortstr())
	case classExchange<<8 | 10: // Declare: reserved, exchange, type, flags
		r.skip(2)
		m.Resource = string(r.shortstr())
		r.shortstr()
		flags = r.u8()
		m.Endpoint = m.Resource
	case classExchange<<8 | 20: // Delete: reserved, exchange, flags
		r.skip(2)
		m.Resource = string(r.shortstr())
		flags = r.u8()
		m.Endpoint = m.Resource
	case classExchange<<8 | 30, classExchange<<8 | 40: // Bind/Unbind: destination, source, key, flags
		r.skip(2)
		dst := r.shortstr()
		src := r.shortstr()
		key := r.shortstr()
		flags = r.u8()
		m.Resource = string(src) + "/" + string(key) + "->" + string(dst)
		m.Endpoint = string(src) + "->" + string(dst)
	case classQueue<<8 | 10, classQueue<<8 | 30, classQueue<<8 | 40: // Declare/Purge/Delete: queue, flags
		r.skip(2)
		m.Resource = queueName(r.shortstr())
		flags = r.u8()
		m.Endpoint = queueEndpoint(m.Resource)
	case classQueue<<8 | 20, classQueue<<8 | 50: // Bind/Unbind: queue, exchange, key, flags
		r.skip(2)
		q := queueName(r.shortstr())
		ex := r.shortstr()
		key := r.shortstr()
		flags = r.u8()
		m.Resource = string(ex) + "/" + string(key) + "->" + q
		m.Endpoint = string(ex) + "->" + queueEndpoint(q)
	case classBasic<<8 | 20, classBasic<<8 | 70: // Consume/Get: reserved, queue
		r.skip(2)
		m.Resource = queueName(r.shortstr())
		if id == 20 {
			r.shortstr() // consumer tag
			flags = r.u8()
		}
		m.Endpoint = queueEndpoint(m.Resource)
	case classBasic<<8 | 30: // Cancel: consumer tag, flags
		r.shortstr()
		flags = r.u8()
	case classBasic<<8 | 40: // Publish: reserved, exchange, routing key
		r.skip(2)
		routed(m, r.shortstr(), r.shortstr())
	case classBasic<<8 | 50: // Return: reply code, text, exchange, routing key
		r.skip(2)
		r.shortstr()
		routed(m, r.shortstr(), r.shortstr())
	case classBasic<<8 | 60: // Deliver: consumer tag, delivery tag, redelivered, exchange, routing key
		r.shortstr()
		r.skip(9)
		routed(m, r.shortstr(), r.shortstr())
	case classConfirm<<8 | 10:
		flags = r.u8()
	}
	if r.failed() {
		flags = 0 // a truncated or malformed frame: do not trust its bits
	}
	return flags
}

// routed fills a published/delivered message's resource (exchange/key)
// and endpoint (exchange, and the key with id-like words as "*").
func routed(m *l7.Message, exchange, key []byte) {
	m.Resource = string(exchange) + "/" + string(key)
	m.Endpoint = string(exchange) + "/" + normalizeKey(string(key))
}

// queueName renders a queue name; "" (a server-named queue) stays "".
func queueName(b []byte) string { return string(b) }

// queueEndpoint collapses server-generated queue names (amq.gen-...).
func queueEndpoint(q string) string {
	if strings.HasPrefix(q, "amq.gen-") {
		return "amq.gen-*"
	}
	return normalizeKey(q)
}

// normalizeKey replaces id-like words of a dot-separated routing key (all
// digits, or 8+ characters with a digit, such as order numbers or UUIDs)
// by "*"; it returns key itself when nothing changes.
func normalizeKey(key string) string {
	if !strings.ContainsAny(key, "0123456789") {
		return key
	}
	words := strings.Split(key, ".")
	changed := false
	for i, w := range words {
		if idLike(w) {
			words[i], changed = "*", true
		}
	}
	if !changed {
		return key
	}
	return strings.Join(words, ".")
}

func idLike(s string) bool {
	digits := 0
	for i := 0; i < len(s); i++ {
		if '0' <= s[i] && s[i] <= '9' {
			digits++
		}
	}
	return s != "" && (digits == len(s) || (len(s) >= 8 && digits > 0))
}

// reader reads method arguments; past the end it sets short.
type reader struct {
	b     []byte
	off   int
	short bool
}

func (r *reader) failed() bool { return r.short }

func (r *reader) take(n int) []byte {
	if r.short || n > len(r.b)-r.off {
		r.short = true
		return nil
	}
	b := r.b[r.off : r.off+n]
	r.off += n
	return b
}

func (r *reader) skip(n int) { r.take(n) }

func (r *reader) u8() byte {
	if b := r.take(1); b != nil {
		return b[0]
	}
	return 0
}

func (r *reader) u16() uint16 {
	if b := r.take(2); b != nil {
		return binary.BigEndian.Uint16(b)
	}
	return 0
}

// shortstr reads a short string (one length octet).
func (r *reader) shortstr() []byte { return r.take(int(r.u8())) }
