package store

import (
	"encoding/json"
	"testing"
	"time"
)

func TestRow(t *testing.T) {
	ts := time.Date(2026, 11, 26, 3, 4, 5, 600000000, time.UTC)
	res := &Result{Columns: []string{"s", "b", "u8", "i64", "neg", "f", "jn", "txt", "null", "t", "ts"},
		Rows: [][]any{{"x", []byte("y"), uint8(7), int64(42), int32(-1), float64(3), json.Number("9"), "11", nil, ts, "2026-11-26 03:04:05.6"}}}
	r := Row{Vals: res.Rows[0], Idx: ColumnIndex(res)}
	if r.Str("s") != "x" || r.Str("b") != "y" || r.Str("null") != "" {
		t.Error("Str")
	}
	if r.U64("u8") != 7 || r.U64("i64") != 42 || r.U64("f") != 3 || r.U64("jn") != 9 || r.U64("txt") != 11 || r.U64("null") != 0 {
		t.Error("U64")
	}
	if p := r.OptI64("null"); p != nil {
		t.Error("OptI64 of NULL")
	}
	if p := r.OptI64("neg"); p == nil || *p != -1 {
		t.Error("OptI64")
	}
	if !r.Time("t").Equal(ts) || !r.Time("ts").Equal(ts) || !r.Time("null").IsZero() {
		t.Error("Time")
	}
	if r.Err != nil {
		t.Fatal(r.Err)
	}
	r.U64("neg")
	if r.Err == nil {
		t.Error("a negative value read as unsigned is not an error")
	}
	r2 := Row{Vals: res.Rows[0], Idx: ColumnIndex(res)}
	r2.Str("missing")
	if r2.Err == nil {
		t.Error("a missing column is not an error")
	}
}
