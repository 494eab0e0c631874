// Package goinfo inspects Go executables so that user space can attach
// uprobes to them: it reports the Go version, resolves function entries and
// every RET instruction from the pclntab (so stripped binaries work), and
// provides the struct field offsets the BPF programs need.
//
// The package is pure Go and contains no eBPF. Only linux/amd64 executables
// are supported; other architectures fail with ErrUnsupportedArch.
//
// # Go register ABI (ABIInternal, amd64, go1.17+)
//
// Integer and pointer arguments are passed, in order, in
//
//	RAX, RBX, RCX, RDI, RSI, R8, R9, R10, R11
//
// (argument index 0..8, shown in parentheses below; a string or slice
// takes 2 or 3 consecutive registers: ptr, len[, cap]; an interface takes
// 2: itab/type, data). Results use the same sequence starting again at RAX.
// The current goroutine (g) is always in R14, R15 is the GOT pointer in
// dynamically linked code. Registers are only meaningful at the function
// entry (the callee spills them to the stack soon after) and results only at
// a RET instruction. Uretprobes must not be used on Go code (the runtime may
// move goroutine stacks and would corrupt the return address the kernel
// patches); put uprobes on the offsets in Func.Returns instead. Put entry
// probes on Func.Body rather than Func.Offset: a call that grows the stack
// runs the entry twice (morestack restarts the function), Body once.
//
// # Arguments of the probed functions (go1.26, /usr/local/go/src)
//
//	runtime.newproc1(fn *funcval, callergp *g, callerpc uintptr, parked bool, waitreason waitReason) *g
//	    entry: RAX(0)=fn, RBX(1)=callergp (the parent goroutine), RCX(2)=callerpc,
//	    RDI(3)=parked, RSI(4)=waitreason (uint8). Result (at RET): RAX(0)=new *g
//	    (read goid at Offsets.GGoid). Runs on the system stack: R14 is g0
//	    there, not the parent; use RBX for the parent.
//	runtime.chansend(c *hchan, ep unsafe.Pointer, block bool, callerpc uintptr) bool
//	    entry: RAX(0)=c, RBX(1)=ep, RCX(2)=block, RDI(3)=callerpc. Result: RAX(0)=sent.
//	runtime.chanrecv(c *hchan, ep unsafe.Pointer, block bool) (selected, received bool)
//	    entry: RAX(0)=c, RBX(1)=ep, RCX(2)=block. Results: RAX(0)=selected, RBX(1)=received.
//	runtime.selectgo(cas0 *scase, order0 *uint16, pc0 *uintptr, nsends, nrecvs int, block bool) (int, bool)
//	    entry: RAX(0)=cas0, RBX(1)=order0, RCX(2)=pc0, RDI(3)=nsends, RSI(4)=nrecvs,
//	    R8(5)=block. cas0 points to nsends+nrecvs scase values (send cases
//	    first), each Offsets.ScaseSize bytes. Results: RAX(0)=chosen case
//	    index (-1 none), RBX(1)=recvOK.
//	runtime.goexit1()
//	    no arguments; runs on the exiting goroutine, so R14 is that g.
//	runtime.goexit0(gp *g)
//	    entry: RAX(0)=gp (the exiting goroutine); runs on g0 via mcall.
//	crypto/tls.(*Conn).Write(b []byte) (int, error)
//	crypto/tls.(*Conn).Read(b []byte) (int, error)
//	    entry: RAX(0)=c (*tls.Conn), RBX(1)=b.ptr, RCX(2)=b.len, RDI(3)=b.cap.
//	    Results: RAX(0)=n, RBX(1)=err itab, RCX(2)=err data (RBX(1)==0: nil error).
//	    Socket: c+TLSConnConn is a net.Conn interface (itab, data); data
//	    is a *net.TCPConn whose first word (+NetConnFD) is *net.netFD;
//	    fd+NetFDPfd+PollFDSysfd is the int file descriptor.
package goinfo

import (
	"debug/buildinfo"
	"debug/elf"
	"debug/gosym"
	"encoding/binary"
	"errors"
	"fmt"
	"os"

	"golang.org/x/arch/x86/x86asm"
)

// Errors returned by this package; callers should test with errors.Is.
var (
	// ErrNotGo means the file is not an executable built by the Go toolchain.
	ErrNotGo = errors.New("goinfo: not a Go executable")
	// ErrUnsupportedArch means the executable is not linux/amd64.
	ErrUnsupportedArch = errors.New("goinfo: unsupported arch")
	// ErrFuncNotFound means the pclntab has no function with that name.
	ErrFuncNotFound = errors.New("goinfo: function not found")
	// ErrOffsetUnknown means a struct field offset is neither in the DWARF
	// data nor in the versioned table.
	ErrOffsetUnknown = errors.New("goinfo: struct offset unknown")
)

