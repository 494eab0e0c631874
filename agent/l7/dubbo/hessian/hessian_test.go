package hessian

import (
	"errors"
	"strings"
	"testing"
)

func TestString(t *testing.T) {
	long := strings.Repeat("ab", 600) // 1200 chars: 'S' form
	for _, tt := range []struct {
		name string
		in   []byte
		max  int
		want string
		null bool
		err  error
	}{
		{"short", []byte("\x05hello"), 64, "hello", false, nil},
		{"empty", []byte{0}, 64, "", false, nil},
		{"null", []byte("N"), 64, "", true, nil},
		{"medium", append([]byte{0x30, 40}, strings.Repeat("x", 40)...), 64, strings.Repeat("x", 40), false, nil},
		{"final chunk", append([]byte{'S', 0x04, 0xb0}, long...), 2000, long, false, nil},
		{"two chunks", []byte("R\x00\x02abS\x00\x01c"), 64, "abc", false, nil},
		{"utf-8 counted in chars", []byte("\x03h\xc3\xa9\xe2\x82\xac"), 64, "hé€", false, nil},
		{"supplementary is two chars", []byte("\x02\xf0\x9f\x98\x80"), 64, "😀", false, nil},
		{"kept up to max", []byte("\x05hello"), 3, "hel", false, nil},
		{"truncated", []byte("\x05hel"), 64, "hel", false, ErrShort},
		{"truncated length", []byte{0x30}, 64, "", false, ErrShort},
		{"chunk without end", []byte("R\x00\x01a"), 64, "a", false, ErrShort},
		{"not a string", []byte{0x90}, 64, "", false, ErrType},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := NewReader(tt.in)
			got, null, err := r.String(tt.max)
			if got != tt.want || null != tt.null || !errors.Is(err, tt.err) {
				t.Fatalf("got %q %v %v, want %q %v %v", got, null, err, tt.want, tt.null, tt.err)
			}
		})
	}
}

func TestInt(t *testing.T) {
	for _, tt := range []struct {
		in   []byte
		want int32
		err  error
	}{
		{[]byte{0x90}, 0, nil},
		{[]byte{0x80}, -16, nil},
		{[]byte{0xbf}, 47, nil},
		{[]byte{0xc8, 0x30}, 48, nil},
		{[]byte{0xc0, 0x00}, -2048, nil},
		{[]byte{0xd4, 0x10, 0x00}, 4096, nil},
		{[]byte{'I', 0xff, 0xff, 0xff, 0xff}, -1, nil},
		{[]byte{'I', 0, 0}, 0, ErrShort},
		{[]byte{'S'}, 0, ErrType},
	} {
		r := NewReader(tt.in)
		got, err := r.Int()
		if got != tt.want || !errors.Is(err, tt.err) {
			t.Errorf("% x: got %d %v, want %d %v", tt.in, got, err, tt.want, tt.err)
		}
	}
}

func TestClassDefAndInstance(t *testing.T) {
	in := []byte("C\x1ajava.lang.RuntimeException\x92\x0ddetailMessage\x05cause`\x04boomN")
	r := NewReader(in)
	var fields []string
	name, err := r.ClassDef(64, func(i int, f []byte) { fields = append(fields, string(f)) })
	if err != nil || name != "java.lang.RuntimeException" || strings.Join(fields, ",") != "detailMessage,cause" {
		t.Fatalf("class %q fields %q err %v", name, fields, err)
	}
	if ref, err := r.Instance(); ref != 0 || err != nil {
		t.Fatalf("instance %d %v", ref, err)
	}
	if ok, err := r.SkipSimple(); !ok || err != nil {
		t.Fatalf("skip string: %v %v", ok, err)
	}
	if !r.Null() || len(r.Rest()) != 0 {
		t.Fatal("rest")
	}
	bad := NewReader([]byte("C\x01X\xd7\xff\xff"))
	if _, err := bad.ClassDef(64, nil); err == nil {
		t.Fatal("huge field count accepted")
	}
}

func TestSkipSimple(t *testing.T) {
	for _, tt := range []struct {
		in   []byte
		ok   bool
		rest int
	}{
		{[]byte("T!"), true, 1},
		{[]byte{'L', 0, 0, 0, 0, 0, 0, 0, 1, '!'}, true, 1},
		{[]byte{0x22, 1, 2, '!'}, true, 1},
		{[]byte("H\x01aZ"), false, 4}, // a map is not skipped
		{[]byte{'D', 0, 0}, false, 0},
	} {
		r := NewReader(tt.in)
		ok, _ := r.SkipSimple()
		if ok != tt.ok || len(r.Rest()) != tt.rest {
			t.Errorf("% x: ok %v rest %d, want %v %d", tt.in, ok, len(r.Rest()), tt.ok, tt.rest)
		}
	}
}
