package mqtt

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/flowlog"
	"github.com/sightline-io/sightline/internal/livetest"
)

// pahoEnv makes the test binary a paho client of the broker at its value:
// the agent never traces its own process, so clients run in children.
const pahoEnv = "SIGHTLINE_MQTT_PAHO_BROKER"

func TestMain(m *testing.M) {
	livetest.Child(pahoEnv, runPaho)
	os.Exit(m.Run())
}

// runPaho connects with MQTT 3.1.1, subscribes, publishes QoS 1 to its own
// subscription (so the broker delivers it back) and disconnects.
func runPaho(addr string) error {
	opts := paho.NewClientOptions().AddBroker("tcp://" + addr).SetClientID("paho-1").SetProtocolVersion(4)
	c := paho.NewClient(opts)
	if t := c.Connect(); !t.WaitTimeout(10*time.Second) || t.Error() != nil {
		return fmt.Errorf("connect: %v", t.Error())
	}
	got := make(chan struct{}, 1)
	if t := c.Subscribe("paho/orders/+", 1, func(paho.Client, paho.Message) { got <- struct{}{} }); !t.WaitTimeout(10*time.Second) || t.Error() != nil {
		return fmt.Errorf("subscribe: %v", t.Error())
	}
	if t := c.Publish("paho/orders/98765432", 1, false, "hello"); !t.WaitTimeout(10*time.Second) || t.Error() != nil {
		return fmt.Errorf("publish: %v", t.Error())
	}
	select {
	case <-got:
	case <-time.After(10 * time.Second):
		return fmt.Errorf("no delivery")
	}
	time.Sleep(100 * time.Millisecond) // let the PUBACK of the delivery go out
	c.Disconnect(100)
	return nil
}

// startMosquitto runs mosquitto with an anonymous listener and one that
// needs a password, and returns their ports.
func startMosquitto(t *testing.T) (open, auth int) {
	livetest.RequireTools(t, "mosquitto", "mosquitto_pub", "mosquitto_sub", "mosquitto_passwd")
	dir := t.TempDir()
	pw := filepath.Join(dir, "passwd")
	livetest.Run(t, "mosquitto_passwd", "-c", "-b", pw, "bob", "right")
	open, auth = livetest.FreePort(t), livetest.FreePort(t)
	conf := fmt.Sprintf(`user root
per_listener_settings true
persistence false
log_dest stderr
listener %d 127.0.0.1
allow_anonymous true
listener %d 127.0.0.1
allow_anonymous false
password_file %s
`, open, auth, pw)
	cf := filepath.Join(dir, "mosquitto.conf")
	if err := os.WriteFile(cf, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	livetest.Start(t, "mosquitto", "-c", cf)
	livetest.WaitTCP(t, fmt.Sprintf("127.0.0.1:%d", open), 20*time.Second)
	livetest.WaitTCP(t, fmt.Sprintf("127.0.0.1:%d", auth), 20*time.Second)
	return open, auth
}

// liveTraceparent is the user property of the MQTT 5 QoS 1 publish.
const (
	liveTraceID     = "4bf92f3577b34da6a3ce929d0e0e4736"
	liveTraceparent = "00-" + liveTraceID + "-00f067aa0ba902b7-01"
)

// driveMQTT runs the mosquitto clients (3.1.1 and 5, QoS 0/1/2), an
// authentication failure and the paho client.
func driveMQTT(t *testing.T, open, auth int) {
	p, pa := strconv.Itoa(open), strconv.Itoa(auth)
	sub := exec.Command("mosquitto_sub", "-h", "127.0.0.1", "-p", p, "-V", "mqttv5", "-i", "sub-v5",
		"-q", "1", "-t", "sensors/#", "-C", "3", "-W", "30")
	out := new(strings.Builder)
	sub.Stdout, sub.Stderr = out, out
	if err := sub.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // subscribed
	pub := func(args ...string) {
		t.Helper()
		base := []string{"-h", "127.0.0.1", "-p", p}
		livetest.Run(t, "mosquitto_pub", append(base, args...)...)
	}
	pub("-V", "mqttv311", "-i", "pub-311-q0", "-q", "0", "-t", "sensors/12345678/temp", "-m", "21")
	pub("-V", "mqttv5", "-i", "pub-5-q1", "-q", "1", "-t", "sensors/12345678/temp", "-m", "22",
		"-D", "publish", "user-property", "traceparent", liveTraceparent)
	pub("-V", "mqttv311", "-i", "pub-311-q2", "-q", "2", "-t", "sensors/room/humidity", "-m", "40")
	if err := sub.Wait(); err != nil {
		t.Fatalf("mosquitto_sub: %v\n%s", err, out)
	}
	for _, v := range []string{"mqttv311", "mqttv5"} {
		c := exec.Command("mosquitto_pub", "-h", "127.0.0.1", "-p", pa, "-V", v, "-i", "bad-"+v,
			"-u", "bob", "-P", "wrong", "-t", "x", "-m", "y")
		if b, err := c.CombinedOutput(); err == nil {
			t.Fatalf("bad password accepted: %s", b)
		}
	}
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), pahoEnv+"=127.0.0.1:"+p)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("paho client: %v\n%s", err, b)
	}
}

