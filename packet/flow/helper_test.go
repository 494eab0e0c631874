package flow

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestNetnsHelper is not a test: the namespace tests re-execute the test
// binary with SIGHTLINE_FLOW_HELPER set to run one client or server role.
func TestNetnsHelper(t *testing.T) {
	role := os.Getenv(helperEnv)
	if role == "" {
		return
	}
	if err := runRole(role, os.Getenv("SIGHTLINE_FLOW_SERVER")); err != nil {
		fmt.Fprintf(os.Stderr, "helper %s: %v\n", role, err)
		os.Exit(1)
	}
	os.Exit(0)
}

const respSize = 2000

func runRole(role, addr string) error {
	switch role {
	case "server-echo":
		return serve(addr, nil, func(c *net.TCPConn) {
			if _, err := bufio.NewReader(c).ReadString('\n'); err == nil {
				_, _ = c.Write(make([]byte, respSize))
			}
			c.Close()
		})
	case "server-sink":
		return serve(addr, nil, func(c *net.TCPConn) {
			_, _ = io.Copy(io.Discard, c)
			_, _ = c.Write([]byte("ok"))
			c.Close()
		})
	case "server-noread":
		small := func(fd uintptr) { _ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, 2048) }
		return serve(addr, small, func(c *net.TCPConn) { time.Sleep(time.Minute) })
	case "server-rst":
		return serve(addr, nil, func(c *net.TCPConn) {
			_, _ = io.ReadFull(c, make([]byte, 1000))
			_ = c.SetLinger(0)
			c.Close()
		})
	case "server-hold":
		return serve(addr, nil, func(c *net.TCPConn) {
			r := bufio.NewReader(c)
			if _, err := r.ReadString('\n'); err == nil {
				_, _ = c.Write(make([]byte, respSize))
			}
			_, _ = io.Copy(io.Discard, r)
			c.Close()
		})
	case "server-half":
		return serve(addr, nil, func(c *net.TCPConn) {
			_, _ = io.Copy(io.Discard, c)
			time.Sleep(time.Minute) // never closes
		})
	case "server-backlog":
		return listenNoAccept(addr)
	case "client-closed":
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err == nil {
			c.Close()
			return errors.New("connected to a closed port")
		}
		return nil
	case "client-req":
		c, err := dial(addr)
		if err != nil {
			return err
		}
		defer c.Close()
		if _, err := c.Write([]byte("GET /\n")); err != nil {
			return err
		}
		_, err = io.Copy(io.Discard, c)
		return err
	case "client-bulk":
		c, err := dial(addr)
		if err != nil {
			return err
		}
		defer c.Close()
		if _, err := c.Write(make([]byte, 40000)); err != nil {
			return nil // the server may reset
		}
		_ = c.CloseWrite()
		_, _ = io.Copy(io.Discard, c)
		return nil
	case "client-zerowin":
		c, err := dial(addr)
		if err != nil {
			return err
		}
		_ = c.SetWriteDeadline(time.Now().Add(1500 * time.Millisecond))
		_, _ = c.Write(make([]byte, 4<<20)) // blocks on the zero window
		_ = c.SetLinger(0)
		return c.Close()
	case "client-rst":
		c, err := dial(addr)
		if err != nil {
			return err
		}
		if _, err := c.Write([]byte("GET /\n")); err != nil {
			return err
		}
		if _, err := io.ReadFull(c, make([]byte, respSize)); err != nil {
			return err
		}
		_ = c.SetLinger(0)
		return c.Close()
	case "client-half":
		c, err := dial(addr)
		if err != nil {
			return err
		}
		if _, err := c.Write([]byte("GET /\n")); err != nil {
			return err
		}
		if err := c.CloseWrite(); err != nil {
			return err
		}
		time.Sleep(1500 * time.Millisecond)
		fmt.Println("done") // the capture stops before this process exits
		time.Sleep(time.Minute)
		return nil
	case "client-flood":
		return flood(addr)
	}
	return fmt.Errorf("unknown role %q", role)
}

func dial(addr string) (*net.TCPConn, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	return c.(*net.TCPConn), nil
}

// serve listens on addr (control, when set, runs on the listening socket
// before listen), prints "ready" and hands each connection to handle.
func serve(addr string, control func(fd uintptr), handle func(*net.TCPConn)) error {
	lc := net.ListenConfig{}
	if control != nil {
		lc.Control = func(_, _ string, rc syscall.RawConn) error { return rc.Control(control) }
	}
	ln, err := lc.Listen(context.Background(), "tcp", addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	fmt.Println("ready")
	for {
		c, err := ln.Accept()
		if err != nil {
			return fmt.Errorf("accept: %w", err)
		}
		go handle(c.(*net.TCPConn))
	}
}

// listenNoAccept listens with a backlog of 1 and never accepts: the accept
// queue fills and the kernel (tcp_abort_on_overflow=0) drops the
// handshake's last ACK and retransmits its SYN-ACK.
func listenNoAccept(addr string) error {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return err
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
	if err := unix.Bind(fd, &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}); err != nil {
		return fmt.Errorf("bind: %w", err)
	}
	if err := unix.Listen(fd, 1); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	fmt.Println("ready")
	time.Sleep(time.Hour)
	return nil
}

// flood connects once (the accept queue's first entry), then starts four
// non-blocking connects back to back so their SYNs race for the last slot.
// Each connection that completes sends one byte; all close after 4 s.
func flood(addr string) error {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return err
	}
	sa := &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
	end := time.Now().Add(4 * time.Second)
	first, err := dial(addr)
	if err != nil {
		return err
	}
	defer first.Close()
	_, _ = first.Write([]byte("x"))
	time.Sleep(200 * time.Millisecond)
	var fds []int
	for range 4 {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("socket: %w", err)
		}
		defer unix.Close(fd)
		if err := unix.Connect(fd, sa); err != nil && !errors.Is(err, unix.EINPROGRESS) {
			return fmt.Errorf("connect: %w", err)
		}
		fds = append(fds, fd)
	}
	pending := map[int]bool{}
	for _, fd := range fds {
		pending[fd] = true
	}
	for len(pending) > 0 && time.Now().Before(end) {
		var pfds []unix.PollFd
		for fd := range pending {
			pfds = append(pfds, unix.PollFd{Fd: int32(fd), Events: unix.POLLOUT})
		}
		if _, err := unix.Poll(pfds, 100); err != nil && !errors.Is(err, unix.EINTR) {
			return fmt.Errorf("poll: %w", err)
		}
		for _, p := range pfds {
			if p.Revents == 0 {
				continue
			}
			delete(pending, int(p.Fd))
			if e, _ := unix.GetsockoptInt(int(p.Fd), unix.SOL_SOCKET, unix.SO_ERROR); e == 0 {
				_, _ = unix.Write(int(p.Fd), []byte("x"))
			}
		}
	}
	time.Sleep(time.Until(end))
	return nil
}
