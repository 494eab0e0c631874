package goinfo

import (
	"debug/elf"
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"
)

// TestAllFunctions resolves every function symbol of the full build through
// the pclntab of both builds and checks it against the .symtab: same entry
// and size, RETs on C3/C2 bytes, identical results for the stripped build.
func TestAllFunctions(t *testing.T) {
	b := mustBuild(t)
	full := mustInspect(t, b.full)
	stripped := mustInspect(t, b.stripped)
	raw, err := os.ReadFile(b.full)
	if err != nil {
		t.Fatal(err)
	}
	f, err := elf.Open(b.full)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	syms, err := f.Symbols()
	if err != nil {
		t.Fatal(err)
	}
	byName := make(map[string]uint64, len(syms))
	for _, s := range syms {
		byName[s.Name] = s.Value
	}
	var n, notFound, wrappers, undecodable int
	for _, s := range syms {
		if elf.ST_TYPE(s.Info) != elf.STT_FUNC {
			continue
		}
		fn, err := full.Func(s.Name)
		fs, errS := stripped.Func(s.Name)
		if (err == nil) != (errS == nil) || !reflect.DeepEqual(fn, fs) {
			t.Errorf("%s: full %+v, %v; stripped %+v, %v", s.Name, fn, err, fs, errS)
			continue
		}
		if errors.Is(err, ErrFuncNotFound) {
			// The pclntab has no ".abi0" names and no text markers.
			// Compiler-generated type:.eq.T.N functions get a linker
			// suffix in .symtab only.
			if !strings.HasSuffix(s.Name, ".abi0") && !strings.HasPrefix(s.Name, "type:") && s.Name != "runtime.text" && s.Name != "runtime.etext" {
				t.Errorf("%s: %v", s.Name, err)
			}
			notFound++
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", s.Name, err)
			continue
		}
		n++
		switch {
		case fn.Entry != s.Value:
			// An ABI wrapper shares the name; Func must return the body.
			if byName[s.Name+".abi0"] != fn.Entry {
				t.Errorf("%s: entry %#x, .symtab %#x and no .abi0 body there", s.Name, fn.Entry, s.Value)
			}
			wrappers++
		case fn.DecodeErrors > 0:
			undecodable++ // hand-written assembly x86asm cannot decode
		case fn.Size != s.Size && s.Size > 1:
			t.Errorf("%s: size %d, .symtab %d", s.Name, fn.Size, s.Size)
		}
		if fn.Body < fn.Offset || fn.Body-fn.Offset > 40 {
			t.Errorf("%s: Body %#x, Offset %#x", s.Name, fn.Body, fn.Offset)
		}
		for _, r := range fn.Returns {
			if raw[r] != 0xc3 && raw[r] != 0xc2 {
				t.Errorf("%s: return at %#x is byte %#x", s.Name, r, raw[r])
			}
		}
	}
	if undecodable > n/100 {
		t.Errorf("%d of %d functions had decode errors", undecodable, n)
	}
	t.Logf("%d functions resolved, %d ABI-wrapper names resolved to the body, %d with decode errors, %d .symtab-only names", n, wrappers, undecodable, notFound)
}
