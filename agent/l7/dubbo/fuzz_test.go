package dubbo

import (
	"testing"

	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/agent/l7/stream"
	"github.com/sightline-io/sightline/flowlog"
	"github.com/sightline-io/sightline/internal/rpctest"
)

// fuzzSeeds are real exchanges: data is client bytes then server bytes,
// plan splits them (see rpctest.FuzzFeed).
func fuzzSeeds() map[string][2][]byte {
	req, resp := hello(1), okResp(1)
	var exc rpctest.Hessian
	exc.Int(0).ClassDef("java.lang.IllegalStateException", "detailMessage").Object(0).String("boom")
	hb := rpctest.DubboRequest{ID: 3, Heartbeat: true, TwoWay: true}
	jsonReq := rpctest.DubboRequest{ID: 4, Service: svc, Method: "sayHi", Args: []string{"x"}, TwoWay: true, Serialization: rpctest.DubboFastJSON}
	return map[string][2][]byte{
		"exchange":  {rpctest.Concat(req, resp), []byte{byte(len(req) - 1), 0, 255, 1}},
		"split":     {rpctest.Concat(req, resp), []byte{7, 0, 40, 0, 255, 0, 3, 1, 255, 1}},
		"exception": {rpctest.Concat(req, rpctest.DubboResponse(1, 20, false, exc.B)), []byte{byte(len(req) - 1), 0, 255, 1}},
		"heartbeat": {rpctest.Concat(hb.Encode(), rpctest.DubboResponse(3, 20, true, []byte{'N'})), []byte{16, 0, 16, 1}},
		"gap":       {rpctest.Concat(req, req), []byte{20, 2 | 4<<2, byte(len(req) - 1), 0}},
		"fastjson":  {jsonReq.Encode(), []byte{}},
	}
}

func TestWriteFuzzSeeds(t *testing.T) { rpctest.WriteSeeds(t, "FuzzDubboParser", fuzzSeeds()) }

// FuzzDubboParser feeds arbitrary bytes split arbitrarily in both
// directions: no panic, bounded buffers, consistent lengths and counts.
func FuzzDubboParser(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, data, plan []byte) {
		p := New(l7.Config{}).NewParser().(*Parser)
		var emitted uint64
		rpctest.FuzzFeed(p, data, plan, func(m *l7.Message, fed [2]int64) {
			emitted++
			if m.Protocol != flowlog.L7Dubbo || m.Dir > 1 || !m.HasRequestID {
				t.Fatalf("bad message %+v", m)
			}
			if m.Length < int64(m.Captured) || int64(m.Captured) > fed[m.Dir] {
				t.Fatalf("length %d captured %d fed %d", m.Length, m.Captured, fed[m.Dir])
			}
			if len(m.Domain) > maxName || len(m.RequestType) > maxName || len(m.Exception) > maxException {
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
