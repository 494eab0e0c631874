// Command bench measures Sightline's overhead targets side by side in one run
// and prints ratios. It needs root (eBPF), nginx, wrk and tshark; `make bench`
// builds the binary first and runs it.
//
//	P1  wrk → nginx (1 KiB file, keep-alive, saturation): requests/s with the agent vs without.
//	P2  agent CPU (user space + BPF programs) per captured request at a fixed request rate.
//	P4  `sightline replay` rows/s vs `tshark -r FILE -Y http` on the same capture.
//	P5  replay rows/s per core for each protocol's recorded capture (multiplied).
//	P6  agent CPU per captured request for Redis and MySQL at a fixed rate.
//	P7  flow table: replayed packets/s per core and heap bytes per flow at 100K flows.
//	P8  trace assembly latency (p50/p99) of a 100-span trace in stores of 1M and 10M rows, per link index.
//	P9  trace completeness on the reference topology (`sightline demo`): hops linked / expected, false links.
//	P10 a Go HTTP service under wrk: requests/s without the agent, with it, and with it but no goroutine probes.
//	P11 TLS: added latency per SSL_read/SSL_write and Go Conn.Read/Write (uprobes), and HTTPS nginx under wrk,
//	    without the agent, with bare uprobes, with the agent, and with it but --no-tls.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
)

func main() {
	if addr := os.Getenv(goServerEnv); addr != "" {
		if err := runGoServer(addr); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	bin := flag.String("bin", "bin/sightline", "sightline binary to measure")
	only := flag.String("only", "p1,p2,p4,p5,p6,p7,p8,p9,p10,p11", "comma-separated benchmarks to run")
	rounds := flag.Int("rounds", 3, "alternating with/without rounds for P1 (medians are reported)")
	duration := flag.Duration("duration", 0, "per-round duration for P1/P2 (0 = defaults)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))

	// Sightline runs in per-run temporary directories: resolve the path now.
	binPath, err := filepath.Abs(*bin)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	b := &bench{bin: binPath, rounds: *rounds, duration: *duration, log: log}
	failed := false
	for _, name := range strings.Split(*only, ",") {
		var err error
		switch strings.TrimSpace(name) {
		case "p1":
			err = b.p1(ctx)
		case "p2":
			err = b.p2(ctx)
		case "p4":
			err = b.p4(ctx)
		case "p5":
			err = b.p5(ctx)
		case "p6":
			err = b.p6(ctx)
		case "p7":
			err = b.p7(ctx)
		case "p8":
			err = b.p8(ctx)
		case "p9":
			err = b.p9(ctx)
		case "p10":
			err = b.p10(ctx)
		case "p11":
			err = b.p11(ctx)
		default:
			err = fmt.Errorf("unknown benchmark %q", name)
		}
		if err != nil {
			fmt.Printf("%s: FAILED: %v\n", name, err)
			failed = true
		}
	}
	if failed {
		os.Exit(1)
	}
}
