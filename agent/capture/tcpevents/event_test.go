package tcpevents

import (
	"encoding/binary"
	"net/netip"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sightline-io/sightline/agent/capture/bpfevent"
)

func TestEventSizeMatchesC(t *testing.T) {
	if got := unsafe.Sizeof(tcpEventsTcpEvent{}); got != eventSize {
		t.Fatalf("sizeof(struct tcp_event) = %d, decoder expects %d", got, eventSize)
	}
}

func rawEvent(typ uint32, family uint16, laddr, raddr []byte, lport, rport uint16, pid uint32, comm string) []byte {
	b := make([]byte, eventSize)
	le := binary.LittleEndian
	le.PutUint64(b[0:], 1000)
	le.PutUint64(b[8:], 0xffff888100000000)
	le.PutUint32(b[16:], typ)
	le.PutUint32(b[20:], pid)
	le.PutUint32(b[28:], uint32(111))
	le.PutUint16(b[40:], family)
	le.PutUint16(b[42:], lport)
	le.PutUint16(b[44:], rport)
	b[46], b[47], b[48] = StateSynSent, StateClose, byte(OwnerConnect)
	copy(b[56:72], laddr)
	copy(b[72:88], raddr)
	copy(b[88:104], comm)
	return b
}

func TestDecodeEvent(t *testing.T) {
	mapped := netip.MustParseAddr("::ffff:10.0.0.1").As16()
	v6 := netip.MustParseAddr("2001:db8::1").As16()
	wall := func(ns uint64) time.Time { return time.Unix(0, int64(ns)) }
	for _, tc := range []struct {
		name    string
		b       []byte
		wantErr string
		local   string
		comm    string
	}{
		{"v4", rawEvent(3, afInet, []byte{127, 0, 0, 1}, []byte{127, 0, 0, 2}, 5000, 1, 42, "curl"), "", "127.0.0.1:5000", "curl"},
		{"v4-mapped v6", rawEvent(3, afInet6, mapped[:], v6[:], 5000, 1, 42, "curl"), "", "10.0.0.1:5000", "curl"},
		{"no pid no comm", rawEvent(7, afInet, []byte{1, 2, 3, 4}, []byte{5, 6, 7, 8}, 80, 1234, 0, "junk"), "", "1.2.3.4:80", ""},
		{"short", make([]byte, 10), "bytes", "", ""},
		{"bad type", rawEvent(99, afInet, nil, nil, 0, 0, 0, ""), "type", "", ""},
		{"bad family", rawEvent(1, 3, nil, nil, 0, 0, 0, ""), "family", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var e Event
			comms := bpfevent.NewCommCache(2)
			err := decodeEvent(tc.b, &e, wall, comms.Get)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := netip.AddrPortFrom(e.Tuple.AIP, e.Tuple.APort).String(); got != tc.local {
				t.Errorf("local %s, want %s", got, tc.local)
			}
			if e.Comm != tc.comm || e.Tuple.L4 != 6 || e.Time != wall(1000) {
				t.Errorf("event %+v", e)
			}
		})
	}
}

func TestFailureOf(t *testing.T) {
	for errno, want := range map[int32]Failure{0: FailureAborted, 111: FailureRefused, 110: FailureTimeout,
		113: FailureUnreachable, 101: FailureUnreachable, 5: FailureOther} {
		if got := FailureOf(errno); got != want {
			t.Errorf("FailureOf(%d) = %s, want %s", errno, got, want)
		}
	}
}

func ev(typ EventType, owner OwnerSource, comm, l, r string) *Event {
	la, ra := netip.MustParseAddrPort(l), netip.MustParseAddrPort(r)
	return &Event{Type: typ, Owner: owner, PID: 7, Comm: comm,
		Tuple: Tuple4(la, ra)}
}

