package socktrace

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/sightline-io/sightline/agent/capture"
)

// TestFutexHandoffThreadPool: a Python ThreadPoolExecutor worker's call
// carries the id of the request whose handler thread submitted the work
// (the futex wake that woke the idle worker hands it over). One request at
// a time, every call is linked; with requests overlapping in the pool, or a
// backlog (workers taking queued jobs without sleeping), a worker cannot
// tell whose job it took: calls may carry no id, but never another
// request's, whether the handler waits for its job untimed or with a
// timeout (a timed wait: only its length tells it from GIL polling).
func TestFutexHandoffThreadPool(t *testing.T) {
	if _, err := exec.LookPath("python3"); err != nil {
		t.Fatal("python3 is needed (see scripts/install-test-deps.sh)")
	}
	tr, rec := startTracer(t, Config{MaxPayload: testMaxPayload})
	rec.mu.Lock()
	rec.keepData = func(s *capture.Segment) bool {
		return bytes.HasPrefix(s.Data, []byte("GET /r/")) || bytes.HasPrefix(s.Data, []byte("work "))
	}
	rec.mu.Unlock()
	down, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer down.Close()
	go func() {
		for {
			c, err := down.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				if _, err := bufio.NewReader(c).ReadString('\n'); err == nil {
					_, _ = c.Write([]byte("done\n"))
				}
			}()
		}
	}()
	for _, tc := range []struct {
		name              string
		workers, inflight int
		base              int
		all               bool
		timeout           string // result(timeout=...) in seconds; "" waits untimed
	}{
		{"one request at a time", 4, 1, 100, true, ""},
		{"concurrent", 4, 4, 300, false, ""},
		{"backlog", 2, 12, 500, false, ""},
		{"one request at a time, timed wait", 4, 1, 700, true, "20"},
		{"concurrent, timed wait", 4, 4, 900, false, "20"},
		{"backlog, timed wait", 2, 12, 1100, false, "20"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := []string{"testdata/pool_server.py", fmt.Sprint(port(down.Addr())), fmt.Sprint(tc.workers)}
			if tc.timeout != "" {
				args = append(args, tc.timeout)
			}
			cmd := exec.Command("python3", args...)
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
			line, err := bufio.NewReader(out).ReadString('\n')
			if err != nil || !strings.HasPrefix(line, "listening ") {
				t.Fatalf("python server: %q %v", line, err)
			}
			addr := "127.0.0.1:" + strings.TrimSpace(strings.TrimPrefix(line, "listening "))
			pid := uint32(cmd.Process.Pid)
			const rounds = 5
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: tc.inflight}}
			// The pool starts its worker threads on the first jobs (no
			// handoff: a new thread finds its job queued): warm it up.
			for i := range tc.workers {
				resp, err := client.Get(fmt.Sprintf("http://%s/r/%d", addr, 900+i))
				if err != nil {
					t.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			for r := range rounds {
				var wg sync.WaitGroup
				for i := range tc.inflight {
					wg.Add(1)
					go func() {
						defer wg.Done()
						resp, err := client.Get(fmt.Sprintf("http://%s/r/%d", addr, tc.base+r*tc.inflight+i))
						if err != nil {
							t.Error(err)
							return
						}
						_, _ = io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
					}()
				}
				wg.Wait()
			}
			n := rounds * tc.inflight
			reqRe, callRe := regexp.MustCompile(`^GET /r/(\d+) `), regexp.MustCompile(`^work (\d+)\n`)
			reqs, calls := map[string]uint64{}, map[string]uint64{}
			inRound := func(b []byte) bool {
				v, err := strconv.Atoi(string(b))
				return err == nil && v >= tc.base && v < tc.base+n
			}
			rec.wait(t, "all calls", func() bool {
				for i := range rec.segs {
					s := &rec.segs[i]
					if s.PID != pid {
						continue
					}
					if m := reqRe.FindSubmatch(s.Data); m != nil && s.Dir == capture.BtoA {
						reqs[string(m[1])] = s.SyscallTraceID
					}
					if m := callRe.FindSubmatch(s.Data); m != nil && s.Dir == capture.AtoB && inRound(m[1]) {
						calls[string(m[1])] = s.SyscallTraceID
					}
				}
				return len(reqs) >= n && len(calls) == n
			})
			owner := map[uint64]string{}
			for k, id := range reqs {
				owner[id] = k
			}
			linked := 0
			for k, id := range calls {
				switch {
				case id == reqs[k] && id != 0:
					linked++
				case id != 0:
					t.Errorf("call of request %s carries request %q's id", k, owner[id])
				}
			}
			st := tr.Stats()
			t.Logf("%s: %d of %d worker calls carry their request's id (so far: futex handoffs %d, waits for silently queued jobs %d)",
				tc.name, linked, n, st.FutexHandoff, st.FutexQueuedWait)
			// A backlog queues jobs behind busy workers without a wake;
			// their handlers' timed waits must be seen, or the next wake
			// would hand its id to a worker that takes an older job.
			if tc.timeout != "" && tc.workers < tc.inflight && st.FutexQueuedWait == 0 {
				t.Errorf("no timed wait for a silently queued job seen")
			}
			if tc.all && linked != n {
				t.Errorf("%d of %d linked", linked, n)
			}
		})
	}
}
