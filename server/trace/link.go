package trace

import (
	"fmt"
	"strings"
	"time"

	"github.com/sightline-io/sightline/server/trace/linkkey"
)

// Rule names a linking rule (see the package doc).
type Rule string

// The linking rules; RuleSeed marks the span (or trace id rows) assembly started from,
// RuleSpanID a c-p/c span under the c-app span whose id it parsed.
const (
	RuleSeed    Rule = "seed"
	RuleTCPSeq  Rule = "tcp_seq"
	RuleSyscall Rule = "syscall"
	RuleTraceID Rule = "trace_id"
	RuleXReqID  Rule = "x_request_id"
	RuleSpanID  Rule = "span_id"
)

// LinkKeyer is implemented by stores that keep link keys (package linkkey)
// for every l7_flow_log row in a table l7_link_key(key, time, _id); assembly
// then looks keys up there instead of scanning l7_flow_log.
type LinkKeyer interface {
	LinkKeys() bool
}

// Defaults for zero Options fields.
const (
	DefaultTimeTolerance   = time.Second
	DefaultMaxSpanDuration = 5 * time.Minute
	DefaultMaxSpans        = 1000
	DefaultMaxRounds       = 16
	DefaultChunk           = 64
)

// Options tune assembly. The zero value is usable.
type Options struct {
	// TimeTolerance is how far apart two observations of one hop (or a
	// client span and its server span's window) may be on one host; 0 means
	// DefaultTimeTolerance.
	TimeTolerance time.Duration
	// ClockSkew is added to TimeTolerance when the spans come from different
	// agents (clocks across hosts). 0 means none; negative is treated as 0.
	ClockSkew time.Duration
	// WindowSlack widens a server span's [start, end] when rule 2 checks that
	// a client span lies inside it. Both come from one host's clock, so the
	// default 0 means exact containment (the guard against recycled threads).
	WindowSlack time.Duration
	// MaxSpanDuration bounds look-backs: trace id lookups span ± this around
	// a span, and a client span's server span is looked for up to this
	// before it. 0 means DefaultMaxSpanDuration.
	MaxSpanDuration time.Duration
	// MaxSpans caps the spans of one trace; 0 means DefaultMaxSpans.
	MaxSpans int
	// MaxRounds caps the expansion rounds; 0 means DefaultMaxRounds.
	MaxRounds int
	// QueryLimit is the LIMIT of each lookup; 0 means 2*MaxSpans.
	QueryLimit int
	// ConditionsPerQuery is how many lookups are OR-ed into one statement;
	// 0 means DefaultChunk.
	ConditionsPerQuery int
	// MaxMQDelay is how long after a Produce a Fetch may read its messages
	// (rule 5); 0 means DefaultMaxMQDelay.
	MaxMQDelay time.Duration
	// Scan makes assembly scan l7_flow_log within each lookup's time window
	// even when the store keeps link keys (for comparison; see LinkKeys).
	Scan bool
}

func (o Options) withDefaults() Options {
	if o.TimeTolerance <= 0 {
		o.TimeTolerance = DefaultTimeTolerance
	}
	if o.ClockSkew < 0 {
		o.ClockSkew = 0
	}
	if o.WindowSlack < 0 {
		o.WindowSlack = 0
	}
	if o.MaxSpanDuration <= 0 {
		o.MaxSpanDuration = DefaultMaxSpanDuration
	}
	if o.MaxSpans <= 0 {
		o.MaxSpans = DefaultMaxSpans
	}
	if o.MaxRounds <= 0 {
		o.MaxRounds = DefaultMaxRounds
	}
	if o.QueryLimit <= 0 {
		o.QueryLimit = 2 * o.MaxSpans
	}
	if o.ConditionsPerQuery <= 0 {
		o.ConditionsPerQuery = DefaultChunk
	}
	if o.MaxMQDelay <= 0 {
		o.MaxMQDelay = DefaultMaxMQDelay
	}
	return o
}

// tolerance between a and b: TimeTolerance, plus ClockSkew across agents.
func (o Options) tolerance(a, b *row) time.Duration {
	if a.agent == b.agent && a.host == b.host {
		return o.TimeTolerance
	}
	return o.TimeTolerance + o.ClockSkew
}

