package http1

import (
	"bytes"
	"encoding/base64"
	"strconv"
	"strings"

	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/agent/l7/mask"
	"github.com/sightline-io/sightline/flowlog"

	"github.com/sightline-io/sightline/agent/l7/tracectx"
)

// framing is what a message head says about the body that follows.
type framing struct {
	isRequest     bool
	method        methodKind // requests: own method; responses: the method answered
	status        int        // response status code
	contentLength int64      // -1 when absent
	badLength     bool       // Content-Length present but unusable
	chunked       bool       // Transfer-Encoding ends with chunked
	otherCoding   bool       // Transfer-Encoding present, not ending with chunked
}

// maxAttrValue bounds a header value copied into attributes.
const maxAttrValue = 256

// Attribute keys set on messages.
const (
	AttrUserAgent     = "user_agent"
	AttrContentType   = "content_type"
	AttrProxyClient   = "http_proxy_client" // X-Forwarded-For
	AttrAuthorization = "authorization"     // scheme only, value masked
	AttrTruncated     = "truncated"         // "headers" when the head exceeded the buffer
)

// parseStartLine parses a request or status line (without its line end).
// partial allows a request line cut short by capture (no version yet).
func (p *Parser) parseStartLine(line []byte, partial bool, m *l7.Message, f *framing) bool {
	if bytes.HasPrefix(line, []byte("HTTP/1.")) {
		// HTTP/1.x SP 3DIGIT [SP reason]
		if len(line) < 12 || !isDigit(line[7]) || line[8] != ' ' ||
			!('1' <= line[9] && line[9] <= '5') || !isDigit(line[10]) || !isDigit(line[11]) ||
			(len(line) > 12 && line[12] != ' ') {
			return false
		}
		m.Type = l7.Response
		m.Version = version(line[7])
		f.status = int(line[9]-'0')*100 + int(line[10]-'0')*10 + int(line[11]-'0')
		m.Code, m.HasCode = int32(f.status), true
		switch {
		case f.status >= 500:
			m.Status = flowlog.StatusServerError
		case f.status >= 400:
			m.Status = flowlog.StatusClientError
		default:
			m.Status = flowlog.StatusSuccess
		}
		if f.status >= 400 && len(line) > 13 {
			m.Exception = p.reason.get(bytes.TrimSpace(line[13:]))
		}
		return true
	}
	sp := bytes.IndexByte(line, ' ')
	if sp <= 0 || sp > maxMethodLen {
		return false
	}
	method := line[:sp]
	for _, c := range method {
		if !isTchar(c) {
			return false
		}
	}
	rest := line[sp+1:]
	target := rest
	ver := []byte(nil)
	if sp2 := bytes.IndexByte(rest, ' '); sp2 >= 0 {
		target, ver = rest[:sp2], rest[sp2+1:]
	}
	if len(target) == 0 {
		return false
	}
	for _, c := range target {
		if c <= ' ' || c == 0x7f {
			return false
		}
	}
	switch {
	case len(ver) == 8 && bytes.HasPrefix(ver, []byte("HTTP/1.")) && isDigit(ver[7]):
		m.Version = version(ver[7])
	case partial && ver == nil:
		// a request line cut short by capture: keep what was seen
	default:
		return false
	}
	m.Type = l7.Request
	if s := knownMethod(method); s != "" {
		m.RequestType = s
	} else {
		m.RequestType = p.method.get(method)
	}
	f.isRequest = true
	f.method = kindOf(m.RequestType)
	p.target(m, target)
	return true
}

func version(minor byte) string {
	switch minor {
	case '0':
		return "1.0"
	case '1':
		return "1.1"
	}
	return "1." + string(rune(minor))
}

