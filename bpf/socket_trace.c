// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Socket data tracer: syscall tracepoints (enter + exit) for the socket
 * read/write family, connect/accept/close, and process exec/exit.
 *
 * Enter stashes the syscall's arguments per thread and resolves
 * fd -> struct file -> struct socket -> struct sock, keeping only
 * AF_INET/AF_INET6 TCP and UDP sockets; it also reads the TCP sequence
 * (write_seq for egress, copied_seq for ingress) before the kernel moves it.
 * Exit, if bytes moved, emits one data event with the tuple, counters and a
 * payload prefix through a single ring buffer.
 *
 * sendmmsg/recvmmsg: only the first message of the vector is emitted.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_tracing.h>

#include "socket_trace.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Constants from uapi/linux headers that are macros, so not in BTF. */
#define AF_INET 2
#define AF_INET6 10
#define SOCK_STREAM 1
#define SOCK_DGRAM 2
#define S_IFMT 00170000
#define S_IFSOCK 0140000
#define EINPROGRESS 115

/* Load-time constants, rewritten by the Go loader. */
volatile const __u32 max_payload = 1024;
volatile const __u8 only_traced_pids = 0;
/* Wake the reader only once this many bytes wait in the ring buffer; below
 * it the reader finds them on its own poll timer. Waking it per event (the
 * default when it has caught up) costs a wakeup and a context switch per
 * syscall, which is most of the overhead under load. 0: wake per event. */
volatile const __u64 wakeup_bytes = 0;
/* TLS plaintext support: 0 turns its bookkeeping in the syscall path off
 * (the kill switch); tls_filter limits it to the processes in tls_pids. */
volatile const __u8 tls_on = 1;
volatile const __u8 tls_filter = 0;

/* How an active syscall carries its buffers. */
enum io_kind {
	IO_BUF = 1,  /* one user buffer */
	IO_IOV = 2,  /* iovec array */
	IO_MSG = 3,  /* struct msghdr (sendmsg/recvmsg) */
	IO_MMSG = 4, /* struct mmsghdr vector (sendmmsg/recvmmsg): first message only */
};

#define MSG_PEEK 2
#define RCV_SHUTDOWN 1

/* Syscall arguments stashed at enter. Enter does nothing else: the socket
 * lookup, msghdr reads and TCP sequence are done at exit, and only for
 * calls that moved data, so the hot enter path (every read and write on
 * the host, sockets or not) stays a pid check and one map update. */
struct active_io {
	__u64 enter_ns;
	__u64 buf;  /* buffer, iovec array, msghdr or mmsghdr vector */
	__u64 addr; /* user sockaddr (sendto/recvfrom), may be 0 */
	__u32 iovcnt;
	__s32 fd;
	__u32 syscall;
	__u8 dir;
	__u8 kind;
	__u8 _pad[2];
};

/* Per thread, or per goroutine in Go processes (see exec_key). */
struct thread_state {
	__u64 trace_id; /* current syscall_trace_id, 0 = none yet */
	__u64 last_sk;  /* socket of the previous data event */
	__u64 open_sk;  /* server socket whose request was read and not yet answered */
	__u64 open_ns;  /* when that request was read */
	__u8 last_dir;
	__u8 has_last;
	__u8 owned;      /* trace_id came from a request this thread read itself */
	__u8 event_loop; /* interleaving requests of several server sockets: id 0 until it stops */
	__u8 weak;       /* trace_id inherited through a futex wake: ends with the first reply */
	__u8 _pad[3];
	__u64 weak_src;  /* the futex word that woke it with that id */
	__u64 weak_seq;  /* its process's request-thread activity count then (see ftx_proc) */
	__u32 weak_waker; /* thread id of the request thread that handed it over */
	__u8 ftx_waiting; /* counted in its process's ftx_proc.waiting */
	__u8 ftx_woke;    /* woke a possible queue's waiter since reading its request */
	__u8 _pad2[2];
	__u64 origin_chan; /* Go: the channel its trace_id came through (0: its own, or its creator's) */
};

struct sock_state {
	__u64 conn_uid;
	__u32 cap_seq;
	__u8 l7_state; /* enum l7_state; user space may set L7_SKIP */
	__u8 l7_hint;
	__u8 role; /* enum conn_role from connect/accept, 0 = unknown (see sock_roles) */
	__u8 tls_skip; /* user space found no parser for the socket's TLS plaintext */
	__u32 tls_busy; /* TLS calls bound to this socket (a syscall made) and not returned yet */
	__u8 closed;    /* closed with TLS calls pending: kept (same conn_uid) for their plaintext */
	__u8 family;    /* with closed: the socket's family (the sock itself may be gone) */
	__u8 _pad[2];
};

struct scratch {
	struct event_header h;
	__u8 data[2 * MAX_PAYLOAD_LIMIT];
};

/* User-space ABI structs (64-bit), declared here rather than taken from
 * vmlinux.h so no CO-RE relocation is applied to user memory layouts. */
struct u_iovec {
	__u64 base;
	__u64 len;
};

struct u_msghdr {
	__u64 name;
	__s32 namelen;
	__u32 _pad0;
	__u64 iov;
	__u64 iovlen;
	__u64 control;
	__u64 controllen;
	__u32 flags;
	__u32 _pad1;
};

struct u_mmsghdr {
	struct u_msghdr hdr;
	__u32 len;
	__u32 _pad;
};

struct u_sockaddr_in6 {
	__u16 family;
	__u16 port; /* network order */
	__u32 flowinfo;
	__u8 addr[16];
};

struct u_sockaddr_in {
	__u16 family;
	__u16 port;
	__u8 addr[4];
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 << 20); /* overridden at load */
} events SEC(".maps");

/* Per-CPU scratch, but as a plain array indexed by CPU: per-CPU map values
 * are capped at 32 KiB and the scratch is a little larger. max_entries is
 * set to the number of possible CPUs by the loader. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct scratch);
} scratch_buf SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64); /* pid_tgid */
	__type(value, struct active_io);
} active_io_map SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64); /* pid_tgid */
	__type(value, struct thread_state);
} thread_states SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64); /* struct sock pointer */
	__type(value, struct sock_state);
} sock_states SEC(".maps");

/* Roles user space inferred for sockets whose connect/accept the agent
 * did not see (connections older than the agent). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64); /* struct sock pointer */
	__type(value, __u8);
} sock_roles SEC(".maps");

/* Source of conn_uid and syscall_trace_id values. Seeded by the loader so
 * ids keep growing across agent restarts within one boot. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} id_counter SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, CNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32); /* tgid */
	__type(value, __u8);
} excluded_pids SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32); /* tgid */
	__type(value, __u8);
} traced_pids SEC(".maps");

static __always_inline void count(__u32 which)
{
	__u64 *v = bpf_map_lookup_elem(&counters, &which);
	if (v)
		*v += 1; /* per-CPU slot: no atomics needed */
}

static __always_inline bool should_trace(__u32 tgid)
{
	if (bpf_map_lookup_elem(&excluded_pids, &tgid))
		return false;
	if (only_traced_pids && !bpf_map_lookup_elem(&traced_pids, &tgid))
		return false;
	return true;
}

static __always_inline __u64 rb_flags(void)
{
	if (!wakeup_bytes)
		return 0;
	return bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= wakeup_bytes ? BPF_RB_FORCE_WAKEUP
										 : BPF_RB_NO_WAKEUP;
}

static __always_inline __u64 next_id(void)
{
	__u32 zero = 0;
	__u64 *c = bpf_map_lookup_elem(&id_counter, &zero);
	if (!c)
		return 0;
	return __sync_fetch_and_add(c, 1) + 1;
}

/* fd -> struct sock for IPv4/IPv6 TCP or UDP sockets, else NULL. */
static __always_inline struct sock *fd_to_sock(int fd, __u16 *family, __u8 *l4)
{
	if (fd < 0)
		return NULL;
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	if (!fdt)
		return NULL;
	unsigned int max_fds = BPF_CORE_READ(fdt, max_fds);
	if ((unsigned int)fd >= max_fds)
		return NULL;
	struct file **fds = BPF_CORE_READ(fdt, fd);
	struct file *file = NULL;
	if (bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]) || !file)
		return NULL;
	umode_t mode = BPF_CORE_READ(file, f_inode, i_mode);
	if ((mode & S_IFMT) != S_IFSOCK)
		return NULL;
	struct socket *sock = BPF_CORE_READ(file, private_data);
	if (!sock)
		return NULL;
	struct sock *sk = BPF_CORE_READ(sock, sk);
	if (!sk)
		return NULL;
	__u16 fam = BPF_CORE_READ(sk, __sk_common.skc_family);
	if (fam != AF_INET && fam != AF_INET6)
		return NULL;
	__u16 type = BPF_CORE_READ(sk, sk_type);
	__u16 proto = BPF_CORE_READ(sk, sk_protocol);
	if (type == SOCK_STREAM && proto == IPPROTO_TCP)
		*l4 = IPPROTO_TCP;
	else if (type == SOCK_DGRAM && proto == IPPROTO_UDP)
		*l4 = IPPROTO_UDP;
	else
		return NULL;
	*family = fam;
	return sk;
}

static __always_inline void read_tuple(struct sock *sk, __u16 family, struct event_header *h)
{
	h->lport = BPF_CORE_READ(sk, __sk_common.skc_num);
	h->rport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	if (family == AF_INET) {
		__u32 l = BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr);
		__u32 r = BPF_CORE_READ(sk, __sk_common.skc_daddr);
		__builtin_memcpy(h->laddr, &l, 4);
		__builtin_memcpy(h->raddr, &r, 4);
	} else {
		BPF_CORE_READ_INTO(&h->laddr, sk, __sk_common.skc_v6_rcv_saddr);
		BPF_CORE_READ_INTO(&h->raddr, sk, __sk_common.skc_v6_daddr);
	}
}

/* Unconnected UDP: take the peer from the syscall's sockaddr. */
static __always_inline void read_user_peer(__u64 addr, struct event_header *h)
{
	struct u_sockaddr_in6 sa = {};
	if (bpf_probe_read_user(&sa, sizeof(sa), (void *)addr)) {
		/* A sockaddr_in may sit at the end of a page: retry short. */
		if (bpf_probe_read_user(&sa, sizeof(struct u_sockaddr_in), (void *)addr)) {
			count(CNT_ARGS_READ_FAIL);
			return;
		}
	}
	if (sa.family == AF_INET && h->family == AF_INET) {
		struct u_sockaddr_in *in = (void *)&sa;
		h->rport = bpf_ntohs(in->port);
		__builtin_memcpy(h->raddr, in->addr, 4);
	} else if (sa.family == AF_INET && h->family == AF_INET6) {
		/* IPv4 peer on a dual-stack socket: store it v4-mapped. */
		struct u_sockaddr_in *in = (void *)&sa;
		h->rport = bpf_ntohs(in->port);
		__builtin_memset(h->raddr, 0, 16);
		h->raddr[10] = 0xff;
		h->raddr[11] = 0xff;
		__builtin_memcpy(&h->raddr[12], in->addr, 4);
	} else if (sa.family == AF_INET6 && h->family == AF_INET6) {
		h->rport = bpf_ntohs(sa.port);
		__builtin_memcpy(h->raddr, sa.addr, 16);
	}
}

