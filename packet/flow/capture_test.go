package flow

import (
	"errors"
	"flag"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/sightline-io/sightline/flowlog"
	"github.com/sightline-io/sightline/packet/decode"
	"github.com/sightline-io/sightline/packet/pcapfile"
)

var record = flag.Bool("record", false, "TestLiveNetns: write the captures to testdata/ (for TestCaptures)")

// netDelay is the one-way delay of the "loss" scenario: the client-side
// capture sees an RTT of twice it.
const netDelay = 50 * time.Millisecond

// scenario is one recorded case: a server and a client role (helper_test.go)
// across the bridge, and what the flow table must make of the capture.
type scenario struct {
	name, server, client string
	clientMarker         string // wait for this line instead of the client's exit
	spec                 netemSpec
	check                func(t *testing.T, flows []flowlog.L4FlowLog)
}

var scenarios = []scenario{
	{name: "normal", server: "server-echo", client: "client-req", check: func(t *testing.T, fl []flowlog.L4FlowLog) {
		f := one(t, fl)
		eq(t, "close_type", f.CloseType, flowlog.CloseNormal)
		eq(t, "syn", f.SYNCount, 1)
		eq(t, "synack", f.SYNACKCount, 1)
		eq(t, "fin", f.FINCount, 2)
		eq(t, "retrans", f.RetransTx+f.RetransRx, 0)
		if f.RTT == 0 || f.ARTCount == 0 || f.SRTCount == 0 || f.ByteRx < respSize {
			t.Errorf("rtt %d art %d srt %d byte_rx %d", f.RTT, f.ARTCount, f.SRTCount, f.ByteRx)
		}
	}},
	{name: "closed_port", client: "client-closed", check: func(t *testing.T, fl []flowlog.L4FlowLog) {
		f := one(t, fl)
		eq(t, "close_type", f.CloseType, flowlog.CloseEstServerDirectRST)
		eq(t, "syn", f.SYNCount, 1)
		eq(t, "synack", f.SYNACKCount, 0)
		eq(t, "rst", f.RSTCount, 1)
	}},
	{name: "delay_loss", server: "server-sink", client: "client-bulk",
		spec: netemSpec{delay: netDelay, drop: map[int]bool{3: true, 9: true}},
		check: func(t *testing.T, fl []flowlog.L4FlowLog) {
			f := one(t, fl)
			eq(t, "close_type", f.CloseType, flowlog.CloseNormal)
			if f.RetransTx < 2 {
				t.Errorf("retrans_tx = %d, want >= 2 (two segments dropped)", f.RetransTx)
			}
			within(t, "rtt", f.RTT, 2*netDelay)
			within(t, "rtt_server", f.RTTServer, 2*netDelay)
			eq(t, "syn", f.SYNCount, 1)
		}},
	{name: "zero_window", server: "server-noread", client: "client-zerowin", check: func(t *testing.T, fl []flowlog.L4FlowLog) {
		f := one(t, fl)
		if f.ZeroWinRx == 0 {
			t.Errorf("zero_win_rx = 0, want > 0")
		}
		eq(t, "close_type", f.CloseType, flowlog.CloseTransferClientRST)
	}},
	{name: "server_rst", server: "server-rst", client: "client-bulk", check: func(t *testing.T, fl []flowlog.L4FlowLog) {
		f := one(t, fl)
		eq(t, "close_type", f.CloseType, flowlog.CloseTransferServerRST)
		if f.RSTCount == 0 {
			t.Errorf("no RST counted")
		}
	}},
	{name: "client_rst", server: "server-hold", client: "client-rst", check: func(t *testing.T, fl []flowlog.L4FlowLog) {
		f := one(t, fl)
		eq(t, "close_type", f.CloseType, flowlog.CloseTransferClientRST)
		eq(t, "fin", f.FINCount, 0)
	}},
	{name: "half_close", server: "server-half", client: "client-half", clientMarker: "done", check: func(t *testing.T, fl []flowlog.L4FlowLog) {
		f := one(t, fl)
		eq(t, "close_type", f.CloseType, flowlog.CloseClientHalfClose)
		eq(t, "fin", f.FINCount, 1)
	}},
	// Syncookies off: the first client gets in, then four SYNs race for the
	// last accept queue slot; the late ACKs are dropped and the server
	// retransmits its SYN-ACK (or drops the SYN while the queue is full).
	{name: "queue_overflow", server: "server-backlog", client: "client-flood",
		spec: netemSpec{delay: netDelay, syncookies: "0"}, check: func(t *testing.T, fl []flowlog.L4FlowLog) {
			overflowCheck(t, fl, true)
		}},
	// Syncookies on (the default): past the SYN queue the server answers
	// with a cookie and keeps no state, so a dropped ACK is never
	// followed by a SYN-ACK retransmission, only by the client's data
	// retransmissions.
	{name: "queue_overflow_cookies", server: "server-backlog", client: "client-flood",
		spec: netemSpec{delay: netDelay}, check: func(t *testing.T, fl []flowlog.L4FlowLog) {
			overflowCheck(t, fl, false)
		}},
}

