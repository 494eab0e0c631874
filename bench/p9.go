package main

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
)

// p9: trace completeness on the reference topology: `sightline demo` drives
// 200 requests at once through nginx → Go API → {DNS, Redis, PostgreSQL,
// Python thread pool → Redis, Kafka producer → consumer, an OTel SDK
// service} and counts, per request, the hops its trace links against the
// topology's ground truth, and the spans that joined a wrong trace.
func (b *bench) p9(ctx context.Context) error {
	port, err := freePort()
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, b.bin, "demo", "--requests", "200", "--concurrency", "200",
		"--listen", fmt.Sprintf("127.0.0.1:%d", port))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("sightline demo: %w\n%s", err, out.String())
	}
	found := false
	for _, line := range strings.Split(out.String(), "\n") {
		if strings.Contains(line, "hops linked / expected") {
			fmt.Printf("P9 reference topology, 200 requests in flight: %s\n", strings.TrimSpace(line))
			found = true
		}
	}
	if !found {
		return fmt.Errorf("sightline demo printed no summary:\n%s", out.String())
	}
	return nil
}
