package session

import "sync/atomic"

// Stats are the Assembler's counters. Counts are totals since New, except
// the gauges ConnsTracked and Pending.
type Stats struct {
	Segments        uint64 // segments fed
	SegmentsSkipped uint64 // segments of connections marked unknown, not parsed

	ConnsTracked      int64  // connections tracked now
	ConnsOpened       uint64 // connections first seen
	ConnsInferred     uint64 // connections a protocol claimed
	InferenceFailures uint64 // connections marked unknown after InferenceAttempts segments
	ConnsClosed       uint64 // ended by CloseConn
	ConnsIdle         uint64 // dropped by Expire after IdleTimeout
	ConnsEvicted      uint64 // evicted (least recently used) at MaxConns
	ConnsFlushed      uint64 // ended by FlushAll

	Requests       uint64 // request messages from parsers
	Responses      uint64 // response messages from parsers
	ParseFailed    uint64 // messages a parser marked StatusParseFailed
	BadMessages    uint64 // messages neither request nor response, ignored
	Pending        int64  // requests waiting for their response now
	PendingDropped uint64 // requests pushed out at MaxPendingPerConn or MaxPending (emitted as timeouts)
	ParserPanics   uint64 // parser or inference panics (the connection is then skipped)

	RowsSession  uint64 // type 2 rows
	RowsRequest  uint64 // type 0 rows (all with response_status Timeout)
	RowsResponse uint64 // type 1 rows
}

// counters is the live, atomically updated form of Stats, so Stats can be
// read from another goroutine than the one feeding.
type counters struct {
	segments, segmentsSkipped                          atomic.Uint64
	connsTracked, pending                              atomic.Int64
	connsOpened, connsInferred, inferenceFailures      atomic.Uint64
	connsClosed, connsIdle, connsEvicted, connsFlushed atomic.Uint64
	requests, responses, parseFailed, badMessages      atomic.Uint64
	pendingDropped, parserPanics                       atomic.Uint64
	rowsSession, rowsRequest, rowsResponse             atomic.Uint64
}

// Stats returns a snapshot of the counters. It is safe for concurrent use.
func (a *Assembler) Stats() Stats {
	s := &a.stats
	return Stats{
		Segments:          s.segments.Load(),
		SegmentsSkipped:   s.segmentsSkipped.Load(),
		ConnsTracked:      s.connsTracked.Load(),
		ConnsOpened:       s.connsOpened.Load(),
		ConnsInferred:     s.connsInferred.Load(),
		InferenceFailures: s.inferenceFailures.Load(),
		ConnsClosed:       s.connsClosed.Load(),
		ConnsIdle:         s.connsIdle.Load(),
		ConnsEvicted:      s.connsEvicted.Load(),
		ConnsFlushed:      s.connsFlushed.Load(),
		Requests:          s.requests.Load(),
		Responses:         s.responses.Load(),
		ParseFailed:       s.parseFailed.Load(),
		BadMessages:       s.badMessages.Load(),
		Pending:           s.pending.Load(),
		PendingDropped:    s.pendingDropped.Load(),
		ParserPanics:      s.parserPanics.Load(),
		RowsSession:       s.rowsSession.Load(),
		RowsRequest:       s.rowsRequest.Load(),
		RowsResponse:      s.rowsResponse.Load(),
	}
}
