// Package mask hides secrets in captured protocol text before it is stored:
// credentials in URLs and query strings, and the value of authorization-like
// headers. Functions return their input unchanged (no allocation) when there
// is nothing to hide.
package mask

import "strings"

// Masked replaces a secret value.
const Masked = "***"

// SensitiveKey reports whether a query/form parameter name usually carries a
// secret (password, token, secret, api key ...). It matches case-insensitively
// on substrings so that access_token, client_secret or X-Amz-Security-Token
// are caught too.
func SensitiveKey(key string) bool {
	if len(key) < 3 || len(key) > 64 {
		return false
	}
	for _, k := range sensitiveKeyParts {
		if containsFold(key, k) {
			return true
		}
	}
	return equalFold(key, "pwd") || equalFold(key, "pass") || equalFold(key, "sig") || equalFold(key, "auth")
}

// containsFold reports whether s contains the lower-case ASCII sub, ignoring case.
func containsFold(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if equalFold(s[i:i+len(sub)], sub) {
			return true
		}
	}
	return false
}

// equalFold compares s with the lower-case ASCII lower, ignoring the case of s.
func equalFold(s, lower string) bool {
	if len(s) != len(lower) {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

var sensitiveKeyParts = [...]string{"password", "passwd", "token", "secret", "api_key", "apikey", "api-key", "signature", "credential"}

// URL masks the password of a URL's userinfo (scheme://user:pass@host) and
// the values of sensitive query parameters. It works on request-targets
// (/path?query), absolute URLs and bare query strings after '?'.
func URL(s string) string {
	s = userinfo(s)
	q := strings.IndexByte(s, '?')
	if q < 0 {
		return s
	}
	query := s[q+1:]
	frag := ""
	if h := strings.IndexByte(query, '#'); h >= 0 {
		query, frag = query[:h], query[h:]
	}
	masked := Query(query)
	if len(masked) == len(query) && masked == query {
		return s
	}
	return s[:q+1] + masked + frag
}

// Query masks the values of sensitive parameters in a query string
// ("a=1&token=x" → "a=1&token=***").
func Query(q string) string {
	var b *strings.Builder
	last := 0 // bytes of q already copied to b
	for i := 0; i < len(q); {
		end := strings.IndexAny(q[i:], "&;")
		if end < 0 {
			end = len(q)
		} else {
			end += i
		}
		param := q[i:end]
		if eq := strings.IndexByte(param, '='); eq > 0 && eq < len(param)-1 && SensitiveKey(param[:eq]) {
			if param[eq+1:] != Masked {
				if b == nil {
					b = &strings.Builder{}
					b.Grow(len(q))
				}
				b.WriteString(q[last : i+eq+1])
				b.WriteString(Masked)
				last = end
			}
		}
		i = end + 1
	}
	if b == nil {
		return q
	}
	b.WriteString(q[last:])
	return b.String()
}

// userinfo masks the password in scheme://user:password@host.
func userinfo(s string) string {
	sep := strings.Index(s, "://")
	if sep <= 0 {
		return s
	}
	rest := s[sep+3:]
	authEnd := strings.IndexAny(rest, "/?#")
	if authEnd < 0 {
		authEnd = len(rest)
	}
	at := strings.LastIndexByte(rest[:authEnd], '@')
	if at < 0 {
		return s
	}
	colon := strings.IndexByte(rest[:at], ':')
	if colon < 0 || rest[colon+1:at] == Masked {
		return s
	}
	return s[:sep+3] + rest[:colon+1] + Masked + rest[at:]
}

// Authorization masks an Authorization-style header value, keeping only the
// scheme: "Bearer abc.def" → "Bearer ***", "Basic dXNlcjpw" → "Basic ***".
// A value without a recognisable scheme becomes "***".
func Authorization(v string) string {
	v = strings.TrimSpace(v)
	sp := strings.IndexByte(v, ' ')
	if sp <= 0 || sp > 32 {
		return Masked
	}
	for i := 0; i < sp; i++ {
		c := v[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return Masked
		}
	}
	return v[:sp+1] + Masked
}
