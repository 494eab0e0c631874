package nats

import (
	"syscall"
	"testing"
	"time"

	"github.com/sightline-io/sightline/agent/capture"
	"github.com/sightline-io/sightline/agent/l7"
)

// BenchmarkParseNATS parses request-reply exchanges (PUB with a reply
// subject, MSG on it) and a one-way publish, one segment per message.
func BenchmarkParseNATS(b *testing.B) {
	p := newParser()
	var n int
	emit := func(*l7.Message) { n++ }
	setup := []*capture.Segment{
		{Dir: capture.BtoA, Data: []byte(info), Len: len(info)},
		{Dir: capture.AtoB, Data: []byte("SUB _INBOX.Ldhc3mFQ2sXZ7Q8pG1eC9k.* 1\r\n"), Len: 39},
	}
	for _, s := range setup {
		p.Feed(s, emit)
	}
	msgs := []string{
		"PUB orders.lookup _INBOX.Ldhc3mFQ2sXZ7Q8pG1eC9k.abc123 16\r\n{\"order\":123456}\r\n",
		"MSG _INBOX.Ldhc3mFQ2sXZ7Q8pG1eC9k.abc123 1 20\r\n{\"status\":\"shipped\"}\r\n",
		"PUB orders.events.created 16\r\n{\"order\":123456}\r\n",
	}
	segs := make([]*capture.Segment, len(msgs))
	size := 0
	for i, m := range msgs {
		segs[i] = &capture.Segment{Dir: capture.Direction(i & 1), Data: []byte(m), Len: len(m)}
		size += len(m)
	}
	n = 0
	b.SetBytes(int64(size))
	b.ReportAllocs()
	cpu0 := processCPU(b)
	for b.Loop() {
		for _, s := range segs {
			p.Feed(s, emit)
		}
	}
	cpu := processCPU(b) - cpu0
	if n != len(segs)*b.N {
		b.Fatalf("parsed %d messages, want %d", n, len(segs)*b.N)
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "msgs/s")
	if cpu > 0 {
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
