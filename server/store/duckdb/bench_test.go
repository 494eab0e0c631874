package duckdb

import (
	"context"
	"fmt"
	"testing"
)

// BenchmarkInsertL7 appends batches (1000 rows unless named otherwise) and reports rows/s.
func BenchmarkInsertL7(b *testing.B) {
	for _, n := range []int{100, 1000, 10000} {
		b.Run(fmt.Sprintf("batch=%d", n), func(b *testing.B) { benchmarkInsertL7(b, n) })
	}
}

func benchmarkInsertL7(b *testing.B, batch int) {
	s := openTestStore(b, b.TempDir(), Options{})
	rows := testRows(batch)
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
