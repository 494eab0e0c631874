package mysql

import (
	"bytes"
	"compress/zlib"
	"strings"
	"testing"
	"time"

	"github.com/sightline-io/sightline/agent/capture"
	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/flowlog"
)

const (
	cli = capture.AtoB // client egress in these exchanges
	srv = capture.BtoA
)

// pkt builds a packet: 3-byte length, sequence, payload.
func pkt(seq byte, parts ...string) string {
	p := strings.Join(parts, "")
	n := len(p)
	return string([]byte{byte(n), byte(n >> 8), byte(n >> 16), seq}) + p
}

func le16(v int) string { return string([]byte{byte(v), byte(v >> 8)}) }
func le32(v uint32) string {
	return string([]byte{byte(v), byte(v >> 8), byte(v >> 16), byte(v >> 24)})
}

const testPassword = "hunter2-scramble-xxyz"

func greetingPkt(caps uint32) string {
	return pkt(0, "\x0a", "10.11.19-MariaDB-0+deb12u1\x00", le32(42), "abcdefgh", "\x00",
		le16(int(caps&0xffff)), "\x2d", le16(2), le16(int(caps>>16)), "\x15", strings.Repeat("\x00", 10),
		"ijklmnopqrst\x00", "mysql_native_password\x00")
}

const baseCaps = capProtocol41 | capSecureConnection | capConnectWithDB | capPluginAuth

func loginPkt(caps uint32, user, db string) string {
	return pkt(1, le32(caps), le32(1<<24), "\x2d", strings.Repeat("\x00", 23), user, "\x00",
		"\x14", testPassword[:20], db, "\x00", "mysql_native_password\x00")
}

func okPkt(seq byte, affected byte) string {
	return pkt(seq, "\x00", string([]byte{affected}), "\x00", le16(2), le16(0))
}

func errPkt(seq byte, code int, state, msg string) string {
	return pkt(seq, "\xff", le16(code), "#", state, msg)
}

func queryPkt(sql string) string { return pkt(0, "\x03", sql) }

// resultSet builds a text result set of one column and n rows, with EOF
// packets or (deprecateEOF) an OK-with-0xfe terminator.
func resultSet(n int, deprecateEOF bool) string {
	var b strings.Builder
	seq := byte(1)
	next := func() byte { s := seq; seq++; return s }
	b.WriteString(pkt(next(), "\x01"))
	b.WriteString(pkt(next(), "\x03def\x04shop\x01t\x01t\x02id\x02id\x0c", le16(63), le32(11), "\x03", le16(0), "\x00", le16(0)))
	if !deprecateEOF {
		b.WriteString(pkt(next(), "\xfe\x00\x00", le16(2)))
	}
	for i := range n {
		b.WriteString(pkt(next(), "\x01", string(rune('0'+i%10))))
	}
	if deprecateEOF {
		b.WriteString(pkt(next(), "\xfe\x00\x00", le16(2), le16(0)))
	} else {
		b.WriteString(pkt(next(), "\xfe\x00\x00", le16(2)))
	}
	return b.String()
}

// compressed wraps packets in one compressed packet (zlib unless raw).
func compressed(seq byte, packets string, raw bool) string {
	payload, n := packets, 0
	if !raw {
		var b bytes.Buffer
		w := zlib.NewWriter(&b)
		w.Write([]byte(packets))
		w.Close()
		payload, n = b.String(), len(packets)
	}
	l := len(payload)
	return string([]byte{byte(l), byte(l >> 8), byte(l >> 16), seq, byte(n), byte(n >> 8), byte(n >> 16)}) + payload
}

// rec is one segment: data plus gap uncaptured bytes.
type rec struct {
	dir  capture.Direction
	data string
	gap  int
}

// summary is what the table tests compare.
type summary struct {
	Type     l7.MessageType
	Dir      capture.Direction
	ReqType  string
	Domain   string
	Resource string
	Status   flowlog.ResponseStatus
	Code     int32
	Exc      string
	Affected int64 // -1: none
	OneWay   bool
}

func rq(typ, domain, resource string) summary {
	return summary{Type: l7.Request, Dir: cli, ReqType: typ, Domain: domain, Resource: resource, Affected: -1}
}

func oneway(typ, domain, resource string) summary {
	s := rq(typ, domain, resource)
	s.OneWay = true
	return s
}

func ok(affected int64) summary {
	return summary{Type: l7.Response, Dir: srv, Affected: affected}
}

func fail(code int32, status flowlog.ResponseStatus, exc string) summary {
	return summary{Type: l7.Response, Dir: srv, Code: code, Status: status, Exc: exc, Affected: -1}
}

func summarize(m *l7.Message) summary {
	s := summary{Type: m.Type, Dir: m.Dir, ReqType: m.RequestType, Domain: m.Domain, Resource: m.Resource,
		Status: m.Status, Code: m.Code, Exc: m.Exception, Affected: -1, OneWay: m.OneWay}
	if m.HasAffectedRows {
		s.Affected = int64(m.SQLAffectedRows)
	}
	return s
}

// run feeds recs to a fresh parser and returns the messages' summaries.
func run(t *testing.T, p *Parser, recs []rec) []summary {
	t.Helper()
	var out []summary
	emit := func(m *l7.Message) {
		if m.Protocol != flowlog.L7MySQL {
			t.Fatalf("protocol %v", m.Protocol)
		}
		if m.Length >= 0 && m.Length < int64(m.Captured) {
			t.Fatalf("length %d < captured %d", m.Length, m.Captured)
		}
		out = append(out, summarize(m))
	}
	now := time.Unix(1700000000, 0)
	for _, r := range recs {
		now = now.Add(time.Millisecond)
		seg := &capture.Segment{Dir: r.dir, Start: now, End: now, Data: []byte(r.data), Len: len(r.data) + r.gap}
		p.Feed(seg, emit)
	}
	p.Close(emit)
	return out
}
