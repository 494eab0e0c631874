package kafka

import (
	"encoding/binary"
	"testing"

	"github.com/sightline-io/sightline/agent/capture"
	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/flowlog"
	"github.com/sightline-io/sightline/internal/parsertest"
)

// want is the expected outcome of one exchange.
type want struct {
	typ, domain, resource, endpoint, version string
	id                                       uint64
	oneWay                                   bool
	code                                     int32
	hasCode                                  bool
	status                                   flowlog.ResponseStatus
	exception                                string
	noResponse                               bool
}

type exchange struct {
	name string
	req  []byte
	resp []byte
	want want
}

func exchanges() []exchange {
	return []exchange{
		{"produce v9", reqFrame(1, "cli", produceReq(9, -1, "orders", 2)), respFrame(1, produceResp(9, "orders", 0)),
			want{typ: "Produce", domain: "orders", resource: "orders:2", endpoint: "Produce orders", version: "9", id: 1, hasCode: true}},
		{"produce v7 two partitions", reqFrame(2, "", produceReq(7, 1, "orders", 0, 1)), respFrame(2, produceResp(7, "orders", 6)),
			want{typ: "Produce", domain: "orders", resource: "orders:0", endpoint: "Produce orders", version: "7", id: 2, code: 6, hasCode: true,
				status: flowlog.StatusServerError, exception: "NOT_LEADER_FOR_PARTITION"}},
		{"produce acks=0", reqFrame(3, "cli", produceReq(11, 0, "orders", 0)), nil,
			want{typ: "Produce", domain: "orders", resource: "orders:0", endpoint: "Produce orders", version: "11", id: 3, oneWay: true, noResponse: true}},
		{"metadata v12 unknown topic", reqFrame(4, "cli", metadataReq(12, "missing")), respFrame(4, metadataResp(12, "missing", 3)),
			want{typ: "Metadata", domain: "missing", resource: "missing", endpoint: "Metadata missing", version: "12", id: 4, code: 3, hasCode: true,
				status: flowlog.StatusServerError, exception: "UNKNOWN_TOPIC_OR_PARTITION"}},
		{"metadata v4", reqFrame(5, "cli", metadataReq(4, "orders")), respFrame(5, metadataResp(4, "orders", 0)),
			want{typ: "Metadata", domain: "orders", resource: "orders", endpoint: "Metadata orders", version: "4", id: 5, hasCode: true}},
		{"fetch v11", reqFrame(6, "cli", fetchReq(11, "orders")), respFrame(6, fetchResp(11, 0, 1)),
			want{typ: "Fetch", domain: "orders", resource: "orders:0", endpoint: "Fetch orders", version: "11", id: 6, code: 1, hasCode: true,
				status: flowlog.StatusClientError, exception: "OFFSET_OUT_OF_RANGE"}},
		{"fetch v16 by topic id", reqFrame(7, "cli", fetchReq(16, "")), respFrame(7, fetchResp(16, 0, 0)),
			want{typ: "Fetch", domain: "AQIDBAUGBwgJCgsMDQ4PEA", resource: "AQIDBAUGBwgJCgsMDQ4PEA:0", endpoint: "Fetch AQIDBAUGBwgJCgsMDQ4PEA",
				version: "16", id: 7, hasCode: true}},
		{"fetch v16 session error", reqFrame(8, "cli", fetchReq(16, "")), respFrame(8, fetchResp(16, 70, 0)),
			want{typ: "Fetch", domain: "AQIDBAUGBwgJCgsMDQ4PEA", resource: "AQIDBAUGBwgJCgsMDQ4PEA:0", endpoint: "Fetch AQIDBAUGBwgJCgsMDQ4PEA",
				version: "16", id: 8, code: 70, hasCode: true, status: flowlog.StatusServerError, exception: "FETCH_SESSION_ID_NOT_FOUND"}},
		{"join group rebalance", reqFrame(9, "cli", joinReq(9, "grp")), respFrame(9, joinResp(9, 27)),
			want{typ: "JoinGroup", domain: "grp", resource: "grp", endpoint: "JoinGroup", version: "9", id: 9, code: 27, hasCode: true,
				status: flowlog.StatusClientError, exception: "REBALANCE_IN_PROGRESS"}},
		{"api versions v3 (response header v0)", reqFrame(0, "cli", apiVersionsReq(3)), respFrame(0, apiVersionsResp(3, 0)),
			want{typ: "ApiVersions", endpoint: "ApiVersions", version: "3", id: 0, hasCode: true}},
		{"api versions v4 unsupported", reqFrame(10, "cli", apiVersionsReq(4)), respFrame(10, apiVersionsResp(0, 35)),
			want{typ: "ApiVersions", endpoint: "ApiVersions", version: "4", id: 10, code: 35, hasCode: true,
				status: flowlog.StatusClientError, exception: "UNSUPPORTED_VERSION"}},
		{"find coordinator v4", reqFrame(11, "cli", findCoordReq(4, "grp")), respFrame(11, findCoordResp(4, 15)),
			want{typ: "FindCoordinator", domain: "grp", resource: "grp", endpoint: "FindCoordinator", version: "4", id: 11, code: 15, hasCode: true,
				status: flowlog.StatusServerError, exception: "COORDINATOR_NOT_AVAILABLE"}},
		{"find coordinator v2", reqFrame(12, "cli", findCoordReq(2, "grp")), respFrame(12, findCoordResp(2, 0)),
			want{typ: "FindCoordinator", domain: "grp", resource: "grp", endpoint: "FindCoordinator", version: "2", id: 12, hasCode: true}},
		{"offset fetch v9", reqFrame(13, "cli", offsetFetchReq(9, "grp")), respFrame(13, offsetFetchResp(9, 0, 30)),
			want{typ: "OffsetFetch", domain: "grp", resource: "grp", endpoint: "OffsetFetch", version: "9", id: 13, code: 30, hasCode: true,
				status: flowlog.StatusClientError, exception: "GROUP_AUTHORIZATION_FAILED"}},
		{"offset fetch v5", reqFrame(14, "cli", offsetFetchReq(5, "grp")), respFrame(14, offsetFetchResp(5, 3, 0)),
			want{typ: "OffsetFetch", domain: "grp", resource: "grp", endpoint: "OffsetFetch", version: "5", id: 14, code: 3, hasCode: true,
				status: flowlog.StatusServerError, exception: "UNKNOWN_TOPIC_OR_PARTITION"}},
		{"heartbeat v4 unknown member", reqFrame(15, "cli", heartbeatReq(4, "grp")), respFrame(15, heartbeatResp(4, 25)),
			want{typ: "Heartbeat", domain: "grp", resource: "grp", endpoint: "Heartbeat", version: "4", id: 15, code: 25, hasCode: true,
				status: flowlog.StatusClientError, exception: "UNKNOWN_MEMBER_ID"}},
	}
}

