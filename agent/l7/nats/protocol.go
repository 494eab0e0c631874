// Package nats infers and parses the NATS client protocol (CONNECT, PUB,
// HPUB, SUB, UNSUB, PING/PONG from clients; INFO, MSG, HMSG, +OK, -ERR,
// PING/PONG from servers) from a connection's captured byte streams.
//
// Pairing: NATS is mostly one-way. With verbose=false (the default of the
// clients) PUB, HPUB, SUB and UNSUB get no acknowledgement and are emitted
// one-way; with verbose=true (seen in CONNECT) they are paired with +OK or
// -ERR. A client PING is paired with the server's PONG. CONNECT is paired
// with the server's verdict: -ERR, or success when the server next answers
// anything else (the PONG to the PING clients send right after CONNECT).
// Server-initiated PING and the client's PONG are keep-alives and are not
// emitted (the session layer pairs without regard to direction, so they
// would be mistaken for answers to client PINGs). A PUB whose reply subject
// this connection subscribed to (a request) is paired with the MSG that
// arrives on that reply subject, by a request id that is the FNV-1a hash of
// the reply subject (so Matching is MatchByID; messages without an id pair
// in order). Other MSG/HMSG deliveries are emitted one-way, in the
// server-to-client direction, with request_type MSG/HMSG and the subject as
// domain. INFO is not emitted.
package nats

import (
	"time"

	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/flowlog"
)

// DefaultTimeout is how long a request waits for its answer.
const DefaultTimeout = 120 * time.Second

// Protocol is NATS. It is stateless and safe for concurrent use.
type Protocol struct {
	timeout time.Duration
}

var _ l7.Protocol = (*Protocol)(nil)

// New returns the NATS protocol configured by cfg. The CONNECT options
// (which may hold passwords, tokens, JWTs and signatures) are never stored,
// so KeepSecrets changes nothing.
func New(cfg l7.Config) *Protocol {
	p := &Protocol{timeout: DefaultTimeout}
	if cfg.Timeout > 0 {
		p.timeout = cfg.Timeout
	}
	return p
}

// ID returns flowlog.L7NATS.
func (p *Protocol) ID() flowlog.L7Protocol { return flowlog.L7NATS }

// Matching returns l7.MatchByID: request-reply pairs carry the reply
// subject's hash as id; PING/PONG and CONNECT pair in order without one.
func (p *Protocol) Matching() l7.Matching { return l7.MatchByID }

// Timeout returns the configured request timeout.
func (p *Protocol) Timeout() time.Duration { return p.timeout }

// NewParser returns a parser for one connection; its concrete type is *Parser.
func (p *Protocol) NewParser() l7.Parser { return newParser() }

// maxInferLine bounds the first line inference waits for.
const maxInferLine = 1024

// Infer classifies a connection's first bytes. NATS runs over TCP only.
//
// It claims "INFO {" (the server's greeting) and "CONNECT {" (the client's
// first message: HTTP's CONNECT has no '{'), and otherwise a complete first
// line whose shape is NATS's own: PUB/HPUB/MSG/HMSG with a numeric size
// last, SUB/UNSUB with a numeric sid, "-ERR '...'", and exactly
// "PING\r\n"/"PONG\r\n" (Redis replies "+PONG"). "+OK" is left to Redis.
func (p *Protocol) Infer(data []byte, l4 uint8) l7.Inference {
	if l4 != 6 {
		return l7.NotMine
	}
	return classify(data)
}

func classify(b []byte) l7.Inference {
	if len(b) == 0 {
		return l7.NeedMore
	}
	for _, pre := range [...]struct {
		s string
		v l7.Inference
	}{{"INFO {", l7.IsResponse}, {"CONNECT {", l7.IsRequest}} {
		n := min(len(b), len(pre.s))
		if string(b[:n]) == pre.s[:n] {
			if n == len(pre.s) {
				return pre.v
			}
			return l7.NeedMore
		}
	}
	end := -1
	for i := 0; i < len(b) && i < maxInferLine; i++ {
		c := b[i]
		if c == '\n' {
			end = i
			break
		}
		if (c < 0x20 && c != '\r' && c != '\t') || c == 0x7f {
			return l7.NotMine
		}
	}
	if end < 0 {
		if len(b) >= maxInferLine {
			return l7.NotMine
		}
		if v := verbOf(word(b)); v == opNone && len(word(b)) < len(b) || len(b) > 8 && v == opNone {
			return l7.NotMine
		}
		return l7.NeedMore
	}
	if end == 0 || b[end-1] != '\r' {
		return l7.NotMine
	}
	line := b[:end-1]
	var f fields
	f.split(line)
	op := verbOf(f.get(0))
	if string(f.get(0)) != opNames[op] {
		return l7.NotMine // clients and servers send upper-case verbs
	}
	switch op {
	case opPing, opPong:
		if f.all != 1 {
			return l7.NotMine
		}
		if op == opPing {
			return l7.IsRequest
		}
		return l7.IsResponse
	case opPub, opHpub, opSub, opUnsub:
		if validLine(op, &f) {
			return l7.IsRequest
		}
	case opMsg, opHmsg:
		if validLine(op, &f) {
			return l7.IsResponse
		}
	case opErr:
		if len(line) > 6 && line[5] == '\'' {
			return l7.IsResponse
		}
	}
	return l7.NotMine
}
