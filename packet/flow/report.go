package flow

import (
	"net/netip"
	"time"

	"github.com/sightline-io/sightline/flowlog"
)

// Tick times out idle flows and, at each period boundary passed, reports
// every live flow (Force Report). now is on the packets' clock.
func (t *Table) Tick(now time.Time) {
	n := now.UnixNano()
	t.expire(n)
	if t.nextReport == 0 {
		t.nextReport = t.boundaryAfter(n)
		return
	}
	if n < t.nextReport {
		return
	}
	boundary := t.boundaryAfter(n) - t.period
	for c := range t.lists {
		for i := t.lists[c].head; i >= 0; i = t.flows[i].next {
			t.report(&t.flows[i], flowlog.CloseForceReport, boundary, false)
		}
	}
	t.nextReport = boundary + t.period
}

// expire closes the flows idle past their class's timeout.
func (t *Table) expire(now int64) {
	for c := range t.lists {
		to := t.timeouts[c]
		for {
			i := t.lists[c].tail
			if i < 0 || now-t.flows[i].last < to {
				break
			}
			f := &t.flows[i]
			t.finish(i, f.timeoutCloseType(), f.last+to)
		}
	}
}

// FlushAll reports and removes every flow: ended flows with their close
// type, live ones as Force Report (or Transfer Server Queue Overflow when
// they show it).
func (t *Table) FlushAll(now time.Time) {
	n := now.UnixNano()
	for c := range t.lists {
		for t.lists[c].tail >= 0 {
			i := t.lists[c].tail
			t.finish(i, t.flows[i].flushCloseType(), n)
		}
	}
}

// finish emits flow idx's last row and removes it.
func (t *Table) finish(idx int32, ct flowlog.CloseType, at int64) {
	t.report(&t.flows[idx], ct, at, true)
	t.release(idx)
}

// report emits one row with f's period counters and resets them.
func (t *Table) report(f *flow, ct flowlog.CloseType, at int64, closed bool) {
	r := &t.row
	t.nextID++
	a, b, pa, pb := f.key.a, f.key.b, f.key.pa, f.key.pb
	if !f.clientIsA {
		a, b, pa, pb = b, a, pb, pa
	}
	if at < f.last {
		at = f.last
	}
	c := &f.c
	*r = flowlog.L4FlowLog{
		ID:               t.nextID,
		Time:             time.Unix(0, at).UTC(),
		StartTime:        time.Unix(0, f.start).UTC(),
		EndTime:          time.Unix(0, f.last).UTC(),
		Duration:         uint64(max(f.last-f.start, 0) / 1000),
		AgentID:          t.cfg.AgentID,
		Host:             t.cfg.Host,
		OrgID:            t.cfg.OrgID,
		TeamID:           t.cfg.TeamID,
		SignalSource:     flowlog.SourcePacket,
		ObservationPoint: t.observationPoint(f, a, b),
		IP0:              a,
		IP1:              b,
		ClientPort:       pa,
		ServerPort:       pb,
		Protocol:         f.key.proto,
		ByteTx:           c.bytes[dirTx],
		ByteRx:           c.bytes[dirRx],
		PacketTx:         uint64(c.packets[dirTx]),
		PacketRx:         uint64(c.packets[dirRx]),
		RTT:              c.rtt,
		RTTClient:        c.rttClient,
		RTTServer:        c.rttServer,
		SRTSum:           c.srtSum,
		SRTCount:         c.srtCount,
		SRTMax:           c.srtMax,
		ARTSum:           c.artSum,
		ARTCount:         c.artCount,
		ARTMax:           c.artMax,
		RetransTx:        c.retrans[dirTx],
		RetransRx:        c.retrans[dirRx],
		ZeroWinTx:        c.zeroWin[dirTx],
		ZeroWinRx:        c.zeroWin[dirRx],
		OutOfOrder:       c.ooo,
		SYNCount:         c.syn,
		SYNACKCount:      c.synack,
		RetransSYN:       c.retransSyn,
		RetransSYNACK:    c.retransSA,
		FINCount:         c.fin,
		RSTCount:         c.rst,
		CloseType:        ct,
		IsNewFlow:        !f.has(fReported),
		IsClosed:         closed,
	}
	f.flags |= fReported
	f.c = counters{}
	t.stats.Reports++
	if t.emit != nil {
		t.emit(r)
	}
}

// observationPoint mirrors agent/session's rule for packet captures.
func (t *Table) observationPoint(f *flow, client, server netip.Addr) string {
	if t.cfg.ObservationPoint != "" {
		return t.cfg.ObservationPoint
	}
	a, b := client.Unmap(), server.Unmap()
	if a == b || (a.IsLoopback() && b.IsLoopback()) {
		return flowlog.ObsLocalNIC
	}
	cl, sl := isInitialTTL(f.ttl[dirTx]), isInitialTTL(f.ttl[dirRx])
	switch {
	case cl && sl:
		return flowlog.ObsLocalNIC
	case sl:
		return flowlog.ObsServerNIC
	}
	return flowlog.ObsClientNIC
}

func isInitialTTL(ttl uint8) bool { return ttl == 64 || ttl == 128 || ttl == 255 }
