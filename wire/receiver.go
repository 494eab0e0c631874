package wire

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	_ "google.golang.org/grpc/encoding/gzip" // registers the gzip codec for decompression
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/sightline-io/sightline/flowlog"
	"github.com/sightline-io/sightline/wire/sightlinepb"
)

// MaxRecvMsgSize is the largest (decompressed) batch a server built by
// NewGRPCServer accepts.
const MaxRecvMsgSize = 64 << 20

// Sink stores a validated batch; the server passes store.Store.InsertL7.
type Sink func(ctx context.Context, rows []flowlog.L7FlowLog) error

// ReceiverOptions configures a Receiver. Zero values take the defaults noted.
type ReceiverOptions struct {
	// MaxBatchRows rejects batches with more rows (default 50000).
	MaxBatchRows int
	// MaxConcurrentInserts bounds sink calls in progress (default 4); calls
	// beyond it wait, within their deadline.
	MaxConcurrentInserts int
	// Registerer receives the receiver's metrics; nil registers none.
	Registerer prometheus.Registerer
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// ReceiverStats is a snapshot of a Receiver's counters.
type ReceiverStats struct {
	BatchesReceived uint64
	RowsReceived    uint64
	BatchesRejected uint64 // invalid batches answered with InvalidArgument
	RowsInserted    uint64
	InsertErrors    uint64
	L4RowsReceived  uint64
	L4RowsInserted  uint64
}

// Receiver implements the Ingest gRPC service: it validates each batch,
// converts it and hands it to the sink.
type Receiver struct {
	sightlinepb.UnimplementedIngestServer

	sink   Sink
	l4sink L4Sink
	opts   ReceiverOptions
	log    *slog.Logger
	// inserts is a semaphore bounding concurrent sink calls.
	inserts chan struct{}

	batchesReceived atomic.Uint64
	rowsReceived    atomic.Uint64
	batchesRejected atomic.Uint64
	rowsInserted    atomic.Uint64
	insertErrors    atomic.Uint64
	l4RowsReceived  atomic.Uint64
	l4RowsInserted  atomic.Uint64
	insertLatency   prometheus.Histogram
}

// NewReceiver returns a receiver that stores batches with sink.
func NewReceiver(sink Sink, opts ReceiverOptions) (*Receiver, error) {
	if sink == nil {
		return nil, errors.New("receiver: nil sink")
	}
	if opts.MaxBatchRows <= 0 {
		opts.MaxBatchRows = 50000
	}
	if opts.MaxConcurrentInserts <= 0 {
		opts.MaxConcurrentInserts = 4
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	r := &Receiver{
		sink:    sink,
		opts:    opts,
		log:     opts.Logger.With("component", "wire.receiver"),
		inserts: make(chan struct{}, opts.MaxConcurrentInserts),
		insertLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "sightline_wire_receiver_insert_duration_seconds",
			Help:    "Duration of sink calls for received batches.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 15),
		}),
	}
	if opts.Registerer != nil {
		if err := r.register(opts.Registerer); err != nil {
			return nil, fmt.Errorf("register receiver metrics: %w", err)
		}
	}
	return r, nil
}

func (r *Receiver) register(reg prometheus.Registerer) error {
	counter := func(name, help string, v *atomic.Uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "sightline_wire_receiver_" + name, Help: help,
		}, func() float64 { return float64(v.Load()) })
	}
	for _, c := range []prometheus.Collector{
		counter("batches_received_total", "Batches received, valid or not.", &r.batchesReceived),
		counter("rows_received_total", "Rows in received batches, valid or not.", &r.rowsReceived),
		counter("batches_rejected_total", "Batches rejected as invalid.", &r.batchesRejected),
		counter("rows_inserted_total", "Rows the sink accepted.", &r.rowsInserted),
		counter("insert_errors_total", "Sink calls that failed.", &r.insertErrors),
		r.insertLatency,
	} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// Register adds the Ingest service to s.
