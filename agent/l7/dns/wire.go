package dns

import (
	"encoding/binary"
	"net/netip"
	"strconv"
)

const (
	headerLen = 12
	// maxNameWire is the longest name on the wire (RFC 1035 2.3.4), root
	// label included; maxLabel the longest label.
	maxNameWire = 255
	maxLabel    = 63
	// maxHops bounds compression pointers followed for one name: a loop or
	// a chain longer than this is hostile.
	maxHops = 32
	// maxRRs bounds the resource records walked in one message.
	maxRRs = 4096
	// maxResult bounds response_result.
	maxResult = 256
)

// header is the fixed 12-byte DNS header.
type header struct {
	id             uint16
	flags          uint16
	qd, an, ns, ar uint16
}

func readHeader(b []byte) (h header, ok bool) {
	if len(b) < headerLen {
		return h, false
	}
	h.id = binary.BigEndian.Uint16(b)
	h.flags = binary.BigEndian.Uint16(b[2:])
	h.qd = binary.BigEndian.Uint16(b[4:])
	h.an = binary.BigEndian.Uint16(b[6:])
	h.ns = binary.BigEndian.Uint16(b[8:])
	h.ar = binary.BigEndian.Uint16(b[10:])
	return h, true
}

func (h header) qr() bool    { return h.flags&0x8000 != 0 }
func (h header) opcode() int { return int(h.flags>>11) & 0xf }
func (h header) aa() bool    { return h.flags&0x0400 != 0 }
func (h header) tc() bool    { return h.flags&0x0200 != 0 }
func (h header) z() bool     { return h.flags&0x0040 != 0 }
func (h header) rcode() int  { return int(h.flags & 0xf) }

// sane reports whether the header could be a real one: a defined opcode
// (QUERY, IQUERY, STATUS, NOTIFY, UPDATE, DSO) and the reserved Z bit clear.
// It is the framing check for DNS over TCP.
func (h header) sane() bool {
	switch h.opcode() {
	case 0, 1, 2, 4, 5, 6:
	default:
		return false
	}
	return !h.z()
}

// nameResult says how reading a name ended.
type nameResult uint8

const (
	nameOK    nameResult = iota
	nameShort            // ran past the captured bytes
	nameBad              // malformed: reserved label type, loop, too long
)

// readName decodes the possibly compressed name at off, appending its
// presentation form (no trailing dot; bytes that are not printable or are
// dots inside a label become '?') to dst. next is the offset just after the
// name where it is written. Pointers must point backwards and at most
// maxHops are followed, so hostile loops end quickly; dst grows by at most
// maxNameWire bytes.
func readName(msg []byte, off int, dst []byte) (out []byte, next int, res nameResult) {
	next = -1
	hops, wire, start := 0, 0, len(dst)
	for {
		if off >= len(msg) {
			return dst, 0, nameShort
		}
		c := int(msg[off])
		switch c & 0xc0 {
		case 0x00:
			if c == 0 {
				if next < 0 {
					next = off + 1
				}
				return dst, next, nameOK
			}
			wire += c + 1
			if wire >= maxNameWire { // the root label needs one more byte
				return dst, 0, nameBad
			}
			if off+1+c > len(msg) {
				return dst, 0, nameShort
			}
			if len(dst) > start {
				dst = append(dst, '.')
			}
			for _, ch := range msg[off+1 : off+1+c] {
				if ch <= ' ' || ch >= 0x7f || ch == '.' {
					ch = '?'
				}
				dst = append(dst, ch)
			}
			off += 1 + c
		case 0xc0:
			if off+1 >= len(msg) {
				return dst, 0, nameShort
			}
			ptr := (c&0x3f)<<8 | int(msg[off+1])
			if ptr >= off || ptr < headerLen || hops >= maxHops {
				return dst, 0, nameBad
			}
			if next < 0 {
				next = off + 2
			}
			off = ptr
			hops++
		default: // 0x40 extended and 0x80 reserved label types
			return dst, 0, nameBad
		}
	}
}

// skipName returns the offset after the name at off without following
// pointers.
func skipName(msg []byte, off int) (int, nameResult) {
	wire := 0
	for {
		if off >= len(msg) {
			return 0, nameShort
		}
		c := int(msg[off])
		switch c & 0xc0 {
		case 0x00:
			if c == 0 {
				return off + 1, nameOK
			}
			wire += c + 1
			if wire >= maxNameWire {
				return 0, nameBad
			}
			off += 1 + c
		case 0xc0:
			if off+1 >= len(msg) {
				return 0, nameShort
			}
			return off + 2, nameOK
		default:
			return 0, nameBad
		}
	}
}

// question is the first entry of the question section.
type question struct {
	name         []byte // presentation form, in the caller's buffer
	qtype, class uint16
	end          int // offset after the question
}

func readQuestion(msg []byte, dst []byte) (q question, res nameResult) {
	var next int
	q.name, next, res = readName(msg, headerLen, dst)
	if res != nameOK {
		return q, res
	}
	if next+4 > len(msg) {
		return q, nameShort
	}
	q.qtype = binary.BigEndian.Uint16(msg[next:])
	q.class = binary.BigEndian.Uint16(msg[next+2:])
	q.end = next + 4
	return q, nameOK
}

