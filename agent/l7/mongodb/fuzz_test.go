package mongodb

import (
	"testing"
	"time"

	"github.com/sightline-io/sightline/agent/capture"
	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/flowlog"
)

// FuzzMongoDBParser feeds arbitrary bytes split into segments by plan: each
// pair of plan bytes gives a segment size and flags (bit 0 direction, bit 1
// a gap of flags>>2 * 37 uncaptured bytes).
func FuzzMongoDBParser(f *testing.F) {
	fx := newFixtures(f)
	f.Add(append(append([]byte{}, fx.find...), fx.findReply...), []byte{byte(len(fx.find) - 1), 0, 255, 1})
	f.Add(append(append([]byte{}, fx.hello...), fx.helloReply...), []byte{15, 0, 255, 0, 255, 1})
	f.Add(compressed(f, fx.bogus, 2), []byte{})
	f.Fuzz(func(t *testing.T, data, plan []byte) {
		checkParse(t, data, plan)
	})
}

func checkParse(t *testing.T, data, plan []byte) {
	p := New(l7.Config{}).NewParser().(*Parser)
	emit := func(m *l7.Message) {
		if m.Protocol != flowlog.L7MongoDB || m.Dir > 1 || !m.HasRequestID {
			t.Fatalf("bad message identity %+v", m)
		}
		if m.Length < headerLen || m.Length < int64(m.Captured) && m.Captured > maxBuffer {
			t.Fatalf("length %d captured %d", m.Length, m.Captured)
		}
		if m.Type == l7.Request && m.RequestType == "" {
			t.Fatalf("request without a command %+v", m)
		}
		if len(m.Exception) > maxText || len(m.Resource) > maxText || len(m.Domain) > maxText {
			t.Fatalf("unbounded text %+v", m)
		}
	}
	now := time.Unix(0, 0)
	for len(data) > 0 {
		size, flags := len(data), byte(0)
		if len(plan) >= 2 {
			size, flags, plan = min(int(plan[0])+1, len(data)), plan[1], plan[2:]
		}
		seg := &capture.Segment{Dir: capture.Direction(flags & 1), Start: now, End: now, Tuple: capture.Tuple{L4: 6},
			Data: data[:size], Len: size, TCPSeq: uint32(len(data))}
		if flags&2 != 0 {
			seg.Len += int(flags>>2) * 37
		}
		p.Feed(seg, emit)
		data = data[size:]
		for i := range p.dirs {
			if n := p.dirs[i].Buffered(); n > maxBuffer {
				t.Fatalf("buffer holds %d bytes, limit %d", n, maxBuffer)
			}
		}
		if cap(p.inflate) > maxInflate {
			t.Fatalf("inflate buffer %d", cap(p.inflate))
		}
	}
	p.Close(emit)
}
