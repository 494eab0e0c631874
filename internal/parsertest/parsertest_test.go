package parsertest

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/sightline-io/sightline/agent/capture"
	"github.com/sightline-io/sightline/agent/l7"
)

// recorder is a parser that emits one message per segment, carrying the
// segment's direction, length and TCPSeq, and one more on Close.
type recorder struct{ segs []capture.Segment }

func (r *recorder) Feed(s *capture.Segment, emit func(*l7.Message)) {
	r.segs = append(r.segs, *s)
	emit(&l7.Message{Dir: s.Dir, Length: int64(s.Len), Captured: uint32(len(s.Data)), TCPSeq: s.TCPSeq, Start: s.Start})
}

func (r *recorder) Close(emit func(*l7.Message)) { emit(&l7.Message{Type: l7.Response}) }

func TestRun(t *testing.T) {
	r := &recorder{}
	out := Run(r, []Seg{Req("ab"), {Dir: capture.AtoB, Data: "c", Gap: 5}, Req("d"), Resp("xyz")}, true)
	if len(out) != 5 || out[4].Type != l7.Response {
		t.Fatalf("got %d messages, want 4 and the close", len(out))
	}
	wantSeq := []uint32{0, 2, 8, 0}
	for i, m := range out[:4] {
		if m.TCPSeq != wantSeq[i] {
			t.Errorf("message %d: TCPSeq %d, want %d", i, m.TCPSeq, wantSeq[i])
		}
	}
	if out[1].Length != 6 || out[1].Captured != 1 {
		t.Errorf("gap segment: length %d captured %d", out[1].Length, out[1].Captured)
	}
	if got := len(Run(&recorder{}, []Seg{Req("a")}, false)); got != 1 {
		t.Errorf("without close: %d messages", got)
	}
}

func TestSplit(t *testing.T) {
	got := Split([]Seg{{Dir: capture.BtoA, Data: "abcde", Gap: 3}, Req("xy")}, 2)
	want := []Seg{{capture.BtoA, "ab", 0}, {capture.BtoA, "cd", 0}, {capture.BtoA, "e", 3}, Req("xy")}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
}

func TestSplitEvery(t *testing.T) {
	got := SplitEvery([]Seg{Req("abc"), {Dir: capture.BtoA, Data: "xy", Gap: 4}})
	want := [][]Seg{
		{Req("a"), Req("bc"), {capture.BtoA, "xy", 4}},
		{Req("ab"), Req("c"), {capture.BtoA, "xy", 4}},
		{Req("abc"), Resp("x"), {capture.BtoA, "y", 4}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
}

func TestFeedPlan(t *testing.T) {
	var got []capture.Segment
	FeedPlan([]byte("abcdefgh"), []byte{1, 1 | 2 | 3<<2, 2, 0, 0x7f}, 0x3f, func(s *capture.Segment) { got = append(got, *s) })
	if len(got) != 3 {
		t.Fatalf("%d segments", len(got))
	}
	if string(got[0].Data) != "ab" || got[0].Dir != capture.BtoA || got[0].Len != 2+3*GapUnit || got[0].TCPSeq != 8 {
		t.Errorf("first %+v", got[0])
	}
	if string(got[1].Data) != "cde" || got[1].Dir != capture.AtoB || got[1].Len != 3 || got[1].TCPSeq != 6 {
		t.Errorf("second %+v", got[1])
	}
	if string(got[2].Data) != "fgh" || got[2].Dir != capture.AtoB || got[2].Len != 3 {
		t.Errorf("rest %+v", got[2])
	}
	got = got[:0]
	FeedPlan([]byte("ab"), []byte{0, 2 | 0x80}, 0x1f, func(s *capture.Segment) { got = append(got, *s) })
	if got[0].Len != 1 || got[1].Len != 1 {
		t.Errorf("masked gap: %d %d", got[0].Len, got[1].Len)
	}
}

func TestFuzz(t *testing.T) {
	r := &recorder{}
	var afters, msgs int
	Fuzz(r, []byte("abcdef"), []byte{1, 0, 0, 1 | 2 | 1<<2}, func(m *l7.Message, fed *[2]int64) {
		msgs++
		if m.Type == l7.Request && int64(m.Captured) > fed[m.Dir] {
			t.Errorf("captured %d, fed %d", m.Captured, fed[m.Dir])
		}
		if msgs == 2 && (fed[0] != 2 || fed[1] != 1) {
			t.Errorf("fed %v after the second segment", *fed)
		}
	}, func() { afters++ })
	if afters != 3 || msgs != 4 || len(r.segs) != 3 {
		t.Errorf("afters %d messages %d segments %d", afters, msgs, len(r.segs))
	}
	Fuzz(&recorder{}, []byte("a"), nil, func(*l7.Message, *[2]int64) {}, nil)
}

func TestCutPcap(t *testing.T) {
	// A little-endian pcap header and three records of 1, 2 and 3 bytes.
	head := make([]byte, 24)
	binary.LittleEndian.PutUint32(head, 0xa1b2c3d4)
	file := append([]byte(nil), head...)
	for i := 1; i <= 3; i++ {
		rec := make([]byte, 16)
		binary.LittleEndian.PutUint32(rec[8:], uint32(i))
		file = append(append(file, rec...), bytes.Repeat([]byte{byte(i)}, i)...)
	}
	path := filepath.Join(t.TempDir(), "in.pcap")
	if err := os.WriteFile(path, file, 0o644); err != nil {
		t.Fatal(err)
	}
	for n, want := range map[int]int{0: len(file), 1: len(file) - 17, 2: 24 + 19, 3: 24, 9: 24} {
		b, err := os.ReadFile(CutPcap(t, path, n))
		if err != nil {
			t.Fatal(err)
		}
		if len(b) != want || !bytes.Equal(b[:24], head) {
			t.Errorf("cut %d: %d bytes, want %d", n, len(b), want)
		}
	}
}

// counter emits one message per segment.
type counter struct{}

func (counter) Feed(s *capture.Segment, emit func(*l7.Message)) { emit(&l7.Message{Dir: s.Dir}) }
func (counter) Close(func(*l7.Message))                         {}

func TestBench(t *testing.T) {
	a, z := &capture.Segment{Data: []byte("abc"), Len: 3}, &capture.Segment{Dir: capture.BtoA, Data: []byte("xy"), Len: 2}
	r := testing.Benchmark(func(b *testing.B) { Bench(b, counter{}, 2, a, z) })
	if r.N == 0 || r.Bytes != 5 || r.Extra["msgs/s"] <= 0 {
		t.Fatalf("result %+v", r)
	}
	if r := testing.Benchmark(func(b *testing.B) { Bench(b, counter{}, 3, a, z) }); r.N != 0 {
		t.Errorf("a wrong message count passed: %+v", r)
	}
}

func TestCollector(t *testing.T) {
	var c Collector
	r := &recorder{}
	r.Feed(Whole(capture.BtoA, []byte("abc")), c.Emit)
	r.Feed(Whole(capture.AtoB, nil), c.Emit)
	if len(c.Msgs) != 2 || c.Msgs[0].Dir != capture.BtoA || c.Msgs[0].Captured != 3 || c.Msgs[0].Length != 3 ||
		!c.Msgs[0].Start.Equal(time.Unix(100, 0)) || c.Msgs[1].Captured != 0 {
		t.Fatalf("collected %+v", c.Msgs)
	}
}
