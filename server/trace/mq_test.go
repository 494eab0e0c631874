package trace

import (
	"strconv"
	"testing"
	"time"

	"github.com/sightline-io/sightline/flowlog"
)

// withKafka makes a Kafka Produce (base, count) or Fetch (first, last) span on topic:partition tp.
func withKafka(reqType, tp string, a, b int64) func(*flowlog.L7FlowLog) {
	return func(r *flowlog.L7FlowLog) {
		r.L7Protocol, r.L7ProtocolStr, r.RequestType, r.RequestResource, r.Endpoint = flowlog.L7Kafka, "Kafka", reqType, tp, tp
		switch reqType {
		case "Produce":
			r.Attributes = map[string]string{attrBaseOffset: strconv.FormatInt(a, 10), attrRecordCount: strconv.FormatInt(b, 10)}
		case "Fetch":
			r.Attributes = map[string]string{attrFirstOffset: strconv.FormatInt(a, 10), attrLastOffset: strconv.FormatInt(b, 10)}
		}
	}
}

// mqHop returns a Kafka request seen at the client process (c-p, agent) and
// at the broker (s, agent "broker" on 10.0.9.9:9092); ids id and id+1.
func mqHop(id uint64, agent, ip string, cport uint16, seq uint32, at time.Duration, kafka func(*flowlog.L7FlowLog)) []flowlog.L7FlowLog {
	tp := tuple{ip, "10.0.9.9", cport, 9092, seq, seq + 1}
	return []flowlog.L7FlowLog{
		sp(id, "c-p", agent, at, 5*time.Millisecond, withTuple(tp), kafka),
		sp(id+1, "s", "broker", at+100*time.Microsecond, 4*time.Millisecond, withTuple(tp), kafka),
	}
}

func TestMQProduceFetch(t *testing.T) {
	for _, opt := range []Options{{}, {Scan: true}} {
		t.Run("scan="+strconv.FormatBool(opt.Scan), func(t *testing.T) {
			st := openStore(t)
			var rows []flowlog.L7FlowLog
			add := func(r []flowlog.L7FlowLog) { rows = append(rows, r...) }
			// 1-2: the produce; 3-4: its fetch 2 s later.
			add(mqHop(1, "prod", "10.0.1.1", 40000, 1000, 0, withKafka("Produce", "orders:0", 100, 5)))
			add(mqHop(3, "cons", "10.0.2.1", 41000, 2000, 2*time.Second, withKafka("Fetch", "orders:0", 98, 102)))
			// Adversarial: the same offsets on another partition, on another
			// broker port, and after the topic was recreated (1 h later, and a
			// producer 1 h before); a fetch before the produce.
			add(mqHop(5, "cons", "10.0.2.1", 41001, 3000, 3*time.Second, withKafka("Fetch", "orders:1", 100, 104)))
			other := mqHop(7, "cons", "10.0.2.1", 41002, 4000, 3*time.Second, withKafka("Fetch", "orders:0", 100, 104))
			for i := range other {
				other[i].ServerPort = 9093
			}
			add(other)
			add(mqHop(9, "cons", "10.0.2.1", 41003, 5000, time.Hour, withKafka("Fetch", "orders:0", 100, 104)))
			add(mqHop(11, "prod", "10.0.1.1", 40001, 6000, -time.Hour, withKafka("Produce", "orders:0", 100, 5)))
			add(mqHop(13, "cons", "10.0.2.1", 41004, 7000, -2*time.Second, withKafka("Fetch", "orders:0", 100, 104)))
			// Unknown offsets never link.
			add(mqHop(15, "cons", "10.0.2.1", 41005, 8000, 2*time.Second, withProto(flowlog.L7Kafka, "Fetch", "orders:0")))
			insert(t, st, rows...)
			want := map[uint64]edge{1: {}, 2: {1, RuleTCPSeq}, 3: {1, RuleMQ}, 4: {3, RuleTCPSeq}}
			for _, seed := range []uint64{1, 2, 3, 4} {
				tr := mustAssemble(t, st, seed, opt)
				assertShape(t, tr, want)
			}
			// The recreated topic's fetch finds only its own (absent) producer.
			assertShape(t, mustAssemble(t, st, 9, opt), map[uint64]edge{9: {}, 10: {9, RuleTCPSeq}})
			assertShape(t, mustAssemble(t, st, 11, opt), map[uint64]edge{11: {}, 12: {11, RuleTCPSeq}})
		})
	}
}

// TestMQMultiPartitionFetch: a Fetch of several partitions names only the
// topic in request_resource; kafka.topic_partition says which partition
// its offsets are on, and that is what links.
func TestMQMultiPartitionFetch(t *testing.T) {
	st := openStore(t)
	part := func(tp string) func(*flowlog.L7FlowLog) {
		return func(r *flowlog.L7FlowLog) { r.Attributes[attrTopicPartition] = tp }
	}
	var rows []flowlog.L7FlowLog
	rows = append(rows, mqHop(1, "prod", "10.0.1.1", 40000, 1000, 0, func(r *flowlog.L7FlowLog) {
		withKafka("Produce", "orders:1", 100, 5)(r)
		part("orders:1")(r)
	})...)
	rows = append(rows, mqHop(3, "cons", "10.0.2.1", 41000, 2000, time.Second, func(r *flowlog.L7FlowLog) {
		withKafka("Fetch", "orders", 100, 104)(r)
		part("orders:1")(r)
	})...)
	// The same offsets, reported for partition 0 of the same multi-partition fetch request.
	rows = append(rows, mqHop(5, "cons", "10.0.2.1", 41001, 3000, time.Second, func(r *flowlog.L7FlowLog) {
		withKafka("Fetch", "orders", 100, 104)(r)
		part("orders:0")(r)
	})...)
	insert(t, st, rows...)
	want := map[uint64]edge{1: {}, 2: {1, RuleTCPSeq}, 3: {1, RuleMQ}, 4: {3, RuleTCPSeq}}
	for _, seed := range []uint64{1, 3} {
		assertShape(t, mustAssemble(t, st, seed, Options{}), want)
	}
}

