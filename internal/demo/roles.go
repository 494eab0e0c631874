package demo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	oteltrace "go.opentelemetry.io/otel/trace"
)

// RoleEnv makes a binary (sightline or a test binary) run one Go role of the
// topology instead of its normal work: the value is a JSON roleConfig. The
// agent never traces its own process, so every role is a process of its own.
const RoleEnv = "SIGHTLINE_DEMO_ROLE"

// Role names.
const (
	roleGoAPI    = "goapi"
	roleOTelSvc  = "otelsvc"
	roleBroker   = "broker"
	roleConsumer = "consumer"
	roleDriver   = "driver"
)

// Topic is the Kafka topic orders are produced to.
const Topic = "orders"

// producerConns is the size of goapi's Kafka connection pool.
const producerConns = 8

// pythonWorkers is the size of goapi's fixed worker pool calling Python.
const pythonWorkers = 4

// roleConfig is what a role process is told.
type roleConfig struct {
	Role   string `json:"role"`
	Listen string `json:"listen,omitempty"`

	// goapi
	DNS, Redis, Postgres, Python, Kafka, OTelSvc string `json:",omitempty"`
	// otelsvc: the OTLP/HTTP traces URL
	OTLP string `json:",omitempty"`
	// driver
	URL         string `json:",omitempty"`
	First       int    `json:",omitempty"`
	Requests    int    `json:",omitempty"`
	Concurrency int    `json:",omitempty"`
	Out         string `json:",omitempty"`
}

// RunRole runs the role described by value (RoleEnv's value) until it is
// killed (servers) or done (the driver).
func RunRole(value string) error {
	var cfg roleConfig
	if err := json.Unmarshal([]byte(value), &cfg); err != nil {
		return fmt.Errorf("demo role %q: %w", value, err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	switch cfg.Role {
	case roleGoAPI:
		return runGoAPI(ctx, cfg)
	case roleOTelSvc:
		return runOTelSvc(ctx, cfg)
	case roleBroker:
		return runBroker(ctx, cfg)
	case roleConsumer:
		return runConsumer(ctx, cfg)
	case roleDriver:
		return runDriver(ctx, cfg)
	}
	return fmt.Errorf("demo: unknown role %q", cfg.Role)
}

// serve runs h on cfg.Listen until ctx ends.
func serve(ctx context.Context, listen string, h http.Handler) error {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", listen, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func healthz(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") }

// orderN parses the {n} path value: a non-negative int.
func orderN(w http.ResponseWriter, r *http.Request) (int, bool) {
	n, err := strconv.Atoi(r.PathValue("n"))
	if err != nil || n < 0 {
		http.Error(w, "order number must be a non-negative integer", http.StatusBadRequest)
		return 0, false
	}
	return n, true
}

// job is one call to the Python worker, made by a pool goroutine.
type job struct {
	n    int
	done chan error
}

type goapi struct {
	resolver *net.Resolver
	rdb      *redis.Client
	pg       *pgPool
	jobs     chan *job
	kafka    *producer
	client   *http.Client
	python   string
	otelsvc  string
}

func runGoAPI(ctx context.Context, cfg roleConfig) error {
	dnsAddr := cfg.DNS
	g := &goapi{
		resolver: &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "udp", dnsAddr)
		}},
		rdb: redis.NewClient(&redis.Options{Addr: cfg.Redis, PoolSize: 16, MinIdleConns: 16, Protocol: 2,
			DisableIdentity: true}),
		jobs:    make(chan *job),
		client:  &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 256}},
		python:  "http://" + cfg.Python,
		otelsvc: "http://" + cfg.OTelSvc,
	}
	defer g.rdb.Close()
	// Warm every pool before serving, so that no connection handshake
	// (HELLO, startup, login) happens inside a request.
	warm, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	var err error
	if g.pg, err = newPGPool(warm, cfg.Postgres, 16); err != nil {
		return err
	}
	defer g.pg.Close()
	if err := warmPool(warm, 16, func(ctx context.Context) error { return g.rdb.Ping(ctx).Err() }); err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	if g.kafka, err = newProducer(cfg.Kafka, Topic, producerConns); err != nil {
		return err
	}
	defer g.kafka.close()
	var workers sync.WaitGroup
	for range pythonWorkers {
		workers.Add(1)
		go func() {
			defer workers.Done()
			for j := range g.jobs {
				j.done <- g.callPython(j.n)
			}
		}()
	}
	defer func() {
		close(g.jobs)
		workers.Wait()
	}()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", healthz)
	mux.HandleFunc("GET /order/{n}", g.order)
	return serve(ctx, cfg.Listen, mux)
}

