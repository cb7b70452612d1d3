/* SPDX-License-Identifier: MIT */
/*
 * Maps of the kernel programs. Every one is pinned by name below the loader's
 * pin root (libbpf reuses a pinned map of the same shape), so all sandboxes
 * and the broker share them; per-sandbox settings are keyed by cgroup id.
 */
#ifndef SLUICE_BPF_MAPS_H
#define SLUICE_BPF_MAPS_H
#include "common_kern_user.h"

/* cgroup id of a sandbox -> its broker's address and ports (written by the loader). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SLUICE_MAX_SANDBOXES);
	__type(key, __u64);
	__type(value, struct sluice_sandbox);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sluice_sandboxes SEC(".maps");

/* Connection 4-tuple as the broker sees it -> original destination (sockops
 * writes, the broker takes and deletes). LRU: an entry whose connection never
 * reached the broker must not fill the map. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, SLUICE_MAX_ORIG);
	__type(key, struct sluice_orig_key);
	__type(value, struct sluice_orig_dst);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sluice_orig SEC(".maps");

/* Socket cookie -> original destination: connect/sendmsg record it, sockops,
 * getpeername and recvmsg read it, sock_release deletes it. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, SLUICE_MAX_ORIG);
	__type(key, __u64);
	__type(value, struct sluice_orig_dst);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sluice_cookie SEC(".maps");

/* enum sluice_stat -> count, summed over CPUs by `sluice status`. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SLUICE_STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sluice_stats SEC(".maps");

/* cgroup id -> that sandbox's counters. The loader creates the entry with the
 * sandbox (the programs only count into an existing one) and deletes it. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, SLUICE_MAX_SANDBOXES);
	__type(key, __u64);
	__type(value, struct sluice_sb_stats);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sluice_sbstats SEC(".maps");

/* cgroup id -> broker and supervisor pids, name: only user space uses it;
 * declared here so it is created and pinned with the others. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SLUICE_MAX_SANDBOXES);
	__type(key, __u64);
	__type(value, struct sluice_sb_info);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sluice_sbinfo SEC(".maps");

/* Original destination of a redirected TCP socket, stored on the socket
 * itself (freed with it), for cgroup/getsockopt SO_ORIGINAL_DST. */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct sluice_orig_dst);
} sluice_sk_orig SEC(".maps");

/* The sandbox (cgroup id) a socket was bound in, stored on the socket itself
 * by post_bind: a loopback connect passes to a port the sandbox bound only
 * while the socket that would receive it is still that one (not a host
 * service that took the port over after the sandbox's socket let it go). */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sluice_sk_owner SEC(".maps");

#endif /* SLUICE_BPF_MAPS_H */
