package kafka

import (
	"testing"

	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/flowlog"
	"github.com/sightline-io/sightline/internal/livetest"
)

// TestCaptureKafka replays the traffic TestLiveKafka recorded (kfake broker,
// franz-go clients with their newest API versions) and checks the same rows.
func TestCaptureKafka(t *testing.T) {
	rows := livetest.Replay(t, "testdata/kafka.pcap", New(l7.Config{}))
	wait := func(what string, pred func(*flowlog.L7FlowLog) bool) flowlog.L7FlowLog {
		t.Helper()
		for i := range rows {
			if pred(&rows[i]) {
				return rows[i]
			}
		}
		t.Fatalf("no %s row in:\n%s", what, livetest.Describe(rows))
		return flowlog.L7FlowLog{}
	}
	checkKafkaRows(t, wait, flowlog.ObsLocalNIC)
	// driveKafka's records: offsets 0-2 produced with acks=all, 3 with
	// acks=0, record i carrying trace i.
	prodOffsets, consOffsets := produced{}, produced{}
	for i := range 4 {
		_, id := traceparent(i)
		if i < 3 {
			prodOffsets[int64(i)] = id
		}
		consOffsets[int64(i)] = id
	}
	checkLinking(t, rows, prodOffsets, consOffsets)
	for i := range rows {
		if rows[i].ResponseStatus == flowlog.StatusParseFailed {
			t.Errorf("parse failure: %s", livetest.Describe(rows[i:i+1]))
		}
	}
}

// TestCaptureKafkaMidConnection replays the same traffic without its first
// packets: connections already open when the capture starts are picked up at
// their next request.
func TestCaptureKafkaMidConnection(t *testing.T) {
	rows := livetest.Replay(t, "testdata/kafka-mid.pcap", New(l7.Config{}))
	var sessions int
	for i := range rows {
		if rows[i].Type == flowlog.TypeSession && rows[i].ResponseCode != nil {
			sessions++
		}
	}
	if sessions < 5 {
		t.Fatalf("%d sessions with a code:\n%s", sessions, livetest.Describe(rows))
	}
}
