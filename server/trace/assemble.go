package trace

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/sightline-io/sightline/server/store"
)

// ErrNotFound is returned when the starting span or trace id has no rows.
var ErrNotFound = errors.New("trace: not found")

// ErrBadInput is returned for an unusable span id or trace id.
var ErrBadInput = errors.New("trace: bad input")

// node is a collected span during assembly.
type node struct {
	r          row
	link       Rule
	linkedFrom uint64
	// noMQBack: a Fetch found from a Produce by rule 5 (or a hop peer of
	// one) does not look back for other producers.
	noMQBack bool
}

type assembler struct {
	st        store.Store
	opt       Options
	nodes     map[uint64]*node
	order     []*node
	seen      map[string]struct{} // conditions already sent
	keys      bool                // the store keeps link keys: look them up
	queries   int
	rounds    int
	truncated bool
}

// Assemble builds the trace around the l7_flow_log row whose _id is spanID.
func Assemble(ctx context.Context, st store.Store, spanID uint64, opt Options) (*Trace, error) {
	if spanID == 0 {
		return nil, fmt.Errorf("%w: span id must be a positive _id", ErrBadInput)
	}
	a := newAssembler(st, opt)
	rows, err := a.query(ctx, fmt.Sprintf("_id = %d", spanID), false, 1)
	if err != nil {
		return nil, err
	}
	if len(rows) == 0 {
		return nil, fmt.Errorf("%w: no span with _id %d", ErrNotFound, spanID)
	}
	a.add(rows[0], RuleSeed, 0)
	if err := a.expand(ctx, a.order); err != nil {
		return nil, err
	}
	return a.build(), nil
}

// AssembleTraceID builds the trace of every span carrying traceID, plus the
// spans the linking rules reach from them. The trace id lookup itself has no
// span to centre a time window on: it is an equality lookup bounded by
// MaxSpans (earliest rows first).
func AssembleTraceID(ctx context.Context, st store.Store, traceID string, opt Options) (*Trace, error) {
	if !safeString(traceID) {
		return nil, fmt.Errorf("%w: trace id must be 1-%d printable ASCII characters without quotes or backslashes", ErrBadInput, maxIDLen)
	}
	a := newAssembler(st, opt)
	rows, err := a.query(ctx, "trace_id = "+strLit(traceID), true, a.opt.MaxSpans)
	if err != nil {
		return nil, err
	}
	if len(rows) == 0 {
		return nil, fmt.Errorf("%w: no span with trace id %s", ErrNotFound, traceID)
	}
	if len(rows) >= a.opt.MaxSpans {
		a.truncated = true
	}
	for _, r := range rows {
		a.add(r, RuleSeed, 0)
	}
	if err := a.expand(ctx, a.order); err != nil {
		return nil, err
	}
	t := a.build()
	t.TraceID = traceID
	return t, nil
}

func newAssembler(st store.Store, opt Options) *assembler {
	a := &assembler{
		st:    st,
		opt:   opt.withDefaults(),
		nodes: make(map[uint64]*node),
		seen:  make(map[string]struct{}),
	}
	if lk, ok := st.(LinkKeyer); ok && !opt.Scan {
		a.keys = lk.LinkKeys()
	}
	return a
}

func (a *assembler) query(ctx context.Context, where string, order bool, limit int) ([]row, error) {
	a.queries++
	res, err := a.st.Query(ctx, selectSQL(where, order, limit))
	if err != nil {
		return nil, fmt.Errorf("trace: lookup: %w", err)
	}
	rows, err := parseRows(res)
	if err != nil {
		return nil, err
	}
	if len(rows) >= limit && limit > 1 {
		a.truncated = true
	}
	return rows, nil
}

func (a *assembler) add(r row, rule Rule, from uint64) *node {
	if _, ok := a.nodes[r.id]; ok {
		return nil
	}
	if len(a.nodes) >= a.opt.MaxSpans {
		a.truncated = true
		return nil
	}
	n := &node{r: r, link: rule, linkedFrom: from}
	a.nodes[r.id] = n
	a.order = append(a.order, n)
	return n
}

