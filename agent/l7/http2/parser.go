package http2

import (
	"sort"
	"strings"
	"time"

	"golang.org/x/net/http2/hpack"

	"github.com/sightline-io/sightline/agent/capture"
	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/agent/l7/stream"
)

const (
	// maxStreams bounds the streams tracked per connection; past it the
	// oldest is dropped (its request, if held, is emitted to time out).
	maxStreams = 1024
	// maxFrameBuffer bounds the bytes buffered for one frame; a longer frame
	// is handled as far as buffered (for DATA only its size matters).
	maxFrameBuffer = 64 << 10
	// holdMax is how long a request whose client has not finished sending
	// (END_STREAM) and that has no response headers yet is held to learn
	// its length, before it is emitted anyway.
	holdMax = time.Second
	// maxHeaderBlock bounds the bytes of one header block (HEADERS and its
	// CONTINUATIONs) that are decoded; the rest is skipped as if lost.
	maxHeaderBlock = 256 << 10
	// maxFreeStreams bounds the finished streams kept for reuse.
	maxFreeStreams = 16
)

// Stats counts what a Parser saw, dropped and recovered from.
type Stats struct {
	Frames    uint64 // frames handled
	Requests  uint64 // requests emitted
	Responses uint64 // responses emitted (RST_STREAM and GOAWAY endings included)
	Resets    uint64 // streams ended by RST_STREAM
	GoAways   uint64 // streams ended by a GOAWAY that did not process them
	Interim   uint64 // 1xx response header blocks (not emitted)
	Pushed    uint64 // PUSH_PROMISE streams (not reported)

	Unclassified   uint64 // header blocks neither request nor response (nothing decoded)
	DroppedStreams uint64 // streams dropped because maxStreams were open
	LostSync       uint64 // times framing was lost (gap, garbage) in one direction

	HPACKResets      uint64 // dynamic tables restarted empty (lost or truncated blocks)
	HPACKErrors      uint64 // header blocks with undecodable bytes
	UnresolvedFields uint64 // indexed fields missing from the table (mid-connection start)
}

// ident is where a message was seen: its first segment and byte.
type ident struct {
	dir            capture.Direction
	start, end     time.Time
	tcpSeq         uint32
	tid, capSeq    uint32
	syscallTraceID uint64
	coroutine      uint64
}

func identOf(seg *capture.Segment, tcpSeq uint32) ident {
	return ident{dir: seg.Dir, start: seg.Start, end: endTime(seg), tcpSeq: tcpSeq, tid: seg.TID,
		capSeq: seg.CapSeq, syscallTraceID: seg.SyscallTraceID, coroutine: seg.Coroutine}
}

func endTime(seg *capture.Segment) time.Time {
	if !seg.End.IsZero() {
		return seg.End
	}
	return seg.Start
}

// fields are the header fields of one block that messages use. Values are
// the decoder's strings (indexed fields share the table's).
type fields struct {
	method, authority, host, path, status string
	contentType, traceparent, xRequestID  string
	grpcStatus, grpcMessage               string
}

// dirState is one direction of the connection.
type dirState struct {
	p        *Parser
	dir      capture.Direction
	buf      stream.Buffer
	frameLen stream.FrameLen
	onFrame  func(*stream.Frame) bool
	hp       *hpackDecoder
	blk      fields

	// strict makes frameLen check headers strictly: at the start and after
	// framing was lost, until a plausible frame is found.
	strict   bool
	resyncs  uint64
	prefaceN int // bytes of the client preface matched
	started  bool

	// The header block in progress (HEADERS or PUSH_PROMISE, then
	// CONTINUATION frames); blockStream 0: none.
	blockStream    uint32
	blockType      uint8
	blockEndStream bool
	blockTrunc     bool // bytes of the block were not captured
	blockPromised  uint32
	blockLen       int64
	blockCap       int64
	blockStart     ident
	blockEnd       time.Time
}

// Parser parses both directions of one HTTP/2 connection. It is not safe
// for concurrent use.
type Parser struct {
	keepSecrets bool
	dirs        [2]dirState
	streams     map[uint32]*h2stream
	free        []*h2stream
	seq         uint64

	clientDir   capture.Direction
	clientKnown bool

	held     int       // requests seen, not yet emitted
	holdScan time.Time // when to look for held requests older than holdMax

	emit  func(*l7.Message)
	msg   l7.Message
	last  pathCache
	stats Stats
}

