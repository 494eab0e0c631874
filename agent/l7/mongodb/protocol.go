// Package mongodb infers and parses the MongoDB wire protocol: OP_MSG
// (commands and their replies, document sequences, checksums, moreToCome),
// the legacy OP_QUERY/OP_REPLY handshake and write opcodes, and
// OP_COMPRESSED (zlib and zstd bodies are inflated when small and whole).
// Only command names, database and collection names and reply status
// fields are read: document values, which may hold personal data, are never
// stored. Requests and replies are paired by requestID/responseTo.
package mongodb

import (
	"encoding/binary"
	"sync"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/flowlog"
)

// DefaultTimeout is how long a command waits for its reply.
const DefaultTimeout = 120 * time.Second

// Wire opcodes.
const (
	opReply       = 1
	opUpdate      = 2001
	opInsert      = 2002
	opQuery       = 2004
	opGetMore     = 2005
	opDelete      = 2006
	opKillCursors = 2007
	opCompressed  = 2012
	opMsg         = 2013
)

const (
	headerLen = 16
	// maxMessage is the server's maxMessageSizeBytes (48 MB) rounded up.
	maxMessage = 48 << 20
	// OP_MSG flag bits: checksumPresent, moreToCome, exhaustAllowed; the
	// others must be zero.
	flagChecksum   = 1 << 0
	flagMoreToCome = 1 << 1
	flagExhaust    = 1 << 16
)

// Protocol is MongoDB. It is safe for concurrent use: its only state is a
// zstd decoder, whose DecodeAll is safe for concurrent use, made on first
// need.
type Protocol struct {
	timeout time.Duration

	zstdOnce sync.Once
	zstd     *zstd.Decoder
}

var _ l7.Protocol = (*Protocol)(nil)

// New returns the MongoDB protocol. Nothing the parser stores is secret (no
// document value is kept), so cfg.KeepSecrets changes nothing.
func New(cfg l7.Config) *Protocol {
	p := &Protocol{timeout: DefaultTimeout}
	if cfg.Timeout > 0 {
		p.timeout = cfg.Timeout
	}
	return p
}

// ID returns flowlog.L7MongoDB.
func (p *Protocol) ID() flowlog.L7Protocol { return flowlog.L7MongoDB }

// Matching returns l7.MatchByID: a reply's responseTo names its request.
func (p *Protocol) Matching() l7.Matching { return l7.MatchByID }

// Timeout returns the configured command timeout.
func (p *Protocol) Timeout() time.Duration { return p.timeout }

// NewParser returns a parser for one connection; its concrete type is *Parser.
func (p *Protocol) NewParser() l7.Parser { return newParser(p) }

func (p *Protocol) zstdDecoder() *zstd.Decoder {
	p.zstdOnce.Do(func() {
		d, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(maxInflate))
		if err == nil {
			p.zstd = d
		}
	})
	return p.zstd
}

// Infer claims a connection whose first bytes are a MongoDB message. It
// checks the 16-byte header (length 16..48 MiB, a known opcode, responseTo
// zero for requests and non-zero for replies) and, as far as captured, the
// opcode's fixed fields: OP_MSG flag bits and a section kind 0 or 1 whose
// document or sequence length fits the message, and the first element's
// type and name; OP_QUERY flags and a namespace "db.collection"; OP_REPLY
// flags and counts; OP_COMPRESSED's original opcode and compressor id.
// Servers read the header with its own syscall, so a 16-byte segment
// holding a request header is enough.
func (p *Protocol) Infer(data []byte, l4 uint8) l7.Inference {
	if l4 != 6 {
		return l7.NotMine
	}
	return classify(data)
}

