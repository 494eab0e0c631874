package http2_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"

	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/agent/l7/http2"
	"github.com/sightline-io/sightline/flowlog"
	"github.com/sightline-io/sightline/internal/livetest"
)

// sessions returns the session rows of a replay, failing on others: every
// request of the recordings was answered.
func sessions(t *testing.T, rows []flowlog.L7FlowLog) []flowlog.L7FlowLog {
	t.Helper()
	for _, r := range rows {
		if r.Type != flowlog.TypeSession {
			t.Errorf("not a session:\n%s", livetest.Describe([]flowlog.L7FlowLog{r}))
		}
	}
	return rows
}

func TestCaptureGRPC(t *testing.T) {
	rows := sessions(t, livetest.Replay(t, testdata("grpc.pcap"), http2.New(l7.Config{})))
	checkRows(t, rows, grpcWant, "")
	if len(rows) != len(grpcWant) {
		t.Errorf("%d rows, want %d:\n%s", len(rows), len(grpcWant), livetest.Describe(rows))
	}
}

func TestCaptureH2C(t *testing.T) {
	rows := sessions(t, livetest.Replay(t, testdata("h2c.pcap"), http2.New(l7.Config{})))
	if len(rows) != 3 {
		t.Fatalf("%d rows:\n%s", len(rows), livetest.Describe(rows))
	}
	addr := fmt.Sprintf("127.0.0.1:%d", rows[0].ServerPort)
	checkRows(t, rows, h2cWant(addr, 1, 3, 5), "")
}

// TestCaptureGRPCMidConnection replays the gRPC recording without its
// first third of packets: the capture begins after the preface and the
// first calls, whose header fields the peers' HPACK tables then reference.
// Later calls still come out; fields behind references the parser's tables
// never saw are left empty, never wrong.
func TestCaptureGRPCMidConnection(t *testing.T) {
	path := dropPackets(t, testdata("grpc.pcap"))
	rows := livetest.Replay(t, path, http2.New(l7.Config{}))
	t.Logf("rows:\n%s", livetest.Describe(rows))
	known := map[string]bool{"": true}
	for _, w := range grpcWant {
		known[w.resource] = true
	}
	byID := map[uint64]flowlog.L7FlowLog{}
	for _, r := range rows {
		if r.RequestID == nil {
			t.Errorf("row without stream id:\n%s", livetest.Describe([]flowlog.L7FlowLog{r}))
			continue
		}
		byID[*r.RequestID] = r
		if !known[r.RequestResource] || r.RequestType != "" && r.RequestType != "POST" ||
			r.L7Protocol != flowlog.L7GRPC {
			t.Errorf("garbage fields:\n%s", livetest.Describe([]flowlog.L7FlowLog{r}))
		}
	}
	// The last calls' paths are new to the table: sent as literals.
	for _, w := range grpcWant[3:] {
		r, ok := byID[w.id]
		if !ok || r.Type != flowlog.TypeSession || r.RequestResource != w.resource || r.RequestDomain != w.domain {
			t.Errorf("stream %d: want %s; rows:\n%s", w.id, w.resource, livetest.Describe(rows))
			continue
		}
		switch {
		case w.status == flowlog.StatusSuccess:
			// grpc-status 0 may be a reference to an entry added before the cut.
			if r.ResponseStatus != flowlog.StatusSuccess && r.ResponseStatus != flowlog.StatusUnknown {
				t.Errorf("stream %d: status %d", w.id, r.ResponseStatus)
			}
		case r.ResponseStatus != w.status || r.ResponseException != w.exception:
			t.Errorf("stream %d: status %d %q", w.id, r.ResponseStatus, r.ResponseException)
		}
	}
}

// dropPackets writes the capture at path without its first third of
// packets, cut before a client packet carrying data, and returns the new
// file's path.
func dropPackets(t *testing.T, path string) string {
	t.Helper()
	in, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	r, err := pcapgo.NewReader(in)
	if err != nil {
		t.Fatal(err)
	}
	type pkt struct {
		ci   gopacket.CaptureInfo
		data []byte
	}
	var pkts []pkt
	for {
		data, ci, err := r.ReadPacketData()
		if err != nil {
			break
		}
		pkts = append(pkts, pkt{ci, data})
	}
	var serverPort layers.TCPPort
	cut := -1
	for i, p := range pkts {
		tcp, ok := gopacket.NewPacket(p.data, r.LinkType(), gopacket.Default).Layer(layers.LayerTypeTCP).(*layers.TCP)
		if !ok {
			continue
		}
		if tcp.SYN && !tcp.ACK {
			serverPort = tcp.DstPort
		}
		if i >= len(pkts)/3 && len(tcp.Payload) > 0 && tcp.DstPort == serverPort {
			cut = i
			break
		}
	}
	if cut < 0 {
		t.Fatalf("%s: no client data packet past the first third of %d", path, len(pkts))
	}
	out := filepath.Join(t.TempDir(), "mid.pcap")
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	w := pcapgo.NewWriter(f)
	if err := w.WriteFileHeader(r.Snaplen(), r.LinkType()); err != nil {
		t.Fatal(err)
	}
	for _, p := range pkts[cut:] {
		if err := w.WritePacket(p.ci, p.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("replaying %s from packet %d of %d", path, cut+1, len(pkts))
	return out
}
