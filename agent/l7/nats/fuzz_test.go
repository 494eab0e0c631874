package nats

import (
	"testing"

	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/flowlog"
	"github.com/sightline-io/sightline/internal/parsertest"
)

// FuzzNATSParser feeds arbitrary bytes split into segments by plan: each
// pair of plan bytes gives a segment size, its direction and an optional gap.
func FuzzNATSParser(f *testing.F) {
	f.Add([]byte(info+connect+"PONG\r\n"), []byte{byte(len(info) - 1), 1, byte(len(connect) - 1), 0, 10, 1})
	f.Add([]byte("SUB _INBOX.a.* 1\r\nPUB s _INBOX.a.b 2\r\nhi\r\nMSG _INBOX.a.b 1 2\r\nHO\r\n"), []byte{41, 0, 255, 1})
	f.Add([]byte("HPUB x 12 14\r\nNATS/1.0\r\n\r\nhi\r\n-ERR 'Slow Consumer'\r\n"), []byte{30, 0, 255, 1})
	f.Fuzz(func(t *testing.T, data, plan []byte) {
		checkParse(t, newParser(), data, plan)
	})
}

func checkParse(t *testing.T, p *Parser, data, plan []byte) {
	var emitted uint64
	check := func(m *l7.Message, fed *[2]int64) {
		emitted++
		if m.Protocol != flowlog.L7NATS || m.Dir > 1 {
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
			if p.dirs[i].line.Len() > maxLine || len(p.dirs[i].hdr) > statusCapture {
				t.Fatalf("buffers over their bounds: line %d hdr %d", p.dirs[i].line.Len(), len(p.dirs[i].hdr))
			}
		}
		if len(p.replies) > maxReplies || p.awaitN > maxAwaiting {
			t.Fatalf("tables over their bounds: replies %d awaiting %d", len(p.replies), p.awaitN)
		}
	})
	if s := p.Stats(); s.Requests+s.Responses != emitted {
		t.Fatalf("stats count %d messages, emitted %d", s.Requests+s.Responses, emitted)
	}
}
