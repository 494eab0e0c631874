package flow

import (
	"net/netip"
	"testing"
	"time"

	"github.com/sightline-io/sightline/flowlog"
	"github.com/sightline-io/sightline/packet/decode"
)

// exchange sends one request/response turn with ACKs.
func (s *sim) exchange(req, resp int) {
	s.send(1, cli, fPA, req)
	s.send(2, srv, fA, 0)
	s.send(3, srv, fPA, resp)
	s.send(1, cli, fA, 0)
}

func TestCloseTypes(t *testing.T) {
	synackSeq := func(s *sim) uint32 { return s.seq[srv] - 1 }
	cases := []struct {
		name  string
		run   func(s *sim)
		after time.Duration // tick this long after the last packet; 0: FlushAll
		want  flowlog.CloseType
		check func(t *testing.T, r flowlog.L4FlowLog)
	}{
		{name: "normal", want: flowlog.CloseNormal, run: func(s *sim) {
			s.handshake(50)
			s.exchange(100, 200)
			s.send(5, cli, fFA, 0)
			s.send(5, srv, fFA, 0)
			s.send(5, cli, fA, 0)
		}, check: func(t *testing.T, r flowlog.L4FlowLog) {
			eq(t, "rtt", r.RTT, 100000)
			eq(t, "rtt_server", r.RTTServer, 50000)
			eq(t, "rtt_client", r.RTTClient, 50000)
			eq(t, "syn", r.SYNCount, 1)
			eq(t, "synack", r.SYNACKCount, 1)
			eq(t, "fin", r.FINCount, 2)
			eq(t, "srt_count", r.SRTCount, 1)
			eq(t, "srt_sum", r.SRTSum, 2000)
			eq(t, "art_count", r.ARTCount, 1)
			eq(t, "art_sum", r.ARTSum, 5000)
			eq(t, "packet_tx", r.PacketTx, 6)
			eq(t, "packet_rx", r.PacketRx, 4)
			eq(t, "byte_tx", r.ByteTx, 6*54+100)
			eq(t, "byte_rx", r.ByteRx, 4*54+200)
			eq(t, "retrans", r.RetransTx+r.RetransRx, 0)
			if !r.IsNewFlow || !r.IsClosed {
				t.Errorf("is_new_flow %v is_closed %v", r.IsNewFlow, r.IsClosed)
			}
			if r.IP0 != netip.MustParseAddr("10.0.0.1") || r.ClientPort != 40000 || r.ServerPort != 80 {
				t.Errorf("tuple %v:%d → %v:%d", r.IP0, r.ClientPort, r.IP1, r.ServerPort)
			}
		}},
		{name: "syn retransmitted, unanswered", after: 10 * time.Second, want: flowlog.CloseEstServerSYNMiss, run: func(s *sim) {
			s.send(0, cli, fS, 0)
			s.raw(1000, cli, fS, s.seq[cli]-1, 0, 0, 65535)
			s.raw(2000, cli, fS, s.seq[cli]-1, 0, 0, 65535)
		}, check: func(t *testing.T, r flowlog.L4FlowLog) {
			eq(t, "syn", r.SYNCount, 3)
			eq(t, "retrans_syn", r.RetransSYN, 2)
			eq(t, "rtt", r.RTT, 0)
		}},
		{name: "syn retransmitted, then answered", want: flowlog.CloseForceReport, run: func(s *sim) {
			s.send(0, cli, fS, 0)
			s.raw(1000, cli, fS, s.seq[cli]-1, 0, 0, 65535)
			s.send(30, srv, fSA, 0)
			s.send(20, cli, fA, 0)
		}, check: func(t *testing.T, r flowlog.L4FlowLog) {
			eq(t, "retrans_syn", r.RetransSYN, 1)
			eq(t, "rtt_server", r.RTTServer, 30000)
			eq(t, "rtt", r.RTT, 50000)
		}},
		{name: "syn-ack unanswered", after: 10 * time.Second, want: flowlog.CloseEstClientACKMiss, run: func(s *sim) {
			s.send(0, cli, fS, 0)
			s.send(10, srv, fSA, 0)
			s.raw(1000, srv, fSA, synackSeq(s), s.seq[cli], 0, 65535)
			s.raw(1000, cli, fS, s.seq[cli]-1, 0, 0, 65535) // client retries: not port reuse
		}, check: func(t *testing.T, r flowlog.L4FlowLog) {
			eq(t, "synack", r.SYNACKCount, 2)
			eq(t, "retrans_synack", r.RetransSYNACK, 1)
			eq(t, "retrans_syn", r.RetransSYN, 1)
		}},
		{name: "accept queue full: syn-ack retransmitted after the ack", want: flowlog.CloseTransferServerQueueLack, run: func(s *sim) {
			s.handshake(10)
			s.send(1, cli, fPA, 50) // request the server never takes
			s.raw(1000, srv, fSA, synackSeq(s), s.seq[cli]-50, 0, 65535)
			s.raw(1, cli, fA, s.seq[cli], s.seq[srv], 0, 65535)
		}, check: func(t *testing.T, r flowlog.L4FlowLog) {
			eq(t, "retrans_synack", r.RetransSYNACK, 1)
		}},
		{name: "accept queue full: timeout", after: time.Hour, want: flowlog.CloseTransferServerQueueLack, run: func(s *sim) {
			s.handshake(10)
			s.raw(1000, srv, fSA, synackSeq(s), s.seq[cli], 0, 65535)
		}},
		{name: "accept queue full: abort_on_overflow reset", want: flowlog.CloseTransferServerQueueLack, run: func(s *sim) {
			s.handshake(10)
			s.send(1, srv, fRA, 0)
		}},
		{name: "closed port", want: flowlog.CloseEstServerDirectRST, run: func(s *sim) {
			s.send(0, cli, fS, 0)
			s.raw(1, srv, fRA, 0, s.seq[cli], 0, 0)
		}, check: func(t *testing.T, r flowlog.L4FlowLog) {
			eq(t, "rst", r.RSTCount, 1)
			eq(t, "zero_win_rx", r.ZeroWinRx, 0)
		}},
		{name: "client reset in handshake", want: flowlog.CloseEstClientOtherRST, run: func(s *sim) {
			s.send(0, cli, fS, 0)
			s.send(1, srv, fSA, 0)
			s.send(1, cli, fR, 0)
		}},
		{name: "server reset after syn-ack", want: flowlog.CloseEstServerOtherRST, run: func(s *sim) {
			s.send(0, cli, fS, 0)
			s.send(1, srv, fSA, 0)
			s.send(1, srv, fR, 0)
		}},
		{name: "server reset in transfer", want: flowlog.CloseTransferServerRST, run: func(s *sim) {
			s.handshake(1)
			s.send(1, cli, fPA, 100)
			s.send(1, srv, fRA, 0)
			s.raw(1, cli, fPA, s.seq[cli], s.seq[srv], 100, 65535) // trailing data, absorbed
			s.raw(1, srv, fR, s.seq[srv], 0, 0, 0)
		}, check: func(t *testing.T, r flowlog.L4FlowLog) {
			eq(t, "rst", r.RSTCount, 2)
		}},
		{name: "client reset in transfer", want: flowlog.CloseTransferClientRST, run: func(s *sim) {
			s.handshake(1)
			s.exchange(10, 10)
			s.send(1, cli, fRA, 0)
		}},
		{name: "client reset after fins", want: flowlog.CloseNormalClientRST, run: func(s *sim) {
			s.handshake(1)
			s.exchange(10, 10)
			s.send(1, srv, fFA, 0)
			s.send(1, cli, fFA, 0)
			s.send(1, cli, fR, 0)
		}},
		{name: "client reset after server fin", want: flowlog.CloseNormalClientRST, run: func(s *sim) {
			s.handshake(1)
			s.exchange(10, 10)
			s.send(1, srv, fFA, 0)
			s.send(1, cli, fRA, 0)
		}},
		{name: "client half close", after: time.Minute, want: flowlog.CloseClientHalfClose, run: func(s *sim) {
			s.handshake(1)
			s.exchange(10, 10)
			s.send(1, cli, fFA, 0)
			s.send(1, srv, fA, 0)
		}},
		{name: "server half close", after: time.Minute, want: flowlog.CloseServerHalfClose, run: func(s *sim) {
			s.handshake(1)
			s.exchange(10, 10)
			s.send(1, srv, fFA, 0)
			s.send(1, cli, fA, 0)
		}},
		{name: "established idle", after: 301 * time.Second, want: flowlog.CloseTransferTimeout, run: func(s *sim) {
			s.handshake(1)
			s.exchange(10, 10)
		}},
		{name: "open at end of input", want: flowlog.CloseForceReport, run: func(s *sim) {
			s.handshake(1)
			s.exchange(10, 10)
		}},
		{name: "normal close lingers then reports", after: 3 * time.Second, want: flowlog.CloseNormal, run: func(s *sim) {
			s.handshake(1)
			s.send(1, cli, fFA, 0)
			s.send(1, srv, fFA, 0)
			s.send(1, cli, fA, 0)
		}},
		{name: "mid-stream, server speaks first", want: flowlog.CloseForceReport, run: func(s *sim) {
			s.send(0, srv, fPA, 300)
			s.send(1, cli, fA, 0)
		}, check: func(t *testing.T, r flowlog.L4FlowLog) {
			if r.ClientPort != 40000 || r.ServerPort != 80 {
				t.Errorf("client port %d server port %d", r.ClientPort, r.ServerPort)
			}
			eq(t, "packet_rx", r.PacketRx, 1)
			eq(t, "rtt", r.RTT, 0)
		}},
		{name: "mid-stream fin both ways", want: flowlog.CloseNormal, run: func(s *sim) {
			s.send(0, cli, fPA, 10)
			s.send(1, cli, fFA, 0)
			s.send(1, srv, fFA, 0)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newSim(t, Config{})
			tc.run(s)
			if tc.after > 0 {
				s.tick(tc.after)
			} else {
				s.flush()
			}
			r := s.only()
			if r.CloseType != tc.want {
				t.Fatalf("close_type %v (%d), want %v (%d)", r.CloseType, r.CloseType, tc.want, tc.want)
			}
			if tc.check != nil {
				tc.check(t, r)
			}
			if s.tab.Len() != 0 {
				t.Errorf("table holds %d flows after the close", s.tab.Len())
			}
		})
	}
}

