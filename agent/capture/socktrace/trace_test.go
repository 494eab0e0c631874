package socktrace

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/sightline-io/sightline/agent/capture"
)

// These tests load the real program and need root on a kernel with BTF;
// they do not skip (CI runs as root).

const testMaxPayload = 256

var shared struct {
	once sync.Once
	tr   *Tracer
	rec  *recorder
	err  error
}

// sharedTracer traces only this test process, so loading (verifier time)
// is paid once for most tests. Tests tell their traffic apart by ports.
func sharedTracer(t *testing.T) *recorder {
	t.Helper()
	shared.once.Do(func() {
		tr, err := New(Config{MaxPayload: testMaxPayload, OnlyPIDs: []uint32{uint32(os.Getpid())}})
		if err != nil {
			shared.err = err
			return
		}
		shared.tr = tr
		shared.rec = newRecorder()
		go tr.Run(context.Background(), shared.rec) //nolint:errcheck // ends at Close in TestMain
	})
	if shared.err != nil {
		t.Fatalf("New: %v", shared.err)
	}
	return shared.rec
}

func TestMain(m *testing.M) {
	if addr := os.Getenv("SOCKTRACE_TEST_CHILD_DIAL"); addr != "" {
		os.Exit(childMain(addr))
	}
	code := m.Run()
	if shared.tr != nil {
		shared.tr.Close()
	}
	os.Exit(code)
}

// childMain is the helper process for TestExcludeSelf: it sends a marker
// to the parent's server and waits for the reply.
func childMain(addr string) int {
	c, err := net.Dial("tcp4", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	defer c.Close()
	if _, err := c.Write([]byte(os.Getenv("SOCKTRACE_TEST_CHILD_MARKER"))); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	if _, err := c.Read(make([]byte, 64)); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	return 0
}

func byConn(aport, bport uint16, dir capture.Direction, data []byte) func(*capture.Segment) bool {
	return func(s *capture.Segment) bool {
		return s.Tuple.APort == aport && s.Tuple.BPort == bport && s.Dir == dir && bytes.Equal(s.Data, data)
	}
}

func TestTCPExchange(t *testing.T) {
	for _, tc := range []struct {
		name, network, addr string
		ip                  netip.Addr
	}{
		{"ipv4", "tcp4", "127.0.0.1:0", netip.MustParseAddr("127.0.0.1")},
		{"ipv6", "tcp6", "[::1]:0", netip.MustParseAddr("::1")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := sharedTracer(t)
			client, server := tcpPair(t, tc.network, tc.addr)
			cport, sport := port(client.LocalAddr()), port(server.LocalAddr())
			req := []byte("GET /" + tc.name + " HTTP/1.1\r\nHost: x\r\n\r\n")
			resp := []byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" + tc.name)

			var writeErr error
			writerTID := onThread(func() { _, writeErr = client.Write(req) })
			if writeErr != nil {
				t.Fatal(writeErr)
			}
			if _, err := io.ReadFull(server, make([]byte, len(req))); err != nil {
				t.Fatal(err)
			}
			if _, err := server.Write(resp); err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(client, make([]byte, len(resp))); err != nil {
				t.Fatal(err)
			}

			cOut := rec.waitSegment(t, "client egress", byConn(cport, sport, capture.AtoB, req))
			sIn := rec.waitSegment(t, "server ingress", byConn(sport, cport, capture.BtoA, req))
			sOut := rec.waitSegment(t, "server egress", byConn(sport, cport, capture.AtoB, resp))
			cIn := rec.waitSegment(t, "client ingress", byConn(cport, sport, capture.BtoA, resp))

			pid := uint32(os.Getpid())
			for _, s := range []capture.Segment{cOut, sIn, sOut, cIn} {
				if s.Source != capture.SourceEBPF || s.PID != pid || s.Tuple.L4 != unix.IPPROTO_TCP ||
					s.Tuple.AIP != tc.ip || s.Tuple.BIP != tc.ip || s.Len != len(s.Data) ||
					s.TCPSeq == 0 || s.Comm == "" || s.FD <= 0 || s.TID == 0 {
					t.Errorf("bad segment %+v", s)
				}
				if s.Start.IsZero() || s.End.Before(s.Start) {
					t.Errorf("bad times %v..%v", s.Start, s.End)
				}
			}
			if cOut.TID != writerTID {
				t.Errorf("client egress tid %d, writer thread %d", cOut.TID, writerTID)
			}
			if cOut.TCPSeq != sIn.TCPSeq {
				t.Errorf("request seq: client egress %d != server ingress %d", cOut.TCPSeq, sIn.TCPSeq)
			}
			if sOut.TCPSeq != cIn.TCPSeq {
				t.Errorf("response seq: server egress %d != client ingress %d", sOut.TCPSeq, cIn.TCPSeq)
			}
			if cOut.ConnID != cIn.ConnID || sIn.ConnID != sOut.ConnID || cOut.ConnID == sIn.ConnID {
				t.Errorf("conn ids: client %x/%x server %x/%x", cOut.ConnID, cIn.ConnID, sIn.ConnID, sOut.ConnID)
			}
			// Per-socket capture sequence: each socket saw exactly two data
			// events, first one numbered 0.
			if cOut.CapSeq != 0 || cIn.CapSeq != 1 || sIn.CapSeq != 0 || sOut.CapSeq != 1 {
				t.Errorf("cap seqs: client %d,%d server %d,%d", cOut.CapSeq, cIn.CapSeq, sIn.CapSeq, sOut.CapSeq)
			}

			var cConn, sConn ConnInfo
			rec.wait(t, "conn events", func() bool {
				for _, c := range rec.conns {
					if c.ConnID == cOut.ConnID {
						cConn = c
					}
					if c.ConnID == sIn.ConnID {
						sConn = c
					}
				}
				return cConn.ConnID != 0 && sConn.ConnID != 0
			})
			if cConn.Role != RoleClient || cConn.Tuple != cOut.Tuple {
				t.Errorf("client conn event %+v, want role client tuple %+v", cConn, cOut.Tuple)
			}
			if sConn.Role != RoleServer || sConn.Tuple != sIn.Tuple {
				t.Errorf("server conn event %+v, want role server tuple %+v", sConn, sIn.Tuple)
			}

			client.Close()
			server.Close()
			rec.wait(t, "close events", func() bool {
				n := 0
				for _, c := range rec.closed {
					if c.ConnID == cOut.ConnID || c.ConnID == sIn.ConnID {
						n++
					}
				}
				return n == 2
			})
		})
	}
}

