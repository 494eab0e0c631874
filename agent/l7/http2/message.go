package http2

import (
	"strings"
	"time"

	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/agent/l7/http1"
	"github.com/sightline-io/sightline/agent/l7/mask"
	"github.com/sightline-io/sightline/flowlog"

	"github.com/sightline-io/sightline/agent/l7/tracectx"
)

const (
	version         = "2"
	maxExceptionLen = 256
	maxXRequestID   = 128
)

// endKind says how a stream's response ended.
type endKind uint8

const (
	endStream endKind = iota // END_STREAM from the server
	endReset                 // RST_STREAM from either side
	endGoAway                // the server's GOAWAY did not cover the stream
	endClosed                // the connection ended first
)

// resetEnd describes an RST_STREAM or GOAWAY ending.
type resetEnd struct {
	code       uint32
	fromClient bool
	at         *ident // the frame, when the response had not started
}

// emitRequest emits st's request once; streams whose request was not seen
// have none.
func (p *Parser) emitRequest(st *h2stream) {
	if !st.hasReq || st.reqEmitted {
		return
	}
	st.reqEmitted = true
	p.held--
	m := &p.msg
	*m = l7.Message{Type: l7.Request, Protocol: st.protocol(), Version: version,
		RequestID: uint64(st.id), HasRequestID: true, Length: st.reqLen, Captured: clampU32(st.reqCap)}
	m.RequestType = st.method
	if m.Protocol == flowlog.L7GRPC {
		if m.RequestType == "" {
			m.RequestType = "POST"
		}
		m.Resource, m.Endpoint = st.path, st.path
		m.Domain = grpcService(st.path)
		if m.Domain == "" {
			m.Domain = st.domain
		}
	} else {
		m.Domain = st.domain
		m.Resource, m.Endpoint = p.last.get(st.path, p.keepSecrets)
	}
	if trace, span, ok := tracectx.Traceparent(st.traceparent); ok {
		m.TraceID, m.SpanID = trace, span
	}
	m.XRequestID = clip(st.xrid, maxXRequestID)
	setIdent(m, &st.reqStart)
	if !st.reqEnd.IsZero() {
		m.End = st.reqEnd
	}
	p.stats.Requests++
	p.emit(m)
}

// emitResponse emits st's response, ended at end, and forgets the stream.
func (p *Parser) emitResponse(st *h2stream, end time.Time, kind endKind, rst *resetEnd) {
	defer p.drop(st)
	m := &p.msg
	*m = l7.Message{Type: l7.Response, Protocol: st.protocol(), Version: version,
		RequestID: uint64(st.id), HasRequestID: true, Length: st.respLen, Captured: clampU32(st.respCap)}
	if m.Protocol == flowlog.L7GRPC {
		p.grpcResult(m, st)
	} else {
		p.httpResult(m, st)
	}
	switch kind {
	case endReset:
		m.Exception = "RST_STREAM " + errCodeName(rst.code)
		m.Status = flowlog.StatusServerError
		if rst.code == errCancel && rst.fromClient {
			m.Status = flowlog.StatusClientError
		}
	case endGoAway:
		m.Exception = "GOAWAY " + errCodeName(rst.code)
		m.Status = flowlog.StatusServerError
	case endClosed:
		if m.Exception == "" {
			m.Exception = "connection closed before END_STREAM"
		}
		if m.Status != flowlog.StatusClientError {
			m.Status = flowlog.StatusServerError
		}
	}
	switch {
	case st.respStarted:
		setIdent(m, &st.respStart)
	case rst != nil && rst.at != nil:
		setIdent(m, rst.at)
		m.Length, m.Captured = 0, 0
	}
	// The response travels from the server.
	m.Dir = st.reqDir.Reverse()
	if !end.IsZero() {
		m.End = end
	}
	p.stats.Responses++
	p.emit(m)
}

// httpResult sets the response columns of a plain HTTP/2 stream.
func (p *Parser) httpResult(m *l7.Message, st *h2stream) {
	code, ok := parseStatus(st.status)
	if !ok {
		m.Status = flowlog.StatusParseFailed
		return
	}
	m.Code, m.HasCode = code, true
	switch {
	case code >= 500:
		m.Status = flowlog.StatusServerError
		m.Exception = statusText(code)
	case code >= 400:
		m.Status = flowlog.StatusClientError
		m.Exception = statusText(code)
	}
}

// grpcResult sets the response columns of a gRPC call from grpc-status and
// grpc-message (trailers, or a trailers-only response); without them the
// HTTP status decides.
func (p *Parser) grpcResult(m *l7.Message, st *h2stream) {
	code, ok := parseStatus(st.grpcStatus)
	if !ok {
		if hc, hok := parseStatus(st.status); hok && hc != 200 {
			p.httpResult(m, st)
			return
		}
		// Trailers the table could not resolve (capture began mid-connection)
		// hide the status; trailers without one break the protocol.
		m.Status = flowlog.StatusParseFailed
		if st.respPartial {
			m.Status = flowlog.StatusUnknown
		}
		return
	}
	m.Code, m.HasCode = code, true
	m.Status = grpcStatusClass(code)
	if m.Status != flowlog.StatusSuccess {
		m.Exception = clip(percentDecode(st.grpcMessage), maxExceptionLen)
		if m.Exception == "" {
			m.Exception = grpcCodeName(code)
		}
	}
}

