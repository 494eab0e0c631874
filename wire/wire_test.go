package wire

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"

	"github.com/sightline-io/sightline/flowlog"
	"github.com/sightline-io/sightline/wire/sightlinepb"
)

// waitFor bounds how long a test waits for an asynchronous outcome; it is a
// hang guard, not a performance assertion.
const waitFor = 20 * time.Second

// collectSink records what the receiver stores and signals each call.
type collectSink struct {
	mu    sync.Mutex
	rows  []flowlog.L7FlowLog
	calls chan int
	// gate, when set, blocks every insert until closed.
	gate chan struct{}
	err  error
}

func newCollectSink() *collectSink { return &collectSink{calls: make(chan int, 1024)} }

func (c *collectSink) insert(ctx context.Context, rows []flowlog.L7FlowLog) error {
	if c.gate != nil {
		select {
		case <-c.gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if c.err != nil {
		return c.err
	}
	c.mu.Lock()
	c.rows = append(c.rows, rows...)
	c.mu.Unlock()
	select {
	case c.calls <- len(rows):
	default:
	}
	return nil
}

func (c *collectSink) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.rows)
}

func (c *collectSink) snapshot() []flowlog.L7FlowLog {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.rows)
}

// waitRows waits until the sink holds at least n rows.
func (c *collectSink) waitRows(t *testing.T, n int) {
	t.Helper()
	deadline := time.After(waitFor)
	for c.count() < n {
		select {
		case <-c.calls:
		case <-deadline:
			t.Fatalf("sink has %d rows, want %d", c.count(), n)
		}
	}
}

// encodingRecorder is a stats handler noting the compression of each
// incoming call.
type encodingRecorder struct {
	mu        sync.Mutex
	encodings []string
}

func (e *encodingRecorder) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context {
	return ctx
}
func (e *encodingRecorder) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context {
	return ctx
}
func (e *encodingRecorder) HandleConn(context.Context, stats.ConnStats) {}
func (e *encodingRecorder) HandleRPC(_ context.Context, s stats.RPCStats) {
	if h, ok := s.(*stats.InHeader); ok {
		e.mu.Lock()
		e.encodings = append(e.encodings, h.Compression)
		e.mu.Unlock()
	}
}

type testServer struct {
	addr string
	recv *Receiver
	srv  *grpc.Server
	enc  *encodingRecorder
}

// startServer serves a receiver on addr ("127.0.0.1:0" for any port).
func startServer(t *testing.T, addr string, sink Sink, opts ReceiverOptions) *testServer {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = testLogger(t)
	}
	recv, err := NewReceiver(sink, opts)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	enc := &encodingRecorder{}
	srv := NewGRPCServer(recv, grpc.StatsHandler(enc))
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	return &testServer{addr: lis.Addr().String(), recv: recv, srv: srv, enc: enc}
}

