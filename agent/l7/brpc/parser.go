package brpc

import (
	"errors"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/sightline-io/sightline/agent/capture"
	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/agent/l7/pbwire"
	"github.com/sightline-io/sightline/agent/l7/stream"
	"github.com/sightline-io/sightline/flowlog"
)

// Bounds on what is kept from a meta.
const (
	maxName      = 256
	maxException = 256
	maxRequestID = 128
)

// Stats counts what a Parser saw.
type Stats struct {
	Requests, Responses uint64
	BadMeta             uint64 // metas that did not decode (messages still emitted)
	Stream              [2]stream.Stats
}

// Parser parses one baidu_std connection. stream.Buffer cuts the frames; a
// connection picked up mid-frame recovers at the next segment starting
// with "PRPC".
type Parser struct {
	dirs  [2]stream.Buffer
	msg   l7.Message
	stats Stats
	last  struct{ service, method, resource string }
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

var errNotBRPC = errors.New("brpc: not a baidu_std header")

func frameLen(b []byte) (int, error) {
	const magic = "PRPC"
	if n := min(len(b), len(magic)); string(b[:n]) != magic[:n] {
		return 0, errNotBRPC
	}
	if len(b) < headerLen {
		return 0, nil
	}
	body, _, ok := parseHeader(b)
	if !ok {
		return 0, errNotBRPC
	}
	return headerLen + body, nil
}

// meta is what the parser keeps of an RpcMeta.
type meta struct {
	request, response   bool
	service, method     []byte
	traceID, spanID     uint64
	parentSpanID        uint64
	requestID           []byte
	errorCode           int32
	errorText           []byte
	correlationID       uint64
	hasCorrelation, bad bool
}

func (p *Parser) frame(f *stream.Frame, emit func(*l7.Message)) {
	body, metaLen, _ := parseHeader(f.Data)
	raw := f.Data[headerLen:]
	raw = raw[:min(len(raw), metaLen)]
	var md meta
	decodeMeta(&md, raw)
	if md.bad || len(raw) < metaLen {
		p.stats.BadMeta++
	}
	m := &p.msg
	*m = l7.Message{Protocol: flowlog.L7BRPC, RequestID: md.correlationID, HasRequestID: md.hasCorrelation}
	m.From(f.Start, f.TCPSeq)
	m.EndAt(f.End)
	m.Length = int64(headerLen + body)
	m.Captured = uint32(len(f.Data))
	if md.request {
		p.stats.Requests++
		m.Type = l7.Request
		p.setNames(m, md.service, md.method)
		if md.traceID != 0 {
			m.TraceID = hex16(md.traceID)
			m.SpanID = hex16(md.spanID)
			if md.parentSpanID != 0 {
				m.ParentSpanID = hex16(md.parentSpanID)
			}
		}
		if len(md.requestID) > 0 {
			m.XRequestID = string(md.requestID[:min(len(md.requestID), maxRequestID)])
		}
	} else {
		p.stats.Responses++
		m.Type = l7.Response
		m.Code, m.HasCode = md.errorCode, true
		m.Status = responseStatus(md.errorCode)
		if md.errorCode != 0 {
			if t := md.errorText[:min(len(md.errorText), maxException)]; len(t) > 0 {
				m.Exception = validString(t)
			} else {
				m.Exception = errorName(md.errorCode)
			}
		}
		if md.bad && !md.hasCorrelation {
			// Not even the correlation id decoded: the response is
			// recognised but unreadable.
			m.Status = flowlog.StatusParseFailed
		}
	}
	emit(m)
}

// setNames fills request_type, domain, resource ("service/method") and
// endpoint, reusing the previous strings while they repeat.
func (p *Parser) setNames(m *l7.Message, svc, method []byte) {
	svc, method = svc[:min(len(svc), maxName)], method[:min(len(method), maxName)]
	if string(svc) != p.last.service || string(method) != p.last.method {
		p.last.service, p.last.method = string(svc), string(method)
		p.last.resource = p.last.service + "/" + p.last.method
	}
	m.Domain, m.RequestType = p.last.service, p.last.method
	m.Resource, m.Endpoint = p.last.resource, p.last.resource
}

// decodeMeta reads RpcMeta fields from b as far as they decode: request (1),
// response (2), correlation_id (4); a truncated or malformed tail sets bad
// and keeps what came before.
func decodeMeta(md *meta, b []byte) {
	md.bad = md.bad || !pbwire.Walk(b, func(f pbwire.Field) bool {
		switch {
		case f.Num == 1 && f.Type == protowire.BytesType:
			md.request = true
			decodeRequestMeta(md, f.Bytes)
		case f.Num == 2 && f.Type == protowire.BytesType:
			md.response = true
			decodeResponseMeta(md, f.Bytes)
		case f.Num == 4 && f.Type == protowire.VarintType:
			md.correlationID, md.hasCorrelation = f.Varint, true
		}
		return true
	})
}

// decodeRequestMeta reads RpcRequestMeta: service_name (1), method_name
// (2), trace_id (4), span_id (5), parent_span_id (6), request_id (7).
func decodeRequestMeta(md *meta, b []byte) {
	md.bad = md.bad || !pbwire.Walk(b, func(f pbwire.Field) bool {
		if f.Type == protowire.BytesType {
			switch f.Num {
			case 1:
				md.service = f.Bytes
			case 2:
				md.method = f.Bytes
			case 7:
				md.requestID = f.Bytes
			}
			return true
		}
		switch f.Num {
		case 4:
			md.traceID = f.Varint
		case 5:
			md.spanID = f.Varint
		case 6:
			md.parentSpanID = f.Varint
		}
		return true
	})
}

// decodeResponseMeta reads RpcResponseMeta: error_code (1), error_text (2).
func decodeResponseMeta(md *meta, b []byte) {
	md.bad = md.bad || !pbwire.Walk(b, func(f pbwire.Field) bool {
		switch {
		case f.Num == 1 && f.Type == protowire.VarintType:
			md.errorCode = int32(f.Varint) // int32: negative values are sign-extended
		case f.Num == 2 && f.Type == protowire.BytesType:
			md.errorText = f.Bytes
		}
		return true
	})
}

// hex16 formats an id as 16 lower-case hex digits (the width of an
// OpenTelemetry span id).
func hex16(v uint64) string {
	const digits = "0123456789abcdef"
	var b [16]byte
	for i := 15; i >= 0; i-- {
		b[i] = digits[v&0xf]
		v >>= 4
	}
	return string(b[:])
}

// validString returns b as a string with invalid UTF-8 replaced.
func validString(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	return string([]rune(string(b)))
}
