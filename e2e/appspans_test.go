package e2e

import (
	"bytes"
	"net/http"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
)

// TestOTLPSpanStored: an OTLP/HTTP span posted to the server's API port is
// stored in l7_flow_log as an application span with its ids.
func TestOTLPSpanStored(t *testing.T) {
	s := startStack(t)
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", "checkout")
	sp := rs.ScopeSpans().AppendEmpty().Spans().AppendEmpty()
	sp.SetName("GET /api/orders/{id}")
	sp.SetKind(ptrace.SpanKindServer)
	sp.SetTraceID(pcommon.TraceID([16]byte{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36}))
	sp.SetSpanID(pcommon.SpanID([8]byte{0, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7}))
	now := time.Now()
	sp.SetStartTimestamp(pcommon.NewTimestampFromTime(now.Add(-30 * time.Millisecond)))
	sp.SetEndTimestamp(pcommon.NewTimestampFromTime(now))
	sp.Attributes().PutStr("http.request.method", "GET")
	sp.Attributes().PutStr("http.route", "/api/orders/{id}")
	sp.Attributes().PutInt("http.response.status_code", 200)
	body, err := ptraceotlp.NewExportRequestFromTraces(td).MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(s.api+"/v1/traces", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /v1/traces: %s", resp.Status)
	}
	rows := s.query(t, `SELECT observation_point, trace_id, span_id, request_type, endpoint, response_code, response_duration,
		signal_source FROM l7_flow_log WHERE trace_id = '4bf92f3577b34da6a3ce929d0e0e4736'`)
	if len(rows) != 1 {
		t.Fatalf("rows %v", rows)
	}
	r := rows[0]
	if str(r["observation_point"]) != "s-app" || str(r["span_id"]) != "00f067aa0ba902b7" || str(r["request_type"]) != "GET" ||
		str(r["endpoint"]) != "/api/orders/{id}" || num(t, r["response_code"]) != 200 || num(t, r["signal_source"]) != 4 ||
		num(t, r["response_duration"]) < 29000 {
		t.Errorf("row %v", r)
	}
}
