// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * The kernel half of sluice, attached to a sandbox's cgroup: every TCP
 * connect goes to the broker (the original destination recorded for it),
 * DNS goes to the broker's resolver, every other datagram and every socket
 * that is neither TCP nor UDP is refused. A lookup miss in sluice_sandboxes
 * means these programs run in a cgroup sluice no longer manages: refuse.
 *
 * Workers return 0 or -errno; only the SEC() functions turn that into a verdict.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "helpers.h"

#define EPERM 1

char LICENSE[] SEC("license") = "Dual MIT/GPL";

/* Reads the destination of a sock_addr context; IPv4-mapped IPv6 becomes IPv4. */
static __always_inline __u8 ctx_dst(const struct bpf_sock_addr *ctx, int v6, __u32 a[4], int *mapped)
{
	*mapped = 0;
	if (!v6) {
		a[0] = ctx->user_ip4;
		return SLUICE_AF_INET;
	}
	a[0] = ctx->user_ip6[0];
	a[1] = ctx->user_ip6[1];
	a[2] = ctx->user_ip6[2];
	a[3] = ctx->user_ip6[3];
	if (ip6_is_v4mapped(a)) {
		a[0] = a[3];
		*mapped = 1;
		return SLUICE_AF_INET;
	}
	return SLUICE_AF_INET6;
}

/* Points the context at the broker (same family as the socket) on port. */
static __always_inline void ctx_to_broker(struct bpf_sock_addr *ctx, const struct sluice_sandbox *sb,
					  int v6, int mapped, __u16 port)
{
	__u32 w[4];

	if (!v6) {
		ctx->user_ip4 = sb->broker_ip4;
	} else if (mapped) {
		ctx->user_ip6[0] = 0;
		ctx->user_ip6[1] = 0;
		ctx->user_ip6[2] = bpf_htonl(0xffff);
		ctx->user_ip6[3] = sb->broker_ip4;
	} else {
		__builtin_memcpy(w, sb->broker_ip6, 16);
		ctx->user_ip6[0] = w[0];
		ctx->user_ip6[1] = w[1];
		ctx->user_ip6[2] = w[2];
		ctx->user_ip6[3] = w[3];
	}
	ctx_set_port(ctx, port);
}

static __always_inline int is_local(__u8 family, const __u32 a[4])
{
	return family == SLUICE_AF_INET ? ip4_is_local(a[0]) : ip6_is_local(a);
}

/*
 * The socket a TCP SYN with tuple t would reach. A TIME_WAIT entry for the same
 * 4-tuple hands the SYN to the listener (tcp_tw_reuse is on for loopback by
 * default), but bpf_sk_lookup_tcp returns no socket for it: then the listener
 * is looked up without the source, which the established table cannot match.
 */
static __always_inline struct bpf_sock *tcp_receiver(void *ctx, struct bpf_sock_tuple *t, __u32 len)
{
	struct bpf_sock *sk = bpf_skc_lookup_tcp(ctx, t, len, BPF_F_CURRENT_NETNS, 0);

	if (!sk)
		return NULL;
	if (sk->state != BPF_TCP_TIME_WAIT) {
		bpf_sk_release(sk);
		return bpf_sk_lookup_tcp(ctx, t, len, BPF_F_CURRENT_NETNS, 0);
	}
	bpf_sk_release(sk);
	if (len == sizeof(t->ipv4)) {
		t->ipv4.saddr = 0;
		t->ipv4.sport = 0;
	} else {
		__builtin_memset(t->ipv6.saddr, 0, 16);
		t->ipv6.sport = 0;
	}
	return bpf_sk_lookup_tcp(ctx, t, len, BPF_F_CURRENT_NETNS, 0);
}

/* 1 when the socket a TCP SYN or UDP datagram with tuple t reaches carries
 * this sandbox's owner tag (left by post_bind). ctx: any program context
 * the lookup helpers take. */
static __always_inline int tuple_ours(void *ctx, __u8 proto, struct bpf_sock_tuple *t, __u32 len,
				      __u64 cgid)
{
	struct bpf_sock *sk;
	__u64 *owner;
	int ours;

	if (proto == SL_IPPROTO_TCP)
		sk = tcp_receiver(ctx, t, len);
	else
		sk = bpf_sk_lookup_udp(ctx, t, len, BPF_F_CURRENT_NETNS, 0);
	if (!sk)
		return 0;
	owner = bpf_sk_storage_get(&sluice_sk_owner, sk, 0, 0);
	ours = owner && *owner == cgid;
	bpf_sk_release(sk);
	return ours;
}

