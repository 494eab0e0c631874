// Package parsertest holds the test helpers the l7 protocol parsers share:
// segments written as strings (Seg, Req, Resp), feeding a parser and
// collecting what it emits (Run, Collector, Whole), cutting segments at
// byte boundaries (Split, SplitEvery), the fuzz driver that cuts arbitrary
// bytes into segments by a plan (FeedPlan, Fuzz), the benchmark loop
// (Bench) and cutting the head off a recorded capture (CutPcap).
//
// It imports only agent/capture, agent/l7 and the standard library, so that
// every protocol package's tests can use it.
package parsertest

import (
	"syscall"
	"testing"
	"time"

	"github.com/sightline-io/sightline/agent/capture"
	"github.com/sightline-io/sightline/agent/l7"
)

// Seg is one test segment: direction, bytes, and uncaptured bytes after them.
type Seg struct {
	Dir  capture.Direction
	Data string
	Gap  int
}

// Req is a client-to-server segment.
func Req(s string) Seg { return Seg{Dir: capture.AtoB, Data: s} }

// Resp is a server-to-client segment.
func Resp(s string) Seg { return Seg{Dir: capture.BtoA, Data: s} }

// Run feeds segs to parser and returns copies of what it emitted, closing
// the parser at the end when close is true. Segment i starts i ms after a
// fixed time and lasts 100µs; TCPSeq counts the bytes (gaps included) sent
// before it in its direction.
func Run(parser l7.Parser, segs []Seg, close bool) []l7.Message {
	var out []l7.Message
	emit := func(m *l7.Message) { out = append(out, *m) }
	var seq [2]uint32
	t0 := time.Unix(1000, 0)
	for i, s := range segs {
		cs := &capture.Segment{
			Dir: s.Dir, Data: []byte(s.Data), Len: len(s.Data) + s.Gap,
			Start: t0.Add(time.Duration(i) * time.Millisecond), End: t0.Add(time.Duration(i)*time.Millisecond + 100*time.Microsecond),
			TCPSeq: seq[s.Dir&1],
		}
		seq[s.Dir&1] += uint32(cs.Len)
		parser.Feed(cs, emit)
	}
	if close {
		parser.Close(emit)
	}
	return out
}

// Split cuts every segment into pieces of at most n bytes (gaps stay on the
// last piece).
func Split(segs []Seg, n int) []Seg {
	var out []Seg
	for _, s := range segs {
		d := s.Data
		for len(d) > n {
			out = append(out, Seg{Dir: s.Dir, Data: d[:n]})
			d = d[n:]
		}
		out = append(out, Seg{Dir: s.Dir, Data: d, Gap: s.Gap})
	}
	return out
}

// SplitEvery returns, for every segment and every byte boundary inside it,
// a copy of segs with that segment cut in two there (its gap stays on the
// second piece).
func SplitEvery(segs []Seg) [][]Seg {
	var out [][]Seg
	for i, s := range segs {
		for at := 1; at < len(s.Data); at++ {
			cut := make([]Seg, 0, len(segs)+1)
			cut = append(cut, segs[:i]...)
			cut = append(cut, Seg{Dir: s.Dir, Data: s.Data[:at]}, Seg{Dir: s.Dir, Data: s.Data[at:], Gap: s.Gap})
			cut = append(cut, segs[i+1:]...)
			out = append(out, cut)
		}
	}
	return out
}

// GapUnit is how many uncaptured bytes one unit of a plan's gap stands for.
const GapUnit = 37

// FeedPlan cuts data into segments following plan and passes each to feed.
// Plan bytes go in pairs: a segment size minus one, then flags (bit 0 the
// direction, bit 1 a gap of (flags>>2)&gapMask * GapUnit uncaptured bytes
// follows the segment; pass 0x3f for all six bits). Once plan runs out, the
// rest of data is one client-to-server segment. Every segment starts and
// ends at the Unix epoch and its TCPSeq is the number of bytes of data left
// (itself included).
func FeedPlan(data, plan []byte, gapMask byte, feed func(*capture.Segment)) {
	now := time.Unix(0, 0)
	for len(data) > 0 {
		size, flags := len(data), byte(0)
		if len(plan) >= 2 {
			size, flags, plan = min(int(plan[0])+1, len(data)), plan[1], plan[2:]
		}
		s := &capture.Segment{Dir: capture.Direction(flags & 1), Start: now, End: now,
			Data: data[:size], Len: size, TCPSeq: uint32(len(data))}
		if flags&2 != 0 {
			s.Len += int(flags>>2&gapMask) * GapUnit
		}
		feed(s)
		data = data[size:]
	}
}

// Fuzz feeds data to parser cut by plan (see FeedPlan, all six gap bits)
// and closes it at the end. check sees every message emitted together with
// the captured bytes fed so far in each direction (the segment being fed
// included); after, when not nil, runs after every segment.
func Fuzz(parser l7.Parser, data, plan []byte, check func(m *l7.Message, fed *[2]int64), after func()) {
	var fed [2]int64
	emit := func(m *l7.Message) { check(m, &fed) }
	FeedPlan(data, plan, 0x3f, func(s *capture.Segment) {
		fed[s.Dir] += int64(len(s.Data))
		parser.Feed(s, emit)
		if after != nil {
			after()
		}
	})
	parser.Close(emit)
}

// Bench feeds segs to parser in order once per benchmark iteration and
// reports as BenchFunc does; bytes per iteration are the segments' data.
func Bench(b *testing.B, parser l7.Parser, msgs int, segs ...*capture.Segment) {
	size := 0
	for _, s := range segs {
		size += len(s.Data)
	}
	b.SetBytes(int64(size))
	BenchFunc(b, msgs, func(emit func(*l7.Message)) {
		for _, s := range segs {
			parser.Feed(s, emit)
		}
	})
}

// BenchFunc calls feed once per benchmark iteration with an emit that
// counts messages, checks that every iteration makes msgs messages, and
// reports messages per second of wall time (msgs/s) and per second of
// process CPU time (msgs/cpu-s: on a shared machine wall time overstates
// the cost; CPU time, GC included, is the per-core figure).
func BenchFunc(b *testing.B, msgs int, feed func(emit func(*l7.Message))) {
	var n int
	emit := func(*l7.Message) { n++ }
	b.ReportAllocs()
	cpu0 := processCPU(b)
	for b.Loop() {
		feed(emit)
	}
	cpu := processCPU(b) - cpu0
	if n != msgs*b.N {
		b.Fatalf("parsed %d messages, want %d", n, msgs*b.N)
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "msgs/s")
	if cpu > 0 {
		b.ReportMetric(float64(n)/cpu.Seconds(), "msgs/cpu-s")
	}
}

// processCPU is the process's user and system CPU time so far.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// Collector keeps copies of the messages a parser emits: pass its Emit.
type Collector struct{ Msgs []l7.Message }

// Emit appends a copy of m.
func (c *Collector) Emit(m *l7.Message) { c.Msgs = append(c.Msgs, *m) }

// Whole is a segment of b in direction dir, captured whole, at a fixed time.
func Whole(dir capture.Direction, b []byte) *capture.Segment {
	t := time.Unix(100, 0)
	return &capture.Segment{Dir: dir, Data: b, Len: len(b), Start: t, End: t}
}
