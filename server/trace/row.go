package trace

import (
	"cmp"
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
		p := store.Row{Vals: vals, Idx: idx}
		r := row{
			id:           p.U64("_id"),
			time:         p.Time("time"),
			start:        p.Time("start_time"),
			end:          p.Time("end_time"),
			duration:     p.U64("response_duration"),
			agent:        p.Str("agent_id"),
			host:         p.Str("host"),
			signal:       uint8(p.U64("signal_source")),
			obs:          p.Str("observation_point"),
			proto:        uint8(p.U64("l7_protocol")),
			protoStr:     p.Str("l7_protocol_str"),
			reqType:      p.Str("request_type"),
			domain:       p.Str("request_domain"),
			resource:     p.Str("request_resource"),
			endpoint:     p.Str("endpoint"),
			status:       uint8(p.U64("response_status")),
			code:         p.OptI64("response_code"),
			exception:    p.Str("response_exception"),
			traceID:      p.Str("trace_id"),
			spanID:       p.Str("span_id"),
			parentSpanID: p.Str("parent_span_id"),
			xrid0:        p.Str("x_request_id_0"),
			xrid1:        p.Str("x_request_id_1"),
			sysReq:       p.U64("syscall_trace_id_request"),
			sysResp:      p.U64("syscall_trace_id_response"),
			reqSeq:       uint32(p.U64("req_tcp_seq")),
			respSeq:      uint32(p.U64("resp_tcp_seq")),
			ip0:          p.Str("ip_0"),
			ip1:          p.Str("ip_1"),
			cport:        uint16(p.U64("client_port")),
			sport:        uint16(p.U64("server_port")),
			l4:           uint8(p.U64("protocol")),
			pid0:         uint32(p.U64("process_id_0")),
			pid1:         uint32(p.U64("process_id_1")),
			kname0:       p.Str("process_kname_0"),
			kname1:       p.Str("process_kname_1"),
			requestID:    p.OptI64("request_id"),
		}
		if p.Err != nil {
			return nil, fmt.Errorf("trace: result row %d: %w", n, p.Err)
		}
		switch r.reqType {
		case "Produce":
			r.mq = mqProduceRange(p.Str("kafka_base_offset"), p.Str("kafka_record_count"))
		case "Fetch":
			r.mq = mqFetchRange(p.Str("kafka_first_offset"), p.Str("kafka_last_offset"))
		}
		if r.mq.ok {
			r.mq.partition = cmp.Or(p.Str("kafka_topic_partition"), r.resource)
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