/*
 * Whether the socket that would receive a loopback connect or datagram to
 * a/port is one this sandbox bound. A record of the bind could outlive the
 * port (connect(AF_UNSPEC) frees an automatically chosen one while the socket
 * stays open): the receiver itself is asked, through the owner its post_bind
 * left on it.
 */
static __always_inline int receiver_ours(struct bpf_sock_addr *ctx, __u8 family, __u8 proto,
					 const __u32 a[4], __u16 port, __u64 cgid)
{
	struct bpf_sock *me = ctx->sk;
	struct bpf_sock_tuple t = {};
	__u32 len;

	/* The real source where the socket has one (bound): a connected UDP
	 * peer is found only by it, and a SO_REUSEPORT group picks by it. */
	if (family == SLUICE_AF_INET) {
		t.ipv4.daddr = a[0];
		t.ipv4.dport = bpf_htons(port);
		if (me) {
			/* both loaded, then chosen: the verifier refuses a computed offset */
			__u32 s4 = me->src_ip4, s6 = me->src_ip6[3];

			barrier_var(s4);
			barrier_var(s6);

			t.ipv4.saddr = me->family == SL_AF_INET ? s4 : s6;
			t.ipv4.sport = bpf_htons((__u16)me->src_port);
		}
		len = sizeof(t.ipv4);
	} else {
		__builtin_memcpy(t.ipv6.daddr, a, 16);
		t.ipv6.dport = bpf_htons(port);
		if (me) {
			t.ipv6.saddr[0] = me->src_ip6[0];
			t.ipv6.saddr[1] = me->src_ip6[1];
			t.ipv6.saddr[2] = me->src_ip6[2];
			t.ipv6.saddr[3] = me->src_ip6[3];
			t.ipv6.sport = bpf_htons((__u16)me->src_port);
		}
		len = sizeof(t.ipv6);
	}
	return tuple_ours(ctx, proto, &t, len, cgid);
}

/*
 * connect() or sendto() to the unspecified address reaches this host: the
 * kernel picks the address only after these hooks (the socket's bound source,
 * else 127.0.0.1; for IPv6 ::1, or ::ffff:127.0.0.1 from a v4-mapped source).
 * Writing that address here makes what is checked what is used: checking
 * 0.0.0.0 or :: itself would pass a sandbox's wildcard record while the kernel
 * connects elsewhere.
 */
static __always_inline int unspec_resolve(const struct bpf_sock_addr *ctx, __u8 *family, __u32 a[4],
					  int *mapped)
{
	struct bpf_sock *sk = ctx->sk;
	__u32 s[4] = {};

	if (*family == SLUICE_AF_INET ? a[0] != 0 : (a[0] | a[1] | a[2] | a[3]) != 0)
		return 0;
	if (sk) {
		s[0] = sk->src_ip6[0];
		s[1] = sk->src_ip6[1];
		s[2] = sk->src_ip6[2];
		s[3] = sk->src_ip6[3];
	}
	if (*family == SLUICE_AF_INET) {
		/* an AF_INET socket's own source, or loopback */
		a[0] = sk && !*mapped ? sk->src_ip4 : 0;
		if (!a[0])
			a[0] = bpf_htonl(0x7f000001);
	} else if (ip6_is_v4mapped(s)) {
		*family = SLUICE_AF_INET;
		*mapped = 1;
		a[0] = bpf_htonl(0x7f000001);
	} else {
		a[3] = bpf_htonl(1);
	}
	return 1;
}

/* Writes a (as ctx_dst read it) back as the destination. */
static __always_inline void ctx_set_dst(struct bpf_sock_addr *ctx, int v6, int mapped, const __u32 a[4])
{
	if (!v6) {
		ctx->user_ip4 = a[0];
	} else if (mapped) {
		ctx->user_ip6[0] = 0;
		ctx->user_ip6[1] = 0;
		ctx->user_ip6[2] = bpf_htonl(0xffff);
		ctx->user_ip6[3] = a[0];
	} else {
		ctx->user_ip6[0] = a[0];
		ctx->user_ip6[1] = a[1];
		ctx->user_ip6[2] = a[2];
		ctx->user_ip6[3] = a[3];
	}
}

/*
 * connect() and sendmsg() share this: loopback to a port the sandbox bound
 * passes; TCP goes to the broker; UDP only to port 53, which goes to the
 * broker's resolver; anything else is refused. The original destination is
 * recorded by socket cookie first: no record, no connection.
 */
