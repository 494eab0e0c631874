package appspans

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/sightline-io/sightline/flowlog"
)

var base = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func ts(d time.Duration) pcommon.Timestamp { return pcommon.NewTimestampFromTime(base.Add(d)) }

// oneSpan converts a single span built by fill.
func oneSpan(t *testing.T, kind ptrace.SpanKind, fill func(sp ptrace.Span)) flowlog.L7FlowLog {
	t.Helper()
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", "svc")
	sp := rs.ScopeSpans().AppendEmpty().Spans().AppendEmpty()
	sp.SetTraceID(pcommon.TraceID{0xab, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15})
	sp.SetSpanID(pcommon.SpanID{0xcd, 1, 2, 3, 4, 5, 6, 7})
	sp.SetKind(kind)
	sp.SetName("op")
	sp.SetStartTimestamp(ts(0))
	sp.SetEndTimestamp(ts(2500 * time.Microsecond))
	if fill != nil {
		fill(sp)
	}
	rows := ConvertTraces(td)
	if len(rows) != 1 {
		t.Fatalf("got %d rows, want 1", len(rows))
	}
	return rows[0]
}

func TestConvertSpanKinds(t *testing.T) {
	tests := []struct {
		kind   ptrace.SpanKind
		obs    string
		k0, k1 string
	}{
		{ptrace.SpanKindServer, ObsServerApp, "", "svc"},
		{ptrace.SpanKindConsumer, ObsServerApp, "", "svc"},
		{ptrace.SpanKindClient, ObsClientApp, "svc", ""},
		{ptrace.SpanKindProducer, ObsClientApp, "svc", ""},
		{ptrace.SpanKindInternal, ObsApp, "svc", ""},
		{ptrace.SpanKindUnspecified, ObsApp, "svc", ""},
	}
	for _, tc := range tests {
		t.Run(tc.kind.String(), func(t *testing.T) {
			r := oneSpan(t, tc.kind, nil)
			if r.ObservationPoint != tc.obs || r.ProcessKName0 != tc.k0 || r.ProcessKName1 != tc.k1 {
				t.Errorf("obs=%q k0=%q k1=%q, want %q %q %q", r.ObservationPoint, r.ProcessKName0, r.ProcessKName1, tc.obs, tc.k0, tc.k1)
			}
			if r.SignalSource != flowlog.SourceOTel || r.Type != flowlog.TypeSession {
				t.Errorf("signal_source=%d type=%d", r.SignalSource, r.Type)
			}
			if r.TraceID != "ab0102030405060708090a0b0c0d0e0f" || r.SpanID != "cd01020304050607" || r.ParentSpanID != "" {
				t.Errorf("ids %q %q %q", r.TraceID, r.SpanID, r.ParentSpanID)
			}
			if r.ResponseDuration != 2500 || !r.Time.Equal(base) || !r.EndTime.Equal(base.Add(2500*time.Microsecond)) {
				t.Errorf("duration=%d time=%v end=%v", r.ResponseDuration, r.Time, r.EndTime)
			}
			if r.L7Protocol != flowlog.L7Unknown || r.RequestType != "op" || r.Endpoint != "op" {
				t.Errorf("proto=%d type=%q endpoint=%q", r.L7Protocol, r.RequestType, r.Endpoint)
			}
			if r.Attributes["service.name"] != "svc" {
				t.Errorf("attributes=%v", r.Attributes)
			}
		})
	}
}

