package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"regexp"
	"strconv"
	"sync"
	"time"
)

var wrkRPS = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)

func runWrk(ctx context.Context, url string, d time.Duration) (float64, error) {
	return runWrkWith(ctx, url, d, 1, 16)
}

// runWrkWith runs wrk with threads and conns and returns its requests/s.
func runWrkWith(ctx context.Context, url string, d time.Duration, threads, conns int) (float64, error) {
	out, err := exec.CommandContext(ctx, "wrk", fmt.Sprintf("-t%d", threads), fmt.Sprintf("-c%d", conns),
		"-d"+d.String(), url).CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("wrk: %w: %s", err, out)
	}
	m := wrkRPS.FindSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("wrk printed no Requests/sec: %s", out)
	}
	return strconv.ParseFloat(string(m[1]), 64)
}

// p1: nginx throughput under wrk with and without the agent, alternating rounds.
func (b *bench) p1(ctx context.Context) error {
	ng, err := startNginx(ctx, 1)
	if err != nil {
		return err
	}
	defer ng.stop()
	url := fmt.Sprintf("http://127.0.0.1:%d/1k.bin", ng.port)
	d := b.dur(8 * time.Second)
	if _, err := runWrk(ctx, url, 2*time.Second); err != nil { // warm-up
		return err
	}
	// Per round: without the agent, with it as configured by default (rows
	// capped at 10000/s), and with every row shipped (no cap).
	var off, on, all []float64
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
		on = append(on, y)
		z, err := b.withUp(ctx, func() (float64, error) { return runWrk(ctx, url, d) }, "--max-rows-per-second", "0")
		if err != nil {
			return err
		}
		all = append(all, z)
		b.log.Info("p1 round", "round", r+1, "without_rps", x, "with_rps", y, "with_uncapped_rps", z)
	}
	mo, mn, ma := median(off), median(on), median(all)
	fmt.Printf("P1 wrk→nginx 1KiB keep-alive (1 worker, 16 conns, %s × %d rounds, sightline up on the same 2 cores): without agent %.0f req/s; with agent %.0f req/s, ratio %.3f (default: rows capped at 10000/s); with every row shipped and stored %.0f req/s, ratio %.3f (target ≥ 0.95)\n",
		d, b.rounds, mo, mn, mn/mo, ma, ma/mo)
	return nil
}

// withUp runs f while `sightline up` is running and capturing.
func (b *bench) withUp(ctx context.Context, f func() (float64, error), extraArgs ...string) (float64, error) {
	port, err := freePort()
	if err != nil {
		return 0, err
	}
	gport, err := freePort()
	if err != nil {
		return 0, err
	}
	args := append([]string{"up", "--data-dir", "data",
		"--listen", fmt.Sprintf("127.0.0.1:%d", port), "--grpc-listen", fmt.Sprintf("127.0.0.1:%d", gport)}, extraArgs...)
	p, err := b.startSightline(ctx, args...)
	if err != nil {
		return 0, err
	}
	defer p.cleanup()
	defer p.stop()
	if err := waitHTTP(ctx, fmt.Sprintf("http://127.0.0.1:%d/healthz", port)); err != nil {
		return 0, fmt.Errorf("sightline up not healthy (log in %s): %w", p.dir, err)
	}
	time.Sleep(time.Second) // let attach settle
	return f()
}

// p2: agent CPU per captured request at a fixed request rate.
func (b *bench) p2(ctx context.Context) error {
	ng, err := startNginx(ctx, 1)
	if err != nil {
		return err
	}
	defer ng.stop()
	url := fmt.Sprintf("http://127.0.0.1:%d/1k.bin", ng.port)
	port, err := freePort()
	if err != nil {
		return err
	}
	gport, err := freePort()
	if err != nil {
		return err
	}
	api := fmt.Sprintf("http://127.0.0.1:%d", port)
	srv, err := b.startSightline(ctx, "server", "--data-dir", "data",
		"--listen", fmt.Sprintf("127.0.0.1:%d", port), "--grpc-listen", fmt.Sprintf("127.0.0.1:%d", gport))
	if err != nil {
		return err
	}
	defer srv.cleanup()
	defer srv.stop()
	if err := waitHTTP(ctx, api+"/healthz"); err != nil {
		return fmt.Errorf("server not healthy: %w", err)
	}
	agent, err := b.startSightline(ctx, "agent", "--server", fmt.Sprintf("127.0.0.1:%d", gport))
	if err != nil {
		return err
	}
	defer agent.cleanup()
	time.Sleep(3 * time.Second) // attach
	if err := setBPFStats(true); err != nil {
		return fmt.Errorf("enable bpf stats: %w", err)
	}
	defer setBPFStats(false)

	const rate = 2000
	d := b.dur(10 * time.Second)
	cpu0, err := cpuSeconds(agent.cmd.Process.Pid)
	if err != nil {
		return err
	}
	bpf0, err := bpfRuntime()
	if err != nil {
		return err
	}
	sent, err := fixedRate(ctx, url, rate, d)
	if err != nil {
		return err
	}
	time.Sleep(2 * time.Second) // let the agent drain its ring buffer and ship
	cpu1, _ := cpuSeconds(agent.cmd.Process.Pid)
	bpf1, _ := bpfRuntime()
	agent.stop()
	time.Sleep(time.Second)
	rows, err := countRows(ctx, api, fmt.Sprintf("SELECT count(*) FROM l7_flow_log WHERE server_port = %d", ng.port))
	if err != nil {
		return err
	}
	user := cpu1 - cpu0
	kern := (bpf1 - bpf0).Seconds()
	perRow := (user + kern) / float64(max(rows, 1)) * 1e6
	fmt.Printf("P2 agent CPU at %d req/s for %s: %d requests sent, %d rows captured (client+server side); user space %.3f s, BPF %.3f s; %.2f µs CPU per captured request-row, %.2f µs per HTTP request (target ≤ 3 µs per captured request)\n",
		rate, d, sent, rows, user, kern, perRow, (user+kern)/float64(max(sent, 1))*1e6)
	return nil
}

// fixedRate sends GETs at a fixed rate over keep-alive connections.
func fixedRate(ctx context.Context, url string, rate int, d time.Duration) (int, error) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}, Timeout: 5 * time.Second}
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	end := time.After(d)
	var wg sync.WaitGroup
	var mu sync.Mutex
	sent, failed := 0, 0
	sem := make(chan struct{}, 64)
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-end:
			break loop
		case <-tick.C:
			select {
			case sem <- struct{}{}:
			default:
				continue // all 64 in flight: skip rather than queue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				resp, err := client.Get(url)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					failed++
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				sent++
			}()
		}
	}
	wg.Wait()
	if failed > sent/100 {
		return sent, fmt.Errorf("%d of %d requests failed", failed, sent+failed)
	}
	return sent, nil
}

func countRows(ctx context.Context, api, sql string) (int, error) {
	body, _ := json.Marshal(map[string]string{"sql": sql})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, api+"/api/v1/query", bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var ans struct {
		Rows  [][]json.Number `json:"rows"`
		Error string          `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&ans); err != nil {
		return 0, err
	}
	if ans.Error != "" || len(ans.Rows) != 1 || len(ans.Rows[0]) != 1 {
		return 0, fmt.Errorf("count query: %q %v", ans.Error, ans.Rows)
	}
	n, err := ans.Rows[0][0].Int64()
	return int(n), err
}
