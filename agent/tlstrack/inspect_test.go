package tlstrack

import (
	"bytes"
	"debug/elf"
	"errors"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/sightline-io/sightline/agent/capture/socktrace"
)

// wantProbes resolves the four functions independently of findSymbols:
// debug/elf's symbol lists and the section holding each address.
func wantProbes(t *testing.T, path string, dynamic bool) socktrace.SSLProbes {
	t.Helper()
	ef, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ef.Close()
	syms, err := ef.Symbols()
	if dynamic {
		syms, err = ef.DynamicSymbols()
	}
	if err != nil {
		t.Fatal(err)
	}
	off := func(name string) uint64 {
		for _, s := range syms {
			if s.Name != name || s.Section == elf.SHN_UNDEF {
				continue
			}
			sec := ef.Sections[s.Section]
			return s.Value - sec.Addr + sec.Offset
		}
		t.Fatalf("%s: no %s", path, name)
		return 0
	}
	return socktrace.SSLProbes{Read: off("SSL_read"), Write: off("SSL_write"), ReadEx: off("SSL_read_ex"), WriteEx: off("SSL_write_ex")}
}

func inspectPath(t *testing.T, path string, exe bool) inspection {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if exe {
		return inspectExe("/proc/self/fd/"+strconv.Itoa(int(f.Fd())), f)
	}
	return inspectLib(f, path[strings.LastIndexByte(path, '/')+1:])
}

// TestLibSSL3: the real Debian libssl.so.3, checked against debug/elf and
// against nm -D (whose values are virtual addresses: the offsets are the
// same minus the text segment's vaddr-offset difference).
func TestLibSSL3(t *testing.T) {
	in := inspectPath(t, libssl3, false)
	if in.err != nil || in.noTLS || in.kind != KindOpenSSL {
		t.Fatalf("inspection %+v", in)
	}
	if want := wantProbes(t, libssl3, true); in.ssl != want {
		t.Errorf("probes %+v, want %+v", in.ssl, want)
	}
	if in.version != "3" {
		t.Errorf("version %q, want 3 (from the file name)", in.version)
	}
	ef, err := elf.Open(libssl3)
	if err != nil {
		t.Fatal(err)
	}
	defer ef.Close()
	var text *elf.Prog
	for _, p := range ef.Progs {
		if p.Type == elf.PT_LOAD && p.Flags&elf.PF_X != 0 {
			text = p
		}
	}
	out, err := exec.Command("nm", "-D", "--defined-only", libssl3).Output()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]uint64{"SSL_read": in.ssl.Read, "SSL_write": in.ssl.Write, "SSL_read_ex": in.ssl.ReadEx, "SSL_write_ex": in.ssl.WriteEx}
	seen := 0
	for _, line := range readLines(string(out)) {
		f := strings.Fields(line) // "0000000000035430 T SSL_read@@OPENSSL_3.0.0"
		if len(f) != 3 {
			continue
		}
		name, _, _ := strings.Cut(f[2], "@")
		off, ok := got[name]
		if !ok {
			continue
		}
		vaddr, err := strconv.ParseUint(f[0], 16, 64)
		if err != nil {
			t.Fatal(err)
		}
		if want := vaddr - text.Vaddr + text.Off; off != want {
			t.Errorf("%s at %#x, nm says %#x", name, off, want)
		}
		seen++
	}
	if seen != 4 {
		t.Errorf("nm listed %d of the 4 functions:\n%s", seen, out)
	}
}

// TestStaticOpenSSL: a program linking libssl.a/libcrypto.a is covered
// through its .symtab; its stripped copy is recognised as TLS but not
// covered; the same program linked to libssl.so is left to the library.
func TestStaticOpenSSL(t *testing.T) {
	b := programs(t)
	in := inspectPath(t, b.static, true)
	if in.err != nil || in.kind != KindStaticOpenSSL {
		t.Fatalf("static: %+v", in)
	}
	if want := wantProbes(t, b.static, false); in.ssl != want {
		t.Errorf("static probes %+v, want %+v", in.ssl, want)
	}
	if !strings.HasPrefix(in.version, "OpenSSL 3.") {
		t.Errorf("static version %q", in.version)
	}

	in = inspectPath(t, b.staticStripped, true)
	if in.noTLS || in.failed || !errors.Is(in.err, errNoSSLSymbols) || !strings.HasPrefix(in.err.Error(), "no SSL symbols") {
		t.Errorf("stripped: %+v", in)
	}
	if !strings.HasPrefix(in.version, "OpenSSL 3.") {
		t.Errorf("stripped version %q", in.version)
	}

	for _, p := range []string{b.dynamic, "/bin/sh", "/usr/bin/openssl"} {
		if in := inspectPath(t, p, true); !in.noTLS {
			t.Errorf("%s: %+v, want no TLS in the executable", p, in)
		}
	}
}