func TestConvertSemantics(t *testing.T) {
	code := func(c int32) *int32 { return &c }
	tests := []struct {
		name  string
		kind  ptrace.SpanKind
		fill  func(sp ptrace.Span)
		check func(t *testing.T, r flowlog.L7FlowLog)
		want  flowlog.L7FlowLog // compared fields: protocol, type, domain, resource, endpoint, status, code
	}{
		{
			name: "http server new conventions",
			kind: ptrace.SpanKindServer,
			fill: func(sp ptrace.Span) {
				a := sp.Attributes()
				a.PutStr("http.request.method", "GET")
				a.PutStr("url.path", "/users/42")
				a.PutStr("http.route", "/users/{id}")
				a.PutStr("server.address", "api.example.com")
				a.PutInt("http.response.status_code", 200)
			},
			want: flowlog.L7FlowLog{L7Protocol: flowlog.L7HTTP1, RequestType: "GET", RequestDomain: "api.example.com",
				RequestResource: "/users/42", Endpoint: "/users/{id}", ResponseCode: code(200)},
		},
		{
			name: "http client old conventions, http2, 503",
			kind: ptrace.SpanKindClient,
			fill: func(sp ptrace.Span) {
				a := sp.Attributes()
				a.PutStr("http.method", "POST")
				a.PutStr("http.url", "https://user:pw@pay.example.com:8443/charge?x=1")
				a.PutStr("http.flavor", "2.0")
				a.PutStr("http.status_code", "503")
			},
			want: flowlog.L7FlowLog{L7Protocol: flowlog.L7HTTP2, RequestType: "POST", RequestDomain: "pay.example.com:8443",
				RequestResource: "/charge?x=1", Endpoint: "op", ResponseCode: code(503), ResponseStatus: flowlog.StatusServerError},
		},
		{
			name: "http error status with 404 is a client error",
			kind: ptrace.SpanKindServer,
			fill: func(sp ptrace.Span) {
				sp.Attributes().PutStr("http.request.method", "GET")
				sp.Attributes().PutStr("http.target", "/missing")
				sp.Attributes().PutInt("http.response.status_code", 404)
				sp.Status().SetCode(ptrace.StatusCodeError)
			},
			want: flowlog.L7FlowLog{L7Protocol: flowlog.L7HTTP1, RequestType: "GET", RequestResource: "/missing",
				Endpoint: "op", ResponseCode: code(404), ResponseStatus: flowlog.StatusClientError},
		},
		{
			name: "http 404 without error status is a client error",
			kind: ptrace.SpanKindServer,
			fill: func(sp ptrace.Span) {
				sp.Attributes().PutStr("http.request.method", "GET")
				sp.Attributes().PutInt("http.response.status_code", 404)
			},
			want: flowlog.L7FlowLog{L7Protocol: flowlog.L7HTTP1, RequestType: "GET", Endpoint: "op",
				ResponseCode: code(404), ResponseStatus: flowlog.StatusClientError},
		},
		{
			name: "grpc client unavailable",
			kind: ptrace.SpanKindClient,
			fill: func(sp ptrace.Span) {
				a := sp.Attributes()
				a.PutStr("rpc.system", "grpc")
				a.PutStr("rpc.service", "shop.Cart")
				a.PutStr("rpc.method", "Add")
				a.PutInt("rpc.grpc.status_code", 14)
				sp.Status().SetCode(ptrace.StatusCodeError)
				sp.Status().SetMessage("connection refused")
			},
			want: flowlog.L7FlowLog{L7Protocol: flowlog.L7GRPC, RequestType: "Add", RequestResource: "shop.Cart/Add",
				Endpoint: "shop.Cart/Add", ResponseCode: code(14), ResponseStatus: flowlog.StatusServerError,
				ResponseException: "connection refused"},
		},
		{
			name: "grpc not found is a client error",
			kind: ptrace.SpanKindServer,
			fill: func(sp ptrace.Span) {
				a := sp.Attributes()
				a.PutStr("rpc.system", "grpc")
				a.PutStr("rpc.service", "shop.Cart")
				a.PutStr("rpc.method", "Get")
				a.PutInt("rpc.grpc.status_code", 5)
				sp.Status().SetCode(ptrace.StatusCodeError)
			},
			want: flowlog.L7FlowLog{L7Protocol: flowlog.L7GRPC, RequestType: "Get", RequestResource: "shop.Cart/Get",
				Endpoint: "shop.Cart/Get", ResponseCode: code(5), ResponseStatus: flowlog.StatusClientError},
		},
		{
			name: "postgres with long statement and exception event",
			kind: ptrace.SpanKindClient,
			fill: func(sp ptrace.Span) {
				a := sp.Attributes()
				a.PutStr("db.system", "postgresql")
				a.PutStr("db.query.text", "select "+strings.Repeat("x", 2000))
				a.PutStr("db.namespace", "shop")
				sp.Status().SetCode(ptrace.StatusCodeError)
				ev := sp.Events().AppendEmpty()
				ev.SetName("exception")
				ev.Attributes().PutStr("exception.type", "PgError")
				ev.Attributes().PutStr("exception.message", "deadlock")
			},
			want: flowlog.L7FlowLog{L7Protocol: flowlog.L7Postgres, RequestType: "SELECT", RequestDomain: "shop",
				RequestResource: ("select " + strings.Repeat("x", 2000))[:MaxStatement], Endpoint: "op",
				ResponseStatus: flowlog.StatusServerError, ResponseException: "PgError: deadlock"},
		},
		{
			name: "mysql operation",
			kind: ptrace.SpanKindClient,
			fill: func(sp ptrace.Span) {
				a := sp.Attributes()
				a.PutStr("db.system.name", "mysql")
				a.PutStr("db.operation.name", "INSERT")
				a.PutStr("db.name", "orders")
			},
			want: flowlog.L7FlowLog{L7Protocol: flowlog.L7MySQL, RequestType: "INSERT", RequestDomain: "orders", Endpoint: "op"},
		},
		{
			name: "mongodb and memcached",
			kind: ptrace.SpanKindClient,
			fill: func(sp ptrace.Span) { sp.Attributes().PutStr("db.system", "mongodb") },
			want: flowlog.L7FlowLog{L7Protocol: flowlog.L7MongoDB, Endpoint: "op"},
		},
		{
			name: "kafka producer",
			kind: ptrace.SpanKindProducer,
			fill: func(sp ptrace.Span) {
				a := sp.Attributes()
				a.PutStr("messaging.system", "kafka")
				a.PutStr("messaging.operation.type", "publish")
				a.PutStr("messaging.destination.name", "orders")
			},
			want: flowlog.L7FlowLog{L7Protocol: flowlog.L7Kafka, RequestType: "publish", RequestResource: "orders", Endpoint: "orders"},
		},
		{
			name: "rabbitmq consumer",
			kind: ptrace.SpanKindConsumer,
			fill: func(sp ptrace.Span) {
				a := sp.Attributes()
				a.PutStr("messaging.system", "rabbitmq")
				a.PutStr("messaging.operation", "receive")
				a.PutStr("messaging.destination", "jobs")
			},
			want: flowlog.L7FlowLog{L7Protocol: flowlog.L7AMQP, RequestType: "receive", RequestResource: "jobs", Endpoint: "jobs"},
		},
		{
			name: "unknown rpc system keeps protocol 0",
			kind: ptrace.SpanKindClient,
			fill: func(sp ptrace.Span) {
				sp.Attributes().PutStr("rpc.system", "java_rmi")
				sp.Attributes().PutStr("rpc.method", "call")
			},
			want: flowlog.L7FlowLog{RequestType: "call", RequestResource: "/call", Endpoint: "/call"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := oneSpan(t, tc.kind, tc.fill)
			w := tc.want
			if r.L7Protocol != w.L7Protocol || r.L7ProtocolStr != w.L7Protocol.String() || r.RequestType != w.RequestType ||
				r.RequestDomain != w.RequestDomain || r.RequestResource != w.RequestResource || r.Endpoint != w.Endpoint ||
				r.ResponseStatus != w.ResponseStatus || r.ResponseException != w.ResponseException {
				t.Errorf("got proto=%d/%s type=%q domain=%q resource=%.40q endpoint=%q status=%d exc=%q\nwant proto=%d type=%q domain=%q resource=%.40q endpoint=%q status=%d exc=%q",
					r.L7Protocol, r.L7ProtocolStr, r.RequestType, r.RequestDomain, r.RequestResource, r.Endpoint, r.ResponseStatus, r.ResponseException,
					w.L7Protocol, w.RequestType, w.RequestDomain, w.RequestResource, w.Endpoint, w.ResponseStatus, w.ResponseException)
			}
			if (r.ResponseCode == nil) != (w.ResponseCode == nil) || (r.ResponseCode != nil && *r.ResponseCode != *w.ResponseCode) {
				t.Errorf("response_code = %v, want %v", r.ResponseCode, w.ResponseCode)
			}
		})
	}
}

