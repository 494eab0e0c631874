package http2

import (
	"testing"
	"time"

	"github.com/sightline-io/sightline/agent/capture"
	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/flowlog"
	"github.com/sightline-io/sightline/internal/parsertest"
)

// FuzzHTTP2Parser feeds arbitrary bytes split into segments by plan: each
// pair of plan bytes gives a segment size, its direction (bit 0) and an
// optional gap of uncaptured bytes (bit 1, size from the upper bits). It
// checks that nothing panics, buffers stay bounded, messages are sane, and
// that inference never panics on the same bytes.
func FuzzHTTP2Parser(f *testing.F) {
	c := newConv(f)
	handshake(c).unary(1, check, "5", "not found")
	data, plan := flatten(c.recs)
	f.Add(data, plan)
	f.Add([]byte(preface), []byte{})
	f.Fuzz(func(t *testing.T, data, plan []byte) {
		New(l7.Config{}).Infer(data, 6)
		p := newTestParser()
		var fed [2]int64
		var emitted uint64
		emit := func(m *l7.Message) {
			emitted++
			if m.Protocol != flowlog.L7HTTP2 && m.Protocol != flowlog.L7GRPC || m.Dir > 1 || !m.HasRequestID {
				t.Fatalf("bad message identity %+v", m)
			}
			if m.Length < 0 || int64(m.Captured) > m.Length || int64(m.Captured) > fed[0]+fed[1] {
				t.Fatalf("length %d captured %d fed %v", m.Length, m.Captured, fed)
			}
			if len(m.Exception) > 64+maxExceptionLen || len(m.XRequestID) > maxXRequestID {
				t.Fatalf("unbounded strings %q %q", m.Exception, m.XRequestID)
			}
		}
		now := time.Unix(0, 0)
		parsertest.FeedPlan(data, plan, 0x3f, func(seg *capture.Segment) {
			now = now.Add(300 * time.Millisecond)
			seg.Start, seg.End = now, now
			fed[seg.Dir] += int64(len(seg.Data))
			p.Feed(seg, emit)
			checkBounds(t, p)
		})
		p.Close(emit)
		if s := p.Stats(); s.Requests+s.Responses != emitted {
			t.Fatalf("stats count %d messages, emitted %d", s.Requests+s.Responses, emitted)
		}
		if len(p.streams) != 0 || p.held != 0 {
			t.Fatalf("after Close: %d streams, %d held", len(p.streams), p.held)
		}
	})
}

// flatten turns recs into fuzz input: the bytes, and a plan of segments of
// at most 256 bytes each with their directions and gaps.
func flatten(recs []rec) (data, plan []byte) {
	for _, r := range recs {
		d := r.data
		for len(d) > 0 {
			n := min(len(d), 256)
			data = append(data, d[:n]...)
			flags := byte(r.dir)
			if n == len(d) && r.gap > 0 {
				flags |= 2 | byte(min(r.gap/37, 63))<<2
			}
			plan = append(plan, byte(n-1), flags)
			d = d[n:]
		}
	}
	return data, plan
}
