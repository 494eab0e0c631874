package dns

import (
	"encoding/binary"
	"net"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/sightline-io/sightline/agent/capture"
	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/flowlog"
)

const (
	out = capture.AtoB
	in  = capture.BtoA
)

// query builds a packed query with EDNS, as dig sends it.
func query(t testing.TB, id uint16, name string, qtype uint16) []byte {
	t.Helper()
	m := new(mdns.Msg)
	m.SetQuestion(mdns.Fqdn(name), qtype)
	m.Id = id
	m.SetEdns0(1232, false)
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// answer builds a packed, compressed response to q with rcode and records.
func answer(t testing.TB, q []byte, rcode int, rrs ...string) []byte {
	t.Helper()
	req := new(mdns.Msg)
	if err := req.Unpack(q); err != nil {
		t.Fatal(err)
	}
	m := new(mdns.Msg)
	m.SetRcode(req, rcode)
	m.Compress = true
	for _, s := range rrs {
		rr, err := mdns.NewRR(s)
		if err != nil {
			t.Fatal(err)
		}
		m.Answer = append(m.Answer, rr)
	}
	m.SetEdns0(1232, false)
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func prefixed(msgs ...[]byte) []byte {
	var b []byte
	for _, m := range msgs {
		b = binary.BigEndian.AppendUint16(b, uint16(len(m)))
		b = append(b, m...)
	}
	return b
}

type rec struct {
	dir  capture.Direction
	data []byte
	gap  int
}

type summary struct {
	Type      l7.MessageType
	Dir       capture.Direction
	QType     string
	Name      string
	ID        uint64
	Code      int32
	Status    flowlog.ResponseStatus
	Exception string
	Result    string
	Length    int64
	Captured  uint32
}

func run(t *testing.T, l4 uint8, recs []rec) []summary {
	t.Helper()
	p := New(l7.Config{}).NewParser()
	var got []summary
	now := time.Unix(1700000000, 0)
	for i, r := range recs {
		seg := &capture.Segment{Dir: r.dir, Data: r.data, Len: len(r.data) + r.gap, Tuple: capture.Tuple{L4: l4},
			Start: now.Add(time.Duration(i) * time.Millisecond), End: now.Add(time.Duration(i)*time.Millisecond + 10)}
		p.Feed(seg, func(m *l7.Message) {
			if m.Protocol != flowlog.L7DNS || !m.HasRequestID {
				t.Fatalf("bad message %+v", m)
			}
			if m.Domain != m.Resource || m.Domain != m.Endpoint {
				t.Fatalf("domain/resource/endpoint differ: %+v", m)
			}
			got = append(got, summary{Type: m.Type, Dir: m.Dir, QType: m.RequestType, Name: m.Domain, ID: m.RequestID,
				Code: m.Code, Status: m.Status, Exception: m.Exception, Result: m.Result, Length: m.Length, Captured: m.Captured})
		})
	}
	p.Close(func(*l7.Message) { t.Fatal("close emitted") })
	return got
}

func reqSum(dir capture.Direction, id uint64, qtype, name string, msg []byte, extra int) summary {
	return summary{Type: l7.Request, Dir: dir, QType: qtype, Name: name, ID: id, Length: int64(len(msg) + extra), Captured: uint32(len(msg))}
}

func respSum(dir capture.Direction, id uint64, code int32, st flowlog.ResponseStatus, exc, result string, msg []byte, extra int) summary {
	return summary{Type: l7.Response, Dir: dir, ID: id, Code: code, Status: st, Exception: exc, Result: result,
		Length: int64(len(msg) + extra), Captured: uint32(len(msg))}
}

func TestParserUDP(t *testing.T) {
	qA := query(t, 0x1234, "www.example.test", mdns.TypeA)
	rA := answer(t, qA, mdns.RcodeSuccess, "www.example.test. 60 IN CNAME web.example.test.", "web.example.test. 60 IN A 10.1.2.3")
	q6 := query(t, 7, "svc.test", mdns.TypeAAAA)
	r6 := answer(t, q6, mdns.RcodeSuccess, "svc.test. 0 IN AAAA fd00::9")
	qNX := query(t, 8, "nope.test", mdns.TypeA)
	rNX := answer(t, qNX, mdns.RcodeNameError)
	qSF := query(t, 9, "broken.test", mdns.TypeMX)
	rSF := answer(t, qSF, mdns.RcodeServerFailure)
	qRF := query(t, 10, "x.test", mdns.TypeANY)
	rRF := answer(t, qRF, mdns.RcodeRefused)
	qFE := query(t, 11, "y.test", 4242)
	rFE := answer(t, qFE, mdns.RcodeFormatError)
	qSRV := query(t, 12, "_http._tcp.svc.test", mdns.TypeSRV)
	rSRV := answer(t, qSRV, 0, "_http._tcp.svc.test. 5 IN SRV 1 2 8080 node1.svc.test.", "_http._tcp.svc.test. 5 IN SRV 1 2 8080 node2.svc.test.")
	qMX := query(t, 13, "mail.test", mdns.TypeMX)
	rMX := answer(t, qMX, 0, "mail.test. 5 IN MX 10 mx1.mail.test.", `mail.test. 5 IN TXT "v=spf1 -all"`, "mail.test. 5 IN HTTPS 1 . alpn=h2")
	qPTR := query(t, 14, "3.2.1.10.in-addr.arpa", mdns.TypePTR)
	rPTR := answer(t, qPTR, 0, "3.2.1.10.in-addr.arpa. 5 IN PTR host.test.")
	qRoot := query(t, 15, ".", mdns.TypeNS)

	tests := []struct {
		name string
		recs []rec
		want []summary
	}{
		{"A with CNAME chain", []rec{{out, qA, 0}, {in, rA, 0}}, []summary{
			reqSum(out, 0x1234, "A", "www.example.test", qA, 0),
			respSum(in, 0x1234, 0, flowlog.StatusSuccess, "", "CNAME web.example.test;A 10.1.2.3", rA, 0),
		}},
		{"AAAA", []rec{{out, q6, 0}, {in, r6, 0}}, []summary{
			reqSum(out, 7, "AAAA", "svc.test", q6, 0),
			respSum(in, 7, 0, flowlog.StatusSuccess, "", "AAAA fd00::9", r6, 0),
		}},
		{"error rcodes", []rec{{out, qNX, 0}, {in, rNX, 0}, {out, qSF, 0}, {in, rSF, 0}, {out, qRF, 0}, {in, rRF, 0}, {out, qFE, 0}, {in, rFE, 0}}, []summary{
			reqSum(out, 8, "A", "nope.test", qNX, 0),
			respSum(in, 8, 3, flowlog.StatusClientError, "NXDOMAIN", "", rNX, 0),
			reqSum(out, 9, "MX", "broken.test", qSF, 0),
			respSum(in, 9, 2, flowlog.StatusServerError, "SERVFAIL", "", rSF, 0),
			reqSum(out, 10, "ANY", "x.test", qRF, 0),
			respSum(in, 10, 5, flowlog.StatusServerError, "REFUSED", "", rRF, 0),
			reqSum(out, 11, "TYPE4242", "y.test", qFE, 0),
			respSum(in, 11, 1, flowlog.StatusClientError, "FORMERR", "", rFE, 0),
		}},
		{"SRV, MX, TXT, HTTPS, PTR, root", []rec{{out, qSRV, 0}, {in, rSRV, 0}, {out, qMX, 0}, {in, rMX, 0}, {out, qPTR, 0}, {in, rPTR, 0}, {out, qRoot, 0}}, []summary{
			reqSum(out, 12, "SRV", "_http._tcp.svc.test", qSRV, 0),
			respSum(in, 12, 0, flowlog.StatusSuccess, "", "SRV 1 2 8080 node1.svc.test;SRV 1 2 8080 node2.svc.test", rSRV, 0),
			reqSum(out, 13, "MX", "mail.test", qMX, 0),
			respSum(in, 13, 0, flowlog.StatusSuccess, "", "MX 10 mx1.mail.test;TXT v=spf1 -all;HTTPS 1 .", rMX, 0),
			reqSum(out, 14, "PTR", "3.2.1.10.in-addr.arpa", qPTR, 0),
			respSum(in, 14, 0, flowlog.StatusSuccess, "", "PTR host.test", rPTR, 0),
			reqSum(out, 15, "NS", ".", qRoot, 0),
		}},
		{"server side: query in, answer out", []rec{{in, qA, 0}, {out, rA, 0}}, []summary{
			reqSum(in, 0x1234, "A", "www.example.test", qA, 0),
			respSum(out, 0x1234, 0, flowlog.StatusSuccess, "", "CNAME web.example.test;A 10.1.2.3", rA, 0),
		}},
		{"response cut by the capture", []rec{{out, qA, 0}, {in, rA[:len(rA)-20], 20}}, []summary{
			reqSum(out, 0x1234, "A", "www.example.test", qA, 0),
			respSum(in, 0x1234, 0, flowlog.StatusSuccess, "", "CNAME web.example.test", rA[:len(rA)-20], 20),
		}},
		{"garbage and short datagrams are skipped", []rec{{out, []byte("GET / HTTP/1.1\r\n\r\n"), 0}, {out, []byte{1, 2, 3}, 0}, {out, qA, 0}}, []summary{
			reqSum(out, 0x1234, "A", "www.example.test", qA, 0),
		}},
		{"malformed response is emitted as parse failed", []rec{{in, append(append([]byte{}, rA[:12]...), 0xc0, 0x0c), 0}}, []summary{
			respSum(in, 0x1234, 0, flowlog.StatusParseFailed, "", "", append(append([]byte{}, rA[:12]...), 0xc0, 0x0c), 0),
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			check(t, run(t, 17, tt.recs), tt.want)
		})
	}
}

func check(t *testing.T, got, want []summary) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d messages, want %d:\n got %+v\nwant %+v", len(got), len(want), got, want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Errorf("message %d:\n got %+v\nwant %+v", i, got[i], want[i])
		}
	}
}

