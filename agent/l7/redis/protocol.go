// Package redis infers and parses the Redis serialization protocol (RESP2
// and RESP3) from a connection's captured byte streams: a streaming,
// bounded scanner per direction that knows bulk lengths, so pipelined
// commands, large values cut short by the capture and pub/sub pushes keep
// requests and replies paired in order.
//
// Rows: request_type and endpoint are the upper-case command ("CONFIG GET"
// for container commands with a known subcommand); request_resource is the
// command line with the key (or every argument, for commands whose
// arguments are keys, indexes or options) and "?" for values, unless
// KeepSecrets, cut at 256 bytes. AUTH arguments and what follows AUTH/AUTH2
// in HELLO and MIGRATE are passwords and are masked even with KeepSecrets.
// Error replies ("-ERR ...", RESP3 "!" bulk errors) give the exception; codes
// naming a server condition (LOADING, BUSY, OOM, MASTERDOWN, CLUSTERDOWN,
// READONLY, TRYAGAIN, MISCONF ...) are server errors, the others client
// errors. Values are never stored; version is "3" once RESP3 is in use.
//
// Pub/sub: a subscribe-family command is paired with its first
// confirmation; further confirmations and pushed messages (RESP3 '>' pushes,
// RESP2 "message"/"pmessage"/"smessage" arrays once subscribed) are not
// emitted. Nothing is one-way. Not handled: RESP3 streamed aggregates
// ("*?"), and pairing after a request stream lost its framing (commands
// lost in an uncaptured gap between messages shift in-order pairing until
// the connection's pending commands drain).
package redis

import (
	"time"

	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/flowlog"
)

// DefaultTimeout is how long a command waits for its reply.
const DefaultTimeout = 120 * time.Second

// Protocol is Redis. It is stateless and safe for concurrent use.
type Protocol struct {
	timeout     time.Duration
	keepSecrets bool
}

var _ l7.Protocol = (*Protocol)(nil)

// New returns the Redis protocol configured by cfg.
func New(cfg l7.Config) *Protocol {
	p := &Protocol{timeout: DefaultTimeout, keepSecrets: cfg.KeepSecrets}
	if cfg.Timeout > 0 {
		p.timeout = cfg.Timeout
	}
	return p
}

// ID returns flowlog.L7Redis.
func (p *Protocol) ID() flowlog.L7Protocol { return flowlog.L7Redis }

// Matching returns l7.MatchFIFO: Redis replies come in command order.
func (p *Protocol) Matching() l7.Matching { return l7.MatchFIFO }

// Timeout returns the configured request timeout.
func (p *Protocol) Timeout() time.Duration { return p.timeout }

// NewParser returns a parser for one connection; its concrete type is *Parser.
func (p *Protocol) NewParser() l7.Parser { return newParser(p.keepSecrets) }

// Infer classifies a connection's first bytes. Redis runs over TCP only.
//
// A request is claimed when it is an array of bulk strings whose first
// element is a plausible command ("*<n>\r\n$<len>\r\n<letters>"), or an
// inline command from a short list of upper-case Redis commands (lower-case
// inline commands are left to memcached, PING to NATS). A reply is claimed
// only with a complete, well-shaped first line: "+<printable>\r\n",
// "-<UPPERCASE word> ..." (but not NATS's "-ERR '...'"), ":<int>\r\n",
// "$<len>\r\n", "*<n>\r\n" followed by a type byte, RESP3 "%<n>\r\n",
// ">" and "_\r\n". Everything else (HTTP, TLS, binaries) is NotMine.
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
	switch b[0] {
	case '*':
		return classifyArray(b)
	case '+', '-', ':', '$', '%', '>', '_', '~':
		return classifyReply(b)
	}
	return classifyInline(b)
}

// maxInferLine bounds the first line inference waits for.
const maxInferLine = 256

// scan is the outcome of reading a header during inference.
type scan uint8

const (
	scanOK   scan = iota // a complete, valid header
	scanMore             // too few bytes to tell
	scanBad              // not a RESP header
)

// verdict turns a failed scan into an inference.
func (s scan) verdict() l7.Inference {
	if s == scanMore {
		return l7.NeedMore
	}
	return l7.NotMine
}

// headerInt parses the "<int>\r\n" after a type byte at b[0] (-1 is the only
// negative accepted); it returns the value and the offset after the line.
func headerInt(b []byte) (n int64, next int, s scan) {
	i, neg := 1, false
	if i < len(b) && b[i] == '-' {
		neg, i = true, 2
	}
	start := i
	for i < len(b) && i-start < 11 && isDigit(b[i]) {
		n = n*10 + int64(b[i]-'0')
		i++
	}
	switch {
	case i == len(b):
		return 0, 0, scanMore
	case i == start || b[i] != '\r':
		return 0, 0, scanBad
	case i+1 == len(b):
		return 0, 0, scanMore
	case b[i+1] != '\n':
		return 0, 0, scanBad
	}
	if neg {
		if n != 1 {
			return 0, 0, scanBad
		}
		n = -1
	}
	return n, i + 2, scanOK
}

