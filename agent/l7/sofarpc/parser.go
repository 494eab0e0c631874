package sofarpc

import (
	"bytes"
	"errors"

	"github.com/sightline-io/sightline/agent/capture"
	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/agent/l7/dubbo/hessian"
	"github.com/sightline-io/sightline/agent/l7/stream"
	"github.com/sightline-io/sightline/flowlog"
)

// Bounds on what is kept from a message.
const (
	maxName      = 256 // service, method, class names
	maxException = 256
	maxTraceVal  = 128
)

// Stats counts what a Parser saw.
type Stats struct {
	Requests, Responses uint64
	Heartbeats          uint64
	Stream              [2]stream.Stats
}

// Parser parses one Bolt connection. stream.Buffer cuts the frames; a
// connection picked up mid-frame recovers at the next segment starting a
// valid header.
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

var errNotBolt = errors.New("sofarpc: not a Bolt header")

func frameLen(b []byte) (int, error) {
	h, st := parseHeader(b)
	switch st {
	case headerShort:
		if len(b) > 0 && !prefixOK(b) {
			return 0, errNotBolt
		}
		return 0, nil
	case headerBad:
		return 0, errNotBolt
	}
	return h.total(), nil
}

func (p *Parser) frame(f *stream.Frame, emit func(*l7.Message)) {
	h, _ := parseHeader(f.Data)
	if h.cmd == cmdHeartbeat {
		p.stats.Heartbeats++
		return
	}
	m := &p.msg
	*m = l7.Message{Protocol: flowlog.L7SofaRPC, RequestID: uint64(h.id), HasRequestID: true, Version: "1"}
	if h.v2 {
		m.Version = "2"
	}
	m.From(f.Start, f.TCPSeq)
	m.EndAt(f.End)
	m.Length = int64(h.total())
	m.Captured = uint32(len(f.Data))
	rest := f.Data[h.size:]
	rest = rest[min(len(rest), h.classLen):] // the class name says only request/response
	hdr := rest[:min(len(rest), h.headerLen)]
	content := rest[len(hdr):]
	content = content[:min(len(content), h.contentLen)]
	if h.typ == typeResponse {
		p.stats.Responses++
		m.Type = l7.Response
		m.Code, m.HasCode = int32(h.status), true
		m.Status = responseStatus(h.status)
		if h.codec == codecHessian2 {
			sofaResponse(m, content)
		}
		if m.Status != flowlog.StatusSuccess && m.Exception == "" {
			m.Exception = statusName(h.status)
		}
	} else {
		p.stats.Requests++
		m.Type = l7.Request
		m.OneWay = h.typ == typeOneway
		var svc, method []byte
		svc, method = headerMap(m, hdr)
		if (len(svc) == 0 || len(method) == 0) && h.codec == codecHessian2 {
			s2, m2 := sofaRequest(content)
			if len(svc) == 0 {
				svc = s2
			}
			if len(method) == 0 {
				method = m2
			}
		}
		p.setNames(m, svc, method)
	}
	emit(m)
}

// setNames fills request_type, domain, resource and endpoint, reusing the
// previous strings while they repeat.
func (p *Parser) setNames(m *l7.Message, svc, method []byte) {
	if len(svc) == 0 && len(method) == 0 {
		return
	}
	svc, method = svc[:min(len(svc), maxName)], method[:min(len(method), maxName)]
	if string(svc) != p.last.service || string(method) != p.last.method {
		p.last.service, p.last.method = string(svc), string(method)
		p.last.resource = p.last.service + "." + p.last.method
	}
	m.Domain, m.RequestType = p.last.service, p.last.method
	m.Resource, m.Endpoint = p.last.resource, p.last.resource
}

// headerMap walks the request header map (4-byte big-endian key and value
// lengths, as far as captured) for the service, method and trace context.
func headerMap(m *l7.Message, b []byte) (svc, method []byte) {
	var oldTrace, oldSpan []byte
	for len(b) >= 4 {
		kl := int(be32(b))
		if kl > len(b)-4 {
			break
		}
		k := b[4 : 4+kl]
		b = b[4+kl:]
		if len(b) < 4 {
			break
		}
		vl := int(be32(b))
		if vl > len(b)-4 {
			break
		}
		v := b[4 : 4+vl]
		b = b[4+vl:]
		switch string(k) {
		case "sofa_head_target_service":
			svc = v
		case "service":
			if len(svc) == 0 {
				svc = v
			}
		case "sofa_head_method_name":
			method = v
		case "new_rpc_trace_context":
			newTraceContext(m, v)
		case "rpc_trace_context.sofaTraceId":
			oldTrace = v
		case "rpc_trace_context.sofaRpcId":
			oldSpan = v
		}
	}
	if m.TraceID == "" && len(oldTrace) > 0 {
		m.TraceID = string(oldTrace[:min(len(oldTrace), maxTraceVal)])
		m.SpanID = string(oldSpan[:min(len(oldSpan), maxTraceVal)])
	}
	return svc, method
}