func (r *Receiver) Register(s grpc.ServiceRegistrar) {
	sightlinepb.RegisterIngestServer(s, r)
}

// NewGRPCServer returns a gRPC server serving recv, accepting batches up to
// MaxRecvMsgSize. opts are applied after the defaults.
func NewGRPCServer(recv *Receiver, opts ...grpc.ServerOption) *grpc.Server {
	s := grpc.NewServer(append([]grpc.ServerOption{
		grpc.MaxRecvMsgSize(MaxRecvMsgSize),
		grpc.MaxConcurrentStreams(64),
	}, opts...)...)
	recv.Register(s)
	return s
}

// PushL7 implements sightlinepb.IngestServer. An invalid batch is rejected
// whole with InvalidArgument (the agent drops it rather than retrying); a
// sink failure is Internal, or the context's code if the call was cancelled.
func (r *Receiver) PushL7(ctx context.Context, batch *sightlinepb.L7Batch) (*sightlinepb.PushReply, error) {
	r.batchesReceived.Add(1)
	r.rowsReceived.Add(uint64(len(batch.GetRows())))
	rows, err := r.decode(batch)
	if err != nil {
		r.batchesRejected.Add(1)
		attrs := []any{"agent_id", batch.GetAgentId(), "err", err}
		if p, ok := peer.FromContext(ctx); ok {
			attrs = append(attrs, "peer", p.Addr.String())
		}
		r.log.Warn("rejecting invalid batch", attrs...)
		return nil, status.Errorf(codes.InvalidArgument, "invalid batch: %v", err)
	}
	if len(rows) == 0 {
		return &sightlinepb.PushReply{}, nil
	}

	select {
	case r.inserts <- struct{}{}:
	case <-ctx.Done():
		return nil, status.FromContextError(ctx.Err()).Err()
	}
	start := time.Now()
	err = r.sink(ctx, rows)
	<-r.inserts
	r.insertLatency.Observe(time.Since(start).Seconds())
	if err != nil {
		r.insertErrors.Add(1)
		r.log.Error("insert failed", "agent_id", batch.GetAgentId(), "rows", len(rows), "err", err)
		if ctx.Err() != nil {
			return nil, status.FromContextError(ctx.Err()).Err()
		}
		return nil, status.Errorf(codes.Internal, "insert %d rows: %v", len(rows), err)
	}
	r.rowsInserted.Add(uint64(len(rows)))
	return &sightlinepb.PushReply{Accepted: uint64(len(rows))}, nil
}

func (r *Receiver) decode(batch *sightlinepb.L7Batch) ([]flowlog.L7FlowLog, error) {
	agent := batch.GetAgentId()
	if agent == "" {
		return nil, errors.New("agent_id is empty")
	}
	pbRows := batch.GetRows()
	if len(pbRows) > r.opts.MaxBatchRows {
		return nil, fmt.Errorf("%d rows exceed the limit of %d per batch", len(pbRows), r.opts.MaxBatchRows)
	}
	rows := make([]flowlog.L7FlowLog, len(pbRows))
	for i, p := range pbRows {
		row, err := FromProto(p)
		if err != nil {
			return nil, fmt.Errorf("row %d: %w", i, err)
		}
		if row.AgentID == "" {
			row.AgentID = agent
		}
		rows[i] = row
	}
	return rows, nil
}

// Stats returns a snapshot of the counters.
func (r *Receiver) Stats() ReceiverStats {
	return ReceiverStats{
		BatchesReceived: r.batchesReceived.Load(),
		RowsReceived:    r.rowsReceived.Load(),
		BatchesRejected: r.batchesRejected.Load(),
		RowsInserted:    r.rowsInserted.Load(),
		InsertErrors:    r.insertErrors.Load(),
		L4RowsReceived:  r.l4RowsReceived.Load(),
		L4RowsInserted:  r.l4RowsInserted.Load(),
	}
}
