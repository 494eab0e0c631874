package wire

import (
	"fmt"
	"math"
	"net/netip"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/sightline-io/sightline/flowlog"
	"github.com/sightline-io/sightline/wire/sightlinepb"
)

// ToProto converts a row to its wire form. Times are truncated to
// microseconds, the contract's precision; an IPv6 zone is not carried.
// Invalid UTF-8 in strings (captured payload bytes) is replaced with U+FFFD,
// since protobuf refuses to marshal it and would fail the whole batch. The
// result shares the row's pointers and, when valid, its Attributes map.
// The Shipper does not call it (it encodes rows directly, see encode.go);
// it is the reference that encoder is tested against, and the way to build
// a batch for other gRPC clients.
func ToProto(r *flowlog.L7FlowLog) *sightlinepb.L7FlowLog {
	return &sightlinepb.L7FlowLog{
		Id:               r.ID,
		TimeUs:           timeToMicros(r.Time),
		StartTimeUs:      timeToMicros(r.StartTime),
		EndTimeUs:        timeToMicros(r.EndTime),
		ResponseDuration: r.ResponseDuration,

		AgentId: validUTF8(r.AgentID),
		Host:    validUTF8(r.Host),
		OrgId:   uint32(r.OrgID),
		TeamId:  uint32(r.TeamID),

		SignalSource:     uint32(r.SignalSource),
		ObservationPoint: validUTF8(r.ObservationPoint),

		L7Protocol:    uint32(r.L7Protocol),
		L7ProtocolStr: validUTF8(r.L7ProtocolStr),
		Version:       validUTF8(r.Version),
		Type:          uint32(r.Type),
		IsTls:         r.IsTLS,

		RequestType:     validUTF8(r.RequestType),
		RequestDomain:   validUTF8(r.RequestDomain),
		RequestResource: validUTF8(r.RequestResource),
		Endpoint:        validUTF8(r.Endpoint),
		RequestId:       r.RequestID,

		ResponseStatus:    uint32(r.ResponseStatus),
		ResponseCode:      r.ResponseCode,
		ResponseException: validUTF8(r.ResponseException),
		ResponseResult:    validUTF8(r.ResponseResult),

		RequestLength:        r.RequestLength,
		ResponseLength:       r.ResponseLength,
		CapturedRequestByte:  r.CapturedRequestByte,
		CapturedResponseByte: r.CapturedResponseByte,

		SqlAffectedRows: r.SQLAffectedRows,

		TraceId:      validUTF8(r.TraceID),
		SpanId:       validUTF8(r.SpanID),
		ParentSpanId: validUTF8(r.ParentSpanID),
		XRequestId_0: validUTF8(r.XRequestID0),
		XRequestId_1: validUTF8(r.XRequestID1),

		SyscallTraceIdRequest:  r.SyscallTraceIDRequest,
		SyscallTraceIdResponse: r.SyscallTraceIDResponse,
		SyscallThread_0:        r.SyscallThread0,
		SyscallThread_1:        r.SyscallThread1,
		SyscallCoroutine_0:     r.SyscallCoroutine0,
		SyscallCoroutine_1:     r.SyscallCoroutine1,
		SyscallCapSeq_0:        r.SyscallCapSeq0,
		SyscallCapSeq_1:        r.SyscallCapSeq1,
		ReqTcpSeq:              r.ReqTCPSeq,
		RespTcpSeq:             r.RespTCPSeq,

		Ip_0:       addrToBytes(r.IP0),
		Ip_1:       addrToBytes(r.IP1),
		ClientPort: uint32(r.ClientPort),
		ServerPort: uint32(r.ServerPort),
		Protocol:   uint32(r.Protocol),

		ProcessId_0:    r.ProcessID0,
		ProcessId_1:    r.ProcessID1,
		ProcessKname_0: validUTF8(r.ProcessKName0),
		ProcessKname_1: validUTF8(r.ProcessKName1),
		ContainerId_0:  validUTF8(r.ContainerID0),
		ContainerId_1:  validUTF8(r.ContainerID1),

		Attributes: validUTF8Map(r.Attributes),
	}
}

