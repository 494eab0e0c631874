package tracesearch

import (
	"encoding/json"
	"errors"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/sightline-io/sightline/server/store"
)

type handler struct {
	st  store.Store
	log *slog.Logger
}

// NewHandler serves
//
//	GET /api/v1/traces/search?service=&endpoint=&status=&min_duration=&max_duration=
//	    &start=&end=&limit=&protocol=&tag.<column>=<value>
//
// as JSON {"traces": [Result...]}. start and end are RFC 3339 or unix
// seconds; durations are Go durations (100ms) or plain microseconds. Bad
// input answers 400 with {"error": "..."}.
func NewHandler(st store.Store) http.Handler {
	h := &handler{st: st, log: slog.Default()}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/traces/search", h.search)
	return mux
}

// Response is the body of a successful search.
type Response struct {
	Traces []Result `json:"traces"`
}

type errorBody struct {
	Error string `json:"error"`
}

// knownParams are the single-valued query parameters.
var knownParams = map[string]bool{
	"service": true, "endpoint": true, "status": true, "min_duration": true, "max_duration": true,
	"start": true, "end": true, "limit": true, "protocol": true,
}

func (h *handler) search(w http.ResponseWriter, r *http.Request) {
	q, err := ParseQuery(r.URL.Query())
	if err != nil {
		writeJSON(w, h.log, http.StatusBadRequest, errorBody{err.Error()})
		return
	}
	res, err := Search(r.Context(), h.st, q)
	if err != nil {
		status, msg := ErrorStatus(err)
		if status >= 500 {
			h.log.Error("tracesearch: search", "error", err)
		}
		writeJSON(w, h.log, status, errorBody{msg})
		return
	}
	writeJSON(w, h.log, http.StatusOK, Response{Traces: res})
}

// ErrorStatus maps a Search error to an HTTP status and a client message.
func ErrorStatus(err error) (int, string) {
	if errors.Is(err, ErrBadQuery) {
		return http.StatusBadRequest, err.Error()
	}
	// The SQL is ours: an engine rejecting it (*store.QueryError) is a server fault too.
	return http.StatusInternalServerError, "trace search failed"
}

// ParseQuery reads the search parameters of GET /api/v1/traces/search.
func ParseQuery(v url.Values) (Query, error) {
	var q Query
	for k, vals := range v {
		if knownParams[k] && len(vals) > 1 {
			return q, badf("parameter %s given %d times", k, len(vals))
		}
		if col, ok := strings.CutPrefix(k, "tag."); ok {
			if len(vals) > 1 {
				return q, badf("parameter %s given %d times", k, len(vals))
			}
			if q.Tags == nil {
				q.Tags = make(map[string]string)
			}
			q.Tags[col] = vals[0]
		}
	}
	q.Service, q.Endpoint, q.Status, q.Protocol = v.Get("service"), v.Get("endpoint"), v.Get("status"), v.Get("protocol")
	var err error
	if q.MinDuration, err = ParseDuration(v.Get("min_duration")); err != nil {
		return q, badf("min_duration: %v", err)
	}
	if q.MaxDuration, err = ParseDuration(v.Get("max_duration")); err != nil {
		return q, badf("max_duration: %v", err)
	}
	if q.Start, err = ParseTime(v.Get("start")); err != nil {
		return q, badf("start: %v", err)
	}
	if q.End, err = ParseTime(v.Get("end")); err != nil {
		return q, badf("end: %v", err)
	}
	if s := v.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 || n > MaxLimit {
			return q, badf("limit must be an integer 1-%d, got %q", MaxLimit, s)
		}
		q.Limit = n
	}
	return q, nil
}

// ParseDuration reads a Go duration (100ms, 1.5s) or an integer count of
// microseconds; "" is 0.
func ParseDuration(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n < 0 || n > math.MaxInt64/int64(time.Microsecond) {
			return 0, errors.New("out of range")
		}
		return time.Duration(n) * time.Microsecond, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, errors.New("want a duration like 100ms or 2s, got " + strconv.Quote(s))
	}
	if d < 0 {
		return 0, errors.New("negative duration")
	}
	return d, nil
}

// ParseTime reads RFC 3339 or unix seconds (fractions allowed); "" is zero.
func ParseTime(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		if f < 0 || f > 1e11 || math.IsNaN(f) {
			return time.Time{}, errors.New("unix seconds out of range: " + s)
		}
		sec, frac := math.Modf(f)
		return time.Unix(int64(sec), int64(frac*1e9)).UTC(), nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, errors.New("want RFC 3339 or unix seconds, got " + strconv.Quote(s))
	}
	return t.UTC(), nil
}

func writeJSON(w http.ResponseWriter, log *slog.Logger, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		log.Error("tracesearch: encode response", "error", err)
		status, body = http.StatusInternalServerError, []byte(`{"error":"encode response"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	if _, err := w.Write(append(body, '\n')); err != nil {
		log.Debug("tracesearch: write response", "error", err)
	}
}
