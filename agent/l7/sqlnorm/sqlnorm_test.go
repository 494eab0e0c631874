package sqlnorm

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestMask(t *testing.T) {
	tests := []struct {
		d        Dialect
		in, want string
	}{
		{ANSI, "SELECT * FROM t WHERE name = 'alice'", "SELECT * FROM t WHERE name = ?"},
		{ANSI, "select  a,\n\tb from t1 where id=42 and x = 3.14e-2", "select a, b from t1 where id=? and x = ?"},
		{ANSI, "SELECT 'it''s', 'a\\'b', col_2 FROM t2", "SELECT ?, ?, col_2 FROM t2"},
		{ANSI, "SELECT * FROM t WHERE id IN (1, 2,3)", "SELECT * FROM t WHERE id IN (?)"},
		{ANSI, "SELECT * FROM t WHERE id in ('a','b', $1, ?, -4)", "SELECT * FROM t WHERE id in (?)"},
		{ANSI, "SELECT * FROM t WHERE id IN (SELECT id FROM u WHERE k = 5)", "SELECT * FROM t WHERE id IN (SELECT id FROM u WHERE k = ?)"},
		{ANSI, "SELECT x'0F', X'AB', b'101', 0x1f, 0b11, N'uni', E'esc\\'d'", "SELECT ?, ?, ?, ?, ?, ?, ?"},
		{ANSI, "SELECT $$a 'b' c$$, $tag$x$$y$tag$, $1 FROM t", "SELECT ?, ?, $1 FROM t"},
		{ANSI, "SELECT .5, t.c FROM t -- trailing 'comment'\nWHERE a = 1", "SELECT ?, t.c FROM t WHERE a = ?"},
		{ANSI, "/* traceparent='00-abc-01' */ SELECT 1", "/* traceparent='00-abc-01' */ SELECT ?"},
		{ANSI, `SELECT "User"."id" FROM "User" WHERE "name" = 'bob'`, `SELECT "User"."id" FROM "User" WHERE "name" = ?`},
		{ANSI, "SELECT 'unterminated", "SELECT ?"},
		{ANSI, "SELECT $$unterminated", "SELECT ?"},
		{ANSI, "SELECT /* unterminated", "SELECT /* unterminated"},
		{ANSI, "   ", ""},
		{MySQL, `SELECT * FROM t WHERE a = "x\"y" # comment`, "SELECT * FROM t WHERE a = ?"},
		{MySQL, "SELECT `we'ird` FROM t WHERE a IN (\"p\", 'q')", "SELECT `we'ird` FROM t WHERE a IN (?)"},
		{MySQL, "SELECT _utf8mb4'abc', @@version, @v := 3", "SELECT _utf8mb4?, @@version, @v := ?"},
		{Postgres, `SELECT 'C:\' , "q" FROM t`, `SELECT ? , "q" FROM t`},
		{Postgres, "INSERT INTO t VALUES (1, 'a'), (2, 'b') RETURNING id", "INSERT INTO t VALUES (?, ?), (?, ?) RETURNING id"},
		{Postgres, "SELECT 1::int, a->>'k' FROM t", "SELECT ?::int, a->>? FROM t"},
	}
	for _, tt := range tests {
		if got := MaskAs(tt.d, tt.in); got != tt.want {
			t.Errorf("MaskAs(%d, %q) = %q, want %q", tt.d, tt.in, got, tt.want)
		}
	}
}

func TestShape(t *testing.T) {
	if got := Shape("/* traceparent='00-abc-01' */ SELECT  a FROM t WHERE id = 7"); got != "SELECT a FROM t WHERE id = ?" {
		t.Errorf("Shape = %q", got)
	}
	if got := ShapeAs(Postgres, "INSERT INTO t (a, b) VALUES (1, 'x'), (2, 'y') ,(3,$1) RETURNING (a), (b)"); got != "INSERT INTO t (a, b) VALUES (?, ?) RETURNING (a), (b)" {
		t.Errorf("Shape(multi-row insert) = %q", got)
	}
	if got := Shape("SELECT f(1), (2), (x)"); got != "SELECT f(?), (?), (x)" {
		t.Errorf("Shape(groups) = %q", got)
	}
	long := "SELECT " + strings.Repeat("ééé, ", 200) + "x FROM t"
	got := Shape(long)
	if len(got) > MaxShape || !utf8.ValidString(got) || !strings.HasPrefix(got, "SELECT ééé") {
		t.Errorf("Shape(long) = %q (%d bytes)", got, len(got))
	}
}

func TestCommand(t *testing.T) {
	tests := map[string]string{
		"select 1":                         "SELECT",
		"  /* c */ -- x\n Insert into t":   "INSERT",
		"(SELECT 1) UNION (SELECT 2)":      "SELECT",
		"begin":                            "BEGIN",
		"set names utf8mb4":                "SET",
		"frobnicate the thing":             "FROBNICATE",
		"123":                              "",
		"":                                 "",
		"/* never closed":                  "",
		"abcdefghijklmnopqrstuvwxyzabcdef": "",
	}
	for in, want := range tests {
		if got := Command(in); got != want {
			t.Errorf("Command(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestCommandNoAlloc(t *testing.T) {
	if n := testing.AllocsPerRun(100, func() { _ = Command("SELECT * FROM t") }); n != 0 {
		t.Errorf("Command allocates %v times", n)
	}
}

func FuzzMask(f *testing.F) {
	f.Add("SELECT * FROM t WHERE a IN (1,'x') AND b = $tag$q$tag$ -- c")
	f.Add("INSERT INTO t VALUES (0x1F, b'1', 'it''s', \"q\\\"\")")
	f.Fuzz(func(t *testing.T, s string) {
		for _, d := range []Dialect{ANSI, MySQL, Postgres} {
			m := MaskAs(d, s)
			if len(m) > 2*len(s)+8 {
				t.Fatalf("mask grew %d → %d", len(s), len(m))
			}
			if sh := ShapeAs(d, s); len(sh) > MaxShape {
				t.Fatalf("shape %d bytes", len(sh))
			}
			_ = Command(s)
		}
	})
}

func BenchmarkMask(b *testing.B) {
	q := "SELECT u.id, u.name FROM users u WHERE u.email = 'alice@example.com' AND u.id IN (1, 2, 3) LIMIT 10"
	b.SetBytes(int64(len(q)))
	b.ReportAllocs()
	for b.Loop() {
		_ = MaskAs(MySQL, q)
	}
}
