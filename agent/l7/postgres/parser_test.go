package postgres

import (
	"reflect"
	"strings"
	"testing"

	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/flowlog"
)

// session: SSL refused, startup with SCRAM, simple queries (rows, insert,
// errors, multi-statement), pgx-style extended queries (prepare batch, then
// execute batch; a failing Parse), terminate.
func session() ([]rec, []summary) {
	recs := []rec{
		{fe, be32s(8) + be32s(sslRequest), 0},
		{be, "N", 0},
		{fe, startupMsg("user", "app", "database", "shop", "application_name", "psql"), 0},
		{be, msg('R', be32s(10), "SCRAM-SHA-256\x00\x00"), 0},
		{fe, msg('p', "SCRAM-SHA-256\x00", be32s(20), "n,,n=,r=secretnonce1"), 0},
		{be, msg('R', be32s(11), "r=secretnonce1xyz,s=salt,i=4096"), 0},
		{fe, msg('p', "c=biws,r=secretnonce1xyz,p=proofPASSWORDproof"), 0},
		{be, msg('R', be32s(12), "v=sig") + loginOK(), 0},
		{fe, query("SELECT * FROM items WHERE name = 'alice'"), 0},
		{be, rowDesc + dataRow("1") + complete("SELECT 1") + idle, 0},
		{fe, query("INSERT INTO items VALUES (1, 'a'), (2, 'b')"), 0},
		{be, complete("INSERT 0 2") + idle, 0},
		{fe, query("SELEC 1"), 0},
		{be, errorResp("42601", `syntax error at or near "SELEC"`) + idle, 0},
		{fe, query("BEGIN; UPDATE items SET name = 'x' WHERE id = 1; SELECT 1/0; COMMIT"), 0},
		{be, complete("BEGIN") + complete("UPDATE 1") + errorResp("22012", "division by zero") + msg('Z', "E"), 0},
		{fe, parse("stmtcache_1", "SELECT name FROM items WHERE id = $1") + describe('S', "stmtcache_1") + sync, 0},
		{be, parseComplete + paramDesc + rowDesc + idle, 0},
		{fe, bind("", "stmtcache_1") + describe('P', "") + execute("") + sync, 0},
		{be, bindComplete + rowDesc + dataRow("pear") + complete("SELECT 1") + idle, 0},
		{fe, parse("", "SELECT * FROM missing WHERE id = $1") + describe('S', "") + sync, 0},
		{be, errorResp("42P01", `relation "missing" does not exist`) + idle, 0},
		{fe, msg('X'), 0},
	}
	want := []summary{
		rq("SSL_REQUEST", "", ""), ok("N", -1),
		rq("LOGIN", "shop", ""), ok("", -1),
		rq("SELECT", "shop", "SELECT * FROM items WHERE name = ?"), ok("SELECT 1", 1),
		rq("INSERT", "shop", "INSERT INTO items VALUES (?, ?), (?, ?)"), ok("INSERT 0 2", 2),
		rq("SELEC", "shop", "SELEC ?"), fail(flowlog.StatusClientError, `42601: syntax error at or near "SELEC"`),
		rq("BEGIN", "shop", "BEGIN; UPDATE items SET name = ? WHERE id = ?; SELECT ?/?; COMMIT"), fail(flowlog.StatusClientError, "22012: division by zero"),
		rq("PREPARE", "shop", "SELECT name FROM items WHERE id = $1"), ok("", -1),
		rq("SELECT", "shop", "SELECT name FROM items WHERE id = $1"), ok("SELECT 1", 1),
		rq("PREPARE", "shop", "SELECT * FROM missing WHERE id = $1"), fail(flowlog.StatusClientError, `42P01: relation "missing" does not exist`),
		{Type: l7.Request, Dir: fe, ReqType: "TERMINATE", Domain: "shop", Affected: -1, OneWay: true},
	}
	return recs, want
}

func TestParseSession(t *testing.T) {
	recs, want := session()
	got := run(t, newParser(false), recs)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got:\n%s\nwant:\n%s", dump(got), dump(want))
	}
	for _, s := range got {
		if strings.Contains(s.Resource+s.Exc+s.Result, "PASSWORD") || strings.Contains(s.Resource, "secretnonce") {
			t.Fatalf("secret in %+v", s)
		}
	}
}

