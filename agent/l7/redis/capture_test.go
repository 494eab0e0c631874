package redis

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/flowlog"
	"github.com/sightline-io/sightline/internal/livetest"
)

const capturePath = "testdata/redis.pcap"

// TestCaptureRedis replays TestLiveRedis's recorded traffic (redis-cli,
// --pipe, go-redis RESP3 pipeline and pub/sub, AUTH).
func TestCaptureRedis(t *testing.T) {
	rows := livetest.Replay(t, capturePath, New(l7.Config{}))
	checkRows(t, rows, flowlog.ObsLocalNIC, append(append([]expect(nil), commonRows...), authExpect...))
	checkPubSub(t, rows, flowlog.ObsLocalNIC)
	if len(rows) != 38 {
		t.Errorf("%d rows, want 38:\n%s", len(rows), livetest.Describe(rows))
	}
}

// TestCaptureRedisMidConnection replays the capture without its first
// packets, so that the first connection is seen from its middle: the later
// commands must still be parsed and paired.
func TestCaptureRedisMidConnection(t *testing.T) {
	for _, n := range []int{3, 4, 5, 6} {
		var sessions []flowlog.L7FlowLog
		for _, r := range livetest.Replay(t, cutPcap(t, capturePath, n), New(l7.Config{})) {
			// The reply to a command whose packets were cut is a lone response.
			if r.Type == flowlog.TypeResponse && r.RequestType == "" && r.ResponseStatus == flowlog.StatusSuccess {
				continue
			}
			sessions = append(sessions, r)
		}
		checkRows(t, sessions, flowlog.ObsLocalNIC, commonRows[1:])
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