static __always_inline struct sock_state *get_sock_state(__u64 sk)
{
	struct sock_state *s = bpf_map_lookup_elem(&sock_states, &sk);
	if (s && !s->closed)
		return s;
	struct sock_state init = { .conn_uid = next_id() };
	if (s) {
		/* Kept past its close for a pending TLS call, and now a syscall
		 * on the sock pointer: a new socket took the address. */
		*s = init;
		return s;
	}
	/* EEXIST means another CPU raced us in: fine, use its entry. */
	bpf_map_update_elem(&sock_states, &sk, &init, BPF_NOEXIST);
	s = bpf_map_lookup_elem(&sock_states, &sk);
	if (!s)
		count(CNT_SOCK_STATE_FAIL);
	return s;
}

static __always_inline int enter_io(__u32 syscall, __u8 dir, __u8 kind, int fd, __u64 buf,
				    __u32 iovcnt, __u64 addr, __u64 flags)
{
	/* Peeked bytes are read again by a later call: capture them then. */
	if (fd < 0 || (flags & MSG_PEEK))
		return 0;
	__u64 id = bpf_get_current_pid_tgid();
	if (!should_trace(id >> 32))
		return 0;
	struct active_io io = {
		.enter_ns = bpf_ktime_get_ns(),
		.buf = buf,
		.addr = addr,
		.iovcnt = iovcnt,
		.fd = fd,
		.syscall = syscall,
		.dir = dir,
		.kind = kind,
	};
	if (bpf_map_update_elem(&active_io_map, &id, &io, BPF_ANY))
		count(CNT_ACTIVE_UPDATE_FAIL);
	return 0;
}

/* Copy up to want bytes from an iovec array into s->data. */
static __always_inline __u32 copy_iov(struct scratch *s, __u64 iovp, __u32 iovcnt, __u32 want)
{
	__u32 off = 0;
	for (int i = 0; i < MAX_IOV; i++) {
		if (i >= iovcnt || off >= want)
			break;
		struct u_iovec iov;
		if (bpf_probe_read_user(&iov, sizeof(iov), (void *)(iovp + i * sizeof(iov)))) {
			count(CNT_PAYLOAD_READ_FAIL);
			break;
		}
		__u64 n = iov.len;
		if (n > want - off)
			n = want - off;
		/* Redundant for logic; gives the verifier its bounds. */
		if (n > MAX_PAYLOAD_LIMIT)
			n = MAX_PAYLOAD_LIMIT;
		off &= MAX_PAYLOAD_LIMIT - 1;
		if (n == 0)
			continue;
		if (bpf_probe_read_user(&s->data[off], n, (void *)iov.base)) {
			count(CNT_PAYLOAD_READ_FAIL);
			break;
		}
		off += n;
	}
	if (off < want && iovcnt > MAX_IOV)
		count(CNT_IOV_TRUNCATED);
	return off;
}

/* ---- goroutines ------------------------------------------------------
 * In Go processes the unit that serves a request is the goroutine, and
 * goroutines hop between threads, so thread_states is keyed by goroutine
 * there: key = tgid << 32 | 1 << 31 | goid (31 bits; thread ids stay below
 * 1 << 22). The running goroutine is R14 (the g register of Go's amd64
 * register ABI), checked against the user stack pointer so a thread in C
 * code (cgo) never passes off a stray R14 as a g. */

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32); /* tgid */
	__type(value, struct go_proc);
} go_procs SEC(".maps");

#define GO_KEY_BIT 0x80000000ULL

static __always_inline __u64 go_key(__u32 tgid, __u64 goid)
{
	return ((__u64)tgid << 32) | GO_KEY_BIT | (goid & 0x7fffffff);
}

/* goid of the goroutine whose g pointer is g, or 0 when g does not own the
 * stack that sp is on. */
static __always_inline __u64 go_goid(struct go_proc *gp, __u64 g, __u64 sp)
{
	__u64 stack[2]; /* g.stack.lo, g.stack.hi: the first field of runtime.g */
	if (!g || bpf_probe_read_user(stack, sizeof(stack), (void *)g))
		return 0;
	if (sp && (sp < stack[0] || sp >= stack[1]))
		return 0;
	__u64 goid = 0;
	if (bpf_probe_read_user(&goid, sizeof(goid), (void *)(g + gp->goid_off)))
		return 0;
	return goid;
}

/* Key of the running thread or goroutine for thread_states; *goid is set
 * for goroutines. */
static __always_inline __u64 exec_key(__u64 pid_tgid, __u64 *goid)
{
	*goid = 0;
	__u32 tgid = pid_tgid >> 32;
	struct go_proc *gp = bpf_map_lookup_elem(&go_procs, &tgid);
	if (!gp)
		return pid_tgid;
	if (!gp->goid_off)
		return 0; /* a Go process without goroutine probes: no ids */
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
	__u64 g = BPF_CORE_READ(regs, r14);
	__u64 sp = BPF_CORE_READ(regs, sp);
	__u64 id = go_goid(gp, g, sp);
	if (!id) {
		count(CNT_GO_G_MISS);
		return pid_tgid;
	}
	*goid = id;
	return go_key(tgid, id);
}

#define FUTEX_CMD_MASK 0x7f
#define FUTEX_WAIT 0
#define FUTEX_WAKE 1
#define FUTEX_WAIT_BITSET 9
#define FUTEX_WAKE_BITSET 10
#define FUTEX_IDLE_NS 500000
#define FUTEX_CLOCK_REALTIME 256
/* A timed wait this long is a wait for a result (Python's
 * future.result(timeout)); GIL and lock polling waits are a few ms. */
#define FUTEX_RESULT_WAIT_NS 50000000ULL

struct ftx_key {
	__u32 tgid;
	__u32 _pad;
	__u64 uaddr;
};

/* The latest handoff on a futex word. */
struct ftx_wake {
	__u64 trace_id;
	__u64 ts;
	__u64 seq;    /* the process's ftx_proc.seq after this handoff */
	__u32 waker;  /* its thread id */
	__u8 consumed;
	__u8 _pad[3];
};

/* Per process: futex activity of request threads that have just read their
 * request (a handoff, or a wait: for the result of work they queued). A
 * worker that took an id must use it before any other request thread could
 * have queued work: a queue hands out jobs first in, first out, to
 * whichever worker runs first, so the worker cannot tell whose job it took
 * once two were queued, and then uses none. A put that wakes nobody makes
 * no syscall, hence watching the waits too; and a handoff while another
 * request thread sleeps waiting (its job may still be queued, ahead) hands
 * over nothing. */
struct ftx_proc {
	__u64 seq;
	__u64 run;     /* seq where the latest run of one thread's activity began */
	__u32 last;    /* that thread's id */
	__s32 waiting; /* request threads asleep on a futex right after reading their request */
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32); /* tgid */
	__type(value, struct ftx_proc);
} futex_procs SEC(".maps");

struct ftx_wait {
	__u64 uaddr;
	__u64 ts;
	__u8 idle; /* an untimed wait: a worker idle on a queue may take a handoff */
	__u8 _pad[7];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct ftx_key);
	__type(value, struct ftx_wake);
} futex_wakes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64); /* pid_tgid */
	__type(value, struct ftx_wait);
} futex_waits SEC(".maps");

/* Futex words request threads wait on themselves (locks, a GIL, condition
 * variables): a wake on them is contention, not a handoff. A pool's queue
 * is waited on by its workers only. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct ftx_key);
	__type(value, __u8);
} futex_shared SEC(".maps");

/* Role of a socket: from its connect/accept when the agent saw it, else
 * from user space's verdict (sock_roles), else unknown. */
static __always_inline __u8 sock_role(struct sock_state *ss, __u64 sk)
{
	if (ss && ss->role)
		return ss->role;
	__u8 *r = bpf_map_lookup_elem(&sock_roles, &sk);
	return r ? *r : 0;
}

/* A futex-inherited id holds while no other handoff went through the same
 * word (key is pid_tgid: futex handoff is for threads, never goroutines). */
static __always_inline bool weak_still_valid(struct thread_state *ts, __u64 key)
{
	__u32 tgid = key >> 32;
	struct ftx_proc *p = bpf_map_lookup_elem(&futex_procs, &tgid);
	if (!p)
		return false;
	/* Since the handoff, only the waker itself (waiting for the result of
	 * the job it handed over, taking its locks). */
	return p->last == ts->weak_waker && p->run <= ts->weak_seq;
}

/* Counts futex activity of a request thread fresh from reading its request. */
static __always_inline __u64 ftx_proc_bump(__u32 tgid, __u32 tid)
{
	struct ftx_proc *p = bpf_map_lookup_elem(&futex_procs, &tgid);
	if (!p) {
		struct ftx_proc n = { .seq = 1, .run = 1, .last = tid };
		bpf_map_update_elem(&futex_procs, &tgid, &n, BPF_ANY);
		return 1;
	}
	__u64 seq = __sync_fetch_and_add(&p->seq, 1) + 1;
	if (p->last != tid) {
		p->last = tid;
		p->run = seq;
	}
	return seq;
}

static __always_inline bool fresh_request_thread(struct thread_state *ts)
{
	return ts && ts->owned && ts->trace_id && !ts->event_loop && ts->has_last &&
	       ts->last_dir == DIR_INGRESS && ts->open_sk == ts->last_sk;
}

/* An unanswered request on another, still open server socket, read less
 * than 10 s ago (a request that never got an answer ages out). */
static __always_inline bool interleaved(struct thread_state *ts, __u64 sk)
{
	if (!ts->open_sk || ts->open_sk == sk)
		return false;
	if (bpf_ktime_get_ns() - ts->open_ns > 10000000000ULL)
		return false;
	struct sock_state *ss = bpf_map_lookup_elem(&sock_states, &ts->open_sk);
	return ss && !ss->closed;
}

/* syscall_trace_id of a data event. A thread (or goroutine) gets a new id
 * when it reads a new request on a server socket; everything it sends until
 * the next one carries that id, and so do the replies to its own calls
 * (ingress on a client socket), so every downstream call of one request
 * shares the request's id. A thread found interleaving requests of several
 * server sockets (an event loop: nginx, redis) gets 0 while it does: a
 * thread-level id would join unrelated requests there. */
static __always_inline __u64 trace_id_for(__u64 key, __u64 sk, __u8 dir, __u8 role)
{
	struct thread_state *ts = bpf_map_lookup_elem(&thread_states, &key);
	if (!ts) {
		struct thread_state n = {};
		/* EEXIST (a racing CPU) is fine: the lookup below finds its entry. */
		bpf_map_update_elem(&thread_states, &key, &n, BPF_NOEXIST);
		ts = bpf_map_lookup_elem(&thread_states, &key);
		if (!ts) {
			count(CNT_THREAD_STATE_FAIL);
			return 0;
		}
	}
	__u64 tid = 0;
	if (dir == DIR_INGRESS) {
		if (ts->has_last && ts->last_dir == DIR_INGRESS && ts->last_sk == sk && ts->trace_id) {
			/* Consecutive reads of one socket are one inbound message. */
			tid = ts->trace_id;
		} else if (role == ROLE_CLIENT) {
			/* The reply to a call this thread made. */
			tid = ts->trace_id;
			if (ts->weak) {
				ts->trace_id = 0;
				ts->weak = 0;
			}
		} else if (role == ROLE_SERVER && interleaved(ts, sk)) {
			/* A request read while another socket's request is unanswered:
			 * an event loop. No id until it serves one request at a time. */
			ts->event_loop = 1;
			ts->trace_id = 0;
			ts->owned = 0;
			ts->open_sk = sk;
			ts->open_ns = bpf_ktime_get_ns();
			count(CNT_EVENT_LOOP);
		} else {
			tid = next_id();
			ts->trace_id = tid;
			ts->owned = 1;
			ts->weak = 0;
			ts->event_loop = 0;
			ts->ftx_woke = 0;
			if (role == ROLE_SERVER) {
				ts->open_sk = sk;
				ts->open_ns = bpf_ktime_get_ns();
			}
		}
	} else {
		tid = ts->trace_id;
		if (ts->weak && tid && !weak_still_valid(ts, key)) {
			tid = 0;
			ts->trace_id = 0;
			ts->weak = 0;
		}
		if (ts->open_sk == sk) {
			ts->open_sk = 0;
			if (ts->event_loop) {
				/* Its last open request answered: one at a time again. */
				ts->event_loop = 0;
			}
		}
	}
	ts->last_sk = sk;
	ts->last_dir = dir;
	ts->has_last = 1;
	return tid;
}

