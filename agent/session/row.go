package session

import (
	"time"

	"github.com/sightline-io/sightline/agent/capture"
	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/flowlog"
)

// rowAlloc holds a row and the values its nullable columns point to, so a
// row costs one allocation.
type rowAlloc struct {
	row          flowlog.L7FlowLog
	requestID    uint64
	responseCode int32
	affectedRows uint64
}

// emitSession emits a request paired with its response (type 2).
func (a *Assembler) emitSession(c *conn, req, resp *l7.Message) {
	ra := a.newRow(c, req.Dir, req, resp)
	r := &ra.row
	r.Type = flowlog.TypeSession
	r.Time, r.StartTime, r.EndTime = req.Start, req.Start, resp.End
	r.ResponseDuration = micros(resp.End.Sub(req.Start))
	a.stats.rowsSession.Add(1)
	a.emit(r)
}

// emitOneWay emits a request that expects no response as a complete
// session: status OK, no duration.
func (a *Assembler) emitOneWay(c *conn, req *l7.Message) {
	ra := a.newRow(c, req.Dir, req, nil)
	r := &ra.row
	r.Type = flowlog.TypeSession
	r.Time, r.StartTime, r.EndTime = req.Start, req.Start, req.End
	r.ResponseStatus = flowlog.StatusSuccess
	a.stats.rowsSession.Add(1)
	a.emit(r)
}

// emitRequestOnly emits a request that got no response (type 0, Timeout).
func (a *Assembler) emitRequestOnly(c *conn, req *l7.Message) {
	ra := a.newRow(c, req.Dir, req, nil)
	r := &ra.row
	r.Type = flowlog.TypeRequest
	r.Time, r.StartTime, r.EndTime = req.Start, req.Start, req.Start
	r.ResponseStatus = flowlog.StatusTimeout
	a.stats.rowsRequest.Add(1)
	a.emit(r)
}

// emitResponseOnly emits a response whose request was not seen (type 1):
// the capture started mid-connection, or the request already timed out.
func (a *Assembler) emitResponseOnly(c *conn, resp *l7.Message) {
	// The sender of a response is the server: the request would have gone
	// the other way.
	ra := a.newRow(c, resp.Dir.Reverse(), nil, resp)
	r := &ra.row
	r.Type = flowlog.TypeResponse
	r.Time, r.StartTime, r.EndTime = resp.Start, resp.Start, resp.End
	a.stats.rowsResponse.Add(1)
	a.emit(r)
}

// newRow fills the columns common to every row type from the connection,
// the request (may be nil) and the response (may be nil). reqDir is the
// direction requests travel: from client to server.
func (a *Assembler) newRow(c *conn, reqDir capture.Direction, req, resp *l7.Message) *rowAlloc {
	ra := new(rowAlloc)
	r := &ra.row
	r.AgentID, r.Host = a.cfg.AgentID, a.cfg.Host
	r.OrgID, r.TeamID = a.cfg.OrgID, a.cfg.TeamID
	r.Protocol = c.tuple.L4
	setEndpoints(r, c, reqDir)
	if !c.roleTold && c.socket != 0 && a.cfg.Role != nil {
		c.roleTold = true
		a.cfg.Role(c.socket, reqDir == capture.AtoB)
	}

	first := req
	if first == nil {
		first = resp
	}
	r.L7Protocol = first.Protocol
	if r.L7Protocol == flowlog.L7Unknown && c.proto != nil {
		r.L7Protocol = c.proto.ID()
	}
	r.L7ProtocolStr = r.L7Protocol.String()
	r.Version = first.Version

	// Request-side columns (a lone response still names its request when
	// the protocol echoes it, e.g. a request id).
	r.RequestLength = -1
	r.ResponseLength = -1
	if first.HasRequestID {
		ra.requestID = first.RequestID
		r.RequestID = &ra.requestID
	}
	if req != nil {
		r.RequestType = req.RequestType
		r.RequestDomain = req.Domain
		r.RequestResource = req.Resource
		r.Endpoint = req.Endpoint
		r.RequestLength = req.Length
		r.CapturedRequestByte = req.Captured
		r.XRequestID0 = req.XRequestID
		r.SyscallTraceIDRequest = req.SyscallTraceID
		r.SyscallThread0 = req.TID
		r.SyscallCapSeq0 = req.CapSeq
		r.SyscallCoroutine0 = req.Coroutine
		r.ReqTCPSeq = req.TCPSeq
		r.Attributes = req.Attributes
	}
	if resp != nil {
		if r.Version == "" {
			r.Version = resp.Version
		}
		if r.RequestID == nil && resp.HasRequestID {
			ra.requestID = resp.RequestID
			r.RequestID = &ra.requestID
		}
		r.ResponseStatus = resp.Status
		if resp.HasCode {
			ra.responseCode = resp.Code
			r.ResponseCode = &ra.responseCode
		}
		r.ResponseException = resp.Exception
		r.ResponseResult = resp.Result
		if resp.HasAffectedRows {
			ra.affectedRows = resp.SQLAffectedRows
			r.SQLAffectedRows = &ra.affectedRows
		}
		r.ResponseLength = resp.Length
		r.CapturedResponseByte = resp.Captured
		r.XRequestID1 = resp.XRequestID
		r.SyscallTraceIDResponse = resp.SyscallTraceID
		r.SyscallThread1 = resp.TID
		r.SyscallCapSeq1 = resp.CapSeq
		r.SyscallCoroutine1 = resp.Coroutine
		r.RespTCPSeq = resp.TCPSeq
		r.Attributes = mergeAttributes(r.Attributes, resp.Attributes)
	}

	// Trace context travels as a unit: take the request's if it has one.
	tc := first
	if tc.TraceID == "" && resp != nil && resp.TraceID != "" {
		tc = resp
	}
	r.TraceID, r.SpanID, r.ParentSpanID = tc.TraceID, tc.SpanID, tc.ParentSpanID
	return ra
}

