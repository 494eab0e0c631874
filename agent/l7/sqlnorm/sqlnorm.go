// Package sqlnorm turns captured SQL text into what a flow log may store:
// literals replaced by '?', whitespace collapsed, and a short low-cardinality
// shape for the endpoint column. It is a single forward pass over the bytes
// (no regexp, no tokens allocated), and it never panics: an unterminated
// string or comment simply masks or drops the rest of the text.
//
// What is a literal: quoted strings ('...' with doubled quotes and, where the
// dialect has them, backslash escapes; MySQL "..."), numbers not part of an
// identifier (12, 3.5, .5, 1e-9, 0x1F, 0b101), prefixed strings (X'..',
// B'..', N'..', E'..'), PostgreSQL dollar-quoted strings ($$..$$, $tag$..$tag$)
// and TRUE-less lists: IN (1, 'a', ?) becomes IN (?). Placeholders ($1, ?,
// :name), identifiers, keywords and operators are kept.
//
// Comments: line comments (-- and MySQL #) are dropped. Block comments
// (/* ... */) are kept verbatim by Mask, because SQL commenters carry trace
// context (traceparent=...) in them, and dropped by Shape, which must stay
// low-cardinality; for the same reason Shape keeps one row of a multi-row
// VALUES list: VALUES (?, ?), (?, ?) becomes VALUES (?, ?).
package sqlnorm

import "unicode/utf8"

// Dialect selects the lexical rules that differ between databases.
type Dialect uint8

const (
	// ANSI: "..." is an identifier, '...' honours backslash escapes (the
	// safe choice when the server's setting is unknown: it masks more),
	// $$..$$ strings are recognised, # is an operator.
	ANSI Dialect = iota
	// MySQL: "..." is a string, `...` an identifier, # starts a comment,
	// backslash escapes in both quotes.
	MySQL
	// Postgres: "..." is an identifier, '...' is a standard string
	// (backslash is literal; E'...' honours escapes), $tag$..$tag$ strings.
	Postgres
)

// MaxShape bounds the bytes of Shape's result.
const MaxShape = 256

// Mask masks sql with the ANSI rules.
func Mask(sql string) string { return MaskAs(ANSI, sql) }

// Shape is Mask without block comments, truncated to MaxShape bytes.
func Shape(sql string) string { return ShapeAs(ANSI, sql) }

// MaskAs masks sql with dialect d's rules.
func MaskAs(d Dialect, sql string) string {
	return normalize(d, sql, true, -1)
}

// ShapeAs is MaskAs without block comments, truncated to MaxShape bytes at
// a UTF-8 boundary.
func ShapeAs(d Dialect, sql string) string {
	return normalize(d, sql, false, MaxShape)
}

// normalizer is the state of one pass.
type normalizer struct {
	d            Dialect
	s            string
	out          []byte
	keepComments bool
	limit        int // output bound, -1: none
	pendingSpace bool
}

func normalize(d Dialect, sql string, keepComments bool, limit int) string {
	n := normalizer{d: d, s: sql, keepComments: keepComments, limit: limit}
	capHint := len(sql)
	if limit >= 0 && capHint > limit+8 {
		capHint = limit + 8
	}
	n.out = make([]byte, 0, capHint)
	n.run()
	out := n.out
	if limit >= 0 && len(out) > limit {
		out = out[:limit]
		// Do not cut a multi-byte character in half.
		for len(out) > 0 && !utf8.Valid(out[max(0, len(out)-utf8.UTFMax):]) {
			out = out[:len(out)-1]
		}
	}
	return string(out)
}

// full reports whether the output has reached its bound (work past it is
// wasted).
func (n *normalizer) full() bool { return n.limit >= 0 && len(n.out) > n.limit }

// space records a separator; it is written only between two tokens.
func (n *normalizer) space() {
	if len(n.out) > 0 {
		n.pendingSpace = true
	}
}

func (n *normalizer) flushSpace() {
	if n.pendingSpace {
		n.out = append(n.out, ' ')
		n.pendingSpace = false
	}
}

func (n *normalizer) emit(s string) {
	n.flushSpace()
	n.out = append(n.out, s...)
}

func (n *normalizer) emitByte(c byte) {
	n.flushSpace()
	n.out = append(n.out, c)
}