// expand runs BFS rounds from frontier until nothing new is found or a bound is hit.
func (a *assembler) expand(ctx context.Context, frontier []*node) error {
	for len(frontier) > 0 && a.rounds < a.opt.MaxRounds && len(a.nodes) < a.opt.MaxSpans {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("trace: %w", err)
		}
		a.rounds++
		// One batch per rule keeps each statement's time window tight.
		byRule := make(map[Rule][]lookup, len(allRules))
		for _, n := range frontier {
			a.opt.conditions(&n.r, n.link, n.noMQBack, func(l lookup) {
				if _, dup := a.seen[l.sql]; dup {
					return
				}
				a.seen[l.sql] = struct{}{}
				byRule[l.rule] = append(byRule[l.rule], l)
			})
		}
		var statements []string
		var keyed [][]lookup
		for _, rule := range allRules {
			ls := byRule[rule]
			for start := 0; start < len(ls); start += a.opt.ConditionsPerQuery {
				chunk := ls[start:min(start+a.opt.ConditionsPerQuery, len(ls))]
				if a.keys && chunk[0].keys != nil {
					keyed = append(keyed, chunk)
				} else {
					statements = append(statements, scanWhere(chunk))
				}
			}
		}
		if len(keyed) > 0 {
			// All keyed lookups of the round: the _ids from l7_link_key in
			// one statement, then their rows by _id.
			where, err := a.keyLookup(ctx, keyed)
			if err != nil {
				return err
			}
			if where != "" {
				statements = append([]string{where}, statements...)
			}
		}
		var next []*node
		for _, where := range statements {
			rows, err := a.query(ctx, where, false, a.opt.QueryLimit)
			if err != nil {
				return err
			}
			for _, r := range rows {
				if _, known := a.nodes[r.id]; known {
					continue
				}
				// Verify the candidate against the exact rules.
				for _, f := range frontier {
					rule, ok := a.opt.link(&f.r, &r)
					if !ok || (rule == RuleMQ && f.noMQBack && isFetch(&f.r)) {
						continue
					}
					if n := a.add(r, rule, f.r.id); n != nil {
						n.noMQBack = isFetch(&r) && ((rule == RuleMQ && isProduce(&f.r)) || (rule == RuleTCPSeq && f.noMQBack))
						next = append(next, n)
					}
					break
				}
			}
		}
		frontier = next
	}
	if len(frontier) > 0 {
		a.truncated = true
	}
	return nil
}

// allRules is the order in which a round's lookups are sent.
var allRules = []Rule{RuleTCPSeq, RuleSyscall, RuleTraceID, RuleXReqID, RuleMQ}

// window is the union of the lookups' time windows.
func window(ls []lookup) (lo, hi time.Time) {
	lo, hi = ls[0].lo, ls[0].hi
	for _, l := range ls[1:] {
		if l.lo.Before(lo) {
			lo = l.lo
		}
		if l.hi.After(hi) {
			hi = l.hi
		}
	}
	return lo, hi
}

// scanWhere ORs the lookups' SQL conditions on l7_flow_log; the outer window
// lets the engine prune by time before the OR.
func scanWhere(ls []lookup) string {
	lo, hi := window(ls)
	parts := make([]string, len(ls))
	for i, l := range ls {
		parts[i] = "(" + l.sql + ")"
	}
	return fmt.Sprintf("time BETWEEN %s AND %s AND (%s)", timeLit(lo), timeLit(hi), strings.Join(parts, " OR "))
}

// keyLookup finds the _ids whose link keys the lookups name, each chunk of
// lookups within the union of its windows (one SELECT on the narrow
// l7_link_key table per chunk, UNION ALL-ed, in one statement), and returns
// the condition that fetches their rows ("" when there are none). The _id
// range lets the engine skip to the rows' blocks (DuckDB zonemaps; in
// ClickHouse, where l7_link_key would be ordered by (key, time), the inner
// reads are primary-key ranges).
func (a *assembler) keyLookup(ctx context.Context, chunks [][]lookup) (string, error) {
	subs := make([]string, len(chunks))
	for i, ls := range chunks {
		lo, hi := window(ls)
		var keys []string
		seen := make(map[uint64]bool)
		for _, l := range ls {
			for _, k := range l.keys {
				if !seen[k] {
					seen[k] = true
					keys = append(keys, strconv.FormatUint(k, 10))
				}
			}
		}
		subs[i] = fmt.Sprintf("SELECT _id FROM %s WHERE time BETWEEN %s AND %s AND key IN (%s)",
			linkTableName, timeLit(lo), timeLit(hi), strings.Join(keys, ", "))
	}
	a.queries++
	q := fmt.Sprintf("SELECT DISTINCT _id FROM (%s) AS k ORDER BY _id LIMIT %d", strings.Join(subs, " UNION ALL "), a.opt.QueryLimit)
	res, err := a.st.Query(ctx, q)
	if err != nil {
		return "", fmt.Errorf("trace: link key lookup: %w", err)
	}
	if len(res.Rows) >= a.opt.QueryLimit {
		a.truncated = true
	}
	ids := make([]string, 0, len(res.Rows))
	var lo, hi uint64
	for _, r := range res.Rows {
		if len(r) != 1 {
			return "", fmt.Errorf("trace: link key lookup: %d columns", len(r))
		}
		id, ok := store.ToUint64(r[0])
		if !ok {
			return "", fmt.Errorf("trace: link key lookup: bad _id %v", r[0])
		}
		if _, known := a.nodes[id]; known {
			continue
		}
		if len(ids) == 0 || id < lo {
			lo = id
		}
		if id > hi {
			hi = id
		}
		ids = append(ids, strconv.FormatUint(id, 10))
	}
	if len(ids) == 0 {
		return "", nil
	}
	return fmt.Sprintf("_id BETWEEN %d AND %d AND _id IN (%s)", lo, hi, strings.Join(ids, ", ")), nil
}

// linkTableName is the link key table (see LinkKeyer).
const linkTableName = "l7_link_key"
