package linkkey

import "testing"

// TestStable pins the encoding: stored keys must keep matching lookups
// across versions.
func TestStable(t *testing.T) {
	cases := []struct {
		name string
		got  uint64
		want uint64
	}{
		{"tcp req", TCPReq("10.0.0.1", "10.0.0.2", 1000, 80, 6, 12345), 17042973266900191463},
		{"tcp resp", TCPResp("10.0.0.1", "10.0.0.2", 1000, 80, 6, 12345), 1767350399981234496},
		{"syscall client", SyscallClient("agent", 42), 13497451685462043206},
		{"syscall server", SyscallServer("agent", 42), 3395852855813158857},
		{"trace id", TraceID("4bf92f3577b34da6a3ce929d0e0e4736"), 14642599350224355671},
		{"x-request-id", XRequestID("req-1"), 11656512268282281006},
	}
	seen := make(map[uint64]string)
	for _, c := range cases {
		if c.got != c.want {
			t.Errorf("%s = %d, want %d", c.name, c.got, c.want)
		}
		if other, dup := seen[c.got]; dup {
			t.Errorf("%s and %s share key %d", c.name, other, c.got)
		}
		seen[c.got] = c.name
	}
}

func TestFieldsAppend(t *testing.T) {
	base := Fields{IP0: "10.0.0.1", IP1: "10.0.0.2", ClientPort: 1000, ServerPort: 80, Protocol: 6, AgentID: "a"}
	with := func(m func(*Fields)) Fields { f := base; m(&f); return f }
	cases := []struct {
		name string
		f    Fields
		want []uint64
	}{
		{"nothing", base, nil},
		{"tcp both", with(func(f *Fields) { f.ReqTCPSeq, f.RespTCPSeq = 1, 2 }),
			[]uint64{TCPReq("10.0.0.1", "10.0.0.2", 1000, 80, 6, 1), TCPResp("10.0.0.1", "10.0.0.2", 1000, 80, 6, 2)}},
		{"c-p syscall", with(func(f *Fields) { f.ObservationPoint, f.SyscallReq, f.SyscallResp = "c-p", 5, 6 }), []uint64{SyscallClient("a", 5)}},
		{"s-p syscall", with(func(f *Fields) { f.ObservationPoint, f.SyscallReq, f.SyscallResp = "s-p", 5, 6 }), []uint64{SyscallServer("a", 5), SyscallServer("a", 6)}},
		{"s-p same ids", with(func(f *Fields) { f.ObservationPoint, f.SyscallReq, f.SyscallResp = "s-p", 5, 5 }), []uint64{SyscallServer("a", 5)}},
		{"network span syscall ignored", with(func(f *Fields) { f.ObservationPoint, f.SyscallReq = "c", 5 }), nil},
		{"ids", with(func(f *Fields) { f.TraceID, f.XRequestID0, f.XRequestID1 = "t", "x", "x" }), []uint64{TraceID("t"), XRequestID("x")}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := c.f.Append(nil)
			if len(got) != len(c.want) {
				t.Fatalf("keys %v, want %v", got, c.want)
			}
			for i := range got {
				if got[i] != c.want[i] {
					t.Errorf("key %d = %d, want %d", i, got[i], c.want[i])
				}
			}
		})
	}
}
