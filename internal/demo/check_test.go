package demo

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/sightline-io/sightline/flowlog"
	"github.com/sightline-io/sightline/server/store/duckdb"
)

// Pids of the synthetic topology.
const (
	pidDriver, pidNginx, pidGoAPI, pidDNS, pidRedis = 100, 200, 300, 400, 500
	pidPG, pidPython, pidBroker, pidOTel            = 600, 700, 800, 900
)

var synthPorts = Ports{Nginx: 8080, GoAPI: 8081, DNS: 5353, Redis: 6379, Postgres: 5432, Python: 8082, Kafka: 9092, OTelSvc: 8083}

// synth builds the rows a perfectly instrumented run would store.
type synth struct {
	rows []flowlog.L7FlowLog
	port uint16 // next client port
	seq  uint32
}

var lo = netip.MustParseAddr("127.0.0.1")

// hop adds a c-p and an s-p row of one call: client pid cpid with
// syscall id csys, server pid spid with syscall id ssys, over [start, start+d].
func (s *synth) hop(proto flowlog.L7Protocol, sport int, typ, res string, cpid, spid uint32, csys, ssys uint64, start time.Time, d time.Duration) {
	s.port++
	s.seq += 1000
	for _, obs := range []string{"c-p", "s-p"} {
		r := flowlog.L7FlowLog{
			Time: start, StartTime: start, EndTime: start.Add(d), ResponseDuration: uint64(d / time.Microsecond),
			AgentID: "a", Host: "h", SignalSource: flowlog.SourceEBPF, ObservationPoint: obs, L7Protocol: proto,
			L7ProtocolStr: proto.String(), Type: flowlog.TypeSession, RequestType: typ, RequestResource: res,
			ReqTCPSeq: s.seq, RespTCPSeq: s.seq + 1, IP0: lo, IP1: lo, ClientPort: 10000 + s.port,
			ServerPort: uint16(sport), Protocol: 6, ProcessID0: cpid, ProcessID1: spid,
		}
		if obs == "c-p" {
			r.ProcessID1, r.SyscallTraceIDRequest = 0, csys
		} else {
			r.ProcessID0, r.SyscallTraceIDRequest, r.SyscallTraceIDResponse = 0, ssys, ssys
			// The server side sees the request a little later.
			r.StartTime = r.StartTime.Add(time.Microsecond)
			r.EndTime = r.EndTime.Add(-time.Microsecond)
		}
		s.rows = append(s.rows, r)
	}
}

// request adds every row of order n starting at t; skip names hops left out.
func (s *synth) request(n int, t time.Time, skip map[Hop]bool) {
	ms := time.Millisecond
	sys := uint64(n) * 100
	at := func(i int) time.Time { return t.Add(time.Duration(10+2*i) * ms) }
	add := func(h Hop, f func()) {
		if !skip[h] {
			f()
		}
	}
	add(HopDriverNginx, func() {
		s.hop(flowlog.L7HTTP1, synthPorts.Nginx, "GET", fmt.Sprintf("/order/%d", n), pidDriver, pidNginx, 0, sys+1, t, 100*ms)
	})
	add(HopNginxGoAPI, func() {
		s.hop(flowlog.L7HTTP1, synthPorts.GoAPI, "GET", fmt.Sprintf("/order/%d", n), pidNginx, pidGoAPI, sys+1, sys+2, t.Add(ms), 98*ms)
	})
	add(HopDNS, func() {
		s.hop(flowlog.L7DNS, synthPorts.DNS, "A", fmt.Sprintf("o%d.demo.test", n), pidGoAPI, pidDNS, sys+2, sys+3, at(0), ms)
	})
	add(HopRedis, func() {
		s.hop(flowlog.L7Redis, synthPorts.Redis, "SET", fmt.Sprintf("SET order:%d ? ? ?", n), pidGoAPI, pidRedis, sys+2, sys+4, at(1), ms)
		s.hop(flowlog.L7Redis, synthPorts.Redis, "GET", fmt.Sprintf("GET order:%d", n), pidGoAPI, pidRedis, sys+2, sys+5, at(2), ms)
	})
	add(HopPostgres, func() {
		s.hop(flowlog.L7Postgres, synthPorts.Postgres, "SELECT", fmt.Sprintf("/* order=%d */ SELECT ?", n), pidGoAPI, pidPG, sys+2, sys+6, at(3), ms)
	})
	add(HopPython, func() {
		s.hop(flowlog.L7HTTP1, synthPorts.Python, "GET", fmt.Sprintf("/work/%d", n), pidGoAPI, pidPython, sys+2, sys+7, at(4), 3*ms)
	})
	add(HopPyRedis, func() {
		s.hop(flowlog.L7Redis, synthPorts.Redis, "GET", fmt.Sprintf("GET py:%d", n), pidPython, pidRedis, sys+7, sys+8, at(4).Add(ms), ms/2)
	})
	add(HopProduce, func() {
		s.hop(flowlog.L7Kafka, synthPorts.Kafka, "Produce", "orders:0", pidGoAPI, pidBroker, sys+2, sys+9, at(6), ms)
	})
	add(HopOTelSvc, func() {
		s.hop(flowlog.L7HTTP1, synthPorts.OTelSvc, "GET", fmt.Sprintf("/svc/%d", n), pidGoAPI, pidOTel, sys+2, sys+10, at(7), ms)
	})
}