// parsertest.Collector gathers a parser's messages, copying them.

func checkExchange(t *testing.T, msgs []l7.Message, w want) {
	t.Helper()
	n := 2
	if w.noResponse {
		n = 1
	}
	if len(msgs) != n {
		t.Fatalf("got %d messages, want %d: %+v", len(msgs), n, msgs)
	}
	q := msgs[0]
	if q.Type != l7.Request || q.RequestType != w.typ || q.Domain != w.domain || q.Resource != w.resource ||
		q.Endpoint != w.endpoint || q.Version != w.version || !q.HasRequestID || q.RequestID != w.id || q.OneWay != w.oneWay ||
		q.Protocol != flowlog.L7Kafka || q.Length < int64(q.Captured) {
		t.Errorf("request = %+v\nwant %+v", q, w)
	}
	if w.noResponse {
		return
	}
	r := msgs[1]
	if r.Type != l7.Response || r.RequestID != w.id || !r.HasRequestID || r.HasCode != w.hasCode || r.Code != w.code ||
		r.Status != w.status || r.Exception != w.exception || r.Version != w.version {
		t.Errorf("response = %+v\nwant %+v", r, w)
	}
}

func TestExchanges(t *testing.T) {
	for _, x := range exchanges() {
		t.Run(x.name, func(t *testing.T) {
			p := New(l7.Config{}).NewParser()
			var c parsertest.Collector
			p.Feed(parsertest.Whole(capture.AtoB, x.req), c.Emit)
			if x.resp != nil {
				p.Feed(parsertest.Whole(capture.BtoA, x.resp), c.Emit)
			}
			checkExchange(t, c.Msgs, x.want)
		})
	}
}

