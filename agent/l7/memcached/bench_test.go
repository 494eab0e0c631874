package memcached

import (
	"strings"
	"testing"

	"github.com/sightline-io/sightline/agent/capture"
	"github.com/sightline-io/sightline/internal/parsertest"
)

// BenchmarkParseMemcached parses text set/get exchanges, one segment per
// command and per reply, as gomemcache produces them.
func BenchmarkParseMemcached(b *testing.B) {
	value := strings.Repeat("x", 64)
	exchanges := []string{
		"set session:12345 0 300 64\r\n" + value + "\r\n", "STORED\r\n",
		"get session:12345\r\n", "VALUE session:12345 0 64\r\n" + value + "\r\nEND\r\n",
	}
	var segs []*capture.Segment
	for i, s := range exchanges {
		segs = append(segs, &capture.Segment{Dir: capture.Direction(i & 1), Data: []byte(s), Len: len(s)})
	}
	parsertest.Bench(b, newParser(), len(segs), segs...)
}

// BenchmarkParseMemcachedBinary parses binary get exchanges.
func BenchmarkParseMemcachedBinary(b *testing.B) {
	reqs := frame(magicRequest, 0x00, 0, 1, "", "session:12345", "")
	reps := frame(magicResponse, 0x00, 0, 1, "\x00\x00\x00\x00", "", strings.Repeat("x", 64))
	segs := []*capture.Segment{
		{Dir: capture.AtoB, Data: []byte(reqs), Len: len(reqs)},
		{Dir: capture.BtoA, Data: []byte(reps), Len: len(reps)},
	}
	parsertest.Bench(b, newParser(), len(segs), segs...)
}
