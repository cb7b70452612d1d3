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

/* Parses a query with exactly one question. Returns 0 or -EINVAL.
 * -EINVAL also covers: a response (QR set), opcode other than QUERY, answer/authority
 * records, more than 4 additional records, trailing bytes, name bytes other than
 * [A-Za-z0-9_-], compression pointers that do not point strictly backwards. */
int dns_parse_query(const uint8_t *msg, size_t len, struct dns_query *q);

/* rcode: 0 NOERROR, 2 SERVFAIL, 3 NXDOMAIN, 4 NOTIMP, 5 REFUSED.
 * addrs: n_addrs addresses of the query's type (4 bytes for A, 16 for AAAA), packed.
 * Answers are written with the name as a pointer to the question (offset 12), class IN.
 * Returns the reply length, -ENOSPC (out too small), or -EINVAL (misuse: addresses with a
 * non-zero rcode, a type other than A/AAAA or a class other than IN, rcode > 15). */
int dns_build_reply(const struct dns_query *q, int rcode, const uint8_t *addrs, size_t n_addrs,
		    uint32_t ttl, uint8_t *out, size_t outlen);

#endif
