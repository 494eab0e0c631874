package mongodb

import (
	"testing"

	"github.com/sightline-io/sightline/agent/capture"
	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/internal/parsertest"
)

// BenchmarkParseMongoDB parses a driver's find command and its cursor
// reply, one segment each.
func BenchmarkParseMongoDB(b *testing.B) {
	f := newFixtures(b)
	p := New(l7.Config{}).NewParser()
	reqSeg := &capture.Segment{Dir: capture.AtoB, Data: f.find, Len: len(f.find)}
	respSeg := &capture.Segment{Dir: capture.BtoA, Data: f.findReply, Len: len(f.findReply)}
	parsertest.Bench(b, p, 2, reqSeg, respSeg)
}
