package tempo

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/sightline-io/sightline/server/tracesearch"
)

// ErrUnsupported marks TraceQL (or tags) this server does not implement.
var ErrUnsupported = errors.New("unsupported")

// errSyntax marks malformed TraceQL.
var errSyntax = errors.New("TraceQL syntax error")

// The TraceQL subset accepted by /api/search?q=:
//
//	{ }                                   every trace
//	{ cond && cond && ... }               all conditions on one span
//
// where cond is <attribute> <op> <value>, op one of = != > >= < <=, value a
// "string", an integer, a duration (100ms, 1.5s) or a keyword (error, ok,
// unset, server, client, internal, true, false). Attributes:
//
//	resource.service.name, .service.name, trace:rootService, rootServiceName  = only
//	name, span:name, trace:rootName, rootName                                  = only
//	status, span:status (error, ok, unset)                                     = only
//	kind, span:kind (server, client, internal)                                 = only
//	duration, span:duration, traceDuration, trace:duration                     = > >= < <=
//	span.http.status_code, span.http.response.status_code (HTTP)               all ops
//	span.http.method, span.http.request.method (HTTP)                          = !=
//	span.http.url, span.http.target, span.url.path, span.http.route            = !=
//	resource.host.name, .host.name                                             = !=
//	span.<key>, resource.<key>, .<key> (the attributes map)                    = !=
//
// Anything else (||, parentheses, several spansets, pipelines, regular
// expressions, aggregates) is refused with an error naming it.

type tokKind int

const (
	tokEOF tokKind = iota
	tokLBrace
	tokRBrace
	tokAnd
	tokOp
	tokIdent
	tokString
	tokNumber
)

type token struct {
	kind tokKind
	text string
	pos  int
}

const maxQueryLen = 4096

func lex(q string) ([]token, error) {
	if len(q) > maxQueryLen {
		return nil, fmt.Errorf("%w: query longer than %d bytes", errSyntax, maxQueryLen)
	}
	var toks []token
	for i := 0; i < len(q); {
		c := q[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '{':
			toks = append(toks, token{tokLBrace, "{", i})
			i++
		case c == '}':
			toks = append(toks, token{tokRBrace, "}", i})
			i++
		case c == '&':
			if i+1 < len(q) && q[i+1] == '&' {
				toks = append(toks, token{tokAnd, "&&", i})
				i += 2
				continue
			}
			return nil, fmt.Errorf("%w: '&' at %d (use &&)", errSyntax, i)
		case c == '|':
			if i+1 < len(q) && q[i+1] == '|' {
				return nil, fmt.Errorf("%w: '||' at %d: only && is supported", ErrUnsupported, i)
			}
			return nil, fmt.Errorf("%w: pipeline '|' at %d: only a single spanset filter is supported", ErrUnsupported, i)
		case c == '(' || c == ')':
			return nil, fmt.Errorf("%w: parentheses at %d", ErrUnsupported, i)
		case c == '=' || c == '!' || c == '<' || c == '>':
			j := i + 1
			if j < len(q) && (q[j] == '=' || q[j] == '~') {
				j++
			}
			op := q[i:j]
			switch op {
			case "=~", "!~":
				return nil, fmt.Errorf("%w: regular expression operator %s at %d", ErrUnsupported, op, i)
			case "!", "<~", ">~":
				return nil, fmt.Errorf("%w: unexpected %q at %d", errSyntax, op, i)
			}
			if op == ">" && j < len(q) && q[j] == '>' {
				return nil, fmt.Errorf("%w: structural operator >> at %d", ErrUnsupported, i)
			}
			toks = append(toks, token{tokOp, op, i})
			i = j
		case c == '"' || c == '`':
			s, n, err := lexString(q[i:])
			if err != nil {
				return nil, fmt.Errorf("%w at %d: %v", errSyntax, i, err)
			}
			toks = append(toks, token{tokString, s, i})
			i += n
		case c == '-' || c >= '0' && c <= '9':
			j := i + 1
			for j < len(q) && (isIdentByte(q[j]) || q[j] == 0xc2 || q[j] == 0xb5) {
				j++
			}
			toks = append(toks, token{tokNumber, q[i:j], i})
			i = j
		case isIdentByte(c):
			j := i + 1
			for j < len(q) && isIdentByte(q[j]) {
				j++
			}
			toks = append(toks, token{tokIdent, q[i:j], i})
			i = j
		default:
			return nil, fmt.Errorf("%w: unexpected character %q at %d", errSyntax, rune(c), i)
		}
	}
	return append(toks, token{tokEOF, "", len(q)}), nil
}

func isIdentByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == ':' || c == '/' || c == '-'
}

