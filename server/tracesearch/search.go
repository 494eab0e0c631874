// Package tracesearch finds traces: it selects "root-ish" spans of
// l7_flow_log matching a service, endpoint, status, duration, protocol and tag
// filters within a time range, one result per trace candidate, newest first.
//
// A candidate is a server-side span (observation point s-p, s, s-app) or a
// span with no recorded parent (empty parent_span_id). Candidates of one
// trace collapse into one result (see collapse: shared trace_id, one hop's
// observations, a server process span and the client calls its thread made),
// the best-ranked one: no recorded parent first, then server-side, then the
// earliest. A result without a trace_id of its own takes one from its group.
// The search reads at most fetchFactor*Limit rows (newest first) before
// collapsing, so a page can hold fewer than Limit results when many
// candidates collapse.
//
// The SQL is one plain SELECT with =, IN, BETWEEN, comparison, IS NOT NULL,
// substring() and map subscripts (attributes['k']), portable to ClickHouse.
// Every user value is validated; string literals are quoted with doubled
// single quotes and may not contain backslashes or control characters (the
// engines disagree on backslash escapes).
package tracesearch

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/sightline-io/sightline/flowlog"
	"github.com/sightline-io/sightline/server/store"
)

// Limits and defaults.
const (
	DefaultLimit = 20
	MaxLimit     = 1000
	// DefaultRange is the time range searched when Start and End are zero.
	DefaultRange = time.Hour
	// MaxValueLen bounds every user string.
	MaxValueLen = 1024
	// MaxFilters bounds Tags plus Filters.
	MaxFilters = 32
	// fetchFactor is how many candidate rows are read per result wanted.
	fetchFactor = 4
)

// ErrBadQuery wraps every validation error; the handler answers 400 for it.
var ErrBadQuery = errors.New("tracesearch: bad query")

// Query selects traces. The zero value (plus nothing) searches the last hour.
type Query struct {
	// Service is a process (or OTel service) name: process_kname_1 of
	// server-side spans, process_kname_0 of the others.
	Service string
	// Endpoint matches endpoint or request_resource exactly, or by prefix
	// when it ends with '*'.
	Endpoint string
	// Name matches a span name as server/traceotlp names spans: endpoint,
	// else "request_type request_resource" (request_resource alone also matches).
	Name string
	// ObservationPoints restricts observation_point (c-p, s-p, c, s, local,
	// rest, c-nd, s-nd, c-app, s-app, app).
	ObservationPoints []string
	// Status is ok, error, client_error, server_error or timeout.
	Status string
	// MinDuration and MaxDuration bound response_duration (0: no bound).
	MinDuration, MaxDuration time.Duration
	// Start and End bound time; zero End means Now, zero Start End-DefaultRange.
	Start, End time.Time
	// Protocol is an l7 protocol display name (HTTP, MySQL …, any case), a
	// number, or another l7_protocol_str value (plugins).
	Protocol string
	// Tags are column=value equalities on a whitelist of columns (see
	// Columns), or attributes['k']=value.
	Tags map[string]string
	// Filters are comparisons on the same columns (numeric columns allow
	// < <= > >=, every column = and !=).
	Filters []Filter
	// Limit caps the results: 0 means DefaultLimit, at most MaxLimit.
	Limit int
	// Now is the current time for defaults; zero means time.Now().
	Now time.Time
}

// Filter is one comparison: Column Op Value.
type Filter struct {
	Column string
	Op     string // = != < <= > >=
	Value  string
}

// Result is one trace candidate.
type Result struct {
	ID               uint64    `json:"_id"`
	TraceID          string    `json:"trace_id"`
	RootService      string    `json:"root_service"`
	RootName         string    `json:"root_name"`
	StartTime        time.Time `json:"start_time"`
	DurationUS       uint64    `json:"duration_us"`
	Status           string    `json:"status"`
	ResponseStatus   uint8     `json:"response_status"`
	ResponseCode     *int64    `json:"response_code"`
	ObservationPoint string    `json:"observation_point"`
	L7Protocol       uint8     `json:"l7_protocol"`
	L7ProtocolStr    string    `json:"l7_protocol_str"`
	RequestType      string    `json:"request_type"`

	// Grouping keys (not part of the API).
	parentSpanID    string
	tupleKey        string
	reqSeq          uint32
	agent           string
	sysReq, sysResp uint64
	endTime         time.Time
}

