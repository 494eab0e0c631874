// Package memcached infers and parses the memcached text protocol (classic
// and meta commands) and binary protocol from a connection's captured byte
// streams. Values are skipped by their announced lengths and never stored.
//
// Rows: request_type and endpoint are the command ("get", "set" ...; binary
// opcodes get the same names, quiet ones a "q" suffix), request_resource the
// command with its key(s) (all keys of a multi-get, cut at 256 bytes).
// Replies: ERROR and CLIENT_ERROR are client errors, SERVER_ERROR server
// errors (the text is the exception); NOT_FOUND, EXISTS and NOT_STORED are
// ordinary outcomes. response_result is "hit" or "miss" for retrievals.
// Binary replies carry their status as response_code and the opaque as
// request_id.
//
// One-way (no reply expected): text commands with noreply, quit, and the
// binary quiet opcodes (GETQ, SETQ ...), whose rare replies (a GETQ hit, a
// SETQ failure) and the non-final STAT replies are not emitted, so that
// in-order pairing holds. Not handled: meta commands with the q flag (their
// success is silent, so pairing in order may slip until the next reply),
// streamed replies of lru_crawler metadump and watch, and the UDP frame
// header.
package memcached

import (
	"encoding/binary"
	"time"

	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/flowlog"
)

// DefaultTimeout is how long a command waits for its reply.
const DefaultTimeout = 120 * time.Second

// Protocol is memcached. It is stateless and safe for concurrent use.
type Protocol struct {
	timeout time.Duration
}

var _ l7.Protocol = (*Protocol)(nil)

// New returns the memcached protocol configured by cfg. Keys are not
// secrets and values are never stored, so KeepSecrets changes nothing.
func New(cfg l7.Config) *Protocol {
	p := &Protocol{timeout: DefaultTimeout}
	if cfg.Timeout > 0 {
		p.timeout = cfg.Timeout
	}
	return p
}

// ID returns flowlog.L7Memcached.
func (p *Protocol) ID() flowlog.L7Protocol { return flowlog.L7Memcached }

// Matching returns l7.MatchFIFO: memcached answers in order; commands that
// get no answer (noreply, quiet binary opcodes) are emitted one-way.
func (p *Protocol) Matching() l7.Matching { return l7.MatchFIFO }

// Timeout returns the configured request timeout.
func (p *Protocol) Timeout() time.Duration { return p.timeout }

// NewParser returns a parser for one connection; its concrete type is *Parser.
func (p *Protocol) NewParser() l7.Parser { return newParser() }

// Infer classifies a connection's first bytes. Memcached runs over TCP here
// (the UDP frame header is not supported).
//
// Binary: magic 0x80/0x81, a known opcode, data type 0, key and extras
// within the body, a bounded body. Text requests: a lower-case command from
// the protocol (commands are case-sensitive, so HTTP's "GET" and Redis's
// upper-case inline commands are not taken) with a well-formed complete
// line: storage commands need their numeric fields, retrievals printable
// keys. Text replies: a complete line starting with a reply word that only
// memcached uses (VALUE with numeric fields, STORED, NOT_STORED, EXISTS,
// NOT_FOUND, DELETED, TOUCHED, END, STAT, VERSION, CLIENT_ERROR,
// SERVER_ERROR); "OK", "ERROR" and bare numbers are too generic to claim.
func (p *Protocol) Infer(data []byte, l4 uint8) l7.Inference {
	if l4 != 6 {
		return l7.NotMine
	}
	if len(data) == 0 {
		return l7.NeedMore
	}
	if data[0] == magicRequest || data[0] == magicResponse {
		return inferBinary(data)
	}
	return inferText(data)
}

func inferBinary(b []byte) l7.Inference {
	if len(b) > 1 && opcodeName(b[1]) == "" {
		return l7.NotMine
	}
	if len(b) < headerLen {
		return l7.NeedMore
	}
	if _, err := frameLen(b); err != nil {
		return l7.NotMine
	}
	if b[0] == magicRequest {
		return l7.IsRequest
	}
	if statusName(binary.BigEndian.Uint16(b[6:8])) == "" {
		return l7.NotMine
	}
	return l7.IsResponse
}

// maxInferLine bounds the first line inference waits for.
const maxInferLine = 512

func inferText(b []byte) l7.Inference {
	end := -1
	for i := 0; i < len(b) && i < maxInferLine; i++ {
		c := b[i]
		if c == '\n' {
			end = i
			break
		}
		if (c < 0x20 && c != '\r') || c == 0x7f {
			return l7.NotMine
		}
	}
	if end < 0 {
		if len(b) >= maxInferLine {
			return l7.NotMine
		}
		// Too short to tell, unless it cannot start a command or reply.
		if w := word(b); len(w) < len(b) && commandKind(w) == kindNone && !isReplyWord(w) {
			return l7.NotMine
		}
		return l7.NeedMore
	}
	if end == 0 || b[end-1] != '\r' {
		return l7.NotMine
	}
	line := b[:end-1]
	if k := commandKind(word(line)); k != kindNone && k != kindQuit {
		var f fields
		f.split(line)
		if validCommand(k, &f) {
			return l7.IsRequest
		}
		return l7.NotMine
	}
	if validReplyLine(line) {
		return l7.IsResponse
	}
	return l7.NotMine
}

// word returns b up to its first space.
func word(b []byte) []byte {
	for i, c := range b {
		if c == ' ' || c == '\r' {
			return b[:i]
		}
	}
	return b
}

func isReplyWord(w []byte) bool {
	switch string(w) {
	case "VALUE", "STORED", "NOT_STORED", "EXISTS", "NOT_FOUND", "DELETED", "TOUCHED", "END", "STAT",
		"VERSION", "CLIENT_ERROR", "SERVER_ERROR":
		return true
	}
	return false
}

// validReplyLine checks a first reply line strictly (see Infer).
func validReplyLine(line []byte) bool {
	var f fields
	f.split(line)
	switch string(f.get(0)) {
	case "STORED", "NOT_STORED", "EXISTS", "NOT_FOUND", "DELETED", "TOUCHED", "END":
		return f.n == 1
	case "VALUE":
		_, ok1 := atoi(f.get(2))
		_, ok2 := atoi(f.get(3))
		return (f.n == 4 || f.n == 5) && ok1 && ok2
	case "STAT", "VERSION", "CLIENT_ERROR", "SERVER_ERROR":
		return f.n >= 2
	}
	return false
}
