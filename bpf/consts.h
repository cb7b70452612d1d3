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
#define SL_SO_ATTACH_REUSEPORT_CBPF   51
#define SL_SO_ATTACH_REUSEPORT_EBPF   52

/* Verdicts of cgroup programs: 1 lets the operation go on, 0 makes it fail (EPERM). */
#define SL_PASS 1
#define SL_REFUSE 0

#endif /* SLUICE_BPF_CONSTS_H */
