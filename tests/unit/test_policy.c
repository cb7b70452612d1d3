// SPDX-License-Identifier: MIT
/*
 * Policy loading and decisions: rule order, first match, default deny, the
 * three formats with their fixtures (tests/fixtures/policy/, run from the
 * repo root), secrets, reload, and every parse error with its line:col.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>
#include "policy.h"

#define FIX "tests/fixtures/policy/"

struct dec { const char *host, *method, *target; uint16_t port; bool allow; int rule; };

static void check_decisions(const struct policy *p, const struct dec *t, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct policy_req r = {
			.host = t[i].host, .host_len = strlen(t[i].host),
			.method = t[i].method, .method_len = strlen(t[i].method),
			.target = t[i].target, .target_len = strlen(t[i].target),
			.port = t[i].port,
		};
		struct policy_verdict v;
		int ret = policy_decide(p, &r, &v);

		if (ret || v.allow != t[i].allow || v.rule != t[i].rule)
			fail_msg("%s %s%s :%u -> ret %d allow %d rule %d (%s); want allow %d rule %d", t[i].method,
				 t[i].host, t[i].target, t[i].port, ret, v.allow, v.rule, v.why, t[i].allow, t[i].rule);
	}
}

static struct policy *load_ok(const char *path, enum policy_format fmt)
{
	char err[512];
	struct policy *p = NULL;
	int ret = policy_load(path, fmt, &p, err, sizeof(err));

	if (ret)
		fail_msg("loading %s: %d %s", path, ret, err);
	return p;
}

static struct policy *load_str(const char *s, const char *name)
{
	char err[512];
	struct policy *p = NULL;
	int ret = policy_load_buf(s, strlen(s), name, POLICY_FMT_AUTO, &p, err, sizeof(err));

	if (ret)
		fail_msg("loading %s: %d %s", name, ret, err);
	return p;
}

static void test_sluice_fixture(void **state)
{
	struct policy *p = load_ok(FIX "sluice.yaml", POLICY_FMT_AUTO);
	static const struct dec t[] = {
		{ "api.test", "GET", "/v1/models", 443, true, 0 },
		{ "API.TEST.", "POST", "/v1/a/b?x=1", 443, true, 0 },
		{ "api.test", "PUT", "/v1/models", 443, false, -1 },
		{ "api.test", "GET", "/v2/models", 443, false, -1 },
		{ "api.test", "GET", "/v1/models", 80, false, -1 },
		{ "api.test", "GET", "/v1//models", 443, true, 0 },
		{ "x.evil.test", "GET", "/", 443, false, 1 },
		{ "a.b.evil.test", "GET", "/", 443, false, 1 },
		{ "evil.test", "GET", "/", 443, false, -1 },
		/* first match wins: the deny for DELETE precedes the allow */
		{ "api.github.test", "DELETE", "/repos/x", 443, false, 2 },
		{ "api.github.test", "GET", "/repos/x", 443, true, 3 },
		{ "github.test", "GET", "/", 443, false, -1 },
		/* proto: tcp rules never decide HTTP */
		{ "db.test", "GET", "/", 5432, false, -1 },
		{ "unknown.test", "GET", "/", 443, false, -1 },
	};
	struct policy_verdict v;

	check_decisions(p, t, sizeof(t) / sizeof(t[0]));

	/* the verdict names the rule and where it is */
	struct policy_req r = { "api.github.test", 15, "GET", 3, "/", 1, 443 };
	assert_int_equal(policy_decide(p, &r, &v), 0);
	assert_non_null(strstr(v.why, "rule 4 (" FIX "sluice.yaml:9:5): allow host=*.github.test"));
	struct policy_req bad = { "api.test", 8, "GET", 3, "/v1/%zz", 7, 443 };
	assert_int_equal(policy_decide(p, &bad, &v), -EINVAL);
	assert_false(v.allow);
	struct policy_req esc = { "api.test", 8, "GET", 3, "/v1/../..", 9, 443 };
	assert_int_equal(policy_decide(p, &esc, &v), -EINVAL);
	/* Dot-segments are refused, not resolved: a router that never resolves
	 * them would route /admin/../v1/x to /admin. Nor can %2e%2e dodge a rule. */
	static const char *const dots[] = { "/v1/../admin", "/v1/%2e%2e/admin", "/admin/../v1/x", "//v1/x" };
	for (size_t i = 0; i < sizeof(dots) / sizeof(dots[0]); i++) {
		struct policy_req d = { "api.test", 8, "GET", 3, dots[i], strlen(dots[i]), 443 };

		assert_int_equal(policy_decide(p, &d, &v), -EINVAL);
		assert_false(v.allow);
	}
	/* allowed by the /v1 rule as checked, but /admin for an upstream that decodes %2F first */
	struct policy_req hid = { "api.test", 8, "GET", 3, "/v1/..%2F..%2Fadmin", 19, 443 };
	assert_int_equal(policy_decide(p, &hid, &v), -EINVAL);
	assert_false(v.allow);
	assert_non_null(strstr(v.why, "could read as another path"));
	struct policy_req frag = { "api.test", 8, "GET", 3, "/v1/x#/../../admin", 18, 443 };
	assert_int_equal(policy_decide(p, &frag, &v), -EINVAL);
	assert_false(v.allow);

	assert_true(policy_tcp_allowed(p, "db.test", 7, 5432, &v));
	assert_int_equal(v.rule, 4);
	assert_true(policy_tcp_allowed(p, "db.test", 7, 6432, NULL));
	assert_false(policy_tcp_allowed(p, "db.test", 7, 5433, &v));
	assert_int_equal(v.rule, -1);
	assert_false(policy_tcp_allowed(p, "api.test", 8, 443, NULL));
	/* the cheap per-connection check: some tcp rule allows the port, or none does */
	assert_true(policy_tcp_possible(p, 5432));
	assert_true(policy_tcp_possible(p, 6432));
	assert_false(policy_tcp_possible(p, 5433));
	assert_false(policy_tcp_possible(NULL, 5432));

	assert_true(policy_host_may_allow(p, "api.test", 8));
	assert_true(policy_host_may_allow(p, "raw.github.test", 15));
	assert_true(policy_host_may_allow(p, "db.test", 7));
	assert_false(policy_host_may_allow(p, "x.evil.test", 11));
	assert_false(policy_host_may_allow(p, "nothing.test", 12));
	assert_string_equal(policy_source(p), FIX "sluice.yaml");
	policy_unref(p);
}