func TestTCPPayloadTruncated(t *testing.T) {
	rec := sharedTracer(t)
	client, server := tcpPair(t, "tcp4", "127.0.0.1:0")
	cport, sport := port(client.LocalAddr()), port(server.LocalAddr())
	msg := bytes.Repeat([]byte("0123456789abcdef"), 200) // 3200 bytes > testMaxPayload
	if _, err := client.Write(msg); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(server, make([]byte, len(msg))); err != nil {
		t.Fatal(err)
	}
	s := rec.waitSegment(t, "truncated egress", byConn(cport, sport, capture.AtoB, msg[:testMaxPayload]))
	if s.Len != len(msg) || s.Gap() != len(msg)-testMaxPayload {
		t.Errorf("Len %d Gap %d, want %d %d", s.Len, s.Gap(), len(msg), len(msg)-testMaxPayload)
	}
}

func TestUDPExchange(t *testing.T) {
	for _, tc := range []struct {
		name, network, addr string
		ip                  netip.Addr
	}{
		{"ipv4", "udp4", "127.0.0.1:0", netip.MustParseAddr("127.0.0.1")},
		{"ipv6", "udp6", "[::1]:0", netip.MustParseAddr("::1")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := sharedTracer(t)
			// Unconnected server: the peer comes from recvfrom/sendto's sockaddr.
			srv, err := net.ListenUDP(tc.network, net.UDPAddrFromAddrPort(netip.AddrPortFrom(tc.ip, 0)))
			if err != nil {
				t.Fatal(err)
			}
			defer srv.Close()
			cli, err := net.DialUDP(tc.network, nil, srv.LocalAddr().(*net.UDPAddr))
			if err != nil {
				t.Fatal(err)
			}
			defer cli.Close()
			cport, sport := port(cli.LocalAddr()), port(srv.LocalAddr())
			query, answer := []byte("dns-query-"+tc.name), []byte("dns-answer-"+tc.name)
			if _, err := cli.Write(query); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 128)
			_, from, err := srv.ReadFromUDP(buf)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := srv.WriteToUDP(answer, from); err != nil {
				t.Fatal(err)
			}
			if _, err := cli.Read(buf); err != nil {
				t.Fatal(err)
			}
			segs := []capture.Segment{
				rec.waitSegment(t, "client egress", byConn(cport, sport, capture.AtoB, query)),
				rec.waitSegment(t, "server ingress", byConn(sport, cport, capture.BtoA, query)),
				rec.waitSegment(t, "server egress", byConn(sport, cport, capture.AtoB, answer)),
				rec.waitSegment(t, "client ingress", byConn(cport, sport, capture.BtoA, answer)),
			}
			for _, s := range segs {
				if s.Tuple.L4 != unix.IPPROTO_UDP || s.TCPSeq != 0 || s.Tuple.BIP != tc.ip || s.Len != len(s.Data) {
					t.Errorf("bad udp segment %+v", s)
				}
			}
		})
	}
}

