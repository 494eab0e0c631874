package http1

import "strings"

// IDPlaceholder replaces identifier-like path segments in endpoints.
const IDPlaceholder = "{id}"

// NormalizePath turns a request path into a low-cardinality endpoint: path
// segments that look like identifiers (decimal numbers, UUIDs, hex strings of
// 16+ digits, long tokens mixing letters and digits) become {id}. It is
// deterministic and returns path itself when nothing changes.
func NormalizePath(path string) string {
	var b *strings.Builder
	last := 0 // bytes of path already written to b
	for start := 0; start < len(path); {
		end := strings.IndexByte(path[start:], '/')
		if end < 0 {
			end = len(path)
		} else {
			end += start
		}
		if end > start && isIDSegment(path[start:end]) {
			if b == nil {
				b = &strings.Builder{}
				b.Grow(len(path))
			}
			b.WriteString(path[last:start])
			b.WriteString(IDPlaceholder)
			last = end
		}
		start = end + 1
	}
	if b == nil {
		return path
	}
	b.WriteString(path[last:])
	return b.String()
}

// isIDSegment reports whether one path segment looks like an identifier.
func isIDSegment(s string) bool {
	digits, letters, hex := 0, 0, 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case '0' <= c && c <= '9':
			digits++
			hex++
		case 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F':
			letters++
			hex++
		case 'g' <= c && c <= 'z' || 'G' <= c && c <= 'Z':
			letters++
		case c == '-' || c == '_':
		default:
			return false // dots, percent-escapes, etc.: a name, not an id
		}
	}
	switch {
	case digits == len(s):
		return true
	case isUUID(s):
		return true
	case hex == len(s) && len(s) >= 16:
		return true
	case len(s) >= 16 && digits >= 2 && letters >= 1 && digits+letters >= len(s)*3/4:
		return true
	}
	return false
}

func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if i == 8 || i == 13 || i == 18 || i == 23 {
			if c != '-' {
				return false
			}
			continue
		}
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}