// target sets Resource (masked), Endpoint and, for absolute-form and
// authority-form targets, Domain. Consecutive identical targets on one
// connection (keep-alive polling) reuse the previous strings.
func (p *Parser) target(m *l7.Message, raw []byte) {
	c := &p.lastTarget
	if c.valid && string(raw) == c.raw {
		m.Resource, m.Endpoint, m.Domain = c.resource, c.endpoint, c.domain
		return
	}
	raw0 := string(raw)
	var path, domain string
	switch {
	case hasPrefixFold(raw, "http://") || hasPrefixFold(raw, "https://"):
		rest := raw0[strings.Index(raw0, "://")+3:]
		end := strings.IndexAny(rest, "/?#")
		if end < 0 {
			end = len(rest)
		}
		domain, path = rest[:end], rest[end:]
		if at := strings.LastIndexByte(domain, '@'); at >= 0 {
			domain = domain[at+1:] // never keep userinfo
		}
		if path == "" || path[0] != '/' {
			path = "/"
		}
	case raw[0] == '/':
		path = raw0
	case raw[0] == '*':
		path = "*"
	default: // authority-form (CONNECT host:port)
		domain, path = raw0, raw0
	}
	if i := strings.IndexAny(path, "?#"); i >= 0 {
		path = path[:i]
	}
	*c = targetCache{valid: true, raw: raw0, resource: mask.URL(raw0), endpoint: NormalizePath(path), domain: domain}
	m.Resource, m.Endpoint, m.Domain = c.resource, c.endpoint, c.domain
}

