package amqp

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/flowlog"
	"github.com/sightline-io/sightline/internal/livetest"
)

// clientEnv makes the test binary an amqp091-go client of the URL in its
// value: the agent never traces its own process.
const clientEnv = "SIGHTLINE_AMQP_CLIENT_URL"

func TestMain(m *testing.M) {
	livetest.Child(clientEnv, runClient)
	os.Exit(m.Run())
}

// liveTraceparent is the W3C traceparent of the i-th published message,
// and its trace id.
func liveTraceparent(i int) (header, traceID string) {
	traceID = fmt.Sprintf("4bf92f3577b34da6a3ce929d0e0e%04x", i)
	return "00-" + traceID + "-00f067aa0ba902b7-01", traceID
}

// runClient declares a queue, publishes (message ids order-0 and order-1,
// each with a traceparent header), gets, consumes, declares a missing queue
// passively (404) and closes.
func runClient(url string) error {
	conn, err := amqp091.Dial(url)
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("channel: %w", err)
	}
	if _, err := ch.QueueDeclare("orders", false, true, false, false, nil); err != nil {
		return fmt.Errorf("declare: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := range 2 {
		tp, _ := liveTraceparent(i)
		if err := ch.PublishWithContext(ctx, "", "orders", false, false, amqp091.Publishing{
			Body: []byte("order-" + strconv.Itoa(i)), MessageId: "order-" + strconv.Itoa(i),
			Headers: amqp091.Table{"attempt": int32(1), "traceparent": tp},
		}); err != nil {
			return fmt.Errorf("publish: %w", err)
		}
	}
	time.Sleep(200 * time.Millisecond) // let the messages reach the queue
	if _, ok, err := ch.Get("orders", true); err != nil || !ok {
		return fmt.Errorf("get: ok=%v err=%v", ok, err)
	}
	msgs, err := ch.Consume("orders", "", true, false, false, false, nil)
	if err != nil {
		return fmt.Errorf("consume: %w", err)
	}
	select {
	case <-msgs:
	case <-ctx.Done():
		return errors.New("no delivery")
	}
	ch2, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("channel 2: %w", err)
	}
	if _, err := ch2.QueueDeclarePassive("missing", false, false, false, false, nil); err == nil {
		return errors.New("passive declare of a missing queue succeeded")
	}
	if err := ch.Close(); err != nil {
		return fmt.Errorf("close channel: %w", err)
	}
	return conn.Close()
}

// startRabbit runs rabbitmq-server with its node, data, logs and cookie in
// a temporary directory and returns its AMQP port. Start-up takes several
// seconds; the Erlang runtime starts epmd if none runs.
func startRabbit(t *testing.T) int {
	livetest.RequireTools(t, "/usr/lib/rabbitmq/bin/rabbitmq-server")
	dir := t.TempDir()
	port, dist := livetest.FreePort(t), livetest.FreePort(t)
	plugins := filepath.Join(dir, "enabled_plugins")
	if err := os.WriteFile(plugins, []byte("[].\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{
		"HOME=" + dir,
		"RABBITMQ_NODE_PORT=" + strconv.Itoa(port),
		"RABBITMQ_NODE_IP_ADDRESS=127.0.0.1",
		"RABBITMQ_DIST_PORT=" + strconv.Itoa(dist),
		"RABBITMQ_NODENAME=sightline-" + strconv.Itoa(port) + "@localhost",
		"RABBITMQ_MNESIA_BASE=" + filepath.Join(dir, "mnesia"),
		"RABBITMQ_LOG_BASE=" + filepath.Join(dir, "log"),
		"RABBITMQ_LOGS=-",
		"RABBITMQ_CONFIG_FILE=" + filepath.Join(dir, "rabbitmq"),
		"RABBITMQ_ENABLED_PLUGINS_FILE=" + plugins,
		"RABBITMQ_PID_FILE=" + filepath.Join(dir, "pid"),
	}
	livetest.StartEnv(t, env, "/usr/lib/rabbitmq/bin/rabbitmq-server")
	livetest.WaitTCP(t, "127.0.0.1:"+strconv.Itoa(port), 45*time.Second)
	return port
}

func TestLiveAMQP(t *testing.T) {
	a := livetest.StartAgent(t, New(l7.Config{}))
	port := startRabbit(t)
	stop := livetest.Record(t, "amqp.pcap", fmt.Sprintf("tcp port %d", port))
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), clientEnv+"=amqp://guest:guest@127.0.0.1:"+strconv.Itoa(port)+"/")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("client: %v\n%s", err, out)
	}
	stop()
	find := func(what string, pred func(*flowlog.L7FlowLog) bool) flowlog.L7FlowLog {
		t.Helper()
		return a.WaitRows(t, what, 1, 20*time.Second, func(r *flowlog.L7FlowLog) bool {
			return r.ObservationPoint == flowlog.ObsServerProcess && pred(r)
		})[0]
	}
	checkAMQPRows(t, find, port, flowlog.ObsServerProcess)
	checkAMQPLinking(t, find, port)
	if failed := a.Match(func(r *flowlog.L7FlowLog) bool {
		return r.L7ProtocolStr == "AMQP" && (r.ResponseStatus == flowlog.StatusParseFailed || r.ResponseStatus == flowlog.StatusTimeout)
	}); len(failed) > 0 {
		t.Errorf("rows that failed:\n%s", livetest.Describe(failed))
	}
}

