package amqp

import (
	"testing"

	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/flowlog"
	"github.com/sightline-io/sightline/internal/livetest"
)

// TestCaptureAMQP replays the traffic TestLiveAMQP recorded (RabbitMQ
// 3.10, amqp091-go) and checks the same rows.
func TestCaptureAMQP(t *testing.T) {
	rows := livetest.Replay(t, "testdata/amqp.pcap", New(l7.Config{}))
	port := 0
	for _, r := range rows {
		if r.RequestType == "Connection.Open" {
			port = int(r.ServerPort)
		}
	}
	find := func(what string, pred func(*flowlog.L7FlowLog) bool) flowlog.L7FlowLog {
		t.Helper()
		for i := range rows {
			if pred(&rows[i]) {
				return rows[i]
			}
		}
		t.Fatalf("no %s row in:\n%s", what, livetest.Describe(rows))
		return flowlog.L7FlowLog{}
	}
	checkAMQPRows(t, find, port, flowlog.ObsLocalNIC)
	checkAMQPLinking(t, find, port)
	for i := range rows {
		if s := rows[i].ResponseStatus; s == flowlog.StatusParseFailed || s == flowlog.StatusTimeout {
			t.Errorf("failed row: %s", livetest.Describe(rows[i:i+1]))
		}
	}
}

// TestCaptureAMQPMidConnection replays the recording without its handshake:
// the connection is claimed at its first method frame.
func TestCaptureAMQPMidConnection(t *testing.T) {
	rows := livetest.Replay(t, "testdata/amqp-mid.pcap", New(l7.Config{}))
	var sessions, declares int
	for i := range rows {
		if rows[i].Type == flowlog.TypeSession {
			sessions++
		}
		if rows[i].RequestType == "Queue.Declare" && rows[i].ResponseCode != nil && *rows[i].ResponseCode == 404 {
			declares++
		}
	}
	if sessions < 4 || declares != 1 {
		t.Fatalf("%d sessions, %d failed declares:\n%s", sessions, declares, livetest.Describe(rows))
	}
}
