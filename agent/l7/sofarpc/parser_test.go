package sofarpc

import (
	"strconv"
	"strings"
	"testing"

	"github.com/sightline-io/sightline/agent/capture"
	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/flowlog"
	"github.com/sightline-io/sightline/internal/rpctest"
)

const svc = "com.mycompany.app.common.ServInterface:1.0"

func req(id uint32, v2 bool) []byte {
	return rpctest.SofaRequest(id, svc, "testSuccess", false, v2, "x").Encode()
}

func okResp(id uint32, v2 bool) []byte {
	var h rpctest.Hessian
	return rpctest.SofaResponse(&rpctest.BoltFrame{ID: id, V2: v2, CRCSwitch: v2}, 0, false, "", h.String("ok").B).Encode()
}

func newParser() l7.Parser { return New(l7.Config{}).NewParser() }

func TestParse(t *testing.T) {
	exc := func() []byte {
		var h rpctest.Hessian
		h.ClassDef("java.lang.RuntimeException", "detailMessage").Object(1).String("boom")
		return rpctest.SofaResponse(&rpctest.BoltFrame{ID: 4}, 0, false, "", h.B).Encode()
	}()
	frameworkErr := rpctest.SofaResponse(&rpctest.BoltFrame{ID: 5}, 0, true, "RPC-01402: biz thread pool full", nil).Encode()
	busy := (&rpctest.BoltFrame{Type: rpctest.BoltTypeResponse, Cmd: rpctest.BoltCmdResponse, ID: 6, Status: 4}).Encode()
	oneway := rpctest.SofaRequest(7, svc, "notify", true, false).Encode()
	hb := (&rpctest.BoltFrame{Type: rpctest.BoltTypeRequest, Cmd: rpctest.BoltCmdHeartbeat, ID: 8}).Encode()
	hbAck := (&rpctest.BoltFrame{Type: rpctest.BoltTypeResponse, Cmd: rpctest.BoltCmdHeartbeat, ID: 8}).Encode()
	// A request whose header map is empty: names come from the SofaRequest object.
	noHeader := rpctest.SofaRequest(9, svc, "fromBody", false, false)
	noHeader.Header = []string{"rpc_trace_context.sofaTraceId", "0a2200ce167089845152310016143", "rpc_trace_context.sofaRpcId", "0.1"}
	bigFrame := rpctest.SofaRequest(10, svc, "echo", false, false, strings.Repeat("y", 10000)).Encode()
	r1, r2 := req(1, false), req(2, true)
	n := strconv.Itoa

	line := func(typ, id int, ver, method, dom, code string, status int, exc string, length, capd int, trace, span string) string {
		res := ""
		if dom != "" || method != "" {
			res = dom + "." + method
		}
		return `type=` + n(typ) + ` id=` + n(id) + `/true oneway=false ver="` + ver + `" req="` + method + `" dom="` + dom + `" res="` + res + `" ep="` + res +
			`" code=` + code + ` status=` + n(status) + ` exc="` + exc + `" len=` + n(length) + ` cap=` + n(capd) + ` trace="` + trace + `" span="` + span + `" xrid=""`
	}
	for _, tt := range []struct {
		name string
		segs []*capture.Segment
		want []string
	}{
		{"v1 success", []*capture.Segment{rpctest.Seg(capture.AtoB, r1, 0), rpctest.Seg(capture.BtoA, okResp(1, false), 0)}, []string{
			line(0, 1, "1", "testSuccess", svc, "0/false", 0, "", len(r1), len(r1), "0a0b0c0d17000000000010001", "0.1"),
			line(1, 1, "1", "", "", "0/true", 0, "", len(okResp(1, false)), len(okResp(1, false)), "", ""),
		}},
		{"v2 with crc", []*capture.Segment{rpctest.Seg(capture.AtoB, r2, 0), rpctest.Seg(capture.BtoA, okResp(2, true), 0)}, []string{
			line(0, 2, "2", "testSuccess", svc, "0/false", 0, "", len(r2), len(r2), "0a0b0c0d17000000000010002", "0.1"),
			line(1, 2, "2", "", "", "0/true", 0, "", len(okResp(2, true)), len(okResp(2, true)), "", ""),
		}},
		{"thrown exception", []*capture.Segment{rpctest.Seg(capture.BtoA, exc, 0)}, []string{
			line(1, 4, "1", "", "", "0/true", 3, "java.lang.RuntimeException", len(exc), len(exc), "", ""),
		}},
		{"framework error", []*capture.Segment{rpctest.Seg(capture.BtoA, frameworkErr, 0)}, []string{
			line(1, 5, "1", "", "", "0/true", 3, "RPC-01402: biz thread pool full", len(frameworkErr), len(frameworkErr), "", ""),
		}},
		{"thread pool busy", []*capture.Segment{rpctest.Seg(capture.BtoA, busy, 0)}, []string{
			line(1, 6, "1", "", "", "4/true", 3, "SERVER_THREADPOOL_BUSY", len(busy), len(busy), "", ""),
		}},
		{"heartbeat", []*capture.Segment{rpctest.Seg(capture.AtoB, hb, 0), rpctest.Seg(capture.BtoA, hbAck, 0)}, nil},
		{"names from the body, old trace context", []*capture.Segment{rpctest.Seg(capture.AtoB, noHeader.Encode(), 0)}, []string{
			line(0, 9, "1", "fromBody", svc, "0/false", 0, "", len(noHeader.Encode()), len(noHeader.Encode()), "0a2200ce167089845152310016143", "0.1"),
		}},
		{"truncated then next", []*capture.Segment{rpctest.Seg(capture.AtoB, bigFrame[:4096], len(bigFrame)-4096), rpctest.Seg(capture.AtoB, r1, 0)}, []string{
			line(0, 10, "1", "echo", svc, "0/false", 0, "", len(bigFrame), 4096, "0a0b0c0d170000000000100010", "0.1"),
			line(0, 1, "1", "testSuccess", svc, "0/false", 0, "", len(r1), len(r1), "0a0b0c0d17000000000010001", "0.1"),
		}},
		{"mid-connection start", []*capture.Segment{rpctest.Seg(capture.AtoB, bigFrame[3000:5000], 0), rpctest.Seg(capture.AtoB, r1, 0)}, []string{
			line(0, 1, "1", "testSuccess", svc, "0/false", 0, "", len(r1), len(r1), "0a0b0c0d17000000000010001", "0.1"),
		}},
		{"garbage", []*capture.Segment{rpctest.Seg(capture.AtoB, []byte("\x01\x09garbage garbage garbage"), 0)}, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := rpctest.Summaries(rpctest.Feed(newParser(), tt.segs...))
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
	ms := rpctest.Feed(newParser(), rpctest.Seg(capture.AtoB, oneway, 0))
	if len(ms) != 1 || !ms[0].OneWay || ms[0].RequestType != "notify" {
		t.Fatalf("one-way: %q", rpctest.Summaries(ms))
	}
}

func TestPipelinedOutOfOrder(t *testing.T) {
	ms := rpctest.Feed(newParser(),
		rpctest.Seg(capture.AtoB, rpctest.Concat(req(1, false), req(2, true)), 0),
		rpctest.Seg(capture.BtoA, rpctest.Concat(okResp(2, true), okResp(1, false)), 0))
	var ids []uint64
	for _, m := range ms {
		ids = append(ids, m.RequestID)
	}
	if len(ids) != 4 || ids[0] != 1 || ids[1] != 2 || ids[2] != 2 || ids[3] != 1 {
		t.Fatalf("ids %v", ids)
	}
}

func TestSplitEveryByte(t *testing.T) {
	rpctest.CheckSplits(t, newParser, req(1, false), okResp(1, false))
	rpctest.CheckSplits(t, newParser, req(2, true), okResp(2, true))
}

func TestHostile(t *testing.T) {
	base := req(1, false)
	mod := func(off int, vals ...byte) []byte {
		b := append([]byte(nil), base...)
		copy(b[off:], vals)
		return b
	}
	for _, tt := range []struct {
		name string
		data []byte
		msgs int
	}{
		{"huge content length", mod(18, 0xff, 0xff, 0xff, 0xff), 0},
		{"huge class length", mod(14, 0xff, 0xff), 0},
		{"header map lengths past the end", mod(22+len(rpctest.SofaRequestClass), 0x7f, 0xff, 0xff, 0xff), 1},
		{"bad type", mod(1, 9), 0},
		{"bad command", mod(3, 7), 0},
		{"content not hessian", mod(len(base)-10, 'Z', 'Z', 'Z'), 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ms := rpctest.Feed(newParser(), rpctest.Seg(capture.AtoB, tt.data, 0))
			if len(ms) != tt.msgs {
				t.Fatalf("%d messages, want %d: %q", len(ms), tt.msgs, rpctest.Summaries(ms))
			}
		})
	}
}

func TestInfer(t *testing.T) {
	p := New(l7.Config{})
	hb := (&rpctest.BoltFrame{Type: rpctest.BoltTypeRequest, Cmd: rpctest.BoltCmdHeartbeat, ID: 8}).Encode()
	for _, tt := range []struct {
		name string
		data []byte
		l4   uint8
		want l7.Inference
	}{
		{"request", req(1, false), 6, l7.IsRequest},
		{"request v2", req(1, true), 6, l7.IsRequest},
		{"response", okResp(1, false), 6, l7.IsResponse},
		{"heartbeat", hb, 6, l7.IsRequest},
		{"short", req(1, false)[:10], 6, l7.NeedMore},
		{"udp", req(1, false), 17, l7.NotMine},
		// MySQL COM_QUIT is also a valid Bolt prefix: too short to decide.
		{"mysql COM_QUIT", []byte{1, 0, 0, 0, 1}, 6, l7.NeedMore},
		{"mysql ok packet", []byte{7, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0}, 6, l7.NotMine},
		{"http", []byte("GET / HTTP/1.1\r\n\r\n"), 6, l7.NotMine},
		{"class name with spaces", rpctest.Concat(req(1, false)[:22], []byte("com alipay")), 6, l7.NotMine},
		{"no class name", (&rpctest.BoltFrame{Type: 1, Cmd: 1, Content: []byte("x")}).Encode(), 6, l7.NotMine},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := p.Infer(tt.data, tt.l4); got != tt.want {
				t.Errorf("Infer = %d, want %d", got, tt.want)
			}
		})
	}
	if p.ID() != flowlog.L7SofaRPC || p.Matching() != l7.MatchByID || p.Timeout() != DefaultTimeout || New(l7.Config{Timeout: 3}).Timeout() != 3 {
		t.Fatal("identity")
	}
}
