package wire

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/sightline-io/sightline/flowlog"
	"github.com/sightline-io/sightline/wire/sightlinepb"
)

// ShipperOptions configures a Shipper. Zero values take the defaults noted.
type ShipperOptions struct {
	// AgentID names this agent in every batch (required).
	AgentID string
	// QueueSize bounds the rows held by the shipper, including the batch in
	// flight (default 65536). Rows beyond it are dropped and counted.
	QueueSize int
	// BatchSize is the most rows sent in one call (default 2000).
	BatchSize int
	// FlushInterval sends a partial batch once it has waited this long
	// (default 1s).
	FlushInterval time.Duration
	// SendTimeout is the deadline of one call (default 10s).
	SendTimeout time.Duration
	// MaxBatchBytes caps the encoded size of one call (default 16 MiB, well
	// under the receiver's limit); larger batches are split.
	MaxBatchBytes int
	// RetryMinBackoff and RetryMaxBackoff bound the exponential backoff
	// between attempts on transient errors (defaults 100ms and 5s). The
	// latter also caps gRPC's reconnect backoff.
	RetryMinBackoff, RetryMaxBackoff time.Duration
	// MaxRetryElapsed is how long one batch is retried before it is dropped
	// (default 30s), so an outage drops old rows rather than stalling forever.
	MaxRetryElapsed time.Duration
	// Credentials secures the connection; nil means plaintext.
	Credentials credentials.TransportCredentials
	// DialOptions are appended to the shipper's own.
	DialOptions []grpc.DialOption
	// Registerer receives the shipper's metrics; nil registers none.
	Registerer prometheus.Registerer
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

func (o *ShipperOptions) setDefaults() error {
	if o.AgentID == "" {
		return errors.New("agent ID is required")
	}
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	defDur := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&o.QueueSize, 65536)
	def(&o.BatchSize, 2000)
	def(&o.MaxBatchBytes, 16<<20)
	defDur(&o.FlushInterval, time.Second)
	defDur(&o.SendTimeout, 10*time.Second)
	defDur(&o.RetryMinBackoff, 100*time.Millisecond)
	defDur(&o.RetryMaxBackoff, 5*time.Second)
	defDur(&o.MaxRetryElapsed, 30*time.Second)
	if o.RetryMaxBackoff < o.RetryMinBackoff {
		o.RetryMaxBackoff = o.RetryMinBackoff
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return nil
}

// Reasons a shipper drops rows (the "reason" label of rows_dropped_total).
const (
	DropQueueFull      = "queue_full"      // Enqueue found the queue full
	DropInvalid        = "invalid"         // the server rejected the batch as InvalidArgument
	DropRejected       = "rejected"        // the server failed the batch with another non-retryable code
	DropRetryExhausted = "retry_exhausted" // transient errors outlasted MaxRetryElapsed
	DropTooLarge       = "too_large"       // one row alone exceeds MaxBatchBytes
	DropClosed         = "closed"          // queued at Close, or enqueued after it
)

var dropReasons = [...]string{DropQueueFull, DropInvalid, DropRejected, DropRetryExhausted, DropTooLarge, DropClosed}

const (
	dropQueueFull = iota
	dropInvalid
	dropRejected
	dropRetryExhausted
	dropTooLarge
	dropClosed
	numDropReasons
)

// ShipperStats is a snapshot of a Shipper's counters.
type ShipperStats struct {
	RowsEnqueued uint64
	RowsSent     uint64
	// RowsDropped is keyed by the Drop* reasons.
	RowsDropped   map[string]uint64
	BatchesSent   uint64
	BatchesFailed uint64 // batches given up on (their rows are in RowsDropped)
	SendErrors    uint64 // failed attempts, including ones later retried successfully
	Queued        int    // rows held now, including the batch in flight
}

// Shipper sends flow logs to a server. Enqueue never blocks; a single sender
// (Run, or Flush) ships batches one call at a time, so a slow or absent server
// fills the bounded queue and further rows are dropped and counted, instead of
// pushing back on the data path.
type Shipper struct {
	opts ShipperOptions
	log  *slog.Logger
	conn *grpc.ClientConn
	// encoder, encoded and codec belong to the goroutine that delivers.
	encoder batchEncoder
	encoded []byte
	codec   rawCodec

	// wake is signalled (without blocking) when a full batch is queued.
	wake chan struct{}
	// sendSlot keeps one call in flight across Run and Flush; a channel
	// rather than a mutex so that waiting for it honours a context.
	sendSlot chan struct{}
	// running guards against two concurrent Run loops.
	running atomic.Bool

	mu sync.Mutex
	// chunks is the queue: slices of at most BatchSize rows, oldest first,
	// so taking a batch is O(1) and memory follows the rows actually queued.
	chunks [][]flowlog.L7FlowLog
	// spare holds emptied chunks for reuse.
	spare [][]flowlog.L7FlowLog
	// queued counts rows in chunks plus rows taken for sending and not yet
	// resolved, so QueueSize bounds all memory the shipper holds.
	queued int
	closed bool

	rowsEnqueued  atomic.Uint64
	rowsSent      atomic.Uint64
	rowsDropped   [numDropReasons]atomic.Uint64
	batchesSent   atomic.Uint64
	batchesFailed atomic.Uint64

	// l4 rows: a queue of their own (see l4.go).
	l4mu              sync.Mutex
	l4queue           []flowlog.L4FlowLog
	l4Sent, l4Dropped atomic.Uint64
	sendErrors        atomic.Uint64
	sendErrorsBy      *prometheus.CounterVec
	sendLatency       prometheus.Histogram
}

// NewShipper prepares a shipper for target (a gRPC target such as
// "server:7070"). It does not connect; the connection is made lazily and
// re-made after failures. Call Run to start sending and Close when done.
func NewShipper(target string, opts ShipperOptions) (*Shipper, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, fmt.Errorf("shipper options: %w", err)
	}
	creds := opts.Credentials
	if creds == nil {
		creds = insecure.NewCredentials()
	}
	dialOpts := append([]grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(grpc.UseCompressor(ZstdName)),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff: backoff.Config{
				BaseDelay:  opts.RetryMinBackoff,
				Multiplier: 1.6,
				Jitter:     0.2,
				MaxDelay:   opts.RetryMaxBackoff,
			},
			MinConnectTimeout: opts.SendTimeout,
		}),
	}, opts.DialOptions...)
	conn, err := grpc.NewClient(target, dialOpts...)
	if err != nil {
		return nil, fmt.Errorf("grpc client for %q: %w", target, err)
	}
	s := &Shipper{
		opts:     opts,
		log:      opts.Logger.With("component", "wire.shipper", "target", target),
		conn:     conn,
		codec:    newRawCodec(),
		wake:     make(chan struct{}, 1),
		sendSlot: make(chan struct{}, 1),
		sendErrorsBy: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sightline_wire_shipper_send_errors_total",
			Help: "Failed PushL7 attempts by gRPC status code, retried or not.",
		}, []string{"code"}),
		sendLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "sightline_wire_shipper_send_duration_seconds",
			Help:    "Duration of PushL7 attempts.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 15),
		}),
	}
	if opts.Registerer != nil {
		if err := s.register(opts.Registerer); err != nil {
			conn.Close()
			return nil, fmt.Errorf("register shipper metrics: %w", err)
		}
	}
	return s, nil
}