func TestMQBatchedFetch(t *testing.T) {
	for _, opt := range []Options{{}, {Scan: true}} {
		t.Run("scan="+strconv.FormatBool(opt.Scan), func(t *testing.T) {
			st := openStore(t)
			var rows []flowlog.L7FlowLog
			// Two producers (different apps) write 100-104 and 105-109; one
			// fetch reads 100-109.
			rows = append(rows, mqHop(1, "prodA", "10.0.1.1", 40000, 1000, 0, withKafka("Produce", "orders:0", 100, 5))...)
			rows = append(rows, mqHop(3, "prodB", "10.0.1.2", 40000, 2000, time.Second, withKafka("Produce", "orders:0", 105, 5))...)
			rows = append(rows, mqHop(5, "cons", "10.0.2.1", 41000, 3000, 3*time.Second, withKafka("Fetch", "orders:0", 100, 109))...)
			insert(t, st, rows...)
			// From each producer: only its own producer, and the shared fetch.
			for _, seed := range []uint64{1, 2} {
				assertShape(t, mustAssemble(t, st, seed, opt), map[uint64]edge{1: {}, 2: {1, RuleTCPSeq}, 5: {1, RuleMQ}, 6: {5, RuleTCPSeq}})
			}
			for _, seed := range []uint64{3, 4} {
				assertShape(t, mustAssemble(t, st, seed, opt), map[uint64]edge{3: {}, 4: {3, RuleTCPSeq}, 5: {3, RuleMQ}, 6: {5, RuleTCPSeq}})
			}
			// From the fetch: the whole batch, under the earliest producer.
			for _, seed := range []uint64{5, 6} {
				assertShape(t, mustAssemble(t, st, seed, opt), map[uint64]edge{
					1: {}, 2: {1, RuleTCPSeq}, 3: {}, 4: {3, RuleTCPSeq}, 5: {1, RuleMQ}, 6: {5, RuleTCPSeq}})
			}
		})
	}
}

func TestMQLinkRule(t *testing.T) {
	opt := Options{ClockSkew: time.Second}.withDefaults()
	p := row{id: 1, reqType: "Produce", resource: "t:0", ip1: "10.0.9.9", sport: 9092, start: t0, mq: mqProduceRange("100", "5")}
	f := row{id: 2, reqType: "Fetch", resource: "t:0", ip1: "10.0.9.9", sport: 9092, start: t0.Add(time.Second), mq: mqFetchRange("104", "200")}
	with := func(r row, m func(*row)) row { m(&r); return r }
	cases := []struct {
		name string
		p, f row
		want bool
	}{
		{"last offset", p, f, true},
		{"first offset", p, with(f, func(r *row) { r.mq = mqFetchRange("0", "100") }), true},
		{"before the range", p, with(f, func(r *row) { r.mq = mqFetchRange("0", "99") }), false},
		{"after the range", p, with(f, func(r *row) { r.mq = mqFetchRange("105", "300") }), false},
		{"other partition", p, with(f, func(r *row) { r.resource = "t:1" }), false},
		{"other broker", p, with(f, func(r *row) { r.ip1 = "10.0.9.8" }), false},
		{"other port", p, with(f, func(r *row) { r.sport = 9093 }), false},
		{"fetch within tolerance+skew before", p, with(f, func(r *row) { r.start = t0.Add(-2 * time.Second) }), true},
		{"fetch too early", p, with(f, func(r *row) { r.start = t0.Add(-2*time.Second - 1) }), false},
		{"fetch at max delay", p, with(f, func(r *row) { r.start = t0.Add(DefaultMaxMQDelay) }), true},
		{"fetch too late", p, with(f, func(r *row) { r.start = t0.Add(DefaultMaxMQDelay + 1) }), false},
		{"zero record count", with(p, func(r *row) { r.mq = mqProduceRange("100", "0") }), f, false},
		{"bad offsets", with(p, func(r *row) { r.mq = mqProduceRange("x", "5") }), f, false},
		{"inverted fetch range", p, with(f, func(r *row) { r.mq = mqFetchRange("104", "103") }), false},
		{"negative offset", p, with(f, func(r *row) { r.mq = mqFetchRange("-1", "103") }), false},
		{"roles swapped", f, p, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// As parseRows does for rows without kafka.topic_partition.
			for _, r := range []*row{&c.p, &c.f} {
				if r.mq.ok {
					r.mq.partition = r.resource
				}
			}
			if got := opt.linkMQ(&c.p, &c.f); got != c.want {
				t.Errorf("linkMQ = %v, want %v", got, c.want)
			}
		})
	}
}
