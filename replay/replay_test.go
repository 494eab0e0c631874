package replay

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"

	"github.com/sightline-io/sightline/agent/l7/registry"
	"github.com/sightline-io/sightline/flowlog"
	"github.com/sightline-io/sightline/internal/testcapture"
	"github.com/sightline-io/sightline/packet/decode"
	"github.com/sightline-io/sightline/packet/pcapfile"
)

const pcapDir = "../testdata/pcap"

func replayFile(t testing.TB, path string) ([]flowlog.L7FlowLog, []byte, Stats) {
	t.Helper()
	var out bytes.Buffer
	st, err := Run(context.Background(), path, &out, Options{AgentID: "agent-1", Host: "host-1", Protocols: registry.Default()})
	if err != nil {
		t.Fatalf("Run(%s): %v", path, err)
	}
	var rows []flowlog.L7FlowLog
	sc := bufio.NewScanner(bytes.NewReader(out.Bytes()))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var r flowlog.L7FlowLog
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		rows = append(rows, r)
	}
	if uint64(len(rows)) != st.Rows {
		t.Errorf("%d lines, Stats.Rows %d", len(rows), st.Rows)
	}
	return rows, out.Bytes(), st
}

// summary is the part of a row that says which exchange it is.
func summary(rows []flowlog.L7FlowLog) []string {
	var s []string
	for _, r := range rows {
		code := "-"
		if r.ResponseCode != nil {
			code = fmt.Sprint(*r.ResponseCode)
		}
		s = append(s, fmt.Sprintf("%s %s %s HTTP/%s", r.RequestType, r.RequestResource, code, r.Version))
	}
	return s
}

var nginxRows = []string{
	"GET /index.html 200 HTTP/1.1",
	"GET /missing 404 HTTP/1.1",
	"POST /post 201 HTTP/1.1",
	"GET /err 500 HTTP/1.1",
	"GET /index.html 200 HTTP/1.0",
	"GET /index.html 200 HTTP/1.1", // pipelined pair
	"GET /big.txt 200 HTTP/1.1",
}

func TestReplayCaptures(t *testing.T) {
	tests := []struct {
		file       string
		serverPort uint16
		want       []string
	}{
		{"http_curl_nginx.pcap", 18088, nginxRows},
		{"http_any_sll2.pcap", 18088, []string{"GET /index.html 200 HTTP/1.1", "GET /err 500 HTTP/1.1"}},
		{"http_any_sll_nano.pcap", 18088, []string{"GET /index.html?x=1 200 HTTP/1.1", "DELETE /post 201 HTTP/1.1"}},
		{"http_go_ipv6_sll2.pcapng", 18089, []string{
			"GET /chunked 200 HTTP/1.1", "GET /api/users/42 200 HTTP/1.1",
			"POST /api/users/7 200 HTTP/1.1", "GET /fail 500 HTTP/1.1"}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			rows, raw, st := replayFile(t, filepath.Join(pcapDir, tt.file))
			if got := summary(rows); strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("rows:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
			for i, r := range rows {
				if r.ID != uint64(i+1) || r.Type != flowlog.TypeSession || r.L7Protocol != flowlog.L7HTTP1 ||
					r.L7ProtocolStr != "HTTP" || r.Protocol != 6 || r.SignalSource != flowlog.SourcePacket ||
					r.ObservationPoint != flowlog.ObsLocalNIC || r.AgentID != "agent-1" || r.Host != "host-1" {
					t.Errorf("row %d: %+v", i, r)
				}
				if r.ServerPort != tt.serverPort || r.ClientPort == 0 || r.ClientPort == tt.serverPort ||
					!r.IP0.IsLoopback() || !r.IP1.IsLoopback() {
					t.Errorf("row %d endpoints: %s:%d -> %s:%d", i, r.IP0, r.ClientPort, r.IP1, r.ServerPort)
				}
				if r.ResponseDuration == 0 || !r.EndTime.After(r.StartTime) ||
					r.ResponseDuration != uint64(r.EndTime.Sub(r.StartTime).Microseconds()) {
					t.Errorf("row %d times: start %v end %v duration %d", i, r.StartTime, r.EndTime, r.ResponseDuration)
				}
				if r.StartTime.Before(st.First) || r.EndTime.After(st.Last) {
					t.Errorf("row %d outside the capture's time span", i)
				}
				if r.RequestLength <= 0 || r.ResponseLength <= 0 || r.ReqTCPSeq == 0 || r.RespTCPSeq == 0 {
					t.Errorf("row %d lengths/seqs: %+v", i, r)
				}
			}
			// Keys are the contract's column names.
			first := raw[:bytes.IndexByte(raw, '\n')]
			var m map[string]any
			if err := json.Unmarshal(first, &m); err != nil {
				t.Fatal(err)
			}
			for _, k := range []string{"_id", "time", "response_duration", "l7_protocol_str", "observation_point", "ip_0", "client_port", "req_tcp_seq"} {
				if _, ok := m[k]; !ok {
					t.Errorf("column %q missing from %s", k, first)
				}
			}
			if st.Decode.Decoded != st.Frames || st.Reassembly.Retransmitted != 0 || st.Reassembly.HolesSkipped != 0 {
				t.Errorf("stats: %+v", st)
			}
		})
	}
}

