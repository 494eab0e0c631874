package mysql

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/flowlog"
)

// session is a complete plain connection: login, text queries (classic
// EOF result set), USE, an error, prepared statements (DEPRECATE_EOF-style
// binary result), ping, close and quit.
func session() ([]rec, []summary) {
	recs := []rec{
		{srv, greetingPkt(baseCaps | capDeprecateEOF), 0},
		{cli, loginPkt(baseCaps, "app", "shop"), 0},
		{srv, okPkt(2, 0), 0},
		{cli, queryPkt("SELECT id FROM t WHERE name = 'alice'"), 0},
		{srv, resultSet(3, false), 0},
		{cli, queryPkt("INSERT INTO t VALUES (1, 'a'), (2, 'b')"), 0},
		{srv, okPkt(1, 2), 0},
		{cli, pkt(0, "\x02", "other"), 0},
		{srv, okPkt(1, 0), 0},
		{cli, queryPkt("SELEC 1"), 0},
		{srv, errPkt(1, 1064, "42000", "You have an error in your SQL syntax"), 0},
		{cli, pkt(0, "\x16", "SELECT id FROM t WHERE id = ?"), 0},
		{srv, pkt(1, "\x00", le32(7), le16(1), le16(1), "\x00", le16(0)) + pkt(2, "\x03def") + pkt(3, "\x03def"), 0},
		{cli, pkt(0, "\x17", le32(7), "\x00", le32(1), "\x00\x01\x03\x00", le32(5)), 0},
		{srv, pkt(1, "\x01") + pkt(2, "\x03def") + pkt(3, "\x00\x00", le32(5)) + pkt(4, "\xfe\x00\x00", le16(2), le16(0)), 0},
		{cli, pkt(0, "\x19", le32(7)), 0},
		{cli, pkt(0, "\x0e"), 0},
		{srv, okPkt(1, 0), 0},
		{cli, queryPkt("USE `shop`"), 0},
		{srv, okPkt(1, 0), 0},
		{cli, queryPkt("SELECT 1"), 0},
		{srv, resultSet(1, true), 0},
		{cli, pkt(0, "\x01"), 0},
	}
	want := []summary{
		rq("LOGIN", "shop", ""), ok(-1),
		rq("SELECT", "shop", "SELECT id FROM t WHERE name = ?"), ok(-1),
		rq("INSERT", "shop", "INSERT INTO t VALUES (?, ?), (?, ?)"), ok(2),
		rq("USE", "other", "other"), ok(-1),
		rq("SELEC", "other", "SELEC ?"), fail(1064, flowlog.StatusClientError, "42000: You have an error in your SQL syntax"),
		rq("PREPARE", "other", "SELECT id FROM t WHERE id = ?"), ok(-1),
		rq("SELECT", "other", "SELECT id FROM t WHERE id = ?"), ok(-1),
		oneway("STMT_CLOSE", "other", "SELECT id FROM t WHERE id = ?"),
		rq("PING", "other", ""), ok(-1),
		rq("USE", "other", "USE `shop`"), ok(0),
		rq("SELECT", "shop", "SELECT ?"), ok(-1),
		oneway("QUIT", "shop", ""),
	}
	return recs, want
}

func TestParseSession(t *testing.T) {
	recs, want := session()
	got := run(t, newParser(false), recs)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got:\n%s\nwant:\n%s", dump(got), dump(want))
	}
}

func dump(s []summary) string {
	var b strings.Builder
	for _, x := range s {
		fmt.Fprintf(&b, "  %+v\n", x)
	}
	return b.String()
}

// TestParseSplit splits every segment of the session at every byte
// boundary: the messages must not change.
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

// TestParseCompressed: CLIENT_COMPRESS after the login, both the MySQL way
// (the login's OK plain) and the MariaDB way (compressed), zlib and raw
// compressed packets, a result set spread over two compressed packets.
func TestParseCompressed(t *testing.T) {
	caps := uint32(baseCaps | capCompress)
	rs := resultSet(4, false)
	for _, okCompressed := range []bool{false, true} {
		loginOK := okPkt(2, 0)
		if okCompressed {
			loginOK = compressed(2, loginOK, true)
		}
		recs := []rec{
			{srv, greetingPkt(caps), 0},
			{cli, loginPkt(caps, "app", "shop"), 0},
			{srv, loginOK, 0},
			{cli, compressed(0, queryPkt("SELECT * FROM t WHERE id = 5"), false), 0},
			{srv, compressed(0, rs[:20], false) + compressed(1, rs[20:], false), 0},
			{cli, compressed(0, queryPkt("UPDATE t SET a = 1"), true), 0},
			{srv, compressed(0, okPkt(1, 3), true), 0},
			{cli, compressed(0, queryPkt("DELETE FROM nosuch")+"", false), 0},
			{srv, compressed(0, errPkt(1, 1146, "42S02", "Table 'shop.nosuch' doesn't exist"), false), 0},
		}
		want := []summary{
			rq("LOGIN", "shop", ""), ok(-1),
			rq("SELECT", "shop", "SELECT * FROM t WHERE id = ?"), ok(-1),
			rq("UPDATE", "shop", "UPDATE t SET a = ?"), ok(3),
			rq("DELETE", "shop", "DELETE FROM nosuch"), fail(1146, flowlog.StatusClientError, "42S02: Table 'shop.nosuch' doesn't exist"),
		}
		p := newParser(false)
		if got := run(t, p, recs); !reflect.DeepEqual(got, want) {
			t.Fatalf("ok compressed %v:\n%s\nwant:\n%s", okCompressed, dump(got), dump(want))
		}
		if p.Stats().Inflated < 3 {
			t.Errorf("inflated %d packets", p.Stats().Inflated)
		}
	}
}

