// SPDX-License-Identifier: MIT
/* Audit lines written to a pipe (--audit - or the stderr fallback) by several
 * workers: each write() is whole lines of at most PIPE_BUF bytes, so the
 * kernel never interleaves two workers' lines. */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "broker.h"

/* n lines of len bytes each (newline included). */
static char *lines(size_t n, size_t len)
{
	char *p = malloc(n * len);
	size_t i;

	for (i = 0; i < n * len; i++)
		p[i] = (i % len == len - 1) ? '\n' : 'a' + (char)(i % 26);
	return p;
}

static void test_chunks_are_whole_lines(void **state)
{
	size_t len, n = 200, off, k, total;
	char *p;

	for (len = 2; len < 3 * PIPE_BUF; len = len * 3 + 1) {
		p = lines(n, len);
		total = n * len;
		for (off = 0; off < total; off += k) {
			k = audit_pipe_chunk(p + off, total - off);
			assert_true(k > 0);
			assert_int_equal(p[off + k - 1], '\n');           /* ends a line */
			if (len <= PIPE_BUF)
				assert_true(k <= PIPE_BUF);                /* atomic on a pipe */
			else
				assert_int_equal(k, len);                  /* a long line alone */
		}
		assert_int_equal(off, total);
		free(p);
	}
}

static void test_small_batch_in_one_write(void **state)
{
	char *p = lines(10, 100);

	assert_int_equal(audit_pipe_chunk(p, 1000), 1000);
	free(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_chunks_are_whole_lines),
		cmocka_unit_test(test_small_batch_in_one_write),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
