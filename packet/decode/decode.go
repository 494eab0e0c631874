// Package decode turns captured link-layer frames into the few fields TCP/UDP
// reassembly needs: addresses, ports, TCP sequence and flags, TTL and the
// payload (captured bytes and wire length).
//
// It drives gopacket's layer decoders (Ethernet, 802.1Q, IPv4, IPv6, TCP, UDP,
// BSD loopback) directly, DecodingLayerParser-style, reusing one set of layer
// structs so decoding a packet allocates nothing. Linux cooked headers (SLL
// and SLL2) are decoded here: gopacket v1.1.19 has no SLL2, and its SLL
// decoder slices by an unchecked address length (a hostile frame panics).
// IPv6 extension headers are walked here too, so that fragments are
// recognised instead of being misread as TCP.
package decode

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// LinkType is a pcap LINKTYPE_ value. gopacket v1.1.19's layers.LinkType is a
// uint8 and cannot hold LINKTYPE_LINUX_SLL2 (276), hence this type.
type LinkType uint16

// Supported link types.
const (
	LinkTypeNull      LinkType = 0   // BSD loopback, host byte order family
	LinkTypeEthernet  LinkType = 1   //
	LinkTypeRawBSD    LinkType = 12  // DLT_RAW on OpenBSD
	LinkTypeRaw       LinkType = 101 // raw IPv4 or IPv6
	LinkTypeLoop      LinkType = 108 // OpenBSD loopback, network byte order family
	LinkTypeLinuxSLL  LinkType = 113
	LinkTypeIPv4      LinkType = 228
	LinkTypeIPv6      LinkType = 229
	LinkTypeLinuxSLL2 LinkType = 276
)

// Why a frame was not decoded into a Packet. Each is counted in Stats.
var (
	ErrUnsupportedLink = errors.New("unsupported link type")
	ErrNotIP           = errors.New("not an IP packet")
	ErrFragment        = errors.New("IP fragment")
	ErrNotTCPUDP       = errors.New("not TCP or UDP")
	ErrTruncated       = errors.New("headers truncated")
	ErrMalformed       = errors.New("malformed headers")
)

// TCP flag bits as in the TCP header.
const (
	FlagFIN uint8 = 0x01
	FlagSYN uint8 = 0x02
	FlagRST uint8 = 0x04
	FlagPSH uint8 = 0x08
	FlagACK uint8 = 0x10
)

// Packet is one decoded TCP segment or UDP datagram. Payload aliases the
// frame passed to Decode and is valid only until the frame buffer is reused.
type Packet struct {
	Src, Dst         netip.Addr
	SrcPort, DstPort uint16
	L4               uint8 // 6 TCP, 17 UDP
	TTL              uint8 // IPv4 TTL or IPv6 hop limit

	// TCP only.
	Seq, Ack uint32
	Flags    uint8
	Window   uint16 // advertised window, unscaled (0: zero window)

	// Payload holds the captured payload bytes; WireLen is the payload length
	// on the wire per the IP/UDP headers (>= len(Payload) when the capture
	// was cut by snaplen).
	Payload []byte
	WireLen int
}

// Has reports whether all TCP flags in f are set.
func (p *Packet) Has(f uint8) bool { return p.Flags&f == f }

// Stats counts decoding outcomes.
type Stats struct {
	Frames          uint64 // frames passed to Decode
	Decoded         uint64 // TCP or UDP packets returned
	UnsupportedLink uint64
	NotIP           uint64 // ARP, LLDP, ...
	Fragments       uint64 // IPv4/IPv6 fragments (skipped)
	NotTCPUDP       uint64 // ICMP, SCTP, ...
	Truncated       uint64 // snaplen cut into the headers
	Malformed       uint64
}

// Decoder decodes frames of any supported link type. It is not safe for
// concurrent use; its layer structs are reused across calls.
type Decoder struct {
	eth   layers.Ethernet
	dot1q layers.Dot1Q
	loop  layers.Loopback
	ip4   layers.IPv4
	ip6   layers.IPv6
	tcp   layers.TCP
	udp   layers.UDP

	Stats Stats
}

