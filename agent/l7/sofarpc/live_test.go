package sofarpc

import (
	"os"
	"testing"

	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/flowlog"
	"github.com/sightline-io/sightline/internal/rpctest"
)

// TestMain lets the test binary run as the Bolt test server or client
// (rpctest.Main): the agent never traces its own process.
func TestMain(m *testing.M) {
	rpctest.Main()
	os.Exit(m.Run())
}

func scenarioWants() []rpctest.Want {
	svc := rpctest.Service + ":1.0"
	missing := rpctest.MissingService + ":1.0"
	res := func(s, m string) string { return s + "." + m }
	return []rpctest.Want{
		{ID: rpctest.IDHello, Type: rpctest.MethodHello, Domain: svc, Resource: res(svc, rpctest.MethodHello), Version: "1",
			TraceID: "0a0b0c0d17000000000010002", SpanID: "0.1"},
		{ID: rpctest.IDMissing, Type: rpctest.MethodHello, Domain: missing, Resource: res(missing, rpctest.MethodHello),
			Code: 6, Status: flowlog.StatusClientError, Exception: "Cannot find service processor"},
		{ID: rpctest.IDFail, Type: rpctest.MethodFail, Domain: svc, Resource: res(svc, rpctest.MethodFail),
			Status: flowlog.StatusServerError, Exception: "java.lang.IllegalStateException"},
		{ID: rpctest.IDOneway, Type: rpctest.MethodNotify, Domain: svc, Resource: res(svc, rpctest.MethodNotify), NoCode: true},
		{ID: rpctest.IDSlow, Type: rpctest.MethodSlow, Domain: svc, Resource: res(svc, rpctest.MethodSlow)},
		{ID: rpctest.IDFast, Type: rpctest.MethodFast, Domain: svc, Resource: res(svc, rpctest.MethodFast), Version: "2"},
		{ID: rpctest.IDBig, Type: rpctest.MethodBig, Domain: svc, Resource: res(svc, rpctest.MethodBig),
			MinReqLen: rpctest.BigSize, MinRespLen: rpctest.BigSize},
	}
}

// TestLiveSofaRPC drives the Go Bolt test server (another process) with the
// test client (another process): heartbeat, success, no processor, a thrown
// exception, one-way, two concurrent calls answered out of order (one in
// Bolt v2 with CRC32) and a call larger than the capture, on one connection.
func TestLiveSofaRPC(t *testing.T) {
	rpctest.RunLive(t, "sofarpc", New(l7.Config{}), scenarioWants())
}

// TestCaptureSofaRPC replays the recorded live traffic.
func TestCaptureSofaRPC(t *testing.T) {
	rpctest.CheckCapture(t, "sofarpc", New(l7.Config{}), scenarioWants())
}

// TestCaptureSofaRPCMidstream replays a hand-built capture that starts in the
// middle of a request: the parser recovers at the next frame.
func TestCaptureSofaRPCMidstream(t *testing.T) {
	rpctest.CheckMidstream(t, "sofarpc", New(l7.Config{}), scenarioWants())
}
