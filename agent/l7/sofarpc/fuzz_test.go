package sofarpc

import (
	"testing"

	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/agent/l7/stream"
	"github.com/sightline-io/sightline/flowlog"
	"github.com/sightline-io/sightline/internal/rpctest"
)

func fuzzSeeds() map[string][2][]byte {
	r1, r2 := req(1, false), req(2, true)
	var h rpctest.Hessian
	h.ClassDef("java.lang.RuntimeException", "detailMessage").Object(1).String("boom")
	exc := rpctest.SofaResponse(&rpctest.BoltFrame{ID: 1}, 0, false, "", h.B).Encode()
	hb := (&rpctest.BoltFrame{Type: rpctest.BoltTypeRequest, Cmd: rpctest.BoltCmdHeartbeat, ID: 8}).Encode()
	return map[string][2][]byte{
		"v1":        {rpctest.Concat(r1, okResp(1, false)), []byte{byte(len(r1) - 1), 0, 255, 1}},
		"v2":        {rpctest.Concat(r2, okResp(2, true)), []byte{9, 0, 255, 0, 255, 0, 20, 1, 255, 1}},
		"exception": {rpctest.Concat(r1, exc), []byte{byte(len(r1) - 1), 0, 255, 1}},
		"heartbeat": {rpctest.Concat(hb, r1), []byte{21, 0, 255, 0}},
		"gap":       {rpctest.Concat(r1, r1), []byte{30, 2 | 3<<2, byte(len(r1) - 1), 0}},
	}
}

func TestWriteFuzzSeeds(t *testing.T) { rpctest.WriteSeeds(t, "FuzzSofaRPCParser", fuzzSeeds()) }

// FuzzSofaRPCParser feeds arbitrary bytes split arbitrarily in both
// directions: no panic, bounded buffers, consistent lengths and counts.
func FuzzSofaRPCParser(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, data, plan []byte) {
		p := New(l7.Config{}).NewParser().(*Parser)
		var emitted uint64
		rpctest.FuzzFeed(p, data, plan, func(m *l7.Message, fed [2]int64) {
			emitted++
			if m.Protocol != flowlog.L7SofaRPC || m.Dir > 1 || !m.HasRequestID {
				t.Fatalf("bad message %+v", m)
			}
			if m.Length < int64(m.Captured) || int64(m.Captured) > fed[m.Dir] {
				t.Fatalf("length %d captured %d fed %d", m.Length, m.Captured, fed[m.Dir])
			}
			if len(m.Domain) > maxName || len(m.RequestType) > maxName || len(m.Exception) > maxException || len(m.TraceID) > maxTraceVal {
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