/* First stage of protocol inference: a cheap look at the first bytes of a
 * socket's messages until one looks like a known protocol (the hint tells
 * user space which parser to try first; user space has the last word) or
 * like traffic no parser can read (TLS records, SSH), which stops the
 * socket's data events at once. Hints are l7_protocol numbers. Only
 * constant offsets into the scratch buffer: cheap for the verifier. */
static __always_inline __u8 l7_infer(const __u8 *d, __u32 n, __u8 l4)
{
	if (n < 4)
		return 0;
	__u8 a = d[0], b = d[1], c = d[2], e = d[3];
	if (l4 == IPPROTO_UDP) {
		/* DNS: qdcount 1, standard query or response, opcode 0. */
		if (n >= 12 && d[4] == 0 && d[5] == 1 && (c & 0x78) == 0)
			return 120;
		return 0;
	}
	/* TLS handshake record (ClientHello/ServerHello): ciphertext follows. */
	if (a == 0x16 && b == 0x03 && c <= 0x04)
		return L7_HINT_SKIP;
	if (a == 'S' && b == 'S' && c == 'H' && e == '-')
		return L7_HINT_SKIP;
	/* HTTP/1 methods and status line. */
	if ((a == 'G' && b == 'E' && c == 'T' && e == ' ') || (a == 'P' && b == 'O' && c == 'S' && e == 'T') ||
	    (a == 'P' && b == 'U' && c == 'T' && e == ' ') || (a == 'H' && b == 'E' && c == 'A' && e == 'D') ||
	    (a == 'D' && b == 'E' && c == 'L' && e == 'E') || (a == 'O' && b == 'P' && c == 'T' && e == 'I') ||
	    (a == 'P' && b == 'A' && c == 'T' && e == 'C') || (a == 'H' && b == 'T' && c == 'T' && e == 'P'))
		return 20;
	if (a == 'P' && b == 'R' && c == 'I' && e == ' ')
		return 21; /* HTTP/2 client preface */
	if (a == 'A' && b == 'M' && c == 'Q' && e == 'P')
		return 102;
	if (a == 'P' && b == 'R' && c == 'P' && e == 'C')
		return 45; /* bRPC baidu_std */
	if (a == 0xda && b == 0xbb)
		return 40; /* Dubbo */
	if (a == '*' && b >= '0' && b <= '9')
		return 80; /* Redis array of bulk strings */
	if ((a == 'I' && b == 'N' && c == 'F' && e == 'O') || (a == 'C' && b == 'O' && c == 'N' && e == 'N' && n >= 8 && d[7] == ' '))
		return 104; /* NATS INFO / CONNECT */
	if (n >= 8) {
		__u32 be = ((__u32)a << 24) | ((__u32)b << 16) | ((__u32)c << 8) | e;
		__u32 le = ((__u32)e << 24) | ((__u32)c << 16) | ((__u32)b << 8) | a;
		/* PostgreSQL startup (protocol 3.0) or SSLRequest. */
		if (be == n && d[4] == 0 && d[5] == 3 && d[6] == 0 && d[7] == 0)
			return 61;
		if (be == 8 && d[4] == 0x04 && d[5] == 0xd2 && d[6] == 0x16 && d[7] == 0x2f)
			return 61;
		/* MongoDB: little-endian length equals the message, known opcode. */
		if (n >= 16 && le == n && d[13] == 0x07 && d[14] == 0 && d[15] == 0 &&
		    (d[12] == 0xdd || d[12] == 0xd4 || d[12] == 0xdc))
			return 81;
		/* MySQL: 3-byte length of the rest, sequence 0, then a command
		 * (client) or protocol 10 (server greeting). */
		__u32 mlen = a | ((__u32)b << 8) | ((__u32)c << 16);
		if (e == 0 && mlen + 4 == n && (d[4] == 0x03 || d[4] == 0x16 || d[4] == 0x17 || d[4] == 0x0a))
			return 60;
		/* Kafka request: size of the rest, small api key and version. */
		if (be + 4 == n && d[4] == 0 && d[5] < 80 && d[6] == 0 && d[7] < 20)
			return 100;
		/* FastCGI BEGIN_REQUEST: version 1, type 1, content length 8. */
		if (a == 1 && b == 1 && d[4] == 0 && d[5] == 8)
			return 44;
		/* MQTT CONNECT: type 1, protocol name "MQTT" (or "MQIsdp") after a
		 * one- or two-byte remaining length. */
		if (a == 0x10 && ((c == 0 && e == 4 && d[4] == 'M' && d[5] == 'Q') || (e == 0 && d[4] == 4 && d[5] == 'M') ||
				  (c == 0 && e == 6 && d[4] == 'M' && d[5] == 'Q')))
			return 101;
		/* SOFARPC Bolt v1 request or response: proto 1, type, cmdcode,
		 * ver2 1, and a hessian2 (1) or protobuf (11) codec. Short
		 * MySQL packets ("01 00 00 01") share the first four bytes. */
		if (n >= 20 && a == 1 && b <= 2 && c == 0 && (e == 1 || e == 2) && d[4] == 1 &&
		    (d[9] == 1 || d[9] == 11))
			return 43;
	}
	return 0;
}

/* ---- TLS plaintext ----------------------------------------------------
 * Uprobes on the TLS library's read and write calls (OpenSSL's API, Go's
 * crypto/tls) see the plaintext before encryption and after decryption.
 * Entry records the call (buffer, TLS object) per thread, or per goroutine
 * for Go; the socket syscalls the library makes during the call note their
 * socket and TCP sequence into it; the return emits the plaintext as a data
 * event of that socket, flagged TLS, so it meets the same parsers, sessions
 * and request ids as plaintext traffic. */

/* OpenSSL calls: { pid_tgid, 0 }. Go calls: { tgid | GO_TLS_KEY, g }. */
struct tls_key {
	__u64 a;
	__u64 b;
};

#define GO_TLS_KEY (1ULL << 63)

struct tls_call {
	__u64 buf;      /* plaintext buffer */
	__u64 out;      /* SSL_*_ex: where the byte count is written */
	__u64 obj;      /* SSL * or *tls.Conn */
	__u64 sk;       /* socket of the library's syscalls during the call */
	__u64 enter_ns;
	__u64 stack_lo; /* Go: the goroutine's stack at entry (it may move) */
	__u64 stack_hi;
	__s32 fd;       /* Go: read from the conn at entry; else from the syscall */
	__u32 tcp_seq;  /* seq of the ciphertext record that carried the plaintext */
	__u8 dir;
	__u8 kind;      /* enum tls_kind */
	__u8 has_seq;
	__u8 entry_seq; /* Go Read: tcp_seq computed at entry from its buffers */
	__u8 last_seq;  /* Go Read: continues the record of the previous Read */
	__u8 busy;      /* counted in sk's sock_state.tls_busy */
	__u8 _pad[2];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct tls_key);
	__type(value, struct tls_call);
} tls_calls SEC(".maps");

struct tls_sock {
	__u64 sk;
	__s32 fd;
	__u32 rx_seq; /* tcp_seq of the latest read call's record */
	__u8 has_rx;
	__u8 _pad[7];
};

/* Socket of each TLS object, learned from the syscalls of its earlier calls:
 * a call served from the library's buffer makes no syscall. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct tls_key); /* { tgid, SSL * } */
	__type(value, struct tls_sock);
} tls_socks SEC(".maps");

/* Processes whose Go TLS probes have fired: only their syscalls look for a
 * goroutine's TLS call. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32); /* tgid */
	__type(value, __u8);
} go_tls_procs SEC(".maps");

/* With tls_filter: the processes whose TLS calls are decrypted. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, __u32); /* tgid */
	__type(value, __u8);
} tls_pids SEC(".maps");

static __always_inline bool tls_allowed(__u32 tgid)
{
	if (!should_trace(tgid))
		return false;
	return !tls_filter || bpf_map_lookup_elem(&tls_pids, &tgid);
}

/* The running goroutine (R14) if it owns the stack sp is on, else 0. */
static __always_inline __u64 go_g_checked(__u64 g, __u64 sp, __u64 stack[2])
{
	if (!g || bpf_probe_read_user(stack, 2 * sizeof(__u64), (void *)g))
		return 0;
	if (sp < stack[0] || sp >= stack[1])
		return 0;
	return g;
}

/* The TLS call the current thread (or goroutine) is in, if any: checked on
 * every socket syscall exit, so OpenSSL's case is one lookup and Go's costs
 * more only in registered Go processes. */
static __always_inline struct tls_call *tls_call_now(__u64 pid_tgid)
{
	if (!tls_on)
		return NULL;
	struct tls_key k = { .a = pid_tgid };
	struct tls_call *c = bpf_map_lookup_elem(&tls_calls, &k);
	if (c)
		return c;
	__u32 tgid = pid_tgid >> 32;
	if (!bpf_map_lookup_elem(&go_tls_procs, &tgid))
		return NULL;
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
	__u64 stack[2];
	__u64 g = go_g_checked(BPF_CORE_READ(regs, r14), BPF_CORE_READ(regs, sp), stack);
	if (!g)
		return NULL;
	k.a = (__u64)tgid | GO_TLS_KEY;
	k.b = g;
	return bpf_map_lookup_elem(&tls_calls, &k);
}

/* A socket syscall made inside a TLS call: the plaintext's socket. Writes
 * keep the first syscall's sequence (the record starts there). Reads keep
 * the last one that starts with an application-data record header: OpenSSL
 * reads a record's header, then its body, and a read may first go through
 * records that carry no data (TLS 1.3 session tickets). A sequence Go's
 * Read computed at entry from its buffers is replaced only by such a
 * header: a read that continues a record read ahead starts mid-record. */
static __always_inline void tls_note(struct tls_call *c, struct sock_state *ss, __u64 sk, int fd, __u8 dir,
				     __u32 seq, bool seq_ok, __u64 first_buf)
{
	if (c->dir != dir)
		return;
	if (c->sk && c->sk != sk)
		return;
	bool first = !c->sk;
	c->sk = sk;
	c->fd = fd;
	if (first && ss && !c->busy) {
		/* Until the return probe, a close of the socket (another thread
		 * or goroutine) may overtake this call's plaintext. */
		__sync_fetch_and_add(&ss->tls_busy, 1);
		c->busy = 1;
	}
	if (!seq_ok)
		return;
	if (first && !c->entry_seq) {
		c->tcp_seq = seq;
		c->has_seq = 1;
		c->last_seq = 0;
	}
	if (dir == DIR_INGRESS && first_buf) {
		__u8 hdr[3] = {};
		if (bpf_probe_read_user(hdr, sizeof(hdr), (void *)first_buf) == 0 && hdr[0] == 0x17 &&
		    hdr[1] == 0x03 && hdr[2] == 0x03) {
			c->tcp_seq = seq;
			c->has_seq = 1;
			c->last_seq = 0;
		}
	}
}

