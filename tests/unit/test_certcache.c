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
#include <openssl/pem.h>
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

/* Verifies leaf against the CA as a strict client does (X509_V_FLAG_X509_STRICT,
 * Python 3.13's default), for name. */
static int strict_verify(const struct ca *a, X509 *leaf, const char *name)
{
	X509_STORE *st = X509_STORE_new();
	X509_STORE_CTX *ctx = X509_STORE_CTX_new();
	X509_VERIFY_PARAM *vp;
	int ok;

	X509_STORE_add_cert(st, a->cert);
	X509_STORE_CTX_init(ctx, st, leaf, NULL);
	vp = X509_STORE_CTX_get0_param(ctx);
	X509_VERIFY_PARAM_set_flags(vp, X509_V_FLAG_X509_STRICT);
	X509_VERIFY_PARAM_set_purpose(vp, X509_PURPOSE_SSL_SERVER);
	X509_VERIFY_PARAM_set1_host(vp, name, 0);
	ok = X509_verify_cert(ctx);
	if (ok != 1)
		print_message("verify %s: %s\n", name, X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx)));
	X509_STORE_CTX_free(ctx);
	X509_STORE_free(st);
	return ok;
}

/* Names over 64 bytes get no CN: their SAN is then critical, or strict
 * clients refuse the leaf. And no leaf outlives the CA. */
static void test_leaf_strict_and_bounded(void **state)
{
	const char *lng = "a-very-long-bucket-name-for-some-artifacts-0123456789.s3.us-east-1.amazonaws.com";
	struct ca a;
	char err[512], cadir[128];
	X509 *leaf;

	snprintf(cadir, sizeof(cadir), "%s/strict", dir);
	assert_int_equal(ca_load_or_create(&a, cadir, err, sizeof(err)), 0);
	assert_true(strlen(lng) > 64);
	leaf = ca_mint(&a, lng, 3600);
	assert_non_null(leaf);
	assert_int_equal(strict_verify(&a, leaf, lng), 1);
	X509_free(leaf);
	leaf = ca_mint(&a, "api.example.com", 3600);
	assert_int_equal(strict_verify(&a, leaf, "api.example.com"), 1);
	X509_free(leaf);
	/* 100 years asked: the CA's end date given */
	leaf = ca_mint(&a, "api.example.com", 100L * 365 * 86400);
	assert_non_null(leaf);
	assert_int_equal(ASN1_TIME_compare(X509_get0_notAfter(leaf), X509_get0_notAfter(a.cert)), 0);
	X509_free(leaf);
	ca_fini(&a);
}

/* A CA key others could read is refused, not quietly chmod'ed; a CA
 * certificate that cannot sign (CA:FALSE) or has expired is refused at start. */
static void test_ca_refused_states(void **state)
{
	struct ca a;
	char err[512], cadir[128], path[160];
	EVP_PKEY *k;
	X509 *x;
	FILE *f;

	snprintf(cadir, sizeof(cadir), "%s/loose", dir);
	assert_int_equal(ca_load_or_create(&a, cadir, err, sizeof(err)), 0);
	ca_fini(&a);
	snprintf(path, sizeof(path), "%s/ca.key", cadir);
	assert_int_equal(chmod(path, 0644), 0);
	assert_int_equal(ca_load_or_create(&a, cadir, err, sizeof(err)), -EPERM);
	assert_non_null(strstr(err, "may have been copied"));

	for (int bad = 0; bad < 2; bad++) {
		snprintf(cadir, sizeof(cadir), "%s/notca%d", dir, bad);
		assert_int_equal(mkdir(cadir, 0700), 0);
		k = EVP_EC_gen("P-256");
		x = X509_new();
		X509_set_version(x, 2);
		ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
		X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
					   (const unsigned char *)"not a ca", -1, -1, 0);
		X509_set_issuer_name(x, X509_get_subject_name(x));
		X509_gmtime_adj(X509_getm_notBefore(x), bad ? -7200 : -60);
		X509_gmtime_adj(X509_getm_notAfter(x), bad ? -3600 : 86400);
		if (bad) {
			X509V3_CTX v;
			X509_EXTENSION *e;

			X509V3_set_ctx(&v, x, x, NULL, NULL, 0);
			e = X509V3_EXT_conf_nid(NULL, &v, NID_basic_constraints, "critical,CA:TRUE");
			X509_add_ext(x, e, -1);
			X509_EXTENSION_free(e);
			e = X509V3_EXT_conf_nid(NULL, &v, NID_key_usage, "critical,keyCertSign");
			X509_add_ext(x, e, -1);
			X509_EXTENSION_free(e);
		}
		X509_set_pubkey(x, k);
		assert_true(X509_sign(x, k, EVP_sha256()) > 0);
		snprintf(path, sizeof(path), "%s/ca.key", cadir);
		f = fopen(path, "w");
		assert_non_null(f);
		assert_int_equal(fchmod(fileno(f), 0600), 0);
		PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL);
		fclose(f);
		snprintf(path, sizeof(path), "%s/ca.crt", cadir);
		f = fopen(path, "w");
		assert_non_null(f);
		PEM_write_X509(f, x);
		fclose(f);
		EVP_PKEY_free(k);
		X509_free(x);
		assert_int_equal(ca_load_or_create(&a, cadir, err, sizeof(err)), -EINVAL);
		assert_non_null(strstr(err, bad ? "expired" : "not a CA certificate"));
	}
}

/* ca_publish writes over the run dir's ca.crt in place (running sandboxes
 * have that inode bind-mounted) and leaves exactly the certificate. */
static void test_publish_in_place(void **state)
{
	struct ca a;
	char err[512], cadir[128], run[128], path[160], junk[8192], got[8192];
	struct stat st1, st2;
	FILE *f;
	BIO *m;
	char *pem;
	long pl;
	size_t n;

	snprintf(cadir, sizeof(cadir), "%s/pub", dir);
	snprintf(run, sizeof(run), "%s/pubrun", dir);
	assert_int_equal(ca_load_or_create(&a, cadir, err, sizeof(err)), 0);
	assert_int_equal(ca_publish(&a, run, NULL, err, sizeof(err)), 0);
	snprintf(path, sizeof(path), "%s/ca.crt", run);
	assert_int_equal(stat(path, &st1), 0);
	memset(junk, 'x', sizeof(junk));
	f = fopen(path, "r+");
	assert_non_null(f);
	assert_int_equal(fwrite(junk, 1, sizeof(junk), f), sizeof(junk));
	fclose(f);
	assert_int_equal(ca_publish(&a, run, NULL, err, sizeof(err)), 0);
	assert_int_equal(stat(path, &st2), 0);
	assert_int_equal(st1.st_ino, st2.st_ino);
	m = BIO_new(BIO_s_mem());
	PEM_write_bio_X509(m, a.cert);
	pl = BIO_get_mem_data(m, &pem);
	f = fopen(path, "r");
	n = fread(got, 1, sizeof(got), f);
	fclose(f);
	assert_int_equal(n, (size_t)pl);
	assert_memory_equal(got, pem, n);
	BIO_free(m);
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
		cmocka_unit_test(test_leaf_strict_and_bounded),
		cmocka_unit_test(test_ca_refused_states),
		cmocka_unit_test(test_publish_in_place),
		cmocka_unit_test(test_cache_lru),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
