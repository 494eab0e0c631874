package rpctest

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/flowlog"
	"github.com/sightline-io/sightline/internal/livetest"
)

// Want is the row expected for one request id of the scenario.
type Want struct {
	ID                     uint64
	Type, Domain, Resource string
	Endpoint               string // "" : same as Resource
	Code                   int32
	NoCode                 bool // one-way: no response, no code
	Status                 flowlog.ResponseStatus
	Exception              string // substring of response_exception
	Version                string
	TraceID, SpanID        string
	XRequestID             string
	MinReqLen, MinRespLen  int64
}

// CheckRows asserts that rows (one protocol, one server port) hold exactly
// one row per Want at observation point obs, none for the heartbeat id, and
// that the slow call took at least SlowDelay.
func CheckRows(t testing.TB, rows []flowlog.L7FlowLog, proto flowlog.L7Protocol, obs string, wants []Want) {
	t.Helper()
	byID := map[uint64][]*flowlog.L7FlowLog{}
	for i := range rows {
		r := &rows[i]
		if r.ObservationPoint != obs {
			continue
		}
		if r.RequestID == nil {
			t.Errorf("row without request_id:\n%s", livetest.Describe(rows[i:i+1]))
			continue
		}
		byID[*r.RequestID] = append(byID[*r.RequestID], r)
	}
	wanted := map[uint64]bool{}
	for _, w := range wants {
		wanted[w.ID] = true
	}
	for id, rs := range byID {
		if !wanted[id] {
			// Heartbeats (id 1, or KRPC's sequence 0) must make no rows.
			t.Errorf("unexpected rows for request_id %d at %s:\n%s", id, obs, livetest.Describe(derefRows(rs)))
		}
	}
	for _, w := range wants {
		got := byID[w.ID]
		if len(got) != 1 {
			t.Errorf("request %d: %d rows at %s, want 1; rows:\n%s", w.ID, len(got), obs, livetest.Describe(rows))
			continue
		}
		r := got[0]
		ep := w.Endpoint
		if ep == "" {
			ep = w.Resource
		}
		var errs []string
		check := func(ok bool, what string) {
			if !ok {
				errs = append(errs, what)
			}
		}
		check(r.L7Protocol == proto, "l7_protocol")
		check(r.RequestType == w.Type, "request_type "+r.RequestType)
		check(r.RequestDomain == w.Domain, "request_domain "+r.RequestDomain)
		check(r.RequestResource == w.Resource, "request_resource "+r.RequestResource)
		check(r.Endpoint == ep, "endpoint "+r.Endpoint)
		check(r.ResponseStatus == w.Status, "response_status")
		if w.NoCode {
			check(r.ResponseCode == nil, "response_code set on a one-way call")
		} else {
			check(r.ResponseCode != nil && *r.ResponseCode == w.Code, "response_code")
			check(r.Type == flowlog.TypeSession, "type (not a session)")
			check(r.ResponseDuration > 0, "response_duration 0")
		}
		check(strings.Contains(r.ResponseException, w.Exception), "response_exception "+r.ResponseException)
		check(w.Exception != "" || r.ResponseException == "", "unexpected response_exception "+r.ResponseException)
		check(w.Version == "" || r.Version == w.Version, "version "+r.Version)
		check(w.TraceID == "" || r.TraceID == w.TraceID, "trace_id "+r.TraceID)
		check(w.SpanID == "" || r.SpanID == w.SpanID, "span_id "+r.SpanID)
		check(w.XRequestID == "" || r.XRequestID0 == w.XRequestID, "x_request_id_0 "+r.XRequestID0)
		check(w.MinReqLen == 0 || r.RequestLength >= w.MinReqLen, "request_length")
		check(w.MinRespLen == 0 || r.ResponseLength >= w.MinRespLen, "response_length")
		if w.ID == IDSlow {
			check(time.Duration(r.ResponseDuration)*time.Microsecond >= SlowDelay-50*time.Millisecond, "slow call's duration")
		}
		if len(errs) > 0 {
			t.Errorf("request %d at %s: wrong %s:\n%s", w.ID, obs, strings.Join(errs, ", "), livetest.Describe([]flowlog.L7FlowLog{*r}))
		}
	}
}