// parseHeaders reads complete header lines (each ending in LF) from h, which
// starts after the start line; a trailing incomplete line is ignored. It may
// be called again for further lines of the same head.
func (p *Parser) parseHeaders(h []byte, m *l7.Message, f *framing) {
	tracePrio := 0
	var b3Trace, b3Span, b3Parent []byte
lines:
	for len(h) > 0 {
		nl := bytes.IndexByte(h, '\n')
		if nl < 0 {
			break
		}
		line := h[:nl]
		h = h[nl+1:]
		if len(line) > 0 && line[len(line)-1] == '\r' {
			line = line[:len(line)-1]
		}
		if len(line) == 0 {
			break lines
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 || line[0] == ' ' || line[0] == '\t' {
			continue // obsolete folding or malformed: skip
		}
		name, value := line[:colon], bytes.TrimSpace(line[colon+1:])
		switch len(name) {
		case 2:
			if equalFold(name, "b3") && tracePrio < 2 && len(value) > 1 {
				// b3: traceid-spanid[-sampled[-parentspanid]]
				parts := bytes.SplitN(value, []byte("-"), 4)
				if len(parts) >= 2 {
					b3Trace, b3Span = parts[0], parts[1]
					if len(parts) == 4 {
						b3Parent = parts[3]
					}
				}
			}
		case 3:
			if equalFold(name, "sw8") && tracePrio < 1 {
				if p.sw8(value, m) {
					tracePrio = 1
				}
			}
		case 4:
			if equalFold(name, "host") && m.Domain == "" {
				m.Domain = p.host.get(value)
			}
		case 10:
			if equalFold(name, "user-agent") {
				p.setAttr(m, AttrUserAgent, &p.userAgent, value)
			}
		case 11:
			switch {
			case equalFold(name, "traceparent") && tracePrio < 4:
				if m.SetTraceparent(value) {
					tracePrio = 4
				}
			case equalFold(name, "x-b3-spanid"):
				b3Span = value
			}
		case 12:
			switch {
			case equalFold(name, "content-type"):
				p.setAttr(m, AttrContentType, &p.contentType, value)
			case equalFold(name, "x-request-id"):
				m.XRequestID = string(clip(value))
			case equalFold(name, "x-b3-traceid"):
				b3Trace = value
			}
		case 13:
			switch {
			case equalFold(name, "uber-trace-id") && tracePrio < 3:
				// traceid:spanid:parentid:flags
				parts := bytes.Split(value, []byte(":"))
				if len(parts) == 4 && isHexID(parts[0]) && isHexID(parts[1]) {
					m.TraceID, m.SpanID, m.ParentSpanID = string(parts[0]), string(parts[1]), ""
					if isHexID(parts[2]) && string(parts[2]) != "0" {
						m.ParentSpanID = string(parts[2])
					}
					tracePrio = 3
				}
			case equalFold(name, "authorization"):
				p.setAuth(m, value)
			}
		case 14:
			if equalFold(name, "content-length") {
				n, ok := parseContentLength(value)
				switch {
				case !ok, f.contentLength >= 0 && f.contentLength != n:
					f.badLength = true
				default:
					f.contentLength = n
				}
			}
		case 15:
			if equalFold(name, "x-forwarded-for") {
				p.setAttr(m, AttrProxyClient, &p.forwardedFor, value)
			}
		case 17:
			switch {
			case equalFold(name, "transfer-encoding"):
				last := value
				if i := bytes.LastIndexByte(value, ','); i >= 0 {
					last = bytes.TrimSpace(value[i+1:])
				}
				if equalFold(last, "chunked") {
					f.chunked, f.otherCoding = true, false
				} else {
					f.chunked, f.otherCoding = false, true
				}
			case equalFold(name, "x-b3-parentspanid"):
				b3Parent = value
			}
		case 19:
			if equalFold(name, "proxy-authorization") {
				p.setAuth(m, value)
			}
		}
	}
	if tracePrio < 2 && isHexID(b3Trace) {
		m.TraceID, m.SpanID, m.ParentSpanID = string(b3Trace), "", ""
		if isHexID(b3Span) {
			m.SpanID = string(b3Span)
		}
		if isHexID(b3Parent) {
			m.ParentSpanID = string(b3Parent)
		}
	}
}

// sw8 reads SkyWalking's sw8 header:
// sample-base64(traceId)-base64(segmentId)-spanId-... .
func (p *Parser) sw8(value []byte, m *l7.Message) bool {
	parts := bytes.SplitN(value, []byte("-"), 5)
	if len(parts) < 4 || len(parts[1]) > 256 || len(parts[2]) > 256 || len(parts[3]) > 10 {
		return false
	}
	var buf [192]byte
	enc := base64.StdEncoding
	n, err := enc.Decode(buf[:], parts[1])
	if err != nil || n == 0 || enc.DecodedLen(len(parts[1])) > len(buf) {
		return false
	}
	trace := string(buf[:n])
	n, err = enc.Decode(buf[:], parts[2])
	if err != nil || n == 0 {
		return false
	}
	if _, err := strconv.ParseUint(string(parts[3]), 10, 32); err != nil {
		return false
	}
	m.TraceID, m.SpanID, m.ParentSpanID = trace, string(buf[:n])+"-"+string(parts[3]), ""
	return true
}

func (p *Parser) setAttr(m *l7.Message, key string, cache *stringCache, value []byte) {
	if len(value) == 0 {
		return
	}
	if m.Attributes == nil {
		m.Attributes = make(map[string]string, 4)
	}
	m.Attributes[key] = cache.get(clip(value))
}

// setAuth records only the masked authorization scheme: the credential
// itself is never copied out of the segment.
func (p *Parser) setAuth(m *l7.Message, value []byte) {
	if m.Attributes == nil {
		m.Attributes = make(map[string]string, 4)
	}
	v := bytes.TrimSpace(value)
	var scheme []byte
	if sp := bytes.IndexByte(v, ' '); sp > 0 {
		scheme = v[:sp]
	}
	if c := &p.authScheme; !c.valid || string(scheme) != c.scheme {
		*c = schemeCache{valid: true, scheme: string(scheme), masked: mask.Authorization(string(scheme) + " x")}
	}
	m.Attributes[AttrAuthorization] = p.authScheme.masked
}

func clip(b []byte) []byte {
	if len(b) > maxAttrValue {
		return b[:maxAttrValue]
	}
	return b
}

func parseContentLength(v []byte) (int64, bool) {
	// Identical comma-separated values are allowed (RFC 9110 8.6).
	var n int64 = -1
	for len(v) > 0 {
		part := v
		if i := bytes.IndexByte(v, ','); i >= 0 {
			part, v = v[:i], v[i+1:]
		} else {
			v = nil
		}
		part = bytes.TrimSpace(part)
		if len(part) == 0 || len(part) > 15 {
			return 0, false
		}
		var x int64
		for _, c := range part {
			if !isDigit(c) {
				return 0, false
			}
			x = x*10 + int64(c-'0')
		}
		if n >= 0 && n != x {
			return 0, false
		}
		n = x
	}
	return n, n >= 0
}

// isHexID reports whether b looks like a 1..32 digit hex trace/span id.
func isHexID(b []byte) bool { return len(b) <= 32 && tracectx.IsHex(b) }

// stringCache reuses the previous string when the same bytes repeat, which is
// the common case for Host, User-Agent and similar headers on one connection.
type stringCache struct{ s string }

func (c *stringCache) get(b []byte) string {
	if string(b) != c.s {
		c.s = string(b)
	}
	return c.s
}

type targetCache struct {
	valid                           bool
	raw, resource, endpoint, domain string
}

type schemeCache struct {
	valid          bool
	scheme, masked string
}
