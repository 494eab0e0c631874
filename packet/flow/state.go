package flow

import (
	"github.com/sightline-io/sightline/flowlog"
	"github.com/sightline-io/sightline/packet/decode"
)

// Directions: tx is client → server.
const (
	dirTx = 0
	dirRx = 1
)

// Flow states.
const (
	stNone    uint8 = iota // TCP, nothing decisive seen yet
	stSynSent              // client SYN seen, no SYN-ACK
	stSynRcvd              // SYN-ACK seen, client's ACK not yet
	stEstab                // handshake done, or met mid-stream
	stFinWait              // one side sent FIN
	stClosed               // both FINs, or RST: ended, lingering
	stUDP
)

// Flow flags.
const (
	fMid        uint32 = 1 << iota // met mid-stream
	fSynSeen                       // a client SYN was seen
	fSynAckSeen                    // a server SYN-ACK was seen
	fAckSeen                       // the client ACKed the SYN-ACK
	fOverflow                      // SYN-ACK retransmitted after the client's ACK
	fCliData                       // the client sent payload
	fSrvData                       // the server sent payload
	fSrvAfterHS                    // the server sent a packet after the handshake
	fFinTx                         // the client sent FIN
	fFinRx                         // the server sent FIN
	fSeqTx                         // nextSeq[dirTx] is valid
	fSeqRx                         // nextSeq[dirRx] is valid
	fSRTPending                    // client data awaits the server's ACK
	fARTAwait                      // client data awaits the server's data
	fReported                      // a row was emitted
	fRTTServer                     // rtt_server measured
	fCliRetrans                    // the client retransmitted data
	fAckTx                         // ackBy[dirTx] is valid
	fAckRx                         // ackBy[dirRx] is valid
)

// counters are one period's deltas.
type counters struct {
	bytes      [2]uint64
	packets    [2]uint32
	rtt        uint32 // µs; set in the period the handshake completed
	rttClient  uint32
	rttServer  uint32
	srtSum     uint64
	srtCount   uint32
	srtMax     uint32
	artSum     uint64
	artCount   uint32
	artMax     uint32
	retrans    [2]uint32
	zeroWin    [2]uint32
	ooo        uint32
	syn        uint32
	synack     uint32
	retransSyn uint32
	retransSA  uint32
	fin        uint32
	rst        uint32
}

// flow is one table entry (280 bytes; with its map entry about 430 bytes
// per flow, see TestFlowMemory).
type flow struct {
	key        flowKey
	prev, next int32 // class list links (next also chains free slots)
	cls        uint8
	state      uint8
	closeType  flowlog.CloseType
	clientIsA  bool
	ttl        [2]uint8 // first TTL seen per direction
	flags      uint32

	start, last int64 // ns
	synTime     int64 // latest client SYN
	synackTime  int64 // latest server SYN-ACK
	srtTime     int64
	artTime     int64
	synSeq      uint32
	synackSeq   uint32
	rttServer   uint32 // µs, kept until the handshake completes
	srtEnd      uint32
	nextSeq     [2]uint32 // highest sequence sent + 1, per direction
	ackBy       [2]uint32 // latest acknowledgment number sent, per direction

	c counters
}

func (f *flow) has(fl uint32) bool { return f.flags&fl != 0 }

func micros(d int64) uint32 {
	if d <= 0 {
		return 0
	}
	us := d / 1000
	if us > 0xffffffff {
		return 0xffffffff
	}
	return uint32(us)
}

// count updates the byte and packet counters and the flow's clock.
func (f *flow) count(p *decode.Packet, dir int, frameLen int, now int64) {
	f.c.bytes[dir] += uint64(frameLen)
	f.c.packets[dir]++
	if f.ttl[dir] == 0 {
		f.ttl[dir] = p.TTL
	}
	if now > f.last {
		f.last = now
	}
}

func (f *flow) udp(p *decode.Packet, dir int, now int64) {
	if dir == dirTx {
		f.flags |= fCliData | fARTAwait
		f.artTime = now
		return
	}
	f.flags |= fSrvData
	if f.has(fARTAwait) {
		f.recordART(now - f.artTime)
		f.flags &^= fARTAwait
	}
}

func (f *flow) recordART(d int64) {
	us := micros(d)
	f.c.artSum += uint64(us)
	f.c.artCount++
	f.c.artMax = max(f.c.artMax, us)
}

func (f *flow) recordSRT(d int64) {
	us := micros(d)
	f.c.srtSum += uint64(us)
	f.c.srtCount++
	f.c.srtMax = max(f.c.srtMax, us)
}

// class returns the flow's timeout class.
func (f *flow) class() uint8 {
	switch f.state {
	case stUDP:
		return clsUDP
	case stNone, stSynSent, stSynRcvd:
		return clsHandshake
	case stEstab:
		return clsEstab
	case stFinWait:
		return clsHalfClose
	}
	return clsClosed
}

// overflowed tells whether the flow looks like an accept queue overflow
// (tcp_abort_on_overflow=0: the server drops the handshake's last ACK). The
// server never sent data, and either retransmitted its SYN-ACK after the
// client's ACK, or — a SYN cookie handshake, which keeps no state to
// retransmit — sent nothing at all after it while the client retransmitted
// its data.
func (f *flow) overflowed() bool {
	if f.has(fSrvData) {
		return false
	}
	return f.has(fOverflow) || (f.flags&(fAckSeen|fCliRetrans) == fAckSeen|fCliRetrans && !f.has(fSrvAfterHS))
}

// timeoutCloseType is the close type of a flow that went idle.
func (f *flow) timeoutCloseType() flowlog.CloseType {
	switch f.state {
	case stClosed:
		return f.closeType
	case stUDP:
		return flowlog.CloseTransferTimeout
	case stNone, stSynSent:
		if f.state == stNone && f.has(fMid) {
			return flowlog.CloseTransferTimeout
		}
		return flowlog.CloseEstServerSYNMiss
	}
	if f.overflowed() {
		return flowlog.CloseTransferServerQueueLack
	}
	switch f.state {
	case stSynRcvd:
		return flowlog.CloseEstClientACKMiss
	case stFinWait:
		if f.has(fFinTx) {
			return flowlog.CloseClientHalfClose
		}
		return flowlog.CloseServerHalfClose
	}
	return flowlog.CloseTransferTimeout
}

// flushCloseType is the close type of a flow reported at the end of input
// or evicted: its own when it ended, else Force Report.
func (f *flow) flushCloseType() flowlog.CloseType {
	if f.state == stClosed {
		return f.closeType
	}
	if f.overflowed() {
		return flowlog.CloseTransferServerQueueLack
	}
	return flowlog.CloseForceReport
}
