// SPDX-License-Identifier: MIT
/* The names the broker's DNS answered for an address, which raw TCP
 * (proto: tcp rules by name) matches: the names asked for last come first,
 * so a name asked again is found even when many others share its address
 * (a CDN). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <cmocka.h>
#include "broker.h"

static bool has(char (*names)[DNS_SEEN_NAME], size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(names[i], name))
			return true;
	return false;
}

static void test_asked_again_comes_first(void **state)
{
	static const uint8_t cdn[4] = { 10, 1, 2, 3 };
	char names[7][DNS_SEEN_NAME], other[32];
	size_t n;

	(void)state;
	dns_seen_note("git.test", AF_INET, cdn);
	for (int i = 0; i < 9; i++) {
		snprintf(other, sizeof(other), "site%d.cdn.test", i);
		dns_seen_note(other, AF_INET, cdn);
	}
	n = dns_names_for(AF_INET, cdn, names, 7);
	assert_int_equal(n, 7);
	assert_false(has(names, n, "git.test")); /* ten names, seven read: the oldest is out */
	dns_seen_note("git.test", AF_INET, cdn); /* ssh git.test resolves it again */
	n = dns_names_for(AF_INET, cdn, names, 7);
	assert_int_equal(n, 7);
	assert_string_equal(names[0], "git.test");
	/* another address is another list */
	assert_int_equal(dns_names_for(AF_INET, (const uint8_t[4]){ 10, 1, 2, 4 }, names, 7), 0);
	dns_seen_free();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_asked_again_comes_first),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
