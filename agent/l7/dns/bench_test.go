package dns

import (
	"testing"

	mdns "github.com/miekg/dns"

	"github.com/sightline-io/sightline/agent/capture"
	"github.com/sightline-io/sightline/internal/parsertest"
)

// BenchmarkParseDNS parses a UDP query and its answer (a CNAME chain to an
// A record, EDNS), as a resolver sees them.
func BenchmarkParseDNS(b *testing.B) {
	q := query(b, 0x4242, "www.example.test", mdns.TypeA)
	r := answer(b, q, 0, "www.example.test. 60 IN CNAME web.example.test.", "web.example.test. 60 IN A 10.1.2.3")
	p := newParser()
	udp := capture.Tuple{L4: 17}
	reqSeg := &capture.Segment{Dir: capture.AtoB, Data: q, Len: len(q), Tuple: udp}
	respSeg := &capture.Segment{Dir: capture.BtoA, Data: r, Len: len(r), Tuple: udp}
	parsertest.Bench(b, p, 2, reqSeg, respSeg)
}
