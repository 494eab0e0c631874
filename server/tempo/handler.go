// Package tempo serves the part of Grafana Tempo's HTTP API that Grafana's
// stock Tempo data source uses, over Sightline's l7_flow_log store, so that
// a Tempo data source pointed at Sightline searches and shows its traces:
//
//	GET /api/echo                          health check ("echo")
//	GET /api/status/buildinfo              version (2.1.0: see buildVersion)
//	GET /api/traces/{id}                   tempopb.Trace (OTLP ResourceSpans)
//	GET /api/v2/traces/{id}                tempopb.TraceByIDResponse
//	GET /api/search                        tags= (logfmt) or q= (TraceQL subset)
//	GET /api/search/tags                   {"tagNames": [...]}
//	GET /api/v2/search/tags?scope=         {"scopes": [{"name", "tags"}]}
//	GET /api/search/tag/{tag}/values       {"tagValues": ["..."]}
//	GET /api/v2/search/tag/{tag}/values    {"tagValues": [{"type", "value"}]}
//
// Traces are JSON by default (OTLP JSON: {"batches": [...]} for v1,
// {"trace": {"resourceSpans": [...]}} for v2) and protobuf with
// "Accept: application/protobuf", which is what Grafana's backend sends.
// tempopb.Trace is wire-identical to OTLP TracesData (repeated ResourceSpans
// at field 1), and TraceByIDResponse holds it at field 1, so the protobuf
// bodies are ptrace's TracesData encoding, wrapped once for v2.
//
// Trace ids: a hex trace id (1-32 digits, as Tempo accepts) is looked up as a
// trace_id; a synthetic id ("SLTR" + 4 zero bytes + the big-endian row _id,
// see server/traceotlp) assembles the trace around that row. Search results
// carry the row's trace_id when it is hex, else the synthetic id of the row.
package tempo

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime"
	"strings"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/sightline-io/sightline/server/store"
	"github.com/sightline-io/sightline/server/trace"
	"github.com/sightline-io/sightline/server/traceotlp"
)

// buildVersion is the Tempo version reported by /api/status/buildinfo.
// Grafana's Tempo data source enables gRPC streaming search for Tempo >= 2.2.0
// (featuresToTempoVersion in public/app/plugins/datasource/tempo/datasource.ts)
// and assumes 2.1.0 when buildinfo is missing; Sightline serves no streaming
// gRPC, so it reports 2.1.0 and Grafana uses GET /api/search.
const buildVersion = "2.1.0"

// Content types.
const (
	ctJSON     = "application/json"
	ctProtobuf = "application/protobuf"
)

type handler struct {
	st  store.Store
	opt trace.Options
	log *slog.Logger
}

// Patterns are the ServeMux patterns NewHandler serves, for mounting it in
// another mux: for _, p := range tempo.Patterns() { mux.Handle(p, h) }.
func Patterns() []string {
	return []string{
		"GET /api/echo", "GET /api/status/buildinfo", "GET /api/traces/{id}", "GET /api/v2/traces/{id}",
		"GET /api/search", "GET /api/search/tags", "GET /api/v2/search/tags",
		"GET /api/search/tag/{tag}/values", "GET /api/v2/search/tag/{tag}/values",
	}
}

// NewHandler returns the Tempo API handler.
func NewHandler(st store.Store, opt trace.Options) http.Handler {
	h := &handler{st: st, opt: opt, log: slog.Default()}
	routes := map[string]http.HandlerFunc{
		"GET /api/echo":                       h.echo,
		"GET /api/status/buildinfo":           h.buildinfo,
		"GET /api/traces/{id}":                func(w http.ResponseWriter, r *http.Request) { h.traceByID(w, r, false) },
		"GET /api/v2/traces/{id}":             func(w http.ResponseWriter, r *http.Request) { h.traceByID(w, r, true) },
		"GET /api/search":                     h.search,
		"GET /api/search/tags":                h.tagsV1,
		"GET /api/v2/search/tags":             h.tagsV2,
		"GET /api/search/tag/{tag}/values":    func(w http.ResponseWriter, r *http.Request) { h.tagValues(w, r, false) },
		"GET /api/v2/search/tag/{tag}/values": func(w http.ResponseWriter, r *http.Request) { h.tagValues(w, r, true) },
	}
	mux := http.NewServeMux()
	for _, p := range Patterns() {
		mux.HandleFunc(p, routes[p])
	}
	return mux
}

func (h *handler) echo(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte("echo"))
}

// BuildInfo is the body of /api/status/buildinfo (Prometheus-style).
type BuildInfo struct {
	Version   string `json:"version"`
	Revision  string `json:"revision"`
	Branch    string `json:"branch"`
	BuildUser string `json:"buildUser"`
	BuildDate string `json:"buildDate"`
	GoVersion string `json:"goVersion"`
}

func (h *handler) buildinfo(w http.ResponseWriter, _ *http.Request) {
	h.writeJSON(w, http.StatusOK, BuildInfo{Version: buildVersion, Revision: "sightline", Branch: "sightline", GoVersion: runtime.Version()})
}

// errorBody is every error answer: Grafana shows "message" (error.data.message).
type errorBody struct {
	Error   string `json:"error"`
	Message string `json:"message"`
}