// Column kinds for Tags and Filters.
type colKind int

const (
	kindString colKind = iota
	kindInt
)

// columns is the whitelist of filterable columns.
var columns = map[string]colKind{
	"request_type": kindString, "request_domain": kindString, "request_resource": kindString,
	"endpoint": kindString, "response_exception": kindString, "response_result": kindString,
	"trace_id": kindString, "span_id": kindString, "parent_span_id": kindString,
	"x_request_id_0": kindString, "x_request_id_1": kindString, "agent_id": kindString, "host": kindString,
	"observation_point": kindString, "l7_protocol_str": kindString, "version": kindString,
	"process_kname_0": kindString, "process_kname_1": kindString, "ip_0": kindString, "ip_1": kindString,
	"container_id_0": kindString, "container_id_1": kindString,
	"response_code": kindInt, "response_status": kindInt, "l7_protocol": kindInt, "server_port": kindInt,
	"client_port": kindInt, "protocol": kindInt, "signal_source": kindInt, "process_id_0": kindInt,
	"process_id_1": kindInt, "request_id": kindInt, "request_length": kindInt, "response_length": kindInt,
	"response_duration": kindInt,
}

// Columns returns the filterable column names, sorted.
func Columns() []string {
	out := make([]string, 0, len(columns))
	for c := range columns {
		out = append(out, c)
	}
	slices.Sort(out)
	return out
}

// ServerSide are the observation points whose process is the server (_1) side.
var serverSide = []string{"s-p", "s", "s-app", "s-nd"}

// rootish are the server-side points preferred as trace roots.
var rootish = []string{"s-p", "s", "s-app"}

// IsServerSide reports whether obs is a server-side observation point.
func IsServerSide(obs string) bool { return slices.Contains(serverSide, obs) }

// statusCodes maps Query.Status to response_status values.
var statusCodes = map[string][]flowlog.ResponseStatus{
	"ok":           {flowlog.StatusSuccess},
	"error":        {flowlog.StatusTimeout, flowlog.StatusServerError, flowlog.StatusClientError},
	"client_error": {flowlog.StatusClientError},
	"server_error": {flowlog.StatusServerError},
	"timeout":      {flowlog.StatusTimeout},
}

// StatusName is the display name of a response_status value.
func StatusName(s uint8) string {
	switch flowlog.ResponseStatus(s) {
	case flowlog.StatusSuccess:
		return "ok"
	case flowlog.StatusTimeout:
		return "timeout"
	case flowlog.StatusServerError:
		return "server_error"
	case flowlog.StatusClientError:
		return "client_error"
	case flowlog.StatusUnknown:
		return "unknown"
	case flowlog.StatusParseFailed:
		return "parse_failed"
	}
	return "status_" + strconv.Itoa(int(s))
}

func badf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrBadQuery, fmt.Sprintf(format, args...))
}

// Lit quotes s as an SQL string literal portable to DuckDB and ClickHouse:
// valid UTF-8 without control characters or backslashes, at most MaxValueLen
// bytes, single quotes doubled.
func Lit(s string) (string, error) {
	if len(s) > MaxValueLen {
		return "", badf("value longer than %d bytes", MaxValueLen)
	}
	if !utf8.ValidString(s) {
		return "", badf("value %q is not valid UTF-8", s)
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r == '\\' || (r >= 0x80 && r < 0xa0) {
			return "", badf("value %q contains a backslash or control character", s)
		}
	}
	return "'" + strings.ReplaceAll(s, "'", "''") + "'", nil
}

// TimeLit is a timestamp literal both engines compare against a timestamp column.
func TimeLit(t time.Time) string {
	return "'" + t.UTC().Format("2006-01-02 15:04:05.000000") + "'"
}

// AttrKey reports whether k is usable as an attributes map key.
func AttrKey(k string) bool {
	if k == "" || len(k) > 128 {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("._-:/", c) >= 0) {
			return false
		}
	}
	return true
}

// inList renders 'a', 'b' for constant, known-safe strings.
func inList(vals []string) string {
	parts := make([]string, len(vals))
	for i, v := range vals {
		parts[i] = "'" + v + "'"
	}
	return strings.Join(parts, ", ")
}