// pgPool is a fixed pool of Postgres connections, all opened (login
// included) before goapi serves.
type pgPool struct{ conns chan *pgx.Conn }

// newPGPool opens size connections, retrying until ctx ends (the server
// accepts TCP before it accepts logins).
func newPGPool(ctx context.Context, url string, size int) (*pgPool, error) {
	cc, err := pgx.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("postgres url: %w", err)
	}
	cc.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	p := &pgPool{conns: make(chan *pgx.Conn, size)}
	for len(p.conns) < size {
		c, err := pgx.ConnectConfig(ctx, cc)
		if err != nil {
			select {
			case <-ctx.Done():
				p.Close()
				return nil, fmt.Errorf("postgres: %w", err)
			case <-time.After(200 * time.Millisecond):
			}
			continue
		}
		p.conns <- c
	}
	return p, nil
}

// queryInt runs sql (simple protocol: one Query message) and scans one int.
func (p *pgPool) queryInt(ctx context.Context, sql string, v *int) error {
	var c *pgx.Conn
	select {
	case c = <-p.conns:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { p.conns <- c }()
	return c.QueryRow(ctx, sql).Scan(v)
}

// Close closes the idle connections.
func (p *pgPool) Close() {
	for {
		select {
		case c := <-p.conns:
			_ = c.Close(context.Background())
		default:
			return
		}
	}
}

// warmPool runs f n times at once.
func warmPool(ctx context.Context, n int, f func(context.Context) error) error {
	errs := make(chan error, n)
	for range n {
		go func() { errs <- f(ctx) }()
	}
	var all error
	for range n {
		all = errors.Join(all, <-errs)
	}
	return all
}

func (g *goapi) callPython(n int) error {
	resp, err := g.client.Get(fmt.Sprintf("%s/work/%d", g.python, n))
	if err != nil {
		return fmt.Errorf("python: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("python: %s", resp.Status)
	}
	return nil
}

// order serves GET /order/{n}: DNS, then a fan-out (Redis and Postgres in
// goroutines, Python through the worker pool), then Kafka and otelsvc on
// the handler goroutine.
func (g *goapi) order(w http.ResponseWriter, r *http.Request) {
	n, ok := orderN(w, r)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 20*time.Second)
	defer cancel()
	fail := func(what string, err error) {
		http.Error(w, fmt.Sprintf("order %d: %s: %v", n, what, err), http.StatusBadGateway)
	}
	if _, err := g.resolver.LookupIP(ctx, "ip4", fmt.Sprintf("o%d.demo.test.", n)); err != nil {
		fail("dns", err)
		return
	}
	var wg sync.WaitGroup
	var redisErr, pgErr error
	key := orderKey(n)
	wg.Add(2)
	go func() {
		defer wg.Done()
		if redisErr = g.rdb.Set(ctx, key, n, time.Hour).Err(); redisErr == nil {
			redisErr = g.rdb.Get(ctx, key).Err()
		}
	}()
	go func() {
		defer wg.Done()
		var v int
		pgErr = g.pg.queryInt(ctx, fmt.Sprintf("/* order=%d */ SELECT %d", n, n), &v)
	}()
	j := &job{n: n, done: make(chan error, 1)}
	var pyErr error
	select {
	case g.jobs <- j:
		pyErr = <-j.done
	case <-ctx.Done():
		pyErr = ctx.Err()
	}
	wg.Wait()
	if err := errors.Join(redisErr, pgErr, pyErr); err != nil {
		fail("fan-out", err)
		return
	}
	off, err := g.kafka.produce(ctx, key, "order "+strconv.Itoa(n))
	if err != nil {
		fail("kafka", err)
		return
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s/svc/%d", g.otelsvc, n), nil)
	if err != nil {
		fail("otelsvc", err)
		return
	}
	resp, err := g.client.Do(req)
	if err != nil {
		fail("otelsvc", err)
		return
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	w.Header().Set(OffsetHeader, strconv.FormatInt(off, 10))
	fmt.Fprintf(w, "order %d at offset %d\n", n, off)
}

// OffsetHeader carries the Kafka offset of an order's record in goapi's answer.
const OffsetHeader = "X-Produce-Offset"

// runOTelSvc serves GET /svc/{n} with a SERVER span and one internal child,
// exported over OTLP/HTTP.
func runOTelSvc(ctx context.Context, cfg roleConfig) error {
	exp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(cfg.OTLP))
	if err != nil {
		return fmt.Errorf("otlp exporter: %w", err)
	}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp, sdktrace.WithBatchTimeout(200*time.Millisecond)),
		sdktrace.WithResource(resource.NewSchemaless(attribute.String("service.name", "otelsvc"))),
	)
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = tp.Shutdown(sctx)
	}()
	tracer := tp.Tracer("sightline-demo")
	prop := propagation.TraceContext{}
	var priceURL string // set below, before serving
	priceClient := &http.Client{Timeout: 10 * time.Second}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", healthz)
	mux.HandleFunc("GET /svc/{n}", func(w http.ResponseWriter, r *http.Request) {
		n, ok := orderN(w, r)
		if !ok {
			return
		}
		ctx := prop.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
		ctx, span := tracer.Start(ctx, "GET /svc/{n}", oteltrace.WithSpanKind(oteltrace.SpanKindServer),
			oteltrace.WithAttributes(attribute.String("http.request.method", "GET"),
				attribute.String("url.path", r.URL.Path), attribute.String("http.route", "/svc/{n}"),
				attribute.Int("http.response.status_code", 200)))
		cctx, child := tracer.Start(ctx, "price "+orderKey(n))
		price, err := fetchPrice(cctx, priceClient, tracer, prop, priceURL, n)
		child.End()
		if err != nil {
			span.End()
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		fmt.Fprintf(w, "price %s\n", price)
		span.End()
	})
	// The price endpoint, on a second listener of the same process: the
	// instrumented outgoing call carries the trace's traceparent, which is
	// how the eBPF spans meet the app's own trace.
	priceLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("price listener: %w", err)
	}
	priceURL = "http://" + priceLn.Addr().String()
	priceMux := http.NewServeMux()
	priceMux.HandleFunc("GET /price/{n}", func(w http.ResponseWriter, r *http.Request) {
		n, ok := orderN(w, r)
		if !ok {
			return
		}
		ctx := prop.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
		_, span := tracer.Start(ctx, "GET /price/{n}", oteltrace.WithSpanKind(oteltrace.SpanKindServer),
			oteltrace.WithAttributes(attribute.String("http.request.method", "GET"),
				attribute.String("url.path", r.URL.Path), attribute.String("http.route", "/price/{n}"),
				attribute.Int("http.response.status_code", 200)))
		price := 0
		for i := range 1000 + n {
			price += i % 7
		}
		fmt.Fprintf(w, "%d", price)
		span.End()
	})
	priceSrv := &http.Server{Handler: priceMux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = priceSrv.Serve(priceLn) }()
	defer priceSrv.Close()
	return serve(ctx, cfg.Listen, mux)
}

