package kafka

import (
	"encoding/binary"
	"strconv"

	"github.com/sightline-io/sightline/agent/capture"
	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/agent/l7/stream"
	"github.com/sightline-io/sightline/flowlog"
)

// maxPending bounds the requests remembered per connection for decoding
// their responses (clients pipeline at most a few per connection).
const maxPending = 256

// Stats counts what a Parser saw and dropped.
type Stats struct {
	Requests    uint64 // requests emitted (one-way included)
	Responses   uint64 // responses emitted
	Unmatched   uint64 // responses whose correlation id was not remembered
	BadFrames   uint64 // frames that were not Kafka (framing restarted)
	DroppedReqs uint64 // remembered requests dropped (bound, or never answered)
}

// pendingReq is what a response needs from its request.
type pendingReq struct {
	corr     int32
	key, ver int16
	// target identifies a Produce's first topic and partition (targetHash).
	target    uint64
	hasTarget bool
}

// Parser parses one Kafka connection.
type Parser struct {
	topics  *topicCache
	bufs    [2]stream.Buffer
	respLen stream.FrameLen // p.responseLen, bound once
	// client is the direction of requests, learnt from the first frame
	// that is a valid request (-1: not yet).
	client int

	// pending is a ring of requests awaiting responses, oldest first.
	// Kafka answers in request order on a connection, so a response's
	// request is found by a short scan from the oldest.
	pending    [maxPending]pendingReq
	head, npen int

	stats Stats
}

func newParser(topics *topicCache) *Parser {
	p := &Parser{topics: topics, client: -1}
	p.respLen = p.responseLen
	for i := range p.bufs {
		p.bufs[i].Max = 16 << 10
	}
	return p
}

// Stats returns the parser's counters.
func (p *Parser) Stats() Stats { return p.stats }

// Close does nothing: Kafka messages are length-delimited.
func (p *Parser) Close(func(*l7.Message)) {}

// Feed frames seg's direction and emits the messages it completes.
func (p *Parser) Feed(seg *capture.Segment, emit func(*l7.Message)) {
	d := int(seg.Dir & 1)
	if p.client < 0 {
		// Wait for a request (or its first bytes) to tell the client side.
		if len(seg.Data) == 0 {
			return
		}
		if inferRequest(seg.Data) == l7.NotMine {
			if inferHeadless(seg.Data) == l7.IsRequest {
				p.client = d
				p.headless(seg, emit)
			}
			return
		}
		p.client = d
	}
	if d == p.client {
		p.bufs[d].Feed(seg, requestLen, func(f *stream.Frame) bool { return p.request(f, emit) })
	} else {
		p.bufs[d].Feed(seg, p.respLen, func(f *stream.Frame) bool { return p.response(f, emit) })
	}
}

func requestLen(b []byte) (int, error) { return frameLen(b, 10) }

// responseLen frames a response; while requests are waiting, one whose
// correlation id answers none of them means framing is lost.
func (p *Parser) responseLen(b []byte) (int, error) {
	n, err := frameLen(b, 4)
	if n > 0 && len(b) >= 8 && p.npen > 0 && !p.waiting(int32(binary.BigEndian.Uint32(b[4:]))) {
		return 0, stream.ErrNotFrame
	}
	return n, err
}

// waiting reports whether a request with correlation id corr is remembered.
func (p *Parser) waiting(corr int32) bool {
	for i := 0; i < p.npen; i++ {
		if p.pending[(p.head+i)%maxPending].corr == corr {
			return true
		}
	}
	return false
}

func frameLen(b []byte, min int64) (int, error) {
	if len(b) < 4 {
		return 0, nil
	}
	size := int64(binary.BigEndian.Uint32(b))
	if !saneSize(size, min) {
		return 0, stream.ErrNotFrame
	}
	return int(size) + 4, nil
}

func newMessage(f *stream.Frame, t l7.MessageType) *l7.Message {
	m := &l7.Message{Type: t, Protocol: flowlog.L7Kafka}
	m.From(f.Start, f.TCPSeq)
	m.EndAt(f.End)
	m.Length = int64(len(f.Data) + f.Missing)
	m.Captured = uint32(len(f.Data))
	return m
}

// headless parses a first request whose size prefix was not seen (a
// broker reads it in a syscall of its own): the segment is the message.
func (p *Parser) headless(seg *capture.Segment, emit func(*l7.Message)) {
	n := min(len(seg.Data), p.bufs[0].Max)
	data := make([]byte, 4+n)
	binary.BigEndian.PutUint32(data, uint32(seg.Len))
	copy(data[4:], seg.Data)
	start := *seg
	start.Data = nil
	f := stream.Frame{Data: data, Missing: max(seg.Len-n, 0), Start: &start, End: &start, TCPSeq: seg.TCPSeq - 4}
	p.request(&f, func(m *l7.Message) {
		m.Captured -= 4 // the size prefix was not captured here
		emit(m)
	})
}