// ServiceCond is the SQL condition "the span's own service is lit".
func ServiceCond(lit string) string {
	in := inList(serverSide)
	return fmt.Sprintf("((observation_point IN (%s) AND process_kname_1 = %s) OR (observation_point NOT IN (%s) AND process_kname_0 = %s))", in, lit, in, lit)
}

// ProtocolCond parses a protocol name or number into a condition.
func ProtocolCond(p string) (string, error) {
	if n, err := strconv.ParseUint(p, 10, 8); err == nil {
		return fmt.Sprintf("l7_protocol = %d", n), nil
	}
	for num, name := range flowlog.L7ProtocolNames() {
		if strings.EqualFold(name, p) {
			return fmt.Sprintf("l7_protocol = %d", num), nil
		}
	}
	lit, err := Lit(p)
	if err != nil {
		return "", err
	}
	return "l7_protocol_str = " + lit, nil
}

// ColumnCond renders one filter on a whitelisted column or attributes['k'].
func ColumnCond(col, op, val string) (string, error) {
	switch op {
	case "=", "!=", "<", "<=", ">", ">=":
	default:
		return "", badf("unsupported operator %q", op)
	}
	sqlOp := op
	if op == "!=" {
		sqlOp = "<>"
	}
	if key, ok := strings.CutPrefix(col, "attributes."); ok {
		col = "attributes['" + key + "']"
	}
	if key, ok := strings.CutPrefix(col, "attributes['"); ok {
		key, ok = strings.CutSuffix(key, "']")
		if !ok || !AttrKey(key) {
			return "", badf("bad attribute key in %q (letters, digits and ._-:/ only)", col)
		}
		if op != "=" && op != "!=" {
			return "", badf("attributes only support = and !=")
		}
		lit, err := Lit(val)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("attributes['%s'] %s %s", key, sqlOp, lit), nil
	}
	kind, ok := columns[col]
	if !ok {
		return "", badf("unknown or unsupported column %q", col)
	}
	if kind == kindInt {
		n, err := strconv.ParseInt(val, 10, 64)
		if err != nil {
			return "", badf("column %s needs an integer, got %q", col, val)
		}
		return fmt.Sprintf("%s %s %d", col, sqlOp, n), nil
	}
	if op != "=" && op != "!=" {
		return "", badf("column %s only supports = and !=", col)
	}
	lit, err := Lit(val)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%s %s %s", col, sqlOp, lit), nil
}

// EndpointCond matches endpoint or request_resource exactly, or by prefix
// when e ends with '*' (substring(col, 1, n) = prefix: the prefix is
// validated, so byte and character lengths agree for the ASCII prefix and the
// comparison is exact on both engines).
func EndpointCond(e string) (string, error) {
	if prefix, ok := strings.CutSuffix(e, "*"); ok {
		if prefix == "" {
			return "", nil
		}
		for i := 0; i < len(prefix); i++ {
			if prefix[i] >= 0x80 {
				return "", badf("endpoint prefix must be ASCII")
			}
		}
		lit, err := Lit(prefix)
		if err != nil {
			return "", err
		}
		n := len(prefix)
		return fmt.Sprintf("(substring(endpoint, 1, %d) = %s OR substring(request_resource, 1, %d) = %s)", n, lit, n, lit), nil
	}
	lit, err := Lit(e)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("(endpoint = %s OR request_resource = %s)", lit, lit), nil
}

// observationPoints are the known observation_point values.
var observationPoints = []string{"c-p", "s-p", "c", "s", "local", "rest", "c-nd", "s-nd", "c-app", "s-app", "app"}

// maxNameSplits bounds the request_type/request_resource splits NameCond tries.
const maxNameSplits = 8

// NameCond matches a span name: endpoint or request_resource equal to name,
// or (without an endpoint) request_type + " " + request_resource equal to it.
func NameCond(name string) (string, error) {
	lit, err := Lit(name)
	if err != nil {
		return "", err
	}
	parts := []string{"endpoint = " + lit, "request_resource = " + lit}
	var split []string
	for i := 0; i < len(name) && len(split) < maxNameSplits; i++ {
		if name[i] != ' ' {
			continue
		}
		typ, res := name[:i], name[i+1:]
		tl, err := Lit(typ)
		if err != nil {
			return "", err
		}
		rl, err := Lit(res)
		if err != nil {
			return "", err
		}
		split = append(split, fmt.Sprintf("(request_type = %s AND request_resource = %s)", tl, rl))
	}
	if len(split) > 0 {
		parts = append(parts, "(endpoint = '' AND ("+strings.Join(split, " OR ")+"))")
	}
	return "(" + strings.Join(parts, " OR ") + ")", nil
}