func TestParseSplit(t *testing.T) {
	recs, want := session()
	maxLen := 0
	for _, r := range recs {
		maxLen = max(maxLen, len(r.data))
	}
	for k := 1; k < maxLen; k++ {
		var split []rec
		for _, r := range recs {
			if k < len(r.data) {
				split = append(split, rec{r.dir, r.data[:k], 0}, rec{r.dir, r.data[k:], 0})
			} else {
				split = append(split, r)
			}
		}
		if got := run(t, newParser(false), split); !reflect.DeepEqual(got, want) {
			t.Fatalf("split at %d:\n%s\nwant:\n%s", k, dump(got), dump(want))
		}
	}
}

// TestParsePipelined: several Parse/Bind/Execute in one Sync batch (one
// row per Execute), the batch aborted by an error at its second Execute
// (the rest of the batch fails with it), and Execute+Flush answered before
// the Sync.
func TestParsePipelined(t *testing.T) {
	recs := []rec{
		{fe, startupMsg("user", "app"), 0},
		{be, loginOK(), 0},
		{fe, parse("", "INSERT INTO t VALUES ($1)") + bind("", "") + execute("") +
			parse("", "UPDATE t SET a = $1") + bind("", "") + execute("") +
			parse("s2", "DELETE FROM t") + bind("", "s2") + execute("") + sync, 0},
		{be, parseComplete + bindComplete + complete("INSERT 0 1") + parseComplete + bindComplete +
			errorResp("23505", "duplicate key value") + idle, 0},
		{fe, bind("p1", "s2") + execute("p1") + msg('H'), 0},
		{be, bindComplete + complete("DELETE 4"), 0},
		{fe, sync, 0},
		{be, idle, 0},
	}
	want := []summary{
		rq("LOGIN", "app", ""), ok("", -1),
		rq("INSERT", "app", "INSERT INTO t VALUES ($1)"), rq("UPDATE", "app", "UPDATE t SET a = $1"), rq("DELETE", "app", "DELETE FROM t"),
		ok("INSERT 0 1", 1), fail(flowlog.StatusClientError, "23505: duplicate key value"), fail(flowlog.StatusClientError, "23505: duplicate key value"),
		rq("DELETE", "app", "DELETE FROM t"), ok("DELETE 4", 4),
	}
	if got := run(t, newParser(false), recs); !reflect.DeepEqual(got, want) {
		t.Fatalf("got:\n%s\nwant:\n%s", dump(got), dump(want))
	}
}

// TestParseTruncated: a long query captured in part and a large result
// (DataRows cut by the capture); the next query still pairs.
func TestParseTruncated(t *testing.T) {
	long := query("INSERT INTO t VALUES ('" + strings.Repeat("x", 9000) + "')")
	rows := rowDesc + strings.Repeat(dataRow(strings.Repeat("y", 1000)), 100) + complete("SELECT 100") + idle
	recs := []rec{
		{fe, long[:200], len(long) - 200},
		{be, complete("INSERT 0 1") + idle, 0},
		{fe, query("SELECT y FROM t"), 0},
		{be, rows[:3000], len(rows) - 3000 - len(complete("SELECT 100")+idle)},
		{be, complete("SELECT 100") + idle, 0},
		{fe, query("SELECT 2"), 0},
		{be, complete("SELECT 1") + idle, 0},
	}
	want := []summary{
		rq("INSERT", "", "INSERT INTO t VALUES (?"), ok("INSERT 0 1", 1),
		rq("SELECT", "", "SELECT y FROM t"), ok("SELECT 100", 100),
		rq("SELECT", "", "SELECT ?"), ok("SELECT 1", 1),
	}
	if got := run(t, newParser(false), recs); !reflect.DeepEqual(got, want) {
		t.Fatalf("got:\n%s\nwant:\n%s", dump(got), dump(want))
	}
}

// TestParseMidConnection: the capture starts inside a result (DataRows)
// and inside a query; parsing resumes at the next message boundary.
func TestParseMidConnection(t *testing.T) {
	recs := []rec{
		{be, "w-data\x00" + dataRow("a") + complete("SELECT 2") + idle, 0},
		{fe, "ECT 1\x00", 0},
		{fe, query("SELECT 3"), 0},
		{be, dataRow("3") + complete("SELECT 1") + idle, 0},
	}
	want := []summary{rq("SELECT", "", "SELECT ?"), ok("SELECT 1", 1)}
	if got := run(t, newParser(false), recs); !reflect.DeepEqual(got, want) {
		t.Fatalf("got:\n%s\nwant:\n%s", dump(got), dump(want))
	}
}

