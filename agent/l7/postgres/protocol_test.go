package postgres

import (
	"testing"

	"github.com/sightline-io/sightline/agent/l7"
)

func TestInfer(t *testing.T) {
	tests := []struct {
		name string
		data string
		want l7.Inference
	}{
		{"startup", startupMsg("user", "app", "database", "shop"), l7.IsRequest},
		{"ssl request", be32s(8) + be32s(sslRequest), l7.IsRequest},
		{"gss request", be32s(8) + be32s(gssRequest), l7.IsRequest},
		{"cancel", be32s(16) + be32s(cancelCode) + be32s(1) + be32s(2), l7.IsRequest},
		{"query", query("SELECT 1"), l7.IsRequest},
		{"pgx pipeline", parse("", "SELECT $1") + bind("", "") + describe('P', "") + execute("") + sync, l7.IsRequest},
		{"terminate", msg('X'), l7.IsRequest},
		{"ready", idle, l7.IsResponse},
		{"complete+ready", complete("SELECT 1") + idle, l7.IsResponse},
		{"auth", msg('R', be32s(10), "SCRAM-SHA-256\x00\x00"), l7.IsResponse},
		{"error", errorResp("42P01", "no"), l7.IsResponse},
		{"short", "Q\x00", l7.NeedMore},
		{"query cut", query("SELECT * FROM t WHERE x = 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa'")[:70], l7.IsRequest},
		{"query trailing", query("SELECT 1") + "x", l7.NotMine},
		{"query binary", msg('Q', "\x01\x02\x00"), l7.NotMine},
		{"startup bad length", be32s(100) + be32s(protocol30) + "user\x00a\x00\x00", l7.NotMine},
		{"data row first", dataRow("x"), l7.NotMine},
		{"http", "GET / HTTP/1.1\r\nHost: a\r\n\r\n", l7.NotMine},
		{"tls", "\x16\x03\x01\x00\xc8\x01\x00\x00\xc4\x03\x03", l7.NotMine},
		{"mysql query", "\x09\x00\x00\x00\x03SELECT 1", l7.NotMine},
		{"mysql greeting", "\x4a\x00\x00\x00\x0a10.11.19", l7.NotMine},
		{"redis", "*1\r\n$4\r\nPING\r\n", l7.NotMine},
	}
	p := New(l7.Config{})
	for _, tt := range tests {
		if got := p.Infer([]byte(tt.data), 6); got != tt.want {
			t.Errorf("%s: Infer = %v, want %v", tt.name, got, tt.want)
		}
	}
	if p.Infer([]byte(query("SELECT 1")), 17) != l7.NotMine {
		t.Error("UDP claimed")
	}
}