// maxFuncSize bounds how many bytes of code Func decodes; the largest runtime
// functions are a few tens of KiB.
const maxFuncSize = 4 << 20

// maxPclntab bounds the pclntab read into memory (large binaries have a few
// tens of MiB).
const maxPclntab = 512 << 20

// Binary is an inspected Go executable. It keeps the file open until Close.
// Func and Offsets may be called concurrently; Close must not race them.
type Binary struct {
	Path      string
	GoVersion string // e.g. "go1.26.8", from the build info
	Arch      string // GOARCH, currently always "amd64"
	Stripped  bool   // no .symtab (built with -ldflags=-s)
	HasDWARF  bool   // .debug_info present (not built with -w)

	file *os.File
	elf  *elf.File
	tab  *gosym.Table
}

// Func is a resolved function.
type Func struct {
	Name  string
	Entry uint64 // virtual address of the first instruction
	// Offset is the file offset of the entry, i.e. the value cilium/ebpf
	// expects in link.UprobeOptions.Address (with an empty symbol name):
	// vaddr - PT_LOAD.Vaddr + PT_LOAD.Off of the executable segment.
	Offset uint64
	// Body is the file offset of the first instruction after the
	// stack-bound check of the prologue (CMP SP-or-R12, 0x10(R14); JBE
	// morestack), or Offset when the function has none (NOSPLIT). When
	// the stack must grow, morestack re-runs the function from Entry, so a
	// probe at Offset can fire twice for one call; a probe at Body fires
	// once, and the argument registers are still untouched there.
	Body uint64
	// Size is the length of the code, without the trailing INT3 padding
	// that the pclntab range (next function's entry) includes.
	Size uint64
	// Returns holds the file offsets of every RET (C3/C2) instruction in
	// the function, in increasing order; use them instead of uretprobes.
	Returns []uint64
	// DecodeErrors counts instructions the disassembler could not decode;
	// non-zero means Returns may be incomplete (never wrong).
	DecodeErrors int
}

// GoVersionOf returns the Go version a file was built with. It is cheap (it
// reads only the build-info blob) and meant to be called on every exec. Any
// file that is not a Go executable yields an error wrapping ErrNotGo.
func GoVersionOf(path string) (string, error) {
	info, err := buildinfo.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, os.ErrPermission) {
			return "", fmt.Errorf("goinfo: %w", err)
		}
		return "", fmt.Errorf("%w: %s: %v", ErrNotGo, path, err)
	}
	return info.GoVersion, nil
}

// Inspect opens the executable at path. It returns an error wrapping ErrNotGo
// when the file is not a Go ELF executable and ErrUnsupportedArch when it is
// not amd64. The caller must Close the returned Binary.
func Inspect(path string) (b *Binary, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("goinfo: %w", err)
	}
	defer func() {
		if r := recover(); r != nil {
			// debug/elf and debug/gosym can panic on corrupt input.
			err = fmt.Errorf("%w: %s: malformed file: %v", ErrNotGo, path, r)
		}
		if err != nil {
			_ = f.Close()
			b = nil
		}
	}()
	return inspect(path, f)
}

func inspect(path string, f *os.File) (*Binary, error) {
	ef, err := elf.NewFile(f)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrNotGo, path, err)
	}
	info, err := buildinfo.Read(f)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrNotGo, path, err)
	}
	b := &Binary{Path: path, GoVersion: info.GoVersion, file: f, elf: ef}
	switch ef.Machine {
	case elf.EM_X86_64:
		b.Arch = "amd64"
	case elf.EM_AARCH64:
		return nil, fmt.Errorf("%w: %s is arm64 (only amd64 is supported)", ErrUnsupportedArch, path)
	default:
		return nil, fmt.Errorf("%w: %s has machine %v (only amd64 is supported)", ErrUnsupportedArch, path, ef.Machine)
	}
	b.Stripped = ef.Section(".symtab") == nil
	b.HasDWARF = ef.Section(".debug_info") != nil || ef.Section(".zdebug_info") != nil

	pcln, err := b.pclntab()
	if err != nil {
		return nil, err
	}
	tab, err := gosym.NewTable(nil, gosym.NewLineTable(pcln, b.findTextStart(pcln)))
	if err != nil {
		return nil, fmt.Errorf("goinfo: %s: parse pclntab: %w", path, err)
	}
	b.tab = tab
	return b, nil
}

