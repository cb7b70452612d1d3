// SPDX-License-Identifier: MIT
/* The broker's side of SLUICE_MAP_ORIG: which destination did this accepted
 * connection ask for? (Written by bpf/sluice.bpf.c's sockops program.) */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <bpf/bpf.h>
#include "origdst.h"

int origdst_open(const char *pin_root)
{
	char p[512];
	int fd;

	if ((size_t)snprintf(p, sizeof(p), "%s/%s", pin_root ? pin_root : SLUICE_PIN_ROOT,
			     SLUICE_MAP_ORIG) >= sizeof(p))
		return -ENAMETOOLONG;
	fd = bpf_obj_get(p);
	return fd < 0 ? -errno : fd;
}

/* Puts one side of the connection into the key's layout; a v4-mapped address
 * on a dual-stack socket is IPv4, as the kernel side keys it. */
static int key_side(const struct sockaddr_storage *ss, __u8 *family, __u8 addr[16], __u16 *port)
{
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *s4 = (const void *)ss;

		*family = SLUICE_AF_INET;
		memcpy(addr, &s4->sin_addr, 4);
		*port = ntohs(s4->sin_port);
		return 0;
	}
	if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const void *)ss;

		if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
			*family = SLUICE_AF_INET;
			memcpy(addr, &s6->sin6_addr.s6_addr[12], 4);
		} else {
			*family = SLUICE_AF_INET6;
			memcpy(addr, &s6->sin6_addr, 16);
		}
		*port = ntohs(s6->sin6_port);
		return 0;
	}
	return -EAFNOSUPPORT;
}

int origdst_take(int map_fd, int accepted_fd, struct sluice_orig_dst *out)
{
	return origdst_take_addr(map_fd, accepted_fd, NULL, NULL, out);
}

int origdst_take_addr(int map_fd, int accepted_fd, const struct sockaddr_storage *peer,
		      const struct sockaddr_storage *local, struct sluice_orig_dst *out)
{
	struct sockaddr_storage p, l;
	socklen_t pl = sizeof(p), ll = sizeof(l);
	struct sluice_orig_key k;
	__u8 f1, f2;
	int err;

	memset(&k, 0, sizeof(k));
	if (!peer) {
		if (getpeername(accepted_fd, (struct sockaddr *)&p, &pl))
			return -errno;
		peer = &p;
	}
	if (!local) {
		if (getsockname(accepted_fd, (struct sockaddr *)&l, &ll))
			return -errno;
		local = &l;
	}
	err = key_side(peer, &f1, k.src_addr, &k.src_port);
	if (!err)
		err = key_side(local, &f2, k.dst_addr, &k.dst_port);
	if (err)
		return err;
	if (f1 != f2)
		return -ENOENT;
	k.family = f1;
	if (!bpf_map_lookup_and_delete_elem(map_fd, &k, out))
		return 0;
	if (errno == ENOENT)
		return -ENOENT;
	/* Kernels before 5.14 cannot lookup-and-delete in a hash map. */
	if (bpf_map_lookup_elem(map_fd, &k, out))
		return -errno;
	bpf_map_delete_elem(map_fd, &k);
	return 0;
}

const char *origdst_str(const struct sluice_orig_dst *d, char *buf, unsigned long len)
{
	char a[INET6_ADDRSTRLEN];

	if (d->family == SLUICE_AF_INET) {
		inet_ntop(AF_INET, d->addr, a, sizeof(a));
		snprintf(buf, len, "%s:%u", a, d->port);
	} else {
		inet_ntop(AF_INET6, d->addr, a, sizeof(a));
		snprintf(buf, len, "[%s]:%u", a, d->port);
	}
	return buf;
}
