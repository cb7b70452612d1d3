// SPDX-License-Identifier: MIT
/*
 * The broker's HTTP path (broker/hx.h) as conn.c drives it: client bytes in
 * random pieces, unconsumed bytes re-fed after the response, a fuzzed (or a
 * canned) upstream response, EOFs, timeouts and upstream errors. Besides the
 * sanitizers, it checks the promises that make sluice a sandbox:
 *  - a secret's value goes upstream only over TLS toward one of its hosts,
 *    never toward the sandbox, never into the audit record;
 *  - what goes upstream is HTTP/1.1 a strict parser accepts (no smuggling
 *    through re-serialisation), until an upgrade turns the connection raw.
 * Values the input itself contains are exempt (the sandbox knew them).
 * Input: mode byte, split seed, 2-byte client length, client bytes, upstream bytes.
 */
#include <llhttp.h>
#include "fuzz.h"
#include "hx.h"
#include "policy.h"

static const char POLICY[] =
	"rules:\n"
	"  - {action: allow, host: \"api.test\", method: [GET, POST, HEAD, PUT], path: \"/v1/**\", port: 443}\n"
	"  - {action: allow, host: \"other.test\", port: 443}\n"
	"  - {action: allow, host: \"inj.test\", port: 443}\n"
	"  - {action: allow, host: \"plain.test\", port: 80}\n"
	"  - {action: allow, host: \"api.test\", port: 80}\n"
	"secrets:\n"
	"  TOK: {value: \"real-token-123\", hosts: [\"api.test\"], in: [header, query, body, path]}\n"
	"  HDRONLY: {value: \"hv-secret\", hosts: [\"api.test\"]}\n"
	"  INJ: {value: \"inj-secret\", hosts: [\"inj.test\"], inject: bearer}\n";

struct val { const char *v, *host; };
static const struct val VALS[] = {
	{ "real-token-123", "api.test" }, { "hv-secret", "api.test" }, { "inj-secret", "inj.test" },
};
/* Bearer injection sends base64 of nothing: the raw value is what we look for. */

struct mode { const char *sni; uint16_t port; bool tls; };
static const struct mode MODES[] = {
	{ "api.test", 443, true }, { "other.test", 443, true }, { "inj.test", 443, true },
	{ NULL, 80, false }, { "api.test", 80, false },
};

static const struct hx_limits LIMITS = { .max_header_bytes = 2048, .max_headers = 24 };
static struct policy *pol;
static bool in_input[3];

static struct policy *get_pol(void *ctx) { return policy_ref(pol); }

static void on_audit(void *ctx, const struct hx_audit *a)
{
	/* llhttp takes any 3-digit status from upstream and hx forwards it. */
	if (a->status < 100 || a->status > 999)
		fz_die("audit status %d", a->status);
	if (!a->rule)
		fz_die("audit record without a rule/reason");
	for (size_t i = 0; i < 3; i++) {
		if (in_input[i])
			continue;
		if ((a->target && fz_contains(a->target, a->target_len, VALS[i].v)) ||
		    (a->host && fz_contains(a->host, a->host_len, VALS[i].v)) ||
		    strstr(a->rule, VALS[i].v) || (a->secrets && strstr(a->secrets, VALS[i].v)))
			fz_die("secret value %zu in the audit record", i);
	}
}

/* The upstream side of the wire, checked with a strict parser. */
struct wire {
	llhttp_t p;
	llhttp_settings_t s;
	size_t seen;      /* bytes of to_up already parsed */
	bool raw;         /* after an upgrade/CONNECT: no longer HTTP */
};

static void wire_check(struct wire *w, const struct buf *up)
{
	llhttp_errno_t e;

	if (w->raw || up->len <= w->seen)
		return;
	e = llhttp_execute(&w->p, buf_head(up) + w->seen, up->len - w->seen);
	w->seen = up->len;
	if (e == HPE_PAUSED_UPGRADE) {
		w->raw = true;
		return;
	}
	if (e != HPE_OK)
		fz_die("upstream got bytes a strict parser rejects: %s (%s)", llhttp_errno_name(e),
		       llhttp_get_error_reason(&w->p));
}

/* buf_head() of a never-used buf is NULL + 0, which clang's UBSan flags. */
static bool buf_has(const struct buf *b, const char *needle)
{
	return b->len && fz_contains(buf_head(b), b->len, needle);
}

