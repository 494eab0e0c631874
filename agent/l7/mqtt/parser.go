package mqtt

import (
	"encoding/binary"

	"github.com/sightline-io/sightline/agent/capture"
	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/agent/l7/stream"
	"github.com/sightline-io/sightline/flowlog"
)

// Control packet types.
const (
	typeConnect     = 1
	typeConnack     = 2
	typePublish     = 3
	typePuback      = 4
	typePubrec      = 5
	typePubrel      = 6
	typePubcomp     = 7
	typeSubscribe   = 8
	typeSuback      = 9
	typeUnsubscribe = 10
	typeUnsuback    = 11
	typePingreq     = 12
	typePingresp    = 13
	typeDisconnect  = 14
	typeAuth        = 15
)

// serverIDs offsets the packet ids of server-originated PUBLISH (and the
// client's acknowledgements of them): each side numbers its own packets, so
// the two id spaces must not meet in the session's by-id matching.
const serverIDs = 1 << 16

// maxClientID bounds the client id kept for the Domain column.
const maxClientID = 256

// Stats counts what a Parser saw.
type Stats struct {
	Requests  uint64 // requests emitted (one-way included)
	Responses uint64 // responses emitted
	Quiet     uint64 // packets consumed without a message (PUBREL, PUBCOMP, AUTH)
	BadFrames uint64 // frames that were not MQTT (framing restarted)
}

// Parser parses one MQTT connection.
type Parser struct {
	bufs [2]stream.Buffer
	// client is the direction of the client (CONNECT's sender), or -1.
	client   int
	v5       bool
	version  string
	clientID string
	stats    Stats
	handle   [2]func(*stream.Frame) bool // bound per direction, once
	emit     func(*l7.Message)
}

func newParser() *Parser {
	p := &Parser{client: -1}
	for d := range p.bufs {
		p.bufs[d].Max = 16 << 10
		p.handle[d] = func(f *stream.Frame) bool { return p.packet(d, f) }
	}
	return p
}

// Stats returns the parser's counters.
func (p *Parser) Stats() Stats { return p.stats }

// Close does nothing: MQTT packets are length-delimited.
func (p *Parser) Close(func(*l7.Message)) {}

// Feed frames seg's direction and emits the messages it completes.
func (p *Parser) Feed(seg *capture.Segment, emit func(*l7.Message)) {
	p.emit = emit
	d := int(seg.Dir & 1)
	if p.client < 0 && p.bufs[d].Buffered() == 0 && len(seg.Data) > 0 && seg.Data[0] == 0 &&
		connectHeader(seg.Data) == l7.IsRequest {
		p.headless(d, seg)
	} else {
		p.bufs[d].Feed(seg, frameLen, p.handle[d])
	}
	p.emit = nil
}

// headless parses a first CONNECT whose fixed header was read in earlier,
// unseen syscalls (as brokers read it): the segment is its remainder.
func (p *Parser) headless(d int, seg *capture.Segment) {
	n := min(len(seg.Data), p.bufs[d].Max)
	data := make([]byte, 0, 5+n)
	data = append(data, typeConnect<<4)
	for v := seg.Len; ; {
		c := byte(v & 0x7f)
		if v >>= 7; v > 0 {
			c |= 0x80
		}
		data = append(data, c)
		if v == 0 {
			break
		}
	}
	hdr := len(data)
	data = append(data, seg.Data[:n]...)
	start := *seg
	start.Data = nil
	f := stream.Frame{Data: data, Missing: max(seg.Len-n, 0), Start: &start, End: &start, TCPSeq: seg.TCPSeq - uint32(hdr)}
	emit := p.emit
	p.emit = func(m *l7.Message) {
		m.Captured -= uint32(hdr) // the fixed header was not captured here
		emit(m)
	}
	p.packet(d, &f)
	p.emit = emit
}

