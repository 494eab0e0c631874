package demo

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sightline-io/sightline/server/store"
	"github.com/sightline-io/sightline/server/trace"
)

// Hop is one kind of edge of the reference topology.
type Hop string

// The hops of one request, in path order.
const (
	HopDriverNginx Hop = "driver→nginx"
	HopNginxGoAPI  Hop = "nginx→goapi"
	HopDNS         Hop = "goapi→dns"
	HopRedis       Hop = "goapi→redis"
	HopPostgres    Hop = "goapi→postgres"
	HopPython      Hop = "goapi→python"
	HopPyRedis     Hop = "python→redis"
	HopProduce     Hop = "goapi→kafka produce"
	HopFetch       Hop = "kafka→consumer fetch"
	HopOTelSvc     Hop = "goapi→otelsvc"
	HopOTelApp     Hop = "otelsvc app spans"
	hopOther       Hop = "other"
)

// Hops lists the hops in report order.
var Hops = []Hop{HopDriverNginx, HopNginxGoAPI, HopDNS, HopRedis, HopPostgres, HopPython, HopPyRedis,
	HopProduce, HopFetch, HopOTelSvc, HopOTelApp}

// PerRequest is how many instances of each hop one request makes: goapi
// sends Redis a SET and a GET; every other hop happens once.
func PerRequest(h Hop) int {
	if h == HopRedis {
		return 2
	}
	return 1
}

// HopStats counts one hop over all requests. Captured: instances whose
// spans (both ends; for otelsvc the SERVER and internal app spans) are in the
// store, -1 when the store cannot tell them apart per request (Produce and
// Fetch carry no request marker). InTrace: instances whose spans are all in
// the request's trace. Linked: InTrace with the right parents. False: spans
// of this hop that joined a trace they do not belong to.
type HopStats struct {
	Hop      Hop `json:"hop"`
	Expected int `json:"expected"`
	Captured int `json:"captured"`
	InTrace  int `json:"in_trace"`
	Linked   int `json:"linked"`
	False    int `json:"false"`
	// Local: instances linked with the right parents in the trace assembled
	// from the calling service's own server span of the request (nginx's,
	// goapi's, Python's, otelsvc's) rather than from the driver's: each
	// hop's rule measured apart from breaks upstream of it.
	Local int `json:"local"`
}

// Report is the checker's result.
type Report struct {
	Requests    int        `json:"requests"`     // driven
	Succeeded   int        `json:"succeeded"`    // HTTP 200 with an offset
	DriverSpans int        `json:"driver_spans"` // requests whose driver c-p span was found
	Traces      int        `json:"traces"`       // traces assembled
	Hops        []HopStats `json:"hops"`
	// Totals over Hops.
	Expected int `json:"expected"`
	Linked   int `json:"linked"`
	False    int `json:"false"`
	Local    int `json:"local"`
	// FalseLinks describes up to maxExamples false links.
	FalseLinks []string `json:"false_links,omitempty"`
	// FalseOrders are up to maxExamples orders whose trace has a false link.
	FalseOrders []int `json:"false_orders,omitempty"`
	// Missing describes up to maxExamples hops expected but not linked.
	Missing []string `json:"missing,omitempty"`
	// ExampleSpan is the driver span of the first request (0 when none):
	// where to start exploring.
	ExampleSpan uint64        `json:"example_span"`
	AssemblyP50 time.Duration `json:"assembly_p50"`
	AssemblyP99 time.Duration `json:"assembly_p99"`
}

const maxExamples = 10

// Ratio is hops linked / hops expected.
func (r Report) Ratio() float64 {
	if r.Expected == 0 {
		return 0
	}
	return float64(r.Linked) / float64(r.Expected)
}

// Stats returns the counts of hop h.
func (r Report) Stats(h Hop) HopStats {
	for _, s := range r.Hops {
		if s.Hop == h {
			return s
		}
	}
	return HopStats{Hop: h}
}

