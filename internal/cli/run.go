package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"regexp"
	"runtime/pprof"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sightline-io/sightline/agent"
	"github.com/sightline-io/sightline/server"
)

const shutdownTimeout = 15 * time.Second

type serverFlags struct {
	dataDir, listen, grpcListen string
	retention                   time.Duration
	otlpExport                  string
}

func (f *serverFlags) register(fs interface {
	StringVar(*string, string, string, string)
	DurationVar(*time.Duration, string, time.Duration, string)
}) {
	fs.StringVar(&f.dataDir, "data-dir", "./sightline-data", "directory for the embedded DuckDB store")
	fs.StringVar(&f.listen, "listen", "127.0.0.1:7070", "HTTP API address (query, /healthz, /metrics)")
	fs.StringVar(&f.grpcListen, "grpc-listen", "127.0.0.1:7071", "gRPC address agents ship to")
	fs.DurationVar(&f.retention, "retention", 7*24*time.Hour, "delete rows older than this")
	fs.StringVar(&f.otlpExport, "otlp-export-endpoint", "",
		"export assembled traces to this OTLP/HTTP endpoint, e.g. http://tempo:4318 (POST {url}/v1/traces); empty: off")
}

func (f *serverFlags) config(reg *prometheus.Registry, log *slog.Logger) server.Config {
	return server.Config{DataDir: f.dataDir, Listen: f.listen, GRPCListen: f.grpcListen,
		Retention: f.retention, Registry: reg, Logger: log, OTLPExportEndpoint: f.otlpExport}
}

type agentFlags struct {
	captureIfaces         string
	captureSnap           int
	packetL7              bool
	flowReportEvery       time.Duration
	noGoTracking          bool
	noTLS                 bool
	tlsProcesses          string
	noTCPEvents           bool
	maxPayload, ringBytes int
	maxRowsPerSecond      int
	agentID               string
	cpuProfile            string
	proto                 protocolFlags
}

func (f *agentFlags) register(fs *flag.FlagSet) {
	fs.IntVar(&f.maxPayload, "max-payload", 1024, "bytes of each syscall's payload to capture (up to 16384)")
	fs.IntVar(&f.ringBytes, "ring-buffer", 8<<20, "kernel ring buffer size in bytes (power of two)")
	fs.StringVar(&f.agentID, "agent-id", "", "agent id in every row (default: host name)")
	fs.IntVar(&f.maxRowsPerSecond, "max-rows-per-second", 10000,
		"ship at most this many l7_flow_log rows per second; the rest are dropped and counted (0: no cap)")
	f.proto.register(fs)
	fs.StringVar(&f.captureIfaces, "capture-interfaces", "",
		"packet capture for l4_flow_log: comma-separated interfaces (default: every up interface, loopback included); \"none\" turns it off")
	fs.IntVar(&f.captureSnap, "capture-snaplen", 0, "bytes kept of each captured frame (default 256, or 1024 with --packet-l7)")
	fs.BoolVar(&f.packetL7, "packet-l7", false,
		"also parse captured packets into l7_flow_log rows (observation_point c/s/local); off by default, as the eBPF rows of the\nsame requests would be counted twice")
	fs.DurationVar(&f.flowReportEvery, "flow-report-every", 60*time.Second, "l4_flow_log reporting period of a live flow")
	fs.BoolVar(&f.noTCPEvents, "no-tcp-events", false, "turn off the TCP lifecycle tracer (connect failures, retransmits, resets per process on /metrics)")
	fs.BoolVar(&f.noGoTracking, "no-go-tracking", false, "turn off goroutine tracking (uprobes on the runtime of Go processes that link a Go service's calls to its requests); Go processes then get no syscall trace ids")
	fs.BoolVar(&f.noTLS, "no-tls", false, "turn off TLS plaintext capture (uprobes on OpenSSL-API libraries and Go crypto/tls): the kill switch")
	fs.StringVar(&f.tlsProcesses, "tls-processes", "", "capture TLS plaintext only for processes whose name (comm) or executable path matches this regular expression (default: all)")
	fs.StringVar(&f.cpuProfile, "cpuprofile", "", "write a Go CPU profile of this process to FILE until it stops (for overhead work)")
}

