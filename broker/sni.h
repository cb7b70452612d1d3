/* SPDX-License-Identifier: MIT */
/* The server_name extension of a ClientHello (RFC 6066 section 3), sans I/O. */
#ifndef SLUICE_SNI_H
#define SLUICE_SNI_H
#include <stddef.h>
#include <stdint.h>

/*
 * Parses the extension body (ServerNameList) and copies the host_name entry,
 * lower-cased, NUL-terminated, without a trailing dot, into out.
 * Returns the name length, 0 when the list has no host_name entry, -EINVAL when
 * the bytes are malformed or the name is not a valid DNS name (it becomes a
 * certificate SAN and an upstream host, so only LDH labels, '_' and '.' pass),
 * -ENOSPC when out is too small.
 */
int sni_parse_ext(const uint8_t *p, size_t len, char *out, size_t outlen);

/* True when name (len bytes) is a DNS host name sluice accepts (see above). */
int sni_name_valid(const char *name, size_t len);

#endif /* SLUICE_SNI_H */
