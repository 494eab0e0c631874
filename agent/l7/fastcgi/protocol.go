// Package fastcgi infers and parses FastCGI (the web server ↔ application
// server protocol of nginx and php-fpm): a request is a BEGIN_REQUEST
// record, PARAMS name-value pairs (the CGI environment: method, host, URI,
// selected HTTP headers) and STDIN; the response is STDOUT (CGI headers
// with an optional Status line, then the body), STDERR and END_REQUEST.
// Records are framed with stream.Buffer; requests and responses are paired
// by the record's requestId.
package fastcgi

import (
	"encoding/binary"
	"time"

	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/flowlog"
)

// DefaultTimeout is how long a request waits for its response.
const DefaultTimeout = 120 * time.Second

// Record types.
const (
	typeBeginRequest    = 1
	typeAbortRequest    = 2
	typeEndRequest      = 3
	typeParams          = 4
	typeStdin           = 5
	typeStdout          = 6
	typeStderr          = 7
	typeData            = 8
	typeGetValues       = 9
	typeGetValuesResult = 10
	typeUnknownType     = 11
)

const recordHeader = 8

// Protocol is FastCGI. It is stateless and safe for concurrent use.
type Protocol struct {
	timeout     time.Duration
	keepSecrets bool
}

var _ l7.Protocol = (*Protocol)(nil)

// New returns the FastCGI protocol. Unless cfg.KeepSecrets, sensitive query
// parameters of the request URI are masked.
func New(cfg l7.Config) *Protocol {
	p := &Protocol{timeout: DefaultTimeout, keepSecrets: cfg.KeepSecrets}
	if cfg.Timeout > 0 {
		p.timeout = cfg.Timeout
	}
	return p
}

// ID returns flowlog.L7FastCGI.
func (p *Protocol) ID() flowlog.L7Protocol { return flowlog.L7FastCGI }

// Matching returns l7.MatchByID: records carry their request's id, and a
// connection may multiplex requests.
func (p *Protocol) Matching() l7.Matching { return l7.MatchByID }

// Timeout returns the configured request timeout.
func (p *Protocol) Timeout() time.Duration { return p.timeout }

// NewParser returns a parser for one connection; its concrete type is *Parser.
func (p *Protocol) NewParser() l7.Parser { return newParser(p.keepSecrets) }

// Infer claims a connection that starts with a BEGIN_REQUEST record:
// version 1, type 1, a non-zero request id (0 is for management records),
// content length 8, padding at most 7 and a zero reserved byte; when the
// body was captured too, a role of 1..3 (responder, authorizer, filter),
// flags 0 or 1 (keep-conn) and zero reserved bytes. Application servers
// read the 8-byte header alone, so the header is enough. FastCGI runs over
// TCP (or Unix sockets, which are not traced). A capture that starts
// mid-connection is claimed at a response whose STDOUT starts with a CGI
// header (see inferStdout).
func (p *Protocol) Infer(data []byte, l4 uint8) l7.Inference {
	if l4 != 6 || len(data) == 0 {
		return l7.NotMine
	}
	if len(data) > 1 && data[0] == 1 && data[1] == typeStdout {
		return inferStdout(data)
	}
	want := [...]byte{1, typeBeginRequest}
	for i := 0; i < len(want) && i < len(data); i++ {
		if data[i] != want[i] {
			return l7.NotMine
		}
	}
	if len(data) < recordHeader {
		return l7.NeedMore
	}
	id := binary.BigEndian.Uint16(data[2:])
	if id == 0 || binary.BigEndian.Uint16(data[4:]) != 8 || data[6] > 7 || data[7] != 0 {
		return l7.NotMine
	}
	body := data[recordHeader:]
	if len(body) >= 2 {
		if role := binary.BigEndian.Uint16(body); role < 1 || role > 3 {
			return l7.NotMine
		}
	}
	if len(body) >= 3 && body[2] > 1 {
		return l7.NotMine
	}
	for i := 3; i < min(len(body), 8); i++ {
		if body[i] != 0 {
			return l7.NotMine
		}
	}
	return l7.IsRequest
}

// inferStdout claims a STDOUT record (version 1, type 6, a non-zero request
// id, padding at most 7, reserved zero) whose content starts with a CGI
// header line: a header name of at least two token characters, a colon,
// and a space or the line's end.
func inferStdout(data []byte) l7.Inference {
	if len(data) < recordHeader+16 {
		return l7.NeedMore
	}
	clen := int(binary.BigEndian.Uint16(data[4:]))
	if binary.BigEndian.Uint16(data[2:]) == 0 || clen < 16 || data[6] > 7 || data[7] != 0 {
		return l7.NotMine
	}
	content := data[recordHeader:min(len(data), recordHeader+clen)]
	for i, c := range content[:min(len(content), 64)] {
		switch {
		case c == ':':
			if i < 2 || i+1 >= len(content) || content[i+1] != ' ' && content[i+1] != '\r' && content[i+1] != '\n' {
				return l7.NotMine
			}
			return l7.IsResponse
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-' || c == '_':
		default:
			return l7.NotMine
		}
	}
	return l7.NotMine
}
