package dns_test

import (
	"testing"

	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/agent/l7/dns"
	"github.com/sightline-io/sightline/flowlog"
	"github.com/sightline-io/sightline/internal/livetest"
)

// TestCaptureDNS replays TestLiveDNS's traffic (dig over UDP and TCP, the
// Go resolver) recorded with tcpdump.
func TestCaptureDNS(t *testing.T) {
	rows := livetest.Replay(t, "testdata/dns.pcap", dns.New(l7.Config{}))
	wants := []want{
		{"A", "svc.test", 0, 17, 0, flowlog.StatusSuccess, "", "A 10.9.9.9"},
		{"AAAA", "svc.test", 0, 17, 0, flowlog.StatusSuccess, "", "AAAA fd00::9"},
		{"A", "alias.test", 0, 17, 0, flowlog.StatusSuccess, "", "CNAME svc.test;A 10.9.9.9"},
		{"A", "www.example.test", 0, 17, 0, flowlog.StatusSuccess, "", "A 10.1.2.3"},
		{"A", "a.nx.test", 0, 17, 3, flowlog.StatusClientError, "NXDOMAIN", ""},
		{"MX", "unknown.zz", 0, 17, 5, flowlog.StatusServerError, "REFUSED", ""},
		{"A", "tcp1.example.test", 0, 6, 0, flowlog.StatusSuccess, "", "A 10.1.2.3"},
		{"AAAA", "svc.test", 0, 6, 0, flowlog.StatusSuccess, "", "AAAA fd00::9"},
		{"A", "go1.test", 0, 17, 0, flowlog.StatusSuccess, "", "A 10.5.5.5"},
		{"AAAA", "go1.test", 0, 17, 0, flowlog.StatusSuccess, "", "AAAA fd00::5"},
	}
	if len(rows) != len(wants) {
		t.Fatalf("%d rows, want %d:\n%s", len(rows), len(wants), livetest.Describe(rows))
	}
	for _, w := range wants {
		var found bool
		for _, r := range rows {
			if r.RequestDomain == w.name && r.RequestType == w.qtype && r.Protocol == w.l4 {
				found = true
				if r.RequestID == nil || r.ObservationPoint != flowlog.ObsLocalNIC || r.SignalSource != flowlog.SourcePacket {
					t.Errorf("row:\n%s", livetest.Describe([]flowlog.L7FlowLog{r}))
				}
				checkRow(t, r, w)
			}
		}
		if !found {
			t.Errorf("no row for %+v:\n%s", w, livetest.Describe(rows))
		}
	}
}

// TestCaptureDNSMidstream replays a DNS-over-TCP connection whose capture
// starts after the first query (editcap of dns.pcap): the first answer is a
// lone response, the next exchange a full session.
func TestCaptureDNSMidstream(t *testing.T) {
	rows := livetest.Replay(t, "testdata/dns-midstream.pcap", dns.New(l7.Config{}))
	if len(rows) != 2 {
		t.Fatalf("%d rows, want 2:\n%s", len(rows), livetest.Describe(rows))
	}
	lone, sess := rows[0], rows[1]
	if lone.Type != flowlog.TypeResponse || lone.ResponseResult != "A 10.1.2.3" || lone.RequestID == nil || lone.ServerPort != sess.ServerPort {
		t.Errorf("lone response:\n%s", livetest.Describe(rows[:1]))
	}
	checkRow(t, sess, want{"AAAA", "svc.test", 0, 6, 0, flowlog.StatusSuccess, "", "AAAA fd00::9"})
}
