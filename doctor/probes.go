package doctor

import (
	"bufio"
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"
)

// defaultTracefs is where tracefs is mounted when it is missing.
const defaultTracefs = "/sys/kernel/tracing"

// prober runs the probes in order; later probes use what earlier ones found.
type prober struct {
	tracefs string // mount point found or created by probeTracefs
	mounts  []mount
}

type probe struct {
	name string
	run  func(*prober, context.Context) Check
}

// Probe runs every probe and returns their results in a fixed order.
// tracefs is probed (and mounted if missing) before anything that attaches
// to tracepoints, because cilium/ebpf resolves the tracefs path only once.
func Probe(ctx context.Context) []Check {
	// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK; later ones
	// ignore it. Failure shows up in the load probes below.
	_ = rlimit.RemoveMemlock()

	p := &prober{}
	probes := []probe{
		{CheckKernel, (*prober).kernel},
		{CheckPrivileges, (*prober).privileges},
		{CheckLockdown, (*prober).lockdown},
		{CheckBTF, (*prober).btf},
		{CheckTracefs, (*prober).tracefsMount},
		{CheckSyscallTracepoints, (*prober).syscallTracepoints},
		{CheckRawTracepoints, (*prober).rawTracepoints},
		{CheckKprobes, (*prober).kprobes},
		{CheckFentry, (*prober).fentry},
		{CheckUprobes, (*prober).uprobes},
		{CheckPerfEvents, (*prober).perfEvents},
		{CheckRingBuffer, (*prober).ringBuffer},
		{CheckAFPacket, (*prober).afPacket},
		{CheckCgroup, (*prober).cgroup},
	}
	checks := make([]Check, 0, len(probes))
	for _, pr := range probes {
		if err := ctx.Err(); err != nil {
			checks = append(checks, Check{Name: pr.name, Detail: "not probed: " + err.Error()})
			continue
		}
		c := pr.run(p, ctx)
		c.Name = pr.name
		checks = append(checks, c)
	}
	return checks
}

// passed and failed build a Check result; Probe fills in the name.
func passed(format string, args ...any) Check {
	return Check{OK: true, Detail: fmt.Sprintf(format, args...)}
}

func failed(format string, args ...any) Check {
	return Check{Detail: fmt.Sprintf(format, args...)}
}

// minKernelMajor.minKernelMinor is the oldest kernel Sightline supports: BPF ring buffers
// arrived in 5.8.
const minKernelMajor, minKernelMinor = 5, 8

func (p *prober) kernel(context.Context) Check {
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		return failed("uname: %v", err)
	}
	release := unix.ByteSliceToString(uts.Release[:])
	code, err := features.LinuxVersionCode()
	if err != nil {
		return failed("%s: version: %v", release, err)
	}
	major, minor, patch := code>>16, (code>>8)&0xff, code&0xff
	detail := fmt.Sprintf("%s (%d.%d.%d) %s", release, major, minor, patch, unix.ByteSliceToString(uts.Machine[:]))
	if major < minKernelMajor || (major == minKernelMajor && minor < minKernelMinor) {
		return failed("%s; need >= %d.%d", detail, minKernelMajor, minKernelMinor)
	}
	return passed("%s", detail)
}

// Capability numbers from linux/capability.h (not all are in x/sys/unix
// under these names on every version).
const (
	capNetRaw   = 13
	capSysAdmin = 21
	capPerfmon  = 38
	capBPF      = 39
)

func (p *prober) privileges(context.Context) Check {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return failed("capget: %v", err)
	}
	has := func(c uint) bool { return data[c/32].Effective&(1<<(c%32)) != 0 }
	detail := fmt.Sprintf("euid %d; CAP_BPF=%t CAP_PERFMON=%t CAP_SYS_ADMIN=%t CAP_NET_RAW=%t",
		os.Geteuid(), has(capBPF), has(capPerfmon), has(capSysAdmin), has(capNetRaw))
	if (has(capBPF) && has(capPerfmon)) || has(capSysAdmin) {
		return passed("%s", detail)
	}
	return failed("%s; need root, CAP_SYS_ADMIN, or CAP_BPF+CAP_PERFMON", detail)
}

// lockdown: "integrity" still allows tracing; "confidentiality" forbids BPF
// reads of kernel memory, which socket capture depends on.
func (p *prober) lockdown(context.Context) Check {
	const path = "/sys/kernel/security/lockdown"
	b, err := readBounded(path, 256)
	if errors.Is(err, os.ErrNotExist) {
		return passed("%s absent: lockdown LSM not active", path)
	}
	if err != nil {
		return failed("%v", err)
	}
	mode := parseLockdown(string(b))
	switch mode {
	case "none", "integrity":
		return passed("%s", mode)
	case "confidentiality":
		return failed("%s: BPF may not read kernel memory", mode)
	}
	return failed("unrecognised lockdown state %q", strings.TrimSpace(string(b)))
}

