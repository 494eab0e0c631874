package redis

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/flowlog"
	"github.com/sightline-io/sightline/internal/livetest"
)

// clientEnv makes the test binary a go-redis client of the address it
// holds: the agent does not trace its own process.
const clientEnv = "SIGHTLINE_REDIS_CLIENT"

// livePassword is the password of the server started with --requirepass;
// no row may contain it.
const livePassword = "s3cr3t-Pa55"

func TestMain(m *testing.M) {
	livetest.Child(clientEnv, goRedisClient)
	os.Exit(m.Run())
}

// goRedisClient runs a RESP3 session: a SET, a pipeline, and pub/sub.
func goRedisClient(addr string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	rdb := goredis.NewClient(&goredis.Options{Addr: addr, Protocol: 3, DisableIdentity: true})
	defer rdb.Close()
	if err := rdb.Set(ctx, "gr:key", "value", 0).Err(); err != nil {
		return fmt.Errorf("set: %w", err)
	}
	pipe := rdb.Pipeline()
	for i := range 5 {
		pipe.Set(ctx, fmt.Sprintf("gr:p%d", i), "v", 0)
		pipe.Get(ctx, fmt.Sprintf("gr:p%d", i))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("pipeline: %w", err)
	}
	sub := rdb.Subscribe(ctx, "gr:ch")
	if _, err := sub.Receive(ctx); err != nil {
		return fmt.Errorf("subscribe: %w", err)
	}
	if err := rdb.Publish(ctx, "gr:ch", "hello").Err(); err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	select {
	case <-sub.Channel():
	case <-ctx.Done():
		return fmt.Errorf("no message: %w", ctx.Err())
	}
	if err := sub.Ping(ctx); err != nil {
		return fmt.Errorf("ping in subscribe mode: %w", err)
	}
	time.Sleep(200 * time.Millisecond) // the PONG push arrives on the channel
	return sub.Close()
}

