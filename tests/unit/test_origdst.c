// SPDX-License-Identifier: MIT
/* origdst_take against a real BPF map (needs root, as make test is): the key
 * it builds from an accepted socket must be the one the sockops program
 * writes (client addr/port -> broker addr/port, v4-mapped as IPv4). */
#include <arpa/inet.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <bpf/bpf.h>
#include <cmocka.h>
#include "origdst.h"

static int map_new(void)
{
	int fd = bpf_map_create(BPF_MAP_TYPE_LRU_HASH, "t_orig", sizeof(struct sluice_orig_key),
				sizeof(struct sluice_orig_dst), 64, NULL);

	assert_true(fd >= 0);
	return fd;
}

/* A connected pair on loopback: *cli is the client, *acc the accepted side. */
static void pair(int family, const char *addr, int *cli, int *acc)
{
	struct sockaddr_storage ss = {};
	socklen_t len = family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
	int l = socket(family, SOCK_STREAM, 0);

	ss.ss_family = family;
	if (family == AF_INET)
		inet_pton(AF_INET, addr, &((struct sockaddr_in *)&ss)->sin_addr);
	else
		inet_pton(AF_INET6, addr, &((struct sockaddr_in6 *)&ss)->sin6_addr);
	assert_int_equal(bind(l, (struct sockaddr *)&ss, len), 0);
	assert_int_equal(listen(l, 4), 0);
	assert_int_equal(getsockname(l, (struct sockaddr *)&ss, &len), 0);
	*cli = socket(family, SOCK_STREAM, 0);
	assert_int_equal(connect(*cli, (struct sockaddr *)&ss, len), 0);
	*acc = accept(l, NULL, NULL);
	assert_true(*acc >= 0);
	close(l);
}

/* The key as bpf/sluice.bpf.c's sockops builds it, from the client's side. */
static void key_from_client(int cli, int family, struct sluice_orig_key *k)
{
	struct sockaddr_storage a, b;
	socklen_t la = sizeof(a), lb = sizeof(b);

	memset(k, 0, sizeof(*k));
	getsockname(cli, (struct sockaddr *)&a, &la);
	getpeername(cli, (struct sockaddr *)&b, &lb);
	k->family = family == AF_INET ? SLUICE_AF_INET : SLUICE_AF_INET6;
	if (family == AF_INET) {
		memcpy(k->src_addr, &((struct sockaddr_in *)&a)->sin_addr, 4);
		memcpy(k->dst_addr, &((struct sockaddr_in *)&b)->sin_addr, 4);
		k->src_port = ntohs(((struct sockaddr_in *)&a)->sin_port);
		k->dst_port = ntohs(((struct sockaddr_in *)&b)->sin_port);
	} else {
		memcpy(k->src_addr, &((struct sockaddr_in6 *)&a)->sin6_addr, 16);
		memcpy(k->dst_addr, &((struct sockaddr_in6 *)&b)->sin6_addr, 16);
		k->src_port = ntohs(((struct sockaddr_in6 *)&a)->sin6_port);
		k->dst_port = ntohs(((struct sockaddr_in6 *)&b)->sin6_port);
	}
}

static void take_roundtrip(int family, const char *addr)
{
	struct sluice_orig_dst in = { .cgroup_id = 42, .pid = 7, .port = 443, .family = SLUICE_AF_INET,
				      .proto = 6, .addr = { 10, 99, 1, 2 }, .comm = "curl" };
	struct sluice_orig_dst out = {};
	struct sluice_orig_key k;
	int m = map_new(), cli, acc;
	char s[64];

	pair(family, addr, &cli, &acc);
	/* Nothing recorded: the broker must refuse this connection. */
	assert_int_equal(origdst_take(m, acc, &out), -ENOENT);
	key_from_client(cli, family, &k);
	assert_int_equal(bpf_map_update_elem(m, &k, &in, BPF_ANY), 0);
	assert_int_equal(origdst_take(m, acc, &out), 0);
	assert_memory_equal(&in, &out, sizeof(in));
	assert_string_equal(origdst_str(&out, s, sizeof(s)), "10.99.1.2:443");
	/* Taken once: deleted. */
	assert_int_equal(origdst_take(m, acc, &out), -ENOENT);
	close(cli);
	close(acc);
	close(m);
}

static void test_take_v4(void **st) { take_roundtrip(AF_INET, "127.0.0.1"); }
static void test_take_v6(void **st) { take_roundtrip(AF_INET6, "::1"); }

/* A dual-stack broker socket sees a v4 client as ::ffff:127.0.0.1; the kernel
 * keys that connection as IPv4. */
static void test_take_v4mapped_listener(void **st)
{
	struct sluice_orig_dst in = { .port = 80, .family = SLUICE_AF_INET6, .proto = 6 }, out;
	struct sockaddr_in6 ss = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_ANY_INIT };
	socklen_t len = sizeof(ss);
	struct sockaddr_in to = { .sin_family = AF_INET };
	struct sluice_orig_key k;
	int m = map_new(), l = socket(AF_INET6, SOCK_STREAM, 0), off = 0, cli, acc;
	char s[64];

	in.addr[0] = 0xfd;
	in.addr[15] = 2;
	setsockopt(l, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof(off));
	assert_int_equal(bind(l, (struct sockaddr *)&ss, len), 0);
	assert_int_equal(listen(l, 4), 0);
	getsockname(l, (struct sockaddr *)&ss, &len);
	to.sin_port = ss.sin6_port;
	to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cli = socket(AF_INET, SOCK_STREAM, 0);
	assert_int_equal(connect(cli, (struct sockaddr *)&to, sizeof(to)), 0);
	acc = accept(l, NULL, NULL);
	key_from_client(cli, AF_INET, &k);
	assert_int_equal(bpf_map_update_elem(m, &k, &in, BPF_ANY), 0);
	assert_int_equal(origdst_take(m, acc, &out), 0);
	assert_string_equal(origdst_str(&out, s, sizeof(s)), "[fd00::2]:80");
	close(cli);
	close(acc);
	close(l);
	close(m);
}

static void test_open_missing(void **st)
{
	assert_int_equal(origdst_open("/nonexistent-sluice-pin-root"), -ENOENT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_take_v4),
		cmocka_unit_test(test_take_v6),
		cmocka_unit_test(test_take_v4mapped_listener),
		cmocka_unit_test(test_open_missing),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
