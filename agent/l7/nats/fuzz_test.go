package nats

import (
	"testing"
	"time"

	"github.com/sightline-io/sightline/agent/capture"
	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/flowlog"
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
	var fed [2]int64
	var emitted uint64
	emit := func(m *l7.Message) {
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
	now := time.Unix(0, 0)
	for len(data) > 0 {
		size, flags := len(data), byte(0)
		if len(plan) >= 2 {
			size, flags, plan = min(int(plan[0])+1, len(data)), plan[1], plan[2:]
		}
		seg := &capture.Segment{Dir: capture.Direction(flags & 1), Start: now, End: now,
			Data: data[:size], Len: size, TCPSeq: uint32(len(data))}
		if flags&2 != 0 {
			seg.Len += int(flags>>2) * 37
		}
		fed[seg.Dir] += int64(size)
		p.Feed(seg, emit)
		data = data[size:]
		for i := range p.dirs {
			if len(p.dirs[i].line) > maxLine || len(p.dirs[i].hdr) > statusCapture {
				t.Fatalf("buffers over their bounds: line %d hdr %d", len(p.dirs[i].line), len(p.dirs[i].hdr))
			}
		}
		if len(p.replies) > maxReplies || p.awaitN > maxAwaiting {
			t.Fatalf("tables over their bounds: replies %d awaiting %d", len(p.replies), p.awaitN)
		}
	}
	p.Close(emit)
	if s := p.Stats(); s.Requests+s.Responses != emitted {
		t.Fatalf("stats count %d messages, emitted %d", s.Requests+s.Responses, emitted)
	}
}