// maxVLANTags bounds how many stacked 802.1Q/802.1ad tags are peeled.
const maxVLANTags = 8

// maxIPv6Ext bounds how many IPv6 extension headers are walked.
const maxIPv6Ext = 16

// Supported reports whether Decode handles the link type.
func Supported(lt LinkType) bool {
	switch lt {
	case LinkTypeNull, LinkTypeEthernet, LinkTypeRawBSD, LinkTypeRaw, LinkTypeLoop,
		LinkTypeLinuxSLL, LinkTypeIPv4, LinkTypeIPv6, LinkTypeLinuxSLL2:
		return true
	}
	return false
}

// Decode decodes one frame into p. It returns one of the package's Err values
// (possibly wrapped) when the frame carries no usable TCP/UDP payload.
func (d *Decoder) Decode(lt LinkType, frame []byte, p *Packet) error {
	d.Stats.Frames++
	err := d.decode(lt, frame, p)
	switch {
	case err == nil:
		d.Stats.Decoded++
	case errors.Is(err, ErrUnsupportedLink):
		d.Stats.UnsupportedLink++
	case errors.Is(err, ErrNotIP):
		d.Stats.NotIP++
	case errors.Is(err, ErrFragment):
		d.Stats.Fragments++
	case errors.Is(err, ErrNotTCPUDP):
		d.Stats.NotTCPUDP++
	case errors.Is(err, ErrTruncated):
		d.Stats.Truncated++
	default:
		d.Stats.Malformed++
	}
	return err
}

func (d *Decoder) decode(lt LinkType, data []byte, p *Packet) error {
	var et layers.EthernetType
	switch lt {
	case LinkTypeEthernet:
		if err := d.eth.DecodeFromBytes(data, gopacket.NilDecodeFeedback); err != nil {
			return fmt.Errorf("ethernet: %w", ErrTruncated)
		}
		et, data = d.eth.EthernetType, d.eth.Payload
	case LinkTypeLinuxSLL:
		// 16-byte header; protocol in the last two bytes.
		if len(data) < 16 {
			return fmt.Errorf("linux sll: %w", ErrTruncated)
		}
		et, data = layers.EthernetType(binary.BigEndian.Uint16(data[14:16])), data[16:]
	case LinkTypeLinuxSLL2:
		// 20-byte header; protocol in the first two bytes.
		if len(data) < 20 {
			return fmt.Errorf("linux sll2: %w", ErrTruncated)
		}
		et, data = layers.EthernetType(binary.BigEndian.Uint16(data[0:2])), data[20:]
	case LinkTypeRaw, LinkTypeRawBSD:
		return d.decodeIP(data, p)
	case LinkTypeIPv4:
		return d.decodeIPv4(data, p)
	case LinkTypeIPv6:
		return d.decodeIPv6(data, p)
	case LinkTypeNull, LinkTypeLoop:
		if err := d.loop.DecodeFromBytes(data, gopacket.NilDecodeFeedback); err != nil {
			if len(data) < 4 {
				return fmt.Errorf("loopback: %w", ErrTruncated)
			}
			return fmt.Errorf("loopback: %w", ErrNotIP)
		}
		switch d.loop.Family {
		case layers.ProtocolFamilyIPv4:
			return d.decodeIPv4(d.loop.Payload, p)
		case layers.ProtocolFamilyIPv6BSD, layers.ProtocolFamilyIPv6FreeBSD,
			layers.ProtocolFamilyIPv6Darwin, layers.ProtocolFamilyIPv6Linux:
			return d.decodeIPv6(d.loop.Payload, p)
		}
		return fmt.Errorf("loopback family %d: %w", d.loop.Family, ErrNotIP)
	default:
		return fmt.Errorf("link type %d: %w", lt, ErrUnsupportedLink)
	}
	for range maxVLANTags {
		switch et {
		case layers.EthernetTypeIPv4:
			return d.decodeIPv4(data, p)
		case layers.EthernetTypeIPv6:
			return d.decodeIPv6(data, p)
		case layers.EthernetTypeDot1Q, layers.EthernetTypeQinQ, 0x9100:
			if err := d.dot1q.DecodeFromBytes(data, gopacket.NilDecodeFeedback); err != nil {
				return fmt.Errorf("802.1q: %w", ErrTruncated)
			}
			et, data = d.dot1q.Type, d.dot1q.Payload
		default:
			return fmt.Errorf("ethertype %#04x: %w", uint16(et), ErrNotIP)
		}
	}
	return fmt.Errorf("more than %d VLAN tags: %w", maxVLANTags, ErrMalformed)
}