// Write prints the report as a table.
func (r Report) Write(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "hop\texpected\tcaptured\tin trace\tlinked\tfalse\tlocal\t")
	for _, s := range r.Hops {
		captured := "-"
		if s.Captured >= 0 {
			captured = strconv.Itoa(s.Captured)
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%d\t%d\t%d\t\n", s.Hop, s.Expected, captured, s.InTrace, s.Linked, s.False, s.Local)
	}
	fmt.Fprintf(tw, "total\t%d\t\t\t%d\t%d\t%d\t\n", r.Expected, r.Linked, r.False, r.Local)
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "hops linked / expected: %d/%d = %.3f; false links: %d; linked from the caller's own server span (local): %d\n"+
		"requests: %d driven, %d succeeded, %d driver spans found, %d traces assembled (p50 %v, p99 %v)\n",
		r.Linked, r.Expected, r.Ratio(), r.False, r.Local, r.Requests, r.Succeeded, r.DriverSpans, r.Traces,
		r.AssemblyP50.Round(time.Millisecond), r.AssemblyP99.Round(time.Millisecond))
	return err
}

// span is the part of a row the checker reads; trace.Span for trace members.
type span = trace.Span

// markerRes find the order number a span carries: /order/N (HTTP through
// nginx to goapi), oN.demo.test (DNS), order:N (goapi's Redis keys and the
// otelsvc internal span), order=N (the SQL comment), /work/N (Python),
// py:N (Python's Redis key), /svc/N (otelsvc, eBPF and OTel).
var markerRes = []*regexp.Regexp{
	regexp.MustCompile(`/order/(\d+)`),
	regexp.MustCompile(`^o(\d+)\.demo\.test\.?$`),
	regexp.MustCompile(`order[:=](\d+)`),
	regexp.MustCompile(`/work/(\d+)`),
	regexp.MustCompile(`py:(\d+)`),
	regexp.MustCompile(`/svc/(\d+)`),
	regexp.MustCompile(`/price/(\d+)`),
}

// marker returns the order number s carries, if any.
func marker(s *span) (int, bool) {
	for _, text := range []string{s.RequestResource, s.RequestType, s.Endpoint} {
		for _, re := range markerRes {
			if m := re.FindStringSubmatch(text); m != nil {
				if n, err := strconv.Atoi(m[1]); err == nil {
					return n, true
				}
			}
		}
	}
	return 0, false
}

// side of a span within its hop.
type side uint8

const (
	sideNone side = iota
	sideClient
	sideServer
	sideNet
	sideApp
)

func sideOf(obs string) side {
	switch obs {
	case "c-p":
		return sideClient
	case "s-p":
		return sideServer
	case "s-app", "app", "c-app":
		return sideApp
	case "":
		return sideNone
	}
	return sideNet
}

// classify names the hop of s.
func classify(s *span, tr *Truth) Hop {
	if s.SignalSource == 4 { // OTel
		if s.ProcessKName0 == "otelsvc" || s.ProcessKName1 == "otelsvc" {
			return HopOTelApp
		}
		return hopOther
	}
	p := tr.Ports
	switch int(s.ServerPort) {
	case p.Nginx:
		return HopDriverNginx
	case p.GoAPI:
		return HopNginxGoAPI
	case p.DNS:
		return HopDNS
	case p.Redis:
		switch {
		case strings.Contains(s.RequestResource, "py:"):
			return HopPyRedis
		case strings.Contains(s.RequestResource, "order:"):
			return HopRedis
		}
	case p.Postgres:
		return HopPostgres
	case p.Python:
		return HopPython
	case p.Kafka:
		switch s.RequestType {
		case "Produce":
			return HopProduce
		case "Fetch":
			return HopFetch
		}
	case p.OTelSvc:
		return HopOTelSvc
	}
	return hopOther
}

// batch reports spans that legitimately serve several requests: a Kafka
// fetch (or any other Kafka call that is not a Produce) and an OTLP export.
func batch(s *span, h Hop, tr *Truth) bool {
	return h == HopFetch || (int(s.ServerPort) == tr.Ports.Kafka && h != HopProduce) ||
		strings.HasPrefix(s.RequestResource, "/v1/traces")
}

