package duckdb

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"strings"
	"time"

	duck "github.com/duckdb/duckdb-go/v2"

	"github.com/sightline-io/sightline/flowlog"
	"github.com/sightline-io/sightline/server/trace/linkkey"
)

// LinkIndex selects how the store indexes l7_flow_log for trace assembly.
type LinkIndex int

// Measured with BenchmarkAssemble in server/trace (a 100-span trace among
// 10M generated rows over 1 h, 2 cores): scans of time windows (None) were
// fastest, link keys (Keys) about 1.7x slower per assembly (each round adds a
// lookup in l7_link_key, which spans the widest window of the round, before
// fetching rows), ART indexes no faster and 10x slower to insert into. Hence
// the default.
const (
	// LinkIndexDefault is LinkIndexNone.
	LinkIndexDefault LinkIndex = iota
	// LinkIndexNone adds nothing: assembly scans l7_flow_log within each
	// lookup's time window. Rows arrive in time order, so DuckDB's zonemaps
	// skip all row groups outside the window, and the equality filters run
	// on the few left. ClickHouse variant: l7_flow_log ORDER BY (time, ...)
	// gives the same pruning through the primary key, with bloom_filter skip
	// indexes on trace_id and x_request_id_0/1 for the wide windows.
	LinkIndexNone
	// LinkIndexKeys writes, in the same transaction as each l7_flow_log
	// batch, one l7_link_key row (key, time, _id) per linking identifier of
	// each row (see package linkkey). Assembly then looks keys up in that
	// narrow table and fetches the rows by _id.
	//
	// ClickHouse variant: the same table as MergeTree ORDER BY (key, time),
	// filled by the ingester in the same INSERT batch (or by a materialized
	// view over l7_flow_log), so a lookup is a primary-key range read.
	LinkIndexKeys
	// LinkIndexART adds DuckDB ART indexes (CREATE INDEX) on the lookup
	// columns of l7_flow_log. ClickHouse variant: bloom_filter skip indexes
	// (INDEX ... TYPE bloom_filter GRANULARITY 4) on the same columns.
	LinkIndexART
)

func (m LinkIndex) String() string {
	switch m {
	case LinkIndexDefault, LinkIndexNone:
		return "none"
	case LinkIndexKeys:
		return "keys"
	case LinkIndexART:
		return "art"
	}
	return fmt.Sprintf("LinkIndex(%d)", int(m))
}

func (m LinkIndex) resolve() LinkIndex {
	if m == LinkIndexDefault {
		return LinkIndexNone
	}
	return m
}

const linkTable = "l7_link_key"

func qualifiedLinkTable() string { return quoteIdent(schemaName) + "." + quoteIdent(linkTable) }

// artColumns are the l7_flow_log columns LinkIndexART indexes.
var artColumns = []string{
	"req_tcp_seq", "resp_tcp_seq", "syscall_trace_id_request", "syscall_trace_id_response",
	"trace_id", "x_request_id_0", "x_request_id_1",
}

// linkDDL creates the link key table. Its rows are appended in time order,
// so DuckDB's zonemaps on time prune a lookup's window.
func linkDDL() []string {
	return []string{fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s (\n\t\"key\" UBIGINT NOT NULL,\n\t\"time\" TIMESTAMP NOT NULL,\n\t\"_id\" UBIGINT NOT NULL\n)", qualifiedLinkTable())}
}

// artDDL creates (on) or drops (off) the ART indexes of LinkIndexART.
func artDDL(on bool) []string {
	var stmts []string
	for _, c := range artColumns {
		name := quoteIdent("l7_art_" + c)
		if on {
			stmts = append(stmts, fmt.Sprintf("CREATE INDEX IF NOT EXISTS %s ON %s (%s)", name, qualifiedL7Table(), quoteIdent(c)))
		} else {
			stmts = append(stmts, "DROP INDEX IF EXISTS "+quoteIdent(schemaName)+"."+name)
		}
	}
	return stmts
}

// LinkKeys reports whether l7_link_key holds the link keys of every
// l7_flow_log row (Options.LinkIndex is LinkIndexKeys). Trace assembly uses
// it to choose key lookups over scans.
func (s *Store) LinkKeys() bool { return s.opts.LinkIndex.resolve() == LinkIndexKeys }

