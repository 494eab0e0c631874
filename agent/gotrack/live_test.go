package gotrack_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sightline-io/sightline/agent/capture"
	"github.com/sightline-io/sightline/agent/capture/socktrace"
	"github.com/sightline-io/sightline/agent/gotrack"
	"github.com/sightline-io/sightline/internal/livetest"
)

const childEnv = "SIGHTLINE_GOTRACK_CHILD"

func TestMain(m *testing.M) {
	livetest.Child(childEnv, runChildServer)
	os.Exit(m.Run())
}

// runChildServer is a Go HTTP service: for GET /r/<n> it reaches a TCP
// downstream four ways: a goroutine it starts, a worker pool fed by a
// channel, net/http's client (whose write loop receives the request in a
// select), and, on a goroutine it starts, a connection taken from a pool
// channel that the previous user put back (which must not hand over the
// previous user's request).
func runChildServer(v string) error {
	var down, web string
	if _, err := fmt.Sscanf(v, "%s %s", &down, &web); err != nil {
		return fmt.Errorf("child args %q: %w", v, err)
	}
	send := func(msg string) error {
		c, err := net.Dial("tcp", down)
		if err != nil {
			return err
		}
		defer c.Close()
		if _, err := c.Write([]byte(msg + "\n")); err != nil {
			return err
		}
		_, err = bufio.NewReader(c).ReadString('\n')
		return err
	}
	type job struct {
		n    string
		done chan error
	}
	jobs := make(chan *job)
	for range 3 {
		go func() {
			for j := range jobs {
				j.done <- send("pool " + j.n)
			}
		}()
	}
	// A connection pool: a buffered channel of open connections, taken and
	// put back by each request (database drivers do this).
	pool := make(chan net.Conn, 2)
	for range cap(pool) {
		c, err := net.Dial("tcp", down)
		if err != nil {
			return err
		}
		pool <- c
	}
	pooled := func(msg string) error {
		c := <-pool
		defer func() { pool <- c }()
		if _, err := c.Write([]byte(msg + "\n")); err != nil {
			return err
		}
		b := make([]byte, 3)
		_, err := io.ReadFull(c, b)
		return err
	}
	client := &http.Client{Timeout: 10 * time.Second}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /r/{n}", func(w http.ResponseWriter, r *http.Request) {
		n := r.PathValue("n")
		spawned := make(chan error, 1)
		go func() { spawned <- send("spawn " + n) }()
		pooledErr := make(chan error, 1)
		go func() { pooledErr <- pooled("pooled " + n) }()
		j := &job{n: n, done: make(chan error, 1)}
		jobs <- j
		resp, err := client.Get("http://" + web + "/w/" + n)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		for _, e := range []error{<-spawned, <-j.done, err, <-pooledErr} {
			if e != nil {
				http.Error(w, e.Error(), http.StatusBadGateway)
				return
			}
		}
		fmt.Fprintln(w, "ok", n)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	fmt.Println("listening", ln.Addr().String())
	return http.Serve(ln, mux)
}

// recorder keeps the data segments of one process.
type recorder struct {
	mu   sync.Mutex
	pid  uint32
	segs []capture.Segment
}

func (r *recorder) Segment(s *capture.Segment) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if s.PID != r.pid || len(r.segs) > 100000 {
		return
	}
	c := *s
	c.Data = bytes.Clone(s.Data)
	r.segs = append(r.segs, c)
}
func (r *recorder) Closed(capture.Closed)         {}
func (r *recorder) ConnOpened(socktrace.ConnInfo) {}
func (r *recorder) ProcessExec(uint32)            {}
func (r *recorder) ProcessExit(uint32)            {}
func (r *recorder) ProcessFork(_, _ uint32)       {}

func (r *recorder) find(re *regexp.Regexp, dir capture.Direction) map[string]capture.Segment {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]capture.Segment{}
	for _, s := range r.segs {
		if s.Dir != dir {
			continue
		}
		if m := re.FindSubmatch(s.Data); m != nil {
			out[string(m[1])] = s
		}
	}
	return out
}