// frames reads every frame of a capture.
func frames(t testing.TB, path string) ([]pcapfile.Frame, decode.LinkType) {
	t.Helper()
	f, err := pcapfile.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []pcapfile.Frame
	for {
		fr, err := f.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		fr.Data = append([]byte(nil), fr.Data...)
		out = append(out, fr)
	}
	return out, out[0].LinkType
}

// writePcap writes frames as a pcap file with the given link type.
func writePcap(t testing.TB, path string, lt layers.LinkType, frs []pcapfile.Frame) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := pcapgo.NewWriterNanos(f)
	if err := w.WriteFileHeader(65535, lt); err != nil {
		t.Fatal(err)
	}
	for _, fr := range frs {
		ci := gopacket.CaptureInfo{Timestamp: fr.Time, CaptureLength: len(fr.Data), Length: max(fr.WireLen, len(fr.Data))}
		if err := w.WritePacket(ci, fr.Data); err != nil {
			t.Fatal(err)
		}
	}
}

// relink rewrites Ethernet frames into another link-layer framing.
func relink(frs []pcapfile.Frame, f func(eth []byte) []byte) []pcapfile.Frame {
	out := make([]pcapfile.Frame, len(frs))
	for i, fr := range frs {
		out[i] = fr
		out[i].Data = f(fr.Data)
		out[i].WireLen = fr.WireLen - len(fr.Data) + len(out[i].Data)
	}
	return out
}

func TestReplayLinkTypes(t *testing.T) {
	frs, lt := frames(t, filepath.Join(pcapDir, "http_curl_nginx.pcap"))
	if lt != decode.LinkTypeEthernet {
		t.Fatalf("link type %d", lt)
	}
	dir := t.TempDir()
	tests := []struct {
		name string
		lt   layers.LinkType
		f    func([]byte) []byte
	}{
		{"raw", layers.LinkTypeRaw, func(e []byte) []byte { return e[14:] }},
		{"ipv4", layers.LinkTypeIPv4, func(e []byte) []byte { return e[14:] }},
		{"null", layers.LinkTypeNull, func(e []byte) []byte { return append([]byte{2, 0, 0, 0}, e[14:]...) }},
		{"qinq", layers.LinkTypeEthernet, func(e []byte) []byte {
			tagged := append([]byte(nil), e[:12]...)
			tagged = append(tagged, 0x88, 0xa8, 0x00, 0x64, 0x81, 0x00, 0x00, 0x07)
			return append(tagged, e[12:]...)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, tt.name+".pcap")
			writePcap(t, path, tt.lt, relink(frs, tt.f))
			rows, _, _ := replayFile(t, path)
			if got := summary(rows); strings.Join(got, "\n") != strings.Join(nginxRows, "\n") {
				t.Errorf("rows:\n%s", strings.Join(got, "\n"))
			}
		})
	}
}

// tcpFrame is a decoded Ethernet/IPv4/TCP frame that can be re-serialized
// with a different sequence number and payload.
type tcpFrame struct {
	eth layers.Ethernet
	ip  layers.IPv4
	tcp layers.TCP
}

