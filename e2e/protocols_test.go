package e2e

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sightline-io/sightline/internal/livetest"
)

// TestProtocolsStored runs the default protocol set (kernel hints, inference
// order and all) against real Redis and DNS servers and reads the rows back
// from the store with SQL: the path a user takes.
func TestProtocolsStored(t *testing.T) {
	requireRootAndTools(t, "redis-server", "redis-cli", "dnsmasq", "dig")
	s := startStack(t)

	rport := freePort(t)
	livetest.Start(t, "redis-server", "--port", strconv.Itoa(rport), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", t.TempDir())
	livetest.WaitTCP(t, fmt.Sprintf("127.0.0.1:%d", rport), 20*time.Second)
	cli := func(args ...string) string {
		out, _ := exec.Command("redis-cli", append([]string{"-p", strconv.Itoa(rport)}, args...)...).CombinedOutput()
		return string(out)
	}
	cli("SET", "user:1", "alice")
	cli("GET", "user:1")
	cli("INCR", "user:1") // a string: WRONGTYPE-class error

	dport := freePort(t)
	livetest.Start(t, "dnsmasq", "--no-daemon", "--no-resolv", "--no-hosts", "--user=root",
		"--port="+strconv.Itoa(dport), "--listen-address=127.0.0.1", "--bind-interfaces",
		"--pid-file="+filepath.Join(t.TempDir(), "pid"), "--address=/svc.e2e.test/10.1.2.3")
	time.Sleep(500 * time.Millisecond) // dnsmasq binds UDP before it prints anything
	out, err := exec.Command("dig", "@127.0.0.1", "-p", strconv.Itoa(dport), "+tries=5", "+time=1", "svc.e2e.test", "A").CombinedOutput()
	if err != nil {
		t.Fatalf("dig: %v\n%s", err, out)
	}

	type want struct{ sql, what string }
	deadline := time.Now().Add(15 * time.Second)
	for _, w := range []want{
		{fmt.Sprintf(`SELECT request_type, request_resource, response_status, response_exception FROM l7_flow_log
			WHERE l7_protocol = 80 AND server_port = %d AND observation_point = 's-p' ORDER BY start_time`, rport), "redis"},
		{fmt.Sprintf(`SELECT request_type, request_domain, response_code, response_result, protocol FROM l7_flow_log
			WHERE l7_protocol = 120 AND server_port = %d AND observation_point = 's-p'`, dport), "dns"},
	} {
		var rows []map[string]any
		for {
			rows = s.query(t, w.sql)
			if (w.what == "redis" && len(rows) >= 3) || (w.what == "dns" && len(rows) >= 1) || time.Now().After(deadline) {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		switch w.what {
		case "redis":
			if len(rows) < 3 {
				t.Fatalf("redis rows: %v", rows)
			}
			got := fmt.Sprint(str(rows[0]["request_type"]), " ", str(rows[1]["request_type"]), " ", str(rows[2]["request_type"]))
			if got != "SET GET INCR" {
				t.Errorf("redis commands %q, want SET GET INCR; rows %v", got, rows)
			}
			if num(t, rows[0]["response_status"]) != 0 || num(t, rows[2]["response_status"]) != 4 || str(rows[2]["response_exception"]) == "" {
				t.Errorf("redis statuses: %v", rows)
			}
			for _, r := range rows {
				if res := str(r["request_resource"]); res != "" && strings.Contains(res, "alice") {
					t.Errorf("value stored unmasked: %q", res)
				}
			}
		case "dns":
			if len(rows) < 1 {
				t.Fatalf("dns rows: %v", rows)
			}
			r := rows[0]
			if str(r["request_type"]) != "A" || str(r["request_domain"]) != "svc.e2e.test" || num(t, r["response_code"]) != 0 ||
				!strings.Contains(str(r["response_result"]), "10.1.2.3") || num(t, r["protocol"]) != 17 {
				t.Errorf("dns row: %v", r)
			}
		}
	}
}