func TestParserTCP(t *testing.T) {
	q1 := query(t, 1, "a.test", mdns.TypeA)
	r1 := answer(t, q1, 0, "a.test. 1 IN A 10.0.0.1")
	q2 := query(t, 2, "b.test", mdns.TypeAAAA)
	r2 := answer(t, q2, 3)
	big := answer(t, q1, 0, manyA(200)...)
	w1 := []summary{reqSum(out, 1, "A", "a.test", q1, 2), respSum(in, 1, 0, flowlog.StatusSuccess, "", "A 10.0.0.1", r1, 2)}
	w2 := []summary{reqSum(out, 2, "AAAA", "b.test", q2, 2), respSum(in, 2, 3, flowlog.StatusClientError, "NXDOMAIN", "", r2, 2)}

	tests := []struct {
		name string
		recs []rec
		want []summary
	}{
		{"one message per segment", []rec{{out, prefixed(q1), 0}, {in, prefixed(r1), 0}, {out, prefixed(q2), 0}, {in, prefixed(r2), 0}}, append(w1, w2...)},
		{"pipelined queries and answers", []rec{{out, prefixed(q1, q2), 0}, {in, prefixed(r2, r1), 0}}, []summary{w1[0], w2[0], w2[1], w1[1]}},
		{"length prefix read separately, then bare message", []rec{{in, q1, 0}, {out, prefixed(r1), 0}, {in, prefixed(q2)[:1], 0}, {in, prefixed(q2)[1:2], 0}, {in, q2, 0}, {out, prefixed(r2), 0}}, []summary{
			reqSum(in, 1, "A", "a.test", q1, 0), respSum(out, 1, 0, flowlog.StatusSuccess, "", "A 10.0.0.1", r1, 2),
			reqSum(in, 2, "AAAA", "b.test", q2, 2), respSum(out, 2, 3, flowlog.StatusClientError, "NXDOMAIN", "", r2, 2),
		}},
		{"large answer cut by the capture, then framing continues", []rec{{out, prefixed(q1), 0}, {in, prefixed(big)[:300], len(big) + 2 - 300}, {out, prefixed(q2), 0}, {in, prefixed(r2), 0}}, []summary{
			w1[0],
			respSum(in, 1, 0, flowlog.StatusSuccess, "", manyResult(), prefixed(big)[2:300], len(big)+2-298),
			w2[0], w2[1],
		}},
		{"capture starts mid-message: resync on the next segment", []rec{{out, prefixed(q1)[5:], 0}, {out, prefixed(q2), 0}, {in, prefixed(r2), 0}}, w2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			check(t, run(t, 6, tt.recs), tt.want)
		})
	}

	t.Run("split at every byte boundary", func(t *testing.T) {
		reqs, resps := prefixed(q1, q2), prefixed(r1, r2)
		for i := 1; i < len(reqs); i++ {
			for _, j := range []int{1, i % len(resps), len(resps) - 1} {
				if j == 0 {
					continue
				}
				got := run(t, 6, []rec{{out, reqs[:i], 0}, {out, reqs[i:], 0}, {in, resps[:j], 0}, {in, resps[j:], 0}})
				check(t, got, []summary{w1[0], w2[0], w1[1], w2[1]})
			}
		}
	})
}

