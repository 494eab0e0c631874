package dubbo

import (
	"os"
	"testing"

	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/flowlog"
	"github.com/sightline-io/sightline/internal/rpctest"
)

// TestMain lets the test binary run as the Dubbo test server or client
// (rpctest.Main): the agent never traces its own process.
func TestMain(m *testing.M) {
	rpctest.Main()
	os.Exit(m.Run())
}

// scenarioWants are the rows of rpctest's scenario (the heartbeat makes none).
func scenarioWants() []rpctest.Want {
	svc := rpctest.Service
	res := func(s, m string) string { return s + "." + m }
	return []rpctest.Want{
		{ID: rpctest.IDHello, Type: rpctest.MethodHello, Domain: svc, Resource: res(svc, rpctest.MethodHello), Code: 20,
			Version: rpctest.DubboVersion, TraceID: "4bf92f3577b34da6a3ce929d0e0e4736", SpanID: "00f067aa0ba902b7"},
		{ID: rpctest.IDMissing, Type: rpctest.MethodHello, Domain: rpctest.MissingService,
			Resource: res(rpctest.MissingService, rpctest.MethodHello), Code: 60, Status: flowlog.StatusServerError,
			Exception: "Not found exported service"},
		{ID: rpctest.IDFail, Type: rpctest.MethodFail, Domain: svc, Resource: res(svc, rpctest.MethodFail), Code: 20,
			Status: flowlog.StatusServerError, Exception: "java.lang.IllegalStateException"},
		{ID: rpctest.IDOneway, Type: rpctest.MethodNotify, Domain: svc, Resource: res(svc, rpctest.MethodNotify), NoCode: true},
		{ID: rpctest.IDSlow, Type: rpctest.MethodSlow, Domain: svc, Resource: res(svc, rpctest.MethodSlow), Code: 20},
		{ID: rpctest.IDFast, Type: rpctest.MethodFast, Domain: svc, Resource: res(svc, rpctest.MethodFast), Code: 20},
		{ID: rpctest.IDJSON, Type: rpctest.MethodHello, Domain: svc, Resource: res(svc, rpctest.MethodHello), Code: 20,
			Version: rpctest.DubboVersion},
		{ID: rpctest.IDBig, Type: rpctest.MethodBig, Domain: svc, Resource: res(svc, rpctest.MethodBig), Code: 20,
			MinReqLen: rpctest.BigSize, MinRespLen: rpctest.BigSize},
	}
}

// TestLiveDubbo drives the Go Dubbo test server (another process) with the
// test client (another process): heartbeat, success, service not found,
// exception, a fastjson call, one-way, two concurrent calls answered out of order and a call
// larger than the capture, all on one connection.
func TestLiveDubbo(t *testing.T) {
	rpctest.RunLive(t, "dubbo", New(l7.Config{}), scenarioWants())
}

// TestCaptureDubbo replays the recorded live traffic.
func TestCaptureDubbo(t *testing.T) {
	rpctest.CheckCapture(t, "dubbo", New(l7.Config{}), scenarioWants())
}

// TestCaptureDubboMidstream replays a hand-built capture that starts in the
// middle of a request: the parser recovers at the next frame.
func TestCaptureDubboMidstream(t *testing.T) {
	rpctest.CheckMidstream(t, "dubbo", New(l7.Config{}), scenarioWants())
}
