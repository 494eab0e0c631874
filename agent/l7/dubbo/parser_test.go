package dubbo

import (
	"bytes"
	"encoding/binary"
	"strconv"
	"strings"
	"testing"

	"github.com/sightline-io/sightline/agent/capture"
	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/flowlog"
	"github.com/sightline-io/sightline/internal/rpctest"
)

const (
	svc = "org.apache.dubbo.samples.api.GreetingsService"
	res = svc + ".sayHi"
)

func hello(id uint64) []byte {
	q := rpctest.DubboRequest{ID: id, Service: svc, ServiceVersion: "1.0.0", Method: "sayHi", Args: []string{"dubbo"}, TwoWay: true,
		Attachments: []string{"traceparent", rpctest.TraceParent, "x-request-id", "rid-1"}}
	return q.Encode()
}

func okResp(id uint64) []byte {
	var h rpctest.Hessian
	h.Int(4).String("hi, dubbo").Map("dubbo", "2.0.2")
	return rpctest.DubboResponse(id, 20, false, h.B)
}

func newParser() l7.Parser { return New(l7.Config{}).NewParser() }

func TestParse(t *testing.T) {
	var exc rpctest.Hessian
	exc.Int(0).ClassDef("java.lang.IllegalStateException", "detailMessage").Object(0).String("boom")
	var notFound rpctest.Hessian
	notFound.String("Not found exported service: x")
	var nullValue rpctest.Hessian
	nullValue.Int(2)
	oneway := rpctest.DubboRequest{ID: 9, Service: svc, Method: "notify"}
	heartbeat := rpctest.DubboRequest{ID: 10, Heartbeat: true, TwoWay: true}
	kryo := rpctest.DubboRequest{ID: 11, Service: svc, Method: "sayHi", TwoWay: true, Serialization: 8}
	bigReq := rpctest.DubboRequest{ID: 12, Service: svc, Method: "echo", Args: []string{strings.Repeat("x", 10000)}, TwoWay: true}
	big := bigReq.Encode()
	hb := rpctest.DubboResponse(10, 20, true, []byte{'N'})

	for _, tt := range []struct {
		name string
		segs []*capture.Segment
		want []string
	}{
		{"success", []*capture.Segment{rpctest.Seg(capture.AtoB, hello(1), 0), rpctest.Seg(capture.BtoA, okResp(1), 0)}, []string{
			`type=0 id=1/true oneway=false ver="2.0.2" req="sayHi" dom="` + svc + `" res="` + res + `" ep="` + res + `" code=0/false status=0 exc="" len=` + strconv.Itoa(len(hello(1))) + ` cap=` + strconv.Itoa(len(hello(1))) + ` trace="4bf92f3577b34da6a3ce929d0e0e4736" span="00f067aa0ba902b7" xrid="rid-1"`,
			`type=1 id=1/true oneway=false ver="" req="" dom="" res="" ep="" code=20/true status=0 exc="" len=` + strconv.Itoa(len(okResp(1))) + ` cap=` + strconv.Itoa(len(okResp(1))) + ` trace="" span="" xrid=""`,
		}},
		{"exception", []*capture.Segment{rpctest.Seg(capture.BtoA, rpctest.DubboResponse(2, 20, false, exc.B), 0)}, []string{
			`type=1 id=2/true oneway=false ver="" req="" dom="" res="" ep="" code=20/true status=3 exc="java.lang.IllegalStateException" len=71 cap=71 trace="" span="" xrid=""`,
		}},
		{"null value", []*capture.Segment{rpctest.Seg(capture.BtoA, rpctest.DubboResponse(2, 20, false, nullValue.B), 0)}, []string{
			`type=1 id=2/true oneway=false ver="" req="" dom="" res="" ep="" code=20/true status=0 exc="" len=17 cap=17 trace="" span="" xrid=""`,
		}},
		{"unreadable body", []*capture.Segment{rpctest.Seg(capture.BtoA, rpctest.DubboResponse(2, 20, false, []byte("xyz")), 0)}, []string{
			`type=1 id=2/true oneway=false ver="" req="" dom="" res="" ep="" code=20/true status=6 exc="" len=19 cap=19 trace="" span="" xrid=""`,
		}},
		{"service not found", []*capture.Segment{rpctest.Seg(capture.BtoA, rpctest.DubboResponse(3, 60, false, notFound.B), 0)}, []string{
			`type=1 id=3/true oneway=false ver="" req="" dom="" res="" ep="" code=60/true status=3 exc="Not found exported service: x" len=46 cap=46 trace="" span="" xrid=""`,
		}},
		{"client timeout without body", []*capture.Segment{rpctest.Seg(capture.BtoA, rpctest.DubboResponse(4, 30, false, nil), 0)}, []string{
			`type=1 id=4/true oneway=false ver="" req="" dom="" res="" ep="" code=30/true status=4 exc="CLIENT_TIMEOUT" len=16 cap=16 trace="" span="" xrid=""`,
		}},
		{"one-way", []*capture.Segment{rpctest.Seg(capture.AtoB, oneway.Encode(), 0)}, []string{
			`type=0 id=9/true oneway=true ver="2.0.2" req="notify" dom="` + svc + `" res="` + svc + `.notify" ep="` + svc + `.notify" code=0/false status=0 exc="" len=189 cap=189 trace="" span="" xrid=""`,
		}},
		{"heartbeat", []*capture.Segment{rpctest.Seg(capture.AtoB, heartbeat.Encode(), 0), rpctest.Seg(capture.BtoA, hb, 0)}, nil},
		{"kryo: header only", []*capture.Segment{rpctest.Seg(capture.AtoB, kryo.Encode(), 0)}, []string{
			`type=0 id=11/true oneway=false ver="" req="" dom="" res="" ep="" code=0/false status=0 exc="" len=188 cap=188 trace="" span="" xrid=""`,
		}},
		{"truncated request then the next", []*capture.Segment{rpctest.Seg(capture.AtoB, big[:4096], len(big)-4096), rpctest.Seg(capture.AtoB, hello(13), 0)}, []string{
			`type=0 id=12/true oneway=false ver="2.0.2" req="echo" dom="` + svc + `" res="` + svc + `.echo" ep="` + svc + `.echo" code=0/false status=0 exc="" len=` + strconv.Itoa(len(big)) + ` cap=4096 trace="" span="" xrid=""`,
			`type=0 id=13/true oneway=false ver="2.0.2" req="sayHi" dom="` + svc + `" res="` + res + `" ep="` + res + `" code=0/false status=0 exc="" len=` + strconv.Itoa(len(hello(1))) + ` cap=` + strconv.Itoa(len(hello(1))) + ` trace="4bf92f3577b34da6a3ce929d0e0e4736" span="00f067aa0ba902b7" xrid="rid-1"`,
		}},
		{"mid-connection start recovers", []*capture.Segment{rpctest.Seg(capture.AtoB, big[5000:6000], 0), rpctest.Seg(capture.AtoB, hello(14), 0)}, []string{
			`type=0 id=14/true oneway=false ver="2.0.2" req="sayHi" dom="` + svc + `" res="` + res + `" ep="` + res + `" code=0/false status=0 exc="" len=` + strconv.Itoa(len(hello(1))) + ` cap=` + strconv.Itoa(len(hello(1))) + ` trace="4bf92f3577b34da6a3ce929d0e0e4736" span="00f067aa0ba902b7" xrid="rid-1"`,
		}},
		{"garbage", []*capture.Segment{rpctest.Seg(capture.AtoB, []byte("GET / HTTP/1.1\r\n\r\n"), 0), rpctest.Seg(capture.BtoA, []byte{0xda, 0xbb, 0, 0, 0}, 0)}, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := rpctest.Summaries(rpctest.Feed(newParser(), tt.segs...))
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

// TestFastJSON: the JSON-lines serializations give the names too.
func TestFastJSON(t *testing.T) {
	q := rpctest.DubboRequest{ID: 21, Service: svc, ServiceVersion: "1.0.0", Method: "sayHi", Args: []string{"dubbo"}, TwoWay: true,
		Serialization: rpctest.DubboFastJSON}
	resp := func(status byte, body string) []byte {
		b := rpctest.DubboResponse(21, status, false, []byte(body))
		b[2] = rpctest.DubboFastJSON
		return b
	}
	noVersion := q
	noVersion.ServiceVersion = ""
	for _, tt := range []struct {
		name string
		segs []*capture.Segment
		want string
	}{
		{"request", []*capture.Segment{rpctest.Seg(capture.AtoB, q.Encode(), 0)}, `ver="2.0.2" req="sayHi" dom="` + svc + `" res="` + res + `"`},
		{"request without service version", []*capture.Segment{rpctest.Seg(capture.AtoB, noVersion.Encode(), 0)}, `req="sayHi" dom="` + svc + `"`},
		{"request cut before the method", []*capture.Segment{rpctest.Seg(capture.AtoB, q.Encode()[:40], len(q.Encode())-40)}, `ver="" req="" dom="" res=""`},
		{"value", []*capture.Segment{rpctest.Seg(capture.BtoA, resp(20, "1\n\"hi\"\n"), 0)}, `code=20/true status=0 exc=""`},
		{"exception", []*capture.Segment{rpctest.Seg(capture.BtoA, resp(20, "0\n{\"message\":\"boom\"}\n"), 0)}, `code=20/true status=3 exc="exception"`},
		{"error message", []*capture.Segment{rpctest.Seg(capture.BtoA, resp(70, "\"Failed to invoke\"\n"), 0)}, `code=70/true status=3 exc="Failed to invoke"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := rpctest.Summaries(rpctest.Feed(newParser(), tt.segs...))
			if len(got) != 1 || !strings.Contains(got[0], tt.want) {
				t.Fatalf("got %q, want it to contain %q", got, tt.want)
			}
		})
	}
}

// TestPipelinedOutOfOrder: two requests in one segment, answered in reverse
// order in one segment; ids pair them.
func TestPipelinedOutOfOrder(t *testing.T) {
	ms := rpctest.Feed(newParser(),
		rpctest.Seg(capture.AtoB, append(hello(1), hello(2)...), 0),
		rpctest.Seg(capture.BtoA, append(okResp(2), okResp(1)...), 0))
	var ids []uint64
	for _, m := range ms {
		ids = append(ids, m.RequestID)
	}
	if len(ids) != 4 || ids[0] != 1 || ids[1] != 2 || ids[2] != 2 || ids[3] != 1 {
		t.Fatalf("ids %v", ids)
	}
}

func TestSplitEveryByte(t *testing.T) {
	rpctest.CheckSplits(t, newParser, hello(7), okResp(7))
}

func TestHostile(t *testing.T) {
	hdr := func(flag byte, n uint32, body []byte) []byte {
		b := []byte{0xda, 0xbb, flag, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0}
		binary.BigEndian.PutUint32(b[12:], n)
		return append(b, body...)
	}
	for _, tt := range []struct {
		name string
		data []byte
		gap  int
		msgs int
	}{
		{"huge body length", hdr(0xc2, 0xffffffff, nil), 0, 0},
		{"serialization 0", hdr(0xc0, 0, nil), 0, 0},
		{"string longer than the body", hdr(0xc2, 3, []byte{'S', 0xff, 0xff}), 0, 1},
		{"medium string cut", hdr(0xc2, 2, []byte{0x33, 0xff}), 0, 1},
		{"chunks without end", hdr(0xc2, 9, bytes.Repeat([]byte{'R', 0, 0}, 3)), 0, 1},
		{"invalid utf-8", hdr(0xc2, 5, []byte{4, 0xff, 0xfe, 0xfd, 0xfc}), 0, 1},
		{"class def with huge field count", hdr(0x02, 8, []byte{0x90, 'C', 1, 'X', 'I', 0x7f, 0xff, 0xff}), 0, 1},
		{"60 MiB body, 100 bytes captured", hdr(0xc2, 60<<20, bytes.Repeat([]byte{0x1f}, 84)), 60<<20 - 84, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ms := rpctest.Feed(newParser(), rpctest.Seg(capture.AtoB, tt.data, tt.gap))
			if len(ms) != tt.msgs {
				t.Fatalf("%d messages, want %d: %q", len(ms), tt.msgs, rpctest.Summaries(ms))
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
		{"request", hello(1), 6, l7.IsRequest},
		{"request header only", hello(1)[:16], 6, l7.IsRequest},
		{"fastjson request", (&rpctest.DubboRequest{ID: 1, Service: svc, Method: "m", TwoWay: true, Serialization: rpctest.DubboFastJSON}).Encode(), 6, l7.IsRequest},
		{"response", okResp(1), 6, l7.IsResponse},
		{"short", hello(1)[:5], 6, l7.NeedMore},
		{"udp", hello(1), 17, l7.NotMine},
		{"http", []byte("GET / HTTP/1.1\r\n"), 6, l7.NotMine},
		{"tls", []byte{0x16, 3, 1, 2, 0, 1}, 6, l7.NotMine},
		{"bad status", rpctest.DubboResponse(1, 21, false, nil), 6, l7.NotMine},
		{"request with status", append(append([]byte{}, hello(1)[:3]...), append([]byte{20}, hello(1)[4:]...)...), 6, l7.NotMine},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := p.Infer(tt.data, tt.l4); got != tt.want {
				t.Errorf("Infer = %d, want %d", got, tt.want)
			}
		})
	}
	body := []byte{0xda, 0xbb, 0xc2, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 'X'}
	if got := p.Infer(body, 6); got != l7.NotMine {
		t.Errorf("hessian2 request whose body is not a string: %d", got)
	}
}

func TestTimeout(t *testing.T) {
	if New(l7.Config{}).Timeout() != DefaultTimeout || New(l7.Config{Timeout: 5}).Timeout() != 5 {
		t.Fatal("timeout")
	}
	if New(l7.Config{}).ID() != flowlog.L7Dubbo || New(l7.Config{}).Matching() != l7.MatchByID {
		t.Fatal("identity")
	}
}

func TestTraceHeaders(t *testing.T) {
	trace, span := parseSW8([]byte("1-MTIzNDU=-c2VnMQ==-3-c3Zj-aW5zdA==-L2FwaQ==-MTAuMC4wLjE6ODA="))
	if trace != "12345" || span != "seg1-3" {
		t.Fatalf("sw8: %q %q", trace, span)
	}
	if tr, _ := parseTraceparent([]byte("00-xyz")); tr != "" {
		t.Fatal("bad traceparent accepted")
	}
}
