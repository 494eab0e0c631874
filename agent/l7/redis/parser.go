package redis

import (
	"bytes"
	"math"

	"github.com/sightline-io/sightline/agent/capture"
	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/agent/l7/textline"
	"github.com/sightline-io/sightline/flowlog"
)

// Bounds on what one direction holds.
const (
	maxDepth      = 32        // nesting of aggregates
	maxLine       = 1024      // bytes of a header or simple line kept; the rest is skipped
	maxBulk       = 512 << 20 // Redis's proto-max-bulk-len default
	maxAggregate  = 1 << 24   // elements of one aggregate
	argBufSize    = 384       // request argument bytes kept (Resource is cut at 256)
	maxArgs       = 64        // arguments whose bounds are kept
	maxResource   = 256
	maxException  = 256
	firstElemSize = 16 // reply bytes kept of an array's first element (pub/sub kinds)
	maxSubWaits   = 64 // subscribe commands awaiting their confirmation
)

// Stats counts what a Parser saw, dropped and recovered from.
type Stats struct {
	Requests  uint64 // requests emitted
	Responses uint64 // replies emitted
	Pushes    uint64 // pushed messages (RESP3 '>', RESP2 subscribe mode) not emitted
	LostSync  uint64 // times framing was lost (garbage, gap inside a header, bad length)
	Resyncs   uint64 // times a segment starting with a plausible value restored framing
	GapBytes  uint64 // uncaptured bytes announced by segments
	Truncated uint64 // messages emitted with Length -1
}

type role uint8

const (
	roleUnknown role = iota
	roleRequest
	roleResponse
)

// direction is the scan state of one direction of the connection.
type direction struct {
	dir  capture.Direction
	role role
	lost bool

	inMsg    bool
	line     textline.Buffer // a line carried over a segment boundary, bounded by maxLine
	bulkLeft int64           // payload bytes plus CRLF still to come for the current bulk
	capture  uint8           // what the current bulk's payload is captured into
	depth    int
	left     [maxDepth]int64 // elements still expected per open aggregate

	// The message being scanned.
	top      byte // top-level type byte (0 before it, or after an attribute)
	elem     int  // index of the next element of the top-level aggregate
	inline   bool
	first    capture.Segment // identity of the message's first segment (Data nil)
	firstSeq uint32
	wire     int64
	seen     int64

	args    []byte // request arguments' captured bytes, concatenated
	argEnd  [maxArgs]uint16
	nargs   int // arguments whose bounds are in argEnd
	total   int64
	bad     bool // the message is malformed (a reply gets StatusParseFailed)
	nonBulk bool // an element of the top-level array is not a bulk string
	errText []byte
}

const (
	capNone uint8 = iota
	capArg
	capErr
)

// subWait is a subscribe-family command awaiting its confirmations.
type subWait struct {
	kind    string // confirmation kind: "subscribe", "unsubscribe" ...
	left    int    // confirmations still expected; -1 unknown (UNSUBSCRIBE with no channel)
	started bool   // the first confirmation was emitted as the reply
}

// Parser parses both directions of one Redis connection. It is not safe for
// concurrent use.
type Parser struct {
	keepSecrets bool
	dirs        [2]direction
	resp3       bool // HELLO 3 or a RESP3-only type was seen: pushes use '>'
	subscribed  bool // a subscribe command was seen: RESP2 arrays may be pushes
	subs        [maxSubWaits]subWait
	subHead     int
	subN        int
	scratch     []byte
	stats       Stats
}

var _ l7.Parser = (*Parser)(nil)

func newParser(keepSecrets bool) *Parser {
	p := &Parser{keepSecrets: keepSecrets}
	p.dirs[0].dir, p.dirs[1].dir = capture.AtoB, capture.BtoA
	return p
}

// Stats returns the parser's counters.
func (p *Parser) Stats() Stats { return p.stats }

// Feed parses one segment, calling emit for each message it completes.
func (p *Parser) Feed(seg *capture.Segment, emit func(*l7.Message)) {
	d := &p.dirs[seg.Dir&1]
	data := seg.Data
	gap := int64(max(seg.Len-len(data), 0))
	p.stats.GapBytes += uint64(gap)
	if d.lost {
		// Segments usually start at a message boundary (one write per
		// pipeline or reply batch): resume at one that looks like a value.
		if !p.looksLikeStart(d, data) {
			return
		}
		d.lost = false
		p.stats.Resyncs++
	}
	off := 0
	for off < len(data) && !d.lost {
		off = p.step(d, seg, off, emit)
	}
	if gap > 0 && !d.lost {
		p.gap(d, seg, gap, emit)
	}
}

