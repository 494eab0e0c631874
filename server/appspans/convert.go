// Package appspans receives application tracing spans (OpenTelemetry OTLP over
// HTTP and gRPC, Zipkin v2 JSON) and stores them as l7_flow_log rows, so that
// spans emitted by instrumented code join the eBPF and network spans of the
// same request by trace id and span id.
//
// # Endpoints
//
// Receiver.Handler serves POST /v1/traces (OTLP/HTTP, application/x-protobuf
// or application/json, answered with an ExportTraceServiceResponse in the
// same encoding), POST /api/v2/spans (Zipkin v2 JSON array, 202) and POST
// /v3/segments or /v3/segment (SkyWalking v3 segments as JSON, see
// skywalking.go). Bodies may be gzip-encoded; a body (compressed or not)
// over Options.MaxBodyBytes is 413, a malformed one 400, a method other than
// POST 405 and another Content-Type or Content-Encoding 415; a failing sink
// is 503 (OTLP errors carry a google.rpc.Status in the request's encoding).
// Receiver.RegisterGRPC adds the OTLP TraceService to a *grpc.Server; a
// failing sink is codes.Unavailable there. Stats and the
// sightline_appspans_spans_total{receiver,outcome} counter count received,
// converted (stored) and rejected spans.
//
// # Conversion
//
// Every span becomes exactly one row (type = 2, session) with
// signal_source = 4 (OTel). Zipkin spans are first converted to OpenTelemetry
// spans (localEndpoint → network.local.*, remoteEndpoint → network.peer.* and
// peer.service, tag "error" → status ERROR) and then follow the same rules.
//
//   - observation_point from the span kind: SERVER and CONSUMER → "s-app",
//     CLIENT and PRODUCER → "c-app", INTERNAL and unspecified → "app".
//   - trace_id, span_id, parent_span_id: lower-case hex (32, 16, 16 chars);
//     empty when the id is all zero. Zipkin 64-bit trace ids are left-padded.
//   - time and start_time = span start, end_time = span end,
//     response_duration = end − start in µs (0 when end precedes start).
//   - l7_protocol and request fields from semantic conventions, first match:
//     HTTP (http.request.method / http.method): l7_protocol HTTP (20), or
//     HTTP2 (21) when network.protocol.version (or http.flavor) is 2;
//     request_type = method, request_resource = url.path / http.target /
//     http.path / http.route, request_domain = server.address / http.host /
//     url.full host, response_code = http.response.status_code /
//     http.status_code, endpoint = http.route (else the span name).
//     RPC (rpc.system): grpc → gRPC (41), apache_dubbo → Dubbo (40), other
//     systems 0; request_type = rpc.method, request_resource and endpoint =
//     rpc.service/rpc.method, response_code = rpc.grpc.status_code.
//     DB (db.system / db.system.name): redis, mysql, postgresql, mongodb,
//     memcached → their l7_protocol; request_type = db.operation(.name) or the
//     statement's first word upper-cased; request_resource = db.statement /
//     db.query.text / sql.query (Brave) truncated to 1 KiB (not masked); request_domain = db.name /
//     db.namespace; endpoint = the span name.
//     Messaging (messaging.system): kafka, rabbitmq (AMQP), mqtt, nats,
//     pulsar, rocketmq → their l7_protocol; request_type = messaging.operation
//     (.type / .name), request_resource and endpoint = the destination name.
//     Otherwise l7_protocol 0 and request_type = endpoint = the span name.
//   - response_status: span status ERROR → server error (3), or client error
//     (4) when an HTTP 4xx code (or a gRPC client-side code) says so; OK and
//     unset → success (0) unless the HTTP code is ≥ 500 (3) or ≥ 400 (4).
//     response_exception = the status message, else the first exception
//     event's exception.type: exception.message.
//   - resource service.name → process_kname_0 for CLIENT/PRODUCER/INTERNAL
//     spans, process_kname_1 for SERVER/CONSUMER spans, and
//     attributes["service.name"]; peer.service → process_kname_1 of client
//     spans. host.name → host.
//   - ip_0/client_port is the client side, ip_1/server_port the server side:
//     for client kinds the server is server.address / network.peer.address /
//     net.peer.ip / net.sock.peer.addr / net.peer.name and the client is
//     network.local.address / net.host.ip / net.sock.host.addr; for server
//     kinds the client is client.address / network.peer.address /
//     net.sock.peer.addr / net.peer.ip and the server is
//     network.local.address / net.host.ip / net.sock.host.addr /
//     server.address. Addresses are used only when they are IP literals;
//     ports (*.port) are used whenever they are valid. network.transport
//     tcp/udp → protocol 6/17.
//   - attributes: service.name, then span attributes not consumed above, in
//     the span's order, at most 32 keys, values truncated to 256 bytes; the
//     value of a key that looks like a secret (password, secret, token,
//     authorization, cookie, api key) is replaced by "***".
package appspans

