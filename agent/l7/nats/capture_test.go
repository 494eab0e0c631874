package nats

import (
	"testing"

	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/flowlog"
	"github.com/sightline-io/sightline/internal/livetest"
	"github.com/sightline-io/sightline/internal/parsertest"
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
		rows := livetest.Replay(t, parsertest.CutPcap(t, capturePath, n), New(l7.Config{}))
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
