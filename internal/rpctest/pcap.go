package rpctest

import (
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
)

// PcapSeg is one TCP segment of a hand-built capture.
type PcapSeg struct {
	FromClient bool
	Data       []byte
}

// Midstream ports of hand-built captures.
const (
	MidClientPort = 40123
	MidServerPort = 20880
)

// WriteMidstreamPcap writes a capture of one connection seen from its
// middle: no handshake, sequence numbers continuing as if earlier bytes had
// passed. It returns the file's path (in t.TempDir()).
func WriteMidstreamPcap(t testing.TB, segs []PcapSeg) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "midstream.pcap")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := pcapgo.NewWriter(f)
	if err := w.WriteFileHeader(65535, layers.LinkTypeEthernet); err != nil {
		t.Fatal(err)
	}
	seq := [2]uint32{1000000, 5000000} // client, server: mid-stream values
	ts := time.Unix(1700000000, 0)
	for _, s := range segs {
		d := 1
		src, dst := uint16(MidServerPort), uint16(MidClientPort)
		if s.FromClient {
			d = 0
			src, dst = MidClientPort, MidServerPort
		}
		ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP,
			SrcIP: net.IPv4(10, 0, 0, byte(1+d)), DstIP: net.IPv4(10, 0, 0, byte(2-d))}
		tcp := &layers.TCP{SrcPort: layers.TCPPort(src), DstPort: layers.TCPPort(dst), Seq: seq[d], Ack: seq[1-d],
			ACK: true, PSH: true, Window: 65535}
		if err := tcp.SetNetworkLayerForChecksum(ip); err != nil {
			t.Fatal(err)
		}
		eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, byte(1 + d)}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, byte(2 - d)},
			EthernetType: layers.EthernetTypeIPv4}
		buf := gopacket.NewSerializeBuffer()
		opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
		if err := gopacket.SerializeLayers(buf, opts, eth, ip, tcp, gopacket.Payload(s.Data)); err != nil {
			t.Fatal(err)
		}
		b := buf.Bytes()
		ts = ts.Add(2 * time.Millisecond)
		if err := w.WritePacket(gopacket.CaptureInfo{Timestamp: ts, CaptureLength: len(b), Length: len(b)}, b); err != nil {
			t.Fatal(err)
		}
		seq[d] += uint32(len(s.Data))
	}
	return path
}

// MidstreamSegs is proto's scenario as a capture that starts in the middle
// of the big request: its tail, the big response, then the hello and fail
// calls exactly as the live scenario makes them.
func MidstreamSegs(proto string) []PcapSeg {
	var big, hello, fail []byte
	var handler Handler
	switch proto {
	case "dubbo":
		handler = dubboHandler
		b := DubboRequest{ID: IDBig, Service: Service, ServiceVersion: ServiceVersion, Method: MethodBig, Args: []string{string(make([]byte, BigSize))}, TwoWay: true}
		h := DubboRequest{ID: IDHello, Service: Service, ServiceVersion: ServiceVersion, Method: MethodHello, Args: []string{"world"},
			Attachments: []string{"traceparent", TraceParent}, TwoWay: true}
		f := DubboRequest{ID: IDFail, Service: Service, ServiceVersion: ServiceVersion, Method: MethodFail, TwoWay: true}
		big, hello, fail = b.Encode(), h.Encode(), f.Encode()
	case "sofarpc":
		handler = boltHandler
		svc := Service + ":1.0"
		big = SofaRequest(IDBig, svc, MethodBig, false, false, string(make([]byte, BigSize))).Encode()
		hello = SofaRequest(IDHello, svc, MethodHello, false, false, "world").Encode()
		fail = SofaRequest(IDFail, svc, MethodFail, false, false).Encode()
	case "brpc":
		handler = brpcHandler
		b := BRPCRequest{ID: IDBig, Service: Service, Method: MethodBig, Payload: ProtoString(string(make([]byte, BigSize)))}
		h := BRPCRequest{ID: IDHello, Service: Service, Method: MethodHello, LogID: 42, TraceID: 0x1122334455667788, SpanID: 0x99, Parent: 0x77,
			RequestID: "req-abc", Payload: ProtoString("world")}
		f := BRPCRequest{ID: IDFail, Service: Service, Method: MethodFail}
		big, hello, fail = b.Encode(), h.Encode(), f.Encode()
	case "krpc":
		handler = krpcHandler
		b := KRPCMeta{Direction: 1, Service: KRPCService, Msg: KRPCMsgBig, Sequence: IDBig}
		h := KRPCMeta{Direction: 1, Service: KRPCService, Msg: KRPCMsgHello, Sequence: IDHello, Timeout: 3000,
			TraceID: "gtwdemo-ac110006-463659-122997101", SpanID: "gtwdemo-ac110006-463659-122997102"}
		f := KRPCMeta{Direction: 1, Service: KRPCService, Msg: KRPCMsgFail, Sequence: IDFail}
		big, hello, fail = b.Encode(ProtoString(string(make([]byte, BigSize)))), h.Encode(ProtoString("world")), f.Encode(ProtoString("world"))
	default:
		return nil
	}
	answer := func(req []byte) []byte { r, _ := handler(req); return r }
	return []PcapSeg{
		{true, big[3000:]},
		{false, answer(big)},
		{true, hello},
		{false, answer(hello)},
		{true, fail},
		{false, answer(fail)},
	}
}
