package traceotlp

import (
	"bytes"
	"cmp"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"

	"github.com/sightline-io/sightline/server/store"
	"github.com/sightline-io/sightline/server/trace"
)

// Defaults of ExportOptions.
const (
	DefaultInterval          = 5 * time.Second
	DefaultDelay             = 10 * time.Second
	DefaultMaxTracesPerRound = 1000
	DefaultMaxRequestBytes   = 4 << 20
	DefaultRememberSpans     = 200_000
	DefaultRequestTimeout    = 10 * time.Second
	DefaultRetryBackoff      = 500 * time.Millisecond
	// MaxAttempts is how often one request is sent before it is dropped.
	MaxAttempts = 3
)

// ExportOptions configure an Exporter. Zero values take the defaults above.
type ExportOptions struct {
	// Endpoint is the OTLP/HTTP base URL (http://host:4318); spans are
	// POSTed to {Endpoint}/v1/traces as gzip-compressed protobuf. A URL that
	// already ends in /v1/traces is used as is.
	Endpoint string
	// Interval between export rounds.
	Interval time.Duration
	// Delay: a row is exported once its end time is older than now-Delay (or
	// it has waited Delay since the exporter first saw it), so that the rest
	// of its trace has been stored.
	Delay time.Duration
	// Backfill: at start, rows stored within Delay+Backfill before now are
	// exported too; older rows are not. Negative exports everything stored.
	Backfill time.Duration
	// Headers are added to every request (e.g. authorization).
	Headers map[string]string
	// TraceOptions bound each assembly.
	TraceOptions trace.Options
	// MaxTracesPerRound bounds the traces assembled in one round.
	MaxTracesPerRound int
	// MaxRequestBytes splits a round's batch into requests of about this
	// uncompressed protobuf size (one trace larger than it goes alone).
	MaxRequestBytes int
	// RememberSpans caps the set of exported row ids kept to avoid exporting
	// a span twice (oldest evicted first).
	RememberSpans int
	// RequestTimeout bounds one HTTP attempt.
	RequestTimeout time.Duration
	// RetryBackoff is the wait before the second attempt; it doubles after.
	RetryBackoff time.Duration
	// Client sends the requests (default: a new http.Client).
	Client *http.Client
	// Logger receives round errors and dropped requests (default: discard).
	Logger *slog.Logger
}

// ExportStats are the exporter's counters since it was created.
type ExportStats struct {
	Rounds          uint64 `json:"rounds"`
	RoundErrors     uint64 `json:"round_errors"`
	ExportedTraces  uint64 `json:"exported_traces"`
	ExportedSpans   uint64 `json:"exported_spans"`
	Requests        uint64 `json:"requests"`                       // requests accepted by the endpoint
	Retries         uint64 `json:"retries"`                        // attempts after the first
	FailedRequests  uint64 `json:"failed_requests"`                // requests given up on
	DroppedTraces   uint64 `json:"dropped_traces"`                 // traces in failed requests
	DroppedSpans    uint64 `json:"dropped_spans"`                  // spans in failed requests
	RejectedSpans   uint64 `json:"rejected_spans"`                 // partial success: refused by the endpoint
	AssembleErrors  uint64 `json:"assemble_errors"`                // rows whose trace could not be assembled
	SkippedRows     uint64 `json:"skipped_rows"`                   // rows already exported in an earlier trace
	SeenEvictions   uint64 `json:"seen_evictions"`                 // exported row ids forgotten (cap reached)
	Watermark       uint64 `json:"watermark" prom:"gauge"`         // the highest _id handled
	BytesSent       uint64 `json:"bytes_sent"`                     // compressed request bytes accepted
	LastRoundMillis uint64 `json:"last_round_millis" prom:"gauge"` // duration of the last round
}

