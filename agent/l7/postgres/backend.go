package postgres

import (
	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/agent/l7/stream"
	"github.com/sightline-io/sightline/flowlog"
)

// backend handles one server message.
func (p *Parser) backend(f *stream.Frame, emit func(*l7.Message)) bool {
	b := f.Data
	if p.awaitSSL {
		p.awaitSSL = false
		if u := p.first(); u != nil && u.kind == unitSSL {
			u.tag = sslAnswer(b[0])
			p.answer(f, u, emit)
			p.popFront()
		}
		switch b[0] {
		case 'N':
			return true // plaintext startup follows
		case 'S', 'G':
			p.stats.SSL++
		}
		p.off = true // encrypted, or not an answer: lost
		return false
	}
	body := b[5:]
	switch b[0] {
	case 'C', 'I', 's':
		p.complete(f, body, b[0], emit)
	case 'E':
		p.fail(f, body, emit)
	case 'Z':
		p.ready(f, emit)
	}
	return true
}

// sslAnswer names the server's answer to an SSL/GSS request (the Result).
func sslAnswer(c byte) string {
	switch c {
	case 'N':
		return "N"
	case 'S':
		return "S"
	case 'G':
		return "G"
	}
	return ""
}

// first returns the first unit that is still waiting, skipping dropped ones.
func (p *Parser) first() *unit {
	for len(p.units) > 0 && p.units[0].dropped {
		p.popFront()
	}
	if len(p.units) == 0 {
		return nil
	}
	return &p.units[0]
}

// complete handles CommandComplete, EmptyQueryResponse and PortalSuspended.
func (p *Parser) complete(f *stream.Frame, body []byte, typ byte, emit func(*l7.Message)) {
	u := p.first()
	if u == nil {
		return
	}
	var tag []byte
	if typ == 'C' {
		tag, _, _ = cstring(body)
	}
	switch u.kind {
	case unitQuery:
		u.tag = string(tag[:min(len(tag), 64)])
		u.affected, u.hasRows = affectedRows(tag)
	case unitPrepare:
		// A Parse whose batch executed nothing yet the backend completed
		// something: the Execute came in a later write. Settle the Parse.
		p.answer(f, u, emit)
		p.popFront()
		p.complete(f, body, typ, emit)
	case unitExecute:
		u.tag = string(tag[:min(len(tag), 64)])
		u.affected, u.hasRows = affectedRows(tag)
		p.answer(f, u, emit)
		p.popFront()
	}
}

// fail handles ErrorResponse.
func (p *Parser) fail(f *stream.Frame, body []byte, emit func(*l7.Message)) {
	code, exc := errorFields(body)
	u := p.first()
	if u == nil {
		return
	}
	switch u.kind {
	case unitQuery:
		if !u.failed {
			u.failed, u.code, u.exc = true, code, exc
		}
	case unitLogin:
		u.failed, u.code, u.exc = true, code, exc
		p.answer(f, u, emit)
		p.popFront()
	case unitExecute, unitPrepare:
		// The error aborts the batch up to its Sync: every step left in it
		// failed with the same error.
		for u != nil && u.kind != unitSync && u.kind != unitQuery && u.kind != unitLogin {
			u.failed, u.code, u.exc = true, code, exc
			p.answer(f, u, emit)
			p.popFront()
			u = p.first()
		}
	}
}

// ready handles ReadyForQuery: the end of a Query, a login or a batch.
func (p *Parser) ready(f *stream.Frame, emit func(*l7.Message)) {
	for u := p.first(); u != nil; u = p.first() {
		k := u.kind
		if k != unitSync {
			p.answer(f, u, emit)
		}
		p.popFront()
		if k == unitSync || k == unitQuery || k == unitLogin {
			return
		}
	}
}

// answer emits u's request if it was not yet, then its response.
func (p *Parser) answer(f *stream.Frame, u *unit, emit func(*l7.Message)) {
	if !u.emitted {
		u.emitted = true
		p.stats.Requests++
		emit(&u.req)
	}
	m := &p.resp
	*m = l7.Message{Type: l7.Response, Protocol: flowlog.L7Postgres, Version: "3.0", Status: flowlog.StatusSuccess}
	m.From(f.Start, f.TCPSeq)
	m.EndAt(f.End)
	// The response's first message was not kept: its size is unknown.
	m.Length = -1
	m.Captured = uint32(len(f.Data))
	if u.failed {
		m.Status = errorStatus(u.code)
		m.Exception = u.exc
	} else {
		m.Result = u.tag
		m.SQLAffectedRows, m.HasAffectedRows = u.affected, u.hasRows
	}
	p.stats.Responses++
	emit(m)
}

// affectedRows reads the row count at the end of a CommandComplete tag
// ("INSERT 0 1", "UPDATE 3", "SELECT 5"); tags without one ("CREATE TABLE")
// have none.
func affectedRows(tag []byte) (uint64, bool) {
	i := len(tag)
	for i > 0 && tag[i-1] >= '0' && tag[i-1] <= '9' {
		i--
	}
	if i == len(tag) || i == 0 || tag[i-1] != ' ' || len(tag)-i > 19 {
		return 0, false
	}
	var n uint64
	for _, c := range tag[i:] {
		n = n*10 + uint64(c-'0')
	}
	return n, true
}

// errorFields returns the SQLSTATE and "SQLSTATE: message" of an
// ErrorResponse body.
func errorFields(b []byte) (code [5]byte, exc string) {
	var msg []byte
	for len(b) > 0 && b[0] != 0 {
		field := b[0]
		v, rest, ok := cstring(b[1:])
		switch field {
		case 'C':
			copy(code[:], v)
		case 'M':
			msg = v
		}
		if !ok {
			break
		}
		b = rest
	}
	msg = msg[:min(len(msg), maxException)]
	out := make([]byte, 0, 7+len(msg))
	if code[0] != 0 {
		out = append(out, code[:]...)
		out = append(out, ": "...)
	}
	out = append(out, msg...)
	return code, string(out)
}

// errorStatus: SQLSTATE classes 08 (connection), 53 (resources), 57
// (operator intervention), 58 (system) and XX (internal) are the server's
// fault; everything else (22 data, 23 constraint, 28 auth, 42 syntax or
// access, 40 serialisation ...) is the client's.
func errorStatus(code [5]byte) flowlog.ResponseStatus {
	switch string(code[:2]) {
	case "08", "53", "57", "58", "XX":
		return flowlog.StatusServerError
	}
	return flowlog.StatusClientError
}
