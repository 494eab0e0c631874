package mysql

import (
	"testing"

	"github.com/sightline-io/sightline/agent/capture"
	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/internal/parsertest"
)

// BenchmarkParseMySQL parses a COM_QUERY with literals and its result set
// (column definition, EOF, two rows, EOF), one segment each way.
func BenchmarkParseMySQL(b *testing.B) {
	p := newParser(false)
	setup := []rec{{srv, greetingPkt(baseCaps), 0}, {cli, loginPkt(baseCaps, "app", "shop"), 0}, {srv, okPkt(2, 0), 0}}
	for _, r := range setup {
		p.Feed(&capture.Segment{Dir: r.dir, Data: []byte(r.data), Len: len(r.data)}, func(*l7.Message) {})
	}
	q := queryPkt("SELECT id, name, email FROM users WHERE email = 'alice@example.com' AND status IN (1, 2, 3) LIMIT 10")
	rs := resultSet(2, false)
	reqSeg := &capture.Segment{Dir: cli, Data: []byte(q), Len: len(q)}
	respSeg := &capture.Segment{Dir: srv, Data: []byte(rs), Len: len(rs)}
	parsertest.Bench(b, p, 2, reqSeg, respSeg)
}
