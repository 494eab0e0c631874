package trace

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/sightline-io/sightline/flowlog"
)

const (
	benchRows   = 1_000_000
	benchBudget = 20 * time.Second
	benchBatch  = 20_000
)

// benchTrace returns a 100-span trace starting at start with ids from id0:
// a front hop (c-p, c, s, s-p) whose server span makes 24 downstream calls,
// each seen at four points.
func benchTrace(id0 uint64, start time.Time) []flowlog.L7FlowLog {
	var rows []flowlog.L7FlowLog
	id := id0
	mk := func(obs, agent string, off, dur time.Duration, tp tuple, sysReq, sysResp uint64, pid0, pid1 uint32) {
		r := sp(id, obs, agent, 0, dur, withTuple(tp), withSyscall(sysReq, sysResp, pid0, pid1))
		r.Time, r.StartTime, r.EndTime = start.Add(off), start.Add(off), start.Add(off+dur)
		rows = append(rows, r)
		id++
	}
	front := tuple{"10.1.0.1", "10.1.0.2", 30000, 80, 7000001, 8000001}
	mk("c-p", "client", 0, 500*time.Millisecond, front, 0, 0, 10, 0)
	mk("c", "client", 100*time.Microsecond, 499*time.Millisecond, front, 0, 0, 0, 0)
	mk("s", "api", 200*time.Microsecond, 498*time.Millisecond, front, 0, 0, 0, 0)
	mk("s-p", "api", 300*time.Microsecond, 497*time.Millisecond, front, 4242, 4243, 0, 20)
	for i := range 24 {
		call := tuple{"10.1.0.2", fmt.Sprintf("10.1.1.%d", i+1), uint16(31000 + i), 6379, uint32(7100000 + i), uint32(8100000 + i)}
		off := time.Millisecond + time.Duration(i)*20*time.Millisecond
		mk("c-p", "api", off, 10*time.Millisecond, call, 4242, 0, 20, 0)
		mk("c", "api", off+50*time.Microsecond, 9*time.Millisecond, call, 0, 0, 0, 0)
		mk("s", fmt.Sprintf("db%d", i), off+100*time.Microsecond, 8*time.Millisecond, call, 0, 0, 0, 0)
		mk("s-p", fmt.Sprintf("db%d", i), off+150*time.Microsecond, 7*time.Millisecond, call, 0, 0, 0, 30)
	}
	return rows
}

// BenchmarkAssemble assembles a 100-span trace in a store holding up to
// benchRows generated rows (as many as fit in benchBudget) and reports the
// p50/p99 latency of Assemble.
func BenchmarkAssemble(b *testing.B) {
	st := openStore(b)
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(1, 2))
	base := t0
	span := time.Hour
	agents := []string{"api", "client", "db0", "db1", "web", "cache"}
	obs := []string{"c-p", "c", "s", "s-p"}
	batch := make([]flowlog.L7FlowLog, benchBatch)
	var inserted uint64
	traceAt := base.Add(span / 2)
	// The trace goes in first (its rows sit at the middle of the time range).
	if err := st.InsertL7(ctx, benchTrace(1, traceAt)); err != nil {
		b.Fatal(err)
	}
	const traceID0 = 1 // the first ids of an empty store
	began := time.Now()
	for inserted < benchRows && time.Since(began) < benchBudget {
		for i := range batch {
			n := inserted + uint64(i)
			at := base.Add(time.Duration(float64(span) * float64(n) / benchRows))
			r := sp(0, obs[rng.IntN(len(obs))], agents[rng.IntN(len(agents))], 0, time.Duration(rng.IntN(50_000))*time.Microsecond,
				withSyscall(rng.Uint64()%1_000_000+1, rng.Uint64()%1_000_000+1, rng.Uint32()%50_000, rng.Uint32()%50_000))
			r.Time, r.StartTime = at, at
			r.EndTime = at.Add(time.Duration(r.ResponseDuration) * time.Microsecond)
			r.IP0 = netip.AddrFrom4([4]byte{10, 2, byte(rng.IntN(256)), byte(rng.IntN(256))})
			r.IP1 = netip.AddrFrom4([4]byte{10, 3, byte(rng.IntN(16)), byte(rng.IntN(256))})
			r.ClientPort, r.ServerPort = uint16(20000+rng.IntN(40000)), []uint16{80, 443, 6379, 3306}[rng.IntN(4)]
			r.ReqTCPSeq, r.RespTCPSeq = rng.Uint32(), rng.Uint32()
			if rng.IntN(10) == 0 {
				r.TraceID = fmt.Sprintf("%032x", rng.Uint64())
				r.XRequestID0 = fmt.Sprintf("req-%d", rng.Uint64())
			}
			batch[i] = r
		}
		if err := st.InsertL7(ctx, batch); err != nil {
			b.Fatal(err)
		}
		inserted += uint64(len(batch))
	}
	b.Logf("store holds %d generated rows + 100 trace rows (inserted in %v)", inserted, time.Since(began).Round(time.Millisecond))
	seeds := []uint64{traceID0, traceID0 + 3, traceID0 + 50, traceID0 + 99}
	for range 4 { // warm the engine's caches
		if _, err := Assemble(ctx, st, traceID0, Options{}); err != nil {
			b.Fatal(err)
		}
	}
	var lat []time.Duration
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		t := time.Now()
		tr, err := Assemble(ctx, st, seeds[i%len(seeds)], Options{})
		lat = append(lat, time.Since(t))
		if err != nil {
			b.Fatal(err)
		}
		if len(tr.Spans) != 100 || len(tr.Roots) != 1 {
			b.Fatalf("assembled %d spans, %d roots", len(tr.Spans), len(tr.Roots))
		}
	}
	b.StopTimer()
	for k := range seeds {
		var per []time.Duration
		for i := k; i < len(lat); i += len(seeds) {
			per = append(per, lat[i])
		}
		slices.Sort(per)
		b.Logf("seed %d: min %v median %v max %v", seeds[k], per[0], per[len(per)/2], per[len(per)-1])
	}
	slices.Sort(lat)
	pct := func(p float64) float64 {
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Microseconds()) / 1000
	}
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(float64(inserted), "rows")
}
