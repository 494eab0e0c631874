package trace

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/sightline-io/sightline/server/store"
)

type handler struct {
	st  store.Store
	opt Options
	log *slog.Logger
}

// NewHandler serves
//
//	GET /api/v1/traces/{trace_id}   the trace of that trace id
//	GET /api/v1/traces?span=<_id>   the trace assembled around that row
//
// as JSON (a Trace). Bad input answers 400, nothing found 404, both with
// {"error": "..."}.
func NewHandler(st store.Store, opt Options) http.Handler {
	h := &handler{st: st, opt: opt, log: slog.Default()}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/traces/{trace_id}", h.byTraceID)
	mux.HandleFunc("GET /api/v1/traces", h.bySpan)
	return mux
}

func (h *handler) byTraceID(w http.ResponseWriter, r *http.Request) {
	t, err := AssembleTraceID(r.Context(), h.st, r.PathValue("trace_id"), h.opt)
	h.reply(w, t, err)
}

func (h *handler) bySpan(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	raw := q.Get("span")
	if raw == "" || len(q["span"]) != 1 {
		writeJSON(w, h.log, http.StatusBadRequest, errorBody{"exactly one span=<_id> parameter is required"})
		return
	}
	id, err := strconv.ParseUint(raw, 10, 64)
	if err != nil || id == 0 {
		writeJSON(w, h.log, http.StatusBadRequest, errorBody{"span must be a positive integer _id, got " + strconv.Quote(raw)})
		return
	}
	t, err := Assemble(r.Context(), h.st, id, h.opt)
	h.reply(w, t, err)
}

type errorBody struct {
	Error string `json:"error"`
}

func (h *handler) reply(w http.ResponseWriter, t *Trace, err error) {
	var qe *store.QueryError
	switch {
	case err == nil:
		writeJSON(w, h.log, http.StatusOK, t)
	case errors.Is(err, ErrBadInput):
		writeJSON(w, h.log, http.StatusBadRequest, errorBody{err.Error()})
	case errors.Is(err, ErrNotFound):
		writeJSON(w, h.log, http.StatusNotFound, errorBody{err.Error()})
	case errors.As(err, &qe):
		// The lookups are ours: an engine rejecting them is a server fault.
		h.log.Error("trace: lookup rejected", "error", err)
		writeJSON(w, h.log, http.StatusInternalServerError, errorBody{"trace lookup failed"})
	default:
		h.log.Error("trace: assemble", "error", err)
		writeJSON(w, h.log, http.StatusInternalServerError, errorBody{"trace assembly failed"})
	}
}

func writeJSON(w http.ResponseWriter, log *slog.Logger, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		log.Error("trace: encode response", "error", err)
		status, body = http.StatusInternalServerError, []byte(`{"error":"encode response"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	if _, err := w.Write(append(body, '\n')); err != nil {
		log.Debug("trace: write response", "error", err)
	}
}
