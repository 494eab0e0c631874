package brpc

import (
	"os"
	"testing"

	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/flowlog"
	"github.com/sightline-io/sightline/internal/rpctest"
)

// TestMain lets the test binary run as the baidu_std test server or client
// (rpctest.Main): the agent never traces its own process.
func TestMain(m *testing.M) {
	rpctest.Main()
	os.Exit(m.Run())
}

func scenarioWants() []rpctest.Want {
	svc := rpctest.Service
	res := func(m string) string { return svc + "/" + m }
	return []rpctest.Want{
		{ID: rpctest.IDHello, Type: rpctest.MethodHello, Domain: svc, Resource: res(rpctest.MethodHello),
			TraceID: "1122334455667788", SpanID: "0000000000000099", XRequestID: "req-abc"},
		{ID: rpctest.IDMissing, Type: rpctest.MethodHello, Domain: rpctest.MissingService, Resource: rpctest.MissingService + "/" + rpctest.MethodHello,
			Code: rpctest.BRPCNoService, Status: flowlog.StatusClientError, Exception: "Fail to find service"},
		{ID: rpctest.IDFail, Type: rpctest.MethodFail, Domain: svc, Resource: res(rpctest.MethodFail),
			Code: rpctest.BRPCInternal, Status: flowlog.StatusServerError, Exception: "boom"},
		{ID: rpctest.IDSlow, Type: rpctest.MethodSlow, Domain: svc, Resource: res(rpctest.MethodSlow)},
		{ID: rpctest.IDFast, Type: rpctest.MethodFast, Domain: svc, Resource: res(rpctest.MethodFast)},
		{ID: rpctest.IDBig, Type: rpctest.MethodBig, Domain: svc, Resource: res(rpctest.MethodBig),
			MinReqLen: rpctest.BigSize, MinRespLen: rpctest.BigSize},
	}
}

// TestLiveBRPC drives the Go baidu_std test server (another process) with
// the test client (another process): success with trace and request ids,
// ENOSERVICE, EINTERNAL, two concurrent calls answered out of order and a
// call (with an attachment) larger than the capture, on one connection.
// baidu_std has no one-way calls and no heartbeat frames.
func TestLiveBRPC(t *testing.T) {
	rpctest.RunLive(t, "brpc", New(l7.Config{}), scenarioWants())
}

// TestCaptureBRPC replays the recorded live traffic.
func TestCaptureBRPC(t *testing.T) {
	rpctest.CheckCapture(t, "brpc", New(l7.Config{}), scenarioWants())
}

// TestCaptureBRPCMidstream replays a hand-built capture that starts in the
// middle of a request: the parser recovers at the next frame.
func TestCaptureBRPCMidstream(t *testing.T) {
	rpctest.CheckMidstream(t, "brpc", New(l7.Config{}), scenarioWants())
}
