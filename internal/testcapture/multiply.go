package testcapture

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"

	"github.com/sightline-io/sightline/packet/decode"
	"github.com/sightline-io/sightline/packet/pcapfile"
)

// Multiply writes copies of the recorded capture at src to dst, one after
// the other in time, each copy's client endpoint moved to its own address so
// every copy is a distinct set of connections: a small recorded capture of a
// protocol becomes enough traffic to measure replay throughput on. The
// client of a packet is taken to be the endpoint with the higher port.
// Ethernet captures only (tcpdump on lo writes those).
func Multiply(src, dst string, copies int) (frames int, err error) {
	in, err := pcapfile.Open(src)
	if err != nil {
		return 0, err
	}
	var recs []record
	var first, last time.Time
	for {
		fr, err := in.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			in.Close()
			return 0, fmt.Errorf("read %s: %w", src, err)
		}
		if fr.LinkType != decode.LinkTypeEthernet {
			in.Close()
			return 0, fmt.Errorf("%s: link type %d: only Ethernet captures can be multiplied", src, fr.LinkType)
		}
		if first.IsZero() {
			first = fr.Time
		}
		last = fr.Time
		recs = append(recs, record{data: append([]byte(nil), fr.Data...), at: fr.Time.Sub(first)})
	}
	in.Close()

	f, err := os.Create(dst)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	bw := bufio.NewWriterSize(f, 1<<20)
	w := pcapgo.NewWriter(bw)
	if err := w.WriteFileHeader(262144, layers.LinkTypeEthernet); err != nil {
		return 0, err
	}
	span := last.Sub(first) + time.Second
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	for c := 0; c < copies; c++ {
		for _, r := range recs {
			out, err := rewrite(r.data, c, buf, opts)
			if err != nil {
				return frames, err
			}
			ts := base.Add(time.Duration(c)*span + r.at)
			if err := w.WritePacket(gopacket.CaptureInfo{Timestamp: ts, CaptureLength: len(out), Length: len(out)}, out); err != nil {
				return frames, err
			}
			frames++
		}
	}
	if err := bw.Flush(); err != nil {
		return frames, err
	}
	return frames, f.Close()
}

type record struct {
	data []byte
	at   time.Duration
}

// rewrite moves the client endpoint (higher port) of copy c to an address
// of its own; packets that are not TCP/UDP over IP pass unchanged.
func rewrite(data []byte, c int, buf gopacket.SerializeBuffer, opts gopacket.SerializeOptions) ([]byte, error) {
	pkt := gopacket.NewPacket(data, layers.LayerTypeEthernet, gopacket.Default)
	var srcPort, dstPort uint16
	var l4 gopacket.SerializableLayer
	var setNet func(gopacket.NetworkLayer) error
	if t, ok := pkt.Layer(layers.LayerTypeTCP).(*layers.TCP); ok {
		srcPort, dstPort, l4, setNet = uint16(t.SrcPort), uint16(t.DstPort), t, t.SetNetworkLayerForChecksum
	} else if u, ok := pkt.Layer(layers.LayerTypeUDP).(*layers.UDP); ok {
		srcPort, dstPort, l4, setNet = uint16(u.SrcPort), uint16(u.DstPort), u, u.SetNetworkLayerForChecksum
	} else {
		return data, nil
	}
	eth, _ := pkt.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	app := gopacket.Payload(nil)
	if a := pkt.ApplicationLayer(); a != nil {
		app = a.Payload()
	}
	clientIsSrc := srcPort > dstPort
	var netLayer gopacket.SerializableLayer
	switch ip := pkt.NetworkLayer().(type) {
	case *layers.IPv4:
		addr := &ip.DstIP
		if clientIsSrc {
			addr = &ip.SrcIP
		}
		*addr = append([]byte(nil), (*addr).To4()...)
		(*addr)[1], (*addr)[2] = byte(c>>8), byte(c) // 127.x.y.1 stays loopback
		if err := setNet(ip); err != nil {
			return nil, err
		}
		netLayer = ip
	case *layers.IPv6:
		addr := &ip.DstIP
		if clientIsSrc {
			addr = &ip.SrcIP
		}
		*addr = append([]byte(nil), *addr...)
		(*addr)[12], (*addr)[13] = byte(c>>8), byte(c)
		if err := setNet(ip); err != nil {
			return nil, err
		}
		netLayer = ip
	default:
		return data, nil
	}
	if eth == nil {
		return data, nil
	}
	if err := gopacket.SerializeLayers(buf, opts, eth, netLayer, l4, app); err != nil {
		return nil, fmt.Errorf("serialize copy %d: %w", c, err)
	}
	return buf.Bytes(), nil
}
