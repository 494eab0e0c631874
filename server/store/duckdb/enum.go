package duckdb

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/sightline-io/sightline/flowlog"
	"github.com/sightline-io/sightline/server/store"
)

// enumNames returns the display names of the enum columns that Enum(col) accepts.
func enumNames() map[string]map[uint64]string {
	l7 := make(map[uint64]string)
	for p, name := range flowlog.L7ProtocolNames() {
		l7[uint64(p)] = name
	}
	return map[string]map[uint64]string{
		"l7_protocol": l7,
		"response_status": {
			uint64(flowlog.StatusSuccess):     "Success",
			uint64(flowlog.StatusTimeout):     "Timeout",
			uint64(flowlog.StatusServerError): "Server Error",
			uint64(flowlog.StatusClientError): "Client Error",
			uint64(flowlog.StatusUnknown):     "Unknown",
			uint64(flowlog.StatusParseFailed): "Parse Failed",
		},
		"signal_source": {
			uint64(flowlog.SourcePacket): "Packet",
			uint64(flowlog.SourceEBPF):   "eBPF",
			uint64(flowlog.SourceOTel):   "OTel",
		},
		"type": {
			uint64(flowlog.TypeRequest):  "Request",
			uint64(flowlog.TypeResponse): "Response",
			uint64(flowlog.TypeSession):  "Session",
		},
		"protocol": {6: "TCP", 17: "UDP"},
	}
}

// rewriteEnum replaces each Enum(<enum column>) in query with a portable CASE
// expression yielding the display name (values without one show as their
// number). A bare Enum(col) item of a select list keeps "Enum(col)" as its
// output name. Enum of a column that is not an enum is a *store.QueryError;
// Enum(...) of anything but a column reference is left alone.
func rewriteEnum(query string) (string, error) {
	toks := tokenize(query)
	if !slices.ContainsFunc(toks, func(t token) bool { return t.kind == tokIdent && strings.EqualFold(t.text, "enum") }) {
		return query, nil
	}
	names := enumNames()

	var out strings.Builder
	out.Grow(len(query))
	// selectList[d] reports whether paren depth d is inside a select list.
	selectList := []bool{false}
	prev := -1 // index of the previous significant token
	for i := 0; i < len(toks); i++ {
		t := toks[i]
		if t.kind == tokSpace {
			out.WriteString(t.text)
			continue
		}
		depth := len(selectList) - 1
		switch {
		case t.text == "(":
			selectList = append(selectList, false)
		case t.text == ")" && depth > 0:
			selectList = selectList[:depth]
		case t.kind == tokIdent && strings.EqualFold(t.text, "select"):
			selectList[depth] = true
		case t.kind == tokIdent && isClauseKeyword(t.text):
			selectList[depth] = false
		}

		call, ok := matchEnumCall(toks, i, prev)
		if !ok {
			out.WriteString(t.text)
			prev = i
			continue
		}
		mapping, known := names[strings.ToLower(call.column)]
		if !known {
			return "", &store.QueryError{Msg: fmt.Sprintf("Enum(%s): not an enum column (enum columns: %s)",
				call.column, strings.Join(slices.Sorted(maps.Keys(names)), ", "))}
		}
		out.WriteString(caseExpr(call.ref, mapping))
		next := nextSignificant(toks, call.end+1)
		itemStart := prev < 0 || toks[prev].text == "," || isSelectListStart(toks[prev].text)
		itemEnd := next < 0 || toks[next].text == "," || toks[next].text == ")" || toks[next].text == ";" ||
			(toks[next].kind == tokIdent && isClauseKeyword(toks[next].text))
		if selectList[depth] && itemStart && itemEnd {
			out.WriteString(" AS " + quoteIdent(call.text))
		}
		prev = call.end
		i = call.end
	}
	return out.String(), nil
}

// caseExpr renders CASE ref WHEN v THEN 'name' ... ELSE CAST(ref AS VARCHAR) END.
func caseExpr(ref string, mapping map[uint64]string) string {
	var b strings.Builder
	b.WriteString("(CASE ")
	b.WriteString(ref)
	for _, v := range slices.SortedFunc(maps.Keys(mapping), cmp.Compare) {
		b.WriteString(" WHEN ")
		b.WriteString(strconv.FormatUint(v, 10))
		b.WriteString(" THEN ")
		b.WriteString(quoteString(mapping[v]))
	}
	b.WriteString(" ELSE CAST(")
	b.WriteString(ref)
	b.WriteString(" AS VARCHAR) END)")
	return b.String()
}