func overflowCheck(t *testing.T, fl []flowlog.L4FlowLog, synackRetrans bool) {
	t.Helper()
	if len(fl) != 5 {
		t.Fatalf("%d flows, want 5", len(fl))
	}
	overflow, synRetrans := 0, 0
	for _, f := range fl {
		if f.CloseType == flowlog.CloseTransferServerQueueLack && (f.RetransSYNACK > 0) == synackRetrans {
			overflow++
		}
		synRetrans += int(f.RetransSYN)
	}
	if overflow == 0 {
		t.Errorf("no Transfer Server Queue Overflow flow (SYN-ACK retransmitted: %v): %+v", synackRetrans, fl)
	}
	t.Logf("%d flows, %d queue overflows, %d SYN retransmissions", len(fl), overflow, synRetrans)
}

// within checks that a µs value is within 20% of want.
func within(t *testing.T, what string, gotUS uint32, want time.Duration) {
	t.Helper()
	got := time.Duration(gotUS) * time.Microsecond
	if got < want*8/10 || got > want*12/10 {
		t.Errorf("%s = %v, want %v ± 20%%", what, got, want)
	}
}

func one(t *testing.T, fl []flowlog.L4FlowLog) flowlog.L4FlowLog {
	t.Helper()
	if len(fl) != 1 {
		t.Fatalf("%d flows, want 1: %+v", len(fl), fl)
	}
	return fl[0]
}

// replayCapture runs a capture through decode and a Table, times out what
// is left an hour after the last packet, and returns one summed row per
// flow to the scenario's server port.
func replayCapture(t *testing.T, path string) []flowlog.L4FlowLog {
	t.Helper()
	f, err := pcapfile.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var rows []flowlog.L4FlowLog
	tab := New(Config{}, func(r *flowlog.L4FlowLog) { rows = append(rows, *r) })
	var dec decode.Decoder
	var p decode.Packet
	var last time.Time
	for {
		fr, err := f.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("read %s: %v", path, err)
		}
		last = fr.Time
		if dec.Decode(fr.LinkType, fr.Data, &p) == nil {
			tab.Packet(&p, fr.Time, fr.WireLen)
		}
		tab.Tick(fr.Time)
	}
	tab.Tick(last.Add(time.Hour))
	tab.FlushAll(last.Add(time.Hour))
	return sumFlows(rows, 9000)
}

