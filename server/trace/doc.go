// Package trace assembles a distributed trace around any l7_flow_log span.
//
// Every l7_flow_log row is a span: eBPF process spans (observation point c-p,
// s-p), network spans (c, s, local, rest, c-nd, s-nd) and application spans
// from OTel (c-app, s-app, app). Assembly starts from one row (_id) or from a
// trace id, then expands breadth-first: each round turns the spans found in the
// previous round into a few equality lookups, sent to the store as one
// portable SQL statement per rule (and per chunk of Options.ConditionsPerQuery
// lookups) through store.Store.Query, every one bounded by a time window
// around its spans and by a row LIMIT. A span found by rule 1 does not repeat
// its hop's lookup, and a client span found from its server span does not
// look back for it. The trace id entry point (AssembleTraceID) has no span to
// centre a window on: it is one equality lookup bounded by MaxSpans. The
// rows returned are candidates only: each is checked in Go against the exact
// rule below before it joins the trace. Expansion stops when a round finds
// nothing new, after Options.MaxRounds rounds, or at Options.MaxSpans spans
// (the trace is then marked truncated).
//
// # Linking rules
//
// No link is ever made on a weak match alone: each rule pairs an identifier
// with a guard (tuple, host, process, time window) that rules out id reuse
// (TCP sequence wrap, recycled threads, reused request ids).
//
//  1. tcp_seq — the same hop seen at several observation points (c-p, c, s,
//     s-p of one request): equal non-zero req_tcp_seq, or equal non-zero
//     resp_tcp_seq, AND the same 5-tuple (ip_0, ip_1, client_port,
//     server_port, protocol), AND start times within TimeTolerance (same
//     agent) or TimeTolerance+ClockSkew (different agents). When both spans
//     carry both sequence numbers, both must agree (a req match with a
//     conflicting resp seq is a wrapped or reused sequence, not a link). A
//     sequence match on another tuple, or far apart in time, never links.
//
//     UDP has no sequence numbers: a UDP span with a protocol request id (a
//     DNS transaction id) joins the span with the same id on the same
//     5-tuple and the same L7 protocol, within the same tolerance.
//
//  2. syscall — inside one service: a server process span (s-p) and the client
//     process spans (c-p) sent while serving it. The server span's
//     syscall_trace_id_request equals the client span's
//     syscall_trace_id_request (non-zero), both were observed by the same
//     agent, the pids agree when both are known (server process_id_1 ==
//     client process_id_0), AND the client span lies inside the server span's
//     [start, end] (± WindowSlack, default 0: one host, one clock). The
//     kernel gives a thread (a goroutine in Go) a new id when it reads a new
//     request on a server socket and keeps it through the replies to its own
//     calls, so every call made while serving the request carries it; it
//     hands the id over to goroutines the request starts, to goroutines that
//     receive a value it sent on a channel, and to an idle pool thread it
//     wakes (see docs/tracing.md). The response id is not used: it differs
//     only on threads that interleave requests (event loops, which get no ids).
//     The window guards against recycled threads and ids: when one thread
//     serves two requests back to back, each client span goes to the server
//     span whose window holds it; when several windows hold it, the
//     latest-starting (innermost) one wins.
//
//  3. trace_id — explicit context: an equal non-empty trace_id joins spans
//     (looked up within MaxSpanDuration of the span); parent_span_id → span_id
//     gives the parent.
//
//  4. x_request_id — an equal non-empty X-Request-ID (x_request_id_0 or
//     x_request_id_1, either side) joins spans across proxies, when their
//     [start, end] windows overlap within TimeTolerance+ClockSkew.
//
//  5. mq — a message queue hop (Kafka): a Produce span P and the Fetch spans
//     F that read its messages. Both carry the partition of their offsets
//     (attribute kafka.topic_partition, else request_resource) and offset
//     attributes (P: kafka.base_offset, kafka.record_count; F:
//     kafka.first_offset, kafka.last_offset; spans without them never link).
//     P links F when they name the same topic:partition on the same broker
//     (ip_1, server_port), F's [first, last] holds one of P's offsets
//     [base, base+count-1], and F starts no earlier than TimeTolerance+
//     ClockSkew before P and at most MaxMQDelay (default 10 min) after it.
//     The time window guards against offsets reused after a topic is
//     recreated. A Fetch found from a Produce (and its hop peers) does not
//     look back for other producers: a batched fetch holds several
//     requests' messages, and expanding back would merge unrelated traces.
//     A Fetch that assembly starts from (or reaches by another rule) finds
//     all its producers: the trace then shows the batch.
//
// # Link keys
//
// A store whose LinkKeys method (LinkKeyer) reports true (the DuckDB store
// opened with LinkIndexKeys) writes, in the same transaction as each
// l7_flow_log batch, one row per linking identifier of each span into
// l7_link_key(key, time, _id): key is a 64-bit hash (package linkkey) of the
// rule, the identifier and the equality part of its guard (tcp_seq: the
// 5-tuple; syscall: the agent and the side). Each round then looks up the
// _ids of all its keyed lookups in one statement (each chunk bounded by its
// lookups' time window) and fetches their rows by _id. Rule 5 compares
// offset ranges, not equalities, and always scans its time window. Rows are
// checked against the exact rules either way, so a key collision adds a
// candidate, never a link; Options.Scan forces scans. On DuckDB, scans of
// time windows over time-ordered rows (zonemaps) measured faster than key
// lookups (BenchmarkAssemble), so scans are the default there.
//
// # Tree
//
// Spans linked by rule 1 form a hop group, ordered c-app, c-p, c, c-nd, rest /
// local, s-nd, s, s-p, s-app (then by start time): each member is the child of
// the one before it, so the client process span is the parent of the network
// spans and the server process span their child. The first span of each group
// then gets its parent, trying in order:
//
//	(a) parent_span_id: the span whose span_id equals it (outside the group,
//	    same trace_id when both have one); when several spans of one hop share
//	    that span_id (eBPF spans parse the same header), the server-most one;
//	    a c-p/c head whose span_id equals a c-app span's span_id is that app
//	    span's child (the eBPF side parsed the app's traceparent);
//	(mq) a Fetch hop: the client-most span of the earliest Produce hop whose
//	    offsets it read (rule 5);
//	(b) syscall: the s-p span that caused it (rule 2), innermost window first;
//	(c) x_request_id: the innermost server-side span (s-p, s, s-app) with the
//	    same request id whose window contains it.
//
// A parent that would close a cycle is refused. Spans with no parent are roots.
// Self time is a span's duration minus the union of its children's intervals
// clipped to its own. Each output span records the rule that discovered it
// (link, and linked_from) and the rule that chose its parent (parent_link).
//
// # API
//
// Assemble and AssembleTraceID return a *Trace whose Spans are in tree order
// (depth-first, children by start time); WriteTree renders it as an indented
// text tree. NewHandler serves GET /api/v1/traces/{trace_id} and
// GET /api/v1/traces?span=<_id> as JSON.
package trace
