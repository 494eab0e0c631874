package http2_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/agent/l7/http2"
	"github.com/sightline-io/sightline/flowlog"
	"github.com/sightline-io/sightline/internal/livetest"
)

// startServer runs the test binary as a server of kind and waits for it.
func startServer(t *testing.T, kind string) (addr string, port int) {
	t.Helper()
	port = livetest.FreePort(t)
	addr = fmt.Sprintf("127.0.0.1:%d", port)
	livetest.StartEnv(t, []string{serveEnv + "=" + kind + " " + addr}, os.Args[0])
	livetest.WaitTCP(t, addr, 30*time.Second)
	return addr, port
}

// grpcCalls makes the calls the gRPC tests assert, in order, on one
// connection: stream ids 1, 3, 5 ... in this order.
func grpcCalls(t *testing.T, addr string) {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	hc := grpc_health_v1.NewHealthClient(conn)
	// 1: OK.
	if _, err := hc.Check(ctx, &grpc_health_v1.HealthCheckRequest{}); err != nil {
		t.Fatalf("check: %v", err)
	}
	// 3: NOT_FOUND with a message.
	if _, err := hc.Check(ctx, &grpc_health_v1.HealthCheckRequest{Service: "no.such.Service"}); status.Code(err) != codes.NotFound {
		t.Fatalf("check unknown service: %v", err)
	}
	// 5: INTERNAL.
	out := new(wrapperspb.StringValue)
	if err := conn.Invoke(ctx, "/demo.Echo/Fail", wrapperspb.String("orders"), out); status.Code(err) != codes.Internal {
		t.Fatalf("fail: %v", err)
	}
	// 7: server streaming, three replies.
	s, err := conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, "/demo.Echo/Count")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SendMsg(wrapperspb.String("n")); err != nil {
		t.Fatal(err)
	}
	if err := s.CloseSend(); err != nil {
		t.Fatal(err)
	}
	for n := 0; ; n++ {
		if err := s.RecvMsg(out); errors.Is(err, io.EOF) {
			if n != 3 {
				t.Fatalf("count: %d replies", n)
			}
			break
		} else if err != nil {
			t.Fatal(err)
		}
	}
	// 9: bidi.
	s, err = conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, "/demo.Echo/Chat")
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"a", "b"} {
		if err := s.SendMsg(wrapperspb.String(w)); err != nil {
			t.Fatal(err)
		}
		if err := s.RecvMsg(out); err != nil || out.GetValue() != "echo "+w {
			t.Fatalf("chat: %q %v", out.GetValue(), err)
		}
	}
	if err := s.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if err := s.RecvMsg(out); !errors.Is(err, io.EOF) {
		t.Fatalf("chat end: %v", err)
	}
	// 11: a server stream the client cancels (RST_STREAM CANCEL).
	wctx, wcancel := context.WithCancel(ctx)
	ws, err := hc.Watch(wctx, &grpc_health_v1.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ws.Recv(); err != nil {
		t.Fatal(err)
	}
	wcancel()
	time.Sleep(200 * time.Millisecond) // let the RST_STREAM go out before the connection closes
}

// grpcWant is what the rows of grpcCalls say, by stream id.
type rowWant struct {
	id        uint64
	proto     flowlog.L7Protocol
	method    string
	domain    string
	resource  string
	endpoint  string
	code      int32 // -1: none
	status    flowlog.ResponseStatus
	exception string
}

var grpcWant = []rowWant{
	{1, flowlog.L7GRPC, "POST", "grpc.health.v1.Health", "/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/Check", 0, flowlog.StatusSuccess, ""},
	{3, flowlog.L7GRPC, "POST", "grpc.health.v1.Health", "/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/Check", 5, flowlog.StatusClientError, "unknown service"},
	{5, flowlog.L7GRPC, "POST", "demo.Echo", "/demo.Echo/Fail", "/demo.Echo/Fail", 13, flowlog.StatusServerError, "database exploded: orders"},
	{7, flowlog.L7GRPC, "POST", "demo.Echo", "/demo.Echo/Count", "/demo.Echo/Count", 0, flowlog.StatusSuccess, ""},
	{9, flowlog.L7GRPC, "POST", "demo.Echo", "/demo.Echo/Chat", "/demo.Echo/Chat", 0, flowlog.StatusSuccess, ""},
	{11, flowlog.L7GRPC, "POST", "grpc.health.v1.Health", "/grpc.health.v1.Health/Watch", "/grpc.health.v1.Health/Watch", -1, flowlog.StatusClientError, "RST_STREAM CANCEL"},
}