func (n *normalizer) run() {
	s := n.s
	i := 0
	for i < len(s) && !n.full() {
		c := s[i]
		switch {
		case isSpace(c):
			n.space()
			i++
		case c == '-' && i+1 < len(s) && s[i+1] == '-':
			i = skipLine(s, i+2)
			n.space()
		case c == '#' && n.d == MySQL:
			i = skipLine(s, i+1)
			n.space()
		case c == '/' && i+1 < len(s) && s[i+1] == '*':
			end := skipBlock(s, i+2)
			if n.keepComments {
				n.emit(s[i:end])
			}
			n.space()
			i = end
		case c == '\'':
			i = skipQuoted(s, i+1, '\'', n.d != Postgres)
			n.emitByte('?')
		case c == '"':
			if n.d == MySQL {
				i = skipQuoted(s, i+1, '"', true)
				n.emitByte('?')
			} else {
				end := skipQuoted(s, i+1, '"', false)
				n.emit(s[i:end])
				i = end
			}
		case c == '`':
			end := skipQuoted(s, i+1, '`', false)
			n.emit(s[i:end])
			i = end
		case c == '$' && n.d != MySQL:
			i = n.dollar(i)
		case isDigit(c) || (c == '.' && i+1 < len(s) && isDigit(s[i+1])):
			i = skipNumber(s, i)
			n.emitByte('?')
		case isIdentStart(c):
			i = n.word(i)
		case c == ',' && !n.keepComments && n.endsWithLiteralGroup():
			// Shape: "VALUES (?, ?), (?, ?)" keeps one row, so batch
			// sizes do not multiply endpoints.
			if end, ok := n.literalGroup(skipSpaces(s, i+1)); ok {
				i = end
				continue
			}
			n.emitByte(c)
			i++
		default:
			n.emitByte(c)
			i++
		}
	}
}

// endsWithLiteralGroup reports whether the output ends with VALUES and a
// parenthesised group of placeholders only, such as "VALUES (?, ?)".
func (n *normalizer) endsWithLiteralGroup() bool {
	o := n.out
	if len(o) < 3 || o[len(o)-1] != ')' {
		return false
	}
	for i := len(o) - 2; i >= 0; i-- {
		switch o[i] {
		case '?', ',', ' ':
		case '(':
			before := o[:i]
			if len(before) > 0 && before[len(before)-1] == ' ' {
				before = before[:len(before)-1]
			}
			return i < len(o)-2 && len(before) >= 6 && equalFold(string(before[len(before)-6:]), "VALUES")
		default:
			return false
		}
	}
	return false
}

// literalGroup returns the index after the group of literals starting at
// i with '(' (the same test as an IN list).
func (n *normalizer) literalGroup(i int) (int, bool) {
	if i >= len(n.s) || n.s[i] != '(' {
		return 0, false
	}
	return n.literalList(i)
}

// word handles an identifier or keyword starting at i and returns the
// index after what it consumed.
func (n *normalizer) word(i int) int {
	s := n.s
	j := i + 1
	for j < len(s) && isIdentPart(s[j]) {
		j++
	}
	w := s[i:j]
	// Prefixed string literals: X'..', B'..', N'..', E'..' (and the
	// Postgres U&'..' is left to the generic path: U & ?).
	if j-i == 1 && j < len(s) && s[j] == '\'' {
		switch c := lower(w[0]); c {
		case 'x', 'b', 'n':
			end := skipQuoted(s, j+1, '\'', n.d != Postgres)
			n.emitByte('?')
			return end
		case 'e':
			end := skipQuoted(s, j+1, '\'', true)
			n.emitByte('?')
			return end
		}
	}
	n.emit(w)
	if len(w) == 2 && lower(w[0]) == 'i' && lower(w[1]) == 'n' {
		if end, ok := n.literalList(j); ok {
			n.emit(" (?)")
			return end
		}
	}
	return j
}