func classify(b []byte) l7.Inference {
	if len(b) < headerLen {
		// A header's first bytes are its length and ids: anything goes.
		return l7.NeedMore
	}
	n := int(int32(binary.LittleEndian.Uint32(b)))
	respTo := binary.LittleEndian.Uint32(b[8:])
	op := int32(binary.LittleEndian.Uint32(b[12:]))
	if n < headerLen+5 || n > maxMessage {
		return l7.NotMine
	}
	isReq := respTo == 0
	verdict := l7.IsResponse
	if isReq {
		verdict = l7.IsRequest
	}
	body := b[headerLen:]
	switch op {
	case opMsg:
		if len(body) == 0 {
			return headerOnly(isReq)
		}
		if !checkMsg(body, n) {
			return l7.NotMine
		}
		return verdict
	case opQuery, opGetMore, opInsert, opUpdate, opDelete:
		if !isReq {
			return l7.NotMine
		}
		if len(body) == 0 {
			return headerOnly(op == opQuery)
		}
		if op == opQuery && len(body) >= 4 && binary.LittleEndian.Uint32(body)&^0xfe != 0 {
			return l7.NotMine
		}
		if len(body) < 4 {
			return l7.NeedMore
		}
		switch nsOK(body[4:], n) {
		case nsBad:
			return l7.NotMine
		case nsShort:
			return l7.NeedMore
		}
		return l7.IsRequest
	case opKillCursors:
		return l7.NotMine // too little to check; never a connection's first message
	case opReply:
		if isReq || n < headerLen+20+5 {
			return l7.NotMine
		}
		if len(body) < 20 {
			return l7.NeedMore
		}
		flags := binary.LittleEndian.Uint32(body)
		from := int32(binary.LittleEndian.Uint32(body[12:]))
		num := int32(binary.LittleEndian.Uint32(body[16:]))
		if flags&^0xf != 0 || from < 0 || num < 0 || int(num)*5 > n-36 {
			return l7.NotMine
		}
		return l7.IsResponse
	case opCompressed:
		if len(body) == 0 {
			return headerOnly(isReq)
		}
		if len(body) < 9 {
			return l7.NeedMore
		}
		orig := int32(binary.LittleEndian.Uint32(body))
		size := int32(binary.LittleEndian.Uint32(body[4:]))
		switch orig {
		case opMsg, opQuery, opReply:
		default:
			return l7.NotMine
		}
		if size < 5 || size > maxMessage || body[8] > 3 {
			return l7.NotMine
		}
		return verdict
	}
	return l7.NotMine
}

// headerOnly judges a segment holding only a header: only requests, whose
// responseTo is zero, are claimed on that little evidence.
func headerOnly(isReq bool) l7.Inference {
	if isReq {
		return l7.IsRequest
	}
	return l7.NeedMore
}

// checkMsg checks an OP_MSG body (after the header) of a message of n bytes.
func checkMsg(body []byte, n int) bool {
	if len(body) < 4 {
		return true // judged on the header; the flags were not captured
	}
	if binary.LittleEndian.Uint32(body)&^uint32(flagChecksum|flagMoreToCome|flagExhaust) != 0 {
		return false
	}
	if len(body) < 5 {
		return true
	}
	room := n - headerLen - 5
	switch body[4] {
	case 0:
		if len(body) < 9 {
			return true
		}
		dl := int(int32(binary.LittleEndian.Uint32(body[5:])))
		if dl < 5 || dl > room {
			return false
		}
		if len(body) < 10 {
			return true
		}
		if dl == 5 {
			return body[9] == 0
		}
		if !validType(body[9]) {
			return false
		}
		// The first key: printable ASCII up to its terminating zero.
		for _, c := range body[10:min(len(body), 10+64)] {
			if c == 0 {
				return true
			}
			if c < 0x20 || c >= 0x7f {
				return false
			}
		}
		return true
	case 1:
		if len(body) < 9 {
			return true
		}
		sl := int(int32(binary.LittleEndian.Uint32(body[5:])))
		return sl >= 4+2+5 && sl <= room
	}
	return false
}

type nsResult uint8

const (
	nsGood nsResult = iota
	nsShort
	nsBad
)

// nsOK checks the "db.collection" cstring at the start of b.
func nsOK(b []byte, n int) nsResult {
	dot := false
	for i, c := range b {
		switch {
		case c == 0:
			if !dot || i < 3 || i > n {
				return nsBad
			}
			return nsGood
		case c == '.':
			dot = dot || i > 0
		case c < 0x20 || c >= 0x7f:
			return nsBad
		}
		if i > 255 {
			return nsBad
		}
	}
	return nsShort
}