func (s *Shipper) register(reg prometheus.Registerer) error {
	counter := func(name, help string, v *atomic.Uint64, labels prometheus.Labels) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "sightline_wire_shipper_" + name, Help: help, ConstLabels: labels,
		}, func() float64 { return float64(v.Load()) })
	}
	cs := []prometheus.Collector{
		counter("rows_enqueued_total", "Rows accepted into the queue.", &s.rowsEnqueued, nil),
		counter("rows_sent_total", "Rows acknowledged by the server.", &s.rowsSent, nil),
		counter("batches_sent_total", "Batches acknowledged by the server.", &s.batchesSent, nil),
		counter("batches_failed_total", "Batches given up on; their rows are counted as dropped.", &s.batchesFailed, nil),
		counter("l4_rows_sent_total", "l4_flow_log rows acknowledged by the server.", &s.l4Sent, nil),
		counter("l4_rows_dropped_total", "l4_flow_log rows dropped (queue full, closed, or send failed).", &s.l4Dropped, nil),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "sightline_wire_shipper_queue_rows", Help: "Rows held, including the batch in flight.",
		}, func() float64 { return float64(s.queuedRows()) }),
		s.sendErrorsBy,
		s.sendLatency,
	}
	for i, reason := range dropReasons {
		cs = append(cs, counter("rows_dropped_total", "Rows dropped, by reason.", &s.rowsDropped[i],
			prometheus.Labels{"reason": reason}))
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// Enqueue queues rows for sending. It never blocks on the network: rows that
// do not fit in the queue (or arrive after Close) are dropped and counted.
// The shipper keeps the rows; the caller must not modify them (or their
// Attributes maps) afterwards.
func (s *Shipper) Enqueue(rows ...flowlog.L7FlowLog) {
	if len(rows) == 0 {
		return
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		s.rowsDropped[dropClosed].Add(uint64(len(rows)))
		return
	}
	accepted := min(len(rows), s.opts.QueueSize-s.queued)
	for _, r := range rows[:accepted] {
		n := len(s.chunks)
		if n == 0 || len(s.chunks[n-1]) == s.opts.BatchSize {
			s.chunks = append(s.chunks, s.newChunk())
			n++
		}
		s.chunks[n-1] = append(s.chunks[n-1], r)
	}
	s.queued += accepted
	fullBatch := len(s.chunks) > 1 || (len(s.chunks) == 1 && len(s.chunks[0]) == s.opts.BatchSize)
	s.mu.Unlock()

	s.rowsEnqueued.Add(uint64(accepted))
	if dropped := len(rows) - accepted; dropped > 0 {
		s.rowsDropped[dropQueueFull].Add(uint64(dropped))
	}
	if fullBatch {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}

// newChunk returns an empty chunk; s.mu is held.
func (s *Shipper) newChunk() []flowlog.L7FlowLog {
	if n := len(s.spare); n > 0 {
		c := s.spare[n-1]
		s.spare = s.spare[:n-1]
		return c
	}
	return make([]flowlog.L7FlowLog, 0, s.opts.BatchSize)
}

// takeChunk removes the oldest chunk, if it is full or partial is set.
func (s *Shipper) takeChunk(partial bool) []flowlog.L7FlowLog {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.chunks) == 0 || (!partial && len(s.chunks[0]) < s.opts.BatchSize) {
		return nil
	}
	c := s.chunks[0]
	s.chunks[0] = nil
	s.chunks = s.chunks[1:]
	return c
}

// finishChunk accounts for a chunk whose first done rows were resolved (sent
// or dropped). Unresolved rows go back to the head of the queue.
func (s *Shipper) finishChunk(c []flowlog.L7FlowLog, done int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.queued -= done
	if done < len(c) {
		s.chunks = append([][]flowlog.L7FlowLog{c[done:]}, s.chunks...)
		return
	}
	// Two spares cover the chunk being filled while one is in flight.
	if len(s.spare) < 2 && cap(c) == s.opts.BatchSize {
		clear(c)
		s.spare = append(s.spare, c[:0])
	}
}

func (s *Shipper) queuedRows() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.queued
}