func quoteString(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

type enumCall struct {
	text   string // the call as written, e.g. Enum(l7_protocol)
	ref    string // the column reference as written, e.g. t."type"
	column string // the unquoted column name, e.g. type
	end    int    // index of the closing paren token
}

// matchEnumCall matches Enum ( [qualifier .]* column ) starting at toks[i].
func matchEnumCall(toks []token, i, prev int) (enumCall, bool) {
	if toks[i].kind != tokIdent || !strings.EqualFold(toks[i].text, "enum") {
		return enumCall{}, false
	}
	if prev >= 0 && toks[prev].text == "." { // schema.enum(...) is someone else's function
		return enumCall{}, false
	}
	j := nextSignificant(toks, i+1)
	if j < 0 || toks[j].text != "(" {
		return enumCall{}, false
	}
	var ref strings.Builder
	var column string
	for {
		j = nextSignificant(toks, j+1)
		if j < 0 || !isColumnName(toks[j]) {
			return enumCall{}, false
		}
		ref.WriteString(toks[j].text)
		column = identName(toks[j])
		j = nextSignificant(toks, j+1)
		if j < 0 {
			return enumCall{}, false
		}
		if toks[j].text == ")" {
			break
		}
		if toks[j].text != "." {
			return enumCall{}, false
		}
		ref.WriteString(".")
	}
	var text strings.Builder
	for k := i; k <= j; k++ {
		text.WriteString(toks[k].text)
	}
	return enumCall{text: text.String(), ref: ref.String(), column: column, end: j}, true
}

// isColumnName reports a bare or (properly terminated) quoted identifier.
func isColumnName(t token) bool {
	switch t.kind {
	case tokIdent:
		return true
	case tokQuotedIdent:
		return len(t.text) >= 2 && strings.HasSuffix(t.text, `"`) && endQuoted(t.text, 1, '"') == len(t.text)
	}
	return false
}

func identName(t token) string {
	if t.kind == tokQuotedIdent {
		return strings.ReplaceAll(t.text[1:len(t.text)-1], `""`, `"`)
	}
	return t.text
}

func nextSignificant(toks []token, from int) int {
	for k := from; k < len(toks); k++ {
		if toks[k].kind != tokSpace {
			return k
		}
	}
	return -1
}

func isSelectListStart(s string) bool {
	switch strings.ToLower(s) {
	case "select", "distinct", "all":
		return true
	}
	return false
}

// isClauseKeyword reports keywords that end a select list.
func isClauseKeyword(s string) bool {
	switch strings.ToLower(s) {
	case "from", "where", "group", "having", "window", "qualify", "order", "limit", "offset",
		"union", "except", "intersect", "into", "fetch":
		return true
	}
	return false
}

type tokenKind uint8

const (
	tokSpace       tokenKind = iota // whitespace and comments
	tokIdent                        // bare identifier or keyword
	tokQuotedIdent                  // "identifier"
	tokString                       // 'string' (also E'...' and $$...$$ bodies)
	tokOther                        // numbers, operators, punctuation
)

type token struct {
	kind tokenKind
	text string
}

// tokenize splits SQL into tokens whose texts concatenate back to the input.
// It knows just enough (comments, quotes) not to see Enum( inside a string.
// Unterminated quotes or comments run to the end of the input.
func tokenize(s string) []token {
	var toks []token
	for i := 0; i < len(s); {
		c := s[i]
		start := i
		kind := tokOther
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v':
			for i < len(s) && strings.IndexByte(" \t\n\r\f\v", s[i]) >= 0 {
				i++
			}
			kind = tokSpace
		case c == '-' && strings.HasPrefix(s[i:], "--"):
			i = endAt(s, i+2, "\n")
			kind = tokSpace
		case c == '/' && strings.HasPrefix(s[i:], "/*"):
			i = endAt(s, i+2, "*/")
			kind = tokSpace
		case c == '\'':
			i = endQuoted(s, i+1, '\'')
			kind = tokString
		case c == '"':
			i = endQuoted(s, i+1, '"')
			kind = tokQuotedIdent
		case c == '$' && strings.HasPrefix(s[i:], "$$"):
			i = endAt(s, i+2, "$$")
			kind = tokString
		case isIdentStart(c):
			for i < len(s) && isIdentPart(s[i]) {
				i++
			}
			kind = tokIdent
		default:
			i++
		}
		toks = append(toks, token{kind: kind, text: s[start:i]})
	}
	return toks
}

// endAt returns the index just past the first terminator at or after i, or len(s).
func endAt(s string, i int, terminator string) int {
	if k := strings.Index(s[i:], terminator); k >= 0 {
		return i + k + len(terminator)
	}
	return len(s)
}

// endQuoted returns the index just past the closing quote (a doubled quote escapes).
func endQuoted(s string, i int, quote byte) int {
	for i < len(s) {
		if s[i] == quote {
			if i+1 < len(s) && s[i+1] == quote {
				i += 2
				continue
			}
			return i + 1
		}
		i++
	}
	return len(s)
}

func isIdentStart(c byte) bool {
	return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 0x80
}

func isIdentPart(c byte) bool { return isIdentStart(c) || (c >= '0' && c <= '9') || c == '$' }