static __always_inline int redirect(struct bpf_sock_addr *ctx, int v6)
{
	struct sluice_orig_dst o = {}, *so;
	struct sluice_sandbox *sb;
	__u64 cgid = 0, cookie;
	__u32 a[4] = {}, deny;
	__u16 port = ctx_port(ctx), to;
	__u8 family, proto;
	int mapped, unspec;

	sb = sandbox_find(&cgid);
	if (ctx->type == SL_SOCK_STREAM && ctx->protocol == SL_IPPROTO_TCP)
		proto = SL_IPPROTO_TCP;
	else if (ctx->type == SL_SOCK_DGRAM && ctx->protocol == SL_IPPROTO_UDP)
		proto = SL_IPPROTO_UDP;
	else
		proto = 0;
	deny = proto == SL_IPPROTO_UDP ? SLUICE_STAT_DENIED_UDP : SLUICE_STAT_DENIED_CONNECT;
	if (!proto || !sb || !sb->broker_port || !sb->dns_port)
		goto refuse;
	family = ctx_dst(ctx, v6, a, &mapped);
	unspec = unspec_resolve(ctx, &family, a, &mapped);

	if ((sb->flags & SLUICE_SB_ALLOW_LOOPBACK_BOUND) && is_local(family, a) &&
	    receiver_ours(ctx, family, proto, a, port, cgid)) {
		/* An earlier connect of this socket (then connect(AF_UNSPEC)) may
		 * have left a record: sockops would take it for this connection. */
		cookie = bpf_get_socket_cookie(ctx);
		bpf_map_delete_elem(&sluice_cookie, &cookie);
		if (unspec)
			ctx_set_dst(ctx, v6, mapped, a);
		stat_inc(cgid, SLUICE_STAT_LOOPBACK_PASSED);
		return 0;
	}
	if (proto == SL_IPPROTO_UDP) {
		if (port != SL_DNS_PORT)
			goto refuse;
		to = sb->dns_port;
	} else {
		to = sb->broker_port;
	}

	orig_fill(&o, cgid, family, proto, a, port);
	cookie = bpf_get_socket_cookie(ctx);
	if (bpf_map_update_elem(&sluice_cookie, &cookie, &o, BPF_ANY))
		goto refuse;
	/* Only for SO_ORIGINAL_DST: a failure here costs that emulation, not the connection. */
	if (proto == SL_IPPROTO_TCP && ctx->sk) {
		so = bpf_sk_storage_get(&sluice_sk_orig, ctx->sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
		if (so)
			*so = o;
	}
	ctx_to_broker(ctx, sb, v6, mapped, to);
	stat_inc(cgid, proto == SL_IPPROTO_TCP ? SLUICE_STAT_TCP_REDIRECTED : SLUICE_STAT_UDP_DNS_REDIRECTED);
	return 0;
refuse:
	stat_inc(cgid, deny);
	return -EPERM;
}

static __always_inline int verdict(int err)
{
	return err ? SL_REFUSE : SL_PASS;
}

SEC("cgroup/connect4")
int sluice_connect4(struct bpf_sock_addr *ctx)
{
	return verdict(redirect(ctx, 0));
}

SEC("cgroup/connect6")
int sluice_connect6(struct bpf_sock_addr *ctx)
{
	return verdict(redirect(ctx, 1));
}

SEC("cgroup/sendmsg4")
int sluice_sendmsg4(struct bpf_sock_addr *ctx)
{
	return verdict(redirect(ctx, 0));
}

SEC("cgroup/sendmsg6")
int sluice_sendmsg6(struct bpf_sock_addr *ctx)
{
	return verdict(redirect(ctx, 1));
}

/* Writes the recorded destination back into a context (getpeername, recvmsg). */
static __always_inline void ctx_restore(struct bpf_sock_addr *ctx, const struct sluice_orig_dst *o, int v6)
{
	__u32 w[4];

	if (!v6) {
		if (o->family != SLUICE_AF_INET)
			return;
		__builtin_memcpy(w, o->addr, 4);
		ctx->user_ip4 = w[0];
	} else if (o->family == SLUICE_AF_INET) {
		__builtin_memcpy(w, o->addr, 4);
		ctx->user_ip6[0] = 0;
		ctx->user_ip6[1] = 0;
		ctx->user_ip6[2] = bpf_htonl(0xffff);
		ctx->user_ip6[3] = w[0];
	} else {
		__builtin_memcpy(w, o->addr, 16);
		ctx->user_ip6[0] = w[0];
		ctx->user_ip6[1] = w[1];
		ctx->user_ip6[2] = w[2];
		ctx->user_ip6[3] = w[3];
	}
	ctx_set_port(ctx, o->port);
}

/* getpeername: the program sees the address it asked for, not the broker's. */
static __always_inline int peername(struct bpf_sock_addr *ctx, int v6)
{
	__u64 cookie = bpf_get_socket_cookie(ctx);
	struct sluice_orig_dst *o = bpf_map_lookup_elem(&sluice_cookie, &cookie);

	if (o)
		ctx_restore(ctx, o, v6);
	return SL_PASS; /* these hooks cannot refuse */
}

SEC("cgroup/getpeername4")
int sluice_getpeername4(struct bpf_sock_addr *ctx)
{
	return peername(ctx, 0);
}

SEC("cgroup/getpeername6")
int sluice_getpeername6(struct bpf_sock_addr *ctx)
{
	return peername(ctx, 1);
}

/* recvmsg: a DNS reply from the broker's resolver gets the source the query
 * was sent to (glibc and others drop replies from an unexpected address). */
static __always_inline int recvmsg(struct bpf_sock_addr *ctx, int v6)
{
	struct sluice_orig_dst *o;
	struct sluice_sandbox *sb;
	__u64 cgid = 0, cookie;
	__u32 a[4] = {}, b6[4];
	int mapped;
	__u8 family;

	sb = sandbox_find(&cgid);
	if (!sb || ctx_port(ctx) != sb->dns_port)
		return SL_PASS;
	family = ctx_dst(ctx, v6, a, &mapped);
	if (family == SLUICE_AF_INET) {
		if (a[0] != sb->broker_ip4)
			return SL_PASS;
	} else {
		__builtin_memcpy(b6, sb->broker_ip6, 16);
		if (a[0] != b6[0] || a[1] != b6[1] || a[2] != b6[2] || a[3] != b6[3])
			return SL_PASS;
	}
	cookie = bpf_get_socket_cookie(ctx);
	o = bpf_map_lookup_elem(&sluice_cookie, &cookie);
	if (o && o->proto == SL_IPPROTO_UDP)
		ctx_restore(ctx, o, v6);
	return SL_PASS;
}

SEC("cgroup/recvmsg4")
int sluice_recvmsg4(struct bpf_sock_addr *ctx)
{
	return recvmsg(ctx, 0);
}

SEC("cgroup/recvmsg6")
int sluice_recvmsg6(struct bpf_sock_addr *ctx)
{
	return recvmsg(ctx, 1);
}

/*
 * At TCP_CONNECT_CB the local port is assigned and the destination is the
 * broker: key the recorded destination by the 4-tuple the broker will see
 * after accept(). A v4-mapped connection reaches the broker's IPv4 listener,
 * so it is keyed as IPv4.
 */
SEC("sockops")
int sluice_sockops(struct bpf_sock_ops *skops)
{
	struct sluice_orig_key k = {};
	struct sluice_orig_dst *o;
	__u64 cookie;
	__u32 l[4], r[4];

	if (skops->op != BPF_SOCK_OPS_TCP_CONNECT_CB)
		return 1;
	cookie = bpf_get_socket_cookie(skops);
	o = bpf_map_lookup_elem(&sluice_cookie, &cookie);
	if (!o)
		return 1; /* not redirected (loopback to a port the sandbox bound) */

	k.src_port = (__u16)skops->local_port;
	k.dst_port = (__u16)bpf_ntohl(skops->remote_port); /* be16 in the upper half */
	if (skops->family == SL_AF_INET) {
		k.family = SLUICE_AF_INET;
		l[0] = skops->local_ip4;
		r[0] = skops->remote_ip4;
		__builtin_memcpy(k.src_addr, l, 4);
		__builtin_memcpy(k.dst_addr, r, 4);
	} else {
		l[0] = skops->local_ip6[0];
		l[1] = skops->local_ip6[1];
		l[2] = skops->local_ip6[2];
		l[3] = skops->local_ip6[3];
		r[0] = skops->remote_ip6[0];
		r[1] = skops->remote_ip6[1];
		r[2] = skops->remote_ip6[2];
		r[3] = skops->remote_ip6[3];
		if (ip6_is_v4mapped(r)) {
			k.family = SLUICE_AF_INET;
			__builtin_memcpy(k.src_addr, &l[3], 4);
			__builtin_memcpy(k.dst_addr, &r[3], 4);
		} else {
			k.family = SLUICE_AF_INET6;
			__builtin_memcpy(k.src_addr, l, 16);
			__builtin_memcpy(k.dst_addr, r, 16);
		}
	}
	/* Failing here leaves the broker without an entry: it refuses the
	 * connection, so the failure stays closed. */
	if (bpf_map_update_elem(&sluice_orig, &k, o, BPF_ANY))
		stat_inc(o->cgroup_id, SLUICE_STAT_DENIED_CONNECT);
	return 1;
}

/* Only TCP and UDP over IPv4/IPv6: no raw, ICMP, SCTP, MPTCP, UDP-Lite.
 * (Other families never reach this hook; the CLI's seccomp filter covers them.) */
SEC("cgroup/sock_create")
int sluice_sock_create(struct bpf_sock *sk)
{
	__u64 cgid = 0;

	if (!sandbox_find(&cgid))
		goto refuse;
	if (sk->type == SL_SOCK_STREAM && sk->protocol == SL_IPPROTO_TCP)
		return SL_PASS;
	if (sk->type == SL_SOCK_DGRAM && sk->protocol == SL_IPPROTO_UDP)
		return SL_PASS;
refuse:
	stat_inc(cgid, SLUICE_STAT_DENIED_SOCKET);
	return SL_REFUSE;
}

/* Tags the socket with the sandbox that bound it: loopback passes to the
 * sandbox's own sockets only (receiver_ours, sluice_egress). A failed tag
 * only means loopback to it goes to the broker. */
/*
 * A SO_REUSEPORT bind next to a listener (or UDP socket) this sandbox does not
 * own would join that socket's group (the kernel asks only for the same uid: a
 * root sandbox and a root host service); a UDP member would get a share of the
 * host service's datagrams, and a UDP SO_REUSEADDR bind (any uid) all of them.
 * The checks at connect and egress repeat
 * the kernel's choice of member for a SYN, except for one that meets a
 * TIME_WAIT entry: the listener behind it can only be looked up without the
 * source, which hashes to another member. So no mixed group may exist; a bind
 * that would make one is refused, with EADDRINUSE as the kernel refuses it
 * itself without SO_REUSEPORT (programs probing for a free port expect it).
 */
static __always_inline int bind_check(struct bpf_sock_addr *ctx, int v6)
{
	struct bpf_sock_tuple t = {};
	struct bpf_sock *sk;
	__u64 cgid = 0, *owner;
	int on = 0, ours;
	__u32 len;

	if (!ctx->user_port || (ctx->type != SL_SOCK_STREAM && ctx->type != SL_SOCK_DGRAM))
		return SL_PASS; /* a fresh port */
	/* An option that cannot be read counts as set: the lookup decides.
	 * UDP shares a port between two SO_REUSEADDR sockets with no uid check
	 * at all, and the last bound gets the unicast datagrams: for UDP that
	 * option counts too. */
	if (!bpf_getsockopt(ctx, SL_SOL_SOCKET, SL_SO_REUSEPORT, &on, sizeof(on)) && !on &&
	    (ctx->type == SL_SOCK_STREAM ||
	     (!bpf_getsockopt(ctx, SL_SOL_SOCKET, SL_SO_REUSEADDR, &on, sizeof(on)) && !on)))
		return SL_PASS;
	if (!sandbox_find(&cgid))
		return SL_REFUSE;
	/* A v4-mapped address on an AF_INET6 socket binds the IPv4 port: an IPv6
	 * lookup would never see the IPv4 socket it shares the port with. */
	if (v6 && !ctx->user_ip6[0] && !ctx->user_ip6[1] && ctx->user_ip6[2] == bpf_htonl(0xffff)) {
		t.ipv4.daddr = ctx->user_ip6[3];
		t.ipv4.dport = (__u16)ctx->user_port;
		len = sizeof(t.ipv4);
	} else if (!v6) {
		t.ipv4.daddr = ctx->user_ip4;
		t.ipv4.dport = (__u16)ctx->user_port;
		len = sizeof(t.ipv4);
	} else {
		t.ipv6.daddr[0] = ctx->user_ip6[0];
		t.ipv6.daddr[1] = ctx->user_ip6[1];
		t.ipv6.daddr[2] = ctx->user_ip6[2];
		t.ipv6.daddr[3] = ctx->user_ip6[3];
		t.ipv6.dport = (__u16)ctx->user_port;
		len = sizeof(t.ipv6);
	}
	/* UDP too: a member in a host service's group gets a share of its datagrams. */
	if (ctx->type == SL_SOCK_STREAM)
		sk = bpf_sk_lookup_tcp(ctx, &t, len, BPF_F_CURRENT_NETNS, 0);
	else
		sk = bpf_sk_lookup_udp(ctx, &t, len, BPF_F_CURRENT_NETNS, 0);
	if (!sk)
		return SL_PASS;
	owner = bpf_sk_storage_get(&sluice_sk_owner, sk, 0, 0);
	ours = owner && *owner == cgid;
	bpf_sk_release(sk);
	if (ours)
		return SL_PASS;
	/* The port is someone else's: said as the kernel says it without
	 * SO_REUSEPORT, so a program probing for a free port tries the next
	 * one instead of giving up on EPERM. */
	bpf_set_retval(-SL_EADDRINUSE);
	stat_inc(cgid, SLUICE_STAT_DENIED_SOCKET);
	return SL_REFUSE;
}

SEC("cgroup/bind4")
int sluice_bind4(struct bpf_sock_addr *ctx)
{
	return bind_check(ctx, 0);
}

SEC("cgroup/bind6")
int sluice_bind6(struct bpf_sock_addr *ctx)
{
	return bind_check(ctx, 1);
}

static __always_inline int post_bind(struct bpf_sock *sk)
{
	__u64 cgid = 0, *owner;

	if (!sandbox_find(&cgid))
		return SL_REFUSE;
	owner = bpf_sk_storage_get(&sluice_sk_owner, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (owner)
		*owner = cgid;
	return SL_PASS;
}

SEC("cgroup/post_bind4")
int sluice_post_bind4(struct bpf_sock *sk)
{
	return post_bind(sk);
}

SEC("cgroup/post_bind6")
int sluice_post_bind6(struct bpf_sock *sk)
{
	return post_bind(sk);
}

/*
 * Nothing reaches the sandbox's sockets from off the host: all it may talk to
 * is on loopback (the broker, its resolver, its own servers). Without this a
 * socket bound to 0.0.0.0 or :: (or autobound by listen()) accepts connections
 * and datagrams from the network, a two-way channel no connect hook sees.
 */
SEC("cgroup_skb/ingress")
int sluice_ingress(struct __sk_buff *skb)
{
	__u32 w[4];

	if (skb->protocol == bpf_htons(SL_ETH_P_IP)) {
		if (bpf_skb_load_bytes(skb, 12, w, 4)) /* iphdr.saddr */
			return 0;
		return (bpf_ntohl(w[0]) >> 24) == 127;
	}
	if (skb->protocol == bpf_htons(SL_ETH_P_IPV6)) {
		if (bpf_skb_load_bytes(skb, 8, w, 16)) /* ipv6hdr.saddr */
			return 0;
		if (ip6_is_v4mapped(w))
			return (bpf_ntohl(w[3]) >> 24) == 127;
		return w[0] == 0 && w[1] == 0 && w[2] == 0 && w[3] == bpf_htonl(1);
	}
	return 0;
}

/*
 * What leaves the sandbox toward loopback, checked against the socket that
 * will receive it, with the packet's real 4-tuple. The connect/sendmsg hooks
 * already decided, but without all of it:
 * - a connected UDP socket is checked once, at connect(), and its send()s run
 *   no hook: if the sandbox's receiving socket lets its port go and a host
 *   service takes it, those sends would reach the service;
 * - at connect() a TCP socket has no source port yet, and a SO_REUSEPORT group
 *   shared with a host service (same uid) picks its member by the real 4-tuple:
 *   so each SYN is checked here.
 * The receiver must be the sandbox's own (owner tag) or the broker's listener
 * or resolver. Loopback with anything but TCP or UDP (IPv6 extension headers)
 * is dropped.
 *
 * Everything a sandbox may send goes to the broker or to its own sockets, so
 * over the loopback device to a loopback address, with a plain IPv4 header:
 * anything else is dropped. The hooks rewrote the address a socket names,
 * but a route can still differ from it: a segment routing header
 * (IPV6_RTHDR, no privilege needed) sends the packet to its first segment,
 * IP_UNICAST_IF or IP_PKTINFO send 127.0.0.1 out of another device.
 */
SEC("cgroup_skb/egress")
int sluice_egress(struct __sk_buff *skb)
{
	struct bpf_sock_tuple t = {};
	struct sluice_sandbox *sb = NULL;
	__u64 cgid = 0;
	__u32 len, l4, w[4];
	__u16 ports[2], to;
	__u8 b[2], proto, flags;
	int lvl;

	if (skb->ifindex != SL_LOOPBACK_IFINDEX)
		return 0;
	if (skb->protocol == bpf_htons(SL_ETH_P_IP)) {
		if (bpf_skb_load_bytes(skb, 0, b, 1) || bpf_skb_load_bytes(skb, 9, b + 1, 1) ||
		    bpf_skb_load_bytes(skb, 12, w, 8))
			return 0;
		if ((bpf_ntohl(w[1]) >> 24) != 127 || (b[0] & 0xf) != 5)
			return 0; /* not loopback, or IP options (a source route) */
		proto = b[1];
		l4 = 20; /* no options, checked above */
		t.ipv4.saddr = w[0];
		t.ipv4.daddr = w[1];
		len = sizeof(t.ipv4);
	} else if (skb->protocol == bpf_htons(SL_ETH_P_IPV6)) {
		if (bpf_skb_load_bytes(skb, 6, b, 1) || bpf_skb_load_bytes(skb, 24, w, 16))
			return 0;
		if (w[0] || w[1] || w[2] || w[3] != bpf_htonl(1))
			return 0;
		proto = b[0];
		l4 = 40;
		__builtin_memcpy(t.ipv6.daddr, w, 16);
		if (bpf_skb_load_bytes(skb, 8, t.ipv6.saddr, 16))
			return 0;
		len = sizeof(t.ipv6);
	} else {
		return 0;
	}
	if (proto != SL_IPPROTO_TCP && proto != SL_IPPROTO_UDP)
		return 0;
	if (bpf_skb_load_bytes(skb, l4, ports, 4))
		return 0;
	if (proto == SL_IPPROTO_TCP) {
		if (bpf_skb_load_bytes(skb, l4 + 13, &flags, 1))
			return 0;
		if ((flags & 0x12) != 0x02)
			return 1; /* only a SYN picks the receiver */
	}
	if (len == sizeof(t.ipv4)) {
		t.ipv4.sport = ports[0];
		t.ipv4.dport = ports[1];
	} else {
		t.ipv6.sport = ports[0];
		t.ipv6.dport = ports[1];
	}
	/* as sandbox_find: the socket's own cgroup, then its ancestors */
	cgid = bpf_skb_cgroup_id(skb);
	sb = bpf_map_lookup_elem(&sluice_sandboxes, &cgid);
	for (lvl = SLUICE_MAX_CGROUP_DEPTH; lvl >= 0 && !sb; lvl--) {
		cgid = bpf_skb_ancestor_cgroup_id(skb, lvl);
		if (cgid)
			sb = bpf_map_lookup_elem(&sluice_sandboxes, &cgid);
	}
	if (!sb)
		return 0;
	/* The broker's listener and resolver (the hooks sent it there). */
	to = proto == SL_IPPROTO_TCP ? sb->broker_port : sb->dns_port;
	if (bpf_ntohs(ports[1]) == to) {
		if (len == sizeof(t.ipv4) && t.ipv4.daddr == sb->broker_ip4)
			return 1;
		__builtin_memcpy(w, sb->broker_ip6, 16);
		if (len == sizeof(t.ipv6) && t.ipv6.daddr[0] == w[0] && t.ipv6.daddr[1] == w[1] &&
		    t.ipv6.daddr[2] == w[2] && t.ipv6.daddr[3] == w[3])
			return 1;
	}
	return tuple_ours(skb, proto, &t, len, cgid);
}

/*
 * Device nodes a `sluice run` sandbox may open: the memory devices programs
 * read and write (null, zero, full, random, urandom), the terminals (tty,
 * console, ptmx and the pty slaves) and nothing else. A uid 0 sandbox passes
 * the owner check on root's 0600 nodes without any capability, and a disk
 * read raw holds the CA key and the secrets the mounts hide. Attached by
 * `sluice run` only: under `sluice attach` the container runtime decides.
 */
SEC("cgroup/dev")
int sluice_dev(struct bpf_cgroup_dev_ctx *ctx)
{
	__u32 minor = ctx->minor;

	if ((ctx->access_type & 0xffff) != SL_DEVCG_DEV_CHAR)
		return 0;
	switch (ctx->major) {
	case 1:
		return minor == 3 || minor == 5 || minor == 7 || minor == 8 || minor == 9;
	case 5:
		return minor <= 2;
	case 136 ... 143:
		return 1;
	}
	return 0;
}

/* A released socket's record of its original destination goes with it. */
SEC("cgroup/sock_release")
int sluice_sock_release(struct bpf_sock *sk)
{
	__u64 cookie = bpf_get_socket_cookie(sk);

	bpf_map_delete_elem(&sluice_cookie, &cookie);
	return SL_PASS;
}

/*
 * A SO_REUSEPORT group shared with a host service (same uid) picks the member
 * for each connection by its 4-tuple, which the egress check repeats; a
 * steering program attached by any member would pick differently from the
 * check (bpf_sk_lookup_* hashes, the real delivery runs the program). So the
 * sandbox may not attach one. Other options pass to the kernel unchanged.
 */
SEC("cgroup/setsockopt")
int sluice_setsockopt(struct bpf_sockopt *ctx)
{
	int o = ctx->optname;

	if (ctx->level == SL_SOL_SOCKET && (o == SL_SO_ATTACH_REUSEPORT_CBPF ||
					    o == SL_SO_ATTACH_REUSEPORT_EBPF || o == SL_SO_BROADCAST))
		return SL_REFUSE;
	if (ctx->level == SL_SOL_IP && o >= SL_IP_MCAST_FIRST && o <= SL_IP_MCAST_LAST)
		return SL_REFUSE;
	if (ctx->level == SL_SOL_IPV6 && (o == SL_IPV6_JOIN_GROUP || o == SL_IPV6_LEAVE_GROUP ||
					  (o >= SL_MCAST_FIRST && o <= SL_MCAST_LAST)))
		return SL_REFUSE;
	/* Source routes and extension headers: the egress program drops such
	 * packets; refusing the option says so at once. */
	if (ctx->level == SL_SOL_IP && o == SL_IP_OPTIONS)
		return SL_REFUSE;
	if (ctx->level == SL_SOL_IPV6 &&
	    ((o >= SL_IPV6_2292HOPOPTS && o <= SL_IPV6_2292PKTOPTIONS) ||
	     o == SL_IPV6_HOPOPTS || o == SL_IPV6_RTHDRDSTOPTS || o == SL_IPV6_RTHDR ||
	     o == SL_IPV6_DSTOPTS))
		return SL_REFUSE;
	ctx->optlen = 0; /* keep the caller's option as it is */
	return SL_PASS;
}

/*
 * SO_ORIGINAL_DST (the netfilter REDIRECT interface, merbridge-style): a
 * sandboxed program asking where its own redirected connection was meant to
 * go gets the destination it asked for, as with iptables REDIRECT. Only the
 * socket's own record is answered; anything else keeps the kernel's answer.
 */
SEC("cgroup/getsockopt")
int sluice_getsockopt(struct bpf_sockopt *ctx)
{
	struct sluice_orig_dst *o;
	struct bpf_sock *sk = ctx->sk;
	__u8 *p = ctx->optval;
	__u32 w[4];

	if (ctx->optname != SL_SO_ORIGINAL_DST || (ctx->level != SL_SOL_IP && ctx->level != SL_SOL_IPV6))
		return SL_PASS;
	if (!sk)
		return SL_PASS;
	o = bpf_sk_storage_get(&sluice_sk_orig, sk, 0, 0);
	if (!o || o->proto != SL_IPPROTO_TCP)
		return SL_PASS;
	if (ctx->level == SL_SOL_IP) {
		/* struct sockaddr_in: family, port (be), addr, 8 zero bytes */
		if (o->family != SLUICE_AF_INET || p + 16 > (__u8 *)ctx->optval_end)
			return SL_PASS;
		__builtin_memcpy(w, o->addr, 4);
		*(__u16 *)p = SL_AF_INET;
		*(__u16 *)(p + 2) = bpf_htons(o->port);
		*(__u32 *)(p + 4) = w[0];
		*(__u32 *)(p + 8) = 0;
		*(__u32 *)(p + 12) = 0;
		ctx->optlen = 16;
	} else {
		/* struct sockaddr_in6: family, port, flowinfo, addr, scope id; IPv4 as ::ffff:a.b.c.d */
		if (p + 28 > (__u8 *)ctx->optval_end)
			return SL_PASS;
		if (o->family == SLUICE_AF_INET) {
			__builtin_memcpy(&w[3], o->addr, 4);
			w[0] = 0;
			w[1] = 0;
			w[2] = bpf_htonl(0xffff);
		} else {
			__builtin_memcpy(w, o->addr, 16);
		}
		*(__u16 *)p = SL_AF_INET6;
		*(__u16 *)(p + 2) = bpf_htons(o->port);
		*(__u32 *)(p + 4) = 0;
		*(__u32 *)(p + 8) = w[0];
		*(__u32 *)(p + 12) = w[1];
		*(__u32 *)(p + 16) = w[2];
		*(__u32 *)(p + 20) = w[3];
		*(__u32 *)(p + 24) = 0;
		ctx->optlen = 28;
	}
	ctx->retval = 0;
	return SL_PASS;
}
