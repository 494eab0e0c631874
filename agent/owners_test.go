package agent

import (
	"net/netip"
	"testing"

	"github.com/sightline-io/sightline/agent/capture"
	"github.com/sightline-io/sightline/agent/capture/tcpevents"
	"github.com/sightline-io/sightline/flowlog"
)

func TestOwnersAttributeBothEnds(t *testing.T) {
	o := newOwners()
	cli, srv := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")
	o.observe(&tcpevents.Event{Type: tcpevents.ConnectOK, PID: 11, Comm: "curl",
		Tuple: capture.Tuple{AIP: cli, APort: 40000, BIP: srv, BPort: 80, L4: 6}})
	o.observe(&tcpevents.Event{Type: tcpevents.Established, PID: 22, Comm: "nginx",
		Tuple: capture.Tuple{AIP: srv, APort: 80, BIP: cli, BPort: 40000, L4: 6}})
	// Events without an owner or a port teach nothing.
	o.observe(&tcpevents.Event{Type: tcpevents.ConnectStart, PID: 33, Tuple: capture.Tuple{AIP: cli, BIP: srv, BPort: 81}})
	r := flowlog.L4FlowLog{Protocol: 6, IP0: cli, ClientPort: 40000, IP1: srv, ServerPort: 80}
	o.attribute(&r)
	if r.ProcessID0 != 11 || r.ProcessKName0 != "curl" || r.ProcessID1 != 22 || r.ProcessKName1 != "nginx" {
		t.Fatalf("row %+v", r)
	}
	u := flowlog.L4FlowLog{Protocol: 17, IP0: cli, ClientPort: 40000, IP1: srv, ServerPort: 80}
	o.attribute(&u)
	if u.ProcessID0 != 0 {
		t.Fatalf("UDP row attributed: %+v", u)
	}
	for i := range maxOwners + 10 {
		o.observe(&tcpevents.Event{Type: tcpevents.Close, PID: 1, Comm: "x",
			Tuple: capture.Tuple{AIP: cli, APort: uint16(i%60000 + 1), BIP: netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}), BPort: 9, L4: 6}})
	}
	if len(o.m) > maxOwners {
		t.Fatalf("%d owners held, bound %d", len(o.m), maxOwners)
	}
}
