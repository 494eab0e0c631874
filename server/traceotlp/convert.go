// Package traceotlp turns assembled Sightline traces (server/trace) into OTLP
// trace data, and exports them continuously to an OTLP/HTTP endpoint.
//
// Every trace.Span becomes one OTLP span carrying the same trace id, so a trace
// assembled from eBPF, network and application rows stays one coherent trace
// in any OTLP backend. The span id of a span is the big-endian 8-byte form of
// its l7_flow_log row _id (unique per row), and its parent span id the parent
// row's _id; the ids the row carried itself (traceparent etc.) are kept as
// sightline.original_* attributes when they differ.
//
// Traces that carry a W3C/B3 trace id keep it. Traces without one (eBPF-only)
// get a synthetic id: "SLTR" followed by four zero bytes and the big-endian
// _id of the trace's first root, which SyntheticRowID maps back to a row.
//
// Exporter sends traces continuously to an OTLP/HTTP endpoint: each round it
// scans the rows past its _id watermark (portable SQL through store.Query),
// waits until a row's end is older than Delay so its trace is complete,
// assembles the trace around each row not yet exported (trace.Assemble),
// converts it with TraceIDFor and POSTs the round's traces as gzip protobuf,
// split at MaxRequestBytes, with at most MaxAttempts tries per request. A
// bounded FIFO set of exported row ids keeps a span from being sent twice;
// a span that joins an already exported trace later is sent alone, with the
// same trace id when the trace has a real one.
package traceotlp

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/sightline-io/sightline/flowlog"
	"github.com/sightline-io/sightline/server/trace"
)

// syntheticPrefix is the first half of a synthetic trace id ("SLTR" + 4 zero bytes).
var syntheticPrefix = [8]byte{0x53, 0x4c, 0x54, 0x52, 0, 0, 0, 0}

// ErrBadTraceID is returned by ParseTraceID for an unusable trace id.
var ErrBadTraceID = errors.New("traceotlp: bad trace id")

// Attribute names written on spans and resources. Standard ones follow the
// current OpenTelemetry semantic conventions; the rest are Sightline's own.
const (
	AttrServiceName      = "service.name"
	AttrHostName         = "host.name"
	AttrAgentID          = "sightline.agent_id"
	AttrObservationPoint = "sightline.observation_point"
	AttrRowID            = "sightline.row_id"
	AttrLink             = "sightline.link"
	AttrParentLink       = "sightline.parent_link"
	AttrSelfTimeUS       = "sightline.self_time_us"
	AttrL7Protocol       = "sightline.l7_protocol"
	AttrOriginalTraceID  = "sightline.original_trace_id"
	AttrOriginalSpanID   = "sightline.original_span_id"
	AttrOriginalParentID = "sightline.original_parent_span_id"
	AttrXRequestID       = "sightline.x_request_id"
)

// TraceIDFor returns the OTLP trace id of t: its own trace id when that is 32
// (or 16, left-padded) hex digits and not all zero, otherwise a synthetic id
// built from the first root's _id (or the smallest span _id without roots).
func TraceIDFor(t *trace.Trace) pcommon.TraceID {
	if t == nil {
		return SyntheticTraceID(0)
	}
	if len(t.TraceID) == 32 || len(t.TraceID) == 16 {
		if id, err := ParseTraceID(t.TraceID); err == nil {
			return id
		}
	}
	var rowID uint64
	if len(t.Roots) > 0 {
		rowID = t.Roots[0]
	} else {
		for i := range t.Spans {
			if id := t.Spans[i].ID; rowID == 0 || (id != 0 && id < rowID) {
				rowID = id
			}
		}
	}
	return SyntheticTraceID(rowID)
}

// SyntheticTraceID is the synthetic trace id of a trace rooted at row rowID.
func SyntheticTraceID(rowID uint64) pcommon.TraceID {
	var id pcommon.TraceID
	copy(id[:8], syntheticPrefix[:])
	binary.BigEndian.PutUint64(id[8:], rowID)
	return id
}

