package goinfo

import (
	"bufio"
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/arch/x86/x86asm"
)

// probed lists the functions the BPF side attaches to.
var probed = []string{
	"runtime.newproc1",
	"runtime.chansend",
	"runtime.chanrecv",
	"runtime.selectgo",
	"runtime.goexit1",
	"runtime.goexit0",
	"crypto/tls.(*Conn).Write",
	"crypto/tls.(*Conn).Read",
}

// builds holds the two test executables, built once per test binary.
type builds struct {
	full, stripped string
	pie            string // -buildmode=pie -ldflags=-s -w
	pieFull        string // -buildmode=pie (objdump needs a .symtab)
	buildTime      time.Duration
}

var (
	testDir  string
	getBuild = sync.OnceValues(buildProbeProg)
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "goinfo-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	testDir = dir
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}

// buildProbeProg builds testdata/probeprog with and without -ldflags=-s -w,
// and the same two as PIE, outside any module.
func buildProbeProg() (builds, error) {
	src, err := os.ReadFile(filepath.Join("testdata", "probeprog", "main.go"))
	if err != nil {
		return builds{}, err
	}
	if err := os.WriteFile(filepath.Join(testDir, "main.go"), src, 0o644); err != nil {
		return builds{}, err
	}
	b := builds{
		full:     filepath.Join(testDir, "full"),
		stripped: filepath.Join(testDir, "stripped"),
		pie:      filepath.Join(testDir, "pie"),
		pieFull:  filepath.Join(testDir, "pie-full"),
	}
	start := time.Now()
	for _, c := range []struct{ out, ldflags, mode string }{
		{b.full, "", "exe"},
		{b.stripped, "-s -w", "exe"},
		{b.pie, "-s -w", "pie"},
		{b.pieFull, "", "pie"},
	} {
		cmd := exec.Command(goTool(), "build", "-buildmode="+c.mode, "-ldflags="+c.ldflags, "-o", c.out, "main.go")
		cmd.Dir = testDir
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=", "GOWORK=off", "GO111MODULE=auto", "GOARCH=amd64", "GOOS=linux")
		if out, err := cmd.CombinedOutput(); err != nil {
			return builds{}, fmt.Errorf("go build %s %s: %v\n%s", c.mode, c.ldflags, err, out)
		}
	}
	b.buildTime = time.Since(start)
	return b, nil
}

func mustBuild(tb testing.TB) builds {
	tb.Helper()
	b, err := getBuild()
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func mustInspect(tb testing.TB, path string) *Binary {
	tb.Helper()
	bin, err := Inspect(path)
	if err != nil {
		tb.Fatalf("Inspect(%s): %v", path, err)
	}
	tb.Cleanup(func() { _ = bin.Close() })
	return bin
}

func TestInspect(t *testing.T) {
	b := mustBuild(t)
	t.Logf("built the test programs in %v", b.buildTime)
	tests := []struct {
		name, path         string
		stripped, hasDWARF bool
	}{
		{"full", b.full, false, true},
		{"stripped", b.stripped, true, false},
		{"pie", b.pie, true, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			bin := mustInspect(t, tc.path)
			if bin.GoVersion != runtime.Version() {
				t.Errorf("GoVersion = %q, want %q", bin.GoVersion, runtime.Version())
			}
			if bin.Arch != "amd64" || bin.Stripped != tc.stripped || bin.HasDWARF != tc.hasDWARF {
				t.Errorf("got Arch=%s Stripped=%t HasDWARF=%t, want amd64 %t %t", bin.Arch, bin.Stripped, bin.HasDWARF, tc.stripped, tc.hasDWARF)
			}
			v, err := GoVersionOf(tc.path)
			if err != nil || v != runtime.Version() {
				t.Errorf("GoVersionOf = %q, %v; want %q", v, err, runtime.Version())
			}
		})
	}
}

// symtab returns the .symtab values of the full build (ground truth for
// the pclntab lookup).
func symtab(t *testing.T, path string) map[string]elf.Symbol {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	syms, err := f.Symbols()
	if err != nil {
		t.Fatal(err)
	}
	m := make(map[string]elf.Symbol, len(syms))
	for _, s := range syms {
		m[s.Name] = s
	}
	return m
}

