package fastcgi

import (
	"encoding/binary"

	"github.com/sightline-io/sightline/agent/capture"
	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/agent/l7/stream"
	"github.com/sightline-io/sightline/flowlog"
)

const (
	// maxRecord bounds the bytes buffered for one record: PARAMS and the
	// first STDOUT bytes are what the parser reads; longer records are
	// delivered cut and the rest skipped.
	maxRecord = 16 << 10
	// maxParams bounds one request's PARAMS stream, maxHead its CGI
	// response headers.
	maxParams = 16 << 10
	maxHead   = 4 << 10
	// maxActive bounds the requests in flight on one connection.
	maxActive = 16
)

// Stats counts what a Parser saw.
type Stats struct {
	Requests    uint64 // requests emitted
	Responses   uint64 // responses emitted
	Records     uint64 // records framed
	Management  uint64 // GET_VALUES and other records of request id 0
	Evicted     uint64 // requests dropped because maxActive were in flight
	FramingLost uint64 // bad record headers (resynchronised on a later segment)
	CutParams   uint64 // PARAMS streams longer than maxParams or cut by the capture
}

// request is the state of one request id.
type request struct {
	used bool
	id   uint16
	age  uint64

	begun, emitted, stdinDone, paramsDone, paramsCut bool
	req                                              l7.Message // identity of the first request record
	reqLen                                           int64
	reqCap                                           uint32
	params                                           []byte

	responding, headDone, sawStdout, sawStderr bool
	resp                                       l7.Message // identity of the first response record
	respLen                                    int64
	respCap                                    uint32
	head                                       []byte
}

// Parser parses both directions of one FastCGI connection. It is not safe
// for concurrent use.
type Parser struct {
	keepSecrets bool
	dirs        [2]stream.Buffer
	reqs        [maxActive]request
	clock       uint64
	stats       Stats

	msg                   l7.Message // reused for every emitted message
	domain, method, reqID strCache
}

var _ l7.Parser = (*Parser)(nil)

func newParser(keepSecrets bool) *Parser {
	p := &Parser{keepSecrets: keepSecrets}
	for i := range p.dirs {
		p.dirs[i].Max = maxRecord
	}
	return p
}

// Stats returns the parser's counters.
func (p *Parser) Stats() Stats { return p.stats }

// Feed frames one segment's bytes into records.
func (p *Parser) Feed(seg *capture.Segment, emit func(*l7.Message)) {
	p.dirs[seg.Dir&1].Feed(seg, frameLen, func(f *stream.Frame) bool {
		p.record(f, emit)
		return true
	})
}

// Close emits what the connection's end leaves: requests that were sent
// but not yet emitted, and responses without their END_REQUEST.
func (p *Parser) Close(emit func(*l7.Message)) {
	for i := range p.reqs {
		r := &p.reqs[i]
		if !r.used {
			continue
		}
		if r.begun && !r.emitted {
			p.emitRequest(r, nil, emit)
		}
		if r.responding {
			p.emitResponse(r, nil, -1, emit)
		}
		p.free(r)
	}
}

// frameLen reads a record header: version 1 and a defined type, or framing
// is lost.
func frameLen(b []byte) (int, error) {
	if len(b) < recordHeader {
		return 0, nil
	}
	if b[0] != 1 || b[1] < typeBeginRequest || b[1] > typeUnknownType {
		return 0, stream.ErrNotFrame
	}
	return recordHeader + int(binary.BigEndian.Uint16(b[4:])) + int(b[6]), nil
}

// record handles one framed record (possibly cut: f.Missing > 0).
func (p *Parser) record(f *stream.Frame, emit func(*l7.Message)) {
	p.stats.Records++
	b := f.Data
	typ := b[1]
	id := binary.BigEndian.Uint16(b[2:])
	clen := int(binary.BigEndian.Uint16(b[4:]))
	size := int64(len(b) + f.Missing)
	content := b[recordHeader:min(len(b), recordHeader+clen)]
	whole := len(content) == clen
	if id == 0 {
		p.stats.Management++ // GET_VALUES and friends: not requests
		return
	}

	switch typ {
	case typeBeginRequest:
		r := p.slot(id, true)
		p.reset(r)
		r.begun = true
		r.req.From(f.Start, f.TCPSeq)
		r.reqLen, r.reqCap = size, uint32(len(b))
	case typeParams, typeStdin, typeData, typeAbortRequest:
		r := p.slot(id, false)
		if r == nil {
			// The capture started after BEGIN_REQUEST: the request is lost.
			return
		}
		r.reqLen += size
		r.reqCap += uint32(len(b))
		switch typ {
		case typeParams:
			p.addParams(r, content, whole, clen)
		case typeStdin:
			if clen == 0 {
				r.stdinDone = true
				if !r.emitted {
					p.emitRequest(r, f.End, emit)
				}
			}
		}
	case typeStdout, typeStderr, typeEndRequest:
		r := p.slot(id, true)
		if r.begun && !r.emitted {
			p.emitRequest(r, f.Start, emit)
		}
		if !r.responding {
			r.responding = true
			r.resp.From(f.Start, f.TCPSeq)
		}
		r.respLen += size
		r.respCap += uint32(len(b))
		switch typ {
		case typeStdout:
			r.sawStdout = r.sawStdout || clen > 0
			p.addHead(r, content, whole)
		case typeStderr:
			r.sawStderr = r.sawStderr || clen > 0
		case typeEndRequest:
			protoStatus := -1
			if len(content) >= 5 {
				protoStatus = int(content[4])
			}
			p.emitResponse(r, f.End, protoStatus, emit)
			p.free(r)
		}
	}
}

