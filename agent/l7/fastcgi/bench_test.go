package fastcgi

import (
	"testing"

	"github.com/sightline-io/sightline/agent/capture"
	"github.com/sightline-io/sightline/internal/parsertest"
)

// BenchmarkParseFastCGI parses nginx's request (BEGIN_REQUEST, the usual
// fastcgi_params, STDIN) and php-fpm's response, one segment each.
func BenchmarkParseFastCGI(b *testing.B) {
	req := nginxRequest(1, "GET", "/api/users/42?name=alice", "")
	resp := fpmResponse(1, "X-Powered-By: PHP/8.2\r\nContent-type: text/html; charset=UTF-8\r\n", "<html>hello</html>", "", 0)
	p := newParser(false)
	reqSeg := &capture.Segment{Dir: capture.AtoB, Data: req, Len: len(req)}
	respSeg := &capture.Segment{Dir: capture.BtoA, Data: resp, Len: len(resp)}
	parsertest.Bench(b, p, 2, reqSeg, respSeg)
}
