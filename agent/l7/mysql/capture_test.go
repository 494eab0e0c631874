package mysql

import (
	"testing"

	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/flowlog"
	"github.com/sightline-io/sightline/internal/livetest"
)

// TestCaptureMySQL replays TestLiveMySQL's recorded traffic (mariadb CLI
// plain and --compress, go-sql-driver prepared statements).
func TestCaptureMySQL(t *testing.T) {
	rows := livetest.Replay(t, "testdata/mysql.pcap", New(l7.Config{}))
	checkRows(t, rows, flowlog.ObsLocalNIC)
	if len(rows) != 20 {
		t.Errorf("%d rows, want 20:\n%s", len(rows), livetest.Describe(rows))
	}
}

// TestCaptureMySQLMidConnection replays the go-sql-driver connection of
// testdata/mysql.pcap cut to start at its second COM_STMT_PREPARE (made
// with gopacket/pcapgo from the recording): no greeting, no login, yet the
// commands from there on are parsed, with the statement id learnt from the
// PREPARE response.
func TestCaptureMySQLMidConnection(t *testing.T) {
	rows := livetest.Replay(t, "testdata/mysql-midconn.pcap", New(l7.Config{}))
	want := []struct{ typ, resource string }{
		{"PREPARE", "SELECT item FROM orders WHERE id = ?"},
		{"SELECT", "SELECT item FROM orders WHERE id = ?"},
		{"STMT_CLOSE", "SELECT item FROM orders WHERE id = ?"},
		{"PREPARE", "UPDATE missing_table SET x = ? WHERE id = ?"},
		{"QUIT", ""},
	}
	if len(rows) != len(want) {
		t.Fatalf("%d rows, want %d:\n%s", len(rows), len(want), livetest.Describe(rows))
	}
	for i, w := range want {
		r := rows[i]
		if r.RequestType != w.typ || r.RequestResource != w.resource || r.Type != flowlog.TypeSession || r.RequestDomain != "" {
			t.Errorf("row %d: want %s %q:\n%s", i, w.typ, w.resource, livetest.Describe(rows[i:i+1]))
		}
	}
	if r := rows[3]; r.ResponseCode == nil || *r.ResponseCode != 1146 || r.ResponseStatus != flowlog.StatusClientError {
		t.Errorf("error row: %s", livetest.Describe(rows[3:4]))
	}
}
