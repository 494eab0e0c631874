package duckdb

import (
	"context"
	"database/sql/driver"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"math/big"
	"strings"
	"time"

	duck "github.com/duckdb/duckdb-go/v2"

	"github.com/sightline-io/sightline/server/store"
)

// Query runs one read-only statement (SELECT, WITH, VALUES, DESCRIBE, SHOW,
// SUMMARIZE, PRAGMA table_info-like, EXPLAIN) and returns at most
// Options.MaxRows rows. The statement type comes from DuckDB's parser; it also
// runs inside a READ ONLY transaction, so EXPLAIN ANALYZE of a write cannot
// write. User errors (rejected statements, bad SQL) are *store.QueryError.
func (s *Store) Query(ctx context.Context, query string) (*store.Result, error) {
	s.stat.queries.Add(1)
	res, err := s.query(ctx, query)
	if err != nil {
		s.stat.queryErrors.Add(1)
		return nil, err
	}
	return res, nil
}

func (s *Store) query(ctx context.Context, query string) (*store.Result, error) {
	if strings.TrimSpace(query) == "" {
		return nil, &store.QueryError{Msg: "empty query"}
	}
	rewritten, err := rewriteEnum(query)
	if err != nil {
		return nil, err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.opts.QueryTimeout)
		defer cancel()
	}

	conn, err := s.db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("query connection: %w", err)
	}
	defer conn.Close()

	var res *store.Result
	err = conn.Raw(func(dc any) error {
		c, ok := dc.(*duck.Conn)
		if !ok {
			return fmt.Errorf("unexpected driver connection %T", dc)
		}
		var qerr error
		res, qerr = s.queryReadOnly(ctx, c, rewritten)
		return qerr
	})
	if err != nil {
		return nil, classify(ctx, err)
	}
	return res, nil
}

