package krpc

import (
	"testing"

	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/agent/l7/stream"
	"github.com/sightline-io/sightline/internal/rpctest"
)

func fuzzSeeds() map[string][2][]byte {
	r1 := req(1)
	ok := resp(1, 0, rpctest.ProtoString("hi"))
	hb := (&rpctest.KRPCMeta{Direction: 1, Service: 1, Msg: 1}).Encode(nil)
	return map[string][2][]byte{
		"exchange":  {rpctest.Concat(r1, ok), []byte{byte(len(r1) - 1), 0, 255, 1}},
		"split":     {rpctest.Concat(r1, ok), []byte{3, 0, 10, 0, 255, 0, 6, 1, 255, 1}},
		"error":     {rpctest.Concat(r1, resp(1, -1000001, rpctest.KRPCResult(-1000001, "user not found"))), []byte{byte(len(r1) - 1), 0, 255, 1}},
		"heartbeat": {rpctest.Concat(hb, r1), []byte{byte(len(hb) - 1), 0, 255, 0}},
		"gap":       {rpctest.Concat(r1, r1), []byte{12, 2 | 2<<2, byte(len(r1) - 1), 0}},
	}
}

func TestWriteFuzzSeeds(t *testing.T) { rpctest.WriteSeeds(t, "FuzzKRPCParser", fuzzSeeds()) }

// FuzzKRPCParser feeds arbitrary bytes split arbitrarily in both
// directions: no panic, bounded buffers, consistent lengths and counts.
func FuzzKRPCParser(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, data, plan []byte) {
		p := New(l7.Config{}).NewParser().(*Parser)
		var emitted uint64
		rpctest.FuzzFeed(p, data, plan, func(m *l7.Message, fed [2]int64) {
			emitted++
			if m.Protocol != L7KRPC || m.Dir > 1 || !m.HasRequestID {
				t.Fatalf("bad message %+v", m)
			}
			if m.Length < int64(m.Captured) || int64(m.Captured) > fed[m.Dir] {
				t.Fatalf("length %d captured %d fed %d", m.Length, m.Captured, fed[m.Dir])
			}
			if len(m.TraceID) > maxTrace || len(m.Exception) > maxException {
				t.Fatalf("unbounded strings %+v", m)
			}
		}, func() {
			for i := range p.dirs {
				if p.dirs[i].Buffered() > stream.DefaultMaxBuffer {
					t.Fatalf("buffered %d", p.dirs[i].Buffered())
				}
			}
		})
		if s := p.Stats(); s.Requests+s.Responses != emitted {
			t.Fatalf("stats %d, emitted %d", s.Requests+s.Responses, emitted)
		}
	})
}