// Close releases the file.
func (b *Binary) Close() error {
	if b == nil || b.file == nil {
		return nil
	}
	err := b.file.Close()
	b.file = nil
	return err
}

// pclntab returns the bytes of the Go pc-line table, from the .gopclntab
// section or, failing that, from the runtime.pclntab..runtime.epclntab
// symbols.
func (b *Binary) pclntab() ([]byte, error) {
	if s := b.elf.Section(".gopclntab"); s != nil {
		if s.Size > maxPclntab {
			return nil, fmt.Errorf("goinfo: %s: .gopclntab too large (%d bytes)", b.Path, s.Size)
		}
		data, err := s.Data()
		if err != nil {
			return nil, fmt.Errorf("goinfo: %s: read .gopclntab: %w", b.Path, err)
		}
		return data, nil
	}
	start, okS := b.symbol("runtime.pclntab")
	end, okE := b.symbol("runtime.epclntab")
	if !okS || !okE || end <= start || end-start > maxPclntab {
		return nil, fmt.Errorf("%w: %s: no .gopclntab section", ErrNotGo, b.Path)
	}
	for _, s := range b.elf.Sections {
		if s.Type != elf.SHT_NOBITS && s.Addr <= start && end <= s.Addr+s.Size {
			data := make([]byte, end-start)
			if _, err := s.ReadAt(data, int64(start-s.Addr)); err != nil {
				return nil, fmt.Errorf("goinfo: %s: read pclntab: %w", b.Path, err)
			}
			return data, nil
		}
	}
	return nil, fmt.Errorf("%w: %s: pclntab symbols outside any section", ErrNotGo, b.Path)
}

// findTextStart returns the address of runtime.text, which pclntab entries
// are relative to (go1.18+). The pclntab header holds it unless the binary
// is position independent (then the field is relocated at run time and zero
// in the file); then the symbol table is used, then the .text section.
func (b *Binary) findTextStart(pcln []byte) uint64 {
	// Header (go1.18+): magic u32, 2 pad, minLC u8, ptrSize u8,
	// nfunc, nfiles, textStart (pointer sized each).
	if len(pcln) >= 8+3*8 && pcln[7] == 8 {
		magic := binary.LittleEndian.Uint32(pcln)
		if magic == 0xfffffff0 || magic == 0xfffffff1 {
			if v := binary.LittleEndian.Uint64(pcln[8+2*8:]); v != 0 {
				return v
			}
		}
	}
	if v, ok := b.symbol("runtime.text"); ok {
		return v
	}
	// Stripped and linked by an external linker (cgo): the header field is
	// zero and .text begins with C code; runtime.firstmoduledata, which
	// points at the pclntab, holds the real start.
	if v, ok := b.moduleText(); ok {
		return v
	}
	if s := b.elf.Section(".text"); s != nil {
		return s.Addr
	}
	return 0
}

// moduleText finds runtime.firstmoduledata (its first word is the pclntab's
// address) in the writable data sections and returns its text field. Layout of
// runtime.moduledata (go1.18 to go1.26): pcHeader, then six slices
// (funcnametab, cutab, filetab, pctab, pclntable, ftab), findfunctab,
// minpc, maxpc, text.
func (b *Binary) moduleText() (uint64, bool) {
	pcln := b.elf.Section(".gopclntab")
	text := b.elf.Section(".text")
	if pcln == nil || text == nil {
		return 0, false
	}
	const textOff = 8 + 6*24 + 8 + 8 + 8
	// Internal linking puts it in .noptrdata; external linkers may move it
	// (a .go.module section, for one): look in every writable data section.
	for _, sec := range b.elf.Sections {
		if sec.Type != elf.SHT_PROGBITS || sec.Flags&elf.SHF_WRITE == 0 || sec.Size > 256<<20 {
			continue
		}
		data, err := sec.Data()
		if err != nil {
			continue
		}
		for i := 0; i+textOff+8 <= len(data); i += 8 {
			if binary.LittleEndian.Uint64(data[i:]) != pcln.Addr {
				continue
			}
			v := binary.LittleEndian.Uint64(data[i+textOff:])
			if v >= text.Addr && v < text.Addr+text.Size {
				return v, true
			}
		}
	}
	return 0, false
}

