package duckdb

import (
	"errors"
	"strings"
	"testing"

	"github.com/sightline-io/sightline/server/store"
)

func TestRewriteEnum(t *testing.T) {
	l7 := caseExpr("l7_protocol", enumNames()["l7_protocol"])
	typ := caseExpr("type", enumNames()["type"])
	for _, tc := range []struct {
		name, in, want string
	}{
		{"no enum", "SELECT 1", "SELECT 1"},
		{"select item gets alias", "SELECT Enum(l7_protocol) FROM l7_flow_log",
			`SELECT ` + l7 + ` AS "Enum(l7_protocol)" FROM l7_flow_log`},
		{"case and spacing kept in alias", "select enum ( type ), 1",
			`select ` + typ + ` AS "enum ( type )", 1`},
		{"explicit alias kept", "SELECT Enum(type) AS t FROM x", `SELECT ` + typ + ` AS t FROM x`},
		{"implicit alias kept", "SELECT Enum(type) t FROM x", `SELECT ` + typ + ` t FROM x`},
		{"where clause: no alias", "SELECT 1 FROM x WHERE Enum(type) = 'Session'",
			`SELECT 1 FROM x WHERE ` + typ + ` = 'Session'`},
		{"group and order by", "SELECT Enum(type), count(*) FROM x GROUP BY Enum(type) ORDER BY Enum(type)",
			`SELECT ` + typ + ` AS "Enum(type)", count(*) FROM x GROUP BY ` + typ + ` ORDER BY ` + typ},
		{"inside an expression: no alias", "SELECT lower(Enum(type)) FROM x", `SELECT lower(` + typ + `) FROM x`},
		{"operand: no alias", "SELECT Enum(type) || '!' FROM x", `SELECT ` + typ + ` || '!' FROM x`},
		{"subquery select list", "SELECT * FROM (SELECT Enum(type))", `SELECT * FROM (SELECT ` + typ + ` AS "Enum(type)")`},
		{"distinct", "SELECT DISTINCT Enum(type) FROM x", `SELECT DISTINCT ` + typ + ` AS "Enum(type)" FROM x`},
		{"qualified column", "SELECT Enum(f.type) FROM x f",
			`SELECT ` + caseExpr("f.type", enumNames()["type"]) + ` AS "Enum(f.type)" FROM x f`},
		{"quoted column", `SELECT Enum("type") FROM x`,
			`SELECT ` + caseExpr(`"type"`, enumNames()["type"]) + ` AS "Enum(""type"")" FROM x`},
		{"in string untouched", "SELECT 'Enum(type)'", "SELECT 'Enum(type)'"},
		{"in comment untouched", "SELECT 1 -- Enum(type)\n", "SELECT 1 -- Enum(type)\n"},
		{"in block comment untouched", "SELECT /* Enum(type) */ 1", "SELECT /* Enum(type) */ 1"},
		{"non-column argument untouched", "SELECT Enum('a')", "SELECT Enum('a')"},
		{"other schema's function untouched", "SELECT s.enum(type)", "SELECT s.enum(type)"},
		{"end of input", "SELECT Enum(protocol)", `SELECT ` + caseExpr("protocol", enumNames()["protocol"]) + ` AS "Enum(protocol)"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := rewriteEnum(tc.in)
			if err != nil {
				t.Fatalf("rewriteEnum(%q): %v", tc.in, err)
			}
			if got != tc.want {
				t.Errorf("rewriteEnum(%q)\n got: %s\nwant: %s", tc.in, got, tc.want)
			}
		})
	}
}

func TestRewriteEnumRejectsNonEnumColumn(t *testing.T) {
	_, err := rewriteEnum("SELECT Enum(host) FROM l7_flow_log")
	var qe *store.QueryError
	if !errors.As(err, &qe) || !strings.Contains(qe.Msg, "not an enum column") {
		t.Fatalf("got %v, want QueryError about non-enum column", err)
	}
}

func TestCaseExpr(t *testing.T) {
	got := caseExpr("type", enumNames()["type"])
	want := "(CASE type WHEN 0 THEN 'Request' WHEN 1 THEN 'Response' WHEN 2 THEN 'Session' ELSE CAST(type AS VARCHAR) END)"
	if got != want {
		t.Errorf("got %s\nwant %s", got, want)
	}
}

func TestTokenizeRoundTrip(t *testing.T) {
	for _, in := range []string{
		"", "SELECT 'it''s' , \"a\"\"b\" FROM t -- c", "/* unterminated", "'unterminated", `"x`,
		"$$ body $$ x", "SELECT\t1\n", "é(ü)", "--",
	} {
		var b strings.Builder
		for _, tok := range tokenize(in) {
			b.WriteString(tok.text)
		}
		if b.String() != in {
			t.Errorf("tokens of %q concatenate to %q", in, b.String())
		}
	}
}

func FuzzRewriteEnum(f *testing.F) {
	for _, s := range []string{"SELECT Enum(type)", "Enum(", "Enum((", "enum(a.b.c)", "Enum(\"", "SELECT (Enum(x", ")))Enum(type)"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out, err := rewriteEnum(in)
		if err != nil {
			return
		}
		if !strings.Contains(strings.ToLower(in), "enum") && out != in {
			t.Fatalf("query without Enum changed: %q -> %q", in, out)
		}
	})
}