static void test_order_and_empty(void **state)
{
	struct policy *p;
	static const struct dec deny_first[] = {
		{ "a.test", "GET", "/", 443, false, 0 },
		{ "b.test", "GET", "/", 443, true, 1 },
	};
	static const struct dec any[] = {
		{ "a.test", "GET", "/", 443, false, -1 },
		{ "a.test", "POST", "/x", 80, false, -1 },
	};

	p = load_str("rules:\n  - {action: deny, host: a.test}\n  - {action: allow}\n", "order.yaml");
	check_decisions(p, deny_first, 2);
	policy_unref(p);
	p = load_str("rules:\n  - {action: allow}\n  - {action: deny, host: a.test}\n", "order2.yaml");
	{
		static const struct dec t[] = { { "a.test", "GET", "/", 443, true, 0 } };
		check_decisions(p, t, 1);
	}
	policy_unref(p);
	/* empty rule list, empty file, null rules: all deny everything */
	/* DNS answers a name some rule of either kind could allow: an HTTP deny
	 * does not shadow a proto: tcp allow for the same host, nor the reverse. */
	p = load_str("rules:\n  - {action: deny, host: db.test}\n"
		     "  - {action: allow, proto: tcp, host: db.test, port: 5432}\n", "kinds.yaml");
	assert_true(policy_tcp_allowed(p, "db.test", 7, 5432, NULL));
	assert_true(policy_host_may_allow(p, "db.test", 7));
	policy_unref(p);
	p = load_str("rules:\n  - {action: deny, proto: tcp, host: db.test}\n"
		     "  - {action: allow, host: db.test}\n", "kinds2.yaml");
	assert_true(policy_host_may_allow(p, "db.test", 7));
	policy_unref(p);
	p = load_str("rules:\n  - {action: deny, proto: tcp, host: db.test}\n  - {action: deny, host: db.test}\n"
		     "  - {action: allow, host: db.test}\n  - {action: allow, proto: tcp, host: db.test}\n", "kinds3.yaml");
	assert_false(policy_host_may_allow(p, "db.test", 7));
	policy_unref(p);
	p = load_str("rules: []\n", "empty.yaml");
	check_decisions(p, any, 2);
	assert_false(policy_host_may_allow(p, "a.test", 6));
	policy_unref(p);
	p = load_str("", "empty2.yaml");
	check_decisions(p, any, 2);
	policy_unref(p);
	p = load_str("rules:\n", "empty3.yaml");
	check_decisions(p, any, 2);
	policy_unref(p);
}

/* A deny rule on a path also holds for the spellings an upstream reads as
 * that path: ;params (Tomcat, Jetty), %2F and '\\' as '/', other case
 * (Express). An allow rule matches the path as normalised only. */
static void test_deny_wide_view(void **state)
{
	struct policy *p;
	static const struct dec t[] = {
		{ "api.test", "GET", "/admin/x", 443, false, 0 },
		{ "api.test", "GET", "/admin;x/secret", 443, false, 0 },
		{ "api.test", "GET", "/admin%3bx/secret", 443, false, 0 },
		{ "api.test", "GET", "/admin%2Fsecret", 443, false, 0 },
		{ "api.test", "GET", "/admin%5csecret", 443, false, 0 },
		{ "api.test", "GET", "/admin\\secret", 443, false, 0 },
		{ "api.test", "GET", "/Admin/secret", 443, false, 0 },
		{ "api.test", "GET", "/ADMIN", 443, false, 0 },
		{ "api.test", "GET", "/x/;p/admin/y", 443, true, 2 },
		{ "api.test", "GET", "/public/a", 443, true, 1 },
		{ "api.test", "GET", "/public;jsessionid=1/a", 443, true, 2 },
		{ "api.test", "GET", "/administrator", 443, true, 2 },
		{ "api.test", "GET", "/x?next=/admin/", 443, true, 2 },
	};

	(void)state;
	p = load_str("rules:\n  - {action: deny, host: api.test, path: \"/admin/**\"}\n"
		     "  - {action: allow, host: api.test, path: \"/public/**\"}\n"
		     "  - {action: allow, host: api.test}\n", "wide.yaml");
	check_decisions(p, t, sizeof(t) / sizeof(t[0]));
	policy_unref(p);
}