import (
	"net/netip"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/sightline-io/sightline/flowlog"
)

// Observation points of application spans.
const (
	ObsClientApp = "c-app"
	ObsServerApp = "s-app"
	ObsApp       = "app"
)

// Bounds of the converted row.
const (
	MaxAttributes     = 32
	MaxAttributeValue = 256
	MaxStatement      = 1024
	maxField          = 1024
	maskedValue       = "***"
)

// ConvertTraces turns every span of td into one l7_flow_log row.
func ConvertTraces(td ptrace.Traces) []flowlog.L7FlowLog {
	rows := make([]flowlog.L7FlowLog, 0, td.SpanCount())
	rss := td.ResourceSpans()
	for i := 0; i < rss.Len(); i++ {
		rs := rss.At(i)
		res := rs.Resource().Attributes()
		service := attrString(res, "service.name")
		host := attrString(res, "host.name")
		sss := rs.ScopeSpans()
		for j := 0; j < sss.Len(); j++ {
			spans := sss.At(j).Spans()
			for k := 0; k < spans.Len(); k++ {
				rows = append(rows, convertSpan(spans.At(k), service, host))
			}
		}
	}
	return rows
}

// spanAttrs reads span attributes and remembers which ones became columns.
type spanAttrs struct {
	m    pcommon.Map
	used map[string]bool
}

// get returns the first present, non-empty attribute among keys as a string.
func (a *spanAttrs) get(keys ...string) string {
	for _, k := range keys {
		if v, ok := a.m.Get(k); ok {
			if s := v.AsString(); s != "" {
				a.used[k] = true
				return s
			}
		}
	}
	return ""
}

// int returns the first attribute among keys that parses as an integer.
func (a *spanAttrs) int(keys ...string) (int64, bool) {
	for _, k := range keys {
		v, ok := a.m.Get(k)
		if !ok {
			continue
		}
		switch v.Type() {
		case pcommon.ValueTypeInt:
			a.used[k] = true
			return v.Int(), true
		case pcommon.ValueTypeDouble:
			a.used[k] = true
			return int64(v.Double()), true
		case pcommon.ValueTypeStr:
			if n, err := strconv.ParseInt(strings.TrimSpace(v.Str()), 10, 64); err == nil {
				a.used[k] = true
				return n, true
			}
		}
	}
	return 0, false
}

// addr returns the first attribute among keys that is an IP literal.
func (a *spanAttrs) addr(keys ...string) netip.Addr {
	for _, k := range keys {
		v, ok := a.m.Get(k)
		if !ok || v.Type() != pcommon.ValueTypeStr {
			continue
		}
		if ip, err := netip.ParseAddr(strings.Trim(v.Str(), "[]")); err == nil {
			a.used[k] = true
			return ip.Unmap()
		}
	}
	return netip.Addr{}
}