// SyntheticRowID is the inverse of the synthetic id: the root row _id, with ok
// only when id has the synthetic prefix and a non-zero row id.
func SyntheticRowID(id pcommon.TraceID) (rowID uint64, ok bool) {
	if [8]byte(id[:8]) != syntheticPrefix {
		return 0, false
	}
	rowID = binary.BigEndian.Uint64(id[8:])
	return rowID, rowID != 0
}

// ParseTraceID parses 1-32 hex digits (either case), left-padded with zeros as
// Tempo accepts them. An empty, over-long, non-hex or all-zero id is an error
// wrapping ErrBadTraceID.
func ParseTraceID(s string) (pcommon.TraceID, error) {
	var id pcommon.TraceID
	if s == "" || len(s) > 32 {
		return id, fmt.Errorf("%w: %q must be 1-32 hex digits", ErrBadTraceID, truncate(s, 64))
	}
	padded := strings.Repeat("0", 32-len(s)) + s
	if _, err := hex.Decode(id[:], []byte(padded)); err != nil {
		return pcommon.TraceID{}, fmt.Errorf("%w: %q is not hex: %w", ErrBadTraceID, truncate(s, 64), err)
	}
	if id.IsEmpty() {
		return id, fmt.Errorf("%w: all-zero trace id", ErrBadTraceID)
	}
	return id, nil
}

// SpanIDFor is the OTLP span id of row _id rowID (zero → empty span id).
func SpanIDFor(rowID uint64) pcommon.SpanID {
	var id pcommon.SpanID
	binary.BigEndian.PutUint64(id[:], rowID)
	return id
}

// ServiceName is the service a span belongs to: the client process for
// client-side observation points, the server process for server-side ones;
// without a process name the address ("ip:port" on the server side, the client
// ip on the client side: its port is ephemeral), then "unknown".
func ServiceName(s *trace.Span) string {
	client := isClientSide(s.ObservationPoint)
	name, ip, port := s.ProcessKName1, s.IP1, s.ServerPort
	if client {
		name, ip, port = s.ProcessKName0, s.IP0, 0
	}
	if name == "" && !client && !isServerSide(s.ObservationPoint) {
		// local / rest / app: whichever process is known.
		name = s.ProcessKName0
		if name == "" {
			name = s.ProcessKName1
		}
	}
	switch {
	case name != "":
		return name
	case ip != "" && port != 0:
		return net.JoinHostPort(ip, strconv.Itoa(int(port)))
	case ip != "":
		return ip
	}
	return "unknown"
}

func isClientSide(obs string) bool {
	return obs == "c-p" || obs == "c" || obs == "c-nd" || obs == "c-app"
}

func isServerSide(obs string) bool {
	return obs == "s-p" || obs == "s" || obs == "s-nd" || obs == "s-app"
}

// SpanKind maps an observation point to an OTLP span kind.
func SpanKind(obs string) ptrace.SpanKind {
	switch {
	case isClientSide(obs):
		return ptrace.SpanKindClient
	case isServerSide(obs):
		return ptrace.SpanKindServer
	}
	return ptrace.SpanKindInternal
}

// SpanName is the endpoint, else "request_type request_resource", else the
// L7 protocol name.
func SpanName(s *trace.Span) string {
	if s.Endpoint != "" {
		return s.Endpoint
	}
	if n := strings.TrimSpace(s.RequestType + " " + s.RequestResource); n != "" {
		return n
	}
	if s.L7ProtocolStr != "" {
		return s.L7ProtocolStr
	}
	return flowlog.L7Protocol(s.L7Protocol).String()
}

type resourceKey struct{ service, host, agent string }

// Convert turns t into OTLP traces: one ResourceSpans per (service, host,
// agent), every span with trace id id.
func Convert(t *trace.Trace, id pcommon.TraceID) ptrace.Traces {
	out := ptrace.NewTraces()
	if t == nil {
		return out
	}
	AppendTo(out, t, id)
	return out
}