func newTestShipper(t *testing.T, addr string, opts ShipperOptions) *Shipper {
	t.Helper()
	if opts.AgentID == "" {
		opts.AgentID = "agent-test"
	}
	if opts.Logger == nil {
		opts.Logger = testLogger(t)
	}
	s, err := NewShipper(addr, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// runShipper runs s until the test ends.
func runShipper(t *testing.T, s *Shipper) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := s.Run(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
}

func makeRows(t *testing.T, n int) []flowlog.L7FlowLog {
	rows := make([]flowlog.L7FlowLog, n)
	for i := range rows {
		rows[i] = fillRow(t, i%50)
		rows[i].ID = uint64(i + 1)
	}
	return rows
}

func sortByID(rows []flowlog.L7FlowLog) {
	slices.SortFunc(rows, func(a, b flowlog.L7FlowLog) int { return int(a.ID) - int(b.ID) })
}

func TestShipperDeliversRowsIntactCompressed(t *testing.T) {
	sink := newCollectSink()
	srv := startServer(t, "127.0.0.1:0", sink.insert, ReceiverOptions{})
	reg := prometheus.NewRegistry()
	sh := newTestShipper(t, srv.addr, ShipperOptions{BatchSize: 1000, FlushInterval: 50 * time.Millisecond, Registerer: reg})
	runShipper(t, sh)

	want := makeRows(t, 4500) // four full batches and a partial one sent on the timer
	for i := 0; i < len(want); i += 100 {
		sh.Enqueue(want[i : i+100]...)
	}
	sink.waitRows(t, len(want))

	got := sink.snapshot()
	sortByID(got)
	if len(got) != len(want) {
		t.Fatalf("got %d rows, want %d", len(got), len(want))
	}
	for i := range want {
		if diff := rowDiff(want[i], got[i]); diff != "" {
			t.Fatalf("row %d differs: %s", i, diff)
		}
	}

	st := sh.Stats()
	if st.RowsEnqueued != 4500 || st.RowsSent != 4500 || st.BatchesSent != 5 || st.BatchesFailed != 0 || st.Queued != 0 {
		t.Errorf("shipper stats = %+v", st)
	}
	for reason, n := range st.RowsDropped {
		if n != 0 {
			t.Errorf("dropped %d rows for %s", n, reason)
		}
	}
	if rs := srv.recv.Stats(); rs.RowsInserted != 4500 || rs.BatchesReceived != 5 {
		t.Errorf("receiver stats = %+v", rs)
	}
	if v := gatherValue(t, reg, "sightline_wire_shipper_rows_sent_total", ""); v != 4500 {
		t.Errorf("rows_sent_total = %v, want 4500", v)
	}

	srv.enc.mu.Lock()
	defer srv.enc.mu.Unlock()
	if len(srv.enc.encodings) == 0 {
		t.Fatal("stats handler saw no calls")
	}
	for _, e := range srv.enc.encodings {
		if e != ZstdName {
			t.Errorf("call arrived with grpc-encoding %q, want %s", e, ZstdName)
		}
	}
}

// rowDiff shows both rows if they differ, or returns "".
func rowDiff(a, b flowlog.L7FlowLog) string {
	if reflect.DeepEqual(a, b) {
		return ""
	}
	return fmt.Sprintf("\n sent %+v\n got  %+v", a, b)
}

// gatherValue returns the value of a counter or gauge, selected by a label
// value when label is not "".
func gatherValue(t *testing.T, g prometheus.Gatherer, name, label string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if label != "" && !hasLabelValue(m.GetLabel(), label) {
				continue
			}
			switch {
			case m.GetCounter() != nil:
				return m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				return m.GetGauge().GetValue()
			}
		}
	}
	t.Fatalf("metric %s{%s} not found", name, label)
	return 0
}

// waitUntil polls cond until it holds, failing the test after waitFor.
func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached")
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func hasLabelValue[L interface{ GetValue() string }](labels []L, value string) bool {
	for _, l := range labels {
		if l.GetValue() == value {
			return true
		}
	}
	return false
}

func TestFlushSendsPartialBatch(t *testing.T) {
	sink := newCollectSink()
	srv := startServer(t, "127.0.0.1:0", sink.insert, ReceiverOptions{})
	// No Run and a long interval: only Flush can send these.
	sh := newTestShipper(t, srv.addr, ShipperOptions{BatchSize: 1000, FlushInterval: time.Hour})
	sh.Enqueue(makeRows(t, 2500)...)

	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := sh.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if n := sink.count(); n != 2500 {
		t.Errorf("sink has %d rows after Flush, want 2500", n)
	}
	if st := sh.Stats(); st.Queued != 0 || st.BatchesSent != 3 {
		t.Errorf("stats after Flush = %+v", st)
	}
}

