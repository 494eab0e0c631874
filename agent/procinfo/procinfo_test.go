package procinfo

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

const fixtureRoot = "testdata/proc"

// fakeClock is a manually advanced time source for TTL tests.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

func newTestResolver(t *testing.T, opts Options) (*Resolver, *fakeClock) {
	t.Helper()
	r := New(opts)
	clk := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	r.now = clk.now
	return r, clk
}

func TestLookupFixtures(t *testing.T) {
	tests := []struct {
		pid  uint32
		want Info
	}{
		{100, Info{PID: 100, PPID: 1, Name: "nginx", Exe: "/usr/sbin/nginx", Cmdline: "nginx: master process nginx -g daemon off;",
			ContainerID: "d548c5b83fa61d8e3bd86ad42a7ffea9b7c86e3f9d8095c1577d3e1270bb9420", Runtime: RuntimeDocker,
			CgroupPath: "/docker/d548c5b83fa61d8e3bd86ad42a7ffea9b7c86e3f9d8095c1577d3e1270bb9420", StartTime: 5001}},
		{101, Info{PID: 101, PPID: 1, Name: "redis-server", Exe: "/usr/local/bin/redis-server", Cmdline: "redis-server *:6379",
			ContainerID: "6de102c1cecc011032305908295668eedad74d736c6d216e4c42f416ae84988f", Runtime: RuntimeDocker,
			CgroupPath: "/system.slice/docker-6de102c1cecc011032305908295668eedad74d736c6d216e4c42f416ae84988f.scope", StartTime: 5002}},
		{102, Info{PID: 102, PPID: 1, Name: "java", Exe: "/usr/lib/jvm/bin/java", Cmdline: "java -jar /app/app.jar",
			ContainerID: "2397d068a8d1552a4c3f9147ba9c94e086bfd66fb2acb5bbaf47197105127d5f", Runtime: RuntimeContainerd,
			PodUID:     "0a1b2c3d-1111-4222-8333-444455556666",
			CgroupPath: "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0a1b2c3d_1111_4222_8333_444455556666.slice/cri-containerd-2397d068a8d1552a4c3f9147ba9c94e086bfd66fb2acb5bbaf47197105127d5f.scope",
			StartTime:  5003}},
		{103, Info{PID: 103, PPID: 1, Name: "python3", Exe: "/usr/bin/python3.12", Cmdline: "python3 -m http.server",
			ContainerID: "c64064614423cb790e88b3e5492ff5ccf673b25ae823089f7a60c65cda24d809", Runtime: RuntimeCRIO,
			PodUID:     "9f8e7d6c-aaaa-4bbb-8ccc-ddddeeeeffff",
			CgroupPath: "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod9f8e7d6c_aaaa_4bbb_8ccc_ddddeeeeffff.slice/crio-c64064614423cb790e88b3e5492ff5ccf673b25ae823089f7a60c65cda24d809.scope",
			StartTime:  5004}},
		{104, Info{PID: 104, PPID: 1, Name: "postgres", Exe: "/usr/lib/postgresql/16/bin/postgres", Cmdline: "postgres -D /var/lib/postgresql/data",
			ContainerID: "2f259bab93aaaaa2542ba43ef33eb990d0999ee1b9924b557b7be53c0b7a1bb9", Runtime: RuntimePodman,
			CgroupPath: "/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-2f259bab93aaaaa2542ba43ef33eb990d0999ee1b9924b557b7be53c0b7a1bb9.scope/container",
			StartTime:  5005}},
		{105, Info{PID: 105, PPID: 1, Name: "envoy", Exe: "/usr/local/bin/envoy", Cmdline: "envoy -c /etc/envoy.yaml",
			ContainerID: "5f36926c7065f87db6edf317bf1c653bed5161aa13822e03d6a9de4b4c255c71",
			PodUID:      "12345678-abcd-4ef0-9abc-def012345678",
			CgroupPath:  "/kubepods/burstable/pod12345678-abcd-4ef0-9abc-def012345678/5f36926c7065f87db6edf317bf1c653bed5161aa13822e03d6a9de4b4c255c71",
			StartTime:   5006}},
		{106, Info{PID: 106, PPID: 1, Name: "sshd", Exe: "/usr/sbin/sshd", Cmdline: "sshd: /usr/sbin/sshd -D [listener] 0 of 10-100 startups",
			CgroupPath: "/system.slice/ssh.service", StartTime: 900}},
		{109, Info{PID: 109, PPID: 1, Name: "conmon", Exe: "/usr/bin/conmon", Cmdline: "/usr/bin/conmon --api-version 1",
			CgroupPath: "/machine.slice/libpod-conmon-bab5c4d7552ba41ee95f3ca277ee00dd454fc697f2c459b536ff208c70f9a8de.scope", StartTime: 5009}},
		// Kernel thread: no exe link, empty cmdline.
		{2, Info{PID: 2, Name: "kthreadd", CgroupPath: "/"}},
	}
	r := New(Options{ProcRoot: fixtureRoot})
	for _, tt := range tests {
		t.Run(tt.want.Name, func(t *testing.T) {
			got, ok := r.Lookup(tt.pid)
			if !ok {
				t.Fatalf("Lookup(%d) = false", tt.pid)
			}
			if got != tt.want {
				t.Errorf("Lookup(%d):\n got %+v\nwant %+v", tt.pid, got, tt.want)
			}
		})
	}
}