func (b *Binary) symbol(name string) (uint64, bool) {
	syms, err := b.elf.Symbols()
	if err != nil {
		return 0, false
	}
	for _, s := range syms {
		if s.Name == name {
			return s.Value, true
		}
	}
	return 0, false
}

// FileOffset converts a virtual address inside an executable PT_LOAD segment
// into a file offset.
func (b *Binary) FileOffset(vaddr uint64) (uint64, error) {
	for _, p := range b.elf.Progs {
		if p.Type != elf.PT_LOAD || p.Flags&elf.PF_X == 0 {
			continue
		}
		if p.Vaddr <= vaddr && vaddr < p.Vaddr+p.Filesz {
			return vaddr - p.Vaddr + p.Off, nil
		}
	}
	return 0, fmt.Errorf("goinfo: %s: address %#x is not in an executable segment", b.Path, vaddr)
}

// Func resolves a function by its fully qualified pclntab name, e.g.
// "runtime.chansend" or "crypto/tls.(*Conn).Write".
//
// The pclntab names an ABI wrapper like the function it wraps (the .symtab
// adds ".abi0" to one of them). When a name occurs more than once, Func
// returns the one the others call or jump to, i.e. the real body, so a
// probe on it sees calls made through either ABI.
func (b *Binary) Func(name string) (fn Func, err error) {
	if b == nil || b.tab == nil || b.file == nil {
		return Func{}, errors.New("goinfo: Func on closed or nil Binary")
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("goinfo: %s: %s: malformed pclntab: %v", b.Path, name, r)
		}
	}()
	var cands []funcCode
	for i := range b.tab.Funcs {
		sf := &b.tab.Funcs[i]
		if sf.Name != name {
			continue
		}
		fc, err := b.decodeFunc(sf)
		if err != nil {
			return Func{}, err
		}
		cands = append(cands, fc)
	}
	switch len(cands) {
	case 0:
		return Func{}, fmt.Errorf("%w: %s in %s", ErrFuncNotFound, name, b.Path)
	case 1:
		return cands[0].fn, nil
	}
	var real []int
	for i, c := range cands {
		for j, o := range cands {
			if i != j && o.branches[c.fn.Entry] {
				real = append(real, i)
				break
			}
		}
	}
	if len(real) != 1 {
		return Func{}, fmt.Errorf("goinfo: %s: %d functions named %s and no single one is called by the others", b.Path, len(cands), name)
	}
	return cands[real[0]].fn, nil
}

// funcCode is a decoded function and the targets of its direct CALL/JMP
// instructions (virtual addresses).
type funcCode struct {
	fn       Func
	branches map[uint64]bool
}

func (b *Binary) decodeFunc(sf *gosym.Func) (funcCode, error) {
	name := sf.Name
	if sf.End <= sf.Entry || sf.End-sf.Entry > maxFuncSize {
		return funcCode{}, fmt.Errorf("goinfo: %s: %s has bad bounds [%#x, %#x)", b.Path, name, sf.Entry, sf.End)
	}
	off, err := b.FileOffset(sf.Entry)
	if err != nil {
		return funcCode{}, fmt.Errorf("goinfo: %s: %w", name, err)
	}
	endOff, err := b.FileOffset(sf.End - 1)
	if err != nil || endOff-off != sf.End-1-sf.Entry {
		return funcCode{}, fmt.Errorf("goinfo: %s: %s crosses a segment boundary", b.Path, name)
	}
	code := make([]byte, sf.End-sf.Entry)
	if _, err := b.file.ReadAt(code, int64(off)); err != nil {
		return funcCode{}, fmt.Errorf("goinfo: %s: read %s: %w", b.Path, name, err)
	}
	d := disasm(code)
	for i := range d.rets {
		d.rets[i] += off
	}
	branches := make(map[uint64]bool, len(d.branches))
	for _, rel := range d.branches {
		branches[uint64(int64(sf.Entry)+rel)] = true
	}
	return funcCode{
		fn: Func{
			Name:         sf.Name,
			Entry:        sf.Entry,
			Offset:       off,
			Body:         off + uint64(d.body),
			Size:         uint64(d.codeLen),
			Returns:      d.rets,
			DecodeErrors: d.decodeErrors,
		},
		branches: branches,
	}, nil
}