// TestGoTLS: a Go program using crypto/tls, with and without symbols.
func TestGoTLS(t *testing.T) {
	b := programs(t)
	var probes []socktrace.GoTLSProbes
	for _, p := range []string{b.goTLS, b.goTLSStripped} {
		in := inspectPath(t, p, true)
		if in.err != nil || in.kind != KindGo {
			t.Fatalf("%s: %+v", p, in)
		}
		g := in.goTLS
		if g.Read == 0 || g.Write == 0 || len(g.ReadReturns) == 0 || len(g.WriteReturns) == 0 || g.PollFDSysfd == 0 {
			t.Errorf("%s: probes %+v", p, g)
		}
		if !strings.HasPrefix(in.version, "go1.") {
			t.Errorf("%s: version %q", p, in.version)
		}
		for _, r := range append(append([]uint64{}, g.ReadReturns...), g.WriteReturns...) {
			if r <= min(g.Read, g.Write) {
				t.Errorf("%s: return at %#x before the entries", p, r)
			}
		}
		probes = append(probes, g)
	}
	if probes[0].ConnConn != probes[1].ConnConn || probes[0].PollFDSysfd != probes[1].PollFDSysfd {
		t.Errorf("struct offsets differ between the stripped and unstripped builds: %+v vs %+v", probes[0], probes[1])
	}
	if in := inspectPath(t, b.goNoTLS, true); !in.noTLS {
		t.Errorf("go without crypto/tls: %+v, want no TLS", in)
	}
}

// TestVersionedSymbols: of two versions of SSL_read, the default one
// ("@@") is probed, in .dynsym and in .symtab alike; and its .symtab alone
// (no .dynsym: the versioned names) resolves the same.
func TestVersionedSymbols(t *testing.T) {
	b := programs(t)
	out, err := exec.Command("nm", "-D", "--defined-only", b.versioned).Output()
	if err != nil {
		t.Fatal(err)
	}
	var def, hidden uint64
	for _, line := range readLines(string(out)) {
		f := strings.Fields(line)
		if len(f) != 3 {
			continue
		}
		v, _ := strconv.ParseUint(f[0], 16, 64)
		switch f[2] {
		case "SSL_read@@OSSL_2":
			def = v
		case "SSL_read@OSSL_1":
			hidden = v
		}
	}
	if def == 0 || hidden == 0 || def == hidden {
		t.Fatalf("nm -D:\n%s", out)
	}
	f, err := os.Open(b.versioned)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ef, err := openELF(f)
	if err != nil {
		t.Fatal(err)
	}
	want, err := fileOffset(ef, def)
	if err != nil {
		t.Fatal(err)
	}
	in := inspectPath(t, b.versioned, false)
	if in.err != nil || in.ssl.Read != want || in.ssl.Write == 0 || in.ssl.ReadEx != 0 || in.version != "9" {
		t.Errorf("inspection %+v, want SSL_read at %#x", in, want)
	}
	// Whatever their order in the tables: a copy with the two SSL_read
	// entries swapped, in .dynsym (and the version table) and in .symtab.
	data, err := os.ReadFile(b.versioned)
	if err != nil {
		t.Fatal(err)
	}
	swapped := 0
	for _, sec := range ef.Sections {
		if sec.Type != elf.SHT_DYNSYM && sec.Type != elf.SHT_SYMTAB {
			continue
		}
		strs := ef.Sections[sec.Link]
		var idx []int
		for i := 0; (i+1)*sym64Size <= int(sec.Size); i++ {
			e := data[int(sec.Offset)+i*sym64Size:]
			name := data[int(strs.Offset)+int(ef.ByteOrder.Uint32(e)):]
			if bytes.HasPrefix(name, []byte("SSL_read\x00")) || bytes.HasPrefix(name, []byte("SSL_read@")) {
				idx = append(idx, i)
			}
		}
		if len(idx) != 2 {
			t.Fatalf("%s: SSL_read entries %v", sec.Name, idx)
		}
		swap := func(off, size int) {
			a, b := off+idx[0]*size, off+idx[1]*size
			tmp := slices.Clone(data[a : a+size])
			copy(data[a:a+size], data[b:b+size])
			copy(data[b:b+size], tmp)
		}
		swap(int(sec.Offset), sym64Size)
		if sec.Type == elf.SHT_DYNSYM {
			swap(int(ef.Section(".gnu.version").Offset), 2)
		}
		swapped++
	}
	if swapped != 2 {
		t.Fatalf("%d symbol tables", swapped)
	}
	ef2, err := openELF(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	syms, err := findSymbols(bytes.NewReader(data), ef2, sslNames)
	if err != nil {
		t.Fatal(err)
	}
	if syms.defined[symRead] != def {
		t.Errorf("swapped entries: SSL_read at %#x, want %#x (the hidden one is at %#x)", syms.defined[symRead], def, hidden)
	}
	// The .symtab alone: its names carry the versions.
	for _, s := range ef2.Sections {
		if s.Type == elf.SHT_DYNSYM || s.Type == elf.SHT_GNU_VERSYM {
			s.Type = elf.SHT_NULL
		}
	}
	syms, err = findSymbols(bytes.NewReader(data), ef2, sslNames)
	if err != nil {
		t.Fatal(err)
	}
	if syms.defined[symRead] != def || !syms.hasSymtab {
		t.Errorf(".symtab only: SSL_read at %#x, want %#x (the hidden one is at %#x)", syms.defined[symRead], def, hidden)
	}
}

// TestLibNames: which mapped names count as OpenSSL-API libraries.
func TestLibNames(t *testing.T) {
	for _, c := range []struct {
		path string
		want bool
	}{
		{"/usr/lib/x86_64-linux-gnu/libssl.so.3", true},
		{"/usr/lib/x86_64-linux-gnu/libssl.so.1.1", true},
		{"/opt/boringssl/lib/libssl.so", true},
		{"/usr/lib/x86_64-linux-gnu/libssl3.so", false}, // NSS
		{"/usr/lib/libssl.a", false},
		{"/usr/lib/libcrypto.so.3", false},
		{"libssl.so", true},
	} {
		if got := isLibSSL(c.path); got != c.want {
			t.Errorf("isLibSSL(%q) = %t", c.path, got)
		}
	}
}

// TestVersionText: version strings as libraries compile them in.
func TestVersionText(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"\x00OpenSSL 3.0.19 27 Jan 2026\x00", "OpenSSL 3.0.19"},
		{"\x00OpenSSL 1.1.1w  11 Sep 2023\x00", "OpenSSL 1.1.1w"},
		{"\x00LibreSSL 3.8.2\x00", "LibreSSL 3.8.2"},
		{"OpenSSL 1.1.1 (compatible; BoringSSL)", "BoringSSL"},
		{"built with OpenSSL %s\x00", ""},
		{"OpenSSL 3.\x00", ""},
		{"OpenSSL ", ""},
		{"OpenSSL 1.2.3.4", ""},
		{"", ""},
	} {
		if got := versionIn([]byte(c.in)); got != c.want {
			t.Errorf("versionIn(%q) = %q, want %q", c.in, got, c.want)
		}
	}
	for _, c := range []struct{ in, want string }{{"libssl.so.3", "3"}, {"libssl.so.1.1", "1.1"}, {"libssl.so", ""}} {
		if got := sonameVersion(c.in); got != c.want {
			t.Errorf("sonameVersion(%q) = %q", c.in, got)
		}
	}
}

