package postgres

import (
	"testing"

	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/flowlog"
	"github.com/sightline-io/sightline/internal/livetest"
)

// TestCapturePostgres replays TestLivePostgres's recorded traffic (psql
// simple queries after an SSL request answered 'N', pgx extended protocol).
func TestCapturePostgres(t *testing.T) {
	rows := livetest.Replay(t, "testdata/postgres.pcap", New(l7.Config{}))
	checkRows(t, rows, flowlog.ObsLocalNIC)
	if len(rows) != 15 {
		t.Errorf("%d rows, want 15:\n%s", len(rows), livetest.Describe(rows))
	}
}

// TestCapturePostgresMidConnection replays the pgx connection of
// testdata/postgres.pcap cut to start at its second Parse (made with
// gopacket/pcapgo from the recording): no startup, yet the extended
// queries from there on are parsed.
func TestCapturePostgresMidConnection(t *testing.T) {
	rows := livetest.Replay(t, "testdata/postgres-midconn.pcap", New(l7.Config{}))
	want := []struct{ typ, resource string }{
		{"PREPARE", "SELECT name FROM items WHERE id = $1"},
		{"SELECT", "SELECT name FROM items WHERE id = $1"},
		{"PREPARE", "SELECT * FROM missing WHERE id = $1"},
		{"TERMINATE", ""},
	}
	if len(rows) != len(want) {
		t.Fatalf("%d rows, want %d:\n%s", len(rows), len(want), livetest.Describe(rows))
	}
	for i, w := range want {
		r := rows[i]
		if r.RequestType != w.typ || r.RequestResource != w.resource || r.Type != flowlog.TypeSession {
			t.Errorf("row %d: want %s %q:\n%s", i, w.typ, w.resource, livetest.Describe(rows[i:i+1]))
		}
	}
	if r := rows[2]; r.ResponseStatus != flowlog.StatusClientError || r.ResponseException != `42P01: relation "missing" does not exist` {
		t.Errorf("error row: %s", livetest.Describe(rows[2:3]))
	}
}
