package goinfo

import (
	"debug/dwarf"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Offsets are the struct field offsets (bytes) the BPF programs read. All
// are for linux/amd64.
type Offsets struct {
	GGoid         uint64 // runtime.g.goid (uint64)
	GM            uint64 // runtime.g.m (*m)
	MCurg         uint64 // runtime.m.curg (*g)
	HchanQcount   uint64 // runtime.hchan.qcount (uint)
	HchanElemsize uint64 // runtime.hchan.elemsize (uint16)
	ScaseSize     uint64 // sizeof(runtime.scase)
	ScaseC        uint64 // runtime.scase.c (*hchan)
	ScaseElem     uint64 // runtime.scase.elem (unsafe.Pointer)
	TLSConnConn   uint64 // crypto/tls.Conn.conn (net.Conn interface: itab, data)
	NetConnFD     uint64 // net.conn.fd (*netFD); embedded first in net.TCPConn
	NetFDPfd      uint64 // net.netFD.pfd (internal/poll.FD)
	PollFDSysfd   uint64 // internal/poll.FD.Sysfd (int)
	// The TLS read buffers: Read decrypts records from rawInput (ciphertext
	// read ahead) into input (plaintext of the current record).
	TLSConnRawInput uint64 // crypto/tls.Conn.rawInput (bytes.Buffer)
	TLSConnInput    uint64 // crypto/tls.Conn.input (bytes.Reader)
	BytesBufferOff  uint64 // bytes.Buffer.off (int; buf []byte is at 0)
	BytesReaderI    uint64 // bytes.Reader.i (int64; s []byte is at 0)

	// Source says where the values came from: "dwarf", "table go1.N" or
	// "dwarf+table go1.N" (types the program does not use have no DWARF).
	Source string
}

// field names one offset: a struct type as named in DWARF and a field of it
// ("" means the struct size).
type field struct {
	typ, name string
	dst       func(*Offsets) *uint64
}

// fields lists every offset in Offsets, in order.
func fields() []field {
	return []field{
		{"runtime.g", "goid", func(o *Offsets) *uint64 { return &o.GGoid }},
		{"runtime.g", "m", func(o *Offsets) *uint64 { return &o.GM }},
		{"runtime.m", "curg", func(o *Offsets) *uint64 { return &o.MCurg }},
		{"runtime.hchan", "qcount", func(o *Offsets) *uint64 { return &o.HchanQcount }},
		{"runtime.hchan", "elemsize", func(o *Offsets) *uint64 { return &o.HchanElemsize }},
		{"runtime.scase", "", func(o *Offsets) *uint64 { return &o.ScaseSize }},
		{"runtime.scase", "c", func(o *Offsets) *uint64 { return &o.ScaseC }},
		{"runtime.scase", "elem", func(o *Offsets) *uint64 { return &o.ScaseElem }},
		{"crypto/tls.Conn", "conn", func(o *Offsets) *uint64 { return &o.TLSConnConn }},
		{"net.conn", "fd", func(o *Offsets) *uint64 { return &o.NetConnFD }},
		{"net.netFD", "pfd", func(o *Offsets) *uint64 { return &o.NetFDPfd }},
		{"internal/poll.FD", "Sysfd", func(o *Offsets) *uint64 { return &o.PollFDSysfd }},
		{"crypto/tls.Conn", "rawInput", func(o *Offsets) *uint64 { return &o.TLSConnRawInput }},
		{"crypto/tls.Conn", "input", func(o *Offsets) *uint64 { return &o.TLSConnInput }},
		{"bytes.Buffer", "off", func(o *Offsets) *uint64 { return &o.BytesBufferOff }},
		{"bytes.Reader", "i", func(o *Offsets) *uint64 { return &o.BytesReaderI }},
	}
}

func (f field) String() string {
	if f.name == "" {
		return "sizeof(" + f.typ + ")"
	}
	return f.typ + "." + f.name
}

// tableOffsets returns the verified offsets for a Go minor version on
// amd64. Every entry must be checked against DWARF by TestTableMatchesDWARF
// with that toolchain before it is added.
func tableOffsets(minor int) (Offsets, bool) {
	switch minor {
	case 26:
		return Offsets{
			GGoid:         152,
			GM:            48,
			MCurg:         184,
			HchanQcount:   0,
			HchanElemsize: 24,
			ScaseSize:     16,
			ScaseC:        0,
			ScaseElem:     8,
			TLSConnConn:   0,
			NetConnFD:     0,
			NetFDPfd:      0,
			PollFDSysfd:   16,
			// Checked against DWARF of a go1.26.8 binary that uses
			// crypto/tls and bytes.Buffer.
			TLSConnRawInput: 672,
			TLSConnInput:    712,
			BytesBufferOff:  24,
			BytesReaderI:    24,
		}, true
	}
	return Offsets{}, false
}

// GoMinor extracts N from a version such as "go1.N.P", "go1.NrcX" or
// "devel go1.N-hash ...". ok is false if there is none.
func GoMinor(version string) (int, bool) {
	i := strings.Index(version, "go1.")
	if i < 0 {
		return 0, false
	}
	rest := version[i+len("go1."):]
	end := 0
	for end < len(rest) && end < 4 && rest[end] >= '0' && rest[end] <= '9' {
		end++
	}
	n, err := strconv.Atoi(rest[:end])
	if err != nil {
		return 0, false
	}
	return n, true
}

// Offsets returns the struct field offsets for this binary: from DWARF when
// present, the versioned table otherwise (and for types absent from DWARF
// because the program does not use them). The error wraps ErrOffsetUnknown
// and names every field that could not be found.
func (b *Binary) Offsets() (out Offsets, err error) {
	if b == nil || b.elf == nil {
		return Offsets{}, errors.New("goinfo: Offsets on nil Binary")
	}
	defer func() {
		if r := recover(); r != nil {
			// debug/dwarf can panic on corrupt input.
			out, err = Offsets{}, fmt.Errorf("goinfo: %s: malformed DWARF: %v", b.Path, r)
		}
	}()
	all := fields()
	found := make([]bool, len(all))
	usedDWARF := false
	if b.HasDWARF {
		d, err := b.typeDWARF()
		if err != nil {
			return Offsets{}, fmt.Errorf("goinfo: %s: read DWARF: %w", b.Path, err)
		}
		got, err := dwarfOffsets(d, all)
		if err != nil {
			return Offsets{}, fmt.Errorf("goinfo: %s: %w", b.Path, err)
		}
		for i, f := range all {
			if v, ok := got[f.String()]; ok {
				*f.dst(&out) = v
				found[i] = true
				usedDWARF = true
			}
		}
	}
	minor, hasMinor := GoMinor(b.GoVersion)
	tab, hasTab := tableOffsets(minor)
	usedTable := false
	var missing []string
	for i, f := range all {
		if found[i] {
			continue
		}
		if hasMinor && hasTab {
			*f.dst(&out) = *f.dst(&tab)
			usedTable = true
			continue
		}
		missing = append(missing, f.String())
	}
	switch {
	case usedDWARF && usedTable:
		out.Source = fmt.Sprintf("dwarf+table go1.%d", minor)
	case usedDWARF:
		out.Source = "dwarf"
	case usedTable:
		out.Source = fmt.Sprintf("table go1.%d", minor)
	}
	if len(missing) > 0 {
		return out, fmt.Errorf("%w: %s (%s, DWARF %t): %s", ErrOffsetUnknown, b.Path, b.GoVersion, b.HasDWARF, strings.Join(missing, ", "))
	}
	return out, nil
}

// dwarfOffsets returns the offsets of the wanted fields, keyed by
// field.String(). Fields whose struct is not in the DWARF are absent from the
// map. The Go linker puts all type entries in the "runtime" compile unit, so
// that unit is searched first and the others only for what is still missing.
func dwarfOffsets(d *dwarf.Data, want []field) (map[string]uint64, error) {
	types := make(map[string]bool)
	for _, f := range want {
		types[f.typ] = true
	}
	got := make(map[string]uint64)
	for _, runtimeOnly := range []bool{true, false} {
		if len(types) == 0 {
			break
		}
		if err := walkTypes(d, runtimeOnly, types, want, got); err != nil {
			return nil, err
		}
	}
	return got, nil
}

// walkTypes scans the top-level entries of the compile units (only the
// "runtime" one when runtimeOnly) for struct types named in types, records
// the wanted fields in got and deletes each struct found from types.
func walkTypes(d *dwarf.Data, runtimeOnly bool, types map[string]bool, want []field, got map[string]uint64) error {
	r := d.Reader()
	for len(types) > 0 {
		e, err := r.Next()
		if err != nil {
			return fmt.Errorf("walk DWARF: %w", err)
		}
		if e == nil {
			return nil
		}
		name, _ := e.Val(dwarf.AttrName).(string)
		if e.Tag == dwarf.TagCompileUnit {
			if runtimeOnly && name != "runtime" {
				r.SkipChildren()
			}
			continue // descend into the unit's children
		}
		if e.Tag == dwarf.TagStructType && types[name] {
			// Read the members directly: d.Type would resolve the
			// whole graph of referenced types (runtime.g reaches most
			// of the runtime) and costs tens of milliseconds.
			if err := structFields(r, e, name, want, got); err != nil {
				return err
			}
			delete(types, name)
			continue
		}
		if e.Children {
			r.SkipChildren()
		}
	}
	return nil
}

// structFields reads the member entries that follow the struct entry e and
// records the wanted ones; it consumes the struct's children.
func structFields(r *dwarf.Reader, e *dwarf.Entry, name string, want []field, got map[string]uint64) error {
	members := make(map[string]uint64)
	if e.Children {
		for {
			m, err := r.Next()
			if err != nil {
				return fmt.Errorf("DWARF type %s: %w", name, err)
			}
			if m == nil || m.Tag == 0 {
				break // end of children
			}
			if m.Children {
				r.SkipChildren()
			}
			if m.Tag != dwarf.TagMember {
				continue
			}
			mname, _ := m.Val(dwarf.AttrName).(string)
			if loc, ok := m.Val(dwarf.AttrDataMemberLoc).(int64); ok && loc >= 0 {
				members[mname] = uint64(loc)
			}
		}
	}
	for _, f := range want {
		if f.typ != name {
			continue
		}
		if f.name == "" {
			if size, ok := e.Val(dwarf.AttrByteSize).(int64); ok && size >= 0 {
				got[f.String()] = uint64(size)
			}
			continue
		}
		if off, ok := members[f.name]; ok {
			got[f.String()] = off
		}
	}
	return nil
}

// typeDWARF loads only the DWARF sections needed to read type entries
// (.debug_abbrev, .debug_info, .debug_str and the DWARF 5 index tables);
// elf.File.DWARF would also
// decompress the line, frame, location and range tables, which costs most
// of the time. It falls back to elf.File.DWARF when a section is missing.
func (b *Binary) typeDWARF() (*dwarf.Data, error) {
	read := func(name string) ([]byte, bool, error) {
		s := b.elf.Section(".debug_" + name)
		if s == nil {
			return nil, false, nil
		}
		data, err := s.Data()
		return data, true, err
	}
	abbrev, okA, err := read("abbrev")
	if err != nil {
		return nil, err
	}
	info, okI, err := read("info")
	if err != nil {
		return nil, err
	}
	str, _, err := read("str")
	if err != nil {
		return nil, err
	}
	if !okA || !okI {
		return b.elf.DWARF()
	}
	d, err := dwarf.New(abbrev, nil, nil, info, nil, nil, nil, str)
	if err != nil {
		return nil, err
	}
	// DWARF 5 (go1.25+) refers to addresses and strings indirectly; the
	// attribute decoder needs these tables even for type entries.
	for _, name := range []string{"addr", "str_offsets", "line_str", "rnglists"} {
		data, ok, err := read(name)
		if err != nil {
			return nil, err
		}
		if ok {
			if err := d.AddSection(".debug_"+name, data); err != nil {
				return nil, err
			}
		}
	}
	return d, nil
}