/* The scratch buffer with a data event's header filled in: identity,
 * times, tuple, counters. NULL (counted) if there is no scratch. */
static __always_inline struct scratch *data_event(__u64 pid_tgid, int fd, __u64 enter_ns, struct sock *sk,
						  __u16 family, __u8 l4, __u8 dir, __u32 syscall, __u32 bytes,
						  __u32 tcp_seq, struct sock_state *ss)
{
	__u32 cpu = bpf_get_smp_processor_id();
	struct scratch *s = bpf_map_lookup_elem(&scratch_buf, &cpu);
	if (!s) {
		count(CNT_SCRATCH_MISS);
		return NULL;
	}
	struct event_header *h = &s->h;
	__builtin_memset(h, 0, sizeof(*h));
	h->type = EVENT_DATA;
	h->pid = pid_tgid >> 32;
	h->tid = (__u32)pid_tgid;
	h->fd = fd;
	h->enter_ns = enter_ns;
	h->exit_ns = bpf_ktime_get_ns();
	h->sock = (__u64)sk;
	h->bytes = bytes;
	h->tcp_seq = tcp_seq;
	h->family = family;
	h->l4 = l4;
	h->dir = dir;
	h->syscall = syscall;
	bpf_get_current_comm(h->comm, sizeof(h->comm));
	read_tuple(sk, family, h);
	if (ss) {
		h->conn_uid = ss->conn_uid;
		h->cap_seq = __sync_fetch_and_add(&ss->cap_seq, 1);
	}
	return s;
}

/* How many payload bytes of a bytes-long message are captured. */
static __always_inline __u32 payload_want(__u32 bytes)
{
	__u32 want = bytes;
	if (want > max_payload)
		want = max_payload;
	if (want > MAX_PAYLOAD_LIMIT)
		want = MAX_PAYLOAD_LIMIT;
	return want;
}

/* Sets the event's goroutine and request id and sends it with captured
 * payload bytes. */
static __always_inline void send_data_event(struct scratch *s, __u32 captured, __u64 pid_tgid, __u64 sk, __u8 dir,
					    struct sock_state *ss)
{
	struct event_header *h = &s->h;
	__u64 goid = 0;
	__u64 key = exec_key(pid_tgid, &goid);
	h->goid = goid;
	/* Thread-level ids mean nothing in a Go process whose goroutines are
	 * not tracked (threads run many goroutines in turn): none then. */
	h->trace_id = key ? trace_id_for(key, sk, dir, sock_role(ss, sk)) : 0;
	if (captured > MAX_PAYLOAD_LIMIT)
		captured = MAX_PAYLOAD_LIMIT;
	if (bpf_ringbuf_output(&events, s, sizeof(*h) + captured, rb_flags()))
		count(CNT_RINGBUF_FULL);
}

/* A TLS ClientHello or ServerHello record. */
static __always_inline bool tls_hello(const __u8 *d)
{
	return d[0] == 0x16 && d[1] == 0x03 && d[2] <= 0x04 && (d[5] == 0x01 || d[5] == 0x02);
}

static __always_inline int exit_io(__u32 syscall, long ret)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct active_io *p = bpf_map_lookup_elem(&active_io_map, &id);
	if (!p)
		return 0;
	struct active_io io = *p;
	bpf_map_delete_elem(&active_io_map, &id);
	if (io.syscall != syscall || ret <= 0)
		return 0;

	__u16 family = 0;
	__u8 l4 = 0;
	struct sock *sk = fd_to_sock(io.fd, &family, &l4);
	if (!sk)
		return 0;
	/* A socket judged not parseable costs a map lookup and nothing more,
	 * unless a TLS call made this syscall: its plaintext needs the socket
	 * and sequence. */
	struct sock_state *ss = get_sock_state((__u64)sk);
	struct tls_call *tc = tls_call_now(id);
	if (ss && ss->l7_state == L7_SKIP && !tc) {
		count(CNT_L7_SKIPPED);
		return 0;
	}

	__u32 bytes = (__u32)ret;
	__u32 msgs = 1;
	if (io.kind == IO_MSG || io.kind == IO_MMSG) {
		struct u_mmsghdr m;
		/* The msghdr is the head of an mmsghdr: one read serves both. */
		__u32 size = io.kind == IO_MMSG ? sizeof(struct u_mmsghdr) : sizeof(struct u_msghdr);
		if (bpf_probe_read_user(&m, size, (void *)io.buf)) {
			count(CNT_ARGS_READ_FAIL);
			return 0;
		}
		if (io.kind == IO_MMSG) {
			/* sendmmsg/recvmmsg return a message count: use message 0's length. */
			msgs = bytes;
			bytes = m.len;
			if (bytes == 0)
				return 0;
		}
		io.buf = m.hdr.iov;
		io.iovcnt = (__u32)m.hdr.iovlen;
		io.addr = m.hdr.name;
		io.kind = IO_IOV;
	}

	/* The syscall has moved write_seq (egress) or copied_seq (ingress) past
	 * its bytes: the first byte's sequence is the new value minus them.
	 * Several mmsg messages moved it further by unknown lengths. */
	__u32 tcp_seq = 0;
	if (l4 == IPPROTO_TCP && msgs == 1) {
		struct tcp_sock *tp = (struct tcp_sock *)sk;
		if (io.dir == DIR_EGRESS) {
			tcp_seq = BPF_CORE_READ(tp, write_seq) - bytes;
		} else {
			__u32 copied = BPF_CORE_READ(tp, copied_seq);
			tcp_seq = copied - bytes;
			/* A read that reaches the peer's FIN consumes it too, and the
			 * FIN takes a sequence number. A ret > 0 read has consumed
			 * it iff the FIN is in (RCV_SHUTDOWN) and nothing is left
			 * (copied_seq == rcv_nxt). A local shutdown(SHUT_RD) followed
			 * by a successful read would be off by one; it is rare. */
			if ((BPF_CORE_READ(sk, sk_shutdown) & RCV_SHUTDOWN) &&
			    BPF_CORE_READ(tp, rcv_nxt) == copied)
				tcp_seq -= 1;
		}
	}

	if (tc) {
		__u64 first = io.buf;
		if (io.kind == IO_IOV) {
			struct u_iovec iov0 = {};
			first = io.iovcnt && !bpf_probe_read_user(&iov0, sizeof(iov0), (void *)io.buf) ? iov0.base : 0;
		}
		tls_note(tc, ss, (__u64)sk, io.fd, io.dir, tcp_seq, l4 == IPPROTO_TCP && msgs == 1, first);
		if (ss && ss->l7_state == L7_SKIP) {
			count(CNT_L7_SKIPPED);
			return 0;
		}
	}

	struct scratch *s = data_event(id, io.fd, io.enter_ns, sk, family, l4, io.dir, syscall, bytes, tcp_seq, ss);
	if (!s)
		return 0;
	struct event_header *h = &s->h;
	if (h->rport == 0 && io.addr)
		read_user_peer(io.addr, h);

	__u32 want = payload_want(bytes);
	__u32 captured = 0;
	if (io.kind == IO_BUF) {
		if (bpf_probe_read_user(s->data, want, (void *)io.buf) == 0)
			captured = want;
		else
			count(CNT_PAYLOAD_READ_FAIL);
	} else {
		captured = copy_iov(s, io.buf, io.iovcnt, want);
	}
	if (captured > MAX_PAYLOAD_LIMIT)
		captured = MAX_PAYLOAD_LIMIT;
	h->captured = captured;
	if (ss && ss->l7_state == L7_INFER && captured > 0) {
		__u8 hint = l7_infer(s->data, captured, l4);
		if (hint == L7_HINT_SKIP && l4 == IPPROTO_TCP) {
			ss->l7_state = L7_SKIP;
			count(CNT_L7_SKIPPED);
			return 0;
		}
		if (hint && hint != L7_HINT_SKIP) {
			ss->l7_hint = hint;
			ss->l7_state = L7_HINTED;
		}
	} else if (ss && ss->l7_state == L7_HINTED && l4 == IPPROTO_TCP && captured >= 6 && tls_hello(s->data)) {
		/* A protocol that upgrades to TLS (PostgreSQL's SSLRequest, MySQL's
		 * SSL request): from the ClientHello on, only the plaintext probes
		 * can read it. */
		ss->l7_state = L7_SKIP;
		count(CNT_L7_SKIPPED);
		return 0;
	}
	if (ss)
		h->l7_hint = ss->l7_hint;
	send_data_event(s, captured, id, (__u64)sk, io.dir, ss);
	return 0;
}

static __always_inline void emit_header(struct event_header *h)
{
	if (bpf_ringbuf_output(&events, h, sizeof(*h), rb_flags()))
		count(CNT_RINGBUF_FULL);
}

static __always_inline void fill_conn_event(struct event_header *h, __u32 type, __u64 id, int fd,
					    struct sock *sk, __u16 family, __u8 l4)
{
	h->type = type;
	h->pid = id >> 32;
	h->tid = (__u32)id;
	h->fd = fd;
	h->enter_ns = bpf_ktime_get_ns();
	h->exit_ns = h->enter_ns;
	h->sock = (__u64)sk;
	h->family = family;
	h->l4 = l4;
	bpf_get_current_comm(h->comm, sizeof(h->comm));
}

static __always_inline int conn_opened(__u32 syscall, __u8 role, int fd)
{
	__u64 id = bpf_get_current_pid_tgid();
	if (!should_trace(id >> 32))
		return 0;
	__u16 family = 0;
	__u8 l4 = 0;
	struct sock *sk = fd_to_sock(fd, &family, &l4);
	if (!sk)
		return 0;
	struct event_header h = {};
	fill_conn_event(&h, EVENT_CONN, id, fd, sk, family, l4);
	h.dir = role;
	h.syscall = syscall;
	read_tuple(sk, family, &h);
	struct sock_state *ss = get_sock_state((__u64)sk);
	if (ss) {
		h.conn_uid = ss->conn_uid;
		/* A new connection: a verdict on a recycled sock pointer's old
		 * connection must not carry over. */
		ss->l7_state = L7_INFER;
		ss->l7_hint = 0;
		ss->role = role;
		ss->tls_skip = 0;
	}
	emit_header(&h);
	return 0;
}

#define ARG(ctx, n) ((ctx)->args[n])

/* ---- read / write ---------------------------------------------------- */

SEC("tracepoint/syscalls/sys_enter_read")
int enter_read(struct trace_event_raw_sys_enter *ctx)
{
	return enter_io(SYS_READ, DIR_INGRESS, IO_BUF, ARG(ctx, 0), ARG(ctx, 1), 0, 0, 0);
}

SEC("tracepoint/syscalls/sys_exit_read")
int exit_read(struct trace_event_raw_sys_exit *ctx)
{
	return exit_io(SYS_READ, ctx->ret);
}

