// Package api serves Sightline's HTTP API: SQL queries over the store,
// health, and Prometheus metrics.
package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sightline-io/sightline/server/store"
	"github.com/sightline-io/sightline/server/tempo"
	"github.com/sightline-io/sightline/server/trace"
	"github.com/sightline-io/sightline/server/tracesearch"
)

// DefaultMaxBodyBytes bounds a query request body.
const DefaultMaxBodyBytes = 1 << 20

// healthTimeout bounds the store ping behind /healthz.
const healthTimeout = 5 * time.Second

// Options tune the handler. The zero value is usable.
type Options struct {
	// Registerer receives the API's metrics; nil leaves them unregistered.
	Registerer prometheus.Registerer
	// MaxBodyBytes bounds a request body (larger ones get 413); 0 means
	// DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// QueryTimeout bounds each query; 0 leaves it to the store.
	QueryTimeout time.Duration
	// Logger receives server-side errors; nil means slog.Default().
	Logger *slog.Logger
}

// Pinger is implemented by stores that can check their health cheaply.
// Other stores are checked with "SELECT 1".
type Pinger interface {
	Ping(ctx context.Context) error
}

// QueryRequest is the body of POST /api/v1/query.
type QueryRequest struct {
	SQL string `json:"sql"`
}

// ErrorResponse is the body of every non-2xx answer of the query endpoint.
type ErrorResponse struct {
	Error string `json:"error"`
}

// Error reasons, the "reason" label of sightline_api_query_errors_total.
const (
	reasonBadRequest = "bad_request" // malformed request or empty SQL
	reasonTooLarge   = "too_large"   // body over the limit
	reasonQuery      = "query"       // *store.QueryError: rejected or invalid SQL
	reasonTimeout    = "timeout"     // query deadline exceeded
	reasonInternal   = "internal"    // anything else
)

type metrics struct {
	queries  prometheus.Counter
	errors   *prometheus.CounterVec
	duration prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer, log *slog.Logger) *metrics {
	m := &metrics{
		queries: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "sightline", Subsystem: "api", Name: "queries_total",
			Help: "Query requests received.",
		}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "sightline", Subsystem: "api", Name: "query_errors_total",
			Help: "Query requests that failed, by reason.",
		}, []string{"reason"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "sightline", Subsystem: "api", Name: "query_duration_seconds",
			Help:    "Time to answer query requests.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 9), // 1ms .. ~65s
		}),
	}
	for _, reason := range []string{reasonBadRequest, reasonTooLarge, reasonQuery, reasonTimeout, reasonInternal} {
		m.errors.WithLabelValues(reason) // export zeros
	}
	if reg == nil {
		return m
	}
	m.queries = register(reg, m.queries, log)
	m.errors = register(reg, m.errors, log)
	m.duration = register(reg, m.duration, log)
	return m
}

// register registers c, reusing an identical collector registered before
// (e.g. by an earlier handler on the same registry).
func register[C prometheus.Collector](reg prometheus.Registerer, c C, log *slog.Logger) C {
	err := reg.Register(c)
	if err == nil {
		return c
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing
		}
	}
	log.Warn("api: register metric", "error", err)
	return c
}

type handler struct {
	st      store.Store
	opts    Options
	log     *slog.Logger
	metrics *metrics
}

// NewHandler returns the API handler:
//
//	POST /api/v1/query  {"sql": "..."} -> {"columns": [...], "rows": [[...]]}
//	                    (also form field or URL parameter sql; GET with ?sql=)
//	GET  /healthz       "ok" when the store answers
//	GET  /metrics       the gatherer's metrics (when reg is not nil)
func NewHandler(st store.Store, reg prometheus.Gatherer, opts Options) http.Handler {
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	h := &handler{st: st, opts: opts, log: opts.Logger, metrics: newMetrics(opts.Registerer, opts.Logger)}

	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/v1/query", h.query)
	mux.HandleFunc("GET /api/v1/query", h.query)
	mux.HandleFunc("GET /healthz", h.health)
	// Trace assembly around any span (?span=<_id>) or by trace id.
	th := trace.NewHandler(st, trace.Options{})
	mux.Handle("GET /api/v1/traces", th)
	mux.Handle("GET /api/v1/traces/{trace_id}", th)
	// More specific than /api/v1/traces/{trace_id}.
	mux.Handle("GET /api/v1/traces/search", tracesearch.NewHandler(st))
	// Grafana's stock Tempo data source: /api/echo, /api/traces/{id},
	// /api/search, tags and tag values (v1 and v2).
	tp := tempo.NewHandler(st, trace.Options{})
	for _, p := range tempo.Patterns() {
		mux.Handle(p, tp)
	}
	if reg != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{
			ErrorLog: slog.NewLogLogger(opts.Logger.Handler(), slog.LevelWarn),
		}))
	}
	return mux
}

