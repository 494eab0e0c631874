package socktrace

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/sightline-io/sightline/agent/capture"
	"github.com/sightline-io/sightline/agent/capture/bpfevent"
)

// encodeEvent serializes the bpf2go-generated header the way the kernel
// lays it out, followed by payload.
func encodeEvent(t testing.TB, h socketTraceEventHeader, payload []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := binary.Write(&b, binary.LittleEndian, h); err != nil {
		t.Fatal(err)
	}
	b.Write(payload)
	return b.Bytes()
}

func sampleHeader() socketTraceEventHeader {
	h := socketTraceEventHeader{
		Type: eventData, Pid: 4242, Tid: 4243, Fd: 7,
		EnterNs: 1_000_000, ExitNs: 1_000_500, Sock: 0xffff888000001000, ConnUid: 99, TraceId: 1234,
		Bytes: 5000, Captured: 5, TcpSeq: 0xdeadbeef, CapSeq: 3,
		Family: afInet, L4: 6, Dir: dirIngress, Lport: 8080, Rport: 51000, Syscall: 1, L7Hint: 20, Goid: 77,
	}
	copy(h.Laddr[:], []byte{10, 0, 0, 1})
	copy(h.Raddr[:], []byte{10, 0, 0, 2})
	for i, c := range "curl" {
		h.Comm[i] = int8(c)
	}
	return h
}

// TestHeaderLayout ties the hand-written decoder to the generated C layout.
func TestHeaderLayout(t *testing.T) {
	if got := unsafe.Sizeof(socketTraceEventHeader{}); got != headerSize {
		t.Fatalf("sizeof(event_header) = %d, decoder assumes %d", got, headerSize)
	}
	want := sampleHeader()
	payload := []byte("hello")
	var h header
	got, err := decodeHeader(encodeEvent(t, want, payload), &h)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, payload) {
		t.Errorf("payload %q", got)
	}
	if h.typ != want.Type || h.pid != want.Pid || h.tid != want.Tid || h.fd != want.Fd ||
		h.enterNs != want.EnterNs || h.exitNs != want.ExitNs || h.sock != want.Sock ||
		h.connUID != want.ConnUid || h.traceID != want.TraceId || h.bytes != want.Bytes ||
		h.captured != want.Captured || h.tcpSeq != want.TcpSeq || h.capSeq != want.CapSeq ||
		h.family != want.Family || h.l4 != want.L4 || h.dir != want.Dir || h.lport != want.Lport ||
		h.rport != want.Rport || h.laddr != want.Laddr || h.raddr != want.Raddr || h.syscall != want.Syscall ||
		h.l7Hint != want.L7Hint || h.goid != want.Goid {
		t.Errorf("decoded %+v from %+v", h, want)
	}
	if string(h.comm[:4]) != "curl" {
		t.Errorf("comm %q", h.comm)
	}
}

// TestConnIDPerUDPPeer: an unconnected UDP socket (a DNS server) talks to
// many peers; each is its own connection. A TCP socket is one connection
// whatever the header says about the peer.
func TestConnIDPerUDPPeer(t *testing.T) {
	id := func(l4 uint8, rport uint16, last byte) uint64 {
		h := header{connUID: 99, pid: 1, l4: l4, rport: rport}
		h.raddr[3] = last
		return h.connID(false)
	}
	if id(17, 5000, 1) == id(17, 5001, 1) || id(17, 5000, 1) == id(17, 5000, 2) {
		t.Error("UDP peers share a connection id")
	}
	if id(17, 5000, 1) != id(17, 5000, 1) {
		t.Error("UDP connection id not stable")
	}
	if id(6, 5000, 1) != id(6, 5001, 2) {
		t.Error("TCP connection id depends on the peer")
	}
}

