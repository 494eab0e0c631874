// Package http1 infers and parses HTTP/1.0 and HTTP/1.1 from a connection's
// captured byte streams: a streaming, bounded, per-direction state machine that
// survives split segments, pipelining, uncaptured gaps and garbage.
package http1

import (
	"time"

	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/flowlog"
)

const (
	// DefaultTimeout is how long a request waits for its response.
	DefaultTimeout = 120 * time.Second
	// DefaultMaxHeaderBytes bounds the bytes buffered for one message head
	// (start line and headers); a longer head is parsed as far as it was
	// buffered and marked truncated.
	DefaultMaxHeaderBytes = 16 << 10
)

// Protocol is HTTP/1.x. It is stateless and safe for concurrent use.
type Protocol struct {
	timeout        time.Duration
	maxHeaderBytes int
}

// Option configures a Protocol.
type Option func(*Protocol)

// WithTimeout sets how long a request waits for its response (default 120 s).
// Non-positive values keep the default.
func WithTimeout(d time.Duration) Option {
	return func(p *Protocol) {
		if d > 0 {
			p.timeout = d
		}
	}
}

// WithMaxHeaderBytes bounds the buffered bytes of one message head
// (default 16 KiB; values below 256 are raised to 256).
func WithMaxHeaderBytes(n int) Option {
	return func(p *Protocol) {
		p.maxHeaderBytes = max(n, 256)
	}
}

// New returns the HTTP/1.x protocol.
func New(opts ...Option) *Protocol {
	p := &Protocol{timeout: DefaultTimeout, maxHeaderBytes: DefaultMaxHeaderBytes}
	for _, o := range opts {
		o(p)
	}
	return p
}

var _ l7.Protocol = (*Protocol)(nil)

// ID returns flowlog.L7HTTP1.
func (p *Protocol) ID() flowlog.L7Protocol { return flowlog.L7HTTP1 }

// Matching returns l7.MatchFIFO: HTTP/1 responses come in request order.
func (p *Protocol) Matching() l7.Matching { return l7.MatchFIFO }

// Timeout returns the configured request timeout.
func (p *Protocol) Timeout() time.Duration { return p.timeout }

// NewParser returns a parser for one connection; its concrete type is *Parser.
func (p *Protocol) NewParser() l7.Parser { return newParser(p.maxHeaderBytes) }

// Infer classifies a connection's first bytes. HTTP/1 runs over TCP only.
func (p *Protocol) Infer(data []byte, l4 uint8) l7.Inference {
	if l4 != 6 {
		return l7.NotMine
	}
	return classify(data)
}

// classify tells whether b starts with an HTTP/1.x request or status line.
func classify(b []byte) l7.Inference {
	if len(b) == 0 {
		return l7.NeedMore
	}
	if r := classifyResponse(b); r != l7.NotMine {
		return r
	}
	return classifyRequest(b)
}

// classifyResponse matches "HTTP/1.0 " or "HTTP/1.1 " and a 3-digit status.
func classifyResponse(b []byte) l7.Inference {
	const prefix = "HTTP/1."
	n := min(len(b), len(prefix))
	if string(b[:n]) != prefix[:n] {
		return l7.NotMine
	}
	if len(b) == n {
		return l7.NeedMore
	}
	// b[7] minor version, b[8] SP, b[9:12] status, then SP or end of line.
	for i := 7; i < 13; i++ {
		if i == len(b) {
			if i == 12 { // a complete status code; the capture ended there
				return l7.IsResponse
			}
			return l7.NeedMore
		}
		c := b[i]
		var ok bool
		switch i {
		case 7:
			ok = c == '0' || c == '1'
		case 8:
			ok = c == ' '
		case 9:
			ok = '1' <= c && c <= '5'
		case 10, 11:
			ok = isDigit(c)
		case 12:
			ok = c == ' ' || c == '\r' || c == '\n'
		}
		if !ok {
			return l7.NotMine
		}
	}
	return l7.IsResponse
}

// maxMethodLen bounds a request method token.
const maxMethodLen = 24

// classifyRequest matches "METHOD SP request-target SP HTTP/1.x". Known
// methods are claimed as soon as an origin-form target starts (eBPF may
// capture only a prefix of a long request line); other tokens need the
// whole line with its version.
func classifyRequest(b []byte) l7.Inference {
	i := 0
	for i < len(b) && i <= maxMethodLen && isTchar(b[i]) {
		i++
	}
	if i == len(b) {
		if isKnownMethodPrefix(b) {
			return l7.NeedMore
		}
		return l7.NotMine
	}
	if i == 0 || i > maxMethodLen || b[i] != ' ' {
		return l7.NotMine
	}
	known := knownMethod(b[:i]) != ""
	rest := b[i+1:]
	j := 0
	for j < len(rest) && rest[j] > ' ' && rest[j] < 0x7f {
		j++
	}
	if j == len(rest) { // the target runs to the end of what was captured
		switch {
		case !known:
			return l7.NotMine
		case j > 0 && (rest[0] == '/' || rest[0] == '*' || hasPrefixFold(rest, "http://") || hasPrefixFold(rest, "https://")):
			return l7.IsRequest
		case j < 256:
			return l7.NeedMore
		}
		return l7.NotMine
	}
	if j == 0 || rest[j] != ' ' {
		return l7.NotMine
	}
	ver := rest[j+1:]
	const prefix = "HTTP/1."
	n := min(len(ver), len(prefix))
	if string(ver[:n]) != prefix[:n] {
		return l7.NotMine
	}
	if len(ver) <= len(prefix) {
		if known {
			return l7.IsRequest
		}
		return l7.NeedMore
	}
	if c := ver[len(prefix)]; c != '0' && c != '1' {
		return l7.NotMine
	}
	if len(ver) > len(prefix)+1 {
		if c := ver[len(prefix)+1]; c != '\r' && c != '\n' {
			return l7.NotMine
		}
	}
	return l7.IsRequest
}

// knownMethod returns the canonical string of a well-known method, or "".
// Returning constants keeps the common case allocation-free.
func knownMethod(b []byte) string {
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
	case "CONNECT":
		return "CONNECT"
	case "TRACE":
		return "TRACE"
	}
	return ""
}

var knownMethods = [...]string{"GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "CONNECT", "TRACE"}

func isKnownMethodPrefix(b []byte) bool {
	for _, m := range knownMethods {
		if len(b) <= len(m) && string(b) == m[:len(b)] {
			return true
		}
	}
	return false
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// isTchar reports whether c may appear in an RFC 9110 token.
func isTchar(c byte) bool {
	return tchar[c]
}

var tchar = func() (t [256]bool) {
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
	}
	for c := 'A'; c <= 'Z'; c++ {
		t[c] = true
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// equalFold compares b with the lower-case ASCII s, ignoring the case of b.
func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		if lower(b[i]) != s[i] {
			return false
		}
	}
	return true
}

func hasPrefixFold(b []byte, s string) bool {
	return len(b) >= len(s) && equalFold(b[:len(s)], s)
}
