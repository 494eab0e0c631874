package duckdb

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/sightline-io/sightline/flowlog"
)

func TestL4InsertAndNetworkViews(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	now := time.Now().UTC().Truncate(time.Minute).Add(30 * time.Second)
	edge := func(ct flowlog.CloseType, retrans uint32, rtt uint32) flowlog.L4FlowLog {
		return flowlog.L4FlowLog{
			Time: now, StartTime: now.Add(-time.Second), EndTime: now, AgentID: "a", ObservationPoint: "local",
			IP0: netip.MustParseAddr("10.0.0.1"), IP1: netip.MustParseAddr("10.0.0.2"), ClientPort: 40000, ServerPort: 80,
			Protocol: 6, ByteTx: 100, ByteRx: 1000, PacketTx: 5, PacketRx: 5, RTT: rtt, RetransTx: retrans,
			SRTSum: 300, SRTCount: 3, CloseType: ct, IsNewFlow: true, IsClosed: ct != flowlog.CloseForceReport,
		}
	}
	rows := []flowlog.L4FlowLog{
		edge(flowlog.CloseNormal, 0, 1000),
		edge(flowlog.CloseEstServerDirectRST, 0, 0),
		edge(flowlog.CloseTransferServerRST, 2, 3000),
		edge(flowlog.CloseTransferServerQueueLack, 1, 0),
	}
	if err := s.InsertL4(ctx, rows); err != nil {
		t.Fatal(err)
	}
	res, err := s.Query(ctx, `SELECT new_flow, closed_flow, byte, packet, rtt, srt, retrans, retrans_ratio,
		tcp_establish_fail, server_establish_fail, client_establish_fail, tcp_transfer_fail, tcp_rst_fail,
		server_reset, server_queue_lack FROM flow_metrics."network.1m"`)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Rows) != 1 {
		t.Fatalf("rows %v", res.Rows)
	}
	got := map[string]any{}
	for i, c := range res.Columns {
		got[c] = res.Rows[0][i]
	}
	want := map[string]float64{
		"new_flow": 4, "closed_flow": 4, "byte": 4400, "packet": 40, "rtt": 2000, "srt": 100, "retrans": 3,
		"retrans_ratio": 3.0 / 40, "tcp_establish_fail": 1, "server_establish_fail": 1, "client_establish_fail": 0,
		"tcp_transfer_fail": 2, "tcp_rst_fail": 2, "server_reset": 2, "server_queue_lack": 1,
	}
	for k, w := range want {
		if f := toFloat(got[k]); f != w {
			t.Errorf("%s = %v, want %v", k, got[k], w)
		}
	}
	// The same through the unquoted name, and ids assigned.
	res, err = s.Query(ctx, `SELECT count(*) FROM flow_metrics.network_1s`)
	if err != nil || toFloat(res.Rows[0][0]) != 1 {
		t.Fatalf("network_1s: %v %v", res, err)
	}
	res, err = s.Query(ctx, `SELECT min(_id), max(_id) FROM l4_flow_log`)
	if err != nil || toFloat(res.Rows[0][0]) != 1 || toFloat(res.Rows[0][1]) != 4 {
		t.Fatalf("ids: %v %v", res, err)
	}
	if st := s.Stats(); st.L4RowsInserted != 4 {
		t.Errorf("stats %+v", st)
	}
}

// toFloat reads a numeric result whatever type the engine chose (sums of
// UBIGINT are HUGEINT, returned as *big.Int).
func toFloat(v any) float64 {
	f, err := strconv.ParseFloat(fmt.Sprint(v), 64)
	if err != nil {
		return -1
	}
	return f
}
