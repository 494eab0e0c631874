// Package tracectx reads trace context that protocols carry in headers:
// the W3C traceparent, wherever it appears (HTTP/1 and HTTP/2 headers, Dubbo
// attachments, Kafka record headers, AMQP header tables, MQTT 5 user
// properties).
package tracectx

// Traceparent returns the trace id and the sender's span id (parent-id) of a
// W3C traceparent "version-traceid(32 hex)-parentid(16 hex)-flags".
func Traceparent[T ~string | ~[]byte](v T) (traceID, spanID T, ok bool) {
	if len(v) < 55 || v[2] != '-' || v[35] != '-' || v[52] != '-' || !IsHex(v[3:35]) || !IsHex(v[36:52]) {
		return traceID, spanID, false
	}
	return v[3:35], v[36:52], true
}

// IsHex reports whether b is non-empty and all hexadecimal digits (either case).
func IsHex[T ~string | ~[]byte](b T) bool {
	for i := 0; i < len(b); i++ {
		c := b[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') && (c < 'A' || c > 'F') {
			return false
		}
	}
	return len(b) > 0
}
