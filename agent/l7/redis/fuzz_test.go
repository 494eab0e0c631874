package redis

import (
	"testing"
	"time"

	"github.com/sightline-io/sightline/agent/capture"
	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/flowlog"
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
	var fed [2]int64
	var emitted uint64
	emit := func(m *l7.Message) {
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
			d := &p.dirs[i]
			if len(d.line) > maxLine || len(d.args) > argBufSize || len(d.errText) > maxException || d.depth > maxDepth {
				t.Fatalf("buffers over their bounds: line %d args %d err %d depth %d", len(d.line), len(d.args), len(d.errText), d.depth)
			}
		}
		if p.subN > maxSubWaits || cap(p.scratch) > 2048 {
			t.Fatalf("subscribe waits %d, scratch %d", p.subN, cap(p.scratch))
		}
	}
	p.Close(emit)
	if s := p.Stats(); s.Requests+s.Responses != emitted {
		t.Fatalf("stats count %d messages, emitted %d", s.Requests+s.Responses, emitted)
	}
}