// objdumpReturns runs `go tool objdump` (an independent linear sweep over
// symbol boundaries) and returns the RET addresses of each probed function.
func objdumpReturns(t *testing.T, path string) map[string][]uint64 {
	t.Helper()
	quoted := make([]string, len(probed))
	for i, p := range probed {
		quoted[i] = regexp.QuoteMeta(p)
	}
	re := "^(" + strings.Join(quoted, "|") + ")$"
	out, err := exec.Command(goTool(), "tool", "objdump", "-s", re, path).Output()
	if err != nil {
		t.Fatalf("go tool objdump: %v", err)
	}
	rets := make(map[string][]uint64)
	cur := ""
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if name, ok := strings.CutPrefix(line, "TEXT "); ok {
			cur, _, _ = strings.Cut(name, "(SB)")
			continue
		}
		// "  file.go:12\t0x4158c0\t\tc3\t\t\tRET"
		fields := strings.Fields(line)
		if len(fields) >= 4 && fields[len(fields)-1] == "RET" && fields[2] == "c3" {
			addr, err := strconv.ParseUint(strings.TrimPrefix(fields[1], "0x"), 16, 64)
			if err != nil {
				t.Fatalf("objdump line %q: %v", line, err)
			}
			rets[cur] = append(rets[cur], addr)
		}
	}
	return rets
}

func TestFuncs(t *testing.T) {
	b := mustBuild(t)
	full := mustInspect(t, b.full)
	stripped := mustInspect(t, b.stripped)
	syms := symtab(t, b.full)
	objRets := objdumpReturns(t, b.full)
	pie := mustInspect(t, b.pie)
	pieFull := mustInspect(t, b.pieFull)
	pieRets := objdumpReturns(t, b.pieFull)
	pieRaw, err := os.ReadFile(b.pie)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(b.stripped)
	if err != nil {
		t.Fatal(err)
	}
	// The two builds have the same layout of .text but not the same bytes:
	// RIP-relative operands differ because .rodata differs in size.
	for _, name := range probed {
		t.Run(name, func(t *testing.T) {
			ff, err := full.Func(name)
			if err != nil {
				t.Fatalf("full: %v", err)
			}
			fs, err := stripped.Func(name)
			if err != nil {
				t.Fatalf("stripped: %v", err)
			}
			if !reflect.DeepEqual(ff, fs) {
				t.Errorf("full and stripped differ:\n full     %+v\n stripped %+v", ff, fs)
			}
			sym, ok := syms[name]
			if !ok {
				t.Fatalf("%s not in .symtab", name)
			}
			if ff.Entry != sym.Value || ff.Size != sym.Size {
				t.Errorf("Entry/Size = %#x/%d, .symtab says %#x/%d", ff.Entry, ff.Size, sym.Value, sym.Size)
			}
			if ff.Name != name || ff.DecodeErrors != 0 {
				t.Errorf("Name=%q DecodeErrors=%d", ff.Name, ff.DecodeErrors)
			}
			// The stripped file's bytes at Offset are this function's code:
			// compare with its .text section (section headers survive -s).
			text, err := textBytes(b.stripped, ff.Entry, ff.Size)
			if err != nil {
				t.Fatal(err)
			}
			if ff.Offset+ff.Size > uint64(len(raw)) || !bytes.Equal(raw[ff.Offset:ff.Offset+ff.Size], text) {
				t.Fatalf("file bytes at Offset %#x are not the function's code", ff.Offset)
			}
			if len(ff.Returns) == 0 {
				t.Errorf("no RET found")
			}
			checkBody(t, raw, ff)
			var want []uint64
			for _, a := range objRets[name] {
				want = append(want, a-ff.Entry+ff.Offset)
			}
			if !reflect.DeepEqual(ff.Returns, want) {
				t.Errorf("Returns = %#x, objdump says %#x", ff.Returns, want)
			}
			for _, r := range ff.Returns {
				if r < ff.Offset || r >= ff.Offset+ff.Size || raw[r] != 0xc3 {
					t.Errorf("return offset %#x is not a C3 inside the function", r)
				}
			}
			t.Logf("entry %#x offset %#x size %d returns %d", ff.Entry, ff.Offset, ff.Size, len(ff.Returns))

			// PIE: no .symtab, pclntab header textStart is zero.
			fp, err := pie.Func(name)
			if err != nil {
				t.Fatalf("pie: %v", err)
			}
			ptext, err := textBytes(b.pie, fp.Entry, fp.Size)
			if err != nil {
				t.Fatalf("pie: %v", err)
			}
			if !bytes.Equal(pieRaw[fp.Offset:fp.Offset+fp.Size], ptext) {
				t.Errorf("pie: file bytes at Offset %#x are not the function's code", fp.Offset)
			}
			want = nil
			for _, a := range pieRets[name] {
				want = append(want, a-fp.Entry+fp.Offset)
			}
			if len(fp.Returns) == 0 || !reflect.DeepEqual(fp.Returns, want) {
				t.Errorf("pie: Returns = %#x, objdump says %#x", fp.Returns, want)
			}
			fpf, err := pieFull.Func(name)
			if err != nil || !reflect.DeepEqual(fp, fpf) {
				t.Errorf("pie stripped %+v, pie full %+v, %v", fp, fpf, err)
			}
		})
	}
}