// fetchPrice is otelsvc's instrumented outgoing call: a CLIENT span whose
// context goes out in the traceparent header.
func fetchPrice(ctx context.Context, client *http.Client, tracer oteltrace.Tracer, prop propagation.TextMapPropagator, base string, n int) (string, error) {
	ctx, span := tracer.Start(ctx, "GET /price/{n}", oteltrace.WithSpanKind(oteltrace.SpanKindClient),
		oteltrace.WithAttributes(attribute.String("http.request.method", "GET"), attribute.String("url.full", fmt.Sprintf("%s/price/%d", base, n))))
	defer span.End()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s/price/%d", base, n), nil)
	if err != nil {
		return "", err
	}
	prop.Inject(ctx, propagation.HeaderCarrier(req.Header))
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64))
	if err != nil {
		return "", err
	}
	span.SetAttributes(attribute.Int("http.response.status_code", resp.StatusCode))
	return string(b), nil
}

// runBroker runs a one-broker kfake cluster with the orders topic.
func runBroker(ctx context.Context, cfg roleConfig) error {
	_, portStr, err := net.SplitHostPort(cfg.Listen)
	if err != nil {
		return fmt.Errorf("broker listen %q: %w", cfg.Listen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return fmt.Errorf("broker port %q: %w", portStr, err)
	}
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(port), kfake.SeedTopics(1, Topic))
	if err != nil {
		return fmt.Errorf("kfake: %w", err)
	}
	defer c.Close()
	<-ctx.Done()
	return nil
}

// runConsumer consumes the orders topic and does nothing else.
func runConsumer(ctx context.Context, cfg roleConfig) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(cfg.Kafka), kgo.ConsumeTopics(Topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.ClientID("consumer"))
	if err != nil {
		return fmt.Errorf("kafka consumer: %w", err)
	}
	defer cl.Close()
	for ctx.Err() == nil {
		fs := cl.PollFetches(ctx)
		fs.EachError(func(t string, p int32, err error) {
			if !errors.Is(err, context.Canceled) {
				fmt.Fprintf(os.Stderr, "consumer: %s/%d: %v\n", t, p, err)
			}
		})
	}
	return nil
}
