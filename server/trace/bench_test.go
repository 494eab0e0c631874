package trace

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sightline-io/sightline/flowlog"
	"github.com/sightline-io/sightline/server/store/duckdb"
)

// benchTrace returns a 100-span trace starting at start with ids from id0:
// a front hop (c-p, c, s, s-p) whose server span makes 24 downstream calls,
// each seen at four points. The front hop carries a trace id (its HTTP
// request had a traceparent), so lookups by trace id (± MaxSpanDuration)
// take part; a downstream c-p seed looks back MaxSpanDuration for its s-p.
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
	for i := range rows {
		rows[i].TraceID = "0af7651916cd43dd8448eb211c80319c"
	}
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

// benchSpan is the time range the generated rows cover.
const benchSpan = time.Hour

// genSQL returns a SELECT producing n background rows numbered from i0 (of
// total), spread evenly over benchSpan from base: random 5-tuples and TCP
// sequences, syscall ids from a pool of 1M per agent (so they repeat), 200
// agents, 10% with a trace id and an X-Request-ID. The hash of the row number
// stands in for randomness (deterministic, parallel).
func genSQL(i0, n, total int, base time.Time) string {
	h := func(salt, mod int) string { return fmt.Sprintf("CAST(hash(i, %d) %% %d AS BIGINT)", salt, mod) }
	step := float64(benchSpan.Microseconds()) / float64(total)
	at := fmt.Sprintf("(TIMESTAMP '%s' + to_microseconds(CAST(i * %f AS BIGINT)))", base.UTC().Format("2006-01-02 15:04:05"), step)
	dur := "to_microseconds(CAST(" + h(1, 50000) + " AS BIGINT))"
	cols := []string{
		at + " AS time", at + " AS start_time", at + " + " + dur + " AS end_time", h(1, 50000) + " AS response_duration",
		"'agent-' || " + h(2, 200) + " AS agent_id", "'agent-' || " + h(2, 200) + " AS host",
		"1 AS org_id", "1 AS team_id", "3 AS signal_source",
		"['c-p', 'c', 's', 's-p'][1 + " + h(3, 4) + "] AS observation_point",
		"20 AS l7_protocol", "'HTTP' AS l7_protocol_str", "'1.1' AS version", "2 AS type",
		"'GET' AS request_type", "'svc' AS request_domain", "'/api/' || " + h(4, 1000) + " AS request_resource",
		"'/api/' || " + h(4, 1000) + " AS endpoint", "1 AS response_status", "200 AS response_code",
		"CASE WHEN " + h(5, 10) + " = 0 THEN printf('%032x', hash(i, 6)) ELSE '' END AS trace_id",
		"CASE WHEN " + h(5, 10) + " = 0 THEN printf('%016x', hash(i, 7)) ELSE '' END AS span_id",
		"CASE WHEN " + h(5, 10) + " = 0 THEN 'req-' || hash(i, 8) ELSE '' END AS x_request_id_0",
		"1 + " + h(9, 1000000) + " AS syscall_trace_id_request", "1 + " + h(10, 1000000) + " AS syscall_trace_id_response",
		"1 + " + h(11, 4294967294) + " AS req_tcp_seq", "1 + " + h(12, 4294967294) + " AS resp_tcp_seq",
		"'10.2.' || " + h(13, 256) + " || '.' || " + h(14, 256) + " AS ip_0",
		"'10.3.' || " + h(15, 16) + " || '.' || " + h(16, 256) + " AS ip_1",
		"20000 + " + h(17, 40000) + " AS client_port", "[80, 443, 6379, 3306][1 + " + h(18, 4) + "] AS server_port",
		"6 AS protocol", h(19, 50000) + " AS process_id_0", h(20, 50000) + " AS process_id_1",
	}
	return fmt.Sprintf("SELECT %s FROM range(%d, %d) AS r(i)", strings.Join(cols, ", "), i0, i0+n)
}

