package dns

import (
	"testing"

	mdns "github.com/miekg/dns"

	"github.com/sightline-io/sightline/agent/capture"
	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/flowlog"
	"github.com/sightline-io/sightline/internal/parsertest"
)

// FuzzDNSParser feeds arbitrary bytes split into segments by plan (pairs of
// plan bytes: a segment size, then flags: bit 0 direction, bit 1 a gap of
// flags>>2 * 37 uncaptured bytes, bit 7 UDP instead of TCP for the whole
// run when set on the first pair).
func FuzzDNSParser(f *testing.F) {
	q := query(f, 0x4242, "www.example.test", mdns.TypeA)
	r := answer(f, q, 0, "www.example.test. 60 IN CNAME web.example.test.", "web.example.test. 60 IN A 10.1.2.3")
	f.Add(append(append([]byte{}, q...), r...), []byte{byte(len(q) - 1), 0x80, 255, 1})
	f.Add(prefixed(q, r), []byte{7, 0, 255, 1})
	f.Fuzz(func(t *testing.T, data, plan []byte) {
		checkParse(t, data, plan)
	})
}

func checkParse(t *testing.T, data, plan []byte) {
	p := newParser()
	var l4 uint8 = 6
	if len(plan) >= 2 && plan[1]&0x80 != 0 {
		l4 = 17
	}
	emit := func(m *l7.Message) {
		if m.Protocol != flowlog.L7DNS || m.Dir > 1 || !m.HasRequestID || m.RequestID > 0xffff {
			t.Fatalf("bad message identity %+v", m)
		}
		if m.Length < 0 || m.Length < int64(m.Captured) {
			t.Fatalf("length %d captured %d", m.Length, m.Captured)
		}
		if m.Type == l7.Request && (m.RequestType == "" || m.Domain == "" || len(m.Domain) > 255) {
			t.Fatalf("bad request %+v", m)
		}
		if m.Type == l7.Response && (!m.HasCode || len(m.Result) > maxResult) {
			t.Fatalf("bad response %+v", m)
		}
	}
	parsertest.FeedPlan(data, plan, 0x1f, func(seg *capture.Segment) {
		seg.Tuple = capture.Tuple{L4: l4}
		p.Feed(seg, emit)
		for i := range p.dirs {
			if n := p.dirs[i].buf.Buffered(); n > maxTCPBuffer {
				t.Fatalf("buffer holds %d bytes, limit %d", n, maxTCPBuffer)
			}
		}
	})
	p.Close(emit)
}