// findReturns disassembles code linearly from its first byte (a known
// instruction boundary) and returns the offsets, relative to code[0], of RET
// instructions (a plain C3, or C2 imm16).
//
// On a decode error at pc the true next boundary is one of pc+1..pc+15 (the
// maximum x86 instruction length). Decoding is restarted from every one of
// those candidates, advancing one byte at a time (the "skip one byte" rule);
// the first position that every candidate path reaches without another
// error is a proven boundary, and the main pass continues from there. RETs
// inside the ambiguous region are not reported. If the candidate paths do
// not converge, the rest of the function is given up. Either way the result
// only contains real instruction boundaries; decodeErrors says how many
// errors were met, so callers can see Returns may be incomplete.
func findReturns(code []byte) (rets []uint64, decodeErrors int) {
	d := disasm(code)
	return d.rets, d.decodeErrors
}

// disassembly is what disasm learns about a function's code.
type disassembly struct {
	rets []uint64 // RET offsets relative to code[0]
	// codeLen is the end of the last instruction that is not INT3 padding
	// (the linker pads functions with 0xCC up to the next entry); it is
	// len(code) when decoding gave up before the end.
	codeLen      int
	decodeErrors int
	branches     []int64 // targets of direct CALL/JMP, relative to code[0]
	body         int     // end of the prologue's stack check, 0 if none
}

// maxPrologue is how many leading instructions may precede the JBE of the
// stack check (huge frames: MOVQ SP, R12; SUBQ $n, R12; JCS; CMPQ; JBE).
const maxPrologue = 6

// disasm implements findReturns and also measures the code and collects
// direct branch targets.
func disasm(code []byte) disassembly {
	var d disassembly
	pc, n := 0, 0
	stackCmp := -1 // instruction index of CMP x, 0x10(R14)
	for pc < len(code) {
		inst, err := x86asm.Decode(code[pc:], 64)
		if err != nil || inst.Len <= 0 {
			d.decodeErrors++
			next, ok := converge(code, pc)
			if !ok {
				d.codeLen = len(code)
				return d
			}
			pc = next
			d.codeLen = pc
			continue
		}
		if isRet(code[pc:], inst) {
			d.rets = append(d.rets, uint64(pc))
		}
		if n < maxPrologue && d.decodeErrors == 0 {
			switch {
			case inst.Op == x86asm.CMP && isStackGuard(inst.Args[1]):
				stackCmp = n
			case inst.Op == x86asm.JBE && stackCmp == n-1 && d.body == 0:
				d.body = pc + inst.Len
			}
		}
		n++
		if inst.Op == x86asm.CALL || inst.Op == x86asm.JMP {
			if rel, ok := inst.Args[0].(x86asm.Rel); ok {
				d.branches = append(d.branches, int64(pc+inst.Len)+int64(rel))
			}
		}
		pc += inst.Len
		if !(inst.Op == x86asm.INT && inst.Len == 1) {
			d.codeLen = pc
		}
	}
	return d
}

// isStackGuard reports whether a is g.stackguard0, i.e. 0x10(R14).
func isStackGuard(a x86asm.Arg) bool {
	m, ok := a.(x86asm.Mem)
	return ok && m.Base == x86asm.R14 && m.Index == 0 && m.Disp == 0x10 && m.Segment == 0
}

// maxInstLen is the longest legal x86 instruction.
const maxInstLen = 15

// converge returns the first position after the undecodable instruction at
// bad that every decode path starting at bad+1..bad+15 reaches without a
// decode error. ok is false when there is no such position.
func converge(code []byte, bad int) (int, bool) {
	type path struct{ pc int }
	var paths []path
	for s := bad + 1; s <= bad+maxInstLen && s <= len(code); s++ {
		paths = append(paths, path{s})
	}
	if len(paths) == 0 {
		return 0, false
	}
	// Advance the path that is furthest behind until all agree.
	for {
		lo, hi := len(code)+1, -1
		loIdx := 0
		for i, p := range paths {
			if p.pc < lo {
				lo, loIdx = p.pc, i
			}
			if p.pc > hi {
				hi = p.pc
			}
		}
		if lo == hi {
			return lo, true
		}
		if lo >= len(code) {
			return 0, false
		}
		inst, err := x86asm.Decode(code[lo:], 64)
		if err != nil || inst.Len <= 0 {
			return 0, false
		}
		paths[loIdx].pc = lo + inst.Len
	}
}

// isRet reports whether inst, decoded at the start of b, is a plain near RET:
// C3 (one byte) or C2 imm16 (three bytes), with no prefix.
func isRet(b []byte, inst x86asm.Inst) bool {
	if inst.Op != x86asm.RET || len(b) == 0 {
		return false
	}
	return (b[0] == 0xc3 && inst.Len == 1) || (b[0] == 0xc2 && inst.Len == 3)
}