// normalized is a validated query.
type normalized struct {
	where string
	limit int
	fetch int
}

// Range resolves the time range of q.
func Range(start, end, now time.Time, def time.Duration) (time.Time, time.Time, error) {
	if now.IsZero() {
		now = time.Now()
	}
	if end.IsZero() {
		end = now
	}
	if start.IsZero() {
		start = end.Add(-def)
	}
	if !end.After(start) {
		return start, end, badf("end %s must be after start %s", end.UTC().Format(time.RFC3339), start.UTC().Format(time.RFC3339))
	}
	return start, end, nil
}

func (q *Query) build() (normalized, error) {
	var n normalized
	n.limit = q.Limit
	switch {
	case n.limit == 0:
		n.limit = DefaultLimit
	case n.limit < 0 || n.limit > MaxLimit:
		return n, badf("limit must be 1-%d, got %d", MaxLimit, q.Limit)
	}
	n.fetch = min(n.limit*fetchFactor, MaxLimit*fetchFactor)
	start, end, err := Range(q.Start, q.End, q.Now, DefaultRange)
	if err != nil {
		return n, err
	}
	conds := []string{fmt.Sprintf("time BETWEEN %s AND %s", TimeLit(start), TimeLit(end))}
	conds = append(conds, fmt.Sprintf("(observation_point IN (%s) OR parent_span_id = '')", inList(rootish)))
	if q.Service != "" {
		lit, err := Lit(q.Service)
		if err != nil {
			return n, fmt.Errorf("service: %w", err)
		}
		conds = append(conds, ServiceCond(lit))
	}
	if q.Endpoint != "" {
		c, err := EndpointCond(q.Endpoint)
		if err != nil {
			return n, fmt.Errorf("endpoint: %w", err)
		}
		if c != "" {
			conds = append(conds, c)
		}
	}
	if q.Name != "" {
		c, err := NameCond(q.Name)
		if err != nil {
			return n, fmt.Errorf("name: %w", err)
		}
		conds = append(conds, c)
	}
	if len(q.ObservationPoints) > 0 {
		for _, o := range q.ObservationPoints {
			if !slices.Contains(observationPoints, o) {
				return n, badf("unknown observation point %q", o)
			}
		}
		conds = append(conds, "observation_point IN ("+inList(q.ObservationPoints)+")")
	}
	if q.Status != "" {
		codes, ok := statusCodes[q.Status]
		if !ok {
			return n, badf("status must be ok, error, client_error, server_error or timeout, got %q", q.Status)
		}
		parts := make([]string, len(codes))
		for i, c := range codes {
			parts[i] = strconv.Itoa(int(c))
		}
		conds = append(conds, "response_status IN ("+strings.Join(parts, ", ")+")")
	}
	if q.MinDuration < 0 || q.MaxDuration < 0 {
		return n, badf("durations must not be negative")
	}
	if q.MaxDuration > 0 && q.MaxDuration < q.MinDuration {
		return n, badf("max duration %s is below min duration %s", q.MaxDuration, q.MinDuration)
	}
	if q.MinDuration > 0 {
		conds = append(conds, fmt.Sprintf("response_duration >= %d", q.MinDuration.Microseconds()))
	}
	if q.MaxDuration > 0 {
		conds = append(conds, fmt.Sprintf("response_duration <= %d", q.MaxDuration.Microseconds()))
	}
	if q.Protocol != "" {
		c, err := ProtocolCond(q.Protocol)
		if err != nil {
			return n, fmt.Errorf("protocol: %w", err)
		}
		conds = append(conds, c)
	}
	if len(q.Tags)+len(q.Filters) > MaxFilters {
		return n, badf("at most %d tags and filters", MaxFilters)
	}
	keys := make([]string, 0, len(q.Tags))
	for k := range q.Tags {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		c, err := ColumnCond(k, "=", q.Tags[k])
		if err != nil {
			return n, fmt.Errorf("tag %s: %w", k, err)
		}
		conds = append(conds, c)
	}
	for _, f := range q.Filters {
		c, err := ColumnCond(f.Column, f.Op, f.Value)
		if err != nil {
			return n, fmt.Errorf("filter %s: %w", f.Column, err)
		}
		conds = append(conds, c)
	}
	n.where = strings.Join(conds, " AND ")
	return n, nil
}

