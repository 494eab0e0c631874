package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/sightline-io/sightline/internal/testcapture"
)

// p5: replay throughput per protocol. Each protocol's recorded capture
// (agent/l7/<proto>/testdata/<proto>.pcap, real servers and clients) is
// multiplied into distinct connections until it holds about targetFrames
// frames, then replayed; rows per CPU-second of the replay process is the
// per-core figure.
func (b *bench) p5(ctx context.Context) error {
	const targetFrames = 400000
	caps, err := filepath.Glob("agent/l7/*/testdata/*.pcap")
	if err != nil {
		return err
	}
	sort.Strings(caps)
	dir, err := os.MkdirTemp("", "sightline-bench-p5")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	fmt.Printf("P5 replay throughput per protocol (recorded captures multiplied to ~%d frames, median of %d):\n", targetFrames, b.rounds)
	done := map[string]bool{}
	for _, src := range caps {
		proto := filepath.Base(filepath.Dir(filepath.Dir(src)))
		// One capture per protocol: the one named after it, else the first.
		name := strings.TrimSuffix(filepath.Base(src), ".pcap")
		if done[proto] || (name != proto && hasNamed(caps, proto)) {
			continue
		}
		done[proto] = true
		one := filepath.Join(dir, proto+"-1.pcap")
		n, err := testcapture.Multiply(src, one, 1)
		if err != nil {
			fmt.Printf("  %-10s skipped: %v\n", proto, err)
			continue
		}
		copies := max(1, min(20000, targetFrames/max(n, 1)))
		many := filepath.Join(dir, proto+".pcap")
		frames, err := testcapture.Multiply(src, many, copies)
		if err != nil {
			return fmt.Errorf("%s: %w", proto, err)
		}
		var cpus, walls []float64
		var rows int
		for range b.rounds {
			cpu, wall, n, err := replayCPU(ctx, b.bin, many)
			if err != nil {
				return fmt.Errorf("%s: %w", proto, err)
			}
			cpus, walls, rows = append(cpus, cpu), append(walls, wall), n
		}
		cpu, wall := median(cpus), median(walls)
		fmt.Printf("  %-10s %8d frames %7d rows: %9.0f rows/s per core (CPU %.2fs, wall %.2fs)\n",
			proto, frames, rows, float64(rows)/cpu, cpu, wall)
		os.Remove(many)
	}
	return nil
}

func hasNamed(caps []string, proto string) bool {
	for _, c := range caps {
		if filepath.Base(c) == proto+".pcap" && filepath.Base(filepath.Dir(filepath.Dir(c))) == proto {
			return true
		}
	}
	return false
}

// replayCPU runs `sightline replay` on path and returns its CPU seconds
// (user + system), wall seconds and rows printed.
func replayCPU(ctx context.Context, bin, path string) (cpu, wall float64, rows int, err error) {
	cmd := exec.CommandContext(ctx, bin, "replay", "--format", "jsonl", path)
	var lc lineCounter
	cmd.Stdout = &lc
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return 0, 0, 0, err
	}
	wall = time.Since(start).Seconds()
	st := cmd.ProcessState
	cpu = (st.UserTime() + st.SystemTime()).Seconds()
	return cpu, wall, lc.n, nil
}
