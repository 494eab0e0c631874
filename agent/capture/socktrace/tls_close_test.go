package socktrace

import (
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/sightline-io/sightline/agent/capture"
)

// stallConn is a net.Conn whose next Write, once armed, blocks after its
// write syscall returned: the TLS Write above it is then between its
// syscall and its return, where a loaded machine may deschedule it.
type stallConn struct {
	net.Conn
	wrote, release chan struct{} // armed when non-nil
}

func (c *stallConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	if c.wrote != nil {
		close(c.wrote)
		<-c.release
	}
	return n, err
}

// TestTLSPlaintextAfterClose: another goroutine closes the socket while a
// Go TLS Write is between its syscall and its return. The close is flagged
// pending in the kernel, so the plaintext that follows it still joins the
// same connection (same conn id), and its stream's close is held back
// until after it.
func TestTLSPlaintextAfterClose(t *testing.T) {
	tr, rec := startTracer(t, Config{MaxPayload: testMaxPayload})
	defer attachSelfGoTLS(t, tr).Close()
	const req = "GET /pending-close HTTP/1.1\r\nHost: x\r\n\r\n"
	var closedFirst, seen bool
	rec.keepData = func(s *capture.Segment) bool {
		if !s.TLS {
			return false
		}
		if s.PID == uint32(os.Getpid()) && s.Dir == capture.AtoB && bytes.HasPrefix(s.Data, []byte(req)) {
			// Run calls Segment and Closed on one goroutine: what is
			// closed now was closed before this segment.
			rec.mu.Lock()
			closedFirst = slices.ContainsFunc(rec.closed, func(c capture.Closed) bool { return c.ConnID == s.ConnID })
			seen = true
			rec.mu.Unlock()
		}
		return true
	}

	// TLS 1.2: no session tickets after the handshake that the client
	// would leave unread, making its close a reset (port released).
	ln, err := tls.Listen("tcp4", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{selfSignedTLS(t)},
		MaxVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan []byte, 1)
	// The server keeps its end open (the client's socket stays alive in
	// FIN_WAIT2), and closes it before the test returns: a thread that
	// read a request left unanswered on an open socket counts as an event
	// loop for a while, which the next test's thread could inherit.
	hold, served := make(chan struct{}), make(chan struct{})
	defer func() { close(hold); <-served }()
	go func() {
		defer close(served)
		c, err := ln.Accept()
		if err != nil {
			got <- nil
			return
		}
		defer c.Close()
		b, _ := io.ReadAll(c)
		got <- b
		<-hold
	}()

	raw, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	sc := &stallConn{Conn: raw}
	tc := tls.Client(sc, &tls.Config{InsecureSkipVerify: true})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	sc.wrote, sc.release = make(chan struct{}), make(chan struct{})
	written := make(chan error, 1)
	go func() {
		_, err := tc.Write([]byte(req))
		written <- err
	}()
	<-sc.wrote
	if err := raw.Close(); err != nil { // the close syscall, with the TLS Write pending
		t.Fatal(err)
	}
	// Longer than the delay for closes without a pending call: without the
	// flag the stream's close would be handed on before the plaintext.
	time.Sleep(2 * tlsCloseDelay)
	close(sc.release)
	if err := <-written; err != nil {
		t.Fatal(err)
	}
	if b := <-got; string(b) != req {
		t.Fatalf("server read %q", b)
	}

	seg := rec.waitSegment(t, "the client's TLS request", func(s *capture.Segment) bool {
		return s.PID == uint32(os.Getpid()) && s.Dir == capture.AtoB && bytes.HasPrefix(s.Data, []byte(req))
	})
	rec.mu.Lock()
	if !seen || closedFirst {
		t.Errorf("plaintext after its stream's close (seen %v, closed first %v)", seen, closedFirst)
	}
	rec.mu.Unlock()
	if seg.TCPSeq == 0 || seg.Tuple.BPort != uint16(ln.Addr().(*net.TCPAddr).Port) {
		t.Errorf("segment seq %d tuple %+v", seg.TCPSeq, seg.Tuple)
	}
	// The same connection as the socket the client connected, not a new
	// one made up after the close; and its tuple, though the sock is gone.
	var conn ConnInfo
	rec.wait(t, "the client's connect", func() bool {
		i := slices.IndexFunc(rec.conns, func(c ConnInfo) bool {
			return c.PID == uint32(os.Getpid()) && c.Role == RoleClient && c.Tuple.BPort == seg.Tuple.BPort
		})
		if i >= 0 {
			conn = rec.conns[i]
		}
		return i >= 0
	})
	if want := mix64(conn.ConnID ^ 0x746c73); seg.ConnID != want {
		t.Errorf("late plaintext on conn id %x, want %x (the TLS stream of conn %x)", seg.ConnID, want, conn.ConnID)
	}
	if seg.Tuple != conn.Tuple {
		t.Errorf("late plaintext's tuple %+v, the connection's %+v", seg.Tuple, conn.Tuple)
	}
	rec.wait(t, "the plaintext stream's close, after the delay", func() bool {
		return slices.ContainsFunc(rec.closed, func(c capture.Closed) bool { return c.ConnID == seg.ConnID })
	})
}
