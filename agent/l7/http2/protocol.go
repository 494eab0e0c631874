// Package http2 infers and parses HTTP/2 (h2c, or h2 whose plaintext a TLS
// hook supplies) and gRPC over it: frames per direction through
// stream.Buffer, header blocks through HPACK with one dynamic table per
// direction, and one request/response pair per stream, matched by stream id.
// Streams whose request content-type is application/grpc are reported as
// gRPC, with grpc-status as the response code.
package http2

import (
	"time"

	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/flowlog"
)

// DefaultTimeout is how long a request waits for its response.
const DefaultTimeout = 120 * time.Second

// Protocol is HTTP/2 (and gRPC). It is stateless and safe for concurrent use.
type Protocol struct {
	timeout     time.Duration
	keepSecrets bool
}

var _ l7.Protocol = (*Protocol)(nil)

// New returns the HTTP/2 protocol configured by cfg.
func New(cfg l7.Config) *Protocol {
	p := &Protocol{timeout: DefaultTimeout, keepSecrets: cfg.KeepSecrets}
	if cfg.Timeout > 0 {
		p.timeout = cfg.Timeout
	}
	return p
}

// ID returns flowlog.L7HTTP2; messages of gRPC streams say flowlog.L7GRPC.
func (p *Protocol) ID() flowlog.L7Protocol { return flowlog.L7HTTP2 }

// Matching returns l7.MatchByID: responses are matched by stream id.
func (p *Protocol) Matching() l7.Matching { return l7.MatchByID }

// Timeout returns the configured request timeout.
func (p *Protocol) Timeout() time.Duration { return p.timeout }

// NewParser returns a parser for one connection; its type is *Parser.
func (p *Protocol) NewParser() l7.Parser { return newParser(p.keepSecrets) }

// Infer claims a connection whose first bytes (either direction) are the
// client preface, or a run of frames a peer could send mid-connection:
//
//   - every visible 9-byte frame header passes plausible(): a known type,
//     only that type's flags, no reserved bit, length at most 1 MiB, stream
//     0 for SETTINGS/PING/GOAWAY and non-zero for stream frames, the fixed
//     sizes of PING/WINDOW_UPDATE/RST_STREAM/PRIORITY;
//   - complete control frames carry sane contents (known SETTINGS ids and
//     values, a non-zero window increment, a known error code);
//   - the frames tile the bytes exactly, but for a last frame cut by the
//     capture limit;
//   - and the first frame is SETTINGS (a server's first bytes), or HEADERS
//     whose block starts like one, or at least two frames follow each
//     other, or a lone control frame or gRPC-framed DATA fills the bytes.
//
// HTTP/1 text fails at once (the type byte would be a printable character),
// as do TLS records (their 3 first bytes make a length over 1 MiB) and the
// length prefixes of other binary protocols (types above 9, flags or sizes
// that do not fit the type).
func (p *Protocol) Infer(data []byte, l4 uint8) l7.Inference {
	if l4 != 6 {
		return l7.NotMine
	}
	return infer(data)
}

func infer(b []byte) l7.Inference {
	if len(b) == 0 {
		return l7.NeedMore
	}
	if b[0] == 'P' {
		n := min(len(b), len(preface))
		switch {
		case string(b[:n]) != preface[:n]:
			return l7.NotMine
		case n < len(preface):
			return l7.NeedMore
		}
		return l7.IsRequest
	}
	var first frameHeader
	frames, off := 0, 0
	truncated := false
	for off < len(b) {
		h, ok := parseFrameHeader(b[off:])
		if !ok {
			if frames == 0 {
				if !plausiblePrefix(b) {
					return l7.NotMine
				}
				return l7.NeedMore
			}
			truncated = true // a header cut by the capture limit
			break
		}
		if !plausible(h, maxInferFrameLen) {
			return l7.NotMine
		}
		if frames == 0 {
			first = h
		}
		frames++
		payload := b[off+frameHeaderLen:]
		if len(payload) < h.length {
			if !plausiblePayload(h, payload, false) {
				return l7.NotMine
			}
			truncated = true
			break
		}
		if !plausiblePayload(h, payload[:h.length], true) {
			return l7.NotMine
		}
		off += frameHeaderLen + h.length
	}
	switch {
	case first.typ == frameSettings:
		return l7.IsResponse
	case first.typ == frameHeaders, frames >= 2:
		return l7.IsRequest
	case truncated:
		return l7.NotMine // one partial frame of a type that proves little
	}
	switch first.typ {
	case framePing, frameWindowUpdate, frameRSTStream, frameGoAway:
		return l7.IsRequest
	case frameData:
		if grpcFramed(first, b[frameHeaderLen:]) {
			return l7.IsRequest
		}
	}
	return l7.NotMine
}

