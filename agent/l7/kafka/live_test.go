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

// produced maps the offset franz-go reported for each record of "orders"
// to the trace id of the traceparent header the record carries.
type produced map[int64]string

// traceparent is a W3C traceparent for the i-th record, and its trace id.
func traceparent(i int) (header, traceID string) {
	traceID = fmt.Sprintf("4bf92f3577b34da6a3ce929d0e0e%04x", i)
	return "00-" + traceID + "-00f067aa0ba902b7-01", traceID
}

func tracedRecord(i int, value string) *kgo.Record {
	h, _ := traceparent(i)
	return &kgo.Record{Value: []byte(value), Headers: []kgo.RecordHeader{{Key: "traceparent", Value: []byte(h)}}}
}

// driveKafka produces (acks=all and acks=0), consumes in a group with
// commits, and produces to a missing topic, with franz-go's newest versions.
// Every record carries a traceparent header; it returns the records' offsets
// as the producer and the consumer saw them.
func driveKafka(t *testing.T, addr string) (prodOffsets, consOffsets produced) {
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()

	// Uncompressed batches: record headers are read only from those.
	prod, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.DefaultProduceTopic("orders"), kgo.ClientID("sightline-test"),
		kgo.ProducerBatchCompression(kgo.NoCompression()))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	prodOffsets, consOffsets = produced{}, produced{}
	keep := func(res kgo.ProduceResults, i0 int) {
		t.Helper()
		if err := res.FirstErr(); err != nil {
			t.Fatalf("produce: %v", err)
		}
		for i, r := range res {
			_, id := traceparent(i0 + i)
			prodOffsets[r.Record.Offset] = id
		}
	}
	// Two records in one call (one batch when franz-go drains them
	// together), then one per call.
	keep(prod.ProduceSync(ctx, tracedRecord(0, "order-0"), tracedRecord(1, "order-1")), 0)
	keep(prod.ProduceSync(ctx, tracedRecord(2, "order-2")), 2)

	noAck, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.DefaultProduceTopic("orders"),
		kgo.RequiredAcks(kgo.NoAck()), kgo.DisableIdempotentWrite(), kgo.ProducerBatchCompression(kgo.NoCompression()))
	if err != nil {
		t.Fatal(err)
	}
	if err := noAck.ProduceSync(ctx, tracedRecord(3, "fire-and-forget")).FirstErr(); err != nil {
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
		fs.EachRecord(func(r *kgo.Record) {
			for _, h := range r.Headers {
				if h.Key == "traceparent" && len(h.Value) == 55 {
					consOffsets[r.Offset] = string(h.Value[3:35])
				}
			}
		})
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
	return prodOffsets, consOffsets
}

func TestLiveKafka(t *testing.T) {
	a := livetest.StartAgent(t, New(l7.Config{}))
	addr, port := startBroker(t)
	stop := livetest.Record(t, "kafka.pcap", fmt.Sprintf("tcp port %d", port))
	prodOffsets, consOffsets := driveKafka(t, addr)
	stop()
	srv := livetest.ServerPort(port)
	wait := func(what string, pred func(*flowlog.L7FlowLog) bool) flowlog.L7FlowLog {
		t.Helper()
		return a.WaitRows(t, what, 1, 20*time.Second, func(r *flowlog.L7FlowLog) bool { return srv(r) && pred(r) })[0]
	}
	checkKafkaRows(t, wait, flowlog.ObsServerProcess)
	// The rows of the last fetches may still be on their way: retry.
	var errs []string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		if errs = linkingErrors(a.Match(srv), prodOffsets, consOffsets); len(errs) == 0 || time.Now().After(deadline) {
			break
		}
	}
	for _, e := range errs {
		t.Error(e)
	}
}

// checkLinking asserts the message-queue attributes against the offsets
// franz-go reported: the acks=all Produce rows' [base_offset,
// base_offset+record_count) ranges cover exactly the produced offsets, each
// row carrying its first record's trace id; every Fetch row that returned
// records starts at a consumed offset with that record's trace id, and the
// Fetch ranges cover every consumed offset.
func checkLinking(t *testing.T, rows []flowlog.L7FlowLog, prodOffsets, consOffsets produced) {
	t.Helper()
	for _, e := range linkingErrors(rows, prodOffsets, consOffsets) {
		t.Error(e)
	}
}

// linkingErrors returns what checkLinking finds wrong.
func linkingErrors(rows []flowlog.L7FlowLog, prodOffsets, consOffsets produced) (errs []string) {
	errorf := func(format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) }
	if len(prodOffsets) != 3 || len(consOffsets) != 4 {
		errorf("franz-go offsets: produced %v consumed %v", prodOffsets, consOffsets)
		return errs
	}
	attr := func(r *flowlog.L7FlowLog, k string) (int64, bool) {
		v, ok := r.Attributes[k]
		if !ok {
			return 0, false
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			errorf("attribute %s=%q: %v", k, v, err)
		}
		return n, err == nil
	}
	covered := map[int64]int{}
	fetched := map[int64]bool{}
	for i := range rows {
		r := &rows[i]
		switch {
		case r.RequestType == "Produce" && r.RequestDomain == "orders" && r.ResponseCode != nil:
			base, ok1 := attr(r, AttrBaseOffset)
			n, ok2 := attr(r, AttrRecordCount)
			if !ok1 || !ok2 || n < 1 || r.RequestResource != "orders:0" || r.Attributes[AttrTopicPartition] != "orders:0" {
				errorf("produce row without offsets: %s", livetest.Describe(rows[i:i+1]))
				continue
			}
			if want := prodOffsets[base]; r.TraceID != want || r.SpanID != "00f067aa0ba902b7" {
				errorf("produce at %d: trace %q span %q, want %q", base, r.TraceID, r.SpanID, want)
			}
			for o := base; o < base+n; o++ {
				covered[o]++
			}
		case r.RequestType == "Produce" && r.RequestDomain == "orders":
			// acks=0: no response, so no base offset; the count and trace
			// come from the request.
			if n, ok := attr(r, AttrRecordCount); !ok || n != 1 || r.TraceID == "" {
				errorf("acks=0 produce row: %s", livetest.Describe(rows[i:i+1]))
			}
		case r.RequestType == "Fetch":
			first, ok1 := attr(r, AttrFirstOffset)
			last, ok2 := attr(r, AttrLastOffset)
			if !ok1 {
				continue // an empty long poll
			}
			want, seen := consOffsets[first]
			if !ok2 || last < first || last-first > 1000 || !seen || r.TraceID != want || r.Attributes[AttrTopicPartition] != "orders:0" {
				errorf("fetch row [%d,%d] (consumed %v): %s", first, last, consOffsets, livetest.Describe(rows[i:i+1]))
				continue
			}
			for o := first; o <= last; o++ {
				fetched[o] = true
			}
		}
	}
	for o := range prodOffsets {
		if covered[o] != 1 {
			errorf("produced offset %d covered by %d Produce rows", o, covered[o])
		}
	}
	if len(covered) != len(prodOffsets) {
		errorf("Produce rows cover %v, franz-go produced %v", covered, prodOffsets)
	}
	for o := range consOffsets {
		if !fetched[o] {
			errorf("consumed offset %d in no Fetch row's range %v", o, fetched)
		}
	}
	return errs
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
