package redis

import (
	"strings"
	"testing"

	"github.com/sightline-io/sightline/agent/capture"
	"github.com/sightline-io/sightline/internal/parsertest"
)

// BenchmarkParseRedis parses a pipeline of 50 GET/SET pairs per write and
// their 100 replies per read, as a pipelining client produces them.
func BenchmarkParseRedis(b *testing.B) {
	reqs := strings.Repeat("*3\r\n$3\r\nSET\r\n$10\r\nuser:12345\r\n$16\r\n0123456789abcdef\r\n"+
		"*2\r\n$3\r\nGET\r\n$10\r\nuser:12345\r\n", 50)
	reps := strings.Repeat("+OK\r\n$16\r\n0123456789abcdef\r\n", 50)
	reqSeg := &capture.Segment{Dir: capture.AtoB, Data: []byte(reqs), Len: len(reqs)}
	respSeg := &capture.Segment{Dir: capture.BtoA, Data: []byte(reps), Len: len(reps)}
	parsertest.Bench(b, newParser(false), 200, reqSeg, respSeg)
}