static void test_sandcat_readme(void **state)
{
	struct policy *p = load_ok(FIX "sandcat_readme.json", POLICY_FMT_AUTO);
	static const struct dec t[] = {
		/* the examples of sandcat's README */
		{ "example.com", "GET", "/", 443, true, 0 },
		{ "anything.example", "GET", "/x", 80, true, 0 },
		{ "api.github.com", "POST", "/repos", 443, true, 1 },
		{ "api.anthropic.com", "POST", "/v1/messages", 443, true, 2 },
		{ "example.com", "POST", "/", 443, false, -1 },
		{ "example.com", "PUT", "/", 443, false, -1 },
		/* fnmatch: "*.github.com" crosses dots but needs the dot */
		{ "a.b.github.com", "POST", "/", 443, true, 1 },
		{ "github.com", "POST", "/", 443, false, -1 },
		{ "evilgithub.com", "POST", "/", 443, false, -1 },
		{ "get.example", "get", "/", 443, true, 0 },
	};
	const struct policy_secret *s;

	check_decisions(p, t, sizeof(t) / sizeof(t[0]));
	assert_int_equal(policy_secret_count(p), 1);
	s = policy_secret_at(p, 0);
	assert_string_equal(s->name, "ANTHROPIC_API_KEY");
	assert_string_equal(s->placeholder, "SLUICE_PLACEHOLDER_ANTHROPIC_API_KEY");
	assert_string_equal(s->placeholder_alias, "SANDCAT_PLACEHOLDER_ANTHROPIC_API_KEY");
	assert_int_equal(s->where, SECRET_IN_HEADER | SECRET_IN_QUERY | SECRET_IN_BODY | SECRET_IN_PATH);
	assert_null(s->value);
	assert_int_equal(policy_resolve_secrets(p, NULL, 0), 0);
	assert_int_equal(s->value_len, strlen("sk-ant-real-key-here"));
	assert_memory_equal(s->value, "sk-ant-real-key-here", s->value_len);
	assert_true(policy_secret_allowed(s, "api.anthropic.com", 17, "POST", 4, "/", 1));
	assert_false(policy_secret_allowed(s, "evil.com", 8, "POST", 4, "/", 1));
	assert_null(policy_secret_at(p, 1));
	policy_unref(p);

	p = load_ok(FIX "sandcat_empty.json", POLICY_FMT_AUTO);
	{
		static const struct dec e[] = {
			{ "example.com", "GET", "/", 443, false, -1 },
			{ "api.github.com", "POST", "/", 443, false, -1 },
		};
		check_decisions(p, e, 2);
	}
	policy_unref(p);

	/* sandcat shapes without a .json name are detected too */
	p = load_str("{\"network\": [{\"action\": \"allow\", \"host\": \"*.x.test\"}]}", "settings");
	{
		static const struct dec e[] = { { "a.b.x.test", "DELETE", "/", 1, true, 0 } };
		check_decisions(p, e, 1);
	}
	policy_unref(p);
}

static void test_agent_sandbox(void **state)
{
	struct policy *p = load_ok(FIX "agent_sandbox.yaml", POLICY_FMT_AUTO);
	static const struct dec t[] = {
		/* service github -> github.com, *.github.com, githubusercontent.com, *.githubusercontent.com */
		{ "github.com", "POST", "/x", 443, true, 0 },
		{ "api.github.com", "DELETE", "/x", 443, true, 1 },
		{ "githubusercontent.com", "GET", "/", 443, true, 2 },
		{ "raw.githubusercontent.com", "GET", "/", 443, true, 3 },
		{ "api.anthropic.com", "POST", "/v1/messages", 443, true, 4 },
		{ "sentry.io", "PUT", "/", 443, true, 5 },
		{ "x.sentry.io", "GET", "/", 443, false, -1 },
		{ "pypi.org", "GET", "/simple/", 443, true, 8 },
		/* agent-sandbox's "*.x" also covers x itself */
		{ "npmjs.org", "GET", "/", 443, true, 9 },
		{ "registry.npmjs.org", "GET", "/", 443, true, 9 },
		{ "evilnpmjs.org", "GET", "/", 443, false, -1 },
		{ "example.com", "GET", "/", 443, false, -1 },
		{ "evilgithub.com", "GET", "/", 443, false, -1 },
	};

	check_decisions(p, t, sizeof(t) / sizeof(t[0]));
	assert_int_equal(policy_secret_count(p), 0);
	policy_unref(p);
}

