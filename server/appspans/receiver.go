package appspans

import (
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strings"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/sightline-io/sightline/flowlog"
)

// DefaultMaxBodyBytes bounds a request body, compressed and decompressed.
const DefaultMaxBodyBytes = 16 << 20

// Paths served by Handler.
const (
	PathOTLPTraces  = "/v1/traces"
	PathZipkinSpans = "/api/v2/spans"
	// SkyWalking agents in HTTP mode post segments here.
	PathSkyWalkingSegments = "/v3/segments"
	PathSkyWalkingSegment  = "/v3/segment"
)

// Sink stores converted rows (the server passes its store's InsertL7).
type Sink func(ctx context.Context, rows []flowlog.L7FlowLog) error

// Options configure a Receiver; the zero value is usable.
type Options struct {
	// MaxBodyBytes bounds a request body (before and after gzip); 0 means
	// DefaultMaxBodyBytes. Larger bodies are answered with 413.
	MaxBodyBytes int64
	// Logger receives sink failures; nil means slog.Default().
	Logger *slog.Logger
	// Registerer, when set, receives the span counters.
	Registerer prometheus.Registerer
}

// Stats counts spans since the Receiver was created.
type Stats struct {
	// Received is spans decoded from requests.
	Received uint64 `json:"received"`
	// Converted is spans turned into rows and accepted by the sink.
	Converted uint64 `json:"converted"`
	// Rejected is spans dropped: invalid (Zipkin span without ids) or lost
	// because the sink failed.
	Rejected uint64 `json:"rejected"`
}

// Receiver accepts OTLP (HTTP and gRPC) and Zipkin v2 spans.
type Receiver struct {
	sink    Sink
	maxBody int64
	log     *slog.Logger

	received, converted, rejected atomic.Uint64
	metrics                       *prometheus.CounterVec
}

// New returns a Receiver that stores rows through sink.
func New(sink func(context.Context, []flowlog.L7FlowLog) error, opt Options) *Receiver {
	r := &Receiver{sink: sink, maxBody: opt.MaxBodyBytes, log: opt.Logger}
	if r.maxBody <= 0 {
		r.maxBody = DefaultMaxBodyBytes
	}
	if r.log == nil {
		r.log = slog.Default()
	}
	r.metrics = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sightline_appspans_spans_total",
		Help: "Application spans by receiver and outcome (received, converted, rejected).",
	}, []string{"receiver", "outcome"})
	if opt.Registerer != nil {
		if err := opt.Registerer.Register(r.metrics); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				if cv, ok := are.ExistingCollector.(*prometheus.CounterVec); ok {
					r.metrics = cv
				}
			} else {
				r.log.Warn("appspans: metrics not registered", "err", err)
			}
		}
	}
	return r
}

// Stats returns the span counters.
func (r *Receiver) Stats() Stats {
	return Stats{Received: r.received.Load(), Converted: r.converted.Load(), Rejected: r.rejected.Load()}
}

func (r *Receiver) count(receiver string, received, converted, rejected int) {
	r.received.Add(uint64(received))
	r.converted.Add(uint64(converted))
	r.rejected.Add(uint64(rejected))
	r.metrics.WithLabelValues(receiver, "received").Add(float64(received))
	r.metrics.WithLabelValues(receiver, "converted").Add(float64(converted))
	r.metrics.WithLabelValues(receiver, "rejected").Add(float64(rejected))
}

// store hands rows to the sink and counts them; invalid is the number of
// spans already dropped by the conversion.
func (r *Receiver) store(ctx context.Context, receiver string, rows []flowlog.L7FlowLog, invalid int) error {
	if len(rows) == 0 {
		r.count(receiver, invalid, 0, invalid)
		return nil
	}
	if err := r.sink(ctx, rows); err != nil {
		r.count(receiver, len(rows)+invalid, 0, len(rows)+invalid)
		r.log.Warn("appspans: storing spans failed", "receiver", receiver, "spans", len(rows), "err", err)
		return fmt.Errorf("store %d spans: %w", len(rows), err)
	}
	r.count(receiver, len(rows)+invalid, len(rows), invalid)
	return nil
}

