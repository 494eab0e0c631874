package nginxconf

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestConfigAccepted: nginx -t accepts what String writes, with and without
// the optional directives.
func TestConfigAccepted(t *testing.T) {
	if _, err := exec.LookPath("nginx"); err != nil {
		t.Fatal("nginx is needed (scripts/install-test-deps.sh)")
	}
	for _, c := range []Config{
		{HTTP: "  server { listen 127.0.0.1:1; }\n"},
		{Workers: 2, WorkerConnections: 4096, RlimitNofile: 8192,
			HTTP: "  upstream u { server 127.0.0.1:2; }\n  server { listen 127.0.0.1:1; location / { proxy_pass http://u; } }"},
	} {
		c.Dir = t.TempDir()
		path, err := Write(c)
		if err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command("nginx", "-t", "-c", path, "-p", c.Dir).CombinedOutput(); err != nil {
			t.Errorf("nginx -t: %v\n%s\n%s", err, out, c)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), "worker_rlimit_nofile") != (c.RlimitNofile > 0) {
			t.Errorf("worker_rlimit_nofile with RlimitNofile %d:\n%s", c.RlimitNofile, b)
		}
	}
}
