package duckdb

import (
	"context"
	"database/sql/driver"
	"fmt"
	"strings"

	duck "github.com/duckdb/duckdb-go/v2"

	"github.com/sightline-io/sightline/flowlog"
)

const (
	l4Table = "l4_flow_log"
	// metricsSchema holds the network rollups, as DeepFlow's flow_metrics
	// database holds "network.1s" and "network.1m".
	metricsSchema = "flow_metrics"
)

// l4Columns is the single definition of the l4_flow_log schema.
var l4Columns = []column[flowlog.L4FlowLog]{
	{"_id", "UBIGINT NOT NULL", func(r *flowlog.L4FlowLog) driver.Value { return r.ID }},
	{"time", "TIMESTAMP NOT NULL", func(r *flowlog.L4FlowLog) driver.Value { return r.Time }},
	{"start_time", "TIMESTAMP", func(r *flowlog.L4FlowLog) driver.Value { return r.StartTime }},
	{"end_time", "TIMESTAMP", func(r *flowlog.L4FlowLog) driver.Value { return r.EndTime }},
	{"duration", "UBIGINT", func(r *flowlog.L4FlowLog) driver.Value { return r.Duration }},
	{"agent_id", "VARCHAR", func(r *flowlog.L4FlowLog) driver.Value { return r.AgentID }},
	{"host", "VARCHAR", func(r *flowlog.L4FlowLog) driver.Value { return r.Host }},
	{"org_id", "USMALLINT", func(r *flowlog.L4FlowLog) driver.Value { return r.OrgID }},
	{"team_id", "USMALLINT", func(r *flowlog.L4FlowLog) driver.Value { return r.TeamID }},
	{"signal_source", "UTINYINT", func(r *flowlog.L4FlowLog) driver.Value { return uint8(r.SignalSource) }},
	{"observation_point", "VARCHAR", func(r *flowlog.L4FlowLog) driver.Value { return r.ObservationPoint }},
	{"ip_0", "VARCHAR", func(r *flowlog.L4FlowLog) driver.Value { return addrString(r.IP0.IsValid(), r.IP0.String) }},
	{"ip_1", "VARCHAR", func(r *flowlog.L4FlowLog) driver.Value { return addrString(r.IP1.IsValid(), r.IP1.String) }},
	{"client_port", "USMALLINT", func(r *flowlog.L4FlowLog) driver.Value { return r.ClientPort }},
	{"server_port", "USMALLINT", func(r *flowlog.L4FlowLog) driver.Value { return r.ServerPort }},
	{"protocol", "UTINYINT", func(r *flowlog.L4FlowLog) driver.Value { return r.Protocol }},
	{"l7_protocol", "UTINYINT", func(r *flowlog.L4FlowLog) driver.Value { return uint8(r.L7Protocol) }},
	{"byte_tx", "UBIGINT", func(r *flowlog.L4FlowLog) driver.Value { return r.ByteTx }},
	{"byte_rx", "UBIGINT", func(r *flowlog.L4FlowLog) driver.Value { return r.ByteRx }},
	{"packet_tx", "UBIGINT", func(r *flowlog.L4FlowLog) driver.Value { return r.PacketTx }},
	{"packet_rx", "UBIGINT", func(r *flowlog.L4FlowLog) driver.Value { return r.PacketRx }},
	{"rtt", "UINTEGER", func(r *flowlog.L4FlowLog) driver.Value { return r.RTT }},
	{"rtt_client", "UINTEGER", func(r *flowlog.L4FlowLog) driver.Value { return r.RTTClient }},
	{"rtt_server", "UINTEGER", func(r *flowlog.L4FlowLog) driver.Value { return r.RTTServer }},
	{"srt_sum", "UBIGINT", func(r *flowlog.L4FlowLog) driver.Value { return r.SRTSum }},
	{"srt_count", "UINTEGER", func(r *flowlog.L4FlowLog) driver.Value { return r.SRTCount }},
	{"srt_max", "UINTEGER", func(r *flowlog.L4FlowLog) driver.Value { return r.SRTMax }},
	{"art_sum", "UBIGINT", func(r *flowlog.L4FlowLog) driver.Value { return r.ARTSum }},
	{"art_count", "UINTEGER", func(r *flowlog.L4FlowLog) driver.Value { return r.ARTCount }},
	{"art_max", "UINTEGER", func(r *flowlog.L4FlowLog) driver.Value { return r.ARTMax }},
	{"retrans_tx", "UINTEGER", func(r *flowlog.L4FlowLog) driver.Value { return r.RetransTx }},
	{"retrans_rx", "UINTEGER", func(r *flowlog.L4FlowLog) driver.Value { return r.RetransRx }},
	{"zero_win_tx", "UINTEGER", func(r *flowlog.L4FlowLog) driver.Value { return r.ZeroWinTx }},
	{"zero_win_rx", "UINTEGER", func(r *flowlog.L4FlowLog) driver.Value { return r.ZeroWinRx }},
	{"out_of_order", "UINTEGER", func(r *flowlog.L4FlowLog) driver.Value { return r.OutOfOrder }},
	{"syn_count", "UINTEGER", func(r *flowlog.L4FlowLog) driver.Value { return r.SYNCount }},
	{"synack_count", "UINTEGER", func(r *flowlog.L4FlowLog) driver.Value { return r.SYNACKCount }},
	{"retrans_syn", "UINTEGER", func(r *flowlog.L4FlowLog) driver.Value { return r.RetransSYN }},
	{"retrans_synack", "UINTEGER", func(r *flowlog.L4FlowLog) driver.Value { return r.RetransSYNACK }},
	{"fin_count", "UINTEGER", func(r *flowlog.L4FlowLog) driver.Value { return r.FINCount }},
	{"rst_count", "UINTEGER", func(r *flowlog.L4FlowLog) driver.Value { return r.RSTCount }},
	{"close_type", "UTINYINT", func(r *flowlog.L4FlowLog) driver.Value { return uint8(r.CloseType) }},
	{"is_new_flow", "BOOLEAN", func(r *flowlog.L4FlowLog) driver.Value { return r.IsNewFlow }},
	{"is_closed", "BOOLEAN", func(r *flowlog.L4FlowLog) driver.Value { return r.IsClosed }},
	{"process_id_0", "UINTEGER", func(r *flowlog.L4FlowLog) driver.Value { return r.ProcessID0 }},
	{"process_id_1", "UINTEGER", func(r *flowlog.L4FlowLog) driver.Value { return r.ProcessID1 }},
	{"process_kname_0", "VARCHAR", func(r *flowlog.L4FlowLog) driver.Value { return r.ProcessKName0 }},
	{"process_kname_1", "VARCHAR", func(r *flowlog.L4FlowLog) driver.Value { return r.ProcessKName1 }},
}

