package mask

import "testing"

func TestURL(t *testing.T) {
	tests := []struct{ in, want string }{
		{"/api/users?id=7", "/api/users?id=7"},
		{"/login?user=bob&password=hunter2", "/login?user=bob&password=***"},
		{"/cb?access_token=abc.def&state=x", "/cb?access_token=***&state=x"},
		{"/x?API_KEY=k1;secret=s2&token=", "/x?API_KEY=***;secret=***&token="},
		{"/x?client_secret=s#frag", "/x?client_secret=***#frag"},
		{"/x?X-Amz-Security-Token=abc&X-Amz-Signature=def", "/x?X-Amz-Security-Token=***&X-Amz-Signature=***"},
		{"/x?tokenize=1", "/x?tokenize=***"}, // over-masking is the safe side
		{"/plain", "/plain"},
		{"http://alice:s3cret@proxy.example:8080/p?q=1", "http://alice:***@proxy.example:8080/p?q=1"},
		{"http://alice@host/p", "http://alice@host/p"},
		{"/x?password=***", "/x?password=***"},
		{"/x?=v&&pwd=1", "/x?=v&&pwd=***"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := URL(tt.in); got != tt.want {
			t.Errorf("URL(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestURLNoAllocWhenClean(t *testing.T) {
	s := "/api/v1/items?page=2&size=50"
	if n := testing.AllocsPerRun(100, func() { _ = URL(s) }); n != 0 {
		t.Errorf("URL on a clean target allocates %v times", n)
	}
}

func TestAuthorization(t *testing.T) {
	tests := []struct{ in, want string }{
		{"Bearer eyJhbGciOi.abc.def", "Bearer ***"},
		{"Basic dXNlcjpwYXNz", "Basic ***"},
		{"  Digest username=\"a\", response=\"b\"", "Digest ***"},
		{"rawtokenwithoutscheme", "***"},
		{"we!rd value", "***"},
		{"", "***"},
	}
	for _, tt := range tests {
		if got := Authorization(tt.in); got != tt.want {
			t.Errorf("Authorization(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestSensitiveKey(t *testing.T) {
	for _, k := range []string{"password", "Passwd", "token", "access_token", "api_key", "apikey", "secret", "client_secret", "pwd"} {
		if !SensitiveKey(k) {
			t.Errorf("SensitiveKey(%q) = false", k)
		}
	}
	for _, k := range []string{"id", "page", "user", "q", "sort_order"} {
		if SensitiveKey(k) {
			t.Errorf("SensitiveKey(%q) = true", k)
		}
	}
}
