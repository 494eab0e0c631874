// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* TCP lifecycle events from BTF-typed kernel tracepoints (tp_btf):
 * sock:inet_sock_set_state, tcp:tcp_retransmit_skb, tcp:tcp_send_reset,
 * tcp:tcp_receive_reset, and tcp:tcp_destroy_sock (bookkeeping only). One ring buffer of struct tcp_event.
 *
 * Attribution. Most of these fire in softirq context, where the current
 * task is unrelated, so the owner (pid/tid/comm) is recorded in an LRU map
 * keyed by struct sock * where it is known for sure:
 *  - CLOSE -> SYN_SENT runs inside connect(): the caller owns the socket;
 *  - CLOSE -> LISTEN runs inside listen(): the caller owns the listener,
 *    and it is also remembered per (netns, local port);
 *  - SYN_RECV -> ESTABLISHED (softirq) creates a server-side socket: it is
 *    attributed to the owner of the listener on its (netns, local port),
 *    which is the accepting process unless listen() and accept() happen in
 *    different processes (prefork servers: the parent is named).
 * Sockets seen first elsewhere (created before the tracer started) stay
 * unattributed (pid 0). Owners are forgotten at tcp:tcp_destroy_sock (or
 * by LRU eviction), not at CLOSE: an abortive close sends its RST after the
 * CLOSE transition. A reset sent for a packet that matches no socket
 * (closed port) has no owner either.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_tracing.h>

#include "tcp_events.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6

/* Wake the reader only once this many bytes wait (0: per event). */
volatile const __u64 wakeup_bytes = 0;

struct owner {
	__u32 pid;
	__u32 tid;
	char comm[16];
	__u8 src; /* enum owner_source */
	__u8 _pad[7];
};

struct listener_key {
	__u32 netns;
	__u16 port;
	__u16 _pad;
};

/* Keeps struct tcp_event in BTF for bpf2go's -type. */
const struct tcp_event *unused_tcp_event __attribute__((unused));

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20); /* overridden at load */
} tcp_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64); /* struct sock * */
	__type(value, struct owner);
} sock_owners SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct listener_key);
	__type(value, struct owner);
} listeners SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, TCNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} tcp_counters SEC(".maps");

static __always_inline void count(__u32 which)
{
	__u64 *v = bpf_map_lookup_elem(&tcp_counters, &which);
	if (v)
		*v += 1;
}

/* The sock arguments of tp_btf programs are BTF-typed pointers: plain
 * field loads (CO-RE relocated through vmlinux.h's preserve_access_index)
 * are direct, fault-safe memory loads, much cheaper than
 * bpf_probe_read_kernel per field. */
static __always_inline __u32 sk_netns(const struct sock *sk)
{
	return sk->__sk_common.skc_net.net->ns.inum;
}

/* Fills family, ports and addresses from the socket's common part, which
 * full, request and timewait sockets share. */
static __always_inline void tuple_from_sk(struct tcp_event *e, const struct sock *sk, bool full)
{
	const struct sock_common *c = &sk->__sk_common;

	e->family = c->skc_family;
	e->lport = c->skc_num;
	/* On the way to CLOSE the port is released (skc_num = 0) before the
	 * tracepoint runs; inet_sport still holds it. Full sockets only. */
	if (!e->lport && full)
		e->lport = bpf_ntohs(BPF_CORE_READ((const struct inet_sock *)sk, inet_sport));
	e->rport = bpf_ntohs(c->skc_dport);
	if (e->family == AF_INET6) {
		__builtin_memcpy(e->laddr, c->skc_v6_rcv_saddr.in6_u.u6_addr8, 16);
		__builtin_memcpy(e->raddr, c->skc_v6_daddr.in6_u.u6_addr8, 16);
	} else {
		*(__u32 *)e->laddr = c->skc_rcv_saddr;
		*(__u32 *)e->raddr = c->skc_daddr;
	}
	e->netns = sk_netns(sk);
}

/* Fills the tuple from a received packet, reversed (local = destination):
 * the reset answers it. */
