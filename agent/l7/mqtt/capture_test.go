package mqtt

import (
	"testing"

	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/flowlog"
	"github.com/sightline-io/sightline/internal/livetest"
)

// TestCaptureMQTT replays the traffic TestLiveMQTT recorded (mosquitto,
// mosquitto_pub/sub 3.1.1 and 5, paho) and checks the same rows.
func TestCaptureMQTT(t *testing.T) {
	rows := livetest.Replay(t, "testdata/mqtt.pcap", New(l7.Config{}))
	open, auth := ports(rows)
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
	checkMQTTRows(t, find, open, auth, flowlog.ObsLocalNIC)
	for i := range rows {
		if s := rows[i].ResponseStatus; s == flowlog.StatusParseFailed || s == flowlog.StatusTimeout {
			t.Errorf("failed row: %s", livetest.Describe(rows[i:i+1]))
		}
	}
}

// ports finds the broker's two listener ports: the anonymous one serves
// sub-v5, the other refused bad-mqttv311.
func ports(rows []flowlog.L7FlowLog) (open, auth int) {
	for _, r := range rows {
		if r.RequestType == "SUBSCRIBE" && r.RequestDomain == "sub-v5" {
			open = int(r.ServerPort)
		}
		if r.RequestType == "CONNECT" && r.RequestDomain == "bad-mqttv311" {
			auth = int(r.ServerPort)
		}
	}
	return open, auth
}

// TestCaptureMQTTMidConnection replays the recording without its first
// packets: connections already open are picked up only if a CONNECT is
// seen (MQTT has nothing else distinctive), the rest parse normally.
func TestCaptureMQTTMidConnection(t *testing.T) {
	rows := livetest.Replay(t, "testdata/mqtt-mid.pcap", New(l7.Config{}))
	var sessions int
	for i := range rows {
		if rows[i].Type == flowlog.TypeSession {
			sessions++
		}
	}
	if sessions < 5 {
		t.Fatalf("%d sessions:\n%s", sessions, livetest.Describe(rows))
	}
}
