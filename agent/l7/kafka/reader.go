package kafka

import "encoding/binary"

// maxCount bounds array counts read from the wire: anything larger is
// treated as malformed (no real request names thousands of topics in the
// captured prefix of a message).
const maxCount = 1 << 16

// reader decodes Kafka primitive types from a captured prefix. Once a read
// runs past the data it sets short (truncated capture) or bad (malformed)
// and every later read returns zero values, so decoders can read a whole
// structure and check once.
type reader struct {
	b     []byte
	off   int
	flex  bool // compact strings/arrays and tagged fields
	short bool // ran past the captured bytes
	bad   bool // impossible value
}

func (r *reader) failed() bool { return r.short || r.bad }

func (r *reader) take(n int) []byte {
	if r.failed() {
		return nil
	}
	if n < 0 {
		r.bad = true
		return nil
	}
	if n > len(r.b)-r.off {
		r.short = true
		return nil
	}
	p := r.b[r.off : r.off+n]
	r.off += n
	return p
}

func (r *reader) i8() int8 {
	if p := r.take(1); p != nil {
		return int8(p[0])
	}
	return 0
}

func (r *reader) i16() int16 {
	if p := r.take(2); p != nil {
		return int16(binary.BigEndian.Uint16(p))
	}
	return 0
}

func (r *reader) i32() int32 {
	if p := r.take(4); p != nil {
		return int32(binary.BigEndian.Uint32(p))
	}
	return 0
}

func (r *reader) i64() int64 {
	if p := r.take(8); p != nil {
		return int64(binary.BigEndian.Uint64(p))
	}
	return 0
}

func (r *reader) skip(n int) { r.take(n) }

// uvarint reads an unsigned varint of at most 5 bytes (32 bits).
func (r *reader) uvarint() uint32 {
	var v uint32
	for i := 0; i < 5; i++ {
		p := r.take(1)
		if p == nil {
			return 0
		}
		v |= uint32(p[0]&0x7f) << (7 * i)
		if p[0] < 0x80 {
			return v
		}
	}
	r.bad = true
	return 0
}

// strLen reads a (nullable) string or bytes length: -1 is null.
func (r *reader) strLen() int {
	if r.flex {
		return int(r.uvarint()) - 1
	}
	return int(r.i16())
}

// str reads a nullable string; null reads as "".
func (r *reader) str() []byte {
	n := r.strLen()
	if n < -1 {
		r.bad = true
	}
	if n <= 0 {
		return nil
	}
	return r.take(n)
}

func (r *reader) skipStr() { r.str() }

// skipBytes skips nullable bytes (int32 length when not flexible).
func (r *reader) skipBytes() {
	var n int
	if r.flex {
		n = int(r.uvarint()) - 1
	} else {
		n = int(r.i32())
	}
	if n < -1 {
		r.bad = true
	}
	if n > 0 {
		r.take(n)
	}
}

// arrayLen reads a (nullable) array count; null reads as 0.
func (r *reader) arrayLen() int {
	var n int
	if r.flex {
		n = int(r.uvarint()) - 1
	} else {
		n = int(r.i32())
	}
	switch {
	case r.failed():
		return 0
	case n < -1 || n > maxCount:
		r.bad = true
		return 0
	case n < 0:
		return 0
	}
	return n
}

// uuid reads a 16-byte topic id.
func (r *reader) uuid() (id [16]byte) {
	if p := r.take(16); p != nil {
		copy(id[:], p)
	}
	return id
}

// tags skips a tagged-field section (flexible versions only).
func (r *reader) tags() {
	if !r.flex {
		return
	}
	n := r.uvarint()
	if n > maxCount {
		r.bad = true
		return
	}
	for i := uint32(0); i < n && !r.failed(); i++ {
		r.uvarint() // tag
		r.take(int(r.uvarint()))
	}
}
