package mysql

import (
	"github.com/sightline-io/sightline/agent/capture"
	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/agent/l7/stream"
)

// looksCompressed: a compressed header whose payload is either raw packets
// tiling it exactly, or a zlib stream. When the bytes are exactly one plain
// packet, they are taken as plain (the login's OK is sent plain by MySQL).
func looksCompressed(b []byte) bool {
	n, raw := plen(b), plen(b[4:])
	if 4+plen(b) == len(b) {
		return false
	}
	if raw == 0 {
		end := 7 + n
		off := 7
		for off+4 <= min(len(b), end) {
			off += 4 + plen(b[off:])
		}
		return off == end || off < end && off+4 > len(b)
	}
	return n >= 2 && b[7]&0x0f == 8 && (uint16(b[7])<<8|uint16(b[8]))%31 == 0
}

// unpack decompresses one compressed frame and parses the packets in it.
func (p *Parser) unpack(dir capture.Direction, d *direction, f *stream.Frame, emit func(*l7.Message)) {
	raw := plen(f.Data[4:])
	payload := f.Data[7:]
	seg := *f.Start
	seg.Dir = dir
	seg.End = f.End.End
	if seg.End.IsZero() {
		seg.End = f.End.Start
	}
	seg.TCPSeq = f.TCPSeq
	if raw == 0 {
		seg.Data, seg.Len = payload, len(payload)+f.Missing
	} else {
		out, err := d.z.inflate(payload, raw)
		if err != nil && len(out) == 0 {
			p.stats.BadInflat++
			d.inner.Reset()
			return
		}
		p.stats.Inflated++
		seg.Data, seg.Len = out, raw
	}
	d.outerSeq = f.TCPSeq
	d.inner.Feed(&seg, innerLen, func(g *stream.Frame) bool {
		if p.phase == phaseOff {
			return false
		}
		// Offsets inside a decompressed payload are not TCP sequences:
		// the message takes its compressed frame's.
		p.packet(dir, g, d.outerSeq, emit)
		return true
	})
}

func innerLen(b []byte) (int, error) {
	if len(b) < 4 {
		return 0, nil
	}
	return 4 + plen(b), nil
}
