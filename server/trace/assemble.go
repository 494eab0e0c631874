package trace

import (
	"context"
	"errors"
	"fmt"
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
}

type assembler struct {
	st        store.Store
	opt       Options
	nodes     map[uint64]*node
	order     []*node
	seen      map[string]struct{} // conditions already sent
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
	return &assembler{
		st:    st,
		opt:   opt.withDefaults(),
		nodes: make(map[uint64]*node),
		seen:  make(map[string]struct{}),
	}
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
		type cond struct {
			sql    string
			lo, hi time.Time
		}
		// One batch per rule keeps each statement's time window tight.
		rules := []Rule{RuleTCPSeq, RuleSyscall, RuleTraceID, RuleXReqID}
		byRule := make(map[Rule][]cond, len(rules))
		for _, n := range frontier {
			a.opt.conditions(&n.r, n.link, func(rule Rule, c string, lo, hi time.Time) {
				if _, dup := a.seen[c]; dup {
					return
				}
				a.seen[c] = struct{}{}
				byRule[rule] = append(byRule[rule], cond{c, lo, hi})
			})
		}
		var batches [][]cond
		for _, rule := range rules {
			conds := byRule[rule]
			for start := 0; start < len(conds); start += a.opt.ConditionsPerQuery {
				batches = append(batches, conds[start:min(start+a.opt.ConditionsPerQuery, len(conds))])
			}
		}
		var next []*node
		for _, chunk := range batches {
			lo, hi := chunk[0].lo, chunk[0].hi
			parts := make([]string, len(chunk))
			for i, c := range chunk {
				if c.lo.Before(lo) {
					lo = c.lo
				}
				if c.hi.After(hi) {
					hi = c.hi
				}
				parts[i] = "(" + c.sql + ")"
			}
			// The outer window lets the engine prune by time before the OR.
			where := fmt.Sprintf("time BETWEEN %s AND %s AND (%s)", timeLit(lo), timeLit(hi), strings.Join(parts, " OR "))
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
					if rule, ok := a.opt.link(&f.r, &r); ok {
						if n := a.add(r, rule, f.r.id); n != nil {
							next = append(next, n)
						}
						break
					}
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
