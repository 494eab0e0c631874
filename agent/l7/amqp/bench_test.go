package amqp

import (
	"syscall"
	"testing"
	"time"

	"github.com/sightline-io/sightline/agent/l7"
)

// BenchmarkParseAMQP parses Queue.Declare/Declare-Ok pairs plus a
// Basic.Publish with its content header and a 256-byte body, on one
// connection, one segment per message.
func BenchmarkParseAMQP(b *testing.B) {
	p := New(l7.Config{}).NewParser()
	var n int
	emit := func(*l7.Message) { n++ }
	p.Feed(seg(c2s, []byte(protocolHeader)), emit)
	req := meth(1, 50, 10, u16(0), ss("orders"), []byte{0x02}, ls(""))
	resp := meth(1, 50, 11, ss("orders"), ls(""), ls(""))
	pub := append(meth(1, 60, 40, u16(0), ss("events"), ss("order.created"), []byte{0}), content(1, string(make([]byte, 256)))...)
	reqSeg, respSeg, pubSeg := seg(c2s, req), seg(s2c, resp), seg(c2s, pub)
	b.SetBytes(int64(len(req) + len(resp) + len(pub)))
	b.ReportAllocs()
	cpu0 := processCPU(b)
	for b.Loop() {
		p.Feed(reqSeg, emit)
		p.Feed(respSeg, emit)
		p.Feed(pubSeg, emit)
	}
	if n != 3*b.N {
		b.Fatalf("parsed %d messages, want %d", n, 3*b.N)
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
