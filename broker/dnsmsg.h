/* SPDX-License-Identifier: MIT */
/*
 * DNS messages for the broker's resolver (RFC 1035), sans I/O. The sandbox's
 * UDP queries arrive here; only names the policy could allow get an answer.
 * Return contract (picohttpparser style): bytes used / written, or -errno
 * (-EINVAL malformed, -ENOSPC output too small, -ENOTSUP unsupported).
 *
 * Owner: broker/ (dnsmsg.c).
 */
#ifndef SLUICE_DNSMSG_H
#define SLUICE_DNSMSG_H
#include <stddef.h>
#include <stdint.h>

#define DNS_NAME_MAX 255

struct dns_query {
	uint16_t id;
	uint16_t flags;          /* as received (RD bit is echoed) */
	uint16_t qtype;          /* 1 = A, 28 = AAAA, others answered empty/NOTIMP */
	uint16_t qclass;
	char name[DNS_NAME_MAX + 1]; /* lower-case, dotted, no trailing dot */
	size_t question_len;     /* bytes of the question section, echoed in the reply */
	const uint8_t *question; /* points into the message given to dns_parse_query */
};

/* Parses a query with exactly one question. Returns 0 or -EINVAL. */
int dns_parse_query(const uint8_t *msg, size_t len, struct dns_query *q);

/* rcode: 0 NOERROR, 2 SERVFAIL, 3 NXDOMAIN, 4 NOTIMP, 5 REFUSED.
 * addrs: n_addrs addresses of the query's type (4 bytes for A, 16 for AAAA), packed.
 * Returns the reply length or -ENOSPC. */
int dns_build_reply(const struct dns_query *q, int rcode, const uint8_t *addrs, size_t n_addrs,
		    uint32_t ttl, uint8_t *out, size_t outlen);

#endif
