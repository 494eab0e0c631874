package redis

import (
	"testing"

	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/flowlog"
	"github.com/sightline-io/sightline/internal/livetest"
	"github.com/sightline-io/sightline/internal/parsertest"
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
		for _, r := range livetest.Replay(t, parsertest.CutPcap(t, capturePath, n), New(l7.Config{})) {
			// The reply to a command whose packets were cut is a lone response.
			if r.Type == flowlog.TypeResponse && r.RequestType == "" && r.ResponseStatus == flowlog.StatusSuccess {
				continue
			}
			sessions = append(sessions, r)
		}
		checkRows(t, sessions, flowlog.ObsLocalNIC, commonRows[1:])
	}
}