func eq[T comparable](t *testing.T, what string, got, want T) {
	t.Helper()
	if got != want {
		t.Errorf("%s = %v, want %v", what, got, want)
	}
}

func TestPortReuse(t *testing.T) {
	s := newSim(t, Config{})
	s.handshake(1)
	s.exchange(10, 10)
	s.seq[cli] = 777777 // new ISN
	s.handshake(1)
	if len(s.rows) != 1 || s.rows[0].CloseType != flowlog.CloseEstClientPortReuse || !s.rows[0].IsClosed {
		t.Fatalf("rows after the new SYN: %+v", s.rows)
	}
	s.flush()
	if len(s.rows) != 2 || !s.rows[1].IsNewFlow || s.rows[1].SYNCount != 1 || s.rows[1].RTT == 0 {
		t.Fatalf("second flow: %+v", s.rows)
	}
	eq(t, "port reuse", s.tab.Stats().PortReuse, 1)
	eq(t, "flows", s.tab.Stats().Flows, 2)
}

func TestNewSYNAfterClose(t *testing.T) {
	s := newSim(t, Config{})
	s.handshake(1)
	s.send(1, cli, fFA, 0)
	s.send(1, srv, fFA, 0)
	s.send(1, cli, fA, 0)
	s.seq[cli] += 100000
	s.handshake(1)
	if len(s.rows) != 1 || s.rows[0].CloseType != flowlog.CloseNormal {
		t.Fatalf("rows: %+v", s.rows)
	}
	eq(t, "port reuse", s.tab.Stats().PortReuse, 0)
}

