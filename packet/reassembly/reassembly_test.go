package reassembly

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/sightline-io/sightline/agent/capture"
	"github.com/sightline-io/sightline/packet/decode"
)

var (
	client = netip.MustParseAddr("10.0.0.1")
	server = netip.MustParseAddr("10.0.0.2")
	t0     = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
)

const (
	cport = 40000
	sport = 80
	cisn  = 1000
	sisn  = 5000
)

// event is one recorded output: a segment (copied) or a close.
type event struct {
	closed bool
	seg    capture.Segment
}

type recorder struct{ events []event }

func (r *recorder) segment(s *capture.Segment) {
	c := *s
	c.Data = append([]byte(nil), s.Data...)
	r.events = append(r.events, event{seg: c})
}

func (r *recorder) close(c capture.Closed) {
	r.events = append(r.events, event{closed: true, seg: capture.Segment{ConnID: c.ConnID, End: c.Time}})
}

// String renders events compactly: "A>B@seq:data" for data, "A>B@seq:gap N"
// for missing bytes, "+N" for bytes on the wire beyond Data, "close#id".
func (r *recorder) String() string {
	var b []string
	for _, e := range r.events {
		if e.closed {
			b = append(b, fmt.Sprintf("close#%d", e.seg.ConnID))
			continue
		}
		s := e.seg
		dir := "A>B"
		if s.Dir == capture.BtoA {
			dir = "B>A"
		}
		switch {
		case len(s.Data) == 0:
			b = append(b, fmt.Sprintf("#%d %s@%d:gap %d", s.ConnID, dir, s.TCPSeq, s.Len))
		case s.Gap() > 0:
			b = append(b, fmt.Sprintf("#%d %s@%d:%s+%d", s.ConnID, dir, s.TCPSeq, s.Data, s.Gap()))
		default:
			b = append(b, fmt.Sprintf("#%d %s@%d:%s", s.ConnID, dir, s.TCPSeq, s.Data))
		}
	}
	return strings.Join(b, " | ")
}

// pkt describes a TCP packet compactly for table tests.
type pkt struct {
	fromServer bool
	flags      uint8
	seq, ack   uint32
	data       string
	wire       int // 0: len(data)
	at         time.Duration
}

func (p pkt) packet() *decode.Packet {
	dp := &decode.Packet{Src: client, Dst: server, SrcPort: cport, DstPort: sport, L4: 6, TTL: 64,
		Seq: p.seq, Ack: p.ack, Flags: p.flags, Payload: []byte(p.data), WireLen: len(p.data)}
	if p.fromServer {
		dp.Src, dp.Dst, dp.SrcPort, dp.DstPort = server, client, sport, cport
	}
	if p.wire > 0 {
		dp.WireLen = p.wire
	}
	return dp
}

const (
	syn    = decode.FlagSYN
	ack    = decode.FlagACK
	fin    = decode.FlagFIN | decode.FlagACK
	rst    = decode.FlagRST
	synack = decode.FlagSYN | decode.FlagACK
	pa     = decode.FlagPSH | decode.FlagACK
)

// handshake is a complete three-way handshake.
var handshake = []pkt{
	{flags: syn, seq: cisn},
	{fromServer: true, flags: synack, seq: sisn, ack: cisn + 1},
	{flags: ack, seq: cisn + 1, ack: sisn + 1},
}

func run(t *testing.T, cfg Config, pkts []pkt, flushAt time.Duration) (*recorder, *Assembler) {
	t.Helper()
	r := &recorder{}
	a := New(cfg, r.segment, r.close)
	for _, p := range pkts {
		a.Packet(p.packet(), t0.Add(p.at))
	}
	if flushAt >= 0 {
		a.FlushAll(t0.Add(flushAt))
	}
	return r, a
}

