package wire

import (
	"fmt"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/sightline-io/sightline/flowlog"
	"github.com/sightline-io/sightline/wire/sightlinepb"
)

var (
	timeType = reflect.TypeFor[time.Time]()
	addrType = reflect.TypeFor[netip.Addr]()
)

// fillRow sets every field of an L7FlowLog to a distinct non-zero value by
// reflection, so a column added to the contract without wire support makes
// the round-trip test fail.
func fillRow(t *testing.T, seed int) flowlog.L7FlowLog {
	t.Helper()
	var r flowlog.L7FlowLog
	v := reflect.ValueOf(&r).Elem()
	for i := range v.NumField() {
		f := v.Field(i)
		name := v.Type().Field(i).Name
		n := seed + i + 1
		fillValue(t, name, f, n)
		if f.IsZero() {
			t.Fatalf("field %s still zero after fill", name)
		}
	}
	return r
}

func fillValue(t *testing.T, name string, f reflect.Value, n int) {
	t.Helper()
	switch {
	case f.Type() == timeType:
		f.Set(reflect.ValueOf(time.UnixMicro(1_700_000_000_000_000 + int64(n)*1_000_003).UTC()))
		return
	case f.Type() == addrType:
		a := netip.AddrFrom4([4]byte{10, 0, byte(n >> 8), byte(n)})
		if n%2 == 0 {
			a = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 14: byte(n >> 8), 15: byte(n)})
		}
		f.Set(reflect.ValueOf(a))
		return
	}
	switch f.Kind() {
	case reflect.Bool:
		f.SetBool(true)
	case reflect.String:
		f.SetString(fmt.Sprintf("%s-%d", name, n))
	case reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		u := uint64(n) % (1 << (f.Type().Bits() - 1))
		f.SetUint(max(u, 1))
	case reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		f.SetInt(-int64(n))
	case reflect.Pointer:
		p := reflect.New(f.Type().Elem())
		fillValue(t, name, p.Elem(), n)
		f.Set(p)
	case reflect.Map:
		if f.Type() != reflect.TypeFor[map[string]string]() {
			t.Fatalf("field %s: unsupported map type %s", name, f.Type())
		}
		f.Set(reflect.ValueOf(map[string]string{name: fmt.Sprint(n), "k": "v"}))
	default:
		t.Fatalf("field %s: type %s not handled by the test filler; add wire support and a case here", name, f.Type())
	}
}

func TestRoundTripEveryField(t *testing.T) {
	for seed := range 3 {
		in := fillRow(t, seed*100)
		out, err := FromProto(ToProto(&in))
		if err != nil {
			t.Fatalf("FromProto: %v", err)
		}
		if !reflect.DeepEqual(in, out) {
			iv, ov := reflect.ValueOf(in), reflect.ValueOf(out)
			for i := range iv.NumField() {
				if !reflect.DeepEqual(iv.Field(i).Interface(), ov.Field(i).Interface()) {
					t.Errorf("field %s: sent %v, got %v", iv.Type().Field(i).Name, iv.Field(i), ov.Field(i))
				}
			}
		}
	}
}

// TestToProtoSetsEveryWireField catches the other direction: a proto field
// added without being filled from the row.
func TestToProtoSetsEveryWireField(t *testing.T) {
	in := fillRow(t, 0)
	m := ToProto(&in).ProtoReflect()
	fields := m.Descriptor().Fields()
	for i := range fields.Len() {
		if fd := fields.Get(i); !m.Has(fd) {
			t.Errorf("proto field %s not set from a fully filled row", fd.Name())
		}
	}
}

func TestRoundTripEdgeValues(t *testing.T) {
	tests := []struct {
		name string
		row  flowlog.L7FlowLog
	}{
		{"zero row", flowlog.L7FlowLog{}},
		{"ipv4-mapped ipv6 keeps its family", flowlog.L7FlowLog{
			IP0: netip.MustParseAddr("::ffff:10.1.2.3"), IP1: netip.MustParseAddr("10.1.2.3"),
		}},
		{"zero pointers stay distinct from nil", flowlog.L7FlowLog{
			RequestID: new(uint64), ResponseCode: new(int32), SQLAffectedRows: new(uint64),
		}},
		{"negative lengths and max ints", flowlog.L7FlowLog{
			RequestLength: -1, ResponseLength: -1, OrgID: 65535, ClientPort: 65535, L7Protocol: 255,
			ID: ^uint64(0),
		}},
		{"pre-epoch time", flowlog.L7FlowLog{Time: time.Date(1969, 7, 20, 20, 17, 40, 0, time.UTC)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := FromProto(ToProto(&tt.row))
			if err != nil {
				t.Fatalf("FromProto: %v", err)
			}
			if !reflect.DeepEqual(tt.row, out) {
				t.Errorf("round trip changed the row:\n sent %+v\n got  %+v", tt.row, out)
			}
		})
	}
}

