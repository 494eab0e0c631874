package memcached

import (
	"testing"

	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/flowlog"
	"github.com/sightline-io/sightline/internal/livetest"
	"github.com/sightline-io/sightline/internal/parsertest"
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
		rows := livetest.Replay(t, parsertest.CutPcap(t, capturePath, n), New(l7.Config{}))
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