// TestSyscallVariants drives each syscall family directly and checks the
// payload is gathered from (or scattered into) multiple buffers.
func TestSyscallVariants(t *testing.T) {
	rec := sharedTracer(t)
	client, server := tcpPair(t, "tcp4", "127.0.0.1:0")
	cport, sport := port(client.LocalAddr()), port(server.LocalAddr())
	crc, err := client.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	src, err := server.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}

	type step struct {
		name  string
		parts [][]byte
		send  func(fd int, parts [][]byte) (int, error)
		recv  func(fd int, bufs [][]byte) (int, error)
	}
	sendmsg := func(fd int, p [][]byte) (int, error) { return unix.SendmsgBuffers(fd, p, nil, nil, 0) }
	recvmsg := func(fd int, b [][]byte) (int, error) {
		n, _, _, _, err := unix.RecvmsgBuffers(fd, b, nil, 0)
		return n, err
	}
	sendto := func(fd int, p [][]byte) (int, error) {
		return len(p[0]), unix.Sendto(fd, p[0], 0, nil)
	}
	recvfrom := func(fd int, b [][]byte) (int, error) {
		n, _, err := unix.Recvfrom(fd, b[0], 0)
		return n, err
	}
	write := func(fd int, p [][]byte) (int, error) { return unix.Write(fd, p[0]) }
	read := func(fd int, b [][]byte) (int, error) { return unix.Read(fd, b[0]) }

	for _, st := range []step{
		{"writev-readv", [][]byte{[]byte("wv-"), []byte("gather-"), []byte("three-parts")}, unix.Writev, unix.Readv},
		{"sendmsg-recvmsg", [][]byte{[]byte("sm-one-"), []byte("sm-two")}, sendmsg, recvmsg},
		{"sendto-recvfrom", [][]byte{[]byte("sendto-payload")}, sendto, recvfrom},
		{"write-read", [][]byte{[]byte("plain-write")}, write, read},
	} {
		t.Run(st.name, func(t *testing.T) {
			want := bytes.Join(st.parts, nil)
			n := doWrite(t, crc, func(fd int) (int, error) { return st.send(fd, st.parts) })
			if n != len(want) {
				t.Fatalf("sent %d of %d", n, len(want))
			}
			// Scatter into a small first buffer so the kernel must walk iovecs.
			bufs := [][]byte{make([]byte, 5), make([]byte, 64)}
			if len(st.parts) == 1 {
				bufs = [][]byte{make([]byte, 64)}
			}
			got := doRead(t, src, func(fd int) (int, error) { return st.recv(fd, bufs) })
			if got != len(want) {
				t.Fatalf("received %d of %d", got, len(want))
			}
			out := rec.waitSegment(t, "egress", byConn(cport, sport, capture.AtoB, want))
			in := rec.waitSegment(t, "ingress", byConn(sport, cport, capture.BtoA, want))
			if out.Len != len(want) || in.Len != len(want) || out.TCPSeq != in.TCPSeq {
				t.Errorf("egress %+v ingress %+v", out, in)
			}
		})
	}
}