// Exporter exports assembled traces to an OTLP/HTTP endpoint.
type Exporter struct {
	st     store.Store
	opt    ExportOptions
	url    string
	log    *slog.Logger
	client *http.Client
	now    func() time.Time
	sleep  func(ctx context.Context, d time.Duration) error

	mu        sync.Mutex // one round at a time
	started   bool
	watermark uint64
	seen      *idRing
	// blockID/blockSince: the row the watermark waits on, since when.
	blockID    uint64
	blockSince time.Time

	stats struct {
		rounds, roundErrors, traces, spans, requests, retries, failed  atomic.Uint64
		droppedTraces, droppedSpans, rejected, assembleErrors, skipped atomic.Uint64
		evictions, watermark, bytes, lastRoundMillis                   atomic.Uint64
	}
}

// NewExporter checks opt and returns an exporter reading from st.
func NewExporter(st store.Store, opt ExportOptions) (*Exporter, error) {
	if st == nil {
		return nil, errors.New("traceotlp: exporter needs a store")
	}
	u, err := exportURL(opt.Endpoint)
	if err != nil {
		return nil, err
	}
	for k, v := range opt.Headers {
		if k == "" || strings.ContainsAny(k, " \t\r\n:") || strings.ContainsAny(v, "\r\n") {
			return nil, fmt.Errorf("traceotlp: bad header %q", k)
		}
	}
	if opt.Interval < 0 || opt.Delay < 0 || opt.MaxTracesPerRound < 0 || opt.MaxRequestBytes < 0 ||
		opt.RememberSpans < 0 || opt.RequestTimeout < 0 || opt.RetryBackoff < 0 {
		return nil, errors.New("traceotlp: export options must not be negative")
	}
	opt.Interval = cmp.Or(opt.Interval, DefaultInterval)
	opt.Delay = cmp.Or(opt.Delay, DefaultDelay)
	opt.MaxTracesPerRound = cmp.Or(opt.MaxTracesPerRound, DefaultMaxTracesPerRound)
	opt.MaxRequestBytes = cmp.Or(opt.MaxRequestBytes, DefaultMaxRequestBytes)
	opt.RememberSpans = cmp.Or(opt.RememberSpans, DefaultRememberSpans)
	opt.RequestTimeout = cmp.Or(opt.RequestTimeout, DefaultRequestTimeout)
	opt.RetryBackoff = cmp.Or(opt.RetryBackoff, DefaultRetryBackoff)
	e := &Exporter{
		st: st, opt: opt, url: u,
		log:    opt.Logger,
		client: opt.Client,
		now:    time.Now,
		sleep:  sleepCtx,
		seen:   newIDRing(opt.RememberSpans),
	}
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	if e.client == nil {
		e.client = &http.Client{}
	}
	return e, nil
}

