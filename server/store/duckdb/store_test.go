package duckdb

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sightline-io/sightline/flowlog"
	"github.com/sightline-io/sightline/server/store"
)

func openTestStore(t testing.TB, dir string, opts Options) *Store {
	t.Helper()
	if opts.Retention == 0 {
		opts.Retention = -1 // test rows carry fixed past times
	}
	s, err := Open(context.Background(), dir, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func ptr[T any](v T) *T { return &v }

var baseTime = time.Date(2026, 3, 1, 12, 0, 0, 123456000, time.UTC)

// testRow returns a distinct, fully populated row; odd rows leave the
// nullable columns and attributes empty.
func testRow(i int) flowlog.L7FlowLog {
	r := flowlog.L7FlowLog{
		Time:             baseTime.Add(time.Duration(i) * time.Second),
		StartTime:        baseTime.Add(time.Duration(i) * time.Second),
		EndTime:          baseTime.Add(time.Duration(i)*time.Second + 1500*time.Microsecond),
		ResponseDuration: 1500,
		AgentID:          "agent-1", Host: "node-a", OrgID: 1, TeamID: 1,
		SignalSource: flowlog.SourceEBPF, ObservationPoint: flowlog.ObsServerProcess,
		L7Protocol: flowlog.L7HTTP1, L7ProtocolStr: "HTTP", Version: "1.1", Type: flowlog.TypeSession,
		RequestType: "GET", RequestDomain: "example.com", RequestResource: fmt.Sprintf("/items/%d", i),
		Endpoint: "/items/{id}", ResponseStatus: flowlog.StatusSuccess,
		RequestLength: 120, ResponseLength: -1, CapturedRequestByte: 120, CapturedResponseByte: 64,
		TraceID: "4bf92f3577b34da6a3ce929d0e0e4736", SpanID: "00f067aa0ba902b7",
		SyscallTraceIDRequest: 1 << 63, SyscallTraceIDResponse: 1<<64 - 1,
		SyscallThread0: 10, SyscallThread1: 11, ReqTCPSeq: 4000000000,
		IP0: netip.MustParseAddr("10.0.0.1"), IP1: netip.MustParseAddr("2001:db8::1"),
		ClientPort: 54321, ServerPort: 80, Protocol: 6,
		ProcessID0: 100, ProcessKName1: "nginx",
	}
	if i%2 == 0 {
		r.RequestID = ptr(uint64(7))
		r.ResponseCode = ptr(int32(200))
		r.SQLAffectedRows = ptr(uint64(3))
		r.Attributes = map[string]string{"user_agent": "curl/8", "k": "v"}
	} else {
		r.Type = flowlog.TypeRequest
		r.L7Protocol = flowlog.L7MySQL
		r.IP0 = netip.Addr{}
	}
	return r
}

func testRows(n int) []flowlog.L7FlowLog {
	rows := make([]flowlog.L7FlowLog, n)
	for i := range rows {
		rows[i] = testRow(i)
	}
	return rows
}

func mustQuery(t testing.TB, s *Store, q string) *store.Result {
	t.Helper()
	res, err := s.Query(context.Background(), q)
	if err != nil {
		t.Fatalf("Query(%q): %v", q, err)
	}
	return res
}

func TestColumnsFollowRowContract(t *testing.T) {
	var tags []string
	typ := reflect.TypeFor[flowlog.L7FlowLog]()
	for i := range typ.NumField() {
		tags = append(tags, strings.Split(typ.Field(i).Tag.Get("json"), ",")[0])
	}
	if got := l7ColumnNames(); !slices.Equal(got, tags) {
		t.Fatalf("columns %v\nwant JSON tags %v", got, tags)
	}

	s := openTestStore(t, t.TempDir(), Options{})
	res := mustQuery(t, s, "DESCRIBE l7_flow_log")
	var described []string
	for _, row := range res.Rows {
		described = append(described, row[0].(string))
	}
	if !slices.Equal(described, tags) {
		t.Fatalf("DESCRIBE gives %v\nwant %v", described, tags)
	}
}

func TestInsertAndQueryBack(t *testing.T) {
	s := openTestStore(t, t.TempDir(), Options{})
	if err := s.InsertL7(context.Background(), testRows(2)); err != nil {
		t.Fatal(err)
	}
	res := mustQuery(t, s, "SELECT * FROM l7_flow_log ORDER BY _id")
	if len(res.Rows) != 2 {
		t.Fatalf("got %d rows, want 2", len(res.Rows))
	}
	col := func(row int, name string) any {
		i := slices.Index(res.Columns, name)
		if i < 0 {
			t.Fatalf("no column %q in %v", name, res.Columns)
		}
		return res.Rows[row][i]
	}
	for _, tc := range []struct {
		row  int
		name string
		want any
	}{
		{0, "_id", uint64(1)},
		{1, "_id", uint64(2)},
		{0, "time", "2026-03-01T12:00:00.123456Z"},
		{1, "end_time", "2026-03-01T12:00:01.124956Z"},
		{0, "response_duration", uint64(1500)},
		{0, "org_id", uint16(1)},
		{0, "signal_source", uint8(3)},
		{0, "l7_protocol", uint8(20)},
		{1, "l7_protocol", uint8(60)},
		{0, "is_tls", false},
		{0, "request_resource", "/items/0"},
		{0, "request_id", uint64(7)},
		{1, "request_id", nil},
		{0, "response_code", int32(200)},
		{1, "response_code", nil},
		{0, "sql_affected_rows", uint64(3)},
		{1, "sql_affected_rows", nil},
		{0, "response_length", int64(-1)},
		{0, "syscall_trace_id_request", uint64(1 << 63)},
		{0, "syscall_trace_id_response", uint64(1<<64 - 1)},
		{0, "req_tcp_seq", uint32(4000000000)},
		{0, "ip_0", "10.0.0.1"},
		{1, "ip_0", ""},
		{0, "ip_1", "2001:db8::1"},
		{0, "server_port", uint16(80)},
		{0, "process_kname_1", "nginx"},
		{0, "attributes", map[string]any{"user_agent": "curl/8", "k": "v"}},
		{1, "attributes", map[string]any{}},
	} {
		if got := col(tc.row, tc.name); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("row %d %s = %#v, want %#v", tc.row, tc.name, got, tc.want)
		}
	}

	// Big unsigned values survive JSON encoding as exact numbers.
	b, err := json.Marshal(mustQuery(t, s, "SELECT syscall_trace_id_response FROM l7_flow_log WHERE _id = 1"))
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"columns":["syscall_trace_id_response"],"rows":[[18446744073709551615]]}`; string(b) != want {
		t.Errorf("JSON %s, want %s", b, want)
	}

	// Map lookups work in SQL.
	res = mustQuery(t, s, "SELECT attributes['user_agent'] AS ua FROM l7_flow_log WHERE _id = 1")
	if got := res.Rows[0][0]; got != "curl/8" {
		t.Errorf("attributes['user_agent'] = %#v", got)
	}
}

func TestBareAndQualifiedTableNames(t *testing.T) {
	s := openTestStore(t, t.TempDir(), Options{MaxConcurrentQueries: 2})
	if err := s.InsertL7(context.Background(), testRows(3)); err != nil {
		t.Fatal(err)
	}
	// More queries than pooled connections: every connection must have the search_path.
	for i := range 6 {
		for _, q := range []string{"SELECT count(*) FROM l7_flow_log", "SELECT count(*) FROM flow_log.l7_flow_log"} {
			res := mustQuery(t, s, q)
			if got := res.Rows[0][0]; got != int64(3) {
				t.Fatalf("round %d %q = %#v, want 3", i, q, got)
			}
		}
	}
}

func TestQueryRejectsNonReadOnly(t *testing.T) {
	s := openTestStore(t, t.TempDir(), Options{})
	if err := s.InsertL7(context.Background(), testRows(4)); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		sql, msg string
	}{
		{"DELETE FROM l7_flow_log", "only read-only statements"},
		{"INSERT INTO l7_flow_log (_id, time) VALUES (99, now())", "only read-only statements"},
		{"UPDATE l7_flow_log SET host = 'x'", "only read-only statements"},
		{"DROP TABLE l7_flow_log", "only read-only statements"},
		{"CREATE TABLE x (a INT)", "only read-only statements"},
		{"SET threads = 1", "only read-only statements"},
		{"PRAGMA threads = 1", "only read-only statements"},
		{"CALL pragma_version()", "only read-only statements"},
		{"CHECKPOINT", "only read-only statements"},
		{"ATTACH ':memory:' AS m", ""},
		{"COPY l7_flow_log TO '/tmp/x.csv'", ""},
		{"SELECT 1; DELETE FROM l7_flow_log", "only one statement"},
		{"DELETE FROM l7_flow_log; SELECT 1", "only one statement"},
		{"EXPLAIN ANALYZE DELETE FROM l7_flow_log", "read-only"},
		{"SELECT * FROM read_text('/etc/passwd')", "disabled"},
		{"", "empty query"},
		{"  -- just a comment", "empty"},
		{"SELEC 1", "syntax error"},
		{"SELECT nope FROM l7_flow_log", "nope"},
		{"SELECT Enum(host) FROM l7_flow_log", "not an enum column"},
		{"SELECT CAST('x' AS INTEGER)", "Conversion Error"},
	} {
		t.Run(tc.sql, func(t *testing.T) {
			_, err := s.Query(context.Background(), tc.sql)
			var qe *store.QueryError
			if !errors.As(err, &qe) {
				t.Fatalf("got %v (%T), want *store.QueryError", err, err)
			}
			if !strings.Contains(qe.Msg, tc.msg) {
				t.Errorf("message %q does not contain %q", qe.Msg, tc.msg)
			}
		})
	}
	if got := mustQuery(t, s, "SELECT count(*) FROM l7_flow_log").Rows[0][0]; got != int64(4) {
		t.Fatalf("rows after rejected writes = %v, want 4", got)
	}
	if st := s.Stats(); st.QueryErrors == 0 || st.Queries <= st.QueryErrors {
		t.Errorf("stats %+v", st)
	}
}

func TestQueryReadOnlyForms(t *testing.T) {
	s := openTestStore(t, t.TempDir(), Options{})
	if err := s.InsertL7(context.Background(), testRows(2)); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		"SELECT 1",
		"WITH x AS (SELECT _id FROM l7_flow_log) SELECT count(*) FROM x",
		"FROM l7_flow_log SELECT _id",
		"VALUES (1), (2)",
		"DESCRIBE l7_flow_log",
		"SHOW TABLES",
		"SUMMARIZE l7_flow_log",
		"EXPLAIN SELECT * FROM l7_flow_log",
		"PRAGMA table_info('l7_flow_log')",
		"SELECT type, version, time FROM l7_flow_log", // keyword-like column names
		"SELECT 1;",
	} {
		if res := mustQuery(t, s, q); len(res.Columns) == 0 {
			t.Errorf("%q: no columns", q)
		}
	}
}

func TestQueryEnum(t *testing.T) {
	s := openTestStore(t, t.TempDir(), Options{})
	if err := s.InsertL7(context.Background(), testRows(3)); err != nil {
		t.Fatal(err)
	}
	res := mustQuery(t, s, `SELECT Enum(l7_protocol), Enum(type), Enum(signal_source), Enum(response_status), Enum(protocol), count(*) AS n
		FROM l7_flow_log WHERE Enum(l7_protocol) IN ('HTTP', 'MySQL')
		GROUP BY Enum(l7_protocol), Enum(type), Enum(signal_source), Enum(response_status), Enum(protocol)
		ORDER BY Enum(l7_protocol)`)
	wantCols := []string{"Enum(l7_protocol)", "Enum(type)", "Enum(signal_source)", "Enum(response_status)", "Enum(protocol)", "n"}
	if !slices.Equal(res.Columns, wantCols) {
		t.Fatalf("columns %v, want %v", res.Columns, wantCols)
	}
	want := [][]any{
		{"HTTP", "Session", "eBPF", "Success", "TCP", int64(2)},
		{"MySQL", "Request", "eBPF", "Success", "TCP", int64(1)},
	}
	if !reflect.DeepEqual(res.Rows, want) {
		t.Fatalf("rows %v, want %v", res.Rows, want)
	}

	// A value without a display name shows as its number.
	if err := s.InsertL7(context.Background(), []flowlog.L7FlowLog{{Time: baseTime, L7Protocol: 250}}); err != nil {
		t.Fatal(err)
	}
	res = mustQuery(t, s, "SELECT Enum(l7_protocol) FROM l7_flow_log WHERE l7_protocol = 250")
	if got := res.Rows[0][0]; got != "250" {
		t.Errorf("unknown enum value shows as %#v, want \"250\"", got)
	}
}

func TestIDsIncreaseAcrossReopen(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	s, err := Open(ctx, dir, Options{Retention: -1})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.InsertL7(ctx, testRows(3)); err != nil {
		t.Fatal(err)
	}
	explicit := testRow(9)
	explicit.ID = 100
	if err := s.InsertL7(ctx, []flowlog.L7FlowLog{explicit, testRow(10)}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := s.InsertL7(ctx, testRows(1)); !errors.Is(err, ErrClosed) {
		t.Fatalf("insert after close: %v, want ErrClosed", err)
	}

	s = openTestStore(t, dir, Options{})
	if err := s.InsertL7(ctx, testRows(2)); err != nil {
		t.Fatal(err)
	}
	res := mustQuery(t, s, "SELECT _id FROM l7_flow_log ORDER BY time, _id")
	var ids []uint64
	for _, r := range res.Rows {
		ids = append(ids, r[0].(uint64))
	}
	// testRows(2) repeats times 0 and 1, so order by _id to check.
	slices.Sort(ids)
	if want := []uint64{1, 2, 3, 100, 101, 102, 103}; !slices.Equal(ids, want) {
		t.Fatalf("ids %v, want %v", ids, want)
	}
}

func TestConcurrentInserts(t *testing.T) {
	s := openTestStore(t, t.TempDir(), Options{})
	const writers, batches, batchSize = 8, 10, 50
	var wg sync.WaitGroup
	errs := make(chan error, writers*batches)
	for w := range writers {
		wg.Go(func() {
			for b := range batches {
				rows := testRows(batchSize)
				for i := range rows {
					rows[i].AgentID = fmt.Sprintf("w%d-b%d", w, b)
				}
				if err := s.InsertL7(context.Background(), rows); err != nil {
					errs <- err
				}
			}
		})
	}
	// Queries run alongside the writers.
	for range 5 {
		mustQuery(t, s, "SELECT count(*) FROM l7_flow_log")
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	const total = writers * batches * batchSize
	res := mustQuery(t, s, "SELECT count(*), count(DISTINCT _id), min(_id), max(_id), count(DISTINCT agent_id) FROM l7_flow_log")
	want := []any{int64(total), int64(total), uint64(1), uint64(total), int64(writers * batches)}
	if !reflect.DeepEqual(res.Rows[0], want) {
		t.Fatalf("got %v, want %v", res.Rows[0], want)
	}
	// Each batch got a contiguous _id range: callers are serialised.
	res = mustQuery(t, s, "SELECT max(_id) - min(_id) FROM l7_flow_log GROUP BY agent_id")
	for _, r := range res.Rows {
		if r[0] != uint64(batchSize-1) {
			t.Fatalf("batch id span %v, want %d", r[0], batchSize-1)
		}
	}
	if st := s.Stats(); st.RowsInserted != total || st.InsertBatches != writers*batches || st.InsertErrors != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestMaxRowsCapsResult(t *testing.T) {
	s := openTestStore(t, t.TempDir(), Options{MaxRows: 5})
	res := mustQuery(t, s, "SELECT * FROM range(100)")
	if len(res.Rows) != 5 {
		t.Fatalf("got %d rows, want 5", len(res.Rows))
	}
	mustQuery(t, s, "SELECT * FROM range(5)")
	if got := s.Stats().QueriesTruncated; got != 1 {
		t.Errorf("QueriesTruncated = %d, want 1", got)
	}
}

func TestRetention(t *testing.T) {
	s := openTestStore(t, t.TempDir(), Options{Retention: time.Hour, RetentionInterval: 20 * time.Millisecond})
	now := time.Now().UTC()
	old, fresh := testRow(0), testRow(1)
	old.Time, fresh.Time = now.Add(-2*time.Hour), now.Add(-time.Minute)
	if err := s.InsertL7(context.Background(), []flowlog.L7FlowLog{old, fresh}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for s.Stats().RowsExpired == 0 {
		if time.Now().After(deadline) {
			t.Fatal("retention loop deleted nothing")
		}
		time.Sleep(10 * time.Millisecond)
	}
	res := mustQuery(t, s, "SELECT _id FROM l7_flow_log")
	if !reflect.DeepEqual(res.Rows, [][]any{{uint64(2)}}) {
		t.Fatalf("rows after retention %v, want only _id 2", res.Rows)
	}
	if n, err := s.PurgeExpired(context.Background()); err != nil || n != 0 {
		t.Errorf("second purge = %d, %v; want 0", n, err)
	}
}

func TestQueryTimeout(t *testing.T) {
	s := openTestStore(t, t.TempDir(), Options{MaxConcurrentQueries: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := s.Query(ctx, "SELECT count(*) FROM range(1000000000000) a")
	if err == nil {
		t.Fatal("endless query returned no error")
	}
	var qe *store.QueryError
	if errors.As(err, &qe) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want a deadline error that is not a QueryError", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("cancellation took %v", d)
	}
	// The single pooled connection is usable again.
	mustQuery(t, s, "SELECT 1")
}

func TestQueryValueConversion(t *testing.T) {
	s := openTestStore(t, t.TempDir(), Options{})
	res := mustQuery(t, s, `SELECT 170141183460469231731687303715884105727::HUGEINT AS h, 1.25::DECIMAL(4,2) AS d,
		'nan'::DOUBLE AS n, INTERVAL 1 DAY AS iv, '550e8400-e29b-41d4-a716-446655440000'::UUID AS u,
		[1, 2] AS l, {'a': 1} AS st, MAP {'k': 'v'} AS m, 'raw'::BLOB AS b, NULL AS z,
		TIMESTAMP '2024-01-02 03:04:05.123456' AS ts, TIMESTAMPTZ '2024-01-02 03:04:05+02' AS tz, DATE '2024-01-02' AS dt`)
	b, err := json.Marshal(res.Rows)
	if err != nil {
		t.Fatal(err)
	}
	want := `[[170141183460469231731687303715884105727,1.25,"nan",{"days":1,"micros":0,"months":0},` +
		`"550e8400-e29b-41d4-a716-446655440000",[1,2],{"a":1},{"k":"v"},"raw",null,` +
		`"2024-01-02T03:04:05.123456Z","2024-01-02T01:04:05Z","2024-01-02T00:00:00Z"]]`
	if string(b) != want {
		t.Errorf("JSON\n got %s\nwant %s", b, want)
	}
}
