package nats

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/flowlog"
	"github.com/sightline-io/sightline/internal/livetest"
)

const capturePath = "testdata/nats.pcap"

// TestCaptureNATS replays TestLiveNATS's recorded traffic (nats.go against
// nats-server: pub/sub, request-reply, no responders, headers, a wrong token).
func TestCaptureNATS(t *testing.T) {
	rows := livetest.Replay(t, capturePath, New(l7.Config{}))
	checkRows(t, rows, flowlog.ObsLocalNIC)
	if len(rows) != 19 {
		t.Errorf("%d rows, want 19:\n%s", len(rows), livetest.Describe(rows))
	}
}

// TestCaptureNATSMidConnection replays the capture without its first
// packets (INFO, CONNECT): the connections are seen from their middle, and
// the messages after the cut must still be parsed.
func TestCaptureNATSMidConnection(t *testing.T) {
	for _, n := range []int{4, 6, 8, 12} {
		rows := livetest.Replay(t, cutPcap(t, capturePath, n), New(l7.Config{}))
		var pubs int
		for _, r := range rows {
			switch {
			case r.Type == flowlog.TypeResponse && r.RequestType == "":
				// The answer to a message whose packets were cut.
			case r.Type != flowlog.TypeSession || r.ResponseStatus == flowlog.StatusParseFailed:
				t.Errorf("cut %d: unexpected row %s", n, livetest.Describe([]flowlog.L7FlowLog{r}))
			case r.RequestType == "PUB" || r.RequestType == "HPUB":
				pubs++
			}
		}
		if pubs != 5 {
			t.Errorf("cut %d: %d publishes, want 5:\n%s", n, pubs, livetest.Describe(rows))
		}
	}
}

// cutPcap writes a copy of a pcap file without its first n packets.
func cutPcap(t *testing.T, path string, n int) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < 24 {
		t.Fatalf("%s: not a pcap file", path)
	}
	var order binary.ByteOrder = binary.LittleEndian
	if m := binary.BigEndian.Uint32(b); m == 0xa1b2c3d4 || m == 0xa1b23c4d {
		order = binary.BigEndian
	}
	off := 24
	for i := 0; i < n && off+16 <= len(b); i++ {
		off += 16 + int(order.Uint32(b[off+8:]))
	}
	if off > len(b) {
		t.Fatalf("%s: truncated record", path)
	}
	out := filepath.Join(t.TempDir(), "cut.pcap")
	if err := os.WriteFile(out, append(append([]byte(nil), b[:24]...), b[off:]...), 0o644); err != nil {
		t.Fatal(err)
	}
	return out
}