// AppendTo appends the spans of t to out, as Convert does.
func AppendTo(out ptrace.Traces, t *trace.Trace, id pcommon.TraceID) {
	groups := make(map[resourceKey]ptrace.SpanSlice)
	hexID := hex.EncodeToString(id[:])
	for i := range t.Spans {
		s := &t.Spans[i]
		key := resourceKey{ServiceName(s), s.Host, s.AgentID}
		spans, ok := groups[key]
		if !ok {
			rs := out.ResourceSpans().AppendEmpty()
			attrs := rs.Resource().Attributes()
			attrs.PutStr(AttrServiceName, key.service)
			if key.host != "" {
				attrs.PutStr(AttrHostName, key.host)
			}
			if key.agent != "" {
				attrs.PutStr(AttrAgentID, key.agent)
			}
			ss := rs.ScopeSpans().AppendEmpty()
			ss.Scope().SetName("sightline")
			spans = ss.Spans()
			groups[key] = spans
		}
		fillSpan(spans.AppendEmpty(), s, id, hexID)
	}
}

func fillSpan(sp ptrace.Span, s *trace.Span, id pcommon.TraceID, hexID string) {
	sp.SetTraceID(id)
	sp.SetSpanID(SpanIDFor(s.ID))
	if s.ParentID != 0 {
		sp.SetParentSpanID(SpanIDFor(s.ParentID))
	}
	sp.SetName(SpanName(s))
	sp.SetKind(SpanKind(s.ObservationPoint))
	start, end := s.StartTime, s.EndTime
	if end.Before(start) || end.IsZero() {
		end = start.Add(time.Duration(min(s.DurationUS, uint64(1<<62)/1000)) * time.Microsecond)
	}
	sp.SetStartTimestamp(pcommon.NewTimestampFromTime(start))
	sp.SetEndTimestamp(pcommon.NewTimestampFromTime(end))

	switch flowlog.ResponseStatus(s.ResponseStatus) {
	case flowlog.StatusClientError, flowlog.StatusServerError:
		sp.Status().SetCode(ptrace.StatusCodeError)
		sp.Status().SetMessage(s.ResponseException)
	case flowlog.StatusTimeout:
		sp.Status().SetCode(ptrace.StatusCodeError)
		sp.Status().SetMessage(firstNonEmpty(s.ResponseException, "timeout"))
	}

	a := sp.Attributes()
	a.PutStr(AttrObservationPoint, s.ObservationPoint)
	a.PutInt(AttrRowID, int64(s.ID))
	if s.Link != "" {
		a.PutStr(AttrLink, string(s.Link))
	}
	if s.ParentLink != "" {
		a.PutStr(AttrParentLink, string(s.ParentLink))
	}
	a.PutInt(AttrSelfTimeUS, int64(min(s.SelfTimeUS, 1<<62)))
	if p := firstNonEmpty(s.L7ProtocolStr, flowlog.L7Protocol(s.L7Protocol).String()); p != "" {
		a.PutStr(AttrL7Protocol, p)
	}
	putAddrs(a, s)
	putProtocol(a, s)

	if s.TraceID != "" && !strings.EqualFold(s.TraceID, hexID) {
		a.PutStr(AttrOriginalTraceID, s.TraceID)
	}
	own := SpanIDFor(s.ID)
	if s.SpanID != "" && !strings.EqualFold(s.SpanID, hex.EncodeToString(own[:])) {
		a.PutStr(AttrOriginalSpanID, s.SpanID)
	}
	if s.ParentSpanID != "" {
		parent := SpanIDFor(s.ParentID)
		if s.ParentID == 0 || !strings.EqualFold(s.ParentSpanID, hex.EncodeToString(parent[:])) {
			a.PutStr(AttrOriginalParentID, s.ParentSpanID)
		}
	}
	if x := firstNonEmpty(s.XRequestID0, s.XRequestID1); x != "" {
		a.PutStr(AttrXRequestID, x)
	}
}