func TestReassembly(t *testing.T) {
	c1, s1 := uint32(cisn+1), uint32(sisn+1)
	tests := []struct {
		name string
		cfg  Config
		pkts []pkt
		want string
	}{
		{
			name: "in order with FIN from both sides",
			pkts: append(handshake[:3:3],
				pkt{flags: pa, seq: c1, ack: s1, data: "GET"},
				pkt{fromServer: true, flags: pa, seq: s1, ack: c1 + 3, data: "200"},
				pkt{flags: fin, seq: c1 + 3, ack: s1 + 3},
				pkt{fromServer: true, flags: fin, seq: s1 + 3, ack: c1 + 4},
				pkt{flags: ack, seq: c1 + 4, ack: s1 + 4},
			),
			want: "#1 A>B@1001:GET | #1 B>A@5001:200 | close#1",
		},
		{
			name: "out of order is held until the hole fills",
			pkts: append(handshake[:3:3],
				pkt{flags: pa, seq: c1 + 3, data: "def"},
				pkt{flags: pa, seq: c1 + 6, data: "ghi"},
				pkt{flags: pa, seq: c1, data: "abc"},
			),
			want: "#1 A>B@1001:abc | #1 A>B@1004:def | #1 A>B@1007:ghi | close#1",
		},
		{
			name: "retransmissions and overlaps are trimmed",
			pkts: append(handshake[:3:3],
				pkt{flags: pa, seq: c1, data: "abcd"},
				pkt{flags: pa, seq: c1, data: "abcd"},     // exact repeat
				pkt{flags: pa, seq: c1 + 2, data: "cdef"}, // overlaps 2
				pkt{flags: pa, seq: c1 + 1, data: "b"},    // inside
				pkt{flags: ack, seq: c1 + 5, data: "f"},   // keep-alive style repeat
			),
			want: "#1 A>B@1001:abcd | #1 A>B@1005:ef | close#1",
		},
		{
			name: "overlapping out-of-order segments",
			pkts: append(handshake[:3:3],
				pkt{flags: pa, seq: c1 + 4, data: "efgh"},
				pkt{flags: pa, seq: c1 + 2, data: "cdef"},
				pkt{flags: pa, seq: c1, data: "ab"},
			),
			want: "#1 A>B@1001:ab | #1 A>B@1003:cdef | #1 A>B@1007:gh | close#1",
		},
		{
			name: "mid-stream start: first packet's sender is A",
			pkts: []pkt{
				{fromServer: true, flags: pa, seq: 7000, ack: 300, data: "HTTP/1.1 200"},
				{flags: pa, seq: 300, ack: 7012, data: "GET /"},
				{fromServer: true, flags: pa, seq: 7012, ack: 305, data: "again"},
			},
			want: "#1 A>B@7000:HTTP/1.1 200 | #1 B>A@300:GET / | #1 A>B@7012:again | close#1",
		},
		{
			name: "SYN-ACK seen first: its receiver is A",
			pkts: []pkt{
				{fromServer: true, flags: synack, seq: sisn, ack: c1},
				{flags: pa, seq: c1, ack: s1, data: "hi"},
			},
			want: "#1 A>B@1001:hi | close#1",
		},
		{
			name: "port reuse after close starts a new connection",
			pkts: append(handshake[:3:3],
				pkt{flags: pa, seq: c1, data: "one"},
				pkt{flags: fin, seq: c1 + 3},
				pkt{fromServer: true, flags: fin, seq: s1, ack: c1 + 4},
				pkt{flags: ack, seq: c1 + 4, ack: s1 + 1}, // late: dropped
				pkt{flags: syn, seq: 90000},
				pkt{fromServer: true, flags: synack, seq: 1, ack: 90001},
				pkt{flags: pa, seq: 90001, data: "two"},
			),
			want: "#1 A>B@1001:one | close#1 | #2 A>B@90001:two | close#2",
		},
		{
			name: "new SYN on a live tuple ends the old connection",
			pkts: append(handshake[:3:3],
				pkt{flags: pa, seq: c1, data: "one"},
				pkt{flags: syn, seq: cisn}, // retransmitted SYN: same ISN, ignored
				pkt{flags: syn, seq: 90000},
				pkt{flags: pa, seq: 90001, data: "two"},
			),
			want: "#1 A>B@1001:one | close#1 | #2 A>B@90001:two | close#2",
		},
		{
			name: "RST closes; stragglers are dropped",
			pkts: append(handshake[:3:3],
				pkt{flags: pa, seq: c1, data: "abc"},
				pkt{fromServer: true, flags: rst, seq: s1},
				pkt{flags: pa, seq: c1 + 3, data: "late"},
			),
			want: "#1 A>B@1001:abc | close#1",
		},
		{
			name: "snaplen truncation becomes a gap at the segment's end",
			pkts: append(handshake[:3:3],
				pkt{flags: pa, seq: c1, data: "abc", wire: 100},
				pkt{flags: pa, seq: c1 + 100, data: "next"},
			),
			want: "#1 A>B@1001:abc+97 | #1 A>B@1101:next | close#1",
		},
		{
			name: "hole that never fills is given up at close",
			pkts: append(handshake[:3:3],
				pkt{flags: pa, seq: c1, data: "ab"},
				pkt{flags: pa, seq: c1 + 10, data: "kl"},
			),
			want: "#1 A>B@1001:ab | #1 A>B@1003:gap 8 | #1 A>B@1011:kl | close#1",
		},
		{
			name: "peer ACK past a hole gives it up at once",
			pkts: append(handshake[:3:3],
				pkt{flags: pa, seq: c1, data: "ab"},
				pkt{flags: pa, seq: c1 + 10, data: "kl"},
				pkt{fromServer: true, flags: ack, seq: s1, ack: c1 + 12},
				pkt{fromServer: true, flags: pa, seq: s1, ack: c1 + 12, data: "ok"},
			),
			want: "#1 A>B@1001:ab | #1 A>B@1003:gap 8 | #1 A>B@1011:kl | #1 B>A@5001:ok | close#1",
		},
		{
			name: "buffer bound gives up holes",
			cfg:  Config{MaxPendingSegments: 2},
			pkts: append(handshake[:3:3],
				pkt{flags: pa, seq: c1 + 2, data: "c"},
				pkt{flags: pa, seq: c1 + 4, data: "e"},
				pkt{flags: pa, seq: c1 + 6, data: "g"},
			),
			want: "#1 A>B@1001:gap 2 | #1 A>B@1003:c | #1 A>B@1004:gap 1 | #1 A>B@1005:e | #1 A>B@1006:gap 1 | #1 A>B@1007:g | close#1",
		},
		{
			name: "FIN waits behind a hole",
			pkts: append(handshake[:3:3],
				pkt{flags: fin, seq: c1 + 2},
				pkt{fromServer: true, flags: fin, seq: s1},
				pkt{flags: pa, seq: c1, data: "ab"},
			),
			want: "#1 A>B@1001:ab | close#1",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, a := run(t, tt.cfg, tt.pkts, time.Minute)
			if got := r.String(); got != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
			if a.Buffered() != 0 || a.Conns() != 0 {
				t.Errorf("after FlushAll: buffered %d, conns %d", a.Buffered(), a.Conns())
			}
		})
	}
}

