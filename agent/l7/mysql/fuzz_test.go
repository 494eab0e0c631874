package mysql

import (
	"testing"

	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/flowlog"
	"github.com/sightline-io/sightline/internal/parsertest"
)

// FuzzMySQLParser feeds arbitrary bytes split into segments by plan: each
// pair of plan bytes gives a segment size, its direction and an optional
// gap.
func FuzzMySQLParser(f *testing.F) {
	recs, _ := session()
	var data, plan []byte
	for _, r := range recs {
		data = append(data, r.data...)
		plan = append(plan, byte(min(len(r.data)-1, 255)), byte(r.dir))
	}
	f.Add(data, plan)
	caps := uint32(baseCaps | capCompress)
	c := greetingPkt(caps) + loginPkt(caps, "app", "db") + okPkt(2, 0) +
		compressed(0, queryPkt("SELECT 1"), false) + compressed(0, resultSet(2, true), false)
	f.Add([]byte(c), []byte{byte(len(greetingPkt(caps)) - 1), 1})
	f.Add([]byte(queryPkt("SELECT 1")+okPkt(1, 0)), []byte{11, 0, 10, 3})
	f.Fuzz(func(t *testing.T, data, plan []byte) {
		checkParse(t, newParser(false), data, plan)
	})
}

func checkParse(t *testing.T, p *Parser, data, plan []byte) {
	var emitted uint64
	check := func(m *l7.Message, fed *[2]int64) {
		emitted++
		if m.Protocol != flowlog.L7MySQL || m.Dir > 1 {
			t.Fatalf("bad message identity %+v", m)
		}
		if m.Length < -1 || m.Length >= 0 && m.Length < int64(m.Captured) {
			t.Fatalf("length %d captured %d", m.Length, m.Captured)
		}
		if m.Type == l7.Request && m.RequestType == "" {
			t.Fatalf("request without a type: %+v", m)
		}
		if len(m.Resource) > 2*maxSQL+16 || len(m.Endpoint) > 256 || len(m.Exception) > maxException+8 {
			t.Fatalf("unbounded fields: %d %d %d", len(m.Resource), len(m.Endpoint), len(m.Exception))
		}
	}
	parsertest.Fuzz(p, data, plan, check, func() {
		for i := range p.dirs {
			if p.dirs[i].buf.Buffered() > maxBuffer || p.dirs[i].inner.Buffered() > maxBuffer {
				t.Fatalf("buffered %d/%d", p.dirs[i].buf.Buffered(), p.dirs[i].inner.Buffered())
			}
		}
		if len(p.stmts) > maxStatements || p.count > maxPending {
			t.Fatalf("state grew: %d statements, %d pending", len(p.stmts), p.count)
		}
	})
	if s := p.Stats(); s.Requests+s.Responses != emitted {
		t.Fatalf("stats count %d messages, emitted %d", s.Requests+s.Responses, emitted)
	}
}
