package flow

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/sightline-io/sightline/flowlog"
	"github.com/sightline-io/sightline/packet/decode"
)

// FuzzFlowTable feeds arbitrary packet sequences (9 bytes a packet) to a
// small table: no panic, the bound holds, every row is sane, and FlushAll
// empties the table.
func FuzzFlowTable(f *testing.F) {
	f.Add([]byte{0x02, 0, 0, 0, 1, 0, 0, 0, 0, 0x12, 1, 0, 0, 0, 1, 0, 5, 1, 0x10, 0, 0, 0, 2, 0, 0, 5, 1})
	f.Add([]byte{0x04, 1, 2, 3, 4, 5, 6, 7, 8, 0x11, 0xff, 0xff, 0, 0, 0, 0, 0, 0xff})
	f.Add(make([]byte, 90))
	const maxFlows = 8
	f.Fuzz(func(t *testing.T, data []byte) {
		rows := 0
		tab := New(Config{MaxFlows: maxFlows, ReportEvery: time.Second, HandshakeIdle: time.Second,
			TCPIdle: 3 * time.Second, HalfCloseIdle: 2 * time.Second, ClosedLinger: time.Second, UDPIdle: time.Second},
			func(r *flowlog.L4FlowLog) {
				rows++
				if r.Time.Before(r.EndTime) || r.EndTime.Before(r.StartTime) {
					t.Fatalf("row times out of order: %+v", r)
				}
				if r.CloseType.String() == "Others" {
					t.Fatalf("close type %d", r.CloseType)
				}
			})
		addrs := [4]netip.Addr{netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"),
			netip.MustParseAddr("fd00::1"), netip.MustParseAddr("::ffff:10.0.0.1")}
		ts := t0
		for len(data) >= 9 {
			b := data[:9]
			data = data[9:]
			p := decode.Packet{
				Src: addrs[b[0]>>6], Dst: addrs[(b[0]>>4)&3],
				SrcPort: 80 + uint16(b[1]&3), DstPort: 80 + uint16(b[1]>>2&3),
				L4: 6, Flags: b[0] & 0x1f, TTL: b[8],
				Seq: uint32(b[2]) << (b[1] >> 4 & 0x18), Ack: binary.BigEndian.Uint32(b[3:7]),
				Window: uint16(b[7]), WireLen: int(b[7]) - 8,
			}
			if b[1]&0x80 != 0 {
				p.L4 = 17
			}
			ts = ts.Add(time.Duration(b[8]) * 37 * time.Millisecond)
			tab.Packet(&p, ts, int(b[2])-5)
			if b[1]&0x40 != 0 {
				tab.Tick(ts)
			}
			if tab.Len() > maxFlows {
				t.Fatalf("%d flows, bound %d", tab.Len(), maxFlows)
			}
		}
		tab.FlushAll(ts)
		if tab.Len() != 0 {
			t.Fatalf("%d flows after FlushAll", tab.Len())
		}
		st := tab.Stats()
		if st.Flows != st.FlowsClosed || st.Reports != uint64(rows) {
			t.Fatalf("stats %+v, rows %d", st, rows)
		}
	})
}
