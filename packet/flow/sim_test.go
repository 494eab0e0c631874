package flow

import (
	"net/netip"
	"testing"
	"time"

	"github.com/sightline-io/sightline/flowlog"
	"github.com/sightline-io/sightline/packet/decode"
)

const (
	fS  = decode.FlagSYN
	fA  = decode.FlagACK
	fF  = decode.FlagFIN
	fR  = decode.FlagRST
	fP  = decode.FlagPSH
	fSA = decode.FlagSYN | decode.FlagACK
	fFA = decode.FlagFIN | decode.FlagACK
	fPA = decode.FlagPSH | decode.FlagACK
	fRA = decode.FlagRST | decode.FlagACK
)

const (
	cli = dirTx // client sends
	srv = dirRx // server sends
)

var t0 = time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC)

// sim drives a Table with hand-built packets of one TCP/UDP connection,
// tracking each side's sequence number.
type sim struct {
	t    *testing.T
	tab  *Table
	now  time.Time
	addr [2]netip.AddrPort
	seq  [2]uint32
	l4   uint8
	rows []flowlog.L4FlowLog
}

func newSim(t *testing.T, cfg Config) *sim {
	s := &sim{t: t, now: t0, l4: 6,
		addr: [2]netip.AddrPort{netip.MustParseAddrPort("10.0.0.1:40000"), netip.MustParseAddrPort("10.0.0.2:80")},
		seq:  [2]uint32{1000, 5000}}
	s.tab = New(cfg, func(r *flowlog.L4FlowLog) { s.rows = append(s.rows, *r) })
	return s
}

// raw sends one packet from dir after ms milliseconds.
func (s *sim) raw(ms int, dir int, flags uint8, seq, ack uint32, n int, win uint16) {
	s.now = s.now.Add(time.Duration(ms) * time.Millisecond)
	p := decode.Packet{
		Src: s.addr[dir].Addr(), Dst: s.addr[1-dir].Addr(),
		SrcPort: s.addr[dir].Port(), DstPort: s.addr[1-dir].Port(),
		L4: s.l4, TTL: 64, Seq: seq, Ack: ack, Flags: flags, Window: win, WireLen: n,
	}
	if s.l4 == 17 {
		p.Seq, p.Ack, p.Flags, p.Window = 0, 0, 0, 0
	}
	s.tab.Packet(&p, s.now, 54+n)
}

// send sends n payload bytes (and flags) from dir at its current sequence,
// acknowledging everything the other side sent.
func (s *sim) send(ms int, dir int, flags uint8, n int) {
	ack := s.seq[1-dir]
	if flags&fA == 0 {
		ack = 0
	}
	s.raw(ms, dir, flags, s.seq[dir], ack, n, 65535)
	s.seq[dir] += uint32(n)
	if flags&(fS|fF) != 0 {
		s.seq[dir]++
	}
}

// handshake runs SYN, SYN-ACK, ACK with ms between packets.
func (s *sim) handshake(ms int) {
	s.send(0, cli, fS, 0)
	s.send(ms, srv, fSA, 0)
	s.send(ms, cli, fA, 0)
}

func (s *sim) flush() { s.tab.FlushAll(s.now) }

// tick advances the clock and ticks the table.
func (s *sim) tick(d time.Duration) {
	s.now = s.now.Add(d)
	s.tab.Tick(s.now)
}

// only returns the single row emitted, failing otherwise.
func (s *sim) only() flowlog.L4FlowLog {
	s.t.Helper()
	if len(s.rows) != 1 {
		s.t.Fatalf("rows = %d, want 1: %+v", len(s.rows), s.rows)
	}
	return s.rows[0]
}
