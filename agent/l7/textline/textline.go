// Package textline finds the lines of line-based protocols (Memcached text,
// NATS, Redis headers and inline commands) across segment boundaries with
// bounded buffering.
package textline

import "bytes"

// Buffer carries a line that a segment ends in the middle of over to the
// next, keeping at most max bytes of it: a longer line's tail is skipped,
// its end is still found. The zero value is ready to use.
type Buffer struct {
	line []byte // the part of the current line kept so far
	over bool   // the current line overflowed max: its tail is skipped
}

// Scan looks for the end ('\n') of the current line in data. When it finds
// one, it returns the line, without the "\n" and a "\r" before it, and the
// bytes of data consumed, the "\n" included; a line that began in earlier
// data comes whole but cut to max bytes. Otherwise it keeps up to max bytes
// of the line, consumes all of data and returns ok false.
//
// The line may alias data or the Buffer's storage; it stays valid until the
// next Scan.
func (b *Buffer) Scan(data []byte, max int) (line []byte, n int, ok bool) {
	i := bytes.IndexByte(data, '\n')
	if i < 0 {
		if room := max - len(b.line); room > 0 {
			b.line = append(b.line, data[:min(len(data), room)]...)
		}
		if len(b.line)+len(data) > max {
			b.over = true
		}
		return nil, len(data), false
	}
	line = data[:i]
	if len(b.line) > 0 || b.over {
		if room := max - len(b.line); room > 0 {
			b.line = append(b.line, line[:min(len(line), room)]...)
		}
		line = b.line
	}
	b.Reset()
	return bytes.TrimSuffix(line, []byte{'\r'}), i + 1, true
}

// Reset drops the part of a line kept.
func (b *Buffer) Reset() { b.line, b.over = b.line[:0], false }

// Len is the number of bytes of the current line kept.
func (b *Buffer) Len() int { return len(b.line) }