// resultColumns are read for each candidate, in this order.
var resultColumns = []string{
	"_id", "time", "start_time", "end_time", "response_duration", "trace_id", "parent_span_id",
	"observation_point", "process_kname_0", "process_kname_1", "endpoint", "request_resource",
	"request_type", "response_status", "response_code", "l7_protocol", "l7_protocol_str",
	"ip_0", "ip_1", "client_port", "server_port", "protocol", "req_tcp_seq",
	"agent_id", "syscall_trace_id_request", "syscall_trace_id_response",
}

// SQL returns the statement Search would run for q (for tests and EXPLAIN).
func SQL(q Query) (string, error) {
	n, err := q.build()
	if err != nil {
		return "", err
	}
	return selectSQL(n), nil
}

func selectSQL(n normalized) string {
	return fmt.Sprintf("SELECT %s FROM l7_flow_log WHERE %s ORDER BY time DESC, _id DESC LIMIT %d",
		strings.Join(resultColumns, ", "), n.where, n.fetch)
}

// Search runs q against st.
func Search(ctx context.Context, st store.Store, q Query) ([]Result, error) {
	n, err := q.build()
	if err != nil {
		return nil, err
	}
	res, err := st.Query(ctx, selectSQL(n))
	if err != nil {
		return nil, fmt.Errorf("tracesearch: query: %w", err)
	}
	rows, err := parseResults(res)
	if err != nil {
		return nil, err
	}
	return collapse(rows, n.limit), nil
}

// rank orders candidates of one trace: no parent first, then server-side, then earliest.
func rank(a, b *Result) int {
	return cmp.Or(
		cmp.Compare(boolInt(a.parentSpanID != ""), boolInt(b.parentSpanID != "")),
		cmp.Compare(boolInt(!IsServerSide(a.ObservationPoint)), boolInt(!IsServerSide(b.ObservationPoint))),
		a.StartTime.Compare(b.StartTime),
		cmp.Compare(a.ID, b.ID),
	)
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// hopKey identifies one hop's observations ("" without a sequence number).
func hopKey(r *Result) string {
	if r.reqSeq == 0 {
		return ""
	}
	return "h\x00" + r.tupleKey + "\x00" + strconv.FormatUint(uint64(r.reqSeq), 10)
}

// hopRank orders one hop's observations: the server process or app span first.
func hopRank(obs string) int {
	switch obs {
	case "s-p":
		return 0
	case "s-app":
		return 1
	case "s":
		return 2
	case "s-nd":
		return 3
	}
	return 4
}

// collapse groups the candidates that belong to one trace and keeps the
// best-ranked of each group, newest first. Candidates are grouped (union-find)
// when they share a non-empty trace_id, are observations of one hop (equal
// non-zero req_tcp_seq on the same 5-tuple), or are a client process span and
// the server process span that caused it (rule 2 of server/trace: same agent,
// equal syscall trace id, the client inside the server's window). Only rows
// read by this search are grouped: no extra lookups.
func collapse(rows []Result, limit int) []Result {
	parent := make([]int, len(rows))
	for i := range parent {
		parent[i] = i
	}
	var find func(int) int
	find = func(i int) int {
		for parent[i] != i {
			parent[i] = parent[parent[i]]
			i = parent[i]
		}
		return i
	}
	union := func(a, b int) { parent[find(a)] = find(b) }
	first := make(map[string]int)
	join := func(key string, i int) {
		if j, ok := first[key]; ok {
			union(i, j)
		} else {
			first[key] = i
		}
	}
	type sysKey struct {
		agent string
		id    uint64
	}
	servers := make(map[sysKey][]int)
	for i := range rows {
		r := &rows[i]
		if r.TraceID != "" {
			join("t\x00"+r.TraceID, i)
		}
		if k := hopKey(r); k != "" {
			join(k, i)
		}
		if r.ObservationPoint == "s-p" {
			for _, id := range [2]uint64{r.sysReq, r.sysResp} {
				if id != 0 {
					servers[sysKey{r.agent, id}] = append(servers[sysKey{r.agent, id}], i)
				}
			}
		}
	}
	for i := range rows {
		r := &rows[i]
		if r.ObservationPoint != "c-p" || r.sysReq == 0 {
			continue
		}
		for _, j := range servers[sysKey{r.agent, r.sysReq}] {
			s := &rows[j]
			if !r.StartTime.Before(s.StartTime) && !r.endTime.After(s.endTime) {
				union(i, j)
			}
		}
	}
	best := make(map[int]int)
	traceOf := make(map[int]string)
	for i := range rows {
		g := find(i)
		if b, ok := best[g]; !ok || rank(&rows[i], &rows[b]) < 0 {
			best[g] = i
		}
		if _, ok := traceOf[g]; !ok && rows[i].TraceID != "" {
			traceOf[g] = rows[i].TraceID
		}
	}
	// Within one hop, the server process (or app) span speaks for the hop.
	hopBest := make(map[string]int)
	for i := range rows {
		if k := hopKey(&rows[i]); k != "" {
			if j, ok := hopBest[k]; !ok || hopRank(rows[i].ObservationPoint) < hopRank(rows[j].ObservationPoint) {
				hopBest[k] = i
			}
		}
	}
	out := make([]Result, 0, min(limit, len(best)))
	for g, i := range best {
		if k := hopKey(&rows[i]); k != "" {
			i = hopBest[k]
		}
		r := rows[i]
		if r.TraceID == "" {
			r.TraceID = traceOf[g]
		}
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b Result) int {
		return cmp.Or(b.StartTime.Compare(a.StartTime), cmp.Compare(b.ID, a.ID))
	})
	if len(out) > limit {
		out = out[:limit]
	}
	return out
}

