package brpc

import (
	"encoding/binary"
	"strconv"
	"strings"
	"testing"

	"github.com/sightline-io/sightline/agent/capture"
	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/flowlog"
	"github.com/sightline-io/sightline/internal/rpctest"
)

const svc = "example.EchoService"

func req(id uint64) []byte {
	q := rpctest.BRPCRequest{ID: id, Service: svc, Method: "Echo", LogID: 7, TraceID: 0xabc, SpanID: 0xdef, Parent: 0x1,
		RequestID: "rid-9", Payload: rpctest.ProtoString("hello")}
	return q.Encode()
}

func okResp(id uint64) []byte { return rpctest.BRPCResponse(id, 0, "", rpctest.ProtoString("hello")) }

func newParser() l7.Parser { return New(l7.Config{}).NewParser() }

func TestParse(t *testing.T) {
	n := strconv.Itoa
	reqLine := func(id int, method string, length, capd int) string {
		return `type=0 id=` + n(id) + `/true oneway=false ver="" req="` + method + `" dom="` + svc + `" res="` + svc + "/" + method + `" ep="` + svc + "/" + method +
			`" code=0/false status=0 exc="" len=` + n(length) + ` cap=` + n(capd) + ` trace="0000000000000abc" span="0000000000000def" xrid="rid-9"`
	}
	respLine := func(id int, code int32, status int, exc string, length int) string {
		return `type=1 id=` + n(id) + `/true oneway=false ver="" req="" dom="" res="" ep="" code=` + strconv.Itoa(int(code)) + `/true status=` + n(status) +
			` exc="` + exc + `" len=` + n(length) + ` cap=` + n(length) + ` trace="" span="" xrid=""`
	}
	big := (&rpctest.BRPCRequest{ID: 5, Service: svc, Method: "Echo", TraceID: 0xabc, SpanID: 0xdef, RequestID: "rid-9",
		Payload: rpctest.ProtoString(strings.Repeat("z", 9000)), Attachment: []byte("att")}).Encode()
	noMethod := rpctest.BRPCResponse(2, 1002, "", nil)
	timedOut := rpctest.BRPCResponse(3, 1008, "reached timeout=100ms", nil)
	sysErr := rpctest.BRPCResponse(4, 104, "Connection reset by peer", nil)
	r1 := req(1)
	for _, tt := range []struct {
		name string
		segs []*capture.Segment
		want []string
	}{
		{"success", []*capture.Segment{rpctest.Seg(capture.AtoB, r1, 0), rpctest.Seg(capture.BtoA, okResp(1), 0)}, []string{
			reqLine(1, "Echo", len(r1), len(r1)),
			respLine(1, 0, 0, "", len(okResp(1))),
		}},
		{"ENOMETHOD without text", []*capture.Segment{rpctest.Seg(capture.BtoA, noMethod, 0)}, []string{respLine(2, 1002, 4, "ENOMETHOD", len(noMethod))}},
		{"ERPCTIMEDOUT", []*capture.Segment{rpctest.Seg(capture.BtoA, timedOut, 0)}, []string{respLine(3, 1008, 3, "reached timeout=100ms", len(timedOut))}},
		{"system errno", []*capture.Segment{rpctest.Seg(capture.BtoA, sysErr, 0)}, []string{respLine(4, 104, 3, "Connection reset by peer", len(sysErr))}},
		{"truncated then next", []*capture.Segment{rpctest.Seg(capture.AtoB, big[:4096], len(big)-4096), rpctest.Seg(capture.AtoB, r1, 0)}, []string{
			reqLine(5, "Echo", len(big), 4096),
			reqLine(1, "Echo", len(r1), len(r1)),
		}},
		{"mid-connection start", []*capture.Segment{rpctest.Seg(capture.AtoB, big[100:3000], 0), rpctest.Seg(capture.AtoB, r1, 0)}, []string{
			reqLine(1, "Echo", len(r1), len(r1)),
		}},
		{"garbage", []*capture.Segment{rpctest.Seg(capture.AtoB, []byte("PRPX0000000000000"), 0)}, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := rpctest.Summaries(rpctest.Feed(newParser(), tt.segs...))
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

func TestPipelinedOutOfOrder(t *testing.T) {
	ms := rpctest.Feed(newParser(),
		rpctest.Seg(capture.AtoB, rpctest.Concat(req(1), req(2)), 0),
		rpctest.Seg(capture.BtoA, rpctest.Concat(okResp(2), okResp(1)), 0))
	var ids []uint64
	for _, m := range ms {
		ids = append(ids, m.RequestID)
	}
	if len(ids) != 4 || ids[0] != 1 || ids[1] != 2 || ids[2] != 2 || ids[3] != 1 {
		t.Fatalf("ids %v", ids)
	}
}

func TestSplitEveryByte(t *testing.T) {
	rpctest.CheckSplits(t, newParser, req(1), okResp(1))
}

func TestHostile(t *testing.T) {
	frame := func(body, meta uint32, rest []byte) []byte {
		b := []byte("PRPC00000000")
		binary.BigEndian.PutUint32(b[4:], body)
		binary.BigEndian.PutUint32(b[8:], meta)
		return append(b, rest...)
	}
	for _, tt := range []struct {
		name   string
		data   []byte
		msgs   int
		status flowlog.ResponseStatus
	}{
		{"huge body", frame(0xffffffff, 1, nil), 0, 0},
		{"meta larger than body", frame(4, 8, []byte{1, 2, 3, 4}), 0, 0},
		{"meta with a bad tag", frame(3, 3, []byte{0xff, 0xff, 0xff}), 1, flowlog.StatusParseFailed},
		{"request meta length past the end", frame(3, 3, []byte{0x0a, 0x7f, 0x0a}), 1, flowlog.StatusParseFailed},
		{"deeply nested lengths", frame(6, 6, []byte{0x0a, 4, 0x0a, 2, 0x0a, 0}), 1, 0},
		{"negative error code", frame(13, 13, []byte{0x12, 11, 0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}), 1, flowlog.StatusServerError},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ms := rpctest.Feed(newParser(), rpctest.Seg(capture.BtoA, tt.data, 0))
			if len(ms) != tt.msgs {
				t.Fatalf("%d messages, want %d: %q", len(ms), tt.msgs, rpctest.Summaries(ms))
			}
			if len(ms) == 1 && ms[0].Type == l7.Response && ms[0].Status != tt.status {
				t.Fatalf("status %d, want %d", ms[0].Status, tt.status)
			}
		})
	}
}

func TestInfer(t *testing.T) {
	p := New(l7.Config{})
	for _, tt := range []struct {
		name string
		data []byte
		l4   uint8
		want l7.Inference
	}{
		{"request", req(1), 6, l7.IsRequest},
		{"response", okResp(1), 6, l7.IsResponse},
		{"short", []byte("PRP"), 6, l7.NeedMore},
		{"header only", req(1)[:12], 6, l7.NeedMore},
		{"udp", req(1), 17, l7.NotMine},
		{"http", []byte("POST / HTTP/1.1\r\n"), 6, l7.NotMine},
		{"hulu pbrpc", []byte("HULU\x00\x00\x00\x10\x00\x00\x00\x08"), 6, l7.NotMine},
		{"bad first meta field", rpctest.Concat([]byte("PRPC\x00\x00\x00\x02\x00\x00\x00\x02"), []byte{0x2a, 0}), 6, l7.NotMine},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := p.Infer(tt.data, tt.l4); got != tt.want {
				t.Errorf("Infer = %d, want %d", got, tt.want)
			}
		})
	}
	if p.ID() != flowlog.L7BRPC || p.Matching() != l7.MatchByID || p.Timeout() != DefaultTimeout || New(l7.Config{Timeout: 3}).Timeout() != 3 {
		t.Fatal("identity")
	}
}