// setEndpoints fills the client/server columns. reqDir is the direction of
// the request, so the client is A when it is AtoB.
func setEndpoints(r *flowlog.L7FlowLog, c *conn, reqDir capture.Direction) {
	t := c.tuple
	clientIsA := reqDir == capture.AtoB
	if clientIsA {
		r.IP0, r.ClientPort, r.IP1, r.ServerPort = t.AIP, t.APort, t.BIP, t.BPort
	} else {
		r.IP0, r.ClientPort, r.IP1, r.ServerPort = t.BIP, t.BPort, t.AIP, t.APort
	}
	r.IsTLS = c.tls
	switch c.source {
	case capture.SourceEBPF:
		// A is the traced socket: the process is the client if it sent the request.
		r.SignalSource = flowlog.SourceEBPF
		if clientIsA {
			r.ObservationPoint = flowlog.ObsClientProcess
			r.ProcessID0, r.ProcessKName0 = c.pid, c.comm
		} else {
			r.ObservationPoint = flowlog.ObsServerProcess
			r.ProcessID1, r.ProcessKName1 = c.pid, c.comm
		}
	default:
		r.SignalSource = flowlog.SourcePacket
		r.ObservationPoint = packetObservationPoint(t, c.ttl[reqDir&1], c.ttl[reqDir.Reverse()&1])
	}
}

// packetObservationPoint places a packet capture on the path. Packets still
// carrying an initial TTL were sent by the host being captured on.
func packetObservationPoint(t capture.Tuple, clientTTL, serverTTL uint8) string {
	a, b := t.AIP.Unmap(), t.BIP.Unmap()
	if a.IsValid() && b.IsValid() && (a == b || (a.IsLoopback() && b.IsLoopback())) {
		return flowlog.ObsLocalNIC
	}
	clientLocal, serverLocal := isInitialTTL(clientTTL), isInitialTTL(serverTTL)
	switch {
	case clientLocal && serverLocal:
		return flowlog.ObsLocalNIC
	case serverLocal:
		return flowlog.ObsServerNIC
	default:
		// Client-local, or unknown: DeepFlow also defaults to the client side.
		return flowlog.ObsClientNIC
	}
}

func isInitialTTL(ttl uint8) bool { return ttl == 64 || ttl == 128 || ttl == 255 }

// mergeAttributes returns the union of req and resp; on a shared key the
// request's value wins. It allocates only when both are non-empty.
func mergeAttributes(req, resp map[string]string) map[string]string {
	if len(resp) == 0 {
		return req
	}
	if len(req) == 0 {
		return resp
	}
	m := make(map[string]string, len(req)+len(resp))
	for k, v := range resp {
		m[k] = v
	}
	for k, v := range req {
		m[k] = v
	}
	return m
}

// micros converts a duration to whole microseconds, clamping negatives (a
// response clock earlier than its request's) to zero.
func micros(d time.Duration) uint64 {
	if d <= 0 {
		return 0
	}
	return uint64(d / time.Microsecond)
}