// literalList checks whether s[i:] is, after optional white space, a
// parenthesised list of literals and placeholders only; it returns the
// index after the closing parenthesis.
func (n *normalizer) literalList(i int) (int, bool) {
	s := n.s
	i = skipSpaces(s, i)
	if i >= len(s) || s[i] != '(' {
		return 0, false
	}
	i++
	items := 0
	for {
		i = skipSpaces(s, i)
		if i >= len(s) {
			return 0, false
		}
		c := s[i]
		switch {
		case c == '\'':
			i = skipQuoted(s, i+1, '\'', n.d != Postgres)
		case c == '"' && n.d == MySQL:
			i = skipQuoted(s, i+1, '"', true)
		case c == '?':
			i++
		case c == '$' && i+1 < len(s) && isDigit(s[i+1]):
			i = skipDigits(s, i+1)
		case c == '-' || c == '+':
			if i+1 >= len(s) || !(isDigit(s[i+1]) || s[i+1] == '.') {
				return 0, false
			}
			i = skipNumber(s, i+1)
		case isDigit(c) || c == '.' && i+1 < len(s) && isDigit(s[i+1]):
			i = skipNumber(s, i)
		default:
			return 0, false
		}
		items++
		i = skipSpaces(s, i)
		if i >= len(s) {
			return 0, false
		}
		switch s[i] {
		case ',':
			i++
		case ')':
			return i + 1, items > 0
		default:
			return 0, false
		}
	}
}

// dollar handles '$' at i: a $n placeholder is kept, a $tag$...$tag$ string
// masked, anything else copied.
func (n *normalizer) dollar(i int) int {
	s := n.s
	j := i + 1
	if j < len(s) && isDigit(s[j]) {
		end := skipDigits(s, j)
		n.emit(s[i:end])
		return end
	}
	for j < len(s) && isIdentPart(s[j]) && s[j] != '$' {
		j++
	}
	if j >= len(s) || s[j] != '$' {
		n.emitByte('$')
		return i + 1
	}
	tag := s[i : j+1] // "$$" or "$tag$"
	body := j + 1
	for k := body; k+len(tag) <= len(s); k++ {
		if s[k] == '$' && s[k:k+len(tag)] == tag {
			n.emitByte('?')
			return k + len(tag)
		}
	}
	n.emitByte('?') // unterminated: the rest is the string
	return len(s)
}

// skipQuoted returns the index after the closing quote q of a quoted run
// whose body starts at i; a doubled quote is part of the body, and so is an
// escaped one when backslash is set. Unterminated: len(s).
func skipQuoted(s string, i int, q byte, backslash bool) int {
	for i < len(s) {
		c := s[i]
		switch {
		case c == '\\' && backslash:
			i += 2
		case c == q:
			if i+1 < len(s) && s[i+1] == q {
				i += 2
				continue
			}
			return i + 1
		default:
			i++
		}
	}
	return len(s)
}

// skipNumber returns the index after the numeric literal at i: hex (0x..),
// binary (0b..), or decimal with fraction and exponent. Trailing identifier
// characters (1abc is an identifier in MySQL) are swallowed with it.
func skipNumber(s string, i int) int {
	if s[i] == '0' && i+2 < len(s) && (lower(s[i+1]) == 'x' || lower(s[i+1]) == 'b') && isHex(s[i+2]) {
		i += 2
		for i < len(s) && isIdentPart(s[i]) {
			i++
		}
		return i
	}
	i = skipDigits(s, i)
	if i < len(s) && s[i] == '.' {
		i = skipDigits(s, i+1)
	}
	if i < len(s) && lower(s[i]) == 'e' {
		j := i + 1
		if j < len(s) && (s[j] == '+' || s[j] == '-') {
			j++
		}
		if j < len(s) && isDigit(s[j]) {
			i = skipDigits(s, j)
		}
	}
	for i < len(s) && isIdentPart(s[i]) {
		i++
	}
	return i
}

func skipDigits(s string, i int) int {
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	return i
}

func skipSpaces(s string, i int) int {
	for i < len(s) && isSpace(s[i]) {
		i++
	}
	return i
}

// skipLine returns the index after the end of the line containing i.
func skipLine(s string, i int) int {
	for i < len(s) && s[i] != '\n' {
		i++
	}
	return i
}

// skipBlock returns the index after the "*/" closing a block comment whose
// body starts at i (len(s) when unterminated).
func skipBlock(s string, i int) int {
	for i+1 < len(s) {
		if s[i] == '*' && s[i+1] == '/' {
			return i + 2
		}
		i++
	}
	return len(s)
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func isHex(c byte) bool { return isDigit(c) || 'a' <= lower(c) && lower(c) <= 'f' }

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// isIdentStart: ASCII letters, '_' and any non-ASCII byte (identifiers may
// be UTF-8).
func isIdentStart(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c == '_' || c >= 0x80
}

func isIdentPart(c byte) bool { return isIdentStart(c) || isDigit(c) || c == '$' }