// checkRows asserts one session row per want, matched by stream id.
func checkRows(t *testing.T, rows []flowlog.L7FlowLog, want []rowWant, obs string) {
	t.Helper()
	byID := map[uint64]*flowlog.L7FlowLog{}
	for i := range rows {
		if r := &rows[i]; r.RequestID != nil {
			byID[*r.RequestID] = r
		}
	}
	for _, w := range want {
		r := byID[w.id]
		if r == nil {
			t.Errorf("no row for stream %d; rows:\n%s", w.id, livetest.Describe(rows))
			continue
		}
		code := int32(-1)
		if r.ResponseCode != nil {
			code = *r.ResponseCode
		}
		if r.L7Protocol != w.proto || r.Type != flowlog.TypeSession || r.Version != "2" || r.RequestType != w.method ||
			r.RequestDomain != w.domain || r.RequestResource != w.resource || r.Endpoint != w.endpoint ||
			code != w.code || r.ResponseStatus != w.status || r.ResponseException != w.exception ||
			r.ResponseDuration == 0 || (obs != "" && r.ObservationPoint != obs) {
			t.Errorf("stream %d: want %+v; row:\n%s", w.id, w, livetest.Describe([]flowlog.L7FlowLog{*r}))
		}
		if r.RequestLength <= 0 || r.ResponseLength <= 0 {
			t.Errorf("stream %d: lengths %d/%d", w.id, r.RequestLength, r.ResponseLength)
		}
	}
}

func TestLiveGRPC(t *testing.T) {
	a := livetest.StartAgent(t, http2.New(l7.Config{}))
	addr, port := startServer(t, "grpc")
	stop := livetest.Record(t, "grpc.pcap", fmt.Sprintf("tcp port %d", port))
	grpcCalls(t, addr)
	stopRecord(stop)
	serverSide := func(r *flowlog.L7FlowLog) bool {
		return int(r.ServerPort) == port && r.ObservationPoint == flowlog.ObsServerProcess
	}
	rows := a.WaitRows(t, "gRPC calls", len(grpcWant), 30*time.Second, serverSide)
	checkRows(t, rows, grpcWant, flowlog.ObsServerProcess)
	if len(rows) != len(grpcWant) {
		t.Errorf("%d rows, want %d:\n%s", len(rows), len(grpcWant), livetest.Describe(rows))
	}
}

// h2cWant is what one connection carrying GET /ok, GET /missing and POST
// /submit/42 says; curl opens a connection per request (ids all 1).
func h2cWant(addr string, ids ...uint64) []rowWant {
	return []rowWant{
		{ids[0], flowlog.L7HTTP2, "GET", addr, "/ok", "/ok", 200, flowlog.StatusSuccess, ""},
		{ids[1], flowlog.L7HTTP2, "GET", addr, "/missing", "/missing", 404, flowlog.StatusClientError, "Not Found"},
		{ids[2], flowlog.L7HTTP2, "POST", addr, "/submit/42?token=***", "/submit/{id}", 201, flowlog.StatusSuccess, ""},
	}
}

func TestLiveH2C(t *testing.T) {
	livetest.RequireTools(t, "curl")
	a := livetest.StartAgent(t, http2.New(l7.Config{}))
	both := []string{flowlog.ObsServerProcess, flowlog.ObsClientProcess}

	t.Run("curl", func(t *testing.T) {
		addr, port := startServer(t, "h2c")
		base := "http://" + addr
		for _, args := range [][]string{
			{base + "/ok"},
			{base + "/missing"},
			{"-H", "x-request-id: curl-post", "-d", "hello=world", base + "/submit/42?token=s3cret"},
		} {
			livetest.Run(t, "curl", append([]string{"-sS", "-o", "/dev/null", "--http2-prior-knowledge"}, args...)...)
		}
		for _, obs := range both {
			rows := a.WaitRows(t, "curl "+obs, 3, 30*time.Second, func(r *flowlog.L7FlowLog) bool {
				return int(r.ServerPort) == port && r.ObservationPoint == obs
			})
			for i, w := range h2cWant(addr, 1, 1, 1) {
				var match []flowlog.L7FlowLog
				for _, r := range rows {
					if r.RequestResource == w.resource {
						match = append(match, r)
					}
				}
				checkRows(t, match, []rowWant{w}, obs)
				if i == 2 && len(match) == 1 && match[0].XRequestID0 != "curl-post" {
					t.Errorf("%s: x_request_id_0 %q", obs, match[0].XRequestID0)
				}
			}
		}
	})

	t.Run("one connection", func(t *testing.T) {
		addr, port := startServer(t, "h2c")
		stop := livetest.Record(t, "h2c.pcap", fmt.Sprintf("tcp port %d", port))
		client := livetest.StartEnv(t, []string{clientEnv + "=" + addr}, os.Args[0])
		if err := client.Cmd.Wait(); err != nil {
			t.Fatalf("h2c client: %v", err)
		}
		stopRecord(stop)
		for _, obs := range both {
			rows := a.WaitRows(t, "go h2c client "+obs, 3, 30*time.Second, func(r *flowlog.L7FlowLog) bool {
				return int(r.ServerPort) == port && r.ObservationPoint == obs
			})
			checkRows(t, rows, h2cWant(addr, 1, 3, 5), obs)
		}
	})
}

// stopRecord stops a livetest.Record capture. tcpdump without
// --immediate-mode hands packets over when a ring block times out (about a
// second) and drops what it holds on SIGINT, so a short exchange would be
// lost: give it time first.
func stopRecord(stop func()) {
	if os.Getenv(livetest.RecordEnv) != "" {
		time.Sleep(2500 * time.Millisecond)
	}
	stop()
}

// testdata returns the path of a committed capture.
func testdata(name string) string { return filepath.Join("testdata", name) }

var _ = strings.Cut
