package tlstrack

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
)

// Bounds on what one ELF file may cost to inspect.
const (
	// maxSymbolBytes bounds the symbol and string tables read (streamed in
	// chunks, never held whole).
	maxSymbolBytes = 1 << 30
	// maxRodataScan bounds the bytes of .rodata searched for version
	// strings.
	maxRodataScan = 64 << 20
	// maxNameHits bounds the string-table offsets remembered per name
	// (string merging can make several symbols share a suffix).
	maxNameHits = 64
	chunkSize   = 64 << 10
	sym64Size   = 24
)

// The OpenSSL API functions probed.
const (
	symRead    = "SSL_read"
	symWrite   = "SSL_write"
	symReadEx  = "SSL_read_ex"
	symWriteEx = "SSL_write_ex"
)

var sslNames = []string{symRead, symWrite, symReadEx, symWriteEx}

// errNoSSLSymbols is the reason a TLS-looking file cannot be probed: its
// symbol tables do not define SSL_read and SSL_write (stripped).
var errNoSSLSymbols = errors.New("no SSL symbols")

// symbols is what the symbol tables of one file say about the wanted names.
type symbols struct {
	// defined maps a name to the virtual address of its definition (a
	// function with a non-zero value).
	defined map[string]uint64
	// imported is set when a wanted name is an undefined reference: the
	// file calls a shared library's function.
	imported bool
	// hasSymtab is set when the file has a .symtab (not stripped).
	hasSymtab bool
}

// elfMachine is the ELF machine of the agent's architecture: probes read
// registers by this ABI, so other machines are not probed.
func elfMachine() elf.Machine {
	switch runtime.GOARCH {
	case "arm64":
		return elf.EM_AARCH64
	default:
		return elf.EM_X86_64
	}
}

// openELF parses the headers of r (section and program headers only).
func openELF(r io.ReaderAt) (ef *elf.File, err error) {
	defer func() {
		if p := recover(); p != nil {
			ef, err = nil, fmt.Errorf("malformed ELF: %v", p)
		}
	}()
	ef, err = elf.NewFile(r)
	if err != nil {
		return nil, fmt.Errorf("not an ELF file: %w", err)
	}
	if ef.Class != elf.ELFCLASS64 {
		return nil, fmt.Errorf("not a 64-bit ELF file (%v)", ef.Class)
	}
	if ef.Machine != elfMachine() {
		return nil, fmt.Errorf("ELF machine %v, the agent runs on %v", ef.Machine, elfMachine())
	}
	return ef, nil
}

// findSymbols looks the wanted names up in .dynsym and .symtab. Versioned
// names are handled: .dynsym carries plain names with a version table (a
// default version "@@" wins over a hidden one "@"), and a .symtab name like
// "SSL_read@@OPENSSL_3.0.0" counts as SSL_read. Only functions count.
// Memory stays bounded: tables are streamed in chunks.
func findSymbols(r io.ReaderAt, ef *elf.File, names []string) (s symbols, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("malformed ELF symbols: %v", p)
		}
	}()
	s.defined = make(map[string]uint64)
	best := make(map[string]int) // the score of the definition in s.defined
	var versym *elf.Section
	for _, sec := range ef.Sections {
		if sec.Type == elf.SHT_GNU_VERSYM {
			versym = sec
		}
	}
	var budget int64 = maxSymbolBytes
	for _, sec := range ef.Sections {
		if sec.Type != elf.SHT_DYNSYM && sec.Type != elf.SHT_SYMTAB {
			continue
		}
		if sec.Type == elf.SHT_SYMTAB {
			s.hasSymtab = true
		}
		if int(sec.Link) >= len(ef.Sections) || sec.Link == 0 {
			return s, fmt.Errorf("%s: bad string table link %d", sec.Name, sec.Link)
		}
		strs := ef.Sections[sec.Link]
		if strs.Type != elf.SHT_STRTAB {
			return s, fmt.Errorf("%s: linked section %s is not a string table", sec.Name, strs.Name)
		}
		budget -= int64(sec.Size) + int64(strs.Size)
		if budget < 0 {
			return s, fmt.Errorf("symbol tables larger than %d MiB", maxSymbolBytes>>20)
		}
		hits, err := scanStrtab(io.NewSectionReader(r, int64(strs.Offset), int64(strs.Size)), names)
		if err != nil {
			return s, fmt.Errorf("%s: %w", strs.Name, err)
		}
		if len(hits) == 0 {
			continue
		}
		vs := versym
		if sec.Type != elf.SHT_DYNSYM {
			vs = nil
		}
		err = scanSymtab(r, ef.ByteOrder, sec, hits, func(h strHit, idx uint64, info byte, shndx uint16, value uint64) {
			name := h.name
			if elf.SectionIndex(shndx) == elf.SHN_UNDEF {
				s.imported = true
				return
			}
			if elf.ST_TYPE(info) != elf.STT_FUNC || value == 0 {
				return
			}
			// Several definitions: a default version beats a hidden
			// one ("@"), a global one a local one (hidden visibility
			// makes the linker turn globals into locals, so locals
			// count too); else the first stays.
			score := 1
			if h.hiddenVersion || vs != nil && versionHidden(r, ef.ByteOrder, vs, idx) {
				score = 0
			}
			score *= 2
			if elf.ST_BIND(info) != elf.STB_LOCAL {
				score++
			}
			if _, ok := s.defined[name]; ok && score <= best[name] {
				return
			}
			s.defined[name] = value
			best[name] = score
		})
		if err != nil {
			return s, fmt.Errorf("%s: %w", sec.Name, err)
		}
	}
	return s, nil
}

