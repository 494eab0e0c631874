package afpacket

import (
	"bytes"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sightline-io/sightline/packet/decode"
)

// portsOf returns a keep function selecting packets with one end on a port
// in ports (other tests on this machine use lo at the same time).
func portsOf(ports ...uint16) func(*seen) bool {
	return func(s *seen) bool {
		if s.err != nil {
			return false
		}
		for _, p := range ports {
			if s.pkt.SrcPort == p || s.pkt.DstPort == p {
				return true
			}
		}
		return false
	}
}

func TestLoopbackTCPUDP(t *testing.T) {
	requireRoot(t)
	const snap = 256
	r := startRecorder(t, Config{
		Interfaces: []string{"lo"}, SnapLen: snap, Filter: true,
		BlockSize: 64 << 10, NumBlocks: 16, BlockTimeout: 2 * time.Millisecond,
	}, func(s *seen) bool { return true })
	if got := r.c.Interfaces(); len(got) != 1 || got[0] != "lo" {
		t.Fatalf("Interfaces() = %v", got)
	}

	// TCP: client sends "hello", server answers 4000 bytes, both close.
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	srvPort := uint16(ln.Addr().(*net.TCPAddr).Port)
	big := bytes.Repeat([]byte("x"), 4000)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		buf := make([]byte, 5)
		if _, err := io.ReadFull(c, buf); err == nil {
			_, _ = c.Write(big)
		}
	}()
	cl, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	cliPort := uint16(cl.LocalAddr().(*net.TCPAddr).Port)
	if _, err := cl.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	if n, err := io.Copy(io.Discard, cl); err != nil || n != int64(len(big)) {
		t.Fatalf("read %d bytes, %v", n, err)
	}
	cl.Close()

	// UDP over IPv4 and IPv6.
	udpPorts := []uint16{sendUDP(t, "udp4", "127.0.0.1:0", "ping4")}
	if p := sendUDP(t, "udp6", "[::1]:0", "ping6"); p != 0 {
		udpPorts = append(udpPorts, p)
	}
	// ICMP, which the filter must drop.
	sendICMP(t)

	keepTCP := portsOf(srvPort)
	frames := r.waitFor(t, "TCP teardown and UDP", func(fr []seen) bool {
		fins, udp := 0, 0
		for i := range fr {
			if keepTCP(&fr[i]) && fr[i].pkt.Has(decode.FlagFIN) {
				fins++
			}
			if portsOf(udpPorts...)(&fr[i]) {
				udp++
			}
		}
		return fins == 2 && udp >= len(udpPorts)
	})
	// Let stragglers (a duplicate would come right after the original) in.
	time.Sleep(50 * time.Millisecond)
	frames, dec := r.snapshot()

	var tcp []seen
	for i := range frames {
		if keepTCP(&frames[i]) {
			tcp = append(tcp, frames[i])
		}
	}
	cliAddr := netip.MustParseAddr("127.0.0.1")
	var syn, synack *seen
	var hello, resp []seen
	respBytes := 0
	for i := range tcp {
		s := &tcp[i]
		if s.outgoing || s.iface != "lo" || s.link != decode.LinkTypeEthernet {
			t.Errorf("frame outgoing=%v iface=%q link=%d, want incoming lo Ethernet", s.outgoing, s.iface, s.link)
		}
		if s.pkt.Src != cliAddr || s.pkt.Dst != cliAddr || s.pkt.L4 != 6 {
			t.Errorf("tuple %v -> %v proto %d", s.pkt.Src, s.pkt.Dst, s.pkt.L4)
		}
		switch {
		case s.pkt.Flags&(decode.FlagSYN|decode.FlagACK) == decode.FlagSYN:
			if syn != nil {
				t.Error("SYN seen twice")
			}
			syn = s
		case s.pkt.Has(decode.FlagSYN | decode.FlagACK):
			if synack != nil {
				t.Error("SYN-ACK seen twice")
			}
			synack = s
		case s.payload == "hello":
			hello = append(hello, *s)
		case s.pkt.SrcPort == srvPort && s.pkt.WireLen > 0:
			resp = append(resp, *s)
			respBytes += s.pkt.WireLen
		}
	}
	if syn == nil || synack == nil {
		t.Fatalf("handshake not seen: syn=%v synack=%v", syn != nil, synack != nil)
	}
	if syn.pkt.SrcPort != cliPort || syn.pkt.DstPort != srvPort {
		t.Errorf("SYN ports %d->%d, want %d->%d", syn.pkt.SrcPort, syn.pkt.DstPort, cliPort, srvPort)
	}
	if synack.pkt.Ack != syn.pkt.Seq+1 {
		t.Errorf("SYN-ACK ack %d, want %d", synack.pkt.Ack, syn.pkt.Seq+1)
	}
	if len(hello) != 1 {
		t.Fatalf("client data seen %d times, want once", len(hello))
	}
	if hello[0].pkt.Seq != syn.pkt.Seq+1 || hello[0].pkt.Ack != synack.pkt.Seq+1 || !hello[0].pkt.Has(decode.FlagPSH|decode.FlagACK) {
		t.Errorf("data seq %d ack %d flags %#x, want seq %d ack %d PSH|ACK",
			hello[0].pkt.Seq, hello[0].pkt.Ack, hello[0].pkt.Flags, syn.pkt.Seq+1, synack.pkt.Seq+1)
	}
	if respBytes != len(big) {
		t.Errorf("response payload on the wire %d bytes, want %d (each segment once)", respBytes, len(big))
	}
	truncated := false
	for _, s := range resp {
		if s.dataLen > snap {
			t.Errorf("captured %d bytes, snaplen %d", s.dataLen, snap)
		}
		if s.wireLen > s.dataLen {
			truncated = true
		}
	}
	if !truncated {
		t.Error("no response frame was cut by the snap length")
	}

	for _, p := range udpPorts {
		n := 0
		for i := range frames {
			if portsOf(p)(&frames[i]) {
				n++
				if !strings.HasPrefix(frames[i].payload, "ping") || frames[i].pkt.L4 != 17 {
					t.Errorf("UDP frame payload %q proto %d", frames[i].payload, frames[i].pkt.L4)
				}
			}
		}
		if n != 1 {
			t.Errorf("UDP datagram on port %d seen %d times, want once", p, n)
		}
	}
	if dec.NotTCPUDP != 0 || dec.NotIP != 0 {
		t.Errorf("filter let through non-TCP/UDP frames: %+v", dec)
	}

	st := r.c.Stats()
	if st.Frames < uint64(len(frames)) || st.Bytes < st.Captured || st.Captured == 0 {
		t.Errorf("stats %+v, %d frames recorded", st.IfaceStats, len(frames))
	}
	if len(st.Interfaces) != 1 || st.Interfaces[0].Interface != "lo" || st.Opened != 1 {
		t.Errorf("stats interfaces %+v opened %d", st.Interfaces, st.Opened)
	}
	if st.KernelPackets == 0 || st.Drops != 0 || st.BadFrames != 0 {
		t.Errorf("kernel stats %+v", st.IfaceStats)
	}
	t.Logf("stats: %+v", st.IfaceStats)
}