// decodeIP picks the IP version from the first nibble (raw IP link types).
func (d *Decoder) decodeIP(data []byte, p *Packet) error {
	if len(data) == 0 {
		return fmt.Errorf("raw ip: %w", ErrTruncated)
	}
	switch data[0] >> 4 {
	case 4:
		return d.decodeIPv4(data, p)
	case 6:
		return d.decodeIPv6(data, p)
	}
	return fmt.Errorf("raw ip version %d: %w", data[0]>>4, ErrNotIP)
}

func (d *Decoder) decodeIPv4(data []byte, p *Packet) error {
	if len(data) < 20 {
		return fmt.Errorf("ipv4: %w", ErrTruncated)
	}
	if err := d.ip4.DecodeFromBytes(data, gopacket.NilDecodeFeedback); err != nil {
		if len(data) < int(data[0]&0x0f)*4 {
			return fmt.Errorf("ipv4: %w", ErrTruncated)
		}
		return fmt.Errorf("ipv4: %w: %v", ErrMalformed, err)
	}
	if d.ip4.Version != 4 {
		return fmt.Errorf("ipv4 version %d: %w", d.ip4.Version, ErrMalformed)
	}
	if d.ip4.Flags&layers.IPv4MoreFragments != 0 || d.ip4.FragOffset != 0 {
		return fmt.Errorf("ipv4: %w", ErrFragment)
	}
	p.Src = netip.AddrFrom4([4]byte(d.ip4.SrcIP))
	p.Dst = netip.AddrFrom4([4]byte(d.ip4.DstIP))
	p.TTL = d.ip4.TTL
	wire := int(d.ip4.Length) - int(d.ip4.IHL)*4
	return d.decodeL4(uint8(d.ip4.Protocol), d.ip4.Payload, wire, p)
}