// instanceKey tells apart the instances of one hop in one request: the
// Redis command (SET, GET); one instance otherwise.
func instanceKey(s *span, h Hop) string {
	if h == HopRedis {
		return s.RequestType
	}
	return ""
}

// Check assembles the trace of every request of tr from its driver span and
// counts its hops against the topology's ground truth.
func Check(ctx context.Context, st store.Store, tr Truth) (Report, error) {
	rep := Report{Requests: len(tr.Requests)}
	for _, r := range tr.Requests {
		if r.Err == "" && r.Status == http.StatusOK {
			rep.Succeeded++
		}
	}
	stats := map[Hop]*HopStats{}
	for _, h := range Hops {
		stats[h] = &HopStats{Hop: h, Expected: PerRequest(h) * len(tr.Requests)}
	}
	stats[hopOther] = &HopStats{Hop: hopOther}
	if len(tr.Requests) == 0 {
		return finish(rep, stats), nil
	}
	lo, hi := tr.Requests[0].Start, tr.Requests[0].End
	for _, r := range tr.Requests {
		lo, hi = minTime(lo, r.Start), maxTime(hi, r.End)
	}
	rows, err := topologyRows(ctx, st, tr, lo.Add(-time.Minute), hi.Add(time.Minute))
	if err != nil {
		return rep, err
	}
	countCaptured(rows, &tr, stats)

	driver := map[int]uint64{}
	for i := range rows {
		s := &rows[i]
		if s.ObservationPoint == "c-p" && int(s.ServerPort) == tr.Ports.Nginx && int(s.ProcessID0) == tr.DriverPID {
			if n, ok := marker(s); ok {
				if _, dup := driver[n]; !dup {
					driver[n] = s.ID
				}
			}
		}
	}
	seeds := localSeeds(rows, &tr)
	owner := map[uint64]int{} // non-batch span → the request whose trace has it
	var took []time.Duration
	for _, r := range tr.Requests {
		id, ok := driver[r.N]
		if !ok {
			addExample(&rep.Missing, fmt.Sprintf("order %d: no driver span", r.N))
			continue
		}
		rep.DriverSpans++
		if rep.ExampleSpan == 0 {
			rep.ExampleSpan = id
		}
		t0 := time.Now()
		t, err := trace.Assemble(ctx, st, id, trace.Options{})
		if err != nil {
			return rep, fmt.Errorf("demo: assemble order %d: %w", r.N, err)
		}
		took = append(took, time.Since(t0))
		rep.Traces++
		before := falseSum(stats)
		checkTrace(&rep, stats, t, r.N, &tr, owner, nil)
		if err := checkLocal(ctx, st, &rep, stats, seeds[r.N], r.N, &tr); err != nil {
			return rep, err
		}
		if falseSum(stats) > before && len(rep.FalseOrders) < maxExamples {
			rep.FalseOrders = append(rep.FalseOrders, r.N)
		}
	}
	slices.Sort(took)
	if len(took) > 0 {
		rep.AssemblyP50 = took[len(took)/2]
		rep.AssemblyP99 = took[min(len(took)-1, len(took)*99/100)]
	}
	return finish(rep, stats), nil
}

func falseSum(stats map[Hop]*HopStats) int {
	n := 0
	for _, s := range stats {
		n += s.False
	}
	return n
}

func finish(rep Report, stats map[Hop]*HopStats) Report {
	rep.Hops = rep.Hops[:0]
	for _, h := range Hops {
		s := *stats[h]
		rep.Hops = append(rep.Hops, s)
		rep.Expected += s.Expected
		rep.Linked += s.Linked
		rep.False += s.False
		rep.Local += s.Local
	}
	if o := stats[hopOther]; o.False > 0 {
		rep.Hops = append(rep.Hops, *o)
		rep.False += o.False
	}
	return rep
}

