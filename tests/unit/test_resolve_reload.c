// SPDX-License-Identifier: MIT
/*
 * The broker's resolver threads follow /etc/resolv.conf when it changes (a
 * VPN, DHCP or NetworkManager rewriting it) instead of asking the old
 * nameservers until a restart. Needs root (as make test is): a private mount
 * namespace puts a resolv.conf of the test's own over /etc/resolv.conf, and
 * in a network namespace of its own (so no host resolver holds port 53)
 * two fake nameservers on 127.0.0.8 and 127.0.0.9 (its loopback) answer
 * every A query with an address naming the server that answered. And a name
 * with nine addresses of each family keeps both families in its result.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>
#include "dnsmsg.h"
#include "resolve.h"

struct fake_ns {
	int fd;
	uint8_t last;          /* the answer's last address byte: 8 or 9 */
	pthread_t th;
};

static void *ns_serve(void *arg)
{
	struct fake_ns *ns = arg;
	uint8_t in[512], out[512], addr[4] = { 10, ns->last, 0, 1 }, many4[9 * 4], many6[9 * 16];

	for (int i = 0; i < 9; i++) {
		memcpy(many4 + i * 4, (uint8_t[4]){ 10, 77, 0, (uint8_t)(i + 1) }, 4);
		memcpy(many6 + i * 16, (uint8_t[16]){ 0xfd, 0x77, [15] = (uint8_t)(i + 1) }, 16);
	}

	for (;;) {
		struct sockaddr_storage peer;
		socklen_t plen = sizeof(peer);
		struct dns_query q;
		ssize_t n = recvfrom(ns->fd, in, sizeof(in), 0, (struct sockaddr *)&peer, &plen);
		int len;

		if (n < 0)
			return NULL;
		if (dns_parse_query(in, (size_t)n, &q))
			continue;
		if (!strncmp(q.name, "many.", 5))
			len = dns_build_reply(&q, 0, q.qtype == 1 ? many4 : many6, 9, 5, out, sizeof(out));
		else
			len = dns_build_reply(&q, 0, q.qtype == 1 ? addr : NULL, q.qtype == 1, 5, out, sizeof(out));
		if (len > 0)
			sendto(ns->fd, out, (size_t)len, 0, (struct sockaddr *)&peer, plen);
	}
}

static void ns_start(struct fake_ns *ns, uint8_t last)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(53) };

	sa.sin_addr.s_addr = htonl(0x7f000000u | last);
	ns->last = last;
	ns->fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	assert_true(ns->fd >= 0);
	assert_int_equal(bind(ns->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(pthread_create(&ns->th, NULL, ns_serve, ns), 0);
}

static void ns_stop(struct fake_ns *ns)
{
	shutdown(ns->fd, SHUT_RDWR);
	pthread_cancel(ns->th);
	pthread_join(ns->th, NULL);
	close(ns->fd);
}

struct wait {
	bool done;
	struct rs_result r;
};

static void on_done(void *ctx, const struct rs_result *r)
{
	struct wait *w = ctx;

	w->r = *r;
	w->done = true;
}

static void wait_for(struct resolver *res, const char *name, struct rs_result *out)
{
	struct wait w = { 0 };
	struct pollfd p = { .fd = resolver_eventfd(res), .events = POLLIN };

	assert_int_equal(resolver_lookup_fast(res, name, &w.r), -EAGAIN);
	assert_non_null(resolver_submit(res, name, on_done, &w));
	while (!w.done) {
		assert_true(poll(&p, 1, 10000) == 1);
		resolver_dispatch(res);
	}
	assert_int_equal(w.r.err, 0);
	*out = w.r;
}

/* The last byte of the second octet of name's first IPv4 address: which fake nameserver answered. */
static int lookup(struct resolver *res, const char *name)
{
	struct rs_result r;

	wait_for(res, name, &r);
	for (size_t i = 0; i < r.n; i++)
		if (r.a[i].family == AF_INET)
			return r.a[i].addr[1];
	return -1;
}

static void write_conf(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
}

static void test_follows_resolv_conf(void **state)
{
	char conf[] = "/tmp/sluice-resolv-XXXXXX", err[256];
	struct fake_ns a, b;
	struct resolver *res;
	int fd;

	(void)state;
	/* Root is required (make test runs as root): fail, never skip. */
	assert_int_equal(geteuid(), 0);
	assert_int_equal(unshare(CLONE_NEWNS | CLONE_NEWNET), 0);
	{
		struct ifreq ifr = { 0 };
		int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

		assert_true(s >= 0);
		snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "lo");
		assert_int_equal(ioctl(s, SIOCGIFFLAGS, &ifr), 0);
		ifr.ifr_flags |= IFF_UP;
		assert_int_equal(ioctl(s, SIOCSIFFLAGS, &ifr), 0);
		close(s);
	}
	assert_int_equal(mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL), 0);
	fd = mkstemp(conf);
	assert_true(fd >= 0);
	close(fd);
	write_conf(conf, "nameserver 127.0.0.8\noptions timeout:1 attempts:1\n");
	assert_int_equal(mount(conf, "/etc/resolv.conf", NULL, MS_BIND, NULL), 0);
	ns_start(&a, 8);
	ns_start(&b, 9);

	res = resolver_new(NULL, 1, err, sizeof(err));
	assert_non_null(res);
	assert_int_equal(lookup(res, "first.sluice-reload.test"), 8);
	/* The host's network changes: so does its nameserver. Another length
	 * and a second later, as any rewrite is, whatever glibc compares. */
	sleep(1);
	write_conf(conf, "nameserver 127.0.0.9\noptions timeout:1 attempts:1 rotate\n");
	assert_int_equal(lookup(res, "second.sluice-reload.test"), 9);
	{
		struct rs_result r;
		size_t n4 = 0, n6 = 0;

		wait_for(res, "many.sluice-reload.test", &r);
		for (size_t i = 0; i < r.n; i++)
			r.a[i].family == AF_INET ? n4++ : n6++;
		assert_int_equal(r.n, RS_MAX_ADDRS);
		assert_int_equal(n4, RS_MAX_ADDRS / 2);
		assert_int_equal(n6, RS_MAX_ADDRS / 2);
	}
	resolver_free(res);

	ns_stop(&a);
	ns_stop(&b);
	umount2("/etc/resolv.conf", MNT_DETACH);
	unlink(conf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_follows_resolv_conf),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