func manyA(n int) []string {
	var rrs []string
	for i := range n {
		rrs = append(rrs, "a.test. 1 IN A "+net.IPv4(10, 0, byte(i/250), byte(i%250+1)).String())
	}
	return rrs
}

// manyResult is the rendering of manyA's records that fits in 298 captured
// bytes: header 12, question 12, then 16 bytes per compressed A record.
func manyResult() string {
	s := ""
	for i := range (298 - 24) / 16 {
		if i > 0 {
			s += ";"
		}
		s += "A " + net.IPv4(10, 0, 0, byte(i+1)).String()
	}
	return s
}

func TestParserHostile(t *testing.T) {
	hdr := func(flags, qd, an uint16) []byte {
		b := []byte{0xab, 0xcd}
		b = binary.BigEndian.AppendUint16(b, flags)
		b = binary.BigEndian.AppendUint16(b, qd)
		b = binary.BigEndian.AppendUint16(b, an)
		return append(b, 0, 0, 0, 0)
	}
	loop := append(hdr(0x8180, 1, 0), 0xc0, 12, 0, 1, 0, 1)      // pointer to itself
	fwd := append(hdr(0x8180, 1, 0), 0xc0, 20, 0, 1, 0, 1, 0, 0) // forward pointer
	long := hdr(0x0100, 1, 0)
	for range 5 {
		long = append(long, 63)
		for range 63 {
			long = append(long, 'a')
		}
	}
	long = append(long, 0, 0, 1, 0, 1)
	hugeCounts := append(hdr(0x8180, 1, 0xffff), 1, 'a', 0, 0, 1, 0, 1)
	rr := func(rdLen uint16) []byte {
		return []byte{0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 1, byte(rdLen >> 8), byte(rdLen)}
	}
	badRD := append(append(hdr(0x8180, 1, 1), 1, 'a', 0, 0, 1, 0, 1), rr(9000)...)

	got := run(t, 17, []rec{{in, loop, 0}, {in, fwd, 0}, {out, long, 0}, {in, hugeCounts, 0}, {in, badRD, 0}})
	for _, s := range got {
		if s.Type != l7.Response || s.Status != flowlog.StatusParseFailed {
			t.Errorf("hostile message parsed as %+v", s)
		}
	}
	if len(got) != 4 {
		t.Errorf("got %d messages, want 4 parse failures: %+v", len(got), got)
	}
}

