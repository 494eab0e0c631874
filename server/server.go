// Package server wires Sightline's server: gRPC ingest from agents into the
// store, and the HTTP API (query, health, metrics) over it.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"google.golang.org/grpc"

	"github.com/sightline-io/sightline/internal/promstats"
	"github.com/sightline-io/sightline/server/api"
	"github.com/sightline-io/sightline/server/appspans"
	"github.com/sightline-io/sightline/server/store"
	"github.com/sightline-io/sightline/server/store/duckdb"
	"github.com/sightline-io/sightline/server/traceotlp"
	"github.com/sightline-io/sightline/wire"
)

// Config configures a Server.
type Config struct {
	DataDir    string // DuckDB files live here
	Listen     string // HTTP API address
	GRPCListen string // agent ingest address
	Retention  time.Duration
	// Registry collects the server's metrics (and, in `up`, the agent's);
	// nil makes a fresh one. Served on /metrics.
	Registry *prometheus.Registry
	Logger   *slog.Logger
	// OTLPExportEndpoint, when set, exports assembled traces to this
	// OTLP/HTTP base URL (POST {url}/v1/traces).
	OTLPExportEndpoint string
	// Handlers are extra HTTP routes on the API listener (pattern →
	// handler), e.g. `up` serves its agent's GET /debug/tls there.
	Handlers map[string]http.Handler
}

// Server is a running server.
type Server struct {
	log      *slog.Logger
	st       *duckdb.Store
	grpcSrv  *grpc.Server
	httpSrv  *http.Server
	grpcLn   net.Listener
	httpLn   net.Listener
	serveErr chan error

	stopExport context.CancelFunc
	exportDone chan struct{}
}

// Start opens the store, binds both listeners and serves in the background.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	reg := cfg.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	st, err := duckdb.Open(ctx, cfg.DataDir, duckdb.Options{Retention: cfg.Retention, Logger: cfg.Logger})
	if err != nil {
		return nil, fmt.Errorf("open store in %s: %w", cfg.DataDir, err)
	}
	s := &Server{log: cfg.Logger, st: st, serveErr: make(chan error, 2)}
	fail := func(err error) (*Server, error) {
		s.closeListeners()
		st.Close()
		return nil, err
	}
	if s.httpLn, err = net.Listen("tcp", cfg.Listen); err != nil {
		return fail(fmt.Errorf("listen %s: %w", cfg.Listen, err))
	}
	if s.grpcLn, err = net.Listen("tcp", cfg.GRPCListen); err != nil {
		return fail(fmt.Errorf("listen %s: %w", cfg.GRPCListen, err))
	}
	_ = reg.Register(collectors.NewGoCollector())
	_ = reg.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	if err := reg.Register(promstats.New("sightline_store", func() any { return st.Stats() })); err != nil {
		return fail(fmt.Errorf("register store metrics: %w", err))
	}
	recv, err := wire.NewReceiver(st.InsertL7, wire.ReceiverOptions{Registerer: reg, Logger: cfg.Logger})
	if err != nil {
		return fail(err)
	}
	recv.SetL4Sink(st.InsertL4)
	s.grpcSrv = wire.NewGRPCServer(recv)
	// Application spans (OTLP, Zipkin, SkyWalking) land in l7_flow_log as
	// c-app/s-app/app rows: OTLP/gRPC on the ingest port, the rest on HTTP.
	apps := appspans.New(st.InsertL7, appspans.Options{Registerer: reg, Logger: cfg.Logger})
	apps.RegisterGRPC(s.grpcSrv)
	mux := http.NewServeMux()
	mux.Handle("/", api.NewHandler(st, reg, api.Options{Registerer: reg}))
	for _, p := range []string{appspans.PathOTLPTraces, appspans.PathZipkinSpans,
		appspans.PathSkyWalkingSegments, appspans.PathSkyWalkingSegment} {
		mux.Handle(p, apps.Handler())
	}
	for p, h := range cfg.Handlers {
		mux.Handle(p, h)
	}
	s.httpSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	if cfg.OTLPExportEndpoint != "" {
		exp, err := traceotlp.NewExporter(st, traceotlp.ExportOptions{Endpoint: cfg.OTLPExportEndpoint, Logger: cfg.Logger})
		if err != nil {
			return fail(err)
		}
		if err := reg.Register(promstats.New("sightline_otlp_export", func() any { return exp.Stats() })); err != nil {
			return fail(fmt.Errorf("register otlp export metrics: %w", err))
		}
		ectx, cancel := context.WithCancel(context.Background())
		s.stopExport, s.exportDone = cancel, make(chan struct{})
		go func() {
			defer close(s.exportDone)
			_ = exp.Run(ectx)
		}()
	}
	go func() { s.serveErr <- s.grpcSrv.Serve(s.grpcLn) }()
	go func() {
		if err := s.httpSrv.Serve(s.httpLn); !errors.Is(err, http.ErrServerClosed) {
			s.serveErr <- err
		}
	}()
	cfg.Logger.Info("server listening", "http", s.HTTPAddr(), "grpc", s.GRPCAddr(), "data_dir", cfg.DataDir)
	return s, nil
}

// HTTPAddr is the bound address of the HTTP API.
func (s *Server) HTTPAddr() string { return s.httpLn.Addr().String() }

// GRPCAddr is the bound address of the agent ingest endpoint.
func (s *Server) GRPCAddr() string { return s.grpcLn.Addr().String() }

// Store gives in-process access to the store (tests, `up`).
func (s *Server) Store() store.Store { return s.st }

// Err reports a listener that stopped serving unexpectedly.
func (s *Server) Err() <-chan error { return s.serveErr }

// Shutdown stops accepting, lets in-flight ingest finish and closes the store.
func (s *Server) Shutdown(ctx context.Context) error {
	stopped := make(chan struct{})
	go func() {
		s.grpcSrv.GracefulStop()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-ctx.Done():
		s.grpcSrv.Stop()
	}
	herr := s.httpSrv.Shutdown(ctx)
	if s.stopExport != nil {
		s.stopExport()
		<-s.exportDone
	}
	serr := s.st.Close()
	return errors.Join(herr, serr)
}

func (s *Server) closeListeners() {
	if s.httpLn != nil {
		s.httpLn.Close()
	}
	if s.grpcLn != nil {
		s.grpcLn.Close()
	}
}
