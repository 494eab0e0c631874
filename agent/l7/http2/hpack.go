package http2

import (
	"errors"

	"golang.org/x/net/http2/hpack"
)

// HPACK (RFC 7541) bounds. The dynamic table a peer may ask for is capped
// (peers keep the 4 KiB default almost always); longer header strings are
// not decoded.
const (
	defaultTableSize = 4096
	maxTableSize     = 64 << 10
	maxStringLen     = 16 << 10
	// maxCarry bounds the bytes of one header representation held across
	// frames: a name and a value of maxStringLen plus their length prefixes.
	maxCarry = 2*maxStringLen + 16
	// staticEntries is the size of the HPACK static table.
	staticEntries = 61
)

// Representation kinds (RFC 7541 section 6), from the first byte.
const (
	reprIndexed    = iota // 1xxxxxxx
	reprIncr              // 01xxxxxx literal with incremental indexing
	reprLiteral           // 0000xxxx / 0001xxxx literal without indexing / never indexed
	reprSizeUpdate        // 001xxxxx dynamic table size update
)

// reprKind classifies a representation by its first byte and returns the
// prefix bits of its first integer.
func reprKind(c byte) (kind int, prefix uint8) {
	switch {
	case c&0x80 != 0:
		return reprIndexed, 7
	case c&0xc0 == 0x40:
		return reprIncr, 6
	case c&0xe0 == 0x20:
		return reprSizeUpdate, 5
	default:
		return reprLiteral, 4
	}
}

// varint decodes an HPACK integer with an n-bit prefix. It returns the
// value and the bytes used, 0 if b ends first, -1 if it overflows.
func varint(b []byte, n uint8) (v uint64, used int) {
	if len(b) == 0 {
		return 0, 0
	}
	mask := byte(1)<<n - 1
	v = uint64(b[0] & mask)
	if v < uint64(mask) {
		return v, 1
	}
	var shift uint
	for i := 1; i < len(b); i++ {
		v += uint64(b[i]&0x7f) << shift
		if b[i]&0x80 == 0 {
			return v, i + 1
		}
		shift += 7
		if shift > 28 { // no HPACK integer we accept needs more than 32 bits
			return 0, -1
		}
	}
	return 0, 0
}

// stringLen returns the bytes taken by the HPACK string at b (length
// prefix included), 0 if b ends first, -1 if malformed or too long.
func stringLen(b []byte) int {
	l, used := varint(b, 7)
	if used <= 0 {
		return used
	}
	if l > maxStringLen {
		return -1
	}
	if uint64(len(b)-used) < l {
		return 0
	}
	return used + int(l)
}

// reprLen returns the length of the complete representation at b's start,
// 0 if b ends first, -1 if it is malformed. It does not decode strings, so
// it costs a few byte reads.
func reprLen(b []byte) int {
	if len(b) == 0 {
		return 0
	}
	kind, prefix := reprKind(b[0])
	idx, n := varint(b, prefix)
	if n <= 0 || kind == reprIndexed || kind == reprSizeUpdate {
		return n
	}
	if idx == 0 { // literal name
		sn := stringLen(b[n:])
		if sn <= 0 {
			return sn
		}
		n += sn
	}
	sv := stringLen(b[n:])
	if sv <= 0 {
		return sv
	}
	return n + sv
}

// hpackDecoder decodes one direction's header blocks with x/net's hpack
// Decoder, one representation at a time, so that a representation the
// table cannot resolve (the capture began mid-connection, or lost a header
// block) is skipped instead of ending the block.
//
// Keeping in step: a decoder whose dynamic table started empty late, or was
// reset after losing a block, holds a newest-first prefix of the peer's
// table, so every index it can resolve means the same field as the peer's;
// indices past its end are counted as unresolved. A literal with
// incremental indexing whose name index is unknown is re-fed with an empty
// name so the entry (and the indices after it) stays in place.
type hpackDecoder struct {
	d       *hpack.Decoder
	emit    func(hpack.HeaderField)
	carry   []byte // an incomplete representation continued in the next fragment
	scratch []byte // rewritten representation (unknown name index)

	// lost is set once the table may have missed entries: fields are then
	// decoded as far as they resolve.
	lost bool
	// unresolved counts representations of the current block whose index
	// was not in the table.
	unresolved int
	// failed is set when the current block had undecodable bytes.
	failed bool
	stats  *Stats
}

