package brpc

import (
	"testing"

	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/agent/l7/stream"
	"github.com/sightline-io/sightline/flowlog"
	"github.com/sightline-io/sightline/internal/rpctest"
)

func fuzzSeeds() map[string][2][]byte {
	r1 := req(1)
	return map[string][2][]byte{
		"exchange": {rpctest.Concat(r1, okResp(1)), []byte{byte(len(r1) - 1), 0, 255, 1}},
		"split":    {rpctest.Concat(r1, okResp(1)), []byte{5, 0, 20, 0, 255, 0, 12, 1, 255, 1}},
		"error":    {rpctest.Concat(r1, rpctest.BRPCResponse(1, 1001, "Fail to find service", nil)), []byte{byte(len(r1) - 1), 0, 255, 1}},
		"gap":      {rpctest.Concat(r1, r1), []byte{20, 2 | 2<<2, byte(len(r1) - 1), 0}},
	}
}

func TestWriteFuzzSeeds(t *testing.T) { rpctest.WriteSeeds(t, "FuzzBRPCParser", fuzzSeeds()) }

// FuzzBRPCParser feeds arbitrary bytes split arbitrarily in both
// directions: no panic, bounded buffers, consistent lengths and counts.
func FuzzBRPCParser(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, data, plan []byte) {
		p := New(l7.Config{}).NewParser().(*Parser)
		var emitted uint64
		rpctest.FuzzFeed(p, data, plan, func(m *l7.Message, fed [2]int64) {
			emitted++
			if m.Protocol != flowlog.L7BRPC || m.Dir > 1 {
				t.Fatalf("bad message %+v", m)
			}
			if m.Length < int64(m.Captured) || int64(m.Captured) > fed[m.Dir] {
				t.Fatalf("length %d captured %d fed %d", m.Length, m.Captured, fed[m.Dir])
			}
			if len(m.Domain) > maxName || len(m.RequestType) > maxName || len(m.Exception) > 4*maxException || len(m.XRequestID) > maxRequestID {
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