// lexString reads a "..." (with \" \\ \n \t escapes) or `...` string.
func lexString(s string) (string, int, error) {
	quote := s[0]
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		c := s[i]
		switch {
		case c == quote:
			return b.String(), i + 1, nil
		case c == '\\' && quote == '"':
			if i+1 >= len(s) {
				return "", 0, errors.New("unterminated escape")
			}
			i++
			switch s[i] {
			case '"', '\\':
				b.WriteByte(s[i])
			case 'n':
				b.WriteByte('\n')
			case 't':
				b.WriteByte('\t')
			default:
				return "", 0, fmt.Errorf("unknown escape \\%c", s[i])
			}
		default:
			b.WriteByte(c)
		}
	}
	return "", 0, errors.New("unterminated string")
}

// cond is one parsed condition.
type cond struct {
	attr, op string
	val      token
}

// parseTraceQL parses the subset into conditions.
func parseTraceQL(q string) ([]cond, error) {
	if strings.TrimSpace(q) == "" {
		return nil, nil
	}
	toks, err := lex(q)
	if err != nil {
		return nil, err
	}
	p := 0
	next := func() token { t := toks[p]; p++; return t }
	if t := next(); t.kind != tokLBrace {
		return nil, fmt.Errorf("%w: query must start with '{', got %q at %d", errSyntax, t.text, t.pos)
	}
	var out []cond
	if toks[p].kind == tokRBrace {
		p++
	} else {
		for {
			a := next()
			if a.kind != tokIdent {
				return nil, fmt.Errorf("%w: expected an attribute at %d, got %q", errSyntax, a.pos, a.text)
			}
			op := next()
			if op.kind != tokOp {
				if op.kind == tokRBrace || op.kind == tokAnd {
					return nil, fmt.Errorf("%w: attribute %s without a comparison (existence checks)", ErrUnsupported, a.text)
				}
				return nil, fmt.Errorf("%w: expected an operator after %s at %d, got %q", errSyntax, a.text, op.pos, op.text)
			}
			v := next()
			if v.kind != tokString && v.kind != tokNumber && v.kind != tokIdent {
				return nil, fmt.Errorf("%w: expected a value after %s %s at %d", errSyntax, a.text, op.text, v.pos)
			}
			out = append(out, cond{attr: a.text, op: op.text, val: v})
			if len(out) > tracesearch.MaxFilters {
				return nil, fmt.Errorf("%w: more than %d conditions", ErrUnsupported, tracesearch.MaxFilters)
			}
			t := next()
			if t.kind == tokRBrace {
				break
			}
			if t.kind != tokAnd {
				return nil, fmt.Errorf("%w: expected && or } at %d, got %q", errSyntax, t.pos, t.text)
			}
		}
	}
	if t := toks[p]; t.kind != tokEOF {
		if t.kind == tokAnd || t.kind == tokLBrace {
			return nil, fmt.Errorf("%w: several spansets at %d: only one { ... } is supported", ErrUnsupported, t.pos)
		}
		return nil, fmt.Errorf("%w: unexpected %q after '}' at %d", ErrUnsupported, t.text, t.pos)
	}
	return out, nil
}

// applyTraceQL parses q and adds its conditions to sq.
func applyTraceQL(q string, sq *tracesearch.Query) error {
	conds, err := parseTraceQL(q)
	if err != nil {
		return err
	}
	for _, c := range conds {
		if err := applyCond(c, sq); err != nil {
			return err
		}
	}
	return nil
}

// httpRange restricts a condition to HTTP/1 and HTTP/2 spans.
var httpRange = []tracesearch.Filter{{Column: "l7_protocol", Op: ">=", Value: "20"}, {Column: "l7_protocol", Op: "<=", Value: "21"}}

// notError matches spans whose OTLP status is unset: server/traceotlp sets
// Error for timeouts, client and server errors and leaves the rest unset
// (status = ok matches response_status 0, a subset of them).
var notError = []tracesearch.Filter{
	{Column: "response_status", Op: "!=", Value: "2"}, {Column: "response_status", Op: "!=", Value: "3"}, {Column: "response_status", Op: "!=", Value: "4"},
}

func valueString(t token) string { return t.text }

