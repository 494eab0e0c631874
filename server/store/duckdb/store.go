// Package duckdb is Sightline's embedded store: flow logs in a DuckDB file,
// appended in bulk and queried with read-only SQL.
package duckdb

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	duck "github.com/duckdb/duckdb-go/v2"

	"github.com/sightline-io/sightline/flowlog"
	"github.com/sightline-io/sightline/server/store"
)

// FileName is the database file created inside the data directory.
const FileName = "sightline.duckdb"

// Defaults for zero Options fields.
const (
	DefaultRetention            = 7 * 24 * time.Hour
	DefaultMaxRows              = 10000
	DefaultQueryTimeout         = 60 * time.Second
	DefaultMaxConcurrentQueries = 8
)

// ErrClosed is returned by operations on a closed Store.
var ErrClosed = errors.New("duckdb store: closed")

// Options tune a Store. The zero value is usable.
type Options struct {
	// Retention is how long rows are kept (by their time column); 0 means
	// DefaultRetention, a negative value keeps rows forever.
	Retention time.Duration
	// RetentionInterval is how often expired rows are deleted; 0 means
	// Retention/24, clamped to [1 minute, 1 hour].
	RetentionInterval time.Duration
	// MaxRows caps the rows a query returns; 0 means DefaultMaxRows.
	MaxRows int
	// QueryTimeout bounds a query whose context has no deadline; 0 means
	// DefaultQueryTimeout.
	QueryTimeout time.Duration
	// MaxConcurrentQueries bounds the connections used for queries; further
	// queries wait (until their context ends). 0 means DefaultMaxConcurrentQueries.
	MaxConcurrentQueries int
	// Logger receives operational messages; nil means slog.Default().
	Logger *slog.Logger
	// LinkIndex chooses the index trace assembly uses (see LinkIndex); the
	// zero value is LinkIndexNone.
	LinkIndex LinkIndex
}