func storeWith(t *testing.T, rows []flowlog.L7FlowLog) *duckdb.Store {
	t.Helper()
	st, err := duckdb.Open(context.Background(), t.TempDir(), duckdb.Options{Retention: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.InsertL7(context.Background(), rows); err != nil {
		t.Fatal(err)
	}
	return st
}

func synthTruth(ns []int, t0 time.Time) Truth {
	tr := Truth{Ports: synthPorts, PIDs: PIDs{GoAPI: pidGoAPI, Nginx: pidNginx, Python: pidPython}, DriverPID: pidDriver}
	for _, n := range ns {
		start := t0.Add(time.Duration(n) * time.Second)
		tr.Requests = append(tr.Requests, Request{N: n, Start: start, End: start.Add(100 * time.Millisecond), Status: 200, Offset: int64(n)})
	}
	return tr
}

// TestCheck runs the checker over hand-built rows: complete requests, a
// missing hop, a span that joins another request's trace, a lost driver span.
func TestCheck(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	type want struct {
		driverSpans int
		linked      map[Hop]int // hops not listed: 0 linked
		false_      map[Hop]int
	}
	all := func(n int) map[Hop]int {
		return map[Hop]int{HopDriverNginx: n, HopNginxGoAPI: n, HopDNS: n, HopRedis: 2 * n, HopPostgres: n,
			HopPython: n, HopPyRedis: n, HopProduce: n, HopOTelSvc: n}
	}
	cases := []struct {
		name  string
		build func(s *synth)
		want  want
	}{
		{"complete", func(s *synth) {
			s.request(1, t0.Add(time.Second), nil)
			s.request(2, t0.Add(2*time.Second), nil)
		}, want{2, all(2), nil}},
		{"missing postgres server span", func(s *synth) {
			s.request(1, t0.Add(time.Second), nil)
			s.request(2, t0.Add(2*time.Second), nil)
			// Drop order 2's postgres s-p.
			for i := range s.rows {
				if s.rows[i].ObservationPoint == "s-p" && s.rows[i].RequestResource == "/* order=2 */ SELECT ?" {
					s.rows = append(s.rows[:i], s.rows[i+1:]...)
					break
				}
			}
		}, want{2, func() map[Hop]int { m := all(2); m[HopPostgres] = 1; return m }(), nil}},
		{"span of order 2 inside order 1's trace", func(s *synth) {
			s.request(1, t0.Add(time.Second), nil)
			s.request(2, t0.Add(2*time.Second), map[Hop]bool{HopPostgres: true})
			// Order 2's query was sent by the thread serving order 1, in its window.
			s.hop(flowlog.L7Postgres, synthPorts.Postgres, "SELECT", "/* order=2 */ SELECT ?", pidGoAPI, pidPG, 102, 999,
				t0.Add(time.Second+50*time.Millisecond), time.Millisecond)
		}, want{2, func() map[Hop]int { m := all(2); m[HopPostgres] = 1; return m }(), map[Hop]int{HopPostgres: 2}}},
		{"lost driver span", func(s *synth) {
			s.request(1, t0.Add(time.Second), nil)
			s.request(2, t0.Add(2*time.Second), nil)
			s.rows = s.rows[1:] // order 1's driver c-p
		}, want{1, all(1), nil}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var s synth
			c.build(&s)
			st := storeWith(t, s.rows)
			rep, err := Check(context.Background(), st, synthTruth([]int{1, 2}, t0))
			if err != nil {
				t.Fatal(err)
			}
			var b strings.Builder
			if err := rep.Write(&b); err != nil {
				t.Fatal(err)
			}
			t.Logf("\n%s", b.String())
			if rep.DriverSpans != c.want.driverSpans || rep.Traces != c.want.driverSpans || rep.Succeeded != 2 || rep.Requests != 2 {
				t.Errorf("driver spans %d traces %d succeeded %d, want %d/%d/2", rep.DriverSpans, rep.Traces, rep.Succeeded, c.want.driverSpans, c.want.driverSpans)
			}
			var exp, linked, falseN int
			for _, h := range rep.Hops {
				exp, linked, falseN = exp+h.Expected, linked+h.Linked, falseN+h.False
				if h.Expected != 2*PerRequest(h.Hop) {
					t.Errorf("%s: expected %d", h.Hop, h.Expected)
				}
				if h.Linked != c.want.linked[h.Hop] {
					t.Errorf("%s: linked %d, want %d", h.Hop, h.Linked, c.want.linked[h.Hop])
				}
				if h.False != c.want.false_[h.Hop] {
					t.Errorf("%s: false %d, want %d (%v)", h.Hop, h.False, c.want.false_[h.Hop], rep.FalseLinks)
				}
				if c.name == "complete" && h.Local != h.Linked {
					t.Errorf("%s: local %d, linked %d", h.Hop, h.Local, h.Linked)
				}
				if h.Linked > h.InTrace || h.InTrace > h.Expected || h.Local > h.Expected {
					t.Errorf("%s: counts out of order %+v", h.Hop, h)
				}
			}
			if exp != rep.Expected || linked != rep.Linked || falseN != rep.False {
				t.Errorf("totals %d/%d/%d, hops add up to %d/%d/%d", rep.Expected, rep.Linked, rep.False, exp, linked, falseN)
			}
			if got := rep.Stats(HopRedis).Captured; c.name == "complete" && got != 4 {
				t.Errorf("redis captured %d, want 4", got)
			}
			if (rep.False > 0) != (len(rep.FalseOrders) > 0) {
				t.Errorf("false orders %v with %d false links", rep.FalseOrders, rep.False)
			}
		})
	}
}

func TestMarker(t *testing.T) {
	cases := []struct {
		res, typ string
		n        int
		ok       bool
	}{
		{"/order/42", "GET", 42, true},
		{"/order/42?x=1", "GET", 42, true},
		{"o7.demo.test", "A", 7, true},
		{"o7.demo.test.", "A", 7, true},
		{"foo.demo.test", "A", 0, false},
		{"SET order:13 ? ? ?", "SET", 13, true},
		{"GET py:5", "GET", 5, true},
		{"/* order=99 */ SELECT ?", "SELECT", 99, true},
		{"/work/3", "GET", 3, true},
		{"/svc/8", "GET", 8, true},
		{"", "price order:21", 21, true},
		{"orders:0", "Produce", 0, false},
		{"/v1/traces", "POST", 0, false},
	}
	for _, c := range cases {
		n, ok := marker(&span{RequestResource: c.res, RequestType: c.typ})
		if n != c.n || ok != c.ok {
			t.Errorf("marker(%q, %q) = %d %v, want %d %v", c.res, c.typ, n, ok, c.n, c.ok)
		}
	}
}

func TestReportWrite(t *testing.T) {
	rep := Report{Requests: 2, Succeeded: 2, DriverSpans: 2, Traces: 2, Expected: 4, Linked: 3, False: 1,
		Hops: []HopStats{{Hop: HopDriverNginx, Expected: 2, Captured: 2, InTrace: 2, Linked: 2},
			{Hop: HopFetch, Expected: 2, Captured: -1, InTrace: 1, Linked: 1, False: 1}}}
	var b strings.Builder
	if err := rep.Write(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"driver→nginx", "kafka→consumer fetch", "3/4 = 0.750", "false links: 1", "2 driver spans found"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	if (Report{}).Ratio() != 0 {
		t.Error("ratio of an empty report")
	}
}
