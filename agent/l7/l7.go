// Package l7 defines the contract between protocol parsers and the session
// layer: a Protocol infers itself from a connection's first bytes and makes a
// stateful Parser per connection; the Parser turns Segments into Messages.
package l7

import (
	"time"

	"github.com/sightline-io/sightline/agent/capture"
	"github.com/sightline-io/sightline/flowlog"
)

// MessageType says whether a Message is a request or a response.
type MessageType uint8

const (
	Request MessageType = iota
	Response
)

// Inference is a Protocol's verdict on a connection's first bytes.
type Inference uint8

const (
	NotMine    Inference = iota // not this protocol
	IsRequest                   // these bytes are a request of this protocol
	IsResponse                  // these bytes are a response of this protocol
	NeedMore                    // too few bytes to tell; ask again with the next segment
)

// Matching says how a protocol pairs requests with responses.
type Matching uint8

const (
	MatchFIFO Matching = iota // in order (HTTP/1 pipelining, Redis, MySQL ...)
	MatchByID                 // by Message.RequestID (HTTP/2 streams, DNS, Kafka ...)
)

// Protocol describes one L7 protocol. Implementations are stateless and safe
// for concurrent use; per-connection state lives in the Parser.
type Protocol interface {
	ID() flowlog.L7Protocol
	// Infer inspects the captured prefix of a connection's first segment in one
	// direction (l4 is 6 or 17). It must be cheap and never panic.
	Infer(data []byte, l4 uint8) Inference
	// NewParser makes the per-connection parser once Infer has claimed it.
	NewParser() Parser
	Matching() Matching
	// Timeout is how long a request waits for its response before it is
	// reported with response_status Timeout.
	Timeout() time.Duration
}

// Config holds the settings every protocol takes from the registry, so
// users configure all protocols the same way.
type Config struct {
	// Timeout is how long a request waits for its response before it is
	// reported with response_status Timeout (0: the protocol's default).
	Timeout time.Duration
	// KeepSecrets turns masking off: SQL literals, command values and
	// query parameters are stored as captured. Passwords (Redis AUTH, MySQL
	// and PostgreSQL login, broker credentials) are never stored. Off by
	// default.
	KeepSecrets bool
}

// Parser parses one connection (both directions). Feed must tolerate any
// input: truncated, split, garbage, gaps (seg.Gap() > 0), and must bound the
// bytes it buffers. It calls emit for each complete message, in stream order.
type Parser interface {
	Feed(seg *capture.Segment, emit func(*Message))
	// Close flushes what the connection's end completes (e.g. an HTTP/1.0
	// body delimited by close).
	Close(emit func(*Message))
}

// Message is one parsed request or response.
type Message struct {
	Type     MessageType
	Protocol flowlog.L7Protocol
	Version  string

	// Request side.
	RequestType  string // method / command
	Domain       string // host / service / database
	Resource     string // path / SQL (already masked)
	Endpoint     string // normalised, low-cardinality
	RequestID    uint64
	HasRequestID bool
	// OneWay marks a request the protocol expects no response to (MQTT QoS 0
	// PUBLISH, NATS PUB ...): it is stored at once, never as a Timeout.
	OneWay bool

	// Response side.
	Status          flowlog.ResponseStatus
	Code            int32
	HasCode         bool
	Exception       string
	Result          string
	SQLAffectedRows uint64
	HasAffectedRows bool

	Length   int64  // whole message size in bytes, -1 if unknown
	Captured uint32 // bytes of it actually captured

	TraceID, SpanID, ParentSpanID string
	XRequestID                    string
	Attributes                    map[string]string

	// Where the message was seen: Dir and the identity of its first segment,
	// End from its last.
	Dir            capture.Direction
	Start, End     time.Time
	TCPSeq         uint32
	TID            uint32
	CapSeq         uint32
	SyscallTraceID uint64
	Coroutine      uint64
}

// From sets the message's direction and first-byte identity from the
// segment that carried its first byte; tcpSeq is that byte's TCP sequence
// (stream.Frame.TCPSeq, or seg.TCPSeq plus the offset in the segment).
// End is set too, for messages carried by one segment.
func (m *Message) From(seg *capture.Segment, tcpSeq uint32) {
	m.Dir = seg.Dir
	m.Start, m.End = seg.Start, seg.End
	m.TCPSeq = tcpSeq
	m.TID = seg.TID
	m.CapSeq = seg.CapSeq
	m.SyscallTraceID = seg.SyscallTraceID
	m.Coroutine = seg.Coroutine
}

// EndAt sets the message's end time from the segment that carried its
// last byte.
func (m *Message) EndAt(seg *capture.Segment) {
	if !seg.End.IsZero() {
		m.End = seg.End
	} else if !seg.Start.IsZero() {
		m.End = seg.Start
	}
}