// Handler serves POST /v1/traces (OTLP/HTTP, protobuf or JSON) and
// POST /api/v2/spans (Zipkin v2 JSON) and POST /v3/segments, /v3/segment
// (SkyWalking v3 segments, JSON).
func (r *Receiver) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc(PathOTLPTraces, r.serveOTLP)
	mux.HandleFunc(PathZipkinSpans, r.serveZipkin)
	mux.HandleFunc(PathSkyWalkingSegments, r.serveSkyWalking)
	mux.HandleFunc(PathSkyWalkingSegment, r.serveSkyWalking)
	return mux
}

// RegisterGRPC registers the OTLP trace service on s.
func (r *Receiver) RegisterGRPC(s *grpc.Server) {
	ptraceotlp.RegisterGRPCServer(s, &grpcServer{r: r})
}

type grpcServer struct {
	ptraceotlp.UnimplementedGRPCServer
	r *Receiver
}

// Export implements ptraceotlp.GRPCServer.
func (g *grpcServer) Export(ctx context.Context, req ptraceotlp.ExportRequest) (ptraceotlp.ExportResponse, error) {
	rows := ConvertTraces(req.Traces())
	if err := g.r.store(ctx, "otlp_grpc", rows, 0); err != nil {
		return ptraceotlp.NewExportResponse(), status.Error(codes.Unavailable, err.Error())
	}
	return ptraceotlp.NewExportResponse(), nil
}

// httpError is a client-visible failure with its HTTP status.
type httpError struct {
	code int
	msg  string
}

func (e *httpError) Error() string { return e.msg }

// readBody checks the method and encoding and returns the decompressed,
// size-limited body.
func (r *Receiver) readBody(w http.ResponseWriter, req *http.Request) ([]byte, error) {
	if req.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		return nil, &httpError{http.StatusMethodNotAllowed, "method " + req.Method + " not allowed, use POST"}
	}
	body := http.MaxBytesReader(w, req.Body, r.maxBody)
	var src io.Reader = body
	switch enc := strings.ToLower(strings.TrimSpace(req.Header.Get("Content-Encoding"))); enc {
	case "", "identity":
	case "gzip", "x-gzip":
		zr, err := gzip.NewReader(body)
		if err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				return nil, tooLarge(r.maxBody)
			}
			return nil, &httpError{http.StatusBadRequest, "bad gzip body: " + err.Error()}
		}
		defer zr.Close()
		src = zr
	default:
		return nil, &httpError{http.StatusUnsupportedMediaType, "unsupported Content-Encoding " + enc + " (use gzip or none)"}
	}
	data, err := io.ReadAll(io.LimitReader(src, r.maxBody+1))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, tooLarge(r.maxBody)
		}
		return nil, &httpError{http.StatusBadRequest, "reading body: " + err.Error()}
	}
	if int64(len(data)) > r.maxBody {
		return nil, tooLarge(r.maxBody)
	}
	return data, nil
}

func tooLarge(limit int64) error {
	return &httpError{http.StatusRequestEntityTooLarge, fmt.Sprintf("body larger than %d bytes", limit)}
}

func mediaType(req *http.Request) string {
	mt, _, err := mime.ParseMediaType(req.Header.Get("Content-Type"))
	if err != nil {
		return ""
	}
	return strings.ToLower(mt)
}

const (
	ctProtobuf = "application/x-protobuf"
	ctJSON     = "application/json"
)

