// Package amqp infers and parses AMQP 0-9-1 (RabbitMQ): the frames of a
// connection, the synchronous methods and their -Ok answers, asynchronous
// Basic.Publish/Deliver/Return, and the Channel/Connection.Close by which
// the server reports errors. Bodies are skipped.
//
// Basic.Publish, Basic.Return, Basic.Deliver and Basic.Get-Ok are emitted
// once the content header that follows them on their channel is read (or
// when the next frame in their direction shows it will not come): its
// message-id property becomes the attribute amqp.message_id, and a
// traceparent entry of its headers table sets the trace id and span id as
// HTTP's traceparent does.
package amqp

import (
	"encoding/binary"
	"time"

	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/flowlog"
)

// DefaultTimeout is how long a request waits for its answer.
const DefaultTimeout = 120 * time.Second

// protocolHeader opens every AMQP 0-9-1 connection (client to server).
const protocolHeader = "AMQP\x00\x00\x09\x01"

// maxFrame bounds a frame's payload size: servers negotiate frame_max
// (RabbitMQ: 128 KiB by default, far less than this).
const maxFrame = 16 << 20

// Frame types.
const (
	frameMethod    = 1
	frameHeader    = 2
	frameBody      = 3
	frameHeartbeat = 8
	frameEnd       = 0xCE
)

// Protocol is AMQP 0-9-1. It is stateless and safe for concurrent use.
type Protocol struct {
	timeout time.Duration
}

// New returns the AMQP protocol. Connection.Start-Ok, which carries the
// credentials, is never read into messages, so cfg.KeepSecrets changes
// nothing.
func New(cfg l7.Config) *Protocol {
	p := &Protocol{timeout: DefaultTimeout}
	if cfg.Timeout > 0 {
		p.timeout = cfg.Timeout
	}
	return p
}

var _ l7.Protocol = (*Protocol)(nil)

// ID returns flowlog.L7AMQP.
func (p *Protocol) ID() flowlog.L7Protocol { return flowlog.L7AMQP }

// Matching returns l7.MatchByID with the channel number as id: synchronous
// methods are answered in order on their channel, so the oldest pending
// request of a channel is the one an answer belongs to.
func (p *Protocol) Matching() l7.Matching { return l7.MatchByID }

// Timeout returns the configured request timeout.
func (p *Protocol) Timeout() time.Duration { return p.timeout }

// NewParser returns a parser for one connection; its concrete type is *Parser.
func (p *Protocol) NewParser() l7.Parser { return newParser() }

// Infer claims a connection that starts with the AMQP 0-9-1 protocol header,
// or (capture started mid-connection) with a method frame: type 1, a
// payload of at least 4 bytes and at most 16 MiB, a known class and method,
// and the frame-end octet 0xCE where the size says the frame ends, when
// that byte was captured.
func (p *Protocol) Infer(data []byte, l4 uint8) l7.Inference {
	if l4 != 6 || len(data) == 0 {
		if l4 != 6 {
			return l7.NotMine
		}
		return l7.NeedMore
	}
	if data[0] == 'A' {
		n := min(len(data), len(protocolHeader))
		switch {
		case string(data[:n]) != protocolHeader[:n]:
			return l7.NotMine
		case n < len(protocolHeader):
			return l7.NeedMore
		}
		return l7.IsRequest
	}
	return inferMethodFrame(data)
}

func inferMethodFrame(b []byte) l7.Inference {
	if b[0] != frameMethod {
		return l7.NotMine
	}
	if len(b) < 11 {
		return l7.NeedMore
	}
	size := binary.BigEndian.Uint32(b[3:])
	class, id := binary.BigEndian.Uint16(b[7:]), binary.BigEndian.Uint16(b[9:])
	if size < 4 || size > maxFrame {
		return l7.NotMine
	}
	if _, ok := methodOf(class, id); !ok {
		return l7.NotMine
	}
	if end := 7 + int(size); end < len(b) && b[end] != frameEnd {
		return l7.NotMine
	}
	return l7.IsRequest
}