static void test_secrets(void **state)
{
	struct policy *p = load_ok(FIX "sluice.yaml", POLICY_FMT_SLUICE);
	const struct policy_secret *gh, *key, *pw;
	char err[512];

	assert_int_equal(policy_secret_count(p), 3);
	gh = policy_secret_at(p, 0);
	key = policy_secret_at(p, 1);
	pw = policy_secret_at(p, 2);
	assert_string_equal(gh->name, "GITHUB_TOKEN");
	assert_string_equal(gh->placeholder, "SLUICE_PLACEHOLDER_GITHUB_TOKEN");
	assert_null(gh->placeholder_alias);
	assert_string_equal(gh->env_source, "REAL_GH_TOKEN");
	assert_int_equal(gh->where, SECRET_IN_HEADER);
	assert_int_equal(gh->n_hosts, 2);
	assert_int_equal(gh->inject, SECRET_INJECT_NONE);
	assert_int_equal(key->where, SECRET_IN_HEADER | SECRET_IN_BODY);
	assert_int_equal(key->inject, SECRET_INJECT_HEADER);
	assert_string_equal(key->inject_header, "X-Api-Key");
	assert_null(key->env_source);
	assert_int_equal(pw->inject, SECRET_INJECT_BASIC);
	assert_string_equal(pw->inject_user, "x-access-token");
	assert_int_equal(pw->where, SECRET_IN_HEADER);

	/* allowed: host list (label-anchored), methods, normalised paths */
	assert_true(policy_secret_allowed(gh, "api.github.test", 15, "GET", 3, "/", 1));
	assert_true(policy_secret_allowed(gh, "raw.githubusercontent.test", 26, "GET", 3, "/", 1));
	assert_false(policy_secret_allowed(gh, "githubusercontent.test", 22, "GET", 3, "/", 1));
	assert_false(policy_secret_allowed(gh, "api.github.test.evil", 20, "GET", 3, "/", 1));
	assert_true(policy_secret_allowed(key, "api.test", 8, "POST", 4, "/v1/x", 5));
	assert_false(policy_secret_allowed(key, "api.test", 8, "GET", 3, "/v1/x", 5));
	assert_false(policy_secret_allowed(key, "api.test", 8, "POST", 4, "/v1/../v2", 9));
	assert_false(policy_secret_allowed(key, "api.test", 8, "POST", 4, "/v1/%zz", 7));
	/* paths an upstream could resolve outside /v1: the value is not sent */
	assert_false(policy_secret_allowed(key, "api.test", 8, "POST", 4, "/v1/x#/../../v2", 15));
	assert_false(policy_secret_allowed(key, "api.test", 8, "POST", 4, "/v1/..%2F..%2Fv2", 16));
	assert_false(policy_secret_allowed(key, "api.test", 8, "POST", 4, "/v1/x/..\\..\\v2", 14));
	assert_true(policy_secret_allowed(key, "api.test", 8, "POST", 4, "/v1/a%2Fb", 9));

	/* env unset: a named error, nothing resolved for that secret */
	unsetenv("REAL_GH_TOKEN");
	assert_int_equal(policy_resolve_secrets(p, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "GITHUB_TOKEN"));
	assert_non_null(strstr(err, "REAL_GH_TOKEN is not set"));
	setenv("REAL_GH_TOKEN", "gh-real-value", 1);
	assert_int_equal(policy_resolve_secrets(p, err, sizeof(err)), 0);
	assert_int_equal(gh->value_len, 13);
	assert_memory_equal(gh->value, "gh-real-value", 13);
	/* file: one trailing newline trimmed, relative to the policy's directory */
	assert_int_equal(key->value_len, strlen("file-secret-value"));
	assert_memory_equal(key->value, "file-secret-value", key->value_len);
	assert_memory_equal(pw->value, "literal-pw", 10);
	unsetenv("REAL_GH_TOKEN");
	policy_unref(p);
}

static void test_secret_file_errors(void **state)
{
	char dir[] = "/tmp/sluice-policy-XXXXXX", path[128], pol[1024], err[512];
	struct policy *p;
	FILE *f;

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/tok", dir);
	snprintf(pol, sizeof(pol), "secrets:\n  T: {file: %s, hosts: [a.test]}\n", path);
	/* missing file */
	p = load_str(pol, "f.yaml");
	assert_int_equal(policy_resolve_secrets(p, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "secret T: cannot open file"));
	policy_unref(p);
	/* CRLF and only one newline trimmed */
	f = fopen(path, "w");
	assert_non_null(f);
	fputs("abc\n\r\n", f);
	fclose(f);
	p = load_str(pol, "f.yaml");
	assert_int_equal(policy_resolve_secrets(p, err, sizeof(err)), 0);
	assert_int_equal(policy_secret_at(p, 0)->value_len, 4);
	assert_memory_equal(policy_secret_at(p, 0)->value, "abc\n", 4);
	policy_unref(p);
	/* empty file */
	f = fopen(path, "w");
	fputs("\n", f);
	fclose(f);
	p = load_str(pol, "f.yaml");
	assert_int_equal(policy_resolve_secrets(p, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "is empty"));
	policy_unref(p);
	unlink(path);
	rmdir(dir);
}