// looksLikeStart reports whether b can start a message in d.
func (p *Parser) looksLikeStart(d *direction, b []byte) bool {
	if len(b) == 0 {
		return false
	}
	v := classify(b)
	switch d.role {
	case roleRequest:
		return v == l7.IsRequest || v == l7.NeedMore && (b[0] == '*' || 'A' <= b[0] && b[0] <= 'Z')
	case roleResponse:
		return v == l7.IsResponse || v == l7.NeedMore && isTypeByte(b[0]) ||
			b[0] == '*' && v == l7.IsRequest // an array of bulk strings is a reply too
	}
	return v != l7.NotMine
}

// step consumes bytes of seg.Data from off and returns the new offset.
func (p *Parser) step(d *direction, seg *capture.Segment, off int, emit func(*l7.Message)) int {
	data := seg.Data
	if !d.inMsg {
		if c := data[off]; !isTypeByte(c) && !isLetter(c) && c != '\r' && c != '\n' {
			p.lose(d, seg, true, emit) // not a value: garbage or the middle of one
			return off
		}
		p.begin(d, seg, off)
	}
	if d.bulkLeft > 0 {
		n := min(int64(len(data)-off), d.bulkLeft)
		if d.capture != capNone && d.bulkLeft > 2 {
			payload := data[off : off+int(min(n, d.bulkLeft-2))]
			d.keep(payload)
		}
		d.bulkLeft -= n
		d.wire += n
		d.seen += n
		off += int(n)
		if d.bulkLeft == 0 {
			d.capture = capNone
			p.elementDone(d, seg, emit)
		}
		return off
	}
	// A line: a header, a simple value or an inline command.
	line, n, ok := d.line.Scan(data[off:], maxLine)
	d.wire += int64(n)
	d.seen += int64(n)
	if !ok {
		return len(data)
	}
	p.onLine(d, seg, line, emit)
	return off + n
}

// begin starts a message at offset off of seg.
func (p *Parser) begin(d *direction, seg *capture.Segment, off int) {
	d.inMsg = true
	d.top, d.elem, d.inline = 0, 0, false
	d.first = *seg
	d.first.Data = nil
	d.firstSeq = seg.SeqAt(off)
	d.wire, d.seen = 0, 0
	d.args, d.nargs, d.total = d.args[:0], 0, 0
	d.errText = d.errText[:0]
	d.depth, d.nonBulk, d.bad = 0, false, false
}

// onLine handles one complete line (CRLF removed).
func (p *Parser) onLine(d *direction, seg *capture.Segment, line []byte, emit func(*l7.Message)) {
	if len(line) == 0 {
		if d.depth == 0 && d.top == 0 {
			// Blank line between inline commands: not a message.
			d.inMsg = false
			return
		}
		p.lose(d, seg, true, emit)
		return
	}
	t := line[0]
	if d.depth == 1 && t != '$' {
		d.nonBulk = true
	}
	if d.top == 0 {
		if !isTypeByte(t) {
			if d.role != roleResponse && p.inlineCommand(d, line) {
				p.finish(d, seg, d.wire, emit)
				return
			}
			p.lose(d, seg, true, emit)
			return
		}
		d.top = t
		if t != '*' && t != '|' && t != '>' && t != '%' && t != '~' {
			d.elem = -1 // not an aggregate: nothing to capture per element
		}
	}
	switch t {
	case '+', ':', ',', '#', '(', '_':
		if p.resp3Type(t) {
			p.resp3 = true
		}
		p.elementDone(d, seg, emit)
	case '-':
		if d.depth == 0 {
			d.errText = append(d.errText[:0], line[1:min(len(line), maxException+1)]...)
		}
		p.elementDone(d, seg, emit)
	case '$', '!', '=':
		n, ok := parseLen(line[1:])
		if !ok || n > maxBulk {
			p.lose(d, seg, true, emit)
			return
		}
		if t != '$' {
			p.resp3 = true
		}
		if n < 0 {
			p.elementDone(d, seg, emit)
			return
		}
		d.bulkLeft = n + 2
		d.capture = capNone
		switch {
		case t == '!' && d.depth == 0:
			d.capture = capErr
			d.errText = d.errText[:0]
		case d.depth == 1 && (d.top == '*' || d.top == '>'):
			d.capture = capArg
			d.startArg()
		}
	case '*', '~', '>', '%', '|':
		n, ok := parseLen(line[1:])
		if !ok || n > maxAggregate {
			p.lose(d, seg, true, emit)
			return
		}
		if t != '*' {
			p.resp3 = true
		}
		if t == '%' || t == '|' {
			n *= 2
		}
		if d.depth == 0 {
			d.total = n
		}
		if n <= 0 {
			p.elementDone(d, seg, emit)
			return
		}
		if d.depth == maxDepth {
			p.lose(d, seg, true, emit)
			return
		}
		d.left[d.depth] = n
		d.depth++
	default:
		p.lose(d, seg, true, emit)
	}
}

