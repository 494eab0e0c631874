package tcpevents

import (
	"context"
	"net"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// BenchmarkHookCost measures the in-kernel cost of each hook with
// bpf_stats (BPF_ENABLE_STATS, the same as sysctl
// kernel.bpf_stats_enabled=1): run_time_ns / run_cnt per program, while
// b.N loopback connections are opened, written and closed. Reported as
// ns/<program> (per invocation) and invocations per connection. Hook runs
// of other processes on the machine are included: the cost per invocation
// stays meaningful.
func BenchmarkHookCost(b *testing.B) {
	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		b.Fatalf("enable bpf stats: %v", err)
	}
	defer stats.Close()
	tr, err := New(Config{})
	if err != nil {
		b.Fatal(err)
	}
	defer tr.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tr.Run(ctx, func(*Event) {}) }()
	defer func() { cancel(); <-done }()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				buf := make([]byte, 64)
				for {
					if _, err := c.Read(buf); err != nil {
						c.Close()
						return
					}
				}
			}()
		}
	}()
	progs := tr.Programs()
	before := map[string]*ebpf.ProgramStats{}
	for n, p := range progs {
		s, err := p.Stats()
		if err != nil {
			b.Fatalf("stats of %s: %v", n, err)
		}
		before[n] = s
	}
	b.ResetTimer()
	for range b.N {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		c.Write([]byte("x"))
		c.Close()
	}
	b.StopTimer()
	for n, p := range progs {
		s, err := p.Stats()
		if err != nil {
			b.Fatalf("stats of %s: %v", n, err)
		}
		runs := s.RunCount - before[n].RunCount
		if runs == 0 {
			continue
		}
		b.ReportMetric(float64(s.Runtime-before[n].Runtime)/float64(runs), "ns/"+n)
		b.ReportMetric(float64(runs)/float64(b.N), n+"/conn")
	}
	if st := tr.Stats(); st.RingbufFull > 0 {
		b.Logf("ring buffer full: %d events lost", st.RingbufFull)
	}
}