/* Every parse error: where (file:line:col) and what. */
static void test_parse_errors(void **state)
{
	static const struct { const char *in; enum policy_format fmt; const char *want; } t[] = {
		{ "rules:\n  - {action: allow, hots: a.test}\n", POLICY_FMT_AUTO,
		  "e.yaml:2:21: unknown key 'hots' in a rule" },
		{ "rulez: []\n", POLICY_FMT_SLUICE, "e.yaml:1:1: unknown key 'rulez' in the sluice policy" },
		{ "rules:\n  - host: a.test\n", POLICY_FMT_AUTO, "e.yaml:2:5: rule has no action" },
		{ "rules:\n  - action: permit\n", POLICY_FMT_AUTO, "e.yaml:2:13: action must be allow or deny, not 'permit'" },
		{ "rules:\n  - {action: allow, port: 70000}\n", POLICY_FMT_AUTO,
		  "e.yaml:2:27: port '70000' is not a number from 1 to 65535" },
		{ "rules:\n  - {action: allow, port: [443, x]}\n", POLICY_FMT_AUTO, "e.yaml:2:33: port 'x'" },
		{ "rules:\n  - {action: allow, port: 0}\n", POLICY_FMT_AUTO, "e.yaml:2:27: port '0'" },
		{ "rules:\n  - {action: allow, port: []}\n", POLICY_FMT_AUTO, "e.yaml:2:27: port is an empty list" },
		{ "rules:\n  - {action: allow, proto: udp}\n", POLICY_FMT_AUTO, "e.yaml:2:28: proto must be http or tcp" },
		{ "rules:\n  - {action: allow, proto: tcp, method: GET}\n", POLICY_FMT_AUTO,
		  "e.yaml:2:41: method has no meaning with proto: tcp" },
		{ "rules:\n  - {action: allow, proto: tcp, path: /x}\n", POLICY_FMT_AUTO,
		  "e.yaml:2:39: path has no meaning with proto: tcp" },
		{ "rules:\n  - {action: allow, method: \"G T\"}\n", POLICY_FMT_AUTO,
		  "e.yaml:2:29: method 'G T' is not an HTTP method" },
		{ "rules:\n  - {action: allow, method: []}\n", POLICY_FMT_AUTO, "e.yaml:2:29: method is an empty list" },
		{ "rules:\n  - {action: allow, method: [GET, [POST]]}\n", POLICY_FMT_AUTO,
		  "e.yaml:2:35: each entry of method must be a string, not a list" },
		{ "rules:\n  - {action: allow, path: v1}\n", POLICY_FMT_AUTO, "e.yaml:2:27: path 'v1' must start with '/'" },
		{ "rules:\n  - {action: allow, path: /a/../b}\n", POLICY_FMT_AUTO, "e.yaml:2:27: path '/a/../b' has a '.' or '..' segment" },
		{ "rules:\n  - {action: allow, path: /a**}\n", POLICY_FMT_AUTO, "e.yaml:2:27: path '/a**': '**' must be a whole segment" },
		{ "rules:\n  - {action: allow, path: /a%zz}\n", POLICY_FMT_AUTO, "e.yaml:2:27: path '/a%zz' has a bad %-escape" },
		{ "rules:\n  - {action: allow, host: \"a b\"}\n", POLICY_FMT_AUTO, "e.yaml:2:27: host 'a b' has the character ' '" },
		{ "rules:\n  - {action: allow, host: a..b}\n", POLICY_FMT_AUTO, "e.yaml:2:27: host 'a..b' has an empty label" },
		{ "rules:\n  - {action: allow, host: {a: b}}\n", POLICY_FMT_AUTO,
		  "e.yaml:2:27: host must be a string or a list of strings, not a mapping" },
		{ "rules:\n  - {action: allow, host: \"\"}\n", POLICY_FMT_AUTO, "e.yaml:2:27: host entry is empty" },
		{ "rules:\n  - {action: allow, name: [x]}\n", POLICY_FMT_AUTO, "e.yaml:2:27: name must be a string" },
		{ "rules:\n  - {action: allow, action: deny}\n", POLICY_FMT_AUTO,
		  "e.yaml:2:21: duplicate key 'action' in a rule (first at line 2)" },
		{ "rules:\n  - just-a-string\n", POLICY_FMT_AUTO, "e.yaml:2:5: a rule must be a mapping" },
		{ "rules: {action: allow}\n", POLICY_FMT_AUTO, "e.yaml:1:8: rules must be a list of rules" },
		{ "- a\n- b\n", POLICY_FMT_AUTO, "e.yaml:1:1: the policy must be a mapping" },
		{ "rules:\n  - {action: allow\n", POLICY_FMT_AUTO, "e.yaml:3:1: syntax error: did not find expected ',' or '}'" },
		{ "rules: [\n", POLICY_FMT_AUTO, "e.yaml:2:1: syntax error:" },
		{ "rules: []\n\tfoo: 1\n", POLICY_FMT_AUTO, "e.yaml:2:1: syntax error" },
		{ "rules: []\n---\nrules: []\n", POLICY_FMT_AUTO, "e.yaml: more than one YAML document" },
		{ "rules: []\n\xff\n", POLICY_FMT_AUTO, "e.yaml:2:1: encoding error" },
		/* secrets */
		{ "secrets:\n  GH: {hosts: [a.test]}\n", POLICY_FMT_SLUICE, "e.yaml:2:7: secret GH needs exactly one of value, env or file" },
		{ "secrets:\n  GH: {env: A, file: /x, hosts: [a.test]}\n", POLICY_FMT_SLUICE,
		  "e.yaml:2:22: secret GH needs exactly one of value, env or file" },
		{ "secrets:\n  GH: {env: A}\n", POLICY_FMT_SLUICE, "e.yaml:2:7: secret GH has no hosts" },
		{ "secrets:\n  GH: {env: A-B, hosts: [x]}\n", POLICY_FMT_SLUICE, "e.yaml:2:13: secret GH: env must name an environment variable" },
		{ "secrets:\n  GH-X: {env: A, hosts: [x]}\n", POLICY_FMT_SLUICE, "e.yaml:2:3: secret name 'GH-X' is not an environment variable name" },
		{ "secrets:\n  GH: {env: A, hosts: [x], in: [cookie]}\n", POLICY_FMT_SLUICE,
		  "e.yaml:2:32: secret GH: in: 'cookie' is not a place" },
		{ "secrets:\n  GH: {env: A, hosts: [x], inject: digest}\n", POLICY_FMT_SLUICE,
		  "e.yaml:2:36: secret GH: inject is not known" },
		{ "secrets:\n  GH: {env: A, hosts: [x], inject: basic}\n", POLICY_FMT_SLUICE,
		  "e.yaml:2:36: secret GH: inject: basic needs user:" },
		{ "secrets:\n  GH: {env: A, hosts: [x], user: u}\n", POLICY_FMT_SLUICE,
		  "e.yaml:2:34: secret GH: user is only used with inject: basic" },
		{ "secrets:\n  GH: {env: A, hosts: [x], inject: {header: \"X Y\"}}\n", POLICY_FMT_SLUICE,
		  "e.yaml:2:45: secret GH: inject header name has the character ' '" },
		{ "secrets:\n  GH: {env: A, hosts: [x], inject: {hdr: X}}\n", POLICY_FMT_SLUICE,
		  "e.yaml:2:37: unknown key 'hdr' in inject" },
		{ "secrets:\n  GH: {env: A, hosts: [x], color: red}\n", POLICY_FMT_SLUICE,
		  "e.yaml:2:28: unknown key 'color' in a secret" },
		{ "secrets:\n  GH: {value: \"\", hosts: [x]}\n", POLICY_FMT_SLUICE, "e.yaml:2:15: secret GH: value must be a non-empty string" },
		{ "secrets:\n  GH: {env: A, hosts: [x]}\n  GH: {env: B, hosts: [y]}\n", POLICY_FMT_SLUICE,
		  "e.yaml:3:3: duplicate key 'GH' in secrets" },
		{ "secrets: [a]\n", POLICY_FMT_SLUICE, "e.yaml:1:10: secrets must be a mapping" },
		/* sandcat */
		{ "{\"network\": [{\"action\": \"allow\"}]}", POLICY_FMT_SANDCAT, "e.yaml:1:14: network rule has no host" },
		{ "{\"network\": [{\"action\": \"allow\", \"host\": \"*\", \"path\": \"/\"}]}", POLICY_FMT_SANDCAT,
		  "e.yaml:1:47: unknown key 'path' in a sandcat network rule" },
		{ "{\"network\": [{\"host\": \"*\"}]}", POLICY_FMT_SANDCAT, "e.yaml:1:14: network rule has no action" },
		{ "{\"network\": [{\"action\": \"allow\", \"host\": \"*\", \"method\": [\"GET\"]}]}", POLICY_FMT_SANDCAT,
		  "e.yaml:1:57: method must be one string in sandcat's format" },
		{ "{\"secrets\": {\"K\": {\"hosts\": []}}}", POLICY_FMT_SANDCAT, "e.yaml:1:19: secret K has no value" },
		{ "{\"secrets\": {\"K\": {\"value\": \"v\", \"env\": \"E\"}}, \"network\": []}", POLICY_FMT_SANDCAT,
		  "e.yaml:1:34: unknown key 'env' in a sandcat secret" },
		{ "{\"network\": [], \"extra\": 1}", POLICY_FMT_SANDCAT, "e.yaml:1:17: unknown key 'extra' in sandcat settings" },
		{ "{\"network\": [{\"action\": \"allow\", \"host\": \"*\"},]", POLICY_FMT_SANDCAT, "e.yaml:2:1: syntax error: did not find expected ',' or '}'" },
		/* agent-sandbox */
		{ "services: [github, nope]\n", POLICY_FMT_AUTO, "e.yaml:1:20: unknown service 'nope'" },
		{ "domains: [a.test]\nextra: 1\n", POLICY_FMT_AUTO, "e.yaml:2:1: unknown key 'extra' in the agent-sandbox policy" },
		{ "domains: [\"a.*.test\"]\n", POLICY_FMT_AUTO, "e.yaml:1:11: domain 'a.*.test' uses a wildcard agent-sandbox does not support" },
		{ "domains: [{host: a.test}]\n", POLICY_FMT_AUTO, "e.yaml:1:11: a domain must be a host name" },
		{ "domains: a.test\n", POLICY_FMT_AUTO, "e.yaml:1:10: domains must be a list" },
	};

	int bad = 0;

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		char err[512] = "";
		struct policy *p = (struct policy *)0x1;
		int ret = policy_load_buf(t[i].in, strlen(t[i].in), "e.yaml", t[i].fmt, &p, err, sizeof(err));

		if (ret != -EINVAL || p || strncmp(err, t[i].want, strlen(t[i].want))) {
			print_error("case %zu: ret %d p %p\n  got:  %s\n  want: %s\n", i, ret, (void *)p, err, t[i].want);
			bad++;
		}
		/* every message also says what to do */
		if (!strchr(err, ';') && !strstr(err, "syntax")) {
			print_error("case %zu: no hint in '%s'\n", i, err);
			bad++;
		}
	}
	assert_int_equal(bad, 0);
}