// benchStore generates a store of total background rows with the 100-span
// trace planted in the middle of the time range (and of the _ids), in mode
// LinkIndexNone, in dir; it returns the trace's first _id.
func benchStore(b *testing.B, dir string, total int) uint64 {
	ctx := context.Background()
	st, err := duckdb.Open(ctx, dir, duckdb.Options{Retention: -1, LinkIndex: duckdb.LinkIndexNone})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	began := time.Now()
	const chunk = 2_000_000
	gen := func(from, to int) {
		for i := from; i < to; i += chunk {
			if _, err := st.InsertL7Select(ctx, genSQL(i, min(chunk, to-i), total, t0)); err != nil {
				b.Fatal(err)
			}
		}
	}
	gen(0, total/2)
	id0 := uint64(total/2) + 1
	if err := st.InsertL7(ctx, benchTrace(id0, t0.Add(benchSpan/2))); err != nil {
		b.Fatal(err)
	}
	gen(total/2, total)
	b.Logf("generated %d rows + 100 trace rows in %v", total, time.Since(began).Round(time.Millisecond))
	return id0
}

// insertRate appends batches of 1000 realistic rows after the generated range
// and returns rows/s.
func insertRate(b *testing.B, st *duckdb.Store, batches int) float64 {
	rng := rand.New(rand.NewPCG(3, 4))
	batch := make([]flowlog.L7FlowLog, 1000)
	at := t0.Add(benchSpan + time.Minute)
	var spent time.Duration
	for range batches {
		for i := range batch {
			r := sp(0, []string{"c-p", "c", "s", "s-p"}[rng.IntN(4)], fmt.Sprintf("agent-%d", rng.IntN(200)), 0, time.Duration(rng.IntN(50_000))*time.Microsecond,
				withSyscall(rng.Uint64()%1_000_000+1, rng.Uint64()%1_000_000+1, rng.Uint32()%50_000, rng.Uint32()%50_000))
			at = at.Add(time.Millisecond)
			r.Time, r.StartTime, r.EndTime = at, at, at.Add(time.Duration(r.ResponseDuration)*time.Microsecond)
			r.IP0 = netip.AddrFrom4([4]byte{10, 2, byte(rng.IntN(256)), byte(rng.IntN(256))})
			r.IP1 = netip.AddrFrom4([4]byte{10, 3, byte(rng.IntN(16)), byte(rng.IntN(256))})
			r.ClientPort, r.ServerPort = uint16(20000+rng.IntN(40000)), []uint16{80, 443, 6379, 3306}[rng.IntN(4)]
			r.ReqTCPSeq, r.RespTCPSeq = rng.Uint32()|1, rng.Uint32()|1
			if rng.IntN(10) == 0 {
				r.TraceID = fmt.Sprintf("%032x", rng.Uint64())
				r.XRequestID0 = fmt.Sprintf("req-%d", rng.Uint64())
			}
			batch[i] = r
		}
		t := time.Now()
		if err := st.InsertL7(context.Background(), batch); err != nil {
			b.Fatal(err)
		}
		spent += time.Since(t)
	}
	return float64(batches*len(batch)) / spent.Seconds()
}

