package duckdb

import (
	"database/sql/driver"
	"fmt"
	"strings"

	duck "github.com/duckdb/duckdb-go/v2"

	"github.com/sightline-io/sightline/flowlog"
)

// The l7_flow_log table lives in schema flow_log (as in DeepFlow); every
// connection's search_path also makes the bare name resolve.
const (
	schemaName = "flow_log"
	l7Table    = "l7_flow_log"
)

// column is one column of a table whose rows are R. Types use names that
// have a direct ClickHouse counterpart (UBIGINT ~ UInt64, VARCHAR ~ String,
// MAP ~ Map ...).
type column[R any] struct {
	name string
	typ  string
	// value extracts the column's value from a row for the appender; nil means NULL.
	value func(r *R) driver.Value
}

// l7Columns is the single definition of the l7_flow_log schema: the DDL, the
// migration and the appender's column order are all derived from it.
var l7Columns = []column[flowlog.L7FlowLog]{
	{"_id", "UBIGINT NOT NULL", func(r *flowlog.L7FlowLog) driver.Value { return r.ID }},
	{"time", "TIMESTAMP NOT NULL", func(r *flowlog.L7FlowLog) driver.Value { return r.Time }},
	{"start_time", "TIMESTAMP", func(r *flowlog.L7FlowLog) driver.Value { return r.StartTime }},
	{"end_time", "TIMESTAMP", func(r *flowlog.L7FlowLog) driver.Value { return r.EndTime }},
	{"response_duration", "UBIGINT", func(r *flowlog.L7FlowLog) driver.Value { return r.ResponseDuration }},
	{"agent_id", "VARCHAR", func(r *flowlog.L7FlowLog) driver.Value { return r.AgentID }},
	{"host", "VARCHAR", func(r *flowlog.L7FlowLog) driver.Value { return r.Host }},
	{"org_id", "USMALLINT", func(r *flowlog.L7FlowLog) driver.Value { return r.OrgID }},
	{"team_id", "USMALLINT", func(r *flowlog.L7FlowLog) driver.Value { return r.TeamID }},
	{"signal_source", "UTINYINT", func(r *flowlog.L7FlowLog) driver.Value { return uint8(r.SignalSource) }},
	{"observation_point", "VARCHAR", func(r *flowlog.L7FlowLog) driver.Value { return r.ObservationPoint }},
	{"l7_protocol", "UTINYINT", func(r *flowlog.L7FlowLog) driver.Value { return uint8(r.L7Protocol) }},
	{"l7_protocol_str", "VARCHAR", func(r *flowlog.L7FlowLog) driver.Value { return r.L7ProtocolStr }},
	{"version", "VARCHAR", func(r *flowlog.L7FlowLog) driver.Value { return r.Version }},
	{"type", "UTINYINT", func(r *flowlog.L7FlowLog) driver.Value { return uint8(r.Type) }},
	{"is_tls", "BOOLEAN", func(r *flowlog.L7FlowLog) driver.Value { return r.IsTLS }},
	{"request_type", "VARCHAR", func(r *flowlog.L7FlowLog) driver.Value { return r.RequestType }},
	{"request_domain", "VARCHAR", func(r *flowlog.L7FlowLog) driver.Value { return r.RequestDomain }},
	{"request_resource", "VARCHAR", func(r *flowlog.L7FlowLog) driver.Value { return r.RequestResource }},
	{"endpoint", "VARCHAR", func(r *flowlog.L7FlowLog) driver.Value { return r.Endpoint }},
	{"request_id", "UBIGINT", func(r *flowlog.L7FlowLog) driver.Value { return nullable(r.RequestID) }},
	{"response_status", "UTINYINT", func(r *flowlog.L7FlowLog) driver.Value { return uint8(r.ResponseStatus) }},
	{"response_code", "INTEGER", func(r *flowlog.L7FlowLog) driver.Value { return nullable(r.ResponseCode) }},
	{"response_exception", "VARCHAR", func(r *flowlog.L7FlowLog) driver.Value { return r.ResponseException }},
	{"response_result", "VARCHAR", func(r *flowlog.L7FlowLog) driver.Value { return r.ResponseResult }},
	{"request_length", "BIGINT", func(r *flowlog.L7FlowLog) driver.Value { return r.RequestLength }},
	{"response_length", "BIGINT", func(r *flowlog.L7FlowLog) driver.Value { return r.ResponseLength }},
	{"captured_request_byte", "UINTEGER", func(r *flowlog.L7FlowLog) driver.Value { return r.CapturedRequestByte }},
	{"captured_response_byte", "UINTEGER", func(r *flowlog.L7FlowLog) driver.Value { return r.CapturedResponseByte }},
	{"sql_affected_rows", "UBIGINT", func(r *flowlog.L7FlowLog) driver.Value { return nullable(r.SQLAffectedRows) }},
	{"trace_id", "VARCHAR", func(r *flowlog.L7FlowLog) driver.Value { return r.TraceID }},
	{"span_id", "VARCHAR", func(r *flowlog.L7FlowLog) driver.Value { return r.SpanID }},
	{"parent_span_id", "VARCHAR", func(r *flowlog.L7FlowLog) driver.Value { return r.ParentSpanID }},
	{"x_request_id_0", "VARCHAR", func(r *flowlog.L7FlowLog) driver.Value { return r.XRequestID0 }},
	{"x_request_id_1", "VARCHAR", func(r *flowlog.L7FlowLog) driver.Value { return r.XRequestID1 }},
	{"syscall_trace_id_request", "UBIGINT", func(r *flowlog.L7FlowLog) driver.Value { return r.SyscallTraceIDRequest }},
	{"syscall_trace_id_response", "UBIGINT", func(r *flowlog.L7FlowLog) driver.Value { return r.SyscallTraceIDResponse }},
	{"syscall_thread_0", "UINTEGER", func(r *flowlog.L7FlowLog) driver.Value { return r.SyscallThread0 }},
	{"syscall_thread_1", "UINTEGER", func(r *flowlog.L7FlowLog) driver.Value { return r.SyscallThread1 }},
	{"syscall_coroutine_0", "UBIGINT", func(r *flowlog.L7FlowLog) driver.Value { return r.SyscallCoroutine0 }},
	{"syscall_coroutine_1", "UBIGINT", func(r *flowlog.L7FlowLog) driver.Value { return r.SyscallCoroutine1 }},
	{"syscall_cap_seq_0", "UINTEGER", func(r *flowlog.L7FlowLog) driver.Value { return r.SyscallCapSeq0 }},
	{"syscall_cap_seq_1", "UINTEGER", func(r *flowlog.L7FlowLog) driver.Value { return r.SyscallCapSeq1 }},
	{"req_tcp_seq", "UINTEGER", func(r *flowlog.L7FlowLog) driver.Value { return r.ReqTCPSeq }},
	{"resp_tcp_seq", "UINTEGER", func(r *flowlog.L7FlowLog) driver.Value { return r.RespTCPSeq }},
	// VARCHAR rather than INET: the inet extension is not available offline,
	// and a string compares/groups the same way on every engine.
	{"ip_0", "VARCHAR", func(r *flowlog.L7FlowLog) driver.Value { return addrString(r.IP0.IsValid(), r.IP0.String) }},
	{"ip_1", "VARCHAR", func(r *flowlog.L7FlowLog) driver.Value { return addrString(r.IP1.IsValid(), r.IP1.String) }},
	{"client_port", "USMALLINT", func(r *flowlog.L7FlowLog) driver.Value { return r.ClientPort }},
	{"server_port", "USMALLINT", func(r *flowlog.L7FlowLog) driver.Value { return r.ServerPort }},
	{"protocol", "UTINYINT", func(r *flowlog.L7FlowLog) driver.Value { return r.Protocol }},
	{"process_id_0", "UINTEGER", func(r *flowlog.L7FlowLog) driver.Value { return r.ProcessID0 }},
	{"process_id_1", "UINTEGER", func(r *flowlog.L7FlowLog) driver.Value { return r.ProcessID1 }},
	{"process_kname_0", "VARCHAR", func(r *flowlog.L7FlowLog) driver.Value { return r.ProcessKName0 }},
	{"process_kname_1", "VARCHAR", func(r *flowlog.L7FlowLog) driver.Value { return r.ProcessKName1 }},
	{"container_id_0", "VARCHAR", func(r *flowlog.L7FlowLog) driver.Value { return r.ContainerID0 }},
	{"container_id_1", "VARCHAR", func(r *flowlog.L7FlowLog) driver.Value { return r.ContainerID1 }},
	{"attributes", "MAP(VARCHAR, VARCHAR)", func(r *flowlog.L7FlowLog) driver.Value { return attributesValue(r.Attributes) }},
}