// frameLen frames a control packet, rejecting reserved types and fixed
// header flags the specification forbids.
func frameLen(b []byte) (int, error) {
	if len(b) < 2 {
		return 0, nil
	}
	typ, flags := b[0]>>4, b[0]&0x0f
	switch typ {
	case 0:
		return 0, stream.ErrNotFrame
	case typePublish:
		if flags&0x06 == 0x06 { // QoS 3
			return 0, stream.ErrNotFrame
		}
	case typePubrel, typeSubscribe, typeUnsubscribe:
		if flags != 2 {
			return 0, stream.ErrNotFrame
		}
	default:
		if flags != 0 {
			return 0, stream.ErrNotFrame
		}
	}
	rem, n, ok := remainingLength(b[1:])
	switch {
	case !ok:
		return 0, stream.ErrNotFrame
	case n == 0:
		return 0, nil
	}
	return 1 + n + rem, nil
}

// fromClient reports whether direction d is the client's; before the
// client is known, packets a client may send in both directions count as
// the client's.
func (p *Parser) fromClient(d int) bool { return p.client < 0 || d == p.client }

// learnClient sets the client side from a packet only one side sends.
func (p *Parser) learnClient(d int, clientSends bool) {
	if p.client >= 0 {
		return
	}
	if clientSends {
		p.client = d
	} else {
		p.client = 1 - d
	}
}

func (p *Parser) message(f *stream.Frame, t l7.MessageType) *l7.Message {
	m := &l7.Message{Type: t, Protocol: flowlog.L7MQTT, Version: p.version}
	m.From(f.Start, f.TCPSeq)
	m.EndAt(f.End)
	m.Length = int64(len(f.Data) + f.Missing)
	m.Captured = uint32(len(f.Data))
	return m
}

// packet decodes one control packet; false means framing is lost.
func (p *Parser) packet(d int, f *stream.Frame) bool {
	typ, flags := f.Data[0]>>4, f.Data[0]&0x0f
	rem, n, _ := remainingLength(f.Data[1:])
	r := reader{b: f.Data[1+n:]}
	if len(r.b) > rem {
		r.b = r.b[:rem]
	}
	switch typ {
	case typeConnect:
		return p.connect(d, f, &r)
	case typeConnack:
		p.learnClient(d, false)
		r.u8() // acknowledge flags
		p.ack(f, &r, false, 0, true, false, -1)
	case typePublish:
		p.publish(d, f, &r, flags)
	case typePuback, typePubrec:
		id := uint64(r.u16())
		if p.client >= 0 && d == p.client {
			id += serverIDs // the client acknowledges the server's PUBLISH
		}
		code := -1 // 3.1.1 acknowledgements carry no code
		if p.v5 {
			code = 0 // "Success" when the reason code is omitted
			if rem >= 3 {
				code = int(r.u8())
			}
		}
		p.ack(f, &r, true, id, false, false, code)
	case typePubrel, typePubcomp, typeAuth:
		// QoS 2's second half: the exchange's row ended at PUBREC.
		p.stats.Quiet++
	case typeSubscribe, typeUnsubscribe:
		p.learnClient(d, true)
		p.subscribe(f, &r, typ)
	case typeSuback, typeUnsuback:
		p.learnClient(d, false)
		id := uint64(r.u16())
		if p.v5 {
			r.skipProps()
		}
		code := -1 // 3.1.1 UNSUBACK carries no code
		if typ == typeSuback || p.v5 {
			// The first failure, else the first granted QoS / reason.
			for !r.failed() && r.off < len(r.b) {
				c := int(r.u8())
				if code < 0 || (c >= 0x80 && code < 0x80) {
					code = c
				}
			}
			if code < 0 {
				r.short = true // no code at all
			}
		}
		p.ack(f, &r, true, id, false, true, code)
	case typePingreq:
		p.learnClient(d, true)
		m := p.message(f, l7.Request)
		m.RequestType = "PINGREQ"
		m.Domain = p.clientID
		p.request(m)
	case typePingresp:
		p.learnClient(d, false)
		p.ack(f, &r, false, 0, false, false, -1)
	case typeDisconnect:
		m := p.message(f, l7.Request)
		m.RequestType = "DISCONNECT"
		m.Domain = p.clientID
		m.OneWay = true
		p.request(m)
	}
	return true
}

func (p *Parser) request(m *l7.Message) {
	p.stats.Requests++
	p.emit(m)
}

