// Package kafka infers and parses the Apache Kafka wire protocol: request
// headers v1/v2 and response headers v0/v1 for every API key, and the few
// body fields that name what a request touches (topic, partition, group) and
// how it ended (error code) for the common APIs, by hand, on the captured
// prefix of each message.
//
// Produce and Fetch also carry what links a producer to its consumers
// (record batches of magic v2; older message sets are ignored):
//
//   - Produce: the resource is "topic:partition" of the first topic's first
//     partition (also attribute kafka.topic_partition); kafka.record_count
//     is the recordCount of that partition's first batch header, and
//     kafka.base_offset the offset the broker's response gives the same
//     topic and partition (matched by name or topic id, not by position).
//   - Fetch response: for the first partition that returned records,
//     kafka.topic_partition ("topic:partition"; the request's resource is
//     "topic" alone when it asked for several partitions),
//     kafka.first_offset (base offset of its first batch) and
//     kafka.last_offset (base offset + last offset delta of the last batch
//     wholly inside the captured bytes: with a truncated capture the range
//     ends early).
//   - Both: a W3C traceparent header of the first record of the first
//     batch, when that batch is uncompressed (attribute bits 0-2 zero), sets
//     the trace id and span id as HTTP's traceparent does.
//
// Only the captured bytes are walked, one record at most per message, and
// nothing is allocated per record.
package kafka

import (
	"encoding/base64"
	"encoding/binary"
	"sync"
	"time"

	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/flowlog"
)

const (
	// DefaultTimeout is how long a request waits for its response. Fetch
	// long-polls for its max wait (500 ms by default, minutes at most).
	DefaultTimeout = 120 * time.Second
	// maxMessage bounds a message size: brokers refuse requests above
	// socket.request.max.bytes (100 MiB by default).
	maxMessage = 100 << 20
	// maxClientID bounds the client id length accepted by inference.
	maxClientID = 1024
	// maxTopicIDs bounds the topic id → name cache.
	maxTopicIDs = 4096
)

// Protocol is Kafka. It is safe for concurrent use; its only state is the
// topic id cache shared by its parsers.
type Protocol struct {
	timeout time.Duration
	topics  *topicCache
}

// New returns the Kafka protocol. Kafka carries no secrets the parser would
// store (SASL payloads are never read), so cfg.KeepSecrets changes nothing.
func New(cfg l7.Config) *Protocol {
	p := &Protocol{timeout: DefaultTimeout, topics: &topicCache{}}
	if cfg.Timeout > 0 {
		p.timeout = cfg.Timeout
	}
	return p
}

var _ l7.Protocol = (*Protocol)(nil)

// ID returns flowlog.L7Kafka.
func (p *Protocol) ID() flowlog.L7Protocol { return flowlog.L7Kafka }

// Matching returns l7.MatchByID: responses carry the request's correlation id.
func (p *Protocol) Matching() l7.Matching { return l7.MatchByID }

// Timeout returns the configured request timeout.
func (p *Protocol) Timeout() time.Duration { return p.timeout }

// NewParser returns a parser for one connection; its concrete type is *Parser.
func (p *Protocol) NewParser() l7.Parser { return newParser(p.topics) }

// Infer claims a connection whose first bytes are a Kafka request: a size
// between the smallest header and 100 MiB, a known API key, a version no
// newer than that API's newest known version (+2 for brokers newer than this
// table), a non-negative correlation id and a client id that is null or
// 0..1024 bytes of printable ASCII; a Produce must also be v3+ with a sane
// transactional id, acks of -1, 0 or 1 and a non-negative timeout. HTTP/1
// text and TLS records make sizes far above 100 MiB; a response (its
// correlation id where the API key would be reads as Produce) fails the
// Produce checks. Brokers read the 4-byte size and the rest of a request in
// two syscalls, so a segment holding only a size asks for more, and a
// segment starting at the API key is claimed too when the client id is
// present and non-empty. Responses are never claimed.
func (p *Protocol) Infer(data []byte, l4 uint8) l7.Inference {
	if l4 != 6 {
		return l7.NotMine
	}
	if r := inferRequest(data); r != l7.NotMine || len(data) < 4 {
		return r
	}
	return inferHeadless(data)
}

// inferRequest checks a request with its size prefix.
func inferRequest(b []byte) l7.Inference {
	if len(b) < 4 {
		return l7.NeedMore
	}
	size := int64(binary.BigEndian.Uint32(b))
	if !saneSize(size, 10) {
		return l7.NotMine
	}
	if len(b) == 4 {
		return l7.NeedMore // the size read on its own
	}
	return checkHeader(b[4:], size, false)
}

// inferHeadless checks a request whose size prefix came in an earlier
// segment.
func inferHeadless(b []byte) l7.Inference {
	if checkHeader(b, -1, true) == l7.IsRequest {
		return l7.IsRequest
	}
	return l7.NotMine
}

// checkHeader checks the request header (and a Produce's first fields) at
// the start of b; size is the announced size, -1 when unknown. strict asks
// for a present, non-empty client id.
func checkHeader(b []byte, size int64, strict bool) l7.Inference {
	r := reader{b: b}
	key, ver, corr := r.i16(), r.i16(), r.i32()
	n := int(r.i16())
	if r.failed() {
		return l7.NeedMore
	}
	a, ok := api(key)
	if !ok || ver < 0 || ver > a.maxVer+2 || corr < 0 || n < -1 || n > maxClientID ||
		(size >= 0 && int64(n) > size-10) || (strict && n <= 0) {
		return l7.NotMine
	}
	id := b[r.off:]
	if n >= 0 && len(id) > n {
		id = id[:n]
	} else if strict {
		return l7.NotMine
	}
	if !printable(id) {
		return l7.NotMine
	}
	if key != keyProduce {
		return l7.IsRequest
	}
	if ver < 3 {
		return l7.NotMine
	}
	r.skip(max(n, 0))
	if requestHeaderVersion(key, ver) == 2 {
		r.flex = true
		r.tags()
	}
	txn := r.str()
	acks, timeout := r.i16(), r.i32()
	switch {
	case r.bad || !printable(txn) || len(txn) > maxClientID || acks < -1 || acks > 1 || timeout < 0:
		return l7.NotMine
	case r.short:
		return l7.NeedMore
	}
	return l7.IsRequest
}

func printable(b []byte) bool {
	for _, c := range b {
		if c < 0x20 || c > 0x7e {
			return false
		}
	}
	return true
}

// saneSize reports whether a size field may start a message of at least
// min bytes.
func saneSize(size int64, min int64) bool {
	return size >= min && size <= maxMessage
}

// topicCache maps topic ids to names, learnt from Metadata and CreateTopics
// responses: newer Produce and Fetch versions name topics by id only, and
// clients send Metadata on another connection than Produce or Fetch, so the
// cache is shared by the protocol's parsers. Bounded: it is emptied when full.
type topicCache struct {
	mu sync.Mutex
	m  map[[16]byte]string
}

func (c *topicCache) learn(id [16]byte, name []byte) {
	if id == ([16]byte{}) || len(name) == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.m[id]; ok && old == string(name) {
		return
	}
	if c.m == nil || len(c.m) >= maxTopicIDs {
		c.m = make(map[[16]byte]string)
	}
	c.m[id] = string(name)
}

// name returns the topic's name, or its id in Kafka's display form
// (URL-safe base64 without padding) when unknown.
func (c *topicCache) name(id [16]byte) string {
	c.mu.Lock()
	s, ok := c.m[id]
	c.mu.Unlock()
	if ok {
		return s
	}
	return base64.RawURLEncoding.EncodeToString(id[:])
}
