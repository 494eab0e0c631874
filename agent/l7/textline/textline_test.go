package textline

import (
	"strings"
	"testing"
)

// scanAll feeds pieces to b and returns the lines found and the bytes
// consumed from each piece.
func scanAll(b *Buffer, max int, pieces ...string) (lines []string, consumed []int) {
	for _, p := range pieces {
		data, used := []byte(p), 0
		for len(data) > 0 {
			line, n, ok := b.Scan(data, max)
			used += n
			data = data[n:]
			if ok {
				lines = append(lines, string(line))
			}
		}
		consumed = append(consumed, used)
	}
	return lines, consumed
}

func TestScan(t *testing.T) {
	for _, c := range []struct {
		name   string
		max    int
		pieces []string
		want   []string
	}{
		{"one segment", 16, []string{"get a\r\nset b\r\n"}, []string{"get a", "set b"}},
		{"bare LF and empty lines", 16, []string{"a\n\r\n\n"}, []string{"a", "", ""}},
		{"split lines", 16, []string{"ge", "t a\r", "\nse", "t b\r\n"}, []string{"get a", "set b"}},
		{"long line in one segment is not cut", 4, []string{"abcdefgh\r\nxy\r\n"}, []string{"abcdefgh", "xy"}},
		{"long line carried over is cut", 4, []string{"abc", "defgh\r\nxy\r\n"}, []string{"abcd", "xy"}},
		{"overflow in the first piece", 4, []string{"abcdefg", "h\r\nxy\r\n"}, []string{"abcd", "xy"}},
		{"overflow ends at the boundary", 4, []string{"abcd", "\r\n"}, []string{"abcd"}},
		{"exactly max then more", 4, []string{"abcd", "e", "\n"}, []string{"abcd"}},
		{"CR kept when cut", 3, []string{"ab", "c\r\n"}, []string{"abc"}},
	} {
		var b Buffer
		got, consumed := scanAll(&b, c.max, c.pieces...)
		if strings.Join(got, "|") != strings.Join(c.want, "|") {
			t.Errorf("%s: got %q, want %q", c.name, got, c.want)
		}
		for i, n := range consumed {
			if n != len(c.pieces[i]) {
				t.Errorf("%s: piece %d consumed %d of %d", c.name, i, n, len(c.pieces[i]))
			}
		}
		if b.Len() != 0 {
			t.Errorf("%s: %d bytes left kept", c.name, b.Len())
		}
	}
}

func TestBounded(t *testing.T) {
	var b Buffer
	for i := 0; i < 100; i++ {
		if _, n, ok := b.Scan([]byte(strings.Repeat("x", 100)), 64); ok || n != 100 {
			t.Fatalf("found a line in %d bytes without LF", n)
		}
		if b.Len() > 64 {
			t.Fatalf("kept %d bytes, max 64", b.Len())
		}
	}
	line, n, ok := b.Scan([]byte("y\nz"), 64)
	if !ok || n != 2 || len(line) != 64 {
		t.Fatalf("got %d-byte line, consumed %d, ok %v", len(line), n, ok)
	}
	b.Scan([]byte("partial"), 64)
	b.Reset()
	if line, _, _ := b.Scan([]byte("w\r\n"), 64); string(line) != "w" || b.Len() != 0 {
		t.Fatalf("after Reset: %q, kept %d", line, b.Len())
	}
}
