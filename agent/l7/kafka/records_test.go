package kafka

import (
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sightline-io/sightline/agent/capture"
	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/internal/parsertest"
)

const (
	testTrace  = "4bf92f3577b34da6a3ce929d0e0e4736"
	testSpan   = "00f067aa0ba902b7"
	testParent = "00-" + testTrace + "-" + testSpan + "-01"
)

// recordBatch encodes a v2 record batch of n records at base offset base;
// the first record carries headers (key, value pairs). compression sets the
// attributes' codec bits (the records stay plain: only the bits are read).
func recordBatch(base int64, n int, compression int16, headers ...string) []byte {
	var recs []byte
	for i := range n {
		r := kmsg.Record{OffsetDelta: int32(i), Key: []byte("k"), Value: []byte("order-payload")}
		if i == 0 {
			for j := 0; j+1 < len(headers); j += 2 {
				r.Headers = append(r.Headers, kmsg.Header{Key: headers[j], Value: []byte(headers[j+1])})
			}
		}
		r.Length = int32(len(r.AppendTo(nil)) - 1) // the length varint of 0 is one byte
		recs = r.AppendTo(recs)
	}
	b := kmsg.RecordBatch{
		FirstOffset: base, Length: int32(49 + len(recs)), Magic: 2, Attributes: compression,
		LastOffsetDelta: int32(n - 1), NumRecords: int32(n), Records: recs, ProducerID: -1,
	}
	return b.AppendTo(nil)
}

func producePart(partition int32, records []byte) kmsg.ProduceRequestTopicPartition {
	p := kmsg.NewProduceRequestTopicPartition()
	p.Partition, p.Records = partition, records
	return p
}

func produceWith(ver int16, topic string, parts ...kmsg.ProduceRequestTopicPartition) *kmsg.ProduceRequest {
	r := kmsg.NewPtrProduceRequest()
	r.Version, r.Acks, r.TimeoutMillis = ver, -1, 1000
	t := kmsg.NewProduceRequestTopic()
	t.Topic, t.TopicID, t.Partitions = topic, topicID, parts
	r.Topics = append(r.Topics, t)
	return r
}

// produceRespParts answers partitions (index, error code, base offset).
func produceRespParts(ver int16, topic string, parts ...[3]int64) *kmsg.ProduceResponse {
	r := kmsg.NewPtrProduceResponse()
	r.Version = ver
	t := kmsg.NewProduceResponseTopic()
	t.Topic, t.TopicID = topic, topicID
	for _, q := range parts {
		p := kmsg.NewProduceResponseTopicPartition()
		p.Partition, p.ErrorCode, p.BaseOffset = int32(q[0]), int16(q[1]), q[2]
		p.ErrorMessage = kmsg.StringPtr("msg")
		p.ErrorRecords = []kmsg.ProduceResponseTopicPartitionErrorRecord{{RelativeOffset: 1}}
		t.Partitions = append(t.Partitions, p)
	}
	r.Topics = append(r.Topics, t)
	return r
}

// fetchRespParts answers partitions with their record bytes (nil: none).
func fetchRespParts(ver int16, parts ...[]byte) *kmsg.FetchResponse {
	r := kmsg.NewPtrFetchResponse()
	r.Version = ver
	t := kmsg.NewFetchResponseTopic()
	t.Topic, t.TopicID = "orders", topicID
	for i, recs := range parts {
		p := kmsg.NewFetchResponseTopicPartition()
		p.Partition, p.RecordBatches = int32(i), recs
		p.AbortedTransactions = []kmsg.FetchResponseTopicPartitionAbortedTransaction{{ProducerID: 1}}
		t.Partitions = append(t.Partitions, p)
	}
	r.Topics = append(r.Topics, t)
	return r
}

func concat(bs ...[]byte) []byte {
	var out []byte
	for _, b := range bs {
		out = append(out, b...)
	}
	return out
}

