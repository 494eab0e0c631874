package flow

import (
	"github.com/sightline-io/sightline/flowlog"
	"github.com/sightline-io/sightline/packet/decode"
)

const (
	synMask = decode.FlagSYN | decode.FlagACK
	synOnly = decode.FlagSYN
	synAck  = decode.FlagSYN | decode.FlagACK
)

// endsOnSYN reports whether a SYN on f's tuple starts a new flow: f has
// ended, or it is a new connection (another ISN) on a tuple still in use,
// in which case f closes as Est. Client Port Reuse.
func (t *Table) endsOnSYN(f *flow, p *decode.Packet, srcIsA bool) bool {
	if p.Flags&synMask != synOnly || f.state == stUDP {
		return false
	}
	switch f.state {
	case stClosed:
		return true
	case stNone:
		return false
	}
	if dirOf(f, srcIsA) == dirTx && f.has(fSynSeen) && p.Seq == f.synSeq {
		return false // retransmission
	}
	f.state, f.closeType = stClosed, flowlog.CloseEstClientPortReuse
	t.stats.PortReuse++
	return true
}

// payloadLen is the segment's payload length on the wire.
func payloadLen(p *decode.Packet) uint32 {
	return uint32(max(p.WireLen, len(p.Payload), 0))
}

// tcp runs one segment through the flow's state machine and counters.
func (f *flow) tcp(p *decode.Packet, dir int, now int64) {
	fl := p.Flags
	if fl&decode.FlagRST == 0 && p.Window == 0 {
		f.c.zeroWin[dir]++
	}
	if dir == dirRx && f.has(fAckSeen) && fl&(decode.FlagSYN|decode.FlagRST) == 0 {
		f.flags |= fSrvAfterHS
	}
	switch fl & synMask {
	case synOnly:
		f.c.syn++
		if dir == dirTx {
			f.onSYN(p, now)
		}
	case synAck:
		f.c.synack++
		if dir == dirRx {
			f.onSYNACK(p, now)
		}
	}
	if fl&decode.FlagRST != 0 {
		f.c.rst++
		f.onRST(dir)
		return
	}
	if fl&decode.FlagSYN != 0 {
		return
	}
	if fl&decode.FlagACK != 0 {
		f.onACK(p, dir, now)
	}
	if n := payloadLen(p); n > 0 {
		f.onData(p, dir, n, now)
	}
	if fl&decode.FlagFIN != 0 {
		f.onFIN(p, dir)
	}
}

func (f *flow) onSYN(p *decode.Packet, now int64) {
	if f.has(fSynSeen) && p.Seq == f.synSeq {
		f.c.retransSyn++
	} else {
		f.synSeq = p.Seq
		f.flags |= fSynSeen | fSeqTx
		f.nextSeq[dirTx] = p.Seq + 1
	}
	f.synTime = now
	if f.state == stNone {
		f.state = stSynSent
	}
}

func (f *flow) onSYNACK(p *decode.Packet, now int64) {
	if f.has(fSynAckSeen) && p.Seq == f.synackSeq {
		f.c.retransSA++
		if f.has(fAckSeen) {
			f.flags |= fOverflow
		}
	} else {
		f.synackSeq = p.Seq
		f.flags |= fSynAckSeen | fSeqRx
		f.nextSeq[dirRx] = p.Seq + 1
		if f.has(fSynSeen) && !f.has(fRTTServer) {
			f.rttServer = micros(now - f.synTime)
			f.flags |= fRTTServer
		}
	}
	f.synackTime = now
	if f.state == stNone || f.state == stSynSent {
		f.state = stSynRcvd
	}
}

func (f *flow) onACK(p *decode.Packet, dir int, now int64) {
	f.ackBy[dir] = p.Ack
	f.flags |= fAckTx << dir
	switch f.state {
	case stNone:
		f.state = stEstab
		f.flags |= fMid
	case stSynSent:
		// The SYN-ACK was not seen: established, without an RTT.
		if dir == dirTx {
			f.state = stEstab
		}
	case stSynRcvd:
		if dir == dirTx && p.Ack == f.synackSeq+1 {
			f.state = stEstab
			f.flags |= fAckSeen
			f.c.rttClient = micros(now - f.synackTime)
			if f.has(fRTTServer) {
				f.c.rttServer = f.rttServer
				f.c.rtt = f.c.rttClient + f.rttServer
			}
		}
	}
	if dir == dirRx && f.has(fSRTPending) && int32(p.Ack-f.srtEnd) >= 0 {
		f.recordSRT(now - f.srtTime)
		f.flags &^= fSRTPending
	}
}

