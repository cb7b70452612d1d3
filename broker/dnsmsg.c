// SPDX-License-Identifier: MIT
/*
 * DNS query parsing and reply building (RFC 1035), sans I/O.
 *
 * The parser is strict on purpose: the resolver only has to serve the A/AAAA
 * lookups of ordinary clients (glibc, musl, c-ares, Go, dig), and anything odd
 * in a message coming out of a sandbox is more likely an attempt to smuggle
 * data or confuse the policy than a real lookup. So: one question, no answer or
 * authority records, additional records (EDNS OPT) must be well formed and end
 * exactly at the end of the datagram, and names are limited to hostname bytes.
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "dnsmsg.h"

#define DNS_HDR_LEN   12
#define DNS_FLAG_QR   0x8000
#define DNS_FLAG_RD   0x0100
#define DNS_FLAG_RA   0x0080
#define DNS_OPCODE(f) (((f) >> 11) & 0xf)
#define DNS_LABEL_MAX 63
/* More additional records than this is not something a stub resolver sends. */
#define DNS_MAX_ADDITIONAL 4
#define DNS_TYPE_A    1
#define DNS_TYPE_AAAA 28
#define DNS_CLASS_IN  1

static inline uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }

static inline void wr16(uint8_t *p, uint16_t v)
{
	p[0] = v >> 8;
	p[1] = v & 0xff;
}

static inline void wr32(uint8_t *p, uint32_t v)
{
	p[0] = v >> 24;
	p[1] = (v >> 16) & 0xff;
	p[2] = (v >> 8) & 0xff;
	p[3] = v & 0xff;
}

/*
 * Only letters, digits, '-' and '_' (service labels). A '.' or NUL inside a
 * label would make the dotted form ambiguous ("a.b" as one label reads like two
 * labels to the policy), and other bytes are no part of a hostname.
 */
static int label_byte_ok(uint8_t c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '_';
}

/*
 * Reads the name at *off. Compression pointers are followed only backwards and
 * each jump must land strictly before the previous one, so every walk ends; a
 * pointer into the header is refused (it would mean nothing in our reply, which
 * echoes the question at the same offset). On success *off is the first byte
 * after the name as stored (after the first pointer, if any). out (may be NULL)
 * gets the lower-cased dotted name without a trailing dot.
 */
static int read_name(const uint8_t *msg, size_t len, size_t *off, char *out)
{
	size_t pos = *off, end = 0, limit = SIZE_MAX, wire = 0, o = 0;
	int jumped = 0;

	for (;;) {
		if (pos >= len)
			return -EINVAL;
		uint8_t l = msg[pos];
		if ((l & 0xc0) == 0xc0) {
			if (pos + 1 >= len)
				return -EINVAL;
			size_t target = (size_t)(l & 0x3f) << 8 | msg[pos + 1];
			if (target < DNS_HDR_LEN || target >= pos || target >= limit)
				return -EINVAL;
			if (!jumped)
				end = pos + 2;
			jumped = 1;
			limit = target;
			pos = target;
			continue;
		}
		if (l & 0xc0) /* 01 and 10: extended label types, obsolete */
			return -EINVAL;
		wire += 1 + (size_t)l;
		if (wire > DNS_NAME_MAX)
			return -EINVAL;
		if (l == 0) {
			if (!jumped)
				end = pos + 1;
			break;
		}
		if (pos + 1 + l > len)
			return -EINVAL;
		if (out && o)
			out[o++] = '.';
		for (size_t i = 0; i < l; i++) {
			uint8_t c = msg[pos + 1 + i];
			if (!label_byte_ok(c))
				return -EINVAL;
			if (out)
				out[o++] = (char)(c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c);
		}
		pos += 1 + (size_t)l;
	}
	/* wire <= 255 with one length byte per label and the root byte: o <= 254 */
	if (out)
		out[o] = '\0';
	*off = end;
	return 0;
}

/* Skips one resource record (name, type, class, ttl, rdlength, rdata). */
static int skip_rr(const uint8_t *msg, size_t len, size_t *off)
{
	size_t pos = *off;
	int err = read_name(msg, len, &pos, NULL);

	if (err)
		return err;
	if (len - pos < 10)
		return -EINVAL;
	size_t rdlen = rd16(msg + pos + 8);
	pos += 10;
	if (len - pos < rdlen)
		return -EINVAL;
	*off = pos + rdlen;
	return 0;
}

