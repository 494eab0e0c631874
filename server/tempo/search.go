package tempo

import (
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sightline-io/sightline/server/traceotlp"
	"github.com/sightline-io/sightline/server/tracesearch"
)

// SearchResponse is the body of /api/search (tempopb.SearchResponse as JSON).
type SearchResponse struct {
	Traces  []TraceSearchMetadata `json:"traces"`
	Metrics SearchMetrics         `json:"metrics"`
}

// TraceSearchMetadata is one search hit. uint64 fields are strings, as
// protobuf JSON writes them.
type TraceSearchMetadata struct {
	TraceID           string    `json:"traceID"`
	RootServiceName   string    `json:"rootServiceName"`
	RootTraceName     string    `json:"rootTraceName"`
	StartTimeUnixNano string    `json:"startTimeUnixNano"`
	DurationMs        uint32    `json:"durationMs"`
	SpanSet           *SpanSet  `json:"spanSet,omitempty"`
	SpanSets          []SpanSet `json:"spanSets,omitempty"`
}

// SpanSet is the matched spans of one trace.
type SpanSet struct {
	Spans   []SearchSpan `json:"spans"`
	Matched uint32       `json:"matched"`
}

// SearchSpan is one matched span.
type SearchSpan struct {
	SpanID            string     `json:"spanID"`
	Name              string     `json:"name"`
	StartTimeUnixNano string     `json:"startTimeUnixNano"`
	DurationNanos     string     `json:"durationNanos"`
	Attributes        []KeyValue `json:"attributes,omitempty"`
}

// KeyValue is an OTLP JSON attribute with a string value.
type KeyValue struct {
	Key   string      `json:"key"`
	Value StringValue `json:"value"`
}

// StringValue is an OTLP JSON AnyValue holding a string.
type StringValue struct {
	StringValue string `json:"stringValue"`
}

// SearchMetrics is tempopb.SearchMetrics.
type SearchMetrics struct {
	InspectedTraces uint32 `json:"inspectedTraces"`
	InspectedBytes  string `json:"inspectedBytes"`
	CompletedJobs   uint32 `json:"completedJobs"`
	TotalJobs       uint32 `json:"totalJobs"`
}

// searchParams reads /api/search parameters into a tracesearch.Query.
func searchParams(v url.Values) (tracesearch.Query, error) {
	var q tracesearch.Query
	for _, k := range []string{"q", "tags", "minDuration", "maxDuration", "limit", "start", "end", "spss"} {
		if len(v[k]) > 1 {
			return q, fmt.Errorf("parameter %s given %d times", k, len(v[k]))
		}
	}
	if s := v.Get("tags"); s != "" {
		if err := applyTags(s, &q); err != nil {
			return q, err
		}
	}
	if s := v.Get("q"); s != "" {
		if err := applyTraceQL(s, &q); err != nil {
			return q, err
		}
	}
	for _, p := range []struct {
		name string
		dst  *time.Duration
		min  bool
	}{{"minDuration", &q.MinDuration, true}, {"maxDuration", &q.MaxDuration, false}} {
		s := v.Get(p.name)
		if s == "" {
			continue
		}
		d, err := time.ParseDuration(s)
		if err != nil || d < 0 {
			return q, fmt.Errorf("%s: want a duration like 100ms, got %q", p.name, s)
		}
		if p.min {
			*p.dst = max(*p.dst, d)
		} else {
			*p.dst = minPositive(*p.dst, d)
		}
	}
	if s := v.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			return q, fmt.Errorf("limit must be a positive integer, got %q", s)
		}
		q.Limit = min(n, tracesearch.MaxLimit)
	}
	var err error
	if q.Start, err = unixParam(v, "start"); err != nil {
		return q, err
	}
	if q.End, err = unixParam(v, "end"); err != nil {
		return q, err
	}
	return q, nil
}

