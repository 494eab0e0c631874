package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sightline-io/sightline/agent"
	"github.com/sightline-io/sightline/flowlog"
	"github.com/sightline-io/sightline/internal/livetest"
)

// ip runs an iproute2 command, failing the test on error.
func ip(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// TestDNSInOtherNamespaceFromPackets: a resolver in another network
// namespace, queried from this one. The packets on the veth give DNS rows
// at the client side of the wire (observation point c, signal_source 0)
// whose UDP identity matches the l4_flow_log row of the same exchange —
// with no help from the process hooks.
func TestDNSInOtherNamespaceFromPackets(t *testing.T) {
	requireRootAndTools(t, "ip", "dnsmasq", "dig")
	id := os.Getpid() % 100000
	ns := fmt.Sprintf("sl-dns-%d", id)
	hostIf, nsIf := fmt.Sprintf("sldh%d", id), fmt.Sprintf("sldn%d", id)
	subnet := fmt.Sprintf("10.%d.%d", 100+id%100, (id/100)%250)
	ip(t, "netns", "add", ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	ip(t, "link", "add", hostIf, "type", "veth", "peer", "name", nsIf)
	t.Cleanup(func() { exec.Command("ip", "link", "del", hostIf).Run() })
	ip(t, "link", "set", nsIf, "netns", ns)
	ip(t, "addr", "add", subnet+".1/24", "dev", hostIf)
	ip(t, "link", "set", hostIf, "up")
	ip(t, "-n", ns, "addr", "add", subnet+".2/24", "dev", nsIf)
	ip(t, "-n", ns, "link", "set", nsIf, "up")
	ip(t, "-n", ns, "link", "set", "lo", "up")

	// Short periods: a UDP flow is otherwise reported at the next minute.
	s := startStackWith(t, agent.Config{Packets: agent.PacketConfig{Interfaces: []string{hostIf}, L7: true, ReportEvery: 2 * time.Second}})
	livetest.Start(t, "ip", "netns", "exec", ns, "dnsmasq", "--no-daemon", "--no-resolv", "--no-hosts", "--user=root",
		"--listen-address="+subnet+".2", "--bind-interfaces", "--pid-file="+filepath.Join(t.TempDir(), "pid"),
		"--address=/api.netns.test/10.9.8.7")
	var out []byte
	var err error
	for i := 0; i < 20; i++ { // dnsmasq binds before it answers; retry until it does
		out, err = exec.Command("dig", "@"+subnet+".2", "+tries=1", "+time=1", "+short", "api.netns.test", "A").CombinedOutput()
		if err == nil && strings.Contains(string(out), "10.9.8.7") {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	if !strings.Contains(string(out), "10.9.8.7") {
		t.Fatalf("dig: %v: %s", err, out)
	}

	deadline := time.Now().Add(20 * time.Second)
	var dns, flows []map[string]any
	for time.Now().Before(deadline) {
		dns = s.query(t, fmt.Sprintf(`SELECT observation_point, request_type, request_domain, response_code, response_result,
			ip_0, client_port, ip_1, server_port, protocol FROM l7_flow_log
			WHERE signal_source = %d AND l7_protocol = %d AND ip_1 = '%s.2' AND request_domain = 'api.netns.test' AND response_code = 0`,
			flowlog.SourcePacket, flowlog.L7DNS, subnet))
		if len(dns) > 0 {
			flows = s.query(t, fmt.Sprintf(`SELECT ip_0, client_port, ip_1, server_port, protocol, packet_tx, packet_rx, observation_point
				FROM l4_flow_log WHERE ip_1 = '%s.2' AND server_port = 53 AND client_port = %d`, subnet, num(t, dns[0]["client_port"])))
			if len(flows) > 0 {
				break
			}
		}
		time.Sleep(300 * time.Millisecond)
	}
	if len(dns) == 0 || len(flows) == 0 {
		t.Fatalf("dns rows %v, flows %v", dns, flows)
	}
	d, f := dns[0], flows[0]
	if str(d["observation_point"]) != "c" || str(d["request_type"]) != "A" || !strings.Contains(str(d["response_result"]), "10.9.8.7") ||
		str(d["ip_0"]) != subnet+".1" || num(t, d["server_port"]) != 53 || num(t, d["protocol"]) != 17 {
		t.Errorf("dns row %v", d)
	}
	if str(f["ip_0"]) != str(d["ip_0"]) || num(t, f["protocol"]) != 17 || num(t, f["packet_tx"]) < 1 || num(t, f["packet_rx"]) < 1 ||
		str(f["observation_point"]) != "c" {
		t.Errorf("flow row %v does not match dns row %v", f, d)
	}
}
