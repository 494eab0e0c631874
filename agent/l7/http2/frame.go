package http2

// HTTP/2 framing (RFC 9113 section 4 and 6): a 9-byte header (24-bit
// length, type, flags, R bit and 31-bit stream id) and a payload.

const (
	frameHeaderLen = 9
	// maxFrameLen is the largest length SETTINGS_MAX_FRAME_SIZE allows
	// (2^24-1); the 24-bit field cannot say more, so it bounds nothing by
	// itself but documents the limit.
	maxFrameLen = 1<<24 - 1
	// maxInferFrameLen is the largest frame inference accepts: peers almost
	// never raise SETTINGS_MAX_FRAME_SIZE past 1 MiB (the default is 16 KiB),
	// and a smaller bound rejects more non-HTTP/2 bytes.
	maxInferFrameLen = 1 << 20
)

// Frame types.
const (
	frameData         = 0x0
	frameHeaders      = 0x1
	framePriority     = 0x2
	frameRSTStream    = 0x3
	frameSettings     = 0x4
	framePushPromise  = 0x5
	framePing         = 0x6
	frameGoAway       = 0x7
	frameWindowUpdate = 0x8
	frameContinuation = 0x9
)

// Frame flags.
const (
	flagEndStream  = 0x1
	flagAck        = 0x1
	flagEndHeaders = 0x4
	flagPadded     = 0x8
	flagPriority   = 0x20
)

// preface is what a client sends first on every HTTP/2 connection.
const preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// frameHeader is a decoded 9-byte frame header.
type frameHeader struct {
	length   int
	typ      uint8
	flags    uint8
	reserved bool // the R bit of the stream id was set
	stream   uint32
}

// parseFrameHeader decodes b's first 9 bytes; ok is false when b is shorter.
func parseFrameHeader(b []byte) (h frameHeader, ok bool) {
	if len(b) < frameHeaderLen {
		return h, false
	}
	h.length = int(b[0])<<16 | int(b[1])<<8 | int(b[2])
	h.typ, h.flags = b[3], b[4]
	h.reserved = b[5]&0x80 != 0
	h.stream = uint32(b[5]&0x7f)<<24 | uint32(b[6])<<16 | uint32(b[7])<<8 | uint32(b[8])
	return h, true
}

// allowedFlags lists the flags RFC 9113 defines per frame type. Peers must
// ignore others, but no implementation sends them, so strict checks reject
// frames that carry them.
var allowedFlags = [...]uint8{
	frameData:         flagEndStream | flagPadded,
	frameHeaders:      flagEndStream | flagEndHeaders | flagPadded | flagPriority,
	framePriority:     0,
	frameRSTStream:    0,
	frameSettings:     flagAck,
	framePushPromise:  flagEndHeaders | flagPadded,
	framePing:         flagAck,
	frameGoAway:       0,
	frameWindowUpdate: 0,
	frameContinuation: flagEndHeaders,
}

// plausible reports whether h is a frame header a conforming peer would
// send: a known type (0..9), only that type's flags, no R bit, the stream
// rules (SETTINGS, PING and GOAWAY on stream 0; DATA, HEADERS, PRIORITY,
// RST_STREAM, PUSH_PROMISE and CONTINUATION on a stream) and the fixed or
// minimum payload sizes. It is the strict check used for inference and to
// regain framing after lost bytes; in sync the parser accepts any header
// (unknown types are skipped by length, as RFC 9113 requires).
func plausible(h frameHeader, maxLen int) bool {
	if h.typ > frameContinuation || h.reserved || h.length > maxLen || h.flags&^allowedFlags[h.typ] != 0 {
		return false
	}
	switch h.typ {
	case frameSettings:
		return h.stream == 0 && h.length%6 == 0 && (h.flags&flagAck == 0 || h.length == 0)
	case framePing:
		return h.stream == 0 && h.length == 8
	case frameGoAway:
		return h.stream == 0 && h.length >= 8
	case frameWindowUpdate:
		return h.length == 4
	case framePriority:
		return h.stream != 0 && h.length == 5
	case frameRSTStream:
		return h.stream != 0 && h.length == 4
	case frameHeaders:
		return h.stream != 0 && h.length >= headersPrefix(h.flags)
	case framePushPromise:
		return h.stream != 0 && h.length >= headersPrefix(h.flags)+4
	case frameData:
		return h.stream != 0 && (h.flags&flagPadded == 0 || h.length >= 1)
	default: // CONTINUATION
		return h.stream != 0
	}
}

// headersPrefix is the size of the pad-length and priority fields that
// precede a header block fragment.
func headersPrefix(flags uint8) int {
	n := 0
	if flags&flagPadded != 0 {
		n++
	}
	if flags&flagPriority != 0 {
		n += 5
	}
	return n
}

// fragment returns the header block fragment of a HEADERS or PUSH_PROMISE
// frame (payload after the frame header, as far as captured) and whether it
// is complete. extra is 4 for PUSH_PROMISE's promised stream id.
func fragment(h frameHeader, payload []byte, extra int) (frag []byte, complete, ok bool) {
	start := extra
	pad := 0
	if h.flags&flagPadded != 0 {
		if len(payload) < 1 {
			return nil, false, false
		}
		pad = int(payload[0])
		start++
	}
	if h.flags&flagPriority != 0 && h.typ == frameHeaders {
		start += 5
	}
	end := h.length - pad
	if end < start {
		return nil, false, false // padding longer than the payload: malformed
	}
	if len(payload) < start {
		return nil, false, true
	}
	if len(payload) >= end {
		return payload[start:end], true, true
	}
	return payload[start:], false, true
}
