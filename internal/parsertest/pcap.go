package parsertest

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
)

// CutPcap writes a copy of a pcap file without its first n packets (in a
// temporary directory of t) and returns its path: replaying it shows the
// connections from their middle.
func CutPcap(t testing.TB, path string, n int) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < 24 {
		t.Fatalf("%s: not a pcap file", path)
	}
	var order binary.ByteOrder = binary.LittleEndian
	if m := binary.BigEndian.Uint32(b); m == 0xa1b2c3d4 || m == 0xa1b23c4d {
		order = binary.BigEndian
	}
	off := 24
	for i := 0; i < n && off+16 <= len(b); i++ {
		off += 16 + int(order.Uint32(b[off+8:]))
	}
	if off > len(b) {
		t.Fatalf("%s: truncated record", path)
	}
	out := filepath.Join(t.TempDir(), "cut.pcap")
	if err := os.WriteFile(out, append(append([]byte(nil), b[:24]...), b[off:]...), 0o644); err != nil {
		t.Fatal(err)
	}
	return out
}