// versionHidden reports whether dynamic symbol idx has a hidden
// (non-default, "name@VERSION") version.
func versionHidden(r io.ReaderAt, bo binary.ByteOrder, vs *elf.Section, idx uint64) bool {
	var b [2]byte
	if (idx+1)*2 > vs.Size {
		return false
	}
	if _, err := r.ReadAt(b[:], int64(vs.Offset+idx*2)); err != nil {
		return false
	}
	return bo.Uint16(b[:])&0x8000 != 0
}

// strHit is a wanted name found in a string table.
type strHit struct {
	name string
	// hiddenVersion: the string is "name@VERSION", a non-default version
	// (the default one is "name@@VERSION").
	hiddenVersion bool
}

// scanStrtab returns the string-table offsets where one of names starts and
// is followed by NUL or '@' (a versioned .symtab name). A name may start in
// the middle of a longer string: linkers merge common suffixes.
func scanStrtab(r io.Reader, names []string) (map[uint32]strHit, error) {
	longest := 0
	for _, n := range names {
		longest = max(longest, len(n)+2)
	}
	hits := make(map[uint32]strHit)
	buf := make([]byte, 0, chunkSize+longest)
	var base uint64 // offset of buf[0]
	chunk := make([]byte, chunkSize)
	for {
		n, err := io.ReadFull(r, chunk)
		buf = append(buf, chunk[:n]...)
		eof := errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
		if err != nil && !eof {
			return nil, err
		}
		// Matches starting in the last longest-1 bytes are found again in
		// the next round, unless this is the end.
		limit := len(buf)
		if !eof {
			limit = max(0, len(buf)-longest+1)
		}
		for _, name := range names {
			for from := 0; from < limit; {
				i := bytes.Index(buf[from:], []byte(name))
				if i < 0 || from+i >= limit {
					break
				}
				at := from + i
				end := at + len(name)
				if end < len(buf) && (buf[end] == 0 || buf[end] == '@') && base+uint64(at) <= 0xffffffff {
					if len(hits) >= maxNameHits*len(names) {
						return hits, nil
					}
					hidden := buf[end] == '@' && (end+1 >= len(buf) || buf[end+1] != '@')
					hits[uint32(base+uint64(at))] = strHit{name: name, hiddenVersion: hidden}
				}
				from = at + 1
			}
		}
		if eof {
			return hits, nil
		}
		keep := len(buf) - limit
		copy(buf, buf[limit:])
		buf = buf[:keep]
		base += uint64(limit)
	}
}