func TestSlowSinkDropsWithoutBlocking(t *testing.T) {
	sink := newCollectSink()
	sink.gate = make(chan struct{})
	srv := startServer(t, "127.0.0.1:0", sink.insert, ReceiverOptions{})
	reg := prometheus.NewRegistry()
	sh := newTestShipper(t, srv.addr, ShipperOptions{
		QueueSize: 100, BatchSize: 10, FlushInterval: 10 * time.Millisecond,
		SendTimeout: time.Minute, Registerer: reg,
	})
	runShipper(t, sh)

	// The sink holds the first batch, so the queue fills and the rest must be
	// dropped while Enqueue keeps returning. A blocking Enqueue would hang
	// this loop; the guard turns that into a failure.
	const total = 20000
	row := fillRow(t, 1)
	loopDone := make(chan struct{})
	go func() {
		defer close(loopDone)
		for range total {
			sh.Enqueue(row)
		}
	}()
	select {
	case <-loopDone:
	case <-time.After(waitFor):
		t.Fatal("Enqueue blocked behind a slow server")
	}

	st := sh.Stats()
	dropped := st.RowsDropped[DropQueueFull]
	if st.RowsEnqueued+dropped != total {
		t.Errorf("enqueued %d + dropped %d != %d", st.RowsEnqueued, dropped, total)
	}
	if st.RowsEnqueued > 100 || dropped < total-100 {
		t.Errorf("queue of 100 took %d rows and dropped %d", st.RowsEnqueued, dropped)
	}
	if st.Queued > 100 {
		t.Errorf("queue holds %d rows, bound is 100", st.Queued)
	}
	if v := gatherValue(t, reg, "sightline_wire_shipper_rows_dropped_total", DropQueueFull); v != float64(dropped) {
		t.Errorf("rows_dropped_total{reason=queue_full} = %v, want %d", v, dropped)
	}

	// Once the server catches up, everything that was accepted arrives.
	close(sink.gate)
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := sh.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	sink.waitRows(t, int(st.RowsEnqueued))
	if got := sink.count(); got != int(st.RowsEnqueued) {
		t.Errorf("sink has %d rows, shipper accepted %d", got, st.RowsEnqueued)
	}
}

func TestReceiverRejectsMalformedBatch(t *testing.T) {
	sink := newCollectSink()
	srv := startServer(t, "127.0.0.1:0", sink.insert, ReceiverOptions{MaxBatchRows: 3})
	conn, err := grpc.NewClient(srv.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := sightlinepb.NewIngestClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()

	tests := []struct {
		name    string
		batch   *sightlinepb.L7Batch
		wantMsg string
	}{
		{"ip of 5 bytes", &sightlinepb.L7Batch{AgentId: "a", Rows: []*sightlinepb.L7FlowLog{
			{Id: 1}, {Id: 2, Ip_0: []byte{1, 2, 3, 4, 5}},
		}}, "row 1: ip_0: IP address is 5 bytes"},
		{"port out of range", &sightlinepb.L7Batch{AgentId: "a", Rows: []*sightlinepb.L7FlowLog{
			{ServerPort: 1 << 16},
		}}, "row 0: server_port"},
		{"too many rows", &sightlinepb.L7Batch{AgentId: "a", Rows: make([]*sightlinepb.L7FlowLog, 4)},
			"4 rows exceed the limit of 3"},
		{"no agent id", &sightlinepb.L7Batch{Rows: []*sightlinepb.L7FlowLog{{Id: 1}}}, "agent_id is empty"},
	}
	for i := range tests[2].batch.Rows {
		tests[2].batch.Rows[i] = &sightlinepb.L7FlowLog{}
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := client.PushL7(ctx, tt.batch)
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), tt.wantMsg) {
				t.Fatalf("err = %v, want InvalidArgument containing %q", err, tt.wantMsg)
			}
			if got := srv.recv.Stats().BatchesRejected; got != uint64(i+1) {
				t.Errorf("BatchesRejected = %d, want %d", got, i+1)
			}
		})
	}
	if n := sink.count(); n != 0 {
		t.Errorf("sink got %d rows from rejected batches", n)
	}

	// The receiver keeps serving; rows without an agent_id take the batch's.
	reply, err := client.PushL7(ctx, &sightlinepb.L7Batch{AgentId: "agent-7", Rows: []*sightlinepb.L7FlowLog{
		{Id: 9, Ip_0: []byte{10, 0, 0, 1}}, {Id: 10, AgentId: "other"},
	}})
	if err != nil {
		t.Fatalf("valid batch after rejections: %v", err)
	}
	if reply.GetAccepted() != 2 {
		t.Errorf("accepted = %d, want 2", reply.GetAccepted())
	}
	got := sink.snapshot()
	if len(got) != 2 || got[0].AgentID != "agent-7" || got[1].AgentID != "other" || got[0].IP0.String() != "10.0.0.1" {
		t.Errorf("stored rows = %+v", got)
	}
}

