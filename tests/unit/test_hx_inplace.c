// SPDX-License-Identifier: MIT
/*
 * hx's zero-copy response bodies (hx_upstream_passthrough and
 * hx_on_upstream_inplace): body bytes the caller reads straight into the
 * output buffer are committed where they are, give the same bytes, events and
 * audit line as the copying path, and the in-place path is never offered when
 * the body must be changed (secrets to scrub, chunked re-framing, HEAD).
 */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "hx.h"
#include "policy.h"

#define POLICY_PLAIN \
	"rules:\n" \
	"  - {action: allow, host: \"api.test\", port: 443}\n" \
	"  - {action: allow, host: \"other.test\", port: 443}\n"
#define POLICY_SECRETS POLICY_PLAIN \
	"secrets:\n" \
	"  TOK: {value: \"real-token-123\", hosts: [\"api.test\"], in: [header, body]}\n"

static struct policy *pol;
static int n_audit;
static uint64_t audit_bytes_out;
static int audit_status;

static struct policy *t_policy_get(void *ctx) { (void)ctx; return pol ? policy_ref(pol) : NULL; }

static void t_audit(void *ctx, const struct hx_audit *r)
{
	(void)ctx;
	n_audit++;
	audit_bytes_out = r->bytes_out;
	audit_status = r->status;
}

static void load(const char *yaml)
{
	char err[256];

	policy_unref(pol);
	pol = NULL;
	if (policy_load_buf(yaml, strlen(yaml), "t.yaml", POLICY_FMT_SLUICE, &pol, err, sizeof(err)))
		fail_msg("policy: %s", err);
	if (policy_resolve_secrets(pol, err, sizeof(err)))
		fail_msg("secrets: %s", err);
}

static const struct hx_limits LIMITS = { .max_header_bytes = 4096, .max_headers = 32 };

static struct hx *mk(const char *sni)
{
	struct hx_env env = {
		.sni = sni, .port = 443, .client_tls = true, .limits = &LIMITS,
		.policy_get = t_policy_get, .audit = t_audit,
	};
	struct hx *h = hx_new(&env);

	assert_non_null(h);
	n_audit = 0;
	return h;
}

/* Sends req, then the response head through the copying path. */
static void start(struct hx *h, const char *req, const char *head, struct buf *up, struct buf *cl)
{
	size_t used;
	unsigned ev = 0;

	assert_int_equal(hx_on_client(h, req, strlen(req), &used, up, cl, &ev), 0);
	assert_int_equal(used, strlen(req));
	assert_true(ev & HX_EV_OPEN_UPSTREAM);
	ev = 0;
	assert_int_equal(hx_upstream_passthrough(h), 0); /* no response head yet */
	assert_int_equal(hx_on_upstream(h, head, strlen(head), cl, &ev), 0);
}

/* After req and head on a fresh exchange toward sni: how many body bytes may
 * go in place (0: none, the body goes through hx). */
static size_t passthrough_after(const char *sni, const char *req, const char *head)
{
	struct buf up = { 0 }, cl = { 0 };
	struct hx *h = mk(sni);
	size_t n;

	start(h, req, head, &up, &cl);
	n = hx_upstream_passthrough(h);
	hx_free(h);
	buf_free(&up);
	buf_free(&cl);
	return n;
}

/* Reads n body bytes "from the socket" into cl's tail and hands them over in place. */
static int read_inplace(struct hx *h, struct buf *cl, const char *bytes, size_t n, unsigned *ev)
{
	char *p = buf_reserve(cl, n);

	assert_non_null(p);
	memcpy(p, bytes, n);
	return hx_on_upstream_inplace(h, cl, n, ev);
}

