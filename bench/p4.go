package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/sightline-io/sightline/internal/testcapture"
)

// p4: replay throughput against tshark's HTTP dissection on one generated capture.
func (b *bench) p4(ctx context.Context) error {
	dir, err := os.MkdirTemp("", "sightline-bench-p4")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "http.pcap")
	const conns, perConn = 500, 100
	if err := testcapture.WriteHTTP(path, conns, perConn); err != nil {
		return fmt.Errorf("generate capture: %w", err)
	}
	st, _ := os.Stat(path)

	// Alternating runs, output streamed into a line counter (neither tool
	// pays for the other's buffering); medians are reported.
	var slTimes, tsTimes []float64
	var slRows, tsLines int
	for range b.rounds {
		d, n, err := timeLines(ctx, b.bin, "replay", "--format", "jsonl", path)
		if err != nil {
			return fmt.Errorf("sightline replay: %w", err)
		}
		slTimes, slRows = append(slTimes, d.Seconds()), n
		// One output line per HTTP request or response packet.
		d, n, err = timeLines(ctx, "tshark", "-r", path, "-Y", "http")
		if err != nil {
			return fmt.Errorf("tshark: %w", err)
		}
		tsTimes, tsLines = append(tsTimes, d.Seconds()), n
	}
	slTime, tsTime := median(slTimes), median(tsTimes)

	want := conns * perConn
	fmt.Printf("P4 replay of %d HTTP transactions (%.1f MB pcap, median of %d): sightline %d rows in %.2fs = %.0f rows/s; tshark -Y http %d packets in %.2fs = %.0f transactions/s; ratio %.1f× (target ≥ 20×)\n",
		want, float64(st.Size())/1e6, b.rounds, slRows, slTime, float64(slRows)/slTime,
		tsLines, tsTime, float64(tsLines/2)/tsTime, tsTime/slTime)
	if slRows != want {
		return fmt.Errorf("replay printed %d rows, want %d", slRows, want)
	}
	return nil
}

// timeLines runs a command, counting the lines it prints, and times it.
func timeLines(ctx context.Context, name string, args ...string) (time.Duration, int, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	var lc lineCounter
	cmd.Stdout = &lc
	start := time.Now()
	err := cmd.Run()
	return time.Since(start), lc.n, err
}

type lineCounter struct{ n int }

func (c *lineCounter) Write(p []byte) (int, error) {
	c.n += bytes.Count(p, []byte("\n"))
	return len(p), nil
}
