package demo

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// produceVersion is the Produce version the demo producer speaks: the last
// one before flexible encoding, which every broker and kfake accept.
const produceVersion = 7

// maxKafkaResponse bounds a Produce response read from the broker.
const maxKafkaResponse = 1 << 20

// producer is a minimal synchronous Kafka producer: each call encodes one
// ProduceRequest holding one record, writes it on a pooled connection and
// reads the answer on the calling goroutine, so each Produce on the wire
// belongs to exactly one HTTP request.
type producer struct {
	topic string
	conns chan *kconn
	fmt   *kmsg.RequestFormatter
}

type kconn struct {
	c    net.Conn
	corr int32
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// newProducer dials size connections to addr.
func newProducer(addr, topic string, size int) (*producer, error) {
	p := &producer{topic: topic, conns: make(chan *kconn, size), fmt: kmsg.NewRequestFormatter(kmsg.FormatterClientID("goapi"))}
	for range size {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			p.close()
			return nil, fmt.Errorf("kafka dial %s: %w", addr, err)
		}
		p.conns <- &kconn{c: c}
	}
	return p, nil
}

func (p *producer) close() {
	for {
		select {
		case k := <-p.conns:
			k.c.Close()
		default:
			return
		}
	}
}

// encodeBatch builds a magic-2 record batch holding one record.
func encodeBatch(key, value []byte, now time.Time) []byte {
	rec := kmsg.Record{Key: key, Value: value}
	body := rec.AppendTo(nil) // Length 0 encodes as one byte
	rec.Length = int32(len(body) - 1)
	records := rec.AppendTo(nil)
	ms := now.UnixMilli()
	b := kmsg.RecordBatch{
		PartitionLeaderEpoch: -1, Magic: 2, FirstTimestamp: ms, MaxTimestamp: ms,
		ProducerID: -1, ProducerEpoch: -1, FirstSequence: -1, NumRecords: 1, Records: records,
	}
	out := b.AppendTo(nil)
	// Length counts everything after itself (offset 8..12); the CRC
	// (offset 17..21) covers everything after itself.
	binary.BigEndian.PutUint32(out[8:12], uint32(len(out)-12))
	binary.BigEndian.PutUint32(out[17:21], crc32.Checksum(out[21:], castagnoli))
	return out
}

// produce sends one record keyed key and returns its offset.
func (p *producer) produce(ctx context.Context, key, value string) (int64, error) {
	var k *kconn
	select {
	case k = <-p.conns:
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	off, err := p.roundTrip(ctx, k, key, value)
	if err != nil {
		// The connection's state is unknown: replace it.
		k.c.Close()
		c, derr := net.DialTimeout("tcp", k.c.RemoteAddr().String(), 5*time.Second)
		if derr != nil {
			// Keep the pool size: a closed conn fails fast next time and is redialled then.
			p.conns <- k
			return 0, errors.Join(err, derr)
		}
		k = &kconn{c: c}
	}
	p.conns <- k
	return off, err
}

func (p *producer) roundTrip(ctx context.Context, k *kconn, key, value string) (int64, error) {
	req := kmsg.NewPtrProduceRequest()
	req.Version = produceVersion
	req.Acks = 1
	req.TimeoutMillis = 5000
	topic := kmsg.NewProduceRequestTopic()
	topic.Topic = p.topic
	part := kmsg.NewProduceRequestTopicPartition()
	part.Partition = 0
	part.Records = encodeBatch([]byte(key), []byte(value), time.Now())
	topic.Partitions = append(topic.Partitions, part)
	req.Topics = append(req.Topics, topic)
	k.corr++
	wire := p.fmt.AppendRequest(nil, req, k.corr)
	deadline := time.Now().Add(10 * time.Second)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if err := k.c.SetDeadline(deadline); err != nil {
		return 0, fmt.Errorf("kafka: %w", err)
	}
	if _, err := k.c.Write(wire); err != nil {
		return 0, fmt.Errorf("kafka write: %w", err)
	}
	var size [4]byte
	if _, err := io.ReadFull(k.c, size[:]); err != nil {
		return 0, fmt.Errorf("kafka read: %w", err)
	}
	n := binary.BigEndian.Uint32(size[:])
	if n < 4 || n > maxKafkaResponse {
		return 0, fmt.Errorf("kafka: response of %d bytes", n)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(k.c, body); err != nil {
		return 0, fmt.Errorf("kafka read: %w", err)
	}
	if corr := int32(binary.BigEndian.Uint32(body)); corr != k.corr {
		return 0, fmt.Errorf("kafka: correlation id %d, want %d", corr, k.corr)
	}
	resp := kmsg.NewPtrProduceResponse()
	resp.Version = produceVersion
	if err := resp.ReadFrom(body[4:]); err != nil {
		return 0, fmt.Errorf("kafka: decode produce response: %w", err)
	}
	if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
		return 0, fmt.Errorf("kafka: produce response has %d topics", len(resp.Topics))
	}
	pr := resp.Topics[0].Partitions[0]
	if err := kerr.ErrorForCode(pr.ErrorCode); err != nil {
		return 0, fmt.Errorf("kafka produce %s: %w", key, err)
	}
	return pr.BaseOffset, nil
}

// orderKey is the record key of order n.
func orderKey(n int) string { return "order:" + strconv.Itoa(n) }
