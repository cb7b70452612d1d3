// SPDX-License-Identifier: MIT
/*
 * Regression (found by fuzz_sni): a server_name ending in two dots ("x..")
 * passed sni_parse_ext as "x.", a name with a trailing dot, which the header
 * promises never to return. Any name ending in an empty label is malformed.
 */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "sni.h"

/* The extension body (ServerNameList) for one host_name entry, in a heap buffer of exact size. */
static uint8_t *ext(const char *name, size_t *len)
{
	size_t n = strlen(name);
	uint8_t *p = malloc(n + 5);

	assert_non_null(p);
	p[0] = (uint8_t)((n + 3) >> 8);
	p[1] = (uint8_t)(n + 3);
	p[2] = 0;
	p[3] = (uint8_t)(n >> 8);
	p[4] = (uint8_t)n;
	memcpy(p + 5, name, n);
	*len = n + 5;
	return p;
}

static int parse(const char *name, char *out, size_t outlen)
{
	size_t len;
	uint8_t *p = ext(name, &len);
	int r = sni_parse_ext(p, len, out, outlen);

	free(p);
	return r;
}

static void t_double_dot_refused(void **state)
{
	char out[256];

	assert_int_equal(parse("ap3et_..", out, sizeof(out)), -EINVAL);
	assert_int_equal(parse("api.test..", out, sizeof(out)), -EINVAL);
	assert_int_equal(parse(".", out, sizeof(out)), -EINVAL);
	assert_false(sni_name_valid("x.", 2));
}

static void t_one_trailing_dot_still_stripped(void **state)
{
	char out[256];

	assert_int_equal(parse("API.Test.", out, sizeof(out)), 8);
	assert_string_equal(out, "api.test");
	assert_true(sni_name_valid("api.test", 8));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(t_double_dot_refused),
		cmocka_unit_test(t_one_trailing_dot_still_stripped),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
