package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// buildBinary builds cmd/sightline into a temporary directory.
func buildBinary(t *testing.T) string {
	t.Helper()
	goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
	bin := filepath.Join(t.TempDir(), "sightline")
	out, err := exec.Command(goTool, "build", "-o", bin, "../cmd/sightline").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// startCommand runs bin with args and returns once it printed a line
// containing ready on stdout.
func startCommand(t *testing.T, bin, ready string, args ...string) (*exec.Cmd, *bytes.Buffer) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatalf("%s exited before %q; stderr:\n%s", filepath.Base(bin), ready, stderr.String())
			}
			if strings.Contains(line, ready) {
				go func() {
					for range lines {
					}
				}()
				return cmd, &stderr
			}
		case <-timeout:
			t.Fatalf("no %q within 30s; stderr:\n%s", ready, stderr.String())
		}
	}
}

// TestUpCommand runs the real binary the way the README does: `sightline up`,
// curl traffic, `sightline query`; then SIGINT right after a request, and
// the row it produced must be in the store when a server reopens it.
func TestUpCommand(t *testing.T) {
	requireRootAndTools(t, "curl")
	bin := buildBinary(t)
	dataDir := t.TempDir()
	listen := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	grpcListen := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	up, upStderr := startCommand(t, bin, "API on http://"+listen,
		"up", "--data-dir", dataDir, "--listen", listen, "--grpc-listen", grpcListen)

	backendPort, _ := startBackend(t)
	target := fmt.Sprintf("http://127.0.0.1:%d/api/users/42", backendPort)
	if out, err := exec.Command("curl", "-sS", "-o", "/dev/null", target).CombinedOutput(); err != nil {
		t.Fatalf("curl: %v %s", err, out)
	}
	sent := time.Now()
	query := func(server, sql string) string {
		out, err := exec.Command(bin, "query", "--server", "http://"+server, "--format", "csv", sql).CombinedOutput()
		if err != nil {
			t.Fatalf("sightline query: %v\n%s", err, out)
		}
		return string(out)
	}
	sqlFor := func(path string) string {
		return fmt.Sprintf(`SELECT request_type, request_resource, response_code, observation_point
		  FROM l7_flow_log WHERE request_resource = '%s' AND server_port = %d ORDER BY observation_point`, path, backendPort)
	}
	// curl's client row and the backend's server row.
	want := "request_type,request_resource,response_code,observation_point\n" +
		"GET,/api/users/42,200,c-p\nGET,/api/users/42,200,s-p\n"
	var got string
	for time.Since(sent) < 5*time.Second {
		if got = query(listen, sqlFor("/api/users/42")); got == want {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got != want {
		t.Fatalf("rows 5s after curl:\n%s\nwant\n%s", got, want)
	}
	t.Logf("rows visible %.2fs after the request", time.Since(sent).Seconds())

	// The metrics endpoint of up serves the agent's and the server's counters.
	resp, err := http.Get("http://" + listen + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, name := range []string{"sightline_store_rows_inserted_total", "sightline_agent_socktrace_events_read_total",
		"sightline_agent_session_rows_session_total", "sightline_wire_receiver_rows_inserted_total", "sightline_api_queries_total"} {
		if !bytes.Contains(body, []byte("\n"+name+" ")) {
			t.Errorf("/metrics of up lacks %s", name)
		}
	}

	// A request immediately followed by SIGINT is flushed, not lost.
	target = fmt.Sprintf("http://127.0.0.1:%d/api/users/43", backendPort)
	if out, err := exec.Command("curl", "-sS", "-o", "/dev/null", target).CombinedOutput(); err != nil {
		t.Fatalf("curl: %v %s", err, out)
	}
	if err := up.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	waitDone := make(chan error, 1)
	go func() { waitDone <- up.Wait() }()
	select {
	case err := <-waitDone:
		if err != nil {
			t.Fatalf("up exited with %v; stderr:\n%s", err, upStderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("up did not stop within 30s of SIGINT; stderr:\n%s", upStderr.String())
	}

	startCommand(t, bin, "API on http://"+listen,
		"server", "--data-dir", dataDir, "--listen", listen, "--grpc-listen", grpcListen)
	want = strings.ReplaceAll(want, "/api/users/42", "/api/users/43")
	if got := query(listen, sqlFor("/api/users/43")); got != want {
		t.Errorf("after SIGINT and restart:\n%s\nwant\n%s", got, want)
	}

}