// knownClass: IN, CH, HS, NONE (updates) and ANY.
func knownClass(c uint16) bool {
	return c == 1 || c == 3 || c == 4 || c == 254 || c == 255
}

// rrWalk is what walking the record sections found.
type rrWalk struct {
	end    int        // offset after the last record walked
	res    nameResult // nameShort: ran past the captured bytes
	extRC  int        // upper 8 bits of the rcode from an OPT record
	hasOPT bool
}

// walkRRs walks the answer, authority and additional sections from off,
// calling render (when not nil) for each answer.
func walkRRs(msg []byte, off int, h header, render func(msg []byte, typ uint16, rdOff, rdLen int)) rrWalk {
	w := rrWalk{end: off}
	total := int(h.an) + int(h.ns) + int(h.ar)
	if total > maxRRs {
		w.res = nameBad
		return w
	}
	for i := 0; i < total; i++ {
		next, res := skipName(msg, off)
		if res != nameOK {
			w.res = res
			return w
		}
		if next+10 > len(msg) {
			w.res = nameShort
			return w
		}
		typ := binary.BigEndian.Uint16(msg[next:])
		ttl := binary.BigEndian.Uint32(msg[next+4:])
		rdLen := int(binary.BigEndian.Uint16(msg[next+8:]))
		rdOff := next + 10
		if typ == typeOPT && i >= int(h.an)+int(h.ns) {
			w.hasOPT = true
			w.extRC = int(ttl >> 24)
		}
		if rdOff+rdLen > len(msg) {
			if render != nil && i < int(h.an) {
				render(msg, typ, rdOff, min(rdLen, len(msg)-rdOff))
			}
			w.res = nameShort
			return w
		}
		if render != nil && i < int(h.an) {
			render(msg, typ, rdOff, rdLen)
		}
		off = rdOff + rdLen
		w.end = off
	}
	return w
}

// resultWriter renders answers as "A 1.2.3.4;CNAME x.y" into a bounded
// buffer; records that do not fit are dropped and "..." marks the cut.
type resultWriter struct {
	buf  [maxResult]byte
	n    int
	cut  bool
	name [maxNameWire + 1]byte
	tmp  [maxNameWire + 64]byte
}

func (r *resultWriter) reset() { r.n, r.cut = 0, false }

func (r *resultWriter) add(item []byte) {
	if r.cut {
		return
	}
	need := len(item)
	if r.n > 0 {
		need++
	}
	if r.n+need > len(r.buf)-3 {
		copy(r.buf[r.n:], "...")
		r.n += 3
		r.cut = true
		return
	}
	if r.n > 0 {
		r.buf[r.n] = ';'
		r.n++
	}
	r.n += copy(r.buf[r.n:], item)
}

// render formats one answer record; rdata may be cut by the capture.
func (r *resultWriter) render(msg []byte, typ uint16, rdOff, rdLen int) {
	rd := msg[rdOff : rdOff+rdLen]
	b := append(r.tmp[:0], typeName(typ)...)
	switch typ {
	case typeA:
		if len(rd) != 4 {
			break
		}
		b = append(b, ' ')
		b = netip.AddrFrom4([4]byte(rd)).AppendTo(b)
	case typeAAAA:
		if len(rd) != 16 {
			break
		}
		b = append(b, ' ')
		b = netip.AddrFrom16([16]byte(rd)).AppendTo(b)
	case typeCNAME, typeNS, typePTR, typeDNAME:
		b = r.appendName(b, msg, rdOff)
	case typeMX:
		if len(rd) < 3 {
			break
		}
		b = append(b, ' ')
		b = strconv.AppendUint(b, uint64(binary.BigEndian.Uint16(rd)), 10)
		b = r.appendName(b, msg, rdOff+2)
	case typeSRV:
		if len(rd) < 7 {
			break
		}
		for i := 0; i < 6; i += 2 {
			b = append(b, ' ')
			b = strconv.AppendUint(b, uint64(binary.BigEndian.Uint16(rd[i:])), 10)
		}
		b = r.appendName(b, msg, rdOff+6)
	case typeSVCB, typeHTTPS:
		if len(rd) < 3 {
			break
		}
		b = append(b, ' ')
		b = strconv.AppendUint(b, uint64(binary.BigEndian.Uint16(rd)), 10)
		b = r.appendName(b, msg, rdOff+2)
	case typeSOA:
		b = r.appendName(b, msg, rdOff)
	case typeTXT:
		// The first string, cut short: TXT records can be long.
		if len(rd) < 1 {
			break
		}
		s := rd[1:min(len(rd), 1+int(rd[0]))]
		s = s[:min(len(s), 32)]
		b = append(b, ' ')
		for _, c := range s {
			if c < ' ' || c >= 0x7f || c == ';' {
				c = '?'
			}
			b = append(b, c)
		}
	}
	r.add(b)
}

func (r *resultWriter) appendName(b []byte, msg []byte, off int) []byte {
	name, _, res := readName(msg, off, r.name[:0])
	if res != nameOK {
		return b
	}
	b = append(b, ' ')
	if len(name) == 0 {
		return append(b, '.')
	}
	return append(b, name...)
}
