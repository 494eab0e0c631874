package session

import (
	"fmt"
	"log/slog"
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/sightline-io/sightline/agent/capture"
	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/flowlog"
)

var t0 = time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)

func at(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

// segDur is how long each test segment's syscall takes.
const segDur = 100 * time.Microsecond

var (
	ipA     = netip.MustParseAddr("10.0.0.1")
	ipB     = netip.MustParseAddr("10.0.0.2")
	tupleAB = capture.Tuple{AIP: ipA, BIP: ipB, APort: 40000, BPort: 8080, L4: 6}
)

// ebpfSeg is a syscall segment of connection conn at ms milliseconds; the
// traced process is pid 42 "app", and per-syscall ids derive from ms.
func ebpfSeg(conn uint64, dir capture.Direction, ms int, data string) *capture.Segment {
	return &capture.Segment{
		Source: capture.SourceEBPF, ConnID: conn, Tuple: tupleAB, Dir: dir,
		Start: at(ms), End: at(ms).Add(segDur), Data: []byte(data), Len: len(data),
		TCPSeq: uint32(1000 + ms), PID: 42, TID: uint32(100 + ms), Comm: "app", FD: 3,
		CapSeq: uint32(ms), SyscallTraceID: uint64(7000 + ms), Coroutine: uint64(9000 + ms),
	}
}

func packetSeg(conn uint64, tuple capture.Tuple, dir capture.Direction, ms int, ttl uint8, data string) *capture.Segment {
	return &capture.Segment{
		Source: capture.SourcePacket, ConnID: conn, Tuple: tuple, Dir: dir,
		Start: at(ms), End: at(ms).Add(segDur), Data: []byte(data), Len: len(data),
		TCPSeq: uint32(1000 + ms), TTL: ttl,
	}
}

func newTest(cfg Config, protos ...l7.Protocol) (*Assembler, *[]*flowlog.L7FlowLog) {
	var rows []*flowlog.L7FlowLog
	cfg.Protocols = protos
	cfg.AgentID, cfg.Host = "agent-1", "host-1"
	cfg.Logger = slog.New(slog.DiscardHandler)
	return New(cfg, func(r *flowlog.L7FlowLog) { rows = append(rows, r) }), &rows
}

// summary is the gist of a row for table comparisons.
type summary struct {
	Type       flowlog.RowType
	Status     flowlog.ResponseStatus
	Resource   string
	Code       int32 // -1: null
	ReqID      int64 // -1: null
	Start, End time.Time
	DurationUS uint64
}

func summarize(rows []*flowlog.L7FlowLog) []summary {
	out := make([]summary, 0, len(rows))
	for _, r := range rows {
		s := summary{Type: r.Type, Status: r.ResponseStatus, Resource: r.RequestResource, Code: -1, ReqID: -1,
			Start: r.StartTime, End: r.EndTime, DurationUS: r.ResponseDuration}
		if r.ResponseCode != nil {
			s.Code = *r.ResponseCode
		}
		if r.RequestID != nil {
			s.ReqID = int64(*r.RequestID)
		}
		out = append(out, s)
	}
	return out
}

func end(ms int) time.Time { return at(ms).Add(segDur) }

func us(ms int) uint64 { return uint64(ms)*1000 + uint64(segDur/time.Microsecond) }

func TestMatching(t *testing.T) {
	const A, B = capture.AtoB, capture.BtoA
	tests := []struct {
		name   string
		protos []l7.Protocol
		cfg    Config
		run    func(a *Assembler)
		want   []summary
		check  func(t *testing.T, s Stats)
	}{
		{
			name:   "fifo single",
			protos: []l7.Protocol{fifoProto()},
			run: func(a *Assembler) {
				a.Feed(ebpfSeg(1, A, 0, "REQ 1 res=/a\n"))
				a.Feed(ebpfSeg(1, B, 5, "RESP 1 200\n"))
			},
			want: []summary{{Type: flowlog.TypeSession, Status: flowlog.StatusSuccess, Resource: "/a", Code: 200, ReqID: -1,
				Start: at(0), End: end(5), DurationUS: us(5)}},
		},
		{
			name:   "one-way request is a complete row at once and takes no response",
			protos: []l7.Protocol{fifoProto()},
			run: func(a *Assembler) {
				a.Feed(ebpfSeg(1, A, 0, "REQ 1 res=/pub oneway=1\n"))
				a.Feed(ebpfSeg(1, A, 1, "REQ 2 res=/a\n"))
				a.Feed(ebpfSeg(1, B, 5, "RESP 2 200\n"))
				a.Expire(at(60000))
			},
			want: []summary{
				{Type: flowlog.TypeSession, Status: flowlog.StatusSuccess, Resource: "/pub", Code: -1, ReqID: -1, Start: at(0), End: end(0)},
				{Type: flowlog.TypeSession, Status: flowlog.StatusSuccess, Resource: "/a", Code: 200, ReqID: -1, Start: at(1), End: end(5), DurationUS: us(4)},
			},
		},
		{
			name:   "fifo pipelined, split lines",
			protos: []l7.Protocol{fifoProto()},
			run: func(a *Assembler) {
				a.Feed(ebpfSeg(1, A, 0, "REQ 1 res=/a\nREQ 2 res=/b\nRE"))
				a.Feed(ebpfSeg(1, A, 1, "Q 3 res=/c\n"))
				a.Feed(ebpfSeg(1, B, 10, "RESP 1 200\nRESP 2 404\n"))
				a.Feed(ebpfSeg(1, B, 20, "RESP 3 503\n"))
			},
			want: []summary{
				{Type: flowlog.TypeSession, Resource: "/a", Code: 200, ReqID: -1, Start: at(0), End: end(10), DurationUS: us(10)},
				{Type: flowlog.TypeSession, Status: flowlog.StatusClientError, Resource: "/b", Code: 404, ReqID: -1, Start: at(0), End: end(10), DurationUS: us(10)},
				{Type: flowlog.TypeSession, Status: flowlog.StatusServerError, Resource: "/c", Code: 503, ReqID: -1, Start: at(0), End: end(20), DurationUS: us(20)},
			},
		},
		{
			name:   "by id out of order, unanswered times out",
			protos: []l7.Protocol{byIDProto()},
			run: func(a *Assembler) {
				a.Feed(ebpfSeg(1, A, 0, "Q 1 res=one\n"))
				a.Feed(ebpfSeg(1, A, 1, "Q 2 res=two\n"))
				a.Feed(ebpfSeg(1, A, 2, "Q 3 res=three\n"))
				a.Feed(ebpfSeg(1, B, 10, "A 3 0\n"))
				a.Feed(ebpfSeg(1, B, 11, "A 1 0\n"))
				a.Expire(at(1000)) // 1 s < 5 s timeout: nothing
				a.Expire(at(5002)) // request 2 started at 1 ms: 5001 ms old
			},
			want: []summary{
				{Type: flowlog.TypeSession, Resource: "three", Code: 0, ReqID: 3, Start: at(2), End: end(10), DurationUS: us(8)},
				{Type: flowlog.TypeSession, Resource: "one", Code: 0, ReqID: 1, Start: at(0), End: end(11), DurationUS: us(11)},
				{Type: flowlog.TypeRequest, Status: flowlog.StatusTimeout, Resource: "two", Code: -1, ReqID: 2, Start: at(1), End: at(1)},
			},
		},
		{
			name:   "by id duplicate id pairs oldest first",
			protos: []l7.Protocol{byIDProto()},
			run: func(a *Assembler) {
				a.Feed(ebpfSeg(1, A, 0, "Q 7 res=first\n"))
				a.Feed(ebpfSeg(1, A, 1, "Q 7 res=retry\n"))
				a.Feed(ebpfSeg(1, B, 2, "A 7 0\n"))
				a.Feed(ebpfSeg(1, B, 3, "A 7 0\n"))
			},
			want: []summary{
				{Type: flowlog.TypeSession, Resource: "first", Code: 0, ReqID: 7, Start: at(0), End: end(2), DurationUS: us(2)},
				{Type: flowlog.TypeSession, Resource: "retry", Code: 0, ReqID: 7, Start: at(1), End: end(3), DurationUS: us(2)},
			},
		},
		{
			name:   "lone response mid-stream, then a session",
			protos: []l7.Protocol{fifoProto()},
			run: func(a *Assembler) {
				a.Feed(ebpfSeg(1, B, 0, "RESP 0 500\n"))
				a.Feed(ebpfSeg(1, A, 1, "REQ 1 res=/x\n"))
				a.Feed(ebpfSeg(1, B, 2, "RESP 1 200\n"))
			},
			want: []summary{
				{Type: flowlog.TypeResponse, Status: flowlog.StatusServerError, Code: 500, ReqID: -1, Start: at(0), End: end(0)},
				{Type: flowlog.TypeSession, Resource: "/x", Code: 200, ReqID: -1, Start: at(1), End: end(2), DurationUS: us(1)},
			},
		},
		{
			name:   "response after its request timed out is lone",
			protos: []l7.Protocol{byIDProto()},
			run: func(a *Assembler) {
				a.Feed(ebpfSeg(1, A, 0, "Q 1 res=slow\n"))
				a.Expire(at(6000))
				a.Feed(ebpfSeg(1, B, 6001, "A 1 0\n"))
			},
			want: []summary{
				{Type: flowlog.TypeRequest, Status: flowlog.StatusTimeout, Resource: "slow", Code: -1, ReqID: 1, Start: at(0), End: at(0)},
				{Type: flowlog.TypeResponse, Code: 0, ReqID: 1, Start: at(6001), End: end(6001)},
			},
		},
		{
			name:   "pending bound drops oldest as timeout",
			protos: []l7.Protocol{fifoProto()},
			cfg:    Config{MaxPendingPerConn: 2},
			run: func(a *Assembler) {
				a.Feed(ebpfSeg(1, A, 0, "REQ 1 res=/1\nREQ 2 res=/2\nREQ 3 res=/3\n"))
				a.Feed(ebpfSeg(1, B, 1, "RESP 2 200\nRESP 3 200\n"))
			},
			want: []summary{
				{Type: flowlog.TypeRequest, Status: flowlog.StatusTimeout, Resource: "/1", Code: -1, ReqID: -1, Start: at(0), End: at(0)},
				{Type: flowlog.TypeSession, Resource: "/2", Code: 200, ReqID: -1, Start: at(0), End: end(1), DurationUS: us(1)},
				{Type: flowlog.TypeSession, Resource: "/3", Code: 200, ReqID: -1, Start: at(0), End: end(1), DurationUS: us(1)},
			},
			check: func(t *testing.T, s Stats) {
				if s.PendingDropped != 1 {
					t.Errorf("PendingDropped = %d, want 1", s.PendingDropped)
				}
			},
		},
		{
			name:   "close completes a message and flushes pending",
			protos: []l7.Protocol{fifoProto()},
			run: func(a *Assembler) {
				a.Feed(ebpfSeg(1, A, 0, "REQ 1 res=/1\nREQ 2 res=/2\n"))
				a.Feed(ebpfSeg(1, B, 3, "RESP 1 200")) // no newline: completed by the close
				a.CloseConn(capture.Closed{ConnID: 1, Time: at(4)})
				// The id is reused by a new connection: inference starts again.
				a.Feed(ebpfSeg(1, B, 5, "RESP 9 200\n"))
			},
			want: []summary{
				{Type: flowlog.TypeSession, Resource: "/1", Code: 200, ReqID: -1, Start: at(0), End: end(3), DurationUS: us(3)},
				{Type: flowlog.TypeRequest, Status: flowlog.StatusTimeout, Resource: "/2", Code: -1, ReqID: -1, Start: at(0), End: at(0)},
				{Type: flowlog.TypeResponse, Code: 200, ReqID: -1, Start: at(5), End: end(5)},
			},
			check: func(t *testing.T, s Stats) {
				if s.ConnsClosed != 1 || s.ConnsOpened != 2 || s.ConnsTracked != 1 {
					t.Errorf("closed/opened/tracked = %d/%d/%d, want 1/2/1", s.ConnsClosed, s.ConnsOpened, s.ConnsTracked)
				}
			},
		},
		{
			name:   "close of unknown connection is a no-op",
			protos: []l7.Protocol{fifoProto()},
			run: func(a *Assembler) {
				a.CloseConn(capture.Closed{ConnID: 99})
			},
			want: []summary{},
			check: func(t *testing.T, s Stats) {
				if s.ConnsClosed != 0 {
					t.Errorf("ConnsClosed = %d, want 0", s.ConnsClosed)
				}
			},
		},
		{
			name:   "idle connections dropped by expire after close runs",
			protos: []l7.Protocol{&lineProto{id: flowlog.L7Redis, reqWord: "REQ", respWord: "RESP", timeout: 2 * time.Minute}},
			cfg:    Config{IdleTimeout: time.Minute},
			run: func(a *Assembler) {
				a.Feed(ebpfSeg(1, A, 35000, "REQ 1 res=/1\n"))
				a.Feed(ebpfSeg(2, A, 30000, "REQ 1 res=/2\n"))
				a.Feed(ebpfSeg(1, B, 40000, "RESP 1 200")) // completed by the idle close
				a.Expire(at(40000 + 59000))                // conn 1 idle 59 s: kept; conn 2 idle 69 s: dropped
				a.Expire(end(40000 + 60000))               // conn 1 idle 60 s: dropped
			},
			want: []summary{
				{Type: flowlog.TypeRequest, Status: flowlog.StatusTimeout, Resource: "/2", Code: -1, ReqID: -1, Start: at(30000), End: at(30000)},
				{Type: flowlog.TypeSession, Resource: "/1", Code: 200, ReqID: -1, Start: at(35000), End: end(40000), DurationUS: us(5000)},
			},
			check: func(t *testing.T, s Stats) {
				if s.ConnsIdle != 2 || s.ConnsTracked != 0 {
					t.Errorf("idle/tracked = %d/%d, want 2/0", s.ConnsIdle, s.ConnsTracked)
				}
			},
		},
		{
			name:   "flush all",
			protos: []l7.Protocol{fifoProto(), byIDProto()},
			run: func(a *Assembler) {
				a.Feed(ebpfSeg(1, A, 0, "REQ 1 res=/1\n"))
				a.Feed(ebpfSeg(2, A, 1, "Q 5 res=dns\n"))
				a.Feed(ebpfSeg(2, B, 2, "A 5 3")) // completed by the flush
				a.FlushAll(at(3))
			},
			want: []summary{
				{Type: flowlog.TypeRequest, Status: flowlog.StatusTimeout, Resource: "/1", Code: -1, ReqID: -1, Start: at(0), End: at(0)},
				{Type: flowlog.TypeSession, Resource: "dns", Code: 3, ReqID: 5, Start: at(1), End: end(2), DurationUS: us(1)},
			},
			check: func(t *testing.T, s Stats) {
				if s.ConnsFlushed != 2 || s.ConnsTracked != 0 {
					t.Errorf("flushed/tracked = %d/%d, want 2/0", s.ConnsFlushed, s.ConnsTracked)
				}
			},
		},
		{
			name:   "parse failure counted and reported",
			protos: []l7.Protocol{fifoProto()},
			run: func(a *Assembler) {
				a.Feed(ebpfSeg(1, A, 0, "REQ 1\n"))
				a.Feed(ebpfSeg(1, B, 1, "RESP x\n"))
			},
			want: []summary{
				{Type: flowlog.TypeSession, Status: flowlog.StatusParseFailed, Code: -1, ReqID: -1, Start: at(0), End: end(1), DurationUS: us(1)},
			},
			check: func(t *testing.T, s Stats) {
				if s.ParseFailed != 1 {
					t.Errorf("ParseFailed = %d, want 1", s.ParseFailed)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, rows := newTest(tt.cfg, tt.protos...)
			tt.run(a)
			got := summarize(*rows)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("rows:\n got %+v\nwant %+v", got, tt.want)
			}
			s := a.Stats()
			var sessions, reqs, resps uint64
			for _, w := range tt.want {
				switch w.Type {
				case flowlog.TypeSession:
					sessions++
				case flowlog.TypeRequest:
					reqs++
				case flowlog.TypeResponse:
					resps++
				}
			}
			if s.RowsSession != sessions || s.RowsRequest != reqs || s.RowsResponse != resps {
				t.Errorf("row stats session/request/response = %d/%d/%d, want %d/%d/%d",
					s.RowsSession, s.RowsRequest, s.RowsResponse, sessions, reqs, resps)
			}
			if tt.check != nil {
				tt.check(t, s)
			}
		})
	}
}

// TestSessionColumns checks every column of a session row from an eBPF
// client process, and of the same exchange seen by the server process.
func TestSessionColumns(t *testing.T) {
	ptr32 := func(v int32) *int32 { return &v }
	ptr64 := func(v uint64) *uint64 { return &v }
	base := flowlog.L7FlowLog{
		Time: at(0), StartTime: at(0), EndTime: end(10), ResponseDuration: us(10),
		AgentID: "agent-1", Host: "host-1", OrgID: 1, TeamID: 1,
		SignalSource: flowlog.SourceEBPF, L7Protocol: flowlog.L7DNS, L7ProtocolStr: "DNS", Version: "2",
		Type: flowlog.TypeSession, RequestType: "Q", RequestResource: "r", RequestID: ptr64(4),
		ResponseStatus: flowlog.StatusSuccess, ResponseCode: ptr32(0),
		RequestLength:  int64(len("Q 4 res=r trace=T span=S parent=P xrid=X0 ver=2 k=req shared=req\n")),
		ResponseLength: int64(len("A 4 0 xrid=X1 trace=RT shared=resp k2=resp\n")),
		TraceID:        "T", SpanID: "S", ParentSpanID: "P", XRequestID0: "X0", XRequestID1: "X1",
		SyscallTraceIDRequest: 7000, SyscallTraceIDResponse: 7010,
		SyscallThread0: 100, SyscallThread1: 110, SyscallCoroutine0: 9000, SyscallCoroutine1: 9010,
		SyscallCapSeq0: 0, SyscallCapSeq1: 10, ReqTCPSeq: 1000, RespTCPSeq: 1010,
		Protocol:   6,
		Attributes: map[string]string{"k": "req", "k2": "resp", "shared": "req"},
	}
	base.CapturedRequestByte, base.CapturedResponseByte = uint32(base.RequestLength), uint32(base.ResponseLength)

	client := base
	client.ObservationPoint = flowlog.ObsClientProcess
	client.IP0, client.ClientPort, client.IP1, client.ServerPort = ipA, 40000, ipB, 8080
	client.ProcessID0, client.ProcessKName0 = 42, "app"

	server := base
	server.ObservationPoint = flowlog.ObsServerProcess
	server.IP0, server.ClientPort, server.IP1, server.ServerPort = ipB, 8080, ipA, 40000
	server.ProcessID1, server.ProcessKName1 = 42, "app"

	for _, tt := range []struct {
		name   string
		reqDir capture.Direction
		want   flowlog.L7FlowLog
	}{
		{"client process (request egress)", capture.AtoB, client},
		{"server process (request ingress)", capture.BtoA, server},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := byIDProto()
			p.reuse = true // the assembler must copy what it keeps
			a, rows := newTest(Config{}, p)
			a.Feed(ebpfSeg(1, tt.reqDir, 0, "Q 4 res=r trace=T span=S parent=P xrid=X0 ver=2 k=req shared=req\n"))
			a.Feed(ebpfSeg(1, tt.reqDir.Reverse(), 10, "A 4 0 xrid=X1 trace=RT shared=resp k2=resp\n"))
			if len(*rows) != 1 {
				t.Fatalf("got %d rows, want 1", len(*rows))
			}
			if got := *(*rows)[0]; !reflect.DeepEqual(got, tt.want) {
				t.Errorf("row:\n got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

// TestLoneRowColumns checks identity and null columns of type 0 and 1 rows.
func TestLoneRowColumns(t *testing.T) {
	t.Run("lone response from the server socket is s-p", func(t *testing.T) {
		a, rows := newTest(Config{}, fifoProto())
		a.Feed(ebpfSeg(1, capture.AtoB, 0, "RESP 1 200 xrid=R trace=T\n"))
		r := (*rows)[0]
		if r.ObservationPoint != flowlog.ObsServerProcess || r.ProcessID1 != 42 || r.ProcessID0 != 0 ||
			r.IP0 != ipB || r.IP1 != ipA || r.ServerPort != 40000 || r.ClientPort != 8080 {
			t.Errorf("identity: %+v", r)
		}
		if r.RequestLength != -1 || r.ResponseLength != int64(len("RESP 1 200 xrid=R trace=T\n")) ||
			r.XRequestID1 != "R" || r.XRequestID0 != "" || r.TraceID != "T" || r.SyscallThread1 != 100 || r.SyscallThread0 != 0 {
			t.Errorf("columns: %+v", r)
		}
	})
	t.Run("timed out request", func(t *testing.T) {
		a, rows := newTest(Config{}, fifoProto())
		a.Feed(ebpfSeg(1, capture.AtoB, 0, "REQ 1 res=/r\n"))
		a.FlushAll(at(1))
		r := (*rows)[0]
		if r.ObservationPoint != flowlog.ObsClientProcess || r.ProcessID0 != 42 || r.IP0 != ipA {
			t.Errorf("identity: %+v", r)
		}
		if r.ResponseLength != -1 || r.CapturedResponseByte != 0 || r.ResponseCode != nil ||
			r.ResponseDuration != 0 || !r.EndTime.Equal(r.StartTime) || r.RequestLength != 13 {
			t.Errorf("columns: %+v", r)
		}
	})
}

func TestInference(t *testing.T) {
	const A, B = capture.AtoB, capture.BtoA
	tests := []struct {
		name     string
		segs     []*capture.Segment
		wantRows int
		want     Stats // only the inference-related fields are compared
	}{
		{
			name:     "gives up after attempts, then skips cheaply",
			segs:     []*capture.Segment{ebpfSeg(1, A, 0, "GET /"), ebpfSeg(1, B, 1, "xx"), ebpfSeg(1, A, 2, "yy"), ebpfSeg(1, A, 3, "zz"), ebpfSeg(1, A, 4, "REQ 1\n"), ebpfSeg(1, B, 5, "RESP 1 200\n")},
			wantRows: 0,
			want:     Stats{Segments: 6, SegmentsSkipped: 2, InferenceFailures: 1},
		},
		{
			name:     "claims on the last attempt",
			segs:     []*capture.Segment{ebpfSeg(1, A, 0, "a"), ebpfSeg(1, A, 1, "b"), ebpfSeg(1, A, 2, "c"), ebpfSeg(1, A, 3, "REQ 1\n"), ebpfSeg(1, B, 4, "RESP 1 200\n")},
			wantRows: 1,
			want:     Stats{Segments: 5, ConnsInferred: 1},
		},
		{
			name:     "a message split across segments is inferred whole, and parsed from its start",
			segs:     []*capture.Segment{ebpfSeg(1, A, 0, "RE"), ebpfSeg(1, A, 1, "Q 1 res=/a\n"), ebpfSeg(1, B, 2, "RESP 1 200\n")},
			wantRows: 1,
			want:     Stats{Segments: 3, ConnsInferred: 1},
		},
		{
			name:     "need more keeps trying",
			segs:     []*capture.Segment{ebpfSeg(1, A, 0, "RE"), ebpfSeg(1, A, 1, "REQ 1\n"), ebpfSeg(1, B, 2, "RESP 1 200\n")},
			wantRows: 1,
			want:     Stats{Segments: 3, ConnsInferred: 1},
		},
		{
			name: "empty segments are not attempts",
			segs: []*capture.Segment{ebpfSeg(1, A, 0, ""), ebpfSeg(1, A, 1, ""), ebpfSeg(1, A, 2, ""), ebpfSeg(1, A, 3, ""),
				ebpfSeg(1, A, 4, ""), ebpfSeg(1, A, 5, "REQ 1\n"), ebpfSeg(1, B, 6, "RESP 1 200\n")},
			wantRows: 1,
			want:     Stats{Segments: 7, ConnsInferred: 1},
		},
		{
			name:     "response first is claimed (mid-stream)",
			segs:     []*capture.Segment{ebpfSeg(1, B, 0, "A 3 0\n"), ebpfSeg(1, A, 1, "Q 4\n"), ebpfSeg(1, B, 2, "A 4 0\n")},
			wantRows: 2,
			want:     Stats{Segments: 3, ConnsInferred: 1},
		},
		{
			name:     "verdict is per connection",
			segs:     []*capture.Segment{ebpfSeg(1, A, 0, "a"), ebpfSeg(1, A, 1, "b"), ebpfSeg(1, A, 2, "c"), ebpfSeg(1, A, 3, "d"), ebpfSeg(2, A, 4, "REQ 1\n"), ebpfSeg(2, B, 5, "RESP 1 200\n")},
			wantRows: 1,
			want:     Stats{Segments: 6, ConnsInferred: 1, InferenceFailures: 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, rows := newTest(Config{}, fifoProto(), byIDProto())
			for _, s := range tt.segs {
				a.Feed(s)
			}
			if len(*rows) != tt.wantRows {
				t.Errorf("got %d rows, want %d", len(*rows), tt.wantRows)
			}
			s := a.Stats()
			got := Stats{Segments: s.Segments, SegmentsSkipped: s.SegmentsSkipped, ConnsInferred: s.ConnsInferred, InferenceFailures: s.InferenceFailures}
			if got != tt.want {
				t.Errorf("stats = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestProtocolOrder(t *testing.T) {
	// Both protocols claim "REQ ": the first listed wins.
	other := fifoProto()
	other.id = flowlog.L7MySQL
	a, rows := newTest(Config{}, other, fifoProto())
	a.Feed(ebpfSeg(1, capture.AtoB, 0, "REQ 1\n"))
	a.Feed(ebpfSeg(1, capture.BtoA, 1, "RESP 1 200\n"))
	if len(*rows) != 1 || (*rows)[0].L7Protocol != flowlog.L7MySQL || (*rows)[0].L7ProtocolStr != "MySQL" {
		t.Fatalf("rows = %+v", *rows)
	}
}

func TestKernelHintAndVerdicts(t *testing.T) {
	// Both protocols claim "REQ ": the kernel's hint beats list order.
	other := fifoProto()
	other.id = flowlog.L7MySQL
	type verdict struct {
		conn uint64
		p    flowlog.L7Protocol // 0: gave up
	}
	var got []verdict
	cfg := Config{Verdict: func(seg *capture.Segment, p l7.Protocol) {
		v := verdict{conn: seg.ConnID}
		if p != nil {
			v.p = p.ID()
		}
		got = append(got, v)
	}}
	a, rows := newTest(cfg, other, fifoProto())
	seg := ebpfSeg(1, capture.AtoB, 0, "REQ 1\n")
	seg.ProtoHint = uint8(flowlog.L7Redis)
	a.Feed(seg)
	a.Feed(ebpfSeg(1, capture.BtoA, 1, "RESP 1 200\n"))
	// A hint whose parser does not claim the bytes falls back to the list.
	seg = ebpfSeg(2, capture.AtoB, 2, "REQ 1\n")
	seg.ProtoHint = uint8(flowlog.L7DNS)
	a.Feed(seg)
	for i := range 4 {
		a.Feed(ebpfSeg(3, capture.AtoB, 3+i, "??"))
	}
	if len(*rows) != 1 || (*rows)[0].L7Protocol != flowlog.L7Redis {
		t.Fatalf("rows = %+v", *rows)
	}
	want := []verdict{{1, flowlog.L7Redis}, {2, flowlog.L7MySQL}, {3, 0}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("verdicts = %v, want %v", got, want)
	}
}

func TestEviction(t *testing.T) {
	a, rows := newTest(Config{MaxConns: 2}, fifoProto())
	a.Feed(ebpfSeg(1, capture.AtoB, 0, "REQ 1 res=/c1\n"))
	a.Feed(ebpfSeg(2, capture.AtoB, 1, "REQ 1 res=/c2\n"))
	a.Feed(ebpfSeg(1, capture.AtoB, 2, "REQ 2 res=/c1b\n")) // conn 1 is now the most recent
	a.Feed(ebpfSeg(3, capture.AtoB, 3, "REQ 1 res=/c3\n"))  // evicts conn 2
	want := []summary{{Type: flowlog.TypeRequest, Status: flowlog.StatusTimeout, Resource: "/c2", Code: -1, ReqID: -1, Start: at(1), End: at(1)}}
	if got := summarize(*rows); !reflect.DeepEqual(got, want) {
		t.Fatalf("rows:\n got %+v\nwant %+v", got, want)
	}
	// Conn 1 kept its parser state: its responses still pair.
	a.Feed(ebpfSeg(1, capture.BtoA, 4, "RESP 1 200\nRESP 2 200\n"))
	if got := len(*rows); got != 3 {
		t.Fatalf("got %d rows, want 3", got)
	}
	s := a.Stats()
	if s.ConnsEvicted != 1 || s.ConnsTracked != 2 || s.ConnsOpened != 3 {
		t.Errorf("evicted/tracked/opened = %d/%d/%d, want 1/2/3", s.ConnsEvicted, s.ConnsTracked, s.ConnsOpened)
	}
}

func TestPacketObservationPoint(t *testing.T) {
	lo := capture.Tuple{AIP: netip.MustParseAddr("127.0.0.1"), BIP: netip.MustParseAddr("127.0.0.2"), APort: 5000, BPort: 80, L4: 6}
	lo6 := capture.Tuple{AIP: netip.MustParseAddr("::1"), BIP: netip.MustParseAddr("::ffff:127.0.0.1"), APort: 5000, BPort: 80, L4: 6}
	same := capture.Tuple{AIP: ipA, BIP: ipA, APort: 5000, BPort: 80, L4: 6}
	tests := []struct {
		name           string
		tuple          capture.Tuple
		reqDir         capture.Direction
		reqTTL, rspTTL uint8
		want           string
	}{
		{"loopback", lo, capture.AtoB, 63, 63, flowlog.ObsLocalNIC},
		{"loopback v6 and mapped v4", lo6, capture.AtoB, 0, 0, flowlog.ObsLocalNIC},
		{"same address", same, capture.AtoB, 10, 10, flowlog.ObsLocalNIC},
		{"client initial, server routed", tupleAB, capture.AtoB, 64, 61, flowlog.ObsClientNIC},
		{"server initial, client routed", tupleAB, capture.AtoB, 120, 255, flowlog.ObsServerNIC},
		{"both initial", tupleAB, capture.AtoB, 128, 64, flowlog.ObsLocalNIC},
		{"neither initial", tupleAB, capture.AtoB, 60, 250, flowlog.ObsClientNIC},
		{"unknown", tupleAB, capture.AtoB, 0, 0, flowlog.ObsClientNIC},
		{"request from B: B's ttl is the client's", tupleAB, capture.BtoA, 64, 50, flowlog.ObsClientNIC},
		{"request from B, server A initial", tupleAB, capture.BtoA, 50, 64, flowlog.ObsServerNIC},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, rows := newTest(Config{}, fifoProto())
			a.Feed(packetSeg(1, tt.tuple, tt.reqDir, 0, tt.reqTTL, "REQ 1\n"))
			// A later segment's TTL must not replace the first one's.
			a.Feed(packetSeg(1, tt.tuple, tt.reqDir, 1, 1, "REQ 2\n"))
			a.Feed(packetSeg(1, tt.tuple, tt.reqDir.Reverse(), 2, tt.rspTTL, "RESP 1 200\n"))
			a.Feed(packetSeg(1, tt.tuple, tt.reqDir.Reverse(), 3, 1, "RESP 2 200\n"))
			if len(*rows) != 2 {
				t.Fatalf("got %d rows, want 2", len(*rows))
			}
			for _, r := range *rows {
				if r.ObservationPoint != tt.want {
					t.Errorf("observation_point = %q, want %q", r.ObservationPoint, tt.want)
				}
				if r.SignalSource != flowlog.SourcePacket || r.ProcessID0 != 0 || r.ProcessID1 != 0 {
					t.Errorf("signal/process: %+v", r)
				}
				// The client is whoever sent the request.
				wantClient, wantCPort, wantServer, wantSPort := tt.tuple.AIP, tt.tuple.APort, tt.tuple.BIP, tt.tuple.BPort
				if tt.reqDir == capture.BtoA {
					wantClient, wantCPort, wantServer, wantSPort = wantServer, wantSPort, wantClient, wantCPort
				}
				if r.IP0 != wantClient || r.ClientPort != wantCPort || r.IP1 != wantServer || r.ServerPort != wantSPort {
					t.Errorf("endpoints %v:%d -> %v:%d, want %v:%d -> %v:%d", r.IP0, r.ClientPort, r.IP1, r.ServerPort,
						wantClient, wantCPort, wantServer, wantSPort)
				}
			}
		})
	}
}

func TestParserPanicIsContained(t *testing.T) {
	p := fifoProto()
	p.panicOn = "BOOM"
	a, rows := newTest(Config{}, p)
	a.Feed(ebpfSeg(1, capture.AtoB, 0, "REQ 1 res=/ok\n"))
	a.Feed(ebpfSeg(1, capture.AtoB, 1, "REQ 2 BOOM\n"))
	a.Feed(ebpfSeg(1, capture.BtoA, 2, "RESP 1 200\n"))
	a.FlushAll(at(3))
	s := a.Stats()
	if s.ParserPanics != 1 || s.SegmentsSkipped != 1 {
		t.Errorf("panics/skipped = %d/%d, want 1/1", s.ParserPanics, s.SegmentsSkipped)
	}
	// The request parsed before the panic is still reported.
	if got := summarize(*rows); len(got) != 1 || got[0].Type != flowlog.TypeRequest || got[0].Resource != "/ok" {
		t.Errorf("rows = %+v", got)
	}
}

func TestDefaults(t *testing.T) {
	cfg := Config{}.withDefaults()
	if cfg.MaxConns != 65536 || cfg.MaxPendingPerConn != 1024 || cfg.MaxPending != 1<<18 || cfg.InferenceAttempts != 4 ||
		cfg.IdleTimeout != 5*time.Minute || cfg.OrgID != 1 || cfg.TeamID != 1 || cfg.Now == nil || cfg.Logger == nil {
		t.Errorf("defaults: %+v", cfg)
	}
	cfg = Config{OrgID: 7, TeamID: 9, MaxConns: 3}.withDefaults()
	if cfg.OrgID != 7 || cfg.TeamID != 9 || cfg.MaxConns != 3 {
		t.Errorf("explicit values overridden: %+v", cfg)
	}
}

// TestBounded feeds many connections and unanswered requests and checks the
// tables stay within their bounds.
func TestBounded(t *testing.T) {
	a, rows := newTest(Config{MaxConns: 8, MaxPendingPerConn: 4}, fifoProto())
	for i := range 100 {
		for j := range 10 {
			a.Feed(ebpfSeg(uint64(i), capture.AtoB, i*10+j, fmt.Sprintf("REQ %d\n", j)))
		}
		if len(a.conns) > 8 {
			t.Fatalf("tracking %d conns, bound 8", len(a.conns))
		}
		for _, c := range a.conns {
			if len(c.pending) > 4 {
				t.Fatalf("conn %d has %d pending, bound 4", c.id, len(c.pending))
			}
		}
	}
	s := a.Stats()
	if s.ConnsEvicted != 92 || s.PendingDropped != 600 {
		t.Errorf("evicted/dropped = %d/%d, want 92/600", s.ConnsEvicted, s.PendingDropped)
	}
	if s.Pending != 8*4 {
		t.Errorf("Pending = %d, want %d", s.Pending, 8*4)
	}
	a.FlushAll(at(2000))
	if got := len(*rows); got != 1000 {
		t.Errorf("got %d rows, want every request reported once (1000)", got)
	}
}

func FuzzFeed(f *testing.F) {
	f.Add([]byte("REQ 1 res=/a\n"), []byte("RESP 1 200\n"), uint8(0))
	f.Add([]byte("Q 1\nQ 2\n"), []byte("A 2 0\nA 1 0\n"), uint8(3))
	f.Add([]byte("RE"), []byte("\x00\xff"), uint8(7))
	f.Fuzz(func(t *testing.T, req, resp []byte, flags uint8) {
		a, rows := newTest(Config{MaxConns: 2, MaxPendingPerConn: 3, MaxPending: 4, InferenceAttempts: 2}, fifoProto(), byIDProto())
		for i := range 4 {
			conn := uint64(i % 3)
			s := ebpfSeg(conn, capture.AtoB, i*10, string(req))
			if flags&1 != 0 {
				s.Len += 5 // a gap
			}
			a.Feed(s)
			a.Feed(ebpfSeg(conn, capture.BtoA, i*10+1, string(resp)))
			if flags&2 != 0 {
				a.Expire(at(i * 4000))
			}
			if flags&4 != 0 && i == 2 {
				a.CloseConn(capture.Closed{ConnID: conn})
			}
		}
		a.FlushAll(at(100000))
		s := a.Stats()
		if s.ConnsTracked != 0 || s.Pending != 0 {
			t.Fatalf("%d conns, %d requests tracked after FlushAll", s.ConnsTracked, s.Pending)
		}
		// Every request is reported exactly once.
		if s.Requests != s.RowsSession+s.RowsRequest {
			t.Fatalf("requests %d != session rows %d + request rows %d", s.Requests, s.RowsSession, s.RowsRequest)
		}
		if uint64(len(*rows)) != s.RowsSession+s.RowsRequest+s.RowsResponse {
			t.Fatalf("rows emitted %d, stats say %d", len(*rows), s.RowsSession+s.RowsRequest+s.RowsResponse)
		}
	})
}

// TestStatsConcurrent reads Stats while another goroutine feeds (run with -race).
func TestStatsConcurrent(t *testing.T) {
	a, _ := newTest(Config{}, fifoProto())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 200 {
			a.Feed(ebpfSeg(uint64(i%7), capture.AtoB, i, "REQ 1\n"))
		}
	}()
	var last uint64
	for {
		s := a.Stats()
		if s.Segments < last {
			t.Fatalf("segments went back from %d to %d", last, s.Segments)
		}
		last = s.Segments
		select {
		case <-done:
			if s := a.Stats(); s.Segments != 200 || s.Requests != 200 {
				t.Errorf("segments/requests = %d/%d, want 200/200", s.Segments, s.Requests)
			}
			return
		default:
		}
	}
}

func TestMaxPendingTotal(t *testing.T) {
	a, rows := newTest(Config{MaxPending: 3}, fifoProto())
	a.Feed(ebpfSeg(1, capture.AtoB, 0, "REQ 1 res=/1a\nREQ 2 res=/1b\n"))
	a.Feed(ebpfSeg(2, capture.AtoB, 1, "REQ 1 res=/2a\n"))
	a.Feed(ebpfSeg(2, capture.AtoB, 2, "REQ 2 res=/2b\n")) // full: conn 2 gives up its oldest
	a.Feed(ebpfSeg(3, capture.AtoB, 3, "REQ 1 res=/3a\n")) // full, conn 3 holds nothing: reported now
	want := []summary{
		{Type: flowlog.TypeRequest, Status: flowlog.StatusTimeout, Resource: "/2a", Code: -1, ReqID: -1, Start: at(1), End: at(1)},
		{Type: flowlog.TypeRequest, Status: flowlog.StatusTimeout, Resource: "/3a", Code: -1, ReqID: -1, Start: at(3), End: at(3)},
	}
	if got := summarize(*rows); !reflect.DeepEqual(got, want) {
		t.Fatalf("rows:\n got %+v\nwant %+v", got, want)
	}
	if s := a.Stats(); s.Pending != 3 || s.PendingDropped != 2 {
		t.Errorf("pending/dropped = %d/%d, want 3/2", s.Pending, s.PendingDropped)
	}
	a.Feed(ebpfSeg(2, capture.BtoA, 4, "RESP 2 200\n"))
	if got := summarize(*rows); len(got) != 3 || got[2].Resource != "/2b" || got[2].Type != flowlog.TypeSession {
		t.Errorf("rows after response: %+v", got)
	}
	a.FlushAll(at(5))
	if s := a.Stats(); s.Pending != 0 || len(*rows) != 5 {
		t.Errorf("after flush: pending %d, rows %d; want 0, 5", s.Pending, len(*rows))
	}
}

// TestInferenceJoinsSplitStart: a server that reads a message's first bytes
// in one syscall and the rest in the next still gets its connection inferred
// and the message parsed whole.
func TestInferenceJoinsSplitStart(t *testing.T) {
	a, rows := newTest(Config{}, fifoProto())
	a.Feed(ebpfSeg(1, capture.BtoA, 0, "RE"))
	a.Feed(ebpfSeg(1, capture.BtoA, 1, "Q 7 res=/split\n"))
	a.Feed(ebpfSeg(1, capture.AtoB, 2, "RESP 7 200\n"))
	if len(*rows) != 1 {
		t.Fatalf("%d rows", len(*rows))
	}
	r := (*rows)[0]
	if r.Type != flowlog.TypeSession || r.RequestResource != "/split" || !r.StartTime.Equal(at(0)) {
		t.Fatalf("row %+v", r)
	}
}

// TestInferenceFeedsBothHeldDirections: a short first segment held in one
// direction is not lost when the other direction's bytes are the ones that
// get the connection claimed.
func TestInferenceFeedsBothHeldDirections(t *testing.T) {
	a, rows := newTest(Config{}, fifoProto())
	a.Feed(ebpfSeg(1, capture.AtoB, 0, "RE"))              // held: a request's first bytes
	a.Feed(ebpfSeg(1, capture.BtoA, 1, "RESP 0 200\n"))    // claims the connection (a lone response)
	a.Feed(ebpfSeg(1, capture.AtoB, 2, "Q 9 res=/late\n")) // the rest of the held request
	a.Feed(ebpfSeg(1, capture.BtoA, 3, "RESP 9 200\n"))
	var got []string
	for _, r := range *rows {
		got = append(got, fmt.Sprintf("%d:%s", r.Type, r.RequestResource))
	}
	if fmt.Sprint(got) != "[1: 2:/late]" {
		t.Fatalf("rows %v", got)
	}
}
