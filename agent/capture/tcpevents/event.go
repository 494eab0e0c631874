package tcpevents

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"time"

	"github.com/sightline-io/sightline/agent/capture"
)

// EventType is the kind of a TCP lifecycle event (enum tcp_event_type in
// bpf/tcp_events.h).
type EventType uint8

const (
	ConnectStart  EventType = 1  // CLOSE -> SYN_SENT inside connect(); the local port may still be 0
	ConnectOK     EventType = 2  // SYN_SENT -> ESTABLISHED
	ConnectFailed EventType = 3  // SYN_SENT -> CLOSE; Err says why
	Established   EventType = 4  // SYN_RECV -> ESTABLISHED: server side of a new connection
	Close         EventType = 5  // any other state -> CLOSE
	Retransmit    EventType = 6  // a segment was retransmitted
	ResetSent     EventType = 7  // this host sent a RST
	ResetReceived EventType = 8  // this host received a RST for an existing socket
	StateChange   EventType = 9  // other transitions: FIN_WAIT1, CLOSE_WAIT, LAST_ACK, ...
	Listen        EventType = 10 // CLOSE -> LISTEN inside listen()
)

var typeNames = [...]string{
	ConnectStart: "connect_start", ConnectOK: "connect_ok", ConnectFailed: "connect_failed",
	Established: "established", Close: "close", Retransmit: "retransmit",
	ResetSent: "reset_sent", ResetReceived: "reset_received", StateChange: "state_change",
	Listen: "listen",
}

func (t EventType) String() string {
	if int(t) < len(typeNames) && typeNames[t] != "" {
		return typeNames[t]
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// OwnerSource says how Event.PID and Comm were attributed.
type OwnerSource uint8

const (
	OwnerNone     OwnerSource = 0 // unknown (socket older than the tracer, or a RST for no socket)
	OwnerConnect  OwnerSource = 1 // the task that called connect(): client side
	OwnerListener OwnerSource = 2 // the task that called listen() on the listening port: server side
	OwnerListen   OwnerSource = 3 // the socket is a listener; the task that called listen()
)

// TCP states (include/net/tcp_states.h).
const (
	StateEstablished uint8 = 1
	StateSynSent     uint8 = 2
	StateSynRecv     uint8 = 3
	StateFinWait1    uint8 = 4
	StateFinWait2    uint8 = 5
	StateTimeWait    uint8 = 6
	StateClose       uint8 = 7
	StateCloseWait   uint8 = 8
	StateLastAck     uint8 = 9
	StateListen      uint8 = 10
	StateClosing     uint8 = 11
	StateNewSynRecv  uint8 = 12
)

var stateNames = [...]string{"", "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2",
	"TIME_WAIT", "CLOSE", "CLOSE_WAIT", "LAST_ACK", "LISTEN", "CLOSING", "NEW_SYN_RECV"}

// StateName names a TCP state.
func StateName(s uint8) string {
	if int(s) < len(stateNames) && s != 0 {
		return stateNames[s]
	}
	return fmt.Sprintf("state(%d)", s)
}

// Failure is why a connect failed, derived from the socket error.
type Failure uint8

const (
	FailureNone        Failure = iota
	FailureRefused             // ECONNREFUSED: a RST answered the SYN
	FailureTimeout             // ETIMEDOUT: SYN retries exhausted
	FailureUnreachable         // EHOSTUNREACH / ENETUNREACH: ICMP error
	FailureAborted             // no error: the application closed the socket while connecting
	FailureOther
)

func (f Failure) String() string {
	return [...]string{"none", "refused", "timeout", "unreachable", "aborted", "other"}[min(int(f), int(FailureOther))]
}

// Linux errno values seen in sk_err at a failed connect.
const (
	errnoETIMEDOUT    = 110
	errnoECONNREFUSED = 111
	errnoEHOSTUNREACH = 113
	errnoENETUNREACH  = 101
)

// FailureOf classifies a ConnectFailed event's Err.
func FailureOf(errno int32) Failure {
	switch errno {
	case 0:
		return FailureAborted
	case errnoECONNREFUSED:
		return FailureRefused
	case errnoETIMEDOUT:
		return FailureTimeout
	case errnoEHOSTUNREACH, errnoENETUNREACH:
		return FailureUnreachable
	}
	return FailureOther
}

// Event is one TCP lifecycle event. Tuple.A is the local endpoint.
type Event struct {
	Type  EventType
	Time  time.Time
	Tuple capture.Tuple // A = local, B = remote; L4 = 6
	// PID/TID/Comm are the socket's owner (see Owner), not the task the
	// kernel happened to run in: most events fire in softirq context.
	PID   uint32
	TID   uint32
	Comm  string
	Owner OwnerSource
	Sock  uint64 // struct sock pointer; 0 for a RST sent for no socket
	NetNS uint32 // network namespace inode (0 when unknown)
	// OldState/NewState are the transition for state events; for
	// retransmit and resets both hold the socket's current state.
	OldState, NewState uint8
	// Err: ConnectFailed: the socket error (errno; see FailureOf);
	// Retransmit: the retransmission's result (0 = sent).
	Err int32
	// ResetReason is enum sk_rst_reason for ResetSent (0 = not specified,
	// 1 = no socket, 11 = abort on close, 12 = abort on linger, ...).
	ResetReason uint32
}

// Failure classifies a ConnectFailed event.
func (e *Event) Failure() Failure {
	if e.Type != ConnectFailed {
		return FailureNone
	}
	return FailureOf(e.Err)
}

// eventSize is sizeof(struct tcp_event).
const eventSize = 104

const (
	afInet  = 2
	afInet6 = 10
)

// decodeEvent fills e from one ring buffer record. comm interns the
// command name. wall converts kernel monotonic ns to wall time.
func decodeEvent(b []byte, e *Event, wall func(uint64) time.Time, comm func(pid uint32, raw []byte) string) error {
	if len(b) < eventSize {
		return fmt.Errorf("event of %d bytes, want %d", len(b), eventSize)
	}
	le := binary.LittleEndian
	typ := le.Uint32(b[16:])
	if typ == 0 || typ >= uint32(len(typeNames)) {
		return fmt.Errorf("unknown event type %d", typ)
	}
	family := le.Uint16(b[40:])
	var local, remote netip.Addr
	switch family {
	case afInet:
		local = netip.AddrFrom4([4]byte(b[56:60]))
		remote = netip.AddrFrom4([4]byte(b[72:76]))
	case afInet6:
		local = netip.AddrFrom16([16]byte(b[56:72])).Unmap()
		remote = netip.AddrFrom16([16]byte(b[72:88])).Unmap()
	case 0:
		// A RST for a packet whose headers could not be read.
	default:
		return fmt.Errorf("unknown address family %d", family)
	}
	pid := le.Uint32(b[20:])
	*e = Event{
		Type: EventType(typ),
		Time: wall(le.Uint64(b[0:])),
		Tuple: capture.Tuple{
			AIP: local, BIP: remote,
			APort: le.Uint16(b[42:]), BPort: le.Uint16(b[44:]),
			L4: 6,
		},
		PID:         pid,
		TID:         le.Uint32(b[24:]),
		Sock:        le.Uint64(b[8:]),
		Err:         int32(le.Uint32(b[28:])),
		ResetReason: le.Uint32(b[32:]),
		NetNS:       le.Uint32(b[36:]),
		OldState:    b[46],
		NewState:    b[47],
		Owner:       OwnerSource(b[48]),
	}
	if pid != 0 {
		e.Comm = comm(pid, b[88:104])
	}
	return nil
}
