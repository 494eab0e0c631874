package stream

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"testing"
	"time"

	"github.com/sightline-io/sightline/agent/capture"
)

// lenPrefixed frames are a 2-byte big-endian length (of the body) + body.
func lenPrefixed(b []byte) (int, error) {
	if len(b) < 2 {
		return 0, nil
	}
	n := int(binary.BigEndian.Uint16(b))
	if n == 0xffff {
		return 0, ErrNotFrame
	}
	return 2 + n, nil
}

func frame(body string) []byte {
	return append(binary.BigEndian.AppendUint16(nil, uint16(len(body))), body...)
}

type got struct {
	body    string
	missing int
	seq     uint32
	start   time.Time
}

// feed runs segments (data, uncaptured bytes) through a Buffer.
func feed(t *testing.T, max int, segs ...capture.Segment) ([]got, Stats) {
	t.Helper()
	b := Buffer{Max: max}
	var out []got
	for i := range segs {
		b.Feed(&segs[i], lenPrefixed, func(f *Frame) bool {
			body := ""
			if len(f.Data) > 2 {
				body = string(f.Data[2:])
			}
			out = append(out, got{body, f.Missing, f.TCPSeq, f.Start.Start})
			return true
		})
	}
	return out, b.Stats
}

func seg(seq uint32, at int, data []byte, gap int) capture.Segment {
	return capture.Segment{Data: data, Len: len(data) + gap, TCPSeq: seq, Start: time.Unix(int64(at), 0)}
}

func cat(bs ...[]byte) []byte { return bytes.Join(bs, nil) }

func TestBuffer(t *testing.T) {
	tests := []struct {
		name string
		max  int
		segs []capture.Segment
		want []got
		res  uint64
	}{
		{
			name: "two frames in one segment",
			segs: []capture.Segment{seg(100, 1, cat(frame("ab"), frame("cde")), 0)},
			want: []got{{"ab", 0, 100, time.Unix(1, 0)}, {"cde", 0, 104, time.Unix(1, 0)}},
		},
		{
			name: "frame split over three segments",
			segs: []capture.Segment{
				seg(10, 1, frame("hello")[:1], 0),
				seg(11, 2, frame("hello")[1:4], 0),
				seg(14, 3, cat(frame("hello")[4:], frame("x")), 0),
			},
			want: []got{{"hello", 0, 10, time.Unix(1, 0)}, {"x", 0, 17, time.Unix(3, 0)}},
		},
		{
			name: "truncated frame then next frame after the skipped bytes",
			segs: []capture.Segment{
				seg(0, 1, frame("0123456789")[:5], 7), // 12-byte frame, 5 captured
				seg(12, 2, frame("ok"), 0),
			},
			want: []got{{"012", 7, 0, time.Unix(1, 0)}, {"ok", 0, 12, time.Unix(2, 0)}},
		},
		{
			name: "truncated frame whose rest comes in later segments",
			segs: []capture.Segment{
				seg(0, 1, frame("0123456789")[:5], 0), // waits: no gap yet
				seg(5, 2, []byte("3"), 6),             // 1 captured + 6 uncaptured = frame end
				seg(12, 3, frame("ok"), 0),
			},
			want: []got{{"0123", 6, 0, time.Unix(1, 0)}, {"ok", 0, 12, time.Unix(3, 0)}},
		},
		{
			name: "skip spans a whole segment",
			segs: []capture.Segment{
				seg(0, 1, frame("0123456789")[:3], 2),  // 5 of 12 bytes passed: owes 7
				seg(5, 2, frame("0123456789")[5:9], 0), // owes 3
				seg(9, 3, cat(frame("0123456789")[9:], frame("z")), 2),
				seg(17, 4, frame("after"), 0),
			},
			// The big frame ends in the third segment; "z" is whole; the 2
			// uncaptured bytes after it lose framing; the next segment
			// starts afresh.
			want: []got{{"0", 9, 0, time.Unix(1, 0)}, {"z", 0, 12, time.Unix(3, 0)}, {"after", 0, 17, time.Unix(4, 0)}},
			res:  1,
		},
		{
			name: "frame longer than the buffer limit",
			max:  6,
			segs: []capture.Segment{seg(100, 1, cat(frame("0123456789"), frame("k")), 0)},
			// Not buffered (one segment holds it all): delivered whole.
			want: []got{{"0123456789", 0, 100, time.Unix(1, 0)}, {"k", 0, 112, time.Unix(1, 0)}},
		},
		{
			name: "buffered frame longer than the limit is truncated at it",
			max:  6,
			segs: []capture.Segment{
				seg(0, 1, frame("0123456789")[:3], 0),
				seg(3, 2, cat(frame("0123456789")[3:], frame("k")), 0),
			},
			want: []got{{"0123", 6, 0, time.Unix(1, 0)}, {"k", 0, 12, time.Unix(2, 0)}},
		},
		{
			name: "garbage resyncs at the next segment",
			segs: []capture.Segment{
				seg(0, 1, []byte{0xff, 0xff, 1, 2, 3}, 0),
				seg(5, 2, frame("good"), 0),
			},
			want: []got{{"good", 0, 5, time.Unix(2, 0)}},
			res:  1,
		},
		{
			name: "gap where a header should start",
			segs: []capture.Segment{
				seg(0, 1, nil, 10),
				seg(10, 2, frame("a"), 0),
			},
			want: []got{{"a", 0, 10, time.Unix(2, 0)}},
			res:  1,
		},
		{
			name: "header cut by the gap",
			segs: []capture.Segment{
				seg(0, 1, []byte{0}, 10),
				seg(11, 2, frame("b"), 0),
			},
			want: []got{{"b", 0, 11, time.Unix(2, 0)}},
			res:  1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, st := feed(t, tt.max, tt.segs...)
			if fmt.Sprint(out) != fmt.Sprint(tt.want) {
				t.Errorf("frames\n got %v\nwant %v", out, tt.want)
			}
			if st.Resyncs != tt.res {
				t.Errorf("resyncs = %d, want %d", st.Resyncs, tt.res)
			}
		})
	}
}

