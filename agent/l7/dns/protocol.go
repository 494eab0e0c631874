// Package dns infers and parses DNS over UDP (one message per datagram) and
// over TCP (messages behind a 2-byte length prefix, framed with
// stream.Buffer): queries become requests named by their question, responses
// carry the rcode and a compact rendering of the answers. Requests and
// responses are paired by the DNS id.
package dns

import (
	"encoding/binary"
	"time"

	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/flowlog"
)

// DefaultTimeout is how long a query waits for its answer: resolvers retry
// after a few seconds, so a longer wait only delays the timeout row.
const DefaultTimeout = 15 * time.Second

// Protocol is DNS. It is stateless and safe for concurrent use.
type Protocol struct {
	timeout time.Duration
}

var _ l7.Protocol = (*Protocol)(nil)

// New returns the DNS protocol. DNS carries no secrets to mask, so
// cfg.KeepSecrets changes nothing.
func New(cfg l7.Config) *Protocol {
	p := &Protocol{timeout: DefaultTimeout}
	if cfg.Timeout > 0 {
		p.timeout = cfg.Timeout
	}
	return p
}

// ID returns flowlog.L7DNS.
func (p *Protocol) ID() flowlog.L7Protocol { return flowlog.L7DNS }

// Matching returns l7.MatchByID: answers are paired by the DNS id (a UDP
// server socket carries many clients' queries, answered in any order).
func (p *Protocol) Matching() l7.Matching { return l7.MatchByID }

// Timeout returns the configured query timeout.
func (p *Protocol) Timeout() time.Duration { return p.timeout }

// NewParser returns a parser for one connection; its concrete type is *Parser.
func (p *Protocol) NewParser() l7.Parser { return newParser() }

// Infer claims a UDP datagram, or a TCP segment starting with a length
// prefix, that holds a strictly well-formed DNS query or response (see
// classify). On TCP it also claims a bare message without its prefix when
// it fills the segment exactly: servers such as dnsmasq read the 2-byte
// length with separate syscalls, so the first segment with a message in it
// lacks the prefix.
func (p *Protocol) Infer(data []byte, l4 uint8) l7.Inference {
	switch l4 {
	case 17:
		// Infer sees no segment length: a datagram of 512 bytes or more may
		// be a capture prefix, so its records may run past the data.
		return classify(data, len(data) < 512)
	case 6:
		r := classifyTCP(data)
		if r == l7.NotMine {
			if b := classify(data, true); b == l7.IsRequest || b == l7.IsResponse {
				return b
			}
		}
		return r
	}
	return l7.NotMine
}

// classifyTCP checks a length prefix of at least a header and the message
// behind it; a message cut by the capture is judged on what was captured.
func classifyTCP(data []byte) l7.Inference {
	if len(data) < 2 {
		return l7.NeedMore
	}
	n := int(binary.BigEndian.Uint16(data))
	if n < headerLen+5 { // a header and the shortest question
		return l7.NotMine
	}
	msg := data[2:]
	if len(msg) < headerLen {
		return l7.NeedMore
	}
	complete := len(msg) >= n
	if complete {
		msg = msg[:n]
	}
	return classify(msg, complete)
}

// classify is the strict check of one message (complete: msg is all of it):
//   - header: a defined opcode, Z clear, exactly one question;
//   - a query (QR 0): rcode 0, AA and TC clear, and for a standard QUERY no
//     answer or authority records and at most two additional ones (EDNS
//     OPT, TSIG);
//   - the question name is well formed (labels, bounded pointers), its type
//     is not 0 and its class is IN, CH, HS, NONE or ANY;
//   - every record after it is well formed and, when the message is
//     complete, the last one ends exactly at the message's end.
//
// HTTP, TLS and other binary protocols fail the header or the name walk.
func classify(msg []byte, complete bool) l7.Inference {
	h, ok := readHeader(msg)
	if !ok || !h.sane() || h.qd != 1 {
		return l7.NotMine
	}
	if !h.qr() {
		if h.rcode() != 0 || h.aa() || h.tc() {
			return l7.NotMine
		}
		if h.opcode() == 0 && (h.an != 0 || h.ns != 0 || h.ar > 2) {
			return l7.NotMine
		}
	}
	var buf [maxNameWire + 1]byte
	q, res := readQuestion(msg, buf[:0])
	if res == nameShort && !complete {
		return l7.NeedMore
	}
	if res != nameOK || q.qtype == 0 || !knownClass(q.class) {
		return l7.NotMine
	}
	w := walkRRs(msg, q.end, h, nil)
	switch {
	case w.res == nameBad:
		return l7.NotMine
	case w.res == nameShort && complete:
		return l7.NotMine
	case w.res == nameOK && complete && w.end != len(msg):
		return l7.NotMine
	}
	if h.qr() {
		return l7.IsResponse
	}
	return l7.IsRequest
}