func TestSequenceAnomalies(t *testing.T) {
	s := newSim(t, Config{})
	s.handshake(1)
	base := s.seq[cli]
	ack := s.seq[srv]
	s.raw(1, cli, fPA, base, ack, 100, 65535)     // in order
	s.raw(1, cli, fPA, base+200, ack, 100, 65535) // ahead of a gap
	s.raw(1, cli, fPA, base+100, ack, 100, 65535) // fills the gap: retransmission
	s.raw(1, cli, fPA, base, ack, 100, 65535)     // plain retransmission
	s.raw(1, cli, fA, base+299, ack, 1, 65535)    // one byte again before any ACK: retransmission
	s.raw(1, srv, fA, ack, base+300, 0, 65535)    // the server acknowledges everything
	s.raw(1, cli, fA, base+299, ack, 1, 65535)    // keepalive probe
	s.raw(1, cli, fA, base+299, ack, 0, 65535)    // keepalive, no payload
	s.raw(1, srv, fPA, ack, base+300, 10, 0)      // zero window, with data
	s.raw(1, srv, fA, ack+10, base+300, 0, 0)     // zero window
	s.raw(1, cli, fA, base+300, ack+10, 0, 0)     // client zero window
	s.raw(1, srv, fA, ack+10, base+300, 0, 4096)  // window update
	s.raw(1, srv, fPA, ack, base+300, 10, 4096)   // server retransmission
	s.flush()
	r := s.only()
	eq(t, "out_of_order", r.OutOfOrder, 1)
	eq(t, "retrans_tx", r.RetransTx, 3)
	eq(t, "retrans_rx", r.RetransRx, 1)
	eq(t, "zero_win_rx", r.ZeroWinRx, 2)
	eq(t, "zero_win_tx", r.ZeroWinTx, 1)
}