// initLinks prepares the chosen link index: in LinkIndexKeys it backfills the
// keys of rows stored without them (a store created by an older version, or
// opened with another LinkIndex since).
func (s *Store) initLinks(ctx context.Context) error {
	mode := s.opts.LinkIndex.resolve()
	for _, stmt := range artDDL(mode == LinkIndexART) {
		if _, err := s.conn.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("link index (%s): %w", mode, err)
		}
	}
	if mode != LinkIndexKeys {
		return nil
	}
	var last sql.Null[uint64]
	if err := s.conn.QueryRowContext(ctx, "SELECT max(_id) FROM "+qualifiedLinkTable()).Scan(&last); err != nil {
		return fmt.Errorf("read max link key _id: %w", err)
	}
	if s.nextID <= last.V+1 {
		return nil
	}
	began := time.Now()
	n, err := s.backfillLinkKeys(ctx, last.V+1, s.nextID)
	if err != nil {
		return err
	}
	s.log.Info("duckdb: backfilled trace link keys", "rows", s.nextID-last.V-1, "keys", n, "took", time.Since(began).Round(time.Millisecond))
	return nil
}

// linkFields returns the key fields of a row as stored.
func linkFields(r *flowlog.L7FlowLog) linkkey.Fields {
	ip := func(valid bool, str func() string) string {
		if !valid {
			return ""
		}
		return str()
	}
	return linkkey.Fields{
		ObservationPoint: r.ObservationPoint, AgentID: r.AgentID,
		IP0: ip(r.IP0.IsValid(), r.IP0.String), IP1: ip(r.IP1.IsValid(), r.IP1.String),
		ClientPort: r.ClientPort, ServerPort: r.ServerPort, Protocol: r.Protocol,
		ReqTCPSeq: r.ReqTCPSeq, RespTCPSeq: r.RespTCPSeq,
		SyscallReq: r.SyscallTraceIDRequest, SyscallResp: r.SyscallTraceIDResponse,
		TraceID: r.TraceID, XRequestID0: r.XRequestID0, XRequestID1: r.XRequestID1,
	}
}

