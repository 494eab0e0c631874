package dns

import (
	"testing"

	mdns "github.com/miekg/dns"

	"github.com/sightline-io/sightline/agent/capture"
	"github.com/sightline-io/sightline/agent/l7"
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
	var n int
	emit := func(*l7.Message) { n++ }
	b.SetBytes(int64(len(q) + len(r)))
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