func TestDecodeHeaderRejects(t *testing.T) {
	valid := sampleHeader()
	tests := []struct {
		name string
		rec  func() []byte
		want error
	}{
		{"empty", func() []byte { return nil }, errShortRecord},
		{"short header", func() []byte { return encodeEvent(t, valid, nil)[:headerSize-1] }, errShortRecord},
		{"captured beyond record", func() []byte { return encodeEvent(t, valid, []byte("hi")) }, errPayloadLength},
		{"captured beyond bytes", func() []byte {
			h := valid
			h.Bytes, h.Captured = 2, 5
			return encodeEvent(t, h, []byte("hello"))
		}, errPayloadLength},
		{"captured beyond limit", func() []byte {
			h := valid
			h.Bytes, h.Captured = 1<<30, MaxPayloadLimit+1
			return encodeEvent(t, h, make([]byte, MaxPayloadLimit+1))
		}, errPayloadLength},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var h header
			if _, err := decodeHeader(tc.rec(), &h); !errors.Is(err, tc.want) {
				t.Errorf("err %v, want %v", err, tc.want)
			}
		})
	}
}

// nopHandler counts calls.
type nopHandler struct{ segs, other int }

func (n *nopHandler) Segment(*capture.Segment) { n.segs++ }
func (n *nopHandler) Closed(capture.Closed)    { n.other++ }
func (n *nopHandler) ConnOpened(ConnInfo)      { n.other++ }
func (n *nopHandler) ProcessExec(uint32)       { n.other++ }
func (n *nopHandler) ProcessFork(_, _ uint32)  { n.other++ }
func (n *nopHandler) ProcessExit(uint32)       { n.other++ }

func TestDispatch(t *testing.T) {
	rec := newRecorder()
	d := decoder{clock: bpfevent.MonoClock{OffsetNs: 1_700_000_000_000_000_000}, comms: bpfevent.NewCommCache(8)}
	var st userStats

	h := sampleHeader()
	if err := d.dispatch(encodeEvent(t, h, []byte("hello")), rec, &st); err != nil {
		t.Fatal(err)
	}
	h6 := sampleHeader()
	h6.Family, h6.Dir = afInet6, dirEgress
	// v4-mapped addresses from a dual-stack socket come out as IPv4.
	mapped := netip.MustParseAddr("::ffff:192.0.2.1").As16()
	h6.Laddr, h6.Raddr = mapped, netip.MustParseAddr("2001:db8::1").As16()
	if err := d.dispatch(encodeEvent(t, h6, []byte("hello")), rec, &st); err != nil {
		t.Fatal(err)
	}
	ht := sampleHeader()
	ht.Flags = eventFlagTLS
	if err := d.dispatch(encodeEvent(t, ht, []byte("GET /")), rec, &st); err != nil {
		t.Fatal(err)
	}
	hc := sampleHeader()
	hc.Type, hc.Captured = eventClose, 0
	if err := d.dispatch(encodeEvent(t, hc, nil), rec, &st); err != nil {
		t.Fatal(err)
	}
	bad := sampleHeader()
	bad.Type = 77
	if err := d.dispatch(encodeEvent(t, bad, nil), rec, &st); err == nil {
		t.Error("unknown event type accepted")
	}
	bad = sampleHeader()
	bad.Family = 1 // AF_UNIX never reaches user space; reject rather than guess
	if err := d.dispatch(encodeEvent(t, bad, []byte("hello")), rec, &st); !errors.Is(err, errBadFamily) {
		t.Errorf("bad family: %v", err)
	}

	if len(rec.closed) != 1 || len(d.lateCloses[0]) != 1 || len(d.lateCloses[1]) != 0 {
		t.Fatalf("closes: %d now, %d+%d held", len(rec.closed), len(d.lateCloses[0]), len(d.lateCloses[1]))
	}
	d.flushCloses(rec, time.Now()) // not due yet
	d.flushCloses(rec, time.Time{})
	if len(rec.segs) != 3 || len(rec.closed) != 2 {
		t.Fatalf("got %d segments, %d closes", len(rec.segs), len(rec.closed))
	}
	s := rec.segs[0]
	if s.Dir != capture.BtoA || s.Tuple.AIP != netip.MustParseAddr("10.0.0.1") || s.Tuple.BPort != 51000 ||
		s.Len != 5000 || s.Gap() != 4995 || s.Comm != "curl" || s.SyscallTraceID != 1234 ||
		s.End.Sub(s.Start) != 500 {
		t.Errorf("segment %+v", s)
	}
	if rec.segs[1].Tuple.AIP != netip.MustParseAddr("192.0.2.1") || rec.segs[1].Dir != capture.AtoB {
		t.Errorf("v6 segment %+v", rec.segs[1])
	}
	// TLS plaintext: its own stream, flagged; the close ends both.
	tls := rec.segs[2]
	if !tls.TLS || s.TLS || tls.ConnID == s.ConnID || string(tls.Data) != "GET /" {
		t.Errorf("tls segment %+v", tls)
	}
	if rec.closed[0].ConnID != s.ConnID || rec.closed[1].ConnID != tls.ConnID {
		t.Errorf("close conn ids %x %x, segments %x %x", rec.closed[0].ConnID, rec.closed[1].ConnID, s.ConnID, tls.ConnID)
	}
	if st.segments.Load() != 3 || st.closed.Load() != 1 {
		t.Errorf("stats segments=%d closed=%d", st.segments.Load(), st.closed.Load())
	}
}

