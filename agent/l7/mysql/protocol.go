// Package mysql infers and parses the MySQL/MariaDB client/server protocol
// (protocol version 10) from a connection's captured byte streams: the
// connection phase (greeting, login, SSL request), text and prepared
// statement commands, and the compressed protocol.
//
// Pairing is FIFO. Every client command starts a new packet sequence at 0,
// and the server's answer starts at sequence 1; only that first response
// packet decides the response (OK, ERR, result set), and the rest of a
// result set (column definitions, rows, EOF or 0xFE-OK terminators, 16 MiB
// continuation packets, truncated frames) is skipped until the next
// command, so any result-set layout (CLIENT_DEPRECATE_EOF or not, binary or
// text rows, multiple result sets) keeps the next pair right.
package mysql

import (
	"time"

	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/flowlog"
)

// DefaultTimeout is how long a command waits for its response.
const DefaultTimeout = 120 * time.Second

// Protocol is MySQL. It is stateless and safe for concurrent use.
type Protocol struct {
	timeout     time.Duration
	keepSecrets bool
}

var _ l7.Protocol = (*Protocol)(nil)

// New returns the MySQL protocol.
func New(cfg l7.Config) *Protocol {
	p := &Protocol{timeout: DefaultTimeout, keepSecrets: cfg.KeepSecrets}
	if cfg.Timeout > 0 {
		p.timeout = cfg.Timeout
	}
	return p
}

// ID returns flowlog.L7MySQL.
func (p *Protocol) ID() flowlog.L7Protocol { return flowlog.L7MySQL }

// Matching returns l7.MatchFIFO: the classic protocol answers in order.
func (p *Protocol) Matching() l7.Matching { return l7.MatchFIFO }

// Timeout returns the request timeout.
func (p *Protocol) Timeout() time.Duration { return p.timeout }

// NewParser returns a parser for one connection; its type is *Parser.
func (p *Protocol) NewParser() l7.Parser { return newParser(p.keepSecrets) }

// Infer claims a connection whose first captured bytes are (over TCP only):
//   - a server greeting: sequence 0, protocol 10, a NUL-terminated version
//     string starting with a digit, and the packet length equal to the
//     segment (the server sends nothing else before the client answers);
//   - a client command: sequence 0, a known command byte, and the packet
//     length equal to the segment, or followed by another such command; a
//     COM_QUERY whose capture was cut may be shorter if its text is SQL-like;
//   - an ERR packet (0xFF, error code, '#' and a 5-character SQLSTATE) with
//     the exact length: a response seen first mid-connection.
//
// HTTP, TLS, PostgreSQL and RESP fail the sequence or length checks.
func (p *Protocol) Infer(data []byte, l4 uint8) l7.Inference {
	if l4 != 6 {
		return l7.NotMine
	}
	return infer(data)
}

func infer(b []byte) l7.Inference {
	if len(b) < 5 {
		if len(b) >= 4 && (b[3] > 1 || plen(b) == 0) {
			return l7.NotMine
		}
		return l7.NeedMore
	}
	n, seq, payload := plen(b), b[3], b[4:]
	if n == 0 || n == maxPacket {
		return l7.NotMine
	}
	exact := len(payload) == n
	switch {
	case seq == 0 && payload[0] == 10:
		if exact && n >= 20 && n <= 1024 && validGreetingVersion(payload[1:]) {
			return l7.IsResponse
		}
		return l7.NotMine
	case seq == 0:
		if commandName(payload[0]) == "" {
			return l7.NotMine
		}
		if exact {
			if !plausibleCommand(payload, true) {
				return l7.NotMine
			}
			return l7.IsRequest
		}
		if len(payload) > n {
			// Several commands in one write (e.g. COM_STMT_CLOSE then
			// COM_QUERY): the next one must look valid too.
			if plausibleCommand(payload[:n], true) && infer(payload[n:]) == l7.IsRequest {
				return l7.IsRequest
			}
			return l7.NotMine
		}
		// Shorter than announced: a cut capture of a long query.
		if payload[0] == comQuery && len(payload) >= 64 && n <= 16<<20 && plausibleCommand(payload, false) {
			return l7.IsRequest
		}
		return l7.NotMine
	case payload[0] == 0xff && exact && seq >= 1:
		if n >= 9 && payload[3] == '#' && isSQLState(payload[4:9]) {
			return l7.IsResponse
		}
	}
	return l7.NotMine
}

// validGreetingVersion checks "5.7.44\x00", "10.11.6-MariaDB\x00" ...
func validGreetingVersion(b []byte) bool {
	if len(b) == 0 || b[0] < '0' || b[0] > '9' {
		return false
	}
	for i, c := range b {
		if c == 0 {
			return i >= 3
		}
		if c < 0x20 || c > 0x7e || i > 64 {
			return false
		}
	}
	return false
}

// plausibleCommand checks the body of a command packet against what its
// command carries; whole says the payload is complete.
func plausibleCommand(p []byte, whole bool) bool {
	body := p[1:]
	switch p[0] {
	case comQuit, comPing, comStatistics, comDebug, comProcessInfo, comResetConnection:
		return len(body) == 0
	case comQuery:
		if len(body) >= 2 && body[0] == 0 && body[1] == 1 {
			body = body[2:] // query attributes: no parameters, one set
		}
		return sqlLike(body)
	case comInitDB, comCreateDB, comDropDB:
		return len(body) > 0 && len(body) <= 256 && printable(body)
	case comStmtPrepare:
		return sqlLike(body)
	case comStmtExecute:
		// Statement id, flags, iteration count (always 1).
		return len(body) >= 9 && body[5] == 1 && body[6] == 0 && body[7] == 0 && body[8] == 0
	case comStmtClose, comStmtReset:
		return len(body) == 4
	case comStmtFetch:
		return len(body) == 8
	case comStmtSendLongData:
		return len(body) >= 6
	case comProcessKill:
		return len(body) == 4
	case comSetOption:
		return len(body) == 2
	case comFieldList:
		return len(body) > 0
	case comChangeUser:
		return len(body) > 0 && body[0] != 0
	}
	return false
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
	if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c == '(' || c == '/' || c == '-' || c == '#') {
		return false
	}
	return printable(b[i:min(len(b), i+64)])
}

func printable(b []byte) bool {
	for _, c := range b {
		if c < 0x20 && c != '\t' && c != '\n' && c != '\r' || c == 0x7f {
			return false
		}
	}
	return true
}

func isSQLState(b []byte) bool {
	for _, c := range b {
		if !('0' <= c && c <= '9' || 'A' <= c && c <= 'Z') {
			return false
		}
	}
	return true
}