// TestParsePipelined: several commands in one write, their responses in
// one read; MariaDB's PREPARE+EXECUTE pipelining with id 0xffffffff.
func TestParsePipelined(t *testing.T) {
	recs := []rec{
		{cli, queryPkt("SELECT 1") + queryPkt("UPDATE t SET x = 2"), 0},
		{srv, resultSet(2, true) + okPkt(1, 4), 0},
		{cli, pkt(0, "\x16", "DELETE FROM t WHERE id = ?") + pkt(0, "\x17", le32(0xffffffff), "\x00", le32(1), "\x00\x01\x03\x00", le32(5)), 0},
		{srv, pkt(1, "\x00", le32(9), le16(0), le16(1), "\x00", le16(0)) + pkt(2, "\x03def") + okPkt(1, 1), 0},
	}
	want := []summary{
		rq("SELECT", "", "SELECT ?"), rq("UPDATE", "", "UPDATE t SET x = ?"), ok(-1), ok(4),
		rq("PREPARE", "", "DELETE FROM t WHERE id = ?"), rq("DELETE", "", "DELETE FROM t WHERE id = ?"), ok(-1), ok(1),
	}
	if got := run(t, newParser(false), recs); !reflect.DeepEqual(got, want) {
		t.Fatalf("got:\n%s\nwant:\n%s", dump(got), dump(want))
	}
}

// TestParseTruncated: a long query captured in part; a big row cut by the
// capture and a 16 MiB row continued in a second packet; the next command
// still pairs.
func TestParseTruncated(t *testing.T) {
	long := "INSERT INTO t VALUES ('" + strings.Repeat("x", 5000) + "')"
	q := queryPkt(long)
	bigRow := pkt(2, "\xfc", le16(60000), strings.Repeat("y", 60000))
	huge := "\xff\xff\xff\x02" + strings.Repeat("z", 100)
	recs := []rec{
		{cli, q[:100], len(q) - 100},
		{srv, okPkt(1, 1), 0},
		{cli, queryPkt("SELECT b FROM t"), 0},
		{srv, pkt(1, "\x01") + bigRow[:500], len(bigRow) - 500},
		{srv, pkt(3, "\xfe\x00\x00", le16(2)), 0},
		{cli, queryPkt("SELECT c FROM t"), 0},
		{srv, pkt(1, "\x01") + huge, maxPacket - 100},
		{srv, pkt(3, "\x01z") + pkt(4, "\xfe\x00\x00", le16(2)), 0},
		{cli, queryPkt("SELECT d FROM t"), 0},
		{srv, okPkt(1, 0), 0},
	}
	want := []summary{
		rq("INSERT", "", "INSERT INTO t VALUES (?"), ok(1),
		rq("SELECT", "", "SELECT b FROM t"), ok(-1),
		rq("SELECT", "", "SELECT c FROM t"), ok(-1),
		rq("SELECT", "", "SELECT d FROM t"), ok(-1),
	}
	got := run(t, newParser(false), recs)
	want[7].Affected = 0
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got:\n%s\nwant:\n%s", dump(got), dump(want))
	}
}

// TestParseMidConnection: the capture starts inside a result set and
// inside a client packet; parsing resumes at the next command.
func TestParseMidConnection(t *testing.T) {
	recs := []rec{
		{srv, pkt(7, "\x01a") + pkt(8, "\x01b"), 0},
		{cli, "ECT * FROM t WHERE x = 'mid'", 0},
		{cli, queryPkt("SELECT 2"), 0},
		{srv, resultSet(1, false), 0},
	}
	want := []summary{rq("SELECT", "", "SELECT ?"), ok(-1)}
	if got := run(t, newParser(false), recs); !reflect.DeepEqual(got, want) {
		t.Fatalf("got:\n%s\nwant:\n%s", dump(got), dump(want))
	}
	// A lone response first (its command was not captured) is still reported.
	recs = []rec{{srv, errPkt(1, 1205, "HY000", "Lock wait timeout exceeded"), 0}, {cli, pkt(0, "\x0e"), 0}, {srv, okPkt(1, 0), 0}}
	want = []summary{fail(1205, flowlog.StatusServerError, "HY000: Lock wait timeout exceeded"), rq("PING", "", ""), ok(-1)}
	if got := run(t, newParser(false), recs); !reflect.DeepEqual(got, want) {
		t.Fatalf("lone response: got:\n%s\nwant:\n%s", dump(got), dump(want))
	}
}