// TestPendingTLSClose: a close the kernel flagged with a TLS call still
// pending holds the plaintext stream's close back longer than a plain one,
// each queue in due order.
func TestPendingTLSClose(t *testing.T) {
	rec := newRecorder()
	d := decoder{comms: bpfevent.NewCommCache(8)}
	var st userStats
	closeOf := func(connUID uint64, flags uint8) {
		h := sampleHeader()
		h.Type, h.Captured, h.ConnUid, h.Flags = eventClose, 0, connUID, flags
		if err := d.dispatch(encodeEvent(t, h, nil), rec, &st); err != nil {
			t.Fatal(err)
		}
	}
	closeOf(1, eventFlagTLSPending)
	closeOf(2, 0)
	if len(d.lateCloses[0]) != 1 || len(d.lateCloses[1]) != 1 || len(rec.closed) != 2 {
		t.Fatalf("held %d+%d, closed %d", len(d.lateCloses[0]), len(d.lateCloses[1]), len(rec.closed))
	}
	// The late plaintext of the pending stream gets the close's tuple
	// (its sock may be gone: the kernel read zeros or garbage).
	late := sampleHeader()
	late.ConnUid, late.Flags, late.Lport = 1, eventFlagTLS, 0
	if err := d.dispatch(encodeEvent(t, late, []byte("late!")), rec, &st); err != nil {
		t.Fatal(err)
	}
	if got, want := rec.segs[0].Tuple.APort, sampleHeader().Lport; got != want {
		t.Errorf("late plaintext port %d, want the close's %d", got, want)
	}
	tlsOf := func(connUID uint64) uint64 { return (&header{pid: sampleHeader().Pid, connUID: connUID}).connID(true) }
	start := time.Now()
	d.flushCloses(rec, start.Add(tlsCloseDelay+time.Millisecond))
	if len(rec.closed) != 3 || rec.closed[2].ConnID != tlsOf(2) {
		t.Fatalf("after %v: %d closes, want the unflagged stream's", tlsCloseDelay, len(rec.closed))
	}
	d.flushCloses(rec, start.Add(tlsPendingCloseDelay+time.Millisecond))
	if len(rec.closed) != 4 || rec.closed[3].ConnID != tlsOf(1) {
		t.Fatalf("after %v: %d closes, want the pending stream's", tlsPendingCloseDelay, len(rec.closed))
	}
	if len(d.pendingTuples) != 0 {
		t.Errorf("%d tuples kept after their closes", len(d.pendingTuples))
	}
}

func TestConnIDSeparatesProcesses(t *testing.T) {
	a := header{pid: 1, connUID: 10}
	b := header{pid: 2, connUID: 10}
	c := header{pid: 1, connUID: 11}
	if a.connID(false) == b.connID(false) || a.connID(false) == c.connID(false) || a.connID(false) != (&header{pid: 1, connUID: 10}).connID(false) {
		t.Errorf("conn ids %x %x %x", a.connID(false), b.connID(false), c.connID(false))
	}
	// A socket's TLS plaintext is a stream of its own.
	if a.connID(true) == a.connID(false) || a.connID(true) != (&header{pid: 1, connUID: 10}).connID(true) {
		t.Errorf("tls conn id %x, plain %x", a.connID(true), a.connID(false))
	}
}

