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

	start := time.Now()
	out, err := exec.CommandContext(ctx, b.bin, "replay", "--format", "jsonl", path).Output()
	if err != nil {
		return fmt.Errorf("sightline replay: %w", err)
	}
	slTime := time.Since(start)
	slRows := bytes.Count(out, []byte("\n"))

	start = time.Now()
	tout, err := exec.CommandContext(ctx, "tshark", "-r", path, "-Y", "http").Output()
	if err != nil {
		return fmt.Errorf("tshark: %w", err)
	}
	tsTime := time.Since(start)
	tsLines := bytes.Count(tout, []byte("\n")) // one line per HTTP request or response packet

	want := conns * perConn
	fmt.Printf("P4 replay of %d HTTP transactions (%.1f MB pcap): sightline %d rows in %.2fs = %.0f rows/s; tshark -Y http %d packets in %.2fs = %.0f transactions/s; ratio %.1f× (target ≥ 20×)\n",
		want, float64(st.Size())/1e6, slRows, slTime.Seconds(), float64(slRows)/slTime.Seconds(),
		tsLines, tsTime.Seconds(), float64(tsLines/2)/tsTime.Seconds(), tsTime.Seconds()/slTime.Seconds())
	if slRows != want {
		return fmt.Errorf("replay printed %d rows, want %d", slRows, want)
	}
	return nil
}
