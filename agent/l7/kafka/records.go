package kafka

import (
	"encoding/binary"
	"strconv"

	"github.com/sightline-io/sightline/agent/l7"
)

// Message-queue linking: the attributes a trace assembler uses to join a
// Produce span to the Fetch spans that read its records.
const (
	// AttrTopicPartition is "topic:partition" of the partition the offsets
	// below belong to (Produce: the request's first partition; Fetch: the
	// first partition that returned records, which the request's resource
	// cannot name when the fetch asked for several).
	AttrTopicPartition = "kafka.topic_partition"
	// AttrRecordCount is the record count of a Produce's first batch.
	AttrRecordCount = "kafka.record_count"
	// AttrBaseOffset is the offset the broker gave a Produce's first record.
	AttrBaseOffset = "kafka.base_offset"
	// AttrFirstOffset is the base offset of a Fetch response's first batch.
	AttrFirstOffset = "kafka.first_offset"
	// AttrLastOffset is the last offset of the last complete batch a Fetch
	// response holds within the captured bytes.
	AttrLastOffset = "kafka.last_offset"
)

// Record batch (magic v2) header layout: fixed offsets from its start.
const (
	batchLengthAt    = 8  // int32: bytes after this field
	batchMagicAt     = 16 // int8: 2
	batchAttrsAt     = 21 // int16: bits 0-2 compression
	batchLastDeltaAt = 23 // int32: last offset delta
	batchCountAt     = 57 // int32: record count
	batchHeaderLen   = 61 // records start here
	batchLogOverhead = 12 // base offset + length fields
)

// batch is what a record batch header says.
type batch struct {
	baseOffset int64
	lastDelta  int32
	count      int32
	size       int // whole batch size in bytes
	compressed bool
}

// readBatch reads the v2 record batch header at the start of b (a captured
// prefix); false when b holds no complete v2 header.
func readBatch(b []byte) (batch, bool) {
	if len(b) < batchHeaderLen || b[batchMagicAt] != 2 {
		return batch{}, false
	}
	n := int32(binary.BigEndian.Uint32(b[batchLengthAt:]))
	if n < batchHeaderLen-batchLogOverhead || n > maxMessage {
		return batch{}, false
	}
	return batch{
		baseOffset: int64(binary.BigEndian.Uint64(b)),
		lastDelta:  int32(binary.BigEndian.Uint32(b[batchLastDeltaAt:])),
		count:      int32(binary.BigEndian.Uint32(b[batchCountAt:])),
		size:       int(n) + batchLogOverhead,
		compressed: binary.BigEndian.Uint16(b[batchAttrsAt:])&7 != 0,
	}, true
}

// firstRecordTrace sets m's trace context from the traceparent header of
// the first record of the batch at the start of b, when the batch is
// uncompressed and the header lies within the captured bytes. It walks one
// record at most and allocates only the ids it keeps.
func firstRecordTrace(b []byte, h batch, m *l7.Message) {
	if h.compressed || h.count <= 0 {
		return
	}
	b = b[batchHeaderLen:min(h.size, len(b))]
	length, ok := varint(&b)
	if !ok || length <= 0 {
		return
	}
	if int64(len(b)) > length {
		b = b[:length] // stay inside the first record
	}
	if len(b) < 1 {
		return
	}
	b = b[1:]                     // attributes
	if _, ok := varint(&b); !ok { // timestamp delta
		return
	}
	if _, ok := varint(&b); !ok { // offset delta
		return
	}
	if _, ok := varBytes(&b); !ok { // key
		return
	}
	if _, ok := varBytes(&b); !ok { // value
		return
	}
	n, ok := varint(&b)
	if !ok || n < 0 {
		return
	}
	// Each header takes at least two bytes: the count is bounded by b.
	for i := int64(0); i < n && len(b) > 0; i++ {
		key, ok1 := varBytes(&b)
		val, ok2 := varBytes(&b)
		if !ok1 || !ok2 {
			return
		}
		if string(key) == "traceparent" && m.SetTraceparent(val) {
			return
		}
	}
}

// varint reads a zigzag varint of up to 10 bytes (record fields), advancing b.
func varint(b *[]byte) (int64, bool) {
	var u uint64
	for i := 0; i < 10 && i < len(*b); i++ {
		c := (*b)[i]
		u |= uint64(c&0x7f) << (7 * i)
		if c < 0x80 {
			*b = (*b)[i+1:]
			return int64(u>>1) ^ -int64(u&1), true
		}
	}
	return 0, false
}

// varBytes reads varint-length bytes (-1: null), advancing b; false when
// they run past b.
func varBytes(b *[]byte) ([]byte, bool) {
	n, ok := varint(b)
	if !ok || n < -1 || n > int64(len(*b)) {
		return nil, false
	}
	if n <= 0 {
		return nil, true
	}
	v := (*b)[:n]
	*b = (*b)[n:]
	return v, true
}

// setAttr sets one attribute, making the map on first use (the few keys a
// message can carry).
func setAttr(m *l7.Message, k, v string) {
	if m.Attributes == nil {
		m.Attributes = make(map[string]string, 4)
	}
	m.Attributes[k] = v
}

func itoa(v int64) string { return strconv.FormatInt(v, 10) }

// targetHash identifies a topic (by name or id) and partition without
// keeping either: a Produce response is matched to its request's first
// partition by it. FNV-1a.
func targetHash(name []byte, id [16]byte, byID bool, partition int32) uint64 {
	h := uint64(14695981039346656037)
	mix := func(c byte) {
		h ^= uint64(c)
		h *= 1099511628211
	}
	if byID {
		for _, c := range id {
			mix(c)
		}
	} else {
		for _, c := range name {
			mix(c)
		}
	}
	mix(0xff)
	for i := 0; i < 4; i++ {
		mix(byte(partition >> (8 * i)))
	}
	return h
}