func qualifiedL4Table() string { return quoteIdent(schemaName) + "." + quoteIdent(l4Table) }

// Close types grouped as the derived network metrics count them.
var (
	clientEstablishFail = closeSet(flowlog.CloseEstClientACKMiss, flowlog.CloseEstClientPortReuse, flowlog.CloseEstClientOtherRST)
	serverEstablishFail = closeSet(flowlog.CloseEstServerSYNMiss, flowlog.CloseEstServerDirectRST, flowlog.CloseEstServerOtherRST)
	transferFail        = closeSet(flowlog.CloseTransferServerRST, flowlog.CloseTransferTimeout, flowlog.CloseTransferClientRST,
		flowlog.CloseTransferServerQueueLack, flowlog.CloseClientHalfClose, flowlog.CloseServerHalfClose)
	rstFail = closeSet(flowlog.CloseTransferServerRST, flowlog.CloseTransferClientRST, flowlog.CloseEstServerDirectRST,
		flowlog.CloseEstClientOtherRST, flowlog.CloseEstServerOtherRST, flowlog.CloseNormalClientRST)
	serverReset = closeSet(flowlog.CloseTransferServerRST, flowlog.CloseEstServerDirectRST, flowlog.CloseEstServerOtherRST)
)

func closeSet(cs ...flowlog.CloseType) string {
	parts := make([]string, len(cs))
	for i, c := range cs {
		parts[i] = fmt.Sprint(uint8(c))
	}
	return "(" + strings.Join(parts, ", ") + ")"
}

// networkView is the SQL of a per-edge rollup of l4_flow_log at one time
// granularity (a date_trunc unit). Rows report a flow per period, so a
// bucket holds what the periods that ended in it carried. Plain aggregate
// SQL: ClickHouse runs it too (as a materialized view there).
func networkView(unit string) string {
	return fmt.Sprintf(`SELECT
	date_trunc('%[1]s', time) AS time,
	agent_id, host, observation_point, signal_source,
	ip_0, ip_1, server_port, protocol, l7_protocol,
	process_id_0, process_kname_0, process_id_1, process_kname_1,
	sum(CASE WHEN is_new_flow THEN 1 ELSE 0 END) AS new_flow,
	sum(CASE WHEN is_closed THEN 1 ELSE 0 END) AS closed_flow,
	sum(byte_tx + byte_rx) AS byte, sum(byte_tx) AS byte_tx, sum(byte_rx) AS byte_rx,
	sum(packet_tx + packet_rx) AS packet, sum(packet_tx) AS packet_tx, sum(packet_rx) AS packet_rx,
	avg(CASE WHEN rtt > 0 THEN rtt END) AS rtt, max(rtt) AS rtt_max,
	sum(srt_sum) / nullif(sum(srt_count), 0) AS srt, max(srt_max) AS srt_max,
	sum(art_sum) / nullif(sum(art_count), 0) AS art, max(art_max) AS art_max,
	sum(retrans_tx + retrans_rx) AS retrans,
	sum(retrans_tx + retrans_rx) / nullif(sum(packet_tx + packet_rx), 0) AS retrans_ratio,
	sum(zero_win_tx + zero_win_rx) AS zero_win,
	sum(CASE WHEN close_type IN %[2]s OR close_type IN %[3]s THEN 1 ELSE 0 END) AS tcp_establish_fail,
	sum(CASE WHEN close_type IN %[2]s THEN 1 ELSE 0 END) AS client_establish_fail,
	sum(CASE WHEN close_type IN %[3]s THEN 1 ELSE 0 END) AS server_establish_fail,
	sum(CASE WHEN close_type IN %[4]s THEN 1 ELSE 0 END) AS tcp_transfer_fail,
	sum(CASE WHEN close_type IN %[5]s THEN 1 ELSE 0 END) AS tcp_rst_fail,
	sum(CASE WHEN close_type = %[6]d THEN 1 ELSE 0 END) AS tcp_timeout,
	sum(CASE WHEN close_type IN %[7]s THEN 1 ELSE 0 END) AS server_reset,
	sum(CASE WHEN close_type = %[8]d THEN 1 ELSE 0 END) AS server_queue_lack
FROM %[9]s
GROUP BY ALL`, unit, clientEstablishFail, serverEstablishFail, transferFail, rstFail,
		flowlog.CloseTransferTimeout, serverReset, flowlog.CloseTransferServerQueueLack, qualifiedL4Table())
}

