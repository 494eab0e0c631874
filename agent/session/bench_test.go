package session

import (
	"log/slog"
	"strconv"
	"testing"
	"time"

	"github.com/sightline-io/sightline/agent/capture"
	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/agent/l7/http1"
	"github.com/sightline-io/sightline/flowlog"
)

// oneShotProto treats every segment as one whole message: 'q...' a request,
// 'r...' a response. Its parser allocates nothing, so a benchmark measures the
// assembler's own cost.
type oneShotProto struct{}

func (oneShotProto) ID() flowlog.L7Protocol { return flowlog.L7Custom }
func (oneShotProto) Matching() l7.Matching  { return l7.MatchFIFO }
func (oneShotProto) Timeout() time.Duration { return time.Minute }
func (oneShotProto) NewParser() l7.Parser   { return &oneShotParser{} }
func (oneShotProto) Infer(data []byte, _ uint8) l7.Inference {
	switch data[0] {
	case 'q':
		return l7.IsRequest
	case 'r':
		return l7.IsResponse
	}
	return l7.NotMine
}

type oneShotParser struct{ msg l7.Message }

func (p *oneShotParser) Feed(seg *capture.Segment, emit func(*l7.Message)) {
	if len(seg.Data) == 0 {
		return
	}
	m := &p.msg
	m.Type = l7.Request
	if seg.Data[0] == 'r' {
		m.Type = l7.Response
	}
	m.Protocol, m.Dir, m.Start, m.End = flowlog.L7Custom, seg.Dir, seg.Start, seg.End
	m.Length, m.Captured = int64(seg.Len), uint32(len(seg.Data))
	m.TID, m.CapSeq, m.TCPSeq = seg.TID, seg.CapSeq, seg.TCPSeq
	emit(m)
}

func (p *oneShotParser) Close(func(*l7.Message)) {}

// benchFeed feeds request/response pairs round-robin over conns connections;
// one op is one segment.
func benchFeed(b *testing.B, proto l7.Protocol, req, resp string, conns int) {
	var rows int
	a := New(Config{Protocols: []l7.Protocol{proto}, Logger: slog.New(slog.DiscardHandler)},
		func(*flowlog.L7FlowLog) { rows++ })
	segs := make([]*capture.Segment, 0, 2*conns)
	for i := range conns {
		segs = append(segs, ebpfSeg(uint64(i), capture.AtoB, i, req), ebpfSeg(uint64(i), capture.BtoA, i+1, resp))
	}
	// Warm up: every connection inferred and tracked.
	for _, s := range segs {
		a.Feed(s)
	}
	b.SetBytes(int64(len(req)+len(resp)) / 2)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		a.Feed(segs[i%len(segs)])
	}
	b.StopTimer()
	if rows == 0 {
		b.Fatal("no rows emitted")
	}
	if s := a.Stats(); s.RowsRequest+s.RowsResponse != 0 {
		b.Fatalf("unpaired rows: %+v", s)
	}
}

func BenchmarkFeed(b *testing.B) {
	for _, conns := range []int{1, 1000, 50000} {
		b.Run("oneshot/conns="+strconv.Itoa(conns), func(b *testing.B) {
			benchFeed(b, oneShotProto{}, "q GET /", "r 200 OK", conns)
		})
	}
	b.Run("line/conns=1000", func(b *testing.B) {
		benchFeed(b, fifoProto(), "REQ 1 res=/api/users/42 trace=abc\n", "RESP 1 200 xrid=r-1\n", 1000)
	})
	b.Run("http1/conns=1000", func(b *testing.B) {
		benchFeed(b, http1.New(), "GET /api/users/42 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: bench\r\n\r\n",
			"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok", 1000)
	})
}
