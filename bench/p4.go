package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
)

// p4: replay throughput against tshark's HTTP dissection on one generated capture.
func (b *bench) p4(ctx context.Context) error {
	dir, err := os.MkdirTemp("", "sightline-bench-p4")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "http.pcap")
	const conns, perConn = 500, 100
	if err := writeHTTPCapture(path, conns, perConn); err != nil {
		return fmt.Errorf("generate capture: %w", err)
	}
	st, _ := os.Stat(path)

	start := time.Now()
	out, err := exec.CommandContext(ctx, b.bin, "replay", "--format", "jsonl", path).Output()
	if err != nil {
		return fmt.Errorf("sightline replay: %w", err)
	}
	slTime := time.Since(start)
	slRows := bytes.Count(out, []byte("\n"))

	start = time.Now()
	tout, err := exec.CommandContext(ctx, "tshark", "-r", path, "-Y", "http").Output()
	if err != nil {
		return fmt.Errorf("tshark: %w", err)
	}
	tsTime := time.Since(start)
	tsLines := bytes.Count(tout, []byte("\n")) // one line per HTTP request or response packet

	want := conns * perConn
	fmt.Printf("P4 replay of %d HTTP transactions (%.1f MB pcap): sightline %d rows in %.2fs = %.0f rows/s; tshark -Y http %d packets in %.2fs = %.0f transactions/s; ratio %.1f× (target ≥ 20×)\n",
		want, float64(st.Size())/1e6, slRows, slTime.Seconds(), float64(slRows)/slTime.Seconds(),
		tsLines, tsTime.Seconds(), float64(tsLines/2)/tsTime.Seconds(), tsTime.Seconds()/slTime.Seconds())
	if slRows != want {
		return fmt.Errorf("replay printed %d rows, want %d", slRows, want)
	}
	return nil
}

// writeHTTPCapture writes an Ethernet pcap of conns keep-alive connections,
// each carrying perConn GET/200 exchanges, with handshakes and FINs.
func writeHTTPCapture(path string, conns, perConn int) error {
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
