// SPDX-License-Identifier: MIT
/* Host globs, path globs and request-target normalisation, table-driven. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "policy.h"

static void test_host_globs(void **state)
{
	static const struct { const char *glob, *host; bool want; } t[] = {
		{ "*.github.com", "api.github.com", true },
		{ "*.github.com", "a.b.github.com", true },
		{ "*.github.com", "API.GitHub.COM", true },
		{ "*.github.com", "api.github.com.", true },
		{ "*.github.com", "github.com", false },
		{ "*.github.com", "evilgithub.com", false },
		{ "*.github.com", "github.com.evil.io", false },
		{ "*.github.com", "api.github.com.evil.io", false },
		{ "*.github.com", ".github.com", false },
		{ "*.github.com", "xgithub.com", false },
		{ "*.github.com", "", false },
		{ "github.com", "github.com", true },
		{ "github.com", "GITHUB.COM.", true },
		{ "github.com", "api.github.com", false },
		{ "github.com", "github.co", false },
		{ "github.com", "github.comm", false },
		{ "github.com.", "github.com", true },
		{ "*", "anything.example", true },
		{ "*", "localhost", true },
		{ "*", "", false },
		{ "api-*.test", "api-eu.test", true },
		{ "api-*.test", "api-.test", true },
		{ "api-*.test", "api.eu.test", false },
		{ "api-*.test", "api-eu.x.test", false },
		{ "*.*.test", "a.b.test", true },
		{ "*.*.test", "b.test", false },
		{ "api.*.test", "api.eu.test", true },
		{ "api.*.test", "api.a.b.test", false },
		{ "10.99.0.1", "10.99.0.1", true },
		{ "10.99.0.1", "10.99.0.10", false },
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		bool got = policy_host_glob_match(t[i].glob, t[i].host, strlen(t[i].host));

		if (got != t[i].want)
			fail_msg("glob '%s' vs host '%s': got %d want %d", t[i].glob, t[i].host, got, t[i].want);
	}
	/* length-bounded: the host is not NUL-terminated at host_len */
	assert_true(policy_host_glob_match("api.test", "api.testXXXX", 8));
	assert_false(policy_host_glob_match("api.test", "api.te", 6));
}

static void test_path_globs(void **state)
{
	static const struct { const char *glob, *path; bool want; } t[] = {
		{ "/v1/**", "/v1", true },
		{ "/v1/**", "/v1/", true },
		{ "/v1/**", "/v1/a", true },
		{ "/v1/**", "/v1/a/b/c", true },
		{ "/v1/**", "/v10", false },
		{ "/v1/**", "/v2/a", false },
		{ "/v1/**", "/", false },
		{ "/v1/*", "/v1/a", true },
		{ "/v1/*", "/v1/a/b", false },
		{ "/v1/*", "/v1", false },
		{ "/v1/*/x", "/v1/a/x", true },
		{ "/v1/*/x", "/v1/a/b/x", false },
		{ "/v1/**/x", "/v1/x", true },
		{ "/v1/**/x", "/v1/a/b/x", true },
		{ "/v1/**/x", "/v1/a/b/y", false },
		{ "/**/x/**/y", "/a/x/b/c/y", true },
		{ "/**/x/**/y", "/a/y/b/x", false },
		{ "/**", "/", true },
		{ "/**", "/anything/at/all", true },
		{ "/", "/", true },
		{ "/", "/a", false },
		{ "/repos/*.git", "/repos/x.git", true },
		{ "/repos/*.git", "/repos/x.gitx", false },
		{ "/Admin", "/admin", false },
		{ "/a/b", "/a/b", true },
		{ "/a/b", "/a/b/", false },
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		bool got = policy_path_glob_match(t[i].glob, t[i].path, strlen(t[i].path));

		if (got != t[i].want)
			fail_msg("glob '%s' vs path '%s': got %d want %d", t[i].glob, t[i].path, got, t[i].want);
	}
}