func (o Options) withDefaults() Options {
	if o.Retention == 0 {
		o.Retention = DefaultRetention
	}
	if o.RetentionInterval <= 0 {
		o.RetentionInterval = min(max(o.Retention/24, time.Minute), time.Hour)
	}
	if o.MaxRows <= 0 {
		o.MaxRows = DefaultMaxRows
	}
	if o.QueryTimeout <= 0 {
		o.QueryTimeout = DefaultQueryTimeout
	}
	if o.MaxConcurrentQueries <= 0 {
		o.MaxConcurrentQueries = DefaultMaxConcurrentQueries
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// Stats are the store's counters since Open.
type Stats struct {
	RowsInserted     uint64 // rows appended and flushed
	InsertBatches    uint64 // successful InsertL7 calls
	InsertErrors     uint64 // failed InsertL7 calls (their rows are dropped)
	RowsDropped      uint64 // rows of failed InsertL7 calls
	Queries          uint64 // Query calls
	QueryErrors      uint64 // queries rejected or failed
	QueriesTruncated uint64 // queries whose result was cut at MaxRows
	RowsExpired      uint64 // rows deleted by retention
	RetentionErrors  uint64 // failed retention runs
	L4RowsInserted   uint64 // l4_flow_log rows appended and flushed
	L4InsertErrors   uint64 // failed InsertL4 calls
	L4RowsDropped    uint64 // rows of failed InsertL4 calls
}

type counters struct {
	rowsInserted, insertBatches, insertErrors, rowsDropped atomic.Uint64
	queries, queryErrors, queriesTruncated                 atomic.Uint64
	rowsExpired, retentionErrors                           atomic.Uint64
	l4RowsInserted, l4InsertErrors, l4RowsDropped          atomic.Uint64
}

// Store is a store.Store backed by an embedded DuckDB database.
type Store struct {
	db   *sql.DB
	opts Options
	log  *slog.Logger
	stat counters

	// mu serialises appends: one appender on one dedicated connection. It
	// also guards nextID so that assigned _id values increase in insert order.
	mu       sync.Mutex
	conn     *sql.Conn
	appender *duck.Appender
	// linkAppender appends l7_link_key rows on conn (LinkIndexKeys).
	linkAppender *duck.Appender
	nextID       uint64
	closed       bool

	// l4mu guards the l4_flow_log appender, on its own connection.
	l4mu       sync.Mutex
	l4conn     *sql.Conn
	l4appender *duck.Appender
	l4nextID   uint64
	l4closed   bool

	stopRetention context.CancelFunc
	retentionDone chan struct{}
	closeOnce     sync.Once
	closeErr      error
}

var _ store.Store = (*Store)(nil)

// Open opens (creating if needed) <dataDir>/sightline.duckdb, creates or
// migrates the flow_log schema, and starts the retention loop.
func Open(ctx context.Context, dataDir string, opts Options) (*Store, error) {
	opts = opts.withDefaults()
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	path := filepath.Join(dataDir, FileName)

	// The schema must exist before any connection sets its search_path, so it
	// is created through a plain handle first.
	if err := createSchema(ctx, path); err != nil {
		return nil, err
	}

	// External access is off: user SQL must not read or write host files or
	// load extensions. It does not affect the database file itself.
	connector, err := duck.NewConnector(path+"?enable_external_access=false", func(execer driver.ExecerContext) error {
		_, err := execer.ExecContext(context.Background(), "SET search_path = '"+schemaName+",main'", nil)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	db := sql.OpenDB(connector)
	// Queries, the appender's connection and the retention run.
	db.SetMaxOpenConns(opts.MaxConcurrentQueries + 2)
	db.SetMaxIdleConns(opts.MaxConcurrentQueries + 2)

	s := &Store{db: db, opts: opts, log: opts.Logger}
	if err := s.init(ctx); err != nil {
		return nil, errors.Join(err, db.Close())
	}

	if opts.Retention > 0 {
		rctx, cancel := context.WithCancel(context.Background())
		s.stopRetention = cancel
		s.retentionDone = make(chan struct{})
		go s.retentionLoop(rctx)
	}
	return s, nil
}

func createSchema(ctx context.Context, path string) error {
	db, err := sql.Open("duckdb", path)
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	for _, stmt := range schemaDDL() {
		if _, err := db.ExecContext(ctx, stmt); err != nil {
			return errors.Join(fmt.Errorf("create schema: %w", err), db.Close())
		}
	}
	if err := db.Close(); err != nil {
		return fmt.Errorf("close schema handle: %w", err)
	}
	return nil
}

func (s *Store) init(ctx context.Context) error {
	var maxID sql.Null[uint64]
	if err := s.db.QueryRowContext(ctx, "SELECT max(_id) FROM "+qualifiedL7Table()).Scan(&maxID); err != nil {
		return fmt.Errorf("read max _id: %w", err)
	}
	s.nextID = maxID.V + 1 // 1 for an empty table: 0 means "unassigned" in rows
	var maxL4 sql.Null[uint64]
	if err := s.db.QueryRowContext(ctx, "SELECT max(_id) FROM "+qualifiedL4Table()).Scan(&maxL4); err != nil {
		return fmt.Errorf("read max l4 _id: %w", err)
	}
	s.l4nextID = maxL4.V + 1

	conn, err := s.db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("appender connection: %w", err)
	}
	s.conn = conn
	if err := s.initLinks(ctx); err != nil {
		return errors.Join(err, conn.Close())
	}
	return nil
}

// InsertL7 appends rows to l7_flow_log through the DuckDB appender. Rows with
// ID 0 get the next _id; the batch is flushed (committed) before returning,
// and on error none of its rows are kept. Safe for concurrent use: callers
// are serialised, which is how the appender is fastest anyway.
func (s *Store) InsertL7(ctx context.Context, rows []flowlog.L7FlowLog) error {
	if len(rows) == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if err := s.appendLocked(ctx, rows); err != nil {
		s.stat.insertErrors.Add(1)
		s.stat.rowsDropped.Add(uint64(len(rows)))
		return err
	}
	s.stat.insertBatches.Add(1)
	s.stat.rowsInserted.Add(uint64(len(rows)))
	return nil
}

func (s *Store) appendLocked(ctx context.Context, rows []flowlog.L7FlowLog) (err error) {
	if s.appender == nil {
		if err := s.conn.Raw(func(dc any) error {
			a, err := duck.NewAppenderWithColumns(dc.(driver.Conn), "", schemaName, l7Table, l7ColumnNames())
			if err != nil {
				return err
			}
			s.appender = a
			return nil
		}); err != nil {
			return fmt.Errorf("create appender: %w", err)
		}
	}

	// With link keys, the rows and their keys are one transaction.
	var ids []uint64
	if s.LinkKeys() {
		end, err := s.beginLocked(ctx)
		if err != nil {
			return err
		}
		defer func() { err = end(err) }()
		ids = make([]uint64, len(rows))
	}

	// Ids handed out are consumed even if the batch fails: a failed batch
	// larger than the engine's internal flush size may be partly stored.
	nextID := s.nextID
	defer func() { s.nextID = nextID }()
	values := make([]driver.Value, len(l7Columns))
	for i := range rows {
		row := &rows[i]
		id := row.ID
		if id == 0 {
			id = nextID
			nextID++
		} else if id >= nextID {
			// Keep later assigned ids above explicit ones (e.g. replayed rows).
			nextID = id + 1
		}
		values[0] = id
		if ids != nil {
			ids[i] = id
		}
		for c := 1; c < len(l7Columns); c++ {
			values[c] = l7Columns[c].value(row)
		}
		if err := s.appender.AppendRow(values...); err != nil {
			return s.discardLocked(fmt.Errorf("append row %d: %w", i, err))
		}
	}
	if err := s.appender.FlushWithCancel(ctx); err != nil {
		return s.discardLocked(fmt.Errorf("flush %d rows: %w", len(rows), err))
	}
	if ids != nil {
		if err := s.appendLinkKeysLocked(ctx, rows, ids); err != nil {
			return err
		}
	}
	return nil
}

// discardLocked drops the appender's buffered rows after a failed batch. A
// failed flush leaves the appender unusable, so it is closed and recreated on
// the next call.
func (s *Store) discardLocked(cause error) error {
	if err := s.appender.Clear(); err != nil {
		s.log.Warn("duckdb: discard appender after error", "error", err)
	}
	// Close also flushes; after Clear there is nothing left to flush.
	if err := s.appender.Close(); err != nil {
		s.log.Debug("duckdb: close appender after error", "error", err)
	}
	s.appender = nil
	return cause
}

// PurgeExpired deletes rows whose time is older than the retention period and
// returns how many it deleted. The retention loop calls it periodically.
func (s *Store) PurgeExpired(ctx context.Context) (int64, error) {
	if s.opts.Retention <= 0 {
		return 0, nil
	}
	cutoff := time.Now().Add(-s.opts.Retention).UTC()
	var total int64
	for _, table := range []string{qualifiedL7Table(), qualifiedL4Table(), qualifiedLinkTable()} {
		res, err := s.db.ExecContext(ctx, "DELETE FROM "+table+` WHERE "time" < ?`, cutoff)
		if err != nil {
			s.stat.retentionErrors.Add(1)
			return total, fmt.Errorf("delete rows of %s before %s: %w", table, cutoff.Format(time.RFC3339), err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return total, fmt.Errorf("rows deleted: %w", err)
		}
		if table != qualifiedLinkTable() { // link keys are not flow log rows
			total += n
		}
	}
	s.stat.rowsExpired.Add(uint64(total))
	return total, nil
}

func (s *Store) retentionLoop(ctx context.Context) {
	defer close(s.retentionDone)
	ticker := time.NewTicker(s.opts.RetentionInterval)
	defer ticker.Stop()
	for {
		n, err := s.PurgeExpired(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			s.log.Warn("duckdb: retention", "error", err)
		case n > 0:
			s.log.Info("duckdb: retention deleted expired rows", "rows", n, "retention", s.opts.Retention)
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.db.PingContext(ctx); err != nil {
		return fmt.Errorf("ping duckdb: %w", err)
	}
	var one int
	if err := s.db.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil {
		return fmt.Errorf("ping duckdb: %w", err)
	}
	return nil
}

// Stats returns a snapshot of the store's counters.
func (s *Store) Stats() Stats {
	return Stats{
		RowsInserted:     s.stat.rowsInserted.Load(),
		InsertBatches:    s.stat.insertBatches.Load(),
		InsertErrors:     s.stat.insertErrors.Load(),
		RowsDropped:      s.stat.rowsDropped.Load(),
		Queries:          s.stat.queries.Load(),
		QueryErrors:      s.stat.queryErrors.Load(),
		QueriesTruncated: s.stat.queriesTruncated.Load(),
		RowsExpired:      s.stat.rowsExpired.Load(),
		RetentionErrors:  s.stat.retentionErrors.Load(),
		L4RowsInserted:   s.stat.l4RowsInserted.Load(),
		L4InsertErrors:   s.stat.l4InsertErrors.Load(),
		L4RowsDropped:    s.stat.l4RowsDropped.Load(),
	}
}

// Close stops retention, flushes the appender, checkpoints the WAL into the
// database file and closes it. Later calls return the first call's result.
func (s *Store) Close() error {
	s.closeOnce.Do(func() { s.closeErr = s.close() })
	return s.closeErr
}

func (s *Store) close() error {
	if s.stopRetention != nil {
		s.stopRetention()
		<-s.retentionDone
	}
	var errs []error
	if err := s.closeL4(); err != nil {
		errs = append(errs, fmt.Errorf("close l4 appender: %w", err))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true

	if s.appender != nil {
		if err := s.appender.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close appender: %w", err))
		}
		s.appender = nil
	}
	if s.linkAppender != nil {
		if err := s.linkAppender.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close link key appender: %w", err))
		}
		s.linkAppender = nil
	}
	if _, err := s.conn.ExecContext(context.Background(), "CHECKPOINT"); err != nil {
		errs = append(errs, fmt.Errorf("checkpoint: %w", err))
	}
	if err := s.conn.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close appender connection: %w", err))
	}
	if err := s.db.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close database: %w", err))
	}
	return errors.Join(errs...)
}