func TestShipperDropsRejectedBatches(t *testing.T) {
	tests := []struct {
		name     string
		recvOpts ReceiverOptions
		sinkErr  error
		reason   string
	}{
		{"invalid argument", ReceiverOptions{MaxBatchRows: 4}, nil, DropInvalid},
		{"insert error", ReceiverOptions{}, errors.New("disk full"), DropRejected},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sink := newCollectSink()
			sink.err = tt.sinkErr
			srv := startServer(t, "127.0.0.1:0", sink.insert, tt.recvOpts)
			sh := newTestShipper(t, srv.addr, ShipperOptions{BatchSize: 10})
			sh.Enqueue(makeRows(t, 25)...)
			ctx, cancel := context.WithTimeout(context.Background(), waitFor)
			defer cancel()
			if err := sh.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			st := sh.Stats()
			if st.RowsDropped[tt.reason] != 25 || st.BatchesFailed != 3 || st.RowsSent != 0 || st.Queued != 0 {
				t.Errorf("stats = %+v, want 25 rows dropped as %s in 3 batches", st, tt.reason)
			}
			if tt.sinkErr != nil && srv.recv.Stats().InsertErrors != 3 {
				t.Errorf("receiver stats = %+v, want 3 insert errors", srv.recv.Stats())
			}
		})
	}
}

func TestShipperReconnectsAfterServerRestart(t *testing.T) {
	// Reserve a port, then leave it closed: the server is down.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()

	sh := newTestShipper(t, addr, ShipperOptions{
		BatchSize: 50, FlushInterval: 10 * time.Millisecond,
		RetryMinBackoff: 10 * time.Millisecond, RetryMaxBackoff: 50 * time.Millisecond,
		MaxRetryElapsed: time.Minute,
	})
	runShipper(t, sh)
	want := makeRows(t, 120)
	sh.Enqueue(want...)

	waitUntil(t, func() bool { return sh.Stats().SendErrors >= 3 })

	sink := newCollectSink()
	startServer(t, addr, sink.insert, ReceiverOptions{})
	sink.waitRows(t, len(want))
	got := sink.snapshot()
	sortByID(got)
	for i := range want {
		if got[i].ID != want[i].ID {
			t.Fatalf("row %d has id %d, want %d", i, got[i].ID, want[i].ID)
		}
	}
	// The sink may see the last batch before the shipper sees the reply.
	waitUntil(t, func() bool { return sh.Stats().RowsSent == 120 })
	if st := sh.Stats(); st.BatchesFailed != 0 || st.Queued != 0 {
		t.Errorf("stats = %+v", st)
	}
}

