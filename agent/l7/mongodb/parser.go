package mongodb

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"io"

	"github.com/sightline-io/sightline/agent/capture"
	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/agent/l7/stream"
	"github.com/sightline-io/sightline/flowlog"
)

const (
	// maxBuffer bounds the bytes held for one message: commands and reply
	// status fields sit at the start of a message, or in small ones.
	maxBuffer = 64 << 10
	// maxInflate bounds a decompressed OP_COMPRESSED message.
	maxInflate = 64 << 10
	// maxText bounds names and error messages taken from documents.
	maxText = 128
)

// Stats counts what a Parser saw.
type Stats struct {
	Requests     uint64 // requests emitted (one-way included)
	Responses    uint64 // replies emitted
	ParseFailed  uint64 // replies emitted with StatusParseFailed
	Compressed   uint64 // OP_COMPRESSED messages
	Inflated     uint64 // ... of which the body was decompressed
	Skipped      uint64 // frames that were not a message the parser knows
	FramingLost  uint64 // bad headers that made the buffer resynchronise
	OneWay       uint64 // requests that expect no reply
	ExhaustReply uint64 // replies with moreToCome (more replies follow)
}

// Parser parses both directions of one MongoDB connection. It is not safe
// for concurrent use.
type Parser struct {
	proto *Protocol
	dirs  [2]stream.Buffer
	stats Stats

	msg     l7.Message // reused for every emitted message
	inflate []byte     // decompression buffer, at most maxInflate

	// Per-connection caches: a connection repeats the same names.
	cmd, coll, db, endpoint strCache
	lastCmd, lastColl       string
}

var _ l7.Parser = (*Parser)(nil)

func newParser(proto *Protocol) *Parser {
	p := &Parser{proto: proto}
	for i := range p.dirs {
		p.dirs[i].Max = maxBuffer
	}
	return p
}

// Stats returns the parser's counters.
func (p *Parser) Stats() Stats { return p.stats }

// Close does nothing: every message is length-delimited.
func (p *Parser) Close(func(*l7.Message)) {}

// Feed frames one segment's bytes into messages.
func (p *Parser) Feed(seg *capture.Segment, emit func(*l7.Message)) {
	p.dirs[seg.Dir&1].Feed(seg, frameLen, func(f *stream.Frame) bool {
		if !p.frame(f, emit) {
			p.stats.FramingLost++
			return false
		}
		return true
	})
}

// frameLen reads a message's length from its header; a header with an
// unknown opcode or an absurd length means framing was lost.
func frameLen(b []byte) (int, error) {
	if len(b) < headerLen {
		return 0, nil
	}
	n := int(int32(binary.LittleEndian.Uint32(b)))
	if n < headerLen || n > maxMessage || !knownOp(int32(binary.LittleEndian.Uint32(b[12:]))) {
		return 0, stream.ErrNotFrame
	}
	return n, nil
}

func knownOp(op int32) bool {
	switch op {
	case opReply, opUpdate, opInsert, opQuery, opGetMore, opDelete, opKillCursors, opCompressed, opMsg:
		return true
	}
	return false
}

// frame parses one message; false means it is not one (framing lost).
func (p *Parser) frame(f *stream.Frame, emit func(*l7.Message)) bool {
	b := f.Data
	n := int(int32(binary.LittleEndian.Uint32(b)))
	reqID := binary.LittleEndian.Uint32(b[4:])
	respTo := binary.LittleEndian.Uint32(b[8:])
	op := int32(binary.LittleEndian.Uint32(b[12:]))
	m := &p.msg
	*m = l7.Message{
		Protocol: flowlog.L7MongoDB,
		Length:   int64(n),
		Captured: uint32(len(b)),
	}
	m.From(f.Start, f.TCPSeq)
	m.EndAt(f.End)
	complete := f.Missing == 0
	body := b[headerLen:]

	if op == opCompressed {
		p.stats.Compressed++
		if len(body) < 9 {
			return p.undecodable(m, respTo, reqID, "OP_COMPRESSED", emit)
		}
		orig := int32(binary.LittleEndian.Uint32(body))
		size := int(int32(binary.LittleEndian.Uint32(body[4:])))
		inner, ok := p.decompress(body[8], body[9:], size, complete)
		if !ok || !knownOp(orig) || orig == opCompressed {
			return p.undecodable(m, respTo, reqID, compressorName(body[8]), emit)
		}
		p.stats.Inflated++
		op, body, complete, n = orig, inner, true, headerLen+len(inner)
	}

	switch op {
	case opMsg:
		flags := uint32(0)
		if len(body) >= 4 {
			flags = binary.LittleEndian.Uint32(body)
		}
		end := n - headerLen
		if flags&flagChecksum != 0 {
			end -= 4
		}
		d, found := msgBody(body, end)
		if respTo == 0 {
			p.request(m, reqID)
			m.OneWay = flags&flagMoreToCome != 0
			if found {
				p.command(&d, m)
			}
			if m.RequestType == "" {
				m.RequestType = "OP_MSG"
			}
			p.emitRequest(m, emit)
			return true
		}
		if flags&flagMoreToCome != 0 {
			p.stats.ExhaustReply++
		}
		p.response(m, respTo)
		if !found {
			p.parseFailed(m, emit)
			return true
		}
		p.reply(&d, complete, m)
		p.emitResponse(m, emit)
		return true
	case opQuery:
		if respTo != 0 || len(body) < 4 {
			p.stats.Skipped++
			return true
		}
		p.request(m, reqID)
		p.legacyQuery(body[4:], n, m)
		p.emitRequest(m, emit)
		return true
	case opReply:
		p.response(m, respTo)
		if len(body) < 20 {
			p.parseFailed(m, emit)
			return true
		}
		flags := binary.LittleEndian.Uint32(body)
		d, ok := newDoc(body[20:], n-headerLen-20)
		num := int32(binary.LittleEndian.Uint32(body[16:]))
		switch {
		case flags&1 != 0: // CursorNotFound
			m.Status, m.Code, m.HasCode, m.Exception = flowlog.StatusClientError, 43, true, "CursorNotFound"
		case !ok && num == 0 && flags&2 == 0:
			m.Status = flowlog.StatusSuccess // an empty batch
		case !ok:
			p.parseFailed(m, emit)
			return true
		default:
			p.reply(&d, complete, m)
			if flags&2 != 0 && m.Status == flowlog.StatusSuccess { // QueryFailure
				m.Status = flowlog.StatusServerError
			}
		}
		p.emitResponse(m, emit)
		return true
	case opGetMore, opInsert, opUpdate, opDelete, opKillCursors:
		if respTo != 0 {
			p.stats.Skipped++
			return true
		}
		p.request(m, reqID)
		p.legacyWrite(op, body, m)
		p.emitRequest(m, emit)
		return true
	}
	return false
}

