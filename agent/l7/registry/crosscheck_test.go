package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sightline-io/sightline/flowlog"
	"github.com/sightline-io/sightline/replay"
)

// TestDefaultSetKeepsProtocolsApart replays every protocol's recorded
// capture (real servers and clients) through the default protocol set, in
// registry order, and checks that every row is of that protocol: no
// protocol's inference steals another's connections.
func TestDefaultSetKeepsProtocolsApart(t *testing.T) {
	want := map[string][]flowlog.L7Protocol{
		"http1": {flowlog.L7HTTP1}, "http2": {flowlog.L7HTTP2, flowlog.L7GRPC},
		"dubbo": {flowlog.L7Dubbo}, "sofarpc": {flowlog.L7SofaRPC}, "brpc": {flowlog.L7BRPC}, "krpc": {flowlog.L7KRPC},
		"mysql": {flowlog.L7MySQL}, "postgres": {flowlog.L7Postgres}, "mongodb": {flowlog.L7MongoDB},
		"fastcgi": {flowlog.L7FastCGI, flowlog.L7HTTP1}, // nginx ↔ curl is HTTP in the same capture
		"kafka":   {flowlog.L7Kafka}, "amqp": {flowlog.L7AMQP}, "mqtt": {flowlog.L7MQTT}, "dns": {flowlog.L7DNS},
		"redis": {flowlog.L7Redis}, "memcached": {flowlog.L7Memcached}, "nats": {flowlog.L7NATS},
	}
	caps, err := filepath.Glob("../*/testdata/*.pcap")
	if err != nil || len(caps) == 0 {
		t.Fatalf("no captures: %v", err)
	}
	seen := map[string]bool{}
	for _, path := range caps {
		proto := filepath.Base(filepath.Dir(filepath.Dir(path)))
		allowed, ok := want[proto]
		if !ok {
			t.Errorf("%s: no expectation for package %q", path, proto)
			continue
		}
		seen[proto] = true
		t.Run(strings.TrimSuffix(filepath.Base(path), ".pcap"), func(t *testing.T) {
			var out bytes.Buffer
			if _, err := replay.Run(context.Background(), path, &out, replay.Options{Protocols: Default()}); err != nil {
				t.Fatal(err)
			}
			rows := 0
			for _, line := range bytes.Split(bytes.TrimSpace(out.Bytes()), []byte("\n")) {
				if len(line) == 0 {
					continue
				}
				var r struct {
					L7Protocol flowlog.L7Protocol `json:"l7_protocol"`
					Resource   string             `json:"request_resource"`
				}
				if err := json.Unmarshal(line, &r); err != nil {
					t.Fatal(err)
				}
				rows++
				okProto := false
				for _, a := range allowed {
					okProto = okProto || r.L7Protocol == a
				}
				if !okProto {
					t.Errorf("row of protocol %v (%q), want %v", r.L7Protocol, r.Resource, allowed)
				}
			}
			if rows == 0 {
				t.Error("no rows")
			}
		})
	}
	for proto := range want {
		if !seen[proto] && proto != "http1" {
			t.Errorf("no capture for %s", proto)
		}
	}
}