// checkAMQPRows asserts the rows of runClient's traffic.
func checkAMQPRows(t *testing.T, find func(string, func(*flowlog.L7FlowLog) bool) flowlog.L7FlowLog, port int, obs string) {
	t.Helper()
	bad := func(r flowlog.L7FlowLog) { t.Errorf("row %s", livetest.Describe([]flowlog.L7FlowLog{r})) }
	at := func(typ string) func(*flowlog.L7FlowLog) bool {
		return func(r *flowlog.L7FlowLog) bool {
			return int(r.ServerPort) == port && r.L7ProtocolStr == "AMQP" && r.RequestType == typ
		}
	}
	ok := func(r flowlog.L7FlowLog, oneWay bool) {
		t.Helper()
		if r.ResponseStatus != flowlog.StatusSuccess || r.Type != flowlog.TypeSession || r.RequestID == nil ||
			r.Version != "0-9-1" || r.ObservationPoint != obs || (!oneWay && r.ResponseDuration == 0) {
			bad(r)
		}
	}
	r := find("Connection.Open", at("Connection.Open"))
	ok(r, false)
	if r.RequestDomain != "/" || *r.RequestID != 0 {
		bad(r)
	}
	r = find("Channel.Open", at("Channel.Open"))
	ok(r, false)
	r = find("Queue.Declare", func(r *flowlog.L7FlowLog) bool {
		return at("Queue.Declare")(r) && r.RequestResource == "orders"
	})
	ok(r, false)
	if r.Endpoint != "orders" || *r.RequestID != 1 {
		bad(r)
	}
	r = find("Basic.Publish", at("Basic.Publish"))
	ok(r, true)
	if r.RequestResource != "/orders" || r.ResponseDuration != 0 {
		bad(r)
	}
	r = find("Basic.Get", at("Basic.Get"))
	ok(r, false)
	r = find("Basic.Consume", at("Basic.Consume"))
	ok(r, false)
	r = find("Queue.Declare missing", func(r *flowlog.L7FlowLog) bool {
		return at("Queue.Declare")(r) && r.RequestResource == "missing"
	})
	if r.ResponseCode == nil || *r.ResponseCode != 404 || r.ResponseStatus != flowlog.StatusClientError ||
		!strings.HasPrefix(r.ResponseException, "NOT_FOUND") || *r.RequestID != 2 {
		bad(r)
	}
	r = find("Connection.Close", at("Connection.Close"))
	ok(r, false)
	// Deliveries travel from the broker: it is the row's client, and the
	// consumer process (traced too) the server side.
	r = find("Basic.Deliver", func(r *flowlog.L7FlowLog) bool {
		return int(r.ClientPort) == port && r.RequestType == "Basic.Deliver"
	})
	ok(r, true)
	if r.RequestResource != "/orders" {
		bad(r)
	}
}

// checkAMQPLinking asserts the message ids and trace contexts runClient's
// messages carry: both publishes, the Basic.Get that took order-0 (its
// Get-Ok carries the properties) and the delivery of order-1.
func checkAMQPLinking(t *testing.T, find func(string, func(*flowlog.L7FlowLog) bool) flowlog.L7FlowLog, port int) {
	t.Helper()
	with := func(typ, id string) func(*flowlog.L7FlowLog) bool {
		return func(r *flowlog.L7FlowLog) bool {
			return (int(r.ServerPort) == port || int(r.ClientPort) == port) && r.RequestType == typ &&
				r.Attributes[AttrMessageID] == id
		}
	}
	for _, c := range []struct {
		typ string
		i   int
	}{{"Basic.Publish", 0}, {"Basic.Publish", 1}, {"Basic.Get", 0}, {"Basic.Deliver", 1}} {
		id := "order-" + strconv.Itoa(c.i)
		r := find(c.typ+" "+id, with(c.typ, id))
		if _, trace := liveTraceparent(c.i); r.TraceID != trace || r.SpanID != "00f067aa0ba902b7" {
			t.Errorf("%s %s: trace %q span %q, want %q", c.typ, id, r.TraceID, r.SpanID, trace)
		}
	}
}
