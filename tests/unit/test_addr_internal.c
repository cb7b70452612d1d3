// SPDX-License-Identifier: MIT
/*
 * Which resolved addresses count as internal (not dialled unless a rule
 * names the host exactly): loopback, link-local, cloud metadata services,
 * shared address space, and the same addresses carried inside IPv6 forms
 * (v4-mapped, IPv4-compatible, NAT64 well-known and local-use, 6to4). The
 * host's own addresses are checked by the resolver (r != NULL) and not here.
 */
#include <arpa/inet.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>
#include "resolve.h"

static bool internal(const char *s)
{
	struct rs_addr a = { 0 };

	if (inet_pton(AF_INET, s, a.addr) == 1) {
		a.family = AF_INET;
	} else {
		assert_int_equal(inet_pton(AF_INET6, s, a.addr), 1);
		a.family = AF_INET6;
	}
	return resolver_addr_internal(NULL, &a);
}

static void test_internal(void **state)
{
	static const char *const yes[] = {
		"127.0.0.1", "127.9.9.9", "0.0.0.0", "0.1.2.3", "169.254.169.254", "224.0.0.1", "255.255.255.255",
		"100.100.100.200", "100.100.100.100", "100.64.0.1", "100.127.255.254", "168.63.129.16",
		"::", "::1", "fe80::1", "ff02::1", "fd00:ec2::254", "fd20:ce::254",
		"::ffff:127.0.0.1", "::ffff:169.254.169.254", "64:ff9b::7f00:1", "64:ff9b::a9fe:a9fe",
		"64:ff9b:1::a9fe:a9fe", "64:ff9b:1:ffff::7f00:1", "::127.0.0.1", "::169.254.169.254",
		"2002:7f00:1::", "2002:a9fe:a9fe::1", "2002:6464:64c8::",
	};
	static const char *const no[] = {
		"10.99.0.2", "192.0.2.1", "8.8.8.8", "100.63.255.255", "100.128.0.1", "168.63.129.17",
		"fd99::2", "2001:db8::1", "2606:4700::1111", "::ffff:10.99.0.2", "64:ff9b::808:808",
		"64:ff9b:1::808:808", "2002:808:808::", "2003::1",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
		if (!internal(yes[i]))
			fail_msg("%s should be internal", yes[i]);
	for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
		if (internal(no[i]))
			fail_msg("%s should not be internal", no[i]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_internal),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
