package flowlog

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"
)

func stdJSON(t testing.TB, r *L7FlowLog) []byte {
	t.Helper()
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(r); err != nil {
		t.Fatal(err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

// randomRow fills every field, using awkward strings and boundary values.
func randomRow(rng *rand.Rand) L7FlowLog {
	strs := []string{"", "GET", "/a?b=c&d=<e>", "quote\"back\\slash", "ctl\x00\x01\b\f\n\r\t\x1f\x7f",
		"utf8 ünï 日本 \u2028\u2029 😀", "bad\xff\xfe utf8 \xe2\x82", strings.Repeat("x", 300)}
	s := func() string { return strs[rng.IntN(len(strs))] }
	ts := time.Unix(rng.Int64N(4e9), rng.Int64N(1e9)).UTC()
	if rng.IntN(3) == 0 {
		ts = ts.In(time.FixedZone("X", 3600*rng.IntN(12)))
	}
	r := L7FlowLog{
		ID: rng.Uint64(), Time: ts, StartTime: ts.Add(time.Duration(rng.IntN(1000))), EndTime: time.Time{},
		ResponseDuration: rng.Uint64(), AgentID: s(), Host: s(), OrgID: uint16(rng.Uint32()), TeamID: 1,
		SignalSource: SignalSource(rng.IntN(5)), ObservationPoint: s(), L7Protocol: L7Protocol(rng.IntN(256)),
		L7ProtocolStr: s(), Version: s(), Type: RowType(rng.IntN(3)), IsTLS: rng.IntN(2) == 0,
		RequestType: s(), RequestDomain: s(), RequestResource: s(), Endpoint: s(),
		ResponseStatus: ResponseStatus(rng.IntN(7)), ResponseException: s(), ResponseResult: s(),
		RequestLength: rng.Int64() - 1<<62, ResponseLength: -1,
		CapturedRequestByte: rng.Uint32(), CapturedResponseByte: rng.Uint32(),
		TraceID: s(), SpanID: s(), ParentSpanID: s(), XRequestID0: s(), XRequestID1: s(),
		SyscallTraceIDRequest: rng.Uint64(), SyscallTraceIDResponse: rng.Uint64(),
		SyscallThread0: rng.Uint32(), SyscallThread1: rng.Uint32(),
		SyscallCoroutine0: rng.Uint64(), SyscallCoroutine1: rng.Uint64(),
		SyscallCapSeq0: rng.Uint32(), SyscallCapSeq1: rng.Uint32(), ReqTCPSeq: rng.Uint32(), RespTCPSeq: rng.Uint32(),
		ClientPort: uint16(rng.Uint32()), ServerPort: 80, Protocol: 6,
		ProcessID0: rng.Uint32(), ProcessID1: rng.Uint32(), ProcessKName0: s(), ProcessKName1: s(),
		ContainerID0: s(), ContainerID1: s(),
	}
	ips := []netip.Addr{{}, netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("2001:db8::1"),
		netip.MustParseAddr("::ffff:192.0.2.1"), netip.MustParseAddr("fe80::1%eth0")}
	r.IP0, r.IP1 = ips[rng.IntN(len(ips))], ips[rng.IntN(len(ips))]
	if rng.IntN(2) == 0 {
		id := rng.Uint64()
		r.RequestID = &id
	}
	if rng.IntN(2) == 0 {
		code := int32(rng.Uint32())
		r.ResponseCode = &code
	}
	if rng.IntN(2) == 0 {
		n := rng.Uint64()
		r.SQLAffectedRows = &n
	}
	switch rng.IntN(3) {
	case 0: // nil map: null
	case 1:
		r.Attributes = map[string]string{}
	default:
		r.Attributes = map[string]string{}
		for range rng.IntN(20) {
			r.Attributes[s()+s()] = s()
		}
	}
	return r
}

func TestAppendJSONMatchesEncodingJSON(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 2000 {
		r := randomRow(rng)
		want := stdJSON(t, &r)
		if got := r.AppendJSON(nil); !bytes.Equal(got, want) {
			t.Fatalf("row %d:\n got %s\nwant %s", i, got, want)
		}
	}
}

// TestAppendJSONCoversEveryField fails when a field is added to L7FlowLog
// without being added to AppendJSON.
func TestAppendJSONCoversEveryField(t *testing.T) {
	var r L7FlowLog
	var obj map[string]any
	if err := json.Unmarshal(r.AppendJSON(nil), &obj); err != nil {
		t.Fatal(err)
	}
	typ := reflect.TypeOf(r)
	if len(obj) != typ.NumField() {
		t.Errorf("AppendJSON writes %d fields, L7FlowLog has %d", len(obj), typ.NumField())
	}
	for i := range typ.NumField() {
		name, _, _ := strings.Cut(typ.Field(i).Tag.Get("json"), ",")
		if _, ok := obj[name]; !ok {
			t.Errorf("AppendJSON lacks %q", name)
		}
	}
}

func FuzzAppendJSON(f *testing.F) {
	f.Add("GET", "/a\x00b\u2028", "k", "v\xff", int64(0), uint32(0))
	f.Fuzz(func(t *testing.T, a, b, k, v string, sec int64, nsec uint32) {
		ts := time.Unix(sec%(253402300799), int64(nsec%1e9)).UTC() // years 0001..9999: encoding/json's range
		r := L7FlowLog{Time: ts, RequestType: a, RequestResource: b, Attributes: map[string]string{k: v, b: a}}
		if got, want := r.AppendJSON(nil), stdJSON(t, &r); !bytes.Equal(got, want) {
			t.Fatalf("\n got %s\nwant %s", got, want)
		}
	})
}

func BenchmarkAppendJSON(b *testing.B) {
	r := randomRow(rand.New(rand.NewPCG(3, 4)))
	b.Run("AppendJSON", func(b *testing.B) {
		b.ReportAllocs()
		var buf []byte
		for b.Loop() {
			buf = r.AppendJSON(buf[:0])
		}
	})
	b.Run("encoding/json", func(b *testing.B) {
		b.ReportAllocs()
		enc := json.NewEncoder(&bytes.Buffer{})
		for b.Loop() {
			_ = enc.Encode(&r)
		}
	})
}