SEC("tracepoint/syscalls/sys_enter_write")
int enter_write(struct trace_event_raw_sys_enter *ctx)
{
	return enter_io(SYS_WRITE, DIR_EGRESS, IO_BUF, ARG(ctx, 0), ARG(ctx, 1), 0, 0, 0);
}

SEC("tracepoint/syscalls/sys_exit_write")
int exit_write(struct trace_event_raw_sys_exit *ctx)
{
	return exit_io(SYS_WRITE, ctx->ret);
}

/* ---- readv / writev -------------------------------------------------- */

SEC("tracepoint/syscalls/sys_enter_readv")
int enter_readv(struct trace_event_raw_sys_enter *ctx)
{
	return enter_io(SYS_READV, DIR_INGRESS, IO_IOV, ARG(ctx, 0), ARG(ctx, 1), ARG(ctx, 2), 0, 0);
}

SEC("tracepoint/syscalls/sys_exit_readv")
int exit_readv(struct trace_event_raw_sys_exit *ctx)
{
	return exit_io(SYS_READV, ctx->ret);
}

SEC("tracepoint/syscalls/sys_enter_writev")
int enter_writev(struct trace_event_raw_sys_enter *ctx)
{
	return enter_io(SYS_WRITEV, DIR_EGRESS, IO_IOV, ARG(ctx, 0), ARG(ctx, 1), ARG(ctx, 2), 0, 0);
}

SEC("tracepoint/syscalls/sys_exit_writev")
int exit_writev(struct trace_event_raw_sys_exit *ctx)
{
	return exit_io(SYS_WRITEV, ctx->ret);
}

/* ---- sendto / recvfrom ----------------------------------------------- */

SEC("tracepoint/syscalls/sys_enter_sendto")
int enter_sendto(struct trace_event_raw_sys_enter *ctx)
{
	return enter_io(SYS_SENDTO, DIR_EGRESS, IO_BUF, ARG(ctx, 0), ARG(ctx, 1), 0, ARG(ctx, 4), 0);
}

SEC("tracepoint/syscalls/sys_exit_sendto")
int exit_sendto(struct trace_event_raw_sys_exit *ctx)
{
	return exit_io(SYS_SENDTO, ctx->ret);
}

SEC("tracepoint/syscalls/sys_enter_recvfrom")
int enter_recvfrom(struct trace_event_raw_sys_enter *ctx)
{
	return enter_io(SYS_RECVFROM, DIR_INGRESS, IO_BUF, ARG(ctx, 0), ARG(ctx, 1), 0, ARG(ctx, 4), ARG(ctx, 3));
}

SEC("tracepoint/syscalls/sys_exit_recvfrom")
int exit_recvfrom(struct trace_event_raw_sys_exit *ctx)
{
	return exit_io(SYS_RECVFROM, ctx->ret);
}

/* ---- sendmsg / recvmsg ----------------------------------------------- */

SEC("tracepoint/syscalls/sys_enter_sendmsg")
int enter_sendmsg(struct trace_event_raw_sys_enter *ctx)
{
	return enter_io(SYS_SENDMSG, DIR_EGRESS, IO_MSG, ARG(ctx, 0), ARG(ctx, 1), 0, 0, 0);
}

SEC("tracepoint/syscalls/sys_exit_sendmsg")
int exit_sendmsg(struct trace_event_raw_sys_exit *ctx)
{
	return exit_io(SYS_SENDMSG, ctx->ret);
}

SEC("tracepoint/syscalls/sys_enter_recvmsg")
int enter_recvmsg(struct trace_event_raw_sys_enter *ctx)
{
	return enter_io(SYS_RECVMSG, DIR_INGRESS, IO_MSG, ARG(ctx, 0), ARG(ctx, 1), 0, 0, ARG(ctx, 2));
}

SEC("tracepoint/syscalls/sys_exit_recvmsg")
int exit_recvmsg(struct trace_event_raw_sys_exit *ctx)
{
	return exit_io(SYS_RECVMSG, ctx->ret);
}

/* ---- sendmmsg / recvmmsg (first message only) ------------------------ */

SEC("tracepoint/syscalls/sys_enter_sendmmsg")
int enter_sendmmsg(struct trace_event_raw_sys_enter *ctx)
{
	return enter_io(SYS_SENDMMSG, DIR_EGRESS, IO_MMSG, ARG(ctx, 0), ARG(ctx, 1), 0, 0, 0);
}

SEC("tracepoint/syscalls/sys_exit_sendmmsg")
int exit_sendmmsg(struct trace_event_raw_sys_exit *ctx)
{
	return exit_io(SYS_SENDMMSG, ctx->ret);
}

SEC("tracepoint/syscalls/sys_enter_recvmmsg")
int enter_recvmmsg(struct trace_event_raw_sys_enter *ctx)
{
	return enter_io(SYS_RECVMMSG, DIR_INGRESS, IO_MMSG, ARG(ctx, 0), ARG(ctx, 1), 0, 0, ARG(ctx, 3));
}

SEC("tracepoint/syscalls/sys_exit_recvmmsg")
int exit_recvmmsg(struct trace_event_raw_sys_exit *ctx)
{
	return exit_io(SYS_RECVMMSG, ctx->ret);
}

/* ---- connect / accept / accept4 -------------------------------------- */

struct pending_fd {
	__s32 fd;
	__u32 syscall;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64); /* pid_tgid */
	__type(value, struct pending_fd);
} pending_connect SEC(".maps");

SEC("tracepoint/syscalls/sys_enter_connect")
int enter_connect(struct trace_event_raw_sys_enter *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	if (!should_trace(id >> 32))
		return 0;
	struct pending_fd p = { .fd = ARG(ctx, 0), .syscall = SYS_CONNECT };
	if (bpf_map_update_elem(&pending_connect, &id, &p, BPF_ANY))
		count(CNT_ACTIVE_UPDATE_FAIL);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_connect")
int exit_connect(struct trace_event_raw_sys_exit *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct pending_fd *p = bpf_map_lookup_elem(&pending_connect, &id);
	if (!p)
		return 0;
	int fd = p->fd;
	bpf_map_delete_elem(&pending_connect, &id);
	/* Non-blocking connects (Go, most event loops) return -EINPROGRESS;
	 * the local port is bound by then, so the tuple is complete. */
	if (ctx->ret != 0 && ctx->ret != -EINPROGRESS)
		return 0;
	return conn_opened(SYS_CONNECT, ROLE_CLIENT, fd);
}

SEC("tracepoint/syscalls/sys_exit_accept")
int exit_accept(struct trace_event_raw_sys_exit *ctx)
{
	if (ctx->ret < 0)
		return 0;
	return conn_opened(SYS_ACCEPT, ROLE_SERVER, ctx->ret);
}

SEC("tracepoint/syscalls/sys_exit_accept4")
int exit_accept4(struct trace_event_raw_sys_exit *ctx)
{
	if (ctx->ret < 0)
		return 0;
	return conn_opened(SYS_ACCEPT4, ROLE_SERVER, ctx->ret);
}

/* ---- close ----------------------------------------------------------- */

/* Emitted at enter, while the fd still resolves. Only sockets that were
 * seen (data or conn event) are reported. */
SEC("tracepoint/syscalls/sys_enter_close")
int enter_close(struct trace_event_raw_sys_enter *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	if (!should_trace(id >> 32))
		return 0;
	int fd = ARG(ctx, 0);
	__u16 family = 0;
	__u8 l4 = 0;
	struct sock *sk = fd_to_sock(fd, &family, &l4);
	if (!sk)
		return 0;
	__u64 key = (__u64)sk;
	struct sock_state *ss = bpf_map_lookup_elem(&sock_states, &key);
	if (!ss)
		return 0;
	struct event_header h = {};
	fill_conn_event(&h, EVENT_CLOSE, id, fd, sk, family, l4);
	h.conn_uid = ss->conn_uid;
	h.cap_seq = ss->cap_seq;
	h.syscall = SYS_CLOSE;
	if (ss->tls_busy) {
		/* A TLS call's plaintext is still to come (its thread is between
		 * the syscall and the return probe): it keeps the connection id,
		 * and user space holds the plaintext stream's close back. */
		h.flags = EVENT_FLAG_TLS_PENDING;
		ss->closed = 1;
		ss->family = family;
		/* The sock may be freed before the plaintext comes (a reset, or
		 * TCP done): user space takes the tuple from here. */
		read_tuple(sk, family, &h);
	} else {
		bpf_map_delete_elem(&sock_states, &key);
	}
	emit_header(&h);
	return 0;
}

/* ---- processes ------------------------------------------------------- */

SEC("tracepoint/sched/sched_process_exec")
int sched_exec(void *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	if (!should_trace(id >> 32))
		return 0;
	struct event_header h = {};
	h.type = EVENT_EXEC;
	h.pid = id >> 32;
	h.tid = (__u32)id;
	h.enter_ns = bpf_ktime_get_ns();
	h.exit_ns = h.enter_ns;
	bpf_get_current_comm(h.comm, sizeof(h.comm));
	emit_header(&h);
	return 0;
}

SEC("tracepoint/sched/sched_process_exit")
int sched_exit(void *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	/* Runs for every exiting thread: drop its per-thread state. */
	bpf_map_delete_elem(&active_io_map, &id);
	bpf_map_delete_elem(&thread_states, &id);
	bpf_map_delete_elem(&pending_connect, &id);
	struct tls_key tk = { .a = id };
	bpf_map_delete_elem(&tls_calls, &tk);
	__u32 tgid = id >> 32;
	if ((__u32)id != tgid)
		return 0;
	bpf_map_delete_elem(&go_tls_procs, &tgid);
	bpf_map_delete_elem(&tls_pids, &tgid);
	if (!should_trace(tgid))
		return 0;
	struct event_header h = {};
	h.type = EVENT_EXIT;
	h.pid = tgid;
	h.tid = (__u32)id;
	h.enter_ns = bpf_ktime_get_ns();
	h.exit_ns = h.enter_ns;
	bpf_get_current_comm(h.comm, sizeof(h.comm));
	emit_header(&h);
	return 0;
}

/* A new process (fork without exec: nginx workers, PostgreSQL backends)
 * shares its parent's mapped TLS libraries, so it inherits the parent's TLS
 * allowance at once; user space hears of it to report its coverage. Threads
 * (same tgid) are not reported. */
SEC("tp_btf/sched_process_fork")
int BPF_PROG(sched_fork, struct task_struct *parent, struct task_struct *child)
{
	__u32 ptgid = BPF_CORE_READ(parent, tgid);
	__u32 ctgid = BPF_CORE_READ(child, tgid);
	if (ctgid == ptgid || !should_trace(ptgid))
		return 0;
	if (tls_filter && bpf_map_lookup_elem(&tls_pids, &ptgid)) {
		__u8 one = 1;
		bpf_map_update_elem(&tls_pids, &ctgid, &one, BPF_ANY);
	}
	if (!tls_on)
		return 0;
	struct event_header h = {};
	h.type = EVENT_FORK;
	h.pid = ctgid;
	h.tid = BPF_CORE_READ(child, pid);
	h.fd = ptgid;
	h.enter_ns = bpf_ktime_get_ns();
	h.exit_ns = h.enter_ns;
	emit_header(&h);
	return 0;
}

/* ---- goroutine probes -------------------------------------------------
 * Attached by user space to Go binaries only (agent/goinfo finds the
 * functions through the pclntab, stripped binaries included, and the RET
 * instructions for return probes: uretprobes corrupt Go stacks, which the
 * runtime moves). Arguments follow Go's amd64 register ABI: RAX, RBX, RCX,
 * RDI, RSI, R8, ...; results in RAX, RBX. All of them act only for
 * processes in go_procs. */

/* newproc1(fn, callergp, callerpc, parked, waitreason) *g runs on the
 * system stack (R14 is g0), hence callergp; stashed per thread for the
 * return probes. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64); /* pid_tgid */
	__type(value, __u64); /* callergp */
} go_newproc SEC(".maps");

