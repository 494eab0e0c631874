package duckdb

import (
	"context"
	"testing"
)

// BenchmarkInsertL7 appends 1000-row batches and reports rows/s.
func BenchmarkInsertL7(b *testing.B) {
	s := openTestStore(b, b.TempDir(), Options{})
	rows := testRows(1000)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		for i := range rows {
			rows[i].ID = 0
		}
		if err := s.InsertL7(ctx, rows); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*len(rows))/b.Elapsed().Seconds(), "rows/s")
}

// BenchmarkQueryEnumGroupBy measures a typical dashboard query over 100k rows.
func BenchmarkQueryEnumGroupBy(b *testing.B) {
	s := openTestStore(b, b.TempDir(), Options{})
	rows := testRows(1000)
	for range 100 {
		for i := range rows {
			rows[i].ID = 0
		}
		if err := s.InsertL7(context.Background(), rows); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for b.Loop() {
		if _, err := s.Query(context.Background(),
			"SELECT Enum(l7_protocol), count(*), avg(response_duration) FROM l7_flow_log GROUP BY Enum(l7_protocol)"); err != nil {
			b.Fatal(err)
		}
	}
}