// ack emits a response with its return/reason code (-1: none).
func (p *Parser) ack(f *stream.Frame, r *reader, hasID bool, id uint64, connack, suback bool, code int) {
	m := p.message(f, l7.Response)
	m.RequestID, m.HasRequestID = id, hasID
	if connack {
		code = int(r.u8())
	}
	switch {
	case r.failed():
		// Acknowledgements are a few bytes: short means malformed.
		m.Status = flowlog.StatusParseFailed
	case code >= 0:
		p.setCode(m, byte(code), connack, suback)
	default:
		m.Status = flowlog.StatusSuccess
	}
	p.stats.Responses++
	p.emit(m)
}

func (p *Parser) setCode(m *l7.Message, c byte, connack, suback bool) {
	m.Code, m.HasCode = int32(c), true
	m.Status = codeStatus(c, p.v5, connack, suback)
	if m.Status != flowlog.StatusSuccess {
		m.Exception = codeName(c, p.v5, connack)
	}
}

// connect reads CONNECT: protocol level and client id (the will, user name
// and password that follow are never read).
func (p *Parser) connect(d int, f *stream.Frame, r *reader) bool {
	name := r.str()
	level := r.u8()
	r.u8()     // flags
	r.skip(2)  // keep alive
	if r.bad { // not an MQTT CONNECT after all
		p.stats.BadFrames++
		return false
	}
	p.client = d
	switch {
	case level == 5:
		p.v5, p.version = true, "5"
	case level == 4:
		p.v5, p.version = false, "3.1.1"
	case level == 3 || string(name) == "MQIsdp":
		p.v5, p.version = false, "3.1"
	}
	if p.v5 {
		r.skipProps()
	}
	if id := r.str(); !r.failed() {
		p.clientID = string(id[:min(len(id), maxClientID)])
	}
	m := p.message(f, l7.Request)
	m.RequestType = "CONNECT"
	m.Domain = p.clientID
	p.request(m)
	return true
}

// publish reads PUBLISH's topic, packet id and (MQTT 5) trace context.
func (p *Parser) publish(d int, f *stream.Frame, r *reader, flags byte) {
	qos := (flags >> 1) & 3
	topic := r.str()
	m := p.message(f, l7.Request)
	m.RequestType = "PUBLISH"
	m.Domain = p.clientID
	if qos == 0 {
		m.OneWay = true
	} else {
		id := r.u16()
		m.RequestID, m.HasRequestID = uint64(id), true
		if !p.fromClient(d) {
			m.RequestID += serverIDs
		}
		if !r.failed() {
			setPacketID(m, id)
		}
	}
	if p.v5 {
		publishProps(m, r)
	}
	// An MQTT 5 PUBLISH may name its topic by alias only (empty topic).
	m.Resource = string(topic)
	m.Endpoint = endpoint(m.Resource)
	p.request(m)
}

// subscribe reads SUBSCRIBE/UNSUBSCRIBE's packet id and first topic filter.
func (p *Parser) subscribe(f *stream.Frame, r *reader, typ byte) {
	m := p.message(f, l7.Request)
	m.RequestType = "SUBSCRIBE"
	if typ == typeUnsubscribe {
		m.RequestType = "UNSUBSCRIBE"
	}
	m.Domain = p.clientID
	m.RequestID = uint64(r.u16())
	m.HasRequestID = !r.failed()
	if p.v5 {
		r.skipProps()
	}
	if filter := r.str(); !r.failed() {
		m.Resource = string(filter)
		m.Endpoint = endpoint(m.Resource)
	}
	p.request(m)
}

// reader reads MQTT fields from a packet's captured bytes; past the end it
// sets short and returns zero values.
type reader struct {
	b     []byte
	off   int
	short bool
	bad   bool
}

func (r *reader) failed() bool { return r.short || r.bad }

func (r *reader) take(n int) []byte {
	if r.failed() || n > len(r.b)-r.off {
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

// str reads a length-prefixed UTF-8 string.
func (r *reader) str() []byte { return r.take(int(r.u16())) }

// skipProps skips an MQTT 5 property block.
func (r *reader) skipProps() {
	if r.failed() {
		return
	}
	n, k, ok := remainingLength(r.b[r.off:])
	switch {
	case !ok:
		r.bad = true
	case k == 0:
		r.short = true
	default:
		r.off += k
		r.take(n)
	}
}
