package memcached

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"

	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/flowlog"
	"github.com/sightline-io/sightline/internal/livetest"
)

// clientEnv makes the test binary a memcached client of the address it
// holds: the agent does not trace its own process.
const clientEnv = "SIGHTLINE_MEMCACHED_CLIENT"

func TestMain(m *testing.M) {
	livetest.Child(clientEnv, func(addr string) error {
		for _, run := range []func(string) error{gomemcacheClient, textClient, binaryClient} {
			if err := run(addr); err != nil {
				return err
			}
		}
		return nil
	})
	os.Exit(m.Run())
}

// gomemcacheClient drives the text protocol through gomemcache.
func gomemcacheClient(addr string) error {
	c := memcache.New(addr)
	c.Timeout = 5 * time.Second
	if err := c.Set(&memcache.Item{Key: "mc:key", Value: []byte("secret-value")}); err != nil {
		return fmt.Errorf("set: %w", err)
	}
	if _, err := c.Get("mc:key"); err != nil {
		return fmt.Errorf("get: %w", err)
	}
	if _, err := c.Get("mc:missing"); !errors.Is(err, memcache.ErrCacheMiss) {
		return fmt.Errorf("get missing: %v", err)
	}
	if err := c.Add(&memcache.Item{Key: "mc:key", Value: []byte("x")}); !errors.Is(err, memcache.ErrNotStored) {
		return fmt.Errorf("add existing: %v", err)
	}
	if _, err := c.Increment("mc:key", 1); err == nil {
		return errors.New("incr of a string succeeded")
	}
	if err := c.Touch("mc:key", 60); err != nil {
		return fmt.Errorf("touch: %w", err)
	}
	if err := c.Delete("mc:key"); err != nil {
		return fmt.Errorf("delete: %w", err)
	}
	return nil
}

// textClient writes raw text commands: noreply, version, stats, an unknown
// command.
func textClient(addr string) error {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(conn)
	for _, ex := range []struct{ cmd, until string }{
		{"set mc:nr 0 0 5 noreply\r\nhello\r\nversion\r\n", "VERSION"},
		{"stats\r\n", "END"},
		{"bogus\r\n", "ERROR"},
		{"get mc:nr\r\n", "END"},
	} {
		if _, err := io.WriteString(conn, ex.cmd); err != nil {
			return err
		}
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return fmt.Errorf("%q: %w", ex.cmd, err)
			}
			if strings.HasPrefix(line, ex.until) {
				break
			}
		}
	}
	return nil
}

// binaryClient writes binary protocol frames: set, get hit and miss, quiet
// gets ended by a noop, and an incr of a non-numeric value.
func binaryClient(addr string) error {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	steps := []struct {
		frames  string
		replies int
	}{
		{frame(magicRequest, 0x01, 0, 101, strings.Repeat("\x00", 8), "bk", "binary-value"), 1},
		{frame(magicRequest, 0x00, 0, 102, "", "bk", ""), 1},
		{frame(magicRequest, 0x00, 0, 103, "", "bmiss", ""), 1},
		{frame(magicRequest, 0x09, 0, 104, "", "bmiss", "") + frame(magicRequest, 0x09, 0, 105, "", "bk", "") +
			frame(magicRequest, 0x0a, 0, 106, "", "", ""), 2},
		{frame(magicRequest, 0x05, 0, 107, strings.Repeat("\x00", 7)+"\x01"+strings.Repeat("\x00", 12), "bk", ""), 1},
	}
	hdr := make([]byte, headerLen)
	for _, s := range steps {
		if _, err := io.WriteString(conn, s.frames); err != nil {
			return err
		}
		for range s.replies {
			if _, err := io.ReadFull(conn, hdr); err != nil {
				return fmt.Errorf("binary reply: %w", err)
			}
			if _, err := io.CopyN(io.Discard, conn, int64(binary.BigEndian.Uint32(hdr[8:]))); err != nil {
				return err
			}
		}
	}
	return nil
}

func startMemcached(t *testing.T) int {
	t.Helper()
	livetest.RequireTools(t, "memcached")
	port := livetest.FreePort(t)
	livetest.Start(t, "memcached", "-p", fmt.Sprint(port), "-U", "0", "-l", "127.0.0.1", "-u", "root", "-m", "16")
	livetest.WaitTCP(t, fmt.Sprintf("127.0.0.1:%d", port), 30*time.Second)
	return port
}

