// Package rpctest builds real wire traffic for the Dubbo, SOFARPC (Bolt),
// bRPC (baidu_std) and KRPC parsers' tests: a small Hessian 2.0 encoder,
// frame encoders written from the public wire formats, and a test server and
// client for each protocol that run over real TCP (the servers in a separate
// process, so the eBPF agent sees their syscalls).
package rpctest

import (
	"encoding/binary"
	"unicode/utf16"
	"unicode/utf8"
)

// Hessian appends Hessian 2.0 values to a byte slice.
type Hessian struct{ B []byte }

// Null appends 'N'.
func (h *Hessian) Null() *Hessian { h.B = append(h.B, 'N'); return h }

// Bool appends 'T' or 'F'.
func (h *Hessian) Bool(v bool) *Hessian {
	if v {
		h.B = append(h.B, 'T')
	} else {
		h.B = append(h.B, 'F')
	}
	return h
}

// Int appends a 32-bit int in its shortest form.
func (h *Hessian) Int(v int32) *Hessian {
	switch {
	case v >= -16 && v <= 47:
		h.B = append(h.B, byte(0x90+v))
	case v >= -2048 && v <= 2047:
		h.B = append(h.B, byte(0xc8+(v>>8)), byte(v))
	case v >= -262144 && v <= 262143:
		h.B = append(h.B, byte(0xd4+(v>>16)), byte(v>>8), byte(v))
	default:
		h.B = append(h.B, 'I')
		h.B = binary.BigEndian.AppendUint32(h.B, uint32(v))
	}
	return h
}

// String appends s, in chunks of at most 32768 chars when long. Lengths
// count UTF-16 code units, as Java does.
func (h *Hessian) String(s string) *Hessian {
	units := func(s string) int {
		n := 0
		for _, r := range s {
			n += utf16.RuneLen(r)
		}
		return n
	}
	for {
		n := units(s)
		switch {
		case n < 32:
			h.B = append(append(h.B, byte(n)), s...)
			return h
		case n < 1024:
			h.B = append(append(h.B, byte(0x30+n>>8), byte(n)), s...)
			return h
		case n <= 32768:
			h.B = append(append(h.B, 'S', byte(n>>8), byte(n)), s...)
			return h
		}
		// A non-final chunk of 32768 units.
		i, u := 0, 0
		for u < 32768 {
			r, size := utf8.DecodeRuneInString(s[i:])
			if u+utf16.RuneLen(r) > 32768 {
				break
			}
			u += utf16.RuneLen(r)
			i += size
		}
		h.B = append(append(h.B, 'R', byte(u>>8), byte(u)), s[:i]...)
		s = s[i:]
	}
}

// Map appends an untyped map of string keys and values, in the order given
// (pairs: k1, v1, k2, v2 ...).
func (h *Hessian) Map(pairs ...string) *Hessian {
	h.B = append(h.B, 'H')
	for i := 0; i+1 < len(pairs); i += 2 {
		h.String(pairs[i]).String(pairs[i+1])
	}
	h.B = append(h.B, 'Z')
	return h
}

// ClassDef appends a class definition.
func (h *Hessian) ClassDef(name string, fields ...string) *Hessian {
	h.B = append(h.B, 'C')
	h.String(name).Int(int32(len(fields)))
	for _, f := range fields {
		h.String(f)
	}
	return h
}

// Object appends the start of an instance of class definition ref; its
// field values follow.
func (h *Hessian) Object(ref int) *Hessian {
	if ref < 16 {
		h.B = append(h.B, byte(0x60+ref))
	} else {
		h.B = append(h.B, 'O')
		h.Int(int32(ref))
	}
	return h
}