func (p *Parser) resp3Type(t byte) bool { return t == ',' || t == '#' || t == '(' || t == '_' }

// parseLen parses a decimal length; -1 is the null length.
func parseLen(b []byte) (int64, bool) {
	if len(b) == 2 && b[0] == '-' && b[1] == '1' {
		return -1, true
	}
	if len(b) == 0 || len(b) > 12 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if !isDigit(c) {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// startArg opens a captured element of the top-level array.
func (d *direction) startArg() {
	if d.nargs < maxArgs {
		d.argEnd[d.nargs] = uint16(len(d.args))
	}
}

// keep captures payload bytes of the current bulk.
func (d *direction) keep(b []byte) {
	switch d.capture {
	case capArg:
		limit := argBufSize
		if d.role == roleResponse {
			// Replies keep only their first element (a pub/sub kind); values are never stored.
			if d.elem > 0 {
				return
			}
			limit = firstElemSize
		}
		if d.nargs < maxArgs {
			if room := limit - len(d.args); room > 0 {
				d.args = append(d.args, b[:min(len(b), room)]...)
			}
		}
	case capErr:
		if room := maxException - len(d.errText); room > 0 {
			d.errText = append(d.errText, b[:min(len(b), room)]...)
		}
	}
}

// elementDone closes a scalar element and the aggregates it completes; the
// message ends when the top level completes.
func (p *Parser) elementDone(d *direction, seg *capture.Segment, emit func(*l7.Message)) {
	if d.depth == 1 && d.elem >= 0 {
		if d.nargs < maxArgs {
			d.argEnd[d.nargs] = uint16(len(d.args))
			d.nargs++
		}
		d.elem++
	}
	for d.depth > 0 {
		d.left[d.depth-1]--
		if d.left[d.depth-1] > 0 {
			return
		}
		d.depth--
		if d.depth == 1 && d.elem >= 0 {
			// A nested aggregate element of the top-level array: no bytes kept.
			if d.nargs < maxArgs {
				d.argEnd[d.nargs] = uint16(len(d.args))
				d.nargs++
			}
			d.elem++
		}
	}
	if d.top == '|' {
		// An attribute precedes the value it describes: keep scanning.
		d.top, d.elem, d.args, d.nargs = 0, 0, d.args[:0], 0
		return
	}
	p.finish(d, seg, d.wire, emit)
}

// arg returns the captured bytes of argument i (possibly truncated).
func (d *direction) arg(i int) []byte {
	if i >= d.nargs {
		return nil
	}
	start := 0
	if i > 0 {
		start = int(d.argEnd[i-1])
	}
	return d.args[start:d.argEnd[i]]
}

// inlineCommand splits an inline command line into arguments; it reports
// false (leaving d untouched) when the line does not name a command.
func (p *Parser) inlineCommand(d *direction, line []byte) bool {
	sp := bytes.IndexByte(line, ' ')
	if sp < 0 {
		sp = len(line)
	}
	if !isCommandName(line[:sp]) {
		return false
	}
	d.inline = true
	for _, f := range bytes.Fields(line) {
		d.total++
		if d.nargs < maxArgs {
			if room := argBufSize - len(d.args); room > 0 {
				d.args = append(d.args, f[:min(len(f), room)]...)
			}
			d.argEnd[d.nargs] = uint16(len(d.args))
			d.nargs++
		}
	}
	return true
}

// finish emits the message scanned in d (length -1: cut short).
func (p *Parser) finish(d *direction, seg *capture.Segment, length int64, emit func(*l7.Message)) {
	d.inMsg = false
	d.depth, d.bulkLeft, d.capture = 0, 0, capNone
	if d.top == 0 && !d.inline {
		return
	}
	if d.role == roleUnknown {
		p.decideRoles(d)
	}
	m := &l7.Message{
		Protocol: flowlog.L7Redis,
		Length:   length,
		Captured: uint32(min(d.seen, math.MaxUint32)),
	}
	m.From(&d.first, d.firstSeq)
	m.EndAt(seg)
	if length < 0 {
		p.stats.Truncated++
	}
	if d.role == roleRequest {
		if !p.request(d, m) {
			return
		}
		p.stats.Requests++
		emit(m)
		return
	}
	if !p.reply(d, m) {
		return
	}
	p.stats.Responses++
	emit(m)
}

// decideRoles tells requests from replies by the first message seen: an
// array of bulk strings (or an inline line) naming a known or module-style
// ("JSON.GET") command is a request; anything else is a reply.
func (p *Parser) decideRoles(d *direction) {
	r := roleResponse
	if (d.inline || d.top == '*' && !d.nonBulk) && d.nargs > 0 && isCommandName(d.arg(0)) {
		r = roleRequest
	}
	d.role = r
	o := &p.dirs[d.dir^1]
	if r == roleRequest {
		o.role = roleResponse
	} else {
		o.role = roleRequest
	}
}

// isCommandName reports whether b names a known command or looks like a
// module command ("FT.SEARCH").
func isCommandName(b []byte) bool {
	if _, ok := lookupCommand(b); ok {
		return true
	}
	return isCommandToken(b) && bytes.IndexByte(b, '.') > 0
}

func isLetter(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }

// request fills a command's columns; it reports false for a message that is
// not a command (a reply-shaped value in the request direction).
func (p *Parser) request(d *direction, m *l7.Message) bool {
	if (d.top != '*' && !d.inline) || d.nargs == 0 {
		m.RequestType = "UNKNOWN"
		m.Endpoint = m.RequestType
		return true
	}
	name := d.arg(0)
	ci, known := lookupCommand(name)
	switch {
	case known:
		m.RequestType = ci.name
	case isCommandToken(name):
		m.RequestType = upper(name)
		ci = cmdInfo{name: m.RequestType, rule: keepFirst}
	default:
		m.RequestType = "UNKNOWN"
		ci = cmdInfo{name: m.RequestType, rule: keepNone}
	}
	firstArg := 1
	if ci.container && d.nargs > 1 {
		if s := lookupSubcommand(ci.name, d.arg(1)); s != "" {
			m.RequestType = s
			firstArg = 2
		}
	}
	m.Endpoint = m.RequestType
	m.Resource = p.resource(d, m.RequestType, ci.rule, firstArg)
	if p.resp3 {
		m.Version = "3"
	}
	switch ci.name {
	case "HELLO":
		if v := d.arg(1); len(v) == 1 && v[0] == '3' {
			p.resp3 = true
			m.Version = "3"
		}
	case "SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE", "UNSUBSCRIBE", "PUNSUBSCRIBE", "SUNSUBSCRIBE":
		p.subscribed = true
		n := int(d.total - 1)
		if n == 0 {
			n = -1
		}
		p.pushSub(subWait{kind: confirmKind(ci.name), left: n})
	}
	return true
}

// resource builds the masked command line, cut at maxResource bytes.
func (p *Parser) resource(d *direction, typ string, rule maskRule, firstArg int) string {
	b := append(p.scratch[:0], typ...)
	secretLeft := 0
	for i := firstArg; int64(i) < d.total && len(b) < maxResource; i++ {
		b = append(b, ' ')
		a := d.arg(i)
		keep := false
		if i >= d.nargs {
			keep = false
		} else if secretLeft > 0 {
			secretLeft--
		} else {
			k := i - firstArg
			switch rule {
			case keepAll:
				keep = true
			case keepFirst, secretAuth:
				keep = k == 0 || p.keepSecrets
				if rule == secretAuth {
					secretLeft = isCredentialKeyword(a)
					keep = keep || secretLeft > 0
				}
			case keepPairs:
				keep = k%2 == 0 || p.keepSecrets
			case keepNone:
				keep = p.keepSecrets
			}
		}
		if keep {
			b = appendPrintable(b, a)
		} else {
			b = append(b, '?')
		}
	}
	if len(b) > maxResource {
		b = b[:maxResource]
	}
	p.scratch = b
	return string(b)
}

// appendPrintable appends a, replacing control bytes so a binary key does
// not corrupt the stored text.
func appendPrintable(b, a []byte) []byte {
	for _, c := range a {
		if c < 0x20 || c == 0x7f {
			c = '.'
		}
		b = append(b, c)
	}
	return b
}

func confirmKind(cmd string) string {
	switch cmd {
	case "SUBSCRIBE":
		return "subscribe"
	case "PSUBSCRIBE":
		return "psubscribe"
	case "SSUBSCRIBE":
		return "ssubscribe"
	case "UNSUBSCRIBE":
		return "unsubscribe"
	case "PUNSUBSCRIBE":
		return "punsubscribe"
	}
	return "sunsubscribe"
}

func (p *Parser) pushSub(w subWait) {
	if p.subN == maxSubWaits {
		p.subHead = (p.subHead + 1) % maxSubWaits
		p.subN--
	}
	p.subs[(p.subHead+p.subN)%maxSubWaits] = w
	p.subN++
}

// reply fills a reply's columns; it reports false for a pushed message,
// which answers no command.
func (p *Parser) reply(d *direction, m *l7.Message) bool {
	if d.top == '>' || d.top == '*' && p.subscribed && d.nargs > 0 {
		kind := d.arg(0)
		switch string(kind) {
		case "subscribe", "psubscribe", "ssubscribe", "unsubscribe", "punsubscribe", "sunsubscribe":
			if !p.confirmation(string(kind)) {
				p.stats.Pushes++
				return false
			}
		case "message", "pmessage", "smessage":
			if d.top == '>' || !p.resp3 {
				p.stats.Pushes++
				return false
			}
		default:
			if d.top == '>' {
				p.stats.Pushes++ // invalidate, client tracking ...
				return false
			}
		}
	}
	if p.resp3 {
		m.Version = "3"
	}
	m.Type = l7.Response
	m.Status = flowlog.StatusSuccess
	switch {
	case d.bad:
		m.Status = flowlog.StatusParseFailed
	case d.top == '-' || d.top == '!':
		m.Exception = string(d.errText)
		m.Status = errorStatus(d.errText)
	}
	return true
}

// confirmation accounts for a subscribe-family confirmation and reports
// whether it is the reply to a command (its first confirmation). Extra and
// unsolicited confirmations are not replies.
func (p *Parser) confirmation(kind string) bool {
	if p.subN == 0 || p.subs[p.subHead].kind != kind {
		return false
	}
	w := &p.subs[p.subHead]
	first := !w.started
	w.started = true
	if w.left > 1 {
		w.left--
		return first
	}
	// The last expected one, or (count unknown) the first: later ones of
	// this command match nothing and are dropped.
	p.subHead = (p.subHead + 1) % maxSubWaits
	p.subN--
	return first
}

// errorStatus classifies an error reply by its code word: conditions of the
// server (loading, busy, out of memory, cluster down ...) are server errors,
// everything else (ERR, WRONGTYPE, NOAUTH, NOPERM, MOVED ...) blames the
// command.
func errorStatus(text []byte) flowlog.ResponseStatus {
	w := bytes.IndexByte(text, ' ')
	if w < 0 {
		w = len(text)
	}
	switch string(text[:w]) {
	case "LOADING", "BUSY", "MASTERDOWN", "CLUSTERDOWN", "READONLY", "TRYAGAIN", "OOM", "MISCONF",
		"NOREPLICAS", "NOSCRIPT_BUSY", "UNBLOCKED":
		return flowlog.StatusServerError
	}
	return flowlog.StatusClientError
}

// gap accounts for n uncaptured bytes at the end of seg.
func (p *Parser) gap(d *direction, seg *capture.Segment, n int64, emit func(*l7.Message)) {
	if d.inMsg && d.bulkLeft > 0 {
		if n < d.bulkLeft {
			d.bulkLeft -= n
			d.wire += n
			return
		}
		d.wire += d.bulkLeft
		n -= d.bulkLeft
		d.bulkLeft, d.capture = 0, capNone
		p.elementDone(d, seg, emit)
		if n == 0 {
			return
		}
	}
	// Uncaptured bytes in a header, or where the next message starts.
	p.lose(d, seg, false, emit)
}

// lose gives up framing in d: the message in progress, if it has a type,
// is emitted cut short so that pairing stays aligned (a reply that is
// malformed, bad, with StatusParseFailed); d then waits for a segment that
// starts with a plausible value. Before the roles are known a broken
// message is dropped rather than allowed to decide them.
func (p *Parser) lose(d *direction, seg *capture.Segment, bad bool, emit func(*l7.Message)) {
	p.stats.LostSync++
	if d.inMsg && (d.role != roleUnknown || !bad) {
		d.bad = bad
		p.finish(d, seg, -1, emit)
	}
	d.inMsg, d.lost = false, true
	d.line.Reset()
	d.bulkLeft, d.depth, d.capture = 0, 0, capNone
}

// Close emits the messages cut short by the connection's end (Length -1),
// requests first, and resets the parser (but its Stats).
func (p *Parser) Close(emit func(*l7.Message)) {
	order := [2]int{0, 1}
	if p.dirs[1].role == roleRequest {
		order = [2]int{1, 0}
	}
	for _, i := range order {
		d := &p.dirs[i]
		if d.inMsg && d.top != 0 {
			end := d.first
			p.finish(d, &end, -1, emit)
		}
	}
	st := p.stats
	*p = *newParser(p.keepSecrets)
	p.stats = st
}