// mmsghdr is struct mmsghdr (x/sys/unix has no sendmmsg wrapper).
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
	_   [4]byte
}

func TestSendmmsgRecvmmsgFirstMessage(t *testing.T) {
	rec := sharedTracer(t)
	srv, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	cli, err := net.DialUDP("udp4", nil, srv.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	cport, sport := port(cli.LocalAddr()), port(srv.LocalAddr())

	msgs := [][]byte{[]byte("mmsg-first"), []byte("mmsg-second-longer")}
	out := make([]mmsghdr, len(msgs))
	iovs := make([]unix.Iovec, len(msgs))
	for i, m := range msgs {
		iovs[i].Base = &m[0]
		iovs[i].SetLen(len(m))
		out[i].hdr.Iov = &iovs[i]
		out[i].hdr.SetIovlen(1)
	}
	crc, _ := cli.SyscallConn()
	doWrite(t, crc, func(fd int) (int, error) {
		n, _, e := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(fd), uintptr(unsafe.Pointer(&out[0])), uintptr(len(out)), 0, 0, 0)
		if e != 0 {
			return 0, e
		}
		return int(n), nil
	})

	in := make([]mmsghdr, 2)
	rbufs := [][]byte{make([]byte, 64), make([]byte, 64)}
	riovs := make([]unix.Iovec, 2)
	names := make([]unix.RawSockaddrInet4, 2)
	for i := range in {
		riovs[i].Base = &rbufs[i][0]
		riovs[i].SetLen(len(rbufs[i]))
		in[i].hdr.Iov = &riovs[i]
		in[i].hdr.SetIovlen(1)
		in[i].hdr.Name = (*byte)(unsafe.Pointer(&names[i]))
		in[i].hdr.Namelen = uint32(unsafe.Sizeof(names[i]))
	}
	src, _ := srv.SyscallConn()
	doRead(t, src, func(fd int) (int, error) {
		n, _, e := unix.Syscall6(unix.SYS_RECVMMSG, uintptr(fd), uintptr(unsafe.Pointer(&in[0])), uintptr(len(in)), 0, 0, 0)
		if e != 0 {
			return 0, e
		}
		return int(n), nil
	})
	eg := rec.waitSegment(t, "sendmmsg first message", byConn(cport, sport, capture.AtoB, msgs[0]))
	ig := rec.waitSegment(t, "recvmmsg first message", byConn(sport, cport, capture.BtoA, msgs[0]))
	if eg.Len != len(msgs[0]) || ig.Len != len(msgs[0]) {
		t.Errorf("lens %d %d, want %d", eg.Len, ig.Len, len(msgs[0]))
	}
}

