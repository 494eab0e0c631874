package dns_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/agent/l7/dns"
	"github.com/sightline-io/sightline/flowlog"
	"github.com/sightline-io/sightline/internal/livetest"
)

// resolveEnv makes the test binary a Go-resolver client ("port name..."):
// the agent never traces its own process.
const resolveEnv = "SIGHTLINE_DNS_RESOLVE"

func TestMain(m *testing.M) {
	livetest.Child(resolveEnv, func(v string) error { return resolve(strings.Fields(v)) })
	os.Exit(m.Run())
}

// resolve looks names up with the pure-Go resolver against 127.0.0.1:port.
func resolve(args []string) error {
	addr := "127.0.0.1:" + args[0]
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, name := range args[1:] {
		addrs, err := r.LookupHost(ctx, name)
		if err != nil {
			return fmt.Errorf("lookup %s: %w", name, err)
		}
		fmt.Println(name, addrs)
	}
	return nil
}

// dnsmasqArgs are the arguments of a private dnsmasq answering from its
// command line only (no upstream, no /etc files).
func dnsmasqArgs(dir string, port int) []string {
	return []string{"--no-daemon", "--conf-file=/dev/null", "--no-resolv", "--no-hosts", "--user=root",
		"--port=" + strconv.Itoa(port), "--listen-address=127.0.0.1", "--bind-interfaces",
		"--pid-file=" + filepath.Join(dir, "dnsmasq.pid"),
		"--address=/example.test/10.1.2.3", "--address=/nx.test/",
		"--host-record=svc.test,10.9.9.9,fd00::9", "--host-record=getent.test,10.7.7.7", "--host-record=go1.test,10.5.5.5,fd00::5",
		"--cname=alias.test,svc.test"}
}

var digID = regexp.MustCompile(`status: (\w+), id: (\d+)`)

// dig runs dig and returns the status and id of each answer it printed.
func dig(t *testing.T, port int, args ...string) (status []string, ids []uint64) {
	t.Helper()
	all := append([]string{"@127.0.0.1", "-p", strconv.Itoa(port), "+tries=1", "+time=5"}, args...)
	out := livetest.Run(t, "dig", all...)
	for _, m := range digID.FindAllStringSubmatch(out, -1) {
		id, _ := strconv.ParseUint(m[2], 10, 16)
		status, ids = append(status, m[1]), append(ids, id)
	}
	if len(ids) == 0 {
		t.Fatalf("dig %v printed no header:\n%s", args, out)
	}
	return status, ids
}

type want struct {
	qtype, name string
	id          uint64
	l4          uint8
	code        int32
	status      flowlog.ResponseStatus
	exception   string
	result      string
}

func TestLiveDNS(t *testing.T) {
	livetest.RequireTools(t, "dnsmasq", "dig")
	a := livetest.StartAgent(t, dns.New(l7.Config{}))
	port := livetest.FreePort(t)
	stop := livetest.Record(t, "dns.pcap", fmt.Sprintf("port %d", port))
	livetest.Start(t, "dnsmasq", dnsmasqArgs(t.TempDir(), port)...)
	livetest.WaitTCP(t, fmt.Sprintf("127.0.0.1:%d", port), 30*time.Second)

	var wants []want
	add := func(qtype, name string, l4 uint8, code int32, st flowlog.ResponseStatus, exc, result string, args ...string) {
		_, ids := dig(t, port, args...)
		wants = append(wants, want{qtype, name, ids[0], l4, code, st, exc, result})
	}
	add("A", "svc.test", 17, 0, flowlog.StatusSuccess, "", "A 10.9.9.9", "svc.test", "A")
	add("AAAA", "svc.test", 17, 0, flowlog.StatusSuccess, "", "AAAA fd00::9", "svc.test", "AAAA")
	add("A", "alias.test", 17, 0, flowlog.StatusSuccess, "", "CNAME svc.test;A 10.9.9.9", "alias.test", "A")
	add("A", "www.example.test", 17, 0, flowlog.StatusSuccess, "", "A 10.1.2.3", "www.example.test", "A")
	add("A", "a.nx.test", 17, 3, flowlog.StatusClientError, "NXDOMAIN", "", "a.nx.test", "A")
	add("MX", "unknown.zz", 17, 5, flowlog.StatusServerError, "REFUSED", "", "unknown.zz", "MX")
	// Two queries on one TCP connection.
	_, ids := dig(t, port, "+tcp", "+keepopen", "tcp1.example.test", "A", "svc.test", "AAAA")
	if len(ids) != 2 {
		t.Fatalf("dig +tcp +keepopen answered %d queries", len(ids))
	}
	wants = append(wants,
		want{"A", "tcp1.example.test", ids[0], 6, 0, flowlog.StatusSuccess, "", "A 10.1.2.3"},
		want{"AAAA", "svc.test", ids[1], 6, 0, flowlog.StatusSuccess, "", "AAAA fd00::9"})

	// The Go resolver (A and AAAA over UDP) from another process.
	livetest.StartEnv(t, []string{fmt.Sprintf("%s=%d go1.test", resolveEnv, port)}, os.Args[0], "-test.run=XXX").Cmd.Wait()

	for _, w := range wants {
		for _, obs := range []string{flowlog.ObsClientProcess, flowlog.ObsServerProcess} {
			rows := a.WaitRows(t, fmt.Sprintf("%s %s %s id %d", obs, w.qtype, w.name, w.id), 1, 20*time.Second, func(r *flowlog.L7FlowLog) bool {
				return int(r.ServerPort) == port && r.ObservationPoint == obs && r.RequestID != nil && *r.RequestID == w.id &&
					r.RequestDomain == w.name && r.RequestType == w.qtype && r.Protocol == w.l4
			})
			checkRow(t, rows[0], w)
		}
	}
	for _, qtype := range []string{"A", "AAAA"} {
		rows := a.WaitRows(t, "go resolver "+qtype, 2, 20*time.Second, func(r *flowlog.L7FlowLog) bool {
			return int(r.ServerPort) == port && r.RequestDomain == "go1.test" && r.RequestType == qtype
		})
		for _, r := range rows {
			if r.Protocol != 17 || r.Type != flowlog.TypeSession || r.ResponseStatus != flowlog.StatusSuccess {
				t.Errorf("go resolver row:\n%s", livetest.Describe(rows))
			}
		}
	}
	stop()

	// One agent for both parts: loading the eBPF programs is the slow step.
	checkGetent(t, a)
}

