// Package linkkey computes the link keys of l7_flow_log rows: 64-bit hashes
// of (rule, identifier, guard) that the store writes at ingest into a narrow
// side table (l7_link_key: key, time, _id) and that trace assembly looks up
// instead of scanning l7_flow_log for each rule's identifier.
//
// A key only narrows the candidates: two rows share a key when they share the
// rule's identifier and the part of its guard that is an equality (5-tuple for
// tcp_seq, agent for syscall). Assembly still applies the time window in the
// lookup and checks every candidate against the exact rule in Go, so a hash
// collision can add a candidate, never a link.
//
// The encoding is persisted: changing it (or the hash) invalidates stored
// keys, so it must only ever be extended with new rule tags.
package linkkey

// Rule tags; one byte each, hashed first.
const (
	tagTCPReq    = 1 // req_tcp_seq with the 5-tuple
	tagTCPResp   = 2 // resp_tcp_seq with the 5-tuple
	tagSysClient = 3 // a c-p span's syscall_trace_id_request with agent_id
	tagSysServer = 4 // an s-p span's syscall_trace_id_request/_response with agent_id
	tagTraceID   = 5 // trace_id
	tagXReqID    = 6 // x_request_id_0 / x_request_id_1
)

// Fields are the columns of one row that its keys are computed from, as
// stored (IP addresses in their string form, "" when unknown).
type Fields struct {
	ObservationPoint string
	AgentID          string
	IP0, IP1         string
	ClientPort       uint16
	ServerPort       uint16
	Protocol         uint8
	ReqTCPSeq        uint32
	RespTCPSeq       uint32
	SyscallReq       uint64
	SyscallResp      uint64
	TraceID          string
	XRequestID0      string
	XRequestID1      string
}

// Append appends the keys of f to dst (at most 8) and returns it.
func (f *Fields) Append(dst []uint64) []uint64 {
	if f.ReqTCPSeq != 0 {
		dst = append(dst, TCPReq(f.IP0, f.IP1, f.ClientPort, f.ServerPort, f.Protocol, f.ReqTCPSeq))
	}
	if f.RespTCPSeq != 0 {
		dst = append(dst, TCPResp(f.IP0, f.IP1, f.ClientPort, f.ServerPort, f.Protocol, f.RespTCPSeq))
	}
	switch f.ObservationPoint {
	case "c-p":
		if f.SyscallReq != 0 {
			dst = append(dst, SyscallClient(f.AgentID, f.SyscallReq))
		}
	case "s-p":
		if f.SyscallReq != 0 {
			dst = append(dst, SyscallServer(f.AgentID, f.SyscallReq))
		}
		if f.SyscallResp != 0 && f.SyscallResp != f.SyscallReq {
			dst = append(dst, SyscallServer(f.AgentID, f.SyscallResp))
		}
	}
	if f.TraceID != "" {
		dst = append(dst, TraceID(f.TraceID))
	}
	if f.XRequestID0 != "" {
		dst = append(dst, XRequestID(f.XRequestID0))
	}
	if f.XRequestID1 != "" && f.XRequestID1 != f.XRequestID0 {
		dst = append(dst, XRequestID(f.XRequestID1))
	}
	return dst
}

// TCPReq is the key of a non-zero req_tcp_seq on a 5-tuple.
func TCPReq(ip0, ip1 string, cport, sport uint16, l4 uint8, seq uint32) uint64 {
	return tcp(tagTCPReq, ip0, ip1, cport, sport, l4, seq)
}

// TCPResp is the key of a non-zero resp_tcp_seq on a 5-tuple.
func TCPResp(ip0, ip1 string, cport, sport uint16, l4 uint8, seq uint32) uint64 {
	return tcp(tagTCPResp, ip0, ip1, cport, sport, l4, seq)
}

func tcp(tag byte, ip0, ip1 string, cport, sport uint16, l4 uint8, seq uint32) uint64 {
	h := newHash(tag)
	h = h.str(ip0).str(ip1).uint(uint64(cport), 2).uint(uint64(sport), 2).uint(uint64(l4), 1).uint(uint64(seq), 4)
	return uint64(h)
}

// SyscallClient is the key of a c-p span's non-zero syscall_trace_id_request.
func SyscallClient(agent string, id uint64) uint64 {
	return uint64(newHash(tagSysClient).str(agent).uint(id, 8))
}

// SyscallServer is the key of an s-p span's non-zero syscall_trace_id_request
// or syscall_trace_id_response.
func SyscallServer(agent string, id uint64) uint64 {
	return uint64(newHash(tagSysServer).str(agent).uint(id, 8))
}

// TraceID is the key of a non-empty trace_id.
func TraceID(id string) uint64 { return uint64(newHash(tagTraceID).str(id)) }

// XRequestID is the key of a non-empty x_request_id_0 or x_request_id_1.
func XRequestID(id string) uint64 { return uint64(newHash(tagXReqID).str(id)) }

// hash is 64-bit FNV-1a, written out so that the persisted keys never depend
// on a library's choice.
type hash uint64

const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

func newHash(tag byte) hash { return hash(fnvOffset).byte(tag) }

func (h hash) byte(b byte) hash { return (h ^ hash(b)) * fnvPrime }

// str hashes s with its length first, so that adjacent strings cannot shift
// into each other.
func (h hash) str(s string) hash {
	h = h.uint(uint64(len(s)), 4)
	for i := 0; i < len(s); i++ {
		h = h.byte(s[i])
	}
	return h
}

// uint hashes the n low bytes of v, little-endian.
func (h hash) uint(v uint64, n int) hash {
	for i := 0; i < n; i++ {
		h = h.byte(byte(v >> (8 * i)))
	}
	return h
}
