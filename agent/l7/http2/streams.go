package http2

import (
	"strings"
	"time"

	"github.com/sightline-io/sightline/agent/capture"
	"github.com/sightline-io/sightline/agent/l7/stream"
	"github.com/sightline-io/sightline/flowlog"
)

// h2stream is one stream: a request and its response.
type h2stream struct {
	id  uint32
	seq uint64 // creation order, to drop the oldest

	pushed bool // a PUSH_PROMISE stream: tracked only to be ignored

	// Request side (sent in reqDir).
	reqDir               capture.Direction
	hasReq, reqEmitted   bool
	method, domain, path string
	contentType          string
	traceparent, xrid    string
	grpcData             bool // request DATA looked like a gRPC message
	sawData              bool // a request DATA frame was seen
	reqStart             ident
	reqEnd               time.Time
	reqLen, reqCap       int64

	// Response side.
	respStarted      bool
	respStart        ident
	respEnd          time.Time
	respLen, respCap int64
	status           string // :status
	respGRPC         bool   // response content-type application/grpc
	grpcStatus       string
	grpcMessage      string
	respPartial      bool // a response header block had fields the table could not resolve
}

// grpc reports whether the stream is a gRPC call: the request says so, or,
// when its content-type was not decoded (a table reference the capture
// missed), the response or the request's gRPC message framing does, with a
// path of the gRPC shape or none decoded.
func (st *h2stream) grpc() bool {
	if st.contentType != "" {
		return isGRPCContentType(st.contentType)
	}
	return st.respGRPC || st.grpcStatus != "" || st.grpcData && (st.path == "" || grpcPath(st.path))
}

func isGRPCContentType(ct string) bool {
	return strings.HasPrefix(ct, "application/grpc")
}

func (st *h2stream) protocol() flowlog.L7Protocol {
	if st.grpc() {
		return flowlog.L7GRPC
	}
	return flowlog.L7HTTP2
}

// newStream tracks stream id, dropping the oldest stream when full.
func (p *Parser) newStream(id uint32) *h2stream {
	if len(p.streams) >= maxStreams {
		var oldest *h2stream
		for _, st := range p.streams {
			if oldest == nil || st.seq < oldest.seq {
				oldest = st
			}
		}
		p.stats.DroppedStreams++
		p.emitRequest(oldest) // so that the session reports it
		p.drop(oldest)
	}
	p.seq++
	var st *h2stream
	if n := len(p.free); n > 0 {
		st = p.free[n-1]
		p.free = p.free[:n-1]
	} else {
		st = new(h2stream)
	}
	st.id, st.seq = id, p.seq
	p.streams[id] = st
	return st
}

// drop forgets st and keeps its memory for the next stream: messages copy
// what they take from it.
func (p *Parser) drop(st *h2stream) {
	delete(p.streams, st.id)
	if len(p.free) < maxFreeStreams {
		*st = h2stream{}
		p.free = append(p.free, st)
	}
}

func (p *Parser) onPushPromise(id uint32) {
	if id == 0 || p.streams[id] != nil {
		return
	}
	p.stats.Pushed++
	p.newStream(id).pushed = true
}

// onData counts a DATA frame and ends a side on END_STREAM.
func (p *Parser) onData(d *dirState, h frameHeader, f *stream.Frame, wire, captured int64) {
	st := p.streams[h.stream]
	if st == nil {
		return // the stream's headers were not seen, or it is finished
	}
	end := h.flags&flagEndStream != 0
	if st.pushed {
		if end {
			p.drop(st)
		}
		return
	}
	if st.hasReq && d.dir == st.reqDir {
		st.reqLen += wire
		st.reqCap += captured
		st.reqEnd = endTime(f.End)
		if !st.sawData {
			st.sawData = true
			st.grpcData = grpcPrefix(h, f.Data[frameHeaderLen:])
		}
		if end {
			p.emitRequest(st)
		}
		return
	}
	if !st.respStarted {
		return // DATA before response headers: not a valid response
	}
	st.respLen += wire
	st.respCap += captured
	st.respEnd = endTime(f.End)
	if end {
		p.emitResponse(st, endTime(f.End), endStream, nil)
	}
}

// grpcPrefix reports whether the first DATA payload of a request starts
// with a gRPC message prefix: compressed flag 0 or 1 and a length below
// 64 MiB (gRPC's default limit is 4 MiB; a message may span frames).
func grpcPrefix(h frameHeader, p []byte) bool {
	off := 0
	if h.flags&flagPadded != 0 {
		off = 1
	}
	return len(p) >= off+5 && p[off] <= 1 && be32(p[off+1:]) < 64<<20
}

