package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// p8: trace assembly latency (p50/p99) for a 100-span trace in stores of 1M
// and 10M generated rows, with and without link indexes, and the insert rate
// each index leaves: server/trace's BenchmarkAssemble, run here so its
// figures print next to the others.
func (b *bench) p8(ctx context.Context) error {
	goBin := os.Getenv("GO")
	if goBin == "" {
		goBin = "go"
	}
	cmd := exec.CommandContext(ctx, goBin, "test", "-run", "^$", "-bench", "^BenchmarkAssemble$", "-benchtime", "1x", "-timeout", "60m", "./server/trace")
	cmd.Env = append(os.Environ(), "SIGHTLINE_BENCH_ROWS=1000000,10000000", "SIGHTLINE_BENCH_ITER=300")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("trace benchmark: %w\n%s", err, out.String())
	}
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		if line := sc.Text(); strings.HasPrefix(line, "assemble rows=") {
			fmt.Printf("P8 trace assembly (100-span trace): %s\n", line)
		}
	}
	return nil
}