// TestParseSSL: an SSL request is a one-way row, and the rest of the
// connection is not parsed.
func TestParseSSL(t *testing.T) {
	sslReq := pkt(1, le32(baseCaps|capSSL), le32(1<<24), "\x2d", strings.Repeat("\x00", 23))
	recs := []rec{
		{srv, greetingPkt(baseCaps | capSSL), 0},
		{cli, sslReq, 0},
		{cli, "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 0},
		{cli, queryPkt("SELECT 1"), 0},
	}
	p := newParser(false)
	want := []summary{oneway("SSL_REQUEST", "", "")}
	if got := run(t, p, recs); !reflect.DeepEqual(got, want) || p.Stats().SSL != 1 {
		t.Fatalf("got %v, stats %+v", got, p.Stats())
	}
}

// TestParseAuthSwitch: auth switch and more-data packets during the login;
// the password (scramble) is never in a message; a failed login.
func TestParseAuthSwitch(t *testing.T) {
	recs := []rec{
		{srv, greetingPkt(baseCaps), 0},
		{cli, loginPkt(baseCaps, "app", "shop"), 0},
		{srv, pkt(2, "\xfecaching_sha2_password\x00", "0123456789abcdefghij\x00"), 0},
		{cli, pkt(3, testPassword), 0},
		{srv, pkt(4, "\x01\x03"), 0},
		{srv, okPkt(5, 0), 0},
		{cli, pkt(0, "\x11", "bob\x00", "\x00", "shop\x00"), 0},
		{srv, pkt(1, "\xfemysql_native_password\x00", "x\x00"), 0},
		{cli, pkt(2, testPassword), 0},
		{srv, errPkt(3, 1045, "28000", "Access denied for user 'bob'"), 0},
	}
	want := []summary{
		rq("LOGIN", "shop", ""), ok(-1),
		rq("CHANGE_USER", "shop", ""), fail(1045, flowlog.StatusClientError, "28000: Access denied for user 'bob'"),
	}
	var msgs []*l7.Message
	p := newParser(false)
	got := run(t, p, recs)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got:\n%s\nwant:\n%s", dump(got), dump(want))
	}
	for _, m := range msgs {
		if strings.Contains(m.Resource+m.Exception+m.Result, "hunter2") {
			t.Fatalf("password in %+v", m)
		}
	}
}

// TestParseGarbage: hostile bytes never panic, never buffer without bound,
// and parsing resumes at the next segment that starts a command.
func TestParseGarbage(t *testing.T) {
	hostile := []rec{
		{cli, "\xff\xff\xff\x00" + strings.Repeat("\x03", 70000), 0},
		{srv, "\x00\x00\x00\x01", 0},
		{srv, "\xfe\xff\xff\x01\x01\xfe\xff\xff\xff\xff\xff\xff\xff\xff", 1 << 30},
		{cli, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 0},
	}
	p := newParser(false)
	run(t, p, hostile)
	for i := range p.dirs {
		if p.dirs[i].buf.Buffered() > maxBuffer {
			t.Fatalf("buffered %d", p.dirs[i].buf.Buffered())
		}
	}
	recs := []rec{
		{cli, queryPkt("SELECT 1"), 0},
		{srv, okPkt(1, 0), 0},
		{cli, "\x00\x10\x00\x05garbage", 0},
		{srv, "\x05\x00\x00\x09junk", 0},
		{cli, queryPkt("SELECT 3"), 0},
		{srv, okPkt(1, 0), 0},
	}
	want := []summary{rq("SELECT", "", "SELECT ?"), ok(0), rq("SELECT", "", "SELECT ?"), ok(0)}
	if got := run(t, newParser(false), recs); !reflect.DeepEqual(got, want) {
		t.Fatalf("got:\n%s\nwant:\n%s", dump(got), dump(want))
	}
}

func TestKeepSecrets(t *testing.T) {
	recs := []rec{{cli, queryPkt("SELECT * FROM t WHERE pw = 'x'"), 0}, {srv, okPkt(1, 0), 0}}
	got := run(t, New(l7.Config{KeepSecrets: true}).NewParser().(*Parser), recs)
	if got[0].Resource != "SELECT * FROM t WHERE pw = 'x'" {
		t.Fatalf("resource %q", got[0].Resource)
	}
}

func TestErrorStatus(t *testing.T) {
	tests := []struct {
		code  uint16
		state string
		want  flowlog.ResponseStatus
	}{
		{1064, "42000", flowlog.StatusClientError},
		{1146, "42S02", flowlog.StatusClientError},
		{1062, "23000", flowlog.StatusClientError},
		{1045, "28000", flowlog.StatusClientError},
		{1213, "40001", flowlog.StatusServerError},
		{1205, "HY000", flowlog.StatusServerError},
		{1243, "HY000", flowlog.StatusClientError},
		{2013, "", flowlog.StatusServerError},
	}
	for _, tt := range tests {
		if got := errorStatus(tt.code, []byte(tt.state)); got != tt.want {
			t.Errorf("errorStatus(%d, %s) = %d, want %d", tt.code, tt.state, got, tt.want)
		}
	}
}