// expect is one row a live or replayed run must contain.
type expect struct {
	reqType, resource string
	status            flowlog.ResponseStatus
	exc, result       string
	code              int32 // -1: none
	id                int64 // -1: none
	oneWay            bool
}

func text(typ, res string) expect { return expect{reqType: typ, resource: res, code: -1, id: -1} }

var liveRows = []expect{
	text("set", "set mc:key"),
	{reqType: "gets", resource: "gets mc:key", result: "hit", code: -1, id: -1},
	{reqType: "gets", resource: "gets mc:missing", result: "miss", code: -1, id: -1},
	text("add", "add mc:key"),
	{reqType: "incr", resource: "incr mc:key", status: flowlog.StatusClientError, exc: "cannot increment or decrement non-numeric value", code: -1, id: -1},
	text("touch", "touch mc:key"),
	text("delete", "delete mc:key"),
	{reqType: "set", resource: "set mc:nr", code: -1, id: -1, oneWay: true},
	text("version", "version"),
	text("stats", "stats"),
	{reqType: "unknown", resource: "unknown", status: flowlog.StatusClientError, exc: "ERROR", code: -1, id: -1},
	{reqType: "get", resource: "get mc:nr", result: "hit", code: -1, id: -1},
	{reqType: "set", resource: "set bk", code: 0, id: 101},
	{reqType: "get", resource: "get bk", result: "hit", code: 0, id: 102},
	{reqType: "get", resource: "get bmiss", result: "miss", code: 1, id: 103},
	{reqType: "getq", resource: "getq bmiss", code: -1, id: 104, oneWay: true},
	{reqType: "getq", resource: "getq bk", code: -1, id: 105, oneWay: true},
	{reqType: "noop", resource: "noop", code: 0, id: 106},
	{reqType: "incr", resource: "incr bk", status: flowlog.StatusClientError, exc: "Incr/Decr on non-numeric value", code: 6, id: 107},
}

// checkRows asserts that rows (of one server) hold every expected row seen
// at obs, and no timeout, parse failure or stored value.
func checkRows(t *testing.T, rows []flowlog.L7FlowLog, obs string) {
	t.Helper()
	for _, w := range liveRows {
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
		if r.L7Protocol != flowlog.L7Memcached || r.Type != flowlog.TypeSession || r.Endpoint != w.reqType {
			t.Errorf("protocol/type/endpoint: %s", desc)
		}
		if r.ResponseException != w.exc || r.ResponseResult != w.result {
			t.Errorf("exception %q result %q, want %q %q: %s", r.ResponseException, r.ResponseResult, w.exc, w.result, desc)
		}
		if (w.code < 0) != (r.ResponseCode == nil) || r.ResponseCode != nil && *r.ResponseCode != w.code {
			t.Errorf("code, want %d: %s", w.code, desc)
		}
		if (w.id < 0) != (r.RequestID == nil) || r.RequestID != nil && int64(*r.RequestID) != w.id {
			t.Errorf("request id, want %d: %s", w.id, desc)
		}
		if w.oneWay != (r.ResponseLength == -1 && r.ResponseDuration == 0) {
			t.Errorf("one-way %v: %s", w.oneWay, desc)
		}
		if !w.oneWay && r.ResponseDuration == 0 && obs != flowlog.ObsLocalNIC {
			t.Errorf("zero duration: %s", desc)
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
		if strings.Contains(r.RequestResource, "value") {
			t.Errorf("a value is stored: %s", livetest.Describe(rows[i:i+1]))
		}
	}
}

// TestLiveMemcached drives memcached with gomemcache (text protocol), raw
// text commands (noreply, stats, an unknown command) and binary frames
// (get hit and miss, quiet gets, an error status).
func TestLiveMemcached(t *testing.T) {
	port := startMemcached(t)
	stop := livetest.Record(t, "memcached.pcap", fmt.Sprintf("tcp port %d", port))
	a := livetest.StartAgent(t, New(l7.Config{}))
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=127.0.0.1:%d", clientEnv, port))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("client: %v\n%s", err, out)
	}
	a.WaitRows(t, "binary incr", 2, 30*time.Second, func(r *flowlog.L7FlowLog) bool {
		return int(r.ServerPort) == port && r.RequestType == "incr" && r.RequestID != nil
	})
	time.Sleep(300 * time.Millisecond)
	stop()
	rows := a.Match(livetest.ServerPort(port))
	t.Logf("rows:\n%s", livetest.Describe(rows))
	checkRows(t, rows, flowlog.ObsServerProcess)
	checkRows(t, rows, flowlog.ObsClientProcess)
}
