// SPDX-License-Identifier: MIT
/* Audit lines written to a pipe (--audit - or the stderr fallback) by several
 * workers: each write() is whole lines of at most PIPE_BUF bytes, so the
 * kernel never interleaves two workers' lines. */
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/resource.h>
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

static void put_line(struct buf *o, int i, size_t len)
{
	char l[512];
	int n = snprintf(l, sizeof(l), "{\"n\":%d,\"pad\":\"", i);

	memset(l + n, 'x', len - (size_t)n - 3);
	memcpy(l + len - 3, "\"}\n", 3);
	assert_int_equal(buf_append(o, l, len), 0);
}

static size_t slurp(int fd, char *out, size_t cap)
{
	size_t got = 0;
	ssize_t r;

	while (got < cap - 1 && (r = read(fd, out + got, cap - 1 - got)) > 0)
		got += (size_t)r;
	out[got] = 0;
	return got;
}

/*
 * A write that stops mid-line (file size limit here; a full disk alike): the
 * lines the log took whole stay there only, the torn one and the rest go to
 * stderr whole, and the next line in the log starts on a line of its own.
 */
static void test_torn_write(void **state)
{
	char path[] = "/tmp/sluice-audit-XXXXXX", got[8192], *line, *save;
	struct rlimit old, lim;
	struct broker b;
	int fd, pfd[2], saved_err, i, n_whole = 0, n_frag = 0, seen[24] = {0};
	size_t len;

	(void)state;
	fd = mkstemp(path);
	assert_true(fd >= 0);
	unlink(path);
	assert_int_equal(fcntl(fd, F_SETFL, O_APPEND), 0);
	assert_int_equal(pipe(pfd), 0);
	saved_err = dup(STDERR_FILENO);
	assert_int_equal(dup2(pfd[1], STDERR_FILENO), STDERR_FILENO);
	memset(&b, 0, sizeof(b));
	audit_set_fd(&b, fd);
	signal(SIGXFSZ, SIG_IGN);
	assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
	lim = old;
	lim.rlim_cur = 1000;
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);

	for (i = 0; i < 20; i++)
		put_line(&b.audit_buf, i, 150); /* 6 whole lines fit in 1000 bytes, the 7th in part */
	audit_flush(&b);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
	for (i = 20; i < 22; i++)
		put_line(&b.audit_buf, i, 150);
	audit_flush(&b);

	assert_int_equal(dup2(saved_err, STDERR_FILENO), STDERR_FILENO);
	close(saved_err);
	close(pfd[1]);
	slurp(pfd[0], got, sizeof(got));
	close(pfd[0]);
	assert_non_null(strstr(got, "Couldn't write the audit log"));
	/* stderr: lines 6..19, whole, once each. */
	for (line = strtok_r(got, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		if (sscanf(line, "{\"n\":%d,", &i) == 1) {
			assert_int_equal(strlen(line), 149);
			assert_true(i >= 6 && i < 20);
			seen[i]++;
		}
	}
	/* the log: lines 0..5 whole, the fragment of 6 alone, then 20 and 21. */
	assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
	len = slurp(fd, got, sizeof(got));
	assert_int_equal(len, 1000 + 1 + 300);
	for (line = strtok_r(got, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		assert_int_equal(sscanf(line, "{\"n\":%d,", &i), 1);
		if (strlen(line) == 149) {
			assert_true(i < 6 || i >= 20);
			seen[i]++;
			n_whole++;
		} else {
			assert_int_equal(i, 6); /* the torn line, and nothing glued to it */
			assert_int_equal(strlen(line), 100);
			n_frag++;
		}
	}
	assert_int_equal(n_whole, 8);
	assert_int_equal(n_frag, 1);
	for (i = 0; i < 22; i++)
		assert_int_equal(seen[i], 1);
	assert_int_equal(audit_resume_at("ab\ncd\n", 0), 0);
	assert_int_equal(audit_resume_at("ab\ncd\n", 3), 3);
	assert_int_equal(audit_resume_at("ab\ncd\n", 5), 3);
	buf_free(&b.audit_buf);
	close(fd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_chunks_are_whole_lines),
		cmocka_unit_test(test_small_batch_in_one_write),
		cmocka_unit_test(test_torn_write),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
