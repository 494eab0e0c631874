// Package flowlog defines Sightline's row contract: the columns of l7_flow_log
// (and later l4_flow_log) shared by the agent, the wire, the store and replay.
// Column names follow ../shared/reference/schema.md; a column may be added,
// a listed one is never renamed.
package flowlog

import (
	"net/netip"
	"time"
)

// L7Protocol is the numeric l7_protocol enum (DeepFlow-compatible values).
type L7Protocol uint8

const (
	L7Unknown L7Protocol = 0
	L7HTTP1   L7Protocol = 20
	L7HTTP2   L7Protocol = 21
	L7Dubbo   L7Protocol = 40
	L7GRPC    L7Protocol = 41
	// L7KRPC is DeepFlow's number for its ProtobufRPC family, whose member
	// is KRPC (47 is SOME/IP there, so it is not used).
	L7KRPC      L7Protocol = 42
	L7SofaRPC   L7Protocol = 43
	L7FastCGI   L7Protocol = 44
	L7BRPC      L7Protocol = 45
	L7Tars      L7Protocol = 46
	L7Triple    L7Protocol = 49
	L7MySQL     L7Protocol = 60
	L7Postgres  L7Protocol = 61
	L7Redis     L7Protocol = 80
	L7MongoDB   L7Protocol = 81
	L7Memcached L7Protocol = 82
	L7Kafka     L7Protocol = 100
	L7MQTT      L7Protocol = 101
	L7AMQP      L7Protocol = 102
	L7NATS      L7Protocol = 104
	L7Pulsar    L7Protocol = 105
	L7RocketMQ  L7Protocol = 107
	L7DNS       L7Protocol = 120
	L7TLS       L7Protocol = 121
	L7Custom    L7Protocol = 127
)

var l7ProtocolNames = map[L7Protocol]string{
	L7Unknown: "N/A", L7HTTP1: "HTTP", L7HTTP2: "HTTP2", L7Dubbo: "Dubbo", L7GRPC: "gRPC", L7KRPC: "KRPC",
	L7SofaRPC: "SofaRPC", L7FastCGI: "FastCGI", L7BRPC: "bRPC", L7Tars: "Tars", L7Triple: "Triple",
	L7MySQL: "MySQL", L7Postgres: "PostgreSQL", L7Redis: "Redis", L7MongoDB: "MongoDB",
	L7Memcached: "Memcached", L7Kafka: "Kafka", L7MQTT: "MQTT", L7AMQP: "AMQP", L7NATS: "NATS",
	L7Pulsar: "Pulsar", L7RocketMQ: "RocketMQ", L7DNS: "DNS", L7TLS: "TLS", L7Custom: "Custom",
}

// String returns the display name used in l7_protocol_str.
func (p L7Protocol) String() string {
	if s, ok := l7ProtocolNames[p]; ok {
		return s
	}
	return "N/A"
}

// L7ProtocolNames returns a copy of the enum's display names (for Enum() in the query layer).
func L7ProtocolNames() map[L7Protocol]string {
	m := make(map[L7Protocol]string, len(l7ProtocolNames))
	for k, v := range l7ProtocolNames {
		m[k] = v
	}
	return m
}

// ResponseStatus is the response_status enum.
type ResponseStatus uint8

const (
	StatusSuccess     ResponseStatus = 0
	StatusTimeout     ResponseStatus = 2
	StatusServerError ResponseStatus = 3
	StatusClientError ResponseStatus = 4
	StatusUnknown     ResponseStatus = 5
	StatusParseFailed ResponseStatus = 6
)

// RowType is the type column: which halves of a session the row holds.
type RowType uint8

const (
	TypeRequest  RowType = 0
	TypeResponse RowType = 1
	TypeSession  RowType = 2
)

// SignalSource is the signal_source column.
type SignalSource uint8

const (
	SourcePacket SignalSource = 0
	SourceEBPF   SignalSource = 3
	SourceOTel   SignalSource = 4
)

