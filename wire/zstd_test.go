package wire

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	grpcgzip "google.golang.org/grpc/encoding/gzip"
	"google.golang.org/protobuf/proto"

	"github.com/sightline-io/sightline/flowlog"
	"github.com/sightline-io/sightline/wire/sightlinepb"
)

// TestReceiverAcceptsEveryCompressor: agents before zstd sent gzip, and a
// client may send uncompressed; the receiver takes all three.
func TestReceiverAcceptsEveryCompressor(t *testing.T) {
	sink := newCollectSink()
	srv := startServer(t, "127.0.0.1:0", sink.insert, ReceiverOptions{})
	for i, compressor := range []string{grpcgzip.Name, ZstdName, ""} {
		opts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
		if compressor != "" {
			opts = append(opts, grpc.WithDefaultCallOptions(grpc.UseCompressor(compressor)))
		}
		conn, err := grpc.NewClient(srv.addr, opts...)
		if err != nil {
			t.Fatal(err)
		}
		row := realisticRow(i)
		row.ID = uint64(i + 1)
		batch := &sightlinepb.L7Batch{AgentId: "a", Rows: []*sightlinepb.L7FlowLog{ToProto(&row)}}
		if _, err := sightlinepb.NewIngestClient(conn).PushL7(context.Background(), batch); err != nil {
			t.Errorf("%q: %v", compressor, err)
		}
		conn.Close()
	}
	sink.waitRows(t, 3)
}

func TestZstdRoundTrip(t *testing.T) {
	c := newZstdCompressor()
	for _, size := range []int{0, 1, 1000, 3 << 20} {
		in := []byte(strings.Repeat(fmt.Sprintf("row %d, ", size), size/8+1))[:size]
		var buf bytes.Buffer
		// Twice, so pooled encoders and decoders are reused.
		for range 2 {
			buf.Reset()
			w, err := c.Compress(&buf)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := w.Write(in); err != nil {
				t.Fatal(err)
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			r, err := c.Decompress(bytes.NewReader(buf.Bytes()))
			if err != nil {
				t.Fatal(err)
			}
			out, err := io.ReadAll(r)
			if err != nil || !bytes.Equal(out, in) {
				t.Fatalf("size %d: %d bytes back, err %v", size, len(out), err)
			}
		}
	}
	r, err := c.Decompress(strings.NewReader("not zstd at all"))
	if err == nil {
		_, err = io.ReadAll(r)
	}
	if err == nil {
		t.Error("garbage decompressed without error")
	}
}

// BenchmarkCompressBatch compares the two compressors on one marshalled
// 2000-row batch: time per batch and compressed bytes per row, side by side.
func BenchmarkCompressBatch(b *testing.B) {
	rows := make([]flowlog.L7FlowLog, 2000)
	batch := &sightlinepb.L7Batch{AgentId: "a", Rows: make([]*sightlinepb.L7FlowLog, len(rows))}
	for i := range rows {
		rows[i] = realisticRow(i)
		batch.Rows[i] = ToProto(&rows[i])
	}
	raw, err := proto.Marshal(batch)
	if err != nil {
		b.Fatal(err)
	}
	zc := newZstdCompressor()
	for _, tc := range []struct {
		name string
		open func(io.Writer) (io.WriteCloser, error)
	}{
		{"gzip", func(w io.Writer) (io.WriteCloser, error) { return gzip.NewWriter(w), nil }},
		{"zstd", zc.Compress},
	} {
		b.Run(tc.name, func(b *testing.B) {
			var buf bytes.Buffer
			b.SetBytes(int64(len(raw)))
			for b.Loop() {
				buf.Reset()
				w, err := tc.open(&buf)
				if err != nil {
					b.Fatal(err)
				}
				w.Write(raw)
				w.Close()
			}
			b.ReportMetric(float64(buf.Len())/float64(len(rows)), "B/row")
		})
	}
}
