// Package hessian reads the few Hessian 2.0 values RPC parsers need from a
// possibly truncated capture: strings, ints, null, booleans and class
// definitions. It is not a general decoder: there is no object graph, no
// reference table and no allocation beyond what the caller asks for, and every
// read is bounded by the input.
package hessian

import "errors"

var (
	// ErrShort means the value runs past the captured bytes.
	ErrShort = errors.New("hessian: truncated")
	// ErrType means the next value is not of the type asked for.
	ErrType = errors.New("hessian: unexpected type")
)

// Reader reads values from b in order. The zero value reads nothing.
type Reader struct {
	b   []byte
	off int
}

// NewReader returns a Reader over b.
func NewReader(b []byte) Reader { return Reader{b: b} }

// Offset is how many bytes have been consumed.
func (r *Reader) Offset() int { return r.off }

// Rest returns the bytes not yet consumed.
func (r *Reader) Rest() []byte { return r.b[r.off:] }

// Peek returns the next tag byte without consuming it.
func (r *Reader) Peek() (byte, bool) {
	if r.off >= len(r.b) {
		return 0, false
	}
	return r.b[r.off], true
}

// IsStringTag reports whether c starts a string (or a string chunk).
func IsStringTag(c byte) bool {
	return c <= 0x1f || (c >= 0x30 && c <= 0x33) || c == 'S' || c == 'R'
}

// AppendString appends the next string's UTF-8 bytes to dst, up to max
// bytes (the rest of the string is consumed but not copied). null reports a
// Hessian null ('N'). A string cut by the end of the capture returns what was
// read with ErrShort.
func (r *Reader) AppendString(dst []byte, max int) (out []byte, null bool, err error) {
	if r.off >= len(r.b) {
		return dst, false, ErrShort
	}
	if r.b[r.off] == 'N' {
		r.off++
		return dst, true, nil
	}
	for {
		if r.off >= len(r.b) {
			return dst, false, ErrShort
		}
		c := r.b[r.off]
		var chars int
		final := true
		switch {
		case c <= 0x1f:
			chars = int(c)
			r.off++
		case c >= 0x30 && c <= 0x33:
			if r.off+1 >= len(r.b) {
				return dst, false, ErrShort
			}
			chars = int(c-0x30)<<8 | int(r.b[r.off+1])
			r.off += 2
		case c == 'S' || c == 'R':
			if r.off+2 >= len(r.b) {
				return dst, false, ErrShort
			}
			chars = int(r.b[r.off+1])<<8 | int(r.b[r.off+2])
			r.off += 3
			final = c == 'S'
		default:
			return dst, false, ErrType
		}
		n, ok := utf8Span(r.b[r.off:], chars)
		take := min(n, max-len(dst))
		if take > 0 {
			dst = append(dst, r.b[r.off:r.off+take]...)
		}
		r.off += n
		if !ok {
			return dst, false, ErrShort
		}
		if final {
			return dst, false, nil
		}
	}
}

// String reads the next string (at most max bytes are kept).
func (r *Reader) String(max int) (s string, null bool, err error) {
	var buf [128]byte
	b, null, err := r.AppendString(buf[:0], max)
	return string(b), null, err
}

// utf8Span returns how many bytes of b hold chars UTF-16 code units of
// UTF-8 text (Hessian counts string lengths in Java chars), and false when b
// ends first.
func utf8Span(b []byte, chars int) (int, bool) {
	i := 0
	for chars > 0 {
		if i >= len(b) {
			return len(b), false
		}
		c := b[i]
		switch {
		case c < 0x80:
			i++
		case c&0xe0 == 0xc0:
			i += 2
		case c&0xf0 == 0xe0:
			i += 3
		case c&0xf8 == 0xf0:
			i += 4
			chars-- // a supplementary character is two Java chars
		default:
			i++ // invalid lead byte: count it as one char
		}
		chars--
	}
	if i > len(b) {
		return len(b), false
	}
	return i, true
}

