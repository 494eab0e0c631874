package nats

import (
	"bytes"
	"strconv"
	"strings"
)

// op is a protocol verb.
type op uint8

const (
	opNone op = iota
	opInfo
	opConnect
	opPub
	opHpub
	opSub
	opUnsub
	opMsg
	opHmsg
	opPing
	opPong
	opOK
	opErr
)

// opNames are the canonical (upper-case) verbs, used as request types.
var opNames = [...]string{opNone: "", opInfo: "INFO", opConnect: "CONNECT", opPub: "PUB", opHpub: "HPUB",
	opSub: "SUB", opUnsub: "UNSUB", opMsg: "MSG", opHmsg: "HMSG", opPing: "PING", opPong: "PONG",
	opOK: "+OK", opErr: "-ERR"}

// verbOf returns the verb w names, in any case (the protocol is
// case-insensitive).
func verbOf(w []byte) op {
	if len(w) < 3 || len(w) > 7 {
		return opNone
	}
	var up [7]byte
	for i, c := range w {
		if 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		up[i] = c
	}
	switch string(up[:len(w)]) {
	case "INFO":
		return opInfo
	case "CONNECT":
		return opConnect
	case "PUB":
		return opPub
	case "HPUB":
		return opHpub
	case "SUB":
		return opSub
	case "UNSUB":
		return opUnsub
	case "MSG":
		return opMsg
	case "HMSG":
		return opHmsg
	case "PING":
		return opPing
	case "PONG":
		return opPong
	case "+OK":
		return opOK
	case "-ERR":
		return opErr
	}
	return opNone
}

// clientOp and serverOp tell a direction's role from a verb.
func clientOp(o op) bool {
	return o == opConnect || o == opPub || o == opHpub || o == opSub || o == opUnsub
}
func serverOp(o op) bool { return o == opInfo || o == opMsg || o == opHmsg || o == opOK || o == opErr }

// word returns b up to its first space, tab or CR.
func word(b []byte) []byte {
	for i, c := range b {
		if c == ' ' || c == '\t' || c == '\r' {
			return b[:i]
		}
	}
	return b
}

// maxFields bounds the tokens of one line that are looked at.
const maxFields = 6

// fields splits a control line on spaces and tabs without allocating.
type fields struct {
	tok [maxFields][]byte
	n   int // tokens kept
	all int // tokens in the line
}

func (f *fields) split(line []byte) {
	f.n, f.all = 0, 0
	i := 0
	for i < len(line) {
		for i < len(line) && (line[i] == ' ' || line[i] == '\t') {
			i++
		}
		if i == len(line) {
			break
		}
		j := i
		for j < len(line) && line[j] != ' ' && line[j] != '\t' {
			j++
		}
		if f.n < maxFields {
			f.tok[f.n] = line[i:j]
			f.n++
		}
		f.all++
		i = j
	}
}

func (f *fields) get(i int) []byte {
	if i >= 0 && i < f.n {
		return f.tok[i]
	}
	return nil
}

