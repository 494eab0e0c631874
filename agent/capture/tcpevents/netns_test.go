package tcpevents

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

func run(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// vethPair makes two network namespaces joined by a veth pair, unique per
// process, removed at cleanup. It returns the namespace names and the
// address of each end.
func vethPair(t *testing.T) (nsA, nsB, ipA, ipB string) {
	t.Helper()
	id := os.Getpid()
	nsA, nsB = fmt.Sprintf("tev%da", id), fmt.Sprintf("tev%db", id)
	// Addresses inside the test's own namespaces only.
	ipA, ipB = fmt.Sprintf("10.213.%d.1", id%250), fmt.Sprintf("10.213.%d.2", id%250)
	run(t, "ip", "netns", "add", nsA)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", nsA).Run() })
	run(t, "ip", "netns", "add", nsB)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", nsB).Run() })
	run(t, "ip", "link", "add", "veth0", "netns", nsA, "type", "veth", "peer", "name", "veth0", "netns", nsB)
	for _, c := range [][]string{
		{"ip", "-n", nsA, "addr", "add", ipA + "/30", "dev", "veth0"},
		{"ip", "-n", nsB, "addr", "add", ipB + "/30", "dev", "veth0"},
		// One MSS per packet, so loss hits segments, not 64 KiB GSO bursts.
		{"ip", "-n", nsA, "link", "set", "veth0", "gso_max_segs", "1"},
		{"ip", "-n", nsB, "link", "set", "veth0", "gso_max_segs", "1"},
		{"ip", "-n", nsA, "link", "set", "veth0", "up"},
		{"ip", "-n", nsB, "link", "set", "veth0", "up"},
		{"ip", "-n", nsA, "link", "set", "lo", "up"},
		{"ip", "-n", nsB, "link", "set", "lo", "up"},
	} {
		run(t, c...)
	}
	return nsA, nsB, ipA, ipB
}

// inNetns runs fn on a goroutine whose OS thread is moved into the named
// namespace; the thread is discarded afterwards (never unlocked).
func inNetns(name string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		f, err := os.Open("/var/run/netns/" + name)
		if err != nil {
			errc <- err
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", name, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// lossProgram drops about pct percent of packets of at least minLen bytes
// (minLen 200: data, not handshakes or pure ACKs). netem is not built into this
// kernel (CONFIG_NET_SCH_NETEM unset), so loss is emulated with TCX on the
// receiver's ingress: a drop on the sender's egress is reported to TCP as
// a local error and the segment is resent as a first transmission.
func lossProgram(pct, minLen int32) (*ebpf.Program, error) {
	return ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:       ebpf.SchedCLS,
		AttachType: ebpf.AttachTCXIngress,
		License:    "Dual BSD/GPL",
		Instructions: asm.Instructions{
			asm.LoadMem(asm.R6, asm.R1, 0, asm.Word), // __sk_buff.len
			asm.JLT.Imm(asm.R6, minLen, "pass"),
			asm.FnGetPrandomU32.Call(),
			asm.Mod.Imm(asm.R0, 100),
			asm.JLT.Imm(asm.R0, pct, "drop"),
			asm.Mov.Imm(asm.R0, -1).WithSymbol("pass"), // TCX_NEXT
			asm.Return(),
			asm.Mov.Imm(asm.R0, 2).WithSymbol("drop"), // TCX_DROP
			asm.Return(),
		},
	})
}

func TestRetransmitsUnderLoss(t *testing.T) {
	r := startRecorder(t)
	nsA, nsB, _, ipB := vethPair(t)
	prog, err := lossProgram(30, 200)
	if err != nil {
		t.Fatalf("load loss program: %v", err)
	}
	defer prog.Close()

	const size = 128 << 10
	serverAddr := net.JoinHostPort(ipB, "9000")
	var ln net.Listener
	if err := inNetns(nsB, func() (err error) {
		ln, err = net.Listen("tcp4", serverAddr)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- err
			return
		}
		defer c.Close()
		n, err := io.Copy(io.Discard, c)
		if err == nil && n != size {
			err = fmt.Errorf("server got %d bytes, want %d", n, size)
		}
		got <- err
	}()

	attachIngress(t, nsB, prog)
	var conn net.Conn
	if err := inNetns(nsA, func() (err error) {
		conn, err = net.DialTimeout("tcp4", serverAddr, 10*time.Second)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	client := addrPort(t, conn.LocalAddr())
	conn.SetDeadline(time.Now().Add(40 * time.Second))
	if _, err := conn.Write(make([]byte, size)); err != nil {
		t.Fatalf("write: %v\n%s", err, r.dump())
	}
	conn.Close()
	select {
	case err := <-got:
		if err != nil && !errors.Is(err, io.EOF) {
			t.Fatalf("server: %v", err)
		}
	case <-time.After(45 * time.Second):
		t.Fatal("server did not receive the data")
	}

	pid := uint32(os.Getpid())
	isClient := func(e *Event) bool { return local(e) == client }
	r.waitFor(t, waitTimeout, "retransmits of the client", has(Retransmit, isClient))
	rts := r.find(func(e *Event) bool { return e.Type == Retransmit && isClient(e) })
	attributed := 0
	for i := range rts {
		if rts[i].PID == pid && rts[i].Owner == OwnerConnect {
			attributed++
		}
	}
	if attributed != len(rts) {
		t.Errorf("%d of %d retransmits attributed to pid %d", attributed, len(rts), pid)
	}
	counters := NewCounters(0)
	for _, e := range r.find(func(*Event) bool { return true }) {
		counters.Add(&e)
	}
	k := KeyOf(&rts[0])
	v, ok := counters.Lookup(k)
	if !ok || v.Retransmits != uint64(len(rts)) {
		t.Errorf("counters[%+v] = %+v, want %d retransmits", k, v, len(rts))
	}
	t.Logf("%d retransmits for %d bytes at 30%% loss; first: %s", len(rts), size, describe(&rts[0]))
}

// attachIngress attaches prog to the ingress of veth0 in namespace ns
// until the test ends.
func attachIngress(t *testing.T, ns string, prog *ebpf.Program) {
	t.Helper()
	var lk link.Link
	if err := inNetns(ns, func() error {
		ifc, err := net.InterfaceByName("veth0")
		if err != nil {
			return err
		}
		if lk, err = link.AttachTCX(link.TCXOptions{Interface: ifc.Index, Program: prog, Attach: ebpf.AttachTCXIngress}); err != nil {
			return fmt.Errorf("attach loss program: %w", err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lk.Close() })
}

// A SYN that is never answered fails with ETIMEDOUT, told apart from a
// refused connect; the SYN retransmission is reported too.
func TestConnectTimeout(t *testing.T) {
	r := startRecorder(t)
	nsA, nsB, _, ipB := vethPair(t)
	prog, err := lossProgram(100, 0)
	if err != nil {
		t.Fatalf("load loss program: %v", err)
	}
	defer prog.Close()
	attachIngress(t, nsB, prog)
	target := netip.AddrPortFrom(netip.MustParseAddr(ipB), 9001)
	var connErr error
	if err := inNetns(nsA, func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		// One SYN retry, then give up (about 3 s).
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_SYNCNT, 1); err != nil {
			return err
		}
		connErr = unix.Connect(fd, &unix.SockaddrInet4{Port: int(target.Port()), Addr: target.Addr().As4()})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if !errors.Is(connErr, unix.ETIMEDOUT) {
		t.Fatalf("connect: %v, want ETIMEDOUT", connErr)
	}
	pid := uint32(os.Getpid())
	toTarget := func(e *Event) bool { return remote(e) == target && e.PID == pid }
	r.waitFor(t, waitTimeout, "connect_failed", has(ConnectFailed, toTarget))
	failed := r.find(func(e *Event) bool { return e.Type == ConnectFailed && toTarget(e) })[0]
	if failed.Failure() != FailureTimeout {
		t.Errorf("failure %s (errno %d), want timeout", failed.Failure(), failed.Err)
	}
	syn := r.find(func(e *Event) bool { return e.Type == Retransmit && toTarget(e) && e.NewState == StateSynSent })
	if len(syn) == 0 {
		t.Error("no SYN retransmission reported")
	}
	if len(r.find(func(e *Event) bool { return e.Type == ResetReceived && toTarget(e) })) != 0 {
		t.Error("reset_received on a timed-out connect")
	}
}