static void t_inplace_body_not_copied(void **state)
{
	static const char body[] = "0123456789abcdefghij";
	struct buf up = { 0 }, cl = { 0 }, ref = { 0 };
	struct hx *h, *g;
	unsigned ev = 0;
	size_t head_len;
	char *where;

	(void)state;
	load(POLICY_PLAIN);
	h = mk("api.test");
	start(h, "GET /x HTTP/1.1\r\nHost: api.test\r\n\r\n",
	      "HTTP/1.1 200 OK\r\nContent-Length: 20\r\nServer: s\r\n\r\n", &up, &cl);
	head_len = buf_len(&cl);
	assert_int_equal(hx_upstream_passthrough(h), 20);
	/* More than the rest of the body: refused, nothing committed. */
	assert_int_equal(read_inplace(h, &cl, body, 21, &ev), -EINVAL);
	assert_int_equal(buf_len(&cl), head_len);

	where = buf_reserve(&cl, 64);
	assert_int_equal(read_inplace(h, &cl, body, 7, &ev), 0);
	assert_int_equal(ev, 0);
	assert_int_equal(hx_upstream_passthrough(h), 13);
	assert_int_equal(read_inplace(h, &cl, body + 7, 13, &ev), 0);
	/* Committed where the caller wrote them: same buffer, no move. */
	assert_ptr_equal(buf_head(&cl) + head_len, where);
	assert_int_equal(buf_len(&cl), head_len + 20);
	assert_memory_equal(buf_head(&cl) + head_len, body, 20);
	assert_true(ev & HX_EV_RESUME_CLIENT);
	assert_int_equal(hx_upstream_passthrough(h), 0);
	assert_int_equal(n_audit, 1);
	assert_int_equal(audit_status, 200);

	/* The copying path gives the very same bytes and accounting. */
	{
		uint64_t inplace_out = audit_bytes_out;
		const char *resp = "HTTP/1.1 200 OK\r\nContent-Length: 20\r\nServer: s\r\n\r\n"
				   "0123456789abcdefghij";
		struct buf up2 = { 0 };

		g = mk("api.test");
		start(g, "GET /x HTTP/1.1\r\nHost: api.test\r\n\r\n", "", &up2, &ref);
		ev = 0;
		assert_int_equal(hx_on_upstream(g, resp, strlen(resp), &ref, &ev), 0);
		assert_int_equal(buf_len(&ref), buf_len(&cl));
		assert_memory_equal(buf_head(&ref), buf_head(&cl), buf_len(&cl));
		assert_int_equal(audit_bytes_out, inplace_out);
		hx_free(g);
		buf_free(&up2);
	}

	/* Keep-alive: the next exchange on the same hx works the same way. */
	{
		size_t used;
		const char *req = "GET /y HTTP/1.1\r\nHost: api.test\r\n\r\n";
		const char *head = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n";

		ev = 0;
		buf_consume(&cl, buf_len(&cl));
		buf_consume(&up, buf_len(&up));
		assert_int_equal(hx_on_client(h, req, strlen(req), &used, &up, &cl, &ev), 0);
		assert_int_equal(hx_on_upstream(h, head, strlen(head), &cl, &ev), 0);
		assert_int_equal(hx_upstream_passthrough(h), 3);
		assert_int_equal(read_inplace(h, &cl, "xyz", 3, &ev), 0);
		assert_true(ev & HX_EV_RESUME_CLIENT);
		assert_int_equal(n_audit, 2); /* mk(g) reset the count: g's line, then this one */
	}
	hx_free(h);
	buf_free(&up);
	buf_free(&cl);
	buf_free(&ref);
}

/* A secret that may go to this host: the response body is scrubbed (values
 * back to placeholders), so its bytes must go through hx_on_upstream. */
static void t_no_inplace_when_scrubbing(void **state)
{
	struct buf up = { 0 }, cl = { 0 };
	struct hx *h;
	unsigned ev = 0;
	const char *body = "real-token-123";

	(void)state;
	load(POLICY_SECRETS);
	h = mk("api.test");
	start(h, "GET /x HTTP/1.1\r\nHost: api.test\r\nAuthorization: SLUICE_PLACEHOLDER_TOK\r\n\r\n",
	      "HTTP/1.1 200 OK\r\nContent-Length: 14\r\n\r\n", &up, &cl);
	assert_int_equal(hx_upstream_passthrough(h), 0);
	assert_int_equal(read_inplace(h, &cl, body, 14, &ev), -EINVAL);
	/* The copying path still scrubs. */
	assert_int_equal(hx_on_upstream(h, body, 14, &cl, &ev), 0);
	{
		const char *s = buf_head(&cl);

		assert_null(memmem(s, buf_len(&cl), "real-token-123", 14));
		assert_non_null(memmem(s, buf_len(&cl), "SLUICE_PLACEHOLDER_TOK", 22));
	}
	hx_free(h);
	buf_free(&up);
	buf_free(&cl);

	/* Same policy, a host the secret may not go to: nothing to scrub, in place. */
	assert_int_equal(passthrough_after("other.test", "GET /x HTTP/1.1\r\nHost: other.test\r\n\r\n",
					   "HTTP/1.1 200 OK\r\nContent-Length: 14\r\n\r\n"), 14);
}

/* Chunked bodies are re-framed and HEAD has none: never in place. */
static void t_no_inplace_chunked_head(void **state)
{
	(void)state;
	load(POLICY_PLAIN);
	assert_int_equal(passthrough_after("api.test", "GET /x HTTP/1.1\r\nHost: api.test\r\n\r\n",
					   "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel"), 0);
	assert_int_equal(passthrough_after("api.test", "HEAD /x HTTP/1.1\r\nHost: api.test\r\n\r\n",
					   "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"), 0);
}

static int teardown(void **state)
{
	(void)state;
	policy_unref(pol);
	pol = NULL;
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(t_inplace_body_not_copied, teardown),
		cmocka_unit_test_teardown(t_no_inplace_when_scrubbing, teardown),
		cmocka_unit_test_teardown(t_no_inplace_chunked_head, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