SEC("uprobe")
int go_newproc1(struct pt_regs *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32;
	if (!bpf_map_lookup_elem(&go_procs, &tgid))
		return 0;
	__u64 callergp = ctx->bx;
	bpf_map_update_elem(&go_newproc, &id, &callergp, BPF_ANY);
	return 0;
}

/* At each RET of newproc1: RAX is the new g, whose goid is set by now. A
 * goroutine starts with its creator's trace id (not owned: a later handoff
 * may replace it). */
SEC("uprobe")
int go_newproc1_ret(struct pt_regs *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32;
	struct go_proc *gp = bpf_map_lookup_elem(&go_procs, &tgid);
	__u64 *callergp = bpf_map_lookup_elem(&go_newproc, &id);
	if (!gp || !callergp)
		return 0;
	__u64 parent = go_goid(gp, *callergp, 0);
	bpf_map_delete_elem(&go_newproc, &id);
	__u64 child = go_goid(gp, ctx->ax, 0);
	if (!parent || !child)
		return 0;
	__u64 pkey = go_key(tgid, parent);
	struct thread_state *ps = bpf_map_lookup_elem(&thread_states, &pkey);
	if (!ps || !ps->trace_id || ps->event_loop)
		return 0;
	struct thread_state n = { .trace_id = ps->trace_id };
	__u64 ckey = go_key(tgid, child);
	bpf_map_update_elem(&thread_states, &ckey, &n, BPF_ANY);
	count(CNT_GO_SPAWN);
	return 0;
}

/* goexit1 runs on the exiting goroutine: its state goes. */
SEC("uprobe")
int go_goexit1(struct pt_regs *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32;
	struct go_proc *gp = bpf_map_lookup_elem(&go_procs, &tgid);
	if (!gp)
		return 0;
	__u64 goid = go_goid(gp, ctx->r14, ctx->sp);
	if (!goid)
		return 0;
	__u64 key = go_key(tgid, goid);
	bpf_map_delete_elem(&thread_states, &key);
	return 0;
}

/* Channel handoff: a worker goroutine that receives a value a request's
 * goroutine sent takes on that request's trace id. Values are matched by
 * identity (channel and the first 16 bytes of the element: a job pointer,
 * a closure, a request struct), so a worker that takes queued jobs without
 * blocking still gets the right id. A value sent by two goroutines with
 * different ids at once is ambiguous and links nothing. */
struct go_chan_key {
	__u32 tgid;
	__u32 _pad;
	__u64 chan;
	__u64 v[2];
};

struct go_chan_val {
	__u64 trace_id; /* 0: ambiguous */
	__u64 ts;       /* when it was sent */
	__u8 owner;     /* sent by the goroutine serving that request */
	__u8 _pad[7];
};

/* A value sent again this long after an unreceived earlier send is a new
 * value at a reused address (the earlier one was received where the probes
 * do not look), not two requests sending the same value. */
#define GO_CHAN_STALE_NS 1000000000ULL

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct go_chan_key);
	__type(value, struct go_chan_val);
} go_chan_values SEC(".maps");

/* Receive arguments, per goroutine (a receive that blocks resumes on
 * another thread). */
struct go_recv_args {
	__u64 a; /* chanrecv: hchan; selectgo: cas0 */
	__u64 b; /* chanrecv: ep;    selectgo: nsends */
	__u64 c; /* selectgo: nrecvs */
	__u64 stack_lo, stack_hi; /* the goroutine's stack then */
	__u8 sel;
	__u8 _pad[7];
};

/* The goroutine's stack bounds (g.stack, the first field of runtime.g). */
static __always_inline int go_stack(__u64 g, __u64 out[2])
{
	return bpf_probe_read_user(out, 2 * sizeof(__u64), (void *)g);
}

/* A receive that blocked may resume on a moved stack (the runtime grows and
 * shrinks stacks by copying, keeping offsets from the top): a saved pointer
 * into the old stack (ep, cas0 and its elems) is moved the same way. */
static __always_inline __u64 go_restack(__u64 p, struct go_recv_args *a, __u64 hi)
{
	if (hi && a->stack_hi && hi != a->stack_hi && p >= a->stack_lo && p < a->stack_hi)
		return p + (hi - a->stack_hi);
	return p;
}

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64); /* go_key */
	__type(value, struct go_recv_args);
} go_recv SEC(".maps");

/* Channels used as resource pools (database connections, buffers): a
 * goroutine takes a value and later puts it back. Handing over a trace id
 * there would give the next user the previous one's request, so a channel
 * where one goroutine both received and sent is never a handoff. */
struct go_pool_key {
	__u32 tgid;
	__u32 _pad;
	__u64 chan;
	__u64 goid;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct go_pool_key);
	__type(value, __u8);
} go_chan_receivers SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct go_pool_key); /* goid 0: the channel itself */
	__type(value, __u8);
} go_chan_pools SEC(".maps");

static __always_inline bool go_chan_is_pool(__u32 tgid, __u64 c)
{
	struct go_pool_key k = { .tgid = tgid, .chan = c };
	return bpf_map_lookup_elem(&go_chan_pools, &k) != NULL;
}

/* A send by a goroutine that received from the same channel before marks
 * it a pool. */
static __always_inline void go_chan_note_send(__u32 tgid, __u64 c, __u64 goid)
{
	struct go_pool_key k = { .tgid = tgid, .chan = c, .goid = goid };
	if (!bpf_map_lookup_elem(&go_chan_receivers, &k))
		return;
	__u8 one = 1;
	k.goid = 0;
	bpf_map_update_elem(&go_chan_pools, &k, &one, BPF_ANY);
}

static __always_inline void go_chan_note_recv(__u32 tgid, __u64 c, __u64 goid)
{
	struct go_pool_key k = { .tgid = tgid, .chan = c, .goid = goid };
	__u8 one = 1;
	bpf_map_update_elem(&go_chan_receivers, &k, &one, BPF_ANY);
}

/* 0: k is the value's identity; 1: the value has none (zero-size, or not
 * kept); -1: it could not be read. */
static __always_inline int go_chan_key_of(struct go_proc *gp, __u32 tgid, __u64 c, __u64 ep,
					  struct go_chan_key *k)
{
	if (!c)
		return -1;
	__u16 elemsize = 0;
	if (bpf_probe_read_user(&elemsize, sizeof(elemsize), (void *)(c + gp->elemsize_off)))
		return -1;
	if (!elemsize || !ep)
		return 1; /* no value to know it by (chan struct{}, a discarded receive) */
	__builtin_memset(k, 0, sizeof(*k));
	k->tgid = tgid;
	k->chan = c;
	__u32 n = elemsize < 16 ? elemsize : 16;
	if (n > 16)
		n = 16;
	if (bpf_probe_read_user(k->v, n, (void *)ep))
		return -1;
	return 0;
}

static __always_inline void go_chan_sent(struct go_proc *gp, __u32 tgid, __u64 trace_id, __u8 owner, __u64 c,
					__u64 ep)
{
	if (go_chan_is_pool(tgid, c))
		return;
	struct go_chan_key k;
	if (go_chan_key_of(gp, tgid, c, ep, &k))
		return;
	__u64 now = bpf_ktime_get_ns();
	struct go_chan_val *old = bpf_map_lookup_elem(&go_chan_values, &k);
	if (old && now - old->ts < GO_CHAN_STALE_NS) {
		if (old->trace_id != trace_id) {
			old->trace_id = 0;
			count(CNT_GO_HANDOFF_AMBIGUOUS);
		}
		return;
	}
	struct go_chan_val v = { .trace_id = trace_id, .ts = now, .owner = owner };
	bpf_map_update_elem(&go_chan_values, &k, &v, BPF_ANY);
}

/* Trace id of the running goroutine, 0 when it has none; *owner tells
 * whether the goroutine serves that request itself. */
static __always_inline __u64 go_current_trace(struct go_proc *gp, __u32 tgid, struct pt_regs *ctx, __u64 *key,
					      __u8 *owner)
{
	*owner = 0;
	__u64 goid = go_goid(gp, ctx->r14, ctx->sp);
	if (!goid)
		return 0;
	*key = go_key(tgid, goid);
	struct thread_state *ts = bpf_map_lookup_elem(&thread_states, key);
	if (!ts || ts->event_loop)
		return 0;
	*owner = ts->owned;
	return ts->trace_id;
}

/* chansend(c *hchan, ep unsafe.Pointer, block bool, callerpc uintptr) bool */
SEC("uprobe")
int go_chansend(struct pt_regs *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct go_proc *gp = bpf_map_lookup_elem(&go_procs, &tgid);
	if (!gp)
		return 0;
	__u64 key = 0;
	__u8 owner = 0;
	__u64 tid = go_current_trace(gp, tgid, ctx, &key, &owner);
	if (key)
		go_chan_note_send(tgid, ctx->ax, key & 0x7fffffff);
	if (tid)
		go_chan_sent(gp, tgid, tid, owner, ctx->ax, ctx->bx);
	return 0;
}

/* chanrecv(c *hchan, ep unsafe.Pointer, block bool) (selected, received bool) */
SEC("uprobe")
int go_chanrecv(struct pt_regs *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct go_proc *gp = bpf_map_lookup_elem(&go_procs, &tgid);
	if (!gp || !ctx->bx)
		return 0;
	__u64 goid = go_goid(gp, ctx->r14, ctx->sp);
	if (!goid)
		return 0;
	__u64 key = go_key(tgid, goid);
	struct go_recv_args a = { .a = ctx->ax, .b = ctx->bx };
	__u64 st[2];
	if (!go_stack(ctx->r14, st)) {
		a.stack_lo = st[0];
		a.stack_hi = st[1];
	}
	bpf_map_update_elem(&go_recv, &key, &a, BPF_ANY);
	return 0;
}

/* selectgo(cas0 *scase, order0 *uint16, pc0 *uintptr, nsends, nrecvs int,
 * block bool) (int, bool): send cases come first in cas0. Sends are
 * recorded at entry (the receiver may run before selectgo returns). */
#define GO_MAX_SELECT_SENDS 4

SEC("uprobe")
int go_selectgo(struct pt_regs *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct go_proc *gp = bpf_map_lookup_elem(&go_procs, &tgid);
	if (!gp)
		return 0;
	__u64 key = 0;
	__u8 owner = 0;
	__u64 tid = go_current_trace(gp, tgid, ctx, &key, &owner);
	if (!key)
		return 0;
	__u64 cas0 = ctx->ax, nsends = ctx->di, nrecvs = ctx->si;
	if (tid) {
		for (int i = 0; i < GO_MAX_SELECT_SENDS; i++) {
			if (i >= nsends)
				break;
			__u64 sc[2];
			if (bpf_probe_read_user(sc, sizeof(sc), (void *)(cas0 + i * gp->scase_size)))
				break;
			__u64 ep = 0;
			if (gp->scase_elem == 8)
				ep = sc[1];
			go_chan_note_send(tgid, sc[0], key & 0x7fffffff);
			go_chan_sent(gp, tgid, tid, owner, sc[0], ep);
		}
	}
	if (nrecvs) {
		struct go_recv_args a = { .a = cas0, .b = nsends, .c = nrecvs, .sel = 1 };
		__u64 st[2];
		if (!go_stack(ctx->r14, st)) {
			a.stack_lo = st[0];
			a.stack_hi = st[1];
		}
		bpf_map_update_elem(&go_recv, &key, &a, BPF_ANY);
	}
	return 0;
}