func parseResults(res *store.Result) ([]Result, error) {
	idx := make(map[string]int, len(res.Columns))
	for i, c := range res.Columns {
		idx[c] = i
	}
	for _, c := range resultColumns {
		if _, ok := idx[c]; !ok {
			return nil, fmt.Errorf("tracesearch: result lacks column %q", c)
		}
	}
	out := make([]Result, 0, len(res.Rows))
	for n, vals := range res.Rows {
		if len(vals) != len(res.Columns) {
			return nil, fmt.Errorf("tracesearch: row %d has %d values for %d columns", n, len(vals), len(res.Columns))
		}
		p := store.Row{Vals: vals, Idx: idx}
		r := Result{
			ID:               p.U64("_id"),
			TraceID:          p.Str("trace_id"),
			parentSpanID:     p.Str("parent_span_id"),
			ObservationPoint: p.Str("observation_point"),
			ResponseStatus:   uint8(p.U64("response_status")),
			ResponseCode:     p.OptI64("response_code"),
			L7Protocol:       uint8(p.U64("l7_protocol")),
			L7ProtocolStr:    p.Str("l7_protocol_str"),
			RequestType:      p.Str("request_type"),
			RootName:         cmp.Or(p.Str("endpoint"), p.Str("request_resource")),
			reqSeq:           uint32(p.U64("req_tcp_seq")),
			agent:            p.Str("agent_id"),
			sysReq:           p.U64("syscall_trace_id_request"),
			sysResp:          p.U64("syscall_trace_id_response"),
		}
		if IsServerSide(r.ObservationPoint) {
			r.RootService = cmp.Or(p.Str("process_kname_1"), p.Str("process_kname_0"))
		} else {
			r.RootService = cmp.Or(p.Str("process_kname_0"), p.Str("process_kname_1"))
		}
		r.tupleKey = strings.Join([]string{p.Str("ip_0"), p.Str("ip_1"), p.Str("client_port"), p.Str("server_port"), p.Str("protocol")}, "|")
		tm, start, end := p.Time("time"), p.Time("start_time"), p.Time("end_time")
		r.StartTime = start
		if r.StartTime.IsZero() {
			r.StartTime = tm
		}
		r.endTime = end
		r.DurationUS = p.U64("response_duration")
		if r.DurationUS == 0 && end.After(r.StartTime) {
			r.DurationUS = uint64(end.Sub(r.StartTime) / time.Microsecond)
		}
		r.Status = StatusName(r.ResponseStatus)
		if p.Err != nil {
			return nil, fmt.Errorf("tracesearch: row %d: %w", n, p.Err)
		}
		out = append(out, r)
	}
	return out, nil
}
