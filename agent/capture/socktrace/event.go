package socktrace

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"github.com/sightline-io/sightline/agent/capture"
)

// Mirrors of the enums in bpf/socket_trace.h (enums never reach BTF, so
// bpf2go cannot generate them).
const (
	eventData  = 1
	eventConn  = 2
	eventClose = 3
	eventExec  = 4
	eventExit  = 5
	eventFork  = 6

	dirEgress  = 0
	dirIngress = 1

	afInet  = 2
	afInet6 = 10

	ipprotoUDP = 17
)

// Role says which side opened a connection.
type Role uint8

const (
	RoleClient Role = 1 // connect
	RoleServer Role = 2 // accept, accept4
)

func (r Role) String() string {
	switch r {
	case RoleClient:
		return "client"
	case RoleServer:
		return "server"
	}
	return fmt.Sprintf("role(%d)", uint8(r))
}

// headerSize is sizeof(struct event_header); event_test.go checks the
// offsets below against the bpf2go-generated socketTraceEventHeader.
const headerSize = 144

// header is the decoded struct event_header, times still monotonic.
type header struct {
	typ             uint32
	pid, tid        uint32
	fd              int32
	enterNs, exitNs uint64
	sock, connUID   uint64
	traceID         uint64
	bytes, captured uint32
	tcpSeq, capSeq  uint32
	family          uint16
	l4, dir         uint8
	lport, rport    uint16
	laddr, raddr    [16]byte
	comm            [16]byte
	syscall         uint32
	l7Hint          uint8
	flags           uint8
	goid            uint64
}

// eventFlagTLS mirrors EVENT_FLAG_TLS: the payload is TLS plaintext.
const eventFlagTLS = 1

// eventFlagTLSPending mirrors EVENT_FLAG_TLS_PENDING: on a close, a TLS
// call on the socket had not returned yet.
const eventFlagTLSPending = 2

var (
	errShortRecord   = errors.New("record shorter than event header")
	errPayloadLength = errors.New("captured length disagrees with record size")
	errBadFamily     = errors.New("unknown address family")
)

// decodeHeader parses a ring buffer record (host byte order; the kernel
// writes native-endian and only little-endian objects are generated). It
// returns the payload that follows data events.
func decodeHeader(b []byte, h *header) (payload []byte, err error) {
	if len(b) < headerSize {
		return nil, fmt.Errorf("%w: %d bytes", errShortRecord, len(b))
	}
	le := binary.LittleEndian
	h.typ = le.Uint32(b[0:])
	h.pid = le.Uint32(b[4:])
	h.tid = le.Uint32(b[8:])
	h.fd = int32(le.Uint32(b[12:]))
	h.enterNs = le.Uint64(b[16:])
	h.exitNs = le.Uint64(b[24:])
	h.sock = le.Uint64(b[32:])
	h.connUID = le.Uint64(b[40:])
	h.traceID = le.Uint64(b[48:])
	h.bytes = le.Uint32(b[56:])
	h.captured = le.Uint32(b[60:])
	h.tcpSeq = le.Uint32(b[64:])
	h.capSeq = le.Uint32(b[68:])
	h.family = le.Uint16(b[72:])
	h.l4 = b[74]
	h.dir = b[75]
	h.lport = le.Uint16(b[76:])
	h.rport = le.Uint16(b[78:])
	copy(h.laddr[:], b[80:96])
	copy(h.raddr[:], b[96:112])
	copy(h.comm[:], b[112:128])
	h.syscall = le.Uint32(b[128:])
	h.l7Hint = b[132]
	h.flags = b[133]
	h.goid = le.Uint64(b[136:])
	rest := b[headerSize:]
	if h.typ != eventData {
		return nil, nil
	}
	// The ring buffer may pad records to 8 bytes; never trust more than
	// the kernel said it captured, nor more than the record holds.
	if int(h.captured) > len(rest) || h.captured > h.bytes || h.captured > MaxPayloadLimit {
		return nil, fmt.Errorf("%w: captured %d, bytes %d, record payload %d",
			errPayloadLength, h.captured, h.bytes, len(rest))
	}
	return rest[:h.captured], nil
}

// tuple builds the connection tuple: A is the local socket, B the peer.
// IPv4-mapped IPv6 addresses (dual-stack sockets) are unmapped.
func (h *header) tuple() (capture.Tuple, error) {
	t := capture.Tuple{APort: h.lport, BPort: h.rport, L4: h.l4}
	switch h.family {
	case afInet:
		t.AIP = netip.AddrFrom4([4]byte(h.laddr[:4]))
		t.BIP = netip.AddrFrom4([4]byte(h.raddr[:4]))
	case afInet6:
		t.AIP = netip.AddrFrom16(h.laddr).Unmap()
		t.BIP = netip.AddrFrom16(h.raddr).Unmap()
	default:
		return t, fmt.Errorf("%w: %d", errBadFamily, h.family)
	}
	return t, nil
}

// connID identifies a connection as seen by one process: the kernel's
// per-socket conn_uid is unique per boot, mixed with the tgid because a
// socket shared across fork is two views. Falls back to the sock pointer
// if the kernel could not allocate socket state.
//
// A UDP socket that is not connected talks to many peers through one
// socket (a DNS server): each peer is its own connection, so the peer's
// address and port are mixed in. A connected UDP socket has one peer, and
// its close event names it, so its close still finds the connection.
//
// TLS plaintext is a stream of its own beside the socket's ciphertext
// (tls set): a parser that gave up on the ciphertext must not see it.
func (h *header) connID(tls bool) uint64 {
	id := h.connUID
	if id == 0 {
		id = h.sock
	}
	id = mix64(id ^ mix64(uint64(h.pid)))
	if tls {
		id = mix64(id ^ 0x746c73) // "tls"
	}
	if h.l4 == ipprotoUDP {
		peer := uint64(h.rport)<<32 ^ uint64(binary.LittleEndian.Uint32(h.raddr[12:])) ^
			binary.LittleEndian.Uint64(h.raddr[:8])<<1 ^ uint64(binary.LittleEndian.Uint32(h.raddr[8:12]))<<17
		id = mix64(id ^ peer)
	}
	return id
}

// mix64 is the splitmix64 finalizer: a bijection with good avalanche.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