func TestSegmentFields(t *testing.T) {
	r, _ := run(t, Config{}, append(handshake[:3:3],
		pkt{flags: pa, seq: cisn + 1, data: "x", at: time.Second},
	), time.Minute)
	s := r.events[0].seg
	want := capture.Tuple{AIP: client, BIP: server, APort: cport, BPort: sport, L4: 6}
	if s.Tuple != want || s.Source != capture.SourcePacket || s.TTL != 64 ||
		!s.Start.Equal(t0.Add(time.Second)) || !s.End.Equal(s.Start) || s.Len != 1 {
		t.Errorf("segment = %+v", s)
	}
	if c := r.events[1]; !c.closed || !c.seg.End.Equal(t0.Add(time.Minute)) {
		t.Errorf("close = %+v", c)
	}
}

func TestHoleTimeoutFollowsCaptureTime(t *testing.T) {
	r := &recorder{}
	a := New(Config{HoleTimeout: 2 * time.Second}, r.segment, r.close)
	for _, p := range append(handshake[:3:3],
		pkt{flags: pa, seq: cisn + 1, data: "ab"},
		pkt{flags: pa, seq: cisn + 5, data: "ef"},
	) {
		a.Packet(p.packet(), t0)
	}
	a.Expire(t0.Add(time.Second))
	if len(r.events) != 1 {
		t.Fatalf("hole given up too early: %s", r)
	}
	a.Expire(t0.Add(3 * time.Second))
	if got, want := r.String(), "#1 A>B@1001:ab | #1 A>B@1003:gap 2 | #1 A>B@1005:ef"; got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	if st := a.Stats(); st.HolesByTimeout != 1 || st.GapBytes != 2 || a.Buffered() != 0 {
		t.Errorf("stats %+v buffered %d", st, a.Buffered())
	}
}