/* Per-request secret sets are 64-bit masks in the broker: more is an error
 * at load, never a secret silently left out. */
static void test_too_many_secrets(void **state)
{
	char buf[8192], err[512];
	struct policy *p = NULL;
	size_t n;

	(void)state;
	n = (size_t)snprintf(buf, sizeof(buf), "rules: []\nsecrets:\n");
	for (int i = 0; i < POLICY_MAX_SECRETS + 1; i++)
		n += (size_t)snprintf(buf + n, sizeof(buf) - n, "  S%d: {value: v%d, hosts: [a.test]}\n", i, i);
	assert_int_equal(policy_load_buf(buf, n, "many.yaml", POLICY_FMT_AUTO, &p, err, sizeof(err)), -EINVAL);
	assert_null(p);
	assert_non_null(strstr(err, "many.yaml:3:3: 65 secrets: at most 64 per policy"));
	/* 64 load */
	n = (size_t)(strstr(buf, "  S64:") - buf);
	assert_int_equal(policy_load_buf(buf, n, "many.yaml", POLICY_FMT_AUTO, &p, err, sizeof(err)), 0);
	assert_int_equal(policy_secret_count(p), 64);
	policy_unref(p);
}

static void test_values_never_in_errors_or_dump(void **state)
{
	const char *pol = "secrets:\n  K: {value: topsecret-literal, hosts: [a.test], in: [header, query]}\n"
			  "rules:\n  - {action: allow, host: a.test}\n";
	char err[512], *buf = NULL;
	size_t len = 0;
	struct policy *p;
	FILE *f;

	p = load_str(pol, "v.yaml");
	assert_int_equal(policy_resolve_secrets(p, err, sizeof(err)), 0);
	f = open_memstream(&buf, &len);
	assert_int_equal(policy_dump(p, f), 0);
	fclose(f);
	assert_null(strstr(buf, "topsecret"));
	assert_non_null(strstr(buf, "rule 1 (v.yaml:4:5): allow host=a.test"));
	assert_non_null(strstr(buf, "secret K (v.yaml:2:3): placeholder=SLUICE_PLACEHOLDER_K"));
	assert_non_null(strstr(buf, "in=header,query"));
	free(buf);
	policy_unref(p);
	/* an error next to a literal value does not echo it */
	assert_int_equal(policy_load_buf("secrets:\n  K: {value: topsecret, hosts: [a.test], bad: 1}\n", 55,
					 "v.yaml", POLICY_FMT_AUTO, &p, err, sizeof(err)), -EINVAL);
	assert_null(strstr(err, "topsecret"));
}