// TestGoroutineTracking: with the goroutine probes on, a Go service's
// downstream calls carry the syscall_trace_id of the request that caused
// them, even when a spawned goroutine, a pool worker or net/http's write
// loop makes them, for many concurrent requests at once.
func TestGoroutineTracking(t *testing.T) {
	livetest.RequireRoot(t)
	// Downstream TCP echo-ish server and an HTTP server, in this process.
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
				r := bufio.NewReader(c)
				for {
					if _, err := r.ReadString('\n'); err != nil {
						return
					}
					if _, err := c.Write([]byte("ok\n")); err != nil {
						return
					}
				}
			}()
		}
	}()
	web := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "w") })}
	wl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = web.Serve(wl) }()
	defer web.Close()

	tr, err := socktrace.New(socktrace.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	child := livetest.StartEnv(t, []string{childEnv + "=" + down.Addr().String() + " " + wl.Addr().String()}, self)
	addr := waitListening(t, child)
	pid := uint32(child.Cmd.Process.Pid)

	rec := &recorder{pid: pid}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	runDone := make(chan error, 1)
	go func() { runDone <- tr.Run(ctx, rec) }()
	track := gotrack.New(tr, gotrack.Config{})
	trackDone := make(chan error, 1)
	go func() { trackDone <- track.Run(ctx) }()
	waitFor(t, "child tracked", func() bool { return track.Tracked(pid) })

	// Pool workers parked in a receive since before the probes were
	// attached miss their first job (the receive's entry went unseen): warm
	// up with one round per worker, numbered from 1000 and not counted.
	get := func(i int) {
		resp, err := http.Get(fmt.Sprintf("http://%s/r/%d", addr, i))
		if err != nil {
			t.Error(err)
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("request %d: %d %s", i, resp.StatusCode, b)
		}
	}
	for i := range 6 {
		get(1000 + i)
	}
	const n = 40
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			get(i)
		}()
	}
	wg.Wait()
	// The ring buffer's last events: wait until every request and call is in.
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if len(rec.find(regexp.MustCompile(`^GET /r/(\d{1,2}) `), capture.BtoA)) == n &&
			len(rec.find(regexp.MustCompile(`^pooled (\d{1,2})\n`), capture.AtoB)) == n {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	cancel()
	<-runDone
	<-trackDone

	reqs := rec.find(regexp.MustCompile(`^GET /r/(\d{1,2}) `), capture.BtoA)
	ways := map[string]*regexp.Regexp{
		"spawned goroutine": regexp.MustCompile(`^spawn (\d{1,2})\n`),
		"worker pool":       regexp.MustCompile(`^pool (\d{1,2})\n`),
		"http client":       regexp.MustCompile(`^GET /w/(\d{1,2}) `),
		"connection pool":   regexp.MustCompile(`^pooled (\d{1,2})\n`),
	}
	if len(reqs) != n {
		t.Fatalf("saw %d of %d requests", len(reqs), n)
	}
	ids := map[uint64]string{}
	for k, s := range reqs {
		if s.SyscallTraceID == 0 || s.Coroutine == 0 {
			t.Errorf("request %s: trace id %d, goroutine %d", k, s.SyscallTraceID, s.Coroutine)
		}
		if other, dup := ids[s.SyscallTraceID]; dup {
			t.Errorf("requests %s and %s share trace id %d", k, other, s.SyscallTraceID)
		}
		ids[s.SyscallTraceID] = k
	}
	for way, re := range ways {
		calls := rec.find(re, capture.AtoB)
		linked := 0
		for k, c := range calls {
			want := reqs[k].SyscallTraceID
			switch {
			case c.SyscallTraceID == want:
				linked++
			case c.SyscallTraceID != 0:
				t.Errorf("%s call of request %s carries request %s's id", way, k, ids[c.SyscallTraceID])
			}
		}
		t.Logf("%s: %d of %d calls carry their request's id", way, linked, n)
		if linked != n {
			t.Errorf("%s: %d of %d calls linked", way, linked, n)
		}
	}
	st := tr.Stats()
	t.Logf("kernel: spawn %d, handoff %d, ambiguous %d, g misses %d", st.GoSpawn, st.GoHandoff, st.GoHandoffAmbig, st.GoGMiss)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func waitListening(t *testing.T, p *livetest.Process) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		out := p.Output()
		if i := strings.Index(out, "listening "); i >= 0 {
			if f := strings.Fields(out[i+len("listening "):]); len(f) > 0 {
				return f[0]
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("child server did not start")
	return ""
}