func unixParam(v url.Values, name string) (time.Time, error) {
	s := v.Get(name)
	if s == "" {
		return time.Time{}, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > 1e11 {
		return time.Time{}, fmt.Errorf("%s must be unix seconds, got %q", name, s)
	}
	return time.Unix(n, 0).UTC(), nil
}

func (h *handler) search(w http.ResponseWriter, r *http.Request) {
	q, err := searchParams(r.URL.Query())
	if err != nil {
		h.fail(w, http.StatusBadRequest, err.Error())
		return
	}
	res, err := tracesearch.Search(r.Context(), h.st, q)
	if err != nil {
		status, msg := tracesearch.ErrorStatus(err)
		if status >= 500 {
			h.log.Error("tempo: search", "error", err)
		}
		h.fail(w, status, msg)
		return
	}
	out := SearchResponse{Traces: make([]TraceSearchMetadata, 0, len(res)), Metrics: SearchMetrics{
		InspectedTraces: uint32(len(res)), InspectedBytes: "0", CompletedJobs: 1, TotalJobs: 1,
	}}
	for i := range res {
		out.Traces = append(out.Traces, metadata(&res[i]))
	}
	h.writeJSON(w, http.StatusOK, out)
}

// SearchTraceID is the Tempo trace id of a search hit: its trace_id when
// that is a valid hex id, else the synthetic id of its row.
func SearchTraceID(r *tracesearch.Result) string {
	if r.TraceID != "" {
		if _, err := traceotlp.ParseTraceID(r.TraceID); err == nil {
			return r.TraceID
		}
	}
	id := traceotlp.SyntheticTraceID(r.ID)
	return hex.EncodeToString(id[:])
}

func metadata(r *tracesearch.Result) TraceSearchMetadata {
	start := strconv.FormatInt(r.StartTime.UnixNano(), 10)
	durNS := r.DurationUS * 1000
	span := SearchSpan{
		SpanID: hex.EncodeToString(func() []byte { id := traceotlp.SpanIDFor(r.ID); return id[:] }()),
		Name:   r.RootName, StartTimeUnixNano: start, DurationNanos: strconv.FormatUint(durNS, 10),
		Attributes: []KeyValue{{Key: "service.name", Value: StringValue{r.RootService}}, {Key: "status", Value: StringValue{otlpStatus(r.ResponseStatus)}}},
	}
	set := SpanSet{Spans: []SearchSpan{span}, Matched: 1}
	return TraceSearchMetadata{
		TraceID:           SearchTraceID(r),
		RootServiceName:   r.RootService,
		RootTraceName:     r.RootName,
		StartTimeUnixNano: start,
		DurationMs:        uint32(min(r.DurationUS/1000, 1<<32-1)),
		SpanSet:           &set,
		SpanSets:          []SpanSet{set},
	}
}

// otlpStatus is the TraceQL status of a response_status, as server/traceotlp
// sets it (Error, else unset).
func otlpStatus(s uint8) string {
	switch s {
	case 2, 3, 4:
		return "error"
	}
	return "unset"
}

// Tag names by scope. Each maps to columns (see tagColumn).
var (
	resourceTags  = []string{"host.name", "service.name"}
	spanTags      = []string{"http.method", "http.request.method", "http.response.status_code", "http.route", "http.status_code", "http.target", "http.url", "sightline.l7_protocol", "sightline.observation_point"}
	intrinsicTags = []string{"duration", "kind", "name", "rootName", "rootServiceName", "status", "traceDuration"}
)

func (h *handler) tagsV1(w http.ResponseWriter, _ *http.Request) {
	names := slices.Concat(resourceTags, spanTags, []string{"name", "span.kind", "status.code"})
	slices.Sort(names)
	names = slices.Compact(names)
	h.writeJSON(w, http.StatusOK, map[string][]string{"tagNames": names})
}

// scope is one entry of /api/v2/search/tags.
type scope struct {
	Name string   `json:"name"`
	Tags []string `json:"tags"`
}

func (h *handler) tagsV2(w http.ResponseWriter, r *http.Request) {
	all := []scope{{"resource", resourceTags}, {"span", spanTags}, {"intrinsic", intrinsicTags}}
	var out []scope
	switch s := r.URL.Query().Get("scope"); s {
	case "", "all", "none":
		out = all
	case "resource", "span", "intrinsic":
		for _, sc := range all {
			if sc.Name == s {
				out = append(out, sc)
			}
		}
	case "event", "link", "instrumentation":
		out = []scope{{s, []string{}}}
	default:
		h.fail(w, http.StatusBadRequest, fmt.Sprintf("unknown scope %q (resource, span, intrinsic)", s))
		return
	}
	h.writeJSON(w, http.StatusOK, map[string][]scope{"scopes": out})
}

// TagValue is one value of /api/v2/search/tag/{tag}/values.
type TagValue struct {
	Type  string `json:"type"`
	Value string `json:"value"`
}

// Bounds of tag value lookups.
const (
	maxTagValues     = 500
	defaultTagWindow = 24 * time.Hour
)

// errUnknownTag is a tag that maps to nothing (answered with no values).
var errUnknownTag = errors.New("unknown tag")

// tagLookup is how a tag's values are found.
type tagLookup struct {
	typ    string
	static []string
	// sql selects one column "v" given the time condition.
	sql []func(timeCond string, limit int) string
}

func distinct(expr, where string) func(string, int) string {
	return func(tc string, limit int) string {
		w := tc
		if where != "" {
			w += " AND " + where
		}
		return fmt.Sprintf("SELECT DISTINCT %s AS v FROM l7_flow_log WHERE %s ORDER BY v LIMIT %d", expr, w, limit)
	}
}

const httpWhere = "l7_protocol IN (20, 21)"

// tagColumn maps a tag (scope prefix removed) to its lookup.
func tagColumn(tag string) (tagLookup, error) {
	server := "observation_point IN ('s-p', 's', 's-app', 's-nd')"
	switch tag {
	case "service.name", "rootServiceName", "trace:rootService":
		return tagLookup{typ: "string", sql: []func(string, int) string{
			distinct("process_kname_1", server+" AND process_kname_1 <> ''"),
			distinct("process_kname_0", "observation_point NOT IN ('s-p', 's', 's-app', 's-nd') AND process_kname_0 <> ''"),
		}}, nil
	case "name", "rootName", "span:name", "trace:rootName":
		return tagLookup{typ: "string", sql: []func(string, int) string{distinct("endpoint", "endpoint <> ''")}}, nil
	case "http.method", "http.request.method":
		return tagLookup{typ: "string", sql: []func(string, int) string{distinct("request_type", httpWhere+" AND request_type <> ''")}}, nil
	case "http.status_code", "http.response.status_code":
		return tagLookup{typ: "int", sql: []func(string, int) string{distinct("response_code", httpWhere+" AND response_code IS NOT NULL")}}, nil
	case "http.url", "http.target", "url.path":
		return tagLookup{typ: "string", sql: []func(string, int) string{distinct("request_resource", httpWhere+" AND request_resource <> ''")}}, nil
	case "http.route":
		return tagLookup{typ: "string", sql: []func(string, int) string{distinct("endpoint", httpWhere+" AND endpoint <> ''")}}, nil
	case "host.name":
		return tagLookup{typ: "string", sql: []func(string, int) string{distinct("host", "host <> ''")}}, nil
	case "sightline.l7_protocol":
		return tagLookup{typ: "string", sql: []func(string, int) string{distinct("l7_protocol_str", "l7_protocol_str <> ''")}}, nil
	case "sightline.observation_point":
		return tagLookup{typ: "string", sql: []func(string, int) string{distinct("observation_point", "observation_point <> ''")}}, nil
	case "status", "status.code", "span:status":
		return tagLookup{typ: "keyword", static: []string{"error", "ok", "unset"}}, nil
	case "kind", "span.kind", "span:kind":
		return tagLookup{typ: "keyword", static: []string{"client", "internal", "server"}}, nil
	case "duration", "traceDuration", "span:duration", "trace:duration":
		return tagLookup{typ: "duration"}, nil
	}
	if !tracesearch.AttrKey(tag) {
		return tagLookup{}, errUnknownTag
	}
	expr := "attributes['" + tag + "']"
	return tagLookup{typ: "string", sql: []func(string, int) string{distinct(expr, expr+" <> ''")}}, nil
}

// stripScope removes resource. / span. / . from a v2 tag name.
func stripScope(tag string) string {
	for _, p := range []string{"resource.", "span.", "."} {
		if rest, ok := strings.CutPrefix(tag, p); ok && rest != "" {
			if p == "span." && rest == "kind" {
				return tag
			}
			return rest
		}
	}
	return tag
}

func (h *handler) tagValues(w http.ResponseWriter, r *http.Request, v2 bool) {
	tag := r.PathValue("tag")
	// Grafana encodes the tag twice; the proxy in front of us decodes once.
	if strings.Contains(tag, "%") {
		if t, err := url.PathUnescape(tag); err == nil {
			tag = t
		}
	}
	if v2 {
		tag = stripScope(tag)
	}
	v := r.URL.Query()
	start, err := unixParam(v, "start")
	if err != nil {
		h.fail(w, http.StatusBadRequest, err.Error())
		return
	}
	end, err := unixParam(v, "end")
	if err != nil {
		h.fail(w, http.StatusBadRequest, err.Error())
		return
	}
	start, end, err = tracesearch.Range(start, end, time.Time{}, defaultTagWindow)
	if err != nil {
		h.fail(w, http.StatusBadRequest, err.Error())
		return
	}
	limit := maxTagValues
	if s := v.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			h.fail(w, http.StatusBadRequest, fmt.Sprintf("limit must be a positive integer, got %q", s))
			return
		}
		limit = min(n, maxTagValues)
	}
	lk, err := tagColumn(tag)
	var values []string
	switch {
	case errors.Is(err, errUnknownTag):
		// Tempo answers an unknown tag with no values.
	case lk.static != nil:
		values = lk.static
	default:
		tc := fmt.Sprintf("time BETWEEN %s AND %s", tracesearch.TimeLit(start), tracesearch.TimeLit(end))
		seen := make(map[string]bool)
		for _, mk := range lk.sql {
			res, err := h.st.Query(r.Context(), mk(tc, limit))
			if err != nil {
				h.log.Error("tempo: tag values", "tag", tag, "error", err)
				h.fail(w, http.StatusInternalServerError, "tag value lookup failed")
				return
			}
			for _, row := range res.Rows {
				if len(row) != 1 || row[0] == nil {
					continue
				}
				s := fmt.Sprint(row[0])
				if !seen[s] && len(values) < limit {
					seen[s] = true
					values = append(values, s)
				}
			}
		}
		slices.Sort(values)
	}
	if values == nil {
		values = []string{}
	}
	if !v2 {
		h.writeJSON(w, http.StatusOK, map[string][]string{"tagValues": values})
		return
	}
	out := make([]TagValue, len(values))
	for i, s := range values {
		out[i] = TagValue{Type: lk.typ, Value: s}
	}
	h.writeJSON(w, http.StatusOK, map[string][]TagValue{"tagValues": out})
}