// startProfile starts the CPU profile asked for with --cpuprofile; the
// returned func stops it.
func (f *agentFlags) startProfile() (stop func(), err error) {
	if f.cpuProfile == "" {
		return func() {}, nil
	}
	out, err := os.Create(f.cpuProfile)
	if err != nil {
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(out); err != nil {
		out.Close()
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		out.Close()
	}, nil
}

func (f *agentFlags) config(server string, reg prometheus.Registerer, log *slog.Logger) (agent.Config, error) {
	protocols, err := f.proto.protocols()
	if err != nil {
		return agent.Config{}, err
	}
	pc := agent.PacketConfig{SnapLen: f.captureSnap, L7: f.packetL7, ReportEvery: f.flowReportEvery}
	switch ifaces := splitList(f.captureIfaces); {
	case len(ifaces) == 1 && ifaces[0] == "none":
		pc.Disable = true
	default:
		pc.Interfaces = ifaces
	}
	if f.flowReportEvery <= 0 {
		return agent.Config{}, fmt.Errorf("--flow-report-every %v: must be positive", f.flowReportEvery)
	}
	var tlsProcs *regexp.Regexp
	if f.tlsProcesses != "" {
		if tlsProcs, err = regexp.Compile(f.tlsProcesses); err != nil {
			return agent.Config{}, fmt.Errorf("--tls-processes: %w", err)
		}
	}
	return agent.Config{Server: server, AgentID: f.agentID, MaxPayload: f.maxPayload,
		RingBufferBytes: f.ringBytes, Protocols: protocols, MaxRowsPerSecond: f.maxRowsPerSecond,
		Packets: pc, DisableTCPEvents: f.noTCPEvents, DisableGoTracking: f.noGoTracking,
		DisableTLS: f.noTLS, TLSProcesses: tlsProcs, Registerer: reg, Logger: log}, nil
}

func newLogger(stderr io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

func runServer(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("server", "[flags]",
		"Runs the Sightline server: gRPC ingest from agents, the embedded DuckDB store, and the HTTP API\n"+
			"(POST /api/v1/query, GET /healthz, GET /metrics).", stderr)
	var sf serverFlags
	sf.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	log := newLogger(stderr)
	srv, err := server.Start(ctx, sf.config(prometheus.NewRegistry(), log))
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "sightline server: API on http://%s, agent ingest on %s, data in %s\n", srv.HTTPAddr(), srv.GRPCAddr(), sf.dataDir)
	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-srv.Err():
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && serveErr == nil {
		serveErr = err
	}
	return serveErr
}

func runAgent(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("agent", "[flags]",
		"Runs the eBPF agent on this host (needs root) and ships l7_flow_log rows to a server.", stderr)
	serverAddr := fs.String("server", "127.0.0.1:7071", "server's gRPC ingest address")
	metricsListen := fs.String("metrics-listen", "", "serve the agent's own /metrics and /debug/tls (TLS coverage) here (e.g. 127.0.0.1:7072); empty = off")
	var af agentFlags
	af.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if _, err := af.proto.protocols(); err != nil {
		fmt.Fprintf(stderr, "sightline: %v\n", err)
		return errUsage
	}
	stopProfile, err := af.startProfile()
	if err != nil {
		return err
	}
	defer stopProfile()
	log := newLogger(stderr)
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	var tlsCoverage lateHandler
	if *metricsListen != "" {
		// Bind before capturing, so a taken address is an error, not a log line.
		ln, err := net.Listen("tcp", *metricsListen)
		if err != nil {
			return fmt.Errorf("metrics listener: %w", err)
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		mux.Handle("GET /debug/tls", &tlsCoverage)
		ms := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go func() {
			if err := ms.Serve(ln); err != nil && err != http.ErrServerClosed {
				log.Error("agent metrics listener", "err", err)
			}
		}()
		defer ms.Close()
	}
	cfg, err := af.config(*serverAddr, reg, log)
	if err != nil {
		return err
	}
	a, err := agent.New(cfg)
	if err != nil {
		return err
	}
	tlsCoverage.set(a.TLSCoverage())
	fmt.Fprintf(stdout, "sightline agent: capturing, shipping to %s\n", *serverAddr)
	return a.Run(ctx)
}

func runUp(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("up", "[flags]",
		"Runs the server and the agent for this host in one process (needs root). Ctrl-C flushes and stops.", stderr)
	var sf serverFlags
	sf.register(fs)
	var af agentFlags
	af.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if _, err := af.proto.protocols(); err != nil {
		fmt.Fprintf(stderr, "sightline: %v\n", err)
		return errUsage
	}
	stopProfile, err := af.startProfile()
	if err != nil {
		return err
	}
	defer stopProfile()
	log := newLogger(stderr)
	reg := prometheus.NewRegistry()
	var tlsCoverage lateHandler
	scfg := sf.config(reg, log)
	scfg.Handlers = map[string]http.Handler{"GET /debug/tls": &tlsCoverage}
	srv, err := server.Start(ctx, scfg)
	if err != nil {
		return err
	}
	stopServer := func() error {
		sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		defer cancel()
		return srv.Shutdown(sctx)
	}
	cfg, err := af.config(srv.GRPCAddr(), reg, log)
	if err != nil {
		stopServer()
		return err
	}
	a, err := agent.New(cfg)
	if err != nil {
		stopServer()
		return err
	}
	tlsCoverage.set(a.TLSCoverage())
	fmt.Fprintf(stdout, "sightline up: API on http://%s (try: sightline query --server http://%s \"SELECT request_type, request_resource, response_code FROM l7_flow_log\"), data in %s\n",
		srv.HTTPAddr(), srv.HTTPAddr(), sf.dataDir)

	agentCtx, stopAgent := context.WithCancel(ctx)
	defer stopAgent()
	agentDone := make(chan error, 1)
	go func() { agentDone <- a.Run(agentCtx) }()
	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-srv.Err():
	case runErr = <-agentDone:
		agentDone <- runErr
	}
	// Agent first, so its flush lands in the still-running server.
	stopAgent()
	if err := <-agentDone; err != nil && runErr == nil {
		runErr = err
	}
	if err := stopServer(); err != nil && runErr == nil {
		runErr = err
	}
	fmt.Fprintln(stdout, "sightline up: stopped")
	return runErr
}

// splitList splits a comma-separated flag value, dropping empty items
// (case kept: interface names are case-sensitive).
func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// lateHandler serves a handler set once its owner exists (the agent starts
// after the listener that serves it); 503 until then.
type lateHandler struct{ h atomic.Pointer[http.Handler] }

func (l *lateHandler) set(h http.Handler) { l.h.Store(&h) }

func (l *lateHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := l.h.Load()
	if h == nil {
		http.Error(w, "agent not started yet", http.StatusServiceUnavailable)
		return
	}
	(*h).ServeHTTP(w, r)
}