// sendUDP sends one datagram to a fresh socket on addr and returns the
// receiver's port, or 0 if the address family is not available.
func sendUDP(t *testing.T, network, addr, msg string) uint16 {
	t.Helper()
	pc, err := net.ListenPacket(network, addr)
	if err != nil {
		if network == "udp6" {
			t.Logf("no IPv6 loopback: %v", err)
			return 0
		}
		t.Fatal(err)
	}
	defer pc.Close()
	c, err := net.Dial(network, pc.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	_ = pc.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 64)
	if _, _, err := pc.ReadFrom(buf); err != nil {
		t.Fatal(err)
	}
	return uint16(pc.LocalAddr().(*net.UDPAddr).Port)
}

// sendICMP sends one ICMP echo request to 127.0.0.1 from a raw socket.
func sendICMP(t *testing.T) {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_ICMP)
	if err != nil {
		t.Fatalf("raw ICMP socket: %v", err)
	}
	defer unix.Close(fd)
	// type 8 code 0, checksum, id 0x5a5a, seq 1, payload "afpacket".
	msg := []byte{8, 0, 0, 0, 0x5a, 0x5a, 0, 1, 'a', 'f', 'p', 'a', 'c', 'k', 'e', 't'}
	sum := 0
	for i := 0; i < len(msg); i += 2 {
		sum += int(msg[i])<<8 | int(msg[i+1])
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	msg[2], msg[3] = byte(^sum>>8), byte(^sum)
	if err := unix.Sendto(fd, msg, 0, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatalf("send ICMP: %v", err)
	}
}

// TestLoopbackNoFilterSeesICMP is the control for the filter test: without
// the filter the same ICMP echo is captured (once per direction).
func TestLoopbackNoFilterSeesICMP(t *testing.T) {
	requireRoot(t)
	r := startRecorder(t, Config{Interfaces: []string{"lo"}, BlockTimeout: 2 * time.Millisecond},
		func(s *seen) bool { return s.err != nil && s.link == decode.LinkTypeEthernet })
	sendICMP(t)
	r.waitFor(t, "ICMP echo", func([]seen) bool {
		_, dec := r.snapshot()
		return dec.NotTCPUDP >= 2
	})
}