func TestIdleAndEviction(t *testing.T) {
	r := &recorder{}
	a := New(Config{MaxConns: 2, IdleTimeout: 10 * time.Second, CloseLinger: time.Second}, r.segment, r.close)
	for i := range 3 {
		p := pkt{flags: pa, seq: 1, data: "x", at: time.Duration(i) * time.Second}.packet()
		p.SrcPort = uint16(50000 + i)
		a.Packet(p, t0.Add(time.Duration(i)*time.Second))
	}
	if st := a.Stats(); st.ConnsEvicted != 1 || a.Conns() != 2 {
		t.Fatalf("evicted %d, conns %d", st.ConnsEvicted, a.Conns())
	}
	a.Expire(t0.Add(11500 * time.Millisecond)) // conn 2 (last at 1s) idles out, conn 3 (2s) stays
	if st := a.Stats(); st.ConnsIdle != 1 {
		t.Errorf("idle closes = %d, want 1", st.ConnsIdle)
	}
	a.Expire(t0.Add(20 * time.Second))
	if got, want := r.String(), "#1 A>B@1:x | #2 A>B@1:x | close#1 | #3 A>B@1:x | close#2 | close#3"; got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	if a.Conns() != 0 {
		t.Errorf("conns after linger = %d", a.Conns())
	}
}

func TestUDPDatagrams(t *testing.T) {
	r := &recorder{}
	a := New(Config{}, r.segment, r.close)
	q := &decode.Packet{Src: client, Dst: server, SrcPort: 5353, DstPort: 53, L4: 17, Payload: []byte("query"), WireLen: 5}
	resp := &decode.Packet{Src: server, Dst: client, SrcPort: 53, DstPort: 5353, L4: 17, Payload: []byte("answ"), WireLen: 9}
	empty := &decode.Packet{Src: client, Dst: server, SrcPort: 5353, DstPort: 53, L4: 17}
	a.Packet(q, t0)
	a.Packet(resp, t0)
	a.Packet(empty, t0)
	a.FlushAll(t0)
	if got, want := r.String(), "#1 A>B@0:query | #1 B>A@0:answ+5 | close#1"; got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	if st := a.Stats(); st.EmptyUDP != 1 || st.UDPPackets != 3 {
		t.Errorf("stats %+v", st)
	}
}

func TestSeqWraparound(t *testing.T) {
	isn := uint32(0xfffffffe)
	r, _ := run(t, Config{}, []pkt{
		{flags: syn, seq: isn},
		{flags: pa, seq: isn + 1 + 3, data: "def"}, // wraps past zero
		{flags: pa, seq: isn + 1, data: "abc"},
	}, 0)
	if got, want := r.String(), "#1 A>B@4294967295:abc | #1 A>B@2:def | close#1"; got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

func TestTotalBufferBound(t *testing.T) {
	r := &recorder{}
	a := New(Config{MaxBufferedTotal: 10}, r.segment, r.close)
	for i := range 20 {
		p := pkt{flags: pa, seq: uint32(100 + 10*i), data: "0123"}.packet()
		p.SrcPort = uint16(40000 + i%4)
		a.Packet(p, t0) // first packet per conn initialises it
		p2 := pkt{flags: pa, seq: uint32(100 + 10*i + 8), data: "89ab"}.packet()
		p2.SrcPort = p.SrcPort
		a.Packet(p2, t0) // out of order: buffered
		if a.Buffered() > 10+4 {
			t.Fatalf("buffered %d exceeds bound", a.Buffered())
		}
	}
	if a.Stats().HolesByOverflow == 0 {
		t.Error("no overflow counted")
	}
}
