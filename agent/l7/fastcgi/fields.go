package fastcgi

import (
	"bytes"
	"encoding/binary"
	"strings"

	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/agent/l7/http1"
	"github.com/sightline-io/sightline/agent/l7/mask"
	"github.com/sightline-io/sightline/flowlog"
)

// maxText bounds strings taken from params and headers; maxURI the
// request URI.
const (
	maxText = 256
	maxURI  = 2048
)

// strCache returns the previous string when the bytes repeat.
type strCache struct{ s string }

func (c *strCache) get(b []byte) string {
	if string(b) != c.s {
		c.s = string(b)
	}
	return c.s
}

func clip(b []byte, n int) []byte { return b[:min(len(b), n)] }

// nextPair reads one name-value pair: each length is one byte, or four
// with the top bit set. ok is false at the end or on a pair that does not
// fit (the rest was cut).
func nextPair(b []byte) (name, value, rest []byte, ok bool) {
	nl, b, ok := pairLen(b)
	if !ok {
		return nil, nil, nil, false
	}
	vl, b, ok := pairLen(b)
	if !ok || nl > len(b) || vl > len(b)-nl {
		return nil, nil, nil, false
	}
	return b[:nl], b[nl : nl+vl], b[nl+vl:], true
}

func pairLen(b []byte) (int, []byte, bool) {
	if len(b) == 0 {
		return 0, nil, false
	}
	if b[0]&0x80 == 0 {
		return int(b[0]), b[1:], true
	}
	if len(b) < 4 {
		return 0, nil, false
	}
	return int(binary.BigEndian.Uint32(b) & 0x7fffffff), b[4:], true
}

// fillRequest sets the request columns from the CGI environment:
// REQUEST_METHOD, HTTP_HOST (else SERVER_NAME), REQUEST_URI (else
// SCRIPT_NAME and QUERY_STRING) with sensitive query values masked, and the
// trace context of HTTP_TRACEPARENT and HTTP_X_REQUEST_ID. Other params
// (cookies, authorization) are never kept.
func (p *Parser) fillRequest(m *l7.Message, params []byte) {
	var method, host, serverName, uri, script, query []byte
	for b := params; ; {
		name, value, rest, ok := nextPair(b)
		if !ok {
			break
		}
		b = rest
		switch string(name) {
		case "REQUEST_METHOD":
			method = value
		case "HTTP_HOST":
			host = value
		case "SERVER_NAME":
			serverName = value
		case "REQUEST_URI":
			uri = value
		case "SCRIPT_NAME":
			script = value
		case "QUERY_STRING":
			query = value
		case "HTTP_TRACEPARENT":
			// version-traceid(32)-parentid(16)-flags
			if len(value) >= 55 && value[2] == '-' && value[35] == '-' && value[52] == '-' {
				m.TraceID, m.SpanID = string(value[3:35]), string(value[36:52])
			}
		case "HTTP_X_REQUEST_ID":
			m.XRequestID = p.reqID.get(clip(value, maxText))
		}
	}
	m.RequestType = methodName(method)
	if m.RequestType == "" && len(method) > 0 {
		m.RequestType = p.method.get(clip(method, 32))
	}
	if len(host) == 0 {
		host = serverName
	}
	if len(host) > 0 {
		m.Domain = p.domain.get(clip(host, maxText))
	}
	var target string
	switch {
	case len(uri) > 0:
		target = string(clip(uri, maxURI))
	case len(script) > 0 && len(query) > 0:
		target = string(clip(script, maxURI)) + "?" + string(clip(query, maxURI))
	case len(script) > 0:
		target = string(clip(script, maxURI))
	}
	if target == "" {
		return
	}
	path := target
	if i := strings.IndexAny(path, "?#"); i >= 0 {
		path = path[:i]
	}
	m.Endpoint = http1.NormalizePath(path)
	if !p.keepSecrets {
		target = mask.URL(target)
	}
	m.Resource = target
}

func methodName(b []byte) string {
	switch string(b) {
	case "GET":
		return "GET"
	case "POST":
		return "POST"
	case "PUT":
		return "PUT"
	case "DELETE":
		return "DELETE"
	case "HEAD":
		return "HEAD"
	case "OPTIONS":
		return "OPTIONS"
	case "PATCH":
		return "PATCH"
	}
	return ""
}

// headEnd returns the offset of the blank line ending the CGI headers, or -1.
func headEnd(b []byte) int {
	if i := bytes.Index(b, []byte("\r\n\r\n")); i >= 0 {
		return i
	}
	return bytes.Index(b, []byte("\n\n"))
}

// fillResponse sets the status from the CGI headers at the start of
// STDOUT: "Status: 404 Not Found", else 302 when a Location is given, else
// 200 (RFC 3875 6.3.3). 4xx are client errors and 5xx server errors, with
// the reason phrase as the exception.
func (p *Parser) fillResponse(m *l7.Message, head []byte) {
	code, reason := int32(200), []byte(nil)
	hasStatus, hasLocation := false, false
	if end := headEnd(head); end >= 0 {
		head = head[:end]
	}
	for len(head) > 0 {
		line := head
		if i := bytes.IndexByte(head, '\n'); i >= 0 {
			line, head = head[:i], head[i+1:]
		} else {
			head = nil
		}
		line = bytes.TrimSuffix(line, []byte("\r"))
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			continue
		}
		name, value := line[:colon], bytes.TrimSpace(line[colon+1:])
		switch {
		case equalFold(name, "status"):
			if c, r, ok := parseStatus(value); ok {
				code, reason, hasStatus = c, r, true
			}
		case equalFold(name, "location"):
			hasLocation = true
		case equalFold(name, "x-request-id"):
			m.XRequestID = string(clip(value, maxText))
		}
	}
	if !hasStatus && hasLocation {
		code = 302
	}
	m.Code, m.HasCode = code, true
	switch {
	case code >= 500:
		m.Status = flowlog.StatusServerError
	case code >= 400:
		m.Status = flowlog.StatusClientError
	default:
		m.Status = flowlog.StatusSuccess
	}
	if code >= 400 {
		m.Exception = reasonText(code, reason)
	}
}

// parseStatus reads "404 Not Found".
func parseStatus(v []byte) (int32, []byte, bool) {
	if len(v) < 3 || len(v) > 3 && v[3] != ' ' {
		return 0, nil, false
	}
	var c int32
	for _, d := range v[:3] {
		if d < '0' || d > '9' {
			return 0, nil, false
		}
		c = c*10 + int32(d-'0')
	}
	if c < 100 || c > 599 {
		return 0, nil, false
	}
	return c, bytes.TrimSpace(v[3:]), true
}

func reasonText(code int32, reason []byte) string {
	if len(reason) > 0 {
		switch string(reason) {
		case "Not Found":
			return "Not Found"
		case "Internal Server Error":
			return "Internal Server Error"
		}
		return string(clip(reason, maxText))
	}
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
	case 500:
		return "Internal Server Error"
	case 502:
		return "Bad Gateway"
	case 503:
		return "Service Unavailable"
	case 504:
		return "Gateway Timeout"
	}
	return ""
}

// equalFold compares b with the lower-case ASCII s, ignoring b's case.
func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range b {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}