static void check_out(const struct mode *m, const struct buf *up, const struct buf *cl)
{
	for (size_t i = 0; i < 3; i++) {
		if (in_input[i])
			continue;
		if (buf_has(cl, VALS[i].v))
			fz_die("secret value %s sent to the sandbox", VALS[i].v);
		if (buf_has(up, VALS[i].v) &&
		    (!m->tls || strcmp(m->sni, VALS[i].host)))
			fz_die("secret value %s sent upstream to %s (tls=%d)", VALS[i].v,
			       m->sni ? m->sni : "(plain)", m->tls);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char canned[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
	struct fz f = { data, size };
	uint8_t mb = fz_u8(&f);
	const struct mode *m = &MODES[mb % (sizeof(MODES) / sizeof(MODES[0]))];
	uint32_t rng = fz_u8(&f) * 2654435761u + 1;
	size_t cl_len, up_len, coff = 0, uoff = 0, cans = 0;
	const char *cdata, *udata;
	struct hx_env env = {
		.sni = m->sni, .port = m->port, .client_tls = m->tls, .limits = &LIMITS,
		.policy_get = get_pol, .audit = on_audit,
	};
	struct buf cin = {0}, up = {0}, out = {0};
	struct wire w;
	bool paused = false, closed = false, opened = false;
	struct hx *h;

	if (!pol) {
		char err[256];

		if (policy_load_buf(POLICY, sizeof(POLICY) - 1, "fuzz.yaml", POLICY_FMT_SLUICE, &pol,
				    err, sizeof(err)) || policy_resolve_secrets(pol, err, sizeof(err)))
			fz_die("fuzz policy: %s", err);
	}
	cl_len = fz_u16(&f);
	cdata = (const char *)fz_take(&f, cl_len, &cl_len);
	udata = (const char *)fz_take(&f, f.n, &up_len);
	for (size_t i = 0; i < 3; i++)
		in_input[i] = fz_contains_ci((const char *)data, size, VALS[i].v);

	llhttp_settings_init(&w.s);
	llhttp_init(&w.p, HTTP_REQUEST, &w.s);
	w.seen = 0;
	w.raw = false;
	h = hx_new(&env);
	if (!h)
		abort();

	for (int round = 0; round < 4096 && !closed; round++) {
		unsigned ev = 0;
		bool moved = false;

		/* Client bytes: next random piece into cin, then feed cin as conn.c does. */
		if (coff < cl_len && cin.len < 65536) {
			size_t piece;

			rng = rng * 1103515245u + 12345u;
			piece = (rng >> 16) % 8 == 0 ? cl_len - coff : 1 + (rng >> 16) % 97;
			if (piece > cl_len - coff)
				piece = cl_len - coff;
			if (buf_append(&cin, cdata + coff, piece))
				abort();
			coff += piece;
			moved = true;
		}
		while (!paused && !closed && cin.len) {
			size_t used = 0;
			char *copy = fz_dup(buf_head(&cin), cin.len);

			ev = 0;
			if (hx_on_client(h, copy, cin.len, &used, &up, &out, &ev))
				closed = true;
			free(copy);
			if (used > cin.len)
				fz_die("consumed %zu of %zu", used, cin.len);
			buf_consume(&cin, used);
			if (cin.len && !(ev & HX_EV_RESUME_CLIENT))
				paused = true;
			if (ev & HX_EV_OPEN_UPSTREAM)
				opened = true;
			if (ev & (HX_EV_CLOSE | HX_EV_TUNNEL))
				closed = true;
			wire_check(&w, &up);
			check_out(m, &up, &out);
			if (!used && !ev)
				break;
			moved = true;
		}
		if (closed)
			break;
		/* Upstream bytes once conn.c would have dialled: after the request
		 * (paused, or no client bytes left) and now and then early. */
		rng = rng * 1103515245u + 12345u;
		if (opened && (paused || coff == cl_len || (rng >> 16) % 4 == 0)) {
			const char *p;
			size_t n, pass;
			char *copy;

			if (uoff < up_len) {
				rng = rng * 1103515245u + 12345u;
				n = 1 + (rng >> 16) % 131;
				if (n > up_len - uoff)
					n = up_len - uoff;
				p = udata + uoff;
				uoff += n;
			} else if (!up_len && cans < 16) {
				p = canned;
				n = sizeof(canned) - 1;
				cans++;
			} else {
				break;
			}
			ev = 0;
			pass = hx_upstream_passthrough(h);
			if (pass && p != canned && (rng >> 20) % 2) {
				/* The zero-copy path: the bytes land in out's tail, as
				 * conn.c reads them, and hx commits them in place. */
				char *tail;

				if (n > pass) {
					uoff -= n - pass;
					n = pass;
				}
				tail = buf_reserve(&out, n);
				if (!tail)
					fz_die("buf_reserve %zu", n);
				memcpy(tail, p, n);
				if (hx_on_upstream_inplace(h, &out, n, &ev))
					closed = true;
			} else {
				copy = fz_dup(p, n);
				if (hx_on_upstream(h, copy, n, &out, &ev))
					closed = true;
				free(copy);
			}
			if (ev & HX_EV_RESUME_CLIENT)
				paused = false;
			if (ev & (HX_EV_CLOSE | HX_EV_TUNNEL))
				closed = true;
			check_out(m, &up, &out);
			moved = true;
		}
		if (!moved)
			break;
	}
	if (!closed) {
		unsigned ev = 0;

		/* How the connection ends: chosen by the mode byte. */
		switch ((mb >> 4) % 4) {
		case 0: hx_on_upstream_eof(h, &out, &ev); break;
		case 1: hx_on_upstream_error(h, 502, "upstream TLS verification failed", &out, &ev); break;
		case 2: hx_on_timeout(h, &out, &ev); break;
		default: break;
		}
		if (!(ev & HX_EV_CLOSE))
			hx_on_client_eof(h, &up, &ev);
		wire_check(&w, &up);
		check_out(m, &up, &out);
	}
	hx_free(h);
	buf_free(&cin);
	buf_free(&up);
	buf_free(&out);
	return 0;
}
