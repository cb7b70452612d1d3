// SPDX-License-Identifier: MIT
/*
 * hx: the broker's HTTP/1.1 engine (see hx.h). Sans I/O: llhttp parses what
 * the connection code feeds in; everything forwarded is re-serialised from the
 * parsed head, never copied raw, so no smuggling trick in the client's bytes
 * reaches the upstream.
 *
 * Memory: one struct hx per client connection with scratch buffers that are
 * reused for every request (head pieces, held output, the audit line), so the
 * steady state allocates nothing per request.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <openssl/evp.h>
#include "llhttp.h"
#include "ev.h"
#include "hx.h"
#include "policy.h"
#include "subst.h"

#define HX_DEF_MAX_HEADER_BYTES (16 * 1024)
#define HX_DEF_MAX_HEADERS      100
#define HX_MAX_HEADERS_CAP      1024
/* A request body that may carry a secret is held (not sent) up to this size,
 * so a placeholder found late in it still means nothing left for the upstream. */
#define HX_HOLD_MAX             (64 * 1024)
#define HX_MAX_SECRETS          POLICY_MAX_SECRETS
#define HX_HOST_MAX             256

enum hx_kind {
	HK_OTHER = 0, HK_HOST, HK_CL, HK_TE, HK_CONNECTION, HK_KEEPALIVE, HK_PROXY_CONN,
	HK_TE_REQ, HK_TRAILER, HK_UPGRADE, HK_EXPECT, HK_PROXY_AUTHZ, HK_PROXY_AUTHN,
	HK_HTTP2_SETTINGS,
};

struct hx_hdr {
	uint32_t name, name_len;  /* offsets into the head's scratch buffer */
	uint32_t val, val_len;
	uint8_t kind;
	bool drop;                /* hop-by-hop or replaced: not forwarded */
};

enum hx_piece { PC_NONE, PC_A, PC_T, PC_NAME, PC_VAL };

/* One parsed head (request or response), rebuilt from llhttp's pieces. */
struct hx_head {
	struct buf b;             /* the pieces, contiguous per element */
	struct hx_hdr *hdr;
	size_t n, max;
	uint32_t a, a_len;        /* method (request) or reason phrase (response) */
	uint32_t t, t_len;        /* request-target */
	size_t bytes;             /* counted against max_header_bytes */
	enum hx_piece last;       /* element the previous piece belonged to */
	bool val_at_end;          /* the previous value piece ended at the end of its feed */
	bool too_big;             /* over a limit: 431 / 502 */
	bool fold;                /* obs-fold seen */
};

enum hx_frame { FR_NONE, FR_CL, FR_CHUNKED, FR_DEFER, FR_EOF };

enum hx_loc { LOC_HEADER, LOC_QUERY, LOC_BODY, LOC_PATH, LOC_NAME, LOC_N };

struct hx {
	struct hx_env env;
	size_t max_header_bytes, max_headers;
	char sni[HX_HOST_MAX];          /* lower-case, no trailing dot */
	char up_host[HX_HOST_MAX];      /* upstream host; fixed by the first request on plain HTTP */
	bool up_host_set;
	bool up_open;                   /* an upstream connection exists (OPEN_UPSTREAM sent) */

	llhttp_t rq_p, rs_p;
	struct hx_head rq, rs;

	/* Feed in progress: the caller's buffers and the input bounds. */
	struct buf *to_up, *to_client;
	unsigned *ev;
	const char *feed, *feed_end;
	int err;                        /* -errno from inside a callback */
	/* Bytes of the CRLF after a chunk's data still to be checked (see
	 * chunk_crlf), and why a body was refused when a callback refused it. */
	uint8_t rq_crlf, rs_crlf;
	const char *rq_bad, *rs_bad;

	/* Request state. */
	bool rq_active;                 /* between message begin and complete */
	bool rq_local;                  /* answered locally; body is drained */
	bool rq_fwd;                    /* forwarded; its response is awaited */
	bool rq_done;                   /* message complete seen */
	bool rq_close;                  /* connection closes after this exchange */
	bool rq_head;                   /* HEAD: the response has no body */
	/* Line-end scanner over the request head (see head_scan). */
	bool hs_body;                   /* the head ended: bytes belong to the body until the message ends */
	bool hs_eol;                    /* the last line end seen was not followed by text yet */
	bool hs_any;                    /* some text seen in this head (leading empty lines don't end it) */
	char hs_prev;                   /* last byte scanned */
	uint64_t hs_len;                /* bytes of this head (or trailer section) scanned: its wire size */
	bool rq_trailers;               /* in the trailer section: head_scan checks its lines */
	bool rq_ws;                     /* WebSocket upgrade forwarded, waiting for 101 */
	char ws_accept[32];             /* the Sec-WebSocket-Accept a real 101 must carry, or "" */
	bool rule_names_host;           /* this request's allow rule names its host exactly */
	/* an override header's method / path: pointers into rq.b, valid only
	 * until the head buffer grows again (trailers): read in headers_complete */
	const char *alt_method, *alt_target;
	size_t alt_method_len, alt_target_len;
	bool alt_nonidem;               /* an override header named a method that is not idempotent */
	bool up_internal;               /* the open upstream is an internal address (conn says) */
	bool rq_http10;
	bool rq_close_on_refuse;        /* a refusal cannot drain the body (Expect): close */
	bool expect_local;              /* 100 Continue was answered by hx itself */
	bool holding;                   /* output toward the upstream is held in hold */
	bool scan_body;                 /* body goes through the secret scanner */
	bool closed;                    /* HX_EV_CLOSE given: discard everything */
	bool tunnel;
	bool client_eof;
	enum hx_frame rq_fr;
	struct buf hold;                /* held head (+ framed body) toward the upstream */
	struct buf hold_body;           /* FR_DEFER: unframed body, Content-Length fixed at the end */
	char method[24];
	size_t method_len;
	char host[HX_HOST_MAX];         /* effective request host (lower-case, no port) */
	size_t host_len;
	char host_port[8];              /* ":port" as the client wrote it, or empty */
	size_t host_port_len;
	int ans_status;                 /* local answer being built */
	bool ans_close;
	uint64_t inject_mask;           /* this request: secrets injected as headers */
	uint64_t start_us, bytes_in, bytes_out;
	int status;                     /* final status given to the sandbox */
	char why[256];                  /* rule or refusal reason for the audit line */
	bool audited;                   /* this request's audit line is written: one per request */
	uint64_t n_requests;            /* requests begun on this connection (hx_requests) */
	bool rq_head_done;              /* the request head was complete (the policy saw it) */
	char cut[128];                  /* why the exchange ended early, for its audit line, or "" */
	const char *refuse_all;         /* hx_refuse_all: every request gets 503 with this reason */

	/* Response state. */
	bool rs_active;                 /* response head seen, body not complete */
	bool rs_sent;                   /* some of the response reached to_client */
	bool rs_done;                   /* final response complete */
	bool rs_scrub;                  /* body goes through the scrubber */
	bool rs_keep;                   /* upstream connection reusable */
	enum hx_frame rs_fr;

	/* Secrets: cached per policy (rebuilt when a reload swaps the policy). */
	struct policy *pol;
	size_t n_sec;
	struct subst *ph;               /* placeholders -> values */
	struct subst_pat *ph_pats;
	bool ph_prefixed;               /* every placeholder starts with SLUICE_PLACEHOLDER_ */
	struct subst *sc;               /* values -> placeholders (response scrubbing) */
	struct subst_pat *sc_pats;
	char *sc_b64;                   /* base64 "user:value" of basic-injected secrets, for sc */
	size_t sc_b64_len;
	uint64_t sc_mask;               /* secrets sc was compiled for */
	uint64_t sent_mask;             /* secrets whose value went upstream on this connection */
	uint64_t allow[LOC_N];          /* per location: secrets that may be substituted there */
	uint64_t used_mask;             /* this request: substituted or injected */
	int leak;                       /* this request: secret index refused, or -1 */
	enum hx_loc cur_loc;
	struct subst_stream rq_ss, rs_ss, ws_ctl_ss;
	/* A WebSocket tunnel from a host that has secrets: its frames toward the
	 * client are parsed and their payloads scrubbed (hx_on_ws_upstream). */
	struct ws_rx {
		uint8_t hdr[14];
		uint8_t hdr_have, hdr_need;
		bool in_frame;          /* header read, payload bytes pending */
		bool fin, in_msg, out_first;
		bool dead;              /* a protocol error was seen: nothing more passes */
		uint8_t op, msg_op;
		uint64_t left;          /* payload bytes of this frame still to come */
		struct buf ctl, ctl_out; /* a control frame's payload (<= 125 bytes), scrubbed */
		struct buf out;         /* scrubbed payload of the fragment being built */
	} ws;
	bool ws_scrub;
	/* The request body percent-decoded (one layer), scanned for leaks only:
	 * a form body can carry SLUICE%5FPLACEHOLDER%5F... to a host the secret
	 * may not go to. pd_* is the decoder's carry across reads. */
	struct subst_stream rq_pss;
	char pd_hex;                    /* first hex digit after '%' (pd_n == 2) */
	uint8_t pd_n;                   /* 0: plain, 1: after '%', 2: after '%X' */
	struct buf tmp;                 /* scratch for decoding and rewriting */
	struct buf *emit_to;            /* where emit_to_buf appends */
	struct buf audit;               /* scratch for the audit's secrets list */
	/* hx_on_upstream_inplace: the next body byte's place at to_client's
	 * uncommitted tail (where the caller read it), else NULL. */
	char *inplace;
};

#define PH_PREFIX "SLUICE_PLACEHOLDER_"

static bool ieq(const char *a, size_t al, const char *b)
{
	size_t bl = strlen(b);

	return al == bl && strncasecmp(a, b, bl) == 0;
}

/* An empty head has no buffer yet: NULL + 0 is UB, so give the NULL back as is. */
static inline const char *hp(const struct hx_head *m, uint32_t off) { return m->b.data ? m->b.data + off : NULL; }

/* ------------------------------------------------------------------ */
/* Output helpers                                                     */

static inline int put(struct hx *h, struct buf *b, const void *p, size_t n)
{
	int r = buf_put(b, p, n);

	if (r)
		h->err = r;
	return r;
}

static int puts_(struct hx *h, struct buf *b, const char *s) { return put(h, b, s, strlen(s)); }
/* String literals: length known at compile time. */
#define PUT_LIT(h, b, s) put((h), (b), (s), sizeof(s) - 1)

static int put_u64(struct hx *h, struct buf *b, unsigned long long v)
{
	int r = buf_put_u64(b, v);

	if (r)
		h->err = r;
	return r;
}

static int put_chunk_hdr(struct hx *h, struct buf *b, size_t n)
{
	int r = buf_put_hex(b, n);

	if (r)
		h->err = r;
	return r ? r : PUT_LIT(h, b, "\r\n");
}

/* "Content-Length: N\r\n" */
static int put_cl(struct hx *h, struct buf *b, unsigned long long n)
{
	PUT_LIT(h, b, "Content-Length: ");
	put_u64(h, b, n);
	return PUT_LIT(h, b, "\r\n");
}

/* Bounded copy into a fixed field (what snprintf "%s" did, without printf). */
static size_t set_str(char *dst, size_t cap, const char *s, size_t n)
{
	if (n > cap - 1)
		n = cap - 1;
	memcpy(dst, s, n);
	dst[n] = 0;
	return n;
}

static void set_why(struct hx *h, const char *s)
{
	set_str(h->why, sizeof(h->why), s, strnlen(s, sizeof(h->why) - 1));
}

/* JSON string body (without quotes): escapes what JSON requires, and bytes
 * above 0x7e as \u00XX so a client's garbage cannot break the document. */
static int put_json_str(struct hx *h, struct buf *b, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	char *d = buf_reserve(b, n * 6);
	size_t k = 0;

	if (!d) {
		h->err = -ENOMEM;
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '"' || c == '\\') {
			d[k++] = '\\';
			d[k++] = (char)c;
		} else if (c < 0x20 || c > 0x7e) {
			memcpy(d + k, "\\u00", 4);
			d[k + 4] = hex[c >> 4];
			d[k + 5] = hex[c & 15];
			k += 6;
		} else {
			d[k++] = (char)c;
		}
	}
	buf_commit(b, k);
	return 0;
}

static const char *reason_phrase(int status)
{
	switch (status) {
	case 100: return "Continue";
	case 400: return "Bad Request";
	case 403: return "Forbidden";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 421: return "Misdirected Request";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	case 505: return "HTTP Version Not Supported";
	default:  return "Error";
	}
}

/* ------------------------------------------------------------------ */
/* Audit                                                              */

static void audit_emit(struct hx *h)
{
	struct hx_audit rec;
	struct hx_head *m = &h->rq;

	/* A WebSocket tunnel's line is written when it closes (hx_end), with
	 * the tunnel's bytes and lifetime; rq_active is false by then. */
	if (!h->env.audit || !(h->rq_active || h->tunnel) || h->audited)
		return;
	h->audited = true;
	memset(&rec, 0, sizeof(rec));
	rec.cut = h->cut[0] ? h->cut : NULL;
	rec.method = h->method;
	rec.method_len = h->method_len;
	rec.host = h->host;
	rec.host_len = h->host_len;
	if (m->t_len) {
		rec.target = hp(m, m->t);
		rec.target_len = m->t_len;
	}
	rec.status = h->status;
	rec.rule = h->why[0] ? h->why : "";
	h->audit.len = 0;
	h->audit.off = 0;
	if (h->pol && (h->used_mask || h->leak >= 0)) {
		for (size_t i = 0; i < h->n_sec && i < HX_MAX_SECRETS; i++) {
			const struct policy_secret *s = policy_secret_at(h->pol, i);

			if (!(h->used_mask & (1ull << i)) && h->leak != (int)i)
				continue;
			if (h->audit.len)
				buf_append(&h->audit, ",", 1);
			buf_append(&h->audit, s->name, strlen(s->name));
		}
		if (buf_append(&h->audit, "", 1) == 0)
			rec.secrets = buf_head(&h->audit);
	}
	rec.bytes_in = h->bytes_in;
	rec.bytes_out = h->bytes_out;
	rec.start_us = h->start_us;
	rec.end_us = ev_now_us();
	h->env.audit(h->env.ctx, &rec);
}

