package mongodb

import (
	"encoding/binary"
	"math"
)

// BSON element types the walker needs to size or read.
const (
	bsonDouble   = 0x01
	bsonString   = 0x02
	bsonDocument = 0x03
	bsonArray    = 0x04
	bsonBinary   = 0x05
	bsonObjectID = 0x07
	bsonBool     = 0x08
	bsonInt32    = 0x10
	bsonInt64    = 0x12
)

// maxKey bounds an element name; a longer one is not a command document.
const maxKey = 1024

// doc walks the top-level elements of a BSON document without decoding
// values: each value is skipped by its size, so nesting depth costs nothing.
// The document may be cut short by the capture: the walk stops at the last
// whole element and truncated reports it.
type doc struct {
	b         []byte // the document's captured bytes, from its length field
	off       int
	end       int // the document's end (its terminating 0), within b or past it
	truncated bool
	bad       bool
}

// newDoc starts a walk of the document at the start of b. It reports false
// when b cannot start a document (bad length).
func newDoc(b []byte, room int) (doc, bool) {
	if len(b) < 4 {
		return doc{}, false
	}
	n := int(int32(binary.LittleEndian.Uint32(b)))
	if n < 5 || n > room {
		return doc{}, false
	}
	return doc{b: b, off: 4, end: n - 1}, true
}

// next returns the next element; ok false at the end of the document or of
// the captured bytes.
func (d *doc) next() (typ byte, key, val []byte, ok bool) {
	if d.bad || d.off >= d.end {
		return 0, nil, nil, false
	}
	if d.off >= len(d.b) {
		d.truncated = true
		return 0, nil, nil, false
	}
	typ = d.b[d.off]
	i := d.off + 1
	j := i
	for j < len(d.b) && j < d.end && d.b[j] != 0 {
		j++
	}
	switch {
	case j >= d.end || j-i > maxKey:
		d.bad = true
		return 0, nil, nil, false
	case j >= len(d.b):
		d.truncated = true
		return 0, nil, nil, false
	}
	key = d.b[i:j]
	vs := j + 1
	n, sized := valueLen(typ, d.b[vs:])
	switch {
	case n < 0:
		d.bad = true
		return 0, nil, nil, false
	case !sized || vs+n > len(d.b):
		d.truncated = true
		return 0, nil, nil, false
	case vs+n > d.end:
		d.bad = true
		return 0, nil, nil, false
	}
	d.off = vs + n
	return typ, key, d.b[vs : vs+n], true
}

// valueLen returns the size of a value of type typ at the start of b: -1
// for an unknown type or a bad length, sized false when b is too short to
// hold the size itself.
func valueLen(typ byte, b []byte) (n int, sized bool) {
	switch typ {
	case 0x06, 0x0a, 0x7f, 0xff: // undefined, null, max key, min key
		return 0, true
	case bsonBool:
		return 1, true
	case bsonInt32:
		return 4, true
	case bsonDouble, 0x09, 0x11, bsonInt64: // double, datetime, timestamp, int64
		return 8, true
	case bsonObjectID:
		return 12, true
	case 0x13: // decimal128
		return 16, true
	case bsonString, 0x0d, 0x0e: // string, JavaScript, symbol: int32 length, bytes, 0
		return lenPrefixed(b, 4, 1)
	case 0x0c: // DBPointer: string and ObjectId
		n, ok := lenPrefixed(b, 4, 1)
		if n < 0 || !ok {
			return n, ok
		}
		return n + 12, true
	case bsonDocument, bsonArray, 0x0f: // the int32 counts itself
		return lenPrefixed(b, 0, 5)
	case bsonBinary: // int32 length, subtype byte, bytes
		n, ok := lenPrefixed(b, 5, 0)
		return n, ok
	case 0x0b: // regex: two cstrings
		i := 0
		for range 2 {
			for i < len(b) && b[i] != 0 {
				i++
			}
			if i >= len(b) {
				return 0, false
			}
			i++
		}
		return i, true
	}
	return -1, true
}

// lenPrefixed sizes a value whose int32 length excludes extra bytes and
// must be at least minLen.
func lenPrefixed(b []byte, extra, minLen int) (int, bool) {
	if len(b) < 4 {
		return 0, false
	}
	n := int(int32(binary.LittleEndian.Uint32(b)))
	if n < minLen || n > 48<<20 {
		return -1, true
	}
	return n + extra, true
}

// str reads a BSON string value (length, bytes, terminating 0).
func str(val []byte) ([]byte, bool) {
	if len(val) < 5 || val[len(val)-1] != 0 {
		return nil, false
	}
	return val[4 : len(val)-1], true
}

// number reads a double, int32, int64 or bool value as a float.
func number(typ byte, val []byte) (float64, bool) {
	switch typ {
	case bsonDouble:
		return math.Float64frombits(binary.LittleEndian.Uint64(val)), true
	case bsonInt32:
		return float64(int32(binary.LittleEndian.Uint32(val))), true
	case bsonInt64:
		return float64(int64(binary.LittleEndian.Uint64(val))), true
	case bsonBool:
		if val[0] != 0 {
			return 1, true
		}
		return 0, true
	}
	return 0, false
}

// validType reports whether typ is a BSON element type.
func validType(typ byte) bool {
	return typ >= 0x01 && typ <= 0x13 || typ == 0x7f || typ == 0xff
}
