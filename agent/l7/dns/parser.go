package dns

import (
	"encoding/binary"

	"github.com/sightline-io/sightline/agent/capture"
	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/agent/l7/stream"
	"github.com/sightline-io/sightline/flowlog"
)

// maxTCPBuffer bounds the bytes held for one DNS-over-TCP message: the
// question and the first answers are all the parser reads.
const maxTCPBuffer = 16 << 10

// Stats counts what a Parser saw.
type Stats struct {
	Requests    uint64 // queries emitted
	Responses   uint64 // responses emitted
	ParseFailed uint64 // responses emitted with StatusParseFailed
	Skipped     uint64 // datagrams or frames that were not a DNS message
	BareTCP     uint64 // TCP messages seen without their length prefix
}

// tcpDir is the framing state of one TCP direction.
type tcpDir struct {
	buf    stream.Buffer
	framed bool // a prefixed frame was delivered: no more bare messages
}

// Parser parses one UDP socket or TCP connection (both directions). It is
// not safe for concurrent use.
type Parser struct {
	dirs  [2]tcpDir
	stats Stats

	msg      l7.Message // reused for every emitted message
	result   resultWriter
	nameBuf  [maxNameWire + 1]byte
	lastName string // the last question name, reused when repeated
}

var _ l7.Parser = (*Parser)(nil)

func newParser() *Parser {
	p := &Parser{}
	for i := range p.dirs {
		p.dirs[i].buf.Max = maxTCPBuffer
	}
	return p
}

// Stats returns the parser's counters.
func (p *Parser) Stats() Stats { return p.stats }

// Close does nothing: every DNS message is delimited.
func (p *Parser) Close(func(*l7.Message)) {}

// Feed parses one segment: a whole datagram on UDP, stream bytes on TCP.
func (p *Parser) Feed(seg *capture.Segment, emit func(*l7.Message)) {
	if seg.Tuple.L4 == 17 {
		if !p.decode(seg, seg, seg.TCPSeq, seg.Data, seg.Gap() <= 0, int64(max(seg.Len, len(seg.Data))), emit) {
			p.stats.Skipped++
		}
		return
	}
	d := &p.dirs[seg.Dir&1]
	if !d.framed && d.buf.Buffered() == 0 && seg.Gap() <= 0 &&
		classifyTCP(seg.Data) == l7.NotMine {
		// A message whose prefix came in earlier reads (see Protocol.Infer).
		if r := classify(seg.Data, true); r == l7.IsRequest || r == l7.IsResponse {
			p.stats.BareTCP++
			p.decode(seg, seg, seg.TCPSeq, seg.Data, true, int64(len(seg.Data)), emit)
			return
		}
	}
	d.buf.Feed(seg, frameLen, func(f *stream.Frame) bool {
		d.framed = true
		h, ok := readHeader(f.Data[2:])
		if !ok || !h.sane() {
			// Framing is lost (a capture that started mid-message).
			p.stats.Skipped++
			return false
		}
		if !p.decode(f.Start, f.End, f.TCPSeq, f.Data[2:], f.Missing == 0, int64(len(f.Data)+f.Missing), emit) {
			p.stats.Skipped++
		}
		return true
	})
}

// frameLen reads the 2-byte length prefix of DNS over TCP.
func frameLen(b []byte) (int, error) {
	if len(b) < 2 {
		return 0, nil
	}
	n := int(binary.BigEndian.Uint16(b))
	if n < headerLen {
		return 0, stream.ErrNotFrame
	}
	return n + 2, nil
}

// decode parses one message (complete: nothing of it is missing) and emits
// it. It reports false when msg is not a message it can emit: shorter than a
// header, or a query whose question does not parse.
func (p *Parser) decode(start, end *capture.Segment, tcpSeq uint32, msg []byte, complete bool, length int64, emit func(*l7.Message)) bool {
	h, ok := readHeader(msg)
	if !ok {
		return false
	}
	m := &p.msg
	*m = l7.Message{
		Protocol:     flowlog.L7DNS,
		RequestID:    uint64(h.id),
		HasRequestID: true,
		Length:       length,
		Captured:     uint32(len(msg)),
	}
	if length >= 0 && int64(len(msg)) > length {
		m.Length = int64(len(msg))
	}
	m.From(start, tcpSeq)
	m.EndAt(end)

	var q question
	res := nameBad
	if h.qd > 0 {
		q, res = readQuestion(msg, p.nameBuf[:0])
	}
	if !h.qr() {
		if res != nameOK {
			return false
		}
		m.Type = l7.Request
		m.RequestType = typeName(q.qtype)
		name := p.name(q.name)
		m.Domain, m.Resource, m.Endpoint = name, name, name
		p.stats.Requests++
		emit(m)
		return true
	}

	m.Type = l7.Response
	rc := h.rcode()
	m.Code, m.HasCode = int32(rc), true
	p.stats.Responses++
	if res != nameOK && !(h.qd == 0 && rc != 0) {
		// Error responses may omit the question; anything else must parse.
		m.Status = flowlog.StatusParseFailed
		if rc != 0 {
			m.Exception = rcodeName(rc)
		}
		p.stats.ParseFailed++
		emit(m)
		return true
	}
	after := headerLen
	if h.qd > 0 {
		after = q.end
		for i := 1; i < int(h.qd); i++ { // more questions: rare, skip them
			next, r := skipName(msg, after)
			if r != nameOK || next+4 > len(msg) {
				after = -1
				break
			}
			after = next + 4
		}
	}
	p.result.reset()
	var w rrWalk
	if after >= 0 {
		w = walkRRs(msg, after, h, p.result.render)
	}
	if w.hasOPT {
		rc |= w.extRC << 4
		m.Code = int32(rc)
	}
	m.Status = rcodeStatus(rc)
	if rc != 0 {
		m.Exception = rcodeName(rc)
	}
	if p.result.n > 0 {
		m.Result = string(p.result.buf[:p.result.n])
	}
	if after < 0 || w.res == nameBad || (w.res == nameShort && complete) {
		m.Status = flowlog.StatusParseFailed
		p.stats.ParseFailed++
	}
	emit(m)
	return true
}

// name returns b as a string, reusing the previous question's when equal
// (clients repeat the same names).
func (p *Parser) name(b []byte) string {
	if len(b) == 0 {
		return "."
	}
	if string(b) != p.lastName {
		p.lastName = string(b)
	}
	return p.lastName
}
