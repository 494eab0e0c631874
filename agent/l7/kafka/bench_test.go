package kafka

import (
	"syscall"
	"testing"
	"time"

	"github.com/sightline-io/sightline/agent/capture"
	"github.com/sightline-io/sightline/agent/l7"
)

// BenchmarkParseKafka parses Produce v9 request/response pairs (one
// partition, 1 KiB of records) on one connection, one segment per message.
func BenchmarkParseKafka(b *testing.B) {
	pr := produceReq(9, -1, "orders", 3)
	pr.Topics[0].Partitions[0].Records = make([]byte, 1024)
	p := New(l7.Config{}).NewParser()
	reqSeg := seg(capture.AtoB, nil)
	respSeg := seg(capture.BtoA, nil)
	var n int
	emit := func(*l7.Message) { n++ }
	var corr int32
	req := reqFrame(0, "kgo", pr)
	resp := respFrame(0, produceResp(9, "orders", 0))
	b.SetBytes(int64(len(req) + len(resp)))
	b.ReportAllocs()
	cpu0 := processCPU(b)
	for b.Loop() {
		corr++
		// Fresh correlation ids, as a client sends them.
		req[8], req[9], req[10], req[11] = byte(corr>>24), byte(corr>>16), byte(corr>>8), byte(corr)
		resp[4], resp[5], resp[6], resp[7] = byte(corr>>24), byte(corr>>16), byte(corr>>8), byte(corr)
		reqSeg.Data, reqSeg.Len = req, len(req)
		respSeg.Data, respSeg.Len = resp, len(resp)
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
