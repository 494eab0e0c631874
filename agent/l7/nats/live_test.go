package nats

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	natsgo "github.com/nats-io/nats.go"

	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/flowlog"
	"github.com/sightline-io/sightline/internal/livetest"
)

// The test binary re-executed with serverEnv runs nats-server on the port
// it holds, with clientEnv a nats.go client of that port: the agent does not
// trace its own process.
const (
	serverEnv = "SIGHTLINE_NATS_SERVER"
	clientEnv = "SIGHTLINE_NATS_CLIENT"
	// liveToken authenticates clients; no row may contain it.
	liveToken = "t0ken-s3cr3t"
)

func TestMain(m *testing.M) {
	livetest.Child(serverEnv, runServer)
	livetest.Child(clientEnv, runClient)
	os.Exit(m.Run())
}

func runServer(port string) error {
	p, err := strconv.Atoi(port)
	if err != nil {
		return err
	}
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: p, NoLog: true, NoSigs: true, Authorization: liveToken})
	if err != nil {
		return fmt.Errorf("nats-server: %w", err)
	}
	s.Start()
	s.WaitForShutdown() // killed by the test's cleanup
	return nil
}

// runClient publishes, subscribes, makes requests (answered, and with no
// responders), publishes with headers, and connects with a wrong token.
func runClient(url string) error {
	nc, err := natsgo.Connect(url, natsgo.Token(liveToken))
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer nc.Close()
	svc, err := natsgo.Connect(url, natsgo.Token(liveToken))
	if err != nil {
		return fmt.Errorf("connect service: %w", err)
	}
	defer svc.Close()
	if _, err := svc.Subscribe("svc.echo", func(m *natsgo.Msg) { _ = m.Respond(m.Data) }); err != nil {
		return err
	}
	if err := svc.Flush(); err != nil {
		return err
	}
	sub, err := nc.SubscribeSync("orders.*")
	if err != nil {
		return err
	}
	if err := nc.Publish("orders.42", []byte("payload")); err != nil {
		return err
	}
	if _, err := sub.NextMsg(5 * time.Second); err != nil {
		return fmt.Errorf("no message: %w", err)
	}
	if err := sub.Unsubscribe(); err != nil {
		return err
	}
	if _, err := nc.Request("svc.echo", []byte("ping"), 5*time.Second); err != nil {
		return fmt.Errorf("request: %w", err)
	}
	if _, err := nc.Request("svc.none", []byte("x"), 5*time.Second); !errors.Is(err, natsgo.ErrNoResponders) {
		return fmt.Errorf("request without responders: %v", err)
	}
	msg := natsgo.NewMsg("orders.h")
	msg.Header.Set("X-Trace", "abc")
	msg.Data = []byte("with headers")
	if err := nc.PublishMsg(msg); err != nil {
		return err
	}
	if err := nc.Flush(); err != nil {
		return err
	}
	if _, err := natsgo.Connect(url, natsgo.Token("wrong-token"), natsgo.MaxReconnects(0)); err == nil {
		return errors.New("a wrong token was accepted")
	}
	return nil
}

// expect is one row a live or replayed run must contain.
type expect struct {
	reqType, domain, endpoint string
	status                    flowlog.ResponseStatus
	exc                       string
	code                      int32 // -1: none
	hasID                     bool
	oneWay                    bool
}

var liveRows = []expect{
	{reqType: "CONNECT", endpoint: "CONNECT", code: -1},
	{reqType: "CONNECT", endpoint: "CONNECT", status: flowlog.StatusClientError, exc: "Authorization Violation", code: -1},
	{reqType: "PING", endpoint: "PING", code: -1},
	{reqType: "SUB", domain: "svc.echo", endpoint: "svc.echo", code: -1, oneWay: true},
	{reqType: "SUB", domain: "orders.*", endpoint: "orders.*", code: -1, oneWay: true},
	{reqType: "PUB", domain: "orders.42", endpoint: "orders.*", code: -1, oneWay: true},
	{reqType: "MSG", domain: "orders.42", endpoint: "orders.*", code: -1, oneWay: true},
	{reqType: "UNSUB", domain: "orders.*", endpoint: "orders.*", code: -1, oneWay: true},
	{reqType: "PUB", domain: "svc.echo", endpoint: "svc.echo", code: -1, hasID: true},
	{reqType: "MSG", domain: "svc.echo", endpoint: "svc.echo", code: -1, oneWay: true},
	{reqType: "PUB", domain: "svc.none", endpoint: "svc.none", status: flowlog.StatusServerError, exc: "No Responders", code: 503, hasID: true},
	{reqType: "HPUB", domain: "orders.h", endpoint: "orders.h", code: -1, oneWay: true},
}

