// Package capture defines what every data source (eBPF socket tracer, packet
// capture, pcap replay) hands to the protocol layer: Segments of one
// connection's byte stream, with the identity of where they were seen.
package capture

import (
	"net/netip"
	"time"
)

// Source says where a Segment came from.
type Source uint8

const (
	SourceEBPF   Source = iota // socket syscall tracepoints; one Segment per syscall
	SourcePacket               // packets (AF_PACKET or pcap), after TCP reassembly
)

// Direction is relative to the connection's A endpoint.
// For eBPF, A is the local socket (the traced process), so AtoB is egress.
// For packets, A is the endpoint that sent the SYN (or the first packet seen).
type Direction uint8

const (
	AtoB Direction = 0 // eBPF: egress (write/send)
	BtoA Direction = 1 // eBPF: ingress (read/recv)
)

// Reverse returns the opposite direction.
func (d Direction) Reverse() Direction { return d ^ 1 }

// Tuple is a connection's endpoints: A and B as defined by Direction.
type Tuple struct {
	AIP, BIP     netip.Addr
	APort, BPort uint16
	L4           uint8 // 6 TCP, 17 UDP
}

// Segment is a run of bytes that crossed one connection in one direction:
// one syscall's payload for eBPF, or one contiguous reassembled stretch for
// packets. Data may be shorter than Len: only a prefix was captured, and the
// remaining Len-len(Data) bytes are known to exist but were not seen.
// Parsers must not retain Data after Feed returns (the buffer is reused).
type Segment struct {
	Source Source
	ConnID uint64 // unique for the connection's lifetime at this observation point
	Tuple  Tuple
	Dir    Direction

	Start time.Time // syscall entry / first packet
	End   time.Time // syscall exit / last packet

	Data []byte
	Len  int // total bytes carried (>= len(Data)); for UDP, one datagram

	TCPSeq uint32 // TCP sequence number of Data[0] (write_seq on egress, copied_seq on ingress)

	// Process-level identity; zero for packet sources.
	PID            uint32
	TID            uint32
	Comm           string
	FD             int32
	CapSeq         uint32 // per-socket capture sequence (increments per syscall on that socket)
	SyscallTraceID uint64 // thread-level correlation id assigned in the kernel
	Coroutine      uint64 // goroutine id when known
	// Socket is the kernel's key for the socket (eBPF; opaque), for
	// verdicts sent back to the kernel (see socktrace.Tracer.SkipSocket).
	Socket uint64
	// ProtoHint is the kernel's first-stage guess of the L7 protocol (an
	// l7_protocol number; 0 = none): user space tries that parser first.
	ProtoHint uint8
	// TLS says Data is TLS plaintext read from the TLS library (uprobes),
	// not the socket's bytes; TCPSeq is then that of the ciphertext record
	// that carried it (0: unknown).
	TLS bool

	// Packet-level hint: IP TTL/hop limit of the packet that carried Data[0] (0 = unknown).
	TTL uint8
}

// Gap reports how many bytes of the segment were not captured.
func (s *Segment) Gap() int { return s.Len - len(s.Data) }

// SeqAt is the TCP sequence number of the message starting at Data[off].
// TLS plaintext has no byte-wise mapping to the wire: a message inside it
// carries the sequence of the record the segment came from. 0 stays 0
// (unknown).
func (s *Segment) SeqAt(off int) uint32 {
	if s.TLS || s.TCPSeq == 0 {
		return s.TCPSeq
	}
	return s.TCPSeq + uint32(off)
}

// Closed tells the protocol layer that a connection ended.
type Closed struct {
	ConnID uint64
	Time   time.Time
}