// slot returns the state of request id, making it when create is set (the
// oldest request is evicted when maxActive are in flight).
func (p *Parser) slot(id uint16, create bool) *request {
	var free, oldest *request
	for i := range p.reqs {
		r := &p.reqs[i]
		switch {
		case r.used && r.id == id:
			return r
		case !r.used:
			if free == nil {
				free = r
			}
		case oldest == nil || r.age < oldest.age:
			oldest = r
		}
	}
	if !create {
		return nil
	}
	if free == nil {
		p.stats.Evicted++
		free = oldest
		p.free(free)
	}
	p.clock++
	free.used, free.id, free.age = true, id, p.clock
	return free
}

// reset clears a request's state, keeping its buffers.
func (p *Parser) reset(r *request) {
	params, head := r.params[:0], r.head[:0]
	id, age := r.id, r.age
	*r = request{used: true, id: id, age: age, params: params, head: head}
}

func (p *Parser) free(r *request) {
	p.reset(r)
	r.used = false
}

// addParams appends a PARAMS record's content; an empty record ends the
// stream. Pairs may straddle records, so the stream is parsed at its end.
func (p *Parser) addParams(r *request, content []byte, whole bool, clen int) {
	if clen == 0 {
		r.paramsDone = true
		return
	}
	if r.paramsCut {
		return
	}
	room := maxParams - len(r.params)
	if len(content) > room || !whole {
		// Past a cut the pairs cannot be aligned again.
		r.paramsCut = true
		p.stats.CutParams++
		content = content[:min(len(content), room)]
	}
	r.params = append(r.params, content...)
}

// addHead collects the CGI headers at the start of STDOUT.
func (p *Parser) addHead(r *request, content []byte, whole bool) {
	if r.headDone {
		return
	}
	room := maxHead - len(r.head)
	r.head = append(r.head, content[:min(len(content), room)]...)
	if headEnd(r.head) >= 0 || len(r.head) >= maxHead || !whole {
		r.headDone = true
	}
}

func (p *Parser) emitRequest(r *request, end *capture.Segment, emit func(*l7.Message)) {
	r.emitted = true
	m := &p.msg
	*m = r.req
	m.Type = l7.Request
	m.Protocol = flowlog.L7FastCGI
	m.Version = "1"
	m.RequestID, m.HasRequestID = uint64(r.id), true
	m.Length, m.Captured = r.reqLen, r.reqCap
	if r.paramsCut || !r.paramsDone {
		// An application server may answer before reading the empty
		// STDIN that ends a request: once the params are whole, the bytes
		// so far are the request's size as far as it is known.
		m.Length = -1
	}
	if end != nil {
		m.EndAt(end)
	}
	p.fillRequest(m, r.params)
	if m.RequestType == "" {
		m.RequestType = "UNKNOWN"
	}
	p.stats.Requests++
	emit(m)
}

// emitResponse emits the response of r; protoStatus is END_REQUEST's
// protocolStatus (-1: none seen).
func (p *Parser) emitResponse(r *request, end *capture.Segment, protoStatus int, emit func(*l7.Message)) {
	m := &p.msg
	*m = r.resp
	m.Type = l7.Response
	m.Protocol = flowlog.L7FastCGI
	m.Version = "1"
	m.RequestID, m.HasRequestID = uint64(r.id), true
	m.Length, m.Captured = r.respLen, r.respCap
	if protoStatus < 0 {
		m.Length = -1
	}
	if end != nil {
		m.EndAt(end)
	}
	if r.sawStdout {
		p.fillResponse(m, r.head)
	} else {
		// A responder must write at least its headers.
		m.Status = flowlog.StatusServerError
		m.Exception = "no output"
	}
	if protoStatus > 0 {
		m.Status = flowlog.StatusServerError
		m.Exception = protocolStatusName(protoStatus)
	}
	p.stats.Responses++
	emit(m)
}

func protocolStatusName(s int) string {
	switch s {
	case 1:
		return "FCGI_CANT_MPX_CONN"
	case 2:
		return "FCGI_OVERLOADED"
	case 3:
		return "FCGI_UNKNOWN_ROLE"
	}
	return "FCGI protocol status"
}
