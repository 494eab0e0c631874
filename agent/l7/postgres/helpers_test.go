package postgres

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sightline-io/sightline/agent/capture"
	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/flowlog"
)

const (
	fe = capture.AtoB // frontend (client) egress in these exchanges
	be = capture.BtoA
)

func be32s(v int) string { return string([]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}) }

// msg builds a typed message.
func msg(typ byte, parts ...string) string {
	body := strings.Join(parts, "")
	return string([]byte{typ}) + be32s(len(body)+4) + body
}

func startupMsg(params ...string) string {
	body := be32s(protocol30) + strings.Join(params, "\x00") + "\x00\x00"
	return be32s(len(body)+4) + body
}

func query(sql string) string       { return msg('Q', sql, "\x00") }
func parse(name, sql string) string { return msg('P', name, "\x00", sql, "\x00", "\x00\x00") }
func bind(portal, stmt string) string {
	return msg('B', portal, "\x00", stmt, "\x00", "\x00\x00", "\x00\x01", be32s(1), "7", "\x00\x00")
}
func describe(kind byte, name string) string { return msg('D', string([]byte{kind}), name, "\x00") }
func execute(portal string) string           { return msg('E', portal, "\x00", be32s(0)) }

var (
	sync          = msg('S')
	parseComplete = msg('1')
	bindComplete  = msg('2')
	noData        = msg('n')
	rowDesc       = msg('T', "\x00\x01", "id\x00", be32s(0), "\x00\x00", be32s(23), "\x00\x04", be32s(-1), "\x00\x00")
	paramDesc     = msg('t', "\x00\x01", be32s(23))
	idle          = msg('Z', "I")
)

func dataRow(v string) string    { return msg('D', "\x00\x01", be32s(len(v)), v) }
func complete(tag string) string { return msg('C', tag, "\x00") }
func errorResp(code, text string) string {
	return msg('E', "SERROR\x00", "VERROR\x00", "C", code, "\x00", "M", text, "\x00", "Fparse.c\x00", "\x00")
}

const authOK = "R\x00\x00\x00\x08\x00\x00\x00\x00"

func loginOK() string {
	return authOK + msg('S', "server_version\x0016.4\x00") + msg('K', be32s(42), be32s(7)) + idle
}

type rec struct {
	dir  capture.Direction
	data string
	gap  int
}

type summary struct {
	Type     l7.MessageType
	Dir      capture.Direction
	ReqType  string
	Domain   string
	Resource string
	Status   flowlog.ResponseStatus
	Exc      string
	Result   string
	Affected int64
	OneWay   bool
}

func rq(typ, domain, resource string) summary {
	return summary{Type: l7.Request, Dir: fe, ReqType: typ, Domain: domain, Resource: resource, Affected: -1}
}

func ok(tag string, affected int64) summary {
	return summary{Type: l7.Response, Dir: be, Result: tag, Affected: affected}
}

func fail(status flowlog.ResponseStatus, exc string) summary {
	return summary{Type: l7.Response, Dir: be, Status: status, Exc: exc, Affected: -1}
}

func run(t *testing.T, p *Parser, recs []rec) []summary {
	t.Helper()
	var out []summary
	emit := func(m *l7.Message) {
		if m.Protocol != flowlog.L7Postgres {
			t.Fatalf("protocol %v", m.Protocol)
		}
		s := summary{Type: m.Type, Dir: m.Dir, ReqType: m.RequestType, Domain: m.Domain, Resource: m.Resource,
			Status: m.Status, Exc: m.Exception, Result: m.Result, Affected: -1, OneWay: m.OneWay}
		if m.HasAffectedRows {
			s.Affected = int64(m.SQLAffectedRows)
		}
		out = append(out, s)
	}
	now := time.Unix(1700000000, 0)
	for _, r := range recs {
		now = now.Add(time.Millisecond)
		p.Feed(&capture.Segment{Dir: r.dir, Start: now, End: now, Data: []byte(r.data), Len: len(r.data) + r.gap}, emit)
	}
	p.Close(emit)
	return out
}

func dump(s []summary) string {
	var b strings.Builder
	for _, x := range s {
		fmt.Fprintf(&b, "  %+v\n", x)
	}
	return b.String()
}
