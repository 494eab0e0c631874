package memcached

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/flowlog"
	"github.com/sightline-io/sightline/internal/livetest"
)

const capturePath = "testdata/memcached.pcap"

// TestCaptureMemcached replays TestLiveMemcached's recorded traffic
// (gomemcache, raw text and binary commands).
func TestCaptureMemcached(t *testing.T) {
	rows := livetest.Replay(t, capturePath, New(l7.Config{}))
	checkRows(t, rows, flowlog.ObsLocalNIC)
	if len(rows) != len(liveRows) {
		t.Errorf("%d rows, want %d:\n%s", len(rows), len(liveRows), livetest.Describe(rows))
	}
}

// TestCaptureMemcachedMidConnection replays the capture without its first
// packets: the gomemcache connection is seen from its middle, and the
// commands after the cut must still be parsed and paired.
func TestCaptureMemcachedMidConnection(t *testing.T) {
	for _, n := range []int{4, 6, 8} {
		rows := livetest.Replay(t, cutPcap(t, capturePath, n), New(l7.Config{}))
		var reqs int
		for _, r := range rows {
			switch {
			case r.Type == flowlog.TypeResponse && r.RequestType == "":
				// The reply to a command whose packets were cut.
			case r.Type != flowlog.TypeSession || r.ResponseStatus == flowlog.StatusParseFailed:
				t.Errorf("cut %d: unexpected row %s", n, livetest.Describe([]flowlog.L7FlowLog{r}))
			default:
				reqs++
			}
		}
		if reqs < len(liveRows)-4 {
			t.Errorf("cut %d: %d sessions:\n%s", n, reqs, livetest.Describe(rows))
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
