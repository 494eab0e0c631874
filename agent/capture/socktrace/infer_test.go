package socktrace

import (
	"bytes"
	"io"
	"net"
	"testing"

	"github.com/sightline-io/sightline/agent/capture"
)

// exchange writes msg from client to server and reads it there.
func exchange(t *testing.T, from, to *net.TCPConn, msg []byte) {
	t.Helper()
	if _, err := from.Write(msg); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(to, make([]byte, len(msg))); err != nil {
		t.Fatal(err)
	}
}

func TestKernelProtocolHints(t *testing.T) {
	rec := sharedTracer(t)
	for _, tc := range []struct {
		name string
		msg  []byte
		hint uint8
	}{
		{"http request", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), 20},
		{"redis command", []byte("*1\r\n$4\r\nPING\r\n"), 80},
		{"mysql query", append([]byte{9, 0, 0, 0, 3}, "SELECT 1"...), 60},
		{"postgres startup", []byte{0, 0, 0, 8, 0, 3, 0, 0}, 61},
		{"kafka request", []byte{0, 0, 0, 8, 0, 18, 0, 3, 0, 0, 0, 1}, 100},
		{"dubbo", []byte{0xda, 0xbb, 0xc2, 0, 0, 0, 0, 0}, 40},
		{"sofarpc bolt v1 request", []byte{1, 1, 0, 1, 1, 0, 0, 0, 7, 1, 0, 0, 0x0b, 0xb8, 0, 0x2c, 0, 0, 0, 0, 0, 0}, 43},
		{"mysql result set is not bolt", []byte{2, 0, 0, 1, 1, 1, 0x17, 0, 0, 2, 3, 'd', 'e', 'f', 0, 0, 0, 1, '1', 0}, 0},
		{"unknown", []byte("hello there"), 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client, server := tcpPair(t, "tcp4", "127.0.0.1:0")
			cport, sport := port(client.LocalAddr()), port(server.LocalAddr())
			exchange(t, client, server, tc.msg)
			s := rec.waitSegment(t, "client egress", byConn(cport, sport, capture.AtoB, tc.msg))
			if s.ProtoHint != tc.hint {
				t.Errorf("hint %d, want %d", s.ProtoHint, tc.hint)
			}
			if s.Socket == 0 {
				t.Error("no socket key")
			}
			// The hint is the socket's: later messages carry it too.
			exchange(t, client, server, []byte("more"))
			s = rec.waitSegment(t, "second egress", byConn(cport, sport, capture.AtoB, []byte("more")))
			if s.ProtoHint != tc.hint {
				t.Errorf("second message hint %d, want %d", s.ProtoHint, tc.hint)
			}
		})
	}
}

// countConn counts data segments of one direction of a connection.
func countConn(rec *recorder, aport, bport uint16) int {
	return rec.count(func(s *capture.Segment) bool { return s.Tuple.APort == aport && s.Tuple.BPort == bport })
}

func TestTLSSocketSkippedInKernel(t *testing.T) {
	rec := sharedTracer(t)
	before := shared.tr.Stats().L7Skipped
	client, server := tcpPair(t, "tcp4", "127.0.0.1:0")
	cport, sport := port(client.LocalAddr()), port(server.LocalAddr())
	hello := append([]byte{0x16, 0x03, 0x01, 0x00, 0x05}, 1, 0, 0, 1, 0)
	exchange(t, client, server, hello)
	for range 3 {
		exchange(t, client, server, bytes.Repeat([]byte{0x17}, 40))
	}
	// A marker on another connection proves the ring was drained past the
	// TLS writes (both ends of the TLS connection saw the hello: both skip).
	mc, ms := tcpPair(t, "tcp4", "127.0.0.1:0")
	marker := []byte("GET /marker HTTP/1.1\r\n\r\n")
	exchange(t, mc, ms, marker)
	rec.waitSegment(t, "marker", byConn(port(mc.LocalAddr()), port(ms.LocalAddr()), capture.AtoB, marker))
	if n := countConn(rec, cport, sport) + countConn(rec, sport, cport); n != 0 {
		t.Errorf("%d data segments from the TLS connection, want 0", n)
	}
	if got := shared.tr.Stats().L7Skipped - before; got < 8 {
		t.Errorf("L7Skipped grew by %d, want >= 8 (4 writes, 4 reads)", got)
	}
}

func TestSkipSocket(t *testing.T) {
	rec := sharedTracer(t)
	client, server := tcpPair(t, "tcp4", "127.0.0.1:0")
	cport, sport := port(client.LocalAddr()), port(server.LocalAddr())
	first := []byte("opaque binary 1")
	exchange(t, client, server, first)
	s := rec.waitSegment(t, "first", byConn(cport, sport, capture.AtoB, first))
	if err := shared.tr.SkipSocket(s.Socket); err != nil {
		t.Fatal(err)
	}
	exchange(t, client, server, []byte("opaque binary 2"))
	// The other end was not skipped: its reply is seen, and it comes after.
	exchange(t, server, client, []byte("reply on the other socket"))
	rec.waitSegment(t, "server's reply", byConn(sport, cport, capture.AtoB, []byte("reply on the other socket")))
	if n := countConn(rec, cport, sport); n != 1 {
		t.Errorf("%d segments from the skipped socket, want only the first", n)
	}
	// Unknown sockets are not an error.
	if err := shared.tr.SkipSocket(1); err != nil {
		t.Errorf("SkipSocket(unknown) = %v", err)
	}
}
