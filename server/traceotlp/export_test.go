package traceotlp

import (
	"compress/gzip"
	"context"
	"encoding/binary"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"

	"github.com/sightline-io/sightline/flowlog"
	"github.com/sightline-io/sightline/server/appspans"
	"github.com/sightline-io/sightline/server/store/duckdb"

	"github.com/sightline-io/sightline/server/store"
)

// receiver is a real OTLP/HTTP endpoint that decodes what it gets.
type receiver struct {
	t      *testing.T
	mu     sync.Mutex
	status int // answer with this status (0: 200)
	calls  int
	reqs   []ptrace.Traces
	header http.Header
	srv    *httptest.Server
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{t: t}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	if req.Method != http.MethodPost || req.URL.Path != "/v1/traces" {
		http.Error(w, "bad method or path "+req.Method+" "+req.URL.Path, http.StatusNotFound)
		return
	}
	if ct := req.Header.Get("Content-Type"); ct != "application/x-protobuf" {
		http.Error(w, "content type "+ct, http.StatusUnsupportedMediaType)
		return
	}
	r.header = req.Header.Clone()
	if r.status != 0 {
		http.Error(w, "boom", r.status)
		return
	}
	var body io.Reader = req.Body
	if req.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(req.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		body = zr
	}
	raw, err := io.ReadAll(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	er := ptraceotlp.NewExportRequest()
	if err := er.UnmarshalProto(raw); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.reqs = append(r.reqs, er.Traces())
	out, _ := ptraceotlp.NewExportResponse().MarshalProto()
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

func (r *receiver) callCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls
}

func (r *receiver) set(status int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.status, r.calls = status, 0
}

// take returns the requests received since the last call.
func (r *receiver) take() []ptrace.Traces {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.reqs
	r.reqs = nil
	return out
}

type gotSpan struct {
	trace  string
	parent uint64
}

func rowOf(b [8]byte) uint64 { return binary.BigEndian.Uint64(b[:]) }

// spansOf flattens requests to row id → (trace id, parent row id).
func spansOf(t *testing.T, reqs []ptrace.Traces) map[uint64]gotSpan {
	t.Helper()
	out := make(map[uint64]gotSpan)
	for _, td := range reqs {
		for i := 0; i < td.ResourceSpans().Len(); i++ {
			ss := td.ResourceSpans().At(i).ScopeSpans()
			for j := 0; j < ss.Len(); j++ {
				sp := ss.At(j).Spans()
				for k := 0; k < sp.Len(); k++ {
					s := sp.At(k)
					row := rowOf(s.SpanID())
					if _, dup := out[row]; dup {
						t.Errorf("span %d exported twice", row)
					}
					out[row] = gotSpan{trace: s.TraceID().String(), parent: rowOf(s.ParentSpanID())}
				}
			}
		}
	}
	return out
}

func openStore(t *testing.T) *duckdb.Store {
	t.Helper()
	st, err := duckdb.Open(context.Background(), t.TempDir(), duckdb.Options{Retention: -1})
	if err != nil {
		t.Fatalf("duckdb.Open: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func insert(t *testing.T, st *duckdb.Store, rows []flowlog.L7FlowLog) {
	t.Helper()
	if err := st.InsertL7(context.Background(), rows); err != nil {
		t.Fatalf("InsertL7: %v", err)
	}
}

func newTestExporter(t *testing.T, st *duckdb.Store, endpoint string, mod func(*ExportOptions)) *Exporter {
	t.Helper()
	opt := ExportOptions{Endpoint: endpoint, Backfill: -1, RetryBackoff: time.Millisecond, Headers: map[string]string{"X-Token": "secret"}}
	if mod != nil {
		mod(&opt)
	}
	e, err := NewExporter(st, opt)
	if err != nil {
		t.Fatalf("NewExporter: %v", err)
	}
	return e
}

func runOnce(t *testing.T, e *Exporter) {
	t.Helper()
	if err := e.RunOnce(context.Background()); err != nil {
		t.Fatalf("RunOnce: %v", err)
	}
}

// checkCoherent: every span of rows shares one trace id and its parent
// resolves inside that set (except the one root).
func checkCoherent(t *testing.T, got map[uint64]gotSpan, rows ...uint64) string {
	t.Helper()
	var tid string
	roots := 0
	in := make(map[uint64]bool, len(rows))
	for _, r := range rows {
		in[r] = true
	}
	for _, r := range rows {
		s, ok := got[r]
		if !ok {
			t.Errorf("span %d not exported", r)
			continue
		}
		if tid == "" {
			tid = s.trace
		} else if s.trace != tid {
			t.Errorf("span %d: trace id %s, want %s", r, s.trace, tid)
		}
		if s.parent == 0 {
			roots++
		} else if !in[s.parent] {
			t.Errorf("span %d: parent %d does not resolve", r, s.parent)
		}
	}
	if roots != 1 {
		t.Errorf("rows %v: %d roots, want 1", rows, roots)
	}
	return tid
}

func TestExporterRounds(t *testing.T) {
	st := openStore(t)
	rc := newReceiver(t)
	e := newTestExporter(t, st, rc.srv.URL, nil)

	// Round 1: two complete traces. Trace B carries a W3C trace id on every row.
	b := ebpfTraceRows(t0.Add(time.Second), 200, "web", "db-proxy")
	const w3c = "4bf92f3577b34da6a3ce929d0e0e4736"
	for i := range b {
		b[i].TraceID = w3c
	}
	insert(t, st, append(ebpfTraceRows(t0, 100, "frontend", "backend"), b...))
	runOnce(t, e)
	got := spansOf(t, rc.take())
	if len(got) != 10 {
		t.Fatalf("round 1: %d spans exported, want 10: %v", len(got), got)
	}
	if tid := checkCoherent(t, got, 101, 102, 103, 104, 105); tid != SyntheticTraceID(101).String() {
		t.Errorf("trace A id %s, want synthetic for row 101", tid)
	}
	if tid := checkCoherent(t, got, 201, 202, 203, 204, 205); tid != w3c {
		t.Errorf("trace B id %s, want %s", tid, w3c)
	}
	rc.mu.Lock()
	hdr := rc.header
	rc.mu.Unlock()
	if h := hdr.Get("X-Token"); h != "secret" {
		t.Errorf("header X-Token = %q", h)
	}
	if h := hdr.Get("Content-Encoding"); h != "gzip" {
		t.Errorf("Content-Encoding = %q", h)
	}
	s := e.Stats()
	if s.ExportedTraces != 2 || s.ExportedSpans != 10 || s.Requests != 1 || s.SkippedRows != 8 || s.Watermark != 205 {
		t.Errorf("stats after round 1: %+v", s)
	}

	// Round 2: nothing new, nothing sent.
	runOnce(t, e)
	if reqs := rc.take(); len(reqs) != 0 {
		t.Errorf("round 2 sent %d requests", len(reqs))
	}

	// Round 3: a trace whose client span arrives after the rest was exported:
	// only the late span goes out, under its (already exported) child's trace.
	c := ebpfTraceRows(t0.Add(2*time.Second), 300, "cli", "srv")
	insert(t, st, c[1:])
	runOnce(t, e)
	got = spansOf(t, rc.take())
	if len(got) != 4 {
		t.Fatalf("round 3: %d spans, want 4: %v", len(got), got)
	}
	checkCoherent(t, got, 302, 303, 304, 305)
	late := c[0]
	late.ID = 400
	insert(t, st, []flowlog.L7FlowLog{late})
	runOnce(t, e)
	got = spansOf(t, rc.take())
	if len(got) != 1 || got[400].parent != 0 {
		t.Errorf("round 4: %v, want only span 400 as a root", got)
	}

	// Round 5: rows that ended just now wait for Delay, then go out.
	now := time.Now()
	d := ebpfTraceRows(now, 500, "a", "b")
	insert(t, st, d)
	runOnce(t, e)
	if reqs := rc.take(); len(reqs) != 0 {
		t.Errorf("young rows exported before Delay: %v", spansOf(t, reqs))
	}
	e.now = func() time.Time { return now.Add(DefaultDelay + time.Second) }
	runOnce(t, e)
	got = spansOf(t, rc.take())
	if len(got) != 5 {
		t.Errorf("round 6: %d spans, want 5", len(got))
	}
	checkCoherent(t, got, 501, 502, 503, 504, 505)
	s = e.Stats()
	if s.ExportedSpans != 20 || s.ExportedTraces != 5 || s.FailedRequests != 0 || s.DroppedSpans != 0 || s.Watermark != 505 {
		t.Errorf("final stats: %+v", s)
	}
}

func TestExporterRetriesThenDrops(t *testing.T) {
	st := openStore(t)
	rc := newReceiver(t)
	rc.set(http.StatusInternalServerError)
	e := newTestExporter(t, st, rc.srv.URL+"/", nil)
	insert(t, st, ebpfTraceRows(t0, 100, "frontend", "backend"))
	runOnce(t, e)
	if rc.callCount() != MaxAttempts {
		t.Errorf("endpoint called %d times, want %d", rc.callCount(), MaxAttempts)
	}
	s := e.Stats()
	if s.FailedRequests != 1 || s.Retries != MaxAttempts-1 || s.DroppedSpans != 5 || s.DroppedTraces != 1 || s.ExportedSpans != 0 {
		t.Errorf("stats: %+v", s)
	}
	// The dropped trace is not sent again; a later trace is, once the endpoint recovers.
	rc.set(0)
	insert(t, st, ebpfTraceRows(t0.Add(time.Second), 200, "frontend", "backend"))
	runOnce(t, e)
	got := spansOf(t, rc.take())
	if len(got) != 5 || rc.callCount() != 1 {
		t.Errorf("after recovery: %d spans in %d calls, want 5 in 1", len(got), rc.callCount())
	}
	checkCoherent(t, got, 201, 202, 203, 204, 205)

	// A 400 is not retried.
	rc.set(http.StatusBadRequest)
	insert(t, st, ebpfTraceRows(t0.Add(2*time.Second), 300, "frontend", "backend"))
	runOnce(t, e)
	if rc.callCount() != 1 || e.Stats().FailedRequests != 2 {
		t.Errorf("400: %d calls, stats %+v", rc.callCount(), e.Stats())
	}
}

func TestExporterSplitsAndBounds(t *testing.T) {
	st := openStore(t)
	rc := newReceiver(t)
	e := newTestExporter(t, st, rc.srv.URL, func(o *ExportOptions) {
		o.MaxRequestBytes = 1 // every trace alone
		o.MaxTracesPerRound = 2
		o.RememberSpans = 4 // smaller than a trace: evictions, yet no duplicates thanks to the watermark
	})
	var rows []flowlog.L7FlowLog
	for k := range 3 {
		rows = append(rows, ebpfTraceRows(t0.Add(time.Duration(k)*time.Second), uint64(100*(k+1)), "f", "b")...)
	}
	insert(t, st, rows)
	runOnce(t, e)
	reqs := rc.take()
	if len(reqs) != 2 {
		t.Errorf("round 1: %d requests, want 2 (one per trace)", len(reqs))
	}
	if s := e.Stats(); s.ExportedTraces != 2 || s.SeenEvictions == 0 {
		t.Errorf("round 1 stats: %+v", s)
	}
	runOnce(t, e)
	reqs = append(reqs, rc.take()...)
	got := spansOf(t, reqs)
	if len(got) != 15 {
		t.Errorf("%d spans, want 15", len(got))
	}
	for _, base := range []uint64{100, 200, 300} {
		checkCoherent(t, got, base+1, base+2, base+3, base+4, base+5)
	}
}

func TestExporterBackfillAndRun(t *testing.T) {
	st := openStore(t)
	rc := newReceiver(t)
	// Old rows predate Delay+Backfill: not exported. Fresh ones are.
	insert(t, st, ebpfTraceRows(t0, 100, "old", "old"))
	e := newTestExporter(t, st, rc.srv.URL, func(o *ExportOptions) {
		o.Backfill = 0
		o.Interval = 20 * time.Millisecond
		o.Delay = 50 * time.Millisecond
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	insert(t, st, ebpfTraceRows(time.Now().Add(2*time.Second), 200, "new", "new"))
	deadline := time.Now().Add(10 * time.Second)
	for e.Stats().ExportedSpans < 5 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
	got := spansOf(t, rc.take())
	if len(got) != 5 {
		t.Fatalf("%d spans exported, want 5: %v", len(got), got)
	}
	checkCoherent(t, got, 201, 202, 203, 204, 205)
}

// TestExporterToAppspans sends to this repository's own OTLP receiver and
// checks the rows it stores.
func TestExporterToAppspans(t *testing.T) {
	src, dst := openStore(t), openStore(t)
	recv := appspans.New(dst.InsertL7, appspans.Options{})
	srv := httptest.NewServer(recv.Handler())
	t.Cleanup(srv.Close)
	e := newTestExporter(t, src, srv.URL, nil)
	insert(t, src, ebpfTraceRows(t0, 100, "frontend", "backend"))
	runOnce(t, e)
	if s := e.Stats(); s.ExportedSpans != 5 || s.FailedRequests != 0 {
		t.Fatalf("stats: %+v", s)
	}
	res, err := dst.Query(context.Background(),
		"SELECT trace_id, count(*), count(DISTINCT span_id) FROM l7_flow_log GROUP BY trace_id")
	if err != nil {
		t.Fatalf("Query: %v", err)
	}
	if len(res.Rows) != 1 {
		t.Fatalf("rows by trace id: %v", res.Rows)
	}
	want := SyntheticTraceID(101).String()
	if tid, _ := res.Rows[0][0].(string); !strings.EqualFold(tid, want) {
		t.Errorf("stored trace id %v, want %s", res.Rows[0][0], want)
	}
	if n, _ := store.ToUint64(res.Rows[0][1]); n != 5 {
		t.Errorf("stored %v spans, want 5", res.Rows[0][1])
	}
	if n, _ := store.ToUint64(res.Rows[0][2]); n != 5 {
		t.Errorf("stored %v distinct span ids, want 5", res.Rows[0][2])
	}
}

func TestNewExporterValidation(t *testing.T) {
	st := openStore(t)
	tests := []struct {
		name    string
		opt     ExportOptions
		wantURL string
		wantErr string
	}{
		{name: "base", opt: ExportOptions{Endpoint: "http://127.0.0.1:4318"}, wantURL: "http://127.0.0.1:4318/v1/traces"},
		{name: "slash", opt: ExportOptions{Endpoint: "https://otel.example:4318/"}, wantURL: "https://otel.example:4318/v1/traces"},
		{name: "prefix", opt: ExportOptions{Endpoint: "http://gw/otlp"}, wantURL: "http://gw/otlp/v1/traces"},
		{name: "full", opt: ExportOptions{Endpoint: "http://gw:4318/v1/traces"}, wantURL: "http://gw:4318/v1/traces"},
		{name: "empty", opt: ExportOptions{}, wantErr: "empty OTLP endpoint"},
		{name: "scheme", opt: ExportOptions{Endpoint: "grpc://host:4317"}, wantErr: "must be an http"},
		{name: "no host", opt: ExportOptions{Endpoint: "http:///v1/traces"}, wantErr: "must be an http"},
		{name: "query", opt: ExportOptions{Endpoint: "http://h:4318?x=1"}, wantErr: "query"},
		{name: "bad url", opt: ExportOptions{Endpoint: "http://h:port"}, wantErr: "OTLP endpoint"},
		{name: "header", opt: ExportOptions{Endpoint: "http://h:4318", Headers: map[string]string{"Bad Key": "v"}}, wantErr: "bad header"},
		{name: "header value", opt: ExportOptions{Endpoint: "http://h:4318", Headers: map[string]string{"K": "a\r\nb"}}, wantErr: "bad header"},
		{name: "negative", opt: ExportOptions{Endpoint: "http://h:4318", Interval: -1}, wantErr: "negative"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, err := NewExporter(st, tc.opt)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("NewExporter: %v", err)
			}
			if e.url != tc.wantURL {
				t.Errorf("url = %s, want %s", e.url, tc.wantURL)
			}
			if e.opt.Interval != DefaultInterval || e.opt.Delay != DefaultDelay || e.opt.MaxTracesPerRound != DefaultMaxTracesPerRound {
				t.Errorf("defaults not applied: %+v", e.opt)
			}
		})
	}
	if _, err := NewExporter(nil, ExportOptions{Endpoint: "http://h"}); err == nil {
		t.Error("nil store accepted")
	}
}

func TestIDRing(t *testing.T) {
	r := newIDRing(3)
	ev := 0
	for _, id := range []uint64{1, 2, 3, 2, 4, 5} {
		if r.add(id) {
			ev++
		}
	}
	if ev != 2 {
		t.Errorf("evictions = %d, want 2", ev)
	}
	for id, want := range map[uint64]bool{1: false, 2: false, 3: true, 4: true, 5: true} {
		if r.has(id) != want {
			t.Errorf("has(%d) = %v, want %v", id, r.has(id), want)
		}
	}
}

// TestExporterThroughput measures one full round over many traces (logged;
// the assertion is only completeness).
func TestExporterThroughput(t *testing.T) {
	st := openStore(t)
	rc := newReceiver(t)
	e := newTestExporter(t, st, rc.srv.URL, nil)
	const n = 100
	rows := make([]flowlog.L7FlowLog, 0, 5*n)
	for k := range n {
		rows = append(rows, ebpfTraceRows(t0.Add(time.Duration(k)*100*time.Millisecond), uint64(10*(k+1)), "f", "b")...)
	}
	insert(t, st, rows)
	began := time.Now()
	runOnce(t, e)
	took := time.Since(began)
	s := e.Stats()
	if s.ExportedTraces != n || s.ExportedSpans != 5*n || s.Requests != 1 {
		t.Errorf("stats: %+v", s)
	}
	got := spansOf(t, rc.take())
	if len(got) != 5*n {
		t.Errorf("%d spans received, want %d", len(got), 5*n)
	}
	t.Logf("one round: %d traces, %d spans in %v (%.0f spans/s, %d compressed bytes)",
		n, 5*n, took, float64(5*n)/took.Seconds(), s.BytesSent)
}

// TestExporterRunDrainsBacklog: a round that stops at MaxTracesPerRound is
// followed at once by the next, not after Interval.
func TestExporterRunDrainsBacklog(t *testing.T) {
	st := openStore(t)
	rc := newReceiver(t)
	e := newTestExporter(t, st, rc.srv.URL, func(o *ExportOptions) {
		o.MaxTracesPerRound = 1
		o.Interval = time.Hour
	})
	for k := range 4 {
		insert(t, st, ebpfTraceRows(t0.Add(time.Duration(k)*time.Second), uint64(100*(k+1)), "f", "b"))
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for e.Stats().ExportedTraces < 4 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
	got := spansOf(t, rc.take())
	if len(got) != 20 {
		t.Fatalf("%d spans exported, want 20", len(got))
	}
	if s := e.Stats(); s.Requests != 4 || s.Rounds < 4 {
		t.Errorf("stats: %+v", s)
	}
}
