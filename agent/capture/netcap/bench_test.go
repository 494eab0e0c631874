package netcap

import (
	"context"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sightline-io/sightline/agent/capture/afpacket"
	"github.com/sightline-io/sightline/packet/decode"
)

type countFlows struct{ n int }

func (c *countFlows) Packet(*decode.Packet, time.Time, int) { c.n++ }

// BenchmarkPipelineLoopbackTCP floods TCP loopback with many short
// request/response exchanges (small segments, many connections) and runs
// capture → decode → flow sink + reassembly → L7 sink, reporting frames/s
// and the capture thread's CPU.
func BenchmarkPipelineLoopbackTCP(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Fatal("needs root")
	}
	c, err := afpacket.Open(afpacket.Config{Interfaces: []string{"lo"}, Filter: true})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				buf := make([]byte, 512)
				for {
					if _, err := io.ReadFull(conn, buf[:100]); err != nil {
						return
					}
					if _, err := conn.Write(buf[:400]); err != nil {
						return
					}
				}
			}()
		}
	}()
	flows, l7 := &countFlows{}, &nopL7{}
	p := New(Config{}, flows, l7)
	ctx, cancel := context.WithCancel(context.Background())
	type result struct {
		cpu time.Duration
		err error
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		var ts0, ts1 unix.Timespec
		_ = unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts0)
		err := p.Run(ctx, c)
		_ = unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts1)
		done <- result{time.Duration(ts1.Nano() - ts0.Nano()), err}
	}()
	const clients = 4
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := net.Dial("tcp4", ln.Addr().String())
			if err != nil {
				return
			}
			defer conn.Close()
			buf := make([]byte, 400)
			for range b.N / clients {
				if _, err := conn.Write(buf[:100]); err != nil {
					return
				}
				if _, err := io.ReadFull(conn, buf); err != nil {
					return
				}
			}
		}()
	}
	wg.Wait()
	time.Sleep(100 * time.Millisecond)
	wall := time.Since(start)
	cancel()
	res := <-done
	b.StopTimer()
	st, cs := p.Stats(), c.Stats()
	b.ReportMetric(float64(st.Frames)/wall.Seconds(), "frames/s")
	b.ReportMetric(100*res.cpu.Seconds()/wall.Seconds(), "capture-cpu-%")
	if res.cpu > 0 {
		b.ReportMetric(float64(st.Frames)/res.cpu.Seconds(), "frames/cpu-s")
	}
	b.ReportMetric(float64(cs.Drops), "drops")
	b.ReportMetric(float64(st.Reassembly.Segments), "segments")
}
