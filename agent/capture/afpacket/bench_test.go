package afpacket

import (
	"context"
	"io"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sightline-io/sightline/packet/decode"
)

// threadCPU is the calling thread's CPU time.
func threadCPU() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}

// captureLoop runs c.Run on a locked thread, decoding every frame and
// counting those on port. It returns a stop function reporting the capture
// thread's CPU time.
func captureLoop(c *Capture, port uint16, frames, payload *atomic.Uint64, slow time.Duration) (stop func() time.Duration) {
	ctx, cancel := context.WithCancel(context.Background())
	cpu := make(chan time.Duration, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		start := threadCPU()
		var dec decode.Decoder
		var p decode.Packet
		n := 0
		_ = c.Run(ctx, func(f *Frame) {
			if dec.Decode(f.LinkType, f.Data, &p) != nil {
				return
			}
			if p.SrcPort == port || p.DstPort == port {
				frames.Add(1)
				payload.Add(uint64(p.WireLen))
			}
			if n++; slow > 0 && n%64 == 0 {
				time.Sleep(slow)
			}
		})
		cpu <- threadCPU() - start
	}()
	return func() time.Duration { cancel(); return <-cpu }
}

// BenchmarkLoopbackUDP measures frames/s through Run and decode for small
// UDP datagrams sent over loopback, and the capture thread's CPU.
func BenchmarkLoopbackUDP(b *testing.B) {
	requireRoot(b)
	c, err := Open(Config{Interfaces: []string{"lo"}, Filter: true})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer pc.Close()
	port := uint16(pc.LocalAddr().(*net.UDPAddr).Port)
	go func() { // drain the receiver so its socket never backs up
		buf := make([]byte, 2048)
		for {
			if _, _, err := pc.ReadFrom(buf); err != nil {
				return
			}
		}
	}()
	var frames, payload atomic.Uint64
	stop := captureLoop(c, port, &frames, &payload, 0)
	// Several senders, so that the sender side is not the bottleneck.
	const senders = 4
	conns := make([]net.Conn, senders)
	for i := range conns {
		if conns[i], err = net.Dial("udp4", pc.LocalAddr().String()); err != nil {
			b.Fatal(err)
		}
		defer conns[i].Close()
	}
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for i, conn := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			msg := make([]byte, 64)
			for range b.N/senders + min(1, b.N%senders/(i+1)) {
				_, _ = conn.Write(msg)
			}
		}()
	}
	wg.Wait()
	deadline := time.Now().Add(5 * time.Second)
	for frames.Load() < uint64(b.N) && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	wall := time.Since(start)
	cpu := stop()
	b.StopTimer()
	st := c.Stats()
	b.ReportMetric(float64(frames.Load())/wall.Seconds(), "frames/s")
	b.ReportMetric(100*cpu.Seconds()/wall.Seconds(), "capture-cpu-%")
	if cpu > 0 {
		b.ReportMetric(float64(frames.Load())/cpu.Seconds(), "frames/cpu-s")
	}
	b.ReportMetric(float64(st.Drops), "drops")
	b.ReportMetric(float64(uint64(b.N)-min(uint64(b.N), frames.Load())), "missing")
}

// BenchmarkLoopbackTCPFlood sends 64 KiB writes from several goroutines
// over TCP loopback for a second per iteration and reports the payload
// rate sent and seen by the capture, and kernel drops.
func BenchmarkLoopbackTCPFlood(b *testing.B) {
	requireRoot(b)
	c, err := Open(Config{Interfaces: []string{"lo"}, Filter: true})
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
			go func() { _, _ = io.Copy(io.Discard, conn); conn.Close() }()
		}
	}()
	port := uint16(ln.Addr().(*net.TCPAddr).Port)
	var frames, seenPayload atomic.Uint64
	stop := captureLoop(c, port, &frames, &seenPayload, 0)

	const senders = 4
	var sent atomic.Uint64
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		var wg sync.WaitGroup
		end := time.Now().Add(time.Second)
		for range senders {
			wg.Add(1)
			go func() {
				defer wg.Done()
				conn, err := net.Dial("tcp4", ln.Addr().String())
				if err != nil {
					return
				}
				defer conn.Close()
				buf := make([]byte, 64<<10)
				for time.Now().Before(end) {
					n, err := conn.Write(buf)
					sent.Add(uint64(n))
					if err != nil {
						return
					}
				}
			}()
		}
		wg.Wait()
	}
	wall := time.Since(start)
	time.Sleep(100 * time.Millisecond)
	cpu := stop()
	b.StopTimer()
	st := c.Stats()
	b.ReportMetric(float64(sent.Load())*8/wall.Seconds()/1e9, "sent-Gbit/s")
	b.ReportMetric(float64(seenPayload.Load())*8/wall.Seconds()/1e9, "seen-Gbit/s")
	b.ReportMetric(float64(frames.Load())/wall.Seconds(), "frames/s")
	b.ReportMetric(100*cpu.Seconds()/wall.Seconds(), "capture-cpu-%")
	b.ReportMetric(float64(st.Drops), "drops")
	b.ReportMetric(float64(st.KernelPackets), "kernel-pkts")
}