func TestSRTNotFromRetransmission(t *testing.T) {
	s := newSim(t, Config{})
	s.handshake(1)
	base, ack := s.seq[cli], s.seq[srv]
	s.raw(1, cli, fPA, base, ack, 100, 65535)
	s.raw(200, cli, fPA, base, ack, 100, 65535) // RTO retransmission
	s.raw(5, srv, fA, ack, base+100, 0, 65535)
	s.raw(1, cli, fPA, base+100, ack, 100, 65535)
	s.raw(7, srv, fA, ack, base+200, 0, 65535)
	s.flush()
	r := s.only()
	eq(t, "srt_count", r.SRTCount, 1)
	eq(t, "srt_sum", r.SRTSum, 7000)
	eq(t, "srt_max", r.SRTMax, 7000)
}

func TestARTPerTurn(t *testing.T) {
	s := newSim(t, Config{})
	s.handshake(1)
	s.exchange(10, 10) // art 5 ms
	s.send(1, cli, fPA, 10)
	s.send(1, cli, fPA, 10)  // art counts from the last request segment
	s.send(20, srv, fPA, 10) // 20 ms
	s.send(1, srv, fPA, 10)  // same response
	s.flush()
	r := s.only()
	eq(t, "art_count", r.ARTCount, 2)
	eq(t, "art_sum", r.ARTSum, 25000)
	eq(t, "art_max", r.ARTMax, 20000)
}

func TestUDP(t *testing.T) {
	s := newSim(t, Config{})
	s.l4 = 17
	s.addr = [2]netip.AddrPort{netip.MustParseAddrPort("[fd00::1]:53000"), netip.MustParseAddrPort("[fd00::2]:53")}
	s.raw(0, srv, 0, 0, 0, 40, 0) // the response is seen first: port 53 is still the server
	s.raw(10, cli, 0, 0, 0, 30, 0)
	s.raw(3, srv, 0, 0, 0, 60, 0)
	s.tick(61 * time.Second)
	r := s.only()
	eq(t, "close", r.CloseType, flowlog.CloseTransferTimeout)
	eq(t, "server_port", r.ServerPort, 53)
	eq(t, "protocol", r.Protocol, 17)
	eq(t, "packet_tx", r.PacketTx, 1)
	eq(t, "packet_rx", r.PacketRx, 2)
	eq(t, "art_sum", r.ARTSum, 3000)
}