/* At each RET of chanrecv and selectgo: the receive is done and its value
 * is in place. */
SEC("uprobe")
int go_recv_ret(struct pt_regs *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct go_proc *gp = bpf_map_lookup_elem(&go_procs, &tgid);
	if (!gp)
		return 0;
	__u64 goid = go_goid(gp, ctx->r14, ctx->sp);
	if (!goid)
		return 0;
	__u64 key = go_key(tgid, goid);
	struct go_recv_args *ap = bpf_map_lookup_elem(&go_recv, &key);
	if (!ap)
		return 0;
	struct go_recv_args a = *ap;
	bpf_map_delete_elem(&go_recv, &key);
	__u64 st[2] = {};
	go_stack(ctx->r14, st);
	__u64 c = a.a, ep = go_restack(a.b, &a, st[1]);
	if (a.sel) {
		a.a = go_restack(a.a, &a, st[1]);
		__u64 chosen = ctx->ax;
		/* recvOK is a bool: only BL is defined. */
		if (!(ctx->bx & 0xff) || chosen < a.b || chosen >= a.b + a.c || chosen > 64)
			return 0; /* a send, the default case, or nothing received */
		__u64 sc[2];
		if (bpf_probe_read_user(sc, sizeof(sc), (void *)(a.a + chosen * gp->scase_size)))
			return 0;
		c = sc[0];
		ep = gp->scase_elem == 8 ? go_restack(sc[1], &a, st[1]) : 0;
	} else if (!(ctx->bx & 0xff)) {
		return 0; /* received is false: closed channel */
	}
	go_chan_note_recv(tgid, c, goid & 0x7fffffff);
	if (go_chan_is_pool(tgid, c))
		return 0;
	struct go_chan_key k;
	struct go_chan_val *v = NULL;
	int kr = go_chan_key_of(gp, tgid, c, ep, &k);
	if (kr > 0)
		return 0; /* nothing received that work could be */
	if (kr == 0)
		v = bpf_map_lookup_elem(&go_chan_values, &k);
	__u64 tid = v ? v->trace_id : 0;
	__u8 from_owner = v ? v->owner : 0;
	if (v)
		bpf_map_delete_elem(&go_chan_values, &k);
	struct thread_state *ts = bpf_map_lookup_elem(&thread_states, &key);
	/* A goroutine serving its own request keeps it: a reply coming back
	 * over a channel (net/http's readLoop) is not a handoff. */
	if (ts && (ts->owned || ts->event_loop))
		return 0;
	/* A worker that took its id through one channel (its job queue) keeps
	 * it for values from elsewhere that another request's helper passes
	 * on (a pooled connection handed over by the read loop of the request
	 * that used it last): only its job channel, or a request's own
	 * goroutine, gives it a new one. */
	if (ts && ts->trace_id && ts->origin_chan && ts->origin_chan != c && !from_owner)
		return 0;
	if (!tid) {
		/* Work of unknown origin (sent without an id, or ambiguous): a
		 * worker must not go on with the previous job's id. */
		if (ts)
			ts->trace_id = 0;
		return 0;
	}
	if (ts) {
		ts->trace_id = tid;
		ts->origin_chan = c;
	} else {
		struct thread_state n = { .trace_id = tid, .origin_chan = c };
		bpf_map_update_elem(&thread_states, &key, &n, BPF_ANY);
	}
	count(CNT_GO_HANDOFF);
	return 0;
}

/* ---- thread-pool handoff (other runtimes) ------------------------------ */

/* Whether a FUTEX_WAIT_BITSET's timeout (absolute) is far off. A
 * CLOCK_REALTIME deadline cannot be compared here: taken as far off, the
 * cautious side (fewer handoffs, never a wrong one). */
static __always_inline bool long_timed_wait(struct trace_event_raw_sys_enter *ctx)
{
	if ((__u32)ARG(ctx, 1) & FUTEX_CLOCK_REALTIME)
		return true;
	struct {
		__s64 sec;
		__s64 nsec;
	} t;
	if (bpf_probe_read_user(&t, sizeof(t), (void *)ARG(ctx, 3)))
		return true;
	__u64 deadline = (__u64)t.sec * 1000000000ULL + (__u64)t.nsec;
	return deadline > bpf_ktime_get_ns() + FUTEX_RESULT_WAIT_NS;
}

/* A request thread that has just read its request (its id is fresh: the
 * last socket event was that read) and wakes a thread parked on a futex
 * hands it its trace id: the common submit-to-a-pool pattern (Python's
 * ThreadPoolExecutor, Java executors) wakes an idle worker that way. Only
 * untimed bitset waits count (glibc's semaphores and condition variables;
 * short timed ones are lock and GIL polling, plain ones are mutexes); words request
 * threads wait on themselves are locks, never handoffs (futex_shared); the
 * wakee must have slept (idle, not a lock hand-over) and not own a request
 * itself; one wake hands off once; the id is dropped when another request
 * thread could have queued work before the worker used it (see ftx_proc);
 * and it ends with the worker's first reply, so a worker that
 * takes a queued job without blocking carries no id instead of a wrong one. A request
 * thread that queued its job without waking anybody (all workers busy) and
 * waits for it, untimed or long timed, holds every handoff back until its
 * wait ends: its job is ahead in the queue. Go processes are
 * left out: their goroutines are tracked above. */