// Observation points (observation_point column).
const (
	ObsClientProcess = "c-p"
	ObsServerProcess = "s-p"
	ObsClientNIC     = "c"
	ObsServerNIC     = "s"
	ObsLocalNIC      = "local"
	ObsRestNIC       = "rest"
)

// L7FlowLog is one l7_flow_log row: a request/response session, or a lone
// request or response. JSON names are the contract's column names.
type L7FlowLog struct {
	ID        uint64    `json:"_id"`
	Time      time.Time `json:"time"`
	StartTime time.Time `json:"start_time"`
	EndTime   time.Time `json:"end_time"`
	// ResponseDuration is in microseconds.
	ResponseDuration uint64 `json:"response_duration"`

	AgentID string `json:"agent_id"`
	Host    string `json:"host"`
	OrgID   uint16 `json:"org_id"`
	TeamID  uint16 `json:"team_id"`

	SignalSource     SignalSource `json:"signal_source"`
	ObservationPoint string       `json:"observation_point"`

	L7Protocol    L7Protocol `json:"l7_protocol"`
	L7ProtocolStr string     `json:"l7_protocol_str"`
	Version       string     `json:"version"`
	Type          RowType    `json:"type"`
	IsTLS         bool       `json:"is_tls"`

	RequestType     string  `json:"request_type"`
	RequestDomain   string  `json:"request_domain"`
	RequestResource string  `json:"request_resource"`
	Endpoint        string  `json:"endpoint"`
	RequestID       *uint64 `json:"request_id"`

	ResponseStatus    ResponseStatus `json:"response_status"`
	ResponseCode      *int32         `json:"response_code"`
	ResponseException string         `json:"response_exception"`
	ResponseResult    string         `json:"response_result"`

	RequestLength        int64  `json:"request_length"`
	ResponseLength       int64  `json:"response_length"`
	CapturedRequestByte  uint32 `json:"captured_request_byte"`
	CapturedResponseByte uint32 `json:"captured_response_byte"`

	SQLAffectedRows *uint64 `json:"sql_affected_rows"`

	TraceID      string `json:"trace_id"`
	SpanID       string `json:"span_id"`
	ParentSpanID string `json:"parent_span_id"`
	XRequestID0  string `json:"x_request_id_0"`
	XRequestID1  string `json:"x_request_id_1"`

	SyscallTraceIDRequest  uint64 `json:"syscall_trace_id_request"`
	SyscallTraceIDResponse uint64 `json:"syscall_trace_id_response"`
	SyscallThread0         uint32 `json:"syscall_thread_0"`
	SyscallThread1         uint32 `json:"syscall_thread_1"`
	SyscallCoroutine0      uint64 `json:"syscall_coroutine_0"`
	SyscallCoroutine1      uint64 `json:"syscall_coroutine_1"`
	SyscallCapSeq0         uint32 `json:"syscall_cap_seq_0"`
	SyscallCapSeq1         uint32 `json:"syscall_cap_seq_1"`
	ReqTCPSeq              uint32 `json:"req_tcp_seq"`
	RespTCPSeq             uint32 `json:"resp_tcp_seq"`

	IP0        netip.Addr `json:"ip_0"`
	IP1        netip.Addr `json:"ip_1"`
	ClientPort uint16     `json:"client_port"`
	ServerPort uint16     `json:"server_port"`
	Protocol   uint8      `json:"protocol"`

	ProcessID0    uint32 `json:"process_id_0"`
	ProcessID1    uint32 `json:"process_id_1"`
	ProcessKName0 string `json:"process_kname_0"`
	ProcessKName1 string `json:"process_kname_1"`
	// Added columns (not in DeepFlow's list): container of the observed process.
	ContainerID0 string `json:"container_id_0"`
	ContainerID1 string `json:"container_id_1"`

	Attributes map[string]string `json:"attributes"`
}