func (p *Parser) request(m *l7.Message, reqID uint32) {
	m.Type = l7.Request
	m.RequestID, m.HasRequestID = uint64(reqID), true
}

func (p *Parser) response(m *l7.Message, respTo uint32) {
	m.Type = l7.Response
	m.RequestID, m.HasRequestID = uint64(respTo), true
}

func (p *Parser) emitRequest(m *l7.Message, emit func(*l7.Message)) {
	p.stats.Requests++
	if m.OneWay {
		p.stats.OneWay++
	}
	emit(m)
}

func (p *Parser) emitResponse(m *l7.Message, emit func(*l7.Message)) {
	p.stats.Responses++
	if m.Status == flowlog.StatusParseFailed {
		p.stats.ParseFailed++
	}
	emit(m)
}

func (p *Parser) parseFailed(m *l7.Message, emit func(*l7.Message)) {
	m.Status = flowlog.StatusParseFailed
	p.emitResponse(m, emit)
}

// undecodable emits a compressed message whose body could not be read.
func (p *Parser) undecodable(m *l7.Message, respTo, reqID uint32, what string, emit func(*l7.Message)) bool {
	if respTo == 0 {
		p.request(m, reqID)
		m.RequestType = "OP_COMPRESSED"
		p.emitRequest(m, emit)
		return true
	}
	p.response(m, respTo)
	m.Exception = what
	p.parseFailed(m, emit)
	return true
}

func compressorName(id byte) string {
	switch id {
	case 0:
		return "noop"
	case 1:
		return "snappy"
	case 2:
		return "zlib"
	case 3:
		return "zstd"
	}
	return "unknown compressor"
}

// decompress inflates an OP_COMPRESSED body (noop, zlib, zstd) when it was
// captured whole and is at most maxInflate bytes; snappy is not supported.
func (p *Parser) decompress(id byte, data []byte, size int, complete bool) ([]byte, bool) {
	if !complete || size < 0 || size > maxInflate {
		return nil, false
	}
	switch id {
	case 0:
		return data, len(data) == size
	case 2:
		zr, err := zlib.NewReader(bytes.NewReader(data))
		if err != nil {
			return nil, false
		}
		buf := p.buffer(size)
		n, err := io.ReadFull(zr, buf)
		if err != nil || n != size {
			return nil, false
		}
		return buf, true
	case 3:
		d := p.proto.zstdDecoder()
		if d == nil {
			return nil, false
		}
		out, err := d.DecodeAll(data, p.buffer(0))
		if err != nil || len(out) != size {
			return nil, false
		}
		p.inflate = out[:0]
		return out, true
	}
	return nil, false
}

func (p *Parser) buffer(n int) []byte {
	if cap(p.inflate) < n {
		p.inflate = make([]byte, 0, n)
	}
	return p.inflate[:n]
}

// msgBody finds the kind 0 section of an OP_MSG body (after the header),
// whose sections end at end; kind 1 document sequences are skipped.
func msgBody(body []byte, end int) (doc, bool) {
	off := 4
	end = min(end, maxMessage)
	for off < end && off < len(body) {
		switch body[off] {
		case 0:
			return newDoc(body[off+1:], end-off-1)
		case 1:
			if off+5 > len(body) {
				return doc{}, false
			}
			sl := int(int32(binary.LittleEndian.Uint32(body[off+1:])))
			if sl < 4 || off+1+sl > end {
				return doc{}, false
			}
			off += 1 + sl
		default:
			return doc{}, false
		}
	}
	return doc{}, false
}