func absDur(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

func sameTuple(a, b *row) bool {
	return a.ip0 == b.ip0 && a.ip1 == b.ip1 && a.cport == b.cport && a.sport == b.sport && a.l4 == b.l4
}

// linkTCP is rule 1.
func (o Options) linkTCP(a, b *row) bool {
	if a.id == b.id || !sameTuple(a, b) {
		return false
	}
	if udpHop(a) && udpHop(b) {
		// UDP has no sequence numbers: the protocol's request id (a DNS
		// transaction id) on the same tuple, close in time.
		return *a.requestID == *b.requestID && a.proto == b.proto &&
			absDur(a.start.Sub(b.start)) <= o.tolerance(a, b)
	}
	reqEq := a.reqSeq != 0 && a.reqSeq == b.reqSeq
	respEq := a.respSeq != 0 && a.respSeq == b.respSeq
	if !reqEq && !respEq {
		return false
	}
	// A conflicting second sequence number means reuse, not the same hop.
	if a.reqSeq != 0 && b.reqSeq != 0 && a.reqSeq != b.reqSeq {
		return false
	}
	if a.respSeq != 0 && b.respSeq != 0 && a.respSeq != b.respSeq {
		return false
	}
	return absDur(a.start.Sub(b.start)) <= o.tolerance(a, b)
}

// udpHop: a UDP span that rule 1 can match by its request id.
func udpHop(r *row) bool {
	return r.l4 == 17 && r.requestID != nil && r.reqSeq == 0 && r.respSeq == 0 && r.cport != 0 && r.sport != 0
}

func isServerProcess(r *row) bool { return r.obs == "s-p" }
func isClientProcess(r *row) bool { return r.obs == "c-p" }

// linkSyscall is rule 2: server is the s-p span, client the c-p span.
func (o Options) linkSyscall(server, client *row) bool {
	if !isServerProcess(server) || !isClientProcess(client) || client.sysReq == 0 {
		return false
	}
	// The request's id only: the kernel keeps a thread's id through the
	// replies to its own calls, so every call made while serving a request
	// carries it; a response id that differs comes from a thread that
	// interleaved requests (an event loop) and would join the wrong one.
	if client.sysReq != server.sysReq {
		return false
	}
	if server.agent != client.agent || server.host != client.host {
		return false
	}
	if server.pid1 != 0 && client.pid0 != 0 && server.pid1 != client.pid0 {
		return false
	}
	slack := o.WindowSlack
	return !client.start.Before(server.start.Add(-slack)) && !client.end.After(server.end.Add(slack))
}

// linkTrace is rule 3.
func (o Options) linkTrace(a, b *row) bool {
	if a.id == b.id || a.traceID == "" || a.traceID != b.traceID {
		return false
	}
	return absDur(a.start.Sub(b.start)) <= o.MaxSpanDuration
}

// sharedXReqID reports whether a and b carry a common non-empty X-Request-ID.
func sharedXReqID(a, b *row) bool {
	for _, x := range [2]string{a.xrid0, a.xrid1} {
		if x != "" && (x == b.xrid0 || x == b.xrid1) {
			return true
		}
	}
	return false
}

// linkXReqID is rule 4.
func (o Options) linkXReqID(a, b *row) bool {
	if a.id == b.id || !sharedXReqID(a, b) {
		return false
	}
	tol := o.tolerance(a, b)
	return !a.start.After(b.end.Add(tol)) && !b.start.After(a.end.Add(tol))
}

// link reports the first rule that links a and b, in rule order.
func (o Options) link(a, b *row) (Rule, bool) {
	switch {
	case o.linkTCP(a, b):
		return RuleTCPSeq, true
	case o.linkSyscall(a, b) || o.linkSyscall(b, a):
		return RuleSyscall, true
	case o.linkTrace(a, b):
		return RuleTraceID, true
	case o.linkXReqID(a, b):
		return RuleXReqID, true
	case o.linkMQ(a, b) || o.linkMQ(b, a):
		return RuleMQ, true
	}
	return "", false
}

// lookup is one candidate lookup: an SQL condition on l7_flow_log, the link
// keys (package linkkey) that find the same candidates in l7_link_key (nil
// when the rule has no keys: the SQL is then always used), and the time
// window both are bounded by.
type lookup struct {
	rule   Rule
	sql    string
	keys   []uint64
	lo, hi time.Time
}

// conditions returns the lookups that find r's candidate neighbours, each an
// equality lookup bounded by a time window. via is the rule that found r: a
// span found by rule 1 does not repeat its hop's lookup, and a client span
// found from its server span (rule 2) does not look back for it. noMQBack
// marks a Fetch found from a Produce (or its hop peer): it does not look back
// for other producers.
func (o Options) conditions(r *row, via Rule, noMQBack bool, emit func(lookup)) {
	wide := o.TimeTolerance + o.ClockSkew
	// Rule 1; a span found by rule 1 was found together with its hop peers.
	if (r.reqSeq != 0 || r.respSeq != 0) && via != RuleTCPSeq {
		var seq []string
		var keys []uint64
		if r.reqSeq != 0 {
			seq = append(seq, fmt.Sprintf("req_tcp_seq = %d", r.reqSeq))
			keys = append(keys, linkkey.TCPReq(r.ip0, r.ip1, r.cport, r.sport, r.l4, r.reqSeq))
		}
		if r.respSeq != 0 {
			seq = append(seq, fmt.Sprintf("resp_tcp_seq = %d", r.respSeq))
			keys = append(keys, linkkey.TCPResp(r.ip0, r.ip1, r.cport, r.sport, r.l4, r.respSeq))
		}
		if safeTupleString(r.ip0) && safeTupleString(r.ip1) {
			lo, hi := r.start.Add(-wide), r.start.Add(wide)
			emit(lookup{RuleTCPSeq, fmt.Sprintf("(%s) AND ip_0 = %s AND ip_1 = %s AND client_port = %d AND server_port = %d AND protocol = %d AND time BETWEEN %s AND %s",
				strings.Join(seq, " OR "), strLit(r.ip0), strLit(r.ip1), r.cport, r.sport, r.l4, timeLit(lo), timeLit(hi)), keys, lo, hi})
		}
	}
	if udpHop(r) && via != RuleTCPSeq && safeTupleString(r.ip0) && safeTupleString(r.ip1) {
		lo, hi := r.start.Add(-wide), r.start.Add(wide)
		emit(lookup{RuleTCPSeq, fmt.Sprintf("request_id = %d AND ip_0 = %s AND ip_1 = %s AND client_port = %d AND server_port = %d AND protocol = 17 AND time BETWEEN %s AND %s",
			*r.requestID, strLit(r.ip0), strLit(r.ip1), r.cport, r.sport, timeLit(lo), timeLit(hi)), nil, lo, hi})
	}
	// Rule 2, both directions; agent equality keeps the lookup host-local.
	agentOK := r.agent == "" || safeString(r.agent)
	// The request id only: linkSyscall never matches the response id.
	if isServerProcess(r) && agentOK && r.sysReq != 0 {
		lo, hi := r.start.Add(-o.WindowSlack), r.end.Add(o.WindowSlack)
		emit(lookup{RuleSyscall, fmt.Sprintf("observation_point = 'c-p' AND agent_id = %s AND syscall_trace_id_request = %d AND time BETWEEN %s AND %s",
			strLit(r.agent), r.sysReq, timeLit(lo), timeLit(hi)), []uint64{linkkey.SyscallClient(r.agent, r.sysReq)}, lo, hi})
	}
	if isClientProcess(r) && agentOK && r.sysReq != 0 && via != RuleSyscall {
		lo, hi := r.start.Add(-o.MaxSpanDuration), r.start.Add(o.WindowSlack)
		emit(lookup{RuleSyscall, fmt.Sprintf("observation_point = 's-p' AND agent_id = %s AND syscall_trace_id_request = %d AND time BETWEEN %s AND %s",
			strLit(r.agent), r.sysReq, timeLit(lo), timeLit(hi)), []uint64{linkkey.SyscallServer(r.agent, r.sysReq)}, lo, hi})
	}
	// Rule 3.
	if safeString(r.traceID) {
		lo, hi := r.start.Add(-o.MaxSpanDuration), r.start.Add(o.MaxSpanDuration)
		emit(lookup{RuleTraceID, fmt.Sprintf("trace_id = %s AND time BETWEEN %s AND %s", strLit(r.traceID), timeLit(lo), timeLit(hi)),
			[]uint64{linkkey.TraceID(r.traceID)}, lo, hi})
	}
	// Rule 4.
	var xs []string
	var xkeys []uint64
	for _, x := range [2]string{r.xrid0, r.xrid1} {
		if safeString(x) && (len(xs) == 0 || xs[0] != strLit(x)) {
			xs = append(xs, strLit(x))
			xkeys = append(xkeys, linkkey.XRequestID(x))
		}
	}
	if len(xs) > 0 {
		in := strings.Join(xs, ", ")
		// A proxy's server span starts before the client spans it causes, so
		// the window reaches back MaxSpanDuration; linkXReqID then requires overlap.
		lo, hi := r.start.Add(-wide-o.MaxSpanDuration), r.end.Add(wide)
		emit(lookup{RuleXReqID, fmt.Sprintf("(x_request_id_0 IN (%s) OR x_request_id_1 IN (%s)) AND time BETWEEN %s AND %s",
			in, in, timeLit(lo), timeLit(hi)), xkeys, lo, hi})
	}
	// Rule 5 (no keys: offset ranges are not equalities).
	o.mqConditions(r, noMQBack, emit)
}

// safeTupleString accepts IP strings (and the empty string of an unknown address).
func safeTupleString(s string) bool { return s == "" || safeString(s) }
