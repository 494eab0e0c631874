package netcap

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sightline-io/sightline/agent/capture"
	"github.com/sightline-io/sightline/agent/capture/afpacket"
	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/agent/l7/http1"
	"github.com/sightline-io/sightline/agent/session"
	"github.com/sightline-io/sightline/flowlog"
	"github.com/sightline-io/sightline/packet/decode"
)

// flowRecorder is a FlowSink keeping packets of one port.
type flowRecorder struct {
	port    uint16
	packets []decode.Packet
	bytes   int
	expires int
}

func (f *flowRecorder) Packet(p *decode.Packet, _ time.Time, frameLen int) {
	if p.SrcPort != f.port && p.DstPort != f.port {
		return
	}
	c := *p
	c.Payload = nil
	f.packets = append(f.packets, c)
	f.bytes += frameLen
}

func (f *flowRecorder) Expire(time.Time) { f.expires++ }

// TestPipelineLoopbackHTTP runs a real HTTP exchange over loopback through
// capture → decode → flow sink and reassembly → session Assembler.
func TestPipelineLoopbackHTTP(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test needs root (AF_PACKET sockets)")
	}
	c, err := afpacket.Open(afpacket.Config{Interfaces: []string{"lo"}, Filter: true, BlockTimeout: 2 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, "hello from the server")
	})}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	port := uint16(ln.Addr().(*net.TCPAddr).Port)

	var rows []*flowlog.L7FlowLog
	sess := session.New(session.Config{Protocols: []l7.Protocol{http1.New()}, Logger: slog.New(slog.DiscardHandler)},
		func(r *flowlog.L7FlowLog) {
			if r.ServerPort == port {
				rows = append(rows, r)
			}
		})
	flows := &flowRecorder{port: port}
	p := New(Config{ExpireEvery: 50 * time.Millisecond}, flows, sess)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- p.Run(ctx, c) }()

	time.Sleep(50 * time.Millisecond) // the socket is bound at Open; this only lets Run start
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	resp, err := client.Get("http://" + ln.Addr().String() + "/hello?x=1")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "hello from the server" {
		t.Fatalf("body %q", body)
	}
	// Wait until the capture has handed over the whole exchange.
	deadline := time.Now().Add(10 * time.Second)
	for p.Stats().Reassembly.ConnsClosed == 0 || c.Stats().Frames < 8 {
		if time.Now().After(deadline) {
			t.Fatalf("exchange not captured: %+v", p.Stats())
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run: %v", err)
	}

	// Run has returned: its goroutine's writes are visible.
	syns := 0
	for _, pk := range flows.packets {
		if pk.Flags&(decode.FlagSYN|decode.FlagACK) == decode.FlagSYN {
			syns++
		}
		if pk.Src != netip.MustParseAddr("127.0.0.1") || pk.L4 != 6 {
			t.Errorf("flow packet %v -> %v proto %d", pk.Src, pk.Dst, pk.L4)
		}
	}
	if syns != 1 || len(flows.packets) < 8 || flows.bytes <= 0 || flows.expires == 0 {
		t.Errorf("flow sink: %d SYNs, %d packets, %d bytes, %d expires", syns, len(flows.packets), flows.bytes, flows.expires)
	}
	if len(rows) != 1 {
		t.Fatalf("%d L7 rows for port %d, want 1: %+v", len(rows), port, p.Stats())
	}
	r := rows[0]
	if r.SignalSource != flowlog.SourcePacket || r.RequestType != "GET" || !strings.HasPrefix(r.RequestResource, "/hello") ||
		r.ResponseCode == nil || *r.ResponseCode != 200 || r.ServerPort != port {
		t.Errorf("row: source %d %s %s code %v port %d", r.SignalSource, r.RequestType, r.RequestResource, r.ResponseCode, r.ServerPort)
	}
	st := p.Stats()
	if st.Frames == 0 || st.Decode.Decoded == 0 || st.Reassembly.Segments == 0 {
		t.Errorf("pipeline stats %+v", st)
	}
}

func TestObservationPoint(t *testing.T) {
	tests := []struct {
		client, server bool
		want           string
	}{
		{true, true, "local"},
		{true, false, "c"},
		{false, true, "s"},
		{false, false, "rest"},
	}
	for _, tc := range tests {
		if got := ObservationPoint(tc.client, tc.server); got != tc.want {
			t.Errorf("ObservationPoint(%v, %v) = %q, want %q", tc.client, tc.server, got, tc.want)
		}
	}
	if ObsLocal != flowlog.ObsLocalNIC || ObsClient != flowlog.ObsClientNIC || ObsServer != flowlog.ObsServerNIC || ObsRest != flowlog.ObsRestNIC {
		t.Error("observation point names differ from flowlog's")
	}
}

func TestLocalAddrs(t *testing.T) {
	var l LocalAddrs
	if err := l.Refresh(); err != nil {
		t.Fatal(err)
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		pfx, err := netip.ParsePrefix(a.String())
		if err != nil {
			continue
		}
		if !l.Contains(pfx.Addr()) {
			t.Errorf("%v not local", pfx.Addr())
		}
	}
	for _, s := range []string{"127.0.0.2", "::1", "::ffff:127.0.0.1"} {
		if !l.Contains(netip.MustParseAddr(s)) {
			t.Errorf("%s not local", s)
		}
	}
	if l.Contains(netip.MustParseAddr("192.0.2.1")) {
		t.Error("TEST-NET address reported local")
	}
}

// nopL7 is an L7Sink that drops everything (for the benchmark).
type nopL7 struct{ segs, closed int }

func (n *nopL7) Feed(*capture.Segment)    { n.segs++ }
func (n *nopL7) CloseConn(capture.Closed) { n.closed++ }