/* Why the request in flight ends without its response complete (the first
 * reason given wins): its audit line, written by hx_end, carries it. */
static void set_cut(struct hx *h, const char *why)
{
	if (!h->cut[0] && why && *why)
		snprintf(h->cut, sizeof(h->cut), "%s", why);
}

void hx_upstream_gone(struct hx *h)
{
	h->up_open = false;
}

void hx_refuse_all(struct hx *h, const char *reason)
{
	h->refuse_all = reason;
}

void hx_end(struct hx *h, const char *why, uint64_t tunnel_in, uint64_t tunnel_out)
{
	if (!h || h->audited)
		return;
	if (h->tunnel) {
		h->bytes_in += tunnel_in;
		h->bytes_out += tunnel_out;
		audit_emit(h);
		return;
	}
	/* A request whose head never completed reached no rule and no upstream. */
	if (!h->rq_active || !h->rq_head_done)
		return;
	set_cut(h, why ? why : "the connection closed");
	audit_emit(h);
}

/* ------------------------------------------------------------------ */
/* Local answers                                                      */

/* A local JSON answer: the body is built in h->tmp between answer_begin and
 * answer_end, which writes head and body with the exact length. */
static struct buf *answer_begin(struct hx *h, int status, bool close)
{
	h->tmp.off = h->tmp.len = 0;
	h->ans_status = status;
	h->ans_close = close;
	h->status = status;
	h->rs_sent = true;
	return &h->tmp;
}

static void answer_end(struct hx *h)
{
	struct buf *b = h->to_client;
	size_t start = b->len;

	put(h, &h->tmp, "\n", 1);
	PUT_LIT(h, b, "HTTP/1.1 ");
	put_u64(h, b, (unsigned)h->ans_status);
	PUT_LIT(h, b, " ");
	puts_(h, b, reason_phrase(h->ans_status));
	PUT_LIT(h, b, "\r\nContent-Type: application/json\r\n");
	if (h->ans_close)
		PUT_LIT(h, b, "Connection: close\r\n");
	put_cl(h, b, h->tmp.len);
	PUT_LIT(h, b, "\r\n");
	if (!h->rq_head) /* HEAD: same head, no body */
		put(h, b, buf_head(&h->tmp), h->tmp.len);
	h->tmp.len = 0;
	h->bytes_out += b->len - start;
}

static void local_done(struct hx *h, bool close)
{
	h->rq_local = true;
	if (close) {
		h->rq_close = true;
		h->closed = true;
		*h->ev |= HX_EV_CLOSE;
	}
	audit_emit(h);
}

/* 400 / 405 / 408 / 421 / 431 / 500 with {"error":..., "reason":...}. */
static void answer_error(struct hx *h, int status, const char *error, const char *reason, bool close)
{
	struct buf *b;

	if (!h->to_client)
		return;
	close = close || h->rq_close;
	b = answer_begin(h, status, close);
	puts_(h, b, "{\"error\":\"");
	put_json_str(h, b, error, strlen(error));
	if (reason) {
		puts_(h, b, "\",\"reason\":\"");
		put_json_str(h, b, reason, strlen(reason));
	}
	puts_(h, b, "\"}");
	answer_end(h);
	set_why(h, reason ? reason : error);
	local_done(h, close);
}

static void answer_denied(struct hx *h, const char *rule)
{
	struct hx_head *m = &h->rq;
	struct buf *b = answer_begin(h, 403, h->rq_close);

	puts_(h, b, "{\"error\":\"denied\",\"host\":\"");
	put_json_str(h, b, h->host, h->host_len);
	puts_(h, b, "\",\"method\":\"");
	put_json_str(h, b, h->method, h->method_len);
	puts_(h, b, "\",\"path\":\"");
	put_json_str(h, b, hp(m, m->t), m->t_len);
	puts_(h, b, "\",\"rule\":\"");
	put_json_str(h, b, rule, strlen(rule));
	puts_(h, b, "\"}");
	answer_end(h);
	set_why(h, rule);
	local_done(h, h->rq_close);
}

static void answer_leak(struct hx *h, bool close)
{
	const struct policy_secret *s = policy_secret_at(h->pol, (size_t)h->leak);
	struct buf *b = answer_begin(h, 403, close || h->rq_close);

	puts_(h, b, "{\"error\":\"secret leak blocked\",\"secret\":\"");
	put_json_str(h, b, s->name, strlen(s->name));
	puts_(h, b, "\",\"host\":\"");
	put_json_str(h, b, h->host, h->host_len);
	puts_(h, b, "\"}");
	answer_end(h);
	snprintf(h->why, sizeof(h->why), "secret leak blocked: %s may not go to this host or place", s->name);
	local_done(h, close || h->rq_close);
}

/* ------------------------------------------------------------------ */
/* Head recording (llhttp callbacks)                                  */

static struct hx *hx_of(llhttp_t *p) { return p->data; }

static int head_piece(struct hx *h, struct hx_head *m, enum hx_piece pc, const char *at, size_t len)
{
	uint32_t off;

	m->bytes += len;
	if (m->bytes > h->max_header_bytes) {
		m->too_big = true;
		return HPE_USER;
	}
	off = (uint32_t)m->b.len;
	if (buf_put(&m->b, at, len)) {
		h->err = -ENOMEM;
		return HPE_USER;
	}
	switch (pc) {
	case PC_A:
		if (m->last != PC_A)
			m->a = off, m->a_len = 0;
		m->a_len += (uint32_t)len;
		break;
	case PC_T:
		if (m->last != PC_T)
			m->t = off, m->t_len = 0;
		m->t_len += (uint32_t)len;
		break;
	case PC_NAME:
		if (m->last != PC_NAME) {
			if (m->n >= m->max) {
				m->too_big = true;
				return HPE_USER;
			}
			m->bytes += 4; /* ": " and CRLF */
			memset(&m->hdr[m->n], 0, sizeof(m->hdr[0]));
			m->hdr[m->n].name = off;
			m->n++;
		}
		m->hdr[m->n - 1].name_len += (uint32_t)len;
		break;
	case PC_VAL:
		if (!m->n)
			return HPE_USER;
		if (m->last != PC_VAL) {
			m->hdr[m->n - 1].val = off;
		} else if (!(m->val_at_end && at == h->feed)) {
			/* A second value piece that does not simply continue across a
			 * feed boundary: llhttp joined an obs-fold line. */
			m->fold = true;
		}
		m->hdr[m->n - 1].val_len += (uint32_t)len;
		m->val_at_end = at + len == h->feed_end;
		break;
	default:
		break;
	}
	m->last = pc;
	return 0;
}

static int piece_done(llhttp_t *p)
{
	struct hx *h = hx_of(p);

	(llhttp_get_type(p) == HTTP_REQUEST ? &h->rq : &h->rs)->last = PC_NONE;
	return 0;
}

static void head_reset(struct hx_head *m)
{
	m->b.off = 0;
	m->b.len = 0;
	m->n = 0;
	m->a = m->a_len = m->t = m->t_len = 0;
	m->bytes = 0;
	m->last = PC_NONE;
	m->val_at_end = false;
	m->too_big = m->fold = false;
}

static int rq_on_method(llhttp_t *p, const char *at, size_t n) { return head_piece(hx_of(p), &hx_of(p)->rq, PC_A, at, n); }
static int rq_on_url(llhttp_t *p, const char *at, size_t n) { return head_piece(hx_of(p), &hx_of(p)->rq, PC_T, at, n); }
static int rq_on_field(llhttp_t *p, const char *at, size_t n) { return head_piece(hx_of(p), &hx_of(p)->rq, PC_NAME, at, n); }
static int rq_on_value(llhttp_t *p, const char *at, size_t n) { return head_piece(hx_of(p), &hx_of(p)->rq, PC_VAL, at, n); }
static int rs_on_status(llhttp_t *p, const char *at, size_t n) { return head_piece(hx_of(p), &hx_of(p)->rs, PC_A, at, n); }
static int rs_on_field(llhttp_t *p, const char *at, size_t n) { return head_piece(hx_of(p), &hx_of(p)->rs, PC_NAME, at, n); }
static int rs_on_value(llhttp_t *p, const char *at, size_t n) { return head_piece(hx_of(p), &hx_of(p)->rs, PC_VAL, at, n); }

/* Case-insensitive (ASCII) equality with a lower-case literal of length n. */
static bool lc_eq(const char *s, const char *lit, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		char c = s[i];

		if (c >= 'A' && c <= 'Z')
			c = (char)(c + 32);
		if (c != lit[i])
			return false;
	}
	return true;
}

/* The headers hx treats specially. The length and first letter pick the one
 * candidate, so an ordinary header costs a switch, not 13 string compares. */
static enum hx_kind hdr_kind(const char *name, size_t n)
{
	static const struct { const char *name; enum hx_kind k; } kinds[] = {
		{ "host", HK_HOST }, { "content-length", HK_CL }, { "transfer-encoding", HK_TE },
		{ "connection", HK_CONNECTION }, { "keep-alive", HK_KEEPALIVE },
		{ "proxy-connection", HK_PROXY_CONN }, { "te", HK_TE_REQ }, { "trailer", HK_TRAILER },
		{ "upgrade", HK_UPGRADE }, { "expect", HK_EXPECT },
		{ "proxy-authorization", HK_PROXY_AUTHZ }, { "proxy-authenticate", HK_PROXY_AUTHN },
		{ "http2-settings", HK_HTTP2_SETTINGS },
	};
	int i;

	switch (n) {
	case 2:  i = 6; break;                                  /* te */
	case 4:  i = 0; break;                                  /* host */
	case 6:  i = 9; break;                                  /* expect */
	case 7:  i = (name[0] | 0x20) == 't' ? 7 : 8; break;    /* trailer, upgrade */
	case 10: i = (name[0] | 0x20) == 'c' ? 3 : 4; break;    /* connection, keep-alive */
	case 14: i = (name[0] | 0x20) == 'c' ? 1 : 12; break;   /* content-length, http2-settings */
	case 16: i = 5; break;                                  /* proxy-connection */
	case 17: i = 2; break;                                  /* transfer-encoding */
	case 18: i = 11; break;                                 /* proxy-authenticate */
	case 19: i = 10; break;                                 /* proxy-authorization */
	default: return HK_OTHER;
	}
	return lc_eq(name, kinds[i].name, n) ? kinds[i].k : HK_OTHER;
}

/*
 * Byte searches eight at a time (SWAR). For the short strings of a head this
 * beats both a byte loop and memchr's call and setup.
 */
#define SW_ONES  0x0101010101010101ull
#define SW_HIGHS 0x8080808080808080ull
static inline uint64_t sw_zero(uint64_t x) { return (x - SW_ONES) & ~x & SW_HIGHS; }
static inline uint64_t sw_load(const char *p)
{
	uint64_t x;

	memcpy(&x, p, 8);
	return x;
}

/* Whether s holds a byte equal to a, b or c (repeat one to look for fewer). */
static inline bool has_byte3(const char *s, size_t n, unsigned char a, unsigned char b, unsigned char c)
{
	const uint64_t ma = SW_ONES * a, mb = SW_ONES * b, mc = SW_ONES * c;
	size_t i = 0;

	if (n >= 8) {
		/* The last step re-reads a few bytes instead of a byte loop. */
		for (;; i += 8) {
			uint64_t x;

			if (i + 8 > n)
				i = n - 8;
			x = sw_load(s + i);
			if (sw_zero(x ^ ma) | sw_zero(x ^ mb) | sw_zero(x ^ mc))
				return true;
			if (i + 8 == n)
				return false;
		}
	}
	for (; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];

		if (ch == a || ch == b || ch == c)
			return true;
	}
	return false;
}

/* Classifies headers, trims OWS from values, rejects what llhttp lets through. */
static const char *head_finish(struct hx_head *m)
{
	if (m->fold)
		return "obsolete line folding (obs-fold) in a header";
	for (size_t i = 0; i < m->n; i++) {
		struct hx_hdr *x = &m->hdr[i];
		const char *name = hp(m, x->name), *v = hp(m, x->val);

		if (has_byte3(name, x->name_len, ' ', '\t', '\t'))
			return "whitespace in or after a header name";
		while (x->val_len && (v[x->val_len - 1] == ' ' || v[x->val_len - 1] == '\t'))
			x->val_len--;
		if (has_byte3(v, x->val_len, '\0', '\r', '\n')) /* NUL, CR, LF */
			return "control character in a header value";
		x->kind = (uint8_t)hdr_kind(name, x->name_len);
		x->drop = false;
	}
	return NULL;
}

