package livetest

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/sightline-io/sightline/agent/l7/http1"
	"github.com/sightline-io/sightline/flowlog"
)

// serveEnv makes the test binary an HTTP server: the agent never traces its
// own process, so the server must be another one.
const serveEnv = "SIGHTLINE_LIVETEST_SERVE"

func TestMain(m *testing.M) {
	if addr := os.Getenv(serveEnv); addr != "" {
		http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hi") })
		if err := http.ListenAndServe(addr, nil); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	os.Exit(m.Run())
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
