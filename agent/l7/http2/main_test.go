package http2_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/h2c"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/sightline-io/sightline/internal/livetest"
)

// serveEnv makes the test binary a server ("grpc ADDR" or "h2c ADDR"), and
// clientEnv an h2c client of ADDR: the agent never traces its own process,
// so servers and clients run in children.
const (
	serveEnv  = "SIGHTLINE_HTTP2_SERVE"
	clientEnv = "SIGHTLINE_HTTP2_CLIENT"
)

func TestMain(m *testing.M) {
	livetest.Child(clientEnv, h2cClient)
	if v := os.Getenv(serveEnv); v != "" {
		kind, addr, _ := strings.Cut(v, " ")
		var err error
		switch kind {
		case "grpc":
			err = serveGRPC(addr)
		case "h2c":
			err = serveH2C(addr)
		default:
			err = fmt.Errorf("unknown server %q", kind)
		}
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// The demo.Echo service is written by hand (no generated code): its
// messages are wrapperspb.StringValue.
const (
	echoService = "demo.Echo"
	failMethod  = "/demo.Echo/Fail"  // unary, returns codes.Internal
	countMethod = "/demo.Echo/Count" // server streaming: three replies
	chatMethod  = "/demo.Echo/Chat"  // bidi: echoes until the client ends
)

var echoDesc = grpc.ServiceDesc{
	ServiceName: echoService,
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Fail",
		Handler: func(_ any, _ context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			in := new(wrapperspb.StringValue)
			if err := dec(in); err != nil {
				return nil, err
			}
			return nil, status.Error(codes.Internal, "database exploded: "+in.GetValue())
		},
	}},
	Streams: []grpc.StreamDesc{{
		StreamName:    "Count",
		ServerStreams: true,
		Handler: func(_ any, s grpc.ServerStream) error {
			in := new(wrapperspb.StringValue)
			if err := s.RecvMsg(in); err != nil {
				return err
			}
			for i := range 3 {
				if err := s.SendMsg(wrapperspb.String(fmt.Sprint(in.GetValue(), i))); err != nil {
					return err
				}
			}
			return nil
		},
	}, {
		StreamName:    "Chat",
		ServerStreams: true,
		ClientStreams: true,
		Handler: func(_ any, s grpc.ServerStream) error {
			for {
				in := new(wrapperspb.StringValue)
				if err := s.RecvMsg(in); errors.Is(err, io.EOF) {
					return nil
				} else if err != nil {
					return err
				}
				if err := s.SendMsg(wrapperspb.String("echo " + in.GetValue())); err != nil {
					return err
				}
			}
		},
	}},
}

func serveGRPC(addr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	s := grpc.NewServer()
	hs := health.NewServer()
	hs.SetServingStatus("", grpc_health_v1.HealthCheckResponse_SERVING)
	grpc_health_v1.RegisterHealthServer(s, hs)
	s.RegisterService(&echoDesc, struct{}{})
	return s.Serve(l)
}

func serveH2C(addr string) error {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ok", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "fine\n") })
	mux.HandleFunc("POST /submit/{id}", func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, "got %d bytes\n", n)
	})
	srv := &http.Server{Addr: addr, Handler: h2c.NewHandler(mux, &http2.Server{})}
	return srv.ListenAndServe()
}

// h2cClient makes GET /ok, GET /missing and POST /submit/42 on one h2c
// connection (streams 1, 3, 5). curl 7.88 cannot reuse a prior-knowledge
// connection (curl#10634), so this is how one connection carries several.
func h2cClient(addr string) error {
	tr := &http2.Transport{AllowHTTP: true,
		DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		}}
	c := &http.Client{Transport: tr, Timeout: 20 * time.Second}
	base := "http://" + addr
	for _, r := range []struct {
		method, path, body string
		want               int
	}{{"GET", "/ok", "", 200}, {"GET", "/missing", "", 404}, {"POST", "/submit/42?token=s3cret", "hello=world", 201}} {
		req, err := http.NewRequest(r.method, base+r.path, strings.NewReader(r.body))
		if err != nil {
			return err
		}
		if r.body == "" {
			req.Body = nil
		}
		req.Header.Set("x-request-id", "go-"+r.method)
		resp, err := c.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != r.want || resp.ProtoMajor != 2 {
			return fmt.Errorf("%s %s: %s %s", r.method, r.path, resp.Proto, resp.Status)
		}
	}
	return nil
}