// TestScanStrtab: names found wherever they start, also across chunk
// boundaries and as merged suffixes, followed by NUL or '@' only.
func TestScanStrtab(t *testing.T) {
	var b bytes.Buffer
	b.WriteString("\x00SSL_read_early_data\x00")
	b.WriteString("BIO_SSL_read\x00") // merged suffix: SSL_read at offset of 'S'
	b.Write(bytes.Repeat([]byte{'x'}, chunkSize-b.Len()-3))
	b.WriteString("\x00SSL_write@@OPENSSL_3.0.0\x00") // crosses the chunk boundary
	b.WriteString("SSL_write_ex@OPENSSL_1.1\x00")
	b.WriteString("SSL_read_ex") // at EOF without NUL: not a name
	hits, err := scanStrtab(bytes.NewReader(b.Bytes()), sslNames)
	if err != nil {
		t.Fatal(err)
	}
	want := map[uint32]strHit{
		uint32(bytes.Index(b.Bytes(), []byte("BIO_SSL_read")) + 4): {name: "SSL_read"},
		uint32(bytes.Index(b.Bytes(), []byte("SSL_write@"))):       {name: "SSL_write"},
		uint32(bytes.Index(b.Bytes(), []byte("SSL_write_ex@"))):    {name: "SSL_write_ex", hiddenVersion: true},
	}
	if len(hits) != len(want) {
		t.Fatalf("hits %v, want %v", hits, want)
	}
	for off, h := range want {
		if hits[off] != h {
			t.Errorf("hits %v, want %v", hits, want)
		}
	}
}

// TestGarbageFiles: files that are not ELF, or truncated ELF, are failures
// with a reason, never a panic.
func TestGarbageFiles(t *testing.T) {
	data, err := os.ReadFile(libssl3)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for name, content := range map[string][]byte{
		"empty":     nil,
		"text":      []byte("#!/bin/sh\necho hi\n"),
		"truncated": data[:4096],
		"header":    data[:64],
		"half":      data[:len(data)/2],
	} {
		p := dir + "/libssl.so." + name
		if err := os.WriteFile(p, content, 0o644); err != nil {
			t.Fatal(err)
		}
		in := inspectPath(t, p, false)
		if in.err == nil || in.noTLS {
			t.Errorf("%s: %+v, want a failure", name, in)
		}
		if in := inspectPath(t, p, true); in.err == nil && !in.noTLS {
			t.Errorf("%s as executable: %+v", name, in)
		}
	}
}