// TestSyscallTraceID: a thread that reads a request and then writes gets
// the same id on both; its next read opens a new id; consecutive reads of
// one socket share an id.
func TestSyscallTraceID(t *testing.T) {
	rec := sharedTracer(t)
	client, server := tcpPair(t, "tcp4", "127.0.0.1:0")
	cport, sport := port(client.LocalAddr()), port(server.LocalAddr())
	src, err := server.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	send := func(b string) {
		if _, err := client.Write([]byte(b)); err != nil {
			t.Error(err)
		}
	}
	readN := func(n int) { doRead(t, src, func(fd int) (int, error) { return unix.Read(fd, make([]byte, n)) }) }
	write := func(b string) {
		doWrite(t, src, func(fd int) (int, error) { return unix.Write(fd, []byte(b)) })
	}

	send("req-1")
	// Client writes happen on other goroutines, never on the locked thread.
	tid := onThread(func() {
		readN(5)
		write("resp-1")
		done := make(chan struct{})
		go func() { send("req-2"); close(done) }()
		<-done
		readN(5)
		write("resp-2")
		done = make(chan struct{})
		go func() { send("0123456789"); close(done) }()
		<-done
		readN(4)
		readN(6)
	})
	in := func(d string) capture.Segment {
		return rec.waitSegment(t, "ingress "+d, byConn(sport, cport, capture.BtoA, []byte(d)))
	}
	out := func(d string) capture.Segment {
		return rec.waitSegment(t, "egress "+d, byConn(sport, cport, capture.AtoB, []byte(d)))
	}
	r1, w1, r2, w2, p1, p2 := in("req-1"), out("resp-1"), in("req-2"), out("resp-2"), in("0123"), in("456789")
	for _, s := range []capture.Segment{r1, w1, r2, w2, p1, p2} {
		if s.TID != tid {
			t.Errorf("segment %q on tid %d, want %d", s.Data, s.TID, tid)
		}
	}
	ids := fmt.Sprintf("r1=%d w1=%d r2=%d w2=%d p1=%d p2=%d", r1.SyscallTraceID, w1.SyscallTraceID,
		r2.SyscallTraceID, w2.SyscallTraceID, p1.SyscallTraceID, p2.SyscallTraceID)
	switch {
	case r1.SyscallTraceID == 0 || r2.SyscallTraceID == 0 || p1.SyscallTraceID == 0:
		t.Errorf("ingress opened no id: %s", ids)
	case w1.SyscallTraceID != r1.SyscallTraceID || w2.SyscallTraceID != r2.SyscallTraceID:
		t.Errorf("egress did not take the thread's id: %s", ids)
	case r2.SyscallTraceID == r1.SyscallTraceID || p1.SyscallTraceID == r2.SyscallTraceID:
		t.Errorf("a read after a write did not open a new id: %s", ids)
	case p2.SyscallTraceID != p1.SyscallTraceID:
		t.Errorf("consecutive reads of one message got different ids: %s", ids)
	}
}

// TestExcludeSelf traces the whole host except this process: a child
// process's traffic to our server is seen, our own side of it is not.
func TestExcludeSelf(t *testing.T) {
	marker := fmt.Sprintf("exclude-self-marker-%d", os.Getpid())
	tr, err := New(Config{ExcludeSelf: true})
	if err != nil {
		t.Fatal(err)
	}
	rec := newRecorder()
	rec.keepData = func(s *capture.Segment) bool { return bytes.HasPrefix(s.Data, []byte(marker)) }
	done := make(chan error, 1)
	go func() { done <- tr.Run(t.Context(), rec) }()
	defer func() {
		if err := tr.Close(); err != nil {
			t.Error(err)
		}
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()

	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		buf := make([]byte, 128)
		n, _ := c.Read(buf)
		c.Write([]byte(marker + "-reply:" + string(buf[:n])))
	}()

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "SOCKTRACE_TEST_CHILD_DIAL="+ln.Addr().String(),
		"SOCKTRACE_TEST_CHILD_MARKER="+marker)
	if outp, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("child: %v: %s", err, outp)
	}
	child := uint32(cmd.Process.Pid)
	self := uint32(os.Getpid())

	rec.waitSegment(t, "child's egress", func(s *capture.Segment) bool {
		return s.PID == child && s.Dir == capture.AtoB && string(s.Data) == marker
	})
	rec.waitSegment(t, "child's ingress of the reply", func(s *capture.Segment) bool {
		return s.PID == child && s.Dir == capture.BtoA && strings.HasPrefix(string(s.Data), marker+"-reply")
	})
	rec.wait(t, "child exec and exit", func() bool {
		var exec, exit bool
		for _, p := range rec.execs {
			exec = exec || p == child
		}
		for _, p := range rec.exits {
			exit = exit || p == child
		}
		return exec && exit
	})
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, s := range rec.segs {
		if s.PID == self {
			t.Errorf("own process traced despite ExcludeSelf: %+v", s)
		}
	}
}

