package socktrace

import (
	"bytes"
	"context"
	"errors"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sightline-io/sightline/agent/capture"
)

// recorder is a Handler that keeps copies of everything it is given.
type recorder struct {
	mu       sync.Mutex
	segs     []capture.Segment
	closed   []capture.Closed
	conns    []ConnInfo
	execs    []uint32
	exits    []uint32
	forks    [][2]uint32
	changed  chan struct{}
	keepData func(*capture.Segment) bool // nil keeps all
}

func newRecorder() *recorder { return &recorder{changed: make(chan struct{}, 1)} }

func (r *recorder) notify() {
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

func (r *recorder) Segment(s *capture.Segment) {
	if r.keepData != nil && !r.keepData(s) {
		return
	}
	c := *s
	c.Data = bytes.Clone(s.Data)
	r.mu.Lock()
	r.segs = append(r.segs, c)
	r.mu.Unlock()
	r.notify()
}

func (r *recorder) Closed(c capture.Closed) {
	r.mu.Lock()
	r.closed = append(r.closed, c)
	r.mu.Unlock()
	r.notify()
}

func (r *recorder) ConnOpened(c ConnInfo) {
	r.mu.Lock()
	r.conns = append(r.conns, c)
	r.mu.Unlock()
	r.notify()
}

func (r *recorder) ProcessExec(pid uint32) {
	r.mu.Lock()
	r.execs = append(r.execs, pid)
	r.mu.Unlock()
	r.notify()
}

func (r *recorder) ProcessFork(parent, child uint32) {
	r.mu.Lock()
	r.forks = append(r.forks, [2]uint32{parent, child})
	r.mu.Unlock()
	r.notify()
}

func (r *recorder) ProcessExit(pid uint32) {
	r.mu.Lock()
	r.exits = append(r.exits, pid)
	r.mu.Unlock()
	r.notify()
}

const waitTimeout = 5 * time.Second

// waitSegment returns the first recorded segment matching pred.
func (r *recorder) waitSegment(t *testing.T, what string, pred func(*capture.Segment) bool) capture.Segment {
	t.Helper()
	var found capture.Segment
	r.wait(t, what, func() bool {
		for i := range r.segs {
			if pred(&r.segs[i]) {
				found = r.segs[i]
				return true
			}
		}
		return false
	})
	return found
}

// waitMessage returns the segment where a message starting with prefix
// begins in the byte stream of the segments matching pred (in order, per
// connection): a reader may take a message in pieces (Go's HTTP server
// reads one byte ahead in the background).
func (r *recorder) waitMessage(t *testing.T, what string, pred func(*capture.Segment) bool, prefix []byte) capture.Segment {
	t.Helper()
	var found capture.Segment
	r.wait(t, what, func() bool {
		for i := range r.segs {
			s := &r.segs[i]
			if !pred(s) || len(s.Data) == 0 || s.Data[0] != prefix[0] {
				continue
			}
			var b []byte
			for j := i; j < len(r.segs) && len(b) < len(prefix); j++ {
				if o := &r.segs[j]; o.ConnID == s.ConnID && pred(o) {
					b = append(b, o.Data...)
				}
			}
			if bytes.HasPrefix(b, prefix) {
				found = *s
				return true
			}
		}
		return false
	})
	return found
}

// count returns how many recorded segments match pred.
func (r *recorder) count(pred func(*capture.Segment) bool) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for i := range r.segs {
		if pred(&r.segs[i]) {
			n++
		}
	}
	return n
}

// wait blocks until cond (called with r.mu held) is true or fails the test.
func (r *recorder) wait(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(waitTimeout)
	for {
		r.mu.Lock()
		ok := cond()
		r.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-r.changed:
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// startTracer loads a tracer and runs it until the test ends.
func startTracer(t *testing.T, cfg Config) (*Tracer, *recorder) {
	t.Helper()
	tr, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	rec := newRecorder()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tr.Run(ctx, rec) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(waitTimeout):
			t.Errorf("Run did not return after cancel")
		}
		if err := tr.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return tr, rec
}

// tcpPair returns a connected client and server-side connection.
func tcpPair(t *testing.T, network, addr string) (client, server *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatalf("listen %s %s: %v", network, addr, err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	c, err := net.Dial(network, ln.Addr().String())
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	s, ok := <-accepted
	if !ok {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return c.(*net.TCPConn), s.(*net.TCPConn)
}

func port(a net.Addr) uint16 {
	switch a := a.(type) {
	case *net.TCPAddr:
		return uint16(a.Port)
	case *net.UDPAddr:
		return uint16(a.Port)
	}
	return 0
}

// onThread runs f on a locked OS thread and returns that thread's id.
func onThread(f func()) (tid uint32) {
	done := make(chan uint32)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		f()
		done <- uint32(unix.Gettid())
	}()
	return <-done
}

// syscallConn is syscall.RawConn.
type syscallConn = interface {
	Read(func(fd uintptr) bool) error
	Write(func(fd uintptr) bool) error
}

// doRead calls f with the fd until it stops returning EAGAIN.
func doRead(t *testing.T, rc syscallConn, f func(fd int) (int, error)) int {
	t.Helper()
	var n int
	var opErr error
	err := rc.Read(func(fd uintptr) bool {
		n, opErr = f(int(fd))
		return !errors.Is(opErr, unix.EAGAIN)
	})
	if err != nil || opErr != nil {
		t.Fatalf("read syscall: %v / %v", err, opErr)
	}
	return n
}

// doWrite calls f with the fd until it stops returning EAGAIN.
func doWrite(t *testing.T, rc syscallConn, f func(fd int) (int, error)) int {
	t.Helper()
	var n int
	var opErr error
	err := rc.Write(func(fd uintptr) bool {
		n, opErr = f(int(fd))
		return !errors.Is(opErr, unix.EAGAIN)
	})
	if err != nil || opErr != nil {
		t.Fatalf("write syscall: %v / %v", err, opErr)
	}
	return n
}
