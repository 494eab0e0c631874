package main

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/redis/go-redis/v9"
)

// p6: agent CPU per captured request for Redis and MySQL at a fixed rate,
// the same measurement as P2 with a database instead of nginx. The client
// runs in this process (traced too), so each request gives two rows.
func (b *bench) p6(ctx context.Context) error {
	const rate = 2000
	d := b.dur(10 * time.Second)

	rport, stopRedis, err := startRedis(ctx)
	if err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	defer stopRedis()
	rdb := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", rport), PoolSize: 64})
	defer rdb.Close()
	if err := rdb.Set(ctx, "bench:key", "value", 0).Err(); err != nil {
		return fmt.Errorf("redis set: %w", err)
	}
	if err := b.agentCPU(ctx, "Redis GET", rport, rate, d, func(ctx context.Context) error {
		return rdb.Get(ctx, "bench:key").Err()
	}); err != nil {
		return err
	}

	mport, stopMaria, err := startMariaDB(ctx)
	if err != nil {
		return fmt.Errorf("mariadb: %w", err)
	}
	defer stopMaria()
	cfg := mysql.NewConfig()
	cfg.User, cfg.Net, cfg.Addr = "root", "tcp", fmt.Sprintf("127.0.0.1:%d", mport)
	db, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		return err
	}
	defer db.Close()
	db.SetMaxOpenConns(64)
	db.SetMaxIdleConns(64)
	return b.agentCPU(ctx, "MySQL SELECT", mport, rate, d, func(ctx context.Context) error {
		var n int
		return db.QueryRowContext(ctx, "SELECT 1").Scan(&n)
	})
}

// agentCPU runs a Sightline server and agent, sends rate requests per
// second with do for d, and prints the agent's CPU (user space + BPF) per
// row stored for serverPort.
func (b *bench) agentCPU(ctx context.Context, label string, serverPort, rate int, d time.Duration, do func(context.Context) error) error {
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
	agent, err := b.startSightline(ctx, "agent", "--server", fmt.Sprintf("127.0.0.1:%d", gport), "--max-rows-per-second", "0")
	if err != nil {
		return err
	}
	defer agent.cleanup()
	time.Sleep(3 * time.Second) // attach
	if err := setBPFStats(true); err != nil {
		return fmt.Errorf("enable bpf stats: %w", err)
	}
	defer setBPFStats(false)
	cpu0, err := cpuSeconds(agent.cmd.Process.Pid)
	if err != nil {
		return err
	}
	bpf0, err := bpfRuntime()
	if err != nil {
		return err
	}
	sent, err := paced(ctx, rate, d, do)
	if err != nil {
		return err
	}
	time.Sleep(2 * time.Second)
	cpu1, _ := cpuSeconds(agent.cmd.Process.Pid)
	bpf1, _ := bpfRuntime()
	agent.stop()
	time.Sleep(time.Second)
	rows, err := countRows(ctx, api, fmt.Sprintf("SELECT count(*) FROM l7_flow_log WHERE server_port = %d", serverPort))
	if err != nil {
		return err
	}
	atServer, err := countRows(ctx, api, fmt.Sprintf("SELECT count(*) FROM l7_flow_log WHERE server_port = %d AND observation_point = 's-p'", serverPort))
	if err != nil {
		return err
	}
	if rows == 0 {
		return fmt.Errorf("%s: no rows stored for port %d: is the protocol registered?", label, serverPort)
	}
	user, kern := cpu1-cpu0, (bpf1 - bpf0).Seconds()
	fmt.Printf("P6 %s at %d req/s for %s: %d requests, %d rows (%d at the server process, %d at the client); user space %.3f s, BPF %.3f s; %.2f µs CPU per row, %.2f µs per request\n",
		label, rate, d, sent, rows, atServer, rows-atServer, user, kern, (user+kern)/float64(max(rows, 1))*1e6, (user+kern)/float64(max(sent, 1))*1e6)
	return nil
}

// paced calls do rate times per second for d, up to 64 calls in flight.
func paced(ctx context.Context, rate int, d time.Duration, do func(context.Context) error) (int, error) {
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	end := time.After(d)
	results := make(chan error, 64)
	inFlight, sent, failed := 0, 0, 0
	collect := func(err error) {
		inFlight--
		if err != nil {
			failed++
		} else {
			sent++
		}
	}
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-end:
			break loop
		case err := <-results:
			collect(err)
		case <-tick.C:
			if inFlight >= 64 {
				continue
			}
			inFlight++
			go func() { results <- do(ctx) }()
		}
	}
	for inFlight > 0 {
		collect(<-results)
	}
	if failed > sent/100 {
		return sent, fmt.Errorf("%d of %d requests failed", failed, sent+failed)
	}
	return sent, nil
}

func startRedis(ctx context.Context) (int, func(), error) {
	port, err := freePort()
	if err != nil {
		return 0, nil, err
	}
	dir, err := os.MkdirTemp("", "sightline-bench-redis")
	if err != nil {
		return 0, nil, err
	}
	cmd := exec.CommandContext(ctx, "redis-server", "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", dir)
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return 0, nil, err
	}
	stop := func() { cmd.Process.Kill(); cmd.Wait(); os.RemoveAll(dir) }
	if err := waitTCP(ctx, port, 20*time.Second); err != nil {
		stop()
		return 0, nil, err
	}
	return port, stop, nil
}

func startMariaDB(ctx context.Context) (int, func(), error) {
	port, err := freePort()
	if err != nil {
		return 0, nil, err
	}
	dir, err := os.MkdirTemp("", "sightline-bench-mariadb")
	if err != nil {
		return 0, nil, err
	}
	data := filepath.Join(dir, "data")
	if out, err := exec.CommandContext(ctx, "mariadb-install-db", "--no-defaults", "--datadir="+data,
		"--user=root", "--auth-root-authentication-method=normal", "--skip-test-db").CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return 0, nil, fmt.Errorf("mariadb-install-db: %v: %s", err, out)
	}
	cmd := exec.CommandContext(ctx, "mariadbd", "--no-defaults", "--datadir="+data, "--user=root",
		"--port="+strconv.Itoa(port), "--bind-address=127.0.0.1", "--socket="+filepath.Join(dir, "sock"),
		"--skip-grant-tables", "--pid-file="+filepath.Join(dir, "pid"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return 0, nil, err
	}
	stop := func() { cmd.Process.Kill(); cmd.Wait(); os.RemoveAll(dir) }
	if err := waitTCP(ctx, port, 60*time.Second); err != nil {
		stop()
		return 0, nil, err
	}
	return port, stop, nil
}

func waitTCP(ctx context.Context, port int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("port %d not open after %v: %w", port, timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
