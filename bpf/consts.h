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

/* Verdicts of cgroup programs: 1 lets the operation go on, 0 makes it fail (EPERM). */
#define SL_PASS 1
#define SL_REFUSE 0

#endif /* SLUICE_BPF_CONSTS_H */
