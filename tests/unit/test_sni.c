// SPDX-License-Identifier: MIT
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "sni.h"

/* Builds a ServerNameList with one entry of type t. */
static size_t mk(uint8_t *out, uint8_t t, const char *name)
{
	size_t n = strlen(name);

	out[0] = (uint8_t)((n + 3) >> 8);
	out[1] = (uint8_t)(n + 3);
	out[2] = t;
	out[3] = (uint8_t)(n >> 8);
	out[4] = (uint8_t)n;
	memcpy(out + 5, name, n);
	return n + 5;
}

static void test_table(void **state)
{
	static const struct { const char *in; int rc; const char *out; } cases[] = {
		{ "api.test", 8, "api.test" },
		{ "API.Example.COM", 15, "api.example.com" },
		{ "trailing.dot.", 12, "trailing.dot" },
		{ "under_score.test", 16, "under_score.test" },
		{ "bad host", -EINVAL, NULL },
		{ "a..b", -EINVAL, NULL },
		{ ".lead", -EINVAL, NULL },
		{ "evil\nhost", -EINVAL, NULL },
		{ "x,DNS:other", -EINVAL, NULL },
		{ "", -EINVAL, NULL },
		/* addresses are not names; the octal and hex forms read differently by
		 * the host check (decimal) and the resolver */
		{ "1.2.3.4", -EINVAL, NULL },
		{ "0177.0.0.1", -EINVAL, NULL },
		{ "010.010.010.010", -EINVAL, NULL },
		{ "0x7f000001", -EINVAL, NULL },
		{ "2130706433", -EINVAL, NULL },
		{ "host.123", -EINVAL, NULL },
		{ "1.2.3.4.", -EINVAL, NULL },
		{ "123.example.com", 15, "123.example.com" },
		{ "1password.com", 13, "1password.com" },
		{ "s3.amazonaws.com", 16, "s3.amazonaws.com" },
	};
	uint8_t buf[600];
	char out[256];
	size_t i, n;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		n = mk(buf, 0, cases[i].in);
		assert_int_equal(sni_parse_ext(buf, n, out, sizeof(out)), cases[i].rc);
		if (cases[i].out)
			assert_string_equal(out, cases[i].out);
	}
}

static void test_truncated_every_offset(void **state)
{
	uint8_t buf[64];
	char out[256];
	size_t n = mk(buf, 0, "api.test"), cut;

	for (cut = 0; cut < n; cut++) {
		/* Each prefix on a heap buffer of exactly that size: ASan catches over-reads. */
		uint8_t *p = malloc(cut ? cut : 1);

		memcpy(p, buf, cut);
		assert_int_equal(sni_parse_ext(p, cut, out, sizeof(out)), -EINVAL);
		free(p);
	}
	assert_int_equal(sni_parse_ext(buf, n, out, sizeof(out)), 8);
}

static void test_no_host_name(void **state)
{
	uint8_t buf[64];
	char out[256];
	size_t n = mk(buf, 7, "whatever");

	assert_int_equal(sni_parse_ext(buf, n, out, sizeof(out)), 0);
	/* Empty list. */
	buf[0] = 0;
	buf[1] = 0;
	assert_int_equal(sni_parse_ext(buf, 2, out, sizeof(out)), 0);
}

static void test_entry_overruns_list(void **state)
{
	uint8_t buf[64];
	char out[256];
	size_t n = mk(buf, 0, "api.test");

	buf[4] += 5; /* name length beyond the list */
	assert_int_equal(sni_parse_ext(buf, n, out, sizeof(out)), -EINVAL);
}

static void test_small_output(void **state)
{
	uint8_t buf[64];
	char out[8];
	size_t n = mk(buf, 0, "api.test");

	assert_int_equal(sni_parse_ext(buf, n, out, sizeof(out)), -ENOSPC);
}

static void test_long_label(void **state)
{
	char name[80];
	uint8_t buf[128];
	char out[256];

	memset(name, 'a', 64);
	name[64] = 0;
	assert_int_equal(sni_parse_ext(buf, mk(buf, 0, name), out, sizeof(out)), -EINVAL);
	name[63] = 0;
	assert_int_equal(sni_parse_ext(buf, mk(buf, 0, name), out, sizeof(out)), 63);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_table),
		cmocka_unit_test(test_truncated_every_offset),
		cmocka_unit_test(test_no_host_name),
		cmocka_unit_test(test_entry_overruns_list),
		cmocka_unit_test(test_small_output),
		cmocka_unit_test(test_long_label),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