func FuzzDispatch(f *testing.F) {
	f.Add(encodeEvent(f, sampleHeader(), []byte("hello")))
	f.Add([]byte{})
	f.Add(bytes.Repeat([]byte{0xff}, headerSize+8))
	f.Fuzz(func(t *testing.T, b []byte) {
		d := decoder{comms: bpfevent.NewCommCache(4)}
		var st userStats
		h := &nopHandler{}
		if err := d.dispatch(b, h, &st); err == nil && h.segs+h.other != 1 {
			t.Errorf("accepted record made %d calls", h.segs+h.other)
		}
		if h.segs == 1 && len(d.seg.Data) > d.seg.Len {
			t.Errorf("data %d longer than Len %d", len(d.seg.Data), d.seg.Len)
		}
	})
}

func TestConfigDefaults(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{"zero", Config{}, ""},
		{"max payload at limit", Config{MaxPayload: MaxPayloadLimit}, ""},
		{"max payload too big", Config{MaxPayload: MaxPayloadLimit + 1}, "max payload"},
		{"negative payload", Config{MaxPayload: -1}, "max payload"},
		{"ring not power of two", Config{RingBufferBytes: 3 << 20}, "ring buffer"},
		{"ring too small", Config{RingBufferBytes: 64}, "ring buffer"},
		{"too many only pids", Config{OnlyPIDs: make([]uint32, maxPIDFilter+1)}, "traced pids"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.cfg.withDefaults()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.MaxPayload == 0 || got.RingBufferBytes == 0 || got.Logger == nil {
				t.Errorf("defaults not applied: %+v", got)
			}
		})
	}
}

// TestHookTableCoversProgram: every program in the object is attached
// exactly once, to the tracepoint its section names.
func TestHookTableCoversProgram(t *testing.T) {
	spec, err := loadSocketTrace()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, h := range hookTable {
		p, ok := spec.Programs[h.prog]
		if !ok {
			t.Errorf("hook table names unknown program %s", h.prog)
			continue
		}
		if seen[h.prog] {
			t.Errorf("program %s attached twice", h.prog)
		}
		seen[h.prog] = true
		if want := "tracepoint/" + h.group + "/" + h.name; p.SectionName != want {
			t.Errorf("program %s is in section %s, hook table says %s", h.prog, p.SectionName, want)
		}
	}
	for _, name := range btfHooks {
		if p, ok := spec.Programs[name]; !ok || !strings.HasPrefix(p.SectionName, "tp_btf/") {
			t.Errorf("btf hook %s: not a tp_btf program", name)
		}
		seen[name] = true
	}
	for name, p := range spec.Programs {
		if p.SectionName == "uprobe" || p.SectionName == "uretprobe" {
			// Attached per binary by AttachGo, AttachSSL or AttachGoTLS.
			if !strings.Contains(goProbeNames+" "+tlsProbeNames, name) {
				t.Errorf("uprobe program %s is not attached by AttachGo, AttachSSL or AttachGoTLS", name)
			}
			continue
		}
		if !seen[name] {
			t.Errorf("program %s is never attached", name)
		}
	}
}

func BenchmarkDispatch(b *testing.B) {
	for _, size := range []int{64, 1024} {
		b.Run(strconv.Itoa(size), func(b *testing.B) {
			h := sampleHeader()
			h.Bytes, h.Captured = uint32(size), uint32(size)
			rec := encodeEvent(b, h, make([]byte, size))
			d := decoder{comms: bpfevent.NewCommCache(bpfevent.CommCacheSize)}
			var st userStats
			nop := &nopHandler{}
			b.SetBytes(int64(len(rec)))
			b.ReportAllocs()
			for b.Loop() {
				if err := d.dispatch(rec, nop, &st); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
