package memcached

import (
	"testing"

	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/agent/l7/stream"
	"github.com/sightline-io/sightline/flowlog"
	"github.com/sightline-io/sightline/internal/parsertest"
)

// FuzzMemcachedParser feeds arbitrary bytes split into segments by plan:
// each pair of plan bytes gives a segment size, its direction and an
// optional gap.
func FuzzMemcachedParser(f *testing.F) {
	f.Add([]byte(setCmd+"STORED\r\n"+getCmd+getHit), []byte{byte(len(setCmd) - 1), 0, 7, 1, byte(len(getCmd) - 1), 0, 200, 1})
	f.Add([]byte("get a b\r\nVALUE a 0 1\r\nx\r\nEND\r\n"), []byte{8, 0, 255, 1})
	bin := frame(magicRequest, 0x00, 0, 2, "", "k", "") + frame(magicResponse, 0x00, 0, 2, "\x00\x00\x00\x00", "", "value")
	f.Add([]byte(bin), []byte{24, 0, 255, 1})
	f.Fuzz(func(t *testing.T, data, plan []byte) {
		checkParse(t, newParser(), data, plan)
	})
}

func checkParse(t *testing.T, p *Parser, data, plan []byte) {
	var emitted uint64
	check := func(m *l7.Message, fed *[2]int64) {
		emitted++
		if m.Protocol != flowlog.L7Memcached || m.Dir > 1 {
			t.Fatalf("bad message identity %+v", m)
		}
		if m.Length < -1 || m.Length >= 0 && m.Length < int64(m.Captured) || int64(m.Captured) > fed[m.Dir] {
			t.Fatalf("length %d captured %d fed %d", m.Length, m.Captured, fed[m.Dir])
		}
		if m.Type == l7.Request && (m.RequestType == "" || len(m.Resource) > maxResource) {
			t.Fatalf("bad request %+v", m)
		}
		if len(m.Exception) > maxException {
			t.Fatalf("exception of %d bytes", len(m.Exception))
		}
	}
	parsertest.Fuzz(p, data, plan, check, func() {
		for i := range p.dirs {
			if p.dirs[i].line.Len() > maxLine || p.bin[i].Buffered() > stream.DefaultMaxBuffer {
				t.Fatalf("buffers over their bounds: line %d binary %d", p.dirs[i].line.Len(), p.bin[i].Buffered())
			}
		}
	})
	if s := p.Stats(); s.Requests+s.Responses != emitted {
		t.Fatalf("stats count %d messages, emitted %d", s.Requests+s.Responses, emitted)
	}
}
