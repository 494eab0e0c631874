package mqtt

import (
	"testing"

	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/internal/parsertest"
)

// BenchmarkParseMQTT parses QoS 1 PUBLISH/PUBACK pairs (MQTT 5, 256-byte
// payload) on one connection, one segment per packet.
func BenchmarkParseMQTT(b *testing.B) {
	p := New(l7.Config{}).NewParser()
	p.Feed(parsertest.Whole(c2s, connect(5, "sensor-1", "", "")), func(*l7.Message) {})
	p.Feed(parsertest.Whole(s2c, connack(0, true)), func(*l7.Message) {})
	pub := publish(1, "devices/12345678/temp", 1, true, string(make([]byte, 256)))
	ack := puback(typePuback, 1, true, 0)
	reqSeg, respSeg := parsertest.Whole(c2s, pub), parsertest.Whole(s2c, ack)
	parsertest.Bench(b, p, 2, reqSeg, respSeg)
}