// classifyArray matches a request "*<n>\r\n$<len>\r\n<command>" or an array reply.
func classifyArray(b []byte) l7.Inference {
	n, i, sc := headerInt(b)
	if sc != scanOK {
		return sc.verdict()
	}
	if n < -1 || n > 1<<20 {
		return l7.NotMine
	}
	if n <= 0 {
		return l7.IsResponse // empty or null array: a reply
	}
	if i == len(b) {
		return l7.NeedMore
	}
	if b[i] != '$' {
		if isTypeByte(b[i]) {
			return l7.IsResponse
		}
		return l7.NotMine
	}
	l, j, sc := headerInt(b[i:])
	if sc != scanOK {
		return sc.verdict()
	}
	if l < 0 {
		return l7.IsResponse
	}
	cmd := b[i+j:]
	if int64(len(cmd)) > l {
		cmd = cmd[:l]
	}
	if len(cmd) == 0 {
		return l7.NeedMore
	}
	if !isCommandToken(cmd) {
		return l7.IsResponse // an array of bulk strings that is not a command: a reply
	}
	if int64(len(cmd)) < l {
		return l7.NeedMore
	}
	if _, ok := lookupCommand(cmd); ok {
		return l7.IsRequest
	}
	return l7.IsResponse
}

func classifyReply(b []byte) l7.Inference {
	switch b[0] {
	case ':', '$', '%', '>', '~':
		n, _, sc := headerInt(b)
		if sc != scanOK {
			return sc.verdict()
		}
		if n < -1 || (b[0] != ':' && n > 512<<20) {
			return l7.NotMine
		}
		return l7.IsResponse
	case '_':
		switch {
		case len(b) < 3:
			if string(b) == "_\r"[:len(b)] {
				return l7.NeedMore
			}
			return l7.NotMine
		case b[1] == '\r' && b[2] == '\n':
			return l7.IsResponse
		}
		return l7.NotMine
	}
	// '+' simple string or '-' error: a printable line ending in CRLF.
	end := -1
	for i := 1; i < len(b) && i < maxInferLine; i++ {
		c := b[i]
		if c == '\r' {
			end = i
			break
		}
		if c < 0x20 || c == 0x7f {
			return l7.NotMine
		}
	}
	if end < 0 {
		if len(b) < maxInferLine {
			return l7.NeedMore
		}
		return l7.NotMine
	}
	if end+1 == len(b) {
		return l7.NeedMore
	}
	if b[end+1] != '\n' || end == 1 {
		return l7.NotMine
	}
	if b[0] == '-' {
		// An error starts with an upper-case code word ("ERR", "WRONGTYPE").
		line := b[1:end]
		w := 0
		for w < len(line) && 'A' <= line[w] && line[w] <= 'Z' {
			w++
		}
		if w == 0 || (w < len(line) && line[w] != ' ') {
			return l7.NotMine
		}
		if w+1 < len(line) && line[w+1] == '\'' {
			return l7.NotMine // NATS: -ERR 'Unknown Protocol Operation'
		}
	}
	return l7.IsResponse
}

// inlineCommands are the inline commands inference accepts: upper case only
// (memcached is lower case), and not PING/PONG (NATS keep-alives).
var inlineCommands = [...]string{"INFO", "ECHO", "AUTH", "SELECT", "DBSIZE", "FLUSHALL", "FLUSHDB", "KEYS",
	"MONITOR", "GET", "SET", "DEL", "EXISTS", "INCR", "DECR", "HGETALL", "LRANGE", "TTL", "TYPE", "CLIENT", "CONFIG"}

// classifyInline matches "<COMMAND>[ args]\r\n" for a few upper-case commands.
func classifyInline(b []byte) l7.Inference {
	w := 0
	for w < len(b) && 'A' <= b[w] && b[w] <= 'Z' {
		w++
	}
	if w == 0 || w > 8 {
		return l7.NotMine
	}
	if w == len(b) {
		for _, c := range inlineCommands {
			if len(c) >= w && c[:w] == string(b) {
				return l7.NeedMore
			}
		}
		return l7.NotMine
	}
	found := false
	for _, c := range inlineCommands {
		if c == string(b[:w]) {
			found = true
			break
		}
	}
	if !found || (b[w] != ' ' && b[w] != '\r') {
		return l7.NotMine
	}
	for i := w; i < len(b) && i < maxInferLine; i++ {
		c := b[i]
		switch {
		case c == '\n':
			if b[i-1] != '\r' {
				return l7.NotMine
			}
			return l7.IsRequest
		case c == '{' && i == w+1:
			return l7.NotMine // NATS "INFO {json}"
		case c < 0x20 && c != '\r' && c != '\t', c == 0x7f:
			return l7.NotMine
		}
	}
	if len(b) < maxInferLine {
		return l7.NeedMore
	}
	return l7.NotMine
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// isTypeByte reports whether c starts a RESP2 or RESP3 value.
func isTypeByte(c byte) bool {
	switch c {
	case '+', '-', ':', '$', '*', '_', ',', '#', '!', '=', '(', '%', '~', '>', '|':
		return true
	}
	return false
}