// FromProto converts a wire row back, rejecting values that do not fit the
// row contract (IP bytes of the wrong length, integers out of range). The row
// shares p's pointers and Attributes map.
func FromProto(p *sightlinepb.L7FlowLog) (flowlog.L7FlowLog, error) {
	if p == nil {
		return flowlog.L7FlowLog{}, fmt.Errorf("nil row")
	}
	var errs fieldErrors
	r := flowlog.L7FlowLog{
		ID:               p.GetId(),
		Time:             microsToTime(p.GetTimeUs()),
		StartTime:        microsToTime(p.GetStartTimeUs()),
		EndTime:          microsToTime(p.GetEndTimeUs()),
		ResponseDuration: p.GetResponseDuration(),

		AgentID: p.GetAgentId(),
		Host:    p.GetHost(),
		OrgID:   errs.u16("org_id", p.GetOrgId()),
		TeamID:  errs.u16("team_id", p.GetTeamId()),

		SignalSource:     flowlog.SignalSource(errs.u8("signal_source", p.GetSignalSource())),
		ObservationPoint: p.GetObservationPoint(),

		L7Protocol:    flowlog.L7Protocol(errs.u8("l7_protocol", p.GetL7Protocol())),
		L7ProtocolStr: p.GetL7ProtocolStr(),
		Version:       p.GetVersion(),
		Type:          flowlog.RowType(errs.u8("type", p.GetType())),
		IsTLS:         p.GetIsTls(),

		RequestType:     p.GetRequestType(),
		RequestDomain:   p.GetRequestDomain(),
		RequestResource: p.GetRequestResource(),
		Endpoint:        p.GetEndpoint(),
		RequestID:       p.RequestId,

		ResponseStatus:    flowlog.ResponseStatus(errs.u8("response_status", p.GetResponseStatus())),
		ResponseCode:      p.ResponseCode,
		ResponseException: p.GetResponseException(),
		ResponseResult:    p.GetResponseResult(),

		RequestLength:        p.GetRequestLength(),
		ResponseLength:       p.GetResponseLength(),
		CapturedRequestByte:  p.GetCapturedRequestByte(),
		CapturedResponseByte: p.GetCapturedResponseByte(),

		SQLAffectedRows: p.SqlAffectedRows,

		TraceID:      p.GetTraceId(),
		SpanID:       p.GetSpanId(),
		ParentSpanID: p.GetParentSpanId(),
		XRequestID0:  p.GetXRequestId_0(),
		XRequestID1:  p.GetXRequestId_1(),

		SyscallTraceIDRequest:  p.GetSyscallTraceIdRequest(),
		SyscallTraceIDResponse: p.GetSyscallTraceIdResponse(),
		SyscallThread0:         p.GetSyscallThread_0(),
		SyscallThread1:         p.GetSyscallThread_1(),
		SyscallCoroutine0:      p.GetSyscallCoroutine_0(),
		SyscallCoroutine1:      p.GetSyscallCoroutine_1(),
		SyscallCapSeq0:         p.GetSyscallCapSeq_0(),
		SyscallCapSeq1:         p.GetSyscallCapSeq_1(),
		ReqTCPSeq:              p.GetReqTcpSeq(),
		RespTCPSeq:             p.GetRespTcpSeq(),

		IP0:        errs.addr("ip_0", p.GetIp_0()),
		IP1:        errs.addr("ip_1", p.GetIp_1()),
		ClientPort: errs.u16("client_port", p.GetClientPort()),
		ServerPort: errs.u16("server_port", p.GetServerPort()),
		Protocol:   errs.u8("protocol", p.GetProtocol()),

		ProcessID0:    p.GetProcessId_0(),
		ProcessID1:    p.GetProcessId_1(),
		ProcessKName0: p.GetProcessKname_0(),
		ProcessKName1: p.GetProcessKname_1(),
		ContainerID0:  p.GetContainerId_0(),
		ContainerID1:  p.GetContainerId_1(),

		Attributes: p.GetAttributes(),
	}
	if errs.err != nil {
		return flowlog.L7FlowLog{}, errs.err
	}
	return r, nil
}

// fieldErrors keeps the first conversion error so FromProto can stay one
// struct literal.
type fieldErrors struct{ err error }

func (e *fieldErrors) set(field string, format string, args ...any) {
	if e.err == nil {
		e.err = fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...))
	}
}

func (e *fieldErrors) u8(field string, v uint32) uint8 {
	if v > math.MaxUint8 {
		e.set(field, "value %d exceeds %d", v, math.MaxUint8)
		return 0
	}
	return uint8(v)
}

func (e *fieldErrors) u16(field string, v uint32) uint16 {
	if v > math.MaxUint16 {
		e.set(field, "value %d exceeds %d", v, math.MaxUint16)
		return 0
	}
	return uint16(v)
}

func (e *fieldErrors) addr(field string, b []byte) netip.Addr {
	switch len(b) {
	case 0:
		return netip.Addr{}
	case 4:
		return netip.AddrFrom4([4]byte(b))
	case 16:
		return netip.AddrFrom16([16]byte(b))
	default:
		e.set(field, "IP address is %d bytes, want 4 or 16", len(b))
		return netip.Addr{}
	}
}

// timeToMicros maps the zero time to 0 so that an unset column stays unset
// across the wire (the unix epoch itself is never an observation time).
func timeToMicros(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMicro()
}

func microsToTime(us int64) time.Time {
	if us == 0 {
		return time.Time{}
	}
	return time.UnixMicro(us).UTC()
}

// addrToBytes keeps the address family: IPv4 as 4 bytes, IPv6 (including
// IPv4-mapped) as 16. The zero Addr becomes no bytes.
func addrToBytes(a netip.Addr) []byte {
	if !a.IsValid() {
		return nil
	}
	return a.AsSlice()
}

// validUTF8 returns s, with invalid UTF-8 sequences replaced if it has any.
func validUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

// validUTF8Map returns m, or a repaired copy if a key or value is invalid
// UTF-8 (the caller's map is not modified).
func validUTF8Map(m map[string]string) map[string]string {
	for k, v := range m {
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			c := make(map[string]string, len(m))
			for k, v := range m {
				c[validUTF8(k)] = validUTF8(v)
			}
			return c
		}
	}
	return m
}
