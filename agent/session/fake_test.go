package session

import (
	"bytes"
	"strconv"
	"strings"
	"time"

	"github.com/sightline-io/sightline/agent/capture"
	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/flowlog"
)

// lineProto is a fake line protocol for tests:
//
//	<reqWord> <id> [key=value ...]\n
//	<respWord> <id> <code> [key=value ...]\n
//
// Keys res, trace, span, parent, xrid and ver fill the matching Message
// fields; other keys become attributes. A line that is not well formed
// yields a message with StatusParseFailed.
type lineProto struct {
	id                flowlog.L7Protocol
	reqWord, respWord string
	matching          l7.Matching
	timeout           time.Duration
	// reuse makes the parser emit the same *Message every time, as a
	// zero-allocation parser might (the assembler must copy what it keeps).
	reuse bool
	// panicOn makes the parser panic on a segment containing it.
	panicOn string
}

func fifoProto() *lineProto {
	return &lineProto{id: flowlog.L7Redis, reqWord: "REQ", respWord: "RESP", matching: l7.MatchFIFO, timeout: 10 * time.Second}
}

func byIDProto() *lineProto {
	return &lineProto{id: flowlog.L7DNS, reqWord: "Q", respWord: "A", matching: l7.MatchByID, timeout: 5 * time.Second}
}

func (p *lineProto) ID() flowlog.L7Protocol { return p.id }
func (p *lineProto) Matching() l7.Matching  { return p.matching }
func (p *lineProto) Timeout() time.Duration { return p.timeout }
func (p *lineProto) NewParser() l7.Parser   { return &lineParser{p: p} }
func (p *lineProto) Infer(data []byte, _ uint8) l7.Inference {
	for _, w := range []struct {
		word string
		inf  l7.Inference
	}{{p.reqWord + " ", l7.IsRequest}, {p.respWord + " ", l7.IsResponse}} {
		if bytes.HasPrefix(data, []byte(w.word)) {
			return w.inf
		}
		if len(data) < len(w.word) && strings.HasPrefix(w.word, string(data)) {
			return l7.NeedMore
		}
	}
	return l7.NotMine
}

const maxLine = 256

// lineDir is one direction's partial line and the identity of its first segment.
type lineDir struct {
	buf     []byte
	first   capture.Segment // identity fields only (Data not kept)
	started bool
	skip    bool // line too long: discard up to the next newline
}

type lineParser struct {
	p   *lineProto
	dir [2]lineDir
	msg l7.Message
}

func (lp *lineParser) Feed(seg *capture.Segment, emit func(*l7.Message)) {
	if lp.p.panicOn != "" && bytes.Contains(seg.Data, []byte(lp.p.panicOn)) {
		panic("lineParser: told to panic")
	}
	d := &lp.dir[seg.Dir&1]
	if seg.Gap() > 0 {
		// Bytes are missing: the partial line is lost.
		d.buf, d.started, d.skip = d.buf[:0], false, false
	}
	data := seg.Data
	for len(data) > 0 {
		if !d.started {
			d.first = *seg
			d.first.Data = nil
			d.started = true
		}
		i := bytes.IndexByte(data, '\n')
		chunk := data
		if i >= 0 {
			chunk = data[:i]
		}
		if !d.skip {
			if len(d.buf)+len(chunk) > maxLine {
				d.skip, d.buf = true, d.buf[:0]
			} else {
				d.buf = append(d.buf, chunk...)
			}
		}
		if i < 0 {
			return
		}
		if !d.skip {
			lp.emitLine(d, seg.End, len(d.buf)+1, emit)
		}
		d.buf, d.started, d.skip = d.buf[:0], false, false
		data = data[i+1:]
	}
}

func (lp *lineParser) Close(emit func(*l7.Message)) {
	for i := range lp.dir {
		d := &lp.dir[i]
		if d.started && !d.skip && len(d.buf) > 0 {
			lp.emitLine(d, d.first.End, len(d.buf), emit)
		}
		d.buf, d.started, d.skip = d.buf[:0], false, false
	}
}

func (lp *lineParser) emitLine(d *lineDir, end time.Time, length int, emit func(*l7.Message)) {
	m := &lp.msg
	if !lp.p.reuse {
		m = new(l7.Message)
	}
	*m = l7.Message{
		Protocol: lp.p.id, Version: "1", Length: int64(length), Captured: uint32(length),
		Dir: d.first.Dir, Start: d.first.Start, End: end, TCPSeq: d.first.TCPSeq, TID: d.first.TID,
		CapSeq: d.first.CapSeq, SyscallTraceID: d.first.SyscallTraceID, Coroutine: d.first.Coroutine,
	}
	fields := strings.Fields(string(d.buf))
	if len(fields) < 2 {
		return
	}
	switch fields[0] {
	case lp.p.reqWord:
		m.Type = l7.Request
		m.RequestType = fields[0]
	case lp.p.respWord:
		m.Type = l7.Response
	default:
		return
	}
	id, err := strconv.ParseUint(fields[1], 10, 64)
	if err != nil {
		m.Status = flowlog.StatusParseFailed
	} else if lp.p.matching == l7.MatchByID {
		m.RequestID, m.HasRequestID = id, true
	}
	rest := fields[2:]
	if m.Type == l7.Response && len(rest) > 0 {
		code, err := strconv.ParseInt(rest[0], 10, 32)
		if err == nil {
			m.Code, m.HasCode = int32(code), true
			switch {
			case code >= 500:
				m.Status = flowlog.StatusServerError
			case code >= 400:
				m.Status = flowlog.StatusClientError
			}
			rest = rest[1:]
		}
	}
	for _, kv := range rest {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			continue
		}
		switch k {
		case "res":
			m.Resource = v
		case "trace":
			m.TraceID = v
		case "span":
			m.SpanID = v
		case "parent":
			m.ParentSpanID = v
		case "xrid":
			m.XRequestID = v
		case "ver":
			m.Version = v
		case "oneway":
			m.OneWay = v == "1"
		default:
			if m.Attributes == nil {
				m.Attributes = make(map[string]string)
			}
			m.Attributes[k] = v
		}
	}
	emit(m)
}