func TestParseSSLAccepted(t *testing.T) {
	recs := []rec{
		{fe, be32s(8) + be32s(sslRequest), 0},
		{be, "S", 0},
		{fe, "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 0},
		{be, "\x16\x03\x03\x00\x7a\x02", 0},
	}
	p := newParser(false)
	want := []summary{rq("SSL_REQUEST", "", ""), ok("S", -1)}
	if got := run(t, p, recs); !reflect.DeepEqual(got, want) || p.Stats().SSL != 1 {
		t.Fatalf("got %v stats %+v", got, p.Stats())
	}
}

func TestParseLoginFailed(t *testing.T) {
	recs := []rec{
		{fe, startupMsg("user", "bob", "database", "shop"), 0},
		{be, msg('R', be32s(5), "salt"), 0},
		{fe, msg('p', "md5deadbeefPASSWORD\x00"), 0},
		{be, msg('E', "SFATAL\x00", "C28P01\x00", "Mpassword authentication failed for user \"bob\"\x00", "\x00"), 0},
	}
	want := []summary{rq("LOGIN", "shop", ""), fail(flowlog.StatusClientError, `28P01: password authentication failed for user "bob"`)}
	if got := run(t, newParser(false), recs); !reflect.DeepEqual(got, want) {
		t.Fatalf("got:\n%s\nwant:\n%s", dump(got), dump(want))
	}
}

// TestParseGarbage: hostile bytes never panic or buffer without bound;
// parsing resumes at the next segment that starts a message.
func TestParseGarbage(t *testing.T) {
	recs := []rec{
		{fe, query("SELECT 1"), 0},
		{be, "Z\x7f\xff\xff\xff", 0},
		{be, "\x00\x01garbage", 1 << 30},
		{fe, "Q\x00\x00\x00\x01", 0},
		{fe, "\xff\xfe", 0},
		{be, complete("SELECT 1") + idle, 0},
		{fe, query("SELECT 2"), 0},
		{be, complete("SELECT 1") + idle, 0},
	}
	p := newParser(false)
	got := run(t, p, recs)
	for i := range p.bufs {
		if p.bufs[i].Buffered() > maxBuffer {
			t.Fatalf("buffered %d", p.bufs[i].Buffered())
		}
	}
	want := []summary{rq("SELECT", "", "SELECT ?"), ok("SELECT 1", 1), rq("SELECT", "", "SELECT ?"), ok("SELECT 1", 1)}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got:\n%s\nwant:\n%s", dump(got), dump(want))
	}
}

func TestKeepSecrets(t *testing.T) {
	recs := []rec{{fe, query("SELECT * FROM t WHERE pw = 'x'"), 0}, {be, complete("SELECT 0") + idle, 0}}
	got := run(t, New(l7.Config{KeepSecrets: true}).NewParser().(*Parser), recs)
	if got[0].Resource != "SELECT * FROM t WHERE pw = 'x'" {
		t.Fatalf("resource %q", got[0].Resource)
	}
}

func TestAffectedRows(t *testing.T) {
	tests := map[string]int64{"INSERT 0 1": 1, "UPDATE 3": 3, "SELECT 5": 5, "DELETE 0": 0, "CREATE TABLE": -1, "BEGIN": -1, "": -1, "123": -1}
	for tag, want := range tests {
		n, ok := affectedRows([]byte(tag))
		got := int64(n)
		if !ok {
			got = -1
		}
		if got != want {
			t.Errorf("affectedRows(%q) = %d, want %d", tag, got, want)
		}
	}
}

func TestErrorStatus(t *testing.T) {
	for code, want := range map[string]flowlog.ResponseStatus{
		"42P01": flowlog.StatusClientError, "23505": flowlog.StatusClientError, "28P01": flowlog.StatusClientError,
		"08006": flowlog.StatusServerError, "53300": flowlog.StatusServerError, "57014": flowlog.StatusServerError,
		"58030": flowlog.StatusServerError, "XX000": flowlog.StatusServerError,
	} {
		var c [5]byte
		copy(c[:], code)
		if got := errorStatus(c); got != want {
			t.Errorf("errorStatus(%s) = %d, want %d", code, got, want)
		}
	}
}
