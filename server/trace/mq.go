package trace

import (
	"fmt"
	"strconv"
	"time"
)

// RuleMQ links a message-queue Produce span to the Fetch spans that read its
// messages (rule 5).
const RuleMQ Rule = "mq"

// DefaultMaxMQDelay bounds how long after a Produce a Fetch may read its messages.
const DefaultMaxMQDelay = 10 * time.Minute

// Kafka attributes written by the Kafka parser (decimal strings; absent when unknown).
const (
	attrBaseOffset  = "kafka.base_offset"
	attrRecordCount = "kafka.record_count"
	attrFirstOffset = "kafka.first_offset"
	attrLastOffset  = "kafka.last_offset"
	// attrTopicPartition names the partition the offsets belong to: a Fetch
	// of several partitions has only "topic" in request_resource.
	attrTopicPartition = "kafka.topic_partition"
)

// topicPartitionSQL is the partition of a row's offsets, in SQL: the
// attribute, else request_resource (rows from parsers that did not set it).
const topicPartitionSQL = "COALESCE(NULLIF(attributes['" + attrTopicPartition + "'], ''), request_resource)"

// mqColumns are read with every span: the Kafka offset attributes, aliased.
// ClickHouse reads a missing map key as an empty string, DuckDB as NULL: both parse as unknown.
var mqColumns = []string{
	"attributes['" + attrBaseOffset + "'] AS kafka_base_offset",
	"attributes['" + attrRecordCount + "'] AS kafka_record_count",
	"attributes['" + attrFirstOffset + "'] AS kafka_first_offset",
	"attributes['" + attrLastOffset + "'] AS kafka_last_offset",
	"attributes['" + attrTopicPartition + "'] AS kafka_topic_partition",
}

// mqRange is a span's offset range on its topic:partition: the offsets a
// Produce wrote ([base, base+count-1]) or a Fetch returned ([first, last]).
type mqRange struct {
	ok          bool
	first, last int64
	partition   string // topic:partition of the offsets
}

// parseOffset reads a non-negative decimal offset.
func parseOffset(s string) (int64, bool) {
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil && n >= 0
}

// mqProduceRange is the range a Produce span wrote, from its attributes.
func mqProduceRange(base, count string) mqRange {
	b, ok1 := parseOffset(base)
	c, ok2 := parseOffset(count)
	if !ok1 || !ok2 || c == 0 || b > (1<<62) || c > (1<<62) {
		return mqRange{}
	}
	return mqRange{ok: true, first: b, last: b + c - 1}
}

// mqFetchRange is the range a Fetch span returned, from its attributes.
func mqFetchRange(first, last string) mqRange {
	f, ok1 := parseOffset(first)
	l, ok2 := parseOffset(last)
	if !ok1 || !ok2 || l < f {
		return mqRange{}
	}
	return mqRange{ok: true, first: f, last: l}
}

func isProduce(r *row) bool {
	return r.reqType == "Produce" && r.mq.partition != "" && r.mq.ok
}

func isFetch(r *row) bool {
	return r.reqType == "Fetch" && r.mq.partition != "" && r.mq.ok
}

// linkMQ is rule 5: p is the Produce span, f the Fetch span.
func (o Options) linkMQ(p, f *row) bool {
	if !isProduce(p) || !isFetch(f) || p.id == f.id {
		return false
	}
	if p.mq.partition != f.mq.partition || p.ip1 != f.ip1 || p.sport != f.sport {
		return false
	}
	if f.mq.first > p.mq.last || f.mq.last < p.mq.first {
		return false
	}
	wide := o.TimeTolerance + o.ClockSkew
	return !f.start.Before(p.start.Add(-wide)) && !f.start.After(p.start.Add(o.MaxMQDelay))
}

// mqConditions emits rule 5's lookups: from a Produce, the Fetches that read
// its offsets; from a Fetch (unless noMQBack), the Produces that wrote its.
// The offsets are compared in SQL so that a busy partition does not flood
// the lookup with its other fetches.
// ClickHouse variant: toInt64OrNull(attributes['...']) for TRY_CAST(... AS BIGINT).
func (o Options) mqConditions(r *row, noMQBack bool, emit func(lookup)) {
	if !safeString(r.mq.partition) || !safeTupleString(r.ip1) {
		return
	}
	wide := o.TimeTolerance + o.ClockSkew
	broker := fmt.Sprintf("%s = %s AND ip_1 = %s AND server_port = %d", topicPartitionSQL, strLit(r.mq.partition), strLit(r.ip1), r.sport)
	switch {
	case isProduce(r):
		lo, hi := r.start.Add(-wide), r.start.Add(o.MaxMQDelay)
		emit(lookup{rule: RuleMQ, lo: lo, hi: hi, sql: fmt.Sprintf(
			"request_type = 'Fetch' AND %s AND TRY_CAST(attributes['%s'] AS BIGINT) <= %d AND TRY_CAST(attributes['%s'] AS BIGINT) >= %d AND time BETWEEN %s AND %s",
			broker, attrFirstOffset, r.mq.last, attrLastOffset, r.mq.first, timeLit(lo), timeLit(hi))})
	case isFetch(r) && !noMQBack:
		lo, hi := r.start.Add(-o.MaxMQDelay), r.start.Add(wide)
		emit(lookup{rule: RuleMQ, lo: lo, hi: hi, sql: fmt.Sprintf(
			"request_type = 'Produce' AND %s AND TRY_CAST(attributes['%s'] AS BIGINT) <= %d AND TRY_CAST(attributes['%s'] AS BIGINT) + TRY_CAST(attributes['%s'] AS BIGINT) - 1 >= %d AND time BETWEEN %s AND %s",
			broker, attrBaseOffset, r.mq.last, attrBaseOffset, attrRecordCount, r.mq.first, timeLit(lo), timeLit(hi))})
	}
}
