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

// p8: trace assembly latency (p50/p99) for a 100-span trace in a store of
// up to 1M generated rows: server/trace's BenchmarkAssemble, run here so its
// figures print next to the others.
func (b *bench) p8(ctx context.Context) error {
	goBin := os.Getenv("GO")
	if goBin == "" {
		goBin = "go"
	}
	cmd := exec.CommandContext(ctx, goBin, "test", "-run", "^$", "-bench", "^BenchmarkAssemble$", "-benchtime", "200x", "./server/trace")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("trace benchmark: %w\n%s", err, out.String())
	}
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "BenchmarkAssemble") || strings.Contains(line, "rows") && strings.Contains(line, "bench_test.go") {
			fmt.Printf("P8 trace assembly (100-span trace): %s\n", strings.Join(strings.Fields(line), " "))
		}
	}
	return nil
}