func TestDirection(t *testing.T) {
	cases := []struct {
		src, dst   uint16
		flags      uint8
		l4         uint8
		wantServer uint16
	}{
		{40000, 80, fS, 6, 80},
		{80, 40000, fSA, 6, 80},
		{5000, 6000, fS, 6, 6000}, // SYN decides
		{6000, 5000, fSA, 6, 6000},
		{443, 50000, fPA, 6, 443},
		{50000, 443, fA, 6, 443},
		{8080, 45000, fPA, 6, 8080}, // ephemeral vs not
		{45000, 8080, fPA, 6, 8080},
		{5000, 6000, fPA, 6, 6000}, // no hint: first sender is the client
		{6000, 5000, 0, 17, 5000},
		{1000, 900, 0, 17, 900},
	}
	for _, tc := range cases {
		var got uint16
		tab := New(Config{}, func(r *flowlog.L4FlowLog) { got = r.ServerPort })
		p := decode.Packet{Src: netip.MustParseAddr("10.0.0.9"), Dst: netip.MustParseAddr("10.0.0.3"),
			SrcPort: tc.src, DstPort: tc.dst, L4: tc.l4, Flags: tc.flags, TTL: 64, Window: 100}
		tab.Packet(&p, t0, 60)
		tab.FlushAll(t0)
		if got != tc.wantServer {
			t.Errorf("%d→%d flags %#x: server port %d, want %d", tc.src, tc.dst, tc.flags, got, tc.wantServer)
		}
	}
}

func TestPeriodicReports(t *testing.T) {
	s := newSim(t, Config{ReportEvery: time.Minute})
	s.now = t0.Add(10 * time.Second)
	s.handshake(1)
	s.exchange(100, 100)
	s.tick(time.Second) // nothing yet
	eq(t, "rows", len(s.rows), 0)
	s.tick(time.Minute) // crosses t0+60s
	s.exchange(10, 20)
	s.tick(time.Minute) // crosses t0+120s
	s.tick(time.Minute) // t0+180s: idle period, still live
	s.send(1, cli, fFA, 0)
	s.send(1, srv, fFA, 0)
	s.flush()
	if len(s.rows) != 4 {
		t.Fatalf("rows = %d: %+v", len(s.rows), s.rows)
	}
	r0, r1, r2, r3 := s.rows[0], s.rows[1], s.rows[2], s.rows[3]
	for i, r := range s.rows[:3] {
		eq(t, "close_type", r.CloseType, flowlog.CloseForceReport)
		if r.IsClosed || r.IsNewFlow != (i == 0) {
			t.Errorf("row %d: new %v closed %v", i, r.IsNewFlow, r.IsClosed)
		}
		if !r.StartTime.Equal(t0.Add(10 * time.Second)) {
			t.Errorf("row %d start %v", i, r.StartTime)
		}
	}
	eq(t, "row0 time", r0.Time, t0.Add(time.Minute))
	eq(t, "row1 time", r1.Time, t0.Add(2*time.Minute))
	eq(t, "row0 packets", r0.PacketTx+r0.PacketRx, 7)
	eq(t, "row0 rtt", r0.RTT, 2000)
	eq(t, "row1 packets", r1.PacketTx+r1.PacketRx, 4)
	eq(t, "row1 bytes", r1.ByteTx, 2*54+10)
	eq(t, "row1 rtt", r1.RTT, 0)
	eq(t, "row1 syn", r1.SYNCount, 0)
	eq(t, "row2 packets", r2.PacketTx+r2.PacketRx, 0)
	eq(t, "row3 close", r3.CloseType, flowlog.CloseNormal)
	eq(t, "row3 fin", r3.FINCount, 2)
	if !r3.IsClosed || r3.IsNewFlow {
		t.Errorf("last row: new %v closed %v", r3.IsNewFlow, r3.IsClosed)
	}
	eq(t, "reports", s.tab.Stats().Reports, 4)
}

