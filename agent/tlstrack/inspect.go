package tlstrack

import (
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"regexp"

	"github.com/sightline-io/sightline/agent/capture/socktrace"
	"github.com/sightline-io/sightline/agent/goinfo"
)

// Kinds of covered file (Library.Kind).
const (
	KindOpenSSL       = "openssl"        // a shared libssl.so* (OpenSSL, LibreSSL, BoringSSL)
	KindStaticOpenSSL = "static-openssl" // an executable with OpenSSL/BoringSSL linked in, with symbols
	KindGo            = "go"             // a Go executable using crypto/tls
)

// Go functions probed.
const (
	goRead  = "crypto/tls.(*Conn).Read"
	goWrite = "crypto/tls.(*Conn).Write"
)

// libsslName matches the file names of shared OpenSSL-API libraries:
// libssl.so, libssl.so.3, libssl.so.1.1, ... but not NSS's libssl3.so.
var libsslName = regexp.MustCompile(`^libssl\.so(\..*)?$`)

// isLibSSL reports whether a mapped path names a shared OpenSSL-API library.
func isLibSSL(path string) bool { return libsslName.MatchString(filepath.Base(path)) }

// inspection is the verdict on one file.
type inspection struct {
	kind    string
	version string
	ssl     socktrace.SSLProbes   // kind openssl, static-openssl
	goTLS   socktrace.GoTLSProbes // kind go
	// noTLS: the file holds no TLS library; nothing to report.
	noTLS bool
	// err: the file holds (or looks like it holds) a TLS library that
	// cannot be probed; failed tells an inspection failure (counted
	// InspectFailed) from a file without the symbols (counted NoSymbols).
	err    error
	failed bool
}

// inspectLib inspects a shared libssl reached at path (a /proc/self/fd
// path; base is its name in the process).
func inspectLib(r io.ReaderAt, base string) inspection {
	ef, err := openELF(r)
	if err != nil {
		return inspection{err: fmt.Errorf("inspect: %w", err), failed: true}
	}
	in := inspection{kind: KindOpenSSL, version: scanMarkers(r, ef).version}
	if in.version == "" {
		in.version = sonameVersion(base)
	}
	in.ssl, _, err = sslProbes(r, ef)
	if err != nil {
		in.err = err
		in.failed = !errors.Is(err, errNoSSLSymbols)
	}
	return in
}

// sslProbes resolves the OpenSSL API functions of an ELF file into file
// offsets. The error wraps errNoSSLSymbols when SSL_read or SSL_write is not
// defined.
func sslProbes(r io.ReaderAt, f *elf.File) (socktrace.SSLProbes, symbols, error) {
	var p socktrace.SSLProbes
	syms, err := findSymbols(r, f, sslNames)
	if err != nil {
		return p, syms, fmt.Errorf("inspect: %w", err)
	}
	if syms.defined[symRead] == 0 || syms.defined[symWrite] == 0 {
		return p, syms, errNoSSLSymbols
	}
	for _, s := range []struct {
		name string
		dst  *uint64
	}{{symRead, &p.Read}, {symWrite, &p.Write}, {symReadEx, &p.ReadEx}, {symWriteEx, &p.WriteEx}} {
		v, ok := syms.defined[s.name]
		if !ok {
			continue
		}
		off, err := fileOffset(f, v)
		if err != nil {
			return socktrace.SSLProbes{}, syms, fmt.Errorf("inspect: %s: %w", s.name, err)
		}
		*s.dst = off
	}
	return p, syms, nil
}

// inspectExe inspects a process's main executable reached at path (a
// /proc/self/fd path, r the open file): a Go program using crypto/tls, or
// OpenSSL/BoringSSL linked in statically.
func inspectExe(path string, r io.ReaderAt) inspection {
	if v, err := goinfo.GoVersionOf(path); err == nil {
		return inspectGo(path, v)
	}
	ef, err := openELF(r)
	if err != nil {
		return inspection{noTLS: true} // a script interpreter's, another arch's...
	}
	in := inspection{kind: KindStaticOpenSSL}
	p, syms, err := sslProbes(r, ef)
	switch {
	case err == nil:
		in.ssl = p
		in.version = scanMarkers(r, ef).version
		return in
	case !errors.Is(err, errNoSSLSymbols):
		in.err, in.failed = err, true
		return in
	case syms.imported || syms.hasSymtab:
		// It calls a shared libssl (seen in its mappings), or its full
		// symbol table has no OpenSSL: no TLS library inside.
		return inspection{noTLS: true}
	}
	// Stripped: a TLS library linked in leaves its version text and
	// source-file names in .rodata.
	m := scanMarkers(r, ef)
	if !m.tls {
		return inspection{noTLS: true}
	}
	in.version = m.version
	in.err = fmt.Errorf("%w: stripped executable with %s linked in statically", errNoSSLSymbols, orDefault(m.version, "a TLS library"))
	return in
}

// inspectGo resolves crypto/tls in a Go executable (stripped ones too:
// goinfo reads the pclntab).
func inspectGo(path, version string) inspection {
	bin, err := goinfo.Inspect(path)
	if err != nil {
		if errors.Is(err, goinfo.ErrUnsupportedArch) {
			return inspection{noTLS: true}
		}
		return inspection{kind: KindGo, version: version, err: fmt.Errorf("inspect go: %w", err), failed: true}
	}
	defer bin.Close()
	in := inspection{kind: KindGo, version: bin.GoVersion}
	rd, err := bin.Func(goRead)
	if errors.Is(err, goinfo.ErrFuncNotFound) {
		return inspection{noTLS: true}
	}
	if err != nil {
		in.err, in.failed = fmt.Errorf("inspect go: %w", err), true
		return in
	}
	wr, err := bin.Func(goWrite)
	if errors.Is(err, goinfo.ErrFuncNotFound) {
		return inspection{noTLS: true}
	}
	if err != nil {
		in.err, in.failed = fmt.Errorf("inspect go: %w", err), true
		return in
	}
	if len(rd.Returns) == 0 || len(wr.Returns) == 0 {
		in.err, in.failed = fmt.Errorf("inspect go: %s (%s): no RET instruction found in crypto/tls Read or Write", path, bin.GoVersion), true
		return in
	}
	off, err := bin.Offsets()
	if err != nil {
		in.err, in.failed = fmt.Errorf("inspect go: %w", err), true
		return in
	}
	// Body, not Offset: past the stack-bound check, so a call that grows
	// its stack (morestack re-runs the function from its entry) is seen
	// once; the argument registers are untouched there.
	in.goTLS = socktrace.GoTLSProbes{
		Read: rd.Body, Write: wr.Body,
		ReadReturns: rd.Returns, WriteReturns: wr.Returns,
		ConnConn: off.TLSConnConn, NetConnFD: off.NetConnFD, NetFDPfd: off.NetFDPfd, PollFDSysfd: off.PollFDSysfd,
		RawInput: off.TLSConnRawInput, Input: off.TLSConnInput, BytesBufferOff: off.BytesBufferOff, BytesReaderI: off.BytesReaderI,
	}
	return in
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
