package wire

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/sightline-io/sightline/flowlog"
	"github.com/sightline-io/sightline/wire/sightlinepb"
)

// realisticRow is an HTTP session row of typical size (no reflection fill, so
// string lengths resemble production data).
func realisticRow(i int) flowlog.L7FlowLog {
	code := int32(200)
	t0 := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Millisecond)
	return flowlog.L7FlowLog{
		ID: uint64(i), Time: t0, StartTime: t0, EndTime: t0.Add(1500 * time.Microsecond), ResponseDuration: 1500,
		AgentID: "agent-node-01", Host: "node-01", OrgID: 1, TeamID: 1,
		SignalSource: flowlog.SourceEBPF, ObservationPoint: flowlog.ObsServerProcess,
		L7Protocol: flowlog.L7HTTP1, L7ProtocolStr: "HTTP", Version: "1.1", Type: flowlog.TypeSession,
		RequestType: "GET", RequestDomain: "api.example.internal", RequestResource: fmt.Sprintf("/api/v1/users/%d/orders?limit=20", i%1000),
		Endpoint: "/api/v1/users/{id}/orders", ResponseCode: &code, ResponseResult: "",
		RequestLength: 212, ResponseLength: 4096, CapturedRequestByte: 212, CapturedResponseByte: 1024,
		TraceID: "4bf92f3577b34da6a3ce929d0e0e4736", SpanID: "00f067aa0ba902b7",
		SyscallTraceIDRequest: uint64(i) * 7, SyscallTraceIDResponse: uint64(i)*7 + 1,
		SyscallThread0: 4242, SyscallThread1: 4242, SyscallCapSeq0: uint32(i), SyscallCapSeq1: uint32(i) + 1,
		ReqTCPSeq: uint32(i) * 1000, RespTCPSeq: uint32(i) * 2000,
		IP0: netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), IP1: netip.MustParseAddr("10.0.9.9"),
		ClientPort: uint16(30000 + i%30000), ServerPort: 8080, Protocol: 6,
		ProcessID1: 777, ProcessKName1: "api-server", ContainerID1: "3f1c0a9b2d4e",
		Attributes: map[string]string{"user_agent": "curl/8.5.0"},
	}
}

func BenchmarkEnqueue(b *testing.B) {
	sh, err := NewShipper("127.0.0.1:1", ShipperOptions{AgentID: "a", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	defer sh.Close()
	row := realisticRow(1)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		sh.Enqueue(row)
		// Stand in for the sender so the queue never fills.
		if c := sh.takeChunk(false); c != nil {
			sh.finishChunk(c, len(c))
		}
	}
	if d := sh.Stats().RowsDropped[DropQueueFull]; d != 0 {
		b.Fatalf("%d rows dropped", d)
	}
}

func BenchmarkEnqueueQueueFull(b *testing.B) {
	sh, err := NewShipper("127.0.0.1:1", ShipperOptions{AgentID: "a", QueueSize: 10, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	defer sh.Close()
	row := realisticRow(1)
	sh.Enqueue(make([]flowlog.L7FlowLog, 10)...)
	b.ReportAllocs()
	for b.Loop() {
		sh.Enqueue(row)
	}
}

// BenchmarkEncodeBatch converts and marshals a 2000-row batch, reporting the
// wire size per row before and after gzip.
func BenchmarkEncodeBatch(b *testing.B) {
	rows := make([]flowlog.L7FlowLog, 2000)
	for i := range rows {
		rows[i] = realisticRow(i)
	}
	var raw []byte
	b.ReportAllocs()
	for b.Loop() {
		batch := &sightlinepb.L7Batch{AgentId: "a", Rows: make([]*sightlinepb.L7FlowLog, len(rows))}
		for i := range rows {
			batch.Rows[i] = ToProto(&rows[i])
		}
		var err error
		if raw, err = proto.Marshal(batch); err != nil {
			b.Fatal(err)
		}
	}
	var zbuf bytes.Buffer
	zw := gzip.NewWriter(&zbuf)
	zw.Write(raw)
	zw.Close()
	b.ReportMetric(float64(len(raw))/float64(len(rows)), "B/row")
	b.ReportMetric(float64(zbuf.Len())/float64(len(rows)), "gzB/row")
}

func BenchmarkDecodeBatch(b *testing.B) {
	batch := &sightlinepb.L7Batch{AgentId: "a", Rows: make([]*sightlinepb.L7FlowLog, 2000)}
	for i := range batch.Rows {
		r := realisticRow(i)
		batch.Rows[i] = ToProto(&r)
	}
	raw, err := proto.Marshal(batch)
	if err != nil {
		b.Fatal(err)
	}
	recv, err := NewReceiver(func(context.Context, []flowlog.L7FlowLog) error { return nil }, ReceiverOptions{})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		var in sightlinepb.L7Batch
		if err := proto.Unmarshal(raw, &in); err != nil {
			b.Fatal(err)
		}
		if _, err := recv.decode(&in); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*len(batch.Rows))/b.Elapsed().Seconds(), "rows/s")
}

// BenchmarkShipLoopback ships rows through a real gRPC server on loopback
// (gzip, 2000-row batches) to a sink that discards them.
func BenchmarkShipLoopback(b *testing.B) {
	var got int
	recv, err := NewReceiver(func(_ context.Context, rows []flowlog.L7FlowLog) error {
		got += len(rows) // one sender, one call at a time
		return nil
	}, ReceiverOptions{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	srv := NewGRPCServer(recv)
	lis, err := listenLoopback()
	if err != nil {
		b.Fatal(err)
	}
	go srv.Serve(lis)
	defer srv.Stop()
	sh, err := NewShipper(lis.Addr().String(), ShipperOptions{AgentID: "a", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	defer sh.Close()
	rows := make([]flowlog.L7FlowLog, 2000)
	for i := range rows {
		rows[i] = realisticRow(i)
	}
	ctx := context.Background()
	for b.Loop() {
		sh.Enqueue(rows...)
		if err := sh.Flush(ctx); err != nil {
			b.Fatal(err)
		}
	}
	if st := sh.Stats(); st.RowsSent != uint64(got) || st.BatchesFailed != 0 {
		b.Fatalf("stats %+v, sink got %d", st, got)
	}
	b.ReportMetric(float64(b.N*len(rows))/b.Elapsed().Seconds(), "rows/s")
}

func listenLoopback() (net.Listener, error) { return net.Listen("tcp", "127.0.0.1:0") }
