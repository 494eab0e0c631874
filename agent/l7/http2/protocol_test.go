package http2

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"github.com/sightline-io/sightline/agent/l7"
)

func TestInfer(t *testing.T) {
	c := newConv(t)
	handshake(c)
	c.unary(1, check, "0", "")
	c.headers(cli, 3, false, grpcReq(check)...).data(3, true, grpcMsg("x")).flush(cli)
	c.check(c.fr.WriteWindowUpdate(0, 1000))
	c.check(c.fr.WritePing(false, [8]byte{1}))
	c.flush(srv)
	c.data(3, false, grpcMsg("abc")).flush(srv)
	c.data(3, false, []byte("plain bytes")).flush(srv)
	c.check(c.fr.WritePing(true, [8]byte{1}))
	c.flush(cli)
	c.check(c.fr.WriteSettings())
	c.flush(srv)
	recs := c.recs
	tests := []struct {
		name string
		data []byte
		l4   uint8
		want l7.Inference
	}{
		{"preface", recs[0].data, 6, l7.IsRequest},
		{"preface alone", []byte(preface), 6, l7.IsRequest},
		{"preface prefix", []byte("PRI * HT"), 6, l7.NeedMore},
		{"preface over udp", recs[0].data, 17, l7.NotMine},
		{"server settings", recs[1].data, 6, l7.IsResponse},
		{"empty settings", recs[len(recs)-1].data, 6, l7.IsResponse},
		{"settings ack", recs[2].data, 6, l7.IsResponse},
		{"mid-connection request", recs[5].data, 6, l7.IsRequest},
		{"mid-connection response", recs[4].data, 6, l7.IsRequest},
		{"window update and ping", recs[6].data, 6, l7.IsRequest},
		{"lone grpc DATA", recs[7].data, 6, l7.IsRequest},
		{"lone plain DATA", recs[8].data, 6, l7.NotMine},
		{"lone PING ack", recs[9].data, 6, l7.IsRequest},
		{"request cut by the capture", recs[5].data[:20], 6, l7.IsRequest},
		{"short", []byte{0, 0, 4, 8, 0}, 6, l7.NeedMore},
		{"empty", nil, 6, l7.NeedMore},
		{"http1 request", []byte("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), 6, l7.NotMine},
		{"http1 POST", []byte("POST /x HTTP/1.1\r\n"), 6, l7.NotMine},
		{"http1 response", []byte("HTTP/1.1 200 OK\r\n\r\n"), 6, l7.NotMine},
		{"h2c upgrade request", []byte("GET / HTTP/1.1\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n"), 6, l7.NotMine},
		{"tls client hello", []byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03, 1, 2, 3}, 6, l7.NotMine},
		{"tls small record", []byte{0x16, 0x03, 0x03, 0x00, 0x01, 0x01, 0x00, 0x00, 0x00, 0x00}, 6, l7.NotMine},
		{"mysql greeting", append([]byte{0x4a, 0, 0, 0, 0x0a}, "8.0.36\x00\x08\x00\x00\x00"...), 6, l7.NotMine},
		{"mysql query", append([]byte{0x09, 0, 0, 0, 0x03}, "SELECT 1"...), 6, l7.NotMine},
		{"postgres ssl request", []byte{0, 0, 0, 8, 4, 0xd2, 0x16, 0x2f}, 6, l7.NotMine},
		{"postgres startup", append([]byte{0, 0, 0, 0x29, 0, 3, 0, 0}, "user\x00postgres\x00database\x00db\x00\x00"...), 6, l7.NotMine},
		{"kafka request", append([]byte{0, 0, 0, 0x14, 0, 0x12, 0, 3, 0, 0, 0, 1}, "\x00\x06client\x00\x00"...), 6, l7.NotMine},
		{"kafka settings-like", append([]byte{0, 0, 0, 4, 0, 0, 0, 0, 0}, "\x00\x06client\x00\x00"...), 6, l7.NotMine},
		{"redis", []byte("*1\r\n$4\r\nPING\r\n"), 6, l7.NotMine},
		{"mongodb", append([]byte{0x3a, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0xdd, 7, 0, 0}, bytes.Repeat([]byte{0}, 42)...), 6, l7.NotMine},
		{"settings on a stream", []byte{0, 0, 0, 4, 0, 0, 0, 0, 1}, 6, l7.NotMine},
		{"unknown setting", []byte{0, 0, 6, 4, 0, 0, 0, 0, 0, 0, 0x77, 0, 0, 0, 1}, 6, l7.NotMine},
		{"headers on stream 0", []byte{0, 0, 1, 1, 4, 0, 0, 0, 0, 0x82}, 6, l7.NotMine},
		{"headers not starting with a pseudo-header", []byte{0, 0, 1, 1, 4, 0, 0, 0, 1, 0x80 | 30}, 6, l7.NotMine},
		{"ping of wrong size", []byte{0, 0, 4, 6, 0, 0, 0, 0, 0, 1, 2, 3, 4}, 6, l7.NotMine},
		{"reserved bit", []byte{0, 0, 4, 8, 0, 0x80, 0, 0, 1, 0, 0, 0, 1}, 6, l7.NotMine},
		{"zero window increment", []byte{0, 0, 4, 8, 0, 0, 0, 0, 1, 0, 0, 0, 0}, 6, l7.NotMine},
		{"trailing garbage", append(append([]byte(nil), recs[6].data...), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff), 6, l7.NotMine},
	}
	p := New(l7.Config{})
	for _, tt := range tests {
		if got := p.Infer(tt.data, tt.l4); got != tt.want {
			t.Errorf("%s: Infer(% x) = %d, want %d", tt.name, tt.data[:min(len(tt.data), 24)], got, tt.want)
		}
	}
}

// Random bytes are never claimed: the frame header checks, contents and
// tiling leave almost no chance.
func TestInferRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	buf := make([]byte, 512)
	p := New(l7.Config{})
	claimed := 0
	for range 200000 {
		n := 9 + rng.IntN(len(buf)-9)
		for i := range n {
			buf[i] = byte(rng.Uint32())
		}
		if r := p.Infer(buf[:n], 6); r == l7.IsRequest || r == l7.IsResponse {
			claimed++
			t.Logf("claimed % x", buf[:min(n, 40)])
		}
	}
	if claimed > 0 {
		t.Errorf("%d of 200000 random buffers claimed", claimed)
	}
}