static void test_normalise(void **state)
{
	static const struct { const char *in, *out; int err; } t[] = {
		{ "/v1/../admin", "/admin", 0 },
		{ "/v1/%2e%2e/admin", "/admin", 0 },
		{ "/v1/%2E%2E/admin", "/admin", 0 },
		{ "/v1/.%2e/admin", "/admin", 0 },
		{ "/v1/./a", "/v1/a", 0 },
		{ "/a//b///c", "/a/b/c", 0 },
		{ "/a/b/", "/a/b/", 0 },
		{ "/a/b/.", "/a/b/", 0 },
		{ "/a/b/..", "/a/", 0 },
		{ "/a/..", "/", 0 },
		{ "/", "/", 0 },
		{ "", "/", 0 },
		{ "/%61%62c", "/abc", 0 },
		{ "/a%2fb", "/a%2Fb", 0 },
		{ "/a%2Fb/../c", "/c", 0 },
		{ "/a%20b", "/a%20b", 0 },
		{ "/a%7e", "/a~", 0 },
		{ "/x?y=/../../z", "/x", 0 },
		{ "/x#frag", "/x", 0 },
		{ "http://host.test/a/../b?q", "/b", 0 },
		{ "https://host.test", "/", 0 },
		{ "*", "*", 0 },
		{ "/..", NULL, -EINVAL },
		{ "/a/../..", NULL, -EINVAL },
		{ "/%2e%2e/x", NULL, -EINVAL },
		{ "/a%", NULL, -EINVAL },
		{ "/a%2", NULL, -EINVAL },
		{ "/a%zz", NULL, -EINVAL },
		{ "/a%2g", NULL, -EINVAL },
		{ "/a b", NULL, -EINVAL },
		{ "/a\tb", NULL, -EINVAL },
		{ "/a\x80", NULL, -EINVAL },
		{ "relative/path", NULL, -EINVAL },
		{ "ftp://x/y", NULL, -EINVAL },
	};
	char out[256];

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		int r = policy_path_normalise(t[i].in, strlen(t[i].in), out, sizeof(out));

		if (t[i].err) {
			if (r != t[i].err)
				fail_msg("normalise '%s': got %d want %d", t[i].in, r, t[i].err);
			continue;
		}
		if (r < 0 || strcmp(out, t[i].out) || (size_t)r != strlen(t[i].out))
			fail_msg("normalise '%s': got %d '%s' want '%s'", t[i].in, r, r < 0 ? "" : out, t[i].out);
	}
	/* too small an output buffer is -ENOSPC, never an overflow */
	assert_int_equal(policy_path_normalise("/abcdef", 7, out, 4), -ENOSPC);
	/* length-bounded input */
	assert_int_equal(policy_path_normalise("/abc/../zzz", 4, out, sizeof(out)), 4);
	assert_string_equal(out, "/abc");
}

/* Targets an upstream may read as another path than the normalised one. */
static void test_ambiguous(void **state)
{
	static const char *const yes[] = {
		"/repos/x#/../../admin", "/a#b", "/a?q=1#f",
		"/repos/..%2F..%2Fadmin", "/repos/..%2f..%2fadmin", "/repos/x/..\\..\\admin",
		"/repos/%2E%2E%2Fadmin", "/repos/x%5C..%5Cadmin", "/a\\.\\b", "/a/../b%2Fc",
		"http://h/repos/..%2Fadmin",
		"/a/../b", "/a/./b", "/v1/%2E%2E/x", "/v1/%2e/x", "/a/..", "/a/.", "/..", "//v1/admin",
		"//", "http://h//admin", "/a/..?q", "/admin/../v1/x",
		/* a ';' parameter is dropped before dots are resolved (Tomcat) */
		"/public/..;/admin/x", "/public/%2e%2e;/admin", "/public/..%3b/admin", "/p/..%3Bx/a",
		"/p/.;x/a", "/p/..;", "/p\\..;a\\b",
		/* NUL ends the path for C servers */
		"/public/..%00/admin", "/a%00", "/a/b%00.json",
	};
	static const char *const no[] = {
		"/", "/a/b", "/api/v4/projects/group%2Fproject", "/a//b", "/a/b/",
		"/a%2Fb/c", "/a\\b", "/x/...%2Fy", "/x/.a%2Fb", "/a?x=..%2F..%2F", "/a?p=\\..\\",
		"/a/.well-known/x", "/a/..b", "/a?//x", "*", "http://h/a%2Fb", "http://h", "http://h/",
		"/v1/a.b/c..d", "/a;b/c", "/a/x;..", "/a/;/b", "/a/...;x/b", "/a?x=%00",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
		if (!policy_target_ambiguous(yes[i], strlen(yes[i])))
			fail_msg("'%s' should be ambiguous", yes[i]);
	for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
		if (policy_target_ambiguous(no[i], strlen(no[i])))
			fail_msg("'%s' should not be ambiguous", no[i]);
}

static void test_wide(void **state)
{
	static const char *const in[][2] = {
		{ "/admin;x/secret", "/admin/secret" }, { "/admin%3Bx/a;b", "/admin/a" },
		{ "/A%2Fb%5Cc\\D", "/a/b/c/d" }, { "/x/;p/y", "/x/y" }, { "/", "/" },
		{ "/a/", "/a/" }, { "/%2F%2Fa", "/a" }, { "/a%20b", "/a%20b" },
	};
	char out[64];

	(void)state;
	for (size_t i = 0; i < sizeof(in) / sizeof(in[0]); i++) {
		int n = policy_path_wide(in[i][0], strlen(in[i][0]), out, sizeof(out));

		if (n != (int)strlen(in[i][1]) || strcmp(out, in[i][1]))
			fail_msg("wide view of '%s' is '%s' (%d), want '%s'", in[i][0], out, n, in[i][1]);
	}
	assert_int_equal(policy_path_wide("/abc", 4, out, 5), -EINVAL);
	assert_true(policy_path_glob_match_fold("/Admin/**", "/aDMIN/x", 8));
	assert_false(policy_path_glob_match("/Admin/**", "/aDMIN/x", 8));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_host_globs),
		cmocka_unit_test(test_path_globs),
		cmocka_unit_test(test_normalise),
		cmocka_unit_test(test_ambiguous),
		cmocka_unit_test(test_wide),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