func (a *spanAttrs) port(keys ...string) uint16 {
	for _, k := range keys {
		if n, ok := a.int(k); ok && n > 0 && n <= 65535 {
			return uint16(n)
		}
	}
	return 0
}

func convertSpan(sp ptrace.Span, service, host string) flowlog.L7FlowLog {
	a := &spanAttrs{m: sp.Attributes(), used: make(map[string]bool)}
	start, end := sp.StartTimestamp().AsTime().UTC(), sp.EndTimestamp().AsTime().UTC()
	row := flowlog.L7FlowLog{
		Time: start, StartTime: start, EndTime: end,
		Host:         truncate(host, maxField),
		SignalSource: flowlog.SourceOTel,
		Type:         flowlog.TypeSession,
		TraceID:      hexID(sp.TraceID().IsEmpty(), sp.TraceID().String()),
		SpanID:       hexID(sp.SpanID().IsEmpty(), sp.SpanID().String()),
		ParentSpanID: hexID(sp.ParentSpanID().IsEmpty(), sp.ParentSpanID().String()),
	}
	if end.After(start) {
		row.ResponseDuration = uint64(end.Sub(start) / time.Microsecond)
	}
	name := truncate(sp.Name(), maxField)
	client, server := false, false
	switch sp.Kind() {
	case ptrace.SpanKindServer, ptrace.SpanKindConsumer:
		row.ObservationPoint, server = ObsServerApp, true
		row.ProcessKName1 = truncate(service, maxField)
	case ptrace.SpanKindClient, ptrace.SpanKindProducer:
		row.ObservationPoint, client = ObsClientApp, true
		row.ProcessKName0 = truncate(service, maxField)
		row.ProcessKName1 = truncate(a.get("peer.service"), maxField)
	default:
		row.ObservationPoint = ObsApp
		row.ProcessKName0 = truncate(service, maxField)
	}

	httpCode, hasHTTPCode := classify(&row, a, name)
	setAddresses(&row, a, client, server)
	setStatus(&row, sp, a, httpCode, hasHTTPCode)
	row.L7ProtocolStr = row.L7Protocol.String()
	row.Attributes = buildAttributes(service, a)
	return row
}