// checkBody asserts that the code between Offset and Body is the stack
// check: ends with JBE right after CMP x, 0x10(R14).
func checkBody(t *testing.T, raw []byte, fn Func) {
	t.Helper()
	if fn.Body <= fn.Offset || fn.Body-fn.Offset > 32 {
		t.Fatalf("Body %#x, Offset %#x: no stack check found", fn.Body, fn.Offset)
	}
	var ops []x86asm.Op
	for pc := fn.Offset; pc < fn.Body; {
		inst, err := x86asm.Decode(raw[pc:fn.Body], 64)
		if err != nil {
			t.Fatalf("prologue at %#x: %v", pc, err)
		}
		ops = append(ops, inst.Op)
		pc += uint64(inst.Len)
	}
	if len(ops) < 2 || ops[len(ops)-2] != x86asm.CMP || ops[len(ops)-1] != x86asm.JBE {
		t.Errorf("prologue %v does not end with CMP, JBE", ops)
	}
}

func textBytes(path string, addr, size uint64) ([]byte, error) {
	f, err := elf.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	s := f.Section(".text")
	if s == nil || addr < s.Addr || addr+size > s.Addr+s.Size {
		return nil, errors.New("address outside .text")
	}
	buf := make([]byte, size)
	_, err = s.ReadAt(buf, int64(addr-s.Addr))
	return buf, err
}

func TestFuncErrors(t *testing.T) {
	b := mustBuild(t)
	bin := mustInspect(t, b.stripped)
	if _, err := bin.Func("runtime.noSuchFunction"); !errors.Is(err, ErrFuncNotFound) {
		t.Errorf("missing func: err = %v, want ErrFuncNotFound", err)
	}
	closed, err := Inspect(b.stripped)
	if err != nil {
		t.Fatal(err)
	}
	if err := closed.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := closed.Func("runtime.chansend"); err == nil {
		t.Error("Func on closed Binary succeeded")
	}
}

func TestOffsets(t *testing.T) {
	b := mustBuild(t)
	full := mustInspect(t, b.full)
	stripped := mustInspect(t, b.stripped)

	fromDWARF, err := full.Offsets()
	if err != nil {
		t.Fatalf("full: %v", err)
	}
	if fromDWARF.Source != "dwarf" {
		t.Errorf("full Source = %q, want dwarf (every type should be in DWARF)", fromDWARF.Source)
	}
	t.Logf("DWARF offsets for %s: %+v", full.GoVersion, fromDWARF)

	minor, ok := GoMinor(runtime.Version())
	if !ok {
		t.Fatalf("cannot parse %q", runtime.Version())
	}
	table, ok := tableOffsets(minor)
	if !ok {
		t.Fatalf("offsets.go has no table entry for go1.%d; add one with the values logged above", minor)
	}
	want := fromDWARF
	want.Source = ""
	if table != want {
		t.Errorf("table go1.%d disagrees with DWARF:\n table %+v\n dwarf %+v", minor, table, want)
	}

	for _, bin := range []*Binary{stripped, mustInspect(t, b.pie)} {
		fromTable, err := bin.Offsets()
		if err != nil {
			t.Fatalf("%s: %v", bin.Path, err)
		}
		if wantSrc := fmt.Sprintf("table go1.%d", minor); fromTable.Source != wantSrc {
			t.Errorf("%s: Source = %q, want %q", bin.Path, fromTable.Source, wantSrc)
		}
		fromTable.Source = ""
		if fromTable != want {
			t.Errorf("%s: offsets %+v, want %+v", bin.Path, fromTable, want)
		}
	}
}