func TestBufferStopAndBound(t *testing.T) {
	var b Buffer
	s := seg(0, 1, cat(frame("a"), frame("b")), 0)
	n := 0
	b.Feed(&s, lenPrefixed, func(*Frame) bool { n++; return false })
	if n != 1 || b.Buffered() != 0 || b.Stats.Resyncs != 1 {
		t.Fatalf("after stop: %d frames, %d buffered, %d resyncs", n, b.Buffered(), b.Stats.Resyncs)
	}
	// Never-ending header: bounded by Max.
	b = Buffer{Max: 16}
	never := func([]byte) (int, error) { return 0, nil }
	for i := 0; i < 10; i++ {
		s := seg(uint32(i*10), i, bytes.Repeat([]byte{'x'}, 10), 0)
		b.Feed(&s, never, func(*Frame) bool { t.Fatal("no frame expected"); return true })
		if b.Buffered() > 16 {
			t.Fatalf("buffered %d > max", b.Buffered())
		}
	}
}

func FuzzBuffer(f *testing.F) {
	f.Add(cat(frame("ab"), frame("cde")), uint8(3), uint8(0))
	f.Add(frame("0123456789")[:5], uint8(2), uint8(7))
	f.Fuzz(func(t *testing.T, data []byte, cut uint8, gap uint8) {
		b := Buffer{Max: 32}
		var seq uint32
		for len(data) > 0 {
			n := min(int(cut)%8+1, len(data))
			s := seg(seq, 0, data[:n], int(gap)%5)
			seq += uint32(s.Len)
			data = data[n:]
			b.Feed(&s, lenPrefixed, func(f *Frame) bool {
				if f.Missing < 0 || len(f.Data) == 0 {
					t.Fatalf("bad frame: %d bytes, missing %d", len(f.Data), f.Missing)
				}
				return true
			})
			if b.Buffered() > 32 {
				t.Fatalf("buffered %d > 32", b.Buffered())
			}
		}
	})
}

func BenchmarkFeed(b *testing.B) {
	data := cat(frame("hello world"), frame("second frame"))
	s := seg(0, 1, data, 0)
	var buf Buffer
	b.ReportAllocs()
	n := 0
	for range b.N {
		buf.Feed(&s, lenPrefixed, func(f *Frame) bool { n += len(f.Data); return true })
	}
}
