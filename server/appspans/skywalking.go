package appspans

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/sightline-io/sightline/flowlog"
)

// SkyWalking v3 segments (SegmentObject in its protobuf-JSON form, as posted
// to /v3/segments by SkyWalking agents in HTTP mode).
//
// SkyWalking ids are not W3C ids, so they are kept in the form the eBPF side
// reads from the sw8 header: trace_id = the SkyWalking trace id string,
// span_id = "<segment id>-<span id>", parent_span_id = the parent span in the
// same segment, or for the first span the cross-segment reference
// "<parent segment id>-<parent span id>". A server span's sw8 header
// therefore names exactly the c-app row of its caller.
//
// Kind: Entry → SERVER (CONSUMER in the MQ layer), Exit → CLIENT (PRODUCER
// in the MQ layer), Local → INTERNAL. Tags are mapped to the OpenTelemetry
// names the converter reads: http.method, url, status_code/http.status_code
// → HTTP; db.type (mysql, postgresql, redis, mongodb ...), db.statement,
// db.instance → DB; cache.type, cache.cmd, cache.key → DB; mq.topic /
// mq.queue, mq.broker and the component id → messaging; gRPC and Dubbo
// component ids → rpc.system with rpc.method = operationName; the Exit span's peer "host:port" →
// server.address/server.port. isError → status ERROR.

type swSegment struct {
	TraceID         string   `json:"traceId"`
	TraceSegmentID  string   `json:"traceSegmentId"`
	Service         string   `json:"service"`
	ServiceInstance string   `json:"serviceInstance"`
	Spans           []swSpan `json:"spans"`
}

type swSpan struct {
	SpanID        swInt      `json:"spanId"`
	ParentSpanID  swInt      `json:"parentSpanId"`
	StartTime     swInt      `json:"startTime"` // epoch ms
	EndTime       swInt      `json:"endTime"`
	Refs          []swRef    `json:"refs"`
	OperationName string     `json:"operationName"`
	Peer          string     `json:"peer"`
	SpanType      swEnum     `json:"spanType"`
	SpanLayer     swEnum     `json:"spanLayer"`
	ComponentID   swInt      `json:"componentId"`
	IsError       bool       `json:"isError"`
	Tags          []swKeyVal `json:"tags"`
}

type swRef struct {
	TraceID              string `json:"traceId"`
	ParentTraceSegmentID string `json:"parentTraceSegmentId"`
	ParentSpanID         swInt  `json:"parentSpanId"`
}

type swKeyVal struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// swInt accepts a JSON number or a decimal string (protobuf-JSON int64).
type swInt int64

func (n *swInt) UnmarshalJSON(b []byte) error {
	s := strings.Trim(string(b), `"`)
	if s == "null" || s == "" {
		*n = 0
		return nil
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return fmt.Errorf("not an integer: %s", b)
	}
	*n = swInt(v)
	return nil
}

// swEnum accepts an enum name or its number.
type swEnum string

func (e *swEnum) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		*e = swEnum(strings.ToLower(s))
		return nil
	}
	var n int
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("bad enum %s", b)
	}
	*e = swEnum(strconv.Itoa(n))
	return nil
}

// ConvertSkyWalking converts SkyWalking v3 segments (a JSON array of
// SegmentObject, or a single one) into rows.
func ConvertSkyWalking(body []byte) ([]flowlog.L7FlowLog, error) {
	rows, _, err := convertSkyWalking(body)
	return rows, err
}

func convertSkyWalking(body []byte) ([]flowlog.L7FlowLog, int, error) {
	trimmed := bytes.TrimSpace(body)
	var segs []swSegment
	switch {
	case len(trimmed) > 0 && trimmed[0] == '[':
		if err := json.Unmarshal(trimmed, &segs); err != nil {
			return nil, 0, fmt.Errorf("skywalking: decoding segments: %w", err)
		}
	case len(trimmed) > 0 && trimmed[0] == '{':
		segs = make([]swSegment, 1)
		if err := json.Unmarshal(trimmed, &segs[0]); err != nil {
			return nil, 0, fmt.Errorf("skywalking: decoding segment: %w", err)
		}
	default:
		return nil, 0, fmt.Errorf("skywalking: body must be a JSON segment object or an array of them")
	}
	var rows []flowlog.L7FlowLog
	invalid := 0
	for i := range segs {
		seg := &segs[i]
		if seg.TraceID == "" || seg.TraceSegmentID == "" {
			invalid += len(seg.Spans)
			continue
		}
		for j := range seg.Spans {
			rows = append(rows, skyWalkingSpan(seg, &seg.Spans[j]))
		}
	}
	return rows, invalid, nil
}

