/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Layouts shared between bpf/tcp_events.c and the Go loader
 * (agent/capture/tcpevents). Every field is naturally aligned so C and Go
 * agree without packing. */
#ifndef SIGHTLINE_TCP_EVENTS_H
#define SIGHTLINE_TCP_EVENTS_H

enum tcp_event_type {
	TEV_CONNECT_START = 1,  /* CLOSE -> SYN_SENT, inside connect() */
	TEV_CONNECT_OK = 2,     /* SYN_SENT -> ESTABLISHED */
	TEV_CONNECT_FAILED = 3, /* SYN_SENT -> CLOSE; err = sk_err (ECONNREFUSED: RST, ETIMEDOUT: timeout) */
	TEV_ESTABLISHED = 4,    /* SYN_RECV -> ESTABLISHED (server side, child socket) */
	TEV_CLOSE = 5,          /* any other state -> CLOSE */
	TEV_RETRANSMIT = 6,     /* tcp_retransmit_skb */
	TEV_RESET_SENT = 7,     /* tcp_send_reset */
	TEV_RESET_RECEIVED = 8, /* tcp_receive_reset */
	TEV_STATE_CHANGE = 9,   /* other transitions (FIN_WAIT1, CLOSE_WAIT, ...) */
	TEV_LISTEN = 10,        /* CLOSE -> LISTEN, inside listen() */
};

/* Where pid/comm of an event come from. */
enum owner_source {
	OWNER_NONE = 0,     /* unknown: pid 0 */
	OWNER_CONNECT = 1,  /* the task that called connect() */
	OWNER_LISTENER = 2, /* the task that called listen() on the accepting socket */
	OWNER_LISTEN = 3,   /* the socket is itself a listener */
};

enum tcp_counter {
	TCNT_RINGBUF_FULL = 0, /* event lost: ring buffer full */
	TCNT_OWNER_FAIL,       /* owner map update failed: later events unattributed */
	TCNT_LISTENER_FAIL,    /* listener map update failed */
	TCNT_MAX,
};

struct tcp_event {
	__u64 ts_ns; /* bpf_ktime_get_ns (CLOCK_MONOTONIC) */
	__u64 sock;  /* struct sock pointer (0 for resets sent without a socket) */
	__u32 type;  /* enum tcp_event_type */
	__u32 pid;   /* owner tgid, 0 = unknown */
	__u32 tid;
	__s32 err;    /* connect_failed: sk_err; retransmit: err of the tracepoint */
	__u32 reason; /* reset_sent: enum sk_rst_reason */
	__u32 netns;  /* network namespace inode */
	__u16 family; /* AF_INET / AF_INET6 */
	__u16 lport;  /* host order */
	__u16 rport;  /* host order */
	__u8 old_state;
	__u8 new_state;
	__u8 owner_src; /* enum owner_source */
	__u8 _pad[7];
	__u8 laddr[16]; /* v4 in the first 4 bytes */
	__u8 raddr[16];
	char comm[16];
};

#endif