static __always_inline void tuple_from_skb(struct tcp_event *e, const struct sk_buff *skb)
{
	unsigned char *head = BPF_CORE_READ(skb, head);
	__u16 nh = BPF_CORE_READ(skb, network_header);
	__u16 th = BPF_CORE_READ(skb, transport_header);
	__u8 ver = 0;
	__u16 ports[2] = {};

	if (!head || bpf_probe_read_kernel(&ver, 1, head + nh))
		return;
	ver >>= 4;
	if (ver == 4) {
		e->family = AF_INET;
		bpf_probe_read_kernel(e->raddr, 4, head + nh + 12);
		bpf_probe_read_kernel(e->laddr, 4, head + nh + 16);
	} else if (ver == 6) {
		e->family = AF_INET6;
		bpf_probe_read_kernel(e->raddr, 16, head + nh + 8);
		bpf_probe_read_kernel(e->laddr, 16, head + nh + 24);
	} else {
		return;
	}
	if (bpf_probe_read_kernel(ports, sizeof(ports), head + th) == 0) {
		e->rport = bpf_ntohs(ports[0]);
		e->lport = bpf_ntohs(ports[1]);
	}
}

static __always_inline void set_owner(struct tcp_event *e, const struct owner *o)
{
	e->pid = o->pid;
	e->tid = o->tid;
	e->owner_src = o->src;
	__builtin_memcpy(e->comm, o->comm, sizeof(e->comm));
}

static __always_inline void current_owner(struct owner *o, __u8 src)
{
	__u64 id = bpf_get_current_pid_tgid();
	o->pid = id >> 32;
	o->tid = (__u32)id;
	o->src = src;
	bpf_get_current_comm(o->comm, sizeof(o->comm));
}

static __always_inline void lookup_owner(struct tcp_event *e, __u64 sk)
{
	struct owner *o;

	if (!sk)
		return;
	o = bpf_map_lookup_elem(&sock_owners, &sk);
	if (o)
		set_owner(e, o);
}

static __always_inline struct tcp_event *reserve(__u32 type, const void *sk)
{
	struct tcp_event *e = bpf_ringbuf_reserve(&tcp_events, sizeof(*e), 0);
	if (!e) {
		count(TCNT_RINGBUF_FULL);
		return NULL;
	}
	__builtin_memset(e, 0, sizeof(*e));
	e->ts_ns = bpf_ktime_get_ns();
	e->type = type;
	e->sock = (__u64)sk;
	return e;
}