// recordsPrefix reads a records field's length (nullable bytes: int32, or
// compact when flexible) and returns the captured part of it; r is short
// when the field runs past the captured bytes.
func (r *reader) recordsPrefix() []byte {
	var n int
	if r.flex {
		n = int(r.uvarint()) - 1
	} else {
		n = int(r.i32())
	}
	switch {
	case r.failed():
		return nil
	case n < -1:
		r.bad = true
		return nil
	case n <= 0:
		return nil
	case n > len(r.b)-r.off:
		p := r.b[r.off:]
		r.off = len(r.b)
		r.short = true
		return p
	}
	return r.take(n)
}

// produceTopic reads a Produce request's topics array up to the first
// partition's records: the first topic (name or id), its first partition
// and the captured prefix of that partition's records.
func (r *reader) produceTopic(ver int16, info *reqInfo) {
	n := r.arrayLen()
	if n == 0 {
		return
	}
	r.topicRef(ver, 13, info)
	pn := r.arrayLen()
	if pn == 0 {
		return
	}
	info.partition = r.i32()
	if r.failed() {
		return
	}
	info.hasPartition = true
	info.onePartition = n == 1 && pn == 1
	info.records = r.recordsPrefix()
}

// produceRecords sets a Produce request's record count and trace context
// from its first batch.
func produceRecords(m *l7.Message, records []byte) {
	h, ok := readBatch(records)
	if !ok {
		return
	}
	setAttr(m, AttrRecordCount, itoa(int64(h.count)))
	firstRecordTrace(records, h, m)
}

// produceResponse reads a Produce response: the first partition's error
// code, and the base offset of the partition the request named first (the
// first partition when the request's was not read).
func (p *Parser) produceResponse(r *reader, q pendingReq, m *l7.Message) respInfo {
	ver := q.ver
	var first respInfo
	nt := r.arrayLen()
	for i := 0; i < nt && !r.failed(); i++ {
		var t reqInfo
		r.topicRef(ver, 13, &t)
		np := r.arrayLen()
		for j := 0; j < np && !r.failed(); j++ {
			part := r.i32()
			c := r.code()
			base := r.i64()
			if r.failed() {
				break
			}
			if i == 0 && j == 0 {
				first = c
			}
			if !q.hasTarget || targetHash(t.topic, t.topicID, t.hasTopicID, part) == q.target {
				if c.code == 0 {
					setAttr(m, AttrBaseOffset, itoa(base))
				}
				return first
			}
			if ver >= 2 {
				r.skip(8) // log append time
			}
			if ver >= 5 {
				r.skip(8) // log start offset
			}
			if ver >= 8 {
				ne := r.arrayLen()
				for k := 0; k < ne && !r.failed(); k++ {
					r.skip(4) // batch index
					r.skipStr()
					r.tags()
				}
				r.skipStr() // error message
			}
			r.tags()
		}
		r.tags()
	}
	return first
}

// fetchResponse reads a Fetch response: the top-level error (v7+) or the
// first partition's, and for the first partition that returned records its
// "topic:partition", the base offset of its first batch, the last offset of
// its last complete batch and the trace context of its first record.
func (p *Parser) fetchResponse(r *reader, ver int16, m *l7.Message) respInfo {
	r.throttle(ver, 1)
	if ver >= 7 {
		if top := r.code(); !top.hasCode || top.code != 0 {
			return top
		}
		r.skip(4) // session id
	}
	var first respInfo
	nt := r.arrayLen()
	for i := 0; i < nt && !r.failed(); i++ {
		var t reqInfo
		r.topicRef(ver, 13, &t)
		np := r.arrayLen()
		for j := 0; j < np && !r.failed(); j++ {
			part := r.i32()
			c := r.code()
			if r.failed() {
				break
			}
			if i == 0 && j == 0 {
				first = c
			}
			r.skip(8) // high watermark
			if ver >= 4 {
				r.skip(8) // last stable offset
			}
			if ver >= 5 {
				r.skip(8) // log start offset
			}
			if ver >= 4 {
				na := r.arrayLen() // aborted transactions
				for k := 0; k < na && !r.failed(); k++ {
					r.skip(16) // producer id, first offset
					r.tags()
				}
			}
			if ver >= 11 {
				r.skip(4) // preferred read replica
			}
			if records := r.recordsPrefix(); len(records) > 0 {
				if p.fetchRecords(m, records, &t, part) {
					return first
				}
			}
			r.tags()
		}
		r.tags()
	}
	return first
}

// fetchRecords sets a Fetch response's offsets from records (the captured
// prefix of one partition's record batches); false when no v2 batch header
// was captured. Only complete batches count for the last offset: when the
// capture is truncated (or the broker cut the last batch at its size
// limit), it is the last complete batch seen, so the range may end early.
func (p *Parser) fetchRecords(m *l7.Message, records []byte, t *reqInfo, part int32) bool {
	h, ok := readBatch(records)
	if !ok {
		return false
	}
	topic := string(t.topic)
	if topic == "" && t.hasTopicID {
		topic = p.topics.name(t.topicID)
	}
	if topic != "" {
		setAttr(m, AttrTopicPartition, topic+":"+strconv.FormatInt(int64(part), 10))
	}
	setAttr(m, AttrFirstOffset, itoa(h.baseOffset))
	firstRecordTrace(records, h, m)
	last, haveLast := int64(0), false
	for b := records; ; {
		h, ok := readBatch(b)
		if !ok || h.size > len(b) {
			break
		}
		last, haveLast = h.baseOffset+int64(h.lastDelta), true
		b = b[h.size:]
	}
	if haveLast {
		setAttr(m, AttrLastOffset, itoa(last))
	}
	return true
}
