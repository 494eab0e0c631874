package amqp

import (
	"encoding/binary"

	"github.com/sightline-io/sightline/agent/l7"
)

// AttrMessageID is the message-id property of a published or delivered
// message: a trace assembler links Basic.Publish to Basic.Deliver (and
// Basic.Get-Ok) by it.
const AttrMessageID = "amqp.message_id"

// maxMessageID bounds the message id kept.
const maxMessageID = 256

// held is a Basic.Publish, Return, Deliver or Get-Ok waiting for the
// content header that follows it on its channel: the header's properties
// (message id, headers table) complete the message.
type held struct {
	m       *l7.Message
	channel uint16
}

// carriesContent reports whether a method is followed by a content header.
func carriesContent(class, id uint16) bool {
	return class == classBasic && (id == 40 || id == 50 || id == 60 || id == 71)
}

// hold keeps m until direction d's next frame.
func (p *Parser) hold(d int, m *l7.Message, channel uint16) {
	p.flush(d)
	p.held[d] = held{m: m, channel: channel}
}

// flush emits direction d's held message, if any.
func (p *Parser) flush(d int) {
	if h := p.held[d]; h.m != nil {
		p.held[d] = held{}
		p.emit(h.m)
	}
}

// contentHeader completes m from a content header's payload (class,
// weight, body size, property flags, properties in flag order): its
// message-id property and a traceparent entry of its headers table. It
// reads only the captured bytes and never more than the properties up to
// message-id.
func contentHeader(m *l7.Message, payload []byte) {
	r := reader{b: payload}
	r.skip(2 + 2 + 8) // class, weight, body size
	flags := r.u16()
	for f := flags; f&1 != 0 && !r.failed(); {
		f = r.u16() // continuation flag words: no 0-9-1 property uses them
	}
	if r.failed() {
		return
	}
	has := func(bit uint) bool { return flags&(1<<bit) != 0 }
	if has(15) {
		r.shortstr() // content type
	}
	if has(14) {
		r.shortstr() // content encoding
	}
	if has(13) {
		traceHeaders(m, r.take(int(r.u32())))
	}
	if has(12) {
		r.skip(1) // delivery mode
	}
	if has(11) {
		r.skip(1) // priority
	}
	for bit := uint(10); bit >= 8; bit-- {
		if has(bit) {
			r.shortstr() // correlation id, reply to, expiration
		}
	}
	if has(7) {
		if id := r.shortstr(); len(id) > 0 && !r.failed() {
			if m.Attributes == nil {
				m.Attributes = make(map[string]string, 1)
			}
			m.Attributes[AttrMessageID] = string(id[:min(len(id), maxMessageID)])
		}
	}
}

// traceHeaders looks for a W3C traceparent in a field table (name, type
// octet, value; RabbitMQ's type letters) and sets m's trace context from it.
// It stops at the first value type it cannot size.
func traceHeaders(m *l7.Message, table []byte) {
	r := reader{b: table}
	for !r.failed() && r.off < len(r.b) {
		name := r.shortstr()
		typ := r.u8()
		var v []byte
		switch typ {
		case 't', 'b', 'B':
			r.skip(1)
		case 's', 'u':
			r.skip(2)
		case 'I', 'i', 'f':
			r.skip(4)
		case 'l', 'L', 'd', 'T':
			r.skip(8)
		case 'D':
			r.skip(5)
		case 'V':
		case 'S', 'x', 'A', 'F':
			v = r.take(int(r.u32()))
		default:
			return
		}
		if (typ == 'S' || typ == 'x') && string(name) == "traceparent" && !r.failed() && m.SetTraceparent(v) {
			return
		}
	}
}

func (r *reader) u32() uint32 {
	if b := r.take(4); b != nil {
		return binary.BigEndian.Uint32(b)
	}
	return 0
}