var _ l7.Parser = (*Parser)(nil)

func newParser(keepSecrets bool) *Parser {
	p := &Parser{keepSecrets: keepSecrets, streams: make(map[uint32]*h2stream)}
	for i := range p.dirs {
		d := &p.dirs[i]
		d.p, d.dir, d.strict = p, capture.Direction(i), true
		d.buf.Max = maxFrameBuffer
		d.frameLen = d.nextFrameLen
		d.onFrame = d.handleFrame
		d.hp = newHPACKDecoder(d.onField, &p.stats)
	}
	return p
}

// Stats returns the parser's counters.
func (p *Parser) Stats() Stats { return p.stats }

// Feed parses one segment, calling emit for each message it completes.
func (p *Parser) Feed(seg *capture.Segment, emit func(*l7.Message)) {
	p.emit = emit
	d := &p.dirs[seg.Dir&1]
	if !d.started && len(seg.Data) > 0 {
		seg = d.skipPreface(seg)
		if seg == nil {
			return
		}
	}
	d.buf.Feed(seg, d.frameLen, d.onFrame)
	if r := d.buf.Stats.Resyncs; r != d.resyncs {
		d.resyncs = r
		d.lostSync()
	}
	if p.held > 0 && !seg.Start.IsZero() && !seg.Start.Before(p.holdScan) {
		p.releaseHeld(seg.Start)
	}
	p.emit = nil
}

// skipPreface consumes the client preface at the start of a direction,
// which also tells which side is the client. It returns the segment with
// the preface bytes removed, or nil if nothing is left.
func (d *dirState) skipPreface(seg *capture.Segment) *capture.Segment {
	data := seg.Data
	n := 0
	for n < len(data) && d.prefaceN+n < len(preface) && data[n] == preface[d.prefaceN+n] {
		n++
	}
	if n == 0 {
		d.started = true
		return seg
	}
	d.prefaceN += n
	if d.prefaceN == len(preface) {
		d.started = true
		d.p.clientDir, d.p.clientKnown = d.dir, true
	} else if n < len(data) {
		d.started = true // a preface cut short: whatever follows is framed
	}
	if n == len(data) && seg.Gap() == 0 {
		return nil
	}
	rest := *seg
	rest.Data, rest.Len, rest.TCPSeq = data[n:], seg.Len-n, seg.SeqAt(n)
	return &rest
}

// nextFrameLen is the stream.FrameLen of the direction.
func (d *dirState) nextFrameLen(b []byte) (int, error) {
	h, ok := parseFrameHeader(b)
	if !ok {
		return 0, nil
	}
	if d.strict && !plausible(h, maxInferFrameLen) {
		return 0, stream.ErrNotFrame
	}
	return frameHeaderLen + h.length, nil
}

// lostSync handles bytes lost between frames: the header block in
// progress is cut, and the dynamic table may have missed entries.
func (d *dirState) lostSync() {
	d.p.stats.LostSync++
	d.strict = true
	if d.blockStream != 0 {
		d.endBlock(true)
	} else {
		d.hp.reset()
	}
}

// handleFrame is the stream.Buffer callback: one frame, whole or cut.
func (d *dirState) handleFrame(f *stream.Frame) bool {
	p := d.p
	h, _ := parseFrameHeader(f.Data)
	d.strict = false
	p.stats.Frames++
	payload := f.Data[frameHeaderLen:]
	complete := f.Missing == 0
	wire, captured := int64(frameHeaderLen+h.length), int64(len(f.Data))

	if d.blockStream != 0 && (h.typ != frameContinuation || h.stream != d.blockStream) {
		// RFC 9113 6.10: nothing may interleave with a header block; the
		// CONTINUATION frames that end it were lost.
		d.endBlock(true)
	}
	switch h.typ {
	case frameData:
		p.onData(d, h, f, wire, captured)
	case frameHeaders, framePushPromise:
		d.beginBlock(h, f, payload, wire, captured)
	case frameContinuation:
		if d.blockStream != h.stream {
			return true // the block's first frame was not seen
		}
		d.blockLen += wire
		d.blockCap += captured
		d.blockEnd = endTime(f.End)
		if d.blockLen > maxHeaderBlock {
			d.blockTrunc = true
		}
		if !d.blockTrunc {
			d.hp.write(payload)
			d.blockTrunc = !complete
		}
		if h.flags&flagEndHeaders != 0 {
			d.endBlock(false)
		}
	case frameRSTStream:
		if complete && len(payload) >= 4 {
			p.onReset(d, h.stream, be32(payload), f)
		}
	case frameGoAway:
		if len(payload) >= 8 {
			p.onGoAway(d, be32(payload)&0x7fffffff, be32(payload[4:]), f)
		}
	}
	return true
}