static void test_refcount_and_reload(void **state)
{
	char dir[] = "/tmp/sluice-reload-XXXXXX", path[128], err[512];
	struct policy *cur = NULL, *held;
	FILE *f;
	static const struct dec a_ok[] = { { "a.test", "GET", "/", 443, true, 0 } };
	static const struct dec b_ok[] = { { "a.test", "GET", "/", 443, false, -1 },
					   { "b.test", "GET", "/", 443, true, 0 } };

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/p.yaml", dir);
	f = fopen(path, "w");
	fputs("rules:\n  - {action: allow, host: a.test}\n", f);
	fclose(f);
	assert_int_equal(policy_reload(path, POLICY_FMT_AUTO, &cur, err, sizeof(err)), 0);
	check_decisions(cur, a_ok, 1);
	held = policy_ref(cur); /* a request in flight */

	/* a bad file is refused and the old policy stays */
	f = fopen(path, "w");
	fputs("rules:\n  - {action: allow, hots: b.test}\n", f);
	fclose(f);
	assert_int_equal(policy_reload(path, POLICY_FMT_AUTO, &cur, err, sizeof(err)), -EINVAL);
	assert_ptr_equal(cur, held);
	assert_non_null(strstr(err, "p.yaml:2:21: unknown key 'hots'"));
	check_decisions(cur, a_ok, 1);

	/* a good one replaces it; the in-flight holder keeps the old one */
	f = fopen(path, "w");
	fputs("rules:\n  - {action: allow, host: b.test}\n", f);
	fclose(f);
	assert_int_equal(policy_reload(path, POLICY_FMT_AUTO, &cur, err, sizeof(err)), 0);
	assert_ptr_not_equal(cur, held);
	check_decisions(cur, b_ok, 2);
	check_decisions(held, a_ok, 1);
	policy_unref(held);

	/* a missing file is an I/O error naming the path */
	unlink(path);
	assert_int_equal(policy_reload(path, POLICY_FMT_AUTO, &cur, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "cannot open the policy"));
	check_decisions(cur, b_ok, 2);
	policy_unref(cur);
	policy_unref(NULL);
	rmdir(dir);
}

