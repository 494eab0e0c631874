// Package brpc infers and parses bRPC's baidu_std protocol: a 12-byte
// header ("PRPC", body size, meta size, big-endian) and a protobuf RpcMeta
// that names the service and method of a request and carries the error code
// and text of a response, the correlation id that pairs them, and the
// request's trace, span and request ids.
package brpc

import (
	"time"

	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/flowlog"
)

// DefaultTimeout is how long a request waits for its response.
const DefaultTimeout = 120 * time.Second

const (
	headerLen = 12
	// maxBody bounds a plausible body (bRPC's max_body_size defaults to
	// 64 MiB).
	maxBody = 64 << 20
)

// Protocol is bRPC baidu_std. It is stateless and safe for concurrent use.
type Protocol struct {
	timeout time.Duration
}

// New returns the protocol configured by cfg (cfg.Timeout > 0 overrides
// DefaultTimeout; no payload is kept, so KeepSecrets changes nothing).
func New(cfg l7.Config) *Protocol {
	p := &Protocol{timeout: DefaultTimeout}
	if cfg.Timeout > 0 {
		p.timeout = cfg.Timeout
	}
	return p
}

var _ l7.Protocol = (*Protocol)(nil)

// ID returns flowlog.L7BRPC.
func (p *Protocol) ID() flowlog.L7Protocol { return flowlog.L7BRPC }

// Matching returns l7.MatchByID: a connection multiplexes calls by
// correlation id.
func (p *Protocol) Matching() l7.Matching { return l7.MatchByID }

// Timeout returns the configured request timeout.
func (p *Protocol) Timeout() time.Duration { return p.timeout }

// NewParser returns a parser for one connection.
func (p *Protocol) NewParser() l7.Parser { return &Parser{} }

// Infer claims a TCP stream that starts with "PRPC", a meta size no larger
// than the body size, a plausible body size, and a meta whose first byte is
// the tag of RpcMeta's request (1), response (2), compress_type (3) or
// correlation_id (4) field. A request meta starts with the request field.
func (p *Protocol) Infer(data []byte, l4 uint8) l7.Inference {
	if l4 != 6 || len(data) == 0 {
		return l7.NotMine
	}
	const magic = "PRPC"
	n := min(len(data), len(magic))
	if string(data[:n]) != magic[:n] {
		return l7.NotMine
	}
	if len(data) < headerLen {
		return l7.NeedMore
	}
	_, meta, ok := parseHeader(data)
	if !ok || meta == 0 {
		return l7.NotMine
	}
	if len(data) == headerLen {
		return l7.NeedMore
	}
	switch data[headerLen] {
	case 0x0a:
		return l7.IsRequest
	case 0x12, 0x18, 0x20:
		return l7.IsResponse
	}
	return l7.NotMine
}

// parseHeader returns the body and meta sizes of the header at b
// (len(b) >= 12).
func parseHeader(b []byte) (body, meta int, ok bool) {
	if string(b[:4]) != "PRPC" {
		return 0, 0, false
	}
	bs, ms := be32(b[4:]), be32(b[8:])
	if bs > maxBody || ms > bs {
		return 0, 0, false
	}
	return int(bs), int(ms), true
}

// bRPC error codes (brpc/errno.proto) the mapping names.
const (
	eNoService    = 1001
	eNoMethod     = 1002
	eRequest      = 1003
	eRPCAuth      = 1004
	eRPCTimedOut  = 1008
	eOvercrowded  = 1011
	eInternal     = 2001
	eResponse     = 2002
	eLogoff       = 2003
	eLimit        = 2004
	eClose        = 2005
	eITP          = 2006
	clientErrLow  = 1001
	clientErrHigh = 1999
)

// responseStatus maps an error code to response_status. errno.proto puts
// the codes "caused by client" in 1001-1999 (no service or method, bad
// request, auth ...) and those "caused by server" in 2001-2999; the client
// range's timeout (ERPCTIMEDOUT) and EOVERCROWDED are server-side
// conditions here. Any other non-zero code (a system errno, a code set by
// the service) is a server error.
func responseStatus(code int32) flowlog.ResponseStatus {
	switch {
	case code == 0:
		return flowlog.StatusSuccess
	case code == eRPCTimedOut || code == eOvercrowded:
		return flowlog.StatusServerError
	case code >= clientErrLow && code <= clientErrHigh:
		return flowlog.StatusClientError
	}
	return flowlog.StatusServerError
}

// errorName names well-known codes, the exception when there is no text.
func errorName(code int32) string {
	switch code {
	case eNoService:
		return "ENOSERVICE"
	case eNoMethod:
		return "ENOMETHOD"
	case eRequest:
		return "EREQUEST"
	case eRPCAuth:
		return "ERPCAUTH"
	case eRPCTimedOut:
		return "ERPCTIMEDOUT"
	case eOvercrowded:
		return "EOVERCROWDED"
	case eInternal:
		return "EINTERNAL"
	case eResponse:
		return "ERESPONSE"
	case eLogoff:
		return "ELOGOFF"
	case eLimit:
		return "ELIMIT"
	case eClose:
		return "ECLOSE"
	case eITP:
		return "EITP"
	}
	return "error"
}

func be32(b []byte) uint32 {
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}
