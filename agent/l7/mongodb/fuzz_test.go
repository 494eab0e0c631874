package mongodb

import (
	"testing"

	"github.com/sightline-io/sightline/agent/capture"
	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/flowlog"
	"github.com/sightline-io/sightline/internal/parsertest"
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
	parsertest.FeedPlan(data, plan, 0x3f, func(seg *capture.Segment) {
		seg.Tuple = capture.Tuple{L4: 6}
		p.Feed(seg, emit)
		for i := range p.dirs {
			if n := p.dirs[i].Buffered(); n > maxBuffer {
				t.Fatalf("buffer holds %d bytes, limit %d", n, maxBuffer)
			}
		}
		if cap(p.inflate) > maxInflate {
			t.Fatalf("inflate buffer %d", cap(p.inflate))
		}
	})
	p.Close(emit)
}
