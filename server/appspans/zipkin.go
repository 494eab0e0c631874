package appspans

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/sightline-io/sightline/flowlog"
)

// zipkinSpan is one span of the Zipkin v2 JSON model
// (https://zipkin.io/zipkin-api/#/default/post_spans).
type zipkinSpan struct {
	TraceID        string          `json:"traceId"`
	ID             string          `json:"id"`
	ParentID       string          `json:"parentId"`
	Name           string          `json:"name"`
	Kind           string          `json:"kind"`
	Timestamp      int64           `json:"timestamp"` // epoch µs
	Duration       int64           `json:"duration"`  // µs
	LocalEndpoint  *zipkinEndpoint `json:"localEndpoint"`
	RemoteEndpoint *zipkinEndpoint `json:"remoteEndpoint"`
	Annotations    []struct {
		Timestamp int64  `json:"timestamp"`
		Value     string `json:"value"`
	} `json:"annotations"`
	Tags map[string]any `json:"tags"`
}

type zipkinEndpoint struct {
	ServiceName string `json:"serviceName"`
	IPv4        string `json:"ipv4"`
	IPv6        string `json:"ipv6"`
	Port        int64  `json:"port"`
}

// ConvertZipkin converts a Zipkin v2 JSON array of spans into rows. Spans
// without a valid traceId or id are skipped; a body that is not a JSON
// array of spans is an error.
func ConvertZipkin(body []byte) ([]flowlog.L7FlowLog, error) {
	rows, _, err := convertZipkin(body)
	return rows, err
}

// convertZipkin also returns the number of skipped spans.
func convertZipkin(body []byte) ([]flowlog.L7FlowLog, int, error) {
	td, invalid, err := ZipkinToTraces(body)
	if err != nil {
		return nil, 0, err
	}
	return ConvertTraces(td), invalid, nil
}

// ZipkinToTraces converts a Zipkin v2 JSON array into OpenTelemetry traces
// (one resource per span, carrying localEndpoint.serviceName as
// service.name) and returns the number of spans skipped for invalid ids.
func ZipkinToTraces(body []byte) (ptrace.Traces, int, error) {
	td := ptrace.NewTraces()
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 || trimmed[0] != '[' {
		return td, 0, fmt.Errorf("zipkin: body must be a JSON array of v2 spans")
	}
	var spans []zipkinSpan
	if err := json.Unmarshal(trimmed, &spans); err != nil {
		return td, 0, fmt.Errorf("zipkin: decoding v2 spans: %w", err)
	}
	invalid := 0
	for i := range spans {
		if !zipkinSpanTo(td, &spans[i]) {
			invalid++
		}
	}
	return td, invalid, nil
}

func zipkinSpanTo(td ptrace.Traces, z *zipkinSpan) bool {
	traceID, ok := parseTraceID(z.TraceID)
	if !ok {
		return false
	}
	spanID, ok := parseSpanID(z.ID)
	if !ok {
		return false
	}
	rs := td.ResourceSpans().AppendEmpty()
	if z.LocalEndpoint != nil && z.LocalEndpoint.ServiceName != "" {
		rs.Resource().Attributes().PutStr("service.name", z.LocalEndpoint.ServiceName)
	}
	sp := rs.ScopeSpans().AppendEmpty().Spans().AppendEmpty()
	sp.SetTraceID(traceID)
	sp.SetSpanID(spanID)
	if parent, ok := parseSpanID(z.ParentID); ok {
		sp.SetParentSpanID(parent)
	}
	sp.SetName(z.Name)
	switch strings.ToUpper(z.Kind) {
	case "SERVER":
		sp.SetKind(ptrace.SpanKindServer)
	case "CLIENT":
		sp.SetKind(ptrace.SpanKindClient)
	case "PRODUCER":
		sp.SetKind(ptrace.SpanKindProducer)
	case "CONSUMER":
		sp.SetKind(ptrace.SpanKindConsumer)
	default:
		sp.SetKind(ptrace.SpanKindInternal)
	}
	sp.SetStartTimestamp(microsToTimestamp(z.Timestamp))
	end := z.Timestamp
	if z.Duration > 0 && z.Timestamp <= math.MaxInt64-z.Duration {
		end += z.Duration
	}
	sp.SetEndTimestamp(microsToTimestamp(end))

	attrs := sp.Attributes()
	if e := z.LocalEndpoint; e != nil {
		if ip := firstNonEmpty(e.IPv4, e.IPv6); ip != "" {
			attrs.PutStr("network.local.address", ip)
		}
		if e.Port > 0 {
			attrs.PutInt("network.local.port", e.Port)
		}
	}
	if e := z.RemoteEndpoint; e != nil {
		if ip := firstNonEmpty(e.IPv4, e.IPv6); ip != "" {
			attrs.PutStr("network.peer.address", ip)
		}
		if e.Port > 0 {
			attrs.PutInt("network.peer.port", e.Port)
		}
		if e.ServiceName != "" {
			attrs.PutStr("peer.service", e.ServiceName)
		}
	}
	errMsg, isErr := "", false
	keys := make([]string, 0, len(z.Tags))
	for k := range z.Tags {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		s := tagString(z.Tags[k])
		switch k {
		case "error":
			isErr, errMsg = true, s
		case "otel.status_code":
			if strings.EqualFold(s, "ERROR") {
				isErr = true
			} else if strings.EqualFold(s, "OK") {
				sp.Status().SetCode(ptrace.StatusCodeOk)
			}
		case "otel.status_description":
			errMsg = s
		default:
			attrs.PutStr(k, s)
		}
	}
	if isErr {
		sp.Status().SetCode(ptrace.StatusCodeError)
		if errMsg == "true" {
			errMsg = ""
		}
		sp.Status().SetMessage(errMsg)
	}
	return true
}

func tagString(v any) string {
	switch t := v.(type) {
	case string:
		return t
	case nil:
		return ""
	case float64:
		return strconv.FormatFloat(t, 'f', -1, 64)
	case bool:
		return strconv.FormatBool(t)
	default:
		b, err := json.Marshal(t)
		if err != nil {
			return ""
		}
		return string(b)
	}
}

func microsToTimestamp(us int64) pcommon.Timestamp {
	if us <= 0 {
		return 0
	}
	if us > math.MaxInt64/1000 {
		us = math.MaxInt64 / 1000
	}
	return pcommon.Timestamp(uint64(us) * 1000)
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// parseTraceID accepts 16 or 32 hex digits (64-bit ids are left-padded).
func parseTraceID(s string) (pcommon.TraceID, bool) {
	var id pcommon.TraceID
	if len(s) != 16 && len(s) != 32 {
		return id, false
	}
	b, err := hex.DecodeString(s)
	if err != nil {
		return id, false
	}
	copy(id[16-len(b):], b)
	return id, !id.IsEmpty()
}

// parseSpanID accepts 16 hex digits.
func parseSpanID(s string) (pcommon.SpanID, bool) {
	var id pcommon.SpanID
	if len(s) != 16 {
		return id, false
	}
	b, err := hex.DecodeString(s)
	if err != nil {
		return id, false
	}
	copy(id[:], b)
	return id, !id.IsEmpty()
}
