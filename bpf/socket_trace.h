/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Layouts shared between bpf/socket_trace.c and the Go loader
 * (agent/capture/socktrace). bpf2go generates Go types for the structs
 * named with -type; keep every field naturally aligned and padded so the
 * C and Go layouts are identical without packing tricks. */
#ifndef SIGHTLINE_SOCKET_TRACE_H
#define SIGHTLINE_SOCKET_TRACE_H

/* Upper bound of the load-time max_payload constant. The per-CPU scratch
 * buffer holds twice this many bytes so the verifier can prove
 * offset (< LIMIT) + length (<= LIMIT) stays in bounds while walking iovecs. */
#define MAX_PAYLOAD_LIMIT 16384
/* iovec entries walked for readv/writev/sendmsg/recvmsg. */
#define MAX_IOV 32

enum event_type {
	EVENT_DATA = 1,
	EVENT_CONN = 2,
	EVENT_CLOSE = 3,
	EVENT_EXEC = 4,
	EVENT_EXIT = 5,
	EVENT_FORK = 6, /* a new process (not thread): pid = child, fd = parent */
};

enum direction {
	DIR_EGRESS = 0,
	DIR_INGRESS = 1,
};

enum conn_role {
	ROLE_CLIENT = 1, /* connect */
	ROLE_SERVER = 2, /* accept, accept4 */
};

/* Drop/failure counters, one slot each in the per-CPU "counters" array. */
enum counter {
	CNT_RINGBUF_FULL = 0,     /* bpf_ringbuf_output failed: event lost */
	CNT_SCRATCH_MISS,         /* per-CPU scratch lookup failed */
	CNT_ACTIVE_UPDATE_FAIL,   /* could not stash syscall args at enter */
	CNT_SOCK_STATE_FAIL,      /* could not create per-socket state */
	CNT_THREAD_STATE_FAIL,    /* could not create per-thread state */
	CNT_PAYLOAD_READ_FAIL,    /* bpf_probe_read_user of payload/iovec failed */
	CNT_ARGS_READ_FAIL,       /* msghdr/mmsghdr/sockaddr read failed */
	CNT_IOV_TRUNCATED,        /* more than MAX_IOV iovecs: payload prefix cut short */
	CNT_L7_SKIPPED,           /* data events not sent: socket judged not parseable */
	CNT_EVENT_LOOP,           /* threads found serving interleaved requests: their ids are 0 */
	CNT_GO_G_MISS,            /* Go process, but the running goroutine could not be read */
	CNT_GO_SPAWN,             /* goroutines that inherited their creator's trace id */
	CNT_GO_HANDOFF,           /* channel receives that inherited the sender's trace id */
	CNT_GO_HANDOFF_AMBIGUOUS, /* channel values sent by two requests at once: not linked */
	CNT_FUTEX_HANDOFF,        /* threads that inherited a trace id through a futex wake */
	CNT_TLS_CALL_FAIL,        /* TLS call not recorded at entry (map full): its plaintext is lost */
	CNT_TLS_NO_SOCKET,        /* TLS plaintext whose socket could not be found: not sent */
	CNT_TLS_L7_SKIPPED,       /* TLS plaintext not sent: user space found no parser for it */
	CNT_FUTEX_QUEUED_WAIT,    /* request threads waiting for a job they queued silently: handoffs held back */
	CNT_MAX,
};

/* Syscall that produced an event (diagnostics; user space may ignore it). */
enum syscall_kind {
	SYS_READ = 1,
	SYS_WRITE,
	SYS_READV,
	SYS_WRITEV,
	SYS_SENDTO,
	SYS_RECVFROM,
	SYS_SENDMSG,
	SYS_RECVMSG,
	SYS_SENDMMSG,
	SYS_RECVMMSG,
	SYS_CONNECT,
	SYS_ACCEPT,
	SYS_ACCEPT4,
	SYS_CLOSE,
	SYS_SSL_READ,     /* plaintext from the OpenSSL API (SSL_read, SSL_read_ex) */
	SYS_SSL_WRITE,
	SYS_GO_TLS_READ,  /* plaintext from Go crypto/tls.(*Conn).Read */
	SYS_GO_TLS_WRITE,
};

/* Kinds of TLS call: the cookie of the entry uprobes on the OpenSSL API
 * (Go's probes carry struct offsets in theirs, see go_tls_enter). */
enum tls_kind {
	TLS_SSL_READ = 1,
	TLS_SSL_WRITE = 2,
	TLS_SSL_READ_EX = 3,
	TLS_SSL_WRITE_EX = 4,
	TLS_GO = 5,
};

/* event_header.flags */
#define EVENT_FLAG_TLS 1 /* payload is TLS plaintext from a library probe, not the socket's bytes */
/* On a close: a TLS call that made a syscall on the socket had not returned
 * yet; its plaintext event may still follow the close. */
#define EVENT_FLAG_TLS_PENDING 2

/* Header of every ring buffer record. Data events are followed by
 * `captured` payload bytes; other events are the header alone. */
struct event_header {
	__u32 type;      /* enum event_type */
	__u32 pid;       /* tgid */
	__u32 tid;
	__s32 fd;
	__u64 enter_ns;  /* bpf_ktime_get_ns at syscall enter (CLOCK_MONOTONIC) */
	__u64 exit_ns;   /* ... at syscall exit; == enter_ns for point events */
	__u64 sock;      /* struct sock pointer */
	__u64 conn_uid;  /* per-socket id unique per boot, assigned on first sight */
	__u64 trace_id;  /* thread-level syscall_trace_id */
	__u32 bytes;     /* bytes transferred (syscall return) */
	__u32 captured;  /* payload bytes following the header */
	__u32 tcp_seq;   /* seq of the first byte (write_seq / copied_seq at enter) */
	__u32 cap_seq;   /* per-socket capture sequence */
	__u16 family;    /* AF_INET / AF_INET6 */
	__u8 l4;         /* IPPROTO_TCP / IPPROTO_UDP */
	__u8 dir;        /* enum direction (data) or enum conn_role (conn) */
	__u16 lport;     /* host byte order */
	__u16 rport;     /* host byte order */
	__u8 laddr[16];  /* v4 in the first 4 bytes */
	__u8 raddr[16];
	char comm[16];
	__u32 syscall;   /* enum syscall_kind */
	__u8 l7_hint;    /* kernel's guess of the socket's L7 protocol (l7_protocol number), 0 = none */
	__u8 flags;      /* EVENT_FLAG_* */
	__u8 _pad[2];
	__u64 goid;      /* goroutine id (Go processes registered in go_procs), 0 = none */
};

/* Per Go process: where to find what the goroutine probes need, from the
 * binary's DWARF or the versioned table (agent/goinfo). */
struct go_proc {
	__u32 goid_off;     /* runtime.g.goid; 0: not tracked (probes off or failed), no ids */
	__u32 elemsize_off; /* runtime.hchan.elemsize */
	__u32 scase_size;   /* sizeof(runtime.scase) */
	__u32 scase_elem;   /* offset of runtime.scase.elem (c is at 0) */
};

/* Per-socket inference state (struct sock_state.l7_state). */
enum l7_state {
	L7_INFER = 0,  /* no verdict yet: first bytes are checked */
	L7_HINTED = 1, /* the kernel guessed a protocol: user space confirms */
	L7_SKIP = 2,   /* not parseable (TLS, SSH, or user space gave up): no data events */
};

/* Value of l7_hint that means "never parseable here". */
#define L7_HINT_SKIP 255

#endif