func envInts(name, def string) []int {
	var out []int
	for _, f := range strings.Split(cmpOr(os.Getenv(name), def), ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err == nil && n > 0 {
			out = append(out, n)
		}
	}
	return out
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// BenchmarkAssemble assembles a 100-span trace planted in the middle of a
// store of generated rows and reports the p50/p99 latency of Assemble from
// five of its spans, for each link index, plus the insert rate of InsertL7
// batches of 1000 rows into that store.
//
//	SIGHTLINE_BENCH_ROWS=1000000,10000000 go test -run XXX -bench Assemble -benchtime 1x ./server/trace
//
// SIGHTLINE_BENCH_ROWS is a comma list of store sizes (default 200000),
// SIGHTLINE_BENCH_INDEX a comma list of none, art, keys (default all three),
// SIGHTLINE_BENCH_ITER the assemblies per size and index (default 200).
func BenchmarkAssemble(b *testing.B) {
	modes := map[string]duckdb.LinkIndex{"none": duckdb.LinkIndexNone, "art": duckdb.LinkIndexART, "keys": duckdb.LinkIndexKeys}
	var order []string
	for _, m := range strings.Split(cmpOr(os.Getenv("SIGHTLINE_BENCH_INDEX"), "none,art,keys"), ",") {
		if _, ok := modes[strings.TrimSpace(m)]; ok {
			order = append(order, strings.TrimSpace(m))
		}
	}
	iters := envInts("SIGHTLINE_BENCH_ITER", "200")[0]
	for _, total := range envInts("SIGHTLINE_BENCH_ROWS", "200000") {
		dir := b.TempDir() // outlives the sub-benchmarks
		var id0 uint64
		for _, mode := range order {
			b.Run(fmt.Sprintf("rows=%d/index=%s", total, mode), func(b *testing.B) {
				if id0 == 0 {
					id0 = benchStore(b, dir, total)
				}
				benchAssemble(b, dir, id0, total, mode, modes[mode], iters)
			})
		}
	}
}

func benchAssemble(b *testing.B, dir string, id0 uint64, total int, name string, mode duckdb.LinkIndex, iters int) {
	ctx := context.Background()
	began := time.Now()
	st, err := duckdb.Open(ctx, dir, duckdb.Options{Retention: -1, LinkIndex: mode})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	build := time.Since(began)
	seeds := []uint64{id0, id0 + 3, id0 + 4, id0 + 50, id0 + 99}
	one := func(seed uint64) (time.Duration, int) {
		t := time.Now()
		tr, err := Assemble(ctx, st, seed, Options{})
		d := time.Since(t)
		if err != nil {
			b.Fatal(err)
		}
		if len(tr.Spans) != 100 || len(tr.Roots) != 1 {
			b.Fatalf("assembled %d spans, %d roots", len(tr.Spans), len(tr.Roots))
		}
		return d, tr.Queries
	}
	for _, s := range seeds { // warm the engine's caches
		one(s)
	}
	var lat []time.Duration
	queries := 0
	for i := range iters {
		d, q := one(seeds[i%len(seeds)])
		lat = append(lat, d)
		queries += q
	}
	for i := 0; b.Loop(); i++ {
		d, q := one(seeds[i%len(seeds)])
		lat = append(lat, d)
		queries += q
	}
	slices.Sort(lat)
	pct := func(p float64) float64 {
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Microseconds()) / 1000
	}
	rate := insertRate(b, st, 50)
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(float64(queries)/float64(len(lat)), "queries/op")
	b.ReportMetric(rate, "insert-rows/s")
	fmt.Printf("assemble rows=%d index=%s: p50 %.2f ms, p99 %.2f ms, %.1f queries/assembly (%d assemblies); index ready in %v; InsertL7 1000-row batches %.0f rows/s\n",
		total, name, pct(0.50), pct(0.99), float64(queries)/float64(len(lat)), len(lat), build.Round(time.Millisecond), rate)
}

// TestKeysMatchScan assembles the bench trace planted among generated rows
// with link key lookups and with scans (mustAssemble compares them).
func TestKeysMatchScan(t *testing.T) {
	st := openStore(t)
	ctx := context.Background()
	const total = 20_000
	if _, err := st.InsertL7Select(ctx, genSQL(0, total/2, total, t0)); err != nil {
		t.Fatal(err)
	}
	id0 := uint64(total/2) + 1
	insert(t, st, benchTrace(id0, t0.Add(benchSpan/2))...)
	if _, err := st.InsertL7Select(ctx, genSQL(total/2, total/2, total, t0)); err != nil {
		t.Fatal(err)
	}
	for _, seed := range []uint64{id0, id0 + 3, id0 + 4, id0 + 50, id0 + 99} {
		tr := mustAssemble(t, st, seed, Options{})
		if len(tr.Spans) != 100 || len(tr.Roots) != 1 {
			t.Errorf("seed %d: %d spans, %d roots", seed, len(tr.Spans), len(tr.Roots))
		}
	}
}