int dns_parse_query(const uint8_t *msg, size_t len, struct dns_query *q)
{
	size_t pos = DNS_HDR_LEN;
	uint16_t flags, qd, an, ns, ar;
	int err;

	if (!msg || !q || len < DNS_HDR_LEN)
		return -EINVAL;
	flags = rd16(msg + 2);
	qd = rd16(msg + 4);
	an = rd16(msg + 6);
	ns = rd16(msg + 8);
	ar = rd16(msg + 10);
	/* a response sent to the resolver, or IQUERY/STATUS/NOTIFY/UPDATE */
	if ((flags & DNS_FLAG_QR) || DNS_OPCODE(flags) != 0)
		return -EINVAL;
	if (qd != 1 || an != 0 || ns != 0 || ar > DNS_MAX_ADDITIONAL)
		return -EINVAL;

	err = read_name(msg, len, &pos, q->name);
	if (err)
		return err;
	if (len - pos < 4)
		return -EINVAL;
	q->qtype = rd16(msg + pos);
	q->qclass = rd16(msg + pos + 2);
	pos += 4;
	q->id = rd16(msg);
	q->flags = flags;
	q->question = msg + DNS_HDR_LEN;
	q->question_len = pos - DNS_HDR_LEN;

	for (unsigned i = 0; i < ar; i++) {
		err = skip_rr(msg, len, &pos);
		if (err)
			return err;
	}
	/* trailing bytes would be a place to hide data; no stub resolver sends them */
	if (pos != len)
		return -EINVAL;
	return 0;
}

int dns_build_reply(const struct dns_query *q, int rcode, const uint8_t *addrs, size_t n_addrs,
		    uint32_t ttl, uint8_t *out, size_t outlen)
{
	size_t alen, need, pos;

	if (!q || !out || !q->question || q->question_len < 5 || rcode < 0 || rcode > 15)
		return -EINVAL;
	if (n_addrs) {
		/* answers only make sense for a successful A/AAAA lookup of class IN */
		if (!addrs || rcode != 0 || q->qclass != DNS_CLASS_IN)
			return -EINVAL;
		if (q->qtype == DNS_TYPE_A)
			alen = 4;
		else if (q->qtype == DNS_TYPE_AAAA)
			alen = 16;
		else
			return -EINVAL;
		/* ANCOUNT is 16 bits; far more than fits a datagram anyway */
		if (n_addrs > 0xffff)
			return -ENOSPC;
	} else {
		alen = 0;
	}
	need = DNS_HDR_LEN + q->question_len + n_addrs * (12 + alen);
	if (need > outlen || need > 0xffff)
		return -ENOSPC;

	wr16(out, q->id);
	/* QR, opcode 0 (only QUERY is parsed), RD echoed, RA: we do recurse for them */
	wr16(out + 2, (uint16_t)(DNS_FLAG_QR | (q->flags & DNS_FLAG_RD) | DNS_FLAG_RA | rcode));
	wr16(out + 4, 1);
	wr16(out + 6, (uint16_t)n_addrs);
	wr16(out + 8, 0);
	wr16(out + 10, 0);
	memcpy(out + DNS_HDR_LEN, q->question, q->question_len);
	pos = DNS_HDR_LEN + q->question_len;
	for (size_t i = 0; i < n_addrs; i++) {
		/* the name is a pointer to the question's name, which starts at offset 12 */
		wr16(out + pos, 0xc000 | DNS_HDR_LEN);
		wr16(out + pos + 2, q->qtype);
		wr16(out + pos + 4, DNS_CLASS_IN);
		/* RFC 2181 8: a TTL with the top bit set is read as 0 */
		wr32(out + pos + 6, ttl > 0x7fffffff ? 0x7fffffff : ttl);
		wr16(out + pos + 10, (uint16_t)alen);
		memcpy(out + pos + 12, addrs + i * alen, alen);
		pos += 12 + alen;
	}
	return (int)pos;
}
