// SPDX-License-Identifier: MIT
/*
 * hx, the broker's HTTP/1.1 engine: byte strings in, exact bytes and events
 * out. Every request is also fed split at every offset (the output must not
 * change), from exact-size heap copies so ASan catches any over-read.
 */
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

#define POLICY_PLAIN_S \
	"rules:\n" \
	"  - {action: allow, host: \"api.test\", method: [GET, POST, HEAD, PUT], path: \"/v1/**\", port: 443}\n" \
	"  - {action: allow, host: \"plain.test\", port: 80}\n" \
	"  - {action: allow, host: \"plain2.test\", port: 80}\n"

#define POLICY_SECRETS_S \
	"rules:\n" \
	"  - {action: allow, host: \"api.test\", method: [GET, POST, HEAD, PUT], path: \"/v1/**\", port: 443}\n" \
	"  - {action: allow, host: \"other.test\", port: 443}\n" \
	"  - {action: allow, host: \"inj.test\", port: 443}\n" \
	"  - {action: allow, host: \"plain.test\", port: 80}\n" \
	"secrets:\n" \
	"  TOK: {value: \"real-token-123\", hosts: [\"api.test\"], in: [header, query, body]}\n" \
	"  HDRONLY: {value: \"hv-secret\", hosts: [\"api.test\"]}\n" \
	"  INJ: {value: \"inj-secret\", hosts: [\"inj.test\"], inject: bearer}\n"

/* TOK is a prefix of TOKEN: a match at the end of input is only certain at the end. */
#define POLICY_SECRETS_PREFIX POLICY_SECRETS_S \
	"  TOKEN: {value: \"other-value\", hosts: [\"api.test\"]}\n"
#define POLICY_PLAIN POLICY_PLAIN_S
#define POLICY_SECRETS POLICY_SECRETS_S

struct audit_copy {
	int status;
	char method[16], host[64], target[256], rule[256], secrets[128], cut[128];
	uint64_t bytes_in, bytes_out;
};

struct tenv {
	struct policy *pol;
	int n_audit;
	struct audit_copy a[8];
};

static struct tenv T;

static struct policy *t_policy_get(void *ctx)
{
	struct tenv *t = ctx;

	return t->pol ? policy_ref(t->pol) : NULL;
}

static void t_audit(void *ctx, const struct hx_audit *r)
{
	struct tenv *t = ctx;
	struct audit_copy *c = &t->a[t->n_audit % 8];

	t->n_audit++;
	/* Every line has a real duration, also for a request refused before its
	 * head was complete (the clock started with the connection, not at 0). */
	assert_true(r->start_us > 0);
	assert_true(r->end_us >= r->start_us && r->end_us - r->start_us < 60000000ull);
	memset(c, 0, sizeof(*c));
	c->status = r->status;
	snprintf(c->method, sizeof(c->method), "%.*s", (int)r->method_len, r->method);
	snprintf(c->host, sizeof(c->host), "%.*s", (int)r->host_len, r->host);
	snprintf(c->target, sizeof(c->target), "%.*s", (int)r->target_len, r->target ? r->target : "");
	snprintf(c->rule, sizeof(c->rule), "%s", r->rule ? r->rule : "");
	snprintf(c->secrets, sizeof(c->secrets), "%s", r->secrets ? r->secrets : "");
	snprintf(c->cut, sizeof(c->cut), "%s", r->cut ? r->cut : "");
	c->bytes_in = r->bytes_in;
	c->bytes_out = r->bytes_out;
}

static const struct hx_limits LIMITS = { .max_header_bytes = 1024, .max_headers = 12 };

static void load_policy(const char *yaml)
{
	char err[256];
	int r;

	policy_unref(T.pol);
	T.pol = NULL;
	r = policy_load_buf(yaml, strlen(yaml), "test.yaml", POLICY_FMT_SLUICE, &T.pol, err, sizeof(err));
	if (r)
		fail_msg("policy: %s", err);
	r = policy_resolve_secrets(T.pol, err, sizeof(err));
	if (r)
		fail_msg("secrets: %s", err);
}

static struct hx *mk(const char *sni, uint16_t port, bool tls)
{
	struct hx_env env = {
		.sni = sni, .port = port, .client_tls = tls, .limits = &LIMITS,
		.policy_get = t_policy_get, .audit = t_audit, .ctx = &T,
	};
	struct hx *h = hx_new(&env);

	assert_non_null(h);
	T.n_audit = 0;
	return h;
}

static void t_teardown_all(void)
{
	policy_unref(T.pol);
	T.pol = NULL;
}

/* The buffer as a NUL-terminated string (test data has no NULs in outputs). */
static const char *S(struct buf *b)
{
	if (!buf_reserve(b, 1))
		fail();
	b->data[b->off + b->len] = 0;
	return buf_head(b);
}

#define assert_out(b, exp) do {                                                       \
	const char *got_ = S(b), *exp_ = (exp);                                       \
	if (strcmp(got_, exp_)) fail_msg("output differs\n--- expected\n%s\n--- got\n%s", exp_, got_); \
} while (0)

/* Feeds data split at `split` (the second part after the first), as the
 * connection code would: exact heap copies, unconsumed bytes re-fed first. */
static size_t feed_split(struct hx *h, const char *data, size_t len, size_t split,
			 struct buf *up, struct buf *cl, unsigned *ev)
{
	size_t consumed, total = 0;
	char *a = malloc(split ? split : 1), *b = malloc(len - split ? len - split : 1);

	memcpy(a, data, split);
	memcpy(b, data + split, len - split);
	assert_int_equal(hx_on_client(h, a, split, &consumed, up, cl, ev), 0);
	total += consumed;
	if (consumed == split) {
		assert_int_equal(hx_on_client(h, b, len - split, &consumed, up, cl, ev), 0);
		total += consumed;
	}
	free(a);
	free(b);
	return total;
}

static size_t feed(struct hx *h, const char *data, struct buf *up, struct buf *cl, unsigned *ev)
{
	size_t len = strlen(data);

	return feed_split(h, data, len, len, up, cl, ev);
}

static void upstream(struct hx *h, const char *data, struct buf *cl, unsigned *ev)
{
	size_t len = strlen(data);
	char *a = malloc(len ? len : 1);

	memcpy(a, data, len);
	assert_int_equal(hx_on_upstream(h, a, len, cl, ev), 0);
	free(a);
}

static char *xmalloc(size_t n)
{
	char *p = malloc(n);

	if (!p)
		abort();
	return p;
}

static void reset(struct buf *b) { b->off = b->len = 0; }

/* ------------------------------------------------------------------ */
/* Forwarding table: request + response, expected bytes both ways.    */

struct fwd_case {
	const char *name;
	const char *policy;
	const char *sni; uint16_t port; bool tls;
	const char *req;
	const char *exp_up;
	const char *resp;
	const char *exp_client;
	unsigned exp_ev_req, exp_ev_resp;
	const char *audit_secrets;
};

