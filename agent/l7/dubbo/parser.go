package dubbo

import (
	"bytes"
	"errors"

	"github.com/sightline-io/sightline/agent/capture"
	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/agent/l7/dubbo/hessian"
	"github.com/sightline-io/sightline/agent/l7/stream"
	"github.com/sightline-io/sightline/flowlog"
)

// Limits on the strings kept from a body.
const (
	maxName      = 256 // service, method, version
	maxException = 256
)

// Stats counts what a Parser saw.
type Stats struct {
	Requests, Responses uint64
	Events              uint64 // heartbeats and other events: no message
	Stream              [2]stream.Stats
}

// Parser parses one Dubbo connection. Frames are cut by stream.Buffer, so
// split, truncated (Gap) and garbage input are handled there; a connection
// picked up mid-message recovers at the next segment that starts a header.
type Parser struct {
	dirs  [2]stream.Buffer
	msg   l7.Message
	stats Stats
	// The last strings seen, reused while they repeat so that steady
	// traffic allocates no strings.
	last struct {
		version, service, method, resource string
	}
	scratch []byte
}

// Stats returns the parser's counters.
func (p *Parser) Stats() Stats {
	s := p.stats
	s.Stream = [2]stream.Stats{p.dirs[0].Stats, p.dirs[1].Stats}
	return s
}

// Feed parses one segment.
func (p *Parser) Feed(seg *capture.Segment, emit func(*l7.Message)) {
	d := seg.Dir & 1
	p.dirs[d].Feed(seg, frameLen, func(f *stream.Frame) bool {
		p.frame(f, emit)
		return true
	})
}

// Close has nothing to flush: every message is length-delimited.
func (p *Parser) Close(func(*l7.Message)) {}

var errNotDubbo = errors.New("dubbo: not a header")

// frameLen reads the frame length from a Dubbo header.
func frameLen(b []byte) (int, error) {
	if len(b) > 0 && b[0] != magicHi || len(b) > 1 && b[1] != magicLo {
		return 0, errNotDubbo
	}
	if len(b) < headerLen {
		return 0, nil
	}
	h, ok := parseHeader(b)
	if !ok {
		return 0, errNotDubbo
	}
	return headerLen + h.bodyLen, nil
}

func (p *Parser) frame(f *stream.Frame, emit func(*l7.Message)) {
	h, _ := parseHeader(f.Data) // frameLen accepted it
	if h.event {
		// Heartbeats (and read-only events) are connection upkeep, not
		// calls: no rows.
		p.stats.Events++
		return
	}
	m := &p.msg
	*m = l7.Message{Protocol: flowlog.L7Dubbo, RequestID: h.id, HasRequestID: true}
	m.From(f.Start, f.TCPSeq)
	m.EndAt(f.End)
	m.Length = int64(headerLen + h.bodyLen)
	m.Captured = uint32(len(f.Data))
	body := f.Data[headerLen:]
	if h.request {
		p.stats.Requests++
		m.Type = l7.Request
		m.OneWay = !h.twoWay
		switch h.serial {
		case serialHessian2:
			p.request(m, body)
		case serialFastJSON, serialGson:
			p.requestJSON(m, body)
		}
	} else {
		p.stats.Responses++
		m.Type = l7.Response
		m.Code, m.HasCode = int32(h.status), true
		m.Status = responseStatus(h.status)
		p.response(m, h, body)
	}
	emit(m)
}

// request reads the dubbo version, service, service version and method from
// a Hessian2 body, then trace headers from the attachments.
func (p *Parser) request(m *l7.Message, body []byte) {
	r := hessian.NewReader(body)
	var err error
	var b []byte
	if b, _, err = r.AppendString(p.scratch[:0], maxName); err != nil {
		return
	}
	m.Version = intern(&p.last.version, b)
	if b, _, err = r.AppendString(b[:0], maxName); err != nil {
		return
	}
	service := intern(&p.last.service, b)
	if b, _, err = r.AppendString(b[:0], maxName); err != nil {
		return
	}
	// The service version (often null or 0.0.0) is not a column of its own.
	if b, _, err = r.AppendString(b[:0], maxName); err != nil {
		return
	}
	p.setNames(m, service, b)
	p.scratch = traceHeaders(m, r.Rest(), b[:0])
}

