// Package dubbo infers and parses Apache Dubbo 2 (the "dubbo" protocol): a
// 16-byte header (magic 0xdabb, flags, status, 8-byte request id, body
// length) and a serialized body. Hessian2 bodies (the default serialization)
// and the JSON-lines ones (fastjson, gson) give the request's dubbo version,
// service and method and the response's value/exception flag; other
// serializations (java, kryo, fst, protobuf ...) give the header fields only
// (request id, status, lengths, one-way and event bits).
package dubbo

import (
	"time"

	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/flowlog"
)

// DefaultTimeout is how long a request waits for its response.
const DefaultTimeout = 120 * time.Second

// Header layout and flags.
const (
	headerLen = 16
	magicHi   = 0xda
	magicLo   = 0xbb

	flagRequest = 0x80
	flagTwoWay  = 0x40
	flagEvent   = 0x20
	serialMask  = 0x1f

	serialHessian2 = 2
	serialFastJSON = 6
	serialGson     = 16

	// maxBody bounds a plausible body (Dubbo's default payload limit is
	// 8 MiB); a larger length means the bytes are not a Dubbo header.
	maxBody = 64 << 20
)

// Response status codes (org.apache.dubbo.remoting.exchange.Response).
const (
	statusOK                = 20
	statusClientTimeout     = 30
	statusServerTimeout     = 31
	statusChannelInactive   = 35
	statusBadRequest        = 40
	statusBadResponse       = 50
	statusServiceNotFound   = 60
	statusServiceError      = 70
	statusServerError       = 80
	statusClientError       = 90
	statusThreadpoolExhaust = 100
)

// Protocol is Dubbo 2. It is stateless and safe for concurrent use.
type Protocol struct {
	timeout time.Duration
}

// New returns the Dubbo protocol configured by cfg (cfg.Timeout > 0
// overrides DefaultTimeout; Dubbo bodies carry no secrets the parser keeps,
// so KeepSecrets changes nothing).
func New(cfg l7.Config) *Protocol {
	p := &Protocol{timeout: DefaultTimeout}
	if cfg.Timeout > 0 {
		p.timeout = cfg.Timeout
	}
	return p
}

var _ l7.Protocol = (*Protocol)(nil)

// ID returns flowlog.L7Dubbo.
func (p *Protocol) ID() flowlog.L7Protocol { return flowlog.L7Dubbo }

// Matching returns l7.MatchByID: responses carry their request's id and may
// come out of order.
func (p *Protocol) Matching() l7.Matching { return l7.MatchByID }

// Timeout returns the configured request timeout.
func (p *Protocol) Timeout() time.Duration { return p.timeout }

// NewParser returns a parser for one connection.
func (p *Protocol) NewParser() l7.Parser { return &Parser{} }

// Infer claims a TCP stream whose first bytes are a Dubbo header: the magic,
// a non-zero serialization id, a plausible body length, a zero status byte
// on requests and a known status on responses, and for Hessian2 and JSON
// requests a body starting with a string (the dubbo version) or null (an
// event).
func (p *Protocol) Infer(data []byte, l4 uint8) l7.Inference {
	if l4 != 6 || len(data) == 0 {
		return l7.NotMine
	}
	if data[0] != magicHi || (len(data) > 1 && data[1] != magicLo) {
		return l7.NotMine
	}
	if len(data) < headerLen {
		return l7.NeedMore
	}
	h, ok := parseHeader(data)
	if !ok {
		return l7.NotMine
	}
	if !h.request {
		if statusKnown(h.status) {
			return l7.IsResponse
		}
		return l7.NotMine
	}
	if h.status != 0 {
		return l7.NotMine
	}
	if len(data) > headerLen && h.bodyLen > 0 {
		c := data[headerLen]
		switch h.serial {
		case serialHessian2:
			if !isHessianString(c) && c != 'N' {
				return l7.NotMine
			}
		case serialFastJSON, serialGson:
			if c != '"' && c != 'n' {
				return l7.NotMine
			}
		}
	}
	return l7.IsRequest
}

// header is a decoded Dubbo header.
type header struct {
	request, twoWay, event bool
	serial                 byte
	status                 byte
	id                     uint64
	bodyLen                int
}

// parseHeader decodes the 16 bytes at b (len(b) >= 16).
func parseHeader(b []byte) (header, bool) {
	var h header
	if b[0] != magicHi || b[1] != magicLo {
		return h, false
	}
	flag := b[2]
	h.request = flag&flagRequest != 0
	h.twoWay = flag&flagTwoWay != 0
	h.event = flag&flagEvent != 0
	h.serial = flag & serialMask
	h.status = b[3]
	h.id = be64(b[4:])
	n := be32(b[12:])
	if h.serial == 0 || n > maxBody {
		return h, false
	}
	h.bodyLen = int(n)
	return h, true
}

func statusKnown(s byte) bool {
	switch s {
	case statusOK, statusClientTimeout, statusServerTimeout, statusChannelInactive, statusBadRequest,
		statusBadResponse, statusServiceNotFound, statusServiceError, statusServerError,
		statusClientError, statusThreadpoolExhaust:
		return true
	}
	return false
}

// responseStatus maps a Dubbo status byte to response_status: timeouts on
// the client side, bad requests and client errors are the client's fault;
// the server-side timeout, bad response, service not found / error, server
// error and thread-pool exhaustion are the server's. Unknown codes are
// server errors.
func responseStatus(s byte) flowlog.ResponseStatus {
	switch s {
	case statusOK:
		return flowlog.StatusSuccess
	case statusClientTimeout, statusBadRequest, statusClientError, statusChannelInactive:
		return flowlog.StatusClientError
	}
	return flowlog.StatusServerError
}

// statusName is the Java constant name of a status, the exception text when
// the body says nothing better.
func statusName(s byte) string {
	switch s {
	case statusClientTimeout:
		return "CLIENT_TIMEOUT"
	case statusServerTimeout:
		return "SERVER_TIMEOUT"
	case statusChannelInactive:
		return "CHANNEL_INACTIVE"
	case statusBadRequest:
		return "BAD_REQUEST"
	case statusBadResponse:
		return "BAD_RESPONSE"
	case statusServiceNotFound:
		return "SERVICE_NOT_FOUND"
	case statusServiceError:
		return "SERVICE_ERROR"
	case statusServerError:
		return "SERVER_ERROR"
	case statusClientError:
		return "CLIENT_ERROR"
	case statusThreadpoolExhaust:
		return "SERVER_THREADPOOL_EXHAUSTED_ERROR"
	}
	return "UNKNOWN_STATUS"
}

func isHessianString(c byte) bool {
	return c <= 0x1f || (c >= 0x30 && c <= 0x33) || c == 'S' || c == 'R'
}

func be32(b []byte) uint32 {
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func be64(b []byte) uint64 {
	return uint64(be32(b))<<32 | uint64(be32(b[4:]))
}