// scanSymtab streams the 64-bit symbol table sec and calls fn for every
// symbol whose name offset is in hits.
func scanSymtab(r io.ReaderAt, bo binary.ByteOrder, sec *elf.Section, hits map[uint32]strHit, fn func(h strHit, idx uint64, info byte, shndx uint16, value uint64)) error {
	if sec.Entsize != 0 && sec.Entsize != sym64Size {
		return fmt.Errorf("symbol entry size %d, want %d", sec.Entsize, sym64Size)
	}
	sr := io.NewSectionReader(r, int64(sec.Offset), int64(sec.Size))
	buf := make([]byte, (chunkSize/sym64Size)*sym64Size)
	var idx uint64
	for {
		n, err := io.ReadFull(sr, buf)
		for off := 0; off+sym64Size <= n; off += sym64Size {
			e := buf[off : off+sym64Size]
			if h, ok := hits[bo.Uint32(e[0:4])]; ok {
				fn(h, idx, e[4], bo.Uint16(e[6:8]), bo.Uint64(e[8:16]))
			}
			idx++
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// fileOffset converts a virtual address into the file offset uprobes expect:
// through the executable PT_LOAD segment containing it, else the section.
func fileOffset(ef *elf.File, vaddr uint64) (uint64, error) {
	for _, p := range ef.Progs {
		if p.Type == elf.PT_LOAD && p.Flags&elf.PF_X != 0 && p.Vaddr <= vaddr && vaddr < p.Vaddr+p.Filesz {
			return vaddr - p.Vaddr + p.Off, nil
		}
	}
	for _, s := range ef.Sections {
		if s.Type == elf.SHT_PROGBITS && s.Flags&elf.SHF_EXECINSTR != 0 && s.Addr <= vaddr && vaddr < s.Addr+s.Size {
			return vaddr - s.Addr + s.Offset, nil
		}
	}
	return 0, fmt.Errorf("address %#x is in no executable segment", vaddr)
}

// markers is what the read-only data says about a TLS library linked in.
type markers struct {
	version string // "OpenSSL 3.0.19", "LibreSSL 3.8.2", "BoringSSL"; "" when none
	tls     bool   // a TLS library's strings are present
}

// scanMarkers searches .rodata (at most maxRodataScan bytes) for the
// version text OpenSSL, LibreSSL and BoringSSL compile in, and for the
// source-file name OpenSSL-style error macros keep ("ssl_lib.c", also
// BoringSSL's "ssl_lib.cc").
func scanMarkers(r io.ReaderAt, ef *elf.File) markers {
	var m markers
	sec := ef.Section(".rodata")
	if sec == nil || sec.Type != elf.SHT_PROGBITS {
		return m
	}
	size := min(int64(sec.Size), maxRodataScan)
	sr := io.NewSectionReader(r, int64(sec.Offset), size)
	const carry = 64
	buf := make([]byte, 0, chunkSize+carry)
	chunk := make([]byte, chunkSize)
	for {
		n, err := io.ReadFull(sr, chunk)
		buf = append(buf, chunk[:n]...)
		if m.version == "" {
			m.version = versionIn(buf)
		}
		if bytes.Contains(buf, []byte("ssl_lib.c")) || bytes.Contains(buf, []byte("BoringSSL")) {
			m.tls = true
		}
		if err != nil || (m.tls && m.version != "") {
			break
		}
		keep := min(carry, len(buf))
		copy(buf, buf[len(buf)-keep:])
		buf = buf[:keep]
	}
	if m.version != "" {
		m.tls = true
	}
	return m
}

// versionIn finds "OpenSSL x.y.z[letter]" or "LibreSSL x.y.z" (the version
// text compiled into the library) or "BoringSSL" in b.
func versionIn(b []byte) string {
	for _, lib := range []string{"OpenSSL ", "LibreSSL "} {
		for from := 0; ; {
			i := bytes.Index(b[from:], []byte(lib))
			if i < 0 {
				break
			}
			at := from + i + len(lib)
			if v := dottedVersion(b[at:]); v != "" {
				if bytes.Contains(b[at:min(len(b), at+64)], []byte("BoringSSL")) {
					return "BoringSSL"
				}
				return lib + v
			}
			from = at
		}
	}
	if bytes.Contains(b, []byte("BoringSSL")) {
		return "BoringSSL"
	}
	return ""
}

// dottedVersion returns the leading "1.1.1w" / "3.0.19" of b, or "".
func dottedVersion(b []byte) string {
	i, dots := 0, 0
scan:
	for ; i < len(b) && i < 16; i++ {
		switch c := b[i]; {
		case c >= '0' && c <= '9':
		case c == '.' && i > 0 && b[i-1] != '.':
			dots++
		default:
			break scan
		}
	}
	if dots != 2 || b[i-1] == '.' {
		return ""
	}
	// OpenSSL 1.x adds a patch letter: 1.1.1w.
	if i < len(b) && b[i] >= 'a' && b[i] <= 'z' && (i+1 == len(b) || b[i+1] == ' ' || b[i+1] == 0) {
		i++
	}
	return string(b[:i])
}

// sonameVersion returns the version in a libssl file name: "libssl.so.3"
// gives "3", "libssl.so.1.1" gives "1.1", "libssl.so" gives "".
func sonameVersion(base string) string {
	_, v, ok := strings.Cut(base, ".so.")
	if !ok {
		return ""
	}
	return v
}
