package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"time"
)

// goServerEnv makes the bench binary serve as the Go service P10 loads.
const goServerEnv = "SIGHTLINE_BENCH_GO_SERVER"

// runGoServer is a Go HTTP service whose handler does what goroutine
// tracking watches: it starts a goroutine and hands a job to a worker pool
// over a channel, then answers 1 KiB.
func runGoServer(addr string) error {
	type job struct{ done chan int }
	jobs := make(chan *job)
	for range 4 {
		go func() {
			for j := range jobs {
				j.done <- 1
			}
		}()
	}
	body := make([]byte, 1024)
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		spawned := make(chan int, 1)
		go func() { spawned <- 1 }()
		j := &job{done: make(chan int, 1)}
		jobs <- j
		<-j.done
		<-spawned
		_, _ = w.Write(body)
	})
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	return http.Serve(ln, mux)
}

// p10: throughput of a Go HTTP service under wrk with no agent, with the agent
// and its goroutine probes (uprobes on newproc1, chansend, chanrecv,
// selectgo, goexit1), and with the agent and --no-go-tracking: the cost of
// the probes is the ratio of the last two.
func (b *bench) p10(ctx context.Context) error {
	port, err := freePort()
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	srv := exec.CommandContext(ctx, self)
	srv.Env = append(os.Environ(), goServerEnv+"="+addr)
	if err := srv.Start(); err != nil {
		return err
	}
	defer func() { _ = srv.Process.Kill(); _ = srv.Wait() }()
	url := "http://" + addr + "/"
	if err := waitHTTP(ctx, url); err != nil {
		return err
	}
	d := b.dur(8 * time.Second)
	if _, err := runWrk(ctx, url, 2*time.Second); err != nil { // warm-up
		return err
	}
	var off, probes, noProbes []float64
	for r := 0; r < b.rounds; r++ {
		x, err := runWrk(ctx, url, d)
		if err != nil {
			return err
		}
		off = append(off, x)
		y, err := b.withUp(ctx, func() (float64, error) { return runWrk(ctx, url, d) })
		if err != nil {
			return err
		}
		probes = append(probes, y)
		z, err := b.withUp(ctx, func() (float64, error) { return runWrk(ctx, url, d) }, "--no-go-tracking")
		if err != nil {
			return err
		}
		noProbes = append(noProbes, z)
		b.log.Info("p10 round", "round", r+1, "without_rps", x, "with_probes_rps", y, "with_agent_no_probes_rps", z)
	}
	mo, mp, mn := median(off), median(probes), median(noProbes)
	fmt.Printf("P10 wrk→Go HTTP service (a goroutine and a worker-pool handoff per request; 16 conns, %s × %d rounds): without agent %.0f req/s; agent with goroutine probes %.0f req/s (ratio %.3f); agent with --no-go-tracking %.0f req/s (ratio %.3f); probes alone %.3f\n",
		d, b.rounds, mo, mp, mp/mo, mn, mn/mo, mp/mn)
	return nil
}
