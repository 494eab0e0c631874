package afpacket

import (
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sightline-io/sightline/packet/decode"
)

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("this test needs root (AF_PACKET sockets, network namespaces)")
	}
}

// seen is a decoded frame, copied out of the ring.
type seen struct {
	pkt      decode.Packet
	payload  string
	dataLen  int
	wireLen  int
	outgoing bool
	iface    string
	link     decode.LinkType
	err      error
}

// recorder runs a capture and keeps the frames that keep() selects.
type recorder struct {
	c      *Capture
	mu     sync.Mutex
	frames []seen
	dec    decode.Stats
	runErr chan error
	cancel context.CancelFunc
}

func startRecorder(t *testing.T, cfg Config, keep func(*seen) bool) *recorder {
	t.Helper()
	c, err := Open(cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &recorder{c: c, runErr: make(chan error, 1), cancel: cancel}
	var dec decode.Decoder
	go func() {
		r.runErr <- c.Run(ctx, func(f *Frame) {
			var s seen
			s.err = dec.Decode(f.LinkType, f.Data, &s.pkt)
			s.payload = string(s.pkt.Payload)
			s.pkt.Payload = nil
			s.dataLen, s.wireLen, s.outgoing, s.iface, s.link = len(f.Data), f.WireLen, f.Outgoing, f.Interface, f.LinkType
			r.mu.Lock()
			defer r.mu.Unlock()
			r.dec = dec.Stats
			if keep(&s) {
				r.frames = append(r.frames, s)
			}
		})
	}()
	t.Cleanup(func() { r.stop(t) })
	return r
}

func (r *recorder) stop(t *testing.T) {
	t.Helper()
	if r.cancel == nil {
		return
	}
	r.cancel()
	r.cancel = nil
	select {
	case err := <-r.runErr:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Error("Run did not return after cancel")
	}
	if err := r.c.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}

func (r *recorder) snapshot() ([]seen, decode.Stats) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]seen(nil), r.frames...), r.dec
}

// waitFor polls until cond holds on the recorded frames or the timeout.
func (r *recorder) waitFor(t *testing.T, what string, cond func([]seen) bool) []seen {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		fr, _ := r.snapshot()
		if cond(fr) {
			return fr
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; have %d frames", what, len(fr))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func run(t testing.TB, args ...string) {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// uniqueName returns a short name (interface names have at most 15 bytes)
// unique to this process and call.
func uniqueName(prefix string) string {
	return prefix + itoa36(uint64(os.Getpid())<<20|uint64(rand.IntN(1<<20)))
}

func itoa36(v uint64) string {
	const digits = "0123456789abcdefghijklmnopqrstuvwxyz"
	var b []byte
	for v > 0 {
		b = append([]byte{digits[v%36]}, b...)
		v /= 36
	}
	if len(b) > 10 {
		b = b[len(b)-10:]
	}
	return string(b)
}

// inNetns runs fn on a thread switched into the named network namespace.
// Sockets fn opens stay in that namespace afterwards.
func inNetns(t *testing.T, ns string, fn func()) {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		target, err := os.Open("/var/run/netns/" + ns)
		if err != nil {
			errc <- err
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- err
			return
		}
		fn()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			// Leave the thread locked: it exits with the goroutine.
			errc <- err
			return
		}
		runtime.UnlockOSThread()
		errc <- nil
	}()
	if err := <-errc; err != nil {
		t.Fatalf("netns %s: %v", ns, err)
	}
}