// newTraceContext reads "tcid=<trace>&spid=<span>&pspid=<parent>&...".
func newTraceContext(m *l7.Message, v []byte) {
	for len(v) > 0 {
		var kv []byte
		if i := bytes.IndexByte(v, '&'); i >= 0 {
			kv, v = v[:i], v[i+1:]
		} else {
			kv, v = v, nil
		}
		k, val, ok := bytes.Cut(kv, []byte{'='})
		if !ok || len(val) == 0 {
			continue
		}
		val = val[:min(len(val), maxTraceVal)]
		switch string(k) {
		case "tcid":
			m.TraceID = string(val)
		case "spid":
			m.SpanID = string(val)
		case "pspid":
			m.ParentSpanID = string(val)
		}
	}
}

// sofaRequest reads targetServiceUniqueName and methodName from a Hessian2
// SofaRequest object, for requests whose header map lacks them.
func sofaRequest(content []byte) (svc, method []byte) {
	const fService, fMethod = 0, 1
	walkObject(content, func(name []byte) int {
		switch string(name) {
		case "targetServiceUniqueName":
			return fService
		case "methodName":
			return fMethod
		}
		return -1
	}, func(field int, r *hessian.Reader) bool {
		v, _, err := r.AppendString(nil, maxName)
		if err != nil {
			return false
		}
		if field == fService {
			svc = v
		} else {
			method = v
		}
		return len(svc) == 0 || len(method) == 0
	})
	return svc, method
}

// sofaResponse reads a Hessian2 SofaResponse: isError and errorMsg (a
// framework error), and appResponse when it is a Throwable (an exception
// the service threw); either makes the response a server error.
func sofaResponse(m *l7.Message, content []byte) {
	const fIsError, fErrorMsg, fApp = 0, 1, 2
	walkObject(content, func(name []byte) int {
		switch string(name) {
		case "isError":
			return fIsError
		case "errorMsg":
			return fErrorMsg
		case "appResponse":
			return fApp
		}
		return -1
	}, func(field int, r *hessian.Reader) bool {
		switch field {
		case fIsError:
			isErr, err := r.Bool()
			if err != nil {
				return false
			}
			if isErr && m.Status == flowlog.StatusSuccess {
				// A framework error under a success status; a failure
				// status already says whose fault it is.
				m.Status = flowlog.StatusServerError
			}
		case fErrorMsg:
			var buf [maxException]byte
			v, null, err := r.AppendString(buf[:0], maxException)
			if err != nil && !errors.Is(err, hessian.ErrShort) {
				return false
			}
			if !null && len(v) > 0 {
				m.Exception = string(v)
			}
			return err == nil
		case fApp:
			if c, ok := r.Peek(); !ok || c != 'C' {
				return false
			}
			name, _ := r.ClassDef(maxName, nil)
			if isThrowable(name) {
				if m.Status == flowlog.StatusSuccess {
					m.Status = flowlog.StatusServerError
				}
				if m.Exception == "" {
					m.Exception = name
				}
			}
			return false
		}
		return true
	})
}

// isThrowable guesses from a class name that it is an exception.
func isThrowable(name string) bool {
	for _, s := range []string{"Exception", "Error", "Throwable"} {
		if len(name) >= len(s) && name[len(name)-len(s):] == s {
			return true
		}
	}
	return false
}

// walkObject reads a class definition and the instance that follows:
// index maps each field name to a caller's field number (-1: not wanted),
// and visit reads a wanted field's value (returning false to stop). Fields
// before a wanted one must be scalars (they are skipped); the walk stops at
// the first complex value it would have to skip.
func walkObject(b []byte, index func(name []byte) int, visit func(field int, r *hessian.Reader) bool) {
	r := hessian.NewReader(b)
	var fields [16]int8
	n := 0
	if _, err := r.ClassDef(maxName, func(i int, name []byte) {
		if i < len(fields) {
			fields[i] = int8(index(name))
			n = i + 1
		}
	}); err != nil {
		return
	}
	if _, err := r.Instance(); err != nil {
		return
	}
	for i := range n {
		if f := fields[i]; f >= 0 {
			if !visit(int(f), &r) {
				return
			}
			continue
		}
		if ok, _ := r.SkipSimple(); !ok {
			return
		}
	}
}
