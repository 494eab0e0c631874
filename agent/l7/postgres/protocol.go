// Package postgres infers and parses the PostgreSQL frontend/backend
// protocol 3.0 from a connection's captured byte streams: startup and
// SSL/GSS negotiation, simple queries, and the extended query protocol
// (Parse/Bind/Describe/Execute/Sync, pipelined or not).
//
// Rows: a startup message and its outcome (LOGIN), each simple Query up to
// its ReadyForQuery, each Execute up to its CommandComplete (or the error
// that aborted its Sync batch), a Parse whose Sync batch has no Execute
// (PREPARE: drivers prepare statements in a batch of their own), and
// Terminate (one-way). Everything else the backend sends (RowDescription,
// DataRow, ParameterStatus, BackendKeyData, NoticeResponse, ParseComplete,
// BindComplete ...) is skipped.
package postgres

import (
	"time"

	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/flowlog"
)

// DefaultTimeout is how long a request waits for its response.
const DefaultTimeout = 120 * time.Second

// Startup codes (the untyped messages' second int32).
const (
	protocol30  = 196608   // 3.0
	sslRequest  = 80877103 // 1234.5679
	gssRequest  = 80877104 // 1234.5680
	cancelCode  = 80877102 // 1234.5678
	maxStartup  = 10000
	maxMsgLen   = 1 << 30
	startupHead = 8
)

// Protocol is PostgreSQL. It is stateless and safe for concurrent use.
type Protocol struct {
	timeout     time.Duration
	keepSecrets bool
}

var _ l7.Protocol = (*Protocol)(nil)

// New returns the PostgreSQL protocol.
func New(cfg l7.Config) *Protocol {
	p := &Protocol{timeout: DefaultTimeout, keepSecrets: cfg.KeepSecrets}
	if cfg.Timeout > 0 {
		p.timeout = cfg.Timeout
	}
	return p
}

// ID returns flowlog.L7Postgres.
func (p *Protocol) ID() flowlog.L7Protocol { return flowlog.L7Postgres }

// Matching returns l7.MatchFIFO: responses come in query order.
func (p *Protocol) Matching() l7.Matching { return l7.MatchFIFO }

// Timeout returns the request timeout.
func (p *Protocol) Timeout() time.Duration { return p.timeout }

// NewParser returns a parser for one connection; its type is *Parser.
func (p *Protocol) NewParser() l7.Parser { return newParser(p.keepSecrets) }

// Infer claims a connection (TCP only) whose first captured bytes are:
//   - an untyped startup message: its int32 length equal to the segment and
//     protocol 3.0 with NUL-terminated parameters ending in an empty name,
//     or an SSLRequest / GSSENCRequest (length 8) or CancelRequest (16);
//   - frontend messages tiling the segment exactly (one write: a Query, or
//     pgx's Parse/Bind/Describe/Execute/Sync), each with a known frontend
//     type byte and length, the first being Query, Parse, Bind or
//     Terminate, a Query's text SQL-like and NUL-terminated;
//   - backend messages tiling the segment exactly, the first a
//     ReadyForQuery, CommandComplete, ErrorResponse or Authentication
//     (a capture started mid-connection, or a server seen first).
//
// MySQL, HTTP, TLS and RESP fail the type byte or the length checks.
func (p *Protocol) Infer(data []byte, l4 uint8) l7.Inference {
	if l4 != 6 {
		return l7.NotMine
	}
	return infer(data)
}

func infer(b []byte) l7.Inference {
	if len(b) < 5 {
		return l7.NeedMore
	}
	if b[0] == 0 {
		return inferStartup(b)
	}
	if frontendFirst[b[0]] && tiles(b, &frontendType) && firstFrontendOK(b) {
		return l7.IsRequest
	}
	// A long query cut by the capture.
	if b[0] == 'Q' && len(b) >= 64 && int64(be32(b[1:])) < maxMsgLen && int64(be32(b[1:]))+1 > int64(len(b)) && firstFrontendOK(b) {
		return l7.IsRequest
	}
	if backendFirst[b[0]] && tiles(b, &backendType) && firstBackendOK(b) {
		return l7.IsResponse
	}
	return l7.NotMine
}

func inferStartup(b []byte) l7.Inference {
	if len(b) < 8 {
		return l7.NeedMore
	}
	n, code := be32(b), be32(b[4:])
	if int(n) != len(b) {
		return l7.NotMine
	}
	switch {
	case (code == sslRequest || code == gssRequest) && n == 8:
		return l7.IsRequest
	case code == cancelCode && n == 16:
		return l7.IsRequest
	case code == protocol30 && n > 9 && n <= maxStartup:
		if _, ok := parseStartup(b[8:]); ok {
			return l7.IsRequest
		}
	}
	return l7.NotMine
}

// tiles reports whether b is a whole number of typed messages whose types
// are all in types.
func tiles(b []byte, types *[256]bool) bool {
	for len(b) > 0 {
		if len(b) < 5 || !types[b[0]] {
			return false
		}
		n := be32(b[1:])
		if n < 4 || n > maxMsgLen || int(n)+1 > len(b) {
			return false
		}
		b = b[n+1:]
	}
	return true
}

