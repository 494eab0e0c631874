package kafka

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/flowlog"
	"github.com/sightline-io/sightline/internal/livetest"
)

// brokerEnv makes the test binary a kfake broker on the given port: the
// agent never traces its own process, so the broker must be another one.
const brokerEnv = "SIGHTLINE_KAFKA_BROKER_PORT"

func TestMain(m *testing.M) {
	if port := os.Getenv(brokerEnv); port != "" {
		os.Exit(runBroker(port))
	}
	os.Exit(m.Run())
}

func runBroker(port string) int {
	n, err := strconv.Atoi(port)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	c, err := kfake.NewCluster(kfake.Ports(n), kfake.SeedTopics(1, "orders"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer c.Close()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	return 0
}

// startBroker runs kfake in a child process and returns its address.
func startBroker(t *testing.T) (string, int) {
	port := livetest.FreePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	livetest.StartEnv(t, []string{brokerEnv + "=" + strconv.Itoa(port)}, os.Args[0])
	livetest.WaitTCP(t, addr, 20*time.Second)
	return addr, port
}

// driveKafka produces (acks=all and acks=0), consumes in a group with
// commits, and produces to a missing topic, with franz-go's newest versions.
func driveKafka(t *testing.T, addr string) {
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()

	prod, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.DefaultProduceTopic("orders"), kgo.ClientID("sightline-test"))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	for i := range 3 {
		if err := prod.ProduceSync(ctx, &kgo.Record{Value: []byte("order-" + strconv.Itoa(i))}).FirstErr(); err != nil {
			t.Fatalf("produce: %v", err)
		}
	}

	noAck, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.DefaultProduceTopic("orders"),
		kgo.RequiredAcks(kgo.NoAck()), kgo.DisableIdempotentWrite())
	if err != nil {
		t.Fatal(err)
	}
	if err := noAck.ProduceSync(ctx, &kgo.Record{Value: []byte("fire-and-forget")}).FirstErr(); err != nil {
		t.Fatalf("produce acks=0: %v", err)
	}
	noAck.Close()

	cons, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumerGroup("grp"), kgo.ConsumeTopics("orders"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.DisableAutoCommit(),
		kgo.FetchMaxWait(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	got := 0
	for got < 4 && ctx.Err() == nil {
		fs := cons.PollFetches(ctx)
		if errs := fs.Errors(); len(errs) > 0 {
			t.Fatalf("fetch: %v", errs)
		}
		got += fs.NumRecords()
	}
	if err := cons.CommitUncommittedOffsets(ctx); err != nil {
		t.Fatalf("commit: %v", err)
	}
	cons.Close() // LeaveGroup

	// A topic that does not exist (kfake does not auto-create): Metadata
	// answers UNKNOWN_TOPIC_OR_PARTITION until the produce gives up.
	missCtx, missCancel := context.WithTimeout(ctx, 1500*time.Millisecond)
	defer missCancel()
	miss, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer miss.Close()
	if err := miss.ProduceSync(missCtx, &kgo.Record{Topic: "missing", Value: []byte("x")}).FirstErr(); err == nil {
		t.Fatal("produce to a missing topic succeeded")
	}
}

func TestLiveKafka(t *testing.T) {
	a := livetest.StartAgent(t, New(l7.Config{}))
	addr, port := startBroker(t)
	stop := livetest.Record(t, "kafka.pcap", fmt.Sprintf("tcp port %d", port))
	driveKafka(t, addr)
	stop()
	srv := livetest.ServerPort(port)
	wait := func(what string, pred func(*flowlog.L7FlowLog) bool) flowlog.L7FlowLog {
		t.Helper()
		return a.WaitRows(t, what, 1, 20*time.Second, func(r *flowlog.L7FlowLog) bool { return srv(r) && pred(r) })[0]
	}
	checkKafkaRows(t, wait, flowlog.ObsServerProcess)
}

// checkKafkaRows asserts the rows of driveKafka's traffic.
func checkKafkaRows(t *testing.T, wait func(string, func(*flowlog.L7FlowLog) bool) flowlog.L7FlowLog, obs string) {
	t.Helper()
	ok := func(r *flowlog.L7FlowLog) bool {
		return r.ResponseStatus == flowlog.StatusSuccess && r.ResponseCode != nil && *r.ResponseCode == 0
	}
	check := func(r flowlog.L7FlowLog, oneWay bool) {
		t.Helper()
		if r.L7ProtocolStr != "Kafka" || r.ObservationPoint != obs || r.RequestID == nil || r.Type != flowlog.TypeSession ||
			(!oneWay && r.ResponseDuration == 0) {
			t.Errorf("row %s", livetest.Describe([]flowlog.L7FlowLog{r}))
		}
	}
	r := wait("Produce acks=all", func(r *flowlog.L7FlowLog) bool {
		return r.RequestType == "Produce" && r.RequestResource == "orders:0" && ok(r)
	})
	check(r, false)
	if r.RequestDomain != "orders" || r.Endpoint != "Produce orders" {
		t.Errorf("produce row %s", livetest.Describe([]flowlog.L7FlowLog{r}))
	}
	r = wait("Produce acks=0", func(r *flowlog.L7FlowLog) bool {
		return r.RequestType == "Produce" && r.ResponseCode == nil && r.RequestDomain == "orders" && r.ResponseDuration == 0
	})
	check(r, true)
	r = wait("ApiVersions", func(r *flowlog.L7FlowLog) bool { return r.RequestType == "ApiVersions" && ok(r) })
	check(r, false)
	if *r.RequestID != 0 {
		t.Errorf("first request id %d", *r.RequestID)
	}
	r = wait("Metadata", func(r *flowlog.L7FlowLog) bool {
		return r.RequestType == "Metadata" && r.RequestDomain == "orders" && ok(r)
	})
	check(r, false)
	r = wait("Fetch", func(r *flowlog.L7FlowLog) bool {
		return r.RequestType == "Fetch" && r.RequestResource == "orders:0" && ok(r)
	})
	check(r, false)
	for _, api := range []string{"FindCoordinator", "SyncGroup", "OffsetFetch"} {
		r = wait(api, func(r *flowlog.L7FlowLog) bool { return r.RequestType == api && r.RequestDomain == "grp" && ok(r) })
		check(r, false)
	}
	r = wait("JoinGroup", func(r *flowlog.L7FlowLog) bool { return r.RequestType == "JoinGroup" && r.RequestDomain == "grp" })
	check(r, false)
	r = wait("LeaveGroup", func(r *flowlog.L7FlowLog) bool { return r.RequestType == "LeaveGroup" && r.RequestDomain == "grp" })
	check(r, false)
	r = wait("OffsetCommit", func(r *flowlog.L7FlowLog) bool {
		return r.RequestType == "OffsetCommit" && r.RequestDomain == "orders" && ok(r)
	})
	check(r, false)
	r = wait("Metadata missing topic", func(r *flowlog.L7FlowLog) bool {
		return r.RequestType == "Metadata" && r.RequestDomain == "missing"
	})
	check(r, false)
	if r.ResponseCode == nil || *r.ResponseCode != 3 || r.ResponseStatus != flowlog.StatusServerError ||
		r.ResponseException != "UNKNOWN_TOPIC_OR_PARTITION" {
		t.Errorf("missing topic row %s", livetest.Describe([]flowlog.L7FlowLog{r}))
	}
}