func TestOffsetsUnknownVersion(t *testing.T) {
	b := mustBuild(t)
	bin := mustInspect(t, b.stripped)
	bin.GoVersion = "go1.5" // no table entry, no DWARF
	_, err := bin.Offsets()
	if !errors.Is(err, ErrOffsetUnknown) {
		t.Fatalf("err = %v, want ErrOffsetUnknown", err)
	}
	for _, f := range []string{"runtime.g.goid", "internal/poll.FD.Sysfd", "sizeof(runtime.scase)"} {
		if !strings.Contains(err.Error(), f) {
			t.Errorf("error %q does not name %s", err, f)
		}
	}
}

func TestNotGo(t *testing.T) {
	b := mustBuild(t)
	dir := t.TempDir()
	script := filepath.Join(dir, "script.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho hi\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, nil, 0o755); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(b.stripped)
	if err != nil {
		t.Fatal(err)
	}
	truncated := filepath.Join(dir, "truncated")
	if err := os.WriteFile(truncated, raw[:4096], 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct{ name, path string }{
		{"shell script", script},
		{"empty file", empty},
		{"truncated go binary", truncated},
	}
	// A C executable from the system, when one exists.
	for _, p := range []string{"/bin/sh", "/usr/bin/env"} {
		if _, err := GoVersionOf(p); errors.Is(err, ErrNotGo) {
			tests = append(tests, struct{ name, path string }{"system " + p, p})
			break
		}
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Inspect(tc.path); !errors.Is(err, ErrNotGo) {
				t.Errorf("Inspect err = %v, want ErrNotGo", err)
			}
			if _, err := GoVersionOf(tc.path); !errors.Is(err, ErrNotGo) {
				t.Errorf("GoVersionOf err = %v, want ErrNotGo", err)
			}
		})
	}
	missing := filepath.Join(dir, "missing")
	if _, err := Inspect(missing); err == nil || errors.Is(err, ErrNotGo) || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: err = %v, want os.ErrNotExist", err)
	}
	if _, err := GoVersionOf(missing); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("GoVersionOf missing: err = %v, want os.ErrNotExist", err)
	}
}

func TestUnsupportedArch(t *testing.T) {
	b := mustBuild(t)
	raw, err := os.ReadFile(b.stripped)
	if err != nil {
		t.Fatal(err)
	}
	// e_machine is the little-endian uint16 at offset 18.
	raw[18], raw[19] = byte(elf.EM_AARCH64), byte(elf.EM_AARCH64>>8)
	p := filepath.Join(t.TempDir(), "arm64")
	if err := os.WriteFile(p, raw, 0o755); err != nil {
		t.Fatal(err)
	}
	_, err = Inspect(p)
	if !errors.Is(err, ErrUnsupportedArch) || !strings.Contains(err.Error(), "arm64") {
		t.Errorf("err = %v, want ErrUnsupportedArch naming arm64", err)
	}
}

func TestFindReturns(t *testing.T) {
	tests := []struct {
		name     string
		code     []byte
		want     []uint64
		wantErrs int
	}{
		{"plain ret", []byte{0xc3}, []uint64{0}, 0},
		{"ret imm16", []byte{0x90, 0xc2, 0x08, 0x00}, []uint64{1}, 0},
		{"c3 inside mov immediate", []byte{0xb8, 0xc3, 0x00, 0x00, 0x00, 0xc3}, []uint64{5}, 0},
		{"rep ret is not plain", []byte{0xf3, 0xc3, 0xc3}, []uint64{2}, 0},
		{"two rets with padding", []byte{0x48, 0x89, 0xc3, 0xc3, 0xcc, 0xcc, 0xc3}, []uint64{3, 6}, 0},
		// 0x06 (PUSH ES) is invalid in 64-bit mode; after it every
		// candidate path converges on the NOPs, so the final RET is kept.
		{"resync after invalid byte", append([]byte{0x06}, append(bytes.Repeat([]byte{0x90}, 16), 0xc3)...), []uint64{17}, 1},
		// After the invalid byte, the C3 at index 2 is an immediate on
		// the path starting at 1 (mov ebx, imm32) but a RET on the path
		// starting at 2: ambiguous, so it is not reported.
		{"ambiguous c3 after invalid byte", append([]byte{0x06, 0xbb, 0xc3, 0x00, 0x00, 0x00}, append(bytes.Repeat([]byte{0x90}, 16), 0xc3)...), []uint64{22}, 1},
		{"invalid at end", []byte{0xc3, 0x06}, []uint64{0}, 1},
		{"empty", nil, nil, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, errs := findReturns(tc.code)
			if !reflect.DeepEqual(got, tc.want) || errs != tc.wantErrs {
				t.Errorf("findReturns = %v, %d; want %v, %d", got, errs, tc.want, tc.wantErrs)
			}
		})
	}
}

