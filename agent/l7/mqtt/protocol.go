// Package mqtt infers and parses MQTT 3.1, 3.1.1 and 5.0 control packets
// over TCP: CONNECT/CONNACK, PUBLISH with its acknowledgements,
// SUBSCRIBE/SUBACK, UNSUBSCRIBE/UNSUBACK, PINGREQ/PINGRESP and DISCONNECT.
//
// A QoS 1 or 2 PUBLISH carries its packet id as sent in the attribute
// mqtt.packet_id; an MQTT 5 PUBLISH's "traceparent" user property sets the
// trace id and span id as HTTP's traceparent does (brokers forward user
// properties, so deliveries to MQTT 5 subscribers join the trace too).
package mqtt

import (
	"time"

	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/flowlog"
)

// DefaultTimeout is how long a request waits for its acknowledgement.
const DefaultTimeout = 120 * time.Second

// Protocol is MQTT. It is stateless and safe for concurrent use.
type Protocol struct {
	timeout time.Duration
}

// New returns the MQTT protocol. User names and passwords of CONNECT are
// never read into messages, so cfg.KeepSecrets changes nothing.
func New(cfg l7.Config) *Protocol {
	p := &Protocol{timeout: DefaultTimeout}
	if cfg.Timeout > 0 {
		p.timeout = cfg.Timeout
	}
	return p
}

var _ l7.Protocol = (*Protocol)(nil)

// ID returns flowlog.L7MQTT.
func (p *Protocol) ID() flowlog.L7Protocol { return flowlog.L7MQTT }

// Matching returns l7.MatchByID: acknowledgements carry the packet id;
// packets without one (CONNECT/CONNACK, PINGREQ/PINGRESP) pair in order.
func (p *Protocol) Matching() l7.Matching { return l7.MatchByID }

// Timeout returns the configured request timeout.
func (p *Protocol) Timeout() time.Duration { return p.timeout }

// NewParser returns a parser for one connection; its concrete type is *Parser.
func (p *Protocol) NewParser() l7.Parser { return newParser() }

// Infer claims a connection that starts with a CONNECT packet: first byte
// 0x10, a valid remaining length (at least the variable header's 10 bytes),
// then protocol name "MQTT" with level 4 or 5, or "MQIsdp" with level 3, and
// connect flags whose reserved bit is clear. Brokers such as mosquitto read
// the fixed header byte by byte and the rest in one read, so a segment that
// starts with that variable header is claimed too, and the lone fixed header
// bytes before it ask for more. Other packets are too short and generic
// (PINGREQ is two bytes) to tell MQTT from other binary traffic.
func (p *Protocol) Infer(data []byte, l4 uint8) l7.Inference {
	if l4 != 6 {
		return l7.NotMine
	}
	if len(data) == 0 {
		return l7.NeedMore
	}
	if data[0] != 0x10 {
		if connectHeader(data) == l7.IsRequest {
			return l7.IsRequest
		}
		return l7.NotMine
	}
	rem, n, ok := remainingLength(data[1:])
	if !ok {
		return l7.NotMine
	}
	if n == 0 {
		return l7.NeedMore
	}
	if rem < 10 {
		return l7.NotMine
	}
	if len(data) == 1+n {
		return l7.NeedMore // the fixed header read on its own
	}
	return connectHeader(data[1+n:])
}

// connectHeader checks CONNECT's variable header at the start of vh.
func connectHeader(vh []byte) l7.Inference {
	const mqtt, mqisdp = "\x00\x04MQTT", "\x00\x06MQIsdp"
	var name string
	switch {
	case len(vh) >= 2 && vh[0] == 0 && vh[1] == 4:
		name = mqtt
	case len(vh) >= 2 && vh[0] == 0 && vh[1] == 6:
		name = mqisdp
	case len(vh) < 2 && (len(vh) == 0 || vh[0] == 0):
		return l7.NeedMore
	default:
		return l7.NotMine
	}
	m := min(len(vh), len(name))
	if string(vh[:m]) != name[:m] {
		return l7.NotMine
	}
	if len(vh) < len(name)+2 {
		return l7.NeedMore
	}
	level, flags := vh[len(name)], vh[len(name)+1]
	if (name == mqtt && level != 4 && level != 5) || (name == mqisdp && level != 3) || flags&1 != 0 {
		return l7.NotMine
	}
	return l7.IsRequest
}

// remainingLength decodes the fixed header's variable-length integer at
// the start of b: the value and its size in bytes (0: b ends inside it).
// ok is false when it runs past the 4 bytes MQTT allows.
func remainingLength(b []byte) (v, n int, ok bool) {
	for i := 0; i < 4; i++ {
		if i == len(b) {
			return 0, 0, true
		}
		v |= int(b[i]&0x7f) << (7 * i)
		if b[i] < 0x80 {
			return v, i + 1, true
		}
	}
	return 0, 0, false
}
