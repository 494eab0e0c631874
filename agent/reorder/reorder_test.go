package reorder

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sightline-io/sightline/agent/capture"
)

type recorder struct{ got []string }

func (r *recorder) Segment(s *capture.Segment) { r.got = append(r.got, string(s.Data)) }
func (r *recorder) Closed(c capture.Closed)    { r.got = append(r.got, fmt.Sprintf("close%d", c.ConnID)) }

var t0 = time.Unix(1000, 0)

func ms(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }

// seg is an event whose syscall entered at enter and exited at exit (ms).
func seg(dir capture.Direction, enter, exit int, data string) *capture.Segment {
	return &capture.Segment{ConnID: 1, Dir: dir, Start: ms(enter), End: ms(exit), Data: []byte(data), Len: len(data)}
}

func TestCausalOrder(t *testing.T) {
	const out, in = capture.AtoB, capture.BtoA
	tests := []struct {
		name   string
		events []any // *capture.Segment or capture.Closed, in ring (exit) order
		want   string
		reord  uint64
	}{
		{
			name:   "in order stays in order",
			events: []any{seg(out, 0, 1, "req"), seg(in, 1, 5, "resp")},
			want:   "req resp",
		},
		{
			// The write entered at 0 and delivered, the reader returned the
			// response at 3, the writer's exit ran at 4.
			name:   "response read before the request's write exited",
			events: []any{seg(in, 1, 3, "resp"), seg(out, 0, 4, "req")},
			want:   "req resp",
			reord:  1,
		},
		{
			name:   "close after the data it follows",
			events: []any{seg(out, 0, 1, "req"), capture.Closed{ConnID: 1, Time: ms(2)}, seg(in, 0, 1, "resp")},
			want:   "req resp close1",
			reord:  1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r recorder
			b := New(Config{Window: 10 * time.Millisecond}, &r)
			for _, e := range tt.events {
				switch e := e.(type) {
				case *capture.Segment:
					b.Segment(e)
					e.Data[0] = 'X' // the buffer must have copied
				case capture.Closed:
					b.Closed(e)
				}
			}
			if len(r.got) != 0 {
				t.Fatalf("released %v inside the window", r.got)
			}
			b.Release(ms(100))
			if got := strings.Join(r.got, " "); got != tt.want {
				t.Errorf("order %q, want %q", got, tt.want)
			}
			if s := b.Stats(); s.Reorders != tt.reord || s.Held != 0 || s.Released != uint64(len(tt.events)) {
				t.Errorf("stats %+v", s)
			}
		})
	}
}

func TestWindowAndBound(t *testing.T) {
	var r recorder
	b := New(Config{Window: 10 * time.Millisecond, MaxItems: 3}, &r)
	b.Segment(seg(capture.AtoB, 0, 0, "a"))
	b.Segment(seg(capture.AtoB, 5, 5, "b"))
	if len(r.got) != 0 {
		t.Fatalf("released early: %v", r.got)
	}
	// A newer event moves time: a (0 ms) is now older than 15-10 ms.
	b.Segment(seg(capture.AtoB, 15, 15, "c"))
	if strings.Join(r.got, " ") != "a b" {
		t.Fatalf("got %v, want a b", r.got)
	}
	// Full: the oldest goes early and is counted.
	b.Segment(seg(capture.AtoB, 16, 16, "d"))
	b.Segment(seg(capture.AtoB, 17, 17, "e"))
	b.Segment(seg(capture.AtoB, 18, 18, "f"))
	if s := b.Stats(); s.Forced != 1 || s.Held != 3 {
		t.Fatalf("stats %+v", s)
	}
	b.Flush()
	if strings.Join(r.got, " ") != "a b c d e f" {
		t.Fatalf("got %v", r.got)
	}
}

func BenchmarkBuffer(b *testing.B) {
	var r struct{ recorder }
	buf := New(Config{}, nopSink{})
	_ = r
	data := make([]byte, 512)
	s := capture.Segment{Data: data, Len: len(data)}
	b.ReportAllocs()
	for i := range b.N {
		s.Start = t0.Add(time.Duration(i) * time.Microsecond)
		s.End = s.Start
		buf.Segment(&s)
	}
}

type nopSink struct{}

func (nopSink) Segment(*capture.Segment) {}
func (nopSink) Closed(capture.Closed)    {}

// FuzzOrder: whatever the arrival order, events released by Flush or by a
// Release past every key come out sorted by key, each exactly once.
func FuzzOrder(f *testing.F) {
	f.Add([]byte{5, 1, 3, 3, 0, 9})
	f.Fuzz(func(t *testing.T, keys []byte) {
		var r keyRecorder
		b := New(Config{Window: 300 * time.Millisecond, MaxItems: 1 << 20}, &r)
		for i, k := range keys {
			s := seg(capture.AtoB, int(k), int(k), fmt.Sprint(i))
			b.Segment(s)
		}
		b.Flush()
		if len(r.keys) != len(keys) {
			t.Fatalf("released %d of %d", len(r.keys), len(keys))
		}
		for i := 1; i < len(r.keys); i++ {
			if r.keys[i] < r.keys[i-1] {
				t.Fatalf("out of order: %v", r.keys)
			}
		}
	})
}

type keyRecorder struct{ keys []int64 }

func (r *keyRecorder) Segment(s *capture.Segment) { r.keys = append(r.keys, s.Start.UnixNano()) }
func (r *keyRecorder) Closed(capture.Closed)      {}
