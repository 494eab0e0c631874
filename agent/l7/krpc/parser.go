package krpc

import (
	"errors"
	"strconv"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/sightline-io/sightline/agent/capture"
	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/agent/l7/pbwire"
	"github.com/sightline-io/sightline/agent/l7/stream"
	"github.com/sightline-io/sightline/flowlog"
)

// Bounds on what is kept.
const (
	maxTrace     = 128
	maxException = 256
)

// Stats counts what a Parser saw.
type Stats struct {
	Requests, Responses uint64
	Heartbeats          uint64
	BadMeta             uint64 // extended headers without a valid direction: no message
	Stream              [2]stream.Stats
}

// Parser parses one KRPC connection. stream.Buffer cuts the frames; a
// connection picked up mid-packet recovers at the next segment starting
// with "KR".
type Parser struct {
	dirs  [2]stream.Buffer
	msg   l7.Message
	stats Stats
	last  struct {
		service, msg          int32
		svcStr, msgStr, resrc string
	}
}

// Stats returns the parser's counters.
func (p *Parser) Stats() Stats {
	s := p.stats
	s.Stream = [2]stream.Stats{p.dirs[0].Stats, p.dirs[1].Stats}
	return s
}

// Feed parses one segment.
func (p *Parser) Feed(seg *capture.Segment, emit func(*l7.Message)) {
	p.dirs[seg.Dir&1].Feed(seg, frameLen, func(f *stream.Frame) bool {
		p.frame(f, emit)
		return true
	})
}

// Close has nothing to flush.
func (p *Parser) Close(func(*l7.Message)) {}

var errNotKRPC = errors.New("krpc: not a KRPC header")

func frameLen(b []byte) (int, error) {
	if len(b) > 0 && b[0] != 'K' || len(b) > 1 && b[1] != 'R' {
		return 0, errNotKRPC
	}
	if len(b) < headerLen {
		return 0, nil
	}
	_, n, ok := parseHeader(b)
	if !ok {
		return 0, errNotKRPC
	}
	return headerLen + n, nil
}

// meta is what the parser keeps of RpcMeta.
type meta struct {
	direction, service, msg, sequence, retCode int32
	traceID, spanID, parentSpanID              []byte
	bad                                        bool
}

func (p *Parser) frame(f *stream.Frame, emit func(*l7.Message)) {
	head, packet, _ := parseHeader(f.Data)
	rest := f.Data[headerLen:]
	raw := rest[:min(len(rest), head)]
	body := rest[len(raw):]
	body = body[:min(len(body), packet-head)]
	var md meta
	decodeMeta(&md, raw)
	if md.service == heartbeatService && md.msg == heartbeatMsg {
		p.stats.Heartbeats++
		return
	}
	if md.direction != dirRequest && md.direction != dirResponse {
		p.stats.BadMeta++
		return
	}
	m := &p.msg
	*m = l7.Message{Protocol: L7KRPC, RequestID: uint64(uint32(md.sequence)), HasRequestID: true}
	m.From(f.Start, f.TCPSeq)
	m.EndAt(f.End)
	m.Length = int64(headerLen + packet)
	m.Captured = uint32(len(f.Data))
	p.setNames(m, md.service, md.msg)
	if len(md.traceID) > 0 {
		m.TraceID = string(md.traceID[:min(len(md.traceID), maxTrace)])
		m.SpanID = string(md.spanID[:min(len(md.spanID), maxTrace)])
		m.ParentSpanID = string(md.parentSpanID[:min(len(md.parentSpanID), maxTrace)])
	}
	if md.direction == dirRequest {
		p.stats.Requests++
		m.Type = l7.Request
	} else {
		p.stats.Responses++
		m.Type = l7.Response
		m.Code, m.HasCode = md.retCode, true
		m.Status = responseStatus(md.retCode)
		if md.retCode != 0 {
			if msg := retMsg(body); len(msg) > 0 {
				m.Exception = string(msg)
			} else {
				m.Exception = retName(md.retCode)
			}
		}
		if md.bad && len(raw) == head {
			// The whole extended header was captured and does not decode.
			m.Status = flowlog.StatusParseFailed
		}
	}
	emit(m)
}

// setNames fills request_type (msgId), domain (serviceId), resource and
// endpoint ("serviceId/msgId"), reusing the strings while they repeat.
func (p *Parser) setNames(m *l7.Message, svc, msg int32) {
	if svc <= 0 && msg <= 0 {
		return
	}
	if svc != p.last.service || msg != p.last.msg || p.last.resrc == "" {
		p.last.service, p.last.msg = svc, msg
		p.last.svcStr = strconv.FormatInt(int64(svc), 10)
		p.last.msgStr = strconv.FormatInt(int64(msg), 10)
		p.last.resrc = p.last.svcStr + "/" + p.last.msgStr
	}
	m.Domain, m.RequestType = p.last.svcStr, p.last.msgStr
	m.Resource, m.Endpoint = p.last.resrc, p.last.resrc
}

// decodeMeta reads RpcMeta as far as it decodes.
func decodeMeta(md *meta, b []byte) {
	md.bad = md.bad || !pbwire.Walk(b, func(f pbwire.Field) bool {
		switch {
		case f.Type == protowire.VarintType:
			switch f.Num {
			case 1:
				md.direction = int32(f.Varint)
			case 2:
				md.service = int32(f.Varint)
			case 3:
				md.msg = int32(f.Varint)
			case 4:
				md.sequence = int32(f.Varint)
			case 6:
				md.retCode = int32(f.Varint)
			}
		case f.Num == 7:
			decodeTrace(md, f.Bytes)
		}
		return true
	})
}

// decodeTrace reads Trace: traceId (2), parentSpanId (3), spanId (4).
func decodeTrace(md *meta, b []byte) {
	md.bad = md.bad || !pbwire.Walk(b, func(f pbwire.Field) bool {
		if f.Type == protowire.BytesType {
			switch f.Num {
			case 2:
				md.traceID = f.Bytes
			case 3:
				md.parentSpanID = f.Bytes
			case 4:
				md.spanID = f.Bytes
			}
		}
		return true
	})
}

// retMsg returns the body's retMsg: by KRPC's convention a response body
// carries retCode in field 1 and retMsg in field 2. Only valid UTF-8 is
// taken, so an unrelated field 2 rarely passes for a message.
func retMsg(b []byte) []byte {
	var out []byte
	pbwire.Walk(b, func(f pbwire.Field) bool {
		if f.Num != 2 || f.Type != protowire.BytesType {
			return true
		}
		if utf8.Valid(f.Bytes) {
			out = f.Bytes[:min(len(f.Bytes), maxException)]
		}
		return false
	})
	return out
}
