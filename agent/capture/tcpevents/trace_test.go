package tcpevents

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

const waitTimeout = 15 * time.Second

func addrPort(t *testing.T, a net.Addr) netip.AddrPort {
	t.Helper()
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		t.Fatalf("parse %s: %v", a, err)
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

func local(e *Event) netip.AddrPort  { return netip.AddrPortFrom(e.Tuple.AIP, e.Tuple.APort) }
func remote(e *Event) netip.AddrPort { return netip.AddrPortFrom(e.Tuple.BIP, e.Tuple.BPort) }

func has(typ EventType, f func(*Event) bool) func([]Event) bool {
	return func(es []Event) bool {
		for i := range es {
			if es[i].Type == typ && f(&es[i]) {
				return true
			}
		}
		return false
	}
}

// closedPort returns a loopback port nobody listens on.
func closedPort(t *testing.T) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ap := addrPort(t, ln.Addr())
	ln.Close()
	return ap
}

func TestConnectRefusedAttributedToChild(t *testing.T) {
	r := startRecorder(t)
	target := closedPort(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self, "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=connect:"+target.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("child: %v: %s", err, out)
	}
	pid := uint32(cmd.Process.Pid)
	comm := filepath.Base(self)
	if len(comm) > 15 {
		comm = comm[:15]
	}
	toTarget := func(e *Event) bool { return remote(e) == target && e.PID == pid }
	r.waitFor(t, waitTimeout, "connect_failed of the child", has(ConnectFailed, toTarget))
	r.waitFor(t, waitTimeout, "reset_received of the child", has(ResetReceived, toTarget))

	failed := r.find(func(e *Event) bool { return e.Type == ConnectFailed && toTarget(e) })[0]
	if failed.Comm != comm || failed.Owner != OwnerConnect {
		t.Errorf("connect_failed comm %q owner %d, want %q, %d", failed.Comm, failed.Owner, comm, OwnerConnect)
	}
	if failed.Failure() != FailureRefused || failed.OldState != StateSynSent || failed.NewState != StateClose {
		t.Errorf("connect_failed: %s", describe(&failed))
	}
	if failed.Tuple.APort == 0 || failed.Tuple.AIP != target.Addr() {
		t.Errorf("connect_failed local endpoint: %s", describe(&failed))
	}
	if len(r.find(func(e *Event) bool { return e.Type == ConnectStart && toTarget(e) })) != 1 {
		t.Errorf("want one connect_start of the child")
	}
	// The other side: a RST for a packet that matched no socket.
	client := local(&failed)
	r.waitFor(t, waitTimeout, "reset_sent to the child", has(ResetSent, func(e *Event) bool {
		return local(e) == target && remote(e) == client
	}))
	sent := r.find(func(e *Event) bool { return e.Type == ResetSent && local(e) == target })[0]
	if sent.Sock != 0 || sent.PID != 0 || sent.ResetReason != 1 {
		t.Errorf("reset_sent for no socket: %s", describe(&sent))
	}
}

func TestConnectAcceptClose(t *testing.T) {
	r := startRecorder(t)
	for _, host := range []string{"127.0.0.1", "::1"} {
		t.Run(host, func(t *testing.T) { connectAcceptClose(t, r, host) })
	}
}

func connectAcceptClose(t *testing.T, r *recorder, host string) {
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	server := addrPort(t, ln.Addr())
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	c, err := net.Dial("tcp", server.String())
	if err != nil {
		t.Fatal(err)
	}
	client := addrPort(t, c.LocalAddr())
	sc, ok := <-accepted
	if !ok {
		t.Fatal("accept failed")
	}
	if _, err := c.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(sc, buf); err != nil {
		t.Fatal(err)
	}
	c.Close()
	if _, err := sc.Read(buf); !errors.Is(err, io.EOF) {
		t.Fatalf("server read after client close: %v", err)
	}
	sc.Close()

	pid := uint32(os.Getpid())
	isClient := func(e *Event) bool { return local(e) == client && remote(e) == server }
	isServer := func(e *Event) bool { return local(e) == server && remote(e) == client }
	r.waitFor(t, waitTimeout, "close of both sides", func(es []Event) bool {
		return has(Close, isClient)(es) && has(Close, isServer)(es)
	})
	for _, tc := range []struct {
		typ   EventType
		match func(*Event) bool
		owner OwnerSource
	}{
		{ConnectStart, func(e *Event) bool { return remote(e) == server && e.PID == pid }, OwnerConnect},
		{ConnectOK, isClient, OwnerConnect},
		{Established, isServer, OwnerListener},
		{Close, isClient, OwnerConnect},
		{Close, isServer, OwnerListener},
	} {
		got := r.find(func(e *Event) bool { return e.Type == tc.typ && tc.match(e) })
		if len(got) != 1 {
			t.Errorf("%s: %d events, want 1", tc.typ, len(got))
			continue
		}
		if got[0].PID != pid || got[0].Owner != tc.owner || got[0].Comm == "" {
			t.Errorf("%s attributed to pid %d comm %q owner %d; want pid %d owner %d",
				tc.typ, got[0].PID, got[0].Comm, got[0].Owner, pid, tc.owner)
		}
	}
	// The client closed first: it went through FIN_WAIT1, the server through CLOSE_WAIT.
	if len(r.find(func(e *Event) bool { return isClient(e) && e.NewState == StateFinWait1 })) != 1 {
		t.Error("client: no ESTABLISHED -> FIN_WAIT1")
	}
	if len(r.find(func(e *Event) bool { return isServer(e) && e.NewState == StateCloseWait })) != 1 {
		t.Error("server: no ESTABLISHED -> CLOSE_WAIT")
	}
	if st := r.tr.Stats(); st.RingbufFull != 0 || st.DecodeErrors != 0 {
		t.Errorf("stats: %+v", st)
	}
}

func TestResetMidTransfer(t *testing.T) {
	r := startRecorder(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	server := addrPort(t, ln.Addr())
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	c, err := net.Dial("tcp", server.String())
	if err != nil {
		t.Fatal(err)
	}
	client := addrPort(t, c.LocalAddr())
	sc, ok := <-accepted
	if !ok {
		t.Fatal("accept failed")
	}
	defer sc.Close()
	if _, err := c.Write(make([]byte, 64<<10)); err != nil {
		t.Fatal(err)
	}
	// Abortive close: SO_LINGER with zero timeout sends a RST.
	if err := c.(*net.TCPConn).SetLinger(0); err != nil {
		t.Fatal(err)
	}
	c.Close()
	_, err = io.Copy(io.Discard, sc)
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("server read: %v, want ECONNRESET", err)
	}

	pid := uint32(os.Getpid())
	isClient := func(e *Event) bool { return local(e) == client && remote(e) == server }
	isServer := func(e *Event) bool { return local(e) == server && remote(e) == client }
	r.waitFor(t, waitTimeout, "reset_sent by the client", has(ResetSent, isClient))
	r.waitFor(t, waitTimeout, "reset_received by the server", has(ResetReceived, isServer))
	sent := r.find(func(e *Event) bool { return e.Type == ResetSent && isClient(e) })[0]
	recv := r.find(func(e *Event) bool { return e.Type == ResetReceived && isServer(e) })[0]
	if sent.PID != pid || sent.Owner != OwnerConnect || sent.Sock == 0 {
		t.Errorf("reset_sent: %s", describe(&sent))
	}
	if recv.PID != pid || recv.Owner != OwnerListener || recv.NewState != StateEstablished {
		t.Errorf("reset_received: %s", describe(&recv))
	}
	t.Logf("reset reason %d", sent.ResetReason)
}
