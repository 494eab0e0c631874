package fastcgi

import (
	"testing"

	"github.com/sightline-io/sightline/agent/capture"
	"github.com/sightline-io/sightline/agent/l7"
)

// BenchmarkParseFastCGI parses nginx's request (BEGIN_REQUEST, the usual
// fastcgi_params, STDIN) and php-fpm's response, one segment each.
func BenchmarkParseFastCGI(b *testing.B) {
	req := nginxRequest(1, "GET", "/api/users/42?name=alice", "")
	resp := fpmResponse(1, "X-Powered-By: PHP/8.2\r\nContent-type: text/html; charset=UTF-8\r\n", "<html>hello</html>", "", 0)
	p := newParser(false)
	reqSeg := &capture.Segment{Dir: capture.AtoB, Data: req, Len: len(req)}
	respSeg := &capture.Segment{Dir: capture.BtoA, Data: resp, Len: len(resp)}
	var n int
	emit := func(*l7.Message) { n++ }
	b.SetBytes(int64(len(req) + len(resp)))
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