// sumFlows merges each flow's rows (by client port) into one.
func sumFlows(rows []flowlog.L4FlowLog, serverPort uint16) []flowlog.L4FlowLog {
	var out []flowlog.L4FlowLog
	at := map[uint16]int{}
	for _, r := range rows {
		if r.ServerPort != serverPort {
			continue
		}
		i, ok := at[r.ClientPort]
		if !ok || r.IsNewFlow {
			at[r.ClientPort] = len(out)
			out = append(out, r)
			continue
		}
		s := &out[i]
		s.ByteTx += r.ByteTx
		s.ByteRx += r.ByteRx
		s.PacketTx += r.PacketTx
		s.PacketRx += r.PacketRx
		s.RTT, s.RTTClient, s.RTTServer = max(s.RTT, r.RTT), max(s.RTTClient, r.RTTClient), max(s.RTTServer, r.RTTServer)
		s.SRTCount += r.SRTCount
		s.ARTCount += r.ARTCount
		s.RetransTx += r.RetransTx
		s.RetransRx += r.RetransRx
		s.ZeroWinTx += r.ZeroWinTx
		s.ZeroWinRx += r.ZeroWinRx
		s.SYNCount += r.SYNCount
		s.SYNACKCount += r.SYNACKCount
		s.RetransSYN += r.RetransSYN
		s.RetransSYNACK += r.RetransSYNACK
		s.FINCount += r.FINCount
		s.RSTCount += r.RSTCount
		s.CloseType, s.IsClosed = r.CloseType, r.IsClosed
	}
	return out
}

// TestCaptures replays the committed captures (made by TestLiveNetns
// -record) and checks each scenario.
func TestCaptures(t *testing.T) {
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			path := filepath.Join("testdata", sc.name+".pcap")
			if _, err := os.Stat(path); err != nil {
				t.Fatalf("capture missing (record it with go test -run TestLiveNetns -record): %v", err)
			}
			flows := replayCapture(t, path)
			logFlows(t, flows)
			sc.check(t, flows)
		})
	}
}

func logFlows(t *testing.T, flows []flowlog.L4FlowLog) {
	t.Helper()
	for _, f := range flows {
		t.Logf("port %d: %v rtt %dµs (server %d, client %d) syn %d retrans_syn %d synack %d retrans_synack %d retrans %d/%d zero_win %d/%d fin %d rst %d pkts %d/%d",
			f.ClientPort, f.CloseType, f.RTT, f.RTTServer, f.RTTClient, f.SYNCount, f.RetransSYN,
			f.SYNACKCount, f.RetransSYNACK, f.RetransTx, f.RetransRx, f.ZeroWinTx, f.ZeroWinRx, f.FINCount, f.RSTCount, f.PacketTx, f.PacketRx)
	}
}

// TestLiveNetns runs every scenario now, in fresh namespaces, captures it
// with tcpdump and checks the replay the same way TestCaptures does.
func TestLiveNetns(t *testing.T) {
	mustRoot(t)
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			if d := os.Getenv("SIGHTLINE_RECORD_DIR"); d != "" {
				dir = d // keep the captures (debugging)
			}
			path := filepath.Join(dir, sc.name+".pcap")
			runScenario(t, sc, path)
			sc.check(t, replayCapture(t, path))
			if *record && !t.Failed() {
				b, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join("testdata", sc.name+".pcap"), b, 0o644); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

func runScenario(t *testing.T, sc scenario, path string) {
	n := newTestNet(t, sc.spec)
	stop := n.capture(path)
	if sc.server != "" {
		n.start(n.sns, sc.server, "ready")
	}
	c := n.start(n.cns, sc.client, sc.clientMarker)
	if sc.clientMarker == "" {
		c.wait(t, 30*time.Second)
	}
	stop()
	if os.Getenv("SIGHTLINE_FLOW_DEBUG") != "" {
		out, _ := exec.Command("sh", "-c", "ip netns exec "+n.sns+" nstat -az | grep -Ei 'overflow|synretrans|drop|retrans'; ip netns exec "+n.sns+" ss -tan").CombinedOutput()
		t.Logf("server namespace:\n%s", out)
	}
}