func TestShipperSplitsOversizedBatches(t *testing.T) {
	sink := newCollectSink()
	srv := startServer(t, "127.0.0.1:0", sink.insert, ReceiverOptions{})
	sh := newTestShipper(t, srv.addr, ShipperOptions{BatchSize: 40, MaxBatchBytes: 8 << 10})
	rows := makeRows(t, 40)
	for i := range rows {
		rows[i].RequestResource = strings.Repeat("x", 1000)
	}
	rows[17].RequestResource = strings.Repeat("y", 16<<10) // cannot fit alone
	sh.Enqueue(rows...)
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := sh.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	st := sh.Stats()
	if st.RowsSent != 39 || st.RowsDropped[DropTooLarge] != 1 || st.BatchesSent < 5 {
		t.Errorf("stats = %+v, want 39 rows sent in >=5 batches and 1 dropped too_large", st)
	}
	if sink.count() != 39 {
		t.Errorf("sink has %d rows, want 39", sink.count())
	}
}

func TestShipperClose(t *testing.T) {
	sh, err := NewShipper("127.0.0.1:1", ShipperOptions{AgentID: "a", Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	sh.Enqueue(makeRows(t, 7)...)
	if err := sh.Close(); err != nil {
		t.Fatal(err)
	}
	sh.Enqueue(makeRows(t, 3)...)
	st := sh.Stats()
	if st.RowsDropped[DropClosed] != 10 || st.Queued != 0 {
		t.Errorf("stats = %+v, want 10 rows dropped as closed", st)
	}
}

func TestOptionsValidation(t *testing.T) {
	if _, err := NewShipper("127.0.0.1:1", ShipperOptions{}); err == nil {
		t.Error("NewShipper without AgentID succeeded")
	}
	if _, err := NewReceiver(nil, ReceiverOptions{}); err == nil {
		t.Error("NewReceiver with nil sink succeeded")
	}
	// Two shippers on one registry collide; the second must say so.
	reg := prometheus.NewRegistry()
	s1, err := NewShipper("127.0.0.1:1", ShipperOptions{AgentID: "a", Registerer: reg, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer s1.Close()
	if _, err := NewShipper("127.0.0.1:1", ShipperOptions{AgentID: "a", Registerer: reg, Logger: testLogger(t)}); err == nil {
		t.Error("duplicate metric registration not reported")
	}
}

func TestRunTwice(t *testing.T) {
	sh := newTestShipper(t, "127.0.0.1:1", ShipperOptions{})
	runShipper(t, sh)
	waitUntil(t, sh.running.Load)
	if err := sh.Run(context.Background()); err == nil {
		t.Error("second concurrent Run did not fail")
	}
}

// While the server is down, Flush gives up at its deadline instead of waiting
// behind the retrying sender, and stopping Run mid-retry puts the batch back:
// a later Flush delivers every row.
func TestFlushAndStopDuringOutageKeepRows(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()

	sh := newTestShipper(t, addr, ShipperOptions{
		BatchSize: 10, FlushInterval: 5 * time.Millisecond,
		RetryMinBackoff: 5 * time.Millisecond, RetryMaxBackoff: 20 * time.Millisecond,
		MaxRetryElapsed: time.Hour,
	})
	runCtx, stopRun := context.WithCancel(context.Background())
	runDone := make(chan error, 1)
	go func() { runDone <- sh.Run(runCtx) }()
	sh.Enqueue(makeRows(t, 30)...)
	waitUntil(t, func() bool { return sh.Stats().SendErrors >= 2 })

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	err = sh.Flush(ctx)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Flush during outage = %v, want DeadlineExceeded", err)
	}
	stopRun()
	if err := <-runDone; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if st := sh.Stats(); st.Queued != 30 || st.RowsSent != 0 {
		t.Fatalf("after stopping Run: %+v, want all 30 rows still queued", st)
	}

	sink := newCollectSink()
	startServer(t, addr, sink.insert, ReceiverOptions{})
	ctx, cancel = context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := sh.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	got := sink.snapshot()
	sortByID(got)
	if len(got) != 30 || got[0].ID != 1 || got[29].ID != 30 {
		t.Errorf("delivered %d rows after restart, want ids 1..30", len(got))
	}
}