// onData classifies a payload-carrying segment: in order, ahead of a gap
// (out of order) or at or below the highest sequence already sent
// (retransmission; a keepalive probe — one byte just below what the peer
// already acknowledged — is not).
func (f *flow) onData(p *decode.Packet, dir int, n uint32, now int64) {
	if f.state == stNone {
		f.state = stEstab
		f.flags |= fMid
	}
	seqFlag := fSeqTx << dir
	end := p.Seq + n
	retrans := false
	if !f.has(seqFlag) {
		f.flags |= seqFlag
		f.nextSeq[dir] = end
	} else {
		switch d := int32(p.Seq - f.nextSeq[dir]); {
		case d == 0:
			f.nextSeq[dir] = end
		case d > 0:
			f.c.ooo++
			f.nextSeq[dir] = end
		case d == -1 && n <= 1 && f.has(fAckTx<<(1-dir)) && f.ackBy[1-dir] == f.nextSeq[dir]:
			// keepalive
		default:
			retrans = true
			f.c.retrans[dir]++
			if int32(end-f.nextSeq[dir]) > 0 {
				f.nextSeq[dir] = end
			}
		}
	}
	if dir == dirTx {
		f.flags |= fCliData
		if retrans {
			f.flags |= fCliRetrans
			f.flags &^= fSRTPending
			return
		}
		if !f.has(fSRTPending) {
			f.srtTime = now
			f.flags |= fSRTPending
		}
		f.srtEnd = end
		f.artTime = now
		f.flags |= fARTAwait
		return
	}
	f.flags |= fSrvData
	if !retrans && f.has(fARTAwait) {
		f.recordART(now - f.artTime)
		f.flags &^= fARTAwait
	}
}

func (f *flow) onFIN(p *decode.Packet, dir int) {
	f.c.fin++
	seqFlag := fSeqTx << dir
	end := p.Seq + payloadLen(p) + 1
	if !f.has(seqFlag) || int32(end-f.nextSeq[dir]) > 0 {
		f.nextSeq[dir] = end
		f.flags |= seqFlag
	}
	f.flags |= fFinTx << dir
	switch f.state {
	case stClosed:
		return
	case stNone:
		f.flags |= fMid
	}
	if f.has(fFinTx) && f.has(fFinRx) {
		f.state, f.closeType = stClosed, flowlog.CloseNormal
		return
	}
	f.state = stFinWait
}

// onRST ends the flow with the close type of a reset from dir in the
// current state.
func (f *flow) onRST(dir int) {
	var ct flowlog.CloseType
	switch f.state {
	case stClosed:
		if f.closeType == flowlog.CloseNormal && dir == dirTx {
			f.closeType = flowlog.CloseNormalClientRST
		}
		return
	case stNone, stSynSent:
		ct = flowlog.CloseEstServerDirectRST
		if dir == dirTx {
			ct = flowlog.CloseEstClientOtherRST
		}
		if f.state == stNone && !f.has(fSynSeen) {
			f.flags |= fMid
			ct = flowlog.CloseTransferServerRST
			if dir == dirTx {
				ct = flowlog.CloseTransferClientRST
			}
		}
	case stSynRcvd:
		ct = flowlog.CloseEstServerOtherRST
		if dir == dirTx {
			ct = flowlog.CloseEstClientOtherRST
		} else if f.overflowed() {
			ct = flowlog.CloseTransferServerQueueLack
		}
	default: // established or half closed
		switch {
		case dir == dirTx && f.has(fFinRx):
			ct = flowlog.CloseNormalClientRST
		case dir == dirTx:
			ct = flowlog.CloseTransferClientRST
		case f.overflowed() || (f.has(fAckSeen) && !f.has(fCliData|fSrvData|fSrvAfterHS)):
			// Reset answering the handshake's ACK (tcp_abort_on_overflow=1),
			// or after SYN-ACK retransmits without data.
			ct = flowlog.CloseTransferServerQueueLack
		default:
			ct = flowlog.CloseTransferServerRST
		}
	}
	f.state, f.closeType = stClosed, ct
}