// onHeaders handles a complete header block of stream id sent in d.
func (p *Parser) onHeaders(d *dirState, id uint32) {
	b := &d.blk
	st := p.streams[id]
	if st == nil {
		isReq := b.method != "" || b.path != "" || b.status == "" && p.clientKnown && d.dir == p.clientDir
		isResp := !isReq && (b.status != "" || b.grpcStatus != "" || p.clientKnown && d.dir != p.clientDir)
		switch {
		case isReq:
			p.clientDir, p.clientKnown = d.dir, true
			st = p.newStream(id)
			p.startRequest(st, d)
			return
		case isResp:
			// The request was not seen (capture began mid-connection).
			p.clientDir, p.clientKnown = d.dir.Reverse(), true
			st = p.newStream(id)
			st.reqDir = d.dir.Reverse()
		default:
			p.stats.Unclassified++
			return
		}
	}
	if st.pushed {
		if d.blockEndStream {
			p.drop(st)
		}
		return
	}
	if st.hasReq && d.dir == st.reqDir {
		// Request trailers.
		st.reqLen += d.blockLen
		st.reqCap += d.blockCap
		st.reqEnd = d.blockEnd
		if d.blockEndStream {
			p.emitRequest(st)
		}
		return
	}
	st.respLen += d.blockLen
	st.respCap += d.blockCap
	st.respEnd = d.blockEnd
	if d.hp.unresolved > 0 || d.hp.failed || d.blockTrunc {
		st.respPartial = true
	}
	if !st.respStarted {
		if len(b.status) == 3 && b.status[0] == '1' {
			p.stats.Interim++ // 100 Continue, 103 Early Hints: the final response follows
			return
		}
		st.respStarted = true
		st.respStart = d.blockStart
		st.status = b.status
		st.respGRPC = isGRPCContentType(b.contentType)
		// The request goes first, whatever it still lacks.
		p.emitRequest(st)
	}
	if b.grpcStatus != "" {
		st.grpcStatus, st.grpcMessage = b.grpcStatus, b.grpcMessage
	}
	if d.blockEndStream {
		p.emitResponse(st, d.blockEnd, endStream, nil)
	}
}

// startRequest fills a new stream from its request header block.
func (p *Parser) startRequest(st *h2stream, d *dirState) {
	b := &d.blk
	st.hasReq, st.reqDir = true, d.dir
	st.method, st.path, st.contentType = b.method, b.path, b.contentType
	st.domain = b.authority
	if st.domain == "" {
		st.domain = b.host
	}
	st.traceparent, st.xrid = b.traceparent, b.xRequestID
	st.reqStart, st.reqEnd = d.blockStart, d.blockEnd
	st.reqLen, st.reqCap = d.blockLen, d.blockCap
	p.held++
	if d.blockEndStream {
		p.emitRequest(st)
		return
	}
	if p.holdScan.IsZero() || st.reqStart.start.Add(holdMax).Before(p.holdScan) {
		p.holdScan = st.reqStart.start.Add(holdMax)
	}
}

// releaseHeld emits requests held longer than holdMax at now.
func (p *Parser) releaseHeld(now time.Time) {
	var next time.Time
	for _, st := range p.streams {
		if !st.hasReq || st.reqEmitted {
			continue
		}
		due := st.reqStart.start.Add(holdMax)
		if !now.Before(due) {
			p.emitRequest(st)
		} else if next.IsZero() || due.Before(next) {
			next = due
		}
	}
	p.holdScan = next
}

// onReset ends an open stream with the RST_STREAM error code.
func (p *Parser) onReset(d *dirState, id, code uint32, f *stream.Frame) {
	st := p.streams[id]
	if st == nil {
		return
	}
	if st.pushed {
		p.drop(st)
		return
	}
	p.stats.Resets++
	rst := resetEnd{code: code, fromClient: st.hasReq && d.dir == st.reqDir || !st.hasReq && p.clientKnown && d.dir == p.clientDir}
	at := identOf(f.Start, f.TCPSeq)
	rst.at = &at
	p.emitRequest(st)
	p.emitResponse(st, endTime(f.End), endReset, &rst)
}

// onGoAway ends the client's streams that a server's GOAWAY says it did
// not process (ids above the last one it handled): the client retries them
// elsewhere, so they would otherwise wait for their timeout here.
func (p *Parser) onGoAway(d *dirState, last, code uint32, f *stream.Frame) {
	if !p.clientKnown || d.dir == p.clientDir {
		return
	}
	at := identOf(f.Start, f.TCPSeq)
	rst := resetEnd{code: code, at: &at}
	for id, st := range p.streams {
		if id <= last || id%2 == 0 || st.pushed || !st.hasReq {
			continue
		}
		p.stats.GoAways++
		p.emitRequest(st)
		p.emitResponse(st, endTime(f.End), endGoAway, &rst)
	}
}
