package decode

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

var (
	src4 = net.IP{192, 0, 2, 1}
	dst4 = net.IP{198, 51, 100, 7}
	src6 = net.ParseIP("2001:db8::1")
	dst6 = net.ParseIP("2001:db8::2")
)

func serialize(t testing.TB, ls ...gopacket.SerializableLayer) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true}
	for _, l := range ls {
		if _, ok := l.(gopacket.NetworkLayer); ok {
			opts.ComputeChecksums = true
		}
		switch n := l.(type) {
		case *layers.TCP:
			for _, o := range ls {
				if ip, ok := o.(gopacket.NetworkLayer); ok {
					_ = n.SetNetworkLayerForChecksum(ip)
				}
			}
		case *layers.UDP:
			for _, o := range ls {
				if ip, ok := o.(gopacket.NetworkLayer); ok {
					_ = n.SetNetworkLayerForChecksum(ip)
				}
			}
		}
	}
	if err := gopacket.SerializeLayers(buf, opts, ls...); err != nil {
		t.Fatal(err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

func eth(et layers.EthernetType) *layers.Ethernet {
	return &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, EthernetType: et}
}

func ip4(proto layers.IPProtocol) *layers.IPv4 {
	return &layers.IPv4{Version: 4, IHL: 5, TTL: 61, Protocol: proto, SrcIP: src4, DstIP: dst4}
}

func ip6(next layers.IPProtocol) *layers.IPv6 {
	return &layers.IPv6{Version: 6, HopLimit: 250, NextHeader: next, SrcIP: src6, DstIP: dst6}
}

func tcp() *layers.TCP {
	return &layers.TCP{SrcPort: 40000, DstPort: 80, Seq: 1234, Ack: 99, PSH: true, ACK: true, Window: 512,
		Options: []layers.TCPOption{{OptionType: layers.TCPOptionKindNop}, {OptionType: layers.TCPOptionKindNop},
			{OptionType: layers.TCPOptionKindTimestamps, OptionLength: 10, OptionData: make([]byte, 8)}}}
}

func udp() *layers.UDP { return &layers.UDP{SrcPort: 5353, DstPort: 53} }

var payload = gopacket.Payload("GET / HTTP/1.1\r\n\r\n")

// ipv6Ext builds a raw IPv6 extension header (next, len, data padded to 8n).
func ipv6Ext(next layers.IPProtocol, body []byte) []byte {
	n := (2 + len(body) + 7) / 8 * 8
	h := make([]byte, n)
	h[0], h[1] = byte(next), byte(n/8-1)
	copy(h[2:], body)
	return h
}

// rawIPv6 builds an IPv6 packet whose payload (ext headers + L4) is given.
func rawIPv6(t *testing.T, next layers.IPProtocol, rest []byte) []byte {
	hdr := serialize(t, ip6(next))
	binary.BigEndian.PutUint16(hdr[4:6], uint16(len(rest)))
	return append(hdr, rest...)
}

func TestDecode(t *testing.T) {
	tcpSeg := serialize(t, tcp(), payload) // TCP header + payload, no checksum context
	udpDgram := serialize(t, udp(), payload)
	sll := func(et uint16, rest []byte) []byte {
		h := make([]byte, 16)
		binary.BigEndian.PutUint16(h[0:2], 0)      // to us
		binary.BigEndian.PutUint16(h[2:4], 772)    // ARPHRD_LOOPBACK
		binary.BigEndian.PutUint16(h[4:6], 0xffff) // hostile address length
		binary.BigEndian.PutUint16(h[14:16], et)
		return append(h, rest...)
	}
	sll2 := func(et uint16, rest []byte) []byte {
		h := make([]byte, 20)
		binary.BigEndian.PutUint16(h[0:2], et)
		binary.BigEndian.PutUint16(h[8:10], 1)
		h[11] = 6
		return append(h, rest...)
	}
	v4 := serialize(t, ip4(layers.IPProtocolTCP), tcp(), payload)
	v6 := serialize(t, ip6(layers.IPProtocolTCP), tcp(), payload)
	frag4 := ip4(layers.IPProtocolTCP)
	frag4.Flags = layers.IPv4MoreFragments
	frag4Later := ip4(layers.IPProtocolTCP)
	frag4Later.FragOffset = 100
	truncated := serialize(t, eth(layers.EthernetTypeIPv4), ip4(layers.IPProtocolTCP), tcp(), payload)
	tsoZero := append([]byte(nil), v4...)
	tsoZero[2], tsoZero[3] = 0, 0 // TSO: IPv4 total length 0
	padded := append(serialize(t, eth(layers.EthernetTypeIPv4), ip4(layers.IPProtocolTCP), tcp()), 0, 0, 0, 0, 0, 0)

	type want struct {
		src, dst netip.Addr
		l4       uint8
		ttl      uint8
		payload  string
		wire     int
	}
	tcp4 := want{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("198.51.100.7"), 6, 61, string(payload), len(payload)}
	tcp6 := want{netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2"), 6, 250, string(payload), len(payload)}
	udp4 := tcp4
	udp4.l4 = 17
	tests := []struct {
		name  string
		lt    LinkType
		frame []byte
		want  want
		err   error
	}{
		{"ethernet ipv4 tcp", LinkTypeEthernet, serialize(t, eth(layers.EthernetTypeIPv4), ip4(layers.IPProtocolTCP), tcp(), payload), tcp4, nil},
		{"ethernet ipv4 udp", LinkTypeEthernet, serialize(t, eth(layers.EthernetTypeIPv4), ip4(layers.IPProtocolUDP), udp(), payload), udp4, nil},
		{"ethernet padding is not payload", LinkTypeEthernet, padded, want{tcp4.src, tcp4.dst, 6, 61, "", 0}, nil},
		{"802.1q", LinkTypeEthernet, serialize(t, eth(layers.EthernetTypeDot1Q), &layers.Dot1Q{VLANIdentifier: 7, Type: layers.EthernetTypeIPv4}, ip4(layers.IPProtocolTCP), tcp(), payload), tcp4, nil},
		{"QinQ", LinkTypeEthernet, serialize(t, eth(layers.EthernetTypeQinQ), &layers.Dot1Q{VLANIdentifier: 100, Type: layers.EthernetTypeDot1Q}, &layers.Dot1Q{VLANIdentifier: 7, Type: layers.EthernetTypeIPv6}, ip6(layers.IPProtocolTCP), tcp(), payload), tcp6, nil},
		{"ethernet ipv6 tcp", LinkTypeEthernet, serialize(t, eth(layers.EthernetTypeIPv6), ip6(layers.IPProtocolTCP), tcp(), payload), tcp6, nil},
		{"ipv6 hop-by-hop, destination and routing headers", LinkTypeRaw,
			rawIPv6(t, layers.IPProtocolIPv6HopByHop, concat(
				ipv6Ext(layers.IPProtocolIPv6Destination, []byte{1, 4, 0, 0, 0, 0}),
				ipv6Ext(layers.IPProtocolIPv6Routing, []byte{0, 0, 0, 0, 0, 0}),
				ipv6Ext(layers.IPProtocolTCP, []byte{1, 4, 0, 0, 0, 0}),
				serialize(t, tcp(), payload))), tcp6, nil},
		{"ipv6 atomic fragment", LinkTypeIPv6,
			rawIPv6(t, layers.IPProtocolIPv6Fragment, concat([]byte{byte(layers.IPProtocolTCP), 0, 0, 0, 0, 0, 0, 1}, tcpSeg)), tcp6, nil},
		{"ipv6 first fragment", LinkTypeIPv6,
			rawIPv6(t, layers.IPProtocolIPv6Fragment, concat([]byte{byte(layers.IPProtocolTCP), 0, 0, 1, 0, 0, 0, 1}, tcpSeg)), want{}, ErrFragment},
		{"ipv4 first fragment", LinkTypeRaw, serialize(t, frag4, tcp(), payload), want{}, ErrFragment},
		{"ipv4 later fragment", LinkTypeIPv4, serialize(t, frag4Later, payload), want{}, ErrFragment},
		{"ipv4 TSO zero length", LinkTypeRaw, tsoZero, tcp4, nil},
		{"raw ipv4", LinkTypeRaw, v4, tcp4, nil},
		{"raw ipv6", LinkTypeRaw, v6, tcp6, nil},
		{"LINKTYPE_IPV4", LinkTypeIPv4, v4, tcp4, nil},
		{"null little-endian", LinkTypeNull, concat([]byte{2, 0, 0, 0}, v4), tcp4, nil},
		{"null darwin ipv6", LinkTypeNull, concat([]byte{30, 0, 0, 0}, v6), tcp6, nil},
		{"loop big-endian", LinkTypeLoop, concat([]byte{0, 0, 0, 2}, v4), tcp4, nil},
		{"linux sll with hostile address length", LinkTypeLinuxSLL, sll(0x0800, v4), tcp4, nil},
		{"linux sll2 ipv6", LinkTypeLinuxSLL2, sll2(0x86dd, v6), tcp6, nil},
		{"snaplen cut inside payload", LinkTypeEthernet, truncated[:len(truncated)-5], want{tcp4.src, tcp4.dst, 6, 61, string(payload[:len(payload)-5]), len(payload)}, nil},
		{"snaplen cut inside tcp header", LinkTypeEthernet, truncated[:14+20+10], want{}, ErrTruncated},
		{"snaplen cut inside ip header", LinkTypeEthernet, truncated[:14+10], want{}, ErrTruncated},
		{"udp over sll", LinkTypeLinuxSLL, sll(0x0800, serialize(t, ip4(layers.IPProtocolUDP), udp(), payload)), udp4, nil},
		{"udp datagram in ipv6", LinkTypeIPv6, rawIPv6(t, layers.IPProtocolUDP, udpDgram), want{tcp6.src, tcp6.dst, 17, 250, string(payload), len(payload)}, nil},
		{"arp", LinkTypeEthernet, serialize(t, eth(layers.EthernetTypeARP), &layers.ARP{AddrType: 1, Protocol: 0x800, HwAddressSize: 6, ProtAddressSize: 4, Operation: 1, SourceHwAddress: make([]byte, 6), SourceProtAddress: make([]byte, 4), DstHwAddress: make([]byte, 6), DstProtAddress: make([]byte, 4)}), want{}, ErrNotIP},
		{"icmp", LinkTypeRaw, serialize(t, ip4(layers.IPProtocolICMPv4), &layers.ICMPv4{}), want{}, ErrNotTCPUDP},
		{"802.11 link", 105, []byte{1, 2, 3}, want{}, ErrUnsupportedLink},
		{"empty frame", LinkTypeEthernet, nil, want{}, ErrTruncated},
		{"ip version 5", LinkTypeRaw, []byte{0x50, 0, 0, 0}, want{}, ErrNotIP},
		{"too many vlan tags", LinkTypeEthernet, concat(make([]byte, 12), []byte{0x81, 0}, []byte{0, 1, 0x81, 0, 0, 1, 0x81, 0, 0, 1, 0x81, 0, 0, 1, 0x81, 0, 0, 1, 0x81, 0, 0, 1, 0x81, 0, 0, 1, 0x81, 0, 0, 1, 0x81, 0, 0, 1, 0x81, 0}), want{}, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var d Decoder
			var p Packet
			err := d.Decode(tt.lt, tt.frame, &p)
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("err = %v, want %v", err, tt.err)
				}
				if d.Stats.Decoded != 0 || d.Stats.Frames != 1 {
					t.Errorf("stats = %+v", d.Stats)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := want{p.Src, p.Dst, p.L4, p.TTL, string(p.Payload), p.WireLen}
			if got != tt.want {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
			if p.L4 == 6 && (p.SrcPort != 40000 || p.DstPort != 80 || p.Seq != 1234 || p.Ack != 99 || !p.Has(FlagPSH|FlagACK) || p.Has(FlagSYN)) {
				t.Errorf("tcp fields: %+v", p)
			}
			if p.L4 == 17 && (p.SrcPort != 5353 || p.DstPort != 53) {
				t.Errorf("udp ports: %+v", p)
			}
		})
	}
}

func concat(bs ...[]byte) []byte {
	var out []byte
	for _, b := range bs {
		out = append(out, b...)
	}
	return out
}

func TestDecodeAllocs(t *testing.T) {
	frame := serialize(t, eth(layers.EthernetTypeIPv4), ip4(layers.IPProtocolTCP), tcp(), payload)
	var d Decoder
	var p Packet
	allocs := testing.AllocsPerRun(100, func() {
		if err := d.Decode(LinkTypeEthernet, frame, &p); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("Decode allocates %.1f times per packet", allocs)
	}
}

func BenchmarkDecode(b *testing.B) {
	frame := serialize(b, eth(layers.EthernetTypeIPv4), ip4(layers.IPProtocolTCP), tcp(), payload)
	var d Decoder
	var p Packet
	b.SetBytes(int64(len(frame)))
	for b.Loop() {
		if err := d.Decode(LinkTypeEthernet, frame, &p); err != nil {
			b.Fatal(err)
		}
	}
}

// FuzzDecode checks that no frame makes Decode panic or return a payload
// that is not inside the frame or shorter than it claims.
func FuzzDecode(f *testing.F) {
	f.Add(uint16(LinkTypeEthernet), serialize(f, eth(layers.EthernetTypeIPv4), ip4(layers.IPProtocolTCP), tcp(), payload))
	f.Add(uint16(LinkTypeLinuxSLL2), concat(make([]byte, 20), serialize(f, ip6(layers.IPProtocolUDP), udp(), payload)))
	f.Fuzz(func(t *testing.T, lt uint16, frame []byte) {
		var d Decoder
		var p Packet
		if err := d.Decode(LinkType(lt), frame, &p); err != nil {
			return
		}
		if len(p.Payload) > len(frame) || p.WireLen < len(p.Payload) || p.WireLen < 0 {
			t.Fatalf("payload %d bytes, wire %d, frame %d", len(p.Payload), p.WireLen, len(frame))
		}
		if !p.Src.IsValid() || !p.Dst.IsValid() || (p.L4 != 6 && p.L4 != 17) {
			t.Fatalf("bad packet %+v", p)
		}
	})
}