func nullable[T any](p *T) driver.Value {
	if p == nil {
		return nil
	}
	return *p
}

// addrString renders an address; the zero netip.Addr becomes "" rather than "invalid IP".
func addrString(valid bool, str func() string) driver.Value {
	if !valid {
		return ""
	}
	return str()
}

func attributesValue(attrs map[string]string) driver.Value {
	m := make(duck.Map, len(attrs))
	for k, v := range attrs {
		m[k] = v
	}
	return m
}

// quoteIdent quotes an SQL identifier (standard double quotes, also accepted by ClickHouse).
func quoteIdent(s string) string {
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}

func qualifiedL7Table() string { return quoteIdent(schemaName) + "." + quoteIdent(l7Table) }

// schemaDDL returns the statements that create the schema and the table and
// add any column missing from a table created by an older version.
func schemaDDL() []string {
	stmts := []string{"CREATE SCHEMA IF NOT EXISTS " + quoteIdent(schemaName)}
	stmts = append(stmts, tableDDL(qualifiedL7Table(), l7Columns)...)
	stmts = append(stmts, l4DDL()...)
	return append(stmts, linkDDL()...)
}

// tableDDL creates a table from its columns and adds any column missing from
// a table created by an older version.
func tableDDL[R any](table string, cols []column[R]) []string {
	defs := make([]string, len(cols))
	for i, c := range cols {
		defs[i] = quoteIdent(c.name) + " " + c.typ
	}
	stmts := []string{fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s (\n\t%s\n)", table, strings.Join(defs, ",\n\t"))}
	for _, c := range cols {
		// Added columns cannot be NOT NULL without a default; old rows read as NULL.
		stmts = append(stmts, fmt.Sprintf("ALTER TABLE %s ADD COLUMN IF NOT EXISTS %s %s",
			table, quoteIdent(c.name), strings.TrimSuffix(c.typ, " NOT NULL")))
	}
	return stmts
}

// columnNames lists cols' names in order (the appender's column order).
func columnNames[R any](cols []column[R]) []string {
	names := make([]string, len(cols))
	for i, c := range cols {
		names[i] = c.name
	}
	return names
}

func l7ColumnNames() []string { return columnNames(l7Columns) }