func skyWalkingSpan(seg *swSegment, s *swSpan) flowlog.L7FlowLog {
	sp := ptrace.NewSpan()
	layer := string(s.SpanLayer)
	mq := layer == "mq" || layer == "4"
	switch s.SpanType {
	case "entry", "0":
		sp.SetKind(ptrace.SpanKindServer)
		if mq {
			sp.SetKind(ptrace.SpanKindConsumer)
		}
	case "exit", "1":
		sp.SetKind(ptrace.SpanKindClient)
		if mq {
			sp.SetKind(ptrace.SpanKindProducer)
		}
	default:
		sp.SetKind(ptrace.SpanKindInternal)
	}
	sp.SetName(s.OperationName)
	sp.SetStartTimestamp(millisToTimestamp(int64(s.StartTime)))
	sp.SetEndTimestamp(millisToTimestamp(int64(s.EndTime)))
	if s.IsError {
		sp.Status().SetCode(ptrace.StatusCodeError)
	}
	a := sp.Attributes()
	tags := make(map[string]string, len(s.Tags))
	for _, t := range s.Tags {
		if _, dup := tags[t.Key]; !dup {
			tags[t.Key] = t.Value
		}
	}
	put := func(otel, sw string) {
		if v, ok := tags[sw]; ok && v != "" {
			a.PutStr(otel, v)
			delete(tags, sw)
		}
	}
	put("http.request.method", "http.method")
	put("url.full", "url")
	put("http.response.status_code", "status_code")
	put("http.response.status_code", "http.status_code")
	if v := tags["db.type"]; v != "" {
		a.PutStr("db.system", swDBSystem(v))
		delete(tags, "db.type")
	} else if v := tags["cache.type"]; v != "" {
		a.PutStr("db.system", swDBSystem(v))
		delete(tags, "cache.type")
		put("db.operation", "cache.cmd")
		put("db.statement", "cache.key")
	}
	put("db.statement", "db.statement")
	put("db.namespace", "db.instance")
	if mq {
		if sys := swMQSystem(int64(s.ComponentID)); sys != "" {
			a.PutStr("messaging.system", sys)
		}
		put("messaging.destination.name", "mq.topic")
		put("messaging.destination.name", "mq.queue")
		put("server.address", "mq.broker")
	}
	if layer == "rpcframework" || layer == "2" {
		if sys := swRPCSystem(int64(s.ComponentID)); sys != "" {
			a.PutStr("rpc.system", sys)
			a.PutStr("rpc.method", s.OperationName)
		}
	}
	if s.Peer != "" && sp.Kind() != ptrace.SpanKindServer && sp.Kind() != ptrace.SpanKindConsumer {
		if host, port, err := net.SplitHostPort(s.Peer); err == nil {
			if _, ok := a.Get("server.address"); !ok {
				a.PutStr("server.address", host)
			}
			if p, err := strconv.Atoi(port); err == nil {
				a.PutInt("server.port", int64(p))
			}
		} else if _, ok := a.Get("server.address"); !ok {
			a.PutStr("server.address", s.Peer)
		}
	}
	for k, v := range tags {
		a.PutStr(k, v)
	}
	if seg.ServiceInstance != "" {
		a.PutStr("service.instance.id", seg.ServiceInstance)
	}
	a.PutStr("skywalking.span_layer", layer)

	row := convertSpan(sp, seg.Service, "")
	row.TraceID = truncate(seg.TraceID, maxField)
	row.SpanID = truncate(seg.TraceSegmentID+"-"+strconv.FormatInt(int64(s.SpanID), 10), maxField)
	switch {
	case s.ParentSpanID >= 0:
		row.ParentSpanID = truncate(seg.TraceSegmentID+"-"+strconv.FormatInt(int64(s.ParentSpanID), 10), maxField)
	case len(s.Refs) > 0 && s.Refs[0].ParentTraceSegmentID != "":
		row.ParentSpanID = truncate(s.Refs[0].ParentTraceSegmentID+"-"+strconv.FormatInt(int64(s.Refs[0].ParentSpanID), 10), maxField)
	}
	return row
}

func swDBSystem(v string) string {
	switch v = strings.ToLower(v); v {
	case "sql", "mysql":
		return "mysql"
	case "postgres", "postgresql":
		return "postgresql"
	default:
		return v
	}
}

// swMQSystem maps SkyWalking component ids (component-libraries.yml) of
// message-queue clients to messaging.system.
func swMQSystem(id int64) string {
	switch id {
	case 27, 40, 41, 95:
		return "kafka"
	case 51, 52, 53, 143, 144, 145:
		return "rabbitmq"
	case 25, 38, 39:
		return "rocketmq"
	case 72, 73, 74:
		return "pulsar"
	case 132:
		return "nats"
	}
	return ""
}

// swRPCSystem maps SkyWalking RPC component ids to rpc.system.
func swRPCSystem(id int64) string {
	switch id {
	case 23:
		return "grpc"
	case 3:
		return "apache_dubbo"
	}
	return ""
}

func millisToTimestamp(ms int64) pcommon.Timestamp {
	if ms <= 0 || ms > (1<<63-1)/int64(time.Millisecond) {
		return 0
	}
	return pcommon.Timestamp(uint64(ms) * uint64(time.Millisecond))
}
