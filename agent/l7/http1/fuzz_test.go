package http1

import (
	"testing"

	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/flowlog"
	"github.com/sightline-io/sightline/internal/parsertest"
)

// FuzzParser feeds arbitrary bytes split into segments by plan: each pair of
// plan bytes gives a segment size, its direction and an optional gap.
func FuzzParser(f *testing.F) {
	f.Add([]byte(curlGet+nginxOK), []byte{byte(len(curlGet) - 1), 0, 200, 1})
	f.Add([]byte(goPost+goChunkedHead+goChunkedBody), []byte{9, 0, 255, 0, 255, 1, 3, 3, 40, 1})
	f.Add([]byte("HTTP/1.0 200 OK\r\n\r\nbody"), []byte{})
	f.Fuzz(func(t *testing.T, data, plan []byte) {
		for _, maxHead := range []int{256, DefaultMaxHeaderBytes} {
			checkParse(t, New(WithMaxHeaderBytes(maxHead)).NewParser().(*Parser), data, plan)
		}
	})
}

func checkParse(t *testing.T, p *Parser, data, plan []byte) {
	var emitted uint64
	check := func(m *l7.Message, fed *[2]int64) {
		emitted++
		if m.Protocol != flowlog.L7HTTP1 || m.Dir > 1 {
			t.Fatalf("bad message identity %+v", m)
		}
		if m.Length < -1 || m.Length >= 0 && m.Length < int64(m.Captured) || int64(m.Captured) > fed[m.Dir] {
			t.Fatalf("length %d captured %d fed %d", m.Length, m.Captured, fed[m.Dir])
		}
		if m.Type == l7.Response && (!m.HasCode || m.Code < 100 || m.Code > 599) {
			t.Fatalf("response without a valid code: %+v", m)
		}
		if m.Type == l7.Request && m.RequestType == "" {
			t.Fatalf("request without a method: %+v", m)
		}
	}
	parsertest.Fuzz(p, data, plan, check, func() {
		for i := range p.dirs {
			if len(p.dirs[i].head) > p.maxHead {
				t.Fatalf("head buffer holds %d bytes, limit %d", len(p.dirs[i].head), p.maxHead)
			}
		}
	})
	if s := p.Stats(); s.Requests+s.Responses != emitted {
		t.Fatalf("stats count %d messages, emitted %d", s.Requests+s.Responses, emitted)
	}
}
