package nats

import (
	"time"

	"github.com/sightline-io/sightline/agent/capture"
	"github.com/sightline-io/sightline/agent/l7"
)

// seg is one test segment: direction, bytes, and uncaptured bytes after them.
type seg struct {
	dir  capture.Direction
	data string
	gap  int
}

func req(s string) seg  { return seg{dir: capture.AtoB, data: s} }
func resp(s string) seg { return seg{dir: capture.BtoA, data: s} }

// run feeds segs to a fresh parser and returns copies of what it emitted,
// closing the parser at the end when closeAt is true.
func run(p *Parser, segs []seg, closeAt bool) []l7.Message {
	var out []l7.Message
	emit := func(m *l7.Message) { out = append(out, *m) }
	var seq [2]uint32
	t0 := time.Unix(1000, 0)
	for i, s := range segs {
		cs := &capture.Segment{
			Dir: s.dir, Data: []byte(s.data), Len: len(s.data) + s.gap,
			Start: t0.Add(time.Duration(i) * time.Millisecond), End: t0.Add(time.Duration(i)*time.Millisecond + 100*time.Microsecond),
			TCPSeq: seq[s.dir&1],
		}
		seq[s.dir&1] += uint32(cs.Len)
		p.Feed(cs, emit)
	}
	if closeAt {
		p.Close(emit)
	}
	return out
}

// split cuts every segment into pieces of at most n bytes (gaps stay on the last).
func split(segs []seg, n int) []seg {
	var out []seg
	for _, s := range segs {
		d := s.data
		for len(d) > n {
			out = append(out, seg{dir: s.dir, data: d[:n]})
			d = d[n:]
		}
		out = append(out, seg{dir: s.dir, data: d, gap: s.gap})
	}
	return out
}