SEC("tracepoint/syscalls/sys_enter_futex")
int enter_futex(struct trace_event_raw_sys_enter *ctx)
{
	/* Runs for every futex call on the host: unrelated threads (no state,
	 * in processes without request threads) cost one or two lookups. */
	__u32 op = (__u32)ARG(ctx, 1) & FUTEX_CMD_MASK;
	if (op != FUTEX_WAKE && op != FUTEX_WAKE_BITSET && op != FUTEX_WAIT && op != FUTEX_WAIT_BITSET)
		return 0;
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32;
	__u64 uaddr = ARG(ctx, 0);
	struct ftx_key k = { .tgid = tgid, .uaddr = uaddr };
	struct thread_state *ts = bpf_map_lookup_elem(&thread_states, &id);
	if (op == FUTEX_WAIT || op == FUTEX_WAIT_BITSET) {
		if (ts && ts->owned) {
			__u8 one = 1;
			bpf_map_update_elem(&futex_shared, &k, &one, BPF_ANY);
		}
		/* Untimed bitset waits: semaphores and condition variables, what
		 * a queue sleeps on. Plain ones are mutexes (a GIL's among them);
		 * short timed ones are lock and GIL polling. A long timed one
		 * matters only from a request thread that put its job in a queue
		 * without waking anybody: the job may wait there, ahead of the
		 * next request's, so no handoff is safe meanwhile. */
		if (op != FUTEX_WAIT_BITSET)
			return 0;
		bool idle = !ARG(ctx, 3);
		bool fresh = fresh_request_thread(ts);
		if (!idle && !(fresh && !ts->ftx_woke && long_timed_wait(ctx)))
			return 0;
		if (fresh) {
			ftx_proc_bump(tgid, (__u32)id);
			struct ftx_proc *p = bpf_map_lookup_elem(&futex_procs, &tgid);
			if (p && !ts->ftx_waiting) {
				__sync_fetch_and_add(&p->waiting, 1);
				ts->ftx_waiting = 1;
				if (!idle)
					count(CNT_FUTEX_QUEUED_WAIT);
			}
		}
		if (ts && ts->weak && ts->weak_src == uaddr) {
			/* Back to waiting on the queue that woke it, its id unused:
			 * another worker took that job. */
			ts->trace_id = 0;
			ts->weak = 0;
		}
		/* Waits matter only where request threads hand work over. */
		if (!fresh && !bpf_map_lookup_elem(&futex_procs, &tgid))
			return 0;
		struct ftx_wait w = { .uaddr = uaddr, .ts = bpf_ktime_get_ns(), .idle = idle };
		bpf_map_update_elem(&futex_waits, &id, &w, BPF_ANY);
		return 0;
	}
	if (!fresh_request_thread(ts) || !should_trace(tgid) || bpf_map_lookup_elem(&go_procs, &tgid))
		return 0;
	__u64 seq = ftx_proc_bump(tgid, (__u32)id);
	if (bpf_map_lookup_elem(&futex_shared, &k))
		return 0;
	/* Its put woke a worker: its job is at the head of that queue. */
	ts->ftx_woke = 1;
	struct ftx_proc *p = bpf_map_lookup_elem(&futex_procs, &tgid);
	if (p && p->waiting > 0)
		return 0; /* another request's job may be queued ahead of this one */
	struct ftx_wake w = { .trace_id = ts->trace_id, .ts = bpf_ktime_get_ns(), .seq = seq, .waker = (__u32)id };
	bpf_map_update_elem(&futex_wakes, &k, &w, BPF_ANY);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_futex")
int exit_futex(struct trace_event_raw_sys_exit *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct ftx_wait *wp = bpf_map_lookup_elem(&futex_waits, &id);
	if (!wp)
		return 0;
	struct ftx_wait w = *wp;
	bpf_map_delete_elem(&futex_waits, &id);
	struct thread_state *ts = bpf_map_lookup_elem(&thread_states, &id);
	if (ts && ts->ftx_waiting) {
		__u32 tgid = id >> 32;
		struct ftx_proc *p = bpf_map_lookup_elem(&futex_procs, &tgid);
		if (p && p->waiting > 0)
			__sync_fetch_and_add(&p->waiting, -1);
		ts->ftx_waiting = 0;
	}
	if (ctx->ret != 0 || !w.idle)
		return 0;
	struct ftx_key k = { .tgid = id >> 32, .uaddr = w.uaddr };
	struct ftx_wake *wk = bpf_map_lookup_elem(&futex_wakes, &k);
	if (!wk || wk->consumed || wk->ts < w.ts)
		return 0;
	/* An idle worker sleeps; lock hand-overs (a GIL) are brief. */
	if (bpf_ktime_get_ns() - w.ts < FUTEX_IDLE_NS)
		return 0;
	__u64 tid = wk->trace_id;
	__u64 seq = wk->seq;
	__u32 waker = wk->waker;
	wk->consumed = 1;
	if (ts) {
		if (ts->owned || ts->event_loop)
			return 0;
		ts->trace_id = tid;
		ts->weak = 1;
		ts->weak_src = w.uaddr;
		ts->weak_seq = seq;
		ts->weak_waker = waker;
	} else {
		struct thread_state n = {
			.trace_id = tid, .weak = 1, .weak_src = w.uaddr, .weak_seq = seq, .weak_waker = waker,
		};
		bpf_map_update_elem(&thread_states, &id, &n, BPF_ANY);
	}
	count(CNT_FUTEX_HANDOFF);
	return 0;
}

/* ---- TLS probes ------------------------------------------------------ */

/* A returned call no longer holds its socket's close back. After its
 * event, if any, is in the ring buffer: a close that then sees the count
 * at 0 comes after it there. */
static __always_inline void tls_unbusy(struct tls_call *c)
{
	if (!c->busy)
		return;
	__u64 sk = c->sk;
	struct sock_state *ss = bpf_map_lookup_elem(&sock_states, &sk);
	if (!ss || !ss->tls_busy)
		return;
	if (__sync_fetch_and_add(&ss->tls_busy, -1) == 1 && ss->closed)
		bpf_map_delete_elem(&sock_states, &sk);
}

/* Emits a TLS call's plaintext (n bytes at buf) as a data event of its
 * socket. pid_tgid is the caller's. */
static __always_inline int tls_emit(struct tls_call *c, __u64 buf, __u32 n, __u64 pid_tgid)
{
	__u32 tgid = pid_tgid >> 32;
	struct tls_key ok = { .a = tgid, .b = c->obj };
	struct tls_sock *known = bpf_map_lookup_elem(&tls_socks, &ok);
	__u64 sk = c->sk;
	int fd = c->fd;
	if (!sk && fd >= 0) {
		__u16 fam = 0;
		__u8 l4 = 0;
		sk = (__u64)fd_to_sock(fd, &fam, &l4);
	}
	if (!sk && known) {
		/* A call served from the library's buffer made no syscall. */
		sk = known->sk;
		fd = known->fd;
	}
	if (!sk) {
		count(CNT_TLS_NO_SOCKET);
		return 0;
	}
	if (c->dir == DIR_INGRESS) {
		/* A read without a syscall of its own, or a Go Read that continues
		 * the previous record, delivers more of the latest record read. */
		if ((!c->has_seq || c->last_seq) && known && known->sk == sk && known->has_rx) {
			c->tcp_seq = known->rx_seq;
			c->has_seq = 1;
		} else if (c->last_seq) {
			c->has_seq = 0;
		}
	}
	if (!known || known->sk != sk || (c->dir == DIR_INGRESS && c->has_seq)) {
		struct tls_sock ts = { .sk = sk, .fd = fd };
		if (known && known->sk == sk) {
			ts.rx_seq = known->rx_seq;
			ts.has_rx = known->has_rx;
		}
		if (c->dir == DIR_INGRESS && c->has_seq) {
			ts.rx_seq = c->tcp_seq;
			ts.has_rx = 1;
		}
		bpf_map_update_elem(&tls_socks, &ok, &ts, BPF_ANY);
	}
	struct sock *s_k = (struct sock *)sk;
	struct sock_state *ss = bpf_map_lookup_elem(&sock_states, &sk);
	__u16 family;
	if (ss && ss->closed) {
		/* Closed while this call was pending: its state was kept, the
		 * sock may be gone (the tuple read from it may be stale; user
		 * space has the close's). */
		family = ss->family;
	} else {
		family = BPF_CORE_READ(s_k, __sk_common.skc_family);
		if (!ss)
			ss = get_sock_state(sk);
	}
	if (family != AF_INET && family != AF_INET6) {
		count(CNT_TLS_NO_SOCKET);
		return 0;
	}
	if (ss && ss->tls_skip) {
		count(CNT_TLS_L7_SKIPPED);
		return 0;
	}
	__u32 syscall;
	if (c->kind == TLS_GO)
		syscall = c->dir == DIR_EGRESS ? SYS_GO_TLS_WRITE : SYS_GO_TLS_READ;
	else
		syscall = c->dir == DIR_EGRESS ? SYS_SSL_WRITE : SYS_SSL_READ;
	struct scratch *s = data_event(pid_tgid, fd, c->enter_ns, s_k, family, IPPROTO_TCP, c->dir, syscall, n,
				       c->has_seq ? c->tcp_seq : 0, ss);
	if (!s)
		return 0;
	s->h.flags = EVENT_FLAG_TLS;
	__u32 want = payload_want(n);
	__u32 captured = 0;
	if (want && bpf_probe_read_user(s->data, want, (void *)buf) == 0)
		captured = want;
	else if (want)
		count(CNT_PAYLOAD_READ_FAIL);
	s->h.captured = captured;
	send_data_event(s, captured, pid_tgid, sk, c->dir, ss);
	return 0;
}

/* Entry of SSL_read, SSL_write, SSL_read_ex, SSL_write_ex (the cookie says
 * which): int SSL_read(SSL *ssl, void *buf, int num);
 * int SSL_read_ex(SSL *ssl, void *buf, size_t num, size_t *readbytes). */
SEC("uprobe")
int ssl_enter(struct pt_regs *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	if (!tls_allowed(id >> 32))
		return 0;
	__u64 kind = bpf_get_attach_cookie(ctx);
	struct tls_call c = {
		.obj = ctx->di, /* SysV ABI: rdi, rsi, rdx, rcx */
		.buf = ctx->si,
		.enter_ns = bpf_ktime_get_ns(),
		.fd = -1,
		.kind = kind,
		.dir = (kind == TLS_SSL_WRITE || kind == TLS_SSL_WRITE_EX) ? DIR_EGRESS : DIR_INGRESS,
	};
	if (kind == TLS_SSL_READ_EX || kind == TLS_SSL_WRITE_EX)
		c.out = ctx->cx;
	struct tls_key k = { .a = id };
	if (bpf_map_update_elem(&tls_calls, &k, &c, BPF_ANY))
		count(CNT_TLS_CALL_FAIL);
	return 0;
}

SEC("uretprobe")
int ssl_return(struct pt_regs *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct tls_key k = { .a = id };
	struct tls_call *p = bpf_map_lookup_elem(&tls_calls, &k);
	if (!p)
		return 0;
	struct tls_call c = *p;
	bpf_map_delete_elem(&tls_calls, &k);
	long ret = ctx->ax;
	__u64 n = 0;
	if (c.out) {
		/* _ex: 1 on success, the count through the pointer. */
		if (ret != 1 || bpf_probe_read_user(&n, sizeof(n), (void *)c.out))
			n = 0;
	} else if ((int)ret > 0) {
		n = (__u32)(int)ret;
	}
	if (n && n <= 0x7fffffff)
		tls_emit(&c, c.buf, (__u32)n, id);
	tls_unbusy(&c);
	return 0;
}

/* Entry of crypto/tls.(*Conn).Read and Write (Go register ABI: RAX = c,
 * RBX = b.ptr, RCX = b.len). The cookie packs struct offsets (see
 * socktrace.goTLSCookie): c.conn (a net.Conn interface) [0,12), the
 * *net.netFD in the *net.TCPConn [12,20), its poll.FD [20,28),
 * poll.FD.Sysfd [28,36), c.rawInput [36,48), c.input [48,60); bit 63 set
 * for Write. A conn that is not a *net.TCPConn (a wrapper) yields a
 * descriptor that fd_to_sock rejects or none, and the syscall made during
 * the call names the socket instead. */
SEC("uprobe")
int go_tls_enter(struct pt_regs *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32;
	if (!tls_allowed(tgid))
		return 0;
	__u64 stack[2];
	__u64 g = go_g_checked(ctx->r14, ctx->sp, stack);
	if (!g) {
		count(CNT_GO_G_MISS);
		return 0;
	}
	__u64 cookie = bpf_get_attach_cookie(ctx);
	struct tls_call c = {
		.obj = ctx->ax,
		.buf = ctx->bx,
		.enter_ns = bpf_ktime_get_ns(),
		.stack_lo = stack[0],
		.stack_hi = stack[1],
		.fd = -1,
		.kind = TLS_GO,
		.dir = (cookie >> 63) ? DIR_EGRESS : DIR_INGRESS,
	};
	__u64 data = 0, netfd = 0;
	__s64 sysfd = -1;
	if (!bpf_probe_read_user(&data, sizeof(data), (void *)(c.obj + (cookie & 0xfff) + 8)) && data &&
	    !bpf_probe_read_user(&netfd, sizeof(netfd), (void *)(data + ((cookie >> 12) & 0xff))) && netfd &&
	    !bpf_probe_read_user(&sysfd, sizeof(sysfd),
				 (void *)(netfd + ((cookie >> 20) & 0xff) + ((cookie >> 28) & 0xff))) &&
	    sysfd >= 0 && sysfd < (1 << 24))
		c.fd = (__s32)sysfd;
	__u64 raw_off = (cookie >> 36) & 0xfff, in_off = (cookie >> 48) & 0xfff;
	if (c.dir == DIR_INGRESS && c.fd >= 0 && raw_off && in_off) {
		/* Where the plaintext this Read returns was on the wire. Plaintext
		 * left in c.input continues the previous Read's record. Else Read
		 * decrypts the next record, which starts at the first ciphertext
		 * byte not yet used: rawInput's unread bytes end at copied_seq.
		 * This covers records the handshake read ahead. */
		/* bytes.Reader.i and bytes.Buffer.off at 24, after the slice (the
		 * loader checks them): */
		__u64 in[4] = {}; /* bytes.Reader: s.ptr, len(s), cap(s), i */
		__u64 raw[4] = {}; /* bytes.Buffer: buf.ptr, len(buf), cap(buf), off */
		if (!bpf_probe_read_user(in, sizeof(in), (void *)(c.obj + in_off)) &&
		    !bpf_probe_read_user(raw, sizeof(raw), (void *)(c.obj + raw_off))) {
			if (in[1] > in[3]) {
				c.last_seq = 1;
			} else if (raw[1] >= raw[3] && raw[1] - raw[3] < (1 << 24)) {
				__u16 fam = 0;
				__u8 l4 = 0;
				struct sock *sk = fd_to_sock(c.fd, &fam, &l4);
				if (sk && l4 == IPPROTO_TCP) {
					struct tcp_sock *tp = (struct tcp_sock *)sk;
					c.tcp_seq = BPF_CORE_READ(tp, copied_seq) - (__u32)(raw[1] - raw[3]);
					c.has_seq = 1;
					c.entry_seq = 1;
				}
			}
		}
	}
	struct tls_key k = { .a = (__u64)tgid | GO_TLS_KEY, .b = g };
	if (bpf_map_update_elem(&tls_calls, &k, &c, BPF_ANY))
		count(CNT_TLS_CALL_FAIL);
	if (!bpf_map_lookup_elem(&go_tls_procs, &tgid)) {
		__u8 one = 1;
		bpf_map_update_elem(&go_tls_procs, &tgid, &one, BPF_ANY);
	}
	return 0;
}

/* At the RET instructions of Read and Write: RAX = n. */
SEC("uprobe")
int go_tls_return(struct pt_regs *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32;
	__u64 stack[2];
	__u64 g = go_g_checked(ctx->r14, ctx->sp, stack);
	if (!g)
		return 0;
	struct tls_key k = { .a = (__u64)tgid | GO_TLS_KEY, .b = g };
	struct tls_call *p = bpf_map_lookup_elem(&tls_calls, &k);
	if (!p)
		return 0;
	struct tls_call c = *p;
	bpf_map_delete_elem(&tls_calls, &k);
	long n = ctx->ax;
	if (n > 0 && n <= 0x7fffffff) {
		__u64 buf = c.buf;
		/* A buffer on the goroutine's stack moved with it if the stack
		 * grew during the call (it is copied, hi to hi). */
		if (stack[1] != c.stack_hi && buf >= c.stack_lo && buf < c.stack_hi)
			buf = buf - c.stack_hi + stack[1];
		tls_emit(&c, buf, (__u32)n, id);
	}
	tls_unbusy(&c);
	return 0;
}
