package l7

import "github.com/sightline-io/sightline/agent/l7/tracectx"

// SetTraceparent sets the message's trace id and span id from a W3C
// traceparent value (the span id is the sender's span; the parent span id is
// cleared). It reports whether v was a valid traceparent.
func (m *Message) SetTraceparent(v []byte) bool {
	trace, span, ok := tracectx.Traceparent(v)
	if ok {
		m.TraceID, m.SpanID, m.ParentSpanID = string(trace), string(span), ""
	}
	return ok
}