// parseLockdown returns the bracketed (active) mode of
// "none [integrity] confidentiality".
func parseLockdown(s string) string {
	_, after, ok := strings.Cut(s, "[")
	if !ok {
		return ""
	}
	mode, _, ok := strings.Cut(after, "]")
	if !ok {
		return ""
	}
	return mode
}

func (p *prober) btf(context.Context) Check {
	const path = "/sys/kernel/btf/vmlinux"
	st, err := os.Stat(path)
	if err != nil {
		return failed("%v (kernel built without CONFIG_DEBUG_INFO_BTF?)", err)
	}
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		return failed("parse %s: %v", path, err)
	}
	// Socket capture reads struct sock/task_struct fields via CO-RE.
	for _, name := range []string{"task_struct", "sock"} {
		if _, err := spec.AnyTypeByName(name); err != nil {
			return failed("%s parsed but %s: %v", path, name, err)
		}
	}
	return passed("%s (%d KiB) parsed; task_struct and sock present", path, st.Size()>>10)
}

type mount struct{ point, fstype string }

// readMounts parses /proc/self/mountinfo (mount point is field 5, the
// filesystem type follows the " - " separator).
func readMounts() ([]mount, error) {
	b, err := readBounded("/proc/self/mountinfo", 4<<20)
	if err != nil {
		return nil, err
	}
	return parseMountinfo(b), nil
}

func parseMountinfo(b []byte) []mount {
	var mounts []mount
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		pre, post, found := strings.Cut(sc.Text(), " - ")
		if !found {
			continue
		}
		f, g := strings.Fields(pre), strings.Fields(post)
		if len(f) < 5 || len(g) < 1 {
			continue
		}
		mounts = append(mounts, mount{point: unescapeMount(f[4]), fstype: g[0]})
	}
	return mounts
}

// unescapeMount undoes mountinfo's octal escapes (\040 for space, ...).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func findTracefs(mounts []mount) string {
	for _, m := range mounts {
		if m.fstype == "tracefs" {
			return m.point
		}
	}
	for _, m := range mounts {
		if m.fstype == "debugfs" {
			if st, err := os.Stat(filepath.Join(m.point, "tracing")); err == nil && st.IsDir() {
				return filepath.Join(m.point, "tracing")
			}
		}
	}
	return ""
}

func (p *prober) tracefsMount(context.Context) Check {
	mounts, err := readMounts()
	if err != nil {
		return failed("read mountinfo: %v", err)
	}
	p.mounts = mounts
	if dir := findTracefs(mounts); dir != "" {
		p.tracefs = dir
		return passed("mounted at %s", dir)
	}
	if err := unix.Mount("tracefs", defaultTracefs, "tracefs", 0, ""); err != nil {
		return failed("not mounted, and mounting at %s failed: %v", defaultTracefs, err)
	}
	p.tracefs = defaultTracefs
	return passed("was not mounted; mounted by doctor at %s", defaultTracefs)
}

// counterProgram increments slot 0 of an array map each time it runs, so a
// probe can tell that an attached program actually fires.
func counterProgram(typ ebpf.ProgramType, counter *ebpf.Map) *ebpf.ProgramSpec {
	return &ebpf.ProgramSpec{
		Type: typ,
		Instructions: asm.Instructions{
			asm.StoreImm(asm.RFP, -4, 0, asm.Word),
			asm.LoadMapPtr(asm.R1, counter.FD()),
			asm.Mov.Reg(asm.R2, asm.RFP),
			asm.Add.Imm(asm.R2, -4),
			asm.FnMapLookupElem.Call(),
			asm.JEq.Imm(asm.R0, 0, "exit"),
			asm.Mov.Imm(asm.R1, 1),
			asm.StoreXAdd(asm.R0, asm.R1, asm.DWord),
			asm.Mov.Imm(asm.R0, 0).WithSymbol("exit"),
			asm.Return(),
		},
		License: "Dual MIT/GPL",
	}
}

// firingProbe loads a counter program of typ, attaches it with attach,
// runs trigger, and reports whether the program ran at least once.
func firingProbe(typ ebpf.ProgramType, attach func(*ebpf.Program) (link.Link, error), trigger func() error) (uint64, error) {
	counter, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 1})
	if err != nil {
		return 0, fmt.Errorf("create counter map: %w", err)
	}
	defer counter.Close()
	prog, err := ebpf.NewProgram(counterProgram(typ, counter))
	if err != nil {
		return 0, fmt.Errorf("load %s program: %w", typ, err)
	}
	defer prog.Close()
	l, err := attach(prog)
	if err != nil {
		return 0, fmt.Errorf("attach: %w", err)
	}
	defer l.Close()
	if err := trigger(); err != nil {
		return 0, fmt.Errorf("trigger: %w", err)
	}
	var n uint64
	if err := counter.Lookup(uint32(0), &n); err != nil {
		return 0, fmt.Errorf("read counter: %w", err)
	}
	if n == 0 {
		return 0, errors.New("attached but the program never ran")
	}
	return n, nil
}

