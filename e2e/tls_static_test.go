package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sightline-io/sightline/agent/tlstrack"
)

// buildStaticSSLClient compiles testdata/tls/static/client.c with OpenSSL
// linked in statically, and a stripped copy.
func buildStaticSSLClient(t *testing.T) (withSymbols, stripped string) {
	t.Helper()
	const libdir = "/usr/lib/x86_64-linux-gnu"
	dir := t.TempDir()
	withSymbols = filepath.Join(dir, "static-client")
	out, err := exec.Command("gcc", "-O2", "-o", withSymbols, "testdata/tls/static/client.c",
		filepath.Join(libdir, "libssl.a"), filepath.Join(libdir, "libcrypto.a"), "-ldl", "-lpthread").CombinedOutput()
	if err != nil {
		t.Fatalf("gcc (needs libssl-dev: scripts/install-test-deps.sh): %v\n%s", err, out)
	}
	stripped = filepath.Join(dir, "static-client-stripped")
	if out, err := exec.Command("strip", "-o", stripped, withSymbols).CombinedOutput(); err != nil {
		t.Fatalf("strip: %v\n%s", err, out)
	}
	return withSymbols, stripped
}

// uncoveredReason is the reason /debug/tls gives for pid's file that is not
// probed ("" while there is none).
func (s *tlsStack) uncoveredReason(t *testing.T, pid int) string {
	t.Helper()
	rec := httptest.NewRecorder()
	s.agent.TLSCoverage().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/debug/tls", nil))
	var c tlstrack.Coverage
	if err := json.Unmarshal(rec.Body.Bytes(), &c); err != nil {
		t.Fatalf("/debug/tls: %v: %s", err, rec.Body.Bytes())
	}
	for _, p := range c.Processes {
		if int(p.PID) == pid && len(p.Uncovered) > 0 {
			return p.Uncovered[0].Reason
		}
	}
	return ""
}

// TestTLSStaticOpenSSL: a C client with OpenSSL linked in statically is
// probed through its own symbol table (no libssl.so mapped), and its HTTPS
// request to a Go server comes out as a TLS row. Its stripped copy cannot
// be probed: /debug/tls says why, and only the (covered) Go server's side
// of its request is stored.
func TestTLSStaticOpenSSL(t *testing.T) {
	requireRootAndTools(t, "gcc", "strip")
	st := startTLSStack(t)
	certs := writeTestCerts(t, t.TempDir())
	port, server := startHTTPSServer(t, certs)
	st.waitCovered(t, "Go HTTPS server", server.pid())
	client, stripped := buildStaticSSLClient(t)
	portArg := strconv.Itoa(port)

	c := startProc(t, nil, client, "127.0.0.1", portArg, "/api/users/static-linked")
	c.waitOutput(t, "ready")
	st.waitCovered(t, "statically linked client", c.pid())
	if out := c.finish(t, "go\n"); !strings.Contains(out, "HTTP/1.1 200") {
		t.Fatalf("static client: %q", out)
	}
	cond := fmt.Sprintf("server_port = %d", port)
	rows := st.checkTLSRows(t, cond, []rowWant{
		{name: "static client c-p", op: "c-p", proto: "HTTP", port: port, method: "GET", resource: "/api/users/static-linked", pid: c.pid(), code: 200},
		{name: "Go server s-p", op: "s-p", proto: "HTTP", port: port, method: "GET", resource: "/api/users/static-linked", pid: server.pid(), code: 200},
	})
	if rows[0] != nil && rows[1] != nil {
		sameHop(t, "static client → Go server", rows[0], rows[1])
	}

	sc := startProc(t, nil, stripped, "127.0.0.1", portArg, "/api/users/static-stripped")
	sc.waitOutput(t, "ready")
	deadline := time.Now().Add(20 * time.Second)
	reason := ""
	for reason = st.uncoveredReason(t, sc.pid()); reason == ""; reason = st.uncoveredReason(t, sc.pid()) {
		if time.Now().After(deadline) {
			t.Fatalf("stripped static client not reported uncovered; coverage: %s", st.coverage(t))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.HasPrefix(reason, "no SSL symbols") || st.agent.TLSCovered(uint32(sc.pid())) {
		t.Errorf("stripped static client: reason %q, covered %v", reason, st.agent.TLSCovered(uint32(sc.pid())))
	}
	if out := sc.finish(t, "go\n"); !strings.Contains(out, "HTTP/1.1 200") {
		t.Fatalf("stripped static client: %q", out)
	}
	st.checkTLSRows(t, cond, []rowWant{
		{name: "Go server s-p (stripped client)", op: "s-p", proto: "HTTP", port: port, method: "GET", resource: "/api/users/static-stripped", pid: server.pid(), code: 200},
	})
	for _, r := range st.query(t, fmt.Sprintf("SELECT process_id_0 FROM l7_flow_log WHERE %s AND observation_point = 'c-p'", cond)) {
		if num(t, r["process_id_0"]) == int64(sc.pid()) {
			t.Errorf("a client row from the stripped client, which cannot be probed: %v", r)
		}
	}
	_ = os.Remove(stripped)
}
