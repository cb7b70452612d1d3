/* SPDX-License-Identifier: MIT */
/*
 * The contract between the kernel programs (bpf/), the loader (user/) and the
 * broker (broker/). Fixed-width types only: this header is compiled both with
 * clang -target bpf (after vmlinux.h) and by the host compiler (after
 * <linux/types.h>).
 */
#ifndef SLUICE_COMMON_KERN_USER_H
#define SLUICE_COMMON_KERN_USER_H

/* Everything sluice pins lives below this directory of a bpffs mount. */
#define SLUICE_PIN_ROOT "/sys/fs/bpf/sluice"
/* Maps shared by every sandbox are pinned by name: SLUICE_PIN_ROOT "/" <name>. */
#define SLUICE_MAP_SANDBOXES "sluice_sandboxes"
#define SLUICE_MAP_ORIG      "sluice_orig"
#define SLUICE_MAP_COOKIE    "sluice_cookie"
#define SLUICE_MAP_STATS     "sluice_stats"
/* Per-sandbox counters (struct sluice_sb_stats, per CPU) and facts for
 * `sluice status` (struct sluice_sb_info), both keyed by cgroup id. */
#define SLUICE_MAP_SB_STATS  "sluice_sbstats"
#define SLUICE_MAP_SB_INFO   "sluice_sbinfo"
/* Internal to bpf/: per-socket original destination (socket storage) for the
 * cgroup/getsockopt SO_ORIGINAL_DST emulation. */
#define SLUICE_MAP_SK_ORIG   "sluice_sk_orig"

/*
 * The uid the broker's listening sockets are created under (its fsuid while
 * it makes them). The kernel lets a socket join a SO_REUSEPORT group, and so
 * take a share of the connections, only with the uid of the sockets already
 * in it: a sandbox running as root, without CAP_SETUID, cannot take this one.
 * `sluice run` refuses it as a sandbox user.
 */
#define SLUICE_LISTEN_UID 4294967294u

#define SLUICE_MAX_SANDBOXES 1024
#define SLUICE_MAX_ORIG      65536
/* How far up from the current cgroup the programs look for a sandbox entry
 * (a container's processes may sit in child cgroups of the attached one). */
#define SLUICE_MAX_CGROUP_DEPTH 16

/* Address families, as in <sys/socket.h>. */
#define SLUICE_AF_INET  2
#define SLUICE_AF_INET6 10

/*
 * Per-sandbox settings, keyed by the cgroup id (inode number of the cgroup
 * directory) the programs are attached to. Written by the loader before the
 * command enters the cgroup.
 */
struct sluice_sandbox {
	__u32 broker_ip4;      /* network order; normally 127.0.0.1 */
	__u8  broker_ip6[16];  /* normally ::1 */
	__u16 broker_port;     /* host order: TCP listener of sluiced */
	__u16 dns_port;        /* host order: UDP resolver of sluiced (same address) */
	__u32 flags;           /* SLUICE_SB_* */
};
#define SLUICE_SB_ALLOW_LOOPBACK_BOUND (1u << 0) /* loopback to ports the sandbox bound itself passes */

/*
 * The original destination of one redirected connection (or UDP socket),
 * recorded by connect4/connect6/sendmsg4/sendmsg6.
 */
struct sluice_orig_dst {
	__u64 cgroup_id;       /* the sandbox's cgroup id (the key that matched in sluice_sandboxes) */
	__u32 pid;             /* tgid of the process that connected */
	__u16 port;            /* host order: the port the program asked for */
	__u8  family;          /* SLUICE_AF_INET or SLUICE_AF_INET6 (v4-mapped v6 is AF_INET) */
	__u8  proto;           /* IPPROTO_TCP or IPPROTO_UDP */
	__u8  addr[16];        /* the address the program asked for; IPv4 in addr[0..3] */
	char  comm[16];
};

/*
 * Key of SLUICE_MAP_ORIG: the connection as the broker sees it after accept():
 * src = the client's address/port (getpeername on the accepted socket),
 * dst = the broker's listening address/port (getsockname).
 * Family is that of the broker's socket: a v4-mapped connect from an AF_INET6
 * socket arrives on the broker's IPv4 listener, so it is keyed as AF_INET.
 * IPv4 addresses sit in the first 4 bytes, the rest zero. Ports host order.
 */
struct sluice_orig_key {
	__u8  family;
	__u8  pad;
	__u16 src_port;
	__u16 dst_port;
	__u16 pad2;
	__u8  src_addr[16];
	__u8  dst_addr[16];
};

/* Counters (per-CPU array index). */
enum sluice_stat {
	SLUICE_STAT_TCP_REDIRECTED = 0,
	SLUICE_STAT_UDP_DNS_REDIRECTED,
	SLUICE_STAT_DENIED_CONNECT,     /* refused in connect4/6 (no broker entry, record failed) */
	SLUICE_STAT_DENIED_UDP,         /* non-DNS UDP refused */
	SLUICE_STAT_DENIED_SOCKET,      /* raw/packet/other socket refused in sock_create */
	SLUICE_STAT_LOOPBACK_PASSED,    /* loopback to a port the sandbox bound */
	SLUICE_STAT_MAX,
};

/* Value of SLUICE_MAP_SB_STATS (per CPU; sum over CPUs). Room for new
 * counters without changing the pinned map's shape. */
#define SLUICE_SB_STATS_SLOTS 8
struct sluice_sb_stats {
	__u64 n[SLUICE_SB_STATS_SLOTS]; /* indexed by enum sluice_stat */
};

/* Value of SLUICE_MAP_SB_INFO: written by the loader, read by `sluice status`. */
struct sluice_sb_info {
	__u32 broker_pid;      /* sluiced serving this sandbox (0: none yet) */
	__u32 sluice_pid;      /* the `sluice run` or attach supervisor */
	char  name[48];        /* the sandbox name (pin directory) */
};

#endif /* SLUICE_COMMON_KERN_USER_H */
