/* SPDX-License-Identifier: MIT */
/* Small inline helpers of the kernel programs; context quirks live here. */
#ifndef SLUICE_BPF_HELPERS_H
#define SLUICE_BPF_HELPERS_H
#include "consts.h"
#include "maps.h"

/* Counts into the global counters and, when cgid names a sandbox the
 * loader set up, into that sandbox's own. Per-CPU slots: no atomics needed. */
static __always_inline void stat_inc(__u64 cgid, __u32 idx)
{
	struct sluice_sb_stats *s;
	__u64 *v = bpf_map_lookup_elem(&sluice_stats, &idx);

	if (v)
		*v += 1;
	if (!cgid || idx >= SLUICE_SB_STATS_SLOTS)
		return;
	s = bpf_map_lookup_elem(&sluice_sbstats, &cgid);
	/* the mask keeps the verifier's bound on idx through spills */
	if (s)
		s->n[idx & (SLUICE_SB_STATS_SLOTS - 1)] += 1;
}

/*
 * The sandbox entry of the calling task: its own cgroup or the nearest
 * ancestor that has one (a container's processes may sit in child cgroups of
 * the one sluice attached to). NULL means the programs run in a cgroup that
 * was never set up (or was torn down): callers refuse.
 */
static __always_inline struct sluice_sandbox *sandbox_find(__u64 *cgid)
{
	struct sluice_sandbox *sb;
	__u64 id = bpf_get_current_cgroup_id();
	int lvl;

	sb = bpf_map_lookup_elem(&sluice_sandboxes, &id);
	if (sb) {
		*cgid = id;
		return sb;
	}
	for (lvl = SLUICE_MAX_CGROUP_DEPTH; lvl >= 0; lvl--) {
		id = bpf_get_current_ancestor_cgroup_id(lvl);
		if (!id)
			continue; /* deeper than the task's cgroup */
		sb = bpf_map_lookup_elem(&sluice_sandboxes, &id);
		if (sb) {
			*cgid = id;
			return sb;
		}
	}
	return NULL;
}

/* user_port holds the port in network order in its low 16 bits. */
static __always_inline __u16 ctx_port(const struct bpf_sock_addr *ctx)
{
	return bpf_ntohs((__u16)ctx->user_port);
}

static __always_inline void ctx_set_port(struct bpf_sock_addr *ctx, __u16 port)
{
	ctx->user_port = bpf_htons(port);
}

/* ::ffff:a.b.c.d, which an AF_INET6 socket uses to reach IPv4. */
static __always_inline int ip6_is_v4mapped(const __u32 w[4])
{
	return w[0] == 0 && w[1] == 0 && w[2] == bpf_htonl(0xffff);
}

/* 127/8 and 0.0.0.0 (connecting to the wildcard reaches this host too). */
static __always_inline int ip4_is_local(__u32 a)
{
	return (bpf_ntohl(a) >> 24) == 127 || a == 0;
}

/* ::1 and :: */
static __always_inline int ip6_is_local(const __u32 w[4])
{
	return w[0] == 0 && w[1] == 0 && w[2] == 0 && (w[3] == 0 || w[3] == bpf_htonl(1));
}

static __always_inline void orig_fill(struct sluice_orig_dst *o, __u64 cgid, __u8 family,
				      __u8 proto, const __u32 *addr, __u16 port)
{
	o->cgroup_id = cgid;
	o->pid = bpf_get_current_pid_tgid() >> 32;
	o->port = port;
	o->family = family;
	o->proto = proto;
	if (family == SLUICE_AF_INET)
		__builtin_memcpy(o->addr, addr, 4);
	else
		__builtin_memcpy(o->addr, addr, 16);
	bpf_get_current_comm(o->comm, sizeof(o->comm));
}

#endif /* SLUICE_BPF_HELPERS_H */
