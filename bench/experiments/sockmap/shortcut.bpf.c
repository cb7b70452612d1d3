// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * Experiment, not part of sluice (see README.md here): loopback TCP pairs skip
 * the TCP stack. sockops puts both ends of every 127.0.0.1 <-> 127.0.0.1
 * connection into a sockhash keyed by its 4-tuple; sk_msg sends each write
 * straight into the peer's receive queue (BPF_F_INGRESS).
 *
 * A direction decides at its first write and keeps the decision: bytes that
 * went by TCP and are still unread would be read after bytes redirected later
 * (tcp_bpf_recvmsg drains the redirected queue first), so TCP -> shortcut is
 * never allowed. ROLE picks which ends may redirect: 1 the connecting end,
 * 2 the accepting end, 3 both.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#ifndef ROLE
#define ROLE 3
#endif
#define LOOPBACK 0x7f000001

enum { UNDECIDED, SHORT, TCP };

char LICENSE[] SEC("license") = "Dual MIT/GPL";

struct pair_key {
	__u32 local_ip, remote_ip;
	__u32 local_port, remote_port; /* host order */
};

struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 65536);
	__type(key, struct pair_key);
	__type(value, __u64);
} pairs SEC(".maps");

struct side {
	__u8 role; /* 1 connecting end, 2 accepting end */
	__u8 path;
};

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct side);
} sides SEC(".maps");

/* 0 sockets added, 1 directions short-cut, 2 directions left on TCP */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 3);
	__type(key, __u32);
	__type(value, __u64);
} counts SEC(".maps");

static __always_inline void count(__u32 i)
{
	__u64 *v = bpf_map_lookup_elem(&counts, &i);

	if (v)
		__sync_fetch_and_add(v, 1);
}

SEC("sockops")
int shortcut_ops(struct bpf_sock_ops *skops)
{
	struct pair_key k = {};
	struct bpf_sock *sk;
	struct side *s;

	if (skops->op != BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB &&
	    skops->op != BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB)
		return 1;
	if (skops->family != 2 || skops->local_ip4 != bpf_htonl(LOOPBACK) ||
	    skops->remote_ip4 != bpf_htonl(LOOPBACK))
		return 1;
	sk = skops->sk;
	if (!sk)
		return 1;
	/* Storage first: a socket in the map without it would decide nothing. */
	s = bpf_sk_storage_get(&sides, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!s)
		return 1;
	s->role = skops->op == BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB ? 1 : 2;
	s->path = UNDECIDED;
	k.local_ip = skops->local_ip4;
	k.remote_ip = skops->remote_ip4;
	k.local_port = skops->local_port;
	k.remote_port = bpf_ntohl(skops->remote_port);
	if (!bpf_sock_hash_update(skops, &pairs, &k, BPF_NOEXIST))
		count(0);
	return 1;
}

SEC("sk_msg")
int shortcut_msg(struct sk_msg_md *msg)
{
	struct pair_key peer = {};
	struct bpf_sock *sk = msg->sk;
	struct side *s;

	if (!sk)
		return SK_PASS;
	s = bpf_sk_storage_get(&sides, sk, 0, 0);
	if (!s || s->path == TCP)
		return SK_PASS;
	if (s->path == UNDECIDED && !(s->role & ROLE)) {
		s->path = TCP;
		count(2);
		return SK_PASS;
	}
	peer.local_ip = msg->remote_ip4;
	peer.remote_ip = msg->local_ip4;
	peer.local_port = bpf_ntohl(msg->remote_port);
	peer.remote_port = msg->local_port;
	/* SK_PASS without a redirect target set sends by TCP. */
	if (bpf_msg_redirect_hash(msg, &pairs, &peer, BPF_F_INGRESS) == SK_PASS) {
		if (s->path == UNDECIDED)
			count(1);
		s->path = SHORT;
	} else if (s->path == UNDECIDED) {
		s->path = TCP;
		count(2);
	}
	return SK_PASS;
}
