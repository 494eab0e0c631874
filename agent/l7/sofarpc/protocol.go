// Package sofarpc infers and parses SOFARPC over the Bolt protocol (v1, and
// v2 with its ver1/switch bytes and optional CRC32): the request id, one-way
// type and heartbeats from the header; service, method and trace context
// from the request's header map (falling back to the Hessian2 SofaRequest
// object); the response status and, for Hessian2 SofaResponse objects, the
// isError/errorMsg fields and a Throwable appResponse.
package sofarpc

import (
	"time"

	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/flowlog"
)

// DefaultTimeout is how long a request waits for its response.
const DefaultTimeout = 120 * time.Second

// Bolt header values.
const (
	protoV1 = 1
	protoV2 = 2

	typeResponse = 0
	typeRequest  = 1
	typeOneway   = 2

	cmdHeartbeat = 0
	cmdRequest   = 1
	cmdResponse  = 2

	codecHessian2 = 1

	maxClassLen = 1024     // a Java class name
	maxContent  = 64 << 20 // a plausible content length
)

// Response status codes (com.alipay.remoting.ResponseStatus).
const (
	statusSuccess             = 0x00
	statusError               = 0x01
	statusServerException     = 0x02
	statusUnknown             = 0x03
	statusThreadpoolBusy      = 0x04
	statusErrorComm           = 0x05
	statusNoProcessor         = 0x06
	statusTimeout             = 0x07
	statusClientSendError     = 0x08
	statusCodecException      = 0x09
	statusConnectionClosed    = 0x10
	statusServerSerialError   = 0x11
	statusServerDeserialError = 0x12
)

// Protocol is SOFARPC over Bolt. It is stateless and safe for concurrent use.
type Protocol struct {
	timeout time.Duration
}

// New returns the protocol configured by cfg (cfg.Timeout > 0 overrides
// DefaultTimeout; no argument values are kept, so KeepSecrets changes
// nothing).
func New(cfg l7.Config) *Protocol {
	p := &Protocol{timeout: DefaultTimeout}
	if cfg.Timeout > 0 {
		p.timeout = cfg.Timeout
	}
	return p
}

var _ l7.Protocol = (*Protocol)(nil)

// ID returns flowlog.L7SofaRPC.
func (p *Protocol) ID() flowlog.L7Protocol { return flowlog.L7SofaRPC }

// Matching returns l7.MatchByID: Bolt multiplexes calls by request id.
func (p *Protocol) Matching() l7.Matching { return l7.MatchByID }

// Timeout returns the configured request timeout.
func (p *Protocol) Timeout() time.Duration { return p.timeout }

// NewParser returns a parser for one connection.
func (p *Protocol) NewParser() l7.Parser { return &Parser{} }

// Infer claims a TCP stream starting with a Bolt command. A first byte of 1
// or 2 is weak evidence, so it checks every header field: protocol and
// version, a type/command pair that Bolt sends (request or one-way with the
// request command, response with the response command, either with the
// heartbeat command), remoting version 1, a small codec, plausible lengths,
// and then either an empty heartbeat or a class name of Java identifier
// characters (as far as captured). Bytes that pass so far but are too few
// to decide ask for more.
func (p *Protocol) Infer(data []byte, l4 uint8) l7.Inference {
	if l4 != 6 || len(data) == 0 {
		return l7.NotMine
	}
	h, st := parseHeader(data)
	switch st {
	case headerBad:
		return l7.NotMine
	case headerShort:
		if prefixOK(data) {
			return l7.NeedMore
		}
		return l7.NotMine
	}
	if h.ver2 != 1 || h.codec > 20 {
		return l7.NotMine
	}
	if h.cmd == cmdHeartbeat {
		if h.classLen != 0 || h.headerLen != 0 || h.contentLen != 0 {
			return l7.NotMine
		}
	} else {
		if h.classLen == 0 {
			return l7.NotMine
		}
		class := data[h.size:min(len(data), h.size+h.classLen)]
		for _, c := range class {
			if !isJavaNameChar(c) {
				return l7.NotMine
			}
		}
	}
	if h.typ == typeResponse {
		return l7.IsResponse
	}
	return l7.IsRequest
}

