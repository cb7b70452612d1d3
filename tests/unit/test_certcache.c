// SPDX-License-Identifier: MIT
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>
#include <openssl/x509v3.h>
#include "ca.h"

static char dir[64];

static int setup(void **state)
{
	strcpy(dir, "/tmp/sluice-certcache.XXXXXX");
	return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd);
}

static void test_ca_create_and_reload(void **state)
{
	struct ca a, b;
	char err[512], cadir[128], path[160], run[128];
	struct stat st;

	snprintf(cadir, sizeof(cadir), "%s/ca", dir);
	assert_int_equal(ca_load_or_create(&a, cadir, err, sizeof(err)), 0);
	assert_int_equal(stat(cadir, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0700);
	snprintf(path, sizeof(path), "%s/ca.key", cadir);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	/* Second start: the same CA, not a new one. */
	assert_int_equal(ca_load_or_create(&b, cadir, err, sizeof(err)), 0);
	assert_int_equal(X509_cmp(a.cert, b.cert), 0);
	/* Published files. */
	snprintf(run, sizeof(run), "%s/run", dir);
	assert_int_equal(ca_publish(&a, run, NULL, err, sizeof(err)), 0);
	snprintf(path, sizeof(path), "%s/ca.crt", run);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0644);
	snprintf(path, sizeof(path), "%s/ca-bundle.pem", run);
	assert_int_equal(stat(path, &st), 0);
	ca_fini(&a);
	ca_fini(&b);
}


/* Brokers of several sandboxes starting at once on a fresh CA directory: one
 * CA is created and every one of them loads it (none reads a half-written file). */
static void test_ca_concurrent_first_start(void **state)
{
	char err[512], cadir[128], path[160];
	unsigned char fp[8][32];
	unsigned len;
	int i, k, status, pipes[8][2];
	pid_t pids[8];
	struct ca a;

	for (k = 0; k < 5; k++) {
		snprintf(cadir, sizeof(cadir), "%s/ca-race%d", dir, k);
		for (i = 0; i < 8; i++) {
			assert_int_equal(pipe(pipes[i]), 0);
			pids[i] = fork();
			assert_true(pids[i] >= 0);
			if (!pids[i]) {
				unsigned char md[32];
				unsigned n = 0;

				if (ca_load_or_create(&a, cadir, err, sizeof(err)) ||
				    !X509_digest(a.cert, EVP_sha256(), md, &n) ||
				    write(pipes[i][1], md, 32) != 32)
					_exit(1);
				_exit(0);
			}
			close(pipes[i][1]);
		}
		for (i = 0; i < 8; i++) {
			assert_int_equal(waitpid(pids[i], &status, 0), pids[i]);
			assert_true(WIFEXITED(status));
			assert_int_equal(WEXITSTATUS(status), 0);
			assert_int_equal(read(pipes[i][0], fp[i], 32), 32);
			close(pipes[i][0]);
		}
		for (i = 1; i < 8; i++)
			assert_memory_equal(fp[0], fp[i], 32);
		/* And that CA is the one on disk. */
		assert_int_equal(ca_load_or_create(&a, cadir, err, sizeof(err)), 0);
		assert_true(X509_digest(a.cert, EVP_sha256(), fp[0], &len));
		assert_memory_equal(fp[0], fp[1], 32);
		snprintf(path, sizeof(path), "%s/ca.key", cadir);
		ca_fini(&a);
	}
}

static void test_ca_mismatch_refused(void **state)
{
	struct ca a, b;
	char err[512], d1[128], d2[128], cmd[400];

	snprintf(d1, sizeof(d1), "%s/m1", dir);
	snprintf(d2, sizeof(d2), "%s/m2", dir);
	assert_int_equal(ca_load_or_create(&a, d1, err, sizeof(err)), 0);
	assert_int_equal(ca_load_or_create(&b, d2, err, sizeof(err)), 0);
	ca_fini(&a);
	ca_fini(&b);
	snprintf(cmd, sizeof(cmd), "cp %s/ca.crt %s/ca.crt", d2, d1);
	assert_int_equal(system(cmd), 0);
	assert_int_equal(ca_load_or_create(&a, d1, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "do not match"));
}

static void test_leaf_fields(void **state)
{
	struct ca a;
	char err[512], cadir[128];
	X509 *leaf;

	snprintf(cadir, sizeof(cadir), "%s/leaf", dir);
	assert_int_equal(ca_load_or_create(&a, cadir, err, sizeof(err)), 0);
	leaf = ca_mint(&a, "api.example.com", 3600);
	assert_non_null(leaf);
	assert_int_equal(X509_verify(leaf, a.key), 1);                 /* signed by the CA */
	assert_int_equal(X509_check_host(leaf, "api.example.com", 0, 0, NULL), 1);
	assert_int_not_equal(X509_check_host(leaf, "other.example.com", 0, 0, NULL), 1);
	assert_int_equal(X509_check_ca(leaf), 0);                       /* not a CA */
	assert_int_equal(EVP_PKEY_eq(X509_get0_pubkey(leaf), a.leaf_key), 1);
	assert_true(X509_cmp_time(X509_get0_notAfter(leaf), NULL) > 0);
	X509_free(leaf);
	ca_fini(&a);
}

static void test_cache_lru(void **state)
{
	struct ca a;
	char err[512], cadir[128];
	struct certcache *cc;
	X509 *x1, *x;

	snprintf(cadir, sizeof(cadir), "%s/lru", dir);
	assert_int_equal(ca_load_or_create(&a, cadir, err, sizeof(err)), 0);
	cc = certcache_new(&a, 2, 3600);
	assert_non_null(cc);
	x1 = certcache_get(cc, "a.test");
	assert_non_null(x1);
	assert_ptr_equal(certcache_get(cc, "a.test"), x1);     /* hit: no new signature */
	assert_int_equal(certcache_mints(cc), 1);
	assert_non_null(certcache_get(cc, "b.test"));
	assert_ptr_equal(certcache_get(cc, "a.test"), x1);     /* a is now most recent */
	assert_non_null(certcache_get(cc, "c.test"));          /* evicts b, the LRU */
	assert_int_equal(certcache_size(cc), 2);
	assert_int_equal(certcache_mints(cc), 3);
	assert_ptr_equal(certcache_get(cc, "a.test"), x1);
	assert_int_equal(certcache_mints(cc), 3);
	x = certcache_get(cc, "b.test");                        /* re-minted after eviction */
	assert_non_null(x);
	assert_int_equal(certcache_mints(cc), 4);
	assert_int_equal(X509_check_host(x, "b.test", 0, 0, NULL), 1);
	certcache_free(cc);
	ca_fini(&a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ca_create_and_reload),
		cmocka_unit_test(test_ca_concurrent_first_start),
		cmocka_unit_test(test_ca_mismatch_refused),
		cmocka_unit_test(test_leaf_fields),
		cmocka_unit_test(test_cache_lru),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