func (h *handler) query(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	h.metrics.queries.Inc()
	defer func() { h.metrics.duration.Observe(time.Since(start).Seconds()) }()

	r.Body = http.MaxBytesReader(w, r.Body, h.opts.MaxBodyBytes)
	sql, err := readSQL(r, h.opts.MaxBodyBytes)
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			h.fail(w, http.StatusRequestEntityTooLarge, reasonTooLarge,
				fmt.Sprintf("request body larger than %d bytes", tooLarge.Limit))
			return
		}
		h.fail(w, http.StatusBadRequest, reasonBadRequest, err.Error())
		return
	}
	if strings.TrimSpace(sql) == "" {
		h.fail(w, http.StatusBadRequest, reasonBadRequest, "empty sql")
		return
	}

	ctx := r.Context()
	if h.opts.QueryTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, h.opts.QueryTimeout)
		defer cancel()
	}
	res, err := h.st.Query(ctx, sql)
	if err != nil {
		var qe *store.QueryError
		switch {
		case errors.As(err, &qe):
			h.fail(w, http.StatusBadRequest, reasonQuery, qe.Msg)
		case errors.Is(err, context.DeadlineExceeded):
			h.fail(w, http.StatusGatewayTimeout, reasonTimeout, "query timed out")
		default:
			h.log.Error("api: query failed", "error", err)
			h.fail(w, http.StatusInternalServerError, reasonInternal, "internal error: "+err.Error())
		}
		return
	}
	if res.Rows == nil {
		res.Rows = [][]any{} // [] rather than null
	}
	writeJSON(w, http.StatusOK, res, h.log)
}

// readSQL extracts the statement from a JSON body, a form, or the URL.
// A JSON object is accepted whatever the Content-Type says, because
// `curl -d '{"sql": ...}'` labels it as a form.
func readSQL(r *http.Request, maxMemory int64) (string, error) {
	if r.Method == http.MethodGet {
		return r.URL.Query().Get("sql"), nil
	}
	mediaType, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mediaType == "multipart/form-data" {
		if err := r.ParseMultipartForm(maxMemory); err != nil {
			return "", fmt.Errorf("parse form: %w", err)
		}
		return r.FormValue("sql"), nil
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return "", fmt.Errorf("read body: %w", err)
	}
	trimmed := bytes.TrimSpace(body)
	switch {
	case len(trimmed) == 0:
		return r.URL.Query().Get("sql"), nil
	case mediaType == "application/x-www-form-urlencoded" && trimmed[0] != '{':
		form, err := url.ParseQuery(string(body))
		if err != nil {
			return "", fmt.Errorf("parse form: %w", err)
		}
		return form.Get("sql"), nil
	}
	var req QueryRequest
	if err := json.Unmarshal(trimmed, &req); err != nil {
		return "", fmt.Errorf("invalid JSON body: %w", err)
	}
	return req.SQL, nil
}

func (h *handler) health(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), healthTimeout)
	defer cancel()
	var err error
	if p, ok := h.st.(Pinger); ok {
		err = p.Ping(ctx)
	} else {
		_, err = h.st.Query(ctx, "SELECT 1")
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if err != nil {
		h.log.Warn("api: health check failed", "error", err)
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintf(w, "store unavailable: %v\n", err)
		return
	}
	io.WriteString(w, "ok\n")
}

func (h *handler) fail(w http.ResponseWriter, status int, reason, msg string) {
	h.metrics.errors.WithLabelValues(reason).Inc()
	writeJSON(w, status, ErrorResponse{Error: msg}, h.log)
}

// writeJSON encodes v fully before writing, so an encoding failure is a
// clean 500 rather than a truncated body.
func writeJSON(w http.ResponseWriter, status int, v any, log *slog.Logger) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		log.Error("api: encode response", "error", err)
		buf.Reset()
		status = http.StatusInternalServerError
		enc.Encode(ErrorResponse{Error: "encode response: " + err.Error()})
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	if _, err := w.Write(buf.Bytes()); err != nil {
		log.Debug("api: write response", "error", err)
	}
}
