package livetest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/sightline-io/sightline/agent/l7/http1"
	"github.com/sightline-io/sightline/flowlog"
)

// serveEnv makes the test binary an HTTP server: the agent never traces its
// own process, so the server must be another one.
const serveEnv = "SIGHTLINE_LIVETEST_SERVE"

// childEnv makes the test binary a child that fails when its value is
// "fail" (see TestChild).
const childEnv = "SIGHTLINE_LIVETEST_CHILD"

func TestMain(m *testing.M) {
	Child(serveEnv, func(addr string) error {
		http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hi") })
		return http.ListenAndServe(addr, nil)
	})
	Child(childEnv, func(v string) error {
		if v == "fail" {
			return errors.New("child failed")
		}
		return nil
	})
	os.Exit(m.Run())
}

// TestChild runs the test binary as a child that succeeds, then as one that
// fails: it must exit 0, then 1 with the error on stderr, and run no test.
func TestChild(t *testing.T) {
	for _, v := range []string{"ok", "fail"} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestChild$", "-test.v")
		cmd.Env = append(os.Environ(), childEnv+"="+v)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		code := cmd.ProcessState.ExitCode()
		if want := map[string]int{"ok": 0, "fail": 1}[v]; code != want {
			t.Errorf("%s: exit %d (%v), want %d", v, code, err, want)
		}
		if v == "fail" && !strings.Contains(stderr.String(), "child failed") {
			t.Errorf("stderr %q", stderr.String())
		}
		if strings.Contains(stdout.String(), "RUN") {
			t.Errorf("%s: the child ran tests:\n%s", v, stdout.String())
		}
	}
}

func TestAgentSeesHTTP(t *testing.T) {
	a := StartAgent(t, http1.New())
	port := FreePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	StartEnv(t, []string{serveEnv + "=" + addr}, os.Args[0])
	WaitTCP(t, addr, 10*time.Second)
	resp, err := http.Get("http://" + addr + "/hello")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	rows := a.WaitRows(t, "GET /hello", 1, 5*time.Second, func(r *flowlog.L7FlowLog) bool {
		return int(r.ServerPort) == port && r.RequestResource == "/hello"
	})
	r := rows[0]
	if r.ObservationPoint != flowlog.ObsServerProcess || r.RequestType != "GET" || r.ResponseCode == nil || *r.ResponseCode != 200 {
		t.Fatalf("row:\n%s", Describe(rows))
	}
}
