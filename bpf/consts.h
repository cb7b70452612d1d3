/* SPDX-License-Identifier: MIT */
/* Limits and constants of the kernel programs (shared ones: common_kern_user.h). */
#ifndef SLUICE_BPF_CONSTS_H
#define SLUICE_BPF_CONSTS_H

#define SL_AF_UNIX    1
#define SL_AF_INET    2
#define SL_AF_INET6   10
#define SL_AF_NETLINK 16

#define SL_SOCK_STREAM 1
#define SL_SOCK_DGRAM  2

#define SL_IPPROTO_TCP 6
#define SL_IPPROTO_UDP 17

#define SL_DNS_PORT 53

/* skb->protocol (network byte order once bpf_htons is applied) */
#define SL_ETH_P_IP   0x0800
#define SL_ETH_P_IPV6 0x86DD

/* getsockopt(SOL_IP / SOL_IPV6, SO_ORIGINAL_DST): <linux/netfilter_ipv4.h>, ip6_tables.h */
#define SL_SOL_IP           0
#define SL_SOL_IPV6         41
#define SL_SO_ORIGINAL_DST  80

/* setsockopt(SOL_SOCKET, ...): a program steering a SO_REUSEPORT group */
#define SL_SOL_SOCKET                 1
#define SL_SO_REUSEPORT               15
#define SL_SO_REUSEADDR               2
#define SL_SO_ATTACH_REUSEPORT_CBPF   51
#define SL_SO_ATTACH_REUSEPORT_EBPF   52

/* Options that make a packet's route differ from its destination address, or
 * add headers a hook never saw: IPv4 options (source routes), IPv6 routing,
 * hop-by-hop and destination option headers (a type 4 segment routing header
 * is allowed without privilege). <linux/in.h>, <linux/in6.h> */
#define SL_IP_OPTIONS            4
#define SL_IPV6_2292HOPOPTS      3
#define SL_IPV6_2292PKTOPTIONS   6
#define SL_IPV6_HOPOPTS          54
#define SL_IPV6_RTHDRDSTOPTS     55
#define SL_IPV6_RTHDR            57
#define SL_IPV6_DSTOPTS          59

/* bpf_cgroup_dev_ctx.access_type's low half: <linux/bpf.h> BPF_DEVCG_DEV_CHAR */
#define SL_DEVCG_DEV_CHAR 2

/* Multicast group membership: the kernel itself sends IGMP/MLD reports for
 * the groups (and sources) a socket joins, with no socket of the sandbox's
 * under them, so the group address would carry chosen bits onto the LAN.
 * IP_ADD_MEMBERSHIP .. MCAST_MSFILTER at SOL_IP; IPV6_ADD/DROP_MEMBERSHIP and
 * the MCAST_* range at SOL_IPV6. SO_BROADCAST: a datagram to 127.255.255.255
 * reaches every socket on 0.0.0.0 of its port, not the one a lookup names. */
#define SL_IP_MCAST_FIRST        35
#define SL_IP_MCAST_LAST         48
#define SL_IPV6_JOIN_GROUP       20
#define SL_IPV6_LEAVE_GROUP      21
#define SL_MCAST_FIRST           42
#define SL_MCAST_LAST            48
#define SL_SO_BROADCAST          6

/* The loopback device's index in every network namespace (LOOPBACK_IFINDEX). */
#define SL_LOOPBACK_IFINDEX 1

/* Verdicts of cgroup programs: 1 lets the operation go on, 0 makes it fail (EPERM). */
#define SL_PASS 1
#define SL_REFUSE 0

/* What a refused bind says instead of EPERM (bpf_set_retval): a port in use. */
#define SL_EADDRINUSE 98

#endif /* SLUICE_BPF_CONSTS_H */
