package wire

import (
	"errors"
	"io"
	"sync"

	"github.com/klauspost/compress/zstd"
	"google.golang.org/grpc/encoding"
)

// ZstdName is the gRPC compressor agents use. gzip at its default level
// took a third of the agent's CPU under load; zstd's fastest level takes a
// fraction of that and compresses these batches about as well. Receivers
// accept gzip too.
const ZstdName = "zstd"

// maxDecodedBatch bounds what one compressed message may expand to, so a
// small hostile message cannot make the server allocate without limit.
const maxDecodedBatch = MaxRecvMsgSize

func init() {
	encoding.RegisterCompressor(newZstdCompressor())
}

// zstdCompressor implements encoding.Compressor with pooled encoders and
// decoders (each holds sizeable buffers).
type zstdCompressor struct {
	encoders, decoders sync.Pool
}

func newZstdCompressor() *zstdCompressor {
	c := &zstdCompressor{}
	c.encoders.New = func() any {
		// Errors come only from invalid options.
		enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1),
			zstd.WithLowerEncoderMem(true))
		if err != nil {
			panic(err)
		}
		return enc
	}
	c.decoders.New = func() any {
		dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(maxDecodedBatch),
			zstd.WithDecoderMaxWindow(maxDecodedBatch))
		if err != nil {
			panic(err)
		}
		return dec
	}
	return c
}

func (c *zstdCompressor) Name() string { return ZstdName }

func (c *zstdCompressor) Compress(w io.Writer) (io.WriteCloser, error) {
	enc := c.encoders.Get().(*zstd.Encoder)
	enc.Reset(w)
	return &zstdWriter{Encoder: enc, pool: &c.encoders}, nil
}

func (c *zstdCompressor) Decompress(r io.Reader) (io.Reader, error) {
	dec := c.decoders.Get().(*zstd.Decoder)
	if err := dec.Reset(r); err != nil {
		c.decoders.Put(dec)
		return nil, err
	}
	return &zstdReader{dec: dec, pool: &c.decoders}, nil
}

type zstdWriter struct {
	*zstd.Encoder
	pool *sync.Pool
}

func (w *zstdWriter) Close() error {
	err := w.Encoder.Close()
	w.pool.Put(w.Encoder)
	w.Encoder = nil
	return err
}

// zstdReader returns its decoder to the pool at the end of the stream.
type zstdReader struct {
	dec  *zstd.Decoder
	pool *sync.Pool
}

func (r *zstdReader) Read(p []byte) (int, error) {
	if r.dec == nil {
		return 0, io.EOF
	}
	n, err := r.dec.Read(p)
	if errors.Is(err, io.EOF) {
		r.dec.Reset(nil) //nolint:errcheck // releases the source; nil cannot fail
		r.pool.Put(r.dec)
		r.dec = nil
	}
	return n, err
}
