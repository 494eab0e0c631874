package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/sightline-io/sightline/agent"
	"github.com/sightline-io/sightline/internal/demo"
)

// runDemo runs the reference topology (internal/demo) under a server and
// agent in this process, drives it, prints the trace completeness report
// and, with --keep, leaves everything running for exploring.
func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	// The topology's Go roles are this binary re-executed as `sightline demo`.
	if v := os.Getenv(demo.RoleEnv); v != "" {
		return demo.RunRole(v)
	}
	fs := newFlagSet("demo", "[flags]",
		"Runs the reference topology on 127.0.0.1 (needs root, nginx, redis-server, postgresql, dnsmasq, python3):\n"+
			"a driver → nginx → a Go API → {dnsmasq, redis, postgres, a Python thread-pool worker → redis,\n"+
			"a Kafka broker with a producer and a consumer, an OTel-SDK service}, under a server and agent in\n"+
			"this process. Drives concurrent requests, assembles each one's trace and prints, per hop, how many\n"+
			"were expected, captured, in the trace, linked with the right parents, and falsely linked.", stderr)
	requests := fs.Int("requests", 200, "requests to drive (GET /order/<N>, N = 1..requests)")
	concurrency := fs.Int("concurrency", 200, "requests in flight at once")
	keep := fs.Bool("keep", false, "leave the topology and Sightline running after the report until Ctrl-C")
	dataDir := fs.String("data-dir", "", "directory for the DuckDB store (default: a new temporary directory)")
	listen := fs.String("listen", "127.0.0.1:7070", "HTTP API address (query, traces, OTLP/HTTP)")
	grpcListen := fs.String("grpc-listen", "127.0.0.1:0", "gRPC ingest address")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *requests <= 0 || *concurrency <= 0 || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "sightline demo: --requests and --concurrency must be positive; no arguments")
		return errUsage
	}
	if os.Geteuid() != 0 {
		return errors.New("needs root (eBPF)")
	}
	if err := demo.CheckTools(); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("own executable: %w", err)
	}
	work, err := os.MkdirTemp("", "sightline-demo-")
	if err != nil {
		return err
	}
	if *dataDir == "" {
		*dataDir = work + "/data"
	}
	log := newLogger(stderr)
	sl, err := demo.StartSightline(ctx, demo.SightlineConfig{DataDir: *dataDir, Listen: *listen, GRPC: *grpcListen,
		Logger: log, Agent: agent.Config{Packets: agent.PacketConfig{Disable: true}}})
	if err != nil {
		return err
	}
	defer func() {
		if err := sl.Stop(); err != nil {
			log.Error("stop sightline", "err", err)
		}
	}()
	fmt.Fprintf(stderr, "sightline demo: server and agent up, API on %s; starting the topology\n", sl.API())
	topo, err := demo.Start(ctx, demo.Options{Self: []string{self, "demo"}, OTLP: sl.OTLP(), Dir: work})
	if err != nil {
		return err
	}
	defer func() {
		if err := topo.Close(); err != nil {
			log.Error("stop topology", "err", err)
		}
		if *keep {
			fmt.Fprintf(stdout, "topology stopped; its files and the store stay in %s\n", work)
		} else if err := os.RemoveAll(work); err != nil {
			log.Error("remove work directory", "err", err)
		}
	}()
	if err := sl.WaitProbed(ctx, time.Minute, topo.PIDs.GoAPI, topo.PIDs.OTelSvc, topo.PIDs.Broker, topo.PIDs.Consumer); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "sightline demo: topology up %+v; driving %d requests, %d at once\n", topo.Ports, *requests, *concurrency)
	began := time.Now()
	truth, err := topo.Drive(ctx, 1, *requests, *concurrency)
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "sightline demo: driven in %.2fs; waiting for the rows to settle\n", time.Since(began).Seconds())
	if _, err := demo.WaitSettled(ctx, sl.Store(), truth, 2*time.Second, 30*time.Second); err != nil {
		return err
	}
	rep, err := demo.Check(ctx, sl.Store(), truth)
	if err != nil {
		return err
	}
	if err := rep.Write(stdout); err != nil {
		return err
	}
	for _, s := range rep.FalseLinks {
		fmt.Fprintln(stdout, "false link:", s)
	}
	if failed := truth.Failed(); failed != "" {
		fmt.Fprintf(stdout, "failed requests:\n%s", failed)
	}
	api := sl.API()
	fmt.Fprintf(stdout, "\nAPI: %s\n  query:  sightline query --server %s \"SELECT observation_point, request_type, request_resource, response_duration FROM l7_flow_log ORDER BY time DESC LIMIT 20\"\n", api, api)
	if rep.ExampleSpan != 0 {
		fmt.Fprintf(stdout, "  trace of order 1:  sightline trace --server %s --span %d   (or GET %s/api/v1/traces?span=%d)\n", api, rep.ExampleSpan, api, rep.ExampleSpan)
	}
	if !*keep {
		return nil
	}
	fmt.Fprintf(stdout, "topology running until Ctrl-C: curl http://127.0.0.1:%d/order/12345 (nginx); OTLP/HTTP at %s; data in %s\n",
		topo.Ports.Nginx, sl.OTLP(), *dataDir)
	select {
	case <-ctx.Done():
	case err := <-sl.Err():
		return err
	}
	return nil
}