/* Drops hop-by-hop headers, including those named by Connection. */
static void mark_hop_by_hop(struct hx_head *m, bool *conn_close, bool *conn_upgrade)
{
	for (size_t i = 0; i < m->n; i++) {
		struct hx_hdr *x = &m->hdr[i];

		switch (x->kind) {
		case HK_CL: case HK_TE: case HK_CONNECTION: case HK_KEEPALIVE: case HK_PROXY_CONN:
		case HK_TE_REQ: case HK_TRAILER: case HK_UPGRADE: case HK_PROXY_AUTHZ:
		case HK_PROXY_AUTHN: case HK_HTTP2_SETTINGS:
			x->drop = true;
			break;
		default:
			break;
		}
		if (x->kind != HK_CONNECTION)
			continue;
		/* Connection: token list; each named header is hop-by-hop too. */
		const char *v = hp(m, x->val), *e = v + x->val_len;
		while (v < e) {
			const char *s;
			size_t n;

			while (v < e && (*v == ' ' || *v == '\t' || *v == ','))
				v++;
			s = v;
			while (v < e && *v != ',' && *v != ' ' && *v != '\t')
				v++;
			n = (size_t)(v - s);
			if (!n)
				continue;
			if (conn_close && ieq(s, n, "close"))
				*conn_close = true;
			if (conn_upgrade && ieq(s, n, "upgrade"))
				*conn_upgrade = true;
			for (size_t j = 0; j < m->n; j++)
				if (m->hdr[j].kind == HK_OTHER &&
				    m->hdr[j].name_len == n && !strncasecmp(hp(m, m->hdr[j].name), s, n))
					m->hdr[j].drop = true;
		}
	}
}

static bool has_token(const char *v, size_t len, const char *tok)
{
	const char *e = v + len;

	while (v < e) {
		const char *s;

		while (v < e && (*v == ' ' || *v == '\t' || *v == ','))
			v++;
		s = v;
		while (v < e && *v != ',' && *v != ' ' && *v != '\t' && *v != '/')
			v++;
		if (ieq(s, (size_t)(v - s), tok))
			return true;
		while (v < e && *v != ',')
			v++;
	}
	return false;
}

/* ------------------------------------------------------------------ */
/* Secrets                                                            */

/* A stream may hold a heap carry (long needles) from its last use. */
static void ss_reset(struct subst_stream *st, const struct subst *s)
{
	subst_stream_fini(st);
	subst_stream_init(st, s);
}

static void sc_b64_drop(struct hx *h)
{
	if (h->sc_b64) {
		OPENSSL_cleanse(h->sc_b64, h->sc_b64_len);
		free(h->sc_b64);
	}
	h->sc_b64 = NULL;
	h->sc_b64_len = 0;
}

static void sec_cache_drop(struct hx *h)
{
	subst_free(h->ph);
	subst_free(h->sc);
	sc_b64_drop(h);
	free(h->ph_pats);
	free(h->sc_pats);
	h->ph = h->sc = NULL;
	h->ph_pats = h->sc_pats = NULL;
	h->sc_mask = 0;
	h->sent_mask = 0;
	h->n_sec = 0;
	policy_unref(h->pol);
	h->pol = NULL;
}

/* Takes over the reference p. Rebuilds the placeholder matcher when the policy changed. */
static int sec_cache_use(struct hx *h, struct policy *p)
{
	size_t n;

	if (p == h->pol) {
		policy_unref(p);
		return 0;
	}
	sec_cache_drop(h);
	h->pol = p;
	n = policy_secret_count(p);
	h->n_sec = n;
	if (!n)
		return 0;
	/* Room for each placeholder and its alias (sandcat's spelling, for files
	 * read from a sandcat settings.json): both name the same secret. */
	h->ph_pats = calloc(2 * n, sizeof(*h->ph_pats));
	if (!h->ph_pats)
		return -ENOMEM;
	h->ph_prefixed = true;
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		const struct policy_secret *s = policy_secret_at(p, i);
		const char *names[2] = { s->placeholder, s->placeholder_alias };

		for (int a = 0; a < 2; a++) {
			struct subst_pat *pt = &h->ph_pats[k];

			if (!names[a])
				continue;
			pt->needle = names[a];
			pt->needle_len = strlen(names[a]);
			pt->repl = s->value ? s->value : names[a];
			pt->repl_len = s->value ? s->value_len : pt->needle_len;
			pt->id = (int)i;
			if (strncmp(names[a], PH_PREFIX, sizeof(PH_PREFIX) - 1))
				h->ph_prefixed = false;
			k++;
		}
	}
	h->ph = subst_compile(h->ph_pats, k);
	return h->ph ? 0 : -ENOMEM;
}

/* The response scrubber for the secrets in mask (values -> placeholders). */
/* What a basic-injected secret looks like on the wire: base64("user:value").
 * An upstream that echoes the request's headers returns it in that form. */
static size_t basic_b64_len(const struct policy_secret *s)
{
	size_t n = (s->inject_user ? strlen(s->inject_user) : 0) + 1 + s->value_len;

	return (n + 2) / 3 * 4;
}

/* Writes basic_b64_len(s) characters and a NUL to out. Both the injected
 * header and the scrubber's pattern come from here. */
static int basic_b64(struct hx *h, const struct policy_secret *s, char *out)
{
	const char *u = s->inject_user ? s->inject_user : "";
	int r;

	h->tmp.off = h->tmp.len = 0;
	r = buf_append(&h->tmp, u, strlen(u));
	if (!r)
		r = buf_append(&h->tmp, ":", 1);
	if (!r)
		r = buf_append(&h->tmp, s->value, s->value_len);
	if (!r)
		EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)h->tmp.data, (int)h->tmp.len);
	OPENSSL_cleanse(h->tmp.data, h->tmp.len); /* no value lingers in scratch */
	h->tmp.len = 0;
	return r ? -ENOMEM : 0;
}

static int sec_scrub_for(struct hx *h, uint64_t mask)
{
	size_t k = 0, b64 = 0, off = 0;

	if (mask == h->sc_mask && (h->sc || !mask))
		return 0;
	subst_free(h->sc);
	h->sc = NULL;
	h->sc_mask = 0;
	sc_b64_drop(h);
	if (!h->sc_pats) {
		/* a value, and for basic injection its base64 form, per secret */
		h->sc_pats = calloc(h->n_sec ? 2 * h->n_sec : 1, sizeof(*h->sc_pats));
		if (!h->sc_pats)
			return -ENOMEM;
	}
	for (size_t i = 0; i < h->n_sec && i < HX_MAX_SECRETS; i++) {
		const struct policy_secret *s = policy_secret_at(h->pol, i);

		if ((mask & (1ull << i)) && s->value && s->value_len && s->inject == SECRET_INJECT_BASIC)
			b64 += basic_b64_len(s) + 1;
	}
	if (b64) {
		h->sc_b64 = malloc(b64);
		if (!h->sc_b64)
			return -ENOMEM;
		h->sc_b64_len = b64;
	}
	for (size_t i = 0; i < h->n_sec && i < HX_MAX_SECRETS; i++) {
		const struct policy_secret *s = policy_secret_at(h->pol, i);

		if (!(mask & (1ull << i)) || !s->value || !s->value_len)
			continue;
		h->sc_pats[k].needle = s->value;
		h->sc_pats[k].needle_len = s->value_len;
		h->sc_pats[k].repl = s->placeholder;
		h->sc_pats[k].repl_len = strlen(s->placeholder);
		h->sc_pats[k].id = (int)i;
		k++;
		if (s->inject == SECRET_INJECT_BASIC) {
			if (basic_b64(h, s, h->sc_b64 + off))
				return -ENOMEM;
			h->sc_pats[k] = h->sc_pats[k - 1];
			h->sc_pats[k].needle = h->sc_b64 + off;
			h->sc_pats[k].needle_len = basic_b64_len(s);
			off += basic_b64_len(s) + 1;
			k++;
		}
	}
	h->sc_mask = mask;
	if (!k)
		return 0;
	h->sc = subst_compile(h->sc_pats, k);
	return h->sc ? 0 : -ENOMEM;
}

static int sec_on_match(void *ctx, int id)
{
	struct hx *h = ctx;

	if (h->cur_loc != LOC_NAME && id >= 0 && id < HX_MAX_SECRETS &&
	    (h->allow[h->cur_loc] & (1ull << id))) {
		h->used_mask |= 1ull << id;
		return 0;
	}
	h->leak = id;
	return -EACCES;
}

static int sec_on_match_scan(void *ctx, int id)
{
	int r = sec_on_match(ctx, id);

	return r ? r : 1; /* scanning only: leave the bytes alone */
}

static int emit_discard(void *ctx, const char *d, size_t n) { return 0; }

static int emit_to_buf(void *ctx, const char *d, size_t n)
{
	struct hx *h = ctx;

	return buf_append(h->emit_to, d, n);
}

static bool maybe_placeholder(const struct hx *h, const char *s, size_t n)
{
	if (!h->ph)
		return false;
	if (h->ph_prefixed)
		return memmem(s, n, PH_PREFIX, sizeof(PH_PREFIX) - 1) != NULL;
	return true;
}

static int unhex(char c)
{
	if (c >= '0' && c <= '9') return c - '0';
	if (c >= 'a' && c <= 'f') return c - 'a' + 10;
	if (c >= 'A' && c <= 'F') return c - 'A' + 10;
	return -1;
}

/* Percent-decodes s into tmp (repeatedly, so %2553 is caught too). Returns
 * false when there was nothing to decode. */
static bool pct_decode(struct hx *h, const char *s, size_t n)
{
	bool any = false;

	if (!memchr(s, '%', n))
		return false;
	h->tmp.off = h->tmp.len = 0;
	if (buf_append(&h->tmp, s, n))
		return false;
	for (int round = 0; round < 4; round++) {
		char *d = h->tmp.data;
		size_t j = 0, len = h->tmp.len;
		bool changed = false;

		for (size_t i = 0; i < len; i++) {
			int a, b;

			if (d[i] == '%' && i + 2 < len + 0 && (a = unhex(d[i + 1])) >= 0 &&
			    (b = unhex(d[i + 2])) >= 0) {
				d[j++] = (char)(a * 16 + b);
				i += 2;
				changed = true;
			} else {
				d[j++] = d[i];
			}
		}
		h->tmp.len = j;
		if (!changed)
			break;
		any = true;
	}
	return any;
}

/* Leak check of a slice at loc, including its percent-decoded form. Returns
 * 0 or -EACCES (h->leak set). */
static int sec_scan(struct hx *h, enum hx_loc loc, const char *s, size_t n)
{
	int r;

	if (!h->ph || !n)
		return 0;
	h->cur_loc = loc;
	if (maybe_placeholder(h, s, n)) {
		ss_reset(&h->rq_ss, h->ph);
		r = subst_stream_feed(&h->rq_ss, s, n, emit_discard, sec_on_match_scan, h);
		if (!r)
			r = subst_stream_finish(&h->rq_ss, emit_discard, h);
		if (r)
			return r;
	}
	if (pct_decode(h, s, n) && maybe_placeholder(h, h->tmp.data, h->tmp.len)) {
		/* Encoded placeholders are never substituted: anywhere they are
		 * not allowed plain, they are a leak attempt. */
		ss_reset(&h->rq_ss, h->ph);
		r = subst_stream_feed(&h->rq_ss, h->tmp.data, h->tmp.len, emit_discard,
				      sec_on_match_scan, h);
		if (!r)
			r = subst_stream_finish(&h->rq_ss, emit_discard, h);
		if (r)
			return r;
	}
	return 0;
}

/* Appends s to b with placeholders replaced (allowed at loc, checked by sec_scan before). */
static int sec_put(struct hx *h, struct buf *b, enum hx_loc loc, const char *s, size_t n)
{
	int r;

	if (!maybe_placeholder(h, s, n))
		return put(h, b, s, n);
	h->cur_loc = loc;
	h->emit_to = b;
	ss_reset(&h->rq_ss, h->ph);
	r = subst_stream_feed(&h->rq_ss, s, n, emit_to_buf, sec_on_match, h);
	if (!r)
		r = subst_stream_finish(&h->rq_ss, emit_to_buf, h);
	if (r && r != -EACCES)
		h->err = r;
	return r;
}

/* Same toward the sandbox: real values -> placeholders. */
static int scrub_put(struct hx *h, struct buf *b, const char *s, size_t n)
{
	int r;

	if (!h->sc)
		return put(h, b, s, n);
	h->emit_to = b;
	ss_reset(&h->rs_ss, h->sc);
	r = subst_stream_feed(&h->rs_ss, s, n, emit_to_buf, NULL, h);
	if (!r)
		r = subst_stream_finish(&h->rs_ss, emit_to_buf, h);
	if (r)
		h->err = r;
	return r;
}

static const char *inject_name(const struct policy_secret *s)
{
	if (s->inject == SECRET_INJECT_BEARER || s->inject == SECRET_INJECT_BASIC)
		return "authorization";
	if (s->inject == SECRET_INJECT_HEADER && s->inject_header)
		return s->inject_header;
	return NULL;
}

static const llhttp_settings_t rs_settings;

/* ------------------------------------------------------------------ */
/* Toward the upstream                                                */

static void open_upstream(struct hx *h)
{
	if (h->up_open)
		return;
	h->up_open = true;
	*h->ev |= HX_EV_OPEN_UPSTREAM;
	/* A fresh upstream connection starts a fresh response stream. */
	llhttp_init(&h->rs_p, HTTP_RESPONSE, &rs_settings);
	h->rs_p.data = h;
}

