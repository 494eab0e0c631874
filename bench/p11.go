package main

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"debug/elf"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// P11 measures what the TLS plaintext probes (uprobes on OpenSSL's
// SSL_read/SSL_write and on Go's crypto/tls.(*Conn).Read/Write) add:
//
//	(a) latency per TLS read/write call, for a C program linked against the
//	    system libssl.so.3 and for a Go crypto/tls pair, both a client and a
//	    server that exchange HTTP-shaped messages of 64 B and 4 KiB in
//	    ping-pong; only the calls are timed (the wait for the peer's answer
//	    is a poll() outside the timing);
//	(b) throughput of an HTTPS nginx under wrk (both link libssl).
//
// Each round runs all three with no agent, with the agent (TLS probes on)
// and with the agent and --no-tls; the probes' own cost is on − no-tls.
// Besides, it reports the BPF run time of the probe programs per call
// (kernel.bpf_stats_enabled), the agent's CPU per call, and proof that the
// probes were on (is_tls rows of each program's port). The machine may be
// shared with other agents whose probes on libssl trap our processes too:
// runs of probe programs beyond this mode's own mark a round as disturbed,
// and medians skip disturbed rounds when there are others.

// p11GoTLSEnv makes the bench binary run P11's Go crypto/tls ping-pong
// (value: "CERT|KEY|N").
const p11GoTLSEnv = "SIGHTLINE_BENCH_P11_GOTLS"

