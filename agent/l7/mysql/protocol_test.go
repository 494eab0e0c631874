package mysql

import (
	"testing"

	"github.com/sightline-io/sightline/agent/l7"
)

func TestInfer(t *testing.T) {
	long := queryPkt("SELECT * FROM t WHERE x IN (" + string(make([]byte, 0)) + "1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)")
	tests := []struct {
		name string
		data string
		want l7.Inference
	}{
		{"greeting", greetingPkt(baseCaps), l7.IsResponse},
		{"query", queryPkt("SELECT 1"), l7.IsRequest},
		{"query cut", long[:70], l7.IsRequest},
		{"ping", pkt(0, "\x0e"), l7.IsRequest},
		{"quit", pkt(0, "\x01"), l7.IsRequest},
		{"close+query", pkt(0, "\x19", le32(1)) + queryPkt("SELECT 1"), l7.IsRequest},
		{"prepare", pkt(0, "\x16", "SELECT ?"), l7.IsRequest},
		{"execute", pkt(0, "\x17", le32(1), "\x00", le32(1)), l7.IsRequest},
		{"init db", pkt(0, "\x02", "shop"), l7.IsRequest},
		{"err", errPkt(1, 1146, "42S02", "no"), l7.IsResponse},
		{"short", "\x05\x00", l7.NeedMore},
		{"ok packet alone", okPkt(1, 0), l7.NotMine},
		{"query length mismatch", queryPkt("SELECT 1") + "x", l7.NotMine},
		{"query binary", pkt(0, "\x03", "\x00\x01\x02"), l7.NotMine},
		{"ping with body", pkt(0, "\x0e", "x"), l7.NotMine},
		{"http", "GET / HTTP/1.1\r\nHost: a\r\n\r\n", l7.NotMine},
		{"tls", "\x16\x03\x01\x00\xc8\x01\x00\x00\xc4\x03\x03", l7.NotMine},
		{"pg startup", "\x00\x00\x00\x08\x04\xd2\x16\x2f", l7.NotMine},
		{"pg query", "Q\x00\x00\x00\x0dSELECT 1\x00", l7.NotMine},
		{"redis", "*1\r\n$4\r\nPING\r\n", l7.NotMine},
		{"unknown command", pkt(0, "\x60"), l7.NotMine},
	}
	p := New(l7.Config{})
	for _, tt := range tests {
		if got := p.Infer([]byte(tt.data), 6); got != tt.want {
			t.Errorf("%s: Infer = %v, want %v", tt.name, got, tt.want)
		}
	}
	if p.Infer([]byte(queryPkt("SELECT 1")), 17) != l7.NotMine {
		t.Error("UDP claimed")
	}
}