func (d *Decoder) decodeIPv6(data []byte, p *Packet) error {
	if len(data) < 40 {
		return fmt.Errorf("ipv6: %w", ErrTruncated)
	}
	if err := d.ip6.DecodeFromBytes(data, gopacket.NilDecodeFeedback); err != nil {
		return fmt.Errorf("ipv6: %w: %v", ErrMalformed, err)
	}
	if d.ip6.Version != 6 {
		return fmt.Errorf("ipv6 version %d: %w", d.ip6.Version, ErrMalformed)
	}
	p.Src = netip.AddrFrom16([16]byte(d.ip6.SrcIP))
	p.Dst = netip.AddrFrom16([16]byte(d.ip6.DstIP))
	p.TTL = d.ip6.HopLimit
	next, payload := d.ip6.NextHeader, d.ip6.Payload
	// Payload length on the wire, after the fixed header. gopacket has
	// already consumed a hop-by-hop header (and handled jumbograms).
	wire := int(d.ip6.Length)
	if d.ip6.HopByHop != nil {
		next = d.ip6.HopByHop.NextHeader
		if d.ip6.Length == 0 { // jumbogram: payload as sliced by gopacket
			wire = len(payload)
		} else {
			wire -= d.ip6.HopByHop.ActualLength
		}
	}
	for range maxIPv6Ext {
		var hdrLen int
		switch next {
		case layers.IPProtocolTCP, layers.IPProtocolUDP:
			return d.decodeL4(uint8(next), payload, wire, p)
		case layers.IPProtocolIPv6HopByHop, layers.IPProtocolIPv6Routing,
			layers.IPProtocolIPv6Destination, 135 /* mobility */, 139 /* HIP */, 140 /* shim6 */ :
			if len(payload) < 2 {
				return fmt.Errorf("ipv6 extension %d: %w", next, ErrTruncated)
			}
			hdrLen = (int(payload[1]) + 1) * 8
		case layers.IPProtocolIPv6Fragment:
			if len(payload) < 8 {
				return fmt.Errorf("ipv6 fragment header: %w", ErrTruncated)
			}
			// Offset (13 bits) and M flag; an atomic fragment (both zero)
			// carries a whole packet.
			if binary.BigEndian.Uint16(payload[2:4])&0xfff9 != 0 {
				return fmt.Errorf("ipv6: %w", ErrFragment)
			}
			hdrLen = 8
		case layers.IPProtocolAH:
			if len(payload) < 2 {
				return fmt.Errorf("ipv6 AH: %w", ErrTruncated)
			}
			hdrLen = (int(payload[1]) + 2) * 4
		default:
			return fmt.Errorf("ipv6 next header %d: %w", next, ErrNotTCPUDP)
		}
		if hdrLen > len(payload) {
			return fmt.Errorf("ipv6 extension %d: %w", next, ErrTruncated)
		}
		next, payload, wire = layers.IPProtocol(payload[0]), payload[hdrLen:], wire-hdrLen
	}
	return fmt.Errorf("more than %d IPv6 extension headers: %w", maxIPv6Ext, ErrMalformed)
}

// decodeL4 decodes TCP or UDP from an IP payload whose wire length (from the
// IP header) is wire; data may be shorter when the capture was truncated.
func (d *Decoder) decodeL4(proto uint8, data []byte, wire int, p *Packet) error {
	if wire < len(data) {
		// The IP header claims less than was captured (bogus, or TSO
		// bookkeeping); trust the captured bytes.
		wire = len(data)
	}
	switch layers.IPProtocol(proto) {
	case layers.IPProtocolTCP:
		if len(data) < 20 || len(data) < int(data[12]>>4)*4 {
			return fmt.Errorf("tcp: %w", ErrTruncated)
		}
		if err := d.tcp.DecodeFromBytes(data, gopacket.NilDecodeFeedback); err != nil {
			return fmt.Errorf("tcp: %w: %v", ErrMalformed, err)
		}
		hdr := int(d.tcp.DataOffset) * 4
		p.L4 = 6
		p.SrcPort, p.DstPort = uint16(d.tcp.SrcPort), uint16(d.tcp.DstPort)
		p.Seq, p.Ack = d.tcp.Seq, d.tcp.Ack
		p.Flags = data[13]
		p.Window = d.tcp.Window
		p.Payload = d.tcp.Payload
		p.WireLen = wire - hdr
		return nil
	case layers.IPProtocolUDP:
		if len(data) < 8 {
			return fmt.Errorf("udp: %w", ErrTruncated)
		}
		if err := d.udp.DecodeFromBytes(data, gopacket.NilDecodeFeedback); err != nil {
			return fmt.Errorf("udp: %w: %v", ErrMalformed, err)
		}
		p.L4 = 17
		p.SrcPort, p.DstPort = uint16(d.udp.SrcPort), uint16(d.udp.DstPort)
		p.Seq, p.Ack, p.Flags, p.Window = 0, 0, 0, 0
		// UDP length covers header and payload; 0 means jumbo/unknown.
		udpWire := int(d.udp.Length)
		if udpWire < 8 || udpWire > wire {
			udpWire = wire
		}
		p.Payload = data[8:]
		if len(p.Payload) > udpWire-8 {
			p.Payload = p.Payload[:udpWire-8]
		}
		p.WireLen = udpWire - 8
		return nil
	}
	return fmt.Errorf("ip protocol %d: %w", proto, ErrNotTCPUDP)
}
