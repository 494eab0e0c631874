package mqtt

import "strings"

// endpoint normalises a topic for the low-cardinality endpoint column:
// levels that look like identifiers (all digits, or 8+ characters of
// letters, digits and -_:. with at least one digit, such as device ids or
// UUIDs) become "+". The topic itself is returned, without allocating,
// when no level changes.
func endpoint(topic string) string {
	if !anyIDLevel(topic) {
		return topic
	}
	var b strings.Builder
	b.Grow(len(topic))
	for i, level := range strings.Split(topic, "/") {
		if i > 0 {
			b.WriteByte('/')
		}
		if idLike(level) {
			b.WriteByte('+')
		} else {
			b.WriteString(level)
		}
	}
	return b.String()
}

func anyIDLevel(topic string) bool {
	start := 0
	for i := 0; i <= len(topic); i++ {
		if i == len(topic) || topic[i] == '/' {
			if idLike(topic[start:i]) {
				return true
			}
			start = i + 1
		}
	}
	return false
}

func idLike(s string) bool {
	if s == "" {
		return false
	}
	digits, ok := 0, true
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case '0' <= c && c <= '9':
			digits++
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', c == '-', c == '_', c == ':', c == '.':
		default:
			ok = false
		}
	}
	return ok && (digits == len(s) || (len(s) >= 8 && digits > 0))
}
