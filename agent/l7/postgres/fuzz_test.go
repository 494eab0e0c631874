package postgres

import (
	"testing"

	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/flowlog"
	"github.com/sightline-io/sightline/internal/parsertest"
)

// FuzzPostgresParser feeds arbitrary bytes split into segments by plan:
// each pair of plan bytes gives a segment size, its direction and an
// optional gap.
func FuzzPostgresParser(f *testing.F) {
	recs, _ := session()
	var data, plan []byte
	for _, r := range recs {
		data = append(data, r.data...)
		plan = append(plan, byte(min(len(r.data)-1, 255)), byte(r.dir))
	}
	f.Add(data, plan)
	f.Add([]byte(query("SELECT 1")+complete("SELECT 1")+idle), []byte{13, 0, 30, 3})
	f.Fuzz(func(t *testing.T, data, plan []byte) {
		checkParse(t, newParser(false), data, plan)
	})
}

func checkParse(t *testing.T, p *Parser, data, plan []byte) {
	var emitted uint64
	check := func(m *l7.Message, fed *[2]int64) {
		emitted++
		if m.Protocol != flowlog.L7Postgres || m.Dir > 1 {
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
		for i := range p.bufs {
			if p.bufs[i].Buffered() > maxBuffer {
				t.Fatalf("buffered %d", p.bufs[i].Buffered())
			}
		}
		if len(p.units) > maxUnits || len(p.stmts) > maxStatements || len(p.portals) > maxPortals {
			t.Fatalf("state grew: %d units, %d statements, %d portals", len(p.units), len(p.stmts), len(p.portals))
		}
	})
	if s := p.Stats(); s.Requests+s.Responses != emitted {
		t.Fatalf("stats count %d messages, emitted %d", s.Requests+s.Responses, emitted)
	}
}
