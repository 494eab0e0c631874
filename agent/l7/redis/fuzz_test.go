package redis

import (
	"testing"

	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/flowlog"
	"github.com/sightline-io/sightline/internal/parsertest"
)

// FuzzRedisParser feeds arbitrary bytes split into segments by plan: each
// pair of plan bytes gives a segment size, its direction and an optional gap.
func FuzzRedisParser(f *testing.F) {
	f.Add([]byte(setReq+"+OK\r\n"+getReq+getRep), []byte{byte(len(setReq) - 1), 0, 4, 1, byte(len(getReq) - 1), 0, 200, 1})
	f.Add([]byte("*2\r\n$9\r\nSUBSCRIBE\r\n$2\r\nch\r\n>3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n"), []byte{27, 0, 255, 1})
	f.Add([]byte("*3\r\n$3\r\nSET\r\n$3\r\nbig\r\n$1000\r\nvvvv+OK\r\n"), []byte{30, 2 | 4<<2, 4, 1})
	f.Fuzz(func(t *testing.T, data, plan []byte) {
		for _, keep := range []bool{false, true} {
			checkParse(t, newParser(keep), data, plan)
		}
	})
}

func checkParse(t *testing.T, p *Parser, data, plan []byte) {
	var emitted uint64
	check := func(m *l7.Message, fed *[2]int64) {
		emitted++
		if m.Protocol != flowlog.L7Redis || m.Dir > 1 {
			t.Fatalf("bad message identity %+v", m)
		}
		if m.Length < -1 || m.Length >= 0 && m.Length < int64(m.Captured) || int64(m.Captured) > fed[m.Dir] {
			t.Fatalf("length %d captured %d fed %d", m.Length, m.Captured, fed[m.Dir])
		}
		if m.Type == l7.Request && (m.RequestType == "" || len(m.Resource) > maxResource || m.Endpoint != m.RequestType) {
			t.Fatalf("bad request %+v", m)
		}
		if len(m.Exception) > maxException {
			t.Fatalf("exception of %d bytes", len(m.Exception))
		}
	}
	parsertest.Fuzz(p, data, plan, check, func() {
		for i := range p.dirs {
			d := &p.dirs[i]
			if d.line.Len() > maxLine || len(d.args) > argBufSize || len(d.errText) > maxException || d.depth > maxDepth {
				t.Fatalf("buffers over their bounds: line %d args %d err %d depth %d", d.line.Len(), len(d.args), len(d.errText), d.depth)
			}
		}
		if p.subN > maxSubWaits || cap(p.scratch) > 2048 {
			t.Fatalf("subscribe waits %d, scratch %d", p.subN, cap(p.scratch))
		}
	})
	if s := p.Stats(); s.Requests+s.Responses != emitted {
		t.Fatalf("stats count %d messages, emitted %d", s.Requests+s.Responses, emitted)
	}
}
