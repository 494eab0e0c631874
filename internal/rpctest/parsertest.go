package rpctest

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/sightline-io/sightline/agent/capture"
	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/internal/parsertest"
)

// Seg is a segment of data in direction dir; gap more bytes were sent but
// not captured.
func Seg(dir capture.Direction, data []byte, gap int) *capture.Segment {
	t := time.Unix(1700000000, 0)
	return &capture.Segment{Dir: dir, Start: t, End: t, Data: data, Len: len(data) + gap}
}

// Feed feeds segs to p and returns copies of the messages it emits.
func Feed(p l7.Parser, segs ...*capture.Segment) []l7.Message {
	var out []l7.Message
	emit := func(m *l7.Message) { out = append(out, *m) }
	for _, s := range segs {
		p.Feed(s, emit)
	}
	p.Close(emit)
	return out
}

// Summary is the part of a message tests compare.
func Summary(m *l7.Message) string {
	return fmt.Sprintf("type=%d id=%d/%v oneway=%v ver=%q req=%q dom=%q res=%q ep=%q code=%d/%v status=%d exc=%q len=%d cap=%d trace=%q span=%q xrid=%q",
		m.Type, m.RequestID, m.HasRequestID, m.OneWay, m.Version, m.RequestType, m.Domain, m.Resource, m.Endpoint,
		m.Code, m.HasCode, m.Status, m.Exception, m.Length, m.Captured, m.TraceID, m.SpanID, m.XRequestID)
}

// Summaries summarises messages.
func Summaries(ms []l7.Message) []string {
	out := make([]string, len(ms))
	for i := range ms {
		out[i] = Summary(&ms[i])
	}
	return out
}

// CheckSplits feeds req (client to server) then resp (server to client),
// each cut in two at every byte boundary, and checks that every cut gives the
// same messages as whole segments.
func CheckSplits(t *testing.T, newParser func() l7.Parser, req, resp []byte) {
	t.Helper()
	want := Summaries(Feed(newParser(), Seg(capture.AtoB, req, 0), Seg(capture.BtoA, resp, 0)))
	if len(want) == 0 {
		t.Fatal("whole segments give no messages")
	}
	for _, c := range []struct {
		dir  capture.Direction
		data []byte
	}{{capture.AtoB, req}, {capture.BtoA, resp}} {
		for i := 1; i < len(c.data); i++ {
			var segs []*capture.Segment
			if c.dir == capture.AtoB {
				segs = []*capture.Segment{Seg(capture.AtoB, req[:i], 0), Seg(capture.AtoB, req[i:], 0), Seg(capture.BtoA, resp, 0)}
			} else {
				segs = []*capture.Segment{Seg(capture.AtoB, req, 0), Seg(capture.BtoA, resp[:i], 0), Seg(capture.BtoA, resp[i:], 0)}
			}
			got := Summaries(Feed(newParser(), segs...))
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("dir %d split at %d:\n got %q\nwant %q", c.dir, i, got, want)
			}
		}
	}
}

// FuzzFeed feeds data to p split by plan (see parsertest.FeedPlan: pairs of
// bytes, segment size-1 and flags: bit 0 direction, bit 1 a gap of
// (flags>>2)*37 bytes follows), calls onMsg on every message with the bytes
// fed so far in each direction (gaps included) and after after every segment.
func FuzzFeed(p l7.Parser, data, plan []byte, onMsg func(m *l7.Message, fed [2]int64), after func()) {
	var fed [2]int64
	emit := func(m *l7.Message) { onMsg(m, fed) }
	parsertest.FeedPlan(data, plan, 0x3f, func(seg *capture.Segment) {
		fed[seg.Dir] += int64(seg.Len)
		p.Feed(seg, emit)
		after()
	})
	p.Close(emit)
}

// SeedsEnv, when set, makes WriteSeeds write the fuzz seed corpus.
const SeedsEnv = "SIGHTLINE_WRITE_SEEDS"

// WriteSeeds writes each seed (data, plan) as a "go test fuzz v1" file
// under testdata/fuzz/<fuzzName>/ when $SIGHTLINE_WRITE_SEEDS is set.
func WriteSeeds(t *testing.T, fuzzName string, seeds map[string][2][]byte) {
	if os.Getenv(SeedsEnv) == "" {
		t.Skip("set " + SeedsEnv + "=1 to write the seed corpus")
	}
	dir := filepath.Join("testdata", "fuzz", fuzzName)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, s := range seeds {
		body := "go test fuzz v1\n[]byte(" + strconv.Quote(string(s[0])) + ")\n[]byte(" + strconv.Quote(string(s[1])) + ")\n"
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// Concat joins frames.
func Concat(frames ...[]byte) []byte {
	var b []byte
	for _, f := range frames {
		b = append(b, f...)
	}
	return b
}