// RunLive runs proto's scenario against a server process while the agent
// runs with p, records the traffic when asked (livetest.Record into
// name.pcap), and checks the server-side and client-side rows.
func RunLive(t *testing.T, name string, p l7.Protocol, wants []Want) {
	agent := livetest.StartAgent(t, p)
	port := StartServer(t, name)
	stop := livetest.Record(t, name+".pcap", "tcp port "+itoa(port))
	RunClientProcess(t, name, port)
	stop()
	pred := func(obs string) func(*flowlog.L7FlowLog) bool {
		return func(r *flowlog.L7FlowLog) bool {
			return int(r.ServerPort) == port && r.ObservationPoint == obs && r.RequestID != nil && *r.RequestID != IDHeartbeat
		}
	}
	for _, obs := range []string{flowlog.ObsServerProcess, flowlog.ObsClientProcess} {
		rows := agent.WaitRows(t, name+" rows at "+obs, len(wants), 30*time.Second, pred(obs))
		time.Sleep(300 * time.Millisecond) // let stray rows (a heartbeat) show up
		rows = agent.Match(livetest.ServerPort(port))
		CheckRows(t, rows, p.ID(), obs, wants)
		// The agent captures a 4096-byte prefix of each syscall: the big
		// call's rows must say so while keeping the header fields.
		for _, r := range rows {
			if r.ObservationPoint == obs && r.RequestID != nil && *r.RequestID == IDBig &&
				(int64(r.CapturedRequestByte) >= r.RequestLength || int64(r.CapturedResponseByte) >= r.ResponseLength) {
				t.Errorf("big call at %s: captured %d/%d request and %d/%d response bytes, want truncated",
					obs, r.CapturedRequestByte, r.RequestLength, r.CapturedResponseByte, r.ResponseLength)
			}
		}
	}
}

// CheckCapture replays testdata/<name>.pcap with p and checks its rows.
func CheckCapture(t *testing.T, name string, p l7.Protocol, wants []Want) {
	rows := livetest.Replay(t, filepath.Join("testdata", name+".pcap"), p)
	if len(rows) == 0 {
		t.Fatal("no rows")
	}
	CheckRows(t, rows, p.ID(), rows[0].ObservationPoint, wants)
}

// CheckMidstream replays proto's hand-built capture that starts in the
// middle of a request (MidstreamSegs) and checks the rows of the calls
// that follow (wants with the ids of the hello and fail calls).
func CheckMidstream(t *testing.T, name string, p l7.Protocol, wants []Want) {
	rows := livetest.Replay(t, WriteMidstreamPcap(t, MidstreamSegs(name)), p)
	var picked []Want
	for _, w := range wants {
		if w.ID == IDHello || w.ID == IDFail {
			picked = append(picked, w)
		}
	}
	if len(rows) == 0 || len(picked) != 2 {
		t.Fatalf("%d rows, %d wants", len(rows), len(picked))
	}
	// The big call's response, whose request was cut, is a lone response.
	var kept []flowlog.L7FlowLog
	for _, r := range rows {
		if r.RequestID != nil && *r.RequestID == IDBig && r.Type == flowlog.TypeResponse {
			continue
		}
		kept = append(kept, r)
	}
	CheckRows(t, kept, p.ID(), rows[0].ObservationPoint, picked)
}

func derefRows(rs []*flowlog.L7FlowLog) []flowlog.L7FlowLog {
	out := make([]flowlog.L7FlowLog, len(rs))
	for i, r := range rs {
		out[i] = *r
	}
	return out
}