// checkRows asserts that rows (of one server) hold every expected row at
// obs (MSG rows, sent by the server, at the opposite one when seen by a
// process), and no timeout, parse failure or secret.
func checkRows(t *testing.T, rows []flowlog.L7FlowLog, obs string) {
	t.Helper()
	for _, w := range liveRows {
		at := obs
		if w.reqType == "MSG" && obs != flowlog.ObsLocalNIC {
			at = map[string]string{flowlog.ObsServerProcess: flowlog.ObsClientProcess, flowlog.ObsClientProcess: flowlog.ObsServerProcess}[obs]
		}
		var r *flowlog.L7FlowLog
		for i := range rows {
			if rows[i].ObservationPoint == at && rows[i].RequestType == w.reqType && rows[i].RequestDomain == w.domain &&
				rows[i].ResponseStatus == w.status {
				r = &rows[i]
				break
			}
		}
		if r == nil {
			t.Errorf("%s: no %s row %q status %d", at, w.reqType, w.domain, w.status)
			continue
		}
		desc := livetest.Describe([]flowlog.L7FlowLog{*r})
		if r.L7Protocol != flowlog.L7NATS || r.Type != flowlog.TypeSession || r.Endpoint != w.endpoint || r.RequestResource != w.domain {
			t.Errorf("protocol/type/endpoint/resource: %s", desc)
		}
		if r.ResponseException != w.exc {
			t.Errorf("exception %q, want %q: %s", r.ResponseException, w.exc, desc)
		}
		if (w.code < 0) != (r.ResponseCode == nil) || r.ResponseCode != nil && *r.ResponseCode != w.code {
			t.Errorf("code, want %d: %s", w.code, desc)
		}
		if w.hasID != (r.RequestID != nil) {
			t.Errorf("request id, want %v: %s", w.hasID, desc)
		}
		if w.oneWay != (r.ResponseLength == -1 && r.ResponseDuration == 0) {
			t.Errorf("one-way %v: %s", w.oneWay, desc)
		}
		if !w.oneWay && r.ResponseDuration == 0 && obs != flowlog.ObsLocalNIC {
			t.Errorf("zero duration: %s", desc)
		}
	}
	for i := range rows {
		r := &rows[i]
		if r.ResponseStatus == flowlog.StatusTimeout || r.ResponseStatus == flowlog.StatusParseFailed || r.Type != flowlog.TypeSession {
			t.Errorf("unexpected row: %s", livetest.Describe(rows[i:i+1]))
		}
		if strings.Contains(r.RequestResource+r.RequestDomain+r.ResponseException, liveToken) {
			t.Errorf("the token is stored: %s", livetest.Describe(rows[i:i+1]))
		}
	}
}

// serverRows selects the rows of the server on port, in either column: MSG
// rows name the subscriber as their server.
func serverRows(port int) func(*flowlog.L7FlowLog) bool {
	return func(r *flowlog.L7FlowLog) bool { return int(r.ServerPort) == port || int(r.ClientPort) == port }
}

// TestLiveNATS runs nats-server and a nats.go client (publish, subscribe,
// request-reply, no responders, headers, a wrong token) as two processes.
func TestLiveNATS(t *testing.T) {
	port := livetest.FreePort(t)
	stop := livetest.Record(t, "nats.pcap", fmt.Sprintf("tcp port %d", port))
	a := livetest.StartAgent(t, New(l7.Config{}))
	livetest.StartEnv(t, []string{fmt.Sprintf("%s=%d", serverEnv, port)}, os.Args[0], "-test.run=^$")
	livetest.WaitTCP(t, fmt.Sprintf("127.0.0.1:%d", port), 30*time.Second)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=nats://127.0.0.1:%d", clientEnv, port))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("client: %v\n%s", err, out)
	}
	// The PING sent with the refused CONNECT is reported failed too, but
	// only where it was seen: the server may close before reading it.
	a.WaitRows(t, "auth error at both ends", 2, 30*time.Second, func(r *flowlog.L7FlowLog) bool {
		return int(r.ServerPort) == port && r.RequestType == "CONNECT" && r.ResponseException == "Authorization Violation"
	})
	time.Sleep(500 * time.Millisecond)
	stop()
	rows := a.Match(serverRows(port))
	t.Logf("rows:\n%s", livetest.Describe(rows))
	checkRows(t, rows, flowlog.ObsServerProcess)
	checkRows(t, rows, flowlog.ObsClientProcess)
}