// beginBlock starts the header block of a HEADERS or PUSH_PROMISE frame.
func (d *dirState) beginBlock(h frameHeader, f *stream.Frame, payload []byte, wire, captured int64) {
	extra := 0
	if h.typ == framePushPromise {
		extra = 4
	}
	d.blockStream, d.blockType = h.stream, h.typ
	d.blockEndStream = h.flags&flagEndStream != 0
	d.blockLen, d.blockCap = wire, captured
	d.blockStart = identOf(f.Start, f.TCPSeq)
	d.blockEnd = endTime(f.End)
	d.blockPromised = 0
	d.blk = fields{}
	d.hp.begin()
	frag, complete, ok := fragment(h, payload, extra)
	if extra > 0 {
		pad := 0
		if h.flags&flagPadded != 0 {
			pad = 1
		}
		if len(payload) >= pad+4 {
			d.blockPromised = be32(payload[pad:]) & 0x7fffffff
		}
	}
	d.blockTrunc = !ok || !complete
	if ok {
		d.hp.write(frag)
	}
	if h.flags&flagEndHeaders != 0 {
		d.endBlock(false)
	}
}

// endBlock finishes the header block in progress; cut says its end was
// lost.
func (d *dirState) endBlock(cut bool) {
	d.hp.end(cut || d.blockTrunc)
	id := d.blockStream
	d.blockStream = 0
	if d.blockType == framePushPromise {
		d.p.onPushPromise(d.blockPromised)
		return
	}
	d.p.onHeaders(d, id)
}

// onField receives the decoded fields of the block in progress. HTTP/2
// field names are lower case, so they are compared as they are. Values
// that break RFC 9113's rules for their field are dropped: they come from
// bytes that only looked like a header block.
func (d *dirState) onField(f hpack.HeaderField) {
	b := &d.blk
	switch f.Name {
	case ":method":
		if isToken(f.Value) {
			b.method = f.Value
		}
	case ":authority":
		if isVisible(f.Value) {
			b.authority = f.Value
		}
	case ":path":
		if f.Value == "*" || len(f.Value) > 0 && f.Value[0] == '/' && isVisible(f.Value) {
			b.path = f.Value
		}
	case ":status":
		if len(f.Value) == 3 && isDigits(f.Value) {
			b.status = f.Value
		}
	case "host":
		if isVisible(f.Value) {
			b.host = f.Value
		}
	case "content-type":
		b.contentType = f.Value
	case "traceparent":
		b.traceparent = f.Value
	case "x-request-id":
		b.xRequestID = f.Value
	case "grpc-status":
		if isDigits(f.Value) {
			b.grpcStatus = f.Value
		}
	case "grpc-message":
		b.grpcMessage = f.Value
	}
}

// Close reports what the connection's end settles: requests still held,
// and responses cut before END_STREAM. Requests without a response are left
// to the session layer, which reports them as timeouts.
func (p *Parser) Close(emit func(*l7.Message)) {
	p.emit = emit
	open := make([]*h2stream, 0, len(p.streams))
	for _, st := range p.streams {
		open = append(open, st)
	}
	sort.Slice(open, func(i, j int) bool { return open[i].seq < open[j].seq })
	for _, st := range open {
		p.emitRequest(st)
		if st.respStarted && !st.pushed {
			p.emitResponse(st, st.respEnd, endClosed, nil)
		}
	}
	clear(p.streams)
	p.held = 0
	p.emit = nil
}

// isToken reports whether s is a non-empty RFC 9110 token (a method).
func isToken(s string) bool {
	if len(s) == 0 || len(s) > 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

// isVisible reports whether s is non-empty visible ASCII (paths and
// authorities carry no spaces or controls; non-ASCII is percent-encoded).
func isVisible(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return false
		}
	}
	return len(s) > 0
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return len(s) > 0 && len(s) <= 4
}