func checkRow(t *testing.T, r flowlog.L7FlowLog, w want) {
	t.Helper()
	ok := r.L7Protocol == flowlog.L7DNS && r.L7ProtocolStr == "DNS" && r.Type == flowlog.TypeSession &&
		r.RequestResource == w.name && r.Endpoint == w.name &&
		r.ResponseCode != nil && *r.ResponseCode == w.code && r.ResponseStatus == w.status &&
		r.ResponseException == w.exception && r.ResponseResult == w.result && r.ResponseDuration > 0 &&
		r.RequestLength > 0 && r.ResponseLength > 0
	if !ok {
		t.Errorf("want %+v, row:\n%s result=%q", w, livetest.Describe([]flowlog.L7FlowLog{r}), r.ResponseResult)
	}
}

// checkGetent resolves with glibc (getent) through a resolv.conf of our
// own: getent reads /etc/resolv.conf, which the test must not change, so it
// runs in a new mount and network namespace where a temporary resolv.conf
// is bind-mounted over it and dnsmasq listens on 127.0.0.1:53. The
// tracepoints are global, so the agent sees that namespace too.
func checkGetent(t *testing.T, a *livetest.Agent) {
	livetest.RequireTools(t, "getent", "unshare", "ip", "mount")
	dir := t.TempDir()
	resolvConf := filepath.Join(dir, "resolv.conf")
	if err := os.WriteFile(resolvConf, []byte("nameserver 127.0.0.1\noptions timeout:2 attempts:2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	script := fmt.Sprintf(`set -e
ip link set lo up
dnsmasq %s &
pid=$!
trap 'kill $pid' EXIT
mount --bind %s /etc/resolv.conf
i=0
until getent hosts getent.test; do i=$((i+1)); [ $i -lt 100 ]; sleep 0.1; done
getent hosts svc.test
`, strings.Join(dnsmasqArgs(dir, 53), " "), resolvConf)
	out := livetest.Run(t, "unshare", "-m", "-n", "sh", "-c", script)
	if !strings.Contains(out, "10.7.7.7") {
		t.Fatalf("getent output:\n%s", out)
	}
	for _, obs := range []string{flowlog.ObsClientProcess, flowlog.ObsServerProcess} {
		rows := a.WaitRows(t, "getent A "+obs, 1, 20*time.Second, func(r *flowlog.L7FlowLog) bool {
			return r.ServerPort == 53 && r.RequestDomain == "getent.test" && r.RequestType == "A" &&
				r.ObservationPoint == obs && r.ResponseStatus == flowlog.StatusSuccess
		})
		r := rows[0]
		if r.Protocol != 17 || r.ResponseResult != "A 10.7.7.7" || r.RequestID == nil || r.ResponseDuration == 0 ||
			r.ProcessKName0+r.ProcessKName1 == "" {
			t.Errorf("getent row:\n%s result=%q", livetest.Describe(rows), r.ResponseResult)
		}
	}
}
