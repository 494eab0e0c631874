package e2e

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/sightline-io/sightline/agent"
	"github.com/sightline-io/sightline/flowlog"
)

// TestFlowsStored: with packet capture on loopback, a normal HTTP exchange
// and a connect to a closed port become l4_flow_log rows with the right
// close types, queryable with SQL, and show in the network rollup.
func TestFlowsStored(t *testing.T) {
	requireRootAndTools(t)
	s := startStackWith(t, agent.Config{Packets: agent.PacketConfig{Interfaces: []string{"lo"}}})
	port, _ := startBackend(t)
	waitOK(t, fmt.Sprintf("http://127.0.0.1:%d/healthz", port))
	// A fresh connection for the exchange (waitOK's may linger).
	tr := &http.Transport{DisableKeepAlives: true}
	resp, err := (&http.Client{Transport: tr}).Get(fmt.Sprintf("http://127.0.0.1:%d/api/users/7", port))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	closed := freePort(t)
	if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", closed), time.Second); err == nil {
		c.Close()
		t.Fatalf("port %d is open", closed)
	}

	// Closed flows are reported after a short linger, then shipped.
	deadline := time.Now().Add(20 * time.Second)
	var normal, refused []map[string]any
	for time.Now().Before(deadline) {
		normal = s.query(t, fmt.Sprintf(`SELECT close_type, syn_count, synack_count, fin_count, byte_tx, byte_rx, rtt, observation_point
			FROM l4_flow_log WHERE server_port = %d AND close_type = %d`, port, flowlog.CloseNormal))
		refused = s.query(t, fmt.Sprintf(`SELECT close_type, syn_count, rst_count, process_id_0, process_kname_0 FROM l4_flow_log WHERE server_port = %d`, closed))
		if len(normal) > 0 && len(refused) > 0 {
			break
		}
		time.Sleep(300 * time.Millisecond)
	}
	if len(normal) == 0 || len(refused) == 0 {
		t.Fatalf("flows: normal %v, refused %v", normal, refused)
	}
	n := normal[0]
	if num(t, n["syn_count"]) != 1 || num(t, n["synack_count"]) != 1 || num(t, n["fin_count"]) < 2 ||
		num(t, n["byte_tx"]) == 0 || num(t, n["byte_rx"]) == 0 || str(n["observation_point"]) != "local" {
		t.Errorf("normal flow: %v", n)
	}
	if num(t, refused[0]["close_type"]) != int64(flowlog.CloseEstServerDirectRST) || num(t, refused[0]["rst_count"]) == 0 {
		t.Errorf("refused flow: %v", refused[0])
	}
	// The failed connect is attributed to the process that made it (this
	// one), through the TCP lifecycle tracer.
	if num(t, refused[0]["process_id_0"]) != int64(os.Getpid()) || str(refused[0]["process_kname_0"]) == "" {
		t.Errorf("refused flow not attributed to pid %d: %v", os.Getpid(), refused[0])
	}
	// And the agent's own view counts it.
	if v := s.metricValue(t, `sightline_agent_flows_total{close_type="Est. Server Direct RST"}`); v < 1 {
		t.Errorf("sightline_agent_flows_total for direct RST = %v", v)
	}
	rollup := s.query(t, fmt.Sprintf(`SELECT sum(server_establish_fail) AS fails, sum(new_flow) AS flows
		FROM flow_metrics.network_1m WHERE server_port = %d`, closed))
	if len(rollup) != 1 || num(t, rollup[0]["fails"]) < 1 {
		t.Errorf("network_1m for the closed port: %v", rollup)
	}
}

// TestNetworkSpansJoinProcessSpans: with --packet-l7, an HTTP request on
// loopback gives a network span (signal_source 0, observation point local)
// next to the process spans, and the hop's TCP sequence numbers join them.
func TestNetworkSpansJoinProcessSpans(t *testing.T) {
	requireRootAndTools(t, "curl")
	s := startStackWith(t, agent.Config{Packets: agent.PacketConfig{Interfaces: []string{"lo"}, L7: true}})
	port, _ := startBackend(t)
	waitOK(t, fmt.Sprintf("http://127.0.0.1:%d/healthz", port))
	out, err := exec.Command("curl", "-s", fmt.Sprintf("http://127.0.0.1:%d/api/users/42", port)).CombinedOutput()
	if err != nil {
		t.Fatalf("curl: %v: %s", err, out)
	}
	sql := fmt.Sprintf(`SELECT signal_source, observation_point, req_tcp_seq, resp_tcp_seq, response_code
		FROM l7_flow_log WHERE server_port = %d AND request_resource = '/api/users/42' ORDER BY signal_source`, port)
	deadline := time.Now().Add(15 * time.Second)
	var rows []map[string]any
	for time.Now().Before(deadline) {
		rows = s.query(t, sql)
		if len(rows) >= 3 {
			break
		}
		time.Sleep(300 * time.Millisecond)
	}
	var network map[string]any
	process := map[string]map[string]any{}
	for _, r := range rows {
		switch num(t, r["signal_source"]) {
		case int64(flowlog.SourcePacket):
			network = r
		default:
			process[str(r["observation_point"])] = r
		}
	}
	if network == nil || process["c-p"] == nil || process["s-p"] == nil {
		t.Fatalf("want a network span and both process spans, got %v", rows)
	}
	if str(network["observation_point"]) != "local" || num(t, network["response_code"]) != 200 {
		t.Errorf("network span %v", network)
	}
	for _, obs := range []string{"c-p", "s-p"} {
		p := process[obs]
		if num(t, p["req_tcp_seq"]) != num(t, network["req_tcp_seq"]) || num(t, p["resp_tcp_seq"]) != num(t, network["resp_tcp_seq"]) {
			t.Errorf("%s span tcp seqs %v/%v, network span %v/%v", obs, p["req_tcp_seq"], p["resp_tcp_seq"],
				network["req_tcp_seq"], network["resp_tcp_seq"])
		}
	}
}