static struct buf *up_sink(struct hx *h) { return h->holding ? &h->hold : h->to_up; }

static int up_put(struct hx *h, const void *p, size_t n) { return put(h, up_sink(h), p, n); }

/* Releases the held request toward the upstream. final: the body is complete,
 * so a deferred Content-Length can be written exactly. */
static int hold_flush(struct hx *h, bool final)
{
	if (!h->holding)
		return 0;
	if (h->rq_fr == FR_DEFER) {
		if (final) {
			put_cl(h, &h->hold, h->hold_body.len);
			PUT_LIT(h, &h->hold, "\r\n");
			put(h, &h->hold, buf_head(&h->hold_body), h->hold_body.len);
		} else {
			puts_(h, &h->hold, "Transfer-Encoding: chunked\r\n\r\n");
			if (h->hold_body.len) {
				put_chunk_hdr(h, &h->hold, h->hold_body.len);
				put(h, &h->hold, buf_head(&h->hold_body), h->hold_body.len);
				puts_(h, &h->hold, "\r\n");
			}
			h->rq_fr = FR_CHUNKED;
		}
		h->hold_body.off = h->hold_body.len = 0;
	}
	h->holding = false;
	open_upstream(h);
	put(h, h->to_up, buf_head(&h->hold), h->hold.len);
	h->hold.off = h->hold.len = 0;
	buf_shrink(&h->hold, HX_HOLD_MAX + 4096);
	return h->err;
}

/* Body bytes after substitution, framed as the upstream expects them. */
static int rq_body_emit(void *ctx, const char *d, size_t n)
{
	struct hx *h = ctx;

	if (!n)
		return 0;
	switch (h->rq_fr) {
	case FR_DEFER:
		return put(h, &h->hold_body, d, n);
	case FR_CHUNKED:
		put_chunk_hdr(h, up_sink(h), n);
		up_put(h, d, n);
		return up_put(h, "\r\n", 2);
	default:
		return up_put(h, d, n);
	}
}

/* Abandons the request at hand after a leak found in its body. */
static int pd_feed(struct hx *h, const char *d, size_t n)
{
	return subst_stream_feed(&h->rq_pss, d, n, emit_discard, sec_on_match_scan, h);
}

/* Feeds the percent-decoded form of a body slice to the leak scanner.
 * Returns 0 or -EACCES (h->leak set). */
static int body_pct_scan(struct hx *h, const char *at, size_t n)
{
	char out[512];
	size_t o = 0;
	int r;

	for (size_t i = 0; i < n; i++) {
		char c = at[i];

		if (h->pd_n == 1) {
			if (unhex(c) >= 0) {
				h->pd_hex = c;
				h->pd_n = 2;
				continue;
			}
			out[o++] = '%';
			h->pd_n = 0;
		} else if (h->pd_n == 2) {
			h->pd_n = 0;
			if (unhex(c) >= 0) {
				out[o++] = (char)(unhex(h->pd_hex) * 16 + unhex(c));
				goto next;
			}
			out[o++] = '%';
			out[o++] = h->pd_hex;
		}
		if (c == '%')
			h->pd_n = 1;
		else
			out[o++] = c;
next:
		if (o > sizeof(out) - 4) {
			if ((r = pd_feed(h, out, o)))
				return r;
			o = 0;
		}
	}
	return o ? pd_feed(h, out, o) : 0;
}

static int body_pct_finish(struct hx *h)
{
	char tail[2] = { '%', h->pd_hex };
	int r = h->pd_n ? pd_feed(h, tail, h->pd_n) : 0;

	h->pd_n = 0;
	return r ? r : subst_stream_finish(&h->rq_pss, emit_discard, h);
}

static void rq_abort_leak(struct hx *h)
{
	bool sent = !h->holding;

	h->hold.off = h->hold.len = 0;
	h->hold_body.off = h->hold_body.len = 0;
	h->holding = false;
	h->rq_fwd = false;
	if (sent) {
		/* Part of the request already left: the upstream connection is
		 * poisoned and the client's connection goes too. */
		*h->ev |= HX_EV_UPSTREAM_DONE;
		h->up_open = false;
		if (h->rs_sent) {
			h->closed = true;
			*h->ev |= HX_EV_CLOSE | HX_EV_ABORT;
			set_cut(h, "the request carried a secret's placeholder toward a host that secret is not for");
			audit_emit(h);
			h->rq_local = true;
			return;
		}
	}
	answer_leak(h, sent);
}

/* ------------------------------------------------------------------ */
/* Request head                                                       */

