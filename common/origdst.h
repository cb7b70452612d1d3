/* SPDX-License-Identifier: MIT */
/* The broker's side of the original-destination map (see common_kern_user.h). */
#ifndef SLUICE_ORIGDST_H
#define SLUICE_ORIGDST_H
#include <linux/types.h>
#include "common_kern_user.h"

/* Opens the pinned SLUICE_MAP_ORIG below pin_root (NULL = SLUICE_PIN_ROOT).
 * Returns the map fd or -errno (-ENOENT: no sandbox was ever set up). */
int origdst_open(const char *pin_root);

/* Finds, copies out and deletes the entry for an accepted TCP connection,
 * using getpeername/getsockname of accepted_fd to build the key.
 * Returns 0, -ENOENT when the connection was not redirected by sluice (someone
 * dialled the broker directly: refuse it), or another -errno. */
int origdst_take(int map_fd, int accepted_fd, struct sluice_orig_dst *out);
/* The same with the addresses already known (accept() gives the peer; a
 * listener bound to one address gives the local end): NULL asks the socket. */
struct sockaddr_storage;
int origdst_take_addr(int map_fd, int accepted_fd, const struct sockaddr_storage *peer,
		      const struct sockaddr_storage *local, struct sluice_orig_dst *out);

/* Formats the recorded destination as "1.2.3.4:443" / "[::1]:443". */
const char *origdst_str(const struct sluice_orig_dst *d, char *buf, unsigned long len);

#endif
