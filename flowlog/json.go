package flowlog

import (
	"slices"
	"strconv"
	"time"
	"unicode/utf8"
)

// AppendJSON appends r as one JSON object to dst, byte for byte what
// encoding/json produces for r with HTML escaping off. It exists because
// `sightline replay` prints a row per session and reflection-based encoding
// was half of replay's CPU time; TestAppendJSONMatchesEncodingJSON and
// FuzzAppendJSON hold the two encoders equal, and a test fails when a field
// is added to L7FlowLog without being added here.
func (r *L7FlowLog) AppendJSON(dst []byte) []byte {
	dst = append(dst, `{"_id":`...)
	dst = strconv.AppendUint(dst, r.ID, 10)
	dst = appendTime(append(dst, `,"time":`...), r.Time)
	dst = appendTime(append(dst, `,"start_time":`...), r.StartTime)
	dst = appendTime(append(dst, `,"end_time":`...), r.EndTime)
	dst = strconv.AppendUint(append(dst, `,"response_duration":`...), r.ResponseDuration, 10)
	dst = appendString(append(dst, `,"agent_id":`...), r.AgentID)
	dst = appendString(append(dst, `,"host":`...), r.Host)
	dst = strconv.AppendUint(append(dst, `,"org_id":`...), uint64(r.OrgID), 10)
	dst = strconv.AppendUint(append(dst, `,"team_id":`...), uint64(r.TeamID), 10)
	dst = strconv.AppendUint(append(dst, `,"signal_source":`...), uint64(r.SignalSource), 10)
	dst = appendString(append(dst, `,"observation_point":`...), r.ObservationPoint)
	dst = strconv.AppendUint(append(dst, `,"l7_protocol":`...), uint64(r.L7Protocol), 10)
	dst = appendString(append(dst, `,"l7_protocol_str":`...), r.L7ProtocolStr)
	dst = appendString(append(dst, `,"version":`...), r.Version)
	dst = strconv.AppendUint(append(dst, `,"type":`...), uint64(r.Type), 10)
	dst = strconv.AppendBool(append(dst, `,"is_tls":`...), r.IsTLS)
	dst = appendString(append(dst, `,"request_type":`...), r.RequestType)
	dst = appendString(append(dst, `,"request_domain":`...), r.RequestDomain)
	dst = appendString(append(dst, `,"request_resource":`...), r.RequestResource)
	dst = appendString(append(dst, `,"endpoint":`...), r.Endpoint)
	dst = append(dst, `,"request_id":`...)
	if r.RequestID == nil {
		dst = append(dst, "null"...)
	} else {
		dst = strconv.AppendUint(dst, *r.RequestID, 10)
	}
	dst = strconv.AppendUint(append(dst, `,"response_status":`...), uint64(r.ResponseStatus), 10)
	dst = append(dst, `,"response_code":`...)
	if r.ResponseCode == nil {
		dst = append(dst, "null"...)
	} else {
		dst = strconv.AppendInt(dst, int64(*r.ResponseCode), 10)
	}
	dst = appendString(append(dst, `,"response_exception":`...), r.ResponseException)
	dst = appendString(append(dst, `,"response_result":`...), r.ResponseResult)
	dst = strconv.AppendInt(append(dst, `,"request_length":`...), r.RequestLength, 10)
	dst = strconv.AppendInt(append(dst, `,"response_length":`...), r.ResponseLength, 10)
	dst = strconv.AppendUint(append(dst, `,"captured_request_byte":`...), uint64(r.CapturedRequestByte), 10)
	dst = strconv.AppendUint(append(dst, `,"captured_response_byte":`...), uint64(r.CapturedResponseByte), 10)
	dst = append(dst, `,"sql_affected_rows":`...)
	if r.SQLAffectedRows == nil {
		dst = append(dst, "null"...)
	} else {
		dst = strconv.AppendUint(dst, *r.SQLAffectedRows, 10)
	}
	dst = appendString(append(dst, `,"trace_id":`...), r.TraceID)
	dst = appendString(append(dst, `,"span_id":`...), r.SpanID)
	dst = appendString(append(dst, `,"parent_span_id":`...), r.ParentSpanID)
	dst = appendString(append(dst, `,"x_request_id_0":`...), r.XRequestID0)
	dst = appendString(append(dst, `,"x_request_id_1":`...), r.XRequestID1)
	dst = strconv.AppendUint(append(dst, `,"syscall_trace_id_request":`...), r.SyscallTraceIDRequest, 10)
	dst = strconv.AppendUint(append(dst, `,"syscall_trace_id_response":`...), r.SyscallTraceIDResponse, 10)
	dst = strconv.AppendUint(append(dst, `,"syscall_thread_0":`...), uint64(r.SyscallThread0), 10)
	dst = strconv.AppendUint(append(dst, `,"syscall_thread_1":`...), uint64(r.SyscallThread1), 10)
	dst = strconv.AppendUint(append(dst, `,"syscall_coroutine_0":`...), r.SyscallCoroutine0, 10)
	dst = strconv.AppendUint(append(dst, `,"syscall_coroutine_1":`...), r.SyscallCoroutine1, 10)
	dst = strconv.AppendUint(append(dst, `,"syscall_cap_seq_0":`...), uint64(r.SyscallCapSeq0), 10)
	dst = strconv.AppendUint(append(dst, `,"syscall_cap_seq_1":`...), uint64(r.SyscallCapSeq1), 10)
	dst = strconv.AppendUint(append(dst, `,"req_tcp_seq":`...), uint64(r.ReqTCPSeq), 10)
	dst = strconv.AppendUint(append(dst, `,"resp_tcp_seq":`...), uint64(r.RespTCPSeq), 10)
	dst = append(dst, `,"ip_0":"`...)
	if r.IP0.IsValid() {
		dst = r.IP0.AppendTo(dst)
	}
	dst = append(dst, `","ip_1":"`...)
	if r.IP1.IsValid() {
		dst = r.IP1.AppendTo(dst)
	}
	dst = strconv.AppendUint(append(dst, `","client_port":`...), uint64(r.ClientPort), 10)
	dst = strconv.AppendUint(append(dst, `,"server_port":`...), uint64(r.ServerPort), 10)
	dst = strconv.AppendUint(append(dst, `,"protocol":`...), uint64(r.Protocol), 10)
	dst = strconv.AppendUint(append(dst, `,"process_id_0":`...), uint64(r.ProcessID0), 10)
	dst = strconv.AppendUint(append(dst, `,"process_id_1":`...), uint64(r.ProcessID1), 10)
	dst = appendString(append(dst, `,"process_kname_0":`...), r.ProcessKName0)
	dst = appendString(append(dst, `,"process_kname_1":`...), r.ProcessKName1)
	dst = appendString(append(dst, `,"container_id_0":`...), r.ContainerID0)
	dst = appendString(append(dst, `,"container_id_1":`...), r.ContainerID1)
	dst = append(dst, `,"attributes":`...)
	dst = appendAttributes(dst, r.Attributes)
	return append(dst, '}')
}

func appendTime(dst []byte, t time.Time) []byte {
	dst = append(dst, '"')
	dst = t.AppendFormat(dst, time.RFC3339Nano)
	return append(dst, '"')
}

func appendAttributes(dst []byte, m map[string]string) []byte {
	if m == nil {
		return append(dst, "null"...)
	}
	// Sorted keys, as encoding/json writes maps. A few keys: a small
	// stack array avoids an allocation per row.
	var buf [16]string
	keys := buf[:0]
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	dst = append(dst, '{')
	for i, k := range keys {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendString(dst, k)
		dst = append(dst, ':')
		dst = appendString(dst, m[k])
	}
	return append(dst, '}')
}

const hexDigits = "0123456789abcdef"

// appendString writes s as a JSON string with encoding/json's escaping
// (HTML escaping off): invalid UTF-8 becomes U+FFFD, U+2028 and U+2029 are
// escaped for JavaScript.
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		b := s[i]
		if b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '"', '\\':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xf])
			}
			i++
			start = i
			continue
		}
		c, size := utf8.DecodeRuneInString(s[i:])
		if c == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if c == '\u2028' || c == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[c&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