static const struct fwd_case FWD[] = {
	{ "simple GET, hop-by-hop dropped", NULL, "api.test", 443, true,
	  "GET /v1/x?a=1 HTTP/1.1\r\nHost: api.test\r\nUser-Agent: t\r\nConnection: keep-alive, X-Hop\r\n"
	  "X-Hop: 1\r\nKeep-Alive: 5\r\nTE: trailers\r\nProxy-Authorization: x\r\n\r\n",
	  "GET /v1/x?a=1 HTTP/1.1\r\nHost: api.test\r\nUser-Agent: t\r\n\r\n",
	  "HTTP/1.1 200 OK\r\nServer: s\r\nContent-Length: 2\r\nKeep-Alive: timeout=5\r\n\r\nhi",
	  "HTTP/1.1 200 OK\r\nServer: s\r\nContent-Length: 2\r\n\r\nhi",
	  HX_EV_OPEN_UPSTREAM, HX_EV_RESUME_CLIENT, "" },
	{ "Host with port, trailing dot and capitals matches the SNI", NULL, "api.test", 443, true,
	  "GET /v1/ HTTP/1.1\r\nHost: API.Test.:443\r\n\r\n",
	  "GET /v1/ HTTP/1.1\r\nHost: api.test:443\r\n\r\n",
	  "HTTP/1.1 204 No Content\r\n\r\n",
	  "HTTP/1.1 204 No Content\r\n\r\n",
	  HX_EV_OPEN_UPSTREAM, HX_EV_RESUME_CLIENT, "" },
	{ "bare LF and CRLFs inside a body are the body's business", NULL, "api.test", 443, true,
	  "POST /v1/p HTTP/1.1\r\nHost: api.test\r\nContent-Length: 6\r\n\r\na\nb\r\n\n",
	  "POST /v1/p HTTP/1.1\r\nHost: api.test\r\nContent-Length: 6\r\n\r\na\nb\r\n\n",
	  "HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n",
	  "HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n",
	  HX_EV_OPEN_UPSTREAM, HX_EV_RESUME_CLIENT, "" },
	{ "POST with Content-Length", NULL, "api.test", 443, true,
	  "POST /v1/p HTTP/1.1\r\nHost: api.test\r\nContent-Length: 5\r\n\r\nhello",
	  "POST /v1/p HTTP/1.1\r\nHost: api.test\r\nContent-Length: 5\r\n\r\nhello",
	  "HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n",
	  "HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n",
	  HX_EV_OPEN_UPSTREAM, HX_EV_RESUME_CLIENT, "" },
	{ "chunked request and response are re-chunked, trailers dropped", NULL, "api.test", 443, true,
	  "POST /v1/c HTTP/1.1\r\nHost: api.test\r\nTransfer-Encoding: chunked\r\n\r\n"
	  "3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nX-Trailer: t\r\n\r\n",
	  NULL, /* chunk boundaries follow the feeds: checked by test_chunked_split */
	  "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nwxyz\r\n0\r\n\r\n",
	  "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nwxyz\r\n0\r\n\r\n",
	  HX_EV_OPEN_UPSTREAM, HX_EV_RESUME_CLIENT, "" },
	{ "HEAD keeps Content-Length and expects no body", NULL, "api.test", 443, true,
	  "HEAD /v1/h HTTP/1.1\r\nHost: api.test\r\n\r\n",
	  "HEAD /v1/h HTTP/1.1\r\nHost: api.test\r\n\r\n",
	  "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n",
	  "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n",
	  HX_EV_OPEN_UPSTREAM, HX_EV_RESUME_CLIENT, "" },
	{ "Upgrade: h2c is stripped, the request goes as plain HTTP/1.1", NULL, "api.test", 443, true,
	  "GET /v1/u HTTP/1.1\r\nHost: api.test\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
	  "HTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n",
	  "GET /v1/u HTTP/1.1\r\nHost: api.test\r\n\r\n",
	  "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nk",
	  "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nk",
	  HX_EV_OPEN_UPSTREAM, HX_EV_RESUME_CLIENT, "" },
	{ "close-delimited response becomes chunked; upstream not reused", NULL, "api.test", 443, true,
	  "GET /v1/e HTTP/1.1\r\nHost: api.test\r\n\r\n",
	  "GET /v1/e HTTP/1.1\r\nHost: api.test\r\n\r\n",
	  "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n",
	  "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
	  HX_EV_OPEN_UPSTREAM, 0, "" },
	{ "plain HTTP by Host", NULL, NULL, 80, false,
	  "GET /x HTTP/1.1\r\nHost: plain.test\r\n\r\n",
	  "GET /x HTTP/1.1\r\nHost: plain.test\r\n\r\n",
	  "HTTP/1.1 302 Found\r\nLocation: https://elsewhere.test/\r\nContent-Length: 0\r\n\r\n",
	  "HTTP/1.1 302 Found\r\nLocation: https://elsewhere.test/\r\nContent-Length: 0\r\n\r\n",
	  HX_EV_OPEN_UPSTREAM, HX_EV_RESUME_CLIENT, "" },
	{ "absolute-form target: authority is the host, origin-form goes upstream", NULL, "api.test", 443, true,
	  "GET https://api.test/v1/abs?q HTTP/1.1\r\nHost: api.test\r\n\r\n",
	  "GET /v1/abs?q HTTP/1.1\r\nHost: api.test\r\n\r\n",
	  "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
	  "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
	  HX_EV_OPEN_UPSTREAM, HX_EV_RESUME_CLIENT, "" },
	{ "absolute-form without a path: origin-form \"/\" goes upstream", NULL, NULL, 80, false,
	  "GET http://plain.test HTTP/1.1\r\nHost: plain.test\r\n\r\n",
	  "GET / HTTP/1.1\r\nHost: plain.test\r\n\r\n",
	  "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
	  "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
	  HX_EV_OPEN_UPSTREAM, HX_EV_RESUME_CLIENT, "" },
	{ "HTTP/1.0 client: chunked response becomes close-delimited", NULL, "api.test", 443, true,
	  "GET /v1/old HTTP/1.0\r\nHost: api.test\r\n\r\n",
	  "GET /v1/old HTTP/1.1\r\nHost: api.test\r\n\r\n",
	  "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n",
	  "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nab",
	  HX_EV_OPEN_UPSTREAM, HX_EV_CLOSE, "" },
	{ "HTTP/1.0 client: a 1xx is not passed on (it would take it for the final response)", NULL,
	  "api.test", 443, true,
	  "GET /v1/old HTTP/1.0\r\nHost: api.test\r\n\r\n",
	  "GET /v1/old HTTP/1.1\r\nHost: api.test\r\n\r\n",
	  "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nab",
	  "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nab",
	  HX_EV_OPEN_UPSTREAM, HX_EV_CLOSE, "" },
	/* ---- secrets ---- */
	{ "placeholder in a header and the query is substituted", POLICY_SECRETS, "api.test", 443, true,
	  "GET /v1/s?key=SLUICE_PLACEHOLDER_TOK&x=1 HTTP/1.1\r\nHost: api.test\r\n"
	  "X-Key: SLUICE_PLACEHOLDER_HDRONLY\r\n\r\n",
	  "GET /v1/s?key=real-token-123&x=1 HTTP/1.1\r\nHost: api.test\r\nX-Key: hv-secret\r\nAccept-Encoding: identity\r\n\r\n",
	  "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
	  "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
	  HX_EV_OPEN_UPSTREAM, HX_EV_RESUME_CLIENT, "TOK,HDRONLY" },
	{ "placeholder in a Content-Length body: substituted, length fixed", POLICY_SECRETS, "api.test", 443, true,
	  "POST /v1/b HTTP/1.1\r\nHost: api.test\r\nContent-Length: 31\r\n\r\n{\"t\":\"SLUICE_PLACEHOLDER_TOK\"}\n",
	  "POST /v1/b HTTP/1.1\r\nHost: api.test\r\nAccept-Encoding: identity\r\nContent-Length: 23\r\n\r\n{\"t\":\"real-token-123\"}\n",
	  "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
	  "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
	  HX_EV_OPEN_UPSTREAM, HX_EV_RESUME_CLIENT, "TOK" },
	{ "echoed secret value is scrubbed from response headers and body", POLICY_SECRETS, "api.test", 443, true,
	  "GET /v1/echo HTTP/1.1\r\nHost: api.test\r\nX-Key: SLUICE_PLACEHOLDER_TOK\r\n\r\n",
	  "GET /v1/echo HTTP/1.1\r\nHost: api.test\r\nX-Key: real-token-123\r\nAccept-Encoding: identity\r\n\r\n",
	  "HTTP/1.1 200 OK\r\nX-Echo: real-token-123\r\nContent-Length: 19\r\n\r\nyou: real-token-123",
	  "HTTP/1.1 200 OK\r\nX-Echo: SLUICE_PLACEHOLDER_TOK\r\nTransfer-Encoding: chunked\r\n\r\n"
	  "5\r\nyou: \r\n16\r\nSLUICE_PLACEHOLDER_TOK\r\n0\r\n\r\n",
	  HX_EV_OPEN_UPSTREAM, HX_EV_RESUME_CLIENT, "TOK" },
	{ "a value echoed into a response header's name is scrubbed there too", POLICY_SECRETS, "api.test", 443, true,
	  "GET /v1/echo HTTP/1.1\r\nHost: api.test\r\n\r\n",
	  "GET /v1/echo HTTP/1.1\r\nHost: api.test\r\nAccept-Encoding: identity\r\n\r\n",
	  "HTTP/1.1 200 OK\r\nX-real-token-123: v\r\nContent-Length: 0\r\n\r\n",
	  "HTTP/1.1 200 OK\r\nX-SLUICE_PLACEHOLDER_TOK: v\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
	  HX_EV_OPEN_UPSTREAM, HX_EV_RESUME_CLIENT, "" },
	{ "toward a secret's host no Range is asked for: two ranges could split a value", POLICY_SECRETS, "api.test", 443, true,
	  "GET /v1/store HTTP/1.1\r\nHost: api.test\r\nRange: bytes=0-5\r\nIf-Range: \"e\"\r\n\r\n",
	  "GET /v1/store HTTP/1.1\r\nHost: api.test\r\nAccept-Encoding: identity\r\n\r\n",
	  "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
	  "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
	  HX_EV_OPEN_UPSTREAM, HX_EV_RESUME_CLIENT, "" },
	{ "a method override the rule allows passes, as sent", POLICY_PLAIN, "api.test", 443, true,
	  "POST /v1/x HTTP/1.1\r\nHost: api.test\r\nX-HTTP-Method-Override: PUT\r\nContent-Length: 0\r\n\r\n",
	  "POST /v1/x HTTP/1.1\r\nHost: api.test\r\nX-HTTP-Method-Override: PUT\r\nContent-Length: 0\r\n\r\n",
	  "HTTP/1.1 204 No Content\r\n\r\n",
	  "HTTP/1.1 204 No Content\r\n\r\n",
	  HX_EV_OPEN_UPSTREAM, HX_EV_RESUME_CLIENT, "" },
	{ "a secret's host is scrubbed even when this request sends nothing (another stored it)",
	  POLICY_SECRETS, "api.test", 443, true,
	  "GET /v1/store HTTP/1.1\r\nHost: api.test\r\nAccept-Encoding: gzip, br\r\n\r\n",
	  "GET /v1/store HTTP/1.1\r\nHost: api.test\r\nAccept-Encoding: identity\r\n\r\n",
	  "HTTP/1.1 200 OK\r\nContent-Length: 14\r\n\r\nreal-token-123",
	  "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n16\r\nSLUICE_PLACEHOLDER_TOK\r\n0\r\n\r\n",
	  HX_EV_OPEN_UPSTREAM, HX_EV_RESUME_CLIENT, "" },
	{ "bearer injection replaces the client's Authorization", POLICY_SECRETS, "inj.test", 443, true,
	  "GET /any HTTP/1.1\r\nHost: inj.test\r\nAuthorization: Bearer nothing\r\n\r\n",
	  "GET /any HTTP/1.1\r\nHost: inj.test\r\nAuthorization: Bearer inj-secret\r\nAccept-Encoding: identity\r\n\r\n",
	  "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
	  "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
	  HX_EV_OPEN_UPSTREAM, HX_EV_RESUME_CLIENT, "INJ" },
};