// TestSplitEveryByte feeds each exchange cut at every byte boundary.
func TestSplitEveryByte(t *testing.T) {
	for _, x := range exchanges() {
		for _, part := range []int{0, 1} {
			b := x.req
			if part == 1 {
				b = x.resp
			}
			for cut := 1; cut < len(b); cut++ {
				p := New(l7.Config{}).NewParser()
				var c parsertest.Collector
				if part == 0 {
					p.Feed(parsertest.Whole(capture.AtoB, b[:cut]), c.Emit)
					p.Feed(parsertest.Whole(capture.AtoB, b[cut:]), c.Emit)
					if x.resp != nil {
						p.Feed(parsertest.Whole(capture.BtoA, x.resp), c.Emit)
					}
				} else {
					p.Feed(parsertest.Whole(capture.AtoB, x.req), c.Emit)
					p.Feed(parsertest.Whole(capture.BtoA, b[:cut]), c.Emit)
					p.Feed(parsertest.Whole(capture.BtoA, b[cut:]), c.Emit)
				}
				if len(c.Msgs) != 1+boolInt(x.resp != nil) {
					t.Fatalf("%s cut %d of part %d: %d messages", x.name, cut, part, len(c.Msgs))
				}
				checkExchange(t, c.Msgs, x.want)
			}
		}
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestPipelined sends every request in one segment and every response in
// another, with the topic id learnt from Metadata first.
func TestPipelined(t *testing.T) {
	p := New(l7.Config{}).NewParser()
	var reqs, resps []byte
	reqs = append(reqs, reqFrame(1, "c", metadataReq(12, "orders"))...)
	resps = append(resps, respFrame(1, metadataResp(12, "orders", 0))...)
	var c parsertest.Collector
	p.Feed(parsertest.Whole(capture.AtoB, reqs), c.Emit)
	p.Feed(parsertest.Whole(capture.BtoA, resps), c.Emit)
	reqs, resps = nil, nil
	for i := int32(2); i < 50; i++ {
		reqs = append(reqs, reqFrame(i, "c", produceReq(13, -1, "", 0))...)
		if i%7 != 0 { // some responses lost: their requests are forgotten
			resps = append(resps, respFrame(i, produceResp(13, "", 0))...)
		}
	}
	p.Feed(parsertest.Whole(capture.AtoB, reqs), c.Emit)
	p.Feed(parsertest.Whole(capture.BtoA, resps), c.Emit)
	var nreq, nresp int
	for _, m := range c.Msgs {
		if m.Type == l7.Request {
			nreq++
			if m.RequestID >= 2 && (m.Domain != "orders" || m.Resource != "orders:0") {
				t.Fatalf("topic id not resolved: %+v", m)
			}
		} else {
			nresp++
			if m.Status != flowlog.StatusSuccess || !m.HasCode {
				t.Fatalf("response %+v", m)
			}
		}
	}
	if nreq != 49 || nresp != 49-7 {
		t.Fatalf("requests %d responses %d", nreq, nresp)
	}
	if s := p.(*Parser).Stats(); s.DroppedReqs != 6 || s.Unmatched != 0 {
		t.Fatalf("stats %+v", s)
	}
}

// TestTruncated delivers a large Produce with only its prefix captured,
// then a normal exchange on the same connection.
func TestTruncated(t *testing.T) {
	big := reqFrame(1, "cli", produceReq(9, -1, "orders", 0))
	pr := produceReq(9, -1, "orders", 0)
	pr.Topics[0].Partitions[0].Records = make([]byte, 100000)
	big = reqFrame(1, "cli", pr)
	resp := respFrame(1, produceResp(9, "orders", 0))
	p := New(l7.Config{}).NewParser()
	var c parsertest.Collector
	s := parsertest.Whole(capture.AtoB, big[:4096])
	s.Len = len(big)
	p.Feed(s, c.Emit)
	p.Feed(parsertest.Whole(capture.BtoA, resp), c.Emit)
	x := exchanges()[0]
	p.Feed(parsertest.Whole(capture.AtoB, x.req), c.Emit)
	p.Feed(parsertest.Whole(capture.BtoA, x.resp), c.Emit)
	if len(c.Msgs) != 4 {
		t.Fatalf("%d messages: %+v", len(c.Msgs), c.Msgs)
	}
	if m := c.Msgs[0]; m.Length != int64(len(big)) || m.Captured != 4096 || m.Resource != "orders:0" {
		t.Fatalf("truncated request %+v", m)
	}
	checkExchange(t, c.Msgs[2:], x.want)

	// A response truncated before its error code: emitted, no code.
	p = New(l7.Config{}).NewParser()
	c = parsertest.Collector{}
	mr := respFrame(5, metadataResp(12, "orders", 3))
	p.Feed(parsertest.Whole(capture.AtoB, reqFrame(5, "c", metadataReq(12, "orders"))), c.Emit)
	s = parsertest.Whole(capture.BtoA, mr[:30])
	s.Len = len(mr)
	p.Feed(s, c.Emit)
	if len(c.Msgs) != 2 || c.Msgs[1].HasCode || c.Msgs[1].Status != flowlog.StatusSuccess || c.Msgs[1].Length != int64(len(mr)) {
		t.Fatalf("truncated response %+v", c.Msgs)
	}
}

// TestMidConnection starts inside a request: framing waits for a segment
// that starts with a request, and a response to an unseen request is still
// reported (parse failed: its API is unknown).
func TestMidConnection(t *testing.T) {
	x := exchanges()[0]
	p := New(l7.Config{}).NewParser()
	var c parsertest.Collector
	p.Feed(parsertest.Whole(capture.AtoB, x.req[7:]), c.Emit)
	p.Feed(parsertest.Whole(capture.BtoA, x.resp[3:]), c.Emit)
	p.Feed(parsertest.Whole(capture.AtoB, x.req), c.Emit)
	p.Feed(parsertest.Whole(capture.BtoA, x.resp), c.Emit)
	p.Feed(parsertest.Whole(capture.BtoA, respFrame(99, produceResp(9, "orders", 0))), c.Emit)
	if len(c.Msgs) != 3 {
		t.Fatalf("%d messages: %+v", len(c.Msgs), c.Msgs)
	}
	if m := c.Msgs[2]; m.Type != l7.Response || m.RequestID != 99 || m.Status != flowlog.StatusParseFailed {
		t.Fatalf("unmatched response %+v", m)
	}
	checkExchange(t, c.Msgs[:2], x.want)
}

// TestHeadless starts with a request whose size prefix was read in an
// earlier, unseen syscall, as brokers read requests.
func TestHeadless(t *testing.T) {
	x := exchanges()[0]
	p := New(l7.Config{}).NewParser()
	var c parsertest.Collector
	p.Feed(parsertest.Whole(capture.AtoB, x.req[4:]), c.Emit)
	p.Feed(parsertest.Whole(capture.BtoA, x.resp), c.Emit)
	p.Feed(parsertest.Whole(capture.AtoB, x.req[:4]), c.Emit)
	p.Feed(parsertest.Whole(capture.AtoB, x.req[4:]), c.Emit)
	p.Feed(parsertest.Whole(capture.BtoA, x.resp), c.Emit)
	if len(c.Msgs) != 4 {
		t.Fatalf("%d messages: %+v", len(c.Msgs), c.Msgs)
	}
	checkExchange(t, c.Msgs[:2], x.want)
	checkExchange(t, c.Msgs[2:], x.want)
	if m := c.Msgs[0]; m.Length != int64(len(x.req)) || m.Captured != uint32(len(x.req)-4) {
		t.Fatalf("headless length %d captured %d", m.Length, m.Captured)
	}
	if m := c.Msgs[2]; m.Length != int64(len(x.req)) || m.Captured != uint32(len(x.req)) {
		t.Fatalf("length %d captured %d", m.Length, m.Captured)
	}
}

// TestHostile feeds garbage and absurd values; nothing may panic and
// framing must recover at the next segment.
func TestHostile(t *testing.T) {
	x := exchanges()[0]
	huge := []byte{0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 9, 0, 0, 0, 1, 0, 0}
	negCount := reqFrame(1, "c", produceReq(9, -1, "orders", 0))
	// Produce v9 body: tags(1) txn id(1) acks(2) timeout(4), then the
	// compact topics count: make it absurd.
	off := 4 + 10 + 1 + 1 + 1 + 2 + 4 + 1
	copy(negCount[off:], []byte{0xff, 0xff, 0xff, 0xff, 0x0f})
	badKey := append([]byte(nil), x.req...)
	binary.BigEndian.PutUint16(badKey[4:], 999)
	cases := [][]byte{
		huge,
		[]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
		{0, 0, 0, 2, 0, 0},
		negCount,
		badKey,
		{0, 0, 0, 0x0c, 0, 0, 0, 9, 0, 0, 0, 1, 0xff, 0xfe},
	}
	for i, g := range cases {
		p := New(l7.Config{}).NewParser()
		var c parsertest.Collector
		p.Feed(parsertest.Whole(capture.AtoB, x.req), c.Emit)
		p.Feed(parsertest.Whole(capture.BtoA, x.resp), c.Emit)
		p.Feed(parsertest.Whole(capture.AtoB, g), c.Emit)
		p.Feed(parsertest.Whole(capture.BtoA, g), c.Emit)
		// Exchanges may be lost to the garbage's framing; the last parses.
		for range 3 {
			p.Feed(parsertest.Whole(capture.AtoB, x.req), c.Emit)
			p.Feed(parsertest.Whole(capture.BtoA, x.resp), c.Emit)
		}
		if len(c.Msgs) < 4 {
			t.Fatalf("case %d: %d messages", i, len(c.Msgs))
		}
		checkExchange(t, c.Msgs[len(c.Msgs)-2:], x.want)
	}
}

func TestInfer(t *testing.T) {
	x := exchanges()
	tests := []struct {
		name string
		in   []byte
		want l7.Inference
	}{
		{"produce", x[0].req, l7.IsRequest},
		{"api versions", x[9].req, l7.IsRequest},
		{"prefix", x[0].req[:8], l7.NeedMore},
		{"produce v2", reqFrame(1, "c", produceReq(2, 1, "t", 0)), l7.NotMine},
		{"size alone", x[0].req[:4], l7.NeedMore},
		{"headless produce", x[0].req[4:], l7.IsRequest},
		{"headless fetch", x[5].req[4:], l7.IsRequest},
		{"response", x[0].resp, l7.NotMine},
		{"api versions response", x[9].resp, l7.NotMine},
		{"metadata response", x[3].resp, l7.NotMine},
		{"produce response", x[1].resp, l7.NotMine},
		{"headless response", x[9].resp[4:], l7.NotMine},
		{"http", []byte("GET / HTTP/1.1\r\n"), l7.NotMine},
		{"tls", []byte("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"), l7.NotMine},
		{"redis", []byte("*2\r\n$3\r\nGET\r\n$1\r\na\r\n"), l7.NotMine},
		{"mysql greeting", []byte("\x4a\x00\x00\x00\x0a8.0.36\x00\x01\x00\x00\x00"), l7.NotMine},
		{"bad version", []byte{0, 0, 0, 20, 0, 0, 0, 99, 0, 0, 0, 1, 0, 0}, l7.NotMine},
		{"negative corr", []byte{0, 0, 0, 20, 0, 0, 0, 9, 0xff, 0, 0, 1, 0, 0}, l7.NotMine},
		{"binary client id", []byte{0, 0, 0, 20, 0, 3, 0, 9, 0, 0, 0, 1, 0, 3, 1, 2, 3}, l7.NotMine},
	}
	p := New(l7.Config{})
	for _, tt := range tests {
		if got := p.Infer(tt.in, 6); got != tt.want {
			t.Errorf("%s: Infer = %v, want %v", tt.name, got, tt.want)
		}
	}
	if p.Infer(x[0].req, 17) != l7.NotMine {
		t.Error("claimed UDP")
	}
}

func TestHeaderVersions(t *testing.T) {
	tests := []struct {
		key, ver   int16
		reqH, resH int
	}{
		{keyProduce, 8, 1, 0}, {keyProduce, 9, 2, 1}, {keyFetch, 11, 1, 0}, {keyFetch, 12, 2, 1},
		{keyMetadata, 9, 2, 1}, {keyOffsetCommit, 8, 2, 1}, {keyOffsetFetch, 6, 2, 1},
		{keyFindCoordinator, 3, 2, 1}, {keyJoinGroup, 6, 2, 1}, {keyHeartbeat, 4, 2, 1},
		{keyLeaveGroup, 4, 2, 1}, {keySyncGroup, 4, 2, 1}, {keyApiVersions, 3, 2, 0},
		{keyCreateTopics, 5, 2, 1}, {keyListOffsets, 6, 2, 1}, {keyListOffsets, 5, 1, 0},
		{keySaslHandshake, 1, 1, 0}, {keyConsumerGroupHeartbeat, 0, 2, 1},
	}
	for _, tt := range tests {
		if h := requestHeaderVersion(tt.key, tt.ver); h != tt.reqH {
			t.Errorf("request header of %d v%d = %d", tt.key, tt.ver, h)
		}
		if h := responseHeaderVersion(tt.key, tt.ver); h != tt.resH {
			t.Errorf("response header of %d v%d = %d", tt.key, tt.ver, h)
		}
	}
	for key := range apis {
		if apis[key].name == "" {
			t.Errorf("api %d has no name", key)
		}
	}
}
