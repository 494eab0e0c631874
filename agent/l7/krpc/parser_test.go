package krpc

import (
	"strconv"
	"strings"
	"testing"

	"github.com/sightline-io/sightline/agent/capture"
	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/flowlog"
	"github.com/sightline-io/sightline/internal/rpctest"
)

func req(seq int32) []byte {
	m := rpctest.KRPCMeta{Direction: 1, Service: 455, Msg: 30, Sequence: seq, Timeout: 3000,
		TraceID: "gtwdemo-ac110006-463659-122997101", SpanID: "gtwdemo-ac110006-463659-122997102", ParentSpan: "p1"}
	return m.Encode(rpctest.ProtoString("hello"))
}

func resp(seq, code int32, body []byte) []byte {
	m := rpctest.KRPCMeta{Direction: 2, Service: 455, Msg: 30, Sequence: seq, RetCode: code}
	return m.Encode(body)
}

func newParser() l7.Parser { return New(l7.Config{}).NewParser() }

func TestParse(t *testing.T) {
	n := strconv.Itoa
	line := func(typ, id int, code string, status int, exc string, length, capd int, trace, span string) string {
		return `type=` + n(typ) + ` id=` + n(id) + `/true oneway=false ver="" req="30" dom="455" res="455/30" ep="455/30" code=` + code +
			` status=` + n(status) + ` exc="` + exc + `" len=` + n(length) + ` cap=` + n(capd) + ` trace="` + trace + `" span="` + span + `" xrid=""`
	}
	const tr, sp = "gtwdemo-ac110006-463659-122997101", "gtwdemo-ac110006-463659-122997102"
	r1, ok1 := req(1), resp(1, 0, rpctest.ProtoString("hi"))
	biz := resp(2, -1000001, rpctest.KRPCResult(-1000001, "user not found"))
	queue := resp(3, -550, nil)
	hb := (&rpctest.KRPCMeta{Direction: 1, Service: 1, Msg: 1}).Encode(nil)
	hbResp := (&rpctest.KRPCMeta{Direction: 2, Service: 1, Msg: 1}).Encode(nil)
	bigMeta := rpctest.KRPCMeta{Direction: 1, Service: 455, Msg: 30, Sequence: 4, TraceID: tr, SpanID: sp}
	big := bigMeta.Encode(rpctest.ProtoString(strings.Repeat("q", 9000)))
	for _, tt := range []struct {
		name string
		segs []*capture.Segment
		want []string
	}{
		{"success", []*capture.Segment{rpctest.Seg(capture.AtoB, r1, 0), rpctest.Seg(capture.BtoA, ok1, 0)}, []string{
			line(0, 1, "0/false", 0, "", len(r1), len(r1), tr, sp),
			line(1, 1, "0/true", 0, "", len(ok1), len(ok1), "", ""),
		}},
		{"business error with retMsg", []*capture.Segment{rpctest.Seg(capture.BtoA, biz, 0)}, []string{
			line(1, 2, "-1000001/true", 3, "user not found", len(biz), len(biz), "", ""),
		}},
		{"framework error without body", []*capture.Segment{rpctest.Seg(capture.BtoA, queue, 0)}, []string{
			line(1, 3, "-550/true", 3, "QUEUE_FULL", len(queue), len(queue), "", ""),
		}},
		{"heartbeat", []*capture.Segment{rpctest.Seg(capture.AtoB, hb, 0), rpctest.Seg(capture.BtoA, hbResp, 0)}, nil},
		{"truncated then next", []*capture.Segment{rpctest.Seg(capture.AtoB, big[:4096], len(big)-4096), rpctest.Seg(capture.AtoB, r1, 0)}, []string{
			line(0, 4, "0/false", 0, "", len(big), 4096, tr, sp),
			line(0, 1, "0/false", 0, "", len(r1), len(r1), tr, sp),
		}},
		{"mid-connection start", []*capture.Segment{rpctest.Seg(capture.AtoB, big[200:3000], 0), rpctest.Seg(capture.AtoB, r1, 0)}, []string{
			line(0, 1, "0/false", 0, "", len(r1), len(r1), tr, sp),
		}},
		{"garbage", []*capture.Segment{rpctest.Seg(capture.AtoB, []byte("KRAKEN RELEASED"), 0)}, nil},
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
	ok := rpctest.ProtoString("x")
	ms := rpctest.Feed(newParser(),
		rpctest.Seg(capture.AtoB, rpctest.Concat(req(1), req(2)), 0),
		rpctest.Seg(capture.BtoA, rpctest.Concat(resp(2, 0, ok), resp(1, 0, ok)), 0))
	var ids []uint64
	for _, m := range ms {
		ids = append(ids, m.RequestID)
	}
	if len(ids) != 4 || ids[0] != 1 || ids[1] != 2 || ids[2] != 2 || ids[3] != 1 {
		t.Fatalf("ids %v", ids)
	}
}

func TestSplitEveryByte(t *testing.T) {
	rpctest.CheckSplits(t, newParser, req(1), resp(1, -554, nil))
}

func TestHostile(t *testing.T) {
	for _, tt := range []struct {
		name   string
		data   []byte
		msgs   int
		status flowlog.ResponseStatus
	}{
		{"huge packet", []byte("KR\x00\x02\xff\xff\xff\xff\x08\x02"), 0, 0},
		{"head longer than packet", []byte("KR\x00\x09\x00\x00\x00\x02\x08\x02"), 0, 0},
		{"no direction", []byte("KR\x00\x02\x00\x00\x00\x02\x10\x05"), 0, 0},
		{"bad varint after direction", []byte("KR\x00\x04\x00\x00\x00\x04\x08\x02\x30\xff"), 1, flowlog.StatusParseFailed},
		{"trace length past the end", []byte("KR\x00\x04\x00\x00\x00\x04\x08\x02\x3a\x7f"), 1, flowlog.StatusParseFailed},
		{"retMsg not utf-8", []byte("KR\x00\x04\x00\x00\x00\x08\x08\x02\x30\x05\x12\x02\xff\xfe"), 1, flowlog.StatusServerError},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ms := rpctest.Feed(newParser(), rpctest.Seg(capture.BtoA, tt.data, 0))
			if len(ms) != tt.msgs {
				t.Fatalf("%d messages, want %d: %q", len(ms), tt.msgs, rpctest.Summaries(ms))
			}
			if len(ms) == 1 && ms[0].Status != tt.status {
				t.Fatalf("status %d, want %d: %q", ms[0].Status, tt.status, rpctest.Summaries(ms))
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
		{"response", resp(1, 0, nil), 6, l7.IsResponse},
		{"short", []byte("KR\x00"), 6, l7.NeedMore},
		{"udp", req(1), 17, l7.NotMine},
		{"text", []byte("KRB5 ticket please"), 6, l7.NotMine},
		{"direction 3", []byte("KR\x00\x02\x00\x00\x00\x02\x08\x03"), 6, l7.NotMine},
		{"http", []byte("GET / HTTP/1.1\r\n"), 6, l7.NotMine},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := p.Infer(tt.data, tt.l4); got != tt.want {
				t.Errorf("Infer = %d, want %d", got, tt.want)
			}
		})
	}
	if p.ID() != L7KRPC || p.Matching() != l7.MatchByID || p.Timeout() != DefaultTimeout || New(l7.Config{Timeout: 3}).Timeout() != 3 {
		t.Fatal("identity")
	}
}