// exportURL validates an OTLP/HTTP base URL and returns the traces URL.
func exportURL(endpoint string) (string, error) {
	if endpoint == "" {
		return "", errors.New("traceotlp: empty OTLP endpoint")
	}
	u, err := url.Parse(endpoint)
	if err != nil {
		return "", fmt.Errorf("traceotlp: OTLP endpoint %q: %w", endpoint, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("traceotlp: OTLP endpoint %q must be an http:// or https:// URL with a host", endpoint)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("traceotlp: OTLP endpoint %q must not have a query or fragment", endpoint)
	}
	p := strings.TrimRight(u.Path, "/")
	if !strings.HasSuffix(p, "/v1/traces") {
		p += "/v1/traces"
	}
	u.Path = p
	return u.String(), nil
}

// Stats returns the counters.
func (e *Exporter) Stats() ExportStats {
	s := &e.stats
	return ExportStats{
		Rounds: s.rounds.Load(), RoundErrors: s.roundErrors.Load(),
		ExportedTraces: s.traces.Load(), ExportedSpans: s.spans.Load(),
		Requests: s.requests.Load(), Retries: s.retries.Load(), FailedRequests: s.failed.Load(),
		DroppedTraces: s.droppedTraces.Load(), DroppedSpans: s.droppedSpans.Load(), RejectedSpans: s.rejected.Load(),
		AssembleErrors: s.assembleErrors.Load(), SkippedRows: s.skipped.Load(), SeenEvictions: s.evictions.Load(),
		Watermark: s.watermark.Load(), BytesSent: s.bytes.Load(), LastRoundMillis: s.lastRoundMillis.Load(),
	}
}

// Run exports a round every Interval until ctx ends, then returns nil. A
// round that stopped at MaxTracesPerRound is followed at once by the next.
// A failed round is logged and counted; the next one tries again.
func (e *Exporter) Run(ctx context.Context) error {
	t := time.NewTicker(e.opt.Interval)
	defer t.Stop()
	for {
		more, err := e.runOnce(ctx)
		if err != nil && ctx.Err() == nil {
			e.log.Warn("otlp export round failed", "err", err)
		}
		if more && err == nil && ctx.Err() == nil {
			continue
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// RunOnce runs one export round: it assembles the traces of the rows past
// the watermark that are old enough and sends them.
func (e *Exporter) RunOnce(ctx context.Context) error {
	_, err := e.runOnce(ctx)
	return err
}

func (e *Exporter) runOnce(ctx context.Context) (more bool, err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	began := time.Now()
	e.stats.rounds.Add(1)
	more, err = e.round(ctx)
	if err != nil {
		e.stats.roundErrors.Add(1)
	}
	e.stats.lastRoundMillis.Store(uint64(time.Since(began).Milliseconds()))
	return more, err
}

type candidate struct {
	id  uint64
	end time.Time
}

// batchItem is one trace ready to send.
type batchItem struct {
	td    ptrace.Traces
	spans int
	size  int
}

// round reports more when it stopped at a bound with rows left to handle.
func (e *Exporter) round(ctx context.Context) (more bool, err error) {
	now := e.now()
	cutoff := now.Add(-e.opt.Delay)
	if !e.started {
		if err := e.initWatermark(ctx, cutoff); err != nil {
			return false, err
		}
		e.started = true
	}
	scan := e.opt.MaxTracesPerRound * 4
	res, err := e.st.Query(ctx, fmt.Sprintf(
		"SELECT _id, time, end_time FROM l7_flow_log WHERE _id > %d ORDER BY _id LIMIT %d", e.watermark, scan))
	if err != nil {
		return false, fmt.Errorf("traceotlp: scan rows: %w", err)
	}
	cands, err := parseCandidates(res)
	if err != nil {
		return false, err
	}
	// A full scan page, all handled, means more rows may be waiting.
	more = len(cands) == scan
	var items []batchItem
	traces := 0
	for _, c := range cands {
		if traces >= e.opt.MaxTracesPerRound {
			more = true
			break
		}
		if e.seen.has(c.id) {
			e.stats.skipped.Add(1)
			e.advance(c.id)
			continue
		}
		if c.end.After(cutoff) {
			// Not old enough: wait for it, unless it has waited Delay already
			// (a clock far ahead must not stall the exporter).
			if e.blockID != c.id {
				e.blockID, e.blockSince = c.id, now
			}
			if now.Sub(e.blockSince) < e.opt.Delay {
				more = false
				break
			}
		}
		item, ok, err := e.traceAround(ctx, c.id)
		if err != nil {
			return false, err
		}
		e.advance(c.id)
		if ok {
			items = append(items, item)
			traces++
		}
	}
	return more, e.send(ctx, items)
}

func (e *Exporter) advance(id uint64) {
	if id > e.watermark {
		e.watermark = id
		e.stats.watermark.Store(id)
	}
}

// initWatermark starts after the rows stored before cutoff-Backfill.
func (e *Exporter) initWatermark(ctx context.Context, cutoff time.Time) error {
	if e.opt.Backfill < 0 {
		return nil
	}
	from := cutoff.Add(-e.opt.Backfill)
	res, err := e.st.Query(ctx, "SELECT max(_id) FROM l7_flow_log WHERE time < "+timeLit(from))
	if err != nil {
		return fmt.Errorf("traceotlp: initial watermark: %w", err)
	}
	if len(res.Rows) == 1 && len(res.Rows[0]) == 1 {
		id, ok := store.ToUint64(res.Rows[0][0])
		if !ok {
			return fmt.Errorf("traceotlp: initial watermark: unexpected value %v (%T)", res.Rows[0][0], res.Rows[0][0])
		}
		e.advance(id)
	}
	return nil
}

// traceAround assembles, converts and marks the trace of row id. ok is false
// when there is nothing new to send.
func (e *Exporter) traceAround(ctx context.Context, id uint64) (batchItem, bool, error) {
	tr, err := trace.Assemble(ctx, e.st, id, e.opt.TraceOptions)
	if err != nil {
		if ctx.Err() != nil {
			return batchItem{}, false, fmt.Errorf("traceotlp: %w", ctx.Err())
		}
		// A row removed by retention, or a lookup error: skip this row only.
		e.stats.assembleErrors.Add(1)
		e.log.Warn("otlp export: assemble failed", "_id", id, "err", err)
		return batchItem{}, false, nil
	}
	tid := TraceIDFor(tr)
	// Spans exported in an earlier trace are not sent again.
	kept := tr.Spans[:0:0]
	for _, s := range tr.Spans {
		if !e.seen.has(s.ID) {
			kept = append(kept, s)
		}
	}
	for _, s := range kept {
		if e.seen.add(s.ID) {
			e.stats.evictions.Add(1)
		}
	}
	if len(kept) == 0 {
		return batchItem{}, false, nil
	}
	sub := *tr
	sub.Spans = kept
	td := Convert(&sub, tid)
	var m ptrace.ProtoMarshaler
	return batchItem{td: td, spans: len(kept), size: m.TracesSize(td)}, true, nil
}

// send batches items into requests of at most MaxRequestBytes.
func (e *Exporter) send(ctx context.Context, items []batchItem) error {
	var batch []batchItem
	size := 0
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		err := e.post(ctx, batch)
		batch, size = batch[:0], 0
		return err
	}
	for _, it := range items {
		if len(batch) > 0 && size+it.size > e.opt.MaxRequestBytes {
			if err := flush(); err != nil {
				return err
			}
		}
		batch = append(batch, it)
		size += it.size
	}
	return flush()
}

// post sends one request with bounded retries; a request that still fails is
// dropped and counted. Only a cancelled ctx is returned as an error.
func (e *Exporter) post(ctx context.Context, batch []batchItem) error {
	td := ptrace.NewTraces()
	spans := 0
	for _, it := range batch {
		it.td.ResourceSpans().MoveAndAppendTo(td.ResourceSpans())
		spans += it.spans
	}
	raw, err := ptraceotlp.NewExportRequestFromTraces(td).MarshalProto()
	if err != nil {
		e.drop(len(batch), spans, fmt.Errorf("marshal: %w", err))
		return nil
	}
	var zbuf bytes.Buffer
	zw := gzip.NewWriter(&zbuf)
	if _, err := zw.Write(raw); err != nil {
		e.drop(len(batch), spans, fmt.Errorf("gzip: %w", err))
		return nil
	}
	if err := zw.Close(); err != nil {
		e.drop(len(batch), spans, fmt.Errorf("gzip: %w", err))
		return nil
	}
	body := zbuf.Bytes()
	backoff := e.opt.RetryBackoff
	var lastErr error
	for attempt := 1; attempt <= MaxAttempts; attempt++ {
		if attempt > 1 {
			e.stats.retries.Add(1)
			if err := e.sleep(ctx, backoff); err != nil {
				e.drop(len(batch), spans, lastErr)
				return fmt.Errorf("traceotlp: %w", err)
			}
			backoff *= 2
		}
		retry, err := e.attempt(ctx, body)
		if err == nil {
			e.stats.requests.Add(1)
			e.stats.traces.Add(uint64(len(batch)))
			e.stats.spans.Add(uint64(spans))
			e.stats.bytes.Add(uint64(len(body)))
			return nil
		}
		lastErr = err
		if ctx.Err() != nil {
			e.drop(len(batch), spans, err)
			return fmt.Errorf("traceotlp: %w", ctx.Err())
		}
		if !retry {
			break
		}
	}
	e.drop(len(batch), spans, lastErr)
	return nil
}

func (e *Exporter) drop(traces, spans int, err error) {
	e.stats.failed.Add(1)
	e.stats.droppedTraces.Add(uint64(traces))
	e.stats.droppedSpans.Add(uint64(spans))
	e.log.Warn("otlp export: request dropped", "traces", traces, "spans", spans, "err", err)
}

// attempt POSTs body once. retry says whether a failure may succeed later.
func (e *Exporter) attempt(ctx context.Context, body []byte) (retry bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, e.opt.RequestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.url, bytes.NewReader(body))
	if err != nil {
		return false, fmt.Errorf("traceotlp: request: %w", err)
	}
	for k, v := range e.opt.Headers {
		req.Header.Set(k, v)
	}
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("Content-Encoding", "gzip")
	resp, err := e.client.Do(req)
	if err != nil {
		return true, fmt.Errorf("traceotlp: POST %s: %w", e.url, err)
	}
	defer resp.Body.Close()
	respBody, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		retry = resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusRequestTimeout ||
			resp.StatusCode >= 500
		return retry, fmt.Errorf("traceotlp: POST %s: %s: %s", e.url, resp.Status, truncate(strings.TrimSpace(string(respBody)), 200))
	}
	e.countRejected(resp.Header.Get("Content-Type"), respBody)
	return false, nil
}

// countRejected reads a partial-success answer, when there is one.
func (e *Exporter) countRejected(contentType string, body []byte) {
	if len(body) == 0 {
		return
	}
	er := ptraceotlp.NewExportResponse()
	var err error
	if strings.HasPrefix(contentType, "application/json") {
		err = er.UnmarshalJSON(body)
	} else {
		err = er.UnmarshalProto(body)
	}
	if err != nil {
		return
	}
	if n := er.PartialSuccess().RejectedSpans(); n > 0 {
		e.stats.rejected.Add(uint64(n))
		e.log.Warn("otlp export: spans rejected", "rejected", n, "message", er.PartialSuccess().ErrorMessage())
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// idRing is a set of row ids with FIFO eviction at a fixed capacity.
type idRing struct {
	set  map[uint64]struct{}
	ring []uint64
	next int
	full bool
}

func newIDRing(capacity int) *idRing {
	return &idRing{set: make(map[uint64]struct{}, min(capacity, 1<<16)), ring: make([]uint64, capacity)}
}

func (r *idRing) has(id uint64) bool {
	_, ok := r.set[id]
	return ok
}

// add inserts id and reports whether an older id was evicted.
func (r *idRing) add(id uint64) (evicted bool) {
	if r.has(id) {
		return false
	}
	if r.full {
		delete(r.set, r.ring[r.next])
		evicted = true
	}
	r.ring[r.next] = id
	r.set[id] = struct{}{}
	r.next++
	if r.next == len(r.ring) {
		r.next, r.full = 0, true
	}
	return evicted
}

// timeLit is a timestamp literal both DuckDB and ClickHouse compare against
// a timestamp column.
func timeLit(t time.Time) string {
	return "'" + t.UTC().Format("2006-01-02 15:04:05.000000") + "'"
}

func parseCandidates(res *store.Result) ([]candidate, error) {
	if len(res.Columns) != 3 {
		return nil, fmt.Errorf("traceotlp: scan: %d columns, want 3", len(res.Columns))
	}
	out := make([]candidate, 0, len(res.Rows))
	for i, vals := range res.Rows {
		if len(vals) != 3 {
			return nil, fmt.Errorf("traceotlp: scan row %d: %d values", i, len(vals))
		}
		id, ok := store.ToUint64(vals[0])
		if !ok || id == 0 {
			return nil, fmt.Errorf("traceotlp: scan row %d: bad _id %v (%T)", i, vals[0], vals[0])
		}
		tm, err1 := store.ToTime(vals[1])
		end, err2 := store.ToTime(vals[2])
		if err := errors.Join(err1, err2); err != nil {
			return nil, fmt.Errorf("traceotlp: scan row %d: %w", i, err)
		}
		if tm.After(end) {
			end = tm
		}
		out = append(out, candidate{id: id, end: end})
	}
	return out, nil
}
