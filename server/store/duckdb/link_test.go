package duckdb

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/sightline-io/sightline/flowlog"
)

// wantKeys returns the sorted (key, _id) pairs the rows (ids from first) should have.
func wantKeys(rows []flowlog.L7FlowLog, first uint64) []string {
	var out []string
	for i := range rows {
		f := linkFields(&rows[i])
		for _, k := range f.Append(nil) {
			out = append(out, fmt.Sprintf("%d/%d", k, first+uint64(i)))
		}
	}
	slices.Sort(out)
	return out
}

func storedKeys(t *testing.T, s *Store) []string {
	t.Helper()
	res := mustQuery(t, s, "SELECT key, _id, time FROM l7_link_key ORDER BY key, _id")
	out := make([]string, len(res.Rows))
	for i, r := range res.Rows {
		out[i] = fmt.Sprintf("%v/%v", r[0], r[1])
	}
	slices.Sort(out)
	return out
}

func TestLinkKeysAtIngest(t *testing.T) {
	if s := openTestStore(t, t.TempDir(), Options{}); s.LinkKeys() {
		t.Error("default store keeps link keys")
	}
	s := openTestStore(t, t.TempDir(), Options{LinkIndex: LinkIndexKeys})
	if !s.LinkKeys() {
		t.Fatal("LinkIndexKeys store does not keep link keys")
	}
	rows := testRows(10)
	if err := s.InsertL7(context.Background(), rows); err != nil {
		t.Fatal(err)
	}
	want := wantKeys(rows, 1)
	if len(want) < 20 {
		t.Fatalf("only %d keys for 10 rows", len(want))
	}
	if got := storedKeys(t, s); !slices.Equal(got, want) {
		t.Errorf("stored keys %v\nwant %v", got, want)
	}
	// A key row carries its l7 row's time.
	res := mustQuery(t, s, "SELECT count(*) FROM l7_link_key k JOIN l7_flow_log l USING (_id) WHERE k.time <> l.time")
	if fmt.Sprint(res.Rows[0][0]) != "0" {
		t.Errorf("%v key rows with another time than their row", res.Rows[0][0])
	}
}

func TestLinkKeysBackfill(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	s, err := Open(ctx, dir, Options{Retention: -1, LinkIndex: LinkIndexNone})
	if err != nil {
		t.Fatal(err)
	}
	rows := testRows(6)
	if err := s.InsertL7(ctx, rows[:3]); err != nil {
		t.Fatal(err)
	}
	if s.LinkKeys() {
		t.Error("LinkIndexNone store reports link keys")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Reopened with keys: the rows stored without keys are backfilled.
	s = openTestStore(t, dir, Options{LinkIndex: LinkIndexKeys})
	if got, want := storedKeys(t, s), wantKeys(rows[:3], 1); !slices.Equal(got, want) {
		t.Fatalf("after backfill %v\nwant %v", got, want)
	}
	if err := s.InsertL7(ctx, rows[3:]); err != nil {
		t.Fatal(err)
	}
	// Synthetic rows through SQL get ids and keys too.
	n, err := s.InsertL7Select(ctx, "SELECT TIMESTAMP '2026-03-01 13:00:00' AS time, 's-p' AS observation_point, 'a' AS agent_id, "+
		"CAST(i + 1 AS UBIGINT) AS syscall_trace_id_request, 'tid-' || i AS trace_id FROM range(2) AS r(i)")
	if err != nil || n != 2 {
		t.Fatalf("InsertL7Select = %d, %v", n, err)
	}
	synth := []flowlog.L7FlowLog{
		{ObservationPoint: "s-p", AgentID: "a", SyscallTraceIDRequest: 1, TraceID: "tid-0"},
		{ObservationPoint: "s-p", AgentID: "a", SyscallTraceIDRequest: 2, TraceID: "tid-1"},
	}
	want := append(wantKeys(rows, 1), wantKeys(synth, 7)...)
	slices.Sort(want)
	if got := storedKeys(t, s); !slices.Equal(got, want) {
		t.Errorf("stored keys %v\nwant %v", got, want)
	}
	res := mustQuery(t, s, "SELECT max(_id), count(*) FROM l7_flow_log")
	if fmt.Sprint(res.Rows[0]) != "[8 8]" {
		t.Errorf("max _id, count = %v, want [8 8]", res.Rows[0])
	}
	if _, err := s.InsertL7Select(ctx, " "); err == nil {
		t.Error("empty InsertL7Select query accepted")
	}
}

func TestLinkIndexART(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	s, err := Open(ctx, dir, Options{Retention: -1, LinkIndex: LinkIndexART})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.InsertL7(ctx, testRows(4)); err != nil {
		t.Fatal(err)
	}
	res := mustQuery(t, s, "SELECT count(*) FROM duckdb_indexes() WHERE table_name = 'l7_flow_log'")
	if fmt.Sprint(res.Rows[0][0]) != fmt.Sprint(len(artColumns)) {
		t.Errorf("%v ART indexes, want %d", res.Rows[0][0], len(artColumns))
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Another mode drops them again.
	s = openTestStore(t, dir, Options{LinkIndex: LinkIndexKeys})
	res = mustQuery(t, s, "SELECT count(*) FROM duckdb_indexes() WHERE table_name = 'l7_flow_log'")
	if fmt.Sprint(res.Rows[0][0]) != "0" {
		t.Errorf("%v ART indexes left", res.Rows[0][0])
	}
	if got := storedKeys(t, s); len(got) == 0 {
		t.Error("no keys backfilled")
	}
}

func TestLinkKeysRetention(t *testing.T) {
	s := openTestStore(t, t.TempDir(), Options{Retention: 24 * 3600e9, LinkIndex: LinkIndexKeys})
	if err := s.InsertL7(context.Background(), testRows(3)); err != nil {
		t.Fatal(err)
	}
	if n, err := s.PurgeExpired(context.Background()); err != nil || n != 3 {
		t.Fatalf("PurgeExpired = %d, %v; want the 3 rows (keys not counted)", n, err)
	}
	if got := storedKeys(t, s); len(got) != 0 {
		t.Errorf("%d keys of expired rows left", len(got))
	}
}