// writeDevNull makes a write(2) so that sys_enter_write/sys_enter fire.
func writeDevNull() error {
	f, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.Write([]byte("sightline doctor\n"))
	return err
}

func (p *prober) syscallTracepoints(context.Context) Check {
	if p.tracefs == "" {
		return failed("tracefs not available")
	}
	idFile := filepath.Join(p.tracefs, "events", "syscalls", "sys_enter_write", "id")
	if _, err := os.Stat(idFile); err != nil {
		return failed("syscalls:sys_enter_write missing (CONFIG_FTRACE_SYSCALLS?): %v", err)
	}
	n, err := firingProbe(ebpf.TracePoint, func(prog *ebpf.Program) (link.Link, error) {
		return link.Tracepoint("syscalls", "sys_enter_write", prog, nil)
	}, writeDevNull)
	if err != nil {
		return failed("syscalls:sys_enter_write: %v", err)
	}
	return passed("syscalls:sys_enter_write attached, fired %d times, detached", n)
}

func (p *prober) rawTracepoints(context.Context) Check {
	n, err := firingProbe(ebpf.RawTracepoint, func(prog *ebpf.Program) (link.Link, error) {
		return link.AttachRawTracepoint(link.RawTracepointOptions{Name: "sys_enter", Program: prog})
	}, writeDevNull)
	if err != nil {
		return failed("raw_tp sys_enter: %v", err)
	}
	return passed("raw_tp sys_enter attached, fired %d times, detached", n)
}

// kprobeTarget is a stable, always-present kernel function.
const kprobeTarget = "vfs_write"

func (p *prober) kprobes(context.Context) Check {
	if err := features.HaveProgramType(ebpf.Kprobe); err != nil {
		return failed("kprobe program type: %v", err)
	}
	n, err := firingProbe(ebpf.Kprobe, func(prog *ebpf.Program) (link.Link, error) {
		return link.Kprobe(kprobeTarget, prog, nil)
	}, writeDevNull)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return failed("kernel has no kprobe support (no kprobe PMU, no tracefs kprobe_events): kprobe %s: %v", kprobeTarget, err)
		}
		return failed("kprobe %s: %v", kprobeTarget, err)
	}
	return passed("kprobe %s attached, fired %d times, detached", kprobeTarget, n)
}

func (p *prober) fentry(context.Context) Check {
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:         ebpf.Tracing,
		AttachType:   ebpf.AttachTraceFEntry,
		AttachTo:     kprobeTarget,
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()},
		License:      "Dual MIT/GPL",
	})
	if err != nil {
		if errors.Is(err, unix.EPERM) {
			// cilium/ebpf suggests MEMLOCK for any EPERM; memlock was lifted
			// above and is not charged on >= 5.11, so the kernel refuses
			// tracing programs themselves.
			return failed("kernel refuses fentry programs (EPERM): load fentry/%s: %v", kprobeTarget, err)
		}
		return failed("load fentry/%s: %v", kprobeTarget, err)
	}
	defer prog.Close()
	l, err := link.AttachTracing(link.TracingOptions{Program: prog, AttachType: ebpf.AttachTraceFEntry})
	if err != nil {
		return failed("attach fentry/%s: %v", kprobeTarget, err)
	}
	l.Close()
	return passed("fentry/%s loaded, attached, detached", kprobeTarget)
}

// uprobeTarget is the function the uprobe probe attaches to in the running
// binary; it must not be inlined so that calling it hits the probe.
//
//go:noinline
func uprobeTarget(x int) int { return x*31 + 7 }

func (p *prober) uprobes(context.Context) Check {
	self, selfErr := os.Executable()
	if selfErr == nil {
		symbol := fmt.Sprintf("%s.uprobeTarget", packagePath())
		n, err := firingProbe(ebpf.Kprobe, func(prog *ebpf.Program) (link.Link, error) {
			ex, err := link.OpenExecutable(self)
			if err != nil {
				return nil, err
			}
			return ex.Uprobe(symbol, prog, &link.UprobeOptions{PID: os.Getpid()})
		}, func() error {
			if uprobeTarget(1) != 38 {
				return errors.New("uprobe target miscomputed")
			}
			return nil
		})
		if err == nil {
			return passed("uprobe on %s:%s attached, fired %d times, detached", self, symbol, n)
		}
		selfErr = fmt.Errorf("%s: %w", self, err)
	}
	// A stripped binary has no symbols to attach to; /bin/true's ELF entry
	// point needs none, and running it fires the probe.
	const fallback = "/bin/true"
	entry, err := elfEntryOffset(fallback)
	if err != nil {
		return failed("own binary: %v; %s: %v", selfErr, fallback, err)
	}
	n, err := firingProbe(ebpf.Kprobe, func(prog *ebpf.Program) (link.Link, error) {
		ex, err := link.OpenExecutable(fallback)
		if err != nil {
			return nil, err
		}
		return ex.Uprobe("entry", prog, &link.UprobeOptions{Address: entry})
	}, func() error { return exec.Command(fallback).Run() })
	if err != nil {
		return failed("own binary: %v; %s: %v", selfErr, fallback, err)
	}
	return passed("uprobe on %s entry attached, fired %d times, detached (own binary: %v)", fallback, n, selfErr)
}

