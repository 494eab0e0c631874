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
		// waitOK's connection closes normally too (its last row may count
		// nothing new): the exchange's flow is the one whose SYN was seen.
		normal = s.query(t, fmt.Sprintf(`SELECT close_type, syn_count, synack_count, fin_count, byte_tx, byte_rx, rtt, observation_point
			FROM l4_flow_log WHERE server_port = %d AND close_type = %d AND syn_count > 0 ORDER BY time DESC LIMIT 1`, port, flowlog.CloseNormal))
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

// TestFlowFailuresLive: failure and anomaly cases on loopback, seen by the
// agent's own packet capture and flow table: a server that resets a
// transfer, a client that resets, and a receiver that stops reading (zero
// window). (Every case is also replayed from recorded captures, and run in
// network namespaces, in packet/flow.)
func TestFlowFailuresLive(t *testing.T) {
	requireRootAndTools(t)
	s := startStackWith(t, agent.Config{Packets: agent.PacketConfig{Interfaces: []string{"lo"}}})

	// listen serves each accepted connection with handle.
	listen := func(handle func(*net.TCPConn)) int {
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go handle(c.(*net.TCPConn))
			}
		}()
		return ln.Addr().(*net.TCPAddr).Port
	}
	dial := func(port int) *net.TCPConn {
		c, err := net.Dial("tcp4", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			t.Fatal(err)
		}
		return c.(*net.TCPConn)
	}

	// The server reads a request, then aborts (SO_LINGER 0 → RST).
	serverRST := listen(func(c *net.TCPConn) {
		c.Read(make([]byte, 64))
		c.SetLinger(0)
		c.Close()
	})
	c := dial(serverRST)
	c.Write([]byte("hello"))
	c.Read(make([]byte, 1)) // ECONNRESET
	c.Close()

	// The client aborts after an exchange.
	clientRST := listen(func(c *net.TCPConn) {
		buf := make([]byte, 64)
		n, _ := c.Read(buf)
		c.Write(buf[:n])
		c.Read(buf) // until the client's reset
		c.Close()
	})
	c = dial(clientRST)
	c.Write([]byte("ping"))
	c.Read(make([]byte, 4))
	c.SetLinger(0)
	c.Close()

	// The server stops reading with a small receive buffer: its window
	// closes; then the client gives up with a reset.
	stopped := make(chan struct{})
	zeroWin := listen(func(c *net.TCPConn) {
		<-stopped
		c.Close()
	})
	zc, err := net.DialTimeout("tcp4", fmt.Sprintf("127.0.0.1:%d", zeroWin), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	z := zc.(*net.TCPConn)
	z.SetWriteBuffer(4096)
	// Write until a whole second passes without a byte accepted: the
	// receiver's window is then shut and has been announced (and probed)
	// for that second, however slowly a loaded machine got there.
	chunk := make([]byte, 64<<10)
	for giveUp := time.Now().Add(15 * time.Second); time.Now().Before(giveUp); {
		z.SetWriteDeadline(time.Now().Add(time.Second))
		if n, err := z.Write(chunk); err != nil && n == 0 {
			break
		}
	}
	z.SetLinger(0)
	z.Close()
	close(stopped)

	want := map[int]func(map[string]any) bool{
		serverRST: func(r map[string]any) bool { return num(t, r["close_type"]) == int64(flowlog.CloseTransferServerRST) },
		clientRST: func(r map[string]any) bool { return num(t, r["close_type"]) == int64(flowlog.CloseTransferClientRST) },
		zeroWin: func(r map[string]any) bool {
			return num(t, r["zero_win_rx"]) > 0 && num(t, r["close_type"]) == int64(flowlog.CloseTransferClientRST)
		},
	}
	deadline := time.Now().Add(20 * time.Second)
	for port, ok := range want {
		var rows []map[string]any
		for {
			rows = s.query(t, fmt.Sprintf(`SELECT close_type, zero_win_rx, zero_win_tx, rst_count FROM l4_flow_log
				WHERE server_port = %d AND is_closed`, port))
			if len(rows) > 0 || time.Now().After(deadline) {
				break
			}
			time.Sleep(300 * time.Millisecond)
		}
		if len(rows) != 1 || !ok(rows[0]) {
			t.Errorf("port %d: rows %v", port, rows)
		}
	}
}