func TestConvertAddresses(t *testing.T) {
	tests := []struct {
		name         string
		kind         ptrace.SpanKind
		attrs        map[string]any
		ip0, ip1     string
		cport, sport uint16
		proto        uint8
	}{
		{"client to IP", ptrace.SpanKindClient, map[string]any{"server.address": "10.0.0.7", "server.port": int64(6379),
			"network.local.address": "10.0.0.1", "network.local.port": int64(40000), "network.transport": "tcp"},
			"10.0.0.1", "10.0.0.7", 40000, 6379, 6},
		{"client to hostname keeps port only", ptrace.SpanKindClient, map[string]any{"server.address": "redis", "server.port": int64(6379)},
			"invalid IP", "invalid IP", 0, 6379, 0},
		{"server old conventions ipv6", ptrace.SpanKindServer, map[string]any{"net.sock.peer.addr": "2001:db8::5", "net.sock.peer.port": "5555",
			"net.host.ip": "::ffff:10.0.0.9", "net.host.port": int64(80), "net.transport": "ip_udp"},
			"2001:db8::5", "10.0.0.9", 5555, 80, 17},
		{"bad port ignored", ptrace.SpanKindServer, map[string]any{"client.address": "10.1.1.1", "client.port": int64(70000)},
			"10.1.1.1", "invalid IP", 0, 0, 0},
		{"internal has no addresses", ptrace.SpanKindInternal, map[string]any{"server.address": "10.0.0.7"},
			"invalid IP", "invalid IP", 0, 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := oneSpan(t, tc.kind, func(sp ptrace.Span) {
				if err := sp.Attributes().FromRaw(tc.attrs); err != nil {
					t.Fatal(err)
				}
			})
			if r.IP0.String() != tc.ip0 || r.IP1.String() != tc.ip1 || r.ClientPort != tc.cport || r.ServerPort != tc.sport || r.Protocol != tc.proto {
				t.Errorf("got %s:%d → %s:%d proto %d, want %s:%d → %s:%d proto %d",
					r.IP0, r.ClientPort, r.IP1, r.ServerPort, r.Protocol, tc.ip0, tc.cport, tc.ip1, tc.sport, tc.proto)
			}
		})
	}
	_ = netip.Addr{}
}