// Int reads the next 32-bit int in any of its encodings.
func (r *Reader) Int() (int32, error) {
	if r.off >= len(r.b) {
		return 0, ErrShort
	}
	c := r.b[r.off]
	need := 0
	switch {
	case c >= 0x80 && c <= 0xbf:
		r.off++
		return int32(c) - 0x90, nil
	case c >= 0xc0 && c <= 0xcf:
		need = 2
	case c >= 0xd0 && c <= 0xd7:
		need = 3
	case c == 'I':
		need = 5
	default:
		return 0, ErrType
	}
	if r.off+need > len(r.b) {
		return 0, ErrShort
	}
	b := r.b[r.off : r.off+need]
	r.off += need
	switch need {
	case 2:
		return (int32(c)-0xc8)<<8 | int32(b[1]), nil
	case 3:
		return (int32(c)-0xd4)<<16 | int32(b[1])<<8 | int32(b[2]), nil
	}
	return int32(uint32(b[1])<<24 | uint32(b[2])<<16 | uint32(b[3])<<8 | uint32(b[4])), nil
}

// Bool reads 'T' or 'F'.
func (r *Reader) Bool() (bool, error) {
	if r.off >= len(r.b) {
		return false, ErrShort
	}
	switch r.b[r.off] {
	case 'T':
		r.off++
		return true, nil
	case 'F':
		r.off++
		return false, nil
	}
	return false, ErrType
}

// Null consumes an 'N' if it is next.
func (r *Reader) Null() bool {
	if r.off < len(r.b) && r.b[r.off] == 'N' {
		r.off++
		return true
	}
	return false
}

// ClassDef reads a class definition ('C', name, field count, field names),
// calling field for each field name in order (the slice is valid only during
// the call). It returns the class name, at most max bytes of it.
func (r *Reader) ClassDef(max int, field func(i int, name []byte)) (string, error) {
	if r.off >= len(r.b) {
		return "", ErrShort
	}
	if r.b[r.off] != 'C' {
		return "", ErrType
	}
	r.off++
	name, _, err := r.String(max)
	if err != nil {
		return name, err
	}
	n, err := r.Int()
	if err != nil {
		return name, err
	}
	if n < 0 || n > 256 {
		return name, ErrType
	}
	var buf [64]byte
	for i := range int(n) {
		f, _, err := r.AppendString(buf[:0], len(buf))
		if err != nil {
			return name, err
		}
		if field != nil {
			field(i, f)
		}
	}
	return name, nil
}

// Instance consumes the start of an object instance ('O' + int, or the
// compact 0x60-0x6f form) and returns its class definition index.
func (r *Reader) Instance() (int, error) {
	if r.off >= len(r.b) {
		return 0, ErrShort
	}
	c := r.b[r.off]
	if c >= 0x60 && c <= 0x6f {
		r.off++
		return int(c - 0x60), nil
	}
	if c != 'O' {
		return 0, ErrType
	}
	r.off++
	n, err := r.Int()
	return int(n), err
}

// SkipSimple skips the next value if it is a scalar (null, bool, int, long,
// double, string, binary, date) and reports whether it did; objects, lists
// and maps are not skipped (false, nil).
func (r *Reader) SkipSimple() (bool, error) {
	c, ok := r.Peek()
	if !ok {
		return false, ErrShort
	}
	need := 0
	switch {
	case c == 'N' || c == 'T' || c == 'F':
		need = 1
	case c >= 0x80 && c <= 0xbf, c >= 0xd8 && c <= 0xef, c == 0x5b, c == 0x5c:
		need = 1 // compact int, compact long, double 0.0 / 1.0
	case c >= 0xc0 && c <= 0xcf, c >= 0xf0, c == 0x5d:
		need = 2
	case c >= 0xd0 && c <= 0xd7, c >= 0x38 && c <= 0x3f, c == 0x5e:
		need = 3
	case c == 'I', c == 0x59, c == 0x5f, c == 0x4b:
		need = 5
	case c == 'L', c == 'D', c == 0x4a:
		need = 9
	case IsStringTag(c):
		_, _, err := r.AppendString(nil, 0)
		return err == nil, err
	case c >= 0x20 && c <= 0x2f:
		need = 1 + int(c-0x20) // short binary
	case c >= 0x34 && c <= 0x37:
		if r.off+1 >= len(r.b) {
			return false, ErrShort
		}
		need = 2 + (int(c-0x34)<<8 | int(r.b[r.off+1]))
	default:
		return false, nil
	}
	if r.off+need > len(r.b) {
		r.off = len(r.b)
		return false, ErrShort
	}
	r.off += need
	return true, nil
}
