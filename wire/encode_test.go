package wire

import (
	"math/rand/v2"
	"net/netip"
	"reflect"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/sightline-io/sightline/flowlog"
	"github.com/sightline-io/sightline/wire/sightlinepb"
)

// referenceBatch is what the generated code makes of rows.
func referenceBatch(agentID string, rows []flowlog.L7FlowLog) *sightlinepb.L7Batch {
	b := &sightlinepb.L7Batch{AgentId: validUTF8(agentID)}
	for i := range rows {
		b.Rows = append(b.Rows, ToProto(&rows[i]))
	}
	return b
}

func decodeBatch(t testing.TB, data []byte) *sightlinepb.L7Batch {
	t.Helper()
	var got sightlinepb.L7Batch
	if err := proto.Unmarshal(data, &got); err != nil {
		t.Fatalf("generated code cannot decode the batch: %v", err)
	}
	return &got
}

// randomWireRow sets fields at random, zero values and awkward strings
// included, so both the "left out" and the "written" paths run.
func randomWireRow(rng *rand.Rand) flowlog.L7FlowLog {
	strs := []string{"", "GET", "/a?b=c", "ünï 日本", "bad\xff\xfeutf8", "x"}
	s := func() string { return strs[rng.IntN(len(strs))] }
	u64 := func() uint64 {
		switch rng.IntN(3) {
		case 0:
			return 0
		case 1:
			return rng.Uint64()
		}
		return uint64(rng.IntN(300))
	}
	ts := func() time.Time {
		if rng.IntN(3) == 0 {
			return time.Time{}
		}
		return time.UnixMicro(rng.Int64N(4e15)).UTC()
	}
	r := flowlog.L7FlowLog{
		ID: u64(), Time: ts(), StartTime: ts(), EndTime: ts(), ResponseDuration: u64(),
		AgentID: s(), Host: s(), OrgID: uint16(u64()), TeamID: uint16(u64()),
		SignalSource: flowlog.SignalSource(u64()), ObservationPoint: s(), L7Protocol: flowlog.L7Protocol(u64()),
		L7ProtocolStr: s(), Version: s(), Type: flowlog.RowType(u64() % 3), IsTLS: rng.IntN(2) == 0,
		RequestType: s(), RequestDomain: s(), RequestResource: s(), Endpoint: s(),
		ResponseStatus: flowlog.ResponseStatus(u64() % 7), ResponseException: s(), ResponseResult: s(),
		RequestLength: int64(u64()) - 1, ResponseLength: -int64(u64() % 3),
		CapturedRequestByte: uint32(u64()), CapturedResponseByte: uint32(u64()),
		TraceID: s(), SpanID: s(), ParentSpanID: s(), XRequestID0: s(), XRequestID1: s(),
		SyscallTraceIDRequest: u64(), SyscallTraceIDResponse: u64(), SyscallThread0: uint32(u64()),
		SyscallThread1: uint32(u64()), SyscallCoroutine0: u64(), SyscallCoroutine1: u64(),
		SyscallCapSeq0: uint32(u64()), SyscallCapSeq1: uint32(u64()), ReqTCPSeq: uint32(u64()), RespTCPSeq: uint32(u64()),
		ClientPort: uint16(u64()), ServerPort: uint16(u64()), Protocol: uint8(u64()),
		ProcessID0: uint32(u64()), ProcessID1: uint32(u64()), ProcessKName0: s(), ProcessKName1: s(),
		ContainerID0: s(), ContainerID1: s(),
	}
	ips := []netip.Addr{{}, netip.MustParseAddr("10.1.2.3"), netip.MustParseAddr("2001:db8::7"),
		netip.MustParseAddr("::ffff:10.0.0.1")}
	r.IP0, r.IP1 = ips[rng.IntN(len(ips))], ips[rng.IntN(len(ips))]
	if rng.IntN(2) == 0 {
		v := u64()
		r.RequestID = &v
	}
	if rng.IntN(2) == 0 {
		v := int32(rng.Uint32())
		r.ResponseCode = &v
	}
	if rng.IntN(2) == 0 {
		v := u64()
		r.SQLAffectedRows = &v
	}
	if n := rng.IntN(4); n > 0 {
		r.Attributes = map[string]string{}
		for range n {
			r.Attributes[s()] = s()
		}
	}
	return r
}