// packagePath is this package's import path as the linker names symbols.
func packagePath() string {
	type marker struct{}
	return reflect.TypeFor[marker]().PkgPath()
}

// elfEntryOffset converts an executable's entry point to the file offset
// uprobes are placed at.
func elfEntryOffset(path string) (uint64, error) {
	f, err := elf.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_LOAD && prog.Flags&elf.PF_X != 0 &&
			prog.Vaddr <= f.Entry && f.Entry < prog.Vaddr+prog.Memsz {
			return f.Entry - prog.Vaddr + prog.Off, nil
		}
	}
	return 0, fmt.Errorf("entry %#x not in an executable segment", f.Entry)
}

func (p *prober) perfEvents(context.Context) Check {
	attr := unix.PerfEventAttr{
		Type:   unix.PERF_TYPE_SOFTWARE,
		Config: unix.PERF_COUNT_SW_CPU_CLOCK,
		Size:   uint32(unsafe.Sizeof(unix.PerfEventAttr{})),
		Sample: 99, // sample frequency, as a profiler would use
		Bits:   unix.PerfBitFreq | unix.PerfBitDisabled,
	}
	paranoid := "unknown"
	if b, err := readBounded("/proc/sys/kernel/perf_event_paranoid", 32); err == nil {
		paranoid = strings.TrimSpace(string(b))
	}
	// pid -1, cpu 0: system-wide on one CPU, which is what profiling needs.
	fd, err := unix.PerfEventOpen(&attr, -1, 0, -1, unix.PERF_FLAG_FD_CLOEXEC)
	if err != nil {
		return failed("perf_event_open(cpu-clock, cpu 0): %v (perf_event_paranoid=%s)", err, paranoid)
	}
	unix.Close(fd)
	return passed("system-wide cpu-clock event opened (perf_event_paranoid=%s)", paranoid)
}

func (p *prober) ringBuffer(context.Context) Check {
	if err := features.HaveMapType(ebpf.RingBuf); err != nil {
		return failed("BPF_MAP_TYPE_RINGBUF: %v", err)
	}
	size := uint32(os.Getpagesize()) * 16
	m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.RingBuf, MaxEntries: size})
	if err != nil {
		return failed("create %d-byte ring buffer: %v", size, err)
	}
	m.Close()
	return passed("%d-byte BPF_MAP_TYPE_RINGBUF created", size)
}

func (p *prober) afPacket(context.Context) Check {
	// The protocol is in network byte order.
	proto := int(uint16(unix.ETH_P_ALL)<<8 | uint16(unix.ETH_P_ALL)>>8)
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		return failed("socket(AF_PACKET, SOCK_RAW, ETH_P_ALL): %v", err)
	}
	unix.Close(fd)
	return passed("AF_PACKET raw socket opened")
}

func (p *prober) cgroup(context.Context) Check {
	mounts := p.mounts
	if mounts == nil {
		var err error
		if mounts, err = readMounts(); err != nil {
			return failed("read mountinfo: %v", err)
		}
	}
	var v2 string
	var v1 int
	for _, m := range mounts {
		switch m.fstype {
		case "cgroup2":
			if v2 == "" {
				v2 = m.point
			}
		case "cgroup":
			v1++
		}
	}
	if _, err := readBounded("/proc/self/cgroup", 64<<10); err != nil {
		return failed("/proc/self/cgroup unreadable: %v", err)
	}
	switch {
	case v2 != "" && v1 == 0:
		controllers, _ := readBounded(filepath.Join(v2, "cgroup.controllers"), 4096)
		return passed("cgroup v2 unified at %s (controllers: %s)", v2, strings.TrimSpace(string(controllers)))
	case v2 != "":
		return passed("hybrid: %d cgroup v1 hierarchies, cgroup v2 at %s", v1, v2)
	case v1 > 0:
		return passed("cgroup v1 only: %d hierarchies", v1)
	}
	return failed("no cgroup filesystem mounted")
}

func readBounded(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return b, nil
}