func TestEviction(t *testing.T) {
	var rows []flowlog.L4FlowLog
	tab := New(Config{MaxFlows: 2}, func(r *flowlog.L4FlowLog) { rows = append(rows, *r) })
	for i := range 3 {
		p := decode.Packet{Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("10.0.0.2"),
			SrcPort: uint16(40000 + i), DstPort: 80, L4: 6, Flags: fS, TTL: 64, Window: 100}
		tab.Packet(&p, t0.Add(time.Duration(i)*time.Second), 60)
	}
	st := tab.Stats()
	eq(t, "evicted", st.FlowsEvicted, 1)
	eq(t, "active", st.Active, 2)
	if len(rows) != 1 || rows[0].ClientPort != 40000 || !rows[0].IsClosed || rows[0].CloseType != flowlog.CloseForceReport {
		t.Fatalf("evicted rows: %+v", rows)
	}
}

func TestIdleTimeoutsPerState(t *testing.T) {
	cfg := Config{ReportEvery: time.Hour, HandshakeIdle: 5 * time.Second, TCPIdle: 100 * time.Second, HalfCloseIdle: 30 * time.Second, UDPIdle: 20 * time.Second}
	cases := []struct {
		name      string
		run       func(s *sim)
		notBefore time.Duration
	}{
		{"handshake", func(s *sim) { s.send(0, cli, fS, 0) }, 5 * time.Second},
		{"established", func(s *sim) { s.handshake(1) }, 100 * time.Second},
		{"half closed", func(s *sim) { s.handshake(1); s.send(1, cli, fFA, 0) }, 30 * time.Second},
		{"udp", func(s *sim) { s.l4 = 17; s.raw(0, cli, 0, 0, 0, 10, 0) }, 20 * time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newSim(t, cfg)
			tc.run(s)
			s.tick(tc.notBefore - time.Millisecond)
			eq(t, "rows before the timeout", len(s.rows), 0)
			s.tick(2 * time.Millisecond)
			r := s.only()
			if !r.IsClosed {
				t.Errorf("not closed")
			}
			if want := s.now.Add(-time.Millisecond); !r.Time.Equal(want) {
				t.Errorf("time %v, want %v (last packet + timeout)", r.Time, want)
			}
		})
	}
}

func TestObservationPoint(t *testing.T) {
	cases := []struct {
		cliTTL, srvTTL uint8
		cfg            string
		want           string
	}{
		{64, 64, "", "local"},
		{64, 60, "", "c"},
		{61, 128, "", "s"},
		{61, 60, "", "c"},
		{61, 60, "rest", "rest"},
	}
	for _, tc := range cases {
		var got string
		tab := New(Config{ObservationPoint: tc.cfg}, func(r *flowlog.L4FlowLog) { got = r.ObservationPoint })
		a, b := netip.MustParseAddr("10.1.0.1"), netip.MustParseAddr("10.2.0.1")
		tab.Packet(&decode.Packet{Src: a, Dst: b, SrcPort: 40000, DstPort: 80, L4: 6, Flags: fS, TTL: tc.cliTTL}, t0, 60)
		tab.Packet(&decode.Packet{Src: b, Dst: a, SrcPort: 80, DstPort: 40000, L4: 6, Flags: fSA, TTL: tc.srvTTL}, t0, 60)
		tab.FlushAll(t0)
		eq(t, "observation_point", got, tc.want)
	}
}

func TestIgnored(t *testing.T) {
	tab := New(Config{}, nil)
	tab.Packet(&decode.Packet{L4: 1}, t0, 60)
	tab.Packet(&decode.Packet{L4: 6}, t0, 60)
	eq(t, "ignored", tab.Stats().Ignored, 2)
	eq(t, "flows", tab.Len(), 0)
}