func (r *Receiver) serveOTLP(w http.ResponseWriter, req *http.Request) {
	ct := mediaType(req)
	if req.Method == http.MethodPost && ct != ctProtobuf && ct != ctJSON {
		writeOTLPError(w, ctJSON, http.StatusUnsupportedMediaType,
			fmt.Sprintf("unsupported Content-Type %q (use %s or %s)", req.Header.Get("Content-Type"), ctProtobuf, ctJSON))
		return
	}
	data, err := r.readBody(w, req)
	if err != nil {
		var he *httpError
		if errors.As(err, &he) {
			writeOTLPError(w, ct, he.code, he.msg)
		} else {
			writeOTLPError(w, ct, http.StatusBadRequest, err.Error())
		}
		return
	}
	er := ptraceotlp.NewExportRequest()
	if ct == ctProtobuf {
		err = er.UnmarshalProto(data)
	} else {
		err = er.UnmarshalJSON(data)
	}
	if err != nil {
		writeOTLPError(w, ct, http.StatusBadRequest, "bad OTLP trace request: "+err.Error())
		return
	}
	rows := ConvertTraces(er.Traces())
	if err := r.store(req.Context(), "otlp_http", rows, 0); err != nil {
		writeOTLPError(w, ct, http.StatusServiceUnavailable, err.Error())
		return
	}
	resp := ptraceotlp.NewExportResponse()
	var out []byte
	if ct == ctProtobuf {
		out, err = resp.MarshalProto()
	} else {
		out, err = resp.MarshalJSON()
	}
	if err != nil {
		writeOTLPError(w, ct, http.StatusInternalServerError, "encoding response: "+err.Error())
		return
	}
	w.Header().Set("Content-Type", ct)
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(out)
}

// writeOTLPError answers with a google.rpc.Status in the request's encoding,
// as the OTLP/HTTP specification asks.
func writeOTLPError(w http.ResponseWriter, ct string, code int, msg string) {
	st := status.New(grpcCode(code), msg).Proto()
	var (
		out []byte
		err error
	)
	if ct == ctProtobuf {
		out, err = proto.Marshal(st)
	} else {
		ct = ctJSON
		out, err = protojson.Marshal(st)
	}
	if err != nil {
		http.Error(w, msg, code)
		return
	}
	w.Header().Set("Content-Type", ct)
	w.WriteHeader(code)
	_, _ = w.Write(out)
}

func grpcCode(httpCode int) codes.Code {
	switch httpCode {
	case http.StatusBadRequest, http.StatusUnsupportedMediaType, http.StatusMethodNotAllowed:
		return codes.InvalidArgument
	case http.StatusRequestEntityTooLarge:
		return codes.ResourceExhausted
	case http.StatusServiceUnavailable:
		return codes.Unavailable
	default:
		return codes.Internal
	}
}

func (r *Receiver) serveZipkin(w http.ResponseWriter, req *http.Request) {
	r.serveJSON(w, req, "zipkin", convertZipkin, http.StatusAccepted)
}

func (r *Receiver) serveSkyWalking(w http.ResponseWriter, req *http.Request) {
	r.serveJSON(w, req, "skywalking", convertSkyWalking, http.StatusOK)
}

// serveJSON serves a JSON span format converted by conv.
func (r *Receiver) serveJSON(w http.ResponseWriter, req *http.Request, receiver string,
	conv func([]byte) ([]flowlog.L7FlowLog, int, error), okCode int) {
	ct := mediaType(req)
	if req.Method == http.MethodPost && ct != ctJSON && ct != "" {
		http.Error(w, fmt.Sprintf("unsupported Content-Type %q (use %s)", req.Header.Get("Content-Type"), ctJSON), http.StatusUnsupportedMediaType)
		return
	}
	data, err := r.readBody(w, req)
	if err != nil {
		code := http.StatusBadRequest
		var he *httpError
		if errors.As(err, &he) {
			code = he.code
		}
		http.Error(w, err.Error(), code)
		return
	}
	rows, invalid, err := conv(data)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if err := r.store(req.Context(), receiver, rows, invalid); err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	w.WriteHeader(okCode)
}
