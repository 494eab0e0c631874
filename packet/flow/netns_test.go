package flow

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The kernel here is built without sch_netem, so delay and loss are
// emulated in user space: the client and server namespaces are joined by a
// TUN device in each, and this process forwards IP packets between the two,
// delaying each direction and dropping chosen client data segments.
//
//	client ns: tunc 10.77.0.1 peer 10.77.0.2   <-- bridge -->   server ns: tuns 10.77.0.2 peer 10.77.0.1
//
// tcpdump captures on tunc, so the capture is the client's NIC: client
// packets before the delay, server packets after it (RTT ≈ 2 × delay).

const (
	clientIP = "10.77.0.1"
	serverIP = "10.77.0.2"
)

// netemSpec is the bridge's impairment.
type netemSpec struct {
	delay time.Duration // each way
	drop  map[int]bool  // 1-based indices of client→server data segments to drop
	// syncookies, when set, is the server namespace's net.ipv4.tcp_syncookies.
	syncookies string
}

// testNet is a pair of namespaces joined by the bridge.
type testNet struct {
	t      *testing.T
	cns    string // client namespace
	sns    string // server namespace
	tunC   *os.File
	tunS   *os.File
	wg     sync.WaitGroup
	closed chan struct{}
}

func mustRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("this test needs root (network namespaces, TUN, tcpdump)")
	}
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
}

func randSuffix() string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%d%s", os.Getpid()%100000, hex.EncodeToString(b[:]))
}

// newTestNet creates the namespaces, the TUN devices and the bridge.
func newTestNet(t *testing.T, spec netemSpec) *testNet {
	mustRoot(t)
	sfx := randSuffix()
	n := &testNet{t: t, cns: "flc" + sfx, sns: "fls" + sfx, closed: make(chan struct{})}
	run(t, "ip", "netns", "add", n.cns)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", n.cns).Run() })
	run(t, "ip", "netns", "add", n.sns)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", n.sns).Run() })
	var err error
	if n.tunC, err = openTUN(n.cns, "tunc"); err != nil {
		t.Fatal(err)
	}
	if n.tunS, err = openTUN(n.sns, "tuns"); err != nil {
		t.Fatal(err)
	}
	for _, c := range [][]string{
		{"-n", n.cns, "link", "set", "lo", "up"},
		{"-n", n.sns, "link", "set", "lo", "up"},
		{"-n", n.cns, "addr", "add", clientIP, "peer", serverIP, "dev", "tunc"},
		{"-n", n.sns, "addr", "add", serverIP, "peer", clientIP, "dev", "tuns"},
		{"-n", n.cns, "link", "set", "tunc", "up"},
		{"-n", n.sns, "link", "set", "tuns", "up"},
	} {
		run(t, "ip", c...)
	}
	if spec.syncookies != "" {
		run(t, "ip", "netns", "exec", n.sns, "sysctl", "-qw", "net.ipv4.tcp_syncookies="+spec.syncookies)
	}
	n.wg.Add(2)
	go n.pump(n.tunC, n.tunS, spec.delay, spec.drop)
	go n.pump(n.tunS, n.tunC, spec.delay, nil)
	t.Cleanup(func() {
		close(n.closed)
		n.tunC.Close()
		n.tunS.Close()
		n.wg.Wait()
	})
	return n
}

// openTUN creates TUN device name inside namespace ns and returns it.
func openTUN(ns, name string) (*os.File, error) {
	errc := make(chan error, 1)
	var f *os.File
	go func() {
		// The thread is left locked: its namespace is changed, so the
		// runtime discards it when this goroutine ends.
		runtime.LockOSThread()
		nsf, err := os.Open("/var/run/netns/" + ns)
		if err != nil {
			errc <- fmt.Errorf("open netns: %w", err)
			return
		}
		defer nsf.Close()
		if err := unix.Setns(int(nsf.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", ns, err)
			return
		}
		fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
		if err != nil {
			errc <- fmt.Errorf("open tun: %w", err)
			return
		}
		var req [unix.IFNAMSIZ + 64]byte
		copy(req[:], name)
		*(*uint16)(unsafe.Pointer(&req[unix.IFNAMSIZ])) = unix.IFF_TUN | unix.IFF_NO_PI
		if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.TUNSETIFF, uintptr(unsafe.Pointer(&req[0]))); e != 0 {
			unix.Close(fd)
			errc <- fmt.Errorf("TUNSETIFF %s: %w", name, e)
			return
		}
		f = os.NewFile(uintptr(fd), name)
		errc <- nil
	}()
	return f, <-errc
}