// queryReadOnly runs query inside BEGIN TRANSACTION READ ONLY ... ROLLBACK.
func (s *Store) queryReadOnly(ctx context.Context, c *duck.Conn, query string) (res *store.Result, err error) {
	if _, err := c.ExecContext(ctx, "BEGIN TRANSACTION READ ONLY", nil); err != nil {
		return nil, fmt.Errorf("begin read-only transaction: %w", err)
	}
	defer func() {
		// Also after cancellation: the connection goes back to the pool.
		if _, rbErr := c.ExecContext(context.WithoutCancel(ctx), "ROLLBACK", nil); rbErr != nil {
			s.log.Warn("duckdb: rollback after query", "error", rbErr)
			err = errors.Join(err, driver.ErrBadConn) // drop the connection
		}
	}()

	// Prepare (unlike PrepareContext) refuses multiple statements instead of
	// running all but the last.
	prepared, err := c.Prepare(query)
	if err != nil {
		if strings.Contains(err.Error(), "multi-statement") {
			return nil, &store.QueryError{Msg: "only one statement per query is allowed"}
		}
		return nil, &store.QueryError{Msg: engineMessage(err)}
	}
	stmt := prepared.(*duck.Stmt)
	defer stmt.Close()

	typ, err := stmt.StatementType()
	if err != nil {
		return nil, fmt.Errorf("statement type: %w", err)
	}
	switch typ {
	case duck.STATEMENT_TYPE_SELECT, duck.STATEMENT_TYPE_EXPLAIN:
	default:
		return nil, &store.QueryError{Msg: "only read-only statements are allowed (SELECT, WITH, DESCRIBE, SHOW, EXPLAIN, PRAGMA table_info)"}
	}

	rows, err := stmt.QueryContext(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	return s.collect(rows)
}

// collect reads up to MaxRows rows, converting values to JSON-friendly ones.
func (s *Store) collect(rows driver.Rows) (*store.Result, error) {
	res := &store.Result{Columns: rows.Columns(), Rows: [][]any{}}
	var dbTypes []string
	if typed, ok := rows.(driver.RowsColumnTypeDatabaseTypeName); ok {
		dbTypes = make([]string, len(res.Columns))
		for i := range dbTypes {
			dbTypes[i] = typed.ColumnTypeDatabaseTypeName(i)
		}
	}
	dest := make([]driver.Value, len(res.Columns))
	for {
		if err := rows.Next(dest); err != nil {
			if errors.Is(err, io.EOF) {
				return res, nil
			}
			return nil, err
		}
		if len(res.Rows) == s.opts.MaxRows {
			s.stat.queriesTruncated.Add(1)
			s.log.Debug("duckdb: query result truncated", "max_rows", s.opts.MaxRows)
			return res, nil
		}
		row := make([]any, len(dest))
		for i, v := range dest {
			dbType := ""
			if dbTypes != nil {
				dbType = dbTypes[i]
			}
			row[i] = jsonValue(v, dbType)
		}
		res.Rows = append(res.Rows, row)
	}
}

// classify turns engine errors into *store.QueryError (the user's SQL is at
// fault) and keeps cancellation and connection errors as they are.
func classify(ctx context.Context, err error) error {
	var qe *store.QueryError
	switch {
	case errors.As(err, &qe):
		return qe
	case ctx.Err() != nil:
		return fmt.Errorf("query: %w", ctx.Err())
	case errors.Is(err, driver.ErrBadConn):
		return fmt.Errorf("query: %w", err)
	}
	var de *duck.Error
	if errors.As(err, &de) {
		return &store.QueryError{Msg: engineMessage(err)}
	}
	return fmt.Errorf("query: %w", err)
}

// engineMessage is DuckDB's message without the driver's prefixes.
func engineMessage(err error) string {
	var de *duck.Error
	if errors.As(err, &de) {
		return strings.TrimSpace(de.Msg)
	}
	return err.Error()
}

// jsonValue converts a DuckDB driver value into one encoding/json renders
// faithfully. dbType is the column's DuckDB type name, when known.
func jsonValue(v any, dbType string) any {
	switch x := v.(type) {
	case nil, bool, string,
		int8, int16, int32, int64, int, uint8, uint16, uint32, uint64, uint:
		return x
	case float32:
		return jsonFloat(float64(x))
	case float64:
		return jsonFloat(x)
	case time.Time:
		return x.UTC().Format(time.RFC3339Nano)
	case []byte:
		if dbType == "UUID" && len(x) == 16 {
			return uuidString(x)
		}
		return string(x)
	case *big.Int:
		if x == nil {
			return nil
		}
		return x // marshals as a JSON number
	case duck.Decimal:
		if x.Value == nil {
			return nil
		}
		return jsonFloat(x.Float64())
	case duck.Interval:
		return map[string]any{"months": x.Months, "days": x.Days, "micros": x.Micros}
	case duck.UUID:
		return uuidString(x[:])
	case duck.OrderedMap:
		return jsonMap(x.Keys(), x.Values())
	case duck.Map:
		m := make(map[string]any, len(x))
		for k, val := range x {
			m[mapKey(k)] = jsonValue(val, "")
		}
		return m
	case map[string]any: // STRUCT
		m := make(map[string]any, len(x))
		for k, val := range x {
			m[k] = jsonValue(val, "")
		}
		return m
	case []any: // LIST, ARRAY
		out := make([]any, len(x))
		for i, val := range x {
			out[i] = jsonValue(val, "")
		}
		return out
	case duck.Union:
		return map[string]any{"tag": x.Tag, "value": jsonValue(x.Value, "")}
	case fmt.Stringer:
		return x.String()
	default:
		return fmt.Sprint(x)
	}
}

func jsonMap(keys, values []any) map[string]any {
	m := make(map[string]any, len(keys))
	for i, k := range keys {
		m[mapKey(k)] = jsonValue(values[i], "")
	}
	return m
}

func mapKey(k any) string {
	if s, ok := jsonValue(k, "").(string); ok {
		return s
	}
	return fmt.Sprint(jsonValue(k, ""))
}

// jsonFloat keeps finite floats; JSON has no NaN or infinities, so those
// become the strings DuckDB prints for them.
func jsonFloat(f float64) any {
	switch {
	case math.IsNaN(f):
		return "nan"
	case math.IsInf(f, 1):
		return "inf"
	case math.IsInf(f, -1):
		return "-inf"
	}
	return f
}

func uuidString(b []byte) string {
	h := hex.EncodeToString(b)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}