func TestInfer(t *testing.T) {
	p := New(l7.Config{})
	q := query(t, 99, "infer.test", mdns.TypeA)
	r := answer(t, q, 0, "infer.test. 1 IN A 1.2.3.4")
	plain := new(mdns.Msg)
	plain.SetQuestion("plain.test.", mdns.TypeAAAA)
	pq, _ := plain.Pack()
	tls := []byte{0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00, 0x00, 0xa1, 0x03, 0x03, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13}
	tests := []struct {
		name string
		data []byte
		l4   uint8
		want l7.Inference
	}{
		{"udp query", q, 17, l7.IsRequest},
		{"udp query without EDNS", pq, 17, l7.IsRequest},
		{"udp response", r, 17, l7.IsResponse},
		{"tcp query", prefixed(q), 6, l7.IsRequest},
		{"tcp response", prefixed(r), 6, l7.IsResponse},
		{"tcp query cut in the question", prefixed(q)[:20], 6, l7.NeedMore},
		{"tcp query cut in EDNS", prefixed(q)[:40], 6, l7.IsRequest},
		{"tcp prefix only", prefixed(q)[:2], 6, l7.NeedMore},
		{"tcp bare query", q, 6, l7.IsRequest},
		{"udp query with trailing bytes", append(append([]byte{}, q...), 0), 17, l7.NotMine},
		{"http", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), 6, l7.NotMine},
		{"http response", []byte("HTTP/1.1 200 OK\r\n\r\n"), 6, l7.NotMine},
		{"tls", tls, 6, l7.NotMine},
		{"udp zeros", make([]byte, 40), 17, l7.NotMine},
		{"query with answers", func() []byte { b := append([]byte{}, q...); b[7] = 1; return b }(), 17, l7.NotMine},
		{"bad class", func() []byte { b := append([]byte{}, pq...); b[len(b)-1] = 9; return b }(), 17, l7.NotMine},
		{"other l4", q, 1, l7.NotMine},
	}
	for _, tt := range tests {
		if got := p.Infer(tt.data, tt.l4); got != tt.want {
			t.Errorf("%s: Infer = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestConfig(t *testing.T) {
	if got := New(l7.Config{}).Timeout(); got != DefaultTimeout {
		t.Errorf("default timeout %v", got)
	}
	if got := New(l7.Config{Timeout: time.Second}).Timeout(); got != time.Second {
		t.Errorf("timeout %v", got)
	}
	p := New(l7.Config{})
	if p.ID() != flowlog.L7DNS || p.Matching() != l7.MatchByID {
		t.Error("identity")
	}
}