static void lower_host(char *dst, size_t dstlen, const char *s, size_t n, size_t *outlen)
{
	size_t k = 0;

	while (n && s[n - 1] == '.')
		n--;
	for (size_t i = 0; i < n && k + 1 < dstlen; i++) {
		char c = s[i];
		dst[k++] = (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
	}
	dst[k] = 0;
	*outlen = k;
}

/* Splits "host[:port]" / "[v6]:port". Returns false when malformed. */
static bool split_authority(const char *v, size_t n, const char **host, size_t *hl, long *port)
{
	const char *colon = NULL;

	*port = -1;
	if (!n)
		return false;
	if (v[0] == '[') {
		const char *rb = memchr(v, ']', n);
		if (!rb)
			return false;
		*host = v;
		*hl = (size_t)(rb - v) + 1;
		if (*hl < n) {
			if (v[*hl] != ':')
				return false;
			colon = v + *hl;
		}
	} else {
		colon = memchr(v, ':', n);
		*host = v;
		*hl = colon ? (size_t)(colon - v) : n;
	}
	if (colon) {
		long p = 0;
		const char *e = v + n;

		if (colon + 1 == e)
			return false;
		for (const char *c = colon + 1; c < e; c++) {
			if (*c < '0' || *c > '9' || p > 65535)
				return false;
			p = p * 10 + (*c - '0');
		}
		if (p > 65535)
			return false;
		*port = p;
	}
	for (size_t i = 0; i < *hl; i++) {
		unsigned char c = (unsigned char)(*host)[i];
		if (c <= 0x20 || c >= 0x7f || c == '/' || c == '@' || c == '\\' || c == '?' || c == '#')
			return false;
	}
	return *hl > 0;
}

/* Writes the request head (without the framing headers and final CRLF when
 * the body framing is deferred) into the upstream sink. */
/* RFC 6455 4.2.2: base64(SHA-1(key + GUID)). No key (or an absurd one): ""
 * and no 101 will be taken. */
static void ws_expect_accept(struct hx *h, const char *key, size_t key_len)
{
	static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
	unsigned char in[64 + sizeof(guid)], md[EVP_MAX_MD_SIZE];
	unsigned int mdl = 0;

	h->ws_accept[0] = '\0';
	if (!key || !key_len || key_len > 64)
		return;
	memcpy(in, key, key_len);
	memcpy(in + key_len, guid, sizeof(guid) - 1);
	if (EVP_Digest(in, key_len + sizeof(guid) - 1, md, &mdl, EVP_sha1(), NULL) != 1 || mdl != 20)
		return;
	EVP_EncodeBlock((unsigned char *)h->ws_accept, md, 20); /* 28 chars + NUL */
}

static bool head_has(const struct hx_head *m, const char *lc_name)
{
	size_t nl = strlen(lc_name);

	for (size_t i = 0; i < m->n; i++)
		if (m->hdr[i].name_len == nl && lc_eq(hp(m, m->hdr[i].name), lc_name, nl))
			return true;
	return false;
}

static bool ws_accepted(struct hx *h, const struct hx_head *m)
{
	bool up = false, acc = false;

	for (size_t i = 0; i < m->n; i++) {
		const struct hx_hdr *x = &m->hdr[i];

		if (x->kind == HK_UPGRADE && has_token(hp(m, x->val), x->val_len, "websocket"))
			up = true;
		else if (x->name_len == 20 && lc_eq(hp(m, x->name), "sec-websocket-accept", 20))
			acc = h->ws_accept[0] && x->val_len == strlen(h->ws_accept) &&
			      !memcmp(hp(m, x->val), h->ws_accept, x->val_len);
	}
	return up && acc;
}

static int rq_serialise(struct hx *h, const char *path, size_t path_len, const char *query,
			size_t query_len, bool ws, bool drop_expect)
{
	struct hx_head *m = &h->rq;
	struct buf *b = up_sink(h);
	bool injected_authz = false;

	put(h, b, hp(m, m->a), m->a_len);
	put(h, b, " ", 1);
	if (sec_put(h, b, LOC_PATH, path, path_len))
		return h->err ? h->err : -EACCES;
	if (query) {
		put(h, b, "?", 1);
		if (sec_put(h, b, LOC_QUERY, query, query_len))
			return h->err ? h->err : -EACCES;
	}
	puts_(h, b, " HTTP/1.1\r\nHost: ");
	put(h, b, h->host, h->host_len);
	if (h->host_port_len)
		put(h, b, h->host_port, h->host_port_len);
	puts_(h, b, "\r\n");
	for (size_t i = 0; i < m->n; i++) {
		struct hx_hdr *x = &m->hdr[i];

		if (x->drop || x->kind == HK_HOST || (drop_expect && x->kind == HK_EXPECT))
			continue;
		/* A compressed response could not be scrubbed: ask for none. The
		 * same for WebSocket messages (permessage-deflate). */
		if (h->sc && x->name_len == 15 && lc_eq(hp(m, x->name), "accept-encoding", 15))
			continue;
		if (h->sc && x->name_len == 24 && lc_eq(hp(m, x->name), "sec-websocket-extensions", 24))
			continue;
		/* Nor a part of one: two ranges could cut a value into pieces the
		 * scrubber finds in neither. */
		if (h->sc && ((x->name_len == 5 && lc_eq(hp(m, x->name), "range", 5)) ||
			      (x->name_len == 8 && lc_eq(hp(m, x->name), "if-range", 8))))
			continue;
		put(h, b, hp(m, x->name), x->name_len);
		put(h, b, ": ", 2);
		if (sec_put(h, b, LOC_HEADER, hp(m, x->val), x->val_len))
			return h->err ? h->err : -EACCES;
		put(h, b, "\r\n", 2);
	}
	/* Injected credentials (the client's own header of that name was dropped). */
	for (size_t i = 0; i < h->n_sec && i < HX_MAX_SECRETS; i++) {
		const struct policy_secret *s = policy_secret_at(h->pol, i);

		if (!(h->inject_mask & (1ull << i)))
			continue;
		if (s->inject == SECRET_INJECT_BEARER || s->inject == SECRET_INJECT_BASIC) {
			if (injected_authz)
				continue;
			injected_authz = true;
		}
		if (s->inject == SECRET_INJECT_BEARER) {
			puts_(h, b, "Authorization: Bearer ");
			put(h, b, s->value, s->value_len);
		} else if (s->inject == SECRET_INJECT_BASIC) {
			size_t bl = basic_b64_len(s);
			char *d;

			puts_(h, b, "Authorization: Basic ");
			d = buf_reserve(b, bl + 1);
			if (!d || basic_b64(h, s, d))
				return -ENOMEM;
			buf_commit(b, bl);
		} else {
			puts_(h, b, s->inject_header);
			puts_(h, b, ": ");
			put(h, b, s->value, s->value_len);
		}
		puts_(h, b, "\r\n");
		h->used_mask |= 1ull << i;
	}
	if (h->sc)
		puts_(h, b, "Accept-Encoding: identity\r\n");
	if (ws)
		puts_(h, b, "Connection: Upgrade\r\nUpgrade: websocket\r\n");
	switch (h->rq_fr) {
	case FR_CL:
		put_cl(h, b, (unsigned long long)h->rq_p.content_length);
		PUT_LIT(h, b, "\r\n");
		break;
	case FR_CHUNKED:
		puts_(h, b, "Transfer-Encoding: chunked\r\n\r\n");
		break;
	case FR_DEFER:
		break; /* hold_flush completes the head */
	default:
		puts_(h, b, "\r\n");
		break;
	}
	return h->err;
}

static int rq_on_message_begin(llhttp_t *p)
{
	struct hx *h = hx_of(p);

	head_reset(&h->rq);
	h->n_requests++;
	h->rq_bad = NULL;
	h->rq_crlf = 0;
	h->rq_trailers = false;
	h->rq_active = true;
	h->rq_local = h->rq_fwd = h->rq_done = h->rq_close = h->rq_head = false;
	h->rq_ws = h->holding = h->scan_body = h->rq_http10 = false;
	h->expect_local = false;
	h->rq_fr = FR_NONE;
	h->method[0] = h->host[0] = h->why[0] = h->cut[0] = 0;
	h->audited = h->rq_head_done = false;
	h->method_len = 0;
	h->host_len = h->host_port_len = 0;
	h->status = 0;
	h->used_mask = h->inject_mask = 0;
	h->rule_names_host = false;
	h->alt_method = h->alt_target = NULL;
	h->alt_method_len = h->alt_target_len = 0;
	h->alt_nonidem = false;
	memset(h->allow, 0, sizeof(h->allow));
	h->leak = -1;
	h->start_us = ev_now_us();
	h->bytes_in = h->bytes_out = 0;
	h->rs_done = h->rs_sent = h->rs_active = false;
	return 0;
}

/* Checks Host against the connection (SNI on TLS, the first Host on plain
 * HTTP). Returns 0, 400 or 421 with reason set. */
static int rq_check_host(struct hx *h, const char *auth, size_t auth_len, const char **reason)
{
	const char *host;
	size_t hl, lhl;
	long port;
	char lh[HX_HOST_MAX];

	if (!split_authority(auth, auth_len, &host, &hl, &port) || hl >= HX_HOST_MAX) {
		*reason = "malformed Host header";
		return 400;
	}
	lower_host(lh, sizeof(lh), host, hl, &lhl);
	memcpy(h->host, lh, lhl + 1);
	h->host_len = lhl;
	if (port >= 0) {
		char *e = h->host_port + sizeof(h->host_port), *q = e;
		long pv = port;

		/* port <= 65535 (split_authority): ":" and five digits fit */
		do {
			*--q = (char)('0' + pv % 10);
			pv /= 10;
		} while (pv);
		*--q = ':';
		h->host_port_len = (size_t)(e - q);
		memmove(h->host_port, q, h->host_port_len);
		if (port != h->env.port) {
			*reason = "the Host header names another port than the connection's: open a new connection for it";
			return 421;
		}
	}
	if (h->env.sni) {
		if (strcmp(lh, h->sni)) {
			*reason = "the Host header differs from the TLS server name (SNI): open a new connection for that host";
			return 421;
		}
		return 0;
	}
	if (!h->up_host_set) {
		memcpy(h->up_host, lh, lhl + 1);
		h->up_host_set = true;
	} else if (strcmp(lh, h->up_host)) {
		*reason = "the Host header differs from the one this connection started with: open a new connection for that host";
		return 421;
	}
	return 0;
}

/* RFC 9110 section 9.2.2; the request's own method is upper case as sent,
 * an override header's is compared without case. */
static bool method_idempotent(const char *m, size_t n)
{
	static const char *const idem[] = { "GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE", NULL };

	for (int i = 0; idem[i]; i++)
		if (ieq(m, n, idem[i]))
			return true;
	return false;
}

static int rq_on_headers_complete(llhttp_t *p)
{
	struct hx *h = hx_of(p);
	struct hx_head *m = &h->rq;
	const char *bad, *t, *auth = NULL, *path, *query = NULL, *reason = NULL, *ws_key = NULL;
	size_t tl, auth_len = 0, path_len, query_len = 0, n_host = 0, ws_key_len = 0;
	bool conn_upgrade = false, ws = false, expect = false, drop_expect = false;
	struct policy *pol;
	struct policy_req pr;
	struct policy_verdict v;
	uint64_t ok_mask = 0, host_mask = 0;
	int r, st;

	/* The head as it came, request line and CRLFs included (head_scan saw
	 * all of it before llhttp did). */
	h->bytes_in += h->hs_len;
	h->rq_head_done = true;
	h->method_len = m->a_len ? set_str(h->method, sizeof(h->method), hp(m, m->a), m->a_len) : 0;
	h->method[h->method_len] = 0;
	h->rq_http10 = p->http_major == 1 && p->http_minor == 0;
	/* HTTP/1.0 keep-alive is not offered: one exchange, then close. */
	h->rq_close = !llhttp_should_keep_alive(p) || h->client_eof || h->rq_http10;
	h->rq_head = p->method == HTTP_HEAD;

	/* llhttp 8 takes any digit pair (HTTP/2.0, HTTP/0.9); the request is
	 * sent upstream as HTTP/1.1, so only 1.0 and 1.1 are understood. */
	if (p->http_major != 1 || p->http_minor > 1) {
		answer_error(h, 505, "HTTP version not supported",
			     "only HTTP/1.0 and HTTP/1.1 requests are understood here", true);
		return -1;
	}
	bad = head_finish(m);
	t = hp(m, m->t);
	tl = m->t_len;
	for (size_t i = 0; !bad && i < tl; i++)
		if ((unsigned char)t[i] <= 0x20 || (unsigned char)t[i] >= 0x7f)
			bad = "invalid character in the request-target";
	if (bad) {
		answer_error(h, 400, "bad request", bad, true);
		return -1;
	}
	if ((p->flags & F_TRANSFER_ENCODING) && !(p->flags & F_CHUNKED))
		bad = "Transfer-Encoding must end in chunked in a request";
	/* Only chunked itself: the body is re-chunked toward the upstream, and
	 * a coding before it (gzip, chunked) would reach it unannounced. */
	for (size_t i = 0; !bad && i < m->n; i++)
		if (m->hdr[i].kind == HK_TE && !ieq(hp(m, m->hdr[i].val), m->hdr[i].val_len, "chunked"))
			bad = "only Transfer-Encoding: chunked is supported in a request";
	if (bad) {
		answer_error(h, 400, "bad request", bad, true);
		return -1;
	}
	if (p->method == HTTP_CONNECT) {
		answer_error(h, 405, "method not allowed",
			     "CONNECT is not supported: sluice intercepts connections transparently, send the request directly", true);
		return -1;
	}
	/* Request-target: origin-form, or absolute-form whose authority replaces Host. */
	if (tl >= 7 && (!strncasecmp(t, "http://", 7) || (tl >= 8 && !strncasecmp(t, "https://", 8)))) {
		const char *a = t + (t[4] == ':' ? 7 : 8), *e = t + tl, *s = a;

		while (s < e && *s != '/' && *s != '?')
			s++;
		auth = a;
		auth_len = (size_t)(s - a);
		path = s;
		path_len = (size_t)(e - s);
	} else if (tl && t[0] == '/') {
		path = t;
		path_len = tl;
	} else if (tl == 1 && t[0] == '*' && p->method == HTTP_OPTIONS) {
		path = t;
		path_len = tl;
	} else {
		answer_error(h, 400, "bad request", "the request-target must be a path (origin-form)", true);
		return -1;
	}
	{
		const char *q = memchr(path, '?', path_len);
		if (q) {
			query = q + 1;
			query_len = path_len - (size_t)(q - path) - 1;
			path_len = (size_t)(q - path);
		}
	}
	for (size_t i = 0; i < m->n; i++) {
		struct hx_hdr *x = &m->hdr[i];

		if (x->kind == HK_HOST) {
			n_host++;
			if (!auth) {
				auth = hp(m, x->val);
				auth_len = x->val_len;
			}
		} else if (x->kind == HK_UPGRADE) {
			if (has_token(hp(m, x->val), x->val_len, "websocket"))
				ws = true;
		} else if (x->name_len == 17 && lc_eq(hp(m, x->name), "sec-websocket-key", 17)) {
			ws_key = hp(m, x->val);
			ws_key_len = x->val_len;
		} else if (x->kind == HK_EXPECT) {
			if (!ieq(hp(m, x->val), x->val_len, "100-continue")) {
				answer_error(h, 400, "bad request", "unsupported Expect value (only 100-continue)", true);
				return -1;
			}
			expect = true;
		}
	}
	if (n_host > 1) {
		answer_error(h, 400, "bad request", "more than one Host header", true);
		return -1;
	}
	if (!auth) {
		if (!h->rq_http10 || !h->env.sni) {
			answer_error(h, 400, "bad request", "missing Host header", true);
			return -1;
		}
		auth = h->env.sni;
		auth_len = strlen(auth);
	}
	mark_hop_by_hop(m, NULL, &conn_upgrade);
	ws = ws && conn_upgrade && p->method == HTTP_GET;
	/* A request whose body we will not read properly must end the connection. */
	if (expect && (p->flags & (F_CHUNKED | F_CONTENT_LENGTH)))
		h->rq_close_on_refuse = true;
	else
		h->rq_close_on_refuse = false;

	st = rq_check_host(h, auth, auth_len, &reason);
	if (st) {
		answer_error(h, st, st == 421 ? "misdirected request" : "bad request", reason,
			     st == 400 || h->rq_close_on_refuse);
		return h->closed ? -1 : 0;
	}

	if (h->refuse_all) {
		answer_error(h, 503, "service unavailable", h->refuse_all, true);
		return -1;
	}

	/* Policy, taken per request so a reload applies to the next one. */
	pol = h->env.policy_get ? h->env.policy_get(h->env.ctx) : NULL;
	if (!pol) {
		h->rq_close |= h->rq_close_on_refuse;
		answer_denied(h, "no policy in force (none loaded, or the audit log cannot be written; see the broker log): default deny");
		return h->closed ? -1 : 0;
	}
	r = sec_cache_use(h, pol);
	if (r) {
		h->err = r;
		return -1;
	}
	pr.host = h->host;
	pr.host_len = h->host_len;
	pr.method = h->method;
	pr.method_len = h->method_len;
	pr.target = path;
	pr.target_len = path_len + (query ? query_len + 1 : 0);
	pr.port = h->env.port;
	r = policy_decide(h->pol, &pr, &v);
	if (r) {
		answer_error(h, 400, "bad request", v.why, true);
		return -1;
	}
	if (!v.allow) {
		h->rq_close |= h->rq_close_on_refuse;
		answer_denied(h, v.why);
		return h->closed ? -1 : 0;
	}
	/* Headers some frameworks take as the method or the path to serve
	 * (Symfony, Laravel, Google APIs, IIS rewrites): the request must be
	 * allowed as they read it too, and a secret's method or path limits hold
	 * for both readings. */
	for (size_t i = 0; i < m->n; i++) {
		struct hx_hdr *x = &m->hdr[i];
		const char *nm = hp(m, x->name);
		struct policy_req alt = pr;
		struct policy_verdict av;
		bool is_m = ieq(nm, x->name_len, "x-http-method-override") ||
			    ieq(nm, x->name_len, "x-http-method") || ieq(nm, x->name_len, "x-method-override");
		bool is_t = ieq(nm, x->name_len, "x-original-url") || ieq(nm, x->name_len, "x-rewrite-url");
		char why[sizeof(av.why) + 96];

		if (!is_m && !is_t)
			continue;
		if (is_m) {
			alt.method = hp(m, x->val);
			alt.method_len = x->val_len;
			h->alt_method = alt.method;
			h->alt_method_len = alt.method_len;
			h->alt_nonidem |= !method_idempotent(alt.method, alt.method_len);
		} else {
			alt.target = hp(m, x->val);
			alt.target_len = x->val_len;
			h->alt_target = alt.target;
			h->alt_target_len = alt.target_len;
		}
		r = policy_decide(h->pol, &alt, &av);
		if (!r && av.allow)
			continue;
		snprintf(why, sizeof(why), "%.*s names another %s for the upstream to serve, and that one is "
			 "not allowed: %s", (int)x->name_len, nm, is_m ? "method" : "path", av.why);
		h->rq_close |= h->rq_close_on_refuse;
		answer_denied(h, why);
		return h->closed ? -1 : 0;
	}
	set_why(h, v.why);
	h->rule_names_host = policy_rule_names_host(h->pol, v.rule, pr.host, pr.host_len);
	if (h->up_open && h->up_internal && !h->rule_names_host) {
		answer_error(h, 502, "upstream unreachable",
			     "this connection's upstream is an internal address (loopback, link-local or this "
			     "host), which only a rule naming the host exactly may reach; refused", true);
		return -1;
	}

	/* Secrets: where each may be substituted for this request. */
	for (size_t i = 0; i < h->n_sec && i < HX_MAX_SECRETS; i++) {
		const struct policy_secret *s = policy_secret_at(h->pol, i);
		uint64_t bit = 1ull << i;
		const char *iname;

		/* Whatever this request sends, a host the value may go to can
		 * give it back (an echo, or what another request stored there). */
		if (s->value && policy_secret_host_allowed(s, pr.host, pr.host_len))
			host_mask |= bit;
		if (!h->env.client_tls || !s->value ||
		    !policy_secret_allowed(s, pr.host, pr.host_len, pr.method, pr.method_len,
					   pr.target, pr.target_len))
			continue;
		if (h->alt_method && !policy_secret_allowed(s, pr.host, pr.host_len, h->alt_method,
							    h->alt_method_len, pr.target, pr.target_len))
			continue;
		if (h->alt_target && !policy_secret_allowed(s, pr.host, pr.host_len, pr.method, pr.method_len,
							    h->alt_target, h->alt_target_len))
			continue;
		ok_mask |= bit;
		if (s->where & SECRET_IN_HEADER) h->allow[LOC_HEADER] |= bit;
		if (s->where & SECRET_IN_QUERY)  h->allow[LOC_QUERY] |= bit;
		if (s->where & SECRET_IN_BODY)   h->allow[LOC_BODY] |= bit;
		if (s->where & SECRET_IN_PATH)   h->allow[LOC_PATH] |= bit;
		iname = inject_name(s);
		if (s->inject != SECRET_INJECT_NONE && iname) {
			h->inject_mask |= bit;
			for (size_t j = 0; j < m->n; j++)
				if (ieq(hp(m, m->hdr[j].name), m->hdr[j].name_len, iname))
					m->hdr[j].drop = true;
		}
	}
	r = sec_scan(h, LOC_PATH, path, path_len);
	if (!r && query)
		r = sec_scan(h, LOC_QUERY, query, query_len);
	for (size_t i = 0; !r && i < m->n; i++) {
		struct hx_hdr *x = &m->hdr[i];

		if (x->kind == HK_HOST) {
			r = sec_scan(h, LOC_NAME, hp(m, x->val), x->val_len);
			continue;
		}
		if (x->drop)
			continue;
		r = sec_scan(h, LOC_NAME, hp(m, x->name), x->name_len);
		if (!r)
			r = sec_scan(h, LOC_HEADER, hp(m, x->val), x->val_len);
	}
	if (r == -EACCES) {
		h->rq_close |= h->rq_close_on_refuse;
		answer_leak(h, false);
		return h->closed ? -1 : 0;
	}
	if (r) {
		h->err = r;
		return -1;
	}

	/* Framing toward the upstream. */
	if (p->flags & F_CHUNKED) {
		h->rq_fr = FR_CHUNKED;
		h->scan_body = h->ph != NULL;
	} else if (p->flags & F_CONTENT_LENGTH) {
		h->scan_body = h->ph != NULL && p->content_length > 0;
		h->rq_fr = h->scan_body && h->allow[LOC_BODY] ? FR_DEFER : FR_CL;
	}
	h->holding = h->scan_body;
	/* A 100-continue expectation in an HTTP/1.0 request is ignored (RFC 9110 10.1.1). */
	if (h->holding && expect && !h->rq_http10) {
		/* The head is held until the body is checked, so the upstream
		 * cannot answer 100: answer it here. */
		puts_(h, h->to_client, "HTTP/1.1 100 Continue\r\n\r\n");
		h->bytes_out += sizeof("HTTP/1.1 100 Continue\r\n\r\n") - 1;
		h->expect_local = true;
		drop_expect = true;
	}
	r = sec_scrub_for(h, h->sent_mask | ok_mask | host_mask);
	if (r) {
		h->err = r;
		return -1;
	}
	if (!h->holding)
		open_upstream(h);
	h->rq_ws = ws;
	if (ws)
		ws_expect_accept(h, ws_key, ws_key_len);
	/* "http://h?q" has an empty path: origin-form needs its "/". */
	r = rq_serialise(h, path_len ? path : "/", path_len ? path_len : 1, query, query_len, ws, drop_expect);
	if (r == -EACCES) {
		/* sec_scan saw every slice first; kept as a fail-closed guard. */
		rq_abort_leak(h);
		return h->closed ? -1 : 0;
	}
	if (r) {
		h->err = r;
		return -1;
	}
	h->sent_mask |= h->used_mask;
	h->rq_fwd = true;
	h->cur_loc = LOC_BODY;
	if (h->scan_body) {
		ss_reset(&h->rq_ss, h->ph);
		ss_reset(&h->rq_pss, h->ph);
		h->pd_n = 0;
	}
	return 0;
}

/*
 * llhttp 8 skips the two bytes after a chunk's data without looking at them:
 * "5\r\nhelloXX0\r\n\r\n" parses as "hello". Bodies are re-chunked, so the
 * upstream is not desynchronised by it, but malformed framing is refused
 * (RFC 9112 section 7.1), never repaired. crlf_feed checks the bytes of d..end
 * that *want says are still due; chunk_crlf starts the check at the end of a
 * body span that completes a chunk (what the span cannot see is checked at
 * the start of the next read). Both return 0 or -EINVAL.
 */
static const char CRLF_ERR[] = "a chunk's data must be followed by CRLF (RFC 9112 section 7.1)";

static int crlf_feed(uint8_t *want, const char *d, const char *end)
{
	for (; *want && d < end; d++, (*want)--) {
		if (*d != "\r\n"[2 - *want]) {
			*want = 0;
			return -EINVAL;
		}
	}
	return 0;
}

static int chunk_crlf(llhttp_t *p, uint8_t *want, const char *after, const char *end)
{
	if (!(p->flags & F_CHUNKED) || p->content_length)
		return 0;
	*want = 2;
	return crlf_feed(want, after, end);
}

static int rq_on_body(llhttp_t *p, const char *at, size_t n)
{
	struct hx *h = hx_of(p);
	int r;

	if (chunk_crlf(p, &h->rq_crlf, at + n, h->feed_end)) {
		h->rq_bad = CRLF_ERR;
		return -1;
	}
	h->bytes_in += n;
	if (h->rq_local || !h->rq_fwd)
		return 0; /* refused: drained, never forwarded */
	if (!h->scan_body) {
		rq_body_emit(h, at, n);
		return h->err ? -1 : 0;
	}
	h->cur_loc = LOC_BODY;
	/* The decoded scan first: a leak found there must stop the slice before
	 * any of it is emitted. */
	r = body_pct_scan(h, at, n);
	if (!r)
		r = subst_stream_feed(&h->rq_ss, at, n, rq_body_emit, sec_on_match, h);
	if (r == -EACCES) {
		rq_abort_leak(h);
		return h->closed ? -1 : 0;
	}
	if (r) {
		h->err = r;
		return -1;
	}
	h->sent_mask |= h->used_mask;
	if (h->holding && h->hold.len + h->hold_body.len > HX_HOLD_MAX)
		hold_flush(h, false);
	return h->err ? -1 : 0;
}

/*
 * The last chunk: what follows is the trailer section and the empty line that
 * ends the message, lines that llhttp also ends at a bare LF ("0\r\n\n"). The
 * parser pauses here so that head_scan checks them as it checks a head, from
 * a line start after a non-empty line (the empty one ends the section).
 */
static int rq_on_chunk_header(llhttp_t *p)
{
	struct hx *h = hx_of(p);

	if (p->content_length)
		return 0;
	h->rq_trailers = true;
	h->hs_len = 0;
	h->hs_body = false;
	h->hs_eol = h->hs_any = true;
	h->hs_prev = '\n';
	return HPE_PAUSED;
}

static void exchange_end(struct hx *h)
{
	h->rq_active = false;
	h->rq_fwd = false;
	if (h->rq_close || h->client_eof) {
		h->closed = true;
		*h->ev |= HX_EV_CLOSE;
	} else {
		*h->ev |= HX_EV_RESUME_CLIENT;
	}
}

static void head_scan_reset(struct hx *h);

static int rq_on_message_complete(llhttp_t *p)
{
	struct hx *h = hx_of(p);
	int r;

	h->rq_done = true;
	if (h->rq_trailers)
		h->bytes_in += h->hs_len;
	head_scan_reset(h); /* the next bytes start the next request's head */
	h->rq_trailers = false;
	if (h->rq_fwd && !h->rq_local) {
		if (h->scan_body) {
			h->cur_loc = LOC_BODY;
			r = body_pct_finish(h);
			if (!r)
				r = subst_stream_finish(&h->rq_ss, rq_body_emit, h);
			if (r == -EACCES) {
				rq_abort_leak(h);
				if (h->closed)
					return -1;
				h->rq_active = false;
				return HPE_PAUSED;
			}
			if (r) {
				h->err = r;
				return -1;
			}
		}
		if (h->rq_fr == FR_CHUNKED)
			up_put(h, "0\r\n\r\n", 5);
		hold_flush(h, true);
		if (h->err)
			return -1;
		if (h->rs_done)
			exchange_end(h);
	} else {
		/* Answered locally: the next request may follow. */
		h->rq_active = false;
		h->rq_fwd = false;
		if (h->rq_close) {
			h->closed = true;
			*h->ev |= HX_EV_CLOSE;
		}
	}
	/* Stop here: a pipelined request waits until this one is answered. */
	return HPE_PAUSED;
}

/* ------------------------------------------------------------------ */
/* Response                                                           */

/* The connection ends. If an upstream response is part way out (its head
 * went, its body is not complete), the client must see a broken connection
 * (HX_EV_ABORT: no close_notify, a reset), not a clean end: for a body
 * framed by the close (an HTTP/1.0 client) a clean end would pass the cut
 * for the whole. A local answer (403, 408) is whole: it ends cleanly. */
static void close_now(struct hx *h, unsigned *ev)
{
	h->closed = true;
	*ev |= HX_EV_CLOSE;
	if (h->rs_active && !h->tunnel)
		*ev |= HX_EV_ABORT;
}

static void rs_fail(struct hx *h, const char *reason)
{
	if (h->rq_active && h->rs_sent)
		set_cut(h, reason);
	*h->ev |= HX_EV_UPSTREAM_DONE;
	h->up_open = false;
	if (h->rq_fwd && !h->rs_sent && h->rq_active) {
		h->rq_fwd = false;
		answer_error(h, 502, "bad gateway", reason, true);
	}
	h->rq_fwd = false;
	close_now(h, h->ev);
}

static int rs_on_message_begin(llhttp_t *p)
{
	head_reset(&hx_of(p)->rs);
	hx_of(p)->rs_bad = NULL;
	hx_of(p)->rs_crlf = 0;
	return 0;
}

static int rs_body_emit(void *ctx, const char *d, size_t n)
{
	struct hx *h = ctx;

	if (!n)
		return 0;
	if (h->rs_fr == FR_CHUNKED) {
		size_t before = h->to_client->len;

		put_chunk_hdr(h, h->to_client, n);
		put(h, h->to_client, d, n);
		put(h, h->to_client, "\r\n", 2);
		h->bytes_out += h->to_client->len - before;
		return h->err;
	}
	h->bytes_out += n;
	if (h->inplace) {
		/* The bytes already sit where they belong: commit, do not copy.
		 * llhttp hands body spans over in order from the start of the feed,
		 * so d is the tail; memmove only keeps a surprise harmless. */
		if (d != h->inplace)
			memmove(h->inplace, d, n);
		buf_commit(h->to_client, n);
		h->inplace += n;
		return 0;
	}
	return put(h, h->to_client, d, n);
}

/* Status line and forwarded headers (scrubbed) into to_client. */
static void rs_head_out(struct hx *h, int status, bool keep_cl)
{
	struct hx_head *m = &h->rs;
	struct buf *b = h->to_client;

	char sl[13] = "HTTP/1.1 000 ";

	/* 100..599 (rs_on_headers_complete checked it) */
	sl[9] = (char)('0' + status / 100);
	sl[10] = (char)('0' + status / 10 % 10);
	sl[11] = (char)('0' + status % 10);
	put(h, b, sl, sizeof(sl));
	/* One reservation for the whole head: the appends below then never grow the buffer. */
	buf_reserve(b, m->b.len + 4 * m->n + 128);
	scrub_put(h, b, hp(m, m->a), m->a_len);
	put(h, b, "\r\n", 2);
	for (size_t i = 0; i < m->n; i++) {
		struct hx_hdr *x = &m->hdr[i];

		if (x->drop && !(keep_cl && x->kind == HK_CL))
			continue;
		scrub_put(h, b, hp(m, x->name), x->name_len); /* an upstream may echo into a name */
		put(h, b, ": ", 2);
		scrub_put(h, b, hp(m, x->val), x->val_len);
		put(h, b, "\r\n", 2);
	}
}

static int rs_on_headers_complete(llhttp_t *p)
{
	struct hx *h = hx_of(p);
	struct hx_head *m = &h->rs;
	int status = p->status_code;
	size_t before = h->to_client->len;
	bool nobody;
	const char *bad;

	if (!h->rq_fwd)
		return -1;
	bad = head_finish(m);
	if (!bad && (status < 100 || status > 599))
		bad = "status code outside 100-599"; /* llhttp takes any three digits */
	if (bad) {
		rs_fail(h, bad);
		return -1;
	}
	mark_hop_by_hop(m, NULL, NULL);
	h->rs_keep = llhttp_should_keep_alive(p);
	if (status == 101) {
		if (!h->rq_ws) {
			rs_fail(h, "the upstream switched protocols without an upgrade request");
			return -1;
		}
		/* Only a real WebSocket handshake opens the tunnel, whose bytes are
		 * no longer checked: an endpoint that merely answers 101 (a status
		 * echo) would otherwise open the whole host to unchecked requests. */
		if (!ws_accepted(h, m)) {
			rs_fail(h, "the upstream's 101 is not a WebSocket handshake (Upgrade: websocket and "
				   "the Sec-WebSocket-Accept for the client's key)");
			return -1;
		}
		if (h->sc && head_has(m, "sec-websocket-extensions")) {
			rs_fail(h, "the upstream's 101 names a WebSocket extension that was not offered "
				   "(the broker offers none where it scrubs secrets)");
			return -1;
		}
		rs_head_out(h, status, false);
		puts_(h, h->to_client, "Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n");
		h->status = 101;
		h->rs_sent = true;
		h->tunnel = true;
		if (h->sc) {
			h->ws_scrub = true;
			memset(&h->ws, 0, offsetof(struct ws_rx, ctl));
			ss_reset(&h->rs_ss, h->sc);
		}
		h->bytes_out += h->to_client->len - before;
		return 2;
	}
	if (status < 200) {
		/* 1 tells llhttp there is no body: a 1xx has none, whatever
		 * Content-Length or Transfer-Encoding it claims (RFC 9110 15.2). */
		if (status == 100 && h->expect_local)
			return 1; /* already answered to the client */
		/* An HTTP/1.0 client takes any response for the final one (RFC 9110 15.2). */
		if (h->rq_http10)
			return 1;
		rs_head_out(h, status, false);
		put(h, h->to_client, "\r\n", 2);
		h->bytes_out += h->to_client->len - before;
		return 1;
	}
	h->rq_ws = false; /* the upstream refused the upgrade: plain response */
	h->status = status;
	h->rs_active = true;
	h->rs_sent = true;
	nobody = h->rq_head || status == 204 || status == 304;
	h->rs_scrub = h->sc != NULL && !nobody;
	if (nobody)
		h->rs_fr = FR_NONE;
	else if ((p->flags & F_CONTENT_LENGTH) && !h->rs_scrub)
		h->rs_fr = FR_CL;
	else if (h->rq_http10)
		h->rs_fr = FR_EOF;
	else
		h->rs_fr = FR_CHUNKED;
	if (h->rs_fr == FR_EOF)
		h->rq_close = true;
	rs_head_out(h, status, nobody && status != 204);
	if (h->rs_fr == FR_CL)
		put_cl(h, h->to_client, (unsigned long long)p->content_length);
	else if (h->rs_fr == FR_CHUNKED)
		puts_(h, h->to_client, "Transfer-Encoding: chunked\r\n");
	if (h->rq_close || h->client_eof)
		puts_(h, h->to_client, "Connection: close\r\n");
	put(h, h->to_client, "\r\n", 2);
	h->bytes_out += h->to_client->len - before;
	if (h->rs_scrub)
		ss_reset(&h->rs_ss, h->sc);
	if (h->err)
		return -1;
	return nobody ? 1 : 0;
}

static int rs_on_body(llhttp_t *p, const char *at, size_t n)
{
	struct hx *h = hx_of(p);
	int r;

	if (chunk_crlf(p, &h->rs_crlf, at + n, h->feed_end)) {
		h->rs_bad = CRLF_ERR;
		return -1;
	}
	if (!h->rs_active)
		return 0;
	if (h->rs_scrub)
		r = subst_stream_feed(&h->rs_ss, at, n, rs_body_emit, NULL, h);
	else
		r = rs_body_emit(h, at, n);
	if (r)
		h->err = r;
	return r ? -1 : 0;
}

static int rs_on_message_complete(llhttp_t *p)
{
	struct hx *h = hx_of(p);

	if (!h->rs_active)
		return 0; /* a 1xx: the final response follows */
	if (h->rs_scrub && subst_stream_finish(&h->rs_ss, rs_body_emit, h))
		return -1;
	if (h->rs_fr == FR_CHUNKED) {
		put(h, h->to_client, "0\r\n\r\n", 5);
		h->bytes_out += 5;
	}
	h->rs_active = false;
	h->rs_done = true;
	audit_emit(h);
	if (!h->rs_keep) {
		*h->ev |= HX_EV_UPSTREAM_DONE;
		h->up_open = false;
	}
	if (h->rq_done) {
		exchange_end(h);
	} else {
		/* The upstream answered before the request body ended: finish
		 * the exchange by closing rather than guessing what follows. */
		h->rq_fwd = false;
		h->rq_local = true;
		h->closed = true;
		*h->ev |= HX_EV_CLOSE | HX_EV_UPSTREAM_DONE;
		h->up_open = false;
	}
	return HPE_PAUSED;
}

static const llhttp_settings_t rq_settings = {
	.on_message_begin = rq_on_message_begin,
	.on_method = rq_on_method,
	.on_url = rq_on_url,
	.on_header_field = rq_on_field,
	.on_header_value = rq_on_value,
	.on_method_complete = piece_done,
	.on_url_complete = piece_done,
	.on_header_field_complete = piece_done,
	.on_header_value_complete = piece_done,
	.on_headers_complete = rq_on_headers_complete,
	.on_body = rq_on_body,
	.on_chunk_header = rq_on_chunk_header,
	.on_message_complete = rq_on_message_complete,
};

static const llhttp_settings_t rs_settings = {
	.on_message_begin = rs_on_message_begin,
	.on_status = rs_on_status,
	.on_header_field = rs_on_field,
	.on_header_value = rs_on_value,
	.on_status_complete = piece_done,
	.on_header_field_complete = piece_done,
	.on_header_value_complete = piece_done,
	.on_headers_complete = rs_on_headers_complete,
	.on_body = rs_on_body,
	.on_message_complete = rs_on_message_complete,
};

/* ------------------------------------------------------------------ */
/* API                                                                */

struct hx *hx_new(const struct hx_env *env)
{
	struct hx *h = calloc(1, sizeof(*h));
	size_t n;

	if (!h)
		return NULL;
	h->env = *env;
	h->max_header_bytes = env->limits && env->limits->max_header_bytes ?
		env->limits->max_header_bytes : HX_DEF_MAX_HEADER_BYTES;
	h->max_headers = env->limits && env->limits->max_headers ?
		env->limits->max_headers : HX_DEF_MAX_HEADERS;
	if (h->max_headers > HX_MAX_HEADERS_CAP)
		h->max_headers = HX_MAX_HEADERS_CAP;
	h->rq.max = h->rs.max = h->max_headers;
	h->rq.hdr = calloc(h->max_headers, sizeof(*h->rq.hdr));
	h->rs.hdr = calloc(h->max_headers, sizeof(*h->rs.hdr));
	if (!h->rq.hdr || !h->rs.hdr) {
		hx_free(h);
		return NULL;
	}
	if (env->sni) {
		lower_host(h->sni, sizeof(h->sni), env->sni, strlen(env->sni), &n);
		memcpy(h->up_host, h->sni, n + 1);
		h->up_host_set = true;
	}
	llhttp_init(&h->rq_p, HTTP_REQUEST, &rq_settings);
	h->rq_p.data = h;
	llhttp_init(&h->rs_p, HTTP_RESPONSE, &rs_settings);
	h->rs_p.data = h;
	h->leak = -1;
	/* A request refused before its head began (bare LF, garbage) still gets
	 * a duration: from the connection's start, not from 0. */
	h->start_us = ev_now_us();
	return h;
}

void hx_free(struct hx *h)
{
	if (!h)
		return;
	sec_cache_drop(h);
	subst_stream_fini(&h->rq_ss);
	subst_stream_fini(&h->rs_ss);
	subst_stream_fini(&h->rq_pss);
	subst_stream_fini(&h->ws_ctl_ss);
	buf_free(&h->ws.ctl);
	buf_free(&h->ws.ctl_out);
	buf_free(&h->ws.out);
	buf_free(&h->rq.b);
	buf_free(&h->rs.b);
	free(h->rq.hdr);
	free(h->rs.hdr);
	buf_free(&h->hold);
	buf_free(&h->hold_body);
	if (h->tmp.data)
		memset(h->tmp.data, 0, h->tmp.cap);
	buf_free(&h->tmp);
	buf_free(&h->audit);
	free(h);
}

static void feed_begin(struct hx *h, const char *data, size_t len, struct buf *to_up,
		       struct buf *to_client, unsigned *ev)
{
	h->to_up = to_up;
	h->to_client = to_client;
	h->ev = ev;
	h->feed = data;
	h->feed_end = len ? data + len : data; /* NULL + 0 is UB (clang UBSan) */
	h->err = 0;
}

/*
 * llhttp takes a bare LF as a line end after the request line and as the
 * empty line that ends the head, even when built in strict mode. A proxy
 * that forwards what its upstream may frame differently is a smuggling
 * vector (RFC 9112 section 2.2 lets a recipient reject bare LF: we do).
 * Scans only head bytes, across reads. Returns 0, or -EINVAL on a bare LF
 * or a bare CR.
 */
static int head_scan(struct hx *h, const char *d, size_t n)
{
	size_t i = 0;

	/* Line by line (memchr): only the bytes around each LF matter. */
	while (i < n && !h->hs_body) {
		const char *nl = memchr(d + i, '\n', n - i);
		size_t end = nl ? (size_t)(nl - d) : n;

		if (end > i) {
			/* A CR not followed by LF (RFC 9112 2.2), even across reads:
			 * llhttp 8 ends the head at CR LF CR and any byte after it. */
			if (h->hs_prev == '\r' || memchr(d + i, '\r', end - i - 1))
				return -EINVAL;
			/* Text other than CR on this stretch: the line is not empty. */
			for (size_t j = i; j < end; j++)
				if (d[j] != '\r') {
					h->hs_eol = false;
					h->hs_any = true;
					break;
				}
			h->hs_prev = d[end - 1];
		}
		if (!nl)
			break;
		if (h->hs_prev != '\r')
			return -EINVAL;
		if (h->hs_eol && h->hs_any)
			h->hs_body = true;
		h->hs_eol = true;
		h->hs_prev = '\n';
		i = end + 1;
	}
	h->hs_len += h->hs_body ? i : n;
	return 0;
}

static void head_scan_reset(struct hx *h)
{
	h->hs_body = h->hs_eol = h->hs_any = false;
	h->hs_prev = 0;
	h->hs_len = 0;
}

static void rq_parse_error(struct hx *h, llhttp_errno_t e)
{
	const char *why = h->rq_bad ? h->rq_bad : llhttp_get_error_reason(&h->rq_p);

	if (h->rq_active && h->rq_local) {
		/* Broken in the body of a request already answered here: the
		 * client has its one response; the connection just ends. */
		close_now(h, h->ev);
		return;
	}
	if (!h->rq_active) {
		/* Audit the broken request too, as a new one (it began before
		 * llhttp saw a message start): nothing of the last request (its
		 * method, path, HEAD-ness, start time) may stand for it. */
		rq_on_message_begin(&h->rq_p);
	}
	if (h->rq_fwd && !h->rq_local) {
		/* Broken mid-body after the head went upstream (too large
		 * trailers count here too): nothing sane can follow, and no
		 * answer of ours may land inside a response already started. */
		*h->ev |= HX_EV_UPSTREAM_DONE;
		h->up_open = false;
		if (h->rs_sent) {
			set_cut(h, h->rq.too_big ? "the request's trailers exceed the header limit"
						 : why && *why ? why : llhttp_errno_name(e));
			h->closed = true;
			*h->ev |= HX_EV_CLOSE | HX_EV_ABORT;
			return;
		}
	}
	if (h->rq.too_big) {
		answer_error(h, 431, "request header fields too large",
			     "the request head exceeds the broker's limit on header size or count", true);
		return;
	}
	answer_error(h, 400, "bad request", why && *why ? why : llhttp_errno_name(e), true);
}

int hx_on_client(struct hx *h, const char *data, size_t len, size_t *consumed,
		 struct buf *to_up, struct buf *to_client, unsigned *ev)
{
	size_t off = 0;

	*consumed = 0;
	if (h->tunnel) {
		*consumed = len;
		return buf_append(to_up, data, len);
	}
	if (h->closed) {
		*consumed = len;
		return 0;
	}
	feed_begin(h, data, len, to_up, to_client, ev);
	if (h->rq_crlf && crlf_feed(&h->rq_crlf, data, data + len)) {
		h->rq_bad = CRLF_ERR;
		rq_parse_error(h, HPE_USER);
		off = len;
	}
	while (off < len && !h->closed && !h->err) {
		llhttp_errno_t e;
		size_t pos;

		if (h->rq_done && h->rq_fwd)
			break; /* one request in flight */
		if (h->rq_trailers) {
			if (!h->hs_body && head_scan(h, data + off, len - off)) {
				/* Its head may be upstream already: a broken body. */
				h->rq_bad = "bare LF or CR in the trailer section: lines must end with CRLF "
					    "(RFC 9112)";
				rq_parse_error(h, HPE_USER);
				off = len;
				break;
			}
		} else if (!h->hs_body && head_scan(h, data + off, len - off)) {
			/* Audit the broken request too, as a new one: llhttp has
			 * not begun it, so nothing of the last request (its method,
			 * path, HEAD-ness) may stand for it. */
			if (!h->rq_active)
				rq_on_message_begin(&h->rq_p);
			answer_error(h, 400, "bad request",
				     "bare LF or CR in the request head: lines must end with CRLF (RFC 9112)", true);
			off = len;
			break;
		}
		e = llhttp_execute(&h->rq_p, data + off, len - off);
		if (e == HPE_OK) {
			off = len;
			break;
		}
		pos = (size_t)(llhttp_get_error_pos(&h->rq_p) - data);
		if (e == HPE_PAUSED) {
			off = pos;
			llhttp_resume(&h->rq_p);
			continue;
		}
		if (e == HPE_PAUSED_UPGRADE) {
			off = pos;
			if (h->rq_ws && h->rq_fwd)
				break;
			llhttp_resume_after_upgrade(&h->rq_p);
			continue;
		}
		if (!h->err && !h->closed)
			rq_parse_error(h, e);
		off = len;
	}
	*consumed = h->closed ? len : off;
	h->to_up = NULL;
	return h->err;
}

int hx_on_client_eof(struct hx *h, struct buf *to_up, unsigned *ev)
{
	h->client_eof = true;
	if (h->tunnel || h->closed || !h->rq_active || !h->rq_done || !h->rq_fwd) {
		if (h->rq_active && h->rq_fwd && !h->rq_done) {
			/* Truncated request: the upstream must not take it as complete. */
			*ev |= HX_EV_UPSTREAM_DONE;
			h->up_open = false;
		}
		if (h->rq_active && !h->rq_done)
			set_cut(h, "the client closed the connection before the end of its request");
		close_now(h, ev);
	}
	/* Else the response in flight is delivered, then the connection closes. */
	return 0;
}

/*
 * WebSocket frames from an upstream that has secrets bound (RFC 6455 5.2).
 * Its payloads go through the same scrubber as its HTTP responses, so a
 * secret's value that the upstream echoes reaches the sandbox as its
 * placeholder. Lengths change, so frames are rebuilt: each read's share of a
 * data message leaves as a fragment of its own (intermediaries may
 * re-fragment a message without extensions, 5.4), and the scrubber's carry
 * joins fragments, so a value split across frames is still found. Control
 * frames (<= 125 bytes) are scrubbed whole. Extensions were not offered, so
 * RSV bits, masked or oversized control frames and a continuation without a
 * message are protocol errors: -EPROTO (the caller breaks the connection).
 */
static int ws_frame_out(struct buf *b, bool fin, uint8_t op, const char *d, size_t n)
{
	uint8_t hd[10];
	size_t k = 2;

	hd[0] = (uint8_t)((fin ? 0x80 : 0) | op);
	if (n < 126) {
		hd[1] = (uint8_t)n;
	} else if (n <= 0xffff) {
		hd[1] = 126;
		hd[2] = (uint8_t)(n >> 8);
		hd[3] = (uint8_t)n;
		k = 4;
	} else {
		hd[1] = 127;
		for (int i = 0; i < 8; i++)
			hd[2 + i] = (uint8_t)((uint64_t)n >> (56 - 8 * i));
		k = 10;
	}
	if (buf_append(b, hd, k))
		return -ENOMEM;
	return n ? buf_append(b, d, n) : 0;
}

static int ws_emit(void *ctx, const char *d, size_t n)
{
	return buf_append(ctx, d, n);
}

static int ws_header_done(struct ws_rx *w)
{
	uint64_t len = w->hdr[1] & 0x7f;

	if (w->hdr[1] & 0x80 || w->hdr[0] & 0x70)
		return -EPROTO; /* masked (servers must not) or an extension's bits */
	if (len == 126) {
		len = (uint64_t)w->hdr[2] << 8 | w->hdr[3];
	} else if (len == 127) {
		len = 0;
		for (int i = 0; i < 8; i++)
			len = len << 8 | w->hdr[2 + i];
	}
	w->fin = w->hdr[0] & 0x80;
	w->op = w->hdr[0] & 0x0f;
	w->left = len;
	w->in_frame = true;
	if (w->op & 0x8)
		return w->fin && len <= 125 ? 0 : -EPROTO;
	if (w->op == 0)
		return w->in_msg ? 0 : -EPROTO;
	if ((w->op != 1 && w->op != 2) || w->in_msg)
		return -EPROTO;
	w->in_msg = true;
	w->out_first = true;
	w->msg_op = w->op;
	return 0;
}

int hx_on_ws_upstream(struct hx *h, const char *d, size_t n, struct buf *to_client)
{
	struct ws_rx *w = &h->ws;
	int r = 0;

	if (w->dead)
		return -EPROTO;
	while (n && !r) {
		if (!w->in_frame) {
			size_t k;

			if (!w->hdr_have)
				w->hdr_need = 2;
			k = w->hdr_need - w->hdr_have;
			k = k < n ? k : n;
			memcpy(w->hdr + w->hdr_have, d, k);
			w->hdr_have += k;
			d += k;
			n -= k;
			if (w->hdr_have < w->hdr_need)
				break;
			if (w->hdr_need == 2) {
				uint8_t l7 = w->hdr[1] & 0x7f;

				w->hdr_need = 2 + (l7 == 126 ? 2 : l7 == 127 ? 8 : 0) + (w->hdr[1] & 0x80 ? 4 : 0);
				if (w->hdr_have < w->hdr_need)
					continue;
			}
			w->hdr_have = 0;
			r = ws_header_done(w);
			if (r)
				break;
			if (w->left)
				continue;
		}
		size_t k = w->left < n ? (size_t)w->left : n;

		if (w->op & 0x8) {
			r = buf_append(&w->ctl, d, k);
		} else {
			r = subst_stream_feed(&h->rs_ss, d, k, ws_emit, NULL, &w->out);
		}
		d += k;
		n -= k;
		w->left -= k;
		if (r)
			break;
		if (w->left || (!(w->op & 0x8) && !w->fin)) {
			/* This read's share of the message leaves now, as a fragment. */
			if (!(w->op & 0x8) && buf_len(&w->out)) {
				r = ws_frame_out(to_client, false, w->out_first ? w->msg_op : 0,
						 buf_head(&w->out), buf_len(&w->out));
				w->out_first = false;
				buf_consume(&w->out, buf_len(&w->out));
			}
			if (w->left)
				continue;
		}
		w->in_frame = false;
		if (w->op & 0x8) {
			struct buf *o = &w->ctl_out;
			size_t cut;

			/* The whole payload, a Close frame's 2-byte status code included:
			 * a value may begin in it. */
			buf_consume(o, buf_len(o));
			ss_reset(&h->ws_ctl_ss, h->sc);
			r = subst_stream_feed(&h->ws_ctl_ss, buf_head(&w->ctl), buf_len(&w->ctl), ws_emit, NULL, o);
			if (!r)
				r = subst_stream_finish(&h->ws_ctl_ss, ws_emit, o);
			/* A status code the scrubber changed is no code: 1008 (policy violation). */
			if (!r && w->op == 8 && buf_len(&w->ctl) >= 2 && buf_len(o) >= 2 &&
			    memcmp(buf_head(o), buf_head(&w->ctl), 2)) {
				o->data[o->off] = 0x03;
				o->data[o->off + 1] = (char)0xf0;
			}
			/* A placeholder may be longer than its value: a control frame
			 * keeps its 125-byte limit, cut (never the value, which is gone);
			 * a Close reason at a UTF-8 character's start. */
			cut = buf_len(o) < 125 ? buf_len(o) : 125;
			if (w->op == 8 && cut < buf_len(o))
				while (cut > 2 && (buf_head(o)[cut] & 0xc0) == 0x80)
					cut--;
			if (!r)
				r = ws_frame_out(to_client, true, w->op, buf_head(o), cut);
			buf_consume(o, buf_len(o));
			buf_consume(&w->ctl, buf_len(&w->ctl));
			continue;
		}
		if (!w->fin)
			continue; /* the message goes on in a continuation frame */

		r = subst_stream_finish(&h->rs_ss, ws_emit, &w->out);
		if (r)
			break;
		r = ws_frame_out(to_client, true, w->out_first ? w->msg_op : 0, buf_head(&w->out),
				 buf_len(&w->out));
		buf_consume(&w->out, buf_len(&w->out));
		w->in_msg = false;
		ss_reset(&h->rs_ss, h->sc);
	}
	if (r == -EPROTO)
		w->dead = true;
	return r;
}

int hx_on_upstream(struct hx *h, const char *data, size_t len, struct buf *to_client, unsigned *ev)
{
	size_t off = 0;

	if (h->tunnel) {
		int r = h->ws_scrub ? hx_on_ws_upstream(h, data, len, to_client)
				    : buf_append(to_client, data, len);

		if (r == -EPROTO) {
			h->closed = true;
			*ev |= HX_EV_CLOSE | HX_EV_ABORT;
			return 0;
		}
		return r;
	}
	if (h->closed) {
		/* Bytes after the end: this upstream is out of step, never pooled. */
		if (len)
			*ev |= HX_EV_UPSTREAM_DONE;
		return 0;
	}
	feed_begin(h, data, len, NULL, to_client, ev);
	if (h->rs_crlf && crlf_feed(&h->rs_crlf, data, data + len)) {
		rs_fail(h, "malformed response from the upstream: a chunk's data is not followed by CRLF");
		return h->err;
	}
	while (off < len && !h->err && !h->closed) {
		llhttp_errno_t e;
		size_t pos;

		if (!h->rq_fwd || h->rs_done || h->holding) {
			/* Bytes nobody asked for (while a request is held, nothing of it
			 * left yet: an idle upstream's 408, say): this connection cannot
			 * be trusted. A held request goes to a new one. */
			*ev |= HX_EV_UPSTREAM_DONE;
			h->up_open = false;
			break;
		}
		e = llhttp_execute(&h->rs_p, data + off, len - off);
		if (e == HPE_OK)
			break;
		pos = (size_t)(llhttp_get_error_pos(&h->rs_p) - data);
		if (e == HPE_PAUSED) {
			off = pos;
			llhttp_resume(&h->rs_p);
			continue;
		}
		if (e == HPE_PAUSED_UPGRADE && h->tunnel) {
			off = pos;
			h->rq_active = false; /* its audit line waits for the tunnel's end (hx_end) */
			h->rq_fwd = false;
			*ev |= HX_EV_TUNNEL | HX_EV_RESUME_CLIENT;
			size_t before = to_client->len;

			if (h->ws_scrub) {
				int r = hx_on_ws_upstream(h, data + off, len - off, to_client);

				if (r == -EPROTO) {
					h->closed = true;
					*ev |= HX_EV_CLOSE | HX_EV_ABORT;
				} else if (r) {
					h->err = r;
				}
			} else if (buf_append(to_client, data + off, len - off)) {
				h->err = -ENOMEM;
			}
			/* The tunnel's first bytes, read with the 101. */
			h->bytes_out += to_client->len - before;
			break;
		}
		if (!h->err && !h->closed) {
			const char *why = h->rs_bad ? h->rs_bad : llhttp_get_error_reason(&h->rs_p);
			char reason[200];

			snprintf(reason, sizeof(reason), "malformed response from the upstream: %s",
				 why && *why ? why : llhttp_errno_name(e));
			if (h->rs.too_big)
				snprintf(reason, sizeof(reason), "the upstream's response head exceeds the limit");
			rs_fail(h, reason);
		}
		break;
	}
	return h->err;
}

int hx_on_upstream_eof(struct hx *h, struct buf *to_client, unsigned *ev)
{
	unsigned dummy = 0;

	if (h->tunnel) {
		h->closed = true;
		*ev |= HX_EV_CLOSE;
		return 0;
	}
	*ev |= HX_EV_UPSTREAM_DONE;
	h->up_open = false;
	/* Held (its body still being checked): nothing of it went to this
	 * connection, so an idle one closing is no failure; it goes to a new one. */
	if (h->closed || !h->rq_fwd || h->rs_done || h->holding)
		return 0;
	feed_begin(h, NULL, 0, NULL, to_client, ev ? ev : &dummy);
	if (h->rs_active && llhttp_message_needs_eof(&h->rs_p)) {
		llhttp_errno_t e = llhttp_finish(&h->rs_p);

		if (e == HPE_OK || e == HPE_PAUSED)
			return h->err;
	}
	rs_fail(h, "the upstream closed the connection before the response was complete");
	return h->err;
}

int hx_on_upstream_error(struct hx *h, int status, const char *reason, struct buf *to_client, unsigned *ev)
{
	*ev |= HX_EV_UPSTREAM_DONE;
	h->up_open = false;
	if (h->tunnel || h->closed || h->holding)
		return 0;
	feed_begin(h, NULL, 0, NULL, to_client, ev);
	if (!h->rq_fwd || h->rs_done)
		return 0;
	if (h->rs_sent) {
		/* Part of the response went out: a clean close would pass the cut
		 * for the end of a body that runs to the connection's close. */
		set_cut(h, reason ? reason : "upstream failed");
		h->closed = true;
		*ev |= HX_EV_CLOSE | HX_EV_ABORT;
		return 0;
	}
	if (status != 502 && status != 504)
		status = 502;
	h->rq_fwd = false;
	answer_error(h, status, status == 504 ? "upstream timeout" : "upstream unreachable",
		     reason ? reason : "upstream failed", !h->rq_done);
	if (h->rq_done && !h->closed)
		exchange_end(h);
	return h->err;
}

int hx_on_timeout(struct hx *h, struct buf *to_client, unsigned *ev)
{
	if (h->tunnel || h->closed) {
		*ev |= HX_EV_CLOSE;
		return 0;
	}
	feed_begin(h, NULL, 0, NULL, to_client, ev);
	if (h->rq_fwd && h->rq_done)
		return hx_on_upstream_error(h, 504, "the upstream did not answer in time", to_client, ev);
	/* Not after a local answer (a refusal whose body is being drained):
	 * its client has its response, and one request gets one. */
	if (h->rq_active && !h->rq_local && !(h->rq_fwd && h->rs_sent)) {
		h->rq_fwd = false;
		answer_error(h, 408, "request timeout", "the request was not received in time", true);
	} else if (h->rq_active) {
		set_cut(h, "the rest of the request was not received in time");
	}
	close_now(h, ev);
	return h->err;
}

size_t hx_upstream_passthrough(const struct hx *h)
{
	/* Exactly the case where rs_on_body forwards the bytes unchanged:
	 * an unscrubbed Content-Length body with bytes still to come. */
	if (h->tunnel || h->closed || !h->rq_fwd || h->rs_done || !h->rs_active ||
	    h->rs_scrub || h->rs_fr != FR_CL)
		return 0;
	if (llhttp_get_errno(&h->rs_p) != HPE_OK || !(h->rs_p.flags & F_CONTENT_LENGTH))
		return 0;
	return h->rs_p.content_length > SIZE_MAX ? SIZE_MAX : (size_t)h->rs_p.content_length;
}

int hx_on_upstream_inplace(struct hx *h, struct buf *to_client, size_t n, unsigned *ev)
{
	char *tail;
	int r;

	if (!n)
		return 0;
	if (n > hx_upstream_passthrough(h) || to_client->cap - to_client->off - to_client->len < n)
		return -EINVAL;
	tail = to_client->data + to_client->off + to_client->len;
	h->inplace = tail;
	r = hx_on_upstream(h, tail, n, to_client, ev);
	h->inplace = NULL;
	return r;
}

const char *hx_upstream_host(const struct hx *h)
{
	return h->up_host_set ? h->up_host : NULL;
}

bool hx_ws_scrubbing(const struct hx *h)
{
	return h->tunnel && h->ws_scrub;
}

bool hx_request_idempotent(const struct hx *h)
{
	/* Not h->alt_method: trailers may have moved the head buffer since. */
	return method_idempotent(h->method, h->method_len) && !h->alt_nonidem;
}

bool hx_rule_names_host(const struct hx *h)
{
	return h->rule_names_host;
}

void hx_set_upstream_internal(struct hx *h, bool internal)
{
	h->up_internal = internal;
}

uint64_t hx_requests(const struct hx *h)
{
	return h->n_requests;
}

bool hx_idle(const struct hx *h)
{
	return !h->rq_active && !h->tunnel;
}