// Run sends batches until ctx is done: a full batch as soon as it is queued,
// a partial one every FlushInterval. It returns nil when ctx ends (rows still
// queued stay for Flush) and an error if another Run is active.
func (s *Shipper) Run(ctx context.Context) error {
	if !s.running.CompareAndSwap(false, true) {
		return errors.New("shipper: Run already active")
	}
	defer s.running.Store(false)
	tick := time.NewTicker(s.opts.FlushInterval)
	defer tick.Stop()
	var lastFullDrops uint64
	for {
		partial := false
		select {
		case <-ctx.Done():
			return nil
		case <-s.wake:
		case <-tick.C:
			partial = true
			s.shipL4(ctx)
			if d := s.rowsDropped[dropQueueFull].Load(); d != lastFullDrops {
				s.log.Warn("queue full, dropping rows", "dropped", d-lastFullDrops, "queue_size", s.opts.QueueSize)
				lastFullDrops = d
			}
		}
		s.drain(ctx, partial)
	}
}

// Flush sends every row queued at the time of the call (and nothing newer),
// waiting for the sender if one is in flight. It returns an error if ctx ends
// first; the rows left stay queued.
func (s *Shipper) Flush(ctx context.Context) error {
	s.drain(ctx, true)
	s.shipL4(ctx)
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("flush: %d rows still queued: %w", s.queuedRows(), err)
	}
	return nil
}

// drain sends full chunks, or with partial set every chunk queued at the
// start, until there are none or ctx ends.
func (s *Shipper) drain(ctx context.Context, partial bool) {
	limit := -1 // unlimited for full chunks: each one is a complete batch
	if partial {
		s.mu.Lock()
		limit = len(s.chunks)
		s.mu.Unlock()
	}
	for n := 0; limit < 0 || n < limit; n++ {
		select {
		case s.sendSlot <- struct{}{}:
		case <-ctx.Done():
			return
		}
		c := s.takeChunk(partial)
		if c == nil {
			<-s.sendSlot
			return
		}
		done := s.deliver(ctx, c)
		s.finishChunk(c, done)
		<-s.sendSlot
	}
}

