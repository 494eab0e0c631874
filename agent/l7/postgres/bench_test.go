package postgres

import (
	"testing"

	"github.com/sightline-io/sightline/agent/capture"
	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/internal/parsertest"
)

// BenchmarkParsePostgres parses a simple Query with literals and its
// answer (RowDescription, two DataRows, CommandComplete, ReadyForQuery),
// one segment each way.
func BenchmarkParsePostgres(b *testing.B) {
	p := newParser(false)
	for _, r := range []rec{{fe, startupMsg("user", "app", "database", "shop"), 0}, {be, loginOK(), 0}} {
		p.Feed(&capture.Segment{Dir: r.dir, Data: []byte(r.data), Len: len(r.data)}, func(*l7.Message) {})
	}
	q := query("SELECT id, name, email FROM users WHERE email = 'alice@example.com' AND status IN (1, 2, 3) LIMIT 10")
	resp := rowDesc + dataRow("1") + dataRow("2") + complete("SELECT 2") + idle
	reqSeg := &capture.Segment{Dir: fe, Data: []byte(q), Len: len(q)}
	respSeg := &capture.Segment{Dir: be, Data: []byte(resp), Len: len(resp)}
	parsertest.Bench(b, p, 2, reqSeg, respSeg)
}
