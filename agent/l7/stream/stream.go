// Package stream cuts one direction of a connection into frames for the
// parsers of length-delimited protocols (MySQL, PostgreSQL, Kafka, Dubbo,
// MQTT, DNS over TCP, HTTP/2 ...). It owns the three things every such parser
// would otherwise get wrong on its own: frames split over several segments,
// frames only partly captured (the eBPF tracer copies a prefix of each
// syscall; Segment.Gap bytes were not seen), and garbage, after which it
// drops what it holds and starts again at the next segment.
package stream

import (
	"errors"

	"github.com/sightline-io/sightline/agent/capture"
)

// DefaultMaxBuffer bounds the bytes held for one incomplete frame.
const DefaultMaxBuffer = 64 << 10

// ErrNotFrame is what a FrameLen returns when the bytes cannot start a frame.
var ErrNotFrame = errors.New("stream: not a frame")

// FrameLen reports the total length (header included) of the frame at the
// start of b. It returns 0 and a nil error when b is too short to tell, and
// an error when b cannot start a frame. It must look only at b.
type FrameLen func(b []byte) (int, error)

// Frame is one frame handed to the parser.
type Frame struct {
	// Data is the frame's captured bytes: its start, or all of it when
	// Missing is 0. It is valid only during the callback.
	Data []byte
	// Missing is how many bytes of the frame were not captured (0: whole).
	Missing int
	// Start is the segment that carried the frame's first byte (times,
	// thread and syscall identity; Data is nil). Valid during the callback.
	Start *capture.Segment
	// End is the segment that carried its last captured byte.
	End *capture.Segment
	// TCPSeq is the TCP sequence number of the frame's first byte.
	TCPSeq uint32
}

// Stats counts what a Buffer did; parsers may export them.
type Stats struct {
	Frames    uint64 // frames delivered
	Truncated uint64 // frames delivered with Missing > 0
	Resyncs   uint64 // times the buffer dropped what it held (garbage or lost framing)
}

// Buffer frames one direction of one connection. The zero value is usable
// with DefaultMaxBuffer.
type Buffer struct {
	// Max bounds the buffered bytes (0: DefaultMaxBuffer). A frame longer
	// than Max is delivered with its first Max bytes and the rest skipped.
	Max int

	buf []byte
	// first is the identity (Data nil) of the segment where buf[0] was
	// carried, firstSeq the TCP sequence of buf[0].
	first    capture.Segment
	firstSeq uint32
	// fromCur is how many of buf's trailing bytes came from the segment
	// being fed (to tell where a frame found in buf began).
	fromCur int
	// skip is how many bytes of a delivered, truncated frame are still to
	// come and must be discarded.
	skip int
	// cur and f live here so Feed does not allocate: the callback gets
	// pointers to them.
	cur capture.Segment
	f   Frame

	Stats Stats
}

// Reset forgets everything held (e.g. after the parser lost its own state).
func (b *Buffer) Reset() {
	b.buf = b.buf[:0]
	b.skip = 0
}

// Buffered reports how many bytes are held for an incomplete frame.
func (b *Buffer) Buffered() int { return len(b.buf) }

func (b *Buffer) max() int {
	if b.Max > 0 {
		return b.Max
	}
	return DefaultMaxBuffer
}

// Feed adds seg's bytes and calls fn for each frame they complete, in
// order. fn returning false means the parser lost its footing: what is
// buffered is dropped and framing starts again with the next segment.
func (b *Buffer) Feed(seg *capture.Segment, frameLen FrameLen, fn func(*Frame) bool) {
	data := seg.Data
	gap := max(seg.Gap(), 0)
	off := 0 // offset of data[0] in seg.Data

	// Pay what a truncated frame still owes: captured bytes first, then the
	// uncaptured tail.
	if b.skip > 0 {
		n := min(b.skip, len(data))
		data, off, b.skip = data[n:], n, b.skip-n
		n = min(b.skip, gap)
		b.skip, gap = b.skip-n, gap-n
		if b.skip > 0 {
			return
		}
	}

	b.cur = *seg
	b.cur.Data = nil
	cur := &b.cur
	b.fromCur = 0
	f := &b.f
	*f = Frame{End: cur}
	for {
		var head []byte
		inBuf := len(b.buf) > 0
		if inBuf {
			take := min(len(data), b.max()-len(b.buf))
			b.buf = append(b.buf, data[:take]...)
			data, off = data[take:], off+take
			b.fromCur += take
			head = b.buf
		} else {
			head = data
		}
		if len(head) == 0 {
			if gap > 0 {
				b.resync() // uncaptured bytes where a frame starts
			}
			return
		}
		n, err := frameLen(head)
		if err != nil || n < 0 {
			b.resync()
			return
		}
		// Where the frame at head[0] began.
		if inBuf {
			f.Start, f.TCPSeq = &b.first, b.firstSeq
		} else {
			f.Start, f.TCPSeq = cur, seg.SeqAt(off)
		}
		switch {
		case n == 0 || (n > len(head) && gap == 0 && len(head) < b.max()):
			// Need more bytes.
			if n == 0 && (gap > 0 || len(head) >= b.max()) {
				b.resync() // the header itself was not captured or is absurd
				return
			}
			if len(b.buf) == 0 {
				b.keep(head, seg, f.TCPSeq)
				return
			}
			if len(data) > 0 {
				continue
			}
			return
		case n <= len(head):
			f.Data, f.Missing = head[:n], 0
			b.Stats.Frames++
			ok := fn(f)
			if len(b.buf) > 0 {
				b.consume(n, seg)
			} else {
				data, off = data[n:], off+n
			}
			if !ok {
				b.resync()
				return
			}
		default:
			// The frame runs past what was captured (a gap follows) or past
			// the buffer limit: deliver what there is, skip the rest.
			f.Data, f.Missing = head, n-len(head)
			b.Stats.Frames++
			b.Stats.Truncated++
			ok := fn(f)
			missing := n - len(head)
			if len(b.buf) == 0 {
				data, off = data[len(head):], off+len(head) // head was data
			}
			b.buf = b.buf[:0]
			// Captured bytes not yet buffered belong to the frame too.
			paid := min(missing, len(data))
			data, off, missing = data[paid:], off+paid, missing-paid
			paid = min(missing, gap)
			gap, missing = gap-paid, missing-paid
			b.skip = missing
			if !ok {
				b.resync()
				return
			}
			if b.skip > 0 || len(data) == 0 {
				if b.skip == 0 && gap > 0 {
					b.resync() // uncaptured bytes after the frame
				}
				return
			}
		}
	}
}

// keep buffers head, a frame's start carried by seg at sequence seq.
func (b *Buffer) keep(head []byte, seg *capture.Segment, seq uint32) {
	b.buf = append(b.buf[:0], head...)
	b.first = *seg
	b.first.Data = nil
	b.firstSeq = seq
	b.fromCur = len(head)
}

// consume drops the first n buffered bytes (a delivered frame).
func (b *Buffer) consume(n int, seg *capture.Segment) {
	rest := len(b.buf) - n
	copy(b.buf, b.buf[n:])
	b.buf = b.buf[:rest]
	b.firstSeq += uint32(n)
	if rest <= b.fromCur {
		// What is left came from seg.
		b.fromCur = rest
		b.first = *seg
		b.first.Data = nil
	}
}

func (b *Buffer) resync() {
	b.Stats.Resyncs++
	b.Reset()
}