func TestLookupTrickyCommAndLongCmdline(t *testing.T) {
	r := New(Options{ProcRoot: fixtureRoot})
	got, ok := r.Lookup(107)
	if !ok {
		t.Fatal("Lookup(107) = false")
	}
	if got.Name != "my) app (x" || got.StartTime != 5007 || got.PPID != 1 {
		t.Errorf("comm with parentheses parsed as Name=%q StartTime=%d PPID=%d", got.Name, got.StartTime, got.PPID)
	}
	if len(got.Cmdline) != MaxCmdline {
		t.Errorf("len(Cmdline) = %d, want cap %d", len(got.Cmdline), MaxCmdline)
	}
	if !strings.HasPrefix(got.Cmdline, "/opt/app/bin/worker --flag=0000 --flag=0001 ") {
		t.Errorf("Cmdline prefix = %q", got.Cmdline[:60])
	}
}

func TestLookupAbsent(t *testing.T) {
	r, clk := newTestResolver(t, Options{ProcRoot: fixtureRoot, NegativeTTL: time.Second})
	if _, ok := r.Lookup(999); ok {
		t.Fatal("Lookup(999) = true for missing pid")
	}
	if _, ok := r.Lookup(999); ok {
		t.Fatal("second Lookup(999) = true")
	}
	s := r.Stats()
	if s.Loads != 1 || s.NegativeHits != 1 || s.Vanished != 1 {
		t.Errorf("after two lookups of a missing pid: %+v, want 1 load, 1 negative hit, 1 vanished", s)
	}
	clk.advance(2 * time.Second)
	r.Lookup(999)
	if s := r.Stats(); s.Loads != 2 {
		t.Errorf("negative entry not retried after NegativeTTL: Loads = %d", s.Loads)
	}
	if _, ok := r.Lookup(0); ok {
		t.Error("Lookup(0) = true")
	}
}

func TestLookupMalformedStat(t *testing.T) {
	r := New(Options{ProcRoot: fixtureRoot})
	if info, ok := r.Lookup(108); ok {
		t.Fatalf("Lookup(108) with garbage stat = %+v, true", info)
	}
	if s := r.Stats(); s.Errors != 1 || s.Vanished != 0 {
		t.Errorf("stats = %+v, want the garbage stat counted as an error", s)
	}
}

