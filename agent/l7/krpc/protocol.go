// Package krpc infers and parses KRPC (github.com/bruceran/krpc, the
// protocol DeepFlow parses as "KRPC"): an 8-byte fixed header ("KR",
// 2-byte extended-header length, 4-byte length of extended header plus
// body, big-endian), a protobuf extended header (RpcMeta: direction,
// serviceId, msgId, sequence, timeout, retCode, trace) and a protobuf body.
// Services and messages are numbers; the sequence pairs a response with its
// request.
package krpc

import (
	"time"

	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/flowlog"
)

// L7KRPC is KRPC's l7_protocol number: flowlog.L7KRPC (42, DeepFlow's
// ProtobufRPC family, of which KRPC is the member DeepFlow parses).
const L7KRPC = flowlog.L7KRPC

// DefaultTimeout is how long a request waits for its response.
const DefaultTimeout = 120 * time.Second

const (
	headerLen = 8
	// maxPacket bounds a plausible packet (KRPC's maxPackageSize defaults
	// to 1,000,000 bytes and is configurable).
	maxPacket = 64 << 20

	dirRequest  = 1
	dirResponse = 2

	// serviceId 1 is the framework's; serviceId 1 msgId 1 is the heartbeat.
	heartbeatService = 1
	heartbeatMsg     = 1
)

// Protocol is KRPC. It is stateless and safe for concurrent use.
type Protocol struct {
	timeout time.Duration
}

// New returns the protocol configured by cfg (cfg.Timeout > 0 overrides
// DefaultTimeout; no body values are kept, so KeepSecrets changes nothing).
func New(cfg l7.Config) *Protocol {
	p := &Protocol{timeout: DefaultTimeout}
	if cfg.Timeout > 0 {
		p.timeout = cfg.Timeout
	}
	return p
}

var _ l7.Protocol = (*Protocol)(nil)

// ID returns L7KRPC.
func (p *Protocol) ID() flowlog.L7Protocol { return L7KRPC }

// Matching returns l7.MatchByID: calls on a connection are multiplexed by
// sequence.
func (p *Protocol) Matching() l7.Matching { return l7.MatchByID }

// Timeout returns the configured request timeout.
func (p *Protocol) Timeout() time.Duration { return p.timeout }

// NewParser returns a parser for one connection.
func (p *Protocol) NewParser() l7.Parser { return &Parser{} }

// Infer claims a TCP stream starting with "KR", a non-empty extended header
// no longer than the packet, a plausible packet length, and an extended
// header that starts with the direction field (tag 0x08, protobuf fields
// are written in order and direction is never the default) set to request
// or response.
func (p *Protocol) Infer(data []byte, l4 uint8) l7.Inference {
	if l4 != 6 || len(data) == 0 {
		return l7.NotMine
	}
	if data[0] != 'K' || (len(data) > 1 && data[1] != 'R') {
		return l7.NotMine
	}
	if len(data) < headerLen+2 {
		if len(data) >= headerLen {
			if _, _, ok := parseHeader(data); !ok {
				return l7.NotMine
			}
		}
		return l7.NeedMore
	}
	head, _, ok := parseHeader(data)
	if !ok || head < 2 || data[headerLen] != 0x08 {
		return l7.NotMine
	}
	switch data[headerLen+1] {
	case dirRequest:
		return l7.IsRequest
	case dirResponse:
		return l7.IsResponse
	}
	return l7.NotMine
}

// parseHeader returns the extended header and packet lengths of the fixed
// header at b (len(b) >= 8).
func parseHeader(b []byte) (head, packet int, ok bool) {
	if b[0] != 'K' || b[1] != 'R' {
		return 0, 0, false
	}
	h := int(b[2])<<8 | int(b[3])
	n := uint32(b[4])<<24 | uint32(b[5])<<16 | uint32(b[6])<<8 | uint32(b[7])
	if n > maxPacket || uint32(h) > n {
		return 0, 0, false
	}
	return h, int(n), true
}

// Framework return codes (krpc.rpc.core.RetCodes).
const (
	retRPCTimeout          = -450
	retNoConnection        = -451
	retSendFailed          = -452
	retConnectionBroken    = -453
	retUserCancel          = -454
	retExecException       = -455
	retRefererNotAllowed   = -456
	retEncodeReqError      = -457
	retDecodeResError      = -458
	retBusinessError       = -500
	retServerShutdown      = -503
	retQueueFull           = -550
	retQueueTimeout        = -551
	retDecodeReqError      = -552
	retEncodeResError      = -553
	retNotFound            = -554
	retFlowLimit           = -555
	retServiceNotAllowed   = -556
	retServerConnectBroken = -557
)

// responseStatus maps retCode to response_status. A request the server
// could not decode, a service or message it does not have, or one the
// caller is not allowed to call is the client's fault; every other
// non-zero code (framework failures on the server, and the business error
// codes -xxxxyyy a service returns) is a server error, as DeepFlow counts
// them.
func responseStatus(code int32) flowlog.ResponseStatus {
	switch code {
	case 0:
		return flowlog.StatusSuccess
	case retDecodeReqError, retNotFound, retServiceNotAllowed, retRefererNotAllowed:
		return flowlog.StatusClientError
	}
	return flowlog.StatusServerError
}

// retName names framework codes, the exception when the body has no retMsg.
func retName(code int32) string {
	switch code {
	case retRPCTimeout:
		return "RPC_TIMEOUT"
	case retNoConnection:
		return "NO_CONNECTION"
	case retSendFailed:
		return "SEND_FAILED"
	case retConnectionBroken:
		return "CONNECTION_BROKEN"
	case retUserCancel:
		return "USER_CANCEL"
	case retExecException:
		return "EXEC_EXCEPTION"
	case retRefererNotAllowed:
		return "REFERER_NOT_ALLOWED"
	case retEncodeReqError:
		return "ENCODE_REQ_ERROR"
	case retDecodeResError:
		return "DECODE_RES_ERROR"
	case retBusinessError:
		return "BUSINESS_ERROR"
	case retServerShutdown:
		return "SERVER_SHUTDOWN"
	case retQueueFull:
		return "QUEUE_FULL"
	case retQueueTimeout:
		return "QUEUE_TIMEOUT"
	case retDecodeReqError:
		return "DECODE_REQ_ERROR"
	case retEncodeResError:
		return "ENCODE_RES_ERROR"
	case retNotFound:
		return "NOT_FOUND"
	case retFlowLimit:
		return "FLOW_LIMIT"
	case retServiceNotAllowed:
		return "SERVICE_NOT_ALLOWED"
	case retServerConnectBroken:
		return "SERVER_CONNECTION_BROKEN"
	}
	return "error"
}
