package demo

import (
	"context"
	"encoding/binary"
	"hash/crc32"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func TestEncodeBatch(t *testing.T) {
	b := encodeBatch([]byte("order:7"), []byte("order 7"), time.UnixMilli(1700000000000))
	var rb kmsg.RecordBatch
	if err := rb.ReadFrom(b); err != nil {
		t.Fatal(err)
	}
	if int(rb.Length) != len(b)-12 || rb.Magic != 2 || rb.NumRecords != 1 || rb.FirstTimestamp != 1700000000000 {
		t.Fatalf("batch %+v", rb)
	}
	if got := crc32.Checksum(b[21:], castagnoli); uint32(rb.CRC) != got || binary.BigEndian.Uint32(b[17:21]) != got {
		t.Fatalf("crc %x, want %x", uint32(rb.CRC), got)
	}
	var rec kmsg.Record
	if err := rec.ReadFrom(rb.Records); err != nil {
		t.Fatal(err)
	}
	if string(rec.Key) != "order:7" || string(rec.Value) != "order 7" || int(rec.Length) != len(rb.Records)-1 {
		t.Fatalf("record %+v", rec)
	}
}

// TestProducer produces through the minimal producer to an in-process kfake
// broker and reads the records back with kgo.
func TestProducer(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, Topic))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	addr := c.ListenAddrs()[0]
	p, err := newProducer(addr, Topic, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for i := range 3 {
		off, err := p.produce(ctx, orderKey(i), "v")
		if err != nil || off != int64(i) {
			t.Fatalf("produce %d: offset %d, %v", i, off, err)
		}
	}
	if _, err := newProducer("127.0.0.1:1", Topic, 1); err == nil {
		t.Error("dial to a closed port succeeded")
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumeTopics(Topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var keys []string
	for len(keys) < 3 && ctx.Err() == nil {
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) { keys = append(keys, string(r.Key)) })
	}
	if len(keys) != 3 || keys[0] != "order:0" || keys[2] != "order:2" {
		t.Fatalf("consumed keys %v", keys)
	}
}