func TestParseStat(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    statFields
		wantErr bool
	}{
		{name: "real", in: "7252 (cat) R 7248 7248 3441 0 -1 4194304 99 0 0 0 0 0 0 0 20 0 1 0 32226 3133440 382 18446744073709551615",
			want: statFields{comm: "cat", ppid: 7248, startTime: 32226}},
		{name: "comm with ') '", in: "5 (a) b) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 77 0",
			want: statFields{comm: "a) b", ppid: 1, startTime: 77}},
		{name: "empty", in: "", wantErr: true},
		{name: "no comm", in: "5 cat S 1", wantErr: true},
		{name: "truncated", in: "5 (cat) S 1 1 1 0", wantErr: true},
		{name: "bad starttime", in: "5 (cat) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 x 0", wantErr: true},
		{name: "reversed parens", in: ")5 (", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseStat([]byte(tt.in))
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestFormatCmdline(t *testing.T) {
	tests := []struct{ in, want string }{
		{"a\x00b\x00c\x00", "a b c"},
		{"single", "single"},
		{"", ""},
		{"\x00\x00", ""},
		{"setproctitle style with spaces", "setproctitle style with spaces"},
		{"bad\xffutf8\x00", "bad\uFFFDutf8"},
	}
	for _, tt := range tests {
		if got := formatCmdline([]byte(tt.in)); got != tt.want {
			t.Errorf("formatCmdline(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// writeProc writes a minimal /proc/<pid> entry under root.
func writeProc(t *testing.T, root string, pid uint32, comm string, start uint64) {
	t.Helper()
	dir := filepath.Join(root, fmt.Sprint(pid))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	stat := fmt.Sprintf("%d (%s) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 %d 0 0\n", pid, comm, start)
	files := map[string]string{
		"stat":    stat,
		"comm":    comm + "\n",
		"cmdline": comm + "\x00--run\x00",
		"cgroup":  "0::/system.slice/" + comm + ".service\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestLRUBound(t *testing.T) {
	root := t.TempDir()
	for pid := uint32(1); pid <= 5; pid++ {
		writeProc(t, root, pid, fmt.Sprintf("p%d", pid), uint64(pid))
	}
	r, _ := newTestResolver(t, Options{ProcRoot: root, MaxEntries: 3})
	for _, pid := range []uint32{1, 2, 3, 1, 4, 5} {
		if _, ok := r.Lookup(pid); !ok {
			t.Fatalf("Lookup(%d) = false", pid)
		}
	}
	s := r.Stats()
	if s.Entries != 3 || s.Evictions != 2 {
		t.Fatalf("Entries=%d Evictions=%d, want 3 and 2", s.Entries, s.Evictions)
	}
	// 1 was used after 2 and 3, so 2 and 3 were evicted and 1 survives.
	loads := s.Loads
	r.Lookup(1)
	if got := r.Stats().Loads; got != loads {
		t.Errorf("recently used pid 1 was evicted (Loads %d -> %d)", loads, got)
	}
	r.Lookup(2)
	if got := r.Stats().Loads; got != loads+1 {
		t.Errorf("least recently used pid 2 was not evicted (Loads %d -> %d)", loads, got)
	}
	// Negative entries count against the bound too.
	for pid := uint32(100); pid < 110; pid++ {
		r.Lookup(pid)
	}
	if s := r.Stats(); s.Entries != 3 {
		t.Errorf("Entries = %d after negative lookups, want 3", s.Entries)
	}
}

func TestPIDReuse(t *testing.T) {
	root := t.TempDir()
	writeProc(t, root, 42, "old", 1000)
	r, clk := newTestResolver(t, Options{ProcRoot: root, TTL: 10 * time.Second})

	if info, _ := r.Lookup(42); info.Name != "old" || info.StartTime != 1000 {
		t.Fatalf("first lookup = %+v", info)
	}

	// Same process after the TTL: revalidated by start time, not reloaded.
	clk.advance(11 * time.Second)
	if info, _ := r.Lookup(42); info.Name != "old" {
		t.Fatalf("revalidated lookup = %+v", info)
	}
	if s := r.Stats(); s.Revalidations != 1 || s.Loads != 1 || s.PIDReuses != 0 {
		t.Fatalf("after revalidation: %+v", s)
	}

	// The pid is reused by a new process with a later start time.
	writeProc(t, root, 42, "new", 2000)
	if info, _ := r.Lookup(42); info.Name != "old" {
		t.Errorf("within TTL the cached identity is served, got %q", info.Name)
	}
	clk.advance(11 * time.Second)
	info, ok := r.Lookup(42)
	if !ok || info.Name != "new" || info.StartTime != 2000 || info.CgroupPath != "/system.slice/new.service" {
		t.Errorf("after reuse = %+v, %v; want the new process", info, ok)
	}
	if s := r.Stats(); s.PIDReuses != 1 || s.Loads != 2 {
		t.Errorf("after reuse: %+v, want 1 reuse and 2 loads", s)
	}

	// The process exits: after the TTL the pid reports absent.
	if err := os.RemoveAll(filepath.Join(root, "42")); err != nil {
		t.Fatal(err)
	}
	clk.advance(11 * time.Second)
	if _, ok := r.Lookup(42); ok {
		t.Error("Lookup of an exited pid = true")
	}
}

func TestInvalidateAndForget(t *testing.T) {
	root := t.TempDir()
	writeProc(t, root, 7, "bash", 500)
	r, _ := newTestResolver(t, Options{ProcRoot: root})
	r.Lookup(7)

	// exec keeps pid and start time but changes comm/cmdline.
	writeProc(t, root, 7, "curl", 500)
	if info, _ := r.Lookup(7); info.Name != "bash" {
		t.Fatalf("cached name = %q", info.Name)
	}
	r.Invalidate(7)
	if info, _ := r.Lookup(7); info.Name != "curl" || info.Cmdline != "curl --run" {
		t.Errorf("after Invalidate = %+v, want the exec'd image", info)
	}

	r.Forget(7)
	if s := r.Stats(); s.Entries != 0 {
		t.Errorf("Entries = %d after Forget", s.Entries)
	}
	r.Forget(12345) // unknown pid: no-op
}

func TestForgetDuringReadIsNotCached(t *testing.T) {
	r, clk := newTestResolver(t, Options{ProcRoot: fixtureRoot})
	// A Lookup read /proc at generation gen; the process exited (Forget)
	// before the result was stored.
	r.mu.Lock()
	gen := r.gen
	r.mu.Unlock()
	r.Forget(100)
	r.store(100, Info{PID: 100, Name: "stale"}, true, clk.now(), gen)
	if s := r.Stats(); s.Entries != 0 || s.RacedStores != 1 {
		t.Errorf("stale result cached: %+v", s)
	}
	if info, _ := r.Lookup(100); info.Name != "nginx" {
		t.Errorf("Lookup after raced store = %+v", info)
	}
}

func TestHostname(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "sys", "kernel"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "sys", "kernel", "hostname"), []byte("node-7\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if h, err := New(Options{ProcRoot: root}).Hostname(); err != nil || h != "node-7" {
		t.Errorf("Hostname under ProcRoot = %q, %v", h, err)
	}

	want, err := os.Hostname()
	if err != nil {
		t.Skip(err)
	}
	if h, err := New(Options{}).Hostname(); err != nil || h != want {
		t.Errorf("default Hostname = %q, %v; want %q", h, err, want)
	}
	if h, err := New(Options{ProcRoot: t.TempDir()}).Hostname(); err != nil || h != want {
		t.Errorf("Hostname without the proc file = %q, %v; want fallback %q", h, err, want)
	}
}

func TestLookupLiveSelf(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no procfs:", err)
	}
	pid := uint32(os.Getpid())
	info, ok := New(Options{}).Lookup(pid)
	if !ok {
		t.Fatalf("Lookup(own pid %d) = false", pid)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	comm := filepath.Base(exe)
	if len(comm) > 15 {
		comm = comm[:15]
	}
	if info.PID != pid || info.Name != comm || info.Exe != exe || info.PPID != uint32(os.Getppid()) {
		t.Errorf("self = %+v; want pid %d comm %q exe %q ppid %d", info, pid, comm, exe, os.Getppid())
	}
	if !strings.HasPrefix(info.Cmdline, os.Args[0]) {
		t.Errorf("Cmdline = %q, want prefix %q", info.Cmdline, os.Args[0])
	}
	if info.StartTime == 0 {
		t.Error("StartTime = 0")
	}
	if info.CgroupPath == "" {
		t.Error("CgroupPath empty")
	}
}

func TestConcurrentLookups(t *testing.T) {
	r := New(Options{ProcRoot: fixtureRoot, MaxEntries: 4})
	pids := []uint32{100, 101, 102, 103, 104, 105, 106, 999}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				pid := pids[(g+i)%len(pids)]
				r.Lookup(pid)
				if i%50 == 0 {
					r.Invalidate(pid)
				}
			}
		})
	}
	wg.Wait()
	if s := r.Stats(); s.Entries > 4 {
		t.Errorf("Entries = %d, exceeds MaxEntries 4", s.Entries)
	}
}

func FuzzParseStat(f *testing.F) {
	f.Add([]byte("7252 (cat) R 7248 7248 3441 0 -1 4194304 99 0 0 0 0 0 0 0 20 0 1 0 32226 3133440"))
	f.Add([]byte("5 (a) b) S 1"))
	f.Fuzz(func(t *testing.T, b []byte) {
		parseStat(b)
	})
}

func BenchmarkLookupCached(b *testing.B) {
	r := New(Options{ProcRoot: fixtureRoot})
	r.Lookup(102)
	b.ReportAllocs()
	for b.Loop() {
		r.Lookup(102)
	}
}

func BenchmarkLookupLoad(b *testing.B) {
	r := New(Options{ProcRoot: fixtureRoot})
	b.ReportAllocs()
	for b.Loop() {
		r.Invalidate(102)
		r.Lookup(102)
	}
}