// prefixOK checks the fixed fields of a header prefix too short to parse.
func prefixOK(b []byte) bool {
	off := 0
	switch b[0] {
	case protoV1:
	case protoV2:
		if len(b) > 1 && b[1] != 1 && b[1] != 2 {
			return false
		}
		off = 1
	default:
		return false
	}
	if len(b) > off+1 && b[off+1] > typeOneway {
		return false
	}
	if len(b) > off+2 && b[off+2] != 0 {
		return false
	}
	if len(b) > off+3 && b[off+3] > cmdResponse {
		return false
	}
	if len(b) > off+4 && b[off+4] != 1 {
		return false
	}
	return true
}

func isJavaNameChar(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '$'
}

// header is a decoded Bolt header.
type header struct {
	v2        bool
	typ       byte
	cmd       uint16
	ver2      byte
	id        uint32
	codec     byte
	crc       bool
	status    uint16
	classLen  int
	headerLen int
	// contentLen is the content length; size the header's.
	contentLen int
	size       int
}

// total is the frame length.
func (h *header) total() int {
	n := h.size + h.classLen + h.headerLen + h.contentLen
	if h.crc {
		n += 4
	}
	return n
}

type headerState uint8

const (
	headerOK headerState = iota
	headerShort
	headerBad
)

// parseHeader decodes the Bolt header at the start of b.
func parseHeader(b []byte) (header, headerState) {
	var h header
	if len(b) < 2 {
		return h, headerShort
	}
	off := 0
	switch b[0] {
	case protoV1:
	case protoV2:
		h.v2 = true
		if b[1] != 1 && b[1] != 2 {
			return h, headerBad
		}
		off = 1
	default:
		return h, headerBad
	}
	if len(b) < off+2 {
		return h, headerShort
	}
	h.typ = b[off+1]
	if h.typ > typeOneway {
		return h, headerBad
	}
	h.size = 22 + off
	if h.v2 {
		h.size++ // switch
	}
	if h.typ == typeResponse {
		h.size -= 2 // a 2-byte status instead of a 4-byte timeout
	}
	if len(b) < h.size {
		return h, headerShort
	}
	h.cmd = uint16(b[off+2])<<8 | uint16(b[off+3])
	switch {
	case h.cmd == cmdHeartbeat:
	case h.typ == typeResponse && h.cmd == cmdResponse:
	case h.typ != typeResponse && h.cmd == cmdRequest:
	default:
		return h, headerBad
	}
	h.ver2 = b[off+4]
	h.id = be32(b[off+5:])
	h.codec = b[off+9]
	p := off + 10
	if h.v2 {
		h.crc = b[1] == 2 && b[p]&1 != 0
		p++
	}
	if h.typ == typeResponse {
		h.status = uint16(b[p])<<8 | uint16(b[p+1])
		p += 2
	} else {
		p += 4 // timeout
	}
	h.classLen = int(b[p])<<8 | int(b[p+1])
	h.headerLen = int(b[p+2])<<8 | int(b[p+3])
	content := be32(b[p+4:])
	if h.classLen > maxClassLen || content > maxContent {
		return h, headerBad
	}
	h.contentLen = int(content)
	return h, headerOK
}

// responseStatus maps a Bolt response status to response_status: the
// request could not be handled as sent (no processor for its class, the
// server could not deserialize it, the client failed to send it) is the
// client's fault; everything else that is not success (server exception,
// thread pool busy, timeouts, codec and connection errors, unknown) the
// server's.
func responseStatus(s uint16) flowlog.ResponseStatus {
	switch s {
	case statusSuccess:
		return flowlog.StatusSuccess
	case statusNoProcessor, statusClientSendError, statusServerDeserialError:
		return flowlog.StatusClientError
	}
	return flowlog.StatusServerError
}

// statusName is the Java name of a status.
func statusName(s uint16) string {
	switch s {
	case statusError:
		return "ERROR"
	case statusServerException:
		return "SERVER_EXCEPTION"
	case statusUnknown:
		return "UNKNOWN"
	case statusThreadpoolBusy:
		return "SERVER_THREADPOOL_BUSY"
	case statusErrorComm:
		return "ERROR_COMM"
	case statusNoProcessor:
		return "NO_PROCESSOR"
	case statusTimeout:
		return "TIMEOUT"
	case statusClientSendError:
		return "CLIENT_SEND_ERROR"
	case statusCodecException:
		return "CODEC_EXCEPTION"
	case statusConnectionClosed:
		return "CONNECTION_CLOSED"
	case statusServerSerialError:
		return "SERVER_SERIAL_EXCEPTION"
	case statusServerDeserialError:
		return "SERVER_DESERIAL_EXCEPTION"
	}
	return "UNKNOWN_STATUS"
}

func be32(b []byte) uint32 {
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}