// grpcStatusClass maps a gRPC status code to the response status: codes the
// caller caused are client errors, the rest server errors.
func grpcStatusClass(code int32) flowlog.ResponseStatus {
	switch code {
	case 0:
		return flowlog.StatusSuccess
	case 1, 3, 5, 6, 7, 8, 9, 11, 16:
		// CANCELLED, INVALID_ARGUMENT, NOT_FOUND, ALREADY_EXISTS,
		// PERMISSION_DENIED, RESOURCE_EXHAUSTED, FAILED_PRECONDITION,
		// OUT_OF_RANGE, UNAUTHENTICATED
		return flowlog.StatusClientError
	}
	// UNKNOWN, DEADLINE_EXCEEDED, ABORTED, UNIMPLEMENTED, INTERNAL,
	// UNAVAILABLE, DATA_LOSS and codes this list does not know.
	return flowlog.StatusServerError
}

var grpcCodeNames = [...]string{
	"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",
	"PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
	"UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED",
}

func grpcCodeName(code int32) string {
	if code >= 0 && int(code) < len(grpcCodeNames) {
		return grpcCodeNames[code]
	}
	return "UNKNOWN"
}

func errCodeName(code uint32) string {
	if code <= errCodeMax {
		return errCodeNames[code]
	}
	return "UNKNOWN_ERROR"
}

// parseStatus parses a decimal status of 1 to 4 digits (HTTP or gRPC).
func parseStatus(s string) (int32, bool) {
	if len(s) == 0 || len(s) > 4 {
		return 0, false
	}
	var v int32
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int32(c-'0')
	}
	return v, true
}

// statusText is the reason phrase HTTP/2 no longer sends, for common error
// statuses (the exception column of failed requests).
func statusText(code int32) string {
	switch code {
	case 400:
		return "Bad Request"
	case 401:
		return "Unauthorized"
	case 403:
		return "Forbidden"
	case 404:
		return "Not Found"
	case 405:
		return "Method Not Allowed"
	case 408:
		return "Request Timeout"
	case 409:
		return "Conflict"
	case 413:
		return "Content Too Large"
	case 429:
		return "Too Many Requests"
	case 500:
		return "Internal Server Error"
	case 501:
		return "Not Implemented"
	case 502:
		return "Bad Gateway"
	case 503:
		return "Service Unavailable"
	case 504:
		return "Gateway Timeout"
	}
	return ""
}

// grpcService returns "pkg.Service" from "/pkg.Service/Method", or "".
func grpcService(path string) string {
	if len(path) < 2 || path[0] != '/' {
		return ""
	}
	i := strings.IndexByte(path[1:], '/')
	if i <= 0 {
		return ""
	}
	return path[1 : i+1]
}

// grpcPath reports whether path has the gRPC shape /pkg.Service/Method.
func grpcPath(path string) bool {
	svc := grpcService(path)
	return svc != "" && len(path) > len(svc)+2 && strings.IndexByte(path[len(svc)+2:], '/') < 0 &&
		strings.IndexByte(path, '?') < 0
}

// pathCache keeps the last path's masked resource and endpoint: clients
// repeat paths, and HPACK hands back the table's string for them.
type pathCache struct {
	path, resource, endpoint string
	keep, valid              bool
}

func (c *pathCache) get(path string, keep bool) (resource, endpoint string) {
	if c.valid && c.keep == keep && c.path == path {
		return c.resource, c.endpoint
	}
	resource = path
	if !keep {
		resource = mask.URL(path)
	}
	p := path
	if i := strings.IndexAny(p, "?#"); i >= 0 {
		p = p[:i]
	}
	endpoint = http1.NormalizePath(p)
	*c = pathCache{path: path, resource: resource, endpoint: endpoint, keep: keep, valid: true}
	return resource, endpoint
}

// percentDecode undoes grpc-message's percent-encoding (malformed escapes
// are kept as they are).
func percentDecode(s string) string {
	if strings.IndexByte(s, '%') < 0 {
		return s
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) {
			hi, lo := unhex(s[i+1]), unhex(s[i+2])
			if hi >= 0 && lo >= 0 {
				b = append(b, byte(hi<<4|lo))
				i += 2
				continue
			}
		}
		b = append(b, s[i])
	}
	return string(b)
}

func unhex(c byte) int {
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

// clip bounds a stored string, cutting at a UTF-8 boundary.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && s[n]&0xc0 == 0x80 {
		n--
	}
	return s[:n]
}

func clampU32(v int64) uint32 {
	if v < 0 {
		return 0
	}
	if v > 1<<32-1 {
		return 1<<32 - 1
	}
	return uint32(v)
}

func setIdent(m *l7.Message, id *ident) {
	m.Dir = id.dir
	m.Start, m.End = id.start, id.end
	m.TCPSeq, m.TID, m.CapSeq = id.tcpSeq, id.tid, id.capSeq
	m.SyscallTraceID, m.Coroutine = id.syscallTraceID, id.coroutine
}