func TestStatsCountEvents(t *testing.T) {
	rec := sharedTracer(t)
	client, server := tcpPair(t, "tcp4", "127.0.0.1:0")
	if _, err := client.Write([]byte("stats")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(server, make([]byte, 5)); err != nil {
		t.Fatal(err)
	}
	rec.waitSegment(t, "stats ingress", byConn(port(server.LocalAddr()), port(client.LocalAddr()), capture.BtoA, []byte("stats")))
	st := shared.tr.Stats()
	if st.EventsRead == 0 || st.Segments < 2 || st.ConnOpened < 2 || st.DecodeErrors != 0 {
		t.Errorf("stats %+v", st)
	}
	if st.KernelDrops() != 0 {
		t.Errorf("kernel dropped events in a quiet test: %+v", st)
	}
}

// TestMaxPayloadLimitAndRingFull loads the largest payload setting (the
// verifier sees other bounds than with the default), checks a 16 KiB prefix
// gathered across iovecs, then stops reading and checks that a full ring
// buffer drops events and counts them.
func TestMaxPayloadLimitAndRingFull(t *testing.T) {
	tr, err := New(Config{
		MaxPayload:      MaxPayloadLimit,
		RingBufferBytes: 64 << 10,
		OnlyPIDs:        []uint32{uint32(os.Getpid())},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	rec := newRecorder()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tr.Run(ctx, rec) }()

	client, server := tcpPair(t, "tcp4", "127.0.0.1:0")
	cport, sport := port(client.LocalAddr()), port(server.LocalAddr())
	parts := [][]byte{
		bytes.Repeat([]byte("a"), 7000), bytes.Repeat([]byte("b"), 7000), bytes.Repeat([]byte("c"), 7000),
	}
	all := bytes.Join(parts, nil)
	crc, err := client.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	if n := doWrite(t, crc, func(fd int) (int, error) { return unix.Writev(fd, parts) }); n != len(all) {
		t.Fatalf("writev wrote %d of %d", n, len(all))
	}
	if _, err := io.ReadFull(server, make([]byte, len(all))); err != nil {
		t.Fatal(err)
	}
	s := rec.waitSegment(t, "16 KiB prefix", byConn(cport, sport, capture.AtoB, all[:MaxPayloadLimit]))
	if s.Len != len(all) {
		t.Errorf("Len %d, want %d", s.Len, len(all))
	}

	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// Nobody reads now: 64 KiB of ring holds only a few 16 KiB records.
	before := tr.Stats().RingbufFull
	go io.Copy(io.Discard, server)
	for range 32 {
		if _, err := client.Write(all[:MaxPayloadLimit]); err != nil {
			t.Fatal(err)
		}
	}
	if got := tr.Stats().RingbufFull; got <= before {
		t.Errorf("ring buffer full drops %d -> %d, want an increase", before, got)
	}
}

// TestTCPSeqIsFirstByte checks the sequence arithmetic against the stream
// itself: a second message starts exactly len(first) bytes after the first,
// on both ends (agreement between the ends alone would not catch an offset
// applied to both).
func TestTCPSeqIsFirstByte(t *testing.T) {
	rec := sharedTracer(t)
	client, server := tcpPair(t, "tcp4", "127.0.0.1:0")
	cport, sport := port(client.LocalAddr()), port(server.LocalAddr())
	first := bytes.Repeat([]byte("1"), 100)
	second := []byte("second-message-37-bytes-long.........")
	for _, m := range [][]byte{first, second} {
		if _, err := client.Write(m); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(server, make([]byte, len(m))); err != nil {
			t.Fatal(err)
		}
	}
	out1 := rec.waitSegment(t, "egress 1", byConn(cport, sport, capture.AtoB, first))
	out2 := rec.waitSegment(t, "egress 2", byConn(cport, sport, capture.AtoB, second))
	in1 := rec.waitSegment(t, "ingress 1", byConn(sport, cport, capture.BtoA, first))
	in2 := rec.waitSegment(t, "ingress 2", byConn(sport, cport, capture.BtoA, second))
	if d := out2.TCPSeq - out1.TCPSeq; d != uint32(len(first)) {
		t.Errorf("egress: second message %d bytes after the first, want %d", d, len(first))
	}
	if d := in2.TCPSeq - in1.TCPSeq; d != uint32(len(first)) {
		t.Errorf("ingress: second message %d bytes after the first, want %d", d, len(first))
	}
	if out1.TCPSeq != in1.TCPSeq {
		t.Errorf("ends disagree: egress %d ingress %d", out1.TCPSeq, in1.TCPSeq)
	}
}

// TestPeekNotCaptured: bytes read with MSG_PEEK are read again; only the
// real read is an event.
func TestPeekNotCaptured(t *testing.T) {
	rec := sharedTracer(t)
	client, server := tcpPair(t, "tcp4", "127.0.0.1:0")
	cport, sport := port(client.LocalAddr()), port(server.LocalAddr())
	msg := []byte("peek-then-read")
	if _, err := client.Write(msg); err != nil {
		t.Fatal(err)
	}
	src, err := server.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	peeked := doRead(t, src, func(fd int) (int, error) {
		n, _, err := unix.Recvfrom(fd, make([]byte, 64), unix.MSG_PEEK)
		return n, err
	})
	if peeked != len(msg) {
		t.Fatalf("peeked %d of %d", peeked, len(msg))
	}
	if _, err := io.ReadFull(server, make([]byte, len(msg))); err != nil {
		t.Fatal(err)
	}
	in := rec.waitSegment(t, "ingress", byConn(sport, cport, capture.BtoA, msg))
	// A marker exchanged afterwards bounds the wait for a duplicate.
	marker := []byte("marker")
	if _, err := client.Write(marker); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(server, make([]byte, len(marker))); err != nil {
		t.Fatal(err)
	}
	mk := rec.waitSegment(t, "marker", byConn(sport, cport, capture.BtoA, marker))
	n := rec.count(byConn(sport, cport, capture.BtoA, msg))
	if n != 1 || mk.CapSeq != in.CapSeq+1 {
		t.Errorf("%d ingress events of the message, cap seqs %d then %d: want 1 event, consecutive", n, in.CapSeq, mk.CapSeq)
	}
}

// TestTCPSeqReadThroughFIN: a response followed by the server's FIN, read
// in one call that also consumes the FIN (which takes a sequence number),
// keeps the sequence of its first byte.
func TestTCPSeqReadThroughFIN(t *testing.T) {
	rec := sharedTracer(t)
	client, server := tcpPair(t, "tcp4", "127.0.0.1:0")
	cport, sport := port(client.LocalAddr()), port(server.LocalAddr())
	resp := []byte("HTTP/1.0 200 OK\r\n\r\nbody then FIN")
	if _, err := server.Write(resp); err != nil {
		t.Fatal(err)
	}
	if err := server.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // data and FIN both queued at the client
	got, err := io.ReadAll(client)
	if err != nil || !bytes.Equal(got, resp) {
		t.Fatalf("read %q, %v", got, err)
	}
	out := rec.waitSegment(t, "server egress", byConn(sport, cport, capture.AtoB, resp))
	in := rec.waitSegment(t, "client ingress", byConn(cport, sport, capture.BtoA, resp))
	if out.TCPSeq != in.TCPSeq {
		t.Errorf("egress seq %d, ingress seq %d", out.TCPSeq, in.TCPSeq)
	}
}

// TestSyscallTraceIDAcrossCalls: a server thread's downstream calls and
// their replies keep the request's id (the reply arrives on a client
// socket), so every call it makes joins the request; a thread that reads a
// second request before answering the first (an event loop) gets no id.
func TestSyscallTraceIDAcrossCalls(t *testing.T) {
	rec := sharedTracer(t)
	front, frontSrv := tcpPair(t, "tcp4", "127.0.0.1:0")
	down, downSrv := tcpPair(t, "tcp4", "127.0.0.1:0")
	other, otherSrv := tcpPair(t, "tcp4", "127.0.0.1:0")
	fport, fsport := port(front.LocalAddr()), port(frontSrv.LocalAddr())
	dport, dsport := port(down.LocalAddr()), port(downSrv.LocalAddr())
	oport, osport := port(other.LocalAddr()), port(otherSrv.LocalAddr())
	raw := func(c *net.TCPConn) syscallConn {
		rc, err := c.SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		return rc
	}
	srv, dn, oth := raw(frontSrv), raw(down), raw(otherSrv)
	read := func(rc syscallConn, n int) {
		doRead(t, rc, func(fd int) (int, error) { return unix.Read(fd, make([]byte, n)) })
	}
	write := func(rc syscallConn, b string) {
		doWrite(t, rc, func(fd int) (int, error) { return unix.Write(fd, []byte(b)) })
	}
	peer := func(c *net.TCPConn, b string) {
		done := make(chan struct{})
		go func() {
			if _, err := c.Write([]byte(b)); err != nil {
				t.Error(err)
			}
			close(done)
		}()
		<-done
	}
	if _, err := front.Write([]byte("REQ1")); err != nil {
		t.Fatal(err)
	}
	warm, warmSrv := tcpPair(t, "tcp4", "127.0.0.1:0")
	wsrv := raw(warmSrv)
	if _, err := warm.Write([]byte("WARM")); err != nil {
		t.Fatal(err)
	}
	onThread(func() {
		// The OS thread may come from an earlier test with a request it
		// read and never answered on a socket still open (an event loop
		// for up to 10 s): one answered request on it first resets that.
		read(wsrv, 4)
		write(wsrv, "DONE")
		read(srv, 4)          // request on the server socket: new id
		write(dn, "CALL")     // downstream call
		peer(downSrv, "RPLY") // the downstream server answers
		read(dn, 4)           // reply on the client socket: same id
		write(dn, "CAL2")     // second call
		write(srv, "RSP1")    // answer
		peer(front, "REQA")   // two requests arrive on two sockets
		peer(other, "REQB")
		read(srv, 4) // A
		read(oth, 4) // B before A is answered: an event loop
		write(oth, "RSPB")
	})
	seg := func(what string, a, b uint16, dir capture.Direction, d string) capture.Segment {
		return rec.waitSegment(t, what, byConn(a, b, dir, []byte(d)))
	}
	req := seg("request", fsport, fport, capture.BtoA, "REQ1")
	call := seg("call", dport, dsport, capture.AtoB, "CALL")
	reply := seg("reply", dport, dsport, capture.BtoA, "RPLY")
	call2 := seg("second call", dport, dsport, capture.AtoB, "CAL2")
	resp := seg("response", fsport, fport, capture.AtoB, "RSP1")
	if req.SyscallTraceID == 0 {
		t.Fatal("request opened no id")
	}
	for _, s := range []capture.Segment{call, reply, call2, resp} {
		if s.SyscallTraceID != req.SyscallTraceID {
			t.Errorf("%q: id %d, want the request's %d", s.Data, s.SyscallTraceID, req.SyscallTraceID)
		}
	}
	a := seg("request A", fsport, fport, capture.BtoA, "REQA")
	b := seg("request B", osport, oport, capture.BtoA, "REQB")
	rb := seg("response B", osport, oport, capture.AtoB, "RSPB")
	if a.SyscallTraceID == 0 || a.SyscallTraceID == req.SyscallTraceID {
		t.Errorf("request A id %d (first request %d)", a.SyscallTraceID, req.SyscallTraceID)
	}
	if b.SyscallTraceID != 0 || rb.SyscallTraceID != 0 {
		t.Errorf("interleaved request B got ids %d/%d, want 0", b.SyscallTraceID, rb.SyscallTraceID)
	}
}