// firstFrontendOK checks the (possibly cut) first message of b.
func firstFrontendOK(b []byte) bool {
	body := msgBody(b)
	switch b[0] {
	case 'Q':
		if int64(len(b)) < int64(be32(b[1:]))+1 { // cut by the capture
			return sqlLike(body)
		}
		return len(body) >= 2 && body[len(body)-1] == 0 && sqlLike(body[:len(body)-1])
	case 'P':
		_, rest, ok := cstring(body)
		if !ok {
			return false
		}
		q, _, ok := cstring(rest)
		return ok && sqlLike(q)
	case 'B':
		_, rest, ok := cstring(body)
		if !ok {
			return false
		}
		_, _, ok = cstring(rest)
		return ok
	case 'X':
		return len(body) == 0
	}
	return false
}

func firstBackendOK(b []byte) bool {
	body := msgBody(b)
	switch b[0] {
	case 'Z':
		return len(body) == 1 && (body[0] == 'I' || body[0] == 'T' || body[0] == 'E')
	case 'R':
		return len(body) >= 4 && be32(body) <= 12
	case 'C':
		return len(body) >= 2 && body[len(body)-1] == 0 && body[0] >= 'A' && body[0] <= 'Z'
	case 'E':
		return len(body) >= 3 && body[0] == 'S' && body[len(body)-1] == 0
	}
	return false
}

// msgBody returns the captured body of the typed message at the start of
// b (len(b) >= 5).
func msgBody(b []byte) []byte {
	n := int64(be32(b[1:])) + 1
	if n < 5 {
		return nil
	}
	return b[5:min(int64(len(b)), n)]
}

// Frontend and backend message types; the first message of a claimed
// segment must be one of the *First ones.
var (
	frontendType  = typeSet("QPBDESHCXpFdcf")
	backendType   = typeSet("RKZTDCEINS123nstGHWdcAvV")
	frontendFirst = typeSet("QPBX")
	backendFirst  = typeSet("ZRCE")
)

// Length bounds (the int32, which counts itself) per message type: fixed
// sizes are exact; 0 means any length up to maxMsgLen. They make a capture
// that starts inside a message lose framing at once rather than skip a
// gigabyte of what follows.
var (
	frontendMax = lengthTable(map[byte]uint32{'S': 4, 'H': 4, 'X': 4, 'c': 4, 'D': 1 << 16, 'C': 1 << 16, 'E': 1 << 16, 'p': 1 << 16, 'f': 1 << 16})
	backendMax  = lengthTable(map[byte]uint32{'1': 4, '2': 4, '3': 4, 'n': 4, 'I': 4, 's': 4, 'c': 4, 'Z': 5,
		'K': 300, 'R': 1 << 12, 'S': 1 << 12, 'C': 1 << 12, 'v': 1 << 12, 'E': 1 << 16, 'N': 1 << 16,
		't': 1 << 18, 'A': 1 << 16, 'G': 1 << 18, 'H': 1 << 18, 'W': 1 << 18, 'T': 1 << 22})
	fixedLen = typeSet("123nIscSHXZ")
)

func lengthTable(m map[byte]uint32) (t [256]uint32) {
	for k, v := range m {
		t[k] = v
	}
	return t
}

// lengthOK checks a message length n against the bounds of its type.
func lengthOK(typ byte, n uint32, bounds *[256]uint32) bool {
	if n < 4 || n > maxMsgLen {
		return false
	}
	limit := bounds[typ]
	switch {
	case limit == 0:
		return true
	case limit <= 5 && fixedLen[typ]:
		return n == limit
	}
	return n <= limit
}

func typeSet(s string) (t [256]bool) {
	for i := 0; i < len(s); i++ {
		t[s[i]] = true
	}
	return t
}

// sqlLike: printable text starting (after space) with a letter, '(' or a
// comment.
func sqlLike(b []byte) bool {
	i := 0
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	if i == len(b) {
		return false
	}
	c := b[i]
	if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c == '(' || c == '/' || c == '-') {
		return false
	}
	for _, c := range b[i:min(len(b), i+64)] {
		if c < 0x20 && c != '\t' && c != '\n' && c != '\r' || c == 0x7f {
			return false
		}
	}
	return true
}

func be32(b []byte) uint32 {
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

// cstring returns the NUL-terminated string at the start of b and the rest.
func cstring(b []byte) (s, rest []byte, ok bool) {
	for i, c := range b {
		if c == 0 {
			return b[:i], b[i+1:], true
		}
	}
	return b, nil, false
}

// startup is what the parser keeps of a StartupMessage: never a password
// (none is sent there anyway).
type startup struct {
	user, database string
}

// parseStartup decodes the parameters of a StartupMessage (after its
// length and protocol).
func parseStartup(b []byte) (s startup, ok bool) {
	for n := 0; n < 64; n++ {
		k, rest, ok := cstring(b)
		if !ok {
			return s, false
		}
		if len(k) == 0 {
			return s, len(rest) == 0
		}
		v, rest2, ok := cstring(rest)
		if !ok {
			return s, false
		}
		switch string(k) {
		case "user":
			s.user = string(v[:min(len(v), 128)])
		case "database":
			s.database = string(v[:min(len(v), 256)])
		}
		b = rest2
	}
	return s, false
}