// request decodes a request frame; false means it is not Kafka.
func (p *Parser) request(f *stream.Frame, emit func(*l7.Message)) bool {
	r := reader{b: f.Data[4:]}
	key, ver, corr := r.i16(), r.i16(), r.i32()
	a, ok := api(key)
	if r.failed() || !ok || ver < 0 || ver > a.maxVer+2 || corr < 0 {
		p.stats.BadFrames++
		return false
	}
	r.skipStr() // client id
	if requestHeaderVersion(key, ver) == 2 {
		r.flex = true
		r.tags()
	}
	if r.bad {
		p.stats.BadFrames++
		return false
	}
	m := newMessage(f, l7.Request)
	m.Version = versionString(ver)
	m.RequestType = a.name
	m.Endpoint = a.name
	m.RequestID, m.HasRequestID = uint64(corr), true
	var info reqInfo
	if !r.failed() {
		info = decodeRequest(&r, key, ver)
	}
	p.describe(m, key, &info)
	q := pendingReq{corr: corr, key: key, ver: ver}
	if key == keyProduce && info.hasPartition {
		q.target = targetHash(info.topic, info.topicID, info.hasTopicID, info.partition)
		q.hasTarget = true
		produceRecords(m, info.records)
	}
	if key == keyProduce && info.acksKnown && info.acks == 0 {
		m.OneWay = true // acks=0: the broker sends no response
	} else {
		p.remember(q)
	}
	p.stats.Requests++
	emit(m)
	return true
}

// describe fills Domain, Resource and Endpoint from the decoded body.
func (p *Parser) describe(m *l7.Message, key int16, info *reqInfo) {
	topic := string(info.topic)
	if topic == "" && info.hasTopicID {
		topic = p.topics.name(info.topicID)
	}
	switch {
	case topic != "":
		m.Domain = topic
		m.Resource = topic
		switch {
		case key == keyProduce && info.hasPartition:
			// The first partition, as the response's base offset is its.
			m.Resource = topic + ":" + strconv.FormatInt(int64(info.partition), 10)
			setAttr(m, AttrTopicPartition, m.Resource)
		case (key == keyFetch || key == keyListOffsets) && info.onePartition:
			m.Resource = topic + ":" + strconv.FormatInt(int64(info.partition), 10)
		}
		// Topics are few per cluster: "Produce orders" stays low-cardinality.
		m.Endpoint = m.RequestType + " " + topic
	case len(info.group) > 0:
		m.Domain = string(info.group)
		m.Resource = m.Domain
	}
}

// remember records a request for its response, dropping the oldest when full.
func (p *Parser) remember(q pendingReq) {
	if p.npen == maxPending {
		p.head = (p.head + 1) % maxPending
		p.npen--
		p.stats.DroppedReqs++
	}
	p.pending[(p.head+p.npen)%maxPending] = q
	p.npen++
}

// take finds and removes the request with correlation id corr. Requests
// older than it will never be answered (Kafka answers in order) and are
// forgotten too.
func (p *Parser) take(corr int32) (pendingReq, bool) {
	for i := 0; i < p.npen; i++ {
		q := p.pending[(p.head+i)%maxPending]
		if q.corr == corr {
			p.stats.DroppedReqs += uint64(i)
			p.head = (p.head + i + 1) % maxPending
			p.npen -= i + 1
			return q, true
		}
	}
	return pendingReq{}, false
}

// response decodes a response frame. It never refuses one: a size that
// framed it is all Kafka promises.
func (p *Parser) response(f *stream.Frame, emit func(*l7.Message)) bool {
	m := newMessage(f, l7.Response)
	r := reader{b: f.Data[4:]}
	corr := r.i32()
	p.stats.Responses++
	if r.failed() {
		m.Status = flowlog.StatusParseFailed
		emit(m)
		return true
	}
	m.RequestID, m.HasRequestID = uint64(uint32(corr)), true
	q, ok := p.take(corr)
	if !ok && p.npen > 0 {
		// Requests are waiting and this answers none: framing is lost
		// (garbage, or a miscounted gap). Start again at the next segment.
		p.stats.Responses--
		p.stats.BadFrames++
		return false
	}
	if !ok {
		// Not a response to a request seen here (capture started
		// mid-connection, or it was forgotten): it cannot be decoded.
		p.stats.Unmatched++
		m.Status = flowlog.StatusParseFailed
		emit(m)
		return true
	}
	m.Version = versionString(q.ver)
	if responseHeaderVersion(q.key, q.ver) == 1 {
		r.flex = true
		r.tags()
	}
	r.flex = flexible(q.key, q.ver)
	var res respInfo
	switch q.key {
	case keyProduce:
		res = p.produceResponse(&r, q, m)
	case keyFetch:
		res = p.fetchResponse(&r, q.ver, m)
	default:
		res = p.decodeResponse(&r, q.key, q.ver)
	}
	switch {
	case res.hasCode:
		m.Code, m.HasCode = int32(res.code), true
		m.Status = errorStatus(res.code)
		if res.code != 0 {
			m.Exception = errorName(res.code)
			if m.Exception == "" {
				m.Exception = "error " + strconv.Itoa(int(res.code))
			}
		}
	case r.bad || (r.short && f.Missing == 0):
		// Malformed within the bytes the frame holds.
		m.Status = flowlog.StatusParseFailed
	default:
		// No error code in this API's body, or it lies past the captured
		// prefix of a truncated message: the response itself came back.
		m.Status = flowlog.StatusSuccess
	}
	emit(m)
	return true
}

// versionString renders small API versions without allocating.
func versionString(v int16) string {
	if v >= 0 && int(v) < len(versions) {
		return versions[v]
	}
	return strconv.Itoa(int(v))
}

var versions = [...]string{"0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10",
	"11", "12", "13", "14", "15", "16", "17", "18", "19", "20"}