// classify fills l7_protocol and the request fields; it returns the HTTP
// status code when the span carries one.
func classify(row *flowlog.L7FlowLog, a *spanAttrs, name string) (int64, bool) {
	row.Endpoint = name
	if method := a.get("http.request.method", "http.method"); method != "" {
		row.L7Protocol = flowlog.L7HTTP1
		row.Version = a.get("network.protocol.version", "http.flavor")
		if row.Version == "2" || row.Version == "2.0" {
			row.L7Protocol = flowlog.L7HTTP2
		}
		row.RequestType = truncate(method, maxField)
		path := a.get("url.path", "http.target", "http.path")
		if path == "" {
			path = urlPath(a.get("url.full", "http.url"))
		}
		route := a.get("http.route")
		if path == "" {
			path = route
		}
		row.RequestResource = truncate(path, maxField)
		domain := a.get("server.address", "http.host", "net.host.name")
		if domain == "" {
			domain = urlHost(a.get("url.full", "http.url"))
		}
		row.RequestDomain = truncate(domain, maxField)
		if route != "" {
			row.Endpoint = truncate(route, maxField)
		}
		code, ok := a.int("http.response.status_code", "http.status_code")
		if ok {
			c := int32(code)
			row.ResponseCode = &c
		}
		return code, ok
	}
	if sys := a.get("rpc.system"); sys != "" {
		switch strings.ToLower(sys) {
		case "grpc":
			row.L7Protocol = flowlog.L7GRPC
		case "apache_dubbo", "dubbo":
			row.L7Protocol = flowlog.L7Dubbo
		}
		svc, method := a.get("rpc.service"), a.get("rpc.method")
		row.RequestType = truncate(method, maxField)
		if svc != "" || method != "" {
			row.RequestResource = truncate(svc+"/"+method, maxField)
			row.Endpoint = row.RequestResource
		}
		row.RequestDomain = truncate(a.get("server.address", "net.peer.name"), maxField)
		if code, ok := a.int("rpc.grpc.status_code", "rpc.response.status_code"); ok {
			c := int32(code)
			row.ResponseCode = &c
		}
		return 0, false
	}
	if sys := a.get("db.system", "db.system.name"); sys != "" {
		switch strings.ToLower(sys) {
		case "redis":
			row.L7Protocol = flowlog.L7Redis
		case "mysql", "mariadb":
			row.L7Protocol = flowlog.L7MySQL
		case "postgresql":
			row.L7Protocol = flowlog.L7Postgres
		case "mongodb":
			row.L7Protocol = flowlog.L7MongoDB
		case "memcached":
			row.L7Protocol = flowlog.L7Memcached
		}
		stmt := a.get("db.statement", "db.query.text", "sql.query")
		op := a.get("db.operation", "db.operation.name")
		if op == "" {
			if f := strings.Fields(stmt); len(f) > 0 {
				op = strings.ToUpper(f[0])
			}
		}
		row.RequestType = truncate(op, maxField)
		row.RequestResource = truncate(stmt, MaxStatement)
		row.RequestDomain = truncate(a.get("db.name", "db.namespace"), maxField)
		return 0, false
	}
	if sys := a.get("messaging.system"); sys != "" {
		switch strings.ToLower(sys) {
		case "kafka":
			row.L7Protocol = flowlog.L7Kafka
		case "rabbitmq", "amqp":
			row.L7Protocol = flowlog.L7AMQP
		case "mqtt":
			row.L7Protocol = flowlog.L7MQTT
		case "nats":
			row.L7Protocol = flowlog.L7NATS
		case "pulsar":
			row.L7Protocol = flowlog.L7Pulsar
		case "rocketmq":
			row.L7Protocol = flowlog.L7RocketMQ
		}
		row.RequestType = truncate(a.get("messaging.operation.type", "messaging.operation", "messaging.operation.name"), maxField)
		dest := a.get("messaging.destination.name", "messaging.destination")
		row.RequestResource = truncate(dest, maxField)
		if dest != "" {
			row.Endpoint = row.RequestResource
		}
		row.RequestDomain = truncate(a.get("server.address", "net.peer.name"), maxField)
		return 0, false
	}
	row.RequestType = name
	return 0, false
}

// isGRPCClientCode reports gRPC status codes caused by the caller
// (INVALID_ARGUMENT, NOT_FOUND, ALREADY_EXISTS, PERMISSION_DENIED,
// FAILED_PRECONDITION, OUT_OF_RANGE, UNAUTHENTICATED).
func isGRPCClientCode(c int32) bool {
	switch c {
	case 3, 5, 6, 7, 9, 11, 16:
		return true
	}
	return false
}

func setStatus(row *flowlog.L7FlowLog, sp ptrace.Span, a *spanAttrs, httpCode int64, hasHTTPCode bool) {
	st := sp.Status()
	switch {
	case st.Code() == ptrace.StatusCodeError:
		row.ResponseStatus = flowlog.StatusServerError
		if hasHTTPCode && httpCode >= 400 && httpCode < 500 {
			row.ResponseStatus = flowlog.StatusClientError
		}
		if row.L7Protocol == flowlog.L7GRPC && row.ResponseCode != nil && isGRPCClientCode(*row.ResponseCode) {
			row.ResponseStatus = flowlog.StatusClientError
		}
	case hasHTTPCode && httpCode >= 500:
		row.ResponseStatus = flowlog.StatusServerError
	case hasHTTPCode && httpCode >= 400:
		row.ResponseStatus = flowlog.StatusClientError
	default:
		row.ResponseStatus = flowlog.StatusSuccess
	}
	if row.ResponseStatus == flowlog.StatusSuccess {
		return
	}
	msg := st.Message()
	if msg == "" {
		evs := sp.Events()
		for i := 0; i < evs.Len(); i++ {
			if evs.At(i).Name() != "exception" {
				continue
			}
			ea := evs.At(i).Attributes()
			typ, m := attrString(ea, "exception.type"), attrString(ea, "exception.message")
			switch {
			case typ != "" && m != "":
				msg = typ + ": " + m
			default:
				msg = typ + m
			}
			break
		}
	}
	if msg == "" {
		msg = a.get("error.type")
	}
	row.ResponseException = truncate(msg, maxField)
}