// response fills the exception of a failed response.
func (p *Parser) response(m *l7.Message, h header, body []byte) {
	switch h.serial {
	case serialHessian2:
	case serialFastJSON, serialGson:
		responseJSON(m, h, body)
		return
	default:
		if h.status != statusOK {
			m.Exception = statusName(h.status)
		}
		return
	}
	r := hessian.NewReader(body)
	if h.status != statusOK {
		// The body is the error message.
		msg, _, err := r.String(maxException)
		if msg == "" || (err != nil && !errors.Is(err, hessian.ErrShort)) {
			msg = statusName(h.status)
		}
		m.Exception = msg
		return
	}
	// RESPONSE_WITH_EXCEPTION (0) and ..._WITH_ATTACHMENTS (3) carry a
	// Throwable; 1/4 a value, 2/5 null.
	kind, err := r.Int()
	if errors.Is(err, hessian.ErrShort) {
		return // no body captured: the status byte is all there is
	}
	if err != nil || kind < 0 || kind > 5 {
		// Every Dubbo 2 response body starts with its type.
		m.Status = flowlog.StatusParseFailed
		return
	}
	if kind == 0 || kind == 3 {
		m.Status = flowlog.StatusServerError
		m.Exception = "exception"
		if c, ok := r.Peek(); ok && c == 'C' {
			if name, err := r.ClassDef(maxException, nil); name != "" && (err == nil || errors.Is(err, hessian.ErrShort)) {
				m.Exception = name
			}
		}
	}
}

// setNames fills request_type, domain, resource and endpoint
// ("service.method"), reusing the previous strings while they repeat.
func (p *Parser) setNames(m *l7.Message, svc string, method []byte) {
	meth := intern(&p.last.method, method)
	if len(p.last.resource) != len(svc)+1+len(meth) ||
		p.last.resource[:len(svc)] != svc || p.last.resource[len(svc)+1:] != meth {
		p.last.resource = svc + "." + meth
	}
	m.RequestType, m.Domain = meth, svc
	m.Resource, m.Endpoint = p.last.resource, p.last.resource
}

// intern returns the string of b, reusing *last when it is the same.
func intern(last *string, b []byte) string {
	if string(b) != *last {
		*last = string(b)
	}
	return *last
}

// Attachment keys searched for, as Hessian2 short strings (length byte
// first): matching the encoded key avoids decoding the arguments before the
// attachment map.
var (
	keyTraceparent = []byte("\x0btraceparent")
	keySW8         = []byte("\x03sw8")
	keyRequestID   = []byte("\x0cx-request-id")
)

// traceHeaders looks for W3C traceparent, SkyWalking sw8 and x-request-id
// attachments in the rest of a request body; scratch is a reusable buffer,
// returned for the next call.
func traceHeaders(m *l7.Message, rest, scratch []byte) []byte {
	if len(rest) == 0 {
		return scratch
	}
	if v := attachment(rest, keyTraceparent, scratch); len(v) > 0 {
		m.TraceID, m.SpanID = parseTraceparent(v)
		scratch = v[:0]
	} else if v := attachment(rest, keySW8, scratch); len(v) > 0 {
		m.TraceID, m.SpanID = parseSW8(v)
		scratch = v[:0]
	}
	if v := attachment(rest, keyRequestID, scratch); len(v) > 0 {
		m.XRequestID = string(v)
		scratch = v[:0]
	}
	return scratch
}

// maxAttachment bounds an attachment value read.
const maxAttachment = 256

// attachment appends to dst[:0] the string value after the encoded key, or
// returns nil.
func attachment(b, key, dst []byte) []byte {
	i := bytes.Index(b, key)
	if i < 0 {
		return nil
	}
	r := hessian.NewReader(b[i+len(key):])
	v, _, err := r.AppendString(dst[:0], maxAttachment)
	if err != nil {
		return nil
	}
	return v
}
