// Package store is Sightline's storage interface. DuckDB (embedded) is the
// default engine; ClickHouse comes later behind the same interface, so SQL and
// schemas here avoid engine-only features where a portable form exists.
package store

import (
	"context"

	"github.com/sightline-io/sightline/flowlog"
)

// Result is a query answer in the shape of POST /api/v1/query.
type Result struct {
	Columns []string `json:"columns"`
	Rows    [][]any  `json:"rows"`
}

// Store persists flow logs and answers SQL over them.
type Store interface {
	// InsertL7 appends rows to l7_flow_log. It is safe for concurrent use.
	InsertL7(ctx context.Context, rows []flowlog.L7FlowLog) error
	// InsertL4 appends rows to l4_flow_log. It is safe for concurrent use.
	InsertL4(ctx context.Context, rows []flowlog.L4FlowLog) error
	// Query runs one read-only SQL statement. Errors from the engine (bad SQL)
	// are wrapped in *QueryError so the API can answer 400 with the message.
	Query(ctx context.Context, sql string) (*Result, error)
	Close() error
}

// QueryError is a user error in a query (syntax, unknown column ...).
type QueryError struct{ Msg string }

func (e *QueryError) Error() string { return e.Msg }