func setAddresses(row *flowlog.L7FlowLog, a *spanAttrs, client, server bool) {
	switch {
	case client:
		row.IP1 = a.addr("server.address", "network.peer.address", "net.peer.ip", "net.sock.peer.addr", "net.peer.name")
		row.ServerPort = a.port("server.port", "network.peer.port", "net.peer.port", "net.sock.peer.port")
		row.IP0 = a.addr("network.local.address", "net.host.ip", "net.sock.host.addr")
		row.ClientPort = a.port("network.local.port", "net.sock.host.port")
	case server:
		row.IP0 = a.addr("client.address", "network.peer.address", "net.sock.peer.addr", "net.peer.ip")
		row.ClientPort = a.port("client.port", "network.peer.port", "net.sock.peer.port", "net.peer.port")
		row.IP1 = a.addr("network.local.address", "net.host.ip", "net.sock.host.addr", "server.address")
		row.ServerPort = a.port("network.local.port", "server.port", "net.host.port", "net.sock.host.port")
	}
	switch strings.ToLower(a.get("network.transport", "net.transport")) {
	case "tcp", "ip_tcp":
		row.Protocol = 6
	case "udp", "ip_udp":
		row.Protocol = 17
	}
}

func buildAttributes(service string, a *spanAttrs) map[string]string {
	out := make(map[string]string, min(a.m.Len()+1, MaxAttributes))
	if service != "" {
		out["service.name"] = truncate(service, MaxAttributeValue)
	}
	a.m.Range(func(k string, v pcommon.Value) bool {
		if len(out) >= MaxAttributes {
			return false
		}
		if a.used[k] || k == "" {
			return true
		}
		key := truncate(k, MaxAttributeValue)
		if _, dup := out[key]; dup {
			return true
		}
		val := maskedValue
		if !isSecretKey(k) {
			val = truncate(v.AsString(), MaxAttributeValue)
		}
		out[key] = val
		return true
	})
	if len(out) == 0 {
		return nil
	}
	return out
}

func isSecretKey(k string) bool {
	k = strings.ToLower(k)
	for _, w := range [...]string{"password", "passwd", "secret", "token", "authorization", "cookie", "api_key", "apikey", "api-key", "credential"} {
		if strings.Contains(k, w) {
			return true
		}
	}
	return false
}

func attrString(m pcommon.Map, key string) string {
	if v, ok := m.Get(key); ok {
		return v.AsString()
	}
	return ""
}

func hexID(empty bool, s string) string {
	if empty {
		return ""
	}
	return strings.ToLower(s)
}

// truncate cuts s to at most n bytes on a UTF-8 boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}

// urlPath returns the path and query of an absolute URL ("" if none).
func urlPath(u string) string {
	if i := strings.Index(u, "://"); i >= 0 {
		u = u[i+3:]
		if j := strings.IndexByte(u, '/'); j >= 0 {
			return u[j:]
		}
		return ""
	}
	return ""
}

// urlHost returns the host[:port] of an absolute URL ("" if none).
func urlHost(u string) string {
	i := strings.Index(u, "://")
	if i < 0 {
		return ""
	}
	u = u[i+3:]
	if j := strings.IndexAny(u, "/?#"); j >= 0 {
		u = u[:j]
	}
	if j := strings.LastIndexByte(u, '@'); j >= 0 {
		u = u[j+1:]
	}
	return u
}