func init() {
	// A child role, dispatched before main's flags: the Go TLS pair must run
	// in its own process so the agent attaches to it as to any Go service.
	if spec := os.Getenv(p11GoTLSEnv); spec != "" {
		if err := runP11GoTLS(spec); err != nil {
			fmt.Fprintln(os.Stderr, "p11 go tls:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
}

// p11Sizes are the message sizes of the ping-pong (request and response the
// same size); p11Min is the smallest message the framing fits in.
var p11Sizes = [...]int{64, 4096}

const p11Min = 44

// p11CSource is a TLS client and server (fork of one process) linked
// against the system libssl. Usage: p11tls CERT KEY N. It prints "port P",
// exchanges 64-byte messages until a line arrives on stdin (warm-up; the
// bench waits there for the agent's probes), then N timed round trips per
// size, and prints one "stat SIDE OP SIZE CALLS MEDIAN_NS MEAN_NS" line per
// side, call and size. Requests are "GET /tNNNNN HTTP/1.1" padded to NNNNN
// bytes; responses are a 200 with a body making them the same size.
const p11CSource = `
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAXSZ 4096
#define NSIZES 2
#define MINSZ 44
/* The same as p11Sizes and p11Min. */
static const int sizes[NSIZES] = {64, 4096};

struct samples { long long *ns; int n, cap; };
/* [size][0 = write, 1 = read] */
static struct samples st[NSIZES][2];

static void die(const char *what) {
	fprintf(stderr, "p11tls: %s: %s\n", what, strerror(errno));
	ERR_print_errors_fp(stderr);
	exit(1);
}

static long long now(void) {
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1000000000LL + t.tv_nsec;
}

static void add(struct samples *s, long long v) {
	if (s && s->n < s->cap) s->ns[s->n++] = v;
}

static int cmp(const void *a, const void *b) {
	long long x = *(const long long *)a, y = *(const long long *)b;
	return x < y ? -1 : x > y;
}

static void report(const char *side) {
	for (int i = 0; i < NSIZES; i++)
		for (int op = 0; op < 2; op++) {
			struct samples *s = &st[i][op];
			if (s->n == 0) continue;
			long long sum = 0;
			for (int k = 0; k < s->n; k++) sum += s->ns[k];
			qsort(s->ns, s->n, sizeof(long long), cmp);
			printf("stat %s %s %d %d %lld %lld\n", side, op ? "read" : "write", sizes[i], s->n,
			       s->ns[s->n / 2], sum / s->n);
		}
	fflush(stdout);
}

static void alloc_samples(int n) {
	for (int i = 0; i < NSIZES; i++)
		for (int op = 0; op < 2; op++) {
			st[i][op].cap = 4 * n;
			st[i][op].ns = calloc(st[i][op].cap, sizeof(long long));
			if (!st[i][op].ns) die("calloc");
		}
}

/* Waits, untimed, until the next SSL_read will find data. */
static void wait_readable(SSL *ssl, int fd) {
	if (SSL_pending(ssl) > 0) return;
	struct pollfd p = {fd, POLLIN, 0};
	while (poll(&p, 1, -1) < 0)
		if (errno != EINTR) die("poll");
}

static void write_all(SSL *ssl, const char *buf, int len, struct samples *s) {
	for (int off = 0; off < len;) {
		long long t0 = now();
		int n = SSL_write(ssl, buf + off, len - off);
		long long t1 = now();
		if (n <= 0) die("SSL_write");
		add(s, t1 - t0);
		off += n;
	}
}

/* Reads until want bytes (want < 0: until the request's own length is known).
 * Returns the bytes read, 0 at end of stream. */
static int read_msg(SSL *ssl, int fd, char *buf, int want, struct samples **sp, int *idx) {
	int got = 0;
	while (want < 0 ? got < 11 : got < want) {
		wait_readable(ssl, fd);
		struct samples *s = sp ? *sp : NULL;
		long long t0 = now();
		int n = SSL_read(ssl, buf + got, MAXSZ - got);
		long long t1 = now();
		if (n <= 0) {
			if (got == 0 && want < 0) return 0;
			die("SSL_read");
		}
		got += n;
		if (want < 0 && got >= 11) {
			want = atoi(buf + 6);
			if (want < MINSZ || want > MAXSZ) { errno = EINVAL; die("request size"); }
			*idx = -1;
			if (buf[5] == 't')
				for (int i = 0; i < NSIZES; i++)
					if (sizes[i] == want) *idx = i;
			if (*idx >= 0 && sp) *sp = &st[*idx][1];
			s = sp ? *sp : NULL;
		}
		add(s, t1 - t0);
	}
	return got;
}

static void make_req(char *buf, int size, char phase) {
	int n = snprintf(buf, MAXSZ, "GET /%c%05d HTTP/1.1\r\nHost: p11\r\nX-Pad: ", phase, size);
	memset(buf + n, 'x', size - n - 4);
	memcpy(buf + size - 4, "\r\n\r\n", 4);
}

static void make_resp(char *buf, int size) {
	int n = snprintf(buf, MAXSZ, "HTTP/1.1 200 OK\r\nContent-Length: %05d\r\n\r\n", size - 42);
	memset(buf + n, 'y', size - n);
}

static void nodelay(int fd) {
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static void serve(SSL_CTX *ctx, int ln) {
	int fd = accept(ln, NULL, NULL);
	if (fd < 0) die("accept");
	nodelay(fd);
	SSL *ssl = SSL_new(ctx);
	SSL_set_fd(ssl, fd);
	if (SSL_accept(ssl) != 1) die("SSL_accept");
	char req[MAXSZ + 1], resp[MAXSZ];
	for (;;) {
		struct samples *rs = NULL;
		int idx = -1;
		int n = read_msg(ssl, fd, req, -1, &rs, &idx);
		if (n == 0) break;
		int size = atoi(req + 6);
		make_resp(resp, size);
		write_all(ssl, resp, size, idx >= 0 ? &st[idx][0] : NULL);
	}
	report("server");
	exit(0);
}

static int stdin_ready(void) {
	struct pollfd p = {0, POLLIN, 0};
	return poll(&p, 1, 0) > 0;
}

int main(int argc, char **argv) {
	if (argc != 4) { fprintf(stderr, "usage: p11tls CERT KEY N\n"); return 2; }
	int n = atoi(argv[3]);
	if (n <= 0) { fprintf(stderr, "p11tls: bad N\n"); return 2; }
	signal(SIGPIPE, SIG_IGN);
	alloc_samples(n);
	int ln = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t al = sizeof a;
	if (ln < 0 || bind(ln, (struct sockaddr *)&a, sizeof a) || listen(ln, 1) ||
	    getsockname(ln, (struct sockaddr *)&a, &al))
		die("listen");
	printf("port %d\n", ntohs(a.sin_port));
	fflush(stdout);
	pid_t child = fork();
	if (child < 0) die("fork");
	if (child == 0) {
		SSL_CTX *sctx = SSL_CTX_new(TLS_server_method());
		if (!sctx || SSL_CTX_use_certificate_file(sctx, argv[1], SSL_FILETYPE_PEM) != 1 ||
		    SSL_CTX_use_PrivateKey_file(sctx, argv[2], SSL_FILETYPE_PEM) != 1)
			die("server cert");
		SSL_CTX_set_num_tickets(sctx, 0);
		serve(sctx, ln);
	}
	close(ln);
	SSL_CTX *cctx = SSL_CTX_new(TLS_client_method());
	if (!cctx) die("SSL_CTX_new");
	SSL_CTX_set_verify(cctx, SSL_VERIFY_NONE, NULL);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a)) die("connect");
	nodelay(fd);
	SSL *ssl = SSL_new(cctx);
	SSL_set_fd(ssl, fd);
	if (SSL_connect(ssl) != 1) die("SSL_connect");
	char req[MAXSZ], resp[MAXSZ + 1];
	/* Warm-up: until the bench says go (at least 200 round trips, at most 60 s). */
	long long deadline = now() + 60000000000LL;
	for (int i = 0;; i++) {
		if (i >= 200 && i % 10 == 0 && stdin_ready()) break;
		if (now() > deadline) { errno = ETIMEDOUT; die("no go on stdin"); }
		make_req(req, 64, 'w');
		write_all(ssl, req, 64, NULL);
		read_msg(ssl, fd, resp, 64, NULL, NULL);
		/* Slowly after the first: the agent must not start the timed phase
		 * behind on a backlog of warm-up events. */
		if (i >= 100) usleep(1000);
	}
	for (int i = 0; i < NSIZES; i++) {
		int size = sizes[i];
		make_req(req, size, 't');
		struct samples *rs = &st[i][1];
		for (int k = 0; k < n; k++) {
			write_all(ssl, req, size, &st[i][0]);
			read_msg(ssl, fd, resp, size, &rs, NULL);
		}
	}
	SSL_shutdown(ssl);
	close(fd);
	int status;
	if (waitpid(child, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		errno = ECHILD;
		die("server");
	}
	report("client");
	return 0;
}
`

// p11Key names one timed call: "client write 64".
type p11Key struct {
	side, op string
	size     int
}

// p11Stat is one run's figures for a call.
type p11Stat struct {
	calls        int
	median, mean float64 // ns per call
}

var p11StatLine = regexp.MustCompile(`^stat (client|server) (read|write) (\d+) (\d+) (\d+) (\d+)$`)

// parseP11Stats reads the "stat ..." lines both pingpong programs print.
func parseP11Stats(out string) (map[p11Key]p11Stat, error) {
	st := make(map[p11Key]p11Stat)
	for _, line := range strings.Split(out, "\n") {
		m := p11StatLine.FindStringSubmatch(strings.TrimSpace(line))
		if m == nil {
			continue
		}
		size, _ := strconv.Atoi(m[3])
		calls, _ := strconv.Atoi(m[4])
		med, _ := strconv.ParseFloat(m[5], 64)
		mean, _ := strconv.ParseFloat(m[6], 64)
		st[p11Key{m[1], m[2], size}] = p11Stat{calls: calls, median: med, mean: mean}
	}
	if len(st) != 4*len(p11Sizes) {
		return nil, fmt.Errorf("%d stat lines, want %d:\n%s", len(st), 4*len(p11Sizes), out)
	}
	return st, nil
}

// p11Mode is one agent configuration of a round.
type p11Mode struct {
	name  string
	agent bool
	args  []string
	// bare: no agent, plain tracefs uprobes and uretprobes (no BPF) on
	// libssl's SSL_read and SSL_write: what the traps alone cost here.
	bare bool
}

// p11Run is what one mode of one round measured.
type p11Run struct {
	c, gotls p11Pair
	rps      float64
	ngRows   int // is_tls rows of nginx's port after wrk (TLS probes on)
	// foreign: another agent's TLS probes ran on this run's calls (the
	// machine is shared); medians use the other runs when there are some.
	foreign bool
}

// p11Foreign reports whether TLS probe programs other than this mode's
// agent's ran on a ping-pong's calls (the machine is shared: other agents'
// probes on libssl trap every process that maps it).
func p11Foreign(m p11Mode, p p11Pair) bool {
	want := 0.0
	if m.tlsProbes() {
		want = 1
	}
	return p.bpf.enterRuns/float64(max(p.calls(), 1)) > want+0.01
}

func (m p11Mode) tlsProbes() bool { return m.agent && len(m.args) == 0 }

// p11Pair is what one ping-pong program measured.
type p11Pair struct {
	st      map[p11Key]p11Stat
	tlsRows int          // is_tls rows of its port stored before timing (TLS probes on)
	bpf     p11ProbeCost // the TLS probe programs during the timed phase
	agentUs float64      // agent CPU (user + system) during the timed phase, µs
}

// calls is the number of timed TLS calls of both sides.
func (p p11Pair) calls() int {
	n := 0
	for _, v := range p.st {
		n += v.calls
	}
	return n
}

// p11ProbeCost is the BPF run time (kernel.bpf_stats_enabled) and runs of
// the entry and return probe programs during one ping-pong.
type p11ProbeCost struct {
	enterNs, enterRuns, retNs, retRuns float64
}

// perCall is the BPF time of one probed call: entry plus return program.
func (c p11ProbeCost) perCall() float64 {
	if c.enterRuns == 0 || c.retRuns == 0 {
		return 0
	}
	return c.enterNs/c.enterRuns + c.retNs/c.retRuns
}

// p11ProbeSnap is the run time and run count of each loaded BPF program
// named like a TLS probe, by program id.
type p11ProbeSnap map[ebpf.ProgramID]p11ProgStat

type p11ProgStat struct {
	ret       bool // the return probe (else the entry probe)
	ns, count float64
}

// p11ProbeStats snapshots every loaded program named enter or ret (every
// copy: per-run averages stay right if another agent runs alongside).
func p11ProbeStats(enter, ret string) (p11ProbeSnap, error) {
	snap := make(p11ProbeSnap)
	var id ebpf.ProgramID
	for len(snap) < 1024 { // bounded: a few copies at most in practice
		next, err := ebpf.ProgramGetNextID(id)
		if errors.Is(err, os.ErrNotExist) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("bpf program ids: %w", err)
		}
		id = next
		prog, err := ebpf.NewProgramFromID(id)
		if err != nil {
			continue // unloaded meanwhile
		}
		info, ierr := prog.Info()
		st, serr := prog.Stats()
		prog.Close()
		if ierr != nil || serr != nil || (info.Name != enter && info.Name != ret) {
			continue
		}
		snap[id] = p11ProgStat{ret: info.Name == ret, ns: float64(st.Runtime.Nanoseconds()), count: float64(st.RunCount)}
	}
	return snap, nil
}

// since is the cost between snapshot o and s: programs loaded meanwhile
// count from zero, programs unloaded meanwhile are left out.
func (s p11ProbeSnap) since(o p11ProbeSnap) p11ProbeCost {
	var c p11ProbeCost
	for id, a := range s {
		b := o[id]
		if a.ret {
			c.retNs += a.ns - b.ns
			c.retRuns += a.count - b.count
		} else {
			c.enterNs += a.ns - b.ns
			c.enterRuns += a.count - b.count
		}
	}
	return c
}

// p11Env is what every round shares.
type p11Env struct {
	dir, cert, key, cbin, self string
	n                          int
	wrkURL                     string
	wrkDur                     time.Duration
	ngPort                     int
}

func (b *bench) p11(ctx context.Context) error {
	dir, err := os.MkdirTemp("", "sightline-bench-p11")
	if err != nil {
		return fmt.Errorf("p11 temp dir: %w", err)
	}
	defer os.RemoveAll(dir)
	env := &p11Env{dir: dir, n: 4000, wrkDur: b.dur(4 * time.Second)}
	// BPF run-time stats, in every mode alike (they cost a little per BPF
	// run). A stats fd, not the sysctl: other agents may share the machine,
	// and the kernel counts holders.
	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		return fmt.Errorf("enable bpf stats: %w", err)
	}
	defer stats.Close()
	env.cert, env.key, err = writeSelfSigned(dir)
	if err != nil {
		return err
	}
	src := filepath.Join(dir, "p11tls.c")
	env.cbin = filepath.Join(dir, "p11tls")
	if err := os.WriteFile(src, []byte(p11CSource), 0o644); err != nil {
		return fmt.Errorf("p11 write C source: %w", err)
	}
	if out, err := exec.CommandContext(ctx, "gcc", "-O2", "-Wall", "-o", env.cbin, src, "-lssl", "-lcrypto").CombinedOutput(); err != nil {
		return fmt.Errorf("p11 compile C TLS pair (needs gcc, libssl-dev): %w\n%s", err, out)
	}
	if env.self, err = os.Executable(); err != nil {
		return fmt.Errorf("p11: %w", err)
	}
	ng, err := startNginxTLS(ctx, dir, env.cert, env.key)
	if err != nil {
		return err
	}
	defer ng.stop()
	env.ngPort = ng.port
	env.wrkURL = fmt.Sprintf("https://127.0.0.1:%d/1k.bin", ng.port)
	if _, err := runWrkTLS(ctx, env.wrkURL, 2*time.Second); err != nil { // warm-up
		return err
	}

	modes := []p11Mode{{name: "off"}}
	if _, err := os.Stat(p11Tracefs + "/uprobe_events"); err == nil {
		modes = append(modes, p11Mode{name: "uprobe", bare: true})
	} else {
		b.log.Warn("p11: no tracefs uprobe_events; measuring without bare uprobes", "err", err)
	}
	modes = append(modes, p11Mode{name: "tls", agent: true})
	noTLS, err := b.agentHasFlag(ctx, "no-tls")
	if err != nil {
		return err
	}
	if noTLS {
		modes = append(modes, p11Mode{name: "no-tls", agent: true, args: []string{"--no-tls"}})
	} else {
		b.log.Warn("p11: this sightline has no --no-tls flag; measuring without that mode")
	}
	runs := make(map[string][]p11Run)
	pending := func() {} // the last agent's exit
	defer func() { pending() }()
	for r := 0; r < b.rounds; r++ {
		for _, m := range modes {
			t0 := time.Now()
			var run p11Run
			var err error
			pending, err = b.p11Agent(ctx, m, pending, func(ag p11AgentRef) error {
				var err error
				run, err = b.p11Once(ctx, env, m, ag)
				return err
			})
			if err != nil {
				return fmt.Errorf("p11 round %d, %s: %w", r+1, m.name, err)
			}
			runs[m.name] = append(runs[m.name], run)
			b.log.Info("p11 round", "round", r+1, "mode", m.name, "took", time.Since(t0).Round(time.Second), "wrk_rps", run.rps,
				"c_bpf_ns_per_call", run.c.bpf.perCall(), "go_bpf_ns_per_call", run.gotls.bpf.perCall(),
				"c_client_write64_ns", run.c.st[p11Key{"client", "write", 64}].median,
				"go_client_write64_ns", run.gotls.st[p11Key{"client", "write", 64}].median,
				"tls_rows_c", run.c.tlsRows, "tls_rows_go", run.gotls.tlsRows, "other_agents_tls_probes", run.foreign)
		}
	}
	b.p11Print(env, modes, runs)
	return nil
}

// p11Once runs the C pair, the Go pair and wrk once under the current agent
// mode.
func (b *bench) p11Once(ctx context.Context, env *p11Env, m p11Mode, ag p11AgentRef) (p11Run, error) {
	var run p11Run
	var err error
	var arm func(pid int) (func(), error)
	if m.bare {
		arm = p11BareUprobes
	}
	run.c, err = b.p11PingPong(ctx, exec.CommandContext(ctx, env.cbin, env.cert, env.key, strconv.Itoa(env.n)), m, ag, "ssl_enter", "ssl_return", arm)
	if err != nil {
		return run, fmt.Errorf("C/OpenSSL pair: %w", err)
	}
	if m.bare {
		run.foreign = p11Foreign(m, run.c)
		return run, nil
	}
	g := exec.CommandContext(ctx, env.self)
	g.Env = append(os.Environ(), p11GoTLSEnv+"="+env.cert+"|"+env.key+"|"+strconv.Itoa(env.n))
	run.gotls, err = b.p11PingPong(ctx, g, m, ag, "go_tls_enter", "go_tls_return", nil)
	if err != nil {
		return run, fmt.Errorf("Go crypto/tls pair: %w", err)
	}
	before, err := p11ProbeStats("ssl_enter", "ssl_return")
	if err != nil {
		return run, err
	}
	if run.rps, err = runWrkTLS(ctx, env.wrkURL, env.wrkDur); err != nil {
		return run, err
	}
	after, err := p11ProbeStats("ssl_enter", "ssl_return")
	if err != nil {
		return run, err
	}
	// Without this mode's probes, any OpenSSL probe runs under wrk are another agent's.
	wrkForeign := !m.tlsProbes() && after.since(before).enterRuns > 0.01*run.rps*env.wrkDur.Seconds()
	run.foreign = p11Foreign(m, run.c) || p11Foreign(m, run.gotls) || wrkForeign
	if m.tlsProbes() {
		// nginx started before the agent: rows prove the probes reached it.
		time.Sleep(500 * time.Millisecond)
		run.ngRows, err = countRows(ctx, ag.api, fmt.Sprintf("SELECT count(*) FROM l7_flow_log WHERE is_tls AND server_port = %d", env.ngPort))
		if err != nil {
			return run, fmt.Errorf("count nginx rows: %w", err)
		}
	}
	return run, nil
}

// p11PingPong runs one ping-pong program: it warms up until told to go on
// stdin. With the TLS probes on, go waits until the agent has stored an
// is_tls row of the program's port, so the timed calls run probed. Besides
// the program's figures it measures the BPF run time of the probe programs
// named enter and ret, and the agent's CPU, during the timed phase. arm,
// if set, is called with the program's pid before the timed phase; what it
// returns is called after.
func (b *bench) p11PingPong(ctx context.Context, cmd *exec.Cmd, m p11Mode, ag p11AgentRef, enter, ret string, arm func(pid int) (func(), error)) (p11Pair, error) {
	var res p11Pair
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return res, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return res, err
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return res, fmt.Errorf("start %s: %w", cmd.Path, err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	rd := bufio.NewReader(stdout)
	first, err := rd.ReadString('\n')
	if err != nil {
		return res, fmt.Errorf("no port line (stderr: %s): %w", stderr.String(), err)
	}
	port, err := strconv.Atoi(strings.TrimPrefix(strings.TrimSpace(first), "port "))
	if err != nil {
		return res, fmt.Errorf("bad port line %q: %w", first, err)
	}
	if arm != nil {
		disarm, err := arm(cmd.Process.Pid)
		if err != nil {
			return res, err
		}
		defer disarm()
	}
	t0 := time.Now()
	switch {
	case m.tlsProbes(): // wait for proof the probes see this process
		res.tlsRows, err = waitTLSRows(ctx, ag.api, port, 10*time.Second)
		if err != nil {
			return res, err
		}
		if res.tlsRows == 0 {
			b.log.Warn("p11: no is_tls rows before timing: TLS probes not attached?", "port", port)
		}
	default:
		time.Sleep(300 * time.Millisecond)
	}
	t1 := time.Now()
	before, err := p11ProbeStats(enter, ret)
	if err != nil {
		return res, err
	}
	cpu0 := ag.cpu()
	if _, err := io.WriteString(stdin, "go\n"); err != nil {
		return res, fmt.Errorf("tell go: %w", err)
	}
	rest, err := io.ReadAll(rd)
	if err != nil {
		return res, err
	}
	if err := cmd.Wait(); err != nil {
		return res, fmt.Errorf("%w (stderr: %s)", err, stderr.String())
	}
	if ag.pid != 0 {
		time.Sleep(500 * time.Millisecond) // the agent's share of the timed calls, drained
	}
	res.agentUs = (ag.cpu() - cpu0) * 1e6
	after, err := p11ProbeStats(enter, ret)
	if err != nil {
		return res, err
	}
	res.bpf = after.since(before)
	b.log.Debug("p11 ping-pong", "prog", filepath.Base(cmd.Path), "mode", m.name,
		"warm", t1.Sub(t0).Round(time.Millisecond), "timed", time.Since(t1).Round(time.Millisecond))
	res.st, err = parseP11Stats(string(rest))
	return res, err
}

func waitTLSRows(ctx context.Context, api string, port int, limit time.Duration) (int, error) {
	deadline := time.Now().Add(limit)
	q := fmt.Sprintf("SELECT count(*) FROM l7_flow_log WHERE is_tls AND server_port = %d", port)
	for {
		n, err := countRows(ctx, api, q)
		if err != nil {
			return 0, fmt.Errorf("count is_tls rows: %w", err)
		}
		if n > 0 || time.Now().After(deadline) {
			return n, nil
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// p11AgentRef is the running agent of a mode (zero without one).
type p11AgentRef struct {
	api string // sightline API URL
	pid int    // the `sightline up` process
}

// cpu is the agent's CPU seconds so far (0 without an agent).
func (a p11AgentRef) cpu() float64 {
	if a.pid == 0 {
		return 0
	}
	s, err := cpuSeconds(a.pid)
	if err != nil {
		return 0
	}
	return s
}

// p11Agent runs f with no agent (m.agent false) or under `sightline up`
// with m.args. prev (never nil) waits for the previous mode's agent to be
// gone: it runs while this agent starts, and before f. The returned func
// does the same for this mode's agent.
func (b *bench) p11Agent(ctx context.Context, m p11Mode, prev func(), f func(p11AgentRef) error) (func(), error) {
	if !m.agent {
		prev()
		return func() {}, f(p11AgentRef{})
	}
	port, err := freePort()
	if err != nil {
		prev()
		return func() {}, err
	}
	gport, err := freePort()
	if err != nil {
		prev()
		return func() {}, err
	}
	args := append([]string{"up", "--data-dir", "data",
		"--listen", fmt.Sprintf("127.0.0.1:%d", port), "--grpc-listen", fmt.Sprintf("127.0.0.1:%d", gport)}, m.args...)
	t0 := time.Now()
	p, err := b.startSightline(ctx, args...)
	if err != nil {
		prev()
		return func() {}, err
	}
	// Killed, not stopped: a graceful stop drains and stores for seconds,
	// and nothing of this run is needed after it. The kernel drops the
	// probes with the process's links; the exit itself takes seconds.
	reap := func() {
		_ = p.cmd.Process.Kill()
		_ = p.cmd.Wait()
		p.cleanup()
	}
	api := fmt.Sprintf("http://127.0.0.1:%d", port)
	err = waitHTTP(ctx, api+"/healthz")
	if err == nil {
		// The server answers long before the agent has loaded its programs.
		err = waitLogLine(ctx, filepath.Join(p.dir, "sightline.log"), "agent capturing", 90*time.Second)
	}
	prev()
	if err != nil {
		reap()
		return func() {}, fmt.Errorf("sightline up %v not capturing (log in %s): %w", m.args, p.dir, err)
	}
	// No settling pause: with the TLS probes on, each ping-pong waits for
	// rows that prove the probes see it.
	b.log.Debug("p11 agent capturing", "mode", m.name, "took", time.Since(t0).Round(time.Millisecond))
	err = f(p11AgentRef{api: api, pid: p.cmd.Process.Pid})
	_ = p.cmd.Process.Kill()
	return reap, err
}

// waitLogLine waits until the file at path contains want.
func waitLogLine(ctx context.Context, path, want string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		raw, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("read log: %w", err)
		}
		if strings.Contains(string(raw), want) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no %q in %s after %s", want, path, limit)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// agentHasFlag reports whether `sightline agent -h` lists -name.
func (b *bench) agentHasFlag(ctx context.Context, name string) (bool, error) {
	out, _ := exec.CommandContext(ctx, b.bin, "agent", "-h").CombinedOutput()
	if len(out) == 0 {
		return false, fmt.Errorf("%s agent -h printed nothing", b.bin)
	}
	return regexp.MustCompile(`(?m)^\s*--?` + regexp.QuoteMeta(name) + `\b`).Match(out), nil
}

func (b *bench) p11Print(env *p11Env, modes []p11Mode, all map[string][]p11Run) {
	// Medians over the runs no other agent's TLS probes disturbed, when
	// there are some.
	runs := make(map[string][]p11Run)
	var clean []string
	for _, m := range modes {
		for _, r := range all[m.name] {
			if !r.foreign {
				runs[m.name] = append(runs[m.name], r)
			}
		}
		clean = append(clean, fmt.Sprintf("%s %d/%d", m.name, len(runs[m.name]), len(all[m.name])))
		if len(runs[m.name]) == 0 {
			runs[m.name] = all[m.name]
		}
	}
	med := func(mode string, f func(p11Run) float64) float64 {
		var xs []float64
		for _, r := range runs[mode] {
			xs = append(xs, f(r))
		}
		return median(xs)
	}
	perRound := func(mode, format string, f func(p11Run) float64) string { // every run, disturbed or not
		var xs []string
		for _, r := range all[mode] {
			xs = append(xs, fmt.Sprintf(format, f(r)))
		}
		return strings.Join(xs, "/")
	}
	hasNoTLS := len(runs["no-tls"]) > 0
	base := "no-tls"
	if !hasNoTLS {
		base = "off" // the agent has no --no-tls: the difference includes the syscall tracer
	}
	fmt.Printf("P11a per-call latency of TLS reads/writes, ns (median over rounds of each run's median call; %d ping-pong round trips per size over loopback, HTTP-shaped messages, the wait for the peer outside the timing; rounds free of other agents' TLS probes: %s); added = tls − %s:\n",
		env.n, strings.Join(clean, ", "), base)
	impls := []struct {
		name string
		pair func(p11Run) p11Pair
		w, r string
		bare bool // measured in the bare-uprobe mode too
	}{
		{"OpenSSL 3 (libssl.so.3, C)", func(r p11Run) p11Pair { return r.c }, "SSL_write", "SSL_read", true},
		{"Go crypto/tls", func(r p11Run) p11Pair { return r.gotls }, "Conn.Write", "Conn.Read", false},
	}
	for _, impl := range impls {
		for _, side := range []string{"client", "server"} {
			for _, size := range p11Sizes {
				for _, op := range []string{"write", "read"} {
					k := p11Key{side, op, size}
					fn := impl.w
					if op == "read" {
						fn = impl.r
					}
					v := map[string]float64{}
					for _, m := range modes {
						v[m.name] = med(m.name, func(r p11Run) float64 { return impl.pair(r).st[k].median })
					}
					line := fmt.Sprintf("  %-26s %s %-10s %4d B: off %6.0f", impl.name, side, fn, size, v["off"])
					if hasNoTLS {
						line += fmt.Sprintf("  no-tls %6.0f", v["no-tls"])
					}
					line += fmt.Sprintf("  tls %6.0f  added %+6.0f ns (×%.2f)", v["tls"], v["tls"]-v[base], v["tls"]/v[base])
					if impl.bare && len(runs["uprobe"]) > 0 {
						line += fmt.Sprintf("  | bare tracefs uprobes, no agent %6.0f: traps add %+6.0f ns", v["uprobe"], v["uprobe"]-v["off"])
					}
					fmt.Println(line)
				}
			}
		}
	}
	for _, impl := range impls {
		// Probe runs per timed call: ≈1 with the TLS probes on; above 0 in
		// the other modes means another agent's probes on this machine.
		runsPerCall := func(r p11Run) float64 {
			p := impl.pair(r)
			return p.bpf.enterRuns / float64(max(p.calls(), 1))
		}
		cpuPerCall := func(r p11Run) float64 {
			p := impl.pair(r)
			return p.agentUs / float64(max(p.calls(), 1))
		}
		line := fmt.Sprintf("  %s: BPF time per probed call (entry + return program) %.0f ns; agent CPU per timed call: tls %.2f µs",
			impl.name, med("tls", func(r p11Run) float64 { return impl.pair(r).bpf.perCall() }), med("tls", cpuPerCall))
		if hasNoTLS {
			line += fmt.Sprintf(", no-tls %.2f µs", med("no-tls", cpuPerCall))
		}
		line += "; probe runs per timed call per round (≈1 on; >0 off = another agent's probes): off " + perRound("off", "%.2f", runsPerCall)
		if hasNoTLS {
			line += ", no-tls " + perRound("no-tls", "%.2f", runsPerCall)
		}
		line += ", tls " + perRound("tls", "%.2f", runsPerCall)
		line += "; is_tls rows stored before timing " + perRound("tls", "%.0f", func(r p11Run) float64 { return float64(impl.pair(r).tlsRows) })
		fmt.Println(line)
	}
	off, on := med("off", func(r p11Run) float64 { return r.rps }), med("tls", func(r p11Run) float64 { return r.rps })
	line := fmt.Sprintf("P11b wrk -t2 -c32 → HTTPS nginx (1 worker, 1 KiB file, keep-alive, %s × %d rounds; wrk links libssl too, so both ends are probed): without agent %.0f req/s; agent with TLS probes %.0f req/s (ratio %.3f, is_tls rows of nginx per round %s)",
		env.wrkDur, b.rounds, off, on, on/off, perRound("tls", "%.0f", func(r p11Run) float64 { return float64(r.ngRows) }))
	if hasNoTLS {
		nt := med("no-tls", func(r p11Run) float64 { return r.rps })
		line += fmt.Sprintf("; agent with --no-tls %.0f req/s (ratio %.3f); probes alone %.3f", nt, nt/off, on/nt)
	}
	fmt.Println(line)
}

// runP11GoTLS is the Go crypto/tls ping-pong: the same protocol and output
// as p11CSource, client and server in one process.
func runP11GoTLS(spec string) error {
	parts := strings.Split(spec, "|")
	if len(parts) != 3 {
		return fmt.Errorf("spec %q: want CERT|KEY|N", spec)
	}
	n, err := strconv.Atoi(parts[2])
	if err != nil || n <= 0 {
		return fmt.Errorf("spec %q: bad N", spec)
	}
	pair, err := tls.LoadX509KeyPair(parts[0], parts[1])
	if err != nil {
		return fmt.Errorf("load key pair: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	defer ln.Close()
	fmt.Printf("port %d\n", ln.Addr().(*net.TCPAddr).Port)
	type result struct {
		st  *p11Samples
		err error
	}
	srvDone := make(chan result, 1)
	go func() {
		st := newP11Samples(n)
		err := p11GoServe(ln, &tls.Config{Certificates: []tls.Certificate{pair}, SessionTicketsDisabled: true}, st)
		srvDone <- result{st, err}
	}()
	goCh := make(chan struct{})
	go func() {
		_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
		close(goCh)
	}()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	conn := tls.Client(raw, &tls.Config{InsecureSkipVerify: true})
	defer conn.Close()
	if err := conn.Handshake(); err != nil {
		return fmt.Errorf("client handshake: %w", err)
	}
	cl := newP11Samples(n)
	req := make([]byte, 4096)
	resp := make([]byte, 4096)
	deadline := time.Now().Add(60 * time.Second)
warm:
	for i := 0; ; i++ {
		if i >= 200 {
			select {
			case <-goCh:
				break warm
			default:
			}
		}
		if time.Now().After(deadline) {
			return errors.New("no go on stdin")
		}
		p11Request(req, 64, 'w')
		if err := p11GoWrite(conn, req[:64], nil); err != nil {
			return err
		}
		if err := p11GoRead(conn, raw, resp, 64, nil); err != nil {
			return err
		}
		if i >= 100 { // slowly: no backlog of warm-up events in the agent at go
			time.Sleep(time.Millisecond)
		}
	}
	for i, size := range p11Sizes {
		p11Request(req, size, 't')
		for range n {
			if err := p11GoWrite(conn, req[:size], &cl.s[i][0]); err != nil {
				return err
			}
			if err := p11GoRead(conn, raw, resp, size, &cl.s[i][1]); err != nil {
				return err
			}
		}
	}
	conn.Close()
	res := <-srvDone
	if res.err != nil {
		return fmt.Errorf("server: %w", res.err)
	}
	res.st.print("server")
	cl.print("client")
	return nil
}

// p11Samples holds per-call durations: [size index][0 write, 1 read].
type p11Samples struct {
	s [len(p11Sizes)][2][]time.Duration
}

func newP11Samples(n int) *p11Samples {
	st := &p11Samples{}
	for i := range st.s {
		for op := range st.s[i] {
			st.s[i][op] = make([]time.Duration, 0, 4*n)
		}
	}
	return st
}

func (st *p11Samples) print(side string) {
	for i, size := range p11Sizes {
		for op, name := range []string{"write", "read"} {
			xs := st.s[i][op]
			if len(xs) == 0 {
				continue
			}
			var sum time.Duration
			for _, x := range xs {
				sum += x
			}
			slices.Sort(xs)
			fmt.Printf("stat %s %s %d %d %d %d\n", side, name, size, len(xs), xs[len(xs)/2].Nanoseconds(), (sum / time.Duration(len(xs))).Nanoseconds())
		}
	}
}

func p11Add(s *[]time.Duration, d time.Duration) {
	if s != nil && len(*s) < cap(*s) {
		*s = append(*s, d)
	}
}

// p11Request fills buf[:size] with "GET /<phase>NNNNN HTTP/1.1" padded to size.
func p11Request(buf []byte, size int, phase byte) {
	h := fmt.Appendf(buf[:0], "GET /%c%05d HTTP/1.1\r\nHost: p11\r\nX-Pad: ", phase, size)
	for i := len(h); i < size-4; i++ {
		buf[i] = 'x'
	}
	copy(buf[size-4:size], "\r\n\r\n")
}

func p11Response(buf []byte, size int) {
	h := fmt.Appendf(buf[:0], "HTTP/1.1 200 OK\r\nContent-Length: %05d\r\n\r\n", size-42)
	for i := len(h); i < size; i++ {
		buf[i] = 'y'
	}
}

func p11GoWrite(c *tls.Conn, b []byte, s *[]time.Duration) error {
	t0 := time.Now()
	_, err := c.Write(b)
	p11Add(s, time.Since(t0))
	if err != nil {
		return fmt.Errorf("tls write: %w", err)
	}
	return nil
}

// p11WaitReadable waits, untimed, until raw has bytes to read.
func p11WaitReadable(raw net.Conn) error {
	sc, ok := raw.(syscall.Conn)
	if !ok {
		return errors.New("not a syscall.Conn")
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return err
	}
	return rc.Read(func(fd uintptr) bool {
		n, _ := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, 0)
		return n > 0
	})
}

// p11GoRead reads a message of want bytes; a timed read (s set) first waits
// until the socket is readable.
func p11GoRead(c *tls.Conn, raw net.Conn, buf []byte, want int, s *[]time.Duration) error {
	_, err := p11GoReadMsg(c, raw, s != nil, buf, want, func(int) *[]time.Duration { return s })
	return err
}

// p11GoReadMsg reads a message of want bytes (want < 0: a request, whose
// size it reads from its path) into buf. With poll, it first waits, untimed,
// until the socket is readable: the caller must know that the tls.Conn has
// no bytes of the message buffered (a handshake may read ahead the first).
func p11GoReadMsg(c *tls.Conn, raw net.Conn, poll bool, buf []byte, want int, sample func(size int) *[]time.Duration) (int, error) {
	got := 0
	for want < 0 && got < 11 || want >= 0 && got < want {
		if poll && got == 0 { // later parts of a message may sit in the tls.Conn's buffer
			if err := p11WaitReadable(raw); err != nil {
				return got, fmt.Errorf("wait readable: %w", err)
			}
		}
		t0 := time.Now()
		k, err := c.Read(buf[got:])
		d := time.Since(t0)
		got += k
		if err != nil {
			if errors.Is(err, io.EOF) && got == 0 {
				return 0, io.EOF
			}
			return got, fmt.Errorf("tls read: %w", err)
		}
		if want < 0 && got >= 11 {
			w, err := strconv.Atoi(string(buf[6:11]))
			if err != nil || w < p11Min || w > len(buf) {
				return got, fmt.Errorf("bad request size %q", buf[:11])
			}
			want = w
			if buf[5] != 't' {
				sample = func(int) *[]time.Duration { return nil }
			}
		}
		p11Add(sample(want), d)
	}
	return got, nil
}

func p11GoServe(ln net.Listener, cfg *tls.Config, st *p11Samples) error {
	raw, err := ln.Accept()
	if err != nil {
		return fmt.Errorf("accept: %w", err)
	}
	conn := tls.Server(raw, cfg)
	defer conn.Close()
	if err := conn.Handshake(); err != nil {
		return fmt.Errorf("server handshake: %w", err)
	}
	idx := func(size int) int {
		for i, s := range p11Sizes {
			if s == size {
				return i
			}
		}
		return -1
	}
	req := make([]byte, 4096)
	resp := make([]byte, 4096)
	for first := true; ; first = false {
		_, err := p11GoReadMsg(conn, raw, !first, req, -1, func(size int) *[]time.Duration {
			if i := idx(size); i >= 0 {
				return &st.s[i][1]
			}
			return nil
		})
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		size, _ := strconv.Atoi(string(req[6:11]))
		p11Response(resp, size)
		var s *[]time.Duration
		if i := idx(size); req[5] == 't' && i >= 0 {
			s = &st.s[i][0]
		}
		if err := p11GoWrite(conn, resp[:size], s); err != nil {
			return err
		}
	}
}

const p11Tracefs = "/sys/kernel/tracing"

// p11BareUprobes puts tracefs uprobes and uretprobes (no BPF) on SSL_read
// and SSL_write of the libssl that pid maps; the returned func removes them.
func p11BareUprobes(pid int) (func(), error) {
	lib, err := p11MappedFile(pid, "libssl.so")
	if err != nil {
		return nil, err
	}
	group := fmt.Sprintf("sightline_p11_%d", os.Getpid())
	var defs, names []string
	for i, sym := range []string{"SSL_read", "SSL_write"} {
		off, err := p11SymbolOffset(lib, sym)
		if err != nil {
			return nil, err
		}
		defs = append(defs, fmt.Sprintf("p:%s/e%d %s:0x%x", group, i, lib, off), fmt.Sprintf("r:%s/r%d %s:0x%x", group, i, lib, off))
		names = append(names, fmt.Sprintf("e%d", i), fmt.Sprintf("r%d", i))
	}
	events := func(line string) error {
		f, err := os.OpenFile(filepath.Join(p11Tracefs, "uprobe_events"), os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			return err
		}
		_, err = f.WriteString(line + "\n")
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		return err
	}
	enable := filepath.Join(p11Tracefs, "events", group, "enable")
	remove := func() {
		_ = os.WriteFile(enable, []byte("0"), 0o644)
		for _, n := range names {
			_ = events("-:" + group + "/" + n)
		}
	}
	for _, d := range defs {
		if err := events(d); err != nil {
			remove()
			return nil, fmt.Errorf("uprobe %q: %w", d, err)
		}
	}
	if err := os.WriteFile(enable, []byte("1"), 0o644); err != nil {
		remove()
		return nil, fmt.Errorf("enable uprobes: %w", err)
	}
	return remove, nil
}

// p11MappedFile is the path of the first file pid maps whose name contains want.
func p11MappedFile(pid int, want string) (string, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		return "", fmt.Errorf("maps: %w", err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		f := strings.Fields(line)
		if len(f) >= 6 && strings.Contains(filepath.Base(f[5]), want) {
			return f[5], nil
		}
	}
	return "", fmt.Errorf("pid %d maps no %s", pid, want)
}

// p11SymbolOffset is the file offset of a dynamic symbol's code.
func p11SymbolOffset(path, name string) (uint64, error) {
	f, err := elf.Open(path)
	if err != nil {
		return 0, fmt.Errorf("open %s: %w", path, err)
	}
	defer f.Close()
	syms, err := f.DynamicSymbols()
	if err != nil {
		return 0, fmt.Errorf("%s symbols: %w", path, err)
	}
	for _, s := range syms {
		if s.Name != name || s.Value == 0 {
			continue
		}
		for _, p := range f.Progs {
			if p.Type == elf.PT_LOAD && p.Flags&elf.PF_X != 0 && s.Value >= p.Vaddr && s.Value < p.Vaddr+p.Memsz {
				return s.Value - p.Vaddr + p.Off, nil
			}
		}
	}
	return 0, fmt.Errorf("%s: no %s", path, name)
}

// writeSelfSigned writes a fresh ECDSA P-256 certificate for 127.0.0.1 and
// its key as PEM files in dir.
func writeSelfSigned(dir string) (cert, key string, err error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", fmt.Errorf("generate key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "sightline-bench"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:     []string{"localhost"},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		return "", "", fmt.Errorf("create certificate: %w", err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return "", "", fmt.Errorf("marshal key: %w", err)
	}
	cert, key = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return "", "", fmt.Errorf("write cert: %w", err)
	}
	if err := os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		return "", "", fmt.Errorf("write key: %w", err)
	}
	return cert, key, nil
}

// startNginxTLS starts a private nginx serving a 1 KiB file over HTTPS.
func startNginxTLS(ctx context.Context, parent, cert, key string) (*nginx, error) {
	return startNginxServing(ctx, parent, 1, cert, key)
}

func waitHTTPS(ctx context.Context, url string) error {
	client := &http.Client{Timeout: 2 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	defer client.CloseIdleConnections()
	return waitHTTPWith(ctx, client, url)
}

func runWrkTLS(ctx context.Context, url string, d time.Duration) (float64, error) {
	return runWrkWith(ctx, url, d, 2, 32)
}
