package mqtt

import (
	"syscall"
	"testing"
	"time"

	"github.com/sightline-io/sightline/agent/l7"
)

// BenchmarkParseMQTT parses QoS 1 PUBLISH/PUBACK pairs (MQTT 5, 256-byte
// payload) on one connection, one segment per packet.
func BenchmarkParseMQTT(b *testing.B) {
	p := New(l7.Config{}).NewParser()
	var n int
	emit := func(*l7.Message) { n++ }
	p.Feed(seg(c2s, connect(5, "sensor-1", "", "")), emit)
	p.Feed(seg(s2c, connack(0, true)), emit)
	n = 0
	pub := publish(1, "devices/12345678/temp", 1, true, string(make([]byte, 256)))
	ack := puback(typePuback, 1, true, 0)
	reqSeg, respSeg := seg(c2s, pub), seg(s2c, ack)
	b.SetBytes(int64(len(pub) + len(ack)))
	b.ReportAllocs()
	cpu0 := processCPU(b)
	for b.Loop() {
		p.Feed(reqSeg, emit)
		p.Feed(respSeg, emit)
	}
	if n != 2*b.N {
		b.Fatalf("parsed %d messages, want %d", n, 2*b.N)
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "msgs/s")
	// On a shared machine wall time overstates the cost; process CPU time
	// per message is the per-core figure.
	if cpu := processCPU(b) - cpu0; cpu > 0 {
		b.ReportMetric(float64(n)/cpu.Seconds(), "msgs/cpu-s")
	}
}

func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
