package mongodb

import (
	"testing"

	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/flowlog"
	"github.com/sightline-io/sightline/internal/livetest"
)

// TestCaptureMongoDB replays TestLiveMongoDB's traffic (the Go driver
// against the test server) recorded with tcpdump.
func TestCaptureMongoDB(t *testing.T) {
	rows := livetest.Replay(t, "testdata/mongodb.pcap", New(l7.Config{}))
	for _, w := range driverWants {
		var found bool
		for _, r := range rows {
			if r.RequestType == w.cmd && r.RequestDomain == w.db && r.RequestResource == w.coll {
				found = true
				if r.ObservationPoint != flowlog.ObsLocalNIC || r.SignalSource != flowlog.SourcePacket {
					t.Errorf("row:\n%s", livetest.Describe([]flowlog.L7FlowLog{r}))
				}
				checkRow(t, r, w, false)
			}
		}
		if !found {
			t.Errorf("no row for %+v:\n%s", w, livetest.Describe(rows))
		}
	}
	for _, r := range rows {
		if r.Type != flowlog.TypeSession {
			t.Errorf("incomplete row:\n%s", livetest.Describe([]flowlog.L7FlowLog{r}))
		}
	}
}

// TestCaptureMongoDBMidstream replays a connection whose capture starts at
// a reply (editcap of mongodb.pcap): a lone response, then whole sessions.
func TestCaptureMongoDBMidstream(t *testing.T) {
	rows := livetest.Replay(t, "testdata/mongodb-midstream.pcap", New(l7.Config{}))
	if len(rows) < 5 || rows[0].Type != flowlog.TypeResponse || rows[0].ResponseStatus != flowlog.StatusSuccess {
		t.Fatalf("rows:\n%s", livetest.Describe(rows))
	}
	for _, w := range driverWants[1:6] {
		var found bool
		for _, r := range rows[1:] {
			if r.RequestType == w.cmd && r.RequestResource == w.coll {
				found = true
				checkRow(t, r, w, false)
			}
		}
		if !found {
			t.Errorf("no row for %+v:\n%s", w, livetest.Describe(rows))
		}
	}
}
