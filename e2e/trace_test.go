package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"testing"
	"time"

	"github.com/sightline-io/sightline/server/trace"
)

// TestTraceCurlNginxBackend assembles, from curl's span alone, the trace of
// each of several requests through nginx to a Go backend, with no header
// that names the request: hops join by TCP sequence numbers, nginx's
// server span joins its upstream call by syscall trace id. Every trace has
// exactly its four spans, parented in order.
func TestTraceCurlNginxBackend(t *testing.T) {
	requireRootAndTools(t, "nginx", "curl")
	st := startStack(t)
	backendPort, _ := startBackend(t)
	nginxPort := startNginx(t, backendPort)
	waitOK(t, fmt.Sprintf("http://127.0.0.1:%d/healthz", nginxPort))
	const n = 3
	for i := range n {
		url := fmt.Sprintf("http://127.0.0.1:%d/api/users/%d", nginxPort, 7000+i)
		if out, err := exec.Command("curl", "-sS", "-o", "/dev/null", url).CombinedOutput(); err != nil {
			t.Fatalf("curl: %v %s", err, out)
		}
	}
	var seeds []map[string]any
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		seeds = st.query(t, fmt.Sprintf(`SELECT _id, request_resource FROM l7_flow_log WHERE observation_point = 'c-p'
			AND server_port = %d AND process_kname_0 = 'curl' AND request_resource LIKE '/api/users/7%%' ORDER BY time`, nginxPort))
		all := st.query(t, `SELECT count(*) AS n FROM l7_flow_log WHERE request_resource LIKE '/api/users/7%'`)
		if len(seeds) == n && num(t, all[0]["n"]) >= 4*n {
			break
		}
		time.Sleep(300 * time.Millisecond)
	}
	if len(seeds) != n {
		t.Fatalf("curl spans: %v", seeds)
	}
	for _, seed := range seeds {
		resp, err := http.Get(fmt.Sprintf("%s/api/v1/traces?span=%d", st.api, num(t, seed["_id"])))
		if err != nil {
			t.Fatal(err)
		}
		var tr trace.Trace
		err = json.NewDecoder(resp.Body).Decode(&tr)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("trace around %v: %s %v", seed["_id"], resp.Status, err)
		}
		byID := map[uint64]trace.Span{}
		var curl, nginxIn, nginxOut, backend *trace.Span
		for i := range tr.Spans {
			s := &tr.Spans[i]
			byID[s.ID] = *s
			if s.RequestResource != str(seed["request_resource"]) {
				t.Errorf("span of another request in the trace of %s: %+v", seed["request_resource"], *s)
			}
			switch {
			case s.ObservationPoint == "c-p" && s.ServerPort == uint16(nginxPort):
				curl = s
			case s.ObservationPoint == "s-p" && s.ServerPort == uint16(nginxPort):
				nginxIn = s
			case s.ObservationPoint == "c-p" && s.ServerPort == uint16(backendPort):
				nginxOut = s
			case s.ObservationPoint == "s-p" && s.ServerPort == uint16(backendPort):
				backend = s
			}
		}
		if len(tr.Spans) != 4 || curl == nil || nginxIn == nil || nginxOut == nil || backend == nil {
			var b []byte
			b, _ = json.MarshalIndent(tr, "", " ")
			t.Fatalf("trace of %s: want curl → nginx → nginx upstream → backend, got %d spans:\n%s", seed["request_resource"], len(tr.Spans), b)
		}
		if curl.ParentID != 0 || nginxIn.ParentID != curl.ID || nginxOut.ParentID != nginxIn.ID || backend.ParentID != nginxOut.ID {
			t.Errorf("parents: curl %d (root), nginx in %d → %d, nginx out %d → %d, backend %d → %d",
				curl.ParentID, nginxIn.ParentID, curl.ID, nginxOut.ParentID, nginxIn.ID, backend.ParentID, nginxOut.ID)
		}
		if nginxIn.Link != trace.RuleTCPSeq || backend.Link != trace.RuleTCPSeq || nginxOut.Link != trace.RuleSyscall {
			t.Errorf("links: nginx in %s, nginx out %s, backend %s", nginxIn.Link, nginxOut.Link, backend.Link)
		}
	}
}