func TestBody(t *testing.T) {
	tests := []struct {
		name string
		code []byte
		want int
	}{
		// CMPQ SP, 0x10(R14); JBE +0x18; PUSHQ BP; RET
		{"small frame", []byte{0x49, 0x3b, 0x66, 0x10, 0x76, 0x18, 0x55, 0xc3}, 6},
		// LEAQ -0x48(SP), R12; CMPQ R12, 0x10(R14); JBE rel32; PUSHQ BP
		{"large frame", []byte{0x4c, 0x8d, 0x64, 0x24, 0xb8, 0x4d, 0x3b, 0x66, 0x10, 0x0f, 0x86, 0x93, 0x07, 0x00, 0x00, 0x55, 0xc3}, 15},
		{"nosplit", []byte{0x55, 0x48, 0x89, 0xe5, 0xc3}, 0},
		// CMPQ SP, 0x18(R14) is not the stack guard.
		{"other field", []byte{0x49, 0x3b, 0x66, 0x18, 0x76, 0x18, 0xc3}, 0},
		{"jbe without cmp", []byte{0x90, 0x76, 0x18, 0xc3}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := disasm(tc.code).body; got != tc.want {
				t.Errorf("body = %d, want %d", got, tc.want)
			}
		})
	}
}

func TestGoMinor(t *testing.T) {
	tests := []struct {
		in   string
		want int
		ok   bool
	}{
		{"go1.26.8", 26, true},
		{"go1.26", 26, true},
		{"go1.27rc1", 27, true},
		{"devel go1.27-abcdef Mon Jan 1", 27, true},
		{"go2.0", 0, false},
		{"", 0, false},
		{"go1.", 0, false},
	}
	for _, tc := range tests {
		got, ok := GoMinor(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("GoMinor(%q) = %d, %t; want %d, %t", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func BenchmarkInspectFunc(b *testing.B) {
	bu := mustBuild(b)
	for _, c := range []struct{ name, path string }{{"full", bu.full}, {"stripped", bu.stripped}} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				bin, err := Inspect(c.path)
				if err != nil {
					b.Fatal(err)
				}
				for _, name := range probed {
					if _, err := bin.Func(name); err != nil {
						b.Fatal(err)
					}
				}
				_ = bin.Close()
			}
		})
	}
}

func BenchmarkInspect(b *testing.B) {
	bu := mustBuild(b)
	for b.Loop() {
		bin, err := Inspect(bu.stripped)
		if err != nil {
			b.Fatal(err)
		}
		_ = bin.Close()
	}
}

func BenchmarkGoVersionOf(b *testing.B) {
	bu := mustBuild(b)
	for b.Loop() {
		if _, err := GoVersionOf(bu.stripped); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkOffsetsDWARF(b *testing.B) {
	bu := mustBuild(b)
	bin := mustInspect(b, bu.full)
	for b.Loop() {
		if _, err := bin.Offsets(); err != nil {
			b.Fatal(err)
		}
	}
}

// TestStrippedExternalLink: a stripped binary linked by the C linker (what
// `go test` builds for a package that uses cgo) has no runtime.text symbol,
// a zero text start in the pclntab header and C code at the start of .text;
// functions must still resolve to the same code as in the normal build.
func TestStrippedExternalLink(t *testing.T) {
	if _, err := exec.LookPath("gcc"); err != nil {
		t.Fatal("gcc is needed for external linking (see scripts/install-test-deps.sh)")
	}
	b := mustBuild(t)
	out := filepath.Join(testDir, "external")
	cmd := exec.Command(goTool(), "build", "-ldflags=-s -w -linkmode=external", "-o", out, "main.go")
	cmd.Dir = testDir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=1", "GOFLAGS=", "GOWORK=off", "GO111MODULE=auto")
	if o, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, o)
	}
	ext, full := mustInspect(t, out), mustInspect(t, b.full)
	for _, name := range probed {
		want, err := full.Func(name)
		if err != nil {
			t.Fatal(err)
		}
		got, err := ext.Func(name)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if got.Size != want.Size || len(got.Returns) != len(want.Returns) || len(got.Returns) == 0 {
			t.Errorf("%s: size %d, %d returns; normal build: size %d, %d returns", name, got.Size, len(got.Returns), want.Size, len(want.Returns))
		}
	}
}