func (h *handler) fail(w http.ResponseWriter, status int, msg string) {
	h.writeJSON(w, status, errorBody{Error: msg, Message: msg})
}

func (h *handler) writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		h.log.Error("tempo: encode response", "error", err)
		status, body = http.StatusInternalServerError, []byte(`{"error":"encode response","message":"encode response"}`)
	}
	h.write(w, status, ctJSON, append(body, '\n'))
}

func (h *handler) write(w http.ResponseWriter, status int, ct string, body []byte) {
	w.Header().Set("Content-Type", ct)
	w.WriteHeader(status)
	if _, err := w.Write(body); err != nil {
		h.log.Debug("tempo: write response", "error", err)
	}
}

// wantsProtobuf reports whether the Accept header asks for protobuf.
func wantsProtobuf(r *http.Request) bool {
	for _, a := range r.Header.Values("Accept") {
		for _, part := range strings.Split(a, ",") {
			mt, _, _ := strings.Cut(strings.TrimSpace(part), ";")
			if strings.EqualFold(strings.TrimSpace(mt), ctProtobuf) {
				return true
			}
		}
	}
	return false
}

// lookup assembles the trace for a Tempo trace id.
func (h *handler) lookup(r *http.Request, raw string) (*trace.Trace, pcommon.TraceID, error) {
	id, err := traceotlp.ParseTraceID(raw)
	if err != nil {
		return nil, id, fmt.Errorf("%w: %w", trace.ErrBadInput, err)
	}
	if rowID, ok := traceotlp.SyntheticRowID(id); ok {
		t, err := trace.Assemble(r.Context(), h.st, rowID, h.opt)
		return t, id, err
	}
	// The stored trace_id may be spelled as requested, in canonical form, or
	// (64-bit ids) as 16 digits.
	canon := hex.EncodeToString(id[:])
	tries := []string{raw}
	if canon != raw {
		tries = append(tries, canon)
	}
	if short := strings.TrimPrefix(canon, "0000000000000000"); len(short) == 16 && short != raw {
		tries = append(tries, short)
	}
	var t *trace.Trace
	for _, s := range tries {
		t, err = trace.AssembleTraceID(r.Context(), h.st, s, h.opt)
		if !errors.Is(err, trace.ErrNotFound) {
			break
		}
	}
	return t, id, err
}

func (h *handler) traceByID(w http.ResponseWriter, r *http.Request, v2 bool) {
	t, id, err := h.lookup(r, r.PathValue("id"))
	switch {
	case err == nil && len(t.Spans) == 0:
		h.fail(w, http.StatusNotFound, "trace not found")
		return
	case errors.Is(err, trace.ErrBadInput):
		h.fail(w, http.StatusBadRequest, err.Error())
		return
	case errors.Is(err, trace.ErrNotFound):
		h.fail(w, http.StatusNotFound, "trace not found")
		return
	case err != nil:
		h.log.Error("tempo: assemble trace", "error", err)
		h.fail(w, http.StatusInternalServerError, "trace assembly failed")
		return
	}
	td := traceotlp.Convert(t, id)
	if wantsProtobuf(r) {
		body, err := (&ptrace.ProtoMarshaler{}).MarshalTraces(td)
		if err != nil {
			h.log.Error("tempo: encode trace", "error", err)
			h.fail(w, http.StatusInternalServerError, "encode trace")
			return
		}
		if v2 {
			body = WrapTraceByIDResponse(body)
		}
		h.write(w, http.StatusOK, ctProtobuf, body)
		return
	}
	body, err := (&ptrace.JSONMarshaler{}).MarshalTraces(td)
	if err == nil {
		body, err = tempoJSON(body, v2)
	}
	if err != nil {
		h.log.Error("tempo: encode trace", "error", err)
		h.fail(w, http.StatusInternalServerError, "encode trace")
		return
	}
	h.write(w, http.StatusOK, ctJSON, body)
}

// WrapTraceByIDResponse wraps an encoded tempopb.Trace (= OTLP TracesData)
// as tempopb.TraceByIDResponse: `Trace trace = 1` (metrics = 2, status = 3
// and message = 4 are left unset: a complete trace).
func WrapTraceByIDResponse(traceProto []byte) []byte {
	out := protowire.AppendTag(make([]byte, 0, len(traceProto)+12), 1, protowire.BytesType)
	return protowire.AppendBytes(out, traceProto)
}

// tempoJSON turns OTLP JSON ({"resourceSpans": [...]}) into the v1 body
// ({"batches": [...]}) or the v2 body ({"trace": {"resourceSpans": [...]}}).
func tempoJSON(otlp []byte, v2 bool) ([]byte, error) {
	if v2 {
		var b bytes.Buffer
		b.WriteString(`{"trace":`)
		b.Write(otlp)
		b.WriteString("}\n")
		return b.Bytes(), nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(otlp, &m); err != nil {
		return nil, fmt.Errorf("tempo: re-encode trace: %w", err)
	}
	rs, ok := m["resourceSpans"]
	if !ok {
		rs = json.RawMessage("[]")
	}
	out, err := json.Marshal(map[string]json.RawMessage{"batches": rs})
	if err != nil {
		return nil, fmt.Errorf("tempo: re-encode trace: %w", err)
	}
	return append(out, '\n'), nil
}