// deliver sends rows, splitting batches over MaxBatchBytes, and returns how
// many leading rows were resolved (sent or dropped); fewer than len(rows)
// only when ctx ended.
func (s *Shipper) deliver(ctx context.Context, rows []flowlog.L7FlowLog) int {
	s.encoded = s.encoder.encode(s.encoded, s.opts.AgentID, rows)
	if size := len(s.encoded); size > s.opts.MaxBatchBytes {
		if len(rows) == 1 {
			s.dropBatch(dropTooLarge, 1, fmt.Errorf("row of %d bytes exceeds the %d byte batch limit", size, s.opts.MaxBatchBytes))
			return 1
		}
		half := len(rows) / 2
		if done := s.deliver(ctx, rows[:half]); done < half {
			return done
		}
		return half + s.deliver(ctx, rows[half:])
	}
	if !s.push(ctx, &encodedBatch{data: s.encoded, rows: len(rows)}) {
		return 0
	}
	return len(rows)
}

// push makes the call, retrying transient failures with backoff. It returns
// false if ctx ended before the batch was resolved.
func (s *Shipper) push(ctx context.Context, batch *encodedBatch) bool {
	n := batch.rows
	start := time.Now()
	wait := s.opts.RetryMinBackoff
	for attempt := 1; ; attempt++ {
		callCtx, cancel := context.WithTimeout(ctx, s.opts.SendTimeout)
		t0 := time.Now()
		err := s.conn.Invoke(callCtx, sightlinepb.Ingest_PushL7_FullMethodName, batch, &sightlinepb.PushReply{},
			grpc.ForceCodecV2(s.codec))
		cancel()
		s.sendLatency.Observe(time.Since(t0).Seconds())
		if err == nil {
			s.rowsSent.Add(uint64(n))
			s.batchesSent.Add(1)
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		code := status.Code(err)
		s.sendErrors.Add(1)
		s.sendErrorsBy.WithLabelValues(code.String()).Inc()
		switch {
		case code == codes.InvalidArgument:
			s.dropBatch(dropInvalid, n, err)
			return true
		case !retryable(code):
			s.dropBatch(dropRejected, n, err)
			return true
		case time.Since(start)+wait > s.opts.MaxRetryElapsed:
			s.dropBatch(dropRetryExhausted, n, err)
			return true
		}
		logAt := slog.LevelDebug
		if attempt == 1 {
			logAt = slog.LevelWarn
		}
		s.log.Log(ctx, logAt, "send failed, retrying", "rows", n, "attempt", attempt, "backoff", wait, "err", err)
		// Full jitter spreads agents that lost the same server.
		t := time.NewTimer(wait/2 + rand.N(wait/2+1))
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-t.C:
		}
		wait = min(wait*2, s.opts.RetryMaxBackoff)
	}
}

// retryable reports whether a call that failed with code may succeed later.
// DeadlineExceeded is retried although the server may have stored the batch:
// delivery is at-least-once.
func retryable(code codes.Code) bool {
	switch code {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Aborted:
		return true
	}
	return false
}

func (s *Shipper) dropBatch(reason int, rows int, err error) {
	s.rowsDropped[reason].Add(uint64(rows))
	s.batchesFailed.Add(1)
	s.log.Warn("dropping batch", "reason", dropReasons[reason], "rows", rows, "err", err)
}

// Stats returns a snapshot of the counters.
func (s *Shipper) Stats() ShipperStats {
	st := ShipperStats{
		RowsEnqueued:  s.rowsEnqueued.Load(),
		RowsSent:      s.rowsSent.Load(),
		RowsDropped:   make(map[string]uint64, numDropReasons),
		BatchesSent:   s.batchesSent.Load(),
		BatchesFailed: s.batchesFailed.Load(),
		SendErrors:    s.sendErrors.Load(),
		Queued:        s.queuedRows(),
	}
	for i, reason := range dropReasons {
		st.RowsDropped[reason] = s.rowsDropped[i].Load()
	}
	return st
}

// Close drops what is still queued (call Flush first to send it), refuses
// further rows and closes the connection. Stop Run before calling Close.
func (s *Shipper) Close() error {
	s.mu.Lock()
	s.closed = true
	var left int
	for _, c := range s.chunks {
		left += len(c)
	}
	s.chunks = nil
	s.queued -= left
	s.mu.Unlock()
	if left > 0 {
		s.rowsDropped[dropClosed].Add(uint64(left))
		s.log.Warn("closing with rows unsent", "dropped", left)
	}
	if err := s.conn.Close(); err != nil {
		return fmt.Errorf("close grpc connection: %w", err)
	}
	return nil
}