func TestCountersKeysAndOverflow(t *testing.T) {
	c := NewCounters(2)
	c.Add(ev(ConnectStart, OwnerConnect, "curl", "127.0.0.1:0", "127.0.0.1:1"))
	c.Add(ev(ConnectFailed, OwnerConnect, "curl", "127.0.0.1:40000", "127.0.0.1:1"))
	c.Add(ev(Retransmit, OwnerListener, "nginx", "10.0.0.1:80", "10.0.0.2:50000"))
	c.Add(ev(Close, OwnerConnect, "curl", "127.0.0.1:40000", "127.0.0.1:1")) // not counted
	c.Add(ev(ResetSent, OwnerNone, "", "127.0.0.1:1", "127.0.0.1:40000"))    // third key: overflow
	v, ok := c.Lookup(CounterKey{PID: 7, Comm: "curl", Local: netip.MustParseAddrPort("127.0.0.1:0"),
		Remote: netip.MustParseAddrPort("127.0.0.1:1")})
	if !ok || v.ConnectAttempts != 1 || v.ConnectFailures != 1 {
		t.Errorf("curl: %+v %v", v, ok)
	}
	v, ok = c.Lookup(CounterKey{PID: 7, Comm: "nginx", Local: netip.MustParseAddrPort("10.0.0.1:80"),
		Remote: netip.MustParseAddrPort("10.0.0.2:0")})
	if !ok || v.Retransmits != 1 {
		t.Errorf("nginx: %+v %v", v, ok)
	}
	if c.Overflowed() != 1 {
		t.Errorf("overflowed %d", c.Overflowed())
	}
	snap := c.Snapshot()
	if len(snap) != 3 || snap[0].Key.Comm != "curl" || snap[2].Key.Comm != OtherComm || snap[2].ResetsSent != 1 {
		t.Errorf("snapshot %+v", snap)
	}
}

func TestCollectorTopN(t *testing.T) {
	c := NewCounters(0)
	for i := range 5 {
		for range i + 1 {
			c.Add(ev(ConnectFailed, OwnerConnect, "app"+string(rune('a'+i)), "127.0.0.1:40000", "127.0.0.1:1"))
		}
	}
	col := NewCollector(c, 2, func() Stats { return Stats{RingbufFull: 3} })
	want := `
# HELP sightline_agent_tcp_connect_failures_total TCP connects that failed (SYN_SENT -> CLOSE).
# TYPE sightline_agent_tcp_connect_failures_total counter
sightline_agent_tcp_connect_failures_total{comm="appd",local="127.0.0.1",remote="127.0.0.1:1"} 4
sightline_agent_tcp_connect_failures_total{comm="appe",local="127.0.0.1",remote="127.0.0.1:1"} 5
sightline_agent_tcp_connect_failures_total{comm="other",local="other",remote="other"} 6
# HELP sightline_agent_tcp_events_lost_total TCP lifecycle events lost in the kernel: ring buffer full.
# TYPE sightline_agent_tcp_events_lost_total counter
sightline_agent_tcp_events_lost_total 3
`
	if err := testutil.CollectAndCompare(col, strings.NewReader(want),
		"sightline_agent_tcp_connect_failures_total", "sightline_agent_tcp_events_lost_total"); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(col); n != 6 {
		t.Errorf("%d metrics, want 6", n)
	}
}

func TestCountersRetire(t *testing.T) {
	c := NewCounters(0)
	a := ev(ConnectFailed, OwnerConnect, "curl", "127.0.0.1:40000", "127.0.0.1:1")
	b := *a
	b.PID = 8
	c.Add(a)
	c.Add(&b)
	c.Add(&b)
	if n := c.Retire(7) + c.Retire(8) + c.Retire(9); n != 2 {
		t.Errorf("retired %d keys, want 2", n)
	}
	snap := c.Snapshot()
	if len(snap) != 1 || snap[0].Key.PID != 0 || snap[0].ConnectFailures != 3 {
		t.Errorf("snapshot after retire: %+v", snap)
	}
}
