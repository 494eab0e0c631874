// Package testcapture generates synthetic packet captures for benchmarks and
// tests that need more traffic than a recorded capture holds.
package testcapture

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
)

// WriteHTTP writes an Ethernet pcap of conns keep-alive connections,
// each carrying perConn GET/200 exchanges, with handshakes and FINs.
func WriteHTTP(path string, conns, perConn int) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	bw := bufio.NewWriterSize(f, 1<<20)
	w := pcapgo.NewWriter(bw)
	if err := w.WriteFileHeader(65535, layers.LinkTypeEthernet); err != nil {
		return err
	}
	ts := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cliMAC := net.HardwareAddr{2, 0, 0, 0, 0, 1}
	srvMAC := net.HardwareAddr{2, 0, 0, 0, 0, 2}
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	body := bytes.Repeat([]byte("x"), 1024)
	resp := append([]byte(fmt.Sprintf("HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n", len(body))), body...)

	for c := 0; c < conns; c++ {
		cli := net.IPv4(10, 1, byte(c>>8), byte(c)).To4()
		srv := net.IPv4(10, 2, 0, 1).To4()
		cport := layers.TCPPort(20000 + c)
		cseq, sseq := uint32(1000+c), uint32(500000+c)
		send := func(fromClient bool, flags string, payload []byte) error {
			ts = ts.Add(50 * time.Microsecond)
			eth := &layers.Ethernet{SrcMAC: cliMAC, DstMAC: srvMAC, EthernetType: layers.EthernetTypeIPv4}
			ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: cli, DstIP: srv}
			tcp := &layers.TCP{SrcPort: cport, DstPort: 80, Seq: cseq, Ack: sseq, Window: 65535}
			if !fromClient {
				eth.SrcMAC, eth.DstMAC = srvMAC, cliMAC
				ip.SrcIP, ip.DstIP = srv, cli
				tcp.SrcPort, tcp.DstPort = 80, cport
				tcp.Seq, tcp.Ack = sseq, cseq
			}
			for _, fl := range flags {
				switch fl {
				case 'S':
					tcp.SYN = true
				case 'A':
					tcp.ACK = true
				case 'F':
					tcp.FIN = true
				case 'P':
					tcp.PSH = true
				}
			}
			if err := tcp.SetNetworkLayerForChecksum(ip); err != nil {
				return err
			}
			if err := gopacket.SerializeLayers(buf, opts, eth, ip, tcp, gopacket.Payload(payload)); err != nil {
				return err
			}
			data := buf.Bytes()
			adv := uint32(len(payload))
			if tcp.SYN || tcp.FIN {
				adv++
			}
			if fromClient {
				cseq += adv
			} else {
				sseq += adv
			}
			return w.WritePacket(gopacket.CaptureInfo{Timestamp: ts, CaptureLength: len(data), Length: len(data)}, data)
		}
		steps := []struct {
			cli   bool
			flags string
		}{{true, "S"}, {false, "SA"}, {true, "A"}}
		for _, s := range steps {
			if err := send(s.cli, s.flags, nil); err != nil {
				return err
			}
		}
		for i := 0; i < perConn; i++ {
			req := []byte(fmt.Sprintf("GET /api/items/%d?page=%d HTTP/1.1\r\nHost: shop.example\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n", c, i))
			if err := send(true, "PA", req); err != nil {
				return err
			}
			if err := send(false, "PA", resp); err != nil {
				return err
			}
		}
		if err := send(true, "FA", nil); err != nil {
			return err
		}
		if err := send(false, "FA", nil); err != nil {
			return err
		}
		if err := send(true, "A", nil); err != nil {
			return err
		}
	}
	return bw.Flush()
}
