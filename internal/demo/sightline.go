package demo

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sightline-io/sightline/agent"
	"github.com/sightline-io/sightline/agent/l7/registry"
	"github.com/sightline-io/sightline/server"
	"github.com/sightline-io/sightline/server/store"
)

// Sightline is a server and an agent in this process, as `sightline up`
// runs them: the agent ships to the server over gRPC, the server stores in
// DuckDB and serves the API (and OTLP/HTTP on /v1/traces).
type Sightline struct {
	srv       *server.Server
	agent     *agent.Agent
	stopAgent context.CancelFunc
	agentDone chan error
}

// SightlineConfig configures StartSightline.
type SightlineConfig struct {
	DataDir string // DuckDB directory
	Listen  string // HTTP API address; "" = 127.0.0.1:0
	GRPC    string // ingest address; "" = 127.0.0.1:0
	Logger  *slog.Logger
	// Agent is the agent's configuration; Server, Registerer and (when nil)
	// Protocols are filled in: the full protocol registry.
	Agent agent.Config
}

// StartSightline starts the server, then the agent shipping to it.
func StartSightline(ctx context.Context, cfg SightlineConfig) (*Sightline, error) {
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	if cfg.GRPC == "" {
		cfg.GRPC = "127.0.0.1:0"
	}
	reg := prometheus.NewRegistry()
	srv, err := server.Start(ctx, server.Config{DataDir: cfg.DataDir, Listen: cfg.Listen, GRPCListen: cfg.GRPC,
		Registry: reg, Logger: cfg.Logger})
	if err != nil {
		return nil, fmt.Errorf("demo: server: %w", err)
	}
	ac := cfg.Agent
	ac.Server, ac.Registerer, ac.Logger = srv.GRPCAddr(), reg, cfg.Logger
	if ac.ExpireEvery == 0 {
		ac.ExpireEvery = 200 * time.Millisecond
	}
	if ac.Protocols == nil {
		ac.Protocols = registry.Default()
	}
	a, err := agent.New(ac)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("demo: agent: %w", err), shutdown(srv))
	}
	actx, stop := context.WithCancel(context.WithoutCancel(ctx))
	s := &Sightline{srv: srv, agent: a, stopAgent: stop, agentDone: make(chan error, 1)}
	go func() { s.agentDone <- a.Run(actx) }()
	return s, nil
}

func shutdown(srv *server.Server) error {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	return srv.Shutdown(ctx)
}

// WaitProbed waits until the agent's goroutine probes are on in each of the
// Go processes pids (or ctx ends, or limit passes): until then their calls
// carry no request ids, and a trace driven now would miss them.
func (s *Sightline) WaitProbed(ctx context.Context, limit time.Duration, pids ...int) error {
	deadline := time.Now().Add(limit)
	for {
		missing := 0
		for _, p := range pids {
			if !s.agent.GoProbed(uint32(p)) {
				missing = p
				break
			}
		}
		if missing == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("demo: goroutine probes not on in pid %d after %v (see the agent's sightline_agent_gotrack_* metrics)", missing, limit)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// API is the server's HTTP base URL.
func (s *Sightline) API() string { return "http://" + s.srv.HTTPAddr() }

// OTLP is the server's OTLP/HTTP traces URL.
func (s *Sightline) OTLP() string { return s.API() + "/v1/traces" }

// Store is the server's store.
func (s *Sightline) Store() store.Store { return s.srv.Store() }

// Err reports an agent or server failure while running.
func (s *Sightline) Err() <-chan error { return s.srv.Err() }

// Stop stops the agent (its flush lands in the server), then the server.
func (s *Sightline) Stop() error {
	s.stopAgent()
	err := <-s.agentDone
	return errors.Join(err, shutdown(s.srv))
}
