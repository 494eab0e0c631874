package rpctest

import (
	"fmt"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/sightline-io/sightline/internal/livetest"
)

// StartServer starts the test binary as proto's server on a free port (the
// package's TestMain must call Main) and returns the port once it accepts.
func StartServer(t testing.TB, proto string) int {
	t.Helper()
	port := livetest.FreePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	livetest.StartEnv(t, []string{ServeEnv + "=" + proto + "@" + addr}, os.Args[0])
	livetest.WaitTCP(t, addr, 30*time.Second)
	return port
}

// RunClientProcess runs the scenario in a separate process (the test binary
// again), so the agent sees the client's syscalls too.
func RunClientProcess(t testing.TB, proto string, port int) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s@127.0.0.1:%d", ClientEnv, proto, port))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("rpctest: %s client: %v\n%s", proto, err, out)
	}
}