static __always_inline void submit(struct tcp_event *e)
{
	__u64 flags = 0;
	if (wakeup_bytes) {
		__u64 avail = bpf_ringbuf_query(&tcp_events, BPF_RB_AVAIL_DATA);
		flags = avail + sizeof(*e) >= wakeup_bytes ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP;
	}
	bpf_ringbuf_submit(e, flags);
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(on_set_state, const struct sock *sk, const int oldstate, const int newstate)
{
	__u64 key = (__u64)sk;
	struct owner o = {};
	struct tcp_event *e;
	__u32 type;

	if (sk->sk_protocol != IPPROTO_TCP)
		return 0;
	__u16 family = sk->__sk_common.skc_family;
	if (family != AF_INET && family != AF_INET6)
		return 0;

	if (oldstate == TCP_CLOSE && newstate == TCP_SYN_SENT) {
		type = TEV_CONNECT_START;
		current_owner(&o, OWNER_CONNECT);
		if (bpf_map_update_elem(&sock_owners, &key, &o, BPF_ANY))
			count(TCNT_OWNER_FAIL);
	} else if (oldstate == TCP_CLOSE && newstate == TCP_LISTEN) {
		struct listener_key lk = {
			.netns = sk_netns(sk),
			.port = sk->__sk_common.skc_num,
		};
		type = TEV_LISTEN;
		current_owner(&o, OWNER_LISTEN);
		if (bpf_map_update_elem(&sock_owners, &key, &o, BPF_ANY))
			count(TCNT_OWNER_FAIL);
		o.src = OWNER_LISTENER;
		if (bpf_map_update_elem(&listeners, &lk, &o, BPF_ANY))
			count(TCNT_LISTENER_FAIL);
	} else if (oldstate == TCP_SYN_SENT && newstate == TCP_ESTABLISHED) {
		type = TEV_CONNECT_OK;
	} else if (oldstate == TCP_SYN_SENT && newstate == TCP_CLOSE) {
		type = TEV_CONNECT_FAILED;
	} else if (oldstate == TCP_SYN_RECV && newstate == TCP_ESTABLISHED) {
		struct listener_key lk = {
			.netns = sk_netns(sk),
			.port = sk->__sk_common.skc_num,
		};
		struct owner *lo = bpf_map_lookup_elem(&listeners, &lk);
		type = TEV_ESTABLISHED;
		if (!lo)
			bpf_map_delete_elem(&sock_owners, &key); /* no stale owner of a reused pointer */
		else if (bpf_map_update_elem(&sock_owners, &key, lo, BPF_ANY))
			count(TCNT_OWNER_FAIL);
	} else if (newstate == TCP_CLOSE) {
		type = oldstate == TCP_LISTEN ? 0 : TEV_CLOSE;
		if (oldstate == TCP_LISTEN) {
			struct listener_key lk = {
				.netns = sk_netns(sk),
				.port = sk->__sk_common.skc_num,
			};
			struct owner *lo = bpf_map_lookup_elem(&listeners, &lk);
			struct owner *so = bpf_map_lookup_elem(&sock_owners, &key);
			/* Forget the port only if this listener registered it
			 * (SO_REUSEPORT: another may still listen there). */
			if (lo && so && lo->pid == so->pid)
				bpf_map_delete_elem(&listeners, &lk);
			bpf_map_delete_elem(&sock_owners, &key);
			return 0;
		}
	} else if (newstate == TCP_SYN_RECV || oldstate == TCP_CLOSE) {
		return 0; /* child socket creation: its ESTABLISHED follows */
	} else {
		type = TEV_STATE_CHANGE;
	}

	e = reserve(type, sk);
	if (!e)
		goto out;
	tuple_from_sk(e, sk, true);
	e->old_state = oldstate;
	e->new_state = newstate;
	lookup_owner(e, key);
	if (type == TEV_CONNECT_FAILED)
		e->err = sk->sk_err;
	submit(e);
out:
	/* The owner is kept past CLOSE (an abortive close sends its RST after
	 * the transition) and dropped when the socket is destroyed. */
	return 0;
}

SEC("tp_btf/tcp_destroy_sock")
int BPF_PROG(on_destroy_sock, struct sock *sk)
{
	__u64 key = (__u64)sk;
	bpf_map_delete_elem(&sock_owners, &key);
	return 0;
}

SEC("tp_btf/tcp_retransmit_skb")
int BPF_PROG(on_retransmit, const struct sock *sk, const struct sk_buff *skb, int err)
{
	struct tcp_event *e = reserve(TEV_RETRANSMIT, sk);
	if (!e)
		return 0;
	tuple_from_sk(e, sk, true);
	e->old_state = e->new_state = sk->__sk_common.skc_state;
	e->err = err;
	lookup_owner(e, (__u64)sk);
	submit(e);
	return 0;
}

SEC("tp_btf/tcp_send_reset")
int BPF_PROG(on_send_reset, const struct sock *sk, const struct sk_buff *skb, enum sk_rst_reason reason)
{
	struct tcp_event *e = reserve(TEV_RESET_SENT, sk);
	if (!e)
		return 0;
	if (sk) {
		__u8 st = sk->__sk_common.skc_state;
		tuple_from_sk(e, sk, st != TCP_TIME_WAIT && st != TCP_NEW_SYN_RECV);
		e->old_state = e->new_state = st;
		lookup_owner(e, (__u64)sk);
	} else if (skb) {
		tuple_from_skb(e, skb);
		struct net_device *dev = BPF_CORE_READ(skb, dev);
		if (dev)
			e->netns = BPF_CORE_READ(dev, nd_net.net, ns.inum);
	}
	e->reason = reason;
	submit(e);
	return 0;
}

SEC("tp_btf/tcp_receive_reset")
int BPF_PROG(on_receive_reset, struct sock *sk)
{
	struct tcp_event *e = reserve(TEV_RESET_RECEIVED, sk);
	if (!e)
		return 0;
	tuple_from_sk(e, sk, true);
	e->old_state = e->new_state = sk->__sk_common.skc_state;
	lookup_owner(e, (__u64)sk);
	submit(e);
	return 0;
}