// pump forwards packets from src to dst after delay, dropping the chosen
// data segments (IPv4/TCP with payload, counted from 1).
func (n *testNet) pump(src, dst *os.File, delay time.Duration, drop map[int]bool) {
	defer n.wg.Done()
	type item struct {
		b   []byte
		due time.Time
	}
	q := make(chan item, 4096)
	go func() {
		for it := range q {
			if d := time.Until(it.due); d > 0 {
				select {
				case <-time.After(d):
				case <-n.closed:
					return
				}
			}
			_, _ = dst.Write(it.b)
		}
	}()
	defer close(q)
	buf := make([]byte, 65536)
	data := 0
	for {
		k, err := src.Read(buf)
		if err != nil {
			return
		}
		b := append([]byte(nil), buf[:k]...)
		if tcpPayload(b) > 0 {
			data++
			if drop[data] {
				continue
			}
		}
		select {
		case q <- item{b, time.Now().Add(delay)}:
		default: // queue full: drop, like a full qdisc
		}
	}
}

// tcpPayload returns the TCP payload length of an IPv4 packet, else 0.
func tcpPayload(b []byte) int {
	if len(b) < 20 || b[0]>>4 != 4 || b[9] != 6 {
		return 0
	}
	ihl := int(b[0]&0x0f) * 4
	total := int(b[2])<<8 | int(b[3])
	if len(b) < ihl+13 {
		return 0
	}
	return total - ihl - int(b[ihl+12]>>4)*4
}

// capture runs tcpdump on the client's TUN device into path until stop.
func (n *testNet) capture(path string) (stop func()) {
	t := n.t
	cmd := exec.Command("ip", "netns", "exec", n.cns, "tcpdump", "-i", "tunc", "-n", "-U", "--immediate-mode", "-s", "128", "-Z", "root", "-w", path)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("tcpdump: %v", err)
	}
	sc := bufio.NewScanner(stderr)
	ready := make(chan bool, 1)
	go func() {
		ok := false
		for sc.Scan() {
			if !ok && strings.Contains(sc.Text(), "listening on") {
				ok = true
				ready <- true
			}
		}
		if !ok {
			ready <- false
		}
	}()
	select {
	case ok := <-ready:
		if !ok {
			t.Fatal("tcpdump exited before listening")
		}
	case <-time.After(15 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatal("tcpdump did not start")
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			time.Sleep(300 * time.Millisecond) // let the last packets in
			_ = cmd.Process.Signal(syscall.SIGINT)
			done := make(chan struct{})
			go func() { _ = cmd.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				_ = cmd.Process.Kill()
				<-done
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// helperEnv names the role a re-executed test binary plays (see
// TestNetnsHelper).
const helperEnv = "SIGHTLINE_FLOW_HELPER"

// proc is a helper process.
type proc struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed when its stdout ends (the process exited)
}

// start runs this test binary in namespace ns as role and, when marker is
// set, waits until the helper prints it. The process is killed in
// t.Cleanup.
func (n *testNet) start(ns, role, marker string) *proc {
	t := n.t
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", ns, exe, "-test.run=^TestNetnsHelper$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperEnv+"="+role, "SIGHTLINE_FLOW_SERVER="+serverIP+":9000")
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", role, err)
	}
	p := &proc{cmd: cmd, exited: make(chan struct{})}
	got := make(chan struct{})
	go func() {
		defer close(p.exited)
		want := marker
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if want != "" && sc.Text() == want {
				close(got)
				want = ""
			}
		}
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.exited
		_ = cmd.Wait()
	})
	if marker != "" {
		select {
		case <-got:
		case <-p.exited:
			t.Fatalf("helper %s exited before printing %q", role, marker)
		case <-time.After(30 * time.Second):
			t.Fatalf("helper %s did not print %q", role, marker)
		}
	}
	return p
}

// wait waits for the helper to exit.
func (p *proc) wait(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case <-p.exited:
	case <-time.After(d):
		t.Fatalf("helper did not finish in %v", d)
	}
}
