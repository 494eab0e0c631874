package fastcgi

import (
	"testing"

	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/flowlog"
	"github.com/sightline-io/sightline/internal/livetest"
)

// TestCaptureFastCGI replays TestLiveFastCGI's nginx ↔ php-fpm traffic
// recorded with tcpdump.
func TestCaptureFastCGI(t *testing.T) {
	rows := livetest.Replay(t, "testdata/fastcgi.pcap", New(l7.Config{}))
	if len(rows) != len(curlWants) {
		t.Fatalf("%d rows, want %d:\n%s", len(rows), len(curlWants), livetest.Describe(rows))
	}
	for i, w := range curlWants {
		r := rows[i]
		if r.RequestType != w.method || r.RequestResource != w.resource || r.ObservationPoint != flowlog.ObsLocalNIC {
			t.Errorf("row %d:\n%s", i, livetest.Describe(rows[i:i+1]))
		}
		checkRow(t, r, w, false)
	}
}

// TestCaptureFastCGIMidstream replays a capture that starts after nginx
// sent its first request (editcap of fastcgi.pcap): the response alone is
// recognised by its CGI headers, then the next request is a whole session.
func TestCaptureFastCGIMidstream(t *testing.T) {
	rows := livetest.Replay(t, "testdata/fastcgi-midstream.pcap", New(l7.Config{}))
	if len(rows) != 2 {
		t.Fatalf("%d rows, want 2:\n%s", len(rows), livetest.Describe(rows))
	}
	lone := rows[0]
	if lone.Type != flowlog.TypeResponse || lone.ResponseCode == nil || *lone.ResponseCode != 200 || lone.RequestID == nil || *lone.RequestID != 1 {
		t.Errorf("lone response:\n%s", livetest.Describe(rows[:1]))
	}
	checkRow(t, rows[1], curlWants[1], false)
}
