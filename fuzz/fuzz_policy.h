/* SPDX-License-Identifier: MIT */
/*
 * Body shared by fuzz_policy_{yaml,sandcat,agent}: load the bytes as a policy
 * of one format; on success, dump it and ask it every kind of question the
 * broker asks, with hosts, methods and targets chosen to reach the globbing,
 * normalisation and port paths.
 */
#ifndef SLUICE_FUZZ_POLICY_H
#define SLUICE_FUZZ_POLICY_H
#include "fuzz.h"
#include "policy.h"

static FILE *fz_devnull;

static const char *const FZ_HOSTS[] = {
	"api.test", "API.Test.", "x.github.com", "a.b.api.anthropic.com", "db.test", "10.99.0.2", "::1", "",
};
static const char *const FZ_METHODS[] = { "GET", "POST", "DELETE", "" };
static const char *const FZ_TARGETS[] = {
	"/", "/v1/x?a=1", "/v1/%2e%2e/admin", "//a/./b/../c/", "/%zz", "/a%2Fb", "*", "/../..",
};
static const uint16_t FZ_PORTS[] = { 443, 80, 5432, 0 };

#define FZ_N(a) (sizeof(a) / sizeof((a)[0]))

static void fz_check_verdict(const struct policy_verdict *v, const char *what)
{
	if (strnlen(v->why, sizeof(v->why)) == sizeof(v->why))
		fz_die("%s: verdict text not NUL-terminated", what);
	if (v->allow && v->rule < 0)
		fz_die("%s: allowed without a rule", what);
}

static int fuzz_policy(const uint8_t *data, size_t size, enum policy_format fmt)
{
	struct policy *p = NULL;
	char err[512];
	int r;

	if (!fz_devnull && !(fz_devnull = fopen("/dev/null", "w")))
		abort();
	memset(err, 'X', sizeof(err));
	r = policy_load_buf((const char *)data, size, "fuzz.policy", fmt, &p, err, sizeof(err));
	if (r) {
		if (r > 0)
			fz_die("policy_load_buf returned %d (not 0 or -errno)", r);
		if (strnlen(err, sizeof(err)) == sizeof(err) || !err[0])
			fz_die("load failed (%d) without a NUL-terminated message", r);
		/* An error must not leave a half-built policy to the caller. */
		if (p)
			fz_die("load failed (%d) but returned a policy", r);
		return 0;
	}
	if (!p)
		fz_die("load succeeded without a policy");
	if (policy_dump(p, fz_devnull) < 0)
		fz_die("policy_dump failed on a policy that loaded");
	(void)policy_source(p);

	for (size_t h = 0; h < FZ_N(FZ_HOSTS); h++) {
		const char *host = FZ_HOSTS[h];
		size_t hl = strlen(host);
		bool may = policy_host_may_allow(p, host, hl);
		bool any_allow = false;

		for (size_t m = 0; m < FZ_N(FZ_METHODS); m++)
			for (size_t t = 0; t < FZ_N(FZ_TARGETS); t++)
				for (size_t o = 0; o < FZ_N(FZ_PORTS); o++) {
					struct policy_req rq = {
						.host = host, .host_len = hl,
						.method = FZ_METHODS[m], .method_len = strlen(FZ_METHODS[m]),
						.target = FZ_TARGETS[t], .target_len = strlen(FZ_TARGETS[t]),
						.port = FZ_PORTS[o],
					};
					struct policy_verdict v;

					memset(&v, 'Y', sizeof(v));
					r = policy_decide(p, &rq, &v);
					if (r && r != -EINVAL)
						fz_die("policy_decide returned %d", r);
					if (!r) {
						fz_check_verdict(&v, "policy_decide");
						any_allow |= v.allow;
					}
				}
		/* DNS must answer every name some request to it would be allowed for. */
		if (any_allow && !may)
			fz_die("host '%s': a request is allowed but policy_host_may_allow says no", host);
		for (size_t o = 0; o < FZ_N(FZ_PORTS); o++) {
			struct policy_verdict v;

			memset(&v, 'Y', sizeof(v));
			if (policy_tcp_allowed(p, host, hl, FZ_PORTS[o], &v))
				fz_check_verdict(&v, "policy_tcp_allowed");
		}
	}

	for (size_t i = 0; i < policy_secret_count(p); i++) {
		const struct policy_secret *s = policy_secret_at(p, i);

		if (!s || !s->name || !s->placeholder)
			fz_die("secret %zu without a name or placeholder", i);
		if (strncmp(s->placeholder, "SLUICE_PLACEHOLDER_", 19))
			fz_die("secret %s: placeholder '%s' lacks the prefix", s->name, s->placeholder);
		if (s->inject == SECRET_INJECT_HEADER && !s->inject_header)
			fz_die("secret %s: header injection without a header name", s->name);
		for (size_t h = 0; h < FZ_N(FZ_HOSTS); h++)
			(void)policy_secret_allowed(s, FZ_HOSTS[h], strlen(FZ_HOSTS[h]), "POST", 4,
						    "/v1/x", 5);
	}
	policy_unref(policy_ref(p));
	policy_unref(p);
	return 0;
}

#endif /* SLUICE_FUZZ_POLICY_H */
