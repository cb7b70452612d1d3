// SPDX-License-Identifier: MIT
/*
 * broker/dnsmsg.c: table of good and bad queries, every truncation of every
 * good query, replies checked byte by byte, output sizes, random mutations.
 * Inputs are placed at the very end of a page followed by a PROT_NONE page, so
 * a read past the end faults even where ASan would not see it.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "dnsmsg.h"

/* ---------- guard-page buffer ---------- */

static uint8_t *guard_base;
static size_t guard_pg;

static int setup_guard(void **state)
{
	guard_pg = (size_t)sysconf(_SC_PAGESIZE);
	guard_base = mmap(NULL, 2 * guard_pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (guard_base == MAP_FAILED)
		return -1;
	return mprotect(guard_base + guard_pg, guard_pg, PROT_NONE);
}

static int teardown_guard(void **state)
{
	munmap(guard_base, 2 * guard_pg);
	return 0;
}

/* copies len bytes so that they end exactly at the guard page */
static const uint8_t *at_guard(const uint8_t *p, size_t len)
{
	assert_true(len <= guard_pg);
	uint8_t *dst = guard_base + guard_pg - len;
	if (len)
		memcpy(dst, p, len);
	return dst;
}

static int parse(const uint8_t *p, size_t len, struct dns_query *q)
{
	return dns_parse_query(at_guard(p, len), len, q);
}

/* ---------- message builder ---------- */

struct msg {
	uint8_t b[1024];
	size_t n;
};

static void put8(struct msg *m, uint8_t v) { m->b[m->n++] = v; }
static void put16(struct msg *m, uint16_t v) { put8(m, v >> 8); put8(m, v & 0xff); }

static void hdr(struct msg *m, uint16_t id, uint16_t flags, uint16_t qd, uint16_t an, uint16_t ns,
		uint16_t ar)
{
	m->n = 0;
	put16(m, id);
	put16(m, flags);
	put16(m, qd);
	put16(m, an);
	put16(m, ns);
	put16(m, ar);
}

/* dotted name to labels ("" = root) */
static void name(struct msg *m, const char *dotted)
{
	const char *s = dotted;
	while (*s) {
		const char *dot = strchr(s, '.');
		size_t l = dot ? (size_t)(dot - s) : strlen(s);
		put8(m, (uint8_t)l);
		memcpy(m->b + m->n, s, l);
		m->n += l;
		s += l;
		if (*s == '.')
			s++;
	}
	put8(m, 0);
}

/* EDNS(0) OPT record with a root name, 1232-byte payload, no options */
static void opt(struct msg *m)
{
	put8(m, 0);
	put16(m, 41);
	put16(m, 1232);
	put16(m, 0);
	put16(m, 0);
	put16(m, 0);
}

/* a standard query: RD set, one question, optional OPT */
static void query(struct msg *m, uint16_t id, const char *qname, uint16_t qtype, int with_opt)
{
	hdr(m, id, 0x0100, 1, 0, 0, with_opt ? 1 : 0);
	name(m, qname);
	put16(m, qtype);
	put16(m, 1);
	if (with_opt)
		opt(m);
}

static char *repeat(char *out, char c, size_t n)
{
	memset(out, c, n);
	out[n] = '\0';
	return out;
}

/* ---------- good queries ---------- */

static void test_parse_basic(void **state)
{
	struct msg m;
	struct dns_query q;

	query(&m, 0xbeef, "API.Test", 1, 0);
	assert_int_equal(parse(m.b, m.n, &q), 0);
	assert_int_equal(q.id, 0xbeef);
	assert_int_equal(q.flags, 0x0100);
	assert_int_equal(q.qtype, 1);
	assert_int_equal(q.qclass, 1);
	assert_string_equal(q.name, "api.test");
	assert_int_equal(q.question_len, 1 + 3 + 1 + 4 + 1 + 4);
	/* the question points into the message, right after the header */
	assert_ptr_equal(q.question, guard_base + guard_pg - m.n + 12);
}

struct good_case {
	const char *what;
	const char *qname;   /* as sent */
	const char *expect;  /* as parsed */
	uint16_t qtype;
	int with_opt;
};

static void test_parse_good_table(void **state)
{
	char l63[64], l63u[64];
	repeat(l63, 'x', 63);
	repeat(l63u, 'X', 63);
	/* four 63-byte labels = 4*64 + root = 257 > 255; three + a 61-byte one = 255 exactly */
	static char max_name[300], max_expect[300], l61[62];
	repeat(l61, 'y', 61);
	snprintf(max_name, sizeof(max_name), "%s.%s.%s.%s", l63u, l63, l63, l61);
	snprintf(max_expect, sizeof(max_expect), "%s.%s.%s.%s", l63, l63, l63, l61);

	const struct good_case cases[] = {
		{ "A, mixed case", "WwW.Example.COM", "www.example.com", 1, 0 },
		{ "AAAA with EDNS", "api.test", "api.test", 28, 1 },
		{ "MX (parsed, answered empty by the broker)", "mail.test", "mail.test", 15, 0 },
		{ "service label", "_https._tcp.api.test", "_https._tcp.api.test", 33, 1 },
		{ "digits and hyphen", "a-1.b2.test", "a-1.b2.test", 1, 0 },
		{ "root name", "", "", 2, 0 },
		{ "single label", "localhost", "localhost", 1, 0 },
		{ "63-byte label", l63u, l63, 1, 0 },
		{ "255-byte name", max_name, max_expect, 1, 1 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct msg m;
		struct dns_query q;
		memset(&q, 0xa5, sizeof(q));
		query(&m, (uint16_t)i, cases[i].qname, cases[i].qtype, cases[i].with_opt);
		int rc = parse(m.b, m.n, &q);
		if (rc != 0)
			fail_msg("good case '%s' rejected: %d", cases[i].what, rc);
		assert_string_equal(q.name, cases[i].expect);
		assert_int_equal(q.qtype, cases[i].qtype);
		assert_int_equal(q.id, (uint16_t)i);
		assert_int_equal(q.question_len, strlen(cases[i].qname) + (cases[i].qname[0] ? 2 : 1) + 4);

		/* every strict prefix is malformed (and must not read past its end) */
		for (size_t len = 0; len < m.n; len++) {
			rc = parse(m.b, len, &q);
			if (rc != -EINVAL)
				fail_msg("'%s' truncated to %zu of %zu: got %d, want -EINVAL", cases[i].what,
					 len, m.n, rc);
		}
	}
}

/* an OPT record whose name is a pointer back to the question's name is legal */
static void test_parse_backward_pointer_in_additional(void **state)
{
	struct msg m;
	struct dns_query q;

	hdr(&m, 7, 0x0100, 1, 0, 0, 1);
	name(&m, "api.test");
	put16(&m, 1);
	put16(&m, 1);
	put16(&m, 0xc00c);
	put16(&m, 41);
	put16(&m, 512);
	put16(&m, 0);
	put16(&m, 0);
	put16(&m, 4); /* rdlength 4: one empty-ish option */
	put16(&m, 10);
	put16(&m, 0);
	assert_int_equal(parse(m.b, m.n, &q), 0);
	assert_string_equal(q.name, "api.test");
	for (size_t len = 0; len < m.n; len++)
		assert_int_equal(parse(m.b, len, &q), -EINVAL);
}

/* ---------- bad queries ---------- */

static void test_parse_bad_table(void **state)
{
	struct dns_query q;
	struct msg m;
	char l64[65];
	repeat(l64, 'z', 64);
	int n = 0;

#define BAD(what)                                                                         \
	do {                                                                              \
		int rc_ = parse(m.b, m.n, &q);                                            \
		if (rc_ != -EINVAL)                                                       \
			fail_msg("bad case '%s' accepted or wrong error: %d", what, rc_); \
		n++;                                                                      \
	} while (0)

	hdr(&m, 1, 0x0100, 1, 0, 0, 0);
	BAD("header only, qdcount 1");

	query(&m, 1, "a.test", 1, 0);
	m.b[2] |= 0x80;
	BAD("response (QR set)");

	query(&m, 1, "a.test", 1, 0);
	m.b[2] |= 0x08; /* opcode 1, IQUERY */
	BAD("opcode IQUERY");

	query(&m, 1, "a.test", 1, 0);
	m.b[2] |= 0x28; /* opcode 5, UPDATE */
	BAD("opcode UPDATE");

	query(&m, 1, "a.test", 1, 0);
	m.b[5] = 0;
	BAD("qdcount 0");

	query(&m, 1, "a.test", 1, 0);
	m.b[5] = 2;
	BAD("qdcount 2 with one question");

	hdr(&m, 1, 0x0100, 2, 0, 0, 0);
	name(&m, "a.test");
	put16(&m, 1);
	put16(&m, 1);
	name(&m, "b.test");
	put16(&m, 1);
	put16(&m, 1);
	BAD("two questions");

	query(&m, 1, "a.test", 1, 0);
	m.b[7] = 1;
	BAD("ancount 1");

	query(&m, 1, "a.test", 1, 0);
	m.b[9] = 1;
	BAD("nscount 1");

	query(&m, 1, "a.test", 1, 0);
	m.b[11] = 5;
	for (int i = 0; i < 5; i++)
		opt(&m);
	BAD("5 additional records");

	query(&m, 1, "a.test", 1, 1);
	m.b[11] = 2;
	BAD("arcount 2, one record");

	query(&m, 1, "a.test", 1, 1);
	m.b[m.n - 1] = 8; /* OPT rdlength 8 with no rdata */
	BAD("OPT rdata past the end");

	query(&m, 1, "a.test", 1, 0);
	put8(&m, 0);
	BAD("one trailing byte");

	query(&m, 1, "a.test", 1, 1);
	put16(&m, 0x4141);
	BAD("trailing bytes after OPT");

	hdr(&m, 1, 0, 1, 0, 0, 0);
	put8(&m, 64);
	memcpy(m.b + m.n, l64, 64);
	m.n += 64;
	put8(&m, 0);
	put16(&m, 1);
	put16(&m, 1);
	BAD("64-byte label (0x40 label type)");

	hdr(&m, 1, 0, 1, 0, 0, 0);
	put8(&m, 0x80 | 3);
	memcpy(m.b + m.n, "abc", 3);
	m.n += 3;
	put8(&m, 0);
	put16(&m, 1);
	put16(&m, 1);
	BAD("0x80 label type");

	{
		char l63[64], big[300];
		repeat(l63, 'x', 63);
		snprintf(big, sizeof(big), "%s.%s.%s.%s", l63, l63, l63, l63);
		query(&m, 1, big, 1, 0);
		BAD("name of 257 wire bytes");
		big[strlen(big) - 1] = '\0'; /* 256 wire bytes: still one too many */
		query(&m, 1, big, 1, 0);
		BAD("name of 256 wire bytes");
	}

	hdr(&m, 1, 0, 1, 0, 0, 0);
	put16(&m, 0xc00c);
	put16(&m, 1);
	put16(&m, 1);
	BAD("pointer to itself");

	hdr(&m, 1, 0, 1, 0, 0, 0);
	put8(&m, 1);
	put8(&m, 'a');
	put16(&m, 0xc00c);
	put16(&m, 1);
	put16(&m, 1);
	BAD("pointer loop a -> a -> a ...");

	hdr(&m, 1, 0, 1, 0, 0, 0);
	put8(&m, 1);
	put8(&m, 'a');
	put16(&m, 0xc012); /* forward to the 'b' label below */
	put16(&m, 1);
	put16(&m, 1);
	put8(&m, 1);
	put8(&m, 'b');
	put8(&m, 0);
	BAD("forward pointer");

	hdr(&m, 1, 0, 1, 0, 0, 0);
	put16(&m, 0xc002);
	put16(&m, 1);
	put16(&m, 1);
	BAD("pointer into the header");

	hdr(&m, 1, 0, 1, 0, 0, 0);
	put16(&m, 0xc3ff);
	put16(&m, 1);
	put16(&m, 1);
	BAD("pointer past the end");

	/* two labels a, b, then a pointer to b: b -> b loops */
	hdr(&m, 1, 0, 1, 0, 0, 0);
	put8(&m, 1);
	put8(&m, 'a');
	put8(&m, 1);
	put8(&m, 'b');
	put16(&m, 0xc00e);
	put16(&m, 1);
	put16(&m, 1);
	BAD("pointer loop through the second label");

	/* OPT name pointing at itself */
	query(&m, 1, "a.test", 1, 0);
	m.b[11] = 1;
	put16(&m, (uint16_t)(0xc000 | m.n));
	put16(&m, 41);
	put16(&m, 512);
	put16(&m, 0);
	put16(&m, 0);
	put16(&m, 0);
	BAD("pointer loop in the additional section");

	static const char *bad_names[] = { "a b.test", "a\x01.test", "a/b.test", "a\\.test", "a*.test",
					   "\xc3\xa9.test", "a;rm.test" };
	for (size_t i = 0; i < sizeof(bad_names) / sizeof(bad_names[0]); i++) {
		query(&m, 1, bad_names[i], 1, 0);
		BAD(bad_names[i]);
	}

	/* a '.' or NUL inside one label would make "api.test" out of one label */
	hdr(&m, 1, 0, 1, 0, 0, 0);
	put8(&m, 8);
	memcpy(m.b + m.n, "api.test", 8);
	m.n += 8;
	put8(&m, 0);
	put16(&m, 1);
	put16(&m, 1);
	BAD("dot inside a label");

	hdr(&m, 1, 0, 1, 0, 0, 0);
	put8(&m, 3);
	memcpy(m.b + m.n, "a\0b", 3);
	m.n += 3;
	put8(&m, 0);
	put16(&m, 1);
	put16(&m, 1);
	BAD("NUL inside a label");

	assert_true(n > 25);
	assert_int_equal(dns_parse_query(NULL, 12, &q), -EINVAL);
#undef BAD
}

/* ---------- replies ---------- */

static void test_reply_a_bytes(void **state)
{
	struct msg m;
	struct dns_query q;
	uint8_t out[512];
	const uint8_t addrs[8] = { 10, 99, 0, 2, 10, 99, 0, 3 };

	query(&m, 0x1234, "Api.Test", 1, 1);
	assert_int_equal(parse(m.b, m.n, &q), 0);
	int n = dns_build_reply(&q, 0, addrs, 2, 60, out, sizeof(out));

	static const uint8_t want[] = {
		0x12, 0x34,             /* id echoed */
		0x81, 0x80,             /* QR, RD echoed, RA, NOERROR */
		0, 1, 0, 2, 0, 0, 0, 0, /* 1 question, 2 answers */
		3, 'A', 'p', 'i', 4, 'T', 'e', 's', 't', 0, /* question echoed as sent */
		0, 1, 0, 1,
		0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 10, 99, 0, 2,
		0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 10, 99, 0, 3,
	};
	assert_int_equal(n, sizeof(want));
	assert_memory_equal(out, want, sizeof(want));
}

static void test_reply_aaaa_bytes(void **state)
{
	struct msg m;
	struct dns_query q;
	uint8_t out[512];
	uint8_t addr[16] = { 0xfd, 0x99, [15] = 2 };

	query(&m, 0xffff, "a.test", 28, 0);
	m.b[2] = 0; /* RD clear: must not be set in the reply */
	assert_int_equal(parse(m.b, m.n, &q), 0);
	int n = dns_build_reply(&q, 0, addr, 1, 0xffffffffu, out, sizeof(out));

	static const uint8_t want[] = {
		0xff, 0xff, 0x80, 0x80, 0, 1, 0, 1, 0, 0, 0, 0,
		1, 'a', 4, 't', 'e', 's', 't', 0, 0, 28, 0, 1,
		/* TTL clamped to 2^31-1 (RFC 2181 8) */
		0xc0, 0x0c, 0, 28, 0, 1, 0x7f, 0xff, 0xff, 0xff, 0, 16,
		0xfd, 0x99, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2,
	};
	assert_int_equal(n, sizeof(want));
	assert_memory_equal(out, want, sizeof(want));
}

/* reads a reply back the way a stub resolver would and checks every field */
static void check_reply(const uint8_t *r, size_t n, const struct msg *qm, const struct dns_query *q,
			int rcode, const uint8_t *addrs, size_t n_addrs, size_t alen, uint32_t ttl)
{
	assert_true(n >= 12 + q->question_len);
	assert_memory_equal(r, qm->b, 2);
	assert_int_equal(r[2], 0x80 | (qm->b[2] & 0x01));
	assert_int_equal(r[3], 0x80 | rcode);
	assert_int_equal(r[4] << 8 | r[5], 1);
	assert_int_equal(r[6] << 8 | r[7], n_addrs);
	assert_int_equal(r[8] | r[9] | r[10] | r[11], 0);
	assert_memory_equal(r + 12, qm->b + 12, q->question_len);
	size_t pos = 12 + q->question_len;
	for (size_t i = 0; i < n_addrs; i++) {
		assert_int_equal(r[pos], 0xc0);
		assert_int_equal(r[pos + 1], 12);
		assert_int_equal(r[pos + 2] << 8 | r[pos + 3], q->qtype);
		assert_int_equal(r[pos + 4] << 8 | r[pos + 5], 1);
		assert_int_equal((uint32_t)r[pos + 6] << 24 | r[pos + 7] << 16 | r[pos + 8] << 8 | r[pos + 9], ttl);
		assert_int_equal(r[pos + 10] << 8 | r[pos + 11], alen);
		assert_memory_equal(r + pos + 12, addrs + i * alen, alen);
		pos += 12 + alen;
	}
	assert_int_equal(pos, n);
}

static void test_reply_rcodes_and_sizes(void **state)
{
	static const int rcodes[] = { 0, 2, 3, 4, 5 };
	uint8_t addrs[16 * 8];
	for (size_t i = 0; i < sizeof(addrs); i++)
		addrs[i] = (uint8_t)(i * 7 + 1);

	for (int type = 0; type < 2; type++) {
		uint16_t qtype = type ? 28 : 1;
		size_t alen = type ? 16 : 4;
		struct msg m;
		struct dns_query q;
		query(&m, 0x4242, "x.api.test", qtype, type);
		/* parsed from m itself: the guard page is used for output below */
		assert_int_equal(dns_parse_query(m.b, m.n, &q), 0);

		for (size_t r = 0; r < sizeof(rcodes) / sizeof(rcodes[0]); r++) {
			uint8_t out[600];
			int n = dns_build_reply(&q, rcodes[r], NULL, 0, 30, out, sizeof(out));
			assert_int_equal(n, 12 + q.question_len);
			check_reply(out, (size_t)n, &m, &q, rcodes[r], NULL, 0, alen, 30);
		}
		for (size_t k = 0; k <= 8; k++) {
			uint8_t out[600];
			size_t need = 12 + q.question_len + k * (12 + alen);
			int n = dns_build_reply(&q, 0, addrs, k, 300, out, sizeof(out));
			assert_int_equal(n, need);
			check_reply(out, need, &m, &q, 0, addrs, k, alen, 300);
			/* too small at every size below what is needed; exact fit works */
			for (size_t ol = 0; ol < need; ol++)
				assert_int_equal(dns_build_reply(&q, 0, addrs, k, 300, out, ol), -ENOSPC);
			/* exact fit, with the output at the guard page: no write past it */
			uint8_t *edge = guard_base + guard_pg - need;
			assert_int_equal(dns_build_reply(&q, 0, addrs, k, 300, edge, need), (int)need);
			assert_memory_equal(edge, out, need);
		}
	}
}

static void test_reply_misuse(void **state)
{
	struct msg m;
	struct dns_query q;
	uint8_t out[512], a[4] = { 1, 2, 3, 4 };

	query(&m, 1, "a.test", 15, 0);
	assert_int_equal(parse(m.b, m.n, &q), 0);
	assert_int_equal(dns_build_reply(&q, 0, a, 1, 1, out, sizeof(out)), -EINVAL); /* MX + addrs */
	assert_true(dns_build_reply(&q, 0, NULL, 0, 1, out, sizeof(out)) > 0); /* empty answer ok */

	query(&m, 1, "a.test", 1, 0);
	assert_int_equal(parse(m.b, m.n, &q), 0);
	assert_int_equal(dns_build_reply(&q, 5, a, 1, 1, out, sizeof(out)), -EINVAL); /* REFUSED + addrs */
	assert_int_equal(dns_build_reply(&q, 0, NULL, 1, 1, out, sizeof(out)), -EINVAL);
	assert_int_equal(dns_build_reply(&q, 16, NULL, 0, 1, out, sizeof(out)), -EINVAL);
	assert_int_equal(dns_build_reply(&q, -1, NULL, 0, 1, out, sizeof(out)), -EINVAL);
	assert_int_equal(dns_build_reply(NULL, 0, NULL, 0, 1, out, sizeof(out)), -EINVAL);
	q.qclass = 3; /* CHAOS */
	assert_int_equal(dns_build_reply(&q, 0, a, 1, 1, out, sizeof(out)), -EINVAL);
	q.qclass = 1;
	q.question = NULL;
	assert_int_equal(dns_build_reply(&q, 0, a, 1, 1, out, sizeof(out)), -EINVAL);
}

/* random mutations of a good query: no crash, no over-read, and any accepted
 * message still yields a name made of hostname bytes only */
static void test_parse_mutations(void **state)
{
	struct msg base, m;
	struct dns_query q;
	unsigned seed = 12345;

	query(&base, 9, "www.api.test", 1, 1);
	for (int iter = 0; iter < 200000; iter++) {
		m = base;
		int flips = 1 + (int)(rand_r(&seed) % 4);
		for (int f = 0; f < flips; f++)
			m.b[rand_r(&seed) % m.n] = (uint8_t)rand_r(&seed);
		size_t len = m.n - (rand_r(&seed) % 3 == 0 ? rand_r(&seed) % m.n : 0);
		int rc = parse(m.b, len, &q);
		if (rc == 0) {
			assert_true(strlen(q.name) <= 253);
			for (const char *c = q.name; *c; c++)
				assert_true((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '-' ||
					    *c == '_' || *c == '.');
			assert_true(q.question_len >= 5 && q.question_len <= len - 12);
		} else {
			assert_int_equal(rc, -EINVAL);
		}
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_basic),
		cmocka_unit_test(test_parse_good_table),
		cmocka_unit_test(test_parse_backward_pointer_in_additional),
		cmocka_unit_test(test_parse_bad_table),
		cmocka_unit_test(test_reply_a_bytes),
		cmocka_unit_test(test_reply_aaaa_bytes),
		cmocka_unit_test(test_reply_rcodes_and_sizes),
		cmocka_unit_test(test_reply_misuse),
		cmocka_unit_test(test_parse_mutations),
	};
	return cmocka_run_group_tests(tests, setup_guard, teardown_guard);
}
