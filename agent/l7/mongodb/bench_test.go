package mongodb

import (
	"testing"

	"github.com/sightline-io/sightline/agent/capture"
	"github.com/sightline-io/sightline/agent/l7"
)

// BenchmarkParseMongoDB parses a driver's find command and its cursor
// reply, one segment each.
func BenchmarkParseMongoDB(b *testing.B) {
	f := newFixtures(b)
	p := New(l7.Config{}).NewParser()
	reqSeg := &capture.Segment{Dir: capture.AtoB, Data: f.find, Len: len(f.find)}
	respSeg := &capture.Segment{Dir: capture.BtoA, Data: f.findReply, Len: len(f.findReply)}
	var n int
	emit := func(*l7.Message) { n++ }
	b.SetBytes(int64(len(f.find) + len(f.findReply)))
	b.ReportAllocs()
	for b.Loop() {
		p.Feed(reqSeg, emit)
		p.Feed(respSeg, emit)
	}
	if n != 2*b.N {
		b.Fatalf("parsed %d messages, want %d", n, 2*b.N)
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "msgs/s")
}
