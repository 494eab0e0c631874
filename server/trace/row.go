package trace

import (
	"cmp"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/sightline-io/sightline/server/store"
)

// row is the part of an l7_flow_log row that assembly reads.
type row struct {
	id                                  uint64
	time, start, end                    time.Time
	duration                            uint64
	agent, host                         string
	signal                              uint8
	obs                                 string
	proto                               uint8
	protoStr                            string
	reqType, domain, resource, endpoint string
	status                              uint8
	code                                *int64
	exception                           string
	traceID, spanID, parentSpanID       string
	xrid0, xrid1                        string
	sysReq, sysResp                     uint64
	reqSeq, respSeq                     uint32
	ip0, ip1                            string
	cport, sport                        uint16
	l4                                  uint8
	pid0, pid1                          uint32
	kname0, kname1                      string
	mq                                  mqRange // Kafka Produce/Fetch offsets
	requestID                           *int64  // protocol request id (DNS transaction id, ...)
}

// selectColumns are read for every span, in this order.
var selectColumns = []string{
	"_id", "time", "start_time", "end_time", "response_duration", "agent_id", "host", "signal_source",
	"observation_point", "l7_protocol", "l7_protocol_str", "request_type", "request_domain",
	"request_resource", "endpoint", "response_status", "response_code", "response_exception",
	"trace_id", "span_id", "parent_span_id", "x_request_id_0", "x_request_id_1",
	"syscall_trace_id_request", "syscall_trace_id_response", "req_tcp_seq", "resp_tcp_seq",
	"ip_0", "ip_1", "client_port", "server_port", "protocol",
	"process_id_0", "process_id_1", "process_kname_0", "process_kname_1", "request_id",
}

// mqColumnNames are the aliases of mqColumns.
var mqColumnNames = []string{"kafka_base_offset", "kafka_record_count", "kafka_first_offset", "kafka_last_offset", "kafka_topic_partition"}

const tableName = "l7_flow_log"

// selectSQL builds SELECT <columns> FROM l7_flow_log WHERE <where> [ORDER BY time] LIMIT n.
func selectSQL(where string, orderByTime bool, limit int) string {
	var b strings.Builder
	b.WriteString("SELECT ")
	b.WriteString(strings.Join(selectColumns, ", "))
	b.WriteString(", ")
	b.WriteString(strings.Join(mqColumns, ", "))
	b.WriteString(" FROM ")
	b.WriteString(tableName)
	b.WriteString(" WHERE ")
	b.WriteString(where)
	if orderByTime {
		b.WriteString(" ORDER BY time, _id")
	}
	b.WriteString(" LIMIT ")
	b.WriteString(strconv.Itoa(limit))
	return b.String()
}

// timeLit is a timestamp literal that DuckDB and ClickHouse both compare
// against a timestamp column.
func timeLit(t time.Time) string {
	return "'" + t.UTC().Format("2006-01-02 15:04:05.000000") + "'"
}

// safeString reports whether s can be put in an SQL string literal as is:
// printable ASCII without quotes or backslashes (escaping rules differ between
// engines, so such values are refused rather than escaped).
func safeString(s string) bool {
	if s == "" || len(s) > maxIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c > 0x7e || c == '\'' || c == '\\' {
			return false
		}
	}
	return true
}

// maxIDLen bounds trace ids and request ids used in lookups.
const maxIDLen = 256

func strLit(s string) string { return "'" + s + "'" }

// parseRows converts a query result into rows.
func parseRows(res *store.Result) ([]row, error) {
	idx := make(map[string]int, len(res.Columns))
	for i, c := range res.Columns {
		idx[c] = i
	}
	for _, c := range append(selectColumns[:len(selectColumns):len(selectColumns)], mqColumnNames...) {
		if _, ok := idx[c]; !ok {
			return nil, fmt.Errorf("trace: result lacks column %q", c)
		}
	}
	out := make([]row, 0, len(res.Rows))
	for n, vals := range res.Rows {
		if len(vals) != len(res.Columns) {
			return nil, fmt.Errorf("trace: result row %d has %d values for %d columns", n, len(vals), len(res.Columns))
		}
		p := parser{vals: vals, idx: idx}
		r := row{
			id:           p.u64("_id"),
			time:         p.ts("time"),
			start:        p.ts("start_time"),
			end:          p.ts("end_time"),
			duration:     p.u64("response_duration"),
			agent:        p.str("agent_id"),
			host:         p.str("host"),
			signal:       uint8(p.u64("signal_source")),
			obs:          p.str("observation_point"),
			proto:        uint8(p.u64("l7_protocol")),
			protoStr:     p.str("l7_protocol_str"),
			reqType:      p.str("request_type"),
			domain:       p.str("request_domain"),
			resource:     p.str("request_resource"),
			endpoint:     p.str("endpoint"),
			status:       uint8(p.u64("response_status")),
			code:         p.optI64("response_code"),
			exception:    p.str("response_exception"),
			traceID:      p.str("trace_id"),
			spanID:       p.str("span_id"),
			parentSpanID: p.str("parent_span_id"),
			xrid0:        p.str("x_request_id_0"),
			xrid1:        p.str("x_request_id_1"),
			sysReq:       p.u64("syscall_trace_id_request"),
			sysResp:      p.u64("syscall_trace_id_response"),
			reqSeq:       uint32(p.u64("req_tcp_seq")),
			respSeq:      uint32(p.u64("resp_tcp_seq")),
			ip0:          p.str("ip_0"),
			ip1:          p.str("ip_1"),
			cport:        uint16(p.u64("client_port")),
			sport:        uint16(p.u64("server_port")),
			l4:           uint8(p.u64("protocol")),
			pid0:         uint32(p.u64("process_id_0")),
			pid1:         uint32(p.u64("process_id_1")),
			kname0:       p.str("process_kname_0"),
			kname1:       p.str("process_kname_1"),
			requestID:    p.optI64("request_id"),
		}
		if p.err != nil {
			return nil, fmt.Errorf("trace: result row %d: %w", n, p.err)
		}
		switch r.reqType {
		case "Produce":
			r.mq = mqProduceRange(p.str("kafka_base_offset"), p.str("kafka_record_count"))
		case "Fetch":
			r.mq = mqFetchRange(p.str("kafka_first_offset"), p.str("kafka_last_offset"))
		}
		if r.mq.ok {
			r.mq.partition = cmp.Or(p.str("kafka_topic_partition"), r.resource)
		}
		normalizeTimes(&r)
		out = append(out, r)
	}
	return out, nil
}

