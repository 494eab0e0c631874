package trace

import (
	"cmp"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// Span is one span of an assembled trace.
type Span struct {
	ID         uint64 `json:"_id"`
	ParentID   uint64 `json:"parent_id"` // 0 for a root
	Depth      int    `json:"depth"`
	Link       Rule   `json:"link"`        // the rule that brought the span into the trace
	LinkedFrom uint64 `json:"linked_from"` // the span it was linked from (0 for a seed)
	ParentLink Rule   `json:"parent_link"` // the rule that chose its parent ("" for a root)

	ObservationPoint string `json:"observation_point"`
	SignalSource     uint8  `json:"signal_source"`
	AgentID          string `json:"agent_id"`
	Host             string `json:"host"`
	L7Protocol       uint8  `json:"l7_protocol"`
	L7ProtocolStr    string `json:"l7_protocol_str"`
	RequestType      string `json:"request_type"`
	RequestDomain    string `json:"request_domain"`
	RequestResource  string `json:"request_resource"`
	Endpoint         string `json:"endpoint"`

	ResponseStatus    uint8  `json:"response_status"`
	ResponseCode      *int64 `json:"response_code"`
	ResponseException string `json:"response_exception"`

	StartTime  time.Time `json:"start_time"`
	EndTime    time.Time `json:"end_time"`
	DurationUS uint64    `json:"duration_us"`
	SelfTimeUS uint64    `json:"self_time_us"`

	ProcessID0    uint32 `json:"process_id_0"`
	ProcessID1    uint32 `json:"process_id_1"`
	ProcessKName0 string `json:"process_kname_0"`
	ProcessKName1 string `json:"process_kname_1"`
	IP0           string `json:"ip_0"`
	IP1           string `json:"ip_1"`
	ClientPort    uint16 `json:"client_port"`
	ServerPort    uint16 `json:"server_port"`
	Protocol      uint8  `json:"protocol"`

	TraceID                string `json:"trace_id"`
	SpanID                 string `json:"span_id"`
	ParentSpanID           string `json:"parent_span_id"`
	XRequestID0            string `json:"x_request_id_0"`
	XRequestID1            string `json:"x_request_id_1"`
	ReqTCPSeq              uint32 `json:"req_tcp_seq"`
	RespTCPSeq             uint32 `json:"resp_tcp_seq"`
	SyscallTraceIDRequest  uint64 `json:"syscall_trace_id_request"`
	SyscallTraceIDResponse uint64 `json:"syscall_trace_id_response"`
}

// Trace is an assembled trace. Spans are in tree order: each root followed by
// its subtree depth-first, siblings by start time.
type Trace struct {
	TraceID   string    `json:"trace_id"` // the most common non-empty trace_id, or ""
	Spans     []Span    `json:"spans"`
	Roots     []uint64  `json:"roots"`
	StartTime time.Time `json:"start_time"`
	EndTime   time.Time `json:"end_time"`
	// Truncated is set when a bound (MaxSpans, MaxRounds, QueryLimit) stopped assembly.
	Truncated bool `json:"truncated"`
	Rounds    int  `json:"rounds"`
	Queries   int  `json:"queries"`
}

// hopRank orders observation points along one request's path.
func hopRank(obs string) int {
	switch obs {
	case "c-app":
		return 0
	case "c-p":
		return 1
	case "c":
		return 2
	case "c-nd":
		return 3
	case "rest", "local":
		return 4
	case "s-nd":
		return 5
	case "s":
		return 6
	case "s-p":
		return 7
	case "s-app":
		return 8
	}
	return 9
}

func isServerSide(obs string) bool {
	return obs == "s-p" || obs == "s" || obs == "s-app" || obs == "s-nd"
}

func durationUS(r *row) uint64 {
	if d := r.end.Sub(r.start); d > 0 {
		return uint64(d / time.Microsecond)
	}
	return r.duration
}

// spanOrder sorts by hop rank, then start, then _id.
func spanOrder(a, b *node) int {
	return cmp.Or(cmp.Compare(hopRank(a.r.obs), hopRank(b.r.obs)), a.r.start.Compare(b.r.start), cmp.Compare(a.r.id, b.r.id))
}

type treeBuilder struct {
	opt        Options
	nodes      []*node
	byID       map[uint64]int
	parent     []int // index, -1 for none
	parentLink []Rule
	group      []int // union-find over rule 1
}

func (a *assembler) build() *Trace {
	nodes := a.order
	b := &treeBuilder{opt: a.opt, nodes: nodes, byID: make(map[uint64]int, len(nodes))}
	b.parent = make([]int, len(nodes))
	b.parentLink = make([]Rule, len(nodes))
	b.group = make([]int, len(nodes))
	for i, n := range nodes {
		b.byID[n.r.id] = i
		b.parent[i] = -1
		b.group[i] = i
	}
	b.hopGroups()
	b.headParents()
	b.appRoots()
	t := b.output()
	t.Truncated = a.truncated
	t.Rounds = a.rounds
	t.Queries = a.queries
	return t
}

func (b *treeBuilder) find(i int) int {
	for b.group[i] != i {
		b.group[i] = b.group[b.group[i]]
		i = b.group[i]
	}
	return i
}

// hopGroups joins rule-1 links into groups and chains each group in hop order.
func (b *treeBuilder) hopGroups() {
	type key struct {
		ip0, ip1     string
		cport, sport uint16
		l4           uint8
		resp         bool
		seq          uint32
		udpID        int64
		hasUDPID     bool
	}
	buckets := make(map[key][]int)
	for i, n := range b.nodes {
		r := &n.r
		base := key{ip0: r.ip0, ip1: r.ip1, cport: r.cport, sport: r.sport, l4: r.l4}
		if r.reqSeq != 0 {
			k := base
			k.seq = r.reqSeq
			buckets[k] = append(buckets[k], i)
		}
		if r.respSeq != 0 {
			k := base
			k.resp, k.seq = true, r.respSeq
			buckets[k] = append(buckets[k], i)
		}
		if udpHop(r) {
			k := base
			k.udpID, k.hasUDPID = *r.requestID, true
			buckets[k] = append(buckets[k], i)
		}
	}
	for _, members := range buckets {
		for x := 0; x < len(members); x++ {
			for y := x + 1; y < len(members); y++ {
				i, j := members[x], members[y]
				if b.opt.linkTCP(&b.nodes[i].r, &b.nodes[j].r) {
					b.group[b.find(i)] = b.find(j)
				}
			}
		}
	}
	groups := make(map[int][]int)
	for i := range b.nodes {
		g := b.find(i)
		groups[g] = append(groups[g], i)
	}
	for _, members := range groups {
		slices.SortFunc(members, func(x, y int) int { return spanOrder(b.nodes[x], b.nodes[y]) })
		for k := 1; k < len(members); k++ {
			b.parent[members[k]] = members[k-1]
			b.parentLink[members[k]] = RuleTCPSeq
		}
	}
}

// headParents gives each group's first span its parent: parent_span_id, then
// syscall, then x_request_id.
func (b *treeBuilder) headParents() {
	bySpanID := make(map[string][]int)
	byXReqID := make(map[string][]int)
	var servers []int
	for i, n := range b.nodes {
		if n.r.spanID != "" {
			bySpanID[n.r.spanID] = append(bySpanID[n.r.spanID], i)
		}
		for _, x := range [2]string{n.r.xrid0, n.r.xrid1} {
			if x != "" && (len(byXReqID[x]) == 0 || byXReqID[x][len(byXReqID[x])-1] != i) {
				byXReqID[x] = append(byXReqID[x], i)
			}
		}
		if isServerProcess(&n.r) {
			servers = append(servers, i)
		}
	}
	// Heads in start order so results do not depend on map order.
	var heads []int
	for i := range b.nodes {
		if b.parent[i] < 0 {
			heads = append(heads, i)
		}
	}
	slices.SortFunc(heads, func(x, y int) int { return spanOrder(b.nodes[x], b.nodes[y]) })
	// Rule 5: hop group members and the client-most span (head) of each group.
	members := make(map[int][]int)
	headOf := make(map[int]int)
	var produces []int
	for _, i := range heads {
		headOf[b.find(i)] = i
	}
	for i, n := range b.nodes {
		members[b.find(i)] = append(members[b.find(i)], i)
		if isProduce(&n.r) {
			produces = append(produces, i)
		}
	}
	for _, i := range heads {
		r := &b.nodes[i].r
		// (a) parent_span_id → span_id: the server-most span carrying it.
		if r.parentSpanID != "" && r.parentSpanID != r.spanID {
			best := -1
			for _, j := range bySpanID[r.parentSpanID] {
				c := &b.nodes[j].r
				if b.find(j) == b.find(i) || (r.traceID != "" && c.traceID != "" && c.traceID != r.traceID) {
					continue
				}
				if best < 0 || spanOrder(b.nodes[j], b.nodes[best]) > 0 {
					best = j
				}
			}
			if b.setParent(i, best, RuleTraceID) {
				continue
			}
		}
		// (a') a c-p/c span under the c-app span whose id its header carried.
		if r.spanID != "" && (r.obs == "c-p" || r.obs == "c") {
			best := -1
			for _, j := range bySpanID[r.spanID] {
				c := &b.nodes[j].r
				if c.obs == "c-app" && b.find(j) != b.find(i) && (r.traceID == "" || c.traceID == "" || c.traceID == r.traceID) {
					if best < 0 || c.start.After(b.nodes[best].r.start) {
						best = j
					}
				}
			}
			if b.setParent(i, best, RuleSpanID) {
				continue
			}
		}
		// (mq) a Fetch hop under the client-most span of the earliest Produce
		// hop whose offsets it read.
		if len(produces) > 0 {
			best := -1
			for _, m := range members[b.find(i)] {
				if !isFetch(&b.nodes[m].r) {
					continue
				}
				for _, j := range produces {
					if b.find(j) == b.find(i) || !b.opt.linkMQ(&b.nodes[j].r, &b.nodes[m].r) {
						continue
					}
					c := headOf[b.find(j)]
					if best < 0 || cmp.Or(b.nodes[c].r.start.Compare(b.nodes[best].r.start), cmp.Compare(b.nodes[c].r.id, b.nodes[best].r.id)) < 0 {
						best = c
					}
				}
			}
			if b.setParent(i, best, RuleMQ) {
				continue
			}
		}
		// (b) syscall: the innermost s-p span whose window holds this c-p span.
		if isClientProcess(r) {
			best := -1
			for _, j := range servers {
				if b.opt.linkSyscall(&b.nodes[j].r, r) && (best < 0 || b.nodes[j].r.start.After(b.nodes[best].r.start)) {
					best = j
				}
			}
			if b.setParent(i, best, RuleSyscall) {
				continue
			}
		}
		// (c) x_request_id: the innermost server-side span with the id that
		// contains this one (exactly on one agent, within the tolerance
		// across agents).
		best := -1
		for _, x := range [2]string{r.xrid0, r.xrid1} {
			if x == "" {
				continue
			}
			for _, j := range byXReqID[x] {
				c := &b.nodes[j].r
				if j == i || b.find(j) == b.find(i) || !isServerSide(c.obs) {
					continue
				}
				// One agent, one clock: the window must really contain
				// the span (a proxy's upstream server span starting a
				// moment after the client's call must not become its
				// parent). Across agents the clocks may differ by the
				// tolerance.
				tol := time.Duration(0)
				if c.agent == "" || c.agent != r.agent {
					tol = b.opt.tolerance(c, r)
				}
				if r.start.Before(c.start.Add(-tol)) || r.end.After(c.end.Add(tol)) {
					continue
				}
				if best < 0 || c.start.After(b.nodes[best].r.start) ||
					(c.start.Equal(b.nodes[best].r.start) && spanOrder(b.nodes[j], b.nodes[best]) > 0) {
					best = j
				}
			}
		}
		b.setParent(i, best, RuleXReqID)
	}
}

// appRoots places the root span of an instrumented service's own trace
// (s-app without a parent: no context came in) under the eBPF server span
// of the same request. The link is not a guess from time: the service's
// outgoing call carried its traceparent, so the call's c-p span is the
// child of a c-app span under that root (rule a'), and the same c-p span
// was sent while the process served that s-p span (rule 2).
func (b *treeBuilder) appRoots() {
	for i, n := range b.nodes {
		c := &n.r
		if !isClientProcess(c) || b.parentLink[i] != RuleSpanID {
			continue
		}
		root := i
		for steps := 0; b.parent[root] >= 0 && steps < len(b.nodes); steps++ {
			root = b.parent[root]
		}
		r := &b.nodes[root].r
		if root == i || r.obs != "s-app" {
			continue
		}
		best := -1
		for j, m := range b.nodes {
			s := &m.r
			if j == i || !b.opt.linkSyscall(s, c) {
				continue
			}
			tol := b.opt.tolerance(s, r)
			if r.start.Before(s.start.Add(-tol)) || r.end.After(s.end.Add(tol)) {
				continue
			}
			if best < 0 || s.start.After(b.nodes[best].r.start) {
				best = j
			}
		}
		b.setParent(root, best, RuleSyscall)
	}
}

// setParent makes p the parent of i unless p < 0 or it would close a cycle.
func (b *treeBuilder) setParent(i, p int, rule Rule) bool {
	if p < 0 || p == i {
		return false
	}
	for k, steps := p, 0; k >= 0 && steps <= len(b.nodes); k, steps = b.parent[k], steps+1 {
		if k == i {
			return false
		}
	}
	b.parent[i] = p
	b.parentLink[i] = rule
	return true
}

// output lays the spans out in tree order with depth and self time.
func (b *treeBuilder) output() *Trace {
	children := make([][]int, len(b.nodes))
	var roots []int
	for i, p := range b.parent {
		if p < 0 {
			roots = append(roots, i)
		} else {
			children[p] = append(children[p], i)
		}
	}
	byStart := func(x, y int) int {
		return cmp.Or(b.nodes[x].r.start.Compare(b.nodes[y].r.start), spanOrder(b.nodes[x], b.nodes[y]))
	}
	slices.SortFunc(roots, byStart)
	for _, c := range children {
		slices.SortFunc(c, byStart)
	}
	t := &Trace{Spans: make([]Span, 0, len(b.nodes)), Roots: make([]uint64, 0, len(roots))}
	traceIDs := make(map[string]int)
	type item struct{ i, depth int }
	for _, root := range roots {
		t.Roots = append(t.Roots, b.nodes[root].r.id)
		stack := []item{{root, 0}}
		for len(stack) > 0 {
			it := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			s := b.span(it.i, it.depth, children[it.i])
			if s.TraceID != "" {
				traceIDs[s.TraceID]++
			}
			if t.StartTime.IsZero() || s.StartTime.Before(t.StartTime) {
				t.StartTime = s.StartTime
			}
			if s.EndTime.After(t.EndTime) {
				t.EndTime = s.EndTime
			}
			t.Spans = append(t.Spans, s)
			for k := len(children[it.i]) - 1; k >= 0; k-- {
				stack = append(stack, item{children[it.i][k], it.depth + 1})
			}
		}
	}
	best := 0
	for id, n := range traceIDs {
		if n > best || (n == best && id < t.TraceID) {
			t.TraceID, best = id, n
		}
	}
	return t
}

func (b *treeBuilder) span(i, depth int, children []int) Span {
	n := b.nodes[i]
	r := &n.r
	s := Span{
		ID: r.id, Depth: depth, Link: n.link, LinkedFrom: n.linkedFrom, ParentLink: b.parentLink[i],
		ObservationPoint: r.obs, SignalSource: r.signal, AgentID: r.agent, Host: r.host,
		L7Protocol: r.proto, L7ProtocolStr: r.protoStr, RequestType: r.reqType, RequestDomain: r.domain,
		RequestResource: r.resource, Endpoint: r.endpoint,
		ResponseStatus: r.status, ResponseCode: r.code, ResponseException: r.exception,
		StartTime: r.start, EndTime: r.end, DurationUS: durationUS(r),
		ProcessID0: r.pid0, ProcessID1: r.pid1, ProcessKName0: r.kname0, ProcessKName1: r.kname1,
		IP0: r.ip0, IP1: r.ip1, ClientPort: r.cport, ServerPort: r.sport, Protocol: r.l4,
		TraceID: r.traceID, SpanID: r.spanID, ParentSpanID: r.parentSpanID,
		XRequestID0: r.xrid0, XRequestID1: r.xrid1, ReqTCPSeq: r.reqSeq, RespTCPSeq: r.respSeq,
		SyscallTraceIDRequest: r.sysReq, SyscallTraceIDResponse: r.sysResp,
	}
	if p := b.parent[i]; p >= 0 {
		s.ParentID = b.nodes[p].r.id
	}
	s.SelfTimeUS = selfTime(r.start, r.end, s.DurationUS, b.childIntervals(children))
	return s
}

type interval struct{ lo, hi time.Time }

func (b *treeBuilder) childIntervals(children []int) []interval {
	out := make([]interval, 0, len(children))
	for _, c := range children {
		r := &b.nodes[c].r
		out = append(out, interval{r.start, r.end})
	}
	return out
}

// selfTime is dur minus the union of the children's intervals clipped to [start, end].
func selfTime(start, end time.Time, dur uint64, kids []interval) uint64 {
	if !end.After(start) || len(kids) == 0 {
		return dur
	}
	clipped := make([]interval, 0, len(kids))
	for _, k := range kids {
		lo, hi := k.lo, k.hi
		if lo.Before(start) {
			lo = start
		}
		if hi.After(end) {
			hi = end
		}
		if hi.After(lo) {
			clipped = append(clipped, interval{lo, hi})
		}
	}
	slices.SortFunc(clipped, func(x, y interval) int { return x.lo.Compare(y.lo) })
	var covered time.Duration
	var cur interval
	for i, k := range clipped {
		switch {
		case i == 0:
			cur = k
		case !k.lo.After(cur.hi):
			if k.hi.After(cur.hi) {
				cur.hi = k.hi
			}
		default:
			covered += cur.hi.Sub(cur.lo)
			cur = k
		}
	}
	if len(clipped) > 0 {
		covered += cur.hi.Sub(cur.lo)
	}
	c := uint64(covered / time.Microsecond)
	if c >= dur {
		return 0
	}
	return dur - c
}

// WriteTree writes the trace as an indented text tree, one span a line.
func (t *Trace) WriteTree(w io.Writer) error {
	var sb strings.Builder
	fmt.Fprintf(&sb, "trace %s: %d spans, %d roots", cmp.Or(t.TraceID, "-"), len(t.Spans), len(t.Roots))
	if t.Truncated {
		sb.WriteString(" (truncated)")
	}
	sb.WriteByte('\n')
	for i := range t.Spans {
		s := &t.Spans[i]
		sb.WriteString(strings.Repeat("  ", s.Depth))
		fmt.Fprintf(&sb, "[%s] %s", cmp.Or(s.ObservationPoint, "?"), cmp.Or(s.L7ProtocolStr, fmt.Sprint(s.L7Protocol)))
		if s.RequestType != "" {
			sb.WriteString(" " + s.RequestType)
		}
		if res := cmp.Or(s.Endpoint, s.RequestResource); res != "" {
			sb.WriteString(" " + res)
		}
		if s.ResponseCode != nil {
			fmt.Fprintf(&sb, " code=%d", *s.ResponseCode)
		}
		fmt.Fprintf(&sb, " status=%d %s self=%s", s.ResponseStatus, us(s.DurationUS), us(s.SelfTimeUS))
		if p := cmp.Or(s.ProcessKName0, s.ProcessKName1); p != "" {
			if s.ProcessKName0 != "" && s.ProcessKName1 != "" {
				p = s.ProcessKName0 + "->" + s.ProcessKName1
			}
			sb.WriteString(" proc=" + p)
		}
		fmt.Fprintf(&sb, " %s:%d->%s:%d _id=%d", s.IP0, s.ClientPort, s.IP1, s.ServerPort, s.ID)
		if s.ParentLink != "" {
			fmt.Fprintf(&sb, " via=%s", s.ParentLink)
		}
		sb.WriteByte('\n')
	}
	if _, err := io.WriteString(w, sb.String()); err != nil {
		return fmt.Errorf("trace: write tree: %w", err)
	}
	return nil
}

func us(v uint64) string {
	return (time.Duration(min(v, uint64(1<<62)/1000)) * time.Microsecond).String()
}