func applyCond(c cond, sq *tracesearch.Query) error {
	attr := c.attr
	v := valueString(c.val)
	onlyEq := func() error {
		if c.op != "=" {
			return fmt.Errorf("%w: %s only supports =, got %s", ErrUnsupported, attr, c.op)
		}
		return nil
	}
	eqOrNe := func() error {
		if c.op != "=" && c.op != "!=" {
			return fmt.Errorf("%w: %s only supports = and !=, got %s", ErrUnsupported, attr, c.op)
		}
		return nil
	}
	switch attr {
	case "resource.service.name", ".service.name", "trace:rootService", "rootServiceName":
		if err := onlyEq(); err != nil {
			return err
		}
		if sq.Service != "" && sq.Service != v {
			return fmt.Errorf("%w: two different service names on one span", ErrUnsupported)
		}
		sq.Service = v
	case "name", "span:name", "trace:rootName", "rootName":
		if err := onlyEq(); err != nil {
			return err
		}
		if sq.Name != "" && sq.Name != v {
			return fmt.Errorf("%w: two different names on one span", ErrUnsupported)
		}
		sq.Name = v
	case "status", "span:status":
		if err := onlyEq(); err != nil {
			return err
		}
		switch v {
		case "error":
			sq.Status = "error"
		case "ok":
			sq.Status = "ok"
		case "unset":
			sq.Filters = append(sq.Filters, notError...)
		default:
			return fmt.Errorf("%w: status must be error, ok or unset, got %q", errSyntax, v)
		}
	case "kind", "span:kind":
		if err := onlyEq(); err != nil {
			return err
		}
		switch v {
		case "server":
			sq.ObservationPoints = []string{"s-p", "s", "s-app", "s-nd"}
		case "client":
			sq.ObservationPoints = []string{"c-p", "c", "c-app", "c-nd"}
		case "internal":
			sq.ObservationPoints = []string{"app", "local", "rest"}
		default:
			return fmt.Errorf("%w: kind %q (server, client and internal are supported)", ErrUnsupported, v)
		}
	case "duration", "span:duration", "traceDuration", "trace:duration":
		d, err := parseTraceQLDuration(c.val)
		if err != nil {
			return err
		}
		switch c.op {
		case ">":
			sq.MinDuration = max(sq.MinDuration, d+time.Microsecond)
		case ">=":
			sq.MinDuration = max(sq.MinDuration, d)
		case "<":
			if d < time.Microsecond {
				return fmt.Errorf("%w: duration < %s matches nothing", errSyntax, d)
			}
			sq.MaxDuration = minPositive(sq.MaxDuration, d-time.Microsecond)
		case "<=":
			sq.MaxDuration = minPositive(sq.MaxDuration, d)
		case "=":
			sq.MinDuration, sq.MaxDuration = d, d
		default:
			return fmt.Errorf("%w: duration %s", ErrUnsupported, c.op)
		}
	case "span.http.status_code", ".http.status_code", "span.http.response.status_code", ".http.response.status_code":
		if c.val.kind != tokNumber {
			return fmt.Errorf("%w: %s needs an integer, got %q", errSyntax, attr, v)
		}
		sq.Filters = append(sq.Filters, tracesearch.Filter{Column: "response_code", Op: c.op, Value: v})
		sq.Filters = append(sq.Filters, httpRange...)
	case "span.http.method", ".http.method", "span.http.request.method", ".http.request.method":
		if err := eqOrNe(); err != nil {
			return err
		}
		sq.Filters = append(sq.Filters, tracesearch.Filter{Column: "request_type", Op: c.op, Value: v})
		sq.Filters = append(sq.Filters, httpRange...)
	case "span.http.url", ".http.url", "span.http.target", ".http.target", "span.url.path", ".url.path":
		if err := eqOrNe(); err != nil {
			return err
		}
		sq.Filters = append(sq.Filters, tracesearch.Filter{Column: "request_resource", Op: c.op, Value: v})
	case "span.http.route", ".http.route":
		if err := eqOrNe(); err != nil {
			return err
		}
		sq.Filters = append(sq.Filters, tracesearch.Filter{Column: "endpoint", Op: c.op, Value: v})
	case "resource.host.name", ".host.name":
		if err := eqOrNe(); err != nil {
			return err
		}
		sq.Filters = append(sq.Filters, tracesearch.Filter{Column: "host", Op: c.op, Value: v})
	default:
		key, ok := attributeKey(attr)
		if !ok {
			return fmt.Errorf("%w: attribute %q", ErrUnsupported, attr)
		}
		if err := eqOrNe(); err != nil {
			return err
		}
		sq.Filters = append(sq.Filters, tracesearch.Filter{Column: "attributes['" + key + "']", Op: c.op, Value: v})
	}
	return nil
}

// attributeKey maps span.k, resource.k and .k to the attributes map key k.
func attributeKey(attr string) (string, bool) {
	for _, p := range []string{"span.", "resource.", "."} {
		if k, ok := strings.CutPrefix(attr, p); ok && tracesearch.AttrKey(k) {
			return k, true
		}
	}
	return "", false
}

