// SPDX-License-Identifier: MIT
/*
 * What sluiced's workers share across threads: the certificate cache (one for
 * all, its borrowed leaves must outlive another worker's eviction) and the
 * resolver (one set of threads, one handle per event loop: a job's callback
 * runs only on the loop that submitted it, and a handle freed with jobs
 * still running is never written to after). ASan catches a use after free.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>
#include <openssl/x509v3.h>
#include "ca.h"
#include "resolve.h"

static char dir[64];

static int setup(void **state)
{
	strcpy(dir, "/tmp/sluice-workers.XXXXXX");
	return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd);
}

/* ---- certificate cache ---- */

#define CC_THREADS 4
#define CC_ROUNDS 300
#define CC_NAMES 6

struct cc_arg {
	struct certcache *cc;
	unsigned seed;
	int bad;
};

static void *cc_thread(void *p)
{
	struct cc_arg *a = p;
	char name[32];
	int i;

	for (i = 0; i < CC_ROUNDS; i++) {
		X509 *x;

		snprintf(name, sizeof(name), "h%u.test", (unsigned)rand_r(&a->seed) % CC_NAMES);
		x = certcache_get(a->cc, name);
		/* The other threads evict meanwhile (capacity 2 of 6 names): the
		 * borrowed leaf must stay whole until this thread's next call. */
		sched_yield();
		if (!x || X509_check_host(x, name, 0, 0, NULL) != 1)
			a->bad++;
	}
	certcache_thread_done();
	return NULL;
}

static void test_certcache_threads(void **state)
{
	struct cc_arg args[CC_THREADS];
	pthread_t th[CC_THREADS];
	char err[512], cadir[128];
	struct certcache *cc;
	struct ca ca;
	int i;

	snprintf(cadir, sizeof(cadir), "%s/ca", dir);
	assert_int_equal(ca_load_or_create(&ca, cadir, err, sizeof(err)), 0);
	cc = certcache_new(&ca, 2, 3600);
	assert_non_null(cc);
	for (i = 0; i < CC_THREADS; i++) {
		args[i].cc = cc;
		args[i].seed = (unsigned)i * 7919u + 1;
		args[i].bad = 0;
		assert_int_equal(pthread_create(&th[i], NULL, cc_thread, &args[i]), 0);
	}
	for (i = 0; i < CC_THREADS; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(args[i].bad, 0);
	}
	assert_true(certcache_size(cc) <= 2);
	assert_true(certcache_mints(cc) >= CC_NAMES);
	certcache_free(cc);
	ca_fini(&ca);
}

/* ---- resolver handles ---- */

struct rs_ctx {
	struct resolver *owner;     /* the handle that submitted */
	struct resolver **current;  /* the handle dispatching now */
	int *wrong, *done;
};

static void rs_done(void *p, const struct rs_result *r)
{
	struct rs_ctx *c = p;

	if (c->owner != *c->current || r->err || r->n != 1)
		(*c->wrong)++;
	(*c->done)++;
}

/* Dispatches r until want callbacks ran on it (or 10 s). */
static void pump(struct resolver *r, struct resolver **current, int *done, int want)
{
	struct pollfd pfd = { .fd = resolver_eventfd(r), .events = POLLIN };
	int i;

	for (i = 0; i < 1000 && *done < want; i++) {
		if (poll(&pfd, 1, 10) > 0) {
			*current = r;
			resolver_dispatch(r);
			*current = NULL;
		}
	}
}

static void test_resolver_handles(void **state)
{
	static struct rs_ctx ctx1[40], ctx2[40], ctx3[40];
	char err[512], hosts[128];
	struct resolver *r1, *r2, *r3, *current = NULL;
	struct rs_result res;
	int wrong = 0, done1 = 0, done2 = 0, done3 = 0, i;
	FILE *f;

	/* names only from a hosts file and address literals: no query leaves */
	snprintf(hosts, sizeof(hosts), "%s/hosts", dir);
	f = fopen(hosts, "w");
	assert_non_null(f);
	fputs("10.99.0.7 shared.test\n", f);
	fclose(f);
	r1 = resolver_new(hosts, 2, err, sizeof(err));
	assert_non_null(r1);
	assert_int_equal(resolver_add_override(r1, "pinned.test:10.99.0.8", err, sizeof(err)), 0);
	r2 = resolver_clone(r1, err, sizeof(err));
	r3 = resolver_clone(r1, err, sizeof(err));
	assert_non_null(r2);
	assert_non_null(r3);
	assert_int_not_equal(resolver_eventfd(r1), resolver_eventfd(r2));

	/* names, overrides and own addresses are the same through every handle */
	assert_int_equal(resolver_lookup_fast(r2, "shared.test", &res), 0);
	assert_int_equal(res.a[0].addr[3], 7);
	assert_int_equal(resolver_lookup_fast(r3, "pinned.test", &res), 0);
	assert_true(res.pinned);
	assert_true(resolver_is_pinned(r2, "pinned.test"));

	for (i = 0; i < 40; i++) {
		ctx1[i] = (struct rs_ctx){ r1, &current, &wrong, &done1 };
		ctx2[i] = (struct rs_ctx){ r2, &current, &wrong, &done2 };
		ctx3[i] = (struct rs_ctx){ r3, &current, &wrong, &done3 };
		assert_non_null(resolver_submit(r1, "127.0.0.1", rs_done, &ctx1[i]));
		assert_non_null(resolver_submit(r2, "127.0.0.2", rs_done, &ctx2[i]));
		assert_non_null(resolver_submit(r3, "127.0.0.3", rs_done, &ctx3[i]));
	}
	/* r3 goes with its jobs queued or running: none may come back to it */
	resolver_free(r3);
	pump(r1, &current, &done1, 40);
	pump(r2, &current, &done2, 40);
	assert_int_equal(done1, 40);
	assert_int_equal(done2, 40);
	assert_int_equal(done3, 0);
	assert_int_equal(wrong, 0);
	/* the shared part outlives the first handle freed */
	resolver_free(r1);
	assert_non_null(resolver_submit(r2, "127.0.0.4", rs_done, &ctx2[0]));
	pump(r2, &current, &done2, 41);
	assert_int_equal(done2, 41);
	assert_int_equal(wrong, 0);
	resolver_free(r2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_certcache_threads),
		cmocka_unit_test(test_resolver_handles),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