func atoi(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 12 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// validSubject checks a subject: printable, no empty tokens.
func validSubject(b []byte) bool {
	if len(b) == 0 || b[0] == '.' || b[len(b)-1] == '.' {
		return false
	}
	for i, c := range b {
		if c <= ' ' || c == 0x7f || c == '.' && b[i-1] == '.' {
			return false
		}
	}
	return true
}

// validLine checks the shape of a control line with arguments.
func validLine(o op, f *fields) bool {
	if f.all != f.n {
		return false
	}
	switch o {
	case opPub: // PUB subject [reply] size
		return (f.n == 3 || f.n == 4) && validSubject(f.get(1)) && isNum(f.get(f.n-1))
	case opHpub: // HPUB subject [reply] hdr-size total-size
		return (f.n == 4 || f.n == 5) && validSubject(f.get(1)) && isNum(f.get(f.n-1)) && isNum(f.get(f.n-2))
	case opSub: // SUB subject [queue] sid
		return (f.n == 3 || f.n == 4) && validSubject(f.get(1)) && len(f.get(f.n-1)) > 0
	case opUnsub: // UNSUB sid [max]
		return (f.n == 2 || f.n == 3 && isNum(f.get(2))) && len(f.get(1)) > 0
	case opMsg: // MSG subject sid [reply] size
		return (f.n == 4 || f.n == 5) && validSubject(f.get(1)) && isNum(f.get(f.n-1))
	case opHmsg: // HMSG subject sid [reply] hdr-size total-size
		return (f.n == 5 || f.n == 6) && validSubject(f.get(1)) && isNum(f.get(f.n-1)) && isNum(f.get(f.n-2))
	}
	return false
}

func isNum(b []byte) bool {
	_, ok := atoi(b)
	return ok
}

// endpoint normalises a subject: tokens that look like ids (numbers, UUIDs,
// long random tokens) become '*', and inbox subjects "_INBOX.*". It returns
// the subject itself (no allocation) when nothing changes.
func endpoint(subject string) string {
	const inbox = "_INBOX."
	if len(subject) > len(inbox) && subject[:len(inbox)] == inbox {
		return "_INBOX.*"
	}
	changed := false
	for start, i := 0, 0; i <= len(subject); i++ {
		if i == len(subject) || subject[i] == '.' {
			if idLike(subject[start:i]) {
				changed = true
				break
			}
			start = i + 1
		}
	}
	if !changed {
		return subject
	}
	b := make([]byte, 0, len(subject))
	for start, i := 0, 0; i <= len(subject); i++ {
		if i == len(subject) || subject[i] == '.' {
			if start > 0 {
				b = append(b, '.')
			}
			if tok := subject[start:i]; idLike(tok) {
				b = append(b, '*')
			} else {
				b = append(b, tok...)
			}
			start = i + 1
		}
	}
	return string(b)
}

// idLike reports whether a subject token looks like an identifier: all
// digits, a UUID or long hex, or a long token mixing letters and digits
// (NUIDs).
func idLike(t string) bool {
	if t == "" || t == "*" || t == ">" {
		return false
	}
	digits, letters, hex := 0, 0, true
	for i := 0; i < len(t); i++ {
		c := t[i]
		switch {
		case '0' <= c && c <= '9':
			digits++
		case 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F':
			letters++
		case 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z':
			letters++
			hex = false
		case c == '-':
			if len(t) != 36 {
				hex = false
			}
		default:
			hex = false
		}
	}
	switch {
	case digits == len(t):
		return true
	case hex && digits > 0 && len(t) >= 16:
		return true
	case len(t) >= 16 && digits > 0 && letters > 0:
		return true
	}
	return false
}

// matchSubject reports whether subject matches a subscription pattern with
// NATS wildcards ('*' one token, '>' the rest).
func matchSubject(pattern string, subject []byte) bool {
	for {
		var pt string
		pmore := false
		if i := strings.IndexByte(pattern, '.'); i >= 0 {
			pt, pattern, pmore = pattern[:i], pattern[i+1:], true
		} else {
			pt, pattern = pattern, ""
		}
		if pt == ">" {
			return len(subject) > 0
		}
		if len(subject) == 0 {
			return false
		}
		var st []byte
		smore := false
		if i := bytes.IndexByte(subject, '.'); i >= 0 {
			st, subject, smore = subject[:i], subject[i+1:], true
		} else {
			st, subject = subject, nil
		}
		if pt != "*" && pt != string(st) {
			return false
		}
		if !pmore || !smore {
			return pmore == smore
		}
	}
}

// errorStatus classifies a -ERR text: limits and conditions of the server
// are server errors; protocol, authorization and permission violations
// blame the client.
func errorStatus(text string) (server bool) {
	switch {
	case hasPrefixFold(text, "Maximum Connections Exceeded"), hasPrefixFold(text, "Slow Consumer"),
		hasPrefixFold(text, "Stale Connection"), hasPrefixFold(text, "Maximum Subscriptions Exceeded"),
		hasPrefixFold(text, "Maximum Account Connections Exceeded"), hasPrefixFold(text, "Server Shutdown"):
		return true
	}
	return false
}

func hasPrefixFold(s, prefix string) bool {
	if len(s) < len(prefix) {
		return false
	}
	for i := 0; i < len(prefix); i++ {
		a, b := s[i], prefix[i]
		if 'A' <= a && a <= 'Z' {
			a += 'a' - 'A'
		}
		if 'A' <= b && b <= 'Z' {
			b += 'a' - 'A'
		}
		if a != b {
			return false
		}
	}
	return true
}

// statusLine parses the status code of a headers block "NATS/1.0 503 ..."
// (0 when there is none).
func statusLine(h []byte) (int, string) {
	const pre = "NATS/1.0"
	if len(h) < len(pre) || string(h[:len(pre)]) != pre {
		return 0, ""
	}
	h = h[len(pre):]
	for len(h) > 0 && h[0] == ' ' {
		h = h[1:]
	}
	if len(h) < 3 {
		return 0, ""
	}
	code, err := strconv.Atoi(string(h[:3]))
	if err != nil {
		return 0, ""
	}
	desc := h[3:]
	for i, c := range desc {
		if c == '\r' || c == '\n' {
			desc = desc[:i]
			break
		}
	}
	for len(desc) > 0 && desc[0] == ' ' {
		desc = desc[1:]
	}
	return code, string(desc)
}

// fatalError reports whether the server closes the connection after the
// -ERR: all but permission and subject violations.
func fatalError(text string) bool {
	return !hasPrefixFold(text, "Permissions Violation") && !hasPrefixFold(text, "Invalid Subject") &&
		!hasPrefixFold(text, "Invalid Publish Subject")
}

// statusText describes the statuses servers send without a description.
func statusText(code int) string {
	switch code {
	case 503:
		return "No Responders"
	case 408:
		return "Request Timeout"
	case 404:
		return "No Messages"
	case 409:
		return "Conflict"
	}
	return "Status " + strconv.Itoa(code)
}
