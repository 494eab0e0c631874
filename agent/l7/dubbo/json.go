package dubbo

import (
	"bytes"

	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/flowlog"
)

// The fastjson and gson serializations write each value as one line of
// JSON: a request body starts with the dubbo version, service, service
// version and method as JSON strings, a response body with its type as a
// number.

// jsonLine returns the next line of b and the rest.
func jsonLine(b []byte) (line, rest []byte, ok bool) {
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		return nil, nil, false // cut by the capture, or not JSON lines
	}
	return bytes.TrimSuffix(b[:i], []byte{'\r'}), b[i+1:], true
}

// jsonString returns the contents of a JSON string without escapes (the
// names read here never need them; an escaped one is not taken).
func jsonString(line []byte) ([]byte, bool) {
	if len(line) < 2 || line[0] != '"' || line[len(line)-1] != '"' {
		return nil, false
	}
	s := line[1 : len(line)-1]
	if bytes.IndexByte(s, '\\') >= 0 || bytes.IndexByte(s, '"') >= 0 || len(s) > maxName {
		return nil, false
	}
	return s, true
}

// requestJSON reads the first four lines of a JSON-lines request body.
func (p *Parser) requestJSON(m *l7.Message, body []byte) {
	var vals [4][]byte
	for i := range vals {
		line, rest, ok := jsonLine(body)
		if !ok {
			return
		}
		body = rest
		if i == 2 && string(line) == "null" {
			continue // no service version
		}
		if vals[i], ok = jsonString(line); !ok {
			return
		}
	}
	m.Version = intern(&p.last.version, vals[0])
	p.setNames(m, intern(&p.last.service, vals[1]), vals[3])
}

// responseJSON reads a JSON-lines response: the error message of a failed
// status, or the exception flag of an OK one.
func responseJSON(m *l7.Message, h header, body []byte) {
	line, _, ok := jsonLine(body)
	if h.status != statusOK {
		m.Exception = statusName(h.status)
		if s, sok := jsonString(line); ok && sok && len(s) > 0 {
			m.Exception = string(s[:min(len(s), maxException)])
		}
		return
	}
	if ok && (string(line) == "0" || string(line) == "3") {
		m.Status = flowlog.StatusServerError
		m.Exception = "exception"
	}
}