func minPositive(cur, d time.Duration) time.Duration {
	if cur == 0 || d < cur {
		return d
	}
	return cur
}

// parseTraceQLDuration reads 100ms, 1.5s, 2m, 300us/µs, 10ns.
func parseTraceQLDuration(t token) (time.Duration, error) {
	if t.kind != tokNumber {
		return 0, fmt.Errorf("%w: duration expected, got %q", errSyntax, t.text)
	}
	s := strings.Replace(t.text, "µ", "u", 1)
	if s != "" && unicode.IsDigit(rune(s[len(s)-1])) {
		return 0, fmt.Errorf("%w: duration %q needs a unit (ns, us, ms, s, m, h)", errSyntax, t.text)
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%w: bad duration %q", errSyntax, t.text)
	}
	return d, nil
}

// applyTags parses the logfmt tags of the search API (key=value
// key="quoted value") and adds them to sq.
func applyTags(s string, sq *tracesearch.Query) error {
	kvs, err := parseLogfmt(s)
	if err != nil {
		return err
	}
	for _, kv := range kvs {
		k, v := kv[0], kv[1]
		switch k {
		case "service.name":
			sq.Service = v
		case "name", "span.name":
			sq.Name = v
		case "status.code", "status":
			switch strings.ToLower(v) {
			case "error", "2", "status_code_error":
				sq.Status = "error"
			case "ok", "1", "status_code_ok":
				sq.Status = "ok"
			case "unset", "0", "status_code_unset":
				sq.Filters = append(sq.Filters, notError...)
			default:
				return fmt.Errorf("%w: status.code %q", errSyntax, v)
			}
		case "error":
			if v != "true" {
				return fmt.Errorf("%w: error=%s (only error=true)", ErrUnsupported, v)
			}
			sq.Status = "error"
		case "http.status_code", "http.response.status_code":
			if _, err := strconv.Atoi(v); err != nil {
				return fmt.Errorf("%w: %s needs an integer, got %q", errSyntax, k, v)
			}
			sq.Filters = append(sq.Filters, tracesearch.Filter{Column: "response_code", Op: "=", Value: v})
			sq.Filters = append(sq.Filters, httpRange...)
		case "http.method", "http.request.method":
			sq.Filters = append(sq.Filters, tracesearch.Filter{Column: "request_type", Op: "=", Value: v})
			sq.Filters = append(sq.Filters, httpRange...)
		case "http.url", "http.target", "url.path":
			sq.Filters = append(sq.Filters, tracesearch.Filter{Column: "request_resource", Op: "=", Value: v})
		case "http.route":
			sq.Filters = append(sq.Filters, tracesearch.Filter{Column: "endpoint", Op: "=", Value: v})
		case "host.name":
			sq.Filters = append(sq.Filters, tracesearch.Filter{Column: "host", Op: "=", Value: v})
		case "span.kind", "kind":
			if err := applyCond(cond{attr: "kind", op: "=", val: token{kind: tokIdent, text: strings.ToLower(strings.TrimPrefix(v, "SPAN_KIND_"))}}, sq); err != nil {
				return err
			}
		default:
			if !tracesearch.AttrKey(k) {
				return fmt.Errorf("%w: tag %q", ErrUnsupported, k)
			}
			sq.Filters = append(sq.Filters, tracesearch.Filter{Column: "attributes['" + k + "']", Op: "=", Value: v})
		}
	}
	return nil
}

// parseLogfmt splits `a=b c="d e"` into key/value pairs.
func parseLogfmt(s string) ([][2]string, error) {
	var out [][2]string
	for i := 0; i < len(s); {
		if s[i] == ' ' || s[i] == '\t' {
			i++
			continue
		}
		j := i
		for j < len(s) && s[j] != '=' && s[j] != ' ' {
			j++
		}
		if j >= len(s) || s[j] != '=' || j == i {
			return nil, fmt.Errorf("%w: tags must be key=value pairs, got %q", errSyntax, s[i:j])
		}
		key := s[i:j]
		j++
		var val string
		if j < len(s) && s[j] == '"' {
			v, n, err := lexString(s[j:])
			if err != nil {
				return nil, fmt.Errorf("%w: tag %s: %v", errSyntax, key, err)
			}
			val, j = v, j+n
		} else {
			k := j
			for k < len(s) && s[k] != ' ' {
				k++
			}
			val, j = s[j:k], k
		}
		out = append(out, [2]string{key, val})
		if len(out) > tracesearch.MaxFilters {
			return nil, fmt.Errorf("%w: more than %d tags", ErrUnsupported, tracesearch.MaxFilters)
		}
		i = j
	}
	return out, nil
}