func addExample(list *[]string, s string) {
	if len(*list) < maxExamples {
		*list = append(*list, s)
	}
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// checkTrace counts the hops of request n in t.
// With local set, t was assembled from a server span downstream of the
// driver: only the hops in local are counted, into Local, and false links
// are left to the driver's trace.
func checkTrace(rep *Report, stats map[Hop]*HopStats, t *trace.Trace, n int, tr *Truth, owner map[uint64]int, local map[Hop]bool) {
	byID := make(map[uint64]*span, len(t.Spans))
	for i := range t.Spans {
		byID[t.Spans[i].ID] = &t.Spans[i]
	}
	hopOf := make(map[uint64]Hop, len(t.Spans))
	// Spans of this request per hop and instance.
	type inst struct{ client, server, app []*span }
	mine := map[Hop]map[string]*inst{}
	get := func(h Hop, k string) *inst {
		if mine[h] == nil {
			mine[h] = map[string]*inst{}
		}
		if mine[h][k] == nil {
			mine[h][k] = &inst{}
		}
		return mine[h][k]
	}
	for i := range t.Spans {
		s := &t.Spans[i]
		h := classify(s, tr)
		hopOf[s.ID] = h
		m, has := marker(s)
		isBatch := batch(s, h, tr)
		if has && m != n && !isBatch {
			if local != nil {
				continue
			}
			stats[h].False++
			addExample(&rep.FalseLinks, fmt.Sprintf("order %d: span %d (%s %s %q) belongs to order %d", n, s.ID, h, s.ObservationPoint, s.RequestResource, m))
			continue
		}
		if !isBatch && local == nil {
			if prev, seen := owner[s.ID]; seen && prev != n {
				stats[h].False++
				addExample(&rep.FalseLinks, fmt.Sprintf("order %d: span %d (%s %s %q) is also in the trace of order %d", n, s.ID, h, s.ObservationPoint, s.RequestResource, prev))
				continue
			}
			owner[s.ID] = n
		}
		if h == hopOther {
			continue
		}
		in := get(h, instanceKey(s, h))
		switch sideOf(s.ObservationPoint) {
		case sideClient:
			in.client = append(in.client, s)
		case sideServer:
			in.server = append(in.server, s)
		case sideApp:
			in.app = append(in.app, s)
		}
	}
	// parent is the nearest ancestor that is not a network span.
	parent := func(s *span) *span {
		for p := byID[s.ParentID]; p != nil; p = byID[p.ParentID] {
			if sideOf(p.ObservationPoint) != sideNet {
				return p
			}
		}
		return nil
	}
	isHop := func(s *span, h Hop, sd side) bool {
		return s != nil && hopOf[s.ID] == h && sideOf(s.ObservationPoint) == sd
	}
	hasAncestor := func(s *span, ok func(*span) bool) bool {
		for p := byID[s.ParentID]; p != nil; p = byID[p.ParentID] {
			if ok(p) {
				return true
			}
		}
		return false
	}
	goapiServer := func(p *span) bool { return isHop(p, HopNginxGoAPI, sideServer) }
	// clientOK says whether a client span of hop h has the right parent.
	clientOK := func(h Hop, c *span) bool {
		switch h {
		case HopDriverNginx:
			return int(c.ProcessID0) == tr.DriverPID
		case HopNginxGoAPI:
			return isHop(parent(c), HopDriverNginx, sideServer)
		case HopPyRedis:
			return isHop(parent(c), HopPython, sideServer)
		case HopFetch:
			return hasAncestor(c, func(p *span) bool { return hopOf[p.ID] == HopProduce })
		default:
			return hasAncestor(c, goapiServer)
		}
	}
	anyOK := func(list []*span, ok func(*span) bool) bool {
		return slices.ContainsFunc(list, ok)
	}
	for _, h := range Hops {
		st := stats[h]
		keys := []string{""}
		if h == HopRedis {
			keys = []string{"SET", "GET"}
		}
		for _, k := range keys {
			in := mine[h][k]
			present, linked := false, false
			switch {
			case in == nil:
			case h == HopOTelApp:
				var server, internal []*span
				for _, s := range in.app {
					if s.ObservationPoint == "s-app" {
						server = append(server, s)
					} else {
						internal = append(internal, s)
					}
				}
				present = len(server) > 0 && len(internal) > 0
				linked = present && anyOK(server, func(s *span) bool {
					return hasAncestor(s, func(p *span) bool { return isHop(p, HopOTelSvc, sideServer) })
				}) && anyOK(internal, func(s *span) bool { return byID[s.ParentID] != nil && byID[s.ParentID].ObservationPoint == "s-app" })
			case h == HopFetch:
				// The consumer's fetch; the broker's side of it may be shared.
				present = len(in.client) > 0
				linked = anyOK(in.client, func(c *span) bool { return clientOK(h, c) })
			default:
				present = len(in.client) > 0 && len(in.server) > 0
				linked = present && anyOK(in.client, func(c *span) bool { return clientOK(h, c) }) &&
					anyOK(in.server, func(s *span) bool { return isHop(parent(s), h, sideClient) })
			}
			if local != nil {
				if local[h] && linked {
					st.Local++
				}
				continue
			}
			if present {
				st.InTrace++
			}
			if linked {
				st.Linked++
			} else {
				addExample(&rep.Missing, fmt.Sprintf("order %d: %s %s not linked (in trace: %v)", n, h, k, present))
			}
		}
	}
}

// Where each hop is measured apart (Local): the server span of the service
// that makes the call.
var localFrom = map[Hop]Hop{
	HopDriverNginx: HopDriverNginx, // the driver's own trace
	HopNginxGoAPI:  HopDriverNginx, // nginx's s-p
	HopDNS:         HopNginxGoAPI,  // goapi's s-p
	HopRedis:       HopNginxGoAPI,
	HopPostgres:    HopNginxGoAPI,
	HopPython:      HopNginxGoAPI,
	HopProduce:     HopNginxGoAPI,
	HopFetch:       HopNginxGoAPI,
	HopOTelSvc:     HopNginxGoAPI,
	HopPyRedis:     HopPython,  // Python's s-p
	HopOTelApp:     HopOTelSvc, // otelsvc's s-p
}

// localSeeds finds, per order, the server span (s-p) of each hop that
// starts a local assembly.
func localSeeds(rows []span, tr *Truth) map[int]map[Hop]uint64 {
	out := map[int]map[Hop]uint64{}
	for i := range rows {
		s := &rows[i]
		h := classify(s, tr)
		if s.ObservationPoint != "s-p" || (h != HopDriverNginx && h != HopNginxGoAPI && h != HopPython && h != HopOTelSvc) {
			continue
		}
		n, ok := marker(s)
		if !ok {
			continue
		}
		if out[n] == nil {
			out[n] = map[Hop]uint64{}
		}
		if _, dup := out[n][h]; !dup {
			out[n][h] = s.ID
		}
	}
	return out
}

// checkLocal assembles order n's trace from each seed and counts Local.
func checkLocal(ctx context.Context, st store.Store, rep *Report, stats map[Hop]*HopStats, seeds map[Hop]uint64, n int, tr *Truth) error {
	for _, from := range []Hop{HopDriverNginx, HopNginxGoAPI, HopPython, HopOTelSvc} {
		id, ok := seeds[from]
		if !ok {
			continue
		}
		hops := map[Hop]bool{}
		for h, f := range localFrom {
			if f == from {
				hops[h] = true
			}
		}
		t, err := trace.Assemble(ctx, st, id, trace.Options{})
		if err != nil {
			return fmt.Errorf("demo: assemble order %d from %s: %w", n, from, err)
		}
		checkTrace(rep, stats, t, n, tr, nil, hops)
	}
	return nil
}

// countCaptured counts, per hop, the instances whose spans the store has.
func countCaptured(rows []span, tr *Truth, stats map[Hop]*HopStats) {
	want := map[int]bool{}
	for _, r := range tr.Requests {
		want[r.N] = true
	}
	type key struct {
		h Hop
		n int
		k string
	}
	sides := map[key]uint8{} // bit 0 client, bit 1 server / s-app, bit 2 app
	var produce int
	for i := range rows {
		s := &rows[i]
		h := classify(s, tr)
		if h == HopProduce && s.ObservationPoint == "c-p" && int(s.ProcessID0) == tr.PIDs.GoAPI {
			produce++
		}
		n, ok := marker(s)
		if !ok || !want[n] || h == hopOther {
			continue
		}
		k := key{h, n, instanceKey(s, h)}
		switch s.ObservationPoint {
		case "c-p":
			sides[k] |= 1
		case "s-p", "s-app":
			sides[k] |= 2
		case "app":
			sides[k] |= 4
		}
	}
	for _, h := range Hops {
		stats[h].Captured = 0
	}
	for k, v := range sides {
		full := v&3 == 3
		if k.h == HopOTelApp {
			full = v&6 == 6
		}
		if full {
			stats[k.h].Captured++
		}
	}
	stats[HopProduce].Captured = min(produce, stats[HopProduce].Expected)
	stats[HopFetch].Captured = -1
}

// rowColumns are the columns topologyRows reads.
var rowColumns = []string{"_id", "observation_point", "signal_source", "request_type", "request_resource",
	"endpoint", "server_port", "process_id_0", "process_id_1", "process_kname_0", "process_kname_1"}

// rowPage bounds one read of topologyRows (the store caps result rows).
const rowPage = 5000

// topologyRows reads the rows of the topology's ports and otelsvc's app
// spans in [lo, hi], a page at a time.
func topologyRows(ctx context.Context, st store.Store, tr Truth, lo, hi time.Time) ([]span, error) {
	p := tr.Ports
	var ports []string
	for _, port := range []int{p.Nginx, p.GoAPI, p.DNS, p.Redis, p.Postgres, p.Python, p.Kafka, p.OTelSvc} {
		ports = append(ports, strconv.Itoa(port))
	}
	var out []span
	var last uint64
	for {
		q := fmt.Sprintf(`SELECT %s FROM l7_flow_log WHERE _id > %d AND time BETWEEN '%s' AND '%s'
			AND (server_port IN (%s) OR (signal_source = 4 AND (process_kname_0 = 'otelsvc' OR process_kname_1 = 'otelsvc')))
			ORDER BY _id LIMIT %d`, strings.Join(rowColumns, ", "), last,
			lo.UTC().Format("2006-01-02 15:04:05.000000"), hi.UTC().Format("2006-01-02 15:04:05.000000"),
			strings.Join(ports, ", "), rowPage)
		res, err := st.Query(ctx, q)
		if err != nil {
			return nil, fmt.Errorf("demo: read rows: %w", err)
		}
		page, err := parseSpans(res)
		if err != nil {
			return nil, err
		}
		out = append(out, page...)
		if len(page) < rowPage {
			return out, nil
		}
		last = page[len(page)-1].ID
	}
}

func parseSpans(res *store.Result) ([]span, error) {
	idx := store.ColumnIndex(res)
	for _, c := range rowColumns {
		if _, ok := idx[c]; !ok {
			return nil, fmt.Errorf("demo: result lacks column %s", c)
		}
	}
	out := make([]span, 0, len(res.Rows))
	for _, v := range res.Rows {
		if len(v) != len(res.Columns) {
			return nil, fmt.Errorf("demo: result row of %d values for %d columns", len(v), len(res.Columns))
		}
		p := store.Row{Vals: v, Idx: idx}
		u, s := p.U64, p.Str
		out = append(out, span{ID: u("_id"), ObservationPoint: s("observation_point"), SignalSource: uint8(u("signal_source")),
			RequestType: s("request_type"), RequestResource: s("request_resource"), Endpoint: s("endpoint"),
			ServerPort: uint16(u("server_port")), ProcessID0: uint32(u("process_id_0")), ProcessID1: uint32(u("process_id_1")),
			ProcessKName0: s("process_kname_0"), ProcessKName1: s("process_kname_1")})
		if p.Err != nil {
			return nil, fmt.Errorf("demo: %w", p.Err)
		}
	}
	return out, nil
}

// WaitSettled waits until the topology's rows in the store stop changing
// for quiet (the agent's and the OTel exporter's batches have landed), or
// until limit; it returns the row count seen last.
func WaitSettled(ctx context.Context, st store.Store, tr Truth, quiet, limit time.Duration) (int, error) {
	if len(tr.Requests) == 0 {
		return 0, nil
	}
	lo, hi := tr.Requests[0].Start, tr.Requests[0].End
	for _, r := range tr.Requests {
		lo, hi = minTime(lo, r.Start), maxTime(hi, r.End)
	}
	p := tr.Ports
	q := fmt.Sprintf(`SELECT count(*) AS n FROM l7_flow_log WHERE time BETWEEN '%s' AND '%s'
		AND (server_port IN (%d, %d, %d, %d, %d, %d, %d, %d) OR signal_source = 4)`,
		lo.Add(-time.Minute).UTC().Format("2006-01-02 15:04:05.000000"), hi.Add(time.Minute).UTC().Format("2006-01-02 15:04:05.000000"),
		p.Nginx, p.GoAPI, p.DNS, p.Redis, p.Postgres, p.Python, p.Kafka, p.OTelSvc)
	deadline := time.Now().Add(limit)
	last, since := -1, time.Now()
	for {
		res, err := st.Query(ctx, q)
		if err != nil {
			return 0, fmt.Errorf("demo: count rows: %w", err)
		}
		n := 0
		if len(res.Rows) == 1 && len(res.Rows[0]) == 1 {
			c, _ := store.ToUint64(res.Rows[0][0])
			n = int(c)
		}
		if n != last {
			last, since = n, time.Now()
		}
		if n > 0 && time.Since(since) >= quiet || time.Now().After(deadline) {
			return last, nil
		}
		select {
		case <-ctx.Done():
			return last, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// Explain lists the store's rows of order n (those carrying its marker) and
// the trace assembled from its driver span: what to read when a hop is
// missing.
func Explain(ctx context.Context, st store.Store, tr Truth, n int) (string, error) {
	var b strings.Builder
	var lo, hi time.Time
	for _, r := range tr.Requests {
		if r.N == n {
			lo, hi = r.Start, r.End
		}
	}
	if lo.IsZero() {
		return "", fmt.Errorf("demo: no order %d in the truth", n)
	}
	cols := "_id, time, observation_point, l7_protocol_str, request_type, request_resource, server_port, process_id_0, process_id_1, " +
		"syscall_trace_id_request, syscall_trace_id_response, syscall_thread_0, syscall_thread_1, req_tcp_seq, resp_tcp_seq, start_time, end_time"
	res, err := st.Query(ctx, fmt.Sprintf(`SELECT %s FROM l7_flow_log WHERE time BETWEEN '%s' AND '%s' ORDER BY start_time LIMIT 10000`, cols,
		lo.Add(-time.Second).UTC().Format("2006-01-02 15:04:05.000000"), hi.Add(time.Second).UTC().Format("2006-01-02 15:04:05.000000")))
	if err != nil {
		return "", fmt.Errorf("demo: explain: %w", err)
	}
	fmt.Fprintf(&b, "rows of order %d: %s\n", n, cols)
	var driver uint64
	idx := store.ColumnIndex(res)
	for _, v := range res.Rows {
		p := store.Row{Vals: v, Idx: idx}
		s := span{RequestResource: p.Str("request_resource"), RequestType: p.Str("request_type")}
		if m, ok := marker(&s); !ok || m != n {
			continue
		}
		if p.Str("observation_point") == "c-p" && int(p.U64("server_port")) == tr.Ports.Nginx && int(p.U64("process_id_0")) == tr.DriverPID {
			driver = p.U64("_id")
		}
		fmt.Fprintln(&b, v...)
	}
	if driver == 0 {
		return b.String(), nil
	}
	t, err := trace.Assemble(ctx, st, driver, trace.Options{})
	if err != nil {
		return b.String(), fmt.Errorf("demo: explain: %w", err)
	}
	fmt.Fprintln(&b, "trace:")
	if err := t.WriteTree(&b); err != nil {
		return b.String(), err
	}
	return b.String(), nil
}
