package krpc

import (
	"os"
	"strconv"
	"testing"

	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/flowlog"
	"github.com/sightline-io/sightline/internal/rpctest"
)

// TestMain lets the test binary run as the KRPC test server or client
// (rpctest.Main): the agent never traces its own process.
func TestMain(m *testing.M) {
	rpctest.Main()
	os.Exit(m.Run())
}

func scenarioWants() []rpctest.Want {
	w := func(id uint64, svc, msg int) rpctest.Want {
		s, m := strconv.Itoa(svc), strconv.Itoa(msg)
		return rpctest.Want{ID: id, Type: m, Domain: s, Resource: s + "/" + m}
	}
	hello := w(rpctest.IDHello, rpctest.KRPCService, rpctest.KRPCMsgHello)
	hello.TraceID, hello.SpanID = "gtwdemo-ac110006-463659-122997101", "gtwdemo-ac110006-463659-122997102"
	missing := w(rpctest.IDMissing, rpctest.KRPCMissingService, rpctest.KRPCMsgHello)
	missing.Code, missing.Status, missing.Exception = rpctest.KRPCNotFound, flowlog.StatusClientError, "NOT_FOUND"
	fail := w(rpctest.IDFail, rpctest.KRPCService, rpctest.KRPCMsgFail)
	fail.Code, fail.Status, fail.Exception = rpctest.KRPCBusinessError, flowlog.StatusServerError, "user not found"
	big := w(rpctest.IDBig, rpctest.KRPCService, rpctest.KRPCMsgBig)
	big.MinReqLen, big.MinRespLen = rpctest.BigSize, rpctest.BigSize
	return []rpctest.Want{hello, missing, fail,
		w(rpctest.IDSlow, rpctest.KRPCService, rpctest.KRPCMsgSlow), w(rpctest.IDFast, rpctest.KRPCService, rpctest.KRPCMsgFast), big}
}

// TestLiveKRPC drives the Go KRPC test server (another process) with the
// test client (another process): heartbeat, success with trace ids, an
// unknown service (NOT_FOUND), a business error with retMsg, two
// concurrent calls answered out of order and a call larger than the
// capture, on one connection. KRPC has no one-way calls.
func TestLiveKRPC(t *testing.T) {
	rpctest.RunLive(t, "krpc", New(l7.Config{}), scenarioWants())
}

// TestCaptureKRPC replays the recorded live traffic.
func TestCaptureKRPC(t *testing.T) {
	rpctest.CheckCapture(t, "krpc", New(l7.Config{}), scenarioWants())
}

// TestCaptureKRPCMidstream replays a hand-built capture that starts in the
// middle of a request: the parser recovers at the next frame.
func TestCaptureKRPCMidstream(t *testing.T) {
	rpctest.CheckMidstream(t, "krpc", New(l7.Config{}), scenarioWants())
}