func TestToProtoTruncatesToMicroseconds(t *testing.T) {
	in := flowlog.L7FlowLog{Time: time.Date(2025, 1, 2, 3, 4, 5, 123456789, time.FixedZone("X", 3600))}
	out, err := FromProto(ToProto(&in))
	if err != nil {
		t.Fatal(err)
	}
	want := time.Date(2025, 1, 2, 2, 4, 5, 123456000, time.UTC)
	if !out.Time.Equal(want) || out.Time.Location() != time.UTC {
		t.Errorf("got %v, want %v", out.Time, want)
	}
}

func TestFromProtoRejects(t *testing.T) {
	tests := []struct {
		name    string
		row     *sightlinepb.L7FlowLog
		wantErr string
	}{
		{"nil", nil, "nil row"},
		{"ip_0 of 5 bytes", &sightlinepb.L7FlowLog{Ip_0: make([]byte, 5)}, "ip_0: IP address is 5 bytes"},
		{"ip_1 of 1 byte", &sightlinepb.L7FlowLog{Ip_1: []byte{1}}, "ip_1: IP address is 1 bytes"},
		{"org_id over uint16", &sightlinepb.L7FlowLog{OrgId: 1 << 16}, "org_id: value 65536"},
		{"team_id over uint16", &sightlinepb.L7FlowLog{TeamId: 1 << 20}, "team_id"},
		{"client_port over uint16", &sightlinepb.L7FlowLog{ClientPort: 70000}, "client_port"},
		{"server_port over uint16", &sightlinepb.L7FlowLog{ServerPort: 70000}, "server_port"},
		{"l7_protocol over uint8", &sightlinepb.L7FlowLog{L7Protocol: 256}, "l7_protocol"},
		{"signal_source over uint8", &sightlinepb.L7FlowLog{SignalSource: 300}, "signal_source"},
		{"type over uint8", &sightlinepb.L7FlowLog{Type: 1000}, "type"},
		{"response_status over uint8", &sightlinepb.L7FlowLog{ResponseStatus: 256}, "response_status"},
		{"protocol over uint8", &sightlinepb.L7FlowLog{Protocol: 256}, "protocol"},
		{"first error wins", &sightlinepb.L7FlowLog{OrgId: 1 << 16, Ip_0: []byte{1}}, "org_id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := FromProto(tt.row)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want containing %q", err, tt.wantErr)
			}
		})
	}
}

// Parsers copy payload bytes into strings; invalid UTF-8 in any string column
// must not make the batch unmarshalable (protobuf rejects it).
func TestToProtoRepairsInvalidUTF8(t *testing.T) {
	in := fillRow(t, 0)
	v := reflect.ValueOf(&in).Elem()
	for i := range v.NumField() {
		if f := v.Field(i); f.Kind() == reflect.String {
			f.SetString("bad\xff" + v.Type().Field(i).Name)
		}
	}
	in.Attributes = map[string]string{"k\xfe": "v\xff", "ok": "fine"}

	raw, err := proto.Marshal(&sightlinepb.L7Batch{AgentId: "a", Rows: []*sightlinepb.L7FlowLog{ToProto(&in)}})
	if err != nil {
		t.Fatalf("marshal row with invalid UTF-8: %v", err)
	}
	var batch sightlinepb.L7Batch
	if err := proto.Unmarshal(raw, &batch); err != nil {
		t.Fatal(err)
	}
	out, err := FromProto(batch.Rows[0])
	if err != nil {
		t.Fatal(err)
	}
	if want := "bad\uFFFDRequestResource"; out.RequestResource != want {
		t.Errorf("request_resource = %q, want %q", out.RequestResource, want)
	}
	if got := out.Attributes["k\uFFFD"]; got != "v\uFFFD" {
		t.Errorf("attributes = %q", out.Attributes)
	}
	if _, ok := in.Attributes["k\xfe"]; !ok || len(in.Attributes) != 2 {
		t.Errorf("caller's attributes modified: %q", in.Attributes)
	}
}
