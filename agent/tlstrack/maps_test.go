package tlstrack

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestParseMaps(t *testing.T) {
	ssl := "7f1c2a400000-7f1c2a41b000 r--p 00000000 fd:01 1234567                    /usr/lib/x86_64-linux-gnu/libssl.so.3\n"
	sslX := "7f1c2a41b000-7f1c2a476000 r-xp 0001b000 fd:01 1234567                    /usr/lib/x86_64-linux-gnu/libssl.so.3\n"
	nss := "7f1c2b000000-7f1c2b010000 r-xp 00000000 fd:01 99 /usr/lib/x86_64-linux-gnu/libssl3.so\n"
	long := strings.Repeat("x", 3*maxMapsLine)
	sslID := fileID{dev: unix.Mkdev(0xfd, 1), ino: 1234567}
	cases := []struct {
		name      string
		in        string
		limit     int64
		want      []mapping
		truncated bool
	}{
		{name: "empty"},
		{name: "one library, two segments", in: ssl + sslX,
			want: []mapping{{rng: "7f1c2a400000-7f1c2a41b000", id: sslID, path: "/usr/lib/x86_64-linux-gnu/libssl.so.3"}}},
		{name: "nss is not openssl", in: nss},
		{name: "anonymous and special mappings", in: "7ffd1000-7ffd2000 rw-p 00000000 00:00 0                          [stack]\n" +
			"55d000-55e000 rw-p 00000000 00:00 0 \n7f00-7f01 r--p 00000000 00:05 0 /libssl.so.3\n"},
		{name: "path with spaces, deleted", in: "1000-2000 r-xp 00000000 08:02 42 /opt/my app/libssl.so.1.1 (deleted)\n",
			want: []mapping{{rng: "1000-2000", id: fileID{dev: unix.Mkdev(8, 2), ino: 42}, path: "/opt/my app/libssl.so.1.1", deleted: true}}},
		{name: "garbage lines", in: "garbage\n\n-\nzz-yy r-xp 0 fd:01 1 /libssl.so\n1000-2000 r-xp 0 fd01 1 /libssl.so\n" +
			"1000-2000 r-xp 0 fd:01 notanumber /libssl.so\n1000-2000 r-xp 0 fd:01 7 relative/libssl.so\n\x00\xff\n" + ssl,
			want: []mapping{{rng: "7f1c2a400000-7f1c2a41b000", id: sslID, path: "/usr/lib/x86_64-linux-gnu/libssl.so.3"}}},
		{name: "overlong line skipped", in: "1000-2000 r-xp 0 fd:01 5 /" + long + "/libssl.so\n" + ssl,
			want: []mapping{{rng: "7f1c2a400000-7f1c2a41b000", id: sslID, path: "/usr/lib/x86_64-linux-gnu/libssl.so.3"}}},
		{name: "no final newline", in: strings.TrimSuffix(ssl, "\n"),
			want: []mapping{{rng: "7f1c2a400000-7f1c2a41b000", id: sslID, path: "/usr/lib/x86_64-linux-gnu/libssl.so.3"}}},
		{name: "huge file truncated", in: strings.Repeat(nss, 1000) + ssl, limit: int64(len(nss) * 500), truncated: true},
		{name: "limit exactly the size", in: ssl, limit: int64(len(ssl)),
			want: []mapping{{rng: "7f1c2a400000-7f1c2a41b000", id: sslID, path: "/usr/lib/x86_64-linux-gnu/libssl.so.3"}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			limit := c.limit
			if limit == 0 {
				limit = maxMapsBytes
			}
			got, truncated, err := parseMaps(strings.NewReader(c.in), limit, isLibSSL)
			if err != nil {
				t.Fatal(err)
			}
			if truncated != c.truncated {
				t.Errorf("truncated %t", truncated)
			}
			if len(got) != len(c.want) {
				t.Fatalf("got %+v, want %+v", got, c.want)
			}
			for i := range got {
				if got[i] != c.want[i] {
					t.Errorf("got %+v, want %+v", got[i], c.want[i])
				}
			}
		})
	}
}

// TestParseMapsBounded: many distinct libraries stop at maxCandidates.
func TestParseMapsBounded(t *testing.T) {
	var b bytes.Buffer
	for i := range 3 * maxCandidates {
		b.WriteString("1000-2000 r-xp 00000000 fd:01 ")
		b.WriteString(strings.Repeat("1", 1) + string(rune('0'+i%10)) + string(rune('0'+i/10)))
		b.WriteString(" /lib/libssl.so.3\n")
	}
	got, truncated, err := parseMaps(&b, maxMapsBytes, isLibSSL)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != maxCandidates || !truncated {
		t.Errorf("%d mappings, truncated %t", len(got), truncated)
	}
}

// TestOpenMapped: map_files first, /proc/PID/root + path when map_files is
// not readable, nothing for a deleted file without map_files.
func TestOpenMapped(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "map_files"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/", filepath.Join(dir, "root")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/bin/sh", filepath.Join(dir, "map_files", "1000-2000")); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		m    mapping
		want string // file opened, "" for an error
	}{
		{"map_files", mapping{rng: "1000-2000", path: libssl3}, "/bin/sh"},
		{"root fallback", mapping{rng: "3000-4000", path: libssl3}, libssl3},
		{"deleted", mapping{rng: "3000-4000", path: libssl3, deleted: true}, ""},
		{"missing", mapping{rng: "3000-4000", path: "/nonexistent/libssl.so.3"}, ""},
	} {
		f, err := openMapped(dir, c.m)
		if c.want == "" {
			if err == nil {
				f.Close()
				t.Errorf("%s: opened", c.name)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		got, _ := f.Stat()
		want, _ := os.Stat(c.want)
		f.Close()
		if !os.SameFile(got, want) {
			t.Errorf("%s: opened the wrong file", c.name)
		}
	}
}
