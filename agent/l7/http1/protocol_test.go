package http1

import (
	"testing"
	"time"

	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/flowlog"
)

func TestInfer(t *testing.T) {
	tests := []struct {
		in   string
		l4   uint8
		want l7.Inference
	}{
		{"GET / HTTP/1.1\r\nHost: a\r\n\r\n", 6, l7.IsRequest},
		{"GET /index.html HTTP/1.0\r\n", 6, l7.IsRequest},
		{"POST /api/v1/orders HTTP/1.1\r\n", 6, l7.IsRequest},
		{"OPTIONS * HTTP/1.1\r\n", 6, l7.IsRequest},
		{"CONNECT example.com:443 HTTP/1.1\r\n", 6, l7.IsRequest},
		{"GET http://example.com/x HTTP/1.1\r\n", 6, l7.IsRequest},
		{"PROPFIND /dav/ HTTP/1.1\r\n", 6, l7.IsRequest},                   // unknown token with a full line
		{"GET /a-very-long-url-cut-by-the-capture-prefi", 6, l7.IsRequest}, // known method, origin-form target
		{"HTTP/1.1 200 OK\r\n", 6, l7.IsResponse},
		{"HTTP/1.0 404 Not Found\r\n", 6, l7.IsResponse},
		{"HTTP/1.1 204\r\n", 6, l7.IsResponse},
		{"HTTP/1.1 200", 6, l7.IsResponse},
		{"", 6, l7.NeedMore},
		{"G", 6, l7.NeedMore},
		{"GE", 6, l7.NeedMore},
		{"OPTION", 6, l7.NeedMore},
		{"HTTP/1.", 6, l7.NeedMore},
		{"HTTP/1.1 2", 6, l7.NeedMore},
		{"GET ", 6, l7.NeedMore},
		{"GET / HTTP/1.1\r\n", 17, l7.NotMine},
		{"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 6, l7.NotMine},
		{"HTTP/2.0 200 OK\r\n", 6, l7.NotMine},
		{"HTTP/1.1 600 X\r\n", 6, l7.NotMine},
		{"HTTP/1.1 20x\r\n", 6, l7.NotMine},
		{"GET key\r\n", 6, l7.NotMine},                                  // Redis inline command
		{"*2\r\n$3\r\nGET\r\n$1\r\na\r\n", 6, l7.NotMine},               // Redis RESP
		{"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 6, l7.NotMine}, // TLS ClientHello
		{"FOO /x HTTP/3.0\r\n", 6, l7.NotMine},
		{"FOO /x", 6, l7.NotMine},
		{"GET /x HTTP/1.1x", 6, l7.NotMine},
		{"ZZZZZZZZ", 6, l7.NotMine},
		{"\x00\x00\x00\x10", 6, l7.NotMine},
	}
	p := New()
	for _, tt := range tests {
		if got := p.Infer([]byte(tt.in), tt.l4); got != tt.want {
			t.Errorf("Infer(%q, %d) = %v, want %v", tt.in, tt.l4, got, tt.want)
		}
	}
}

func TestProtocolSettings(t *testing.T) {
	p := New()
	if p.ID() != flowlog.L7HTTP1 || p.Matching() != l7.MatchFIFO || p.Timeout() != DefaultTimeout {
		t.Errorf("defaults: id %v matching %v timeout %v", p.ID(), p.Matching(), p.Timeout())
	}
	if got := New(WithTimeout(5 * time.Second)).Timeout(); got != 5*time.Second {
		t.Errorf("WithTimeout: %v", got)
	}
	if got := New(WithTimeout(-1)).Timeout(); got != DefaultTimeout {
		t.Errorf("WithTimeout(-1): %v", got)
	}
	if _, ok := p.NewParser().(*Parser); !ok {
		t.Errorf("NewParser returns %T", p.NewParser())
	}
}

func TestNormalizePath(t *testing.T) {
	tests := []struct{ in, want string }{
		{"/", "/"},
		{"/api/v1/users", "/api/v1/users"},
		{"/api/v1/users/42", "/api/v1/users/{id}"},
		{"/api/v1/users/42/orders/1001", "/api/v1/users/{id}/orders/{id}"},
		{"/items/3f2504e0-4f89-11d3-9a0c-0305e82c3301/x", "/items/{id}/x"},
		{"/blob/0123456789abcdef0123", "/blob/{id}"},
		{"/blob/deadbeef", "/blob/deadbeef"}, // short hex is a word, not an id
		{"/s/aZ9kQ2mX7pL4vN8wR3tY", "/s/{id}"},
		{"/static/app.min.js", "/static/app.min.js"},
		{"/user_profile_settings", "/user_profile_settings"},
		{"/v2/", "/v2/"},
		{"//42//", "//{id}//"},
		{"*", "*"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := NormalizePath(tt.in); got != tt.want {
			t.Errorf("NormalizePath(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