// plausiblePrefix checks the first bytes (fewer than 9) of a frame header
// as plausible() would: the type, its fixed payload size, its flags.
func plausiblePrefix(b []byte) bool {
	if len(b) < 4 {
		return len(b) == 0 || b[0] <= maxInferFrameLen>>16
	}
	var full [frameHeaderLen]byte
	copy(full[:], b)
	h, _ := parseFrameHeader(full[:])
	if h.typ > frameContinuation || h.length > maxInferFrameLen {
		return false
	}
	if len(b) < 5 {
		h.flags = 0
	}
	h.stream = 1 // not known yet: pick what each type's stream rule accepts
	switch h.typ {
	case frameSettings, framePing, frameGoAway:
		h.stream = 0
	}
	return plausible(h, maxInferFrameLen)
}

// plausiblePayload checks what inference can see of a frame's payload;
// complete says the whole payload is there.
func plausiblePayload(h frameHeader, p []byte, complete bool) bool {
	switch h.typ {
	case frameSettings:
		for ; len(p) >= 6; p = p[6:] {
			if !plausibleSetting(uint16(p[0])<<8|uint16(p[1]), be32(p[2:])) {
				return false
			}
		}
	case frameWindowUpdate:
		if complete {
			inc := be32(p)
			return inc != 0 && inc&(1<<31) == 0
		}
	case frameRSTStream:
		if complete {
			return be32(p) <= errCodeMax
		}
	case frameGoAway:
		if len(p) >= 8 {
			return p[0]&0x80 == 0 && be32(p[4:]) <= errCodeMax
		}
	case frameHeaders:
		frag, _, ok := fragment(h, p, 0)
		// A block longer than the default 16 KiB frame limit would come
		// as HEADERS and CONTINUATION: a cut HEADERS frame that long is
		// unlikely to be one.
		return ok && plausibleBlock(frag) && (complete || h.length <= 1<<14)
	}
	return true
}

// plausibleSetting accepts the settings of RFC 9113 6.5.2 and the common
// extensions (8 ENABLE_CONNECT_PROTOCOL, 9 NO_RFC7540_PRIORITIES) with
// values in their ranges; grpc-go's 0xfe03 (BDP ping) is accepted too.
func plausibleSetting(id uint16, v uint32) bool {
	switch id {
	case 1, 3, 6: // HEADER_TABLE_SIZE, MAX_CONCURRENT_STREAMS, MAX_HEADER_LIST_SIZE
		return true
	case 2, 8, 9: // ENABLE_PUSH, ENABLE_CONNECT_PROTOCOL, NO_RFC7540_PRIORITIES
		return v <= 1
	case 4: // INITIAL_WINDOW_SIZE
		return v <= 1<<31-1
	case 5: // MAX_FRAME_SIZE
		return v >= 1<<14 && v <= maxFrameLen
	case 0xfe03:
		return true
	}
	return false
}

// plausibleBlock checks the start of a header block: requests and
// responses begin with a pseudo-header, so the first field (after optional
// table size updates) must be a static index naming one (1..14), or a
// dynamic index (62 and up, within what a 64 KiB table holds), or a literal
// name (trailers); the next representations, as far as visible, must be
// well formed with indices in range. An empty view passes.
func plausibleBlock(b []byte) bool {
	const maxIndex = staticEntries + maxTableSize/32
	first := true
	for fields := 0; len(b) > 0 && fields < 8; fields++ {
		kind, prefix := reprKind(b[0])
		idx, n := varint(b, prefix)
		switch {
		case n < 0:
			return false
		case n == 0:
			return true // cut by the capture limit
		case kind == reprSizeUpdate:
			if idx > maxTableSize || !first {
				return false
			}
			b = b[n:]
			continue
		case kind == reprIndexed && idx == 0, idx > maxIndex:
			return false
		case first && idx > 14 && idx <= staticEntries:
			return false // a regular field before the pseudo-headers
		}
		first = false
		l := reprLen(b)
		if l < 0 {
			return false
		}
		if l == 0 {
			return true
		}
		b = b[l:]
	}
	return true
}

// grpcFramed reports whether a complete DATA frame's payload is exactly one
// gRPC length-prefixed message (compressed flag 0 or 1, 32-bit length).
func grpcFramed(h frameHeader, payload []byte) bool {
	p := payload[:h.length]
	if h.flags&flagPadded != 0 {
		pad := int(p[0])
		if pad >= len(p) {
			return false
		}
		p = p[1 : len(p)-pad]
	}
	return len(p) >= 5 && p[0] <= 1 && int(be32(p[1:])) == len(p)-5
}

// Error codes of RST_STREAM and GOAWAY (RFC 9113 section 7).
const errCodeMax = 0xd

var errCodeNames = [...]string{
	"NO_ERROR", "PROTOCOL_ERROR", "INTERNAL_ERROR", "FLOW_CONTROL_ERROR", "SETTINGS_TIMEOUT",
	"STREAM_CLOSED", "FRAME_SIZE_ERROR", "REFUSED_STREAM", "CANCEL", "COMPRESSION_ERROR",
	"CONNECT_ERROR", "ENHANCE_YOUR_CALM", "INADEQUATE_SECURITY", "HTTP_1_1_REQUIRED",
}

const errCancel = 0x8

func be32(b []byte) uint32 {
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}
