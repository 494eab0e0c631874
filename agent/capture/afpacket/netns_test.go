package afpacket

import (
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os/exec"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sightline-io/sightline/packet/decode"
)

// testSubnet picks a random /30 in 10.233.0.0/16 for a namespace pair that
// exists only inside this test.
func testSubnet() (host, peer netip.Addr) {
	b := byte(rand.IntN(64)) * 4
	c := byte(rand.IntN(256))
	return netip.AddrFrom4([4]byte{10, 233, c, b + 1}), netip.AddrFrom4([4]byte{10, 233, c, b + 2})
}

// vethPair makes a namespace holding one end of a veth pair; the other end
// stays in this namespace. It returns the root-side name and the addresses.
func vethPair(t *testing.T) (ns, rootIf string, host, peer netip.Addr) {
	t.Helper()
	id := uniqueName("")
	ns, rootIf, nsIf := "afpns"+id, "afa"+id, "afb"+id
	run(t, "ip", "netns", "add", ns)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	run(t, "ip", "link", "add", rootIf, "type", "veth", "peer", "name", nsIf)
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", rootIf).Run() })
	run(t, "ip", "link", "set", nsIf, "netns", ns)
	host, peer = testSubnet()
	run(t, "ip", "addr", "add", host.String()+"/30", "dev", rootIf)
	run(t, "ip", "link", "set", rootIf, "up")
	run(t, "ip", "-n", ns, "addr", "add", peer.String()+"/30", "dev", nsIf)
	run(t, "ip", "-n", ns, "link", "set", nsIf, "up")
	run(t, "ip", "-n", ns, "link", "set", "lo", "up")
	return ns, rootIf, host, peer
}

func TestVethNamespace(t *testing.T) {
	requireRoot(t)
	ns, rootIf, host, peer := vethPair(t)
	r := startRecorder(t, Config{Interfaces: []string{rootIf}, Filter: true, BlockTimeout: 2 * time.Millisecond},
		func(s *seen) bool { return s.err == nil })

	var ln net.Listener
	inNetns(t, ns, func() {
		var err error
		ln, err = net.Listen("tcp4", net.JoinHostPort(peer.String(), "0"))
		if err != nil {
			t.Errorf("listen in netns: %v", err)
		}
	})
	if ln == nil {
		t.FailNow()
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_, _ = io.Copy(c, c) // echo
	}()
	d := net.Dialer{Timeout: 5 * time.Second}
	c, err := d.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	msg := []byte("hello through veth")
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatal(err)
	}
	c.Close()

	port := uint16(ln.Addr().(*net.TCPAddr).Port)
	frames := r.waitFor(t, "echo on veth", func(fr []seen) bool {
		n := 0
		for _, s := range fr {
			if s.payload == string(msg) {
				n++
			}
		}
		return n == 2
	})
	var out, in int
	for _, s := range frames {
		if s.pkt.SrcPort != port && s.pkt.DstPort != port {
			continue
		}
		if s.iface != rootIf || s.link != decode.LinkTypeEthernet {
			t.Errorf("frame on %q link %d", s.iface, s.link)
		}
		toPeer := s.pkt.Src == host && s.pkt.Dst == peer
		if s.outgoing != toPeer {
			t.Errorf("%v -> %v outgoing=%v", s.pkt.Src, s.pkt.Dst, s.outgoing)
		}
		if s.outgoing {
			out++
		} else {
			in++
		}
	}
	if out < 3 || in < 2 {
		t.Errorf("saw %d outgoing and %d incoming frames", out, in)
	}
}

// TestTunRawIP captures on a tun device (ARPHRD_NONE): frames are raw IP.
func TestTunRawIP(t *testing.T) {
	requireRoot(t)
	name := uniqueName("aft")
	// Attach to the device ourselves so that it has carrier.
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("open /dev/net/tun: %v", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		t.Fatal(err)
	}
	ifr.SetUint16(unix.IFF_TUN | unix.IFF_NO_PI)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		t.Fatalf("TUNSETIFF: %v", err)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", name).Run() })
	host, peer := testSubnet()
	run(t, "ip", "addr", "add", host.String()+"/30", "dev", name)
	run(t, "ip", "link", "set", name, "up")

	r := startRecorder(t, Config{Interfaces: []string{name}, Filter: true, BlockTimeout: 2 * time.Millisecond},
		func(s *seen) bool { return true })
	c, err := net.Dial("udp4", net.JoinHostPort(peer.String(), "9"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	frames := r.waitFor(t, "UDP on tun", func(fr []seen) bool {
		_, _ = c.Write([]byte("tun datagram"))
		for _, s := range fr {
			if s.payload == "tun datagram" {
				return true
			}
		}
		return false
	})
	for _, s := range frames {
		if s.payload != "tun datagram" {
			continue
		}
		if s.link != decode.LinkTypeRaw || !s.outgoing || s.pkt.Dst != peer || s.pkt.DstPort != 9 {
			t.Errorf("tun frame link %d outgoing %v dst %v:%d", s.link, s.outgoing, s.pkt.Dst, s.pkt.DstPort)
		}
	}
}

// TestVethInbandVLAN sends an Ethernet frame with an in-band 802.1Q tag out
// of a veth through a raw packet socket: the filter keeps it (the skb
// protocol is the tag's) and decode peels the tag.
func TestVethInbandVLAN(t *testing.T) {
	requireRoot(t)
	_, rootIf, host, peer := vethPair(t)
	r := startRecorder(t, Config{Interfaces: []string{rootIf}, Filter: true, BlockTimeout: 2 * time.Millisecond},
		func(s *seen) bool { return s.err == nil && s.payload == "vlan!" })
	ifi, err := net.InterfaceByName(rootIf)
	if err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	src, dst := host.As4(), peer.As4()
	frame := []byte{
		0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0, 0, 0, 0, 1, // MACs
		0x81, 0x00, 0x00, 0x0a, // 802.1Q, VLAN 10
		0x08, 0x00, // IPv4
		0x45, 0, 0, 33, 0, 0, 0x40, 0, 64, 17, 0, 0, // IPv4 header: len 33, DF, TTL 64, UDP
		src[0], src[1], src[2], src[3], dst[0], dst[1], dst[2], dst[3],
		0x9c, 0x40, 0x9c, 0x41, 0, 13, 0, 0, // UDP 40000 -> 40001, len 13
		'v', 'l', 'a', 'n', '!',
	}
	sa := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_8021Q), Ifindex: ifi.Index, Halen: 6}
	copy(sa.Addr[:], frame[:6])
	frames := r.waitFor(t, "tagged frame", func(fr []seen) bool {
		if len(fr) == 0 {
			if err := unix.Sendto(fd, frame, 0, sa); err != nil {
				t.Fatalf("send tagged frame: %v", err)
			}
		}
		return len(fr) > 0
	})
	s := frames[0]
	if !s.outgoing || s.pkt.Src != host || s.pkt.Dst != peer || s.pkt.SrcPort != 40000 || s.pkt.DstPort != 40001 || s.pkt.TTL != 64 {
		t.Errorf("tagged frame decoded as %+v outgoing=%v", s.pkt, s.outgoing)
	}
}