static void test_host_named(void **state)
{
	struct policy *p = load_str("rules:\n"
				    "  - {action: allow, host: \"*\", method: GET}\n"
				    "  - {action: allow, host: \"*.corp.test\"}\n"
				    "  - {action: deny, host: metadata.test}\n"
				    "  - {action: allow, host: [registry.local, Other.Test]}\n",
				    "named.yaml");
	(void)state;
	assert_true(policy_host_named(p, "registry.local", 14));
	assert_true(policy_host_named(p, "other.test.", 11));  /* case and trailing dot */
	assert_false(policy_host_named(p, "metadata.test", 13)); /* named, but by a deny */
	assert_false(policy_host_named(p, "x.corp.test", 11));   /* only a glob covers it */
	assert_false(policy_host_named(p, "169.254.169.254", 15)); /* "*" names nothing */
	policy_unref(p);
}

static void test_allow_hosts(void **state)
{
	const char *hosts[] = { "*.Allowed.test", "exact.test" };
	struct policy *p = policy_new_allow_hosts(hosts, 2);
	static const struct dec t[] = {
		{ "a.allowed.test", "DELETE", "/x", 8443, true, 0 },
		{ "allowed.test", "GET", "/", 443, false, -1 },
		{ "exact.test", "PUT", "/", 80, true, 1 },
		{ "other.test", "GET", "/", 443, false, -1 },
	};

	assert_non_null(p);
	check_decisions(p, t, sizeof(t) / sizeof(t[0]));
	policy_unref(p);
	p = policy_new_allow_hosts(NULL, 0);
	assert_non_null(p);
	check_decisions(p, t + 3, 1);
	policy_unref(p);
}

static void test_format_detection(void **state)
{
	struct policy *p;
	static const struct dec t[] = { { "h.test", "POST", "/", 443, true, 0 } };
	/* secrets-only with sandcat shapes reads as sandcat (alias, anywhere) */
	p = load_str("secrets:\n  K: {value: v, hosts: [\"*\"]}\n", "s.yaml");
	assert_non_null(policy_secret_at(p, 0)->placeholder_alias);
	policy_unref(p);
	/* with a sluice-only key it stays sluice */
	p = load_str("secrets:\n  K: {value: v, hosts: [\"*\"], in: [body]}\n", "s.yaml");
	assert_null(policy_secret_at(p, 0)->placeholder_alias);
	assert_int_equal(policy_secret_at(p, 0)->where, SECRET_IN_BODY);
	policy_unref(p);
	p = load_str("domains: [h.test]\n", "as.yaml");
	check_decisions(p, t, 1);
	policy_unref(p);
	p = load_str("rules: [{action: allow, host: h.test}]\n", "s.yaml");
	check_decisions(p, t, 1);
	policy_unref(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sluice_fixture),
		cmocka_unit_test(test_host_named),
		cmocka_unit_test(test_order_and_empty),
		cmocka_unit_test(test_deny_wide_view),
		cmocka_unit_test(test_too_many_secrets),
		cmocka_unit_test(test_sandcat_readme),
		cmocka_unit_test(test_agent_sandbox),
		cmocka_unit_test(test_secrets),
		cmocka_unit_test(test_secret_file_errors),
		cmocka_unit_test(test_parse_errors),
		cmocka_unit_test(test_values_never_in_errors_or_dump),
		cmocka_unit_test(test_refcount_and_reload),
		cmocka_unit_test(test_allow_hosts),
		cmocka_unit_test(test_format_detection),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