// linkAppenderLocked returns the link key appender, creating it on s.conn.
func (s *Store) linkAppenderLocked() (*duck.Appender, error) {
	if s.linkAppender != nil {
		return s.linkAppender, nil
	}
	err := s.conn.Raw(func(dc any) error {
		a, err := duck.NewAppenderWithColumns(dc.(driver.Conn), "", schemaName, linkTable, []string{"key", "time", "_id"})
		if err != nil {
			return err
		}
		s.linkAppender = a
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("create link key appender: %w", err)
	}
	return s.linkAppender, nil
}

func (s *Store) discardLinkLocked() {
	if s.linkAppender == nil {
		return
	}
	if err := s.linkAppender.Clear(); err != nil {
		s.log.Debug("duckdb: discard link appender", "error", err)
	}
	if err := s.linkAppender.Close(); err != nil {
		s.log.Debug("duckdb: close link appender", "error", err)
	}
	s.linkAppender = nil
}

// beginLocked starts an explicit transaction on the appender connection;
// the returned function commits (err == nil) or rolls back.
func (s *Store) beginLocked(ctx context.Context) (func(err error) error, error) {
	if _, err := s.conn.ExecContext(ctx, "BEGIN TRANSACTION"); err != nil {
		return nil, fmt.Errorf("begin: %w", err)
	}
	return func(err error) error {
		if err == nil {
			if _, cerr := s.conn.ExecContext(ctx, "COMMIT"); cerr == nil {
				return nil
			} else {
				err = fmt.Errorf("commit: %w", cerr)
			}
		}
		if _, rerr := s.conn.ExecContext(context.WithoutCancel(ctx), "ROLLBACK"); rerr != nil {
			s.log.Debug("duckdb: rollback", "error", rerr)
		}
		return err
	}, nil
}

// appendLinkKeysLocked appends the keys of rows (whose _ids are ids) and flushes.
func (s *Store) appendLinkKeysLocked(ctx context.Context, rows []flowlog.L7FlowLog, ids []uint64) error {
	a, err := s.linkAppenderLocked()
	if err != nil {
		return err
	}
	var keys []uint64
	for i := range rows {
		f := linkFields(&rows[i])
		keys = f.Append(keys[:0])
		for _, k := range keys {
			if err := a.AppendRow(k, rows[i].Time, ids[i]); err != nil {
				s.discardLinkLocked()
				return fmt.Errorf("append link key of row %d: %w", i, err)
			}
		}
	}
	if err := a.FlushWithCancel(ctx); err != nil {
		s.discardLinkLocked()
		return fmt.Errorf("flush link keys: %w", err)
	}
	return nil
}

// linkSelect reads the key fields of stored rows.
const linkSelect = `SELECT _id, "time", observation_point, agent_id, ip_0, ip_1, client_port, server_port, protocol,
	req_tcp_seq, resp_tcp_seq, syscall_trace_id_request, syscall_trace_id_response, trace_id, x_request_id_0, x_request_id_1 FROM `

// backfillChunk is how many _ids one backfill step reads (sorted by _id, so
// that keys are appended in time order).
const backfillChunk = 200_000

// backfillLinkKeys writes the link keys of rows with from <= _id < to and
// returns how many keys it wrote; each chunk is its own transaction.
func (s *Store) backfillLinkKeys(ctx context.Context, from, to uint64) (int64, error) {
	var total int64
	for lo := from; lo < to; lo += backfillChunk {
		hi := min(lo+backfillChunk, to)
		n, err := s.backfillChunkLocked(ctx, lo, hi)
		if err != nil {
			return total, fmt.Errorf("backfill link keys of _id [%d, %d): %w", lo, hi, err)
		}
		total += n
	}
	return total, nil
}

func (s *Store) backfillChunkLocked(ctx context.Context, lo, hi uint64) (n int64, err error) {
	a, err := s.linkAppenderLocked()
	if err != nil {
		return 0, err
	}
	end, err := s.beginLocked(ctx)
	if err != nil {
		return 0, err
	}
	defer func() { err = end(err) }()
	rs, err := s.conn.QueryContext(ctx, linkSelect+qualifiedL7Table()+" WHERE _id >= ? AND _id < ? ORDER BY _id", lo, hi)
	if err != nil {
		return 0, fmt.Errorf("read rows: %w", err)
	}
	type stored struct {
		id uint64
		at time.Time
		f  linkkey.Fields
	}
	var (
		batch []stored
		keys  []uint64
	)
	for rs.Next() {
		var r stored
		var obs, agent, ip0, ip1, tid, x0, x1 sql.NullString
		var cport, sport sql.Null[uint16]
		var proto sql.Null[uint8]
		var reqSeq, respSeq sql.Null[uint32]
		var sysReq, sysResp sql.Null[uint64]
		if err := rs.Scan(&r.id, &r.at, &obs, &agent, &ip0, &ip1, &cport, &sport, &proto,
			&reqSeq, &respSeq, &sysReq, &sysResp, &tid, &x0, &x1); err != nil {
			rs.Close()
			return 0, fmt.Errorf("scan row: %w", err)
		}
		r.f = linkkey.Fields{
			ObservationPoint: obs.String, AgentID: agent.String, IP0: ip0.String, IP1: ip1.String,
			ClientPort: cport.V, ServerPort: sport.V, Protocol: proto.V, ReqTCPSeq: reqSeq.V, RespTCPSeq: respSeq.V,
			SyscallReq: sysReq.V, SyscallResp: sysResp.V, TraceID: tid.String, XRequestID0: x0.String, XRequestID1: x1.String,
		}
		batch = append(batch, r)
	}
	if err := errors.Join(rs.Err(), rs.Close()); err != nil {
		return 0, fmt.Errorf("read rows: %w", err)
	}
	for i := range batch {
		keys = batch[i].f.Append(keys[:0])
		for _, k := range keys {
			if err := a.AppendRow(k, batch[i].at, batch[i].id); err != nil {
				s.discardLinkLocked()
				return 0, fmt.Errorf("append link key: %w", err)
			}
			n++
		}
	}
	if err := a.FlushWithCancel(ctx); err != nil {
		s.discardLinkLocked()
		return 0, fmt.Errorf("flush link keys: %w", err)
	}
	return n, nil
}

// InsertL7Select appends to l7_flow_log the rows that query (one SELECT)
// returns. Its result columns are matched to l7_flow_log's by name (missing
// ones are NULL; _id must not be among them: rows get the next _ids in the
// query's order). Link keys are written as for InsertL7. It is meant for
// generating large synthetic stores (benchmarks, demos) with SQL, e.g.
// SELECT ... FROM range(10000000); it returns the number of rows appended.
// The query is run as is: never pass it user input.
func (s *Store) InsertL7Select(ctx context.Context, query string) (int64, error) {
	if strings.TrimSpace(query) == "" {
		return 0, errors.New("insert select: empty query")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, ErrClosed
	}
	first := s.nextID
	res, err := s.conn.ExecContext(ctx, fmt.Sprintf("INSERT INTO %s BY NAME SELECT %d + row_number() OVER () - 1 AS _id, q.* FROM (%s) AS q",
		qualifiedL7Table(), first, query))
	if err != nil {
		return 0, fmt.Errorf("insert select: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("insert select: rows affected: %w", err)
	}
	s.nextID = first + uint64(n)
	s.stat.rowsInserted.Add(uint64(n))
	if s.LinkKeys() {
		if _, err := s.backfillLinkKeys(ctx, first, s.nextID); err != nil {
			return n, err
		}
	}
	return n, nil
}