func putAddrs(a pcommon.Map, s *trace.Span) {
	if s.IP1 != "" {
		a.PutStr("server.address", s.IP1)
	}
	if s.ServerPort != 0 {
		a.PutInt("server.port", int64(s.ServerPort))
	}
	if s.IP0 != "" {
		a.PutStr("client.address", s.IP0)
	}
	if s.ClientPort != 0 {
		a.PutInt("client.port", int64(s.ClientPort))
	}
	switch s.Protocol {
	case 6:
		a.PutStr("network.transport", "tcp")
	case 17:
		a.PutStr("network.transport", "udp")
	}
	if s.RequestDomain != "" {
		// The Host header / authority: the logical server name.
		a.PutStr("sightline.request_domain", s.RequestDomain)
	}
}

// putProtocol writes the protocol-specific semantic-convention attributes.
func putProtocol(a pcommon.Map, s *trace.Span) {
	switch flowlog.L7Protocol(s.L7Protocol) {
	case flowlog.L7HTTP1, flowlog.L7HTTP2:
		if s.RequestType != "" {
			a.PutStr("http.request.method", s.RequestType)
		}
		if s.RequestResource != "" {
			path, query, hasQuery := strings.Cut(s.RequestResource, "?")
			a.PutStr("url.path", path)
			if hasQuery {
				a.PutStr("url.query", query)
			}
		}
		if s.ResponseCode != nil {
			a.PutInt("http.response.status_code", *s.ResponseCode)
		}
		if flowlog.L7Protocol(s.L7Protocol) == flowlog.L7HTTP2 {
			a.PutStr("network.protocol.name", "http")
			a.PutStr("network.protocol.version", "2")
		}
	case flowlog.L7GRPC:
		a.PutStr("rpc.system", "grpc")
		if svc, method, ok := splitGRPC(firstNonEmpty(s.Endpoint, s.RequestResource)); ok {
			a.PutStr("rpc.service", svc)
			a.PutStr("rpc.method", method)
		}
		if s.ResponseCode != nil {
			a.PutInt("rpc.grpc.status_code", *s.ResponseCode)
		}
	case flowlog.L7Dubbo:
		a.PutStr("rpc.system", "apache_dubbo")
	case flowlog.L7MySQL, flowlog.L7Postgres, flowlog.L7Redis, flowlog.L7MongoDB, flowlog.L7Memcached:
		sys := dbSystem(flowlog.L7Protocol(s.L7Protocol))
		// db.system.name is current; db.system is kept for backends that
		// still key on the older name.
		a.PutStr("db.system.name", sys)
		a.PutStr("db.system", sys)
		if s.RequestType != "" {
			a.PutStr("db.operation.name", s.RequestType)
		}
		if s.RequestResource != "" && flowlog.L7Protocol(s.L7Protocol) != flowlog.L7Redis {
			a.PutStr("db.query.text", truncate(s.RequestResource, 4096))
		}
	case flowlog.L7Kafka, flowlog.L7MQTT, flowlog.L7AMQP, flowlog.L7NATS, flowlog.L7Pulsar, flowlog.L7RocketMQ:
		a.PutStr("messaging.system", strings.ToLower(flowlog.L7Protocol(s.L7Protocol).String()))
		if s.RequestType != "" {
			a.PutStr("messaging.operation.name", s.RequestType)
		}
	case flowlog.L7DNS:
		if s.RequestResource != "" {
			a.PutStr("dns.question.name", s.RequestResource)
		}
	}
}

func dbSystem(p flowlog.L7Protocol) string {
	switch p {
	case flowlog.L7MySQL:
		return "mysql"
	case flowlog.L7Postgres:
		return "postgresql"
	case flowlog.L7Redis:
		return "redis"
	case flowlog.L7MongoDB:
		return "mongodb"
	case flowlog.L7Memcached:
		return "memcached"
	}
	return "other_sql"
}

// splitGRPC splits "/pkg.Service/Method" into service and method.
func splitGRPC(path string) (svc, method string, ok bool) {
	p := strings.TrimPrefix(path, "/")
	svc, method, ok = strings.Cut(p, "/")
	if !ok || svc == "" || method == "" || strings.Contains(method, "/") {
		return "", "", false
	}
	return svc, method, true
}

func firstNonEmpty(xs ...string) string {
	for _, x := range xs {
		if x != "" {
			return x
		}
	}
	return ""
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
