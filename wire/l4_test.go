package wire

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/sightline-io/sightline/flowlog"
)

func sampleL4() flowlog.L4FlowLog {
	t0 := time.Unix(1700000000, 123000).UTC()
	return flowlog.L4FlowLog{
		ID: 7, Time: t0, StartTime: t0.Add(-time.Second), EndTime: t0, Duration: 1e6, AgentID: "a", Host: "h", OrgID: 1, TeamID: 2,
		SignalSource: flowlog.SourcePacket, ObservationPoint: "c", IP0: netip.MustParseAddr("10.0.0.1"), IP1: netip.MustParseAddr("fd00::2"),
		ClientPort: 40000, ServerPort: 443, Protocol: 6, L7Protocol: flowlog.L7HTTP1, ByteTx: 1, ByteRx: 2, PacketTx: 3, PacketRx: 4,
		RTT: 5, RTTClient: 6, RTTServer: 7, SRTSum: 8, SRTCount: 9, SRTMax: 10, ARTSum: 11, ARTCount: 12, ARTMax: 13,
		RetransTx: 14, RetransRx: 15, ZeroWinTx: 16, ZeroWinRx: 17, OutOfOrder: 18, SYNCount: 19, SYNACKCount: 20,
		RetransSYN: 21, RetransSYNACK: 22, FINCount: 23, RSTCount: 24, CloseType: flowlog.CloseTransferServerRST,
		IsNewFlow: true, IsClosed: true, ProcessID0: 25, ProcessID1: 26, ProcessKName0: "curl", ProcessKName1: "nginx",
	}
}

func TestL4RoundTrip(t *testing.T) {
	in := sampleL4()
	out, err := L4FromProto(L4ToProto(&in))
	if err != nil {
		t.Fatal(err)
	}
	if out != in {
		t.Fatalf("round trip\n got %+v\nwant %+v", out, in)
	}
	bad := L4ToProto(&in)
	bad.ClientPort = 70000
	if _, err := L4FromProto(bad); err == nil {
		t.Fatal("port 70000 accepted")
	}
}

// TestL4ShipToReceiver ships rows through a real gRPC server.
func TestL4ShipToReceiver(t *testing.T) {
	var mu sync.Mutex
	var got []flowlog.L4FlowLog
	recv, err := NewReceiver(func(context.Context, []flowlog.L7FlowLog) error { return nil }, ReceiverOptions{})
	if err != nil {
		t.Fatal(err)
	}
	recv.SetL4Sink(func(_ context.Context, rows []flowlog.L4FlowLog) error {
		mu.Lock()
		got = append(got, rows...)
		mu.Unlock()
		return nil
	})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := NewGRPCServer(recv)
	go srv.Serve(lis)
	defer srv.Stop()
	sh, err := NewShipper(lis.Addr().String(), ShipperOptions{AgentID: "agent-9"})
	if err != nil {
		t.Fatal(err)
	}
	defer sh.Close()
	r := sampleL4()
	r.AgentID = ""
	sh.EnqueueL4(r, r)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := sh.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 2 || got[0].AgentID != "agent-9" || got[1].CloseType != flowlog.CloseTransferServerRST {
		t.Fatalf("received %+v", got)
	}
	if sent, dropped := sh.L4Stats(); sent != 2 || dropped != 0 {
		t.Fatalf("sent %d dropped %d", sent, dropped)
	}
	if st := recv.Stats(); st.L4RowsInserted != 2 {
		t.Fatalf("receiver stats %+v", st)
	}
}