static void run_fwd(const struct fwd_case *c, size_t split, bool check_up)
{
	struct buf up = {0}, cl = {0};
	unsigned ev = 0;
	size_t len = strlen(c->req);
	struct hx *h;

	load_policy(c->policy ? c->policy : POLICY_PLAIN);
	h = mk(c->sni, c->port, c->tls);
	assert_int_equal(feed_split(h, c->req, len, split, &up, &cl, &ev), len);
	if (ev != c->exp_ev_req)
		fail_msg("%s (split %zu): request events 0x%x, expected 0x%x; to_client: %s",
			 c->name, split, ev, c->exp_ev_req, S(&cl));
	assert_int_equal(cl.len, 0);
	if (check_up && c->exp_up)
		assert_out(&up, c->exp_up);
	assert_false(hx_idle(h));
	ev = 0;
	upstream(h, c->resp, &cl, &ev);
	if (strstr(c->resp, "Connection: close") && !strstr(c->resp, "Content-Length")) {
		assert_int_equal(hx_on_upstream_eof(h, &cl, &ev), 0);
		assert_out(&cl, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
		assert_true(ev & HX_EV_UPSTREAM_DONE);
		assert_true(ev & HX_EV_RESUME_CLIENT);
	} else {
		assert_out(&cl, c->exp_client);
		if (ev != c->exp_ev_resp)
			fail_msg("%s: response events 0x%x, expected 0x%x", c->name, ev, c->exp_ev_resp);
	}
	assert_int_equal(T.n_audit, 1);
	assert_string_equal(T.a[0].secrets, c->audit_secrets);
	assert_int_not_equal(T.a[0].status, 0);
	/* The audit never carries a value. */
	assert_null(strstr(T.a[0].target, "real-token"));
	hx_free(h);
	buf_free(&up);
	buf_free(&cl);
}

static void test_forward_table(void **state)
{
	for (size_t i = 0; i < sizeof(FWD) / sizeof(FWD[0]); i++) {
		size_t len = strlen(FWD[i].req);

		print_message("  case: %s\n", FWD[i].name);
		for (size_t split = 0; split <= len; split++)
			run_fwd(&FWD[i], split, true);
	}
}

/* Chunk sizes follow the reads, so compare the de-chunked body. */
static void dechunk(const char *s, char *out, size_t outlen)
{
	const char *p = strstr(s, "\r\n\r\n");
	size_t k = 0;

	assert_non_null(p);
	p += 4;
	for (;;) {
		unsigned long n = strtoul(p, (char **)&p, 16);

		assert_memory_equal(p, "\r\n", 2);
		p += 2;
		if (!n)
			break;
		assert_true(k + n < outlen);
		memcpy(out + k, p, n);
		k += n;
		p += n;
		assert_memory_equal(p, "\r\n", 2);
		p += 2;
	}
	assert_string_equal(p, "\r\n");
	out[k] = 0;
}

static void test_chunked_split(void **state)
{
	const char *req = "POST /v1/c HTTP/1.1\r\nHost: api.test\r\nTransfer-Encoding: chunked\r\n\r\n"
			  "3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nX-Trailer: t\r\n\r\n";
	size_t len = strlen(req);

	for (int pol = 0; pol < 2; pol++) {
		load_policy(pol ? POLICY_SECRETS : POLICY_PLAIN);
		for (size_t split = 0; split <= len; split++) {
			struct buf up = {0}, cl = {0};
			unsigned ev = 0;
			struct hx *h = mk("api.test", 443, true);
			char body[64];

			assert_int_equal(feed_split(h, req, len, split, &up, &cl, &ev), len);
			assert_true(ev & HX_EV_OPEN_UPSTREAM);
			/* with secrets bound to api.test its responses are scrubbed: no coding */
			const char *head = pol ? "POST /v1/c HTTP/1.1\r\nHost: api.test\r\nAccept-Encoding: identity\r\n"
						 "Transfer-Encoding: chunked\r\n\r\n"
					       : "POST /v1/c HTTP/1.1\r\nHost: api.test\r\n"
						 "Transfer-Encoding: chunked\r\n\r\n";

			assert_int_equal(strncmp(S(&up), head, strlen(head)), 0);
			assert_null(strstr(S(&up), "ext=1"));
			assert_null(strstr(S(&up), "X-Trailer"));
			dechunk(S(&up), body, sizeof(body));
			assert_string_equal(body, "abcde");
			hx_free(h);
			buf_free(&up);
			buf_free(&cl);
		}
	}
}

/* llhttp skips the two bytes after a chunk's data unseen: anything but CRLF
 * there is refused (400 toward the client, 502 from the upstream), wherever
 * the reads split the body. */
static void test_chunk_crlf(void **state)
{
	static const char *const bad[] = { "5\r\nhelloXX0\r\n\r\n", "5\r\nhello\rX0\r\n\r\n",
					   "5\r\nhelloX\n0\r\n\r\n" };
	const char *head = "POST /v1/c HTTP/1.1\r\nHost: api.test\r\nTransfer-Encoding: chunked\r\n\r\n";
	char req[256], rs[256];

	load_policy(POLICY_PLAIN);
	for (size_t b = 0; b < sizeof(bad) / sizeof(bad[0]); b++) {
		size_t len = (size_t)snprintf(req, sizeof(req), "%s%s", head, bad[b]);

		for (size_t split = 0; split <= len; split++) {
			struct buf up = {0}, cl = {0};
			unsigned ev = 0;
			struct hx *h = mk("api.test", 443, true);

			feed_split(h, req, len, split, &up, &cl, &ev);
			if (strstr(S(&cl), "HTTP/1.1 400 Bad Request\r\n") != S(&cl) || !(ev & HX_EV_CLOSE) ||
			    !strstr(S(&cl), "CRLF"))
				fail_msg("body #%zu split at %zu: not refused: %s", b, split, S(&cl));
			hx_free(h);
			buf_free(&up);
			buf_free(&cl);
		}
	}
	/* The lines after the last chunk (trailers, the empty line): bare LF
	 * refused at every split point, CRLF taken, and a pipelined request after
	 * good trailers served. */
	static const char *const tbad[] = { "3\r\nabc\r\n0\r\n\n", "0\r\nX-T: 1\n\r\n",
					    "0\r\nX-T: 1\r\n\nGET /v1/t3 HTTP/1.1\r\nHost: api.test\r\n\r\n" };
	for (size_t b = 0; b < sizeof(tbad) / sizeof(tbad[0]); b++) {
		size_t len = (size_t)snprintf(req, sizeof(req), "%s%s", head, tbad[b]);

		for (size_t split = 0; split <= len; split++) {
			struct buf up = {0}, cl = {0};
			unsigned ev = 0;
			struct hx *h = mk("api.test", 443, true);

			feed_split(h, req, len, split, &up, &cl, &ev);
			if (strstr(S(&cl), "HTTP/1.1 400 Bad Request\r\n") != S(&cl) || !(ev & HX_EV_CLOSE) ||
			    !strstr(S(&cl), "trailer section") || strstr(S(&up), "/v1/t3"))
				fail_msg("trailers #%zu split at %zu: not refused: %s", b, split, S(&cl));
			hx_free(h);
			buf_free(&up);
			buf_free(&cl);
		}
	}
	{
		size_t len = (size_t)snprintf(req, sizeof(req), "%s%s", head,
					      "3\r\nabc\r\n0\r\nX-T: 1\r\nX-U: 2\r\n\r\n");

		for (size_t split = 0; split <= len; split++) {
			struct buf up = {0}, cl = {0};
			unsigned ev = 0;
			struct hx *h = mk("api.test", 443, true);

			feed_split(h, req, len, split, &up, &cl, &ev);
			/* (the body is re-chunked per read: "abc" may leave as two chunks) */
			if (buf_len(&cl) || (ev & HX_EV_CLOSE) || buf_len(&up) < 5 ||
			    strcmp(S(&up) + buf_len(&up) - 5, "0\r\n\r\n"))
				fail_msg("good trailers split at %zu: to_up %s, to_client %s", split, S(&up), S(&cl));
			hx_free(h);
			buf_free(&up);
			buf_free(&cl);
		}
	}
	/* The same framing from the upstream, split the same ways. */
	for (size_t b = 0; b < sizeof(bad) / sizeof(bad[0]); b++) {
		size_t len = (size_t)snprintf(rs, sizeof(rs), "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%s",
					      bad[b]);

		for (size_t split = 0; split <= len; split++) {
			struct buf up = {0}, cl = {0};
			unsigned ev = 0;
			struct hx *h = mk("api.test", 443, true);
			char *a = malloc(split ? split : 1), *c = malloc(len - split ? len - split : 1);

			feed(h, "GET /v1/x HTTP/1.1\r\nHost: api.test\r\n\r\n", &up, &cl, &ev);
			memcpy(a, rs, split);
			memcpy(c, rs + split, len - split);
			assert_int_equal(hx_on_upstream(h, a, split, &cl, &ev), 0);
			if (!(ev & HX_EV_CLOSE))
				assert_int_equal(hx_on_upstream(h, c, len - split, &cl, &ev), 0);
			/* Before the head went out: a 502. After: the connection breaks. */
			if (!(ev & HX_EV_CLOSE) || (strstr(S(&cl), "HTTP/1.1 502 Bad Gateway\r\n") != S(&cl) &&
						    !(ev & HX_EV_ABORT)))
				fail_msg("response #%zu split at %zu: not refused: %s", b, split, S(&cl));
			free(a);
			free(c);
			hx_free(h);
			buf_free(&up);
			buf_free(&cl);
		}
	}
}

/* ------------------------------------------------------------------ */
/* Local refusals                                                     */

struct refuse_case {
	const char *name;
	const char *policy;
	const char *sni; uint16_t port; bool tls;
	const char *req;
	const char *exp_client;   /* exact, or a prefix when exact_prefix */
	bool prefix;
	bool close;
	const char *audit_secrets;
};

#define DENY_JSON(host, m, path, rule) \
	"{\"error\":\"denied\",\"host\":\"" host "\",\"method\":\"" m "\",\"path\":\"" path "\",\"rule\":\"" rule "\"}\n"

static const struct refuse_case REFUSE[] = {
	{ "no rule matches: 403 JSON", NULL, "evil.test", 443, true,
	  "GET /x HTTP/1.1\r\nHost: evil.test\r\n\r\n",
	  "HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\nContent-Length: 104\r\n\r\n"
	  DENY_JSON("evil.test", "GET", "/x", "no rule matched: default deny"), false, false, "" },
	{ "method not in the rule", NULL, "api.test", 443, true,
	  "DELETE /v1/x HTTP/1.1\r\nHost: api.test\r\n\r\n",
	  "HTTP/1.1 403 Forbidden\r\n", true, false, "" },
	{ "dot-segments: refused, an upstream might not resolve them as the rules did", NULL, "api.test", 443, true,
	  "GET /admin/../v1/x HTTP/1.1\r\nHost: api.test\r\n\r\n",
	  "HTTP/1.1 400 Bad Request\r\n", true, true, "" },
	{ "leading '//': refused, URL parsers read it as an authority", NULL, "api.test", 443, true,
	  "GET //v1/admin HTTP/1.1\r\nHost: api.test\r\n\r\n",
	  "HTTP/1.1 400 Bad Request\r\n", true, true, "" },
	{ "a '\\' dot-segment: refused", NULL, "api.test", 443, true,
	  "GET /v1/x\\..\\..\\admin HTTP/1.1\r\nHost: api.test\r\n\r\n",
	  "HTTP/1.1 400 Bad Request\r\n", true, true, "" },
	{ "a ';' parameter hiding a dot-segment (Tomcat reads /v1/..;/admin as /admin): 400", NULL, "api.test", 443, true,
	  "GET /v1/..;/admin HTTP/1.1\r\nHost: api.test\r\n\r\n",
	  "HTTP/1.1 400 Bad Request\r\n", true, true, "" },
	{ "X-HTTP-Method-Override naming a method the rule does not allow: 403", NULL, "api.test", 443, true,
	  "POST /v1/x HTTP/1.1\r\nHost: api.test\r\nX-HTTP-Method-Override: DELETE\r\nContent-Length: 0\r\n\r\n",
	  "HTTP/1.1 403 Forbidden\r\n", true, false, "" },
	{ "X-Original-URL naming a path the rule does not allow: 403", NULL, "api.test", 443, true,
	  "GET /v1/x HTTP/1.1\r\nHost: api.test\r\nx-original-url: /admin\r\n\r\n",
	  "HTTP/1.1 403 Forbidden\r\n", true, false, "" },
	{ "Host differs from SNI: 421", NULL, "api.test", 443, true,
	  "GET /v1/x HTTP/1.1\r\nHost: other.test\r\n\r\n",
	  "HTTP/1.1 421 Misdirected Request\r\n", true, false, "" },
	{ "Host port differs: 421", NULL, "api.test", 443, true,
	  "GET /v1/x HTTP/1.1\r\nHost: api.test:8443\r\n\r\n",
	  "HTTP/1.1 421 Misdirected Request\r\n", true, false, "" },
	{ "CONNECT: 405", NULL, "api.test", 443, true,
	  "CONNECT api.test:443 HTTP/1.1\r\nHost: api.test:443\r\n\r\n",
	  "HTTP/1.1 405 Method Not Allowed\r\nContent-Type: application/json\r\nConnection: close\r\n", true, true, "" },
	{ "Content-Length with Transfer-Encoding", NULL, "api.test", 443, true,
	  "POST /v1/x HTTP/1.1\r\nHost: api.test\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
	  "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nConnection: close\r\n", true, true, "" },
	{ "differing duplicate Content-Length", NULL, "api.test", 443, true,
	  "POST /v1/x HTTP/1.1\r\nHost: api.test\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
	  "HTTP/1.1 400 Bad Request\r\n", true, true, "" },
	{ "obs-fold", NULL, "api.test", 443, true,
	  "GET /v1/x HTTP/1.1\r\nHost: api.test\r\nX-A: a\r\n b\r\n\r\n",
	  "HTTP/1.1 400 Bad Request\r\n", true, true, "" },
	{ "bare LF", NULL, "api.test", 443, true,
	  "GET /v1/x HTTP/1.1\nHost: api.test\n\n",
	  "HTTP/1.1 400 Bad Request\r\n", true, true, "" },
	{ "bare LF after the request line only", NULL, "api.test", 443, true,
	  "GET /v1/x HTTP/1.1\nHost: api.test\r\n\r\n",
	  "HTTP/1.1 400 Bad Request\r\n", true, true, "" },
	{ "bare LF as the empty line ending the head (smuggling)", NULL, "api.test", 443, true,
	  "GET /v1/x HTTP/1.1\r\nHost: api.test\r\n\nGET /v1/smuggled HTTP/1.1\r\nHost: api.test\r\n\r\n",
	  "HTTP/1.1 400 Bad Request\r\n", true, true, "" },
	{ "CR LF CR and a byte: llhttp would end the head there (smuggling)", NULL, "api.test", 443, true,
	  "GET /v1/a HTTP/1.1\r\nHost: api.test\r\n\rGET /admin HTTP/1.1\r\nHost: api.test\r\n\r\n",
	  "HTTP/1.1 400 Bad Request\r\n", true, true, "" },
	{ "HTTP/2.0 in the request line: 505", NULL, "api.test", 443, true,
	  "GET /v1/a HTTP/2.0\r\nHost: api.test\r\n\r\n",
	  "HTTP/1.1 505 HTTP Version Not Supported\r\n", true, true, "" },
	{ "bare CR inside a header value", NULL, "api.test", 443, true,
	  "GET /v1/a HTTP/1.1\r\nHost: api.test\r\nX-A: a\rb\r\n\r\n",
	  "HTTP/1.1 400 Bad Request\r\n", true, true, "" },
	{ "invalid character in a header name", NULL, "api.test", 443, true,
	  "GET /v1/x HTTP/1.1\r\nHost: api.test\r\nX\x01Y: 1\r\n\r\n",
	  "HTTP/1.1 400 Bad Request\r\n", true, true, "" },
	{ "space before the colon", NULL, "api.test", 443, true,
	  "GET /v1/x HTTP/1.1\r\nHost : api.test\r\n\r\n",
	  "HTTP/1.1 400 Bad Request\r\n", true, true, "" },
	{ "non-ASCII in the target", NULL, "api.test", 443, true,
	  "GET /v1/\x80 HTTP/1.1\r\nHost: api.test\r\n\r\n",
	  "HTTP/1.1 400 Bad Request\r\n", true, true, "" },
	{ "missing Host", NULL, "api.test", 443, true,
	  "GET /v1/x HTTP/1.1\r\n\r\n",
	  "HTTP/1.1 400 Bad Request\r\n", true, true, "" },
	{ "two Host headers", NULL, "api.test", 443, true,
	  "GET /v1/x HTTP/1.1\r\nHost: api.test\r\nHost: api.test\r\n\r\n",
	  "HTTP/1.1 400 Bad Request\r\n", true, true, "" },
	{ "Transfer-Encoding not ending in chunked", NULL, "api.test", 443, true,
	  "POST /v1/x HTTP/1.1\r\nHost: api.test\r\nTransfer-Encoding: gzip\r\n\r\n",
	  "HTTP/1.1 400 Bad Request\r\n", true, true, "" },
	{ "Transfer-Encoding with a coding before chunked", NULL, "api.test", 443, true,
	  "POST /v1/x HTTP/1.1\r\nHost: api.test\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
	  "HTTP/1.1 400 Bad Request\r\n", true, true, "" },
	{ "too many headers: 431", NULL, "api.test", 443, true,
	  "GET /v1/x HTTP/1.1\r\nHost: api.test\r\nA: 1\r\nB: 1\r\nC: 1\r\nD: 1\r\nE: 1\r\nF: 1\r\n"
	  "G: 1\r\nH: 1\r\nI: 1\r\nJ: 1\r\nK: 1\r\nL: 1\r\n\r\n",
	  "HTTP/1.1 431 Request Header Fields Too Large\r\n", true, true, "" },
	{ "header too large: 431", NULL, "api.test", 443, true,
	  "GET /v1/x HTTP/1.1\r\nHost: api.test\r\nA: "
	  "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789"
	  "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789"
	  "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789"
	  "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789"
	  "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789"
	  "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789"
	  "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789"
	  "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789"
	  "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789"
	  "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789"
	  "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789"
	  "\r\n\r\n",
	  "HTTP/1.1 431 Request Header Fields Too Large\r\n", true, true, "" },
	{ "target the policy cannot normalise: 400", NULL, "api.test", 443, true,
	  "GET /v1/%zz HTTP/1.1\r\nHost: api.test\r\n\r\n",
	  "HTTP/1.1 400 Bad Request\r\n", true, true, "" },
	/* ---- leaks ---- */
	{ "placeholder toward a host not on the secret's list", POLICY_SECRETS, "other.test", 443, true,
	  "GET /x HTTP/1.1\r\nHost: other.test\r\nX-Key: SLUICE_PLACEHOLDER_TOK\r\n\r\n",
	  "HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\nContent-Length: 67\r\n\r\n"
	  "{\"error\":\"secret leak blocked\",\"secret\":\"TOK\",\"host\":\"other.test\"}\n", false, false, "TOK" },
	{ "percent-encoded placeholder in the query", POLICY_SECRETS, "other.test", 443, true,
	  "GET /x?k=%53LUICE_PLACEHOLDER_TOK HTTP/1.1\r\nHost: other.test\r\n\r\n",
	  "HTTP/1.1 403 Forbidden\r\n", true, false, "TOK" },
	{ "double percent-encoded placeholder in the path", POLICY_SECRETS, "other.test", 443, true,
	  "GET /%2553LUICE_PLACEHOLDER_TOK HTTP/1.1\r\nHost: other.test\r\n\r\n",
	  "HTTP/1.1 403 Forbidden\r\n", true, false, "TOK" },
	{ "placeholder in a header name", POLICY_SECRETS, "api.test", 443, true,
	  "GET /v1/x HTTP/1.1\r\nHost: api.test\r\nSLUICE_PLACEHOLDER_TOK: 1\r\n\r\n",
	  "HTTP/1.1 403 Forbidden\r\n", true, false, "TOK" },
	{ "placeholder in a place the secret does not allow (HDRONLY in the query)", POLICY_SECRETS, "api.test", 443, true,
	  "GET /v1/x?k=SLUICE_PLACEHOLDER_HDRONLY HTTP/1.1\r\nHost: api.test\r\n\r\n",
	  "HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\nContent-Length: 69\r\n\r\n"
	  "{\"error\":\"secret leak blocked\",\"secret\":\"HDRONLY\",\"host\":\"api.test\"}\n", false, false, "HDRONLY" },
	{ "placeholder in the body of a host not on the list", POLICY_SECRETS, "other.test", 443, true,
	  "POST /x HTTP/1.1\r\nHost: other.test\r\nContent-Length: 27\r\n\r\nt=SLUICE_PLACEHOLDER_TOK&z=",
	  "HTTP/1.1 403 Forbidden\r\n", true, false, "TOK" },
	{ "placeholder in a chunked body of a host not on the list", POLICY_SECRETS, "other.test", 443, true,
	  "POST /x HTTP/1.1\r\nHost: other.test\r\nTransfer-Encoding: chunked\r\n\r\n"
	  "a\r\nSLUICE_PLA\r\nd\r\nCEHOLDER_TOK!\r\n0\r\n\r\n",
	  "HTTP/1.1 403 Forbidden\r\n", true, false, "TOK" },
	{ "placeholder at the very end of a body (found by the final flush)", POLICY_SECRETS_PREFIX, "other.test", 443, true,
	  "POST /x HTTP/1.1\r\nHost: other.test\r\nContent-Length: 24\r\n\r\nt=SLUICE_PLACEHOLDER_TOK",
	  "HTTP/1.1 403 Forbidden\r\n", true, false, "TOK" },
	{ "placeholder at the very end of a query, one needle a prefix of another", POLICY_SECRETS_PREFIX, "other.test", 443, true,
	  "GET /x?t=SLUICE_PLACEHOLDER_TOK HTTP/1.1\r\nHost: other.test\r\n\r\n",
	  "HTTP/1.1 403 Forbidden\r\n", true, false, "TOK" },
	{ "never over plain HTTP, even to a listed host", POLICY_SECRETS, NULL, 80, false,
	  "GET / HTTP/1.1\r\nHost: plain.test\r\nX-Key: SLUICE_PLACEHOLDER_TOK\r\n\r\n",
	  "HTTP/1.1 403 Forbidden\r\n", true, false, "TOK" },
};

static void run_refuse(const struct refuse_case *c, size_t split)
{
	struct buf up = {0}, cl = {0};
	unsigned ev = 0;
	size_t len = strlen(c->req);
	struct hx *h;

	load_policy(c->policy ? c->policy : POLICY_PLAIN);
	h = mk(c->sni, c->port, c->tls);
	assert_int_equal(feed_split(h, c->req, len, split, &up, &cl, &ev), len);
	if (c->prefix) {
		if (strncmp(S(&cl), c->exp_client, strlen(c->exp_client)))
			fail_msg("%s (split %zu): got\n%s", c->name, split, S(&cl));
	} else {
		assert_out(&cl, c->exp_client);
	}
	/* Nothing toward the upstream, and no upstream opened. */
	if (up.len)
		fail_msg("%s (split %zu): to_up not empty:\n%s", c->name, split, S(&up));
	assert_false(ev & HX_EV_OPEN_UPSTREAM);
	assert_int_equal(!!(ev & HX_EV_CLOSE), c->close);
	assert_int_equal(!!strstr(S(&cl), "Connection: close"), c->close);
	assert_int_equal(T.n_audit, 1);
	assert_int_equal(T.a[0].status, atoi(c->exp_client + 9));
	assert_string_equal(T.a[0].secrets, c->audit_secrets);
	assert_null(strstr(S(&cl), "real-token"));
	hx_free(h);
	buf_free(&up);
	buf_free(&cl);
}

static void test_refuse_table(void **state)
{
	for (size_t i = 0; i < sizeof(REFUSE) / sizeof(REFUSE[0]); i++) {
		size_t len = strlen(REFUSE[i].req);

		print_message("  case: %s\n", REFUSE[i].name);
		for (size_t split = 0; split <= len; split++)
			run_refuse(&REFUSE[i], split);
	}
}

/* A refused request (no close) leaves the connection usable: the next
 * request on it is handled, and a denied one's body is drained, not parsed. */
static void test_refused_then_next(void **state)
{
	const char *req = "POST /nope HTTP/1.1\r\nHost: api.test\r\nContent-Length: 18\r\n\r\n"
			  "GET /v1/x HTTP/1.1"
			  "GET /v1/ok HTTP/1.1\r\nHost: api.test\r\n\r\n";
	struct buf up = {0}, cl = {0};
	unsigned ev = 0;
	size_t consumed;
	struct hx *h;

	load_policy(POLICY_PLAIN);
	h = mk("api.test", 443, true);
	assert_int_equal(hx_on_client(h, req, strlen(req), &consumed, &up, &cl, &ev), 0);
	assert_int_equal(consumed, strlen(req));
	assert_true(strstr(S(&cl), "HTTP/1.1 403 Forbidden\r\n") == S(&cl));
	assert_out(&up, "GET /v1/ok HTTP/1.1\r\nHost: api.test\r\n\r\n");
	assert_int_equal(ev, HX_EV_OPEN_UPSTREAM);
	hx_free(h);
	buf_free(&up);
	buf_free(&cl);
}

/* 421 is given for every request on the connection, not only the first. */
static void test_421_every_request(void **state)
{
	struct buf up = {0}, cl = {0};
	unsigned ev = 0;
	struct hx *h;

	load_policy(POLICY_PLAIN);
	h = mk("api.test", 443, true);
	feed(h, "GET /v1/a HTTP/1.1\r\nHost: api.test\r\n\r\n", &up, &cl, &ev);
	upstream(h, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", &cl, &ev);
	reset(&up);
	reset(&cl);
	ev = 0;
	feed(h, "GET /v1/b HTTP/1.1\r\nHost: evil.test\r\n\r\n", &up, &cl, &ev);
	assert_int_equal(up.len, 0);
	assert_true(strstr(S(&cl), "HTTP/1.1 421 ") == S(&cl));
	hx_free(h);

	/* Plain HTTP: the first Host fixes the upstream. */
	h = mk(NULL, 80, false);
	reset(&up);
	reset(&cl);
	feed(h, "GET /a HTTP/1.1\r\nHost: plain.test\r\n\r\n", &up, &cl, &ev);
	assert_string_equal(hx_upstream_host(h), "plain.test");
	upstream(h, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", &cl, &ev);
	reset(&up);
	reset(&cl);
	feed(h, "GET /b HTTP/1.1\r\nHost: plain2.test\r\n\r\n", &up, &cl, &ev);
	assert_int_equal(up.len, 0);
	assert_true(strstr(S(&cl), "HTTP/1.1 421 ") == S(&cl));
	hx_free(h);
	buf_free(&up);
	buf_free(&cl);
}

/* ------------------------------------------------------------------ */
/* Flow                                                               */

/* Whether a request may be sent again on a fresh upstream connection is
 * asked after the whole request went through, trailers included: by then a
 * long trailer has grown (moved) the head buffer an override header's method
 * was read from (ASan: heap-use-after-free before). */
static void test_idempotent_after_trailers(void **state)
{
	static const char *const over[] = { "GET", "POST" };
	char req[8192], trailer[700]; /* under the 1 KiB head limit, past the buffer's first size */
	struct buf up = {0}, cl = {0};
	unsigned ev;
	size_t consumed;

	memset(trailer, 'v', sizeof(trailer) - 1);
	trailer[sizeof(trailer) - 1] = 0;
	load_policy(POLICY_PLAIN);
	for (int i = 0; i < 2; i++) {
		struct hx *h = mk("api.test", 443, true);
		int n = snprintf(req, sizeof(req),
				 "PUT /v1/x HTTP/1.1\r\nHost: api.test\r\nX-HTTP-Method-Override: %s\r\n"
				 "Transfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\nX-Big: %s\r\n\r\n",
				 over[i], trailer);

		ev = 0;
		assert_int_equal(hx_on_client(h, req, (size_t)n, &consumed, &up, &cl, &ev), 0);
		if (buf_len(&cl))
			fail_msg("override %s: answered locally: %s", over[i], S(&cl));
		assert_int_equal(hx_request_idempotent(h), i == 0);
		hx_free(h);
		reset(&up);
	}
	buf_free(&up);
	buf_free(&cl);
}

/* A refused request whose body is still being drained: a header timeout or a
 * broken chunk in that body ends the connection without a second response or
 * a second audit line. */
static void test_one_answer_per_request(void **state)
{
	static const char *const tail[] = { NULL, "5\r\nhelloXX" };
	const char *req = "POST /x HTTP/1.1\r\nHost: evil.test\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n";
	struct buf up = {0}, cl = {0};
	unsigned ev;
	size_t consumed;

	load_policy(POLICY_PLAIN);
	for (int i = 0; i < 2; i++) {
		struct hx *h = mk("evil.test", 443, true);
		int before = T.n_audit;

		ev = 0;
		assert_int_equal(hx_on_client(h, req, strlen(req), &consumed, &up, &cl, &ev), 0);
		assert_non_null(strstr(S(&cl), "HTTP/1.1 403 Forbidden"));
		reset(&cl);
		if (tail[i])
			assert_int_equal(hx_on_client(h, tail[i], strlen(tail[i]), &consumed, &up, &cl, &ev), 0);
		else
			assert_int_equal(hx_on_timeout(h, &cl, &ev), 0);
		if (buf_len(&cl))
			fail_msg("case %d: a second response: %s", i, S(&cl));
		assert_true(ev & HX_EV_CLOSE);
		assert_int_equal(T.n_audit, before + 1);
		assert_int_equal(buf_len(&up), 0);
		hx_free(h);
	}
	buf_free(&up);
	buf_free(&cl);
}

static void test_pipelining(void **state)
{
	const char *two = "GET /v1/1 HTTP/1.1\r\nHost: api.test\r\n\r\nGET /v1/2 HTTP/1.1\r\nHost: api.test\r\n\r\n";
	size_t first = strlen("GET /v1/1 HTTP/1.1\r\nHost: api.test\r\n\r\n"), consumed;
	struct buf up = {0}, cl = {0};
	unsigned ev = 0;
	struct hx *h;

	load_policy(POLICY_PLAIN);
	h = mk("api.test", 443, true);
	assert_int_equal(hx_on_client(h, two, strlen(two), &consumed, &up, &cl, &ev), 0);
	assert_int_equal(consumed, first);
	assert_out(&up, "GET /v1/1 HTTP/1.1\r\nHost: api.test\r\n\r\n");
	/* Still in flight: nothing more is taken. */
	assert_int_equal(hx_on_client(h, two + first, strlen(two) - first, &consumed, &up, &cl, &ev), 0);
	assert_int_equal(consumed, 0);
	ev = 0;
	upstream(h, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n1", &cl, &ev);
	assert_int_equal(ev, HX_EV_RESUME_CLIENT);
	assert_true(hx_idle(h));
	reset(&up);
	ev = 0;
	assert_int_equal(hx_on_client(h, two + first, strlen(two) - first, &consumed, &up, &cl, &ev), 0);
	assert_int_equal(consumed, strlen(two) - first);
	assert_out(&up, "GET /v1/2 HTTP/1.1\r\nHost: api.test\r\n\r\n");
	assert_int_equal(ev, 0); /* upstream already open */
	upstream(h, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n2", &cl, &ev);
	assert_out(&cl, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n1HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n2");
	assert_int_equal(T.n_audit, 2);
	assert_string_equal(T.a[1].target, "/v1/2");
	/* bytes in: each head as sent, request line and CRLFs included */
	assert_int_equal(T.a[0].bytes_in, first);
	assert_int_equal(T.a[1].bytes_in, strlen(two) - first);
	hx_free(h);
	buf_free(&up);
	buf_free(&cl);
}

static void test_connection_close(void **state)
{
	struct buf up = {0}, cl = {0};
	unsigned ev = 0;
	struct hx *h;

	load_policy(POLICY_PLAIN);
	h = mk("api.test", 443, true);
	feed(h, "GET /v1/x HTTP/1.1\r\nHost: api.test\r\nConnection: close\r\n\r\n", &up, &cl, &ev);
	assert_out(&up, "GET /v1/x HTTP/1.1\r\nHost: api.test\r\n\r\n");
	ev = 0;
	upstream(h, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", &cl, &ev);
	assert_out(&cl, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
	assert_true(ev & HX_EV_CLOSE);
	hx_free(h);
	buf_free(&up);
	buf_free(&cl);
}

/* A value longer than the in-stream carry (a PEM key, a JWT): requests to its
 * host still go (they failed with ENOMEM), and an echo split across upstream
 * reads is scrubbed. */
static void test_long_secret(void **state)
{
	enum { L = 1500 };
	char val[L + 1], *pol, *resp;
	struct buf up = {0}, cl = {0};
	unsigned ev = 0;
	struct hx *h;
	size_t hl;

	(void)state;
	for (size_t i = 0; i < L; i++)
		val[i] = (char)('a' + (i * 11) % 26);
	val[L] = 0;
	pol = xmalloc(L + 512);
	snprintf(pol, L + 512, "rules:\n  - {action: allow, host: \"api.test\", port: 443}\n"
		 "secrets:\n  PEM: {value: \"%s\", hosts: [\"api.test\"]}\n", val);
	load_policy(pol);
	free(pol);
	h = mk("api.test", 443, true);
	feed(h, "GET /k HTTP/1.1\r\nHost: api.test\r\nX-K: SLUICE_PLACEHOLDER_PEM\r\n\r\n", &up, &cl, &ev);
	assert_true(ev & HX_EV_OPEN_UPSTREAM);
	assert_non_null(strstr(S(&up), val));
	resp = xmalloc(L + 128);
	hl = (size_t)snprintf(resp, L + 128, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n<%s>", L + 2, val);
	/* three reads, cutting the value twice */
	assert_int_equal(hx_on_upstream(h, resp, hl - 1000, &cl, &ev), 0);
	assert_int_equal(hx_on_upstream(h, resp + hl - 1000, 500, &cl, &ev), 0);
	assert_int_equal(hx_on_upstream(h, resp + hl - 500, 500, &cl, &ev), 0);
	assert_null(strstr(S(&cl), val));
	assert_non_null(strstr(S(&cl), "SLUICE_PLACEHOLDER_PEM"));
	free(resp);
	hx_free(h);
	buf_free(&up);
	buf_free(&cl);
}

/* Trailers over the header limit after the response began: the connection
 * breaks, no 431 is written into the middle of the response. */
static void test_big_trailers_mid_response(void **state)
{
	struct buf up = {0}, cl = {0};
	unsigned ev = 0;
	struct hx *h;
	char *tr = xmalloc(17100);

	(void)state;
	load_policy(POLICY_PLAIN);
	h = mk("api.test", 443, true);
	feed(h, "POST /v1/c HTTP/1.1\r\nHost: api.test\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n",
	     &up, &cl, &ev);
	assert_true(ev & HX_EV_OPEN_UPSTREAM);
	upstream(h, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello", &cl, &ev);
	reset(&cl);
	ev = 0;
	memcpy(tr, "0\r\nX-T: ", 8);
	memset(tr + 8, 'a', 17000);
	memcpy(tr + 8 + 17000, "\r\n\r\n", 5);
	feed(h, tr, &up, &cl, &ev);
	assert_null(strstr(S(&cl), "431"));
	assert_true(ev & HX_EV_ABORT);
	free(tr);
	hx_free(h);
	buf_free(&up);
	buf_free(&cl);
}

/* After first (a HEAD, which answers with no body), a request with a bare LF:
 * its 400 is a whole response with its body (why names the fault), and its
 * audit line is its own, naming neither first's path nor HEAD. */
static void check_bare_lf_after(const char *first, const char *first_path, const char *bad, const char *why)
{
	struct buf up = {0}, cl = {0};
	unsigned ev = 0;
	struct hx *h;
	const char *body;

	load_policy(POLICY_PLAIN);
	h = mk("api.test", 443, true);
	feed(h, first, &up, &cl, &ev);
	upstream(h, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", &cl, &ev);
	assert_int_equal(T.n_audit, 1);
	reset(&cl);
	T.n_audit = 0;
	feed(h, bad, &up, &cl, &ev);
	assert_true(strstr(S(&cl), "HTTP/1.1 400 Bad Request\r\n") == S(&cl));
	body = strstr(S(&cl), "\r\n\r\n");
	assert_non_null(body);
	assert_non_null(strstr(body, why));
	assert_int_equal(T.n_audit, 1);
	assert_int_equal(T.a[0].status, 400);
	assert_null(strstr(T.a[0].target, first_path));
	assert_string_not_equal(T.a[0].method, "HEAD");
	hx_free(h);
	buf_free(&up);
	buf_free(&cl);
}

static void test_bare_lf_after_head(void **state)
{
	(void)state;
	check_bare_lf_after("HEAD /v1/a HTTP/1.1\r\nHost: api.test\r\n\r\n", "/v1/a",
			    "GET /admin HTTP/1.1\nHost: api.test\r\n\r\n", "bare LF");
}

/* The same after a chunked request, which ends in a trailer section: the next
 * request's head is a head, not more trailers of the last one. */
static void test_bare_lf_after_chunked(void **state)
{
	(void)state;
	check_bare_lf_after("HEAD /v1/first HTTP/1.1\r\nHost: api.test\r\nTransfer-Encoding: chunked\r\n\r\n"
			    "3\r\nabc\r\n0\r\n\r\n", "/v1/first",
			    "DELETE /admin HTTP/1.1\nHost: api.test\r\n\r\n", "request head");
}

/* A 1xx never has a body (RFC 9110 15.2), whatever length it claims: the
 * final response after it must not be eaten as one. */
static void test_1xx_no_body(void **state)
{
	struct buf up = {0}, cl = {0};
	unsigned ev = 0;
	struct hx *h;

	(void)state;
	load_policy(POLICY_PLAIN);
	h = mk("api.test", 443, true);
	feed(h, "GET /v1/x HTTP/1.1\r\nHost: api.test\r\n\r\n", &up, &cl, &ev);
	ev = 0;
	upstream(h, "HTTP/1.1 102 Processing\r\nContent-Length: 5\r\n\r\n"
		 "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", &cl, &ev);
	assert_non_null(strstr(S(&cl), "HTTP/1.1 200 OK\r\n"));
	assert_non_null(strstr(S(&cl), "\r\n\r\nok"));
	assert_true(ev & HX_EV_RESUME_CLIENT);
	hx_free(h);
	buf_free(&up);
	buf_free(&cl);
}

static void test_expect_100(void **state)
{
	struct buf up = {0}, cl = {0};
	unsigned ev = 0;
	struct hx *h;

	/* Without secrets the Expect is forwarded and the upstream's 100 passed back. */
	load_policy(POLICY_PLAIN);
	h = mk("api.test", 443, true);
	feed(h, "PUT /v1/f HTTP/1.1\r\nHost: api.test\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n",
	     &up, &cl, &ev);
	assert_out(&up, "PUT /v1/f HTTP/1.1\r\nHost: api.test\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n");
	assert_int_equal(cl.len, 0);
	upstream(h, "HTTP/1.1 100 Continue\r\n\r\n", &cl, &ev);
	assert_out(&cl, "HTTP/1.1 100 Continue\r\n\r\n");
	feed(h, "abc", &up, &cl, &ev);
	assert_out(&up, "PUT /v1/f HTTP/1.1\r\nHost: api.test\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc");
	ev = 0;
	upstream(h, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", &cl, &ev);
	assert_out(&cl, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
	assert_int_equal(ev, HX_EV_RESUME_CLIENT);
	/* bytes_out: everything the client got, the upstream's 100 included */
	assert_int_equal(T.n_audit, 1);
	assert_int_equal(T.a[0].bytes_out, cl.len);
	hx_free(h);

	/* With secrets the body is checked before anything leaves: hx answers 100. */
	load_policy(POLICY_SECRETS);
	h = mk("api.test", 443, true);
	reset(&up);
	reset(&cl);
	ev = 0;
	feed(h, "PUT /v1/f HTTP/1.1\r\nHost: api.test\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n",
	     &up, &cl, &ev);
	assert_int_equal(up.len, 0);
	assert_false(ev & HX_EV_OPEN_UPSTREAM);
	assert_out(&cl, "HTTP/1.1 100 Continue\r\n\r\n");
	feed(h, "abc", &up, &cl, &ev);
	assert_true(ev & HX_EV_OPEN_UPSTREAM);
	assert_out(&up, "PUT /v1/f HTTP/1.1\r\nHost: api.test\r\nAccept-Encoding: identity\r\nContent-Length: 3\r\n\r\nabc");
	upstream(h, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", &cl, &ev);
	assert_out(&cl, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
	/* ... and the one hx answered itself */
	assert_int_equal(T.n_audit, 1);
	assert_int_equal(T.a[0].bytes_out, cl.len);
	hx_free(h);
	buf_free(&up);
	buf_free(&cl);
}

/* A server frame (unmasked) into b. */
static void ws_frame(struct buf *b, int fin, int op, const char *d, size_t n)
{
	uint8_t hd[4] = { (uint8_t)((fin ? 0x80 : 0) | op) };
	size_t k = 2;

	if (n < 126) {
		hd[1] = (uint8_t)n;
	} else {
		hd[1] = 126;
		hd[2] = (uint8_t)(n >> 8);
		hd[3] = (uint8_t)n;
		k = 4;
	}
	buf_append(b, hd, k);
	buf_append(b, d, n);
}

/* Decodes the frames in d..d+n (all of them whole): data messages joined
 * into msgs ("op:payload|" each), control frames into ctl, checking that
 * they are unmasked, without RSV bits, and fragmented as RFC 6455 allows. */
static void ws_decode(const char *d, size_t n, struct buf *msgs, struct buf *ctl)
{
	const uint8_t *p = (const uint8_t *)d, *end = p + n;
	int in_msg = 0;

	while (p < end) {
		uint64_t len;
		int fin, op;

		assert_true(end - p >= 2);
		fin = p[0] & 0x80;
		op = p[0] & 0x0f;
		assert_int_equal(p[0] & 0x70, 0);
		assert_int_equal(p[1] & 0x80, 0);
		len = p[1] & 0x7f;
		p += 2;
		if (len == 126) {
			len = (uint64_t)p[0] << 8 | p[1];
			p += 2;
		} else if (len == 127) {
			len = 0;
			for (int i = 0; i < 8; i++)
				len = len << 8 | p[i];
			p += 8;
		}
		assert_true((uint64_t)(end - p) >= len);
		if (op & 8) {
			assert_true(fin && len <= 125);
			buf_appendf(ctl, "%d:%.*s|", op, (int)len, (const char *)p);
		} else {
			if (op)
				assert_false(in_msg);
			else
				assert_true(in_msg);
			if (op)
				buf_appendf(msgs, "%d:", op);
			buf_append(msgs, p, (size_t)len);
			in_msg = !fin;
			if (fin)
				buf_append(msgs, "|", 1);
		}
		p += len;
	}
	assert_false(in_msg);
}

/* A host with secrets: its WebSocket frames reach the client with the
 * value replaced, wherever the reads split them, even a value split across
 * fragments; no extension is offered, and frames it forbids break the tunnel. */
static void test_ws_scrub(void **state)
{
	const char *req = "GET /v1/ws HTTP/1.1\r\nHost: api.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
			  "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
			  "Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n";
	const char *head = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
			   "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
	struct buf up = {0}, cl = {0}, in = {0}, msgs = {0}, ctl = {0};
	char big[300];
	size_t consumed;
	unsigned ev = 0;
	struct hx *h;

	(void)state;
	load_policy(POLICY_SECRETS);
	memset(big, 'b', sizeof(big));
	memcpy(big + 140, "real-token-123", 14);
	buf_append(&in, head, strlen(head));
	ws_frame(&in, 1, 1, "v=real-token-123!", 17);
	ws_frame(&in, 0, 1, "abc real-to", 11);
	ws_frame(&in, 1, 9, "real-token-123", 14); /* a ping between the fragments */
	ws_frame(&in, 1, 0, "ken-123 end", 11);
	ws_frame(&in, 1, 2, big, sizeof(big));
	ws_frame(&in, 1, 1, "", 0);
	ws_frame(&in, 1, 8, "\x0f" "real-token-123 bye", 19); /* Close 3954: the value begins in its code */

	for (size_t split = 0; split <= in.len; split++) {
		char *a = malloc(split ? split : 1), *b = malloc(in.len - split ? in.len - split : 1);

		h = mk("api.test", 443, true);
		reset(&up);
		reset(&cl);
		ev = 0;
		assert_int_equal(hx_on_client(h, req, strlen(req), &consumed, &up, &cl, &ev), 0);
		assert_null(strstr(S(&up), "Sec-WebSocket-Extensions"));
		memcpy(a, buf_head(&in), split);
		memcpy(b, buf_head(&in) + split, in.len - split);
		assert_int_equal(hx_on_upstream(h, a, split, &cl, &ev), 0);
		assert_int_equal(hx_on_upstream(h, b, in.len - split, &cl, &ev), 0);
		assert_true(ev & HX_EV_TUNNEL);
		assert_false(ev & HX_EV_CLOSE);
		assert_true(hx_ws_scrubbing(h));
		const char *body = strstr(S(&cl), "\r\n\r\n");

		assert_non_null(body);
		body += 4;
		if (memmem(buf_head(&cl), cl.len, "real-token-123", 14))
			fail_msg("split %zu: the value reached the client", split);
		reset(&msgs);
		reset(&ctl);
		ws_decode(body, cl.len - (size_t)(body - buf_head(&cl)), &msgs, &ctl);
		assert_int_equal(strncmp(S(&msgs), "1:v=SLUICE_PLACEHOLDER_TOK!|1:abc SLUICE_PLACEHOLDER_TOK end|2:", 62), 0);
		assert_non_null(strstr(S(&msgs), "bbbSLUICE_PLACEHOLDER_TOKbbb"));
		assert_true(strstr(S(&msgs), "|1:|") == S(&msgs) + msgs.len - 4);
		/* the value is gone, the code becomes 1008 (policy violation) */
		assert_out(&ctl, "9:SLUICE_PLACEHOLDER_TOK|8:\x03\xf0" "LUICE_PLACEHOLDER_TOK bye|");
		hx_free(h);
		free(a);
		free(b);
	}

	/* Frames a server must not send, or an extension it was not offered. */
	static const struct { const char *d; size_t n; } bad[] = {
		{ "\x81\x81" "abcd" "x", 7 },  /* masked */
		{ "\xc1\x01x", 3 },            /* RSV1: an extension's frame */
		{ "\x80\x01x", 3 },            /* a continuation without a message */
		{ "\x89\x7e\x00\x80", 4 },    /* a ping over 125 bytes */
		{ "\x09\x01x", 3 },            /* a fragmented ping */
		{ "\x83\x01x", 3 },            /* a reserved opcode */
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		h = mk("api.test", 443, true);
		reset(&cl);
		ev = 0;
		assert_int_equal(hx_on_client(h, req, strlen(req), &consumed, &up, &cl, &ev), 0);
		upstream(h, head, &cl, &ev);
		assert_int_equal(hx_on_upstream(h, bad[i].d, bad[i].n, &cl, &ev), 0);
		if (!(ev & HX_EV_CLOSE) || !(ev & HX_EV_ABORT))
			fail_msg("bad frame #%zu did not break the tunnel", i);
		/* and nothing after it passes */
		size_t before = cl.len;

		assert_int_equal(hx_on_upstream(h, "\x81\x01y", 3, &cl, &ev), 0);
		assert_int_equal(cl.len, before);
		hx_free(h);
	}
	h = mk("api.test", 443, true);
	reset(&cl);
	ev = 0;
	assert_int_equal(hx_on_client(h, req, strlen(req), &consumed, &up, &cl, &ev), 0);
	upstream(h, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
		 "Sec-WebSocket-Extensions: permessage-deflate\r\n"
		 "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n", &cl, &ev);
	assert_true(strstr(S(&cl), "HTTP/1.1 502 Bad Gateway\r\n") == S(&cl));
	assert_false(ev & HX_EV_TUNNEL);
	hx_free(h);
	buf_free(&up);
	buf_free(&cl);
	buf_free(&in);
	buf_free(&msgs);
	buf_free(&ctl);
}

static void test_websocket(void **state)
{
	const char *req = "GET /v1/ws HTTP/1.1\r\nHost: api.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
			  "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n\x81\x01X";
	size_t hl = strlen(req) - 3, consumed;
	struct buf up = {0}, cl = {0};
	unsigned ev = 0;
	struct hx *h;

	load_policy(POLICY_PLAIN);
	h = mk("api.test", 443, true);
	assert_int_equal(hx_on_client(h, req, strlen(req), &consumed, &up, &cl, &ev), 0);
	assert_int_equal(consumed, hl); /* the frame waits for the 101 */
	assert_out(&up, "GET /v1/ws HTTP/1.1\r\nHost: api.test\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
		   "Sec-WebSocket-Version: 13\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n");
	assert_false(ev & HX_EV_TUNNEL);
	ev = 0;
	upstream(h, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
		 "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n\x81\x01Y", &cl, &ev);
	assert_true(ev & HX_EV_TUNNEL);
	assert_out(&cl, "HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
		   "Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n\x81\x01Y");
	reset(&up);
	assert_int_equal(hx_on_client(h, req + hl, 3, &consumed, &up, &cl, &ev), 0);
	assert_int_equal(consumed, 3);
	assert_out(&up, "\x81\x01X");
	/* The tunnel's line is written when it ends, with its bytes (the caller
	 * counts those after the 101; the first frame came with the 101). */
	assert_int_equal(T.n_audit, 0);
	hx_end(h, "tunnel closed by client", 3 + 100, 200);
	assert_int_equal(T.n_audit, 1);
	assert_int_equal(T.a[0].status, 101);
	assert_int_equal(T.a[0].bytes_in, hl + 103);
	assert_int_equal(T.a[0].bytes_out, strlen(S(&cl)) + 200);
	assert_string_equal(T.a[0].cut, "");
	hx_end(h, "again", 1, 1);
	assert_int_equal(T.n_audit, 1);
	hx_free(h);

	/* Only a real handshake opens the tunnel: a bare 101 (a status echo), a
	 * wrong accept or an upgrade to something else gets 502 and no tunnel,
	 * and nothing after it reaches the upstream unchecked. */
	static const char *const fake101[] = {
		"HTTP/1.1 101 X\r\n\r\n",
		"HTTP/1.1 101 X\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
		"HTTP/1.1 101 X\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
		"Sec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n",
		"HTTP/1.1 101 X\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n"
		"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
	};
	for (size_t i = 0; i < sizeof(fake101) / sizeof(fake101[0]); i++) {
		h = mk("api.test", 443, true);
		reset(&up);
		reset(&cl);
		ev = 0;
		assert_int_equal(hx_on_client(h, req, hl, &consumed, &up, &cl, &ev), 0);
		upstream(h, fake101[i], &cl, &ev);
		if (strstr(S(&cl), "HTTP/1.1 502 Bad Gateway\r\n") != S(&cl) || !(ev & HX_EV_CLOSE) ||
		    (ev & HX_EV_TUNNEL))
			fail_msg("101 #%zu opened a tunnel or was not refused: %s", i, S(&cl));
		hx_free(h);
	}
	/* And a request without Sec-WebSocket-Key can never get one. */
	h = mk("api.test", 443, true);
	reset(&up);
	reset(&cl);
	ev = 0;
	feed(h, "GET /v1/ws HTTP/1.1\r\nHost: api.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
	     &up, &cl, &ev);
	upstream(h, "HTTP/1.1 101 X\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
		 "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n", &cl, &ev);
	assert_false(ev & HX_EV_TUNNEL);
	hx_free(h);

	/* A 101 nobody asked for is a malformed response. */
	h = mk("api.test", 443, true);
	reset(&up);
	reset(&cl);
	ev = 0;
	feed(h, "GET /v1/x HTTP/1.1\r\nHost: api.test\r\n\r\n", &up, &cl, &ev);
	upstream(h, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n", &cl, &ev);
	assert_true(strstr(S(&cl), "HTTP/1.1 502 Bad Gateway\r\n") == S(&cl));
	assert_true(ev & HX_EV_CLOSE);
	assert_false(ev & HX_EV_TUNNEL);
	hx_free(h);

	/* A denied upgrade opens nothing. */
	h = mk("api.test", 443, true);
	reset(&up);
	reset(&cl);
	ev = 0;
	feed(h, "GET /admin HTTP/1.1\r\nHost: api.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
	     &up, &cl, &ev);
	assert_int_equal(up.len, 0);
	assert_false(ev & HX_EV_OPEN_UPSTREAM);
	assert_true(strstr(S(&cl), "HTTP/1.1 403 ") == S(&cl));
	hx_free(h);
	buf_free(&up);
	buf_free(&cl);
}

static void test_upstream_errors(void **state)
{
	struct buf up = {0}, cl = {0};
	unsigned ev = 0;
	struct hx *h;

	load_policy(POLICY_PLAIN);
	h = mk("api.test", 443, true);
	feed(h, "GET /v1/x HTTP/1.1\r\nHost: api.test\r\n\r\n", &up, &cl, &ev);
	ev = 0;
	assert_int_equal(hx_on_upstream_error(h, 502, "certificate verify failed: self-signed certificate", &cl, &ev), 0);
	assert_out(&cl, "HTTP/1.1 502 Bad Gateway\r\nContent-Type: application/json\r\nContent-Length: 95\r\n\r\n"
		   "{\"error\":\"upstream unreachable\",\"reason\":\"certificate verify failed: self-signed certificate\"}\n");
	assert_true(ev & HX_EV_UPSTREAM_DONE);
	assert_true(ev & HX_EV_RESUME_CLIENT);
	assert_int_equal(T.n_audit, 1);
	assert_int_equal(T.a[0].status, 502);
	/* The connection stays usable; the next request opens a new upstream. */
	reset(&up);
	ev = 0;
	feed(h, "GET /v1/y HTTP/1.1\r\nHost: api.test\r\n\r\n", &up, &cl, &ev);
	assert_true(ev & HX_EV_OPEN_UPSTREAM);
	ev = 0;
	reset(&cl);
	assert_int_equal(hx_on_upstream_error(h, 504, "timeout", &cl, &ev), 0);
	assert_true(strstr(S(&cl), "HTTP/1.1 504 Gateway Timeout\r\n") == S(&cl));
	hx_free(h);

	/* A request held while its body is checked (a policy with secrets) has
	 * sent nothing yet: the kept-alive upstream closing meanwhile (idle) is no
	 * failure; the request goes whole to a new connection. */
	load_policy(POLICY_SECRETS);
	h = mk("api.test", 443, true);
	reset(&up);
	reset(&cl);
	ev = 0;
	feed(h, "GET /v1/x HTTP/1.1\r\nHost: api.test\r\n\r\n", &up, &cl, &ev);
	upstream(h, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", &cl, &ev);
	reset(&up);
	reset(&cl);
	ev = 0;
	feed(h, "POST /v1/y HTTP/1.1\r\nHost: api.test\r\nContent-Length: 10\r\n\r\nabc", &up, &cl, &ev);
	assert_int_equal(up.len, 0); /* held */
	ev = 0;
	assert_int_equal(hx_on_upstream_eof(h, &cl, &ev), 0);
	assert_int_equal(cl.len, 0);
	assert_true(ev & HX_EV_UPSTREAM_DONE);
	ev = 0;
	feed(h, "defghij", &up, &cl, &ev);
	assert_true(ev & HX_EV_OPEN_UPSTREAM);
	assert_non_null(strstr(S(&up), "POST /v1/y HTTP/1.1\r\n"));
	assert_non_null(strstr(S(&up), "\r\n\r\nabcdefghij"));
	assert_int_equal(cl.len, 0);
	hx_free(h);
	load_policy(POLICY_PLAIN);

	/* Malformed response: 502 and close. */
	h = mk("api.test", 443, true);
	reset(&up);
	reset(&cl);
	ev = 0;
	feed(h, "GET /v1/x HTTP/1.1\r\nHost: api.test\r\n\r\n", &up, &cl, &ev);
	upstream(h, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", &cl, &ev);
	assert_true(strstr(S(&cl), "HTTP/1.1 502 Bad Gateway\r\n") == S(&cl));
	assert_true(ev & HX_EV_CLOSE);
	assert_true(ev & HX_EV_UPSTREAM_DONE);
	hx_free(h);

	/* A status llhttp parses but HTTP does not have: 502 and close. */
	h = mk("api.test", 443, true);
	reset(&up);
	reset(&cl);
	ev = 0;
	feed(h, "GET /v1/x HTTP/1.1\r\nHost: api.test\r\n\r\n", &up, &cl, &ev);
	upstream(h, "HTTP/1.1 600 Odd\r\nContent-Length: 0\r\n\r\n", &cl, &ev);
	assert_true(strstr(S(&cl), "HTTP/1.1 502 Bad Gateway\r\n") == S(&cl));
	assert_non_null(strstr(S(&cl), "100-599"));
	assert_true(ev & HX_EV_CLOSE);
	hx_free(h);

	/* Upstream closes mid-body after the head went out: the client is cut, not lied to. */
	h = mk("api.test", 443, true);
	reset(&up);
	reset(&cl);
	ev = 0;
	feed(h, "GET /v1/x HTTP/1.1\r\nHost: api.test\r\n\r\n", &up, &cl, &ev);
	upstream(h, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", &cl, &ev);
	assert_int_equal(hx_on_upstream_eof(h, &cl, &ev), 0);
	assert_out(&cl, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc");
	assert_true(ev & HX_EV_CLOSE);
	hx_free(h);

	/* Slowloris: 408 and close. */
	h = mk("api.test", 443, true);
	reset(&up);
	reset(&cl);
	ev = 0;
	feed(h, "GET /v1/x HTTP/1.1\r\nHost: api", &up, &cl, &ev);
	assert_int_equal(hx_on_timeout(h, &cl, &ev), 0);
	assert_true(strstr(S(&cl), "HTTP/1.1 408 Request Timeout\r\n") == S(&cl));
	assert_true(ev & HX_EV_CLOSE);
	hx_free(h);
	buf_free(&up);
	buf_free(&cl);
}

/* ------------------------------------------------------------------ */
/* Secrets, streaming                                                 */

/* A placeholder split across reads and chunk boundaries is still found. */
static void test_body_split_placeholder(void **state)
{
	const char *req = "POST /v1/b HTTP/1.1\r\nHost: api.test\r\nTransfer-Encoding: chunked\r\n\r\n"
			  "9\r\nk=SLUICE_\r\n10\r\nPLACEHOLDER_TOK&\r\n3\r\nz=1\r\n0\r\n\r\n";
	size_t len = strlen(req);

	load_policy(POLICY_SECRETS);
	for (size_t split = 0; split <= len; split++) {
		struct buf up = {0}, cl = {0};
		unsigned ev = 0;
		struct hx *h = mk("api.test", 443, true);
		char body[128];

		assert_int_equal(feed_split(h, req, len, split, &up, &cl, &ev), len);
		assert_int_equal(cl.len, 0);
		assert_true(ev & HX_EV_OPEN_UPSTREAM);
		dechunk(S(&up), body, sizeof(body));
		assert_string_equal(body, "k=real-token-123&z=1");
		assert_null(strstr(S(&up), "SLUICE_"));
		hx_free(h);
		buf_free(&up);
		buf_free(&cl);
	}
}

/* A percent-encoded placeholder in a body (a form post) toward a host the
 * secret may not go to: 403, nothing upstream, wherever the reads split it. */
static void test_body_encoded_leak(void **state)
{
	const char *req = "POST /x HTTP/1.1\r\nHost: other.test\r\nTransfer-Encoding: chunked\r\n\r\n"
			  "8\r\nk=SLUICE\r\n18\r\n%5FPLACEHOLDER%5fTOK&z=1\r\n0\r\n\r\n";
	const char *ok = "POST /v1/f HTTP/1.1\r\nHost: api.test\r\nContent-Length: 9\r\n\r\na=100%25&";
	size_t len = strlen(req);

	load_policy(POLICY_SECRETS);
	for (size_t split = 0; split <= len; split++) {
		struct buf up = {0}, cl = {0};
		unsigned ev = 0;
		struct hx *h = mk("other.test", 443, true);

		feed_split(h, req, len, split, &up, &cl, &ev);
		assert_true(strstr(S(&cl), "HTTP/1.1 403") == S(&cl));
		assert_non_null(strstr(S(&cl), "\"secret\":\"TOK\""));
		assert_null(strstr(S(&up), "PLACEHOLDER"));
		assert_null(strstr(S(&up), "real-token"));
		hx_free(h);
		buf_free(&up);
		buf_free(&cl);
	}
	/* Percent signs that encode nothing of interest pass untouched. */
	{
		struct buf up = {0}, cl = {0};
		unsigned ev = 0;
		struct hx *h = mk("api.test", 443, true);

		feed(h, ok, &up, &cl, &ev);
		assert_int_equal(cl.len, 0);
		assert_non_null(strstr(S(&up), "\r\n\r\na=100%25&"));
		hx_free(h);
		buf_free(&up);
		buf_free(&cl);
	}
}

/* A body larger than the hold limit streams; Content-Length becomes chunked
 * when the secret may be substituted there. */
static void test_large_body_streams(void **state)
{
	size_t n = 200 * 1024, consumed;
	char *req = xmalloc(n + 200);
	struct buf up = {0}, cl = {0};
	unsigned ev = 0;
	size_t hl = (size_t)sprintf(req, "POST /v1/big HTTP/1.1\r\nHost: api.test\r\nContent-Length: %zu\r\n\r\n", n);
	struct hx *h;
	char *body;

	memset(req + hl, 'a', n);
	memcpy(req + hl + n - 40, "SLUICE_PLACEHOLDER_TOK", 22);
	load_policy(POLICY_SECRETS);
	h = mk("api.test", 443, true);
	/* Half, then the rest: the first half already leaves (streaming). */
	assert_int_equal(hx_on_client(h, req, hl + n / 2, &consumed, &up, &cl, &ev), 0);
	assert_true(ev & HX_EV_OPEN_UPSTREAM);
	assert_true(up.len > 64 * 1024);
	assert_int_equal(hx_on_client(h, req + hl + n / 2, n - n / 2, &consumed, &up, &cl, &ev), 0);
	assert_int_equal(strncmp(S(&up), "POST /v1/big HTTP/1.1\r\nHost: api.test\r\nAccept-Encoding: identity\r\n"
				 "Transfer-Encoding: chunked\r\n\r\n", 96), 0);
	body = malloc(n + 64);
	dechunk(S(&up), body, n + 64);
	assert_int_equal(strlen(body), n - 22 + 14);
	assert_non_null(strstr(body, "real-token-123"));
	free(body);
	hx_free(h);

	/* Without a secret allowed in the body, Content-Length is kept. */
	reset(&up);
	ev = 0;
	memcpy(req, "POST /any  ", 11);
	hl = (size_t)sprintf(req, "POST /any HTTP/1.1\r\nHost: other.test\r\nContent-Length: %zu\r\n\r\n", n);
	memset(req + hl, 'b', n);
	h = mk("other.test", 443, true);
	assert_int_equal(hx_on_client(h, req, hl + n, &consumed, &up, &cl, &ev), 0);
	assert_int_equal(up.len, hl + n);
	assert_memory_equal(buf_head(&up), req, hl + n);
	hx_free(h);
	free(req);
	buf_free(&up);
	buf_free(&cl);
}

/* Leak in a body past the hold limit: part already left, so both sides close
 * and the placeholder itself never reaches the upstream. */
static void test_late_leak_closes(void **state)
{
	size_t n = 100 * 1024, consumed;
	char *req = xmalloc(n + 200);
	struct buf up = {0}, cl = {0};
	unsigned ev = 0;
	size_t hl = (size_t)sprintf(req, "POST /x HTTP/1.1\r\nHost: other.test\r\nContent-Length: %zu\r\n\r\n", n);
	struct hx *h;

	memset(req + hl, 'a', n);
	memcpy(req + hl + n - 30, "SLUICE_PLACEHOLDER_TOK", 22);
	load_policy(POLICY_SECRETS);
	h = mk("other.test", 443, true);
	/* TLS-record-sized reads, as the connection code delivers them. */
	for (size_t off = 0; off < hl + n && !(ev & HX_EV_CLOSE); off += consumed) {
		size_t k = hl + n - off < 16384 ? hl + n - off : 16384;

		assert_int_equal(hx_on_client(h, req + off, k, &consumed, &up, &cl, &ev), 0);
		assert_int_equal(consumed, k);
	}
	assert_true(ev & HX_EV_CLOSE);
	assert_true(ev & HX_EV_UPSTREAM_DONE);
	assert_true(strstr(S(&cl), "HTTP/1.1 403 Forbidden\r\n") == S(&cl));
	assert_non_null(strstr(S(&cl), "\"secret\":\"TOK\""));
	assert_null(memmem(buf_head(&up), up.len, "SLUICE_PLACEHOLDER", 18));
	hx_free(h);
	free(req);
	buf_free(&up);
	buf_free(&cl);
}

/* Scrubbing a value split across upstream reads. */
static void test_scrub_split(void **state)
{
	const char *resp = "HTTP/1.1 200 OK\r\nContent-Length: 24\r\n\r\nkey=real-token-123;end=1";
	size_t len = strlen(resp);

	load_policy(POLICY_SECRETS);
	for (size_t split = 1; split < len; split++) {
		struct buf up = {0}, cl = {0};
		unsigned ev = 0;
		struct hx *h = mk("api.test", 443, true);
		char body[128];

		feed(h, "GET /v1/e HTTP/1.1\r\nHost: api.test\r\nX-Key: SLUICE_PLACEHOLDER_TOK\r\n\r\n", &up, &cl, &ev);
		assert_int_equal(hx_on_upstream(h, resp, split, &cl, &ev), 0);
		assert_int_equal(hx_on_upstream(h, resp + split, len - split, &cl, &ev), 0);
		assert_true(ev & HX_EV_RESUME_CLIENT);
		dechunk(S(&cl), body, sizeof(body));
		assert_string_equal(body, "key=SLUICE_PLACEHOLDER_TOK;end=1");
		hx_free(h);
		buf_free(&up);
		buf_free(&cl);
	}
}

/* Basic and named-header injection; the client's own header of that name
 * is replaced, and the value never shows in the audit line. */
static void test_injection(void **state)
{
	static const char *pol =
		"rules:\n"
		"  - {action: allow, host: \"*.test\", port: 443}\n"
		"secrets:\n"
		"  B: {value: \"s3cr3t\", hosts: [\"basic.test\"], inject: basic, user: \"bob\"}\n"
		"  K: {value: \"k-value\", hosts: [\"key.test\"], inject: {header: X-Api-Key}}\n";
	struct buf up = {0}, cl = {0};
	unsigned ev = 0;
	struct hx *h;

	load_policy(pol);
	h = mk("basic.test", 443, true);
	feed(h, "GET /a HTTP/1.1\r\nHost: basic.test\r\nAuthorization: Basic Zm9vOmJhcg==\r\n\r\n", &up, &cl, &ev);
	/* base64("bob:s3cr3t") */
	assert_out(&up, "GET /a HTTP/1.1\r\nHost: basic.test\r\nAuthorization: Basic Ym9iOnMzY3IzdA==\r\nAccept-Encoding: identity\r\n\r\n");
	upstream(h, "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\ns3cr3t", &cl, &ev);
	assert_out(&cl, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n14\r\nSLUICE_PLACEHOLDER_B\r\n0\r\n\r\n");
	assert_string_equal(T.a[0].secrets, "B");
	hx_free(h);

	h = mk("key.test", 443, true);
	reset(&up);
	reset(&cl);
	feed(h, "GET /k HTTP/1.1\r\nHost: key.test\r\nx-api-key: mine\r\nAccept: */*\r\n\r\n", &up, &cl, &ev);
	assert_out(&up, "GET /k HTTP/1.1\r\nHost: key.test\r\nAccept: */*\r\nX-Api-Key: k-value\r\n"
		   "Accept-Encoding: identity\r\n\r\n");
	hx_free(h);

	/* An echo of the basic header gives the value back base64-encoded: scrubbed too. */
	h = mk("basic.test", 443, true);
	reset(&up);
	reset(&cl);
	feed(h, "GET /headers HTTP/1.1\r\nHost: basic.test\r\n\r\n", &up, &cl, &ev);
	upstream(h, "HTTP/1.1 200 OK\r\nContent-Length: 39\r\n\r\n{\"authorization\": \"Ym9iOnMzY3IzdA==\"}", &cl, &ev);
	assert_null(strstr(S(&cl), "Ym9iOnMzY3IzdA=="));
	assert_non_null(strstr(S(&cl), "SLUICE_PLACEHOLDER_B"));
	hx_free(h);

	/* No injection toward other hosts, nor over plain HTTP. */
	h = mk("other.test", 443, true);
	reset(&up);
	feed(h, "GET /o HTTP/1.1\r\nHost: other.test\r\n\r\n", &up, &cl, &ev);
	assert_out(&up, "GET /o HTTP/1.1\r\nHost: other.test\r\n\r\n");
	hx_free(h);
	buf_free(&up);
	buf_free(&cl);
}

/* A sandcat settings.json: its own placeholder spelling names the same secret. */
static void test_sandcat_alias(void **state)
{
	static const char *pol =
		"{\"secrets\": {\"KEY\": {\"value\": \"real-v\", \"hosts\": [\"api.test\"]}},\n"
		" \"network\": [{\"action\": \"allow\", \"host\": \"*\"}]}\n";
	struct buf up = {0}, cl = {0};
	unsigned ev = 0;
	char err[256];
	struct hx *h;

	policy_unref(T.pol);
	T.pol = NULL;
	assert_int_equal(policy_load_buf(pol, strlen(pol), "settings.json", POLICY_FMT_SANDCAT, &T.pol,
					 err, sizeof(err)), 0);
	assert_int_equal(policy_resolve_secrets(T.pol, err, sizeof(err)), 0);

	h = mk("api.test", 443, true);
	feed(h, "GET /a HTTP/1.1\r\nHost: api.test\r\nX-Key: SANDCAT_PLACEHOLDER_KEY\r\n\r\n", &up, &cl, &ev);
	assert_out(&up, "GET /a HTTP/1.1\r\nHost: api.test\r\nX-Key: real-v\r\nAccept-Encoding: identity\r\n\r\n");
	hx_free(h);

	h = mk("other.test", 443, true);
	reset(&up);
	reset(&cl);
	feed(h, "GET /a HTTP/1.1\r\nHost: other.test\r\nX-Key: SANDCAT_PLACEHOLDER_KEY\r\n\r\n", &up, &cl, &ev);
	assert_int_equal(buf_len(&up), 0);
	assert_non_null(strstr(S(&cl), "HTTP/1.1 403"));
	assert_non_null(strstr(S(&cl), "\"secret\":\"KEY\""));
	hx_free(h);
	buf_free(&up);
	buf_free(&cl);
}

/* No policy in force: everything is refused (fail closed). */
static void test_no_policy(void **state)
{
	struct buf up = {0}, cl = {0};
	unsigned ev = 0;
	struct hx *h;

	policy_unref(T.pol);
	T.pol = NULL;
	h = mk("api.test", 443, true);
	feed(h, "GET /v1/x HTTP/1.1\r\nHost: api.test\r\n\r\n", &up, &cl, &ev);
	assert_int_equal(up.len, 0);
	assert_false(ev & HX_EV_OPEN_UPSTREAM);
	assert_true(strstr(S(&cl), "HTTP/1.1 403 Forbidden\r\n") == S(&cl));
	assert_non_null(strstr(S(&cl), "no policy in force"));
	hx_free(h);
	buf_free(&up);
	buf_free(&cl);
}

/* Client EOF while waiting: the response is delivered, then close. */
static void test_client_eof(void **state)
{
	struct buf up = {0}, cl = {0};
	unsigned ev = 0;
	struct hx *h;

	load_policy(POLICY_PLAIN);
	h = mk("api.test", 443, true);
	feed(h, "GET /v1/x HTTP/1.1\r\nHost: api.test\r\n\r\n", &up, &cl, &ev);
	ev = 0;
	assert_int_equal(hx_on_client_eof(h, &up, &ev), 0);
	assert_false(ev & HX_EV_CLOSE);
	upstream(h, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", &cl, &ev);
	assert_true(ev & HX_EV_CLOSE);
	assert_out(&cl, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
	hx_free(h);
	buf_free(&up);
	buf_free(&cl);
}

/* A request that went upstream gets its audit line also when the exchange
 * ends early, saying why; a request whose head never completed gets none. */
static void test_cut_short(void **state)
{
	static const char get[] = "GET /v1/x HTTP/1.1\r\nHost: api.test\r\n\r\n";
	static const char head10[] = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n";
	struct buf up = {0}, cl = {0};
	unsigned ev = 0;
	struct hx *h;

	(void)state;
	load_policy(POLICY_PLAIN);

	/* The upstream closes mid-body. */
	h = mk("api.test", 443, true);
	feed(h, get, &up, &cl, &ev);
	upstream(h, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabcd", &cl, &ev);
	ev = 0;
	assert_int_equal(hx_on_upstream_eof(h, &cl, &ev), 0);
	assert_true(ev & HX_EV_ABORT);
	hx_end(h, "done", 0, 0);
	assert_int_equal(T.n_audit, 1);
	assert_int_equal(T.a[0].status, 200);
	assert_string_equal(T.a[0].target, "/v1/x");
	assert_string_equal(T.a[0].cut, "the upstream closed the connection before the response was complete");
	assert_int_equal(T.a[0].bytes_in, strlen(get));
	assert_int_equal(T.a[0].bytes_out, strlen(S(&cl)));
	hx_end(h, "done", 0, 0); /* one line per request */
	assert_int_equal(T.n_audit, 1);
	hx_free(h);

	/* The client goes away (read error, reset) mid-response. */
	reset(&up);
	reset(&cl);
	h = mk("api.test", 443, true);
	feed(h, get, &up, &cl, &ev);
	upstream(h, head10, &cl, &ev);
	hx_end(h, "client read error", 0, 0);
	assert_int_equal(T.n_audit, 1);
	assert_int_equal(T.a[0].status, 200);
	assert_string_equal(T.a[0].cut, "client read error");
	hx_free(h);

	/* The client closes mid-body of a request that went upstream: nothing
	 * was answered (status 0). */
	reset(&up);
	reset(&cl);
	h = mk("api.test", 443, true);
	feed(h, "POST /v1/p HTTP/1.1\r\nHost: api.test\r\nContent-Length: 10\r\n\r\nabc", &up, &cl, &ev);
	assert_true(strlen(S(&up)) > 0);
	ev = 0;
	assert_int_equal(hx_on_client_eof(h, &up, &ev), 0);
	assert_true(ev & HX_EV_CLOSE);
	hx_end(h, "done", 0, 0);
	assert_int_equal(T.n_audit, 1);
	assert_int_equal(T.a[0].status, 0);
	assert_string_equal(T.a[0].method, "POST");
	assert_string_equal(T.a[0].cut, "the client closed the connection before the end of its request");
	hx_free(h);

	/* A complete exchange, then half a head: no second line. */
	reset(&up);
	reset(&cl);
	h = mk("api.test", 443, true);
	feed(h, get, &up, &cl, &ev);
	upstream(h, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", &cl, &ev);
	assert_int_equal(T.n_audit, 1);
	assert_string_equal(T.a[0].cut, "");
	feed(h, "GET /v1/y HT", &up, &cl, &ev);
	hx_end(h, "client read error", 0, 0);
	assert_int_equal(T.n_audit, 1);
	hx_free(h);
	buf_free(&up);
	buf_free(&cl);
}

static int teardown(void **state)
{
	t_teardown_all();
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_forward_table),
		cmocka_unit_test(test_chunked_split),
		cmocka_unit_test(test_chunk_crlf),
		cmocka_unit_test(test_ws_scrub),
		cmocka_unit_test(test_refuse_table),
		cmocka_unit_test(test_refused_then_next),
		cmocka_unit_test(test_421_every_request),
		cmocka_unit_test(test_pipelining),
		cmocka_unit_test(test_idempotent_after_trailers),
		cmocka_unit_test(test_one_answer_per_request),
		cmocka_unit_test(test_connection_close),
		cmocka_unit_test(test_expect_100),
		cmocka_unit_test(test_websocket),
		cmocka_unit_test(test_upstream_errors),
		cmocka_unit_test(test_body_split_placeholder),
		cmocka_unit_test(test_body_encoded_leak),
		cmocka_unit_test(test_large_body_streams),
		cmocka_unit_test(test_late_leak_closes),
		cmocka_unit_test(test_scrub_split),
		cmocka_unit_test(test_1xx_no_body),
		cmocka_unit_test(test_long_secret),
		cmocka_unit_test(test_bare_lf_after_head),
		cmocka_unit_test(test_bare_lf_after_chunked),
		cmocka_unit_test(test_big_trailers_mid_response),
		cmocka_unit_test(test_client_eof),
		cmocka_unit_test(test_cut_short),
		cmocka_unit_test(test_injection),
		cmocka_unit_test(test_no_policy),
		cmocka_unit_test(test_sandcat_alias),
	};

	return cmocka_run_group_tests(tests, NULL, teardown);
}
