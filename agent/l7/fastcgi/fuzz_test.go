package fastcgi

import (
	"testing"

	"github.com/sightline-io/sightline/agent/capture"
	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/flowlog"
	"github.com/sightline-io/sightline/internal/parsertest"
)

// FuzzFastCGIParser feeds arbitrary bytes split into segments by plan: each
// pair of plan bytes gives a segment size and flags (bit 0 direction, bit 1
// a gap of flags>>2 * 37 uncaptured bytes, bit 7 close at the end).
func FuzzFastCGIParser(f *testing.F) {
	get := nginxRequest(1, "GET", "/api/users/42?token=x", "")
	ok := fpmResponse(1, "Status: 404 Not Found\r\nContent-type: text/html\r\n", "nope", "", 0)
	f.Add(cat(get, ok), []byte{byte(len(get) - 1), 0, 255, 1})
	f.Add(cat(nginxRequest(3, "POST", "/p", "body"), fpmResponse(3, "", "", "err", 1)), []byte{7, 0, 7, 0, 255, 0, 255, 0x81})
	f.Fuzz(func(t *testing.T, data, plan []byte) {
		checkParse(t, data, plan)
	})
}

func checkParse(t *testing.T, data, plan []byte) {
	p := newParser(false)
	closeAtEnd := len(plan) >= 2 && plan[1]&0x80 != 0
	emit := func(m *l7.Message) {
		if m.Protocol != flowlog.L7FastCGI || m.Dir > 1 || !m.HasRequestID || m.RequestID == 0 || m.RequestID > 0xffff {
			t.Fatalf("bad message identity %+v", m)
		}
		if m.Length < -1 || m.Length >= 0 && m.Length < int64(m.Captured) {
			t.Fatalf("length %d captured %d", m.Length, m.Captured)
		}
		if m.Type == l7.Request && m.RequestType == "" {
			t.Fatalf("request without a method %+v", m)
		}
		if m.Type == l7.Response && m.HasCode && (m.Code < 100 || m.Code > 599) {
			t.Fatalf("bad code %+v", m)
		}
		if len(m.Resource) > 2*maxURI+1+8 || len(m.Domain) > maxText || len(m.Exception) > maxText {
			t.Fatalf("unbounded text %+v", m)
		}
	}
	parsertest.FeedPlan(data, plan, 0x1f, func(seg *capture.Segment) {
		seg.Tuple = capture.Tuple{L4: 6}
		p.Feed(seg, emit)
		for i := range p.dirs {
			if n := p.dirs[i].Buffered(); n > maxRecord {
				t.Fatalf("buffer holds %d bytes, limit %d", n, maxRecord)
			}
		}
		for i := range p.reqs {
			if len(p.reqs[i].params) > maxParams || len(p.reqs[i].head) > maxHead {
				t.Fatalf("request buffers %d/%d", len(p.reqs[i].params), len(p.reqs[i].head))
			}
		}
	})
	if closeAtEnd {
		p.Close(emit)
	}
}
