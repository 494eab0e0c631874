package trace

import (
	"testing"
	"time"
)

// TestLinkRules checks the Go-side guards of each rule on hand-built rows,
// independently of the SQL lookups that pre-filter candidates.
func TestLinkRules(t *testing.T) {
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	base := func(id uint64, obs, agent string, startMS, durMS int) row {
		return row{id: id, obs: obs, agent: agent, host: agent, start: at(startMS), end: at(startMS + durMS),
			ip0: "10.0.0.1", ip1: "10.0.0.2", cport: 1000, sport: 80, l4: 6}
	}
	with := func(r row, f func(*row)) row { f(&r); return r }
	opt := Options{ClockSkew: time.Second}.withDefaults()
	cp := with(base(1, "c-p", "A", 0, 50), func(r *row) { r.reqSeq, r.respSeq = 10, 20 })
	sp := with(base(2, "s-p", "B", 1500, 40), func(r *row) { r.reqSeq, r.respSeq = 10, 20 })
	server := with(base(3, "s-p", "B", 0, 100), func(r *row) { r.sysReq, r.sysResp, r.pid1 = 7, 8, 30 })
	client := with(base(4, "c-p", "B", 10, 20), func(r *row) { r.sysReq, r.pid0 = 8, 30 })
	cases := []struct {
		name string
		a, b row
		want Rule
	}{
		{"tcp seq across hosts within tolerance+skew", cp, sp, RuleTCPSeq},
		{"tcp seq on another tuple", cp, with(sp, func(r *row) { r.cport = 1001 }), ""},
		{"tcp seq on another protocol", cp, with(sp, func(r *row) { r.l4 = 17 }), ""},
		{"tcp seq beyond tolerance+skew", cp, with(sp, func(r *row) { r.start = at(2500) }), ""},
		{"tcp seq same host beyond tolerance", cp, with(sp, func(r *row) { r.agent, r.host = "A", "A" }), ""},
		{"tcp req seq with conflicting resp seq", cp, with(sp, func(r *row) { r.respSeq = 21 }), ""},
		{"tcp resp seq alone", cp, with(sp, func(r *row) { r.reqSeq = 0 }), RuleTCPSeq},
		{"tcp zero seqs", with(cp, func(r *row) { r.reqSeq, r.respSeq = 0, 0 }), with(sp, func(r *row) { r.reqSeq, r.respSeq = 0, 0 }), ""},
		{"syscall response id never links", server, client, ""},
		{"syscall either order", with(client, func(r *row) { r.sysReq = 7 }), server, RuleSyscall},
		{"syscall request id", server, with(client, func(r *row) { r.sysReq = 7 }), RuleSyscall},
		{"syscall other id", server, with(client, func(r *row) { r.sysReq = 9 }), ""},
		{"syscall zero id", with(server, func(r *row) { r.sysReq, r.sysResp = 0, 0 }), with(client, func(r *row) { r.sysReq = 0 }), ""},
		{"syscall other agent", server, with(client, func(r *row) { r.agent, r.host = "C", "C" }), ""},
		{"syscall other pid", server, with(client, func(r *row) { r.pid0 = 31 }), ""},
		{"syscall starts before window", server, with(client, func(r *row) { r.start = at(-1) }), ""},
		{"syscall ends after window", server, with(client, func(r *row) { r.end = at(101) }), ""},
		{"syscall needs s-p and c-p", with(server, func(r *row) { r.obs = "s" }), client, ""},
		{"trace id", with(cp, func(r *row) { r.reqSeq, r.traceID = 0, "t1" }), with(server, func(r *row) { r.sysReq, r.sysResp, r.traceID = 0, 0, "t1" }), RuleTraceID},
		{"trace id far in time", with(cp, func(r *row) { r.reqSeq, r.traceID = 0, "t1" }), with(base(9, "s", "B", 3_600_000, 1), func(r *row) { r.traceID = "t1" }), ""},
		{"empty trace ids", base(8, "s", "A", 0, 1), base(9, "s", "B", 0, 1), ""},
		{"x-request-id across sides", with(base(8, "s-p", "P", 0, 100), func(r *row) { r.xrid0 = "r1" }), with(base(9, "c-p", "P", 10, 10), func(r *row) { r.xrid1 = "r1" }), RuleXReqID},
		{"x-request-id not overlapping", with(base(8, "s-p", "P", 0, 100), func(r *row) { r.xrid0 = "r1" }), with(base(9, "c-p", "P", 5000, 10), func(r *row) { r.xrid0 = "r1" }), ""},
		{"x-request-id differs", with(base(8, "s-p", "P", 0, 100), func(r *row) { r.xrid0 = "r1" }), with(base(9, "c-p", "P", 10, 10), func(r *row) { r.xrid0 = "r2" }), ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, ok := opt.link(&c.a, &c.b)
			if ok != (c.want != "") || got != c.want {
				t.Errorf("link = %q, %v; want %q", got, ok, c.want)
			}
		})
	}
}
