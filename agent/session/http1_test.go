package session

import (
	"testing"

	"github.com/sightline-io/sightline/agent/capture"
	"github.com/sightline-io/sightline/agent/l7/http1"
	"github.com/sightline-io/sightline/flowlog"
)

// TestHTTP1 runs the real HTTP/1 parser through the assembler: pipelined
// requests split across syscalls, a body, a 404, a request left unanswered,
// and a non-HTTP connection next to it.
func TestHTTP1(t *testing.T) {
	const (
		req1 = "GET /api/users HTTP/1.1\r\nHost: example.com\r\nX-Request-ID: rq-1\r\n" +
			"traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n\r\n"
		req2  = "POST /api/items HTTP/1.1\r\nHost: example.com\r\nContent-Length: 4\r\n\r\nabcd"
		req3  = "GET /never HTTP/1.1\r\nHost: example.com\r\n\r\n"
		resp1 = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Request-ID: rs-1\r\n\r\nhello"
		resp2 = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
	)
	a, rows := newTest(Config{}, http1.New())
	// Pipelined requests, the second split mid-head.
	a.Feed(ebpfSeg(1, capture.AtoB, 0, req1+req2[:20]))
	a.Feed(ebpfSeg(1, capture.AtoB, 1, req2[20:]))
	a.Feed(ebpfSeg(1, capture.BtoA, 10, resp1[:30]))
	a.Feed(ebpfSeg(1, capture.BtoA, 11, resp1[30:]+resp2))
	a.Feed(ebpfSeg(1, capture.AtoB, 20, req3))
	// A connection that is not HTTP is given up on.
	for i := range DefaultInferenceAttempts + 2 {
		a.Feed(ebpfSeg(2, capture.AtoB, 30+i, "\x16\x03\x01\x02\x00binary"))
	}
	a.CloseConn(capture.Closed{ConnID: 1, Time: at(30)})

	if len(*rows) != 3 {
		t.Fatalf("got %d rows, want 3: %+v", len(*rows), *rows)
	}
	r1, r2, r3 := (*rows)[0], (*rows)[1], (*rows)[2]
	check := func(name string, ok bool, row *flowlog.L7FlowLog) {
		t.Helper()
		if !ok {
			t.Errorf("%s: %+v", name, row)
		}
	}
	check("row 1 session", r1.Type == flowlog.TypeSession && r1.L7Protocol == flowlog.L7HTTP1 &&
		r1.L7ProtocolStr == "HTTP" && r1.Version == "1.1" && r1.RequestType == "GET" &&
		r1.RequestDomain == "example.com" && r1.ResponseCode != nil && *r1.ResponseCode == 200 &&
		r1.ResponseStatus == flowlog.StatusSuccess, r1)
	check("row 1 ids", r1.XRequestID0 == "rq-1" && r1.XRequestID1 == "rs-1" &&
		r1.TraceID == "0af7651916cd43dd8448eb211c80319c" && r1.SpanID == "b7ad6b7169203331", r1)
	check("row 1 lengths", r1.RequestLength == int64(len(req1)) && r1.ResponseLength == int64(len(resp1)), r1)
	check("row 1 times", r1.StartTime.Equal(at(0)) && r1.EndTime.Equal(end(11)) && r1.ResponseDuration == us(11), r1)
	check("row 1 identity", r1.ObservationPoint == flowlog.ObsClientProcess && r1.ProcessID0 == 42 &&
		r1.IP0 == ipA && r1.ServerPort == 8080 && r1.SyscallThread0 == 100 && r1.SyscallThread1 == 110, r1)
	check("row 2 session 404", r2.Type == flowlog.TypeSession && r2.RequestType == "POST" &&
		r2.ResponseCode != nil && *r2.ResponseCode == 404 && r2.ResponseStatus == flowlog.StatusClientError &&
		r2.RequestLength == int64(len(req2)) && r2.StartTime.Equal(at(0)), r2)
	check("row 3 timeout", r3.Type == flowlog.TypeRequest && r3.ResponseStatus == flowlog.StatusTimeout &&
		r3.RequestType == "GET" && r3.ResponseLength == -1, r3)

	s := a.Stats()
	if s.InferenceFailures != 1 || s.SegmentsSkipped != 2 || s.ConnsInferred != 1 {
		t.Errorf("stats: %+v", s)
	}
}

// TestHTTP1Packets checks a packet-sourced HTTP exchange whose client is B
// (the request goes BtoA), captured on the server's NIC (A's TTL is initial).
func TestHTTP1Packets(t *testing.T) {
	a, rows := newTest(Config{}, http1.New())
	a.Feed(packetSeg(1, tupleAB, capture.BtoA, 0, 61, "GET / HTTP/1.0\r\n\r\n"))
	a.Feed(packetSeg(1, tupleAB, capture.AtoB, 5, 64, "HTTP/1.0 500 Internal Server Error\r\n\r\nboom"))
	a.CloseConn(capture.Closed{ConnID: 1, Time: at(6)}) // ends the close-delimited body
	if len(*rows) != 1 {
		t.Fatalf("got %d rows, want 1: %+v", len(*rows), *rows)
	}
	r := (*rows)[0]
	if r.Type != flowlog.TypeSession || r.ResponseStatus != flowlog.StatusServerError || r.SignalSource != flowlog.SourcePacket ||
		r.ObservationPoint != flowlog.ObsServerNIC || r.IP0 != ipB || r.ClientPort != 8080 || r.IP1 != ipA || r.ServerPort != 40000 {
		t.Errorf("row: %+v", r)
	}
}