// normalizeTimes fills start/end when a lone request or response lacks them.
func normalizeTimes(r *row) {
	if r.start.IsZero() {
		r.start = r.time
	}
	if r.end.Before(r.start) {
		r.end = r.start.Add(time.Duration(min(r.duration, math.MaxInt64/1000)) * time.Microsecond)
	}
}

// parser reads typed values from one result row, tolerating the value types
// of different engines (Go integers, floats, json.Number, strings, times).
type parser struct {
	vals []any
	idx  map[string]int
	err  error
}

func (p *parser) fail(col string, v any) {
	if p.err == nil {
		p.err = fmt.Errorf("column %s: unexpected value %v (%T)", col, v, v)
	}
}

func (p *parser) str(col string) string {
	switch x := p.vals[p.idx[col]].(type) {
	case nil:
		return ""
	case string:
		return x
	case []byte:
		return string(x)
	case fmt.Stringer:
		return x.String()
	default:
		return fmt.Sprint(x)
	}
}

func (p *parser) u64(col string) uint64 {
	v := p.vals[p.idx[col]]
	n, ok := toUint64(v)
	if !ok {
		p.fail(col, v)
	}
	return n
}

func (p *parser) optI64(col string) *int64 {
	v := p.vals[p.idx[col]]
	if v == nil {
		return nil
	}
	var n int64
	switch x := v.(type) {
	case int8:
		n = int64(x)
	case int16:
		n = int64(x)
	case int32:
		n = int64(x)
	case int64:
		n = x
	case int:
		n = int64(x)
	case float64:
		n = int64(x)
	case json.Number:
		i, err := x.Int64()
		if err != nil {
			p.fail(col, v)
		}
		n = i
	case string:
		i, err := strconv.ParseInt(x, 10, 64)
		if err != nil {
			p.fail(col, v)
		}
		n = i
	default:
		u, ok := toUint64(v)
		if !ok || u > math.MaxInt64 {
			p.fail(col, v)
		}
		n = int64(u)
	}
	return &n
}

func toUint64(v any) (uint64, bool) {
	switch x := v.(type) {
	case nil:
		return 0, true
	case uint8:
		return uint64(x), true
	case uint16:
		return uint64(x), true
	case uint32:
		return uint64(x), true
	case uint64:
		return x, true
	case uint:
		return uint64(x), true
	case int8:
		return uint64(x), x >= 0
	case int16:
		return uint64(x), x >= 0
	case int32:
		return uint64(x), x >= 0
	case int64:
		return uint64(x), x >= 0
	case int:
		return uint64(x), x >= 0
	case float64:
		return uint64(x), x >= 0 && x <= math.MaxUint64 && x == math.Trunc(x)
	case bool:
		if x {
			return 1, true
		}
		return 0, true
	case json.Number:
		n, err := strconv.ParseUint(string(x), 10, 64)
		return n, err == nil
	case string:
		n, err := strconv.ParseUint(x, 10, 64)
		return n, err == nil
	}
	return 0, false
}

var timeLayouts = []string{time.RFC3339Nano, "2006-01-02 15:04:05.999999999", "2006-01-02T15:04:05.999999999"}

func (p *parser) ts(col string) time.Time {
	v := p.vals[p.idx[col]]
	switch x := v.(type) {
	case nil:
		return time.Time{}
	case time.Time:
		return x.UTC()
	case string:
		for _, l := range timeLayouts {
			if t, err := time.Parse(l, x); err == nil {
				return t.UTC()
			}
		}
	}
	p.fail(col, v)
	return time.Time{}
}