func parseTCPFrame(t testing.TB, data []byte) *tcpFrame {
	p := gopacket.NewPacket(data, layers.LayerTypeEthernet, gopacket.Default)
	e, ip, tc := p.Layer(layers.LayerTypeEthernet), p.Layer(layers.LayerTypeIPv4), p.Layer(layers.LayerTypeTCP)
	if e == nil || ip == nil || tc == nil {
		t.Fatalf("not an ethernet/ipv4/tcp frame")
	}
	return &tcpFrame{*e.(*layers.Ethernet), *ip.(*layers.IPv4), *tc.(*layers.TCP)}
}

func (f *tcpFrame) with(t testing.TB, seq uint32, payload []byte) []byte {
	buf := gopacket.NewSerializeBuffer()
	ip, tc := f.ip, f.tcp
	tc.Seq = seq
	if err := tc.SetNetworkLayerForChecksum(&ip); err != nil {
		t.Fatal(err)
	}
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		&f.eth, &ip, &tc, gopacket.Payload(payload)); err != nil {
		t.Fatal(err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

// bigResponse finds the frame carrying the big.txt response (the largest).
func bigResponse(frs []pcapfile.Frame) int {
	big := 0
	for i, fr := range frs {
		if len(fr.Data) > len(frs[big].Data) {
			big = i
		}
	}
	return big
}

func TestReplayOutOfOrderAndRetransmitted(t *testing.T) {
	frs, _ := frames(t, filepath.Join(pcapDir, "http_curl_nginx.pcap"))
	i := bigResponse(frs)
	f := parseTCPFrame(t, frs[i].Data)
	data, seq := f.tcp.Payload, f.tcp.Seq
	piece := func(from, to int, ts time.Duration) pcapfile.Frame {
		d := f.with(t, seq+uint32(from), data[from:to])
		return pcapfile.Frame{Data: d, Time: frs[i].Time.Add(ts), WireLen: len(d)}
	}
	n := len(data)
	// Third piece first, then the first, an overlapping retransmission of
	// the first two, a duplicate of the third, and the rest.
	split := []pcapfile.Frame{
		piece(2000, 3000, 0),
		piece(0, 1000, time.Microsecond),
		piece(500, 2100, 2*time.Microsecond),
		piece(2000, 3000, 3*time.Microsecond),
		piece(3000, n, 4*time.Microsecond),
	}
	var out []pcapfile.Frame
	out = append(out, frs[:i]...)
	out = append(out, split...)
	out = append(out, frs[i+1:]...)
	path := filepath.Join(t.TempDir(), "ooo.pcap")
	writePcap(t, path, layers.LinkTypeEthernet, out)

	rows, _, st := replayFile(t, path)
	if got := summary(rows); strings.Join(got, "\n") != strings.Join(nginxRows, "\n") {
		t.Errorf("rows:\n%s", strings.Join(got, "\n"))
	}
	last := rows[len(rows)-1]
	if last.ResponseLength != int64(n) || last.CapturedResponseByte != uint32(n) {
		t.Errorf("big.txt response length %d captured %d, want %d", last.ResponseLength, last.CapturedResponseByte, n)
	}
	rs := st.Reassembly
	if rs.OutOfOrder == 0 || rs.Retransmitted == 0 || rs.OverlapBytes == 0 || rs.HolesSkipped != 0 {
		t.Errorf("reassembly stats %+v", rs)
	}
}

func TestReplaySnaplenTruncated(t *testing.T) {
	frs, _ := frames(t, filepath.Join(pcapDir, "http_curl_nginx.pcap"))
	const snap = 14 + 20 + 32 + 400 // headers fit, the big body does not
	for i := range frs {
		if len(frs[i].Data) > snap {
			frs[i].Data = frs[i].Data[:snap]
		}
	}
	path := filepath.Join(t.TempDir(), "snap.pcap")
	writePcap(t, path, layers.LinkTypeEthernet, frs)
	rows, _, st := replayFile(t, path)
	if got := summary(rows); strings.Join(got, "\n") != strings.Join(nginxRows, "\n") {
		t.Errorf("rows:\n%s", strings.Join(got, "\n"))
	}
	last := rows[len(rows)-1]
	if last.ResponseLength != 4288 || last.CapturedResponseByte >= 4288 {
		t.Errorf("big.txt: response_length %d captured %d", last.ResponseLength, last.CapturedResponseByte)
	}
	if st.Reassembly.TruncatedBytes == 0 {
		t.Errorf("no truncated bytes counted: %+v", st.Reassembly)
	}
}

func TestReplayMidStream(t *testing.T) {
	frs, _ := frames(t, filepath.Join(pcapDir, "http_curl_nginx.pcap"))
	// Drop the first connection's handshake and first request: the capture
	// starts with the response to it.
	path := filepath.Join(t.TempDir(), "mid.pcap")
	writePcap(t, path, layers.LinkTypeEthernet, frs[5:])
	rows, _, _ := replayFile(t, path)
	got := summary(rows)
	want := append([]string{"  200 HTTP/1.1"}, nginxRows[1:]...)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("rows:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if rows[0].Type != flowlog.TypeResponse || rows[1].ClientPort != rows[0].ClientPort || rows[1].ServerPort != 18088 {
		t.Errorf("mid-stream rows: %+v / %+v", rows[0], rows[1])
	}
}

func TestReplayFragmentsCounted(t *testing.T) {
	frs, _ := frames(t, filepath.Join(pcapDir, "http_curl_nginx.pcap"))
	f := parseTCPFrame(t, frs[3].Data)
	ip := f.ip
	ip.Flags, ip.FragOffset = 0, 185
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		&f.eth, &ip, gopacket.Payload("tail of a fragmented datagram")); err != nil {
		t.Fatal(err)
	}
	frs = append(frs, pcapfile.Frame{Data: buf.Bytes(), Time: frs[len(frs)-1].Time, WireLen: len(buf.Bytes())})
	path := filepath.Join(t.TempDir(), "frag.pcap")
	writePcap(t, path, layers.LinkTypeEthernet, frs)
	rows, _, st := replayFile(t, path)
	if len(rows) != len(nginxRows) || st.Decode.Fragments != 1 {
		t.Errorf("rows %d, fragments %d", len(rows), st.Decode.Fragments)
	}
}

func TestReplayBadInput(t *testing.T) {
	dir := t.TempDir()
	good, err := os.ReadFile(filepath.Join(pcapDir, "http_curl_nginx.pcap"))
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// The second record header claims a 1 GiB capture length.
	second := 24 + 16 + int(binary.LittleEndian.Uint32(good[24+8:]))
	corrupt := append([]byte(nil), good[:second+8]...)
	corrupt = append(corrupt, 0, 0, 0, 0x40, 0, 0, 0, 0x40)
	corrupt = append(corrupt, good[second+16:]...)
	ieee80211 := append([]byte(nil), good...)
	ieee80211[20] = 105
	tests := []struct {
		name     string
		path     string
		opts     Options
		wantErr  error
		wantRows uint64
		cut      bool
	}{
		{name: "missing file", path: filepath.Join(dir, "nope.pcap"), wantErr: os.ErrNotExist},
		{name: "empty file", path: write("empty", nil), wantErr: pcapfile.ErrNotCapture},
		{name: "text file", path: write("text", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")), wantErr: pcapfile.ErrNotCapture},
		{name: "short pcap header", path: write("short", good[:10]), wantErr: pcapfile.ErrNotCapture},
		{name: "pcapng magic then garbage", path: write("ng", append([]byte{0x0a, 0x0d, 0x0d, 0x0a}, bytes.Repeat([]byte{0xff}, 64)...)), wantErr: pcapfile.ErrNotCapture},
		{name: "corrupt record", path: write("corrupt", corrupt), wantErr: pcapfile.ErrCorrupt},
		{name: "unsupported link type", path: write("wifi", ieee80211), wantErr: errUnsupported},
		{name: "unsupported format", path: filepath.Join(pcapDir, "http_curl_nginx.pcap"), opts: Options{Format: "csv", Protocols: registry.Default()}, wantErr: errUnsupported},
		// The capture ends with payload-free ACK/FIN records: cutting into the last loses no row.
		{name: "file cut inside a record", path: write("cut", good[:len(good)-30]), wantRows: uint64(len(nginxRows)), cut: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			if tt.opts.Protocols == nil {
				tt.opts.Protocols = registry.Default()
			}
			st, err := Run(context.Background(), tt.path, &out, tt.opts)
			switch {
			case tt.wantErr == errUnsupported:
				if err == nil || !strings.Contains(err.Error(), "unsupported") && !strings.Contains(err.Error(), "supported link type") {
					t.Fatalf("err = %v", err)
				}
			case tt.wantErr != nil:
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
			case err != nil:
				t.Fatal(err)
			}
			if st.Rows != tt.wantRows || st.TruncatedFile != tt.cut {
				t.Errorf("rows %d truncated %v, want %d %v", st.Rows, st.TruncatedFile, tt.wantRows, tt.cut)
			}
			if got := uint64(bytes.Count(out.Bytes(), []byte("\n"))); got != st.Rows {
				t.Errorf("%d lines written, %d rows", got, st.Rows)
			}
		})
	}
}

var errUnsupported = errors.New("unsupported")

func TestReplayCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Run(ctx, filepath.Join(pcapDir, "http_curl_nginx.pcap"), io.Discard, Options{Protocols: registry.Default()})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
}

// BenchmarkReplay replays a generated capture of 50 keep-alive connections
// with 100 GET/200 exchanges each, to JSON lines.
func BenchmarkReplay(b *testing.B) {
	path := filepath.Join(b.TempDir(), "http.pcap")
	const conns, perConn = 50, 100
	if err := testcapture.WriteHTTP(path, conns, perConn); err != nil {
		b.Fatal(err)
	}
	st, _ := os.Stat(path)
	b.SetBytes(st.Size())
	b.ReportAllocs()
	for b.Loop() {
		s, err := Run(context.Background(), path, io.Discard, Options{Protocols: registry.Default()})
		if err != nil || s.Rows != conns*perConn {
			b.Fatalf("rows %d, err %v", s.Rows, err)
		}
	}
	b.ReportMetric(float64(conns*perConn*b.N)/b.Elapsed().Seconds(), "rows/s")
}

// TestReplayL4 prints l4_flow_log rows from the flow table's recorded
// failure cases, alone and mixed with l7 rows.
func TestReplayL4(t *testing.T) {
	for _, tc := range []struct {
		file  string
		close flowlog.CloseType
	}{
		{"closed_port.pcap", flowlog.CloseEstServerDirectRST},
		{"server_rst.pcap", flowlog.CloseTransferServerRST},
		{"half_close.pcap", flowlog.CloseClientHalfClose},
		{"normal.pcap", flowlog.CloseNormal},
	} {
		t.Run(tc.file, func(t *testing.T) {
			path := filepath.Join("..", "packet", "flow", "testdata", tc.file)
			var out bytes.Buffer
			st, err := Run(context.Background(), path, &out, Options{Protocols: registry.Default(), Table: TableL4})
			if err != nil {
				t.Fatal(err)
			}
			if st.Rows != 0 || st.L4Rows == 0 {
				t.Fatalf("rows: l7 %d, l4 %d", st.Rows, st.L4Rows)
			}
			found := false
			for _, line := range bytes.Split(bytes.TrimSpace(out.Bytes()), []byte("\n")) {
				var r flowlog.L4FlowLog
				if err := json.Unmarshal(line, &r); err != nil {
					t.Fatalf("%s: %v", line, err)
				}
				found = found || r.CloseType == tc.close
			}
			if !found {
				t.Errorf("no row with close_type %v in\n%s", tc.close, out.String())
			}
		})
	}
	var out bytes.Buffer
	st, err := Run(context.Background(), filepath.Join(pcapDir, "http_curl_nginx.pcap"), &out, Options{Protocols: registry.Default(), Table: TableAll})
	if err != nil {
		t.Fatal(err)
	}
	l7, l4 := bytes.Count(out.Bytes(), []byte(`{"table":"l7_flow_log",`)), bytes.Count(out.Bytes(), []byte(`{"table":"l4_flow_log",`))
	if uint64(l7) != st.Rows || uint64(l4) != st.L4Rows || l7 == 0 || l4 == 0 {
		t.Fatalf("table all: %d l7 lines (%d rows), %d l4 lines (%d rows)", l7, st.Rows, l4, st.L4Rows)
	}
	if _, err := Run(context.Background(), filepath.Join(pcapDir, "http_curl_nginx.pcap"), io.Discard, Options{Protocols: registry.Default(), Table: "l5"}); err == nil {
		t.Fatal("unknown table accepted")
	}
}