func newHPACKDecoder(emit func(hpack.HeaderField), stats *Stats) *hpackDecoder {
	h := &hpackDecoder{emit: emit, stats: stats}
	h.init()
	return h
}

func (h *hpackDecoder) init() {
	h.d = hpack.NewDecoder(defaultTableSize, h.emit)
	h.d.SetMaxStringLength(maxStringLen)
	h.d.SetAllowedMaxDynamicTableSize(maxTableSize)
	h.carry = h.carry[:0]
}

// reset replaces the table by an empty one: what the peer indexes from now
// on resolves again, older entries do not.
func (h *hpackDecoder) reset() {
	h.init()
	h.lost = true
	h.stats.HPACKResets++
}

// begin starts a header block.
func (h *hpackDecoder) begin() {
	h.unresolved, h.failed = 0, false
	h.carry = h.carry[:0]
}

// write decodes a fragment of the current block.
func (h *hpackDecoder) write(frag []byte) {
	if h.failed {
		return
	}
	b := frag
	if len(h.carry) > 0 {
		if len(h.carry)+len(frag) > maxCarry {
			h.fail()
			return
		}
		h.carry = append(h.carry, frag...)
		b = h.carry
	}
	for len(b) > 0 {
		n := reprLen(b)
		if n < 0 {
			h.fail()
			return
		}
		if n == 0 {
			if len(b) > maxCarry {
				h.fail()
				return
			}
			if len(h.carry) > 0 {
				// b is a suffix of carry: move it to the front.
				h.carry = h.carry[:copy(h.carry, b)]
			} else {
				h.carry = append(h.carry[:0], b...)
			}
			return
		}
		if !h.one(b[:n]) {
			h.fail()
			return
		}
		b = b[n:]
	}
	h.carry = h.carry[:0]
}

// one decodes one complete representation; false means the decoder's
// state can no longer be trusted.
func (h *hpackDecoder) one(r []byte) bool {
	_, err := h.d.Write(r)
	if err == nil {
		return true
	}
	var idxErr hpack.InvalidIndexError
	var decErr hpack.DecodingError
	if errors.As(err, &decErr) {
		err = decErr.Err
	}
	if !errors.As(err, &idxErr) {
		return false
	}
	h.unresolved++
	h.stats.UnresolvedFields++
	kind, prefix := reprKind(r[0])
	if kind != reprIncr {
		return true // nothing was to be added to the table: skip the field
	}
	// Re-add the entry under an empty name: its value is known, and the
	// entries after it keep their indices.
	_, n := varint(r, prefix)
	h.scratch = append(append(h.scratch[:0], 0x40, 0x00), r[n:]...)
	_, err = h.d.Write(h.scratch)
	return err == nil
}

// fail drops the rest of the block: the table may now differ from the
// peer's, so it starts again empty.
func (h *hpackDecoder) fail() {
	h.failed = true
	h.stats.HPACKErrors++
	h.reset()
}

// end finishes the block; truncated says its end was not captured.
func (h *hpackDecoder) end(truncated bool) {
	switch {
	case truncated:
		// Representations in the lost bytes may have added entries.
		if !h.failed {
			h.reset()
		}
	case len(h.carry) > 0 && !h.failed:
		h.fail() // the block ended inside a representation
	case !h.failed:
		if err := h.d.Close(); err != nil {
			h.fail()
		}
	}
	h.carry = h.carry[:0]
}