func TestEncodeBatchMatchesProto(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	var enc batchEncoder
	var buf []byte
	for i := range 300 {
		rows := make([]flowlog.L7FlowLog, rng.IntN(5))
		for j := range rows {
			rows[j] = randomWireRow(rng)
		}
		agent := []string{"agent-1", "", "bad\xffagent"}[i%3]
		buf = enc.encode(buf, agent, rows)
		if got, want := decodeBatch(t, buf), referenceBatch(agent, rows); !proto.Equal(got, want) {
			t.Fatalf("batch %d differs:\n got %v\nwant %v", i, got, want)
		}
	}
}

// TestEncodeRowCoversEveryField fails when sightline.proto has a field that
// appendRow does not write: every field of a row with no zero value must
// come out set.
func TestEncodeRowCoversEveryField(t *testing.T) {
	r := realisticRow(3)
	one, seven := uint64(1), uint64(7)
	r.RequestID, r.SQLAffectedRows = &one, &seven
	r.IsTLS, r.ResponseException, r.ResponseResult, r.ParentSpanID = true, "e", "r", "p"
	r.XRequestID0, r.XRequestID1, r.SyscallCoroutine0, r.SyscallCoroutine1 = "x0", "x1", 5, 6
	r.ProcessID0, r.ProcessKName0, r.ContainerID0 = 9, "k0", "c0"
	r.ResponseStatus = flowlog.StatusServerError
	// Guard the guard: no field of the row is left at its zero value.
	v := reflect.ValueOf(r)
	for i := range v.NumField() {
		if v.Field(i).IsZero() {
			t.Fatalf("test row leaves %s zero", v.Type().Field(i).Name)
		}
	}
	var enc batchEncoder
	got := decodeBatch(t, enc.encode(nil, "a", []flowlog.L7FlowLog{r})).Rows[0]
	m := got.ProtoReflect()
	fields := m.Descriptor().Fields()
	for i := range fields.Len() {
		if f := fields.Get(i); !m.Has(f) {
			t.Errorf("field %s (%d) not written", f.Name(), f.Number())
		}
	}
	var set int
	m.Range(func(protoreflect.FieldDescriptor, protoreflect.Value) bool { set++; return true })
	if set != fields.Len() {
		t.Errorf("%d of %d fields set", set, fields.Len())
	}
}

func FuzzEncodeBatch(f *testing.F) {
	f.Add("agent", "GET", "/p\xff", "k", "v", int64(1), uint64(2), int32(-3))
	f.Fuzz(func(t *testing.T, agent, a, b, k, v string, n int64, u uint64, code int32) {
		r := flowlog.L7FlowLog{
			ID: u, Time: time.UnixMicro(n).UTC(), RequestType: a, RequestResource: b, RequestLength: n,
			ResponseCode: &code, Attributes: map[string]string{k: v},
		}
		var enc batchEncoder
		got := decodeBatch(t, enc.encode(nil, agent, []flowlog.L7FlowLog{r, {}}))
		if want := referenceBatch(agent, []flowlog.L7FlowLog{r, {}}); !proto.Equal(got, want) {
			t.Fatalf("\n got %v\nwant %v", got, want)
		}
	})
}

// BenchmarkEncodeRows compares the generated path (ToProto + Marshal) with
// the direct encoder on the same 2000 rows, side by side.
func BenchmarkEncodeRows(b *testing.B) {
	rows := make([]flowlog.L7FlowLog, 2000)
	for i := range rows {
		rows[i] = realisticRow(i)
	}
	b.Run("generated", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := proto.Marshal(referenceBatch("a", rows)); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(rows)), "ns/row")
	})
	b.Run("direct", func(b *testing.B) {
		b.ReportAllocs()
		var enc batchEncoder
		var buf []byte
		for b.Loop() {
			buf = enc.encode(buf, "a", rows)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(rows)), "ns/row")
	})
}