// l4DDL creates (and migrates) l4_flow_log and the network rollup views:
// flow_metrics."network.1s" and flow_metrics."network.1m" as in DeepFlow,
// and network_1s / network_1m, which need no quoting.
func l4DDL() []string {
	stmts := tableDDL(qualifiedL4Table(), l4Columns)
	stmts = append(stmts, "CREATE SCHEMA IF NOT EXISTS "+quoteIdent(metricsSchema))
	for _, v := range []struct{ name, unit string }{
		{"network.1s", "second"}, {"network.1m", "minute"}, {"network_1s", "second"}, {"network_1m", "minute"},
	} {
		stmts = append(stmts, fmt.Sprintf("CREATE OR REPLACE VIEW %s.%s AS %s",
			quoteIdent(metricsSchema), quoteIdent(v.name), networkView(v.unit)))
	}
	return stmts
}

// InsertL4 appends rows to l4_flow_log, as InsertL7 does for l7_flow_log
// (its own connection and appender; rows with ID 0 get the next _id).
func (s *Store) InsertL4(ctx context.Context, rows []flowlog.L4FlowLog) error {
	if len(rows) == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	s.l4mu.Lock()
	defer s.l4mu.Unlock()
	if s.l4closed {
		return ErrClosed
	}
	if err := s.appendL4Locked(ctx, rows); err != nil {
		s.stat.l4InsertErrors.Add(1)
		s.stat.l4RowsDropped.Add(uint64(len(rows)))
		return err
	}
	s.stat.l4RowsInserted.Add(uint64(len(rows)))
	return nil
}

func (s *Store) appendL4Locked(ctx context.Context, rows []flowlog.L4FlowLog) error {
	if s.l4appender == nil {
		if s.l4conn == nil {
			conn, err := s.db.Conn(ctx)
			if err != nil {
				return fmt.Errorf("l4 appender connection: %w", err)
			}
			s.l4conn = conn
		}
		if err := s.l4conn.Raw(func(dc any) error {
			a, err := duck.NewAppenderWithColumns(dc.(driver.Conn), "", schemaName, l4Table, columnNames(l4Columns))
			if err != nil {
				return err
			}
			s.l4appender = a
			return nil
		}); err != nil {
			return fmt.Errorf("create l4 appender: %w", err)
		}
	}
	values := make([]driver.Value, len(l4Columns))
	for i := range rows {
		row := &rows[i]
		if row.ID == 0 {
			row.ID = s.l4nextID
		}
		if row.ID >= s.l4nextID {
			s.l4nextID = row.ID + 1
		}
		for c := range l4Columns {
			values[c] = l4Columns[c].value(row)
		}
		if err := s.l4appender.AppendRow(values...); err != nil {
			return s.discardL4Locked(fmt.Errorf("append l4 row %d: %w", i, err))
		}
	}
	if err := s.l4appender.FlushWithCancel(ctx); err != nil {
		return s.discardL4Locked(fmt.Errorf("flush %d l4 rows: %w", len(rows), err))
	}
	return nil
}

func (s *Store) discardL4Locked(cause error) error {
	if err := s.l4appender.Clear(); err != nil {
		s.log.Warn("duckdb: discard l4 appender after error", "error", err)
	}
	if err := s.l4appender.Close(); err != nil {
		s.log.Warn("duckdb: close l4 appender after error", "error", err)
	}
	s.l4appender = nil
	return cause
}

// closeL4 releases the l4 appender and its connection.
func (s *Store) closeL4() error {
	s.l4mu.Lock()
	defer s.l4mu.Unlock()
	s.l4closed = true
	var err error
	if s.l4appender != nil {
		err = s.l4appender.Close()
		s.l4appender = nil
	}
	if s.l4conn != nil {
		if cerr := s.l4conn.Close(); err == nil {
			err = cerr
		}
		s.l4conn = nil
	}
	return err
}