func TestConvertAttributesBoundedAndMasked(t *testing.T) {
	r := oneSpan(t, ptrace.SpanKindServer, func(sp ptrace.Span) {
		a := sp.Attributes()
		a.PutStr("http.request.method", "GET") // consumed, not kept
		a.PutStr("db.password", "hunter2")
		a.PutStr("http.request.header.authorization", "Bearer abc")
		a.PutStr("Auth_Token", "t")
		a.PutStr("long", strings.Repeat("é", 300))
		for i := 0; i < 50; i++ {
			a.PutInt("k"+strings.Repeat("x", i), int64(i))
		}
	})
	if len(r.Attributes) != MaxAttributes {
		t.Errorf("kept %d attributes, want %d", len(r.Attributes), MaxAttributes)
	}
	for _, k := range []string{"db.password", "http.request.header.authorization", "Auth_Token"} {
		if r.Attributes[k] != maskedValue {
			t.Errorf("%s = %q, want masked", k, r.Attributes[k])
		}
	}
	if _, ok := r.Attributes["http.request.method"]; ok {
		t.Error("consumed attribute kept")
	}
	if v := r.Attributes["long"]; len(v) > MaxAttributeValue || len(v) < MaxAttributeValue-1 || !strings.HasPrefix(v, "éé") {
		t.Errorf("long value %d bytes", len(v))
	}
	if r.Attributes["service.name"] != "svc" || r.Attributes["k"] != "0" {
		t.Errorf("attributes %v", r.Attributes)
	}
}

func TestConvertEdgeTimes(t *testing.T) {
	r := oneSpan(t, ptrace.SpanKindServer, func(sp ptrace.Span) {
		sp.SetEndTimestamp(ts(-time.Second)) // end before start
		sp.SetParentSpanID(pcommon.SpanID{0, 0, 0, 0, 0, 0, 0, 1})
	})
	if r.ResponseDuration != 0 || r.ParentSpanID != "0000000000000001" {
		t.Errorf("duration=%d parent=%q", r.ResponseDuration, r.ParentSpanID)
	}
	if rows := ConvertTraces(ptrace.NewTraces()); len(rows) != 0 {
		t.Errorf("empty traces gave %d rows", len(rows))
	}
}

// BenchmarkConvertTraces measures conversion per request of 1000 spans
// (200 copies of the five-span test trace).
func BenchmarkConvertTraces(b *testing.B) {
	td := ptrace.NewTraces()
	for i := 0; i < 200; i++ {
		testTraces(byte(i)).ResourceSpans().MoveAndAppendTo(td.ResourceSpans())
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if rows := ConvertTraces(td); len(rows) != 1000 {
			b.Fatal(len(rows))
		}
	}
}