// startRedis runs redis-server on a free port, extra args appended.
func startRedis(t *testing.T, args ...string) int {
	t.Helper()
	livetest.RequireTools(t, "redis-server", "redis-cli")
	port := livetest.FreePort(t)
	livetest.Start(t, "redis-server", append([]string{"--port", fmt.Sprint(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", t.TempDir()}, args...)...)
	livetest.WaitTCP(t, fmt.Sprintf("127.0.0.1:%d", port), 30*time.Second)
	return port
}

// cli runs redis-cli; with --pipe a failed command is an exit status of 1.
func cli(t *testing.T, port int, stdin string, args ...string) string {
	t.Helper()
	cmd := exec.Command("redis-cli", append([]string{"-p", fmt.Sprint(port)}, args...)...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	if err != nil && !(stdin != "" && strings.Contains(string(out), "errors: 1")) {
		t.Fatalf("redis-cli %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// expect is one row a live or replayed run must contain.
type expect struct {
	reqType, resource string
	status            flowlog.ResponseStatus
	exc               string // prefix
	version           string
}

// commonRows are produced by the redis-cli and go-redis runs of TestLiveRedis.
var commonRows = []expect{
	{reqType: "SET", resource: "SET livekey ?"},
	{reqType: "GET", resource: "GET livekey"},
	{reqType: "INCR", resource: "INCR livekey", status: flowlog.StatusClientError, exc: "ERR value is not an integer"},
	{reqType: "CONFIG GET", resource: "CONFIG GET maxmemory"},
	{reqType: "SET", resource: "SET bigkey ?"},
	{reqType: "GET", resource: "GET bigkey"},
	{reqType: "SET", resource: "SET pipe:1 ?"},
	{reqType: "SET", resource: "SET pipe:8 ?"},
	{reqType: "LPUSH", resource: "LPUSH pipe:1 ?", status: flowlog.StatusClientError, exc: "WRONGTYPE"},
	{reqType: "HELLO", resource: "HELLO 3", version: "3"},
	{reqType: "SET", resource: "SET gr:key ?", version: "3"},
	{reqType: "SET", resource: "SET gr:p0 ?", version: "3"},
	{reqType: "GET", resource: "GET gr:p4", version: "3"},
	{reqType: "SUBSCRIBE", resource: "SUBSCRIBE gr:ch", version: "3"},
	{reqType: "PUBLISH", resource: "PUBLISH gr:ch ?", version: "3"},
	{reqType: "PING", resource: "PING", version: "3"},
}

// checkRows asserts that rows (of one server) hold every expected row as a
// session seen at obs, and nothing the protocol should not produce.
func checkRows(t *testing.T, rows []flowlog.L7FlowLog, obs string, wants []expect) {
	t.Helper()
	for _, w := range wants {
		var r *flowlog.L7FlowLog
		for i := range rows {
			if rows[i].ObservationPoint == obs && rows[i].RequestType == w.reqType && rows[i].RequestResource == w.resource &&
				rows[i].ResponseStatus == w.status {
				r = &rows[i]
				break
			}
		}
		if r == nil {
			t.Errorf("%s: no %s row %q", obs, w.reqType, w.resource)
			continue
		}
		desc := livetest.Describe([]flowlog.L7FlowLog{*r})
		if r.L7Protocol != flowlog.L7Redis || r.Type != flowlog.TypeSession || r.Endpoint != w.reqType {
			t.Errorf("protocol/type/endpoint: %s", desc)
		}
		if r.ResponseStatus != w.status || !strings.HasPrefix(r.ResponseException, w.exc) || (w.exc == "") != (r.ResponseException == "") {
			t.Errorf("status %d exception %q, want %d %q: %s", r.ResponseStatus, r.ResponseException, w.status, w.exc, desc)
		}
		if r.ResponseCode != nil || r.RequestID != nil {
			t.Errorf("code or request id set: %s", desc)
		}
		if r.ResponseDuration == 0 && obs != flowlog.ObsLocalNIC {
			t.Errorf("zero duration: %s", desc)
		}
		if w.version != "" && r.Version != w.version {
			t.Errorf("version %q, want %q: %s", r.Version, w.version, desc)
		}
	}
	for i := range rows {
		r := &rows[i]
		if r.ObservationPoint != obs {
			continue
		}
		if r.ResponseStatus == flowlog.StatusTimeout || r.ResponseStatus == flowlog.StatusParseFailed || r.Type != flowlog.TypeSession {
			t.Errorf("unexpected row: %s", livetest.Describe(rows[i:i+1]))
		}
		if strings.Contains(r.RequestResource, "hello") || strings.Contains(r.RequestResource, livePassword) ||
			strings.Contains(r.ResponseException, livePassword) {
			t.Errorf("a value or the password is stored: %s", livetest.Describe(rows[i:i+1]))
		}
	}
}

// TestLiveRedis drives redis-server with redis-cli (commands, an error,
// --pipe with inline commands) and go-redis (RESP3, pipeline, pub/sub),
// and a password-protected server with redis-cli AUTH.
func TestLiveRedis(t *testing.T) {
	port := startRedis(t)
	authPort := startRedis(t, "--requirepass", livePassword)
	stop := livetest.Record(t, "redis.pcap", fmt.Sprintf("tcp port %d or tcp port %d", port, authPort))
	a := livetest.StartAgent(t, New(l7.Config{}))

	cli(t, port, "", "SET", "livekey", "hello")
	cli(t, port, "", "GET", "livekey")
	cli(t, port, "", "INCR", "livekey") // an error reply, not a redis-cli failure
	cli(t, port, "", "CONFIG", "GET", "maxmemory")
	// A value larger than the captured prefix of a syscall.
	cli(t, port, "", "SET", "bigkey", strings.Repeat("hello", 3000))
	cli(t, port, "", "GET", "bigkey")
	var pipe strings.Builder
	for i := 1; i <= 8; i++ {
		fmt.Fprintf(&pipe, "SET pipe:%d hello%d\r\n", i, i)
	}
	pipe.WriteString("LPUSH pipe:1 x\r\n")
	cli(t, port, pipe.String(), "--pipe") // exits 1: the LPUSH fails
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), clientEnv+"="+addr)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go-redis client: %v\n%s", err, out)
	}
	cli(t, authPort, "", "-a", livePassword, "--no-auth-warning", "SET", "authkey", "hello")
	cli(t, authPort, "", "-a", "wrong-password", "--no-auth-warning", "PING")

	// The last command of each server, seen by both processes.
	a.WaitRows(t, "PING in subscribe mode", 2, 30*time.Second, func(r *flowlog.L7FlowLog) bool {
		return int(r.ServerPort) == port && r.RequestType == "PING" && r.Version == "3"
	})
	a.WaitRows(t, "PING without AUTH", 2, 30*time.Second, func(r *flowlog.L7FlowLog) bool {
		return int(r.ServerPort) == authPort && r.RequestType == "PING" && strings.HasPrefix(r.ResponseException, "NOAUTH")
	})
	time.Sleep(500 * time.Millisecond)
	stop()
	rows := a.Match(livetest.ServerPort(port))
	t.Logf("rows:\n%s", livetest.Describe(rows))
	for _, obs := range []string{flowlog.ObsServerProcess, flowlog.ObsClientProcess} {
		checkRows(t, rows, obs, commonRows)
	}
	authRows := a.Match(livetest.ServerPort(authPort))
	t.Logf("auth rows:\n%s", livetest.Describe(authRows))
	checkRows(t, authRows, flowlog.ObsServerProcess, authExpect)
	checkPubSub(t, rows, flowlog.ObsServerProcess)
}

var authExpect = []expect{
	{reqType: "AUTH", resource: "AUTH ?"},
	{reqType: "SET", resource: "SET authkey ?"},
	{reqType: "AUTH", resource: "AUTH ?", status: flowlog.StatusClientError, exc: "WRONGPASS"},
	{reqType: "PING", resource: "PING", status: flowlog.StatusClientError, exc: "NOAUTH"},
}

// checkPubSub asserts that pushed messages made no rows and the wrong
// password was reported.
func checkPubSub(t *testing.T, rows []flowlog.L7FlowLog, obs string) {
	t.Helper()
	n := 0
	for _, r := range rows {
		if r.ObservationPoint == obs && r.RequestType == "SUBSCRIBE" {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d SUBSCRIBE rows at %s, want 1", n, obs)
	}
}