func TestLiveMQTT(t *testing.T) {
	a := livetest.StartAgent(t, New(l7.Config{}))
	open, auth := startMosquitto(t)
	stop := livetest.Record(t, "mqtt.pcap", fmt.Sprintf("tcp port %d or tcp port %d", open, auth))
	driveMQTT(t, open, auth)
	stop()
	find := func(what string, pred func(*flowlog.L7FlowLog) bool) flowlog.L7FlowLog {
		t.Helper()
		return a.WaitRows(t, what, 1, 20*time.Second, func(r *flowlog.L7FlowLog) bool {
			return r.ObservationPoint == flowlog.ObsServerProcess && pred(r)
		})[0]
	}
	checkMQTTRows(t, find, open, auth, flowlog.ObsServerProcess)
	if failed := a.Match(func(r *flowlog.L7FlowLog) bool {
		return r.L7ProtocolStr == "MQTT" && (r.ResponseStatus == flowlog.StatusParseFailed || r.ResponseStatus == flowlog.StatusTimeout)
	}); len(failed) > 0 {
		t.Errorf("rows that failed:\n%s", livetest.Describe(failed))
	}
}

// checkMQTTRows asserts the rows of driveMQTT's traffic.
func checkMQTTRows(t *testing.T, find func(string, func(*flowlog.L7FlowLog) bool) flowlog.L7FlowLog, open, auth int, obs string) {
	t.Helper()
	srv := func(port int) func(*flowlog.L7FlowLog) bool {
		return func(r *flowlog.L7FlowLog) bool { return int(r.ServerPort) == port && r.L7ProtocolStr == "MQTT" }
	}
	at := srv(open)
	bad := func(r flowlog.L7FlowLog) { t.Errorf("row %s", livetest.Describe([]flowlog.L7FlowLog{r})) }
	code := func(r *flowlog.L7FlowLog) int32 {
		if r.ResponseCode == nil {
			return -1
		}
		return *r.ResponseCode
	}

	r := find("CONNECT 3.1.1", func(r *flowlog.L7FlowLog) bool {
		return at(r) && r.RequestType == "CONNECT" && r.RequestDomain == "pub-311-q0"
	})
	if r.Version != "3.1.1" || code(&r) != 0 || r.ResponseStatus != flowlog.StatusSuccess || r.ResponseDuration == 0 || r.ObservationPoint != obs {
		bad(r)
	}
	r = find("PUBLISH QoS 0", func(r *flowlog.L7FlowLog) bool {
		return at(r) && r.RequestType == "PUBLISH" && r.RequestDomain == "pub-311-q0"
	})
	if r.RequestResource != "sensors/12345678/temp" || r.Endpoint != "sensors/+/temp" || r.RequestID != nil ||
		r.ResponseStatus != flowlog.StatusSuccess || r.Type != flowlog.TypeSession {
		bad(r)
	}
	r = find("PUBLISH QoS 1 v5", func(r *flowlog.L7FlowLog) bool {
		return at(r) && r.RequestType == "PUBLISH" && r.RequestDomain == "pub-5-q1"
	})
	if r.Version != "5" || r.RequestID == nil || code(&r) != 0 || r.ResponseDuration == 0 || r.Endpoint != "sensors/+/temp" ||
		r.TraceID != liveTraceID || r.SpanID != "00f067aa0ba902b7" || r.Attributes[AttrPacketID] != strconv.Itoa(int(*r.RequestID)) {
		bad(r)
	}
	r = find("PUBLISH QoS 2", func(r *flowlog.L7FlowLog) bool {
		return at(r) && r.RequestType == "PUBLISH" && r.RequestDomain == "pub-311-q2"
	})
	if r.RequestID == nil || r.ResponseDuration == 0 || r.RequestResource != "sensors/room/humidity" || r.Type != flowlog.TypeSession {
		bad(r)
	}
	r = find("SUBSCRIBE v5", func(r *flowlog.L7FlowLog) bool {
		return at(r) && r.RequestType == "SUBSCRIBE" && r.RequestDomain == "sub-v5"
	})
	if r.RequestResource != "sensors/#" || code(&r) != 1 || r.ResponseStatus != flowlog.StatusSuccess || r.RequestID == nil {
		bad(r)
	}
	// Deliveries travel from the broker, so the broker is the row's client
	// and the subscriber process (traced too) is the server side.
	r = find("delivery QoS 1", func(r *flowlog.L7FlowLog) bool {
		return int(r.ClientPort) == open && r.RequestType == "PUBLISH" && r.RequestDomain == "sub-v5" && r.RequestID != nil
	})
	if *r.RequestID < serverIDs || code(&r) != 0 || r.Type != flowlog.TypeSession ||
		r.Attributes[AttrPacketID] != strconv.Itoa(int(*r.RequestID-serverIDs)) {
		bad(r)
	}
	// The broker forwards the publisher's user properties to the MQTT 5
	// subscriber: the delivery joins the publisher's trace.
	r = find("traced delivery", func(r *flowlog.L7FlowLog) bool {
		return int(r.ClientPort) == open && r.RequestType == "PUBLISH" && r.RequestDomain == "sub-v5" && r.TraceID == liveTraceID
	})
	if r.RequestID == nil || r.SpanID != "00f067aa0ba902b7" || r.RequestResource != "sensors/12345678/temp" {
		bad(r)
	}
	r = find("PUBLISH QoS 0 without properties", func(r *flowlog.L7FlowLog) bool {
		return at(r) && r.RequestType == "PUBLISH" && r.RequestDomain == "pub-311-q0"
	})
	if len(r.Attributes) != 0 || r.TraceID != "" {
		bad(r)
	}
	r = find("PINGREQ or DISCONNECT", func(r *flowlog.L7FlowLog) bool {
		return at(r) && r.RequestType == "DISCONNECT" && r.RequestDomain == "pub-5-q1"
	})
	if r.ResponseStatus != flowlog.StatusSuccess || r.Type != flowlog.TypeSession {
		bad(r)
	}
	r = find("bad password 3.1.1", func(r *flowlog.L7FlowLog) bool {
		return srv(auth)(r) && r.RequestType == "CONNECT" && r.RequestDomain == "bad-mqttv311"
	})
	if code(&r) != 5 || r.ResponseStatus != flowlog.StatusClientError || r.ResponseException != "not authorized" {
		bad(r)
	}
	r = find("bad password 5", func(r *flowlog.L7FlowLog) bool {
		return srv(auth)(r) && r.RequestType == "CONNECT" && r.RequestDomain == "bad-mqttv5"
	})
	if code(&r) != 0x87 && code(&r) != 0x86 || r.ResponseStatus != flowlog.StatusClientError {
		bad(r)
	}
	r = find("paho SUBSCRIBE", func(r *flowlog.L7FlowLog) bool {
		return at(r) && r.RequestType == "SUBSCRIBE" && r.RequestDomain == "paho-1"
	})
	if r.RequestResource != "paho/orders/+" || code(&r) != 1 {
		bad(r)
	}
	r = find("paho PUBLISH", func(r *flowlog.L7FlowLog) bool {
		return at(r) && r.RequestType == "PUBLISH" && r.RequestDomain == "paho-1" && r.RequestID != nil && *r.RequestID < serverIDs
	})
	if r.Endpoint != "paho/orders/+" || r.RequestResource != "paho/orders/98765432" || r.ResponseDuration == 0 {
		bad(r)
	}
}