func TestMessageQueueLinking(t *testing.T) {
	tp := []string{"traceparent", testParent}
	two := concat(recordBatch(10, 3, 0, tp...), recordBatch(13, 2, 0))
	cases := []struct {
		name       string
		req, resp  []byte
		cut        int // capture only this many bytes of the response (0: all)
		resource   string
		reqAttrs   map[string]string
		respAttrs  map[string]string
		reqTrace   bool
		respTraced bool
	}{
		{name: "produce v9 traceparent",
			req:      reqFrame(1, "c", produceWith(9, "orders", producePart(2, recordBatch(0, 3, 0, "other", "x", "traceparent", testParent)))),
			resp:     respFrame(1, produceRespParts(9, "orders", [3]int64{2, 0, 42})),
			resource: "orders:2", reqTrace: true,
			reqAttrs:  map[string]string{AttrRecordCount: "3", AttrTopicPartition: "orders:2"},
			respAttrs: map[string]string{AttrBaseOffset: "42"}},
		{name: "produce v3 compressed: count, no trace",
			req:      reqFrame(2, "c", produceWith(3, "orders", producePart(0, recordBatch(0, 5, 2, tp...)))),
			resp:     respFrame(2, produceRespParts(3, "orders", [3]int64{0, 0, 7})),
			resource: "orders:0",
			reqAttrs: map[string]string{AttrRecordCount: "5", AttrTopicPartition: "orders:0"}, respAttrs: map[string]string{AttrBaseOffset: "7"}},
		{name: "produce v13 by id, response in another order",
			req:      reqFrame(3, "c", produceWith(13, "", producePart(1, recordBatch(0, 1, 0, tp...)), producePart(0, recordBatch(0, 2, 0)))),
			resp:     respFrame(3, produceRespParts(13, "", [3]int64{0, 0, 5}, [3]int64{1, 0, 99})),
			resource: "AQIDBAUGBwgJCgsMDQ4PEA:1", reqTrace: true,
			reqAttrs:  map[string]string{AttrRecordCount: "1", AttrTopicPartition: "AQIDBAUGBwgJCgsMDQ4PEA:1"},
			respAttrs: map[string]string{AttrBaseOffset: "99"}},
		{name: "produce error: no base offset",
			req:      reqFrame(4, "c", produceWith(8, "orders", producePart(0, recordBatch(0, 1, 0)))),
			resp:     respFrame(4, produceRespParts(8, "orders", [3]int64{0, 6, -1})),
			resource: "orders:0", reqAttrs: map[string]string{AttrRecordCount: "1", AttrTopicPartition: "orders:0"}},
		{name: "produce bad traceparent",
			req:      reqFrame(5, "c", produceWith(9, "orders", producePart(0, recordBatch(0, 1, 0, "traceparent", "00-zz")))),
			resource: "orders:0", reqAttrs: map[string]string{AttrRecordCount: "1", AttrTopicPartition: "orders:0"}},
		{name: "fetch v11 two batches",
			req: reqFrame(6, "c", fetchReq(11, "orders")), resp: respFrame(6, fetchRespParts(11, two)),
			resource: "orders:0", respTraced: true,
			respAttrs: map[string]string{AttrFirstOffset: "10", AttrLastOffset: "14", AttrTopicPartition: "orders:0"}},
		{name: "fetch v16 first partition empty",
			req: reqFrame(7, "c", fetchReq(16, "")), resp: respFrame(7, fetchRespParts(16, nil, two)),
			resource: "AQIDBAUGBwgJCgsMDQ4PEA:0", respTraced: true,
			respAttrs: map[string]string{AttrFirstOffset: "10", AttrLastOffset: "14", AttrTopicPartition: "AQIDBAUGBwgJCgsMDQ4PEA:1"}},
		{name: "fetch v4 capture cut in the second batch",
			req: reqFrame(8, "c", fetchReq(4, "orders")), resp: respFrame(8, fetchRespParts(4, two)), cut: -20,
			resource: "orders:0", respTraced: true,
			respAttrs: map[string]string{AttrFirstOffset: "10", AttrLastOffset: "12", AttrTopicPartition: "orders:0"}},
		{name: "fetch v12 compressed: offsets, no trace",
			req: reqFrame(9, "c", fetchReq(12, "orders")), resp: respFrame(9, fetchRespParts(12, recordBatch(3, 4, 1, tp...))),
			resource:  "orders:0",
			respAttrs: map[string]string{AttrFirstOffset: "3", AttrLastOffset: "6", AttrTopicPartition: "orders:0"}},
		{name: "fetch v12 legacy magic: nothing",
			req: reqFrame(10, "c", fetchReq(12, "orders")), resp: respFrame(10, fetchRespParts(12, make([]byte, 80))),
			resource: "orders:0"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := New(l7.Config{}).NewParser()
			var col parsertest.Collector
			p.Feed(parsertest.Whole(capture.AtoB, c.req), col.Emit)
			if c.resp != nil {
				s := parsertest.Whole(capture.BtoA, c.resp)
				if c.cut < 0 {
					s = parsertest.Whole(capture.BtoA, c.resp[:len(c.resp)+c.cut])
					s.Len = len(c.resp)
				}
				p.Feed(s, col.Emit)
			}
			want := 1 + boolInt(c.resp != nil)
			if len(col.Msgs) != want {
				t.Fatalf("%d messages: %+v", len(col.Msgs), col.Msgs)
			}
			q := col.Msgs[0]
			if q.Resource != c.resource {
				t.Errorf("resource %q, want %q", q.Resource, c.resource)
			}
			checkAttrs(t, "request", q.Attributes, c.reqAttrs)
			checkTrace(t, "request", &q, c.reqTrace)
			if c.resp != nil {
				r := col.Msgs[1]
				checkAttrs(t, "response", r.Attributes, c.respAttrs)
				checkTrace(t, "response", &r, c.respTraced)
			}
		})
	}
}

func checkAttrs(t *testing.T, what string, got, want map[string]string) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s attributes %v, want %v", what, got, want)
		return
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s attributes %v, want %v", what, got, want)
			return
		}
	}
}

func checkTrace(t *testing.T, what string, m *l7.Message, traced bool) {
	t.Helper()
	if traced && (m.TraceID != testTrace || m.SpanID != testSpan || m.ParentSpanID != "") {
		t.Errorf("%s trace %q %q %q", what, m.TraceID, m.SpanID, m.ParentSpanID)
	}
	if !traced && m.TraceID+m.SpanID != "" {
		t.Errorf("%s has trace %q %q", what, m.TraceID, m.SpanID)
	}
}
