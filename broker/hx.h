/* SPDX-License-Identifier: MIT */
/*
 * hx: the broker's HTTP/1.1 engine, sans I/O. One struct hx per client
 * connection. The connection code (conn.c) feeds it the decrypted bytes it
 * reads from the client and from the upstream; hx parses them with llhttp,
 * applies the policy, substitutes secrets, and appends what must be written to
 * the output buffers. It never touches a socket, so every HTTP behaviour is
 * testable with plain byte strings.
 *
 * Flow: one request at a time. While a request is in flight (sent upstream,
 * response not finished) hx stops consuming client bytes (pipelined requests
 * stay in the caller's buffer; *consumed tells how much was taken), and the
 * caller feeds them again after the response completes (HX_EV_RESUME_CLIENT).
 *
 * Owner of this header: broker/ (hx.c implements it, conn.c calls it).
 */
#ifndef SLUICE_HX_H
#define SLUICE_HX_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "buf.h"
#include "policy.h"

struct hx;

struct hx_limits {
	size_t max_header_bytes;   /* request or response head; over it: 431 (request) / 502 (response) */
	size_t max_headers;        /* header count; over it: 431 */
};

/* One line of the audit log, filled by hx when a request finishes (or is refused). */
struct hx_audit {
	const char *method;  size_t method_len;
	const char *host;    size_t host_len;
	const char *target;  size_t target_len;  /* request-target as received; never contains a secret value */
	int status;                               /* what the sandbox got */
	const char *rule;                         /* policy_verdict.why, or the reason of a local refusal */
	const char *secrets;                      /* comma-separated names substituted or refused, or NULL */
	uint64_t bytes_in;                        /* request bytes from the sandbox (head + body) */
	uint64_t bytes_out;                       /* response bytes to the sandbox */
	uint64_t start_us, end_us;                /* CLOCK_MONOTONIC, microseconds */
	const char *cut;                          /* why the exchange ended before its end, or NULL */
};

struct hx_env {
	const char *sni;          /* TLS server name from the ClientHello; NULL on plain HTTP */
	uint16_t port;            /* original destination port */
	bool client_tls;          /* true: secrets may be substituted (upstream is verified TLS) */
	const struct hx_limits *limits;
	/* Returns a new reference to the policy in force now; hx takes it per
	 * request and drops it when the request is done (atomic reload). */
	struct policy *(*policy_get)(void *ctx);
	void (*audit)(void *ctx, const struct hx_audit *rec);
	void *ctx;
};

enum hx_event {
	HX_EV_OPEN_UPSTREAM  = 1u << 0, /* dial hx_upstream_host():env.port now (first allowed request) */
	HX_EV_CLOSE          = 1u << 1, /* flush to_client, then close both sides */
	HX_EV_TUNNEL         = 1u << 2, /* upgrade done (upstream's 101 forwarded): raw bytes both ways from now on */
	HX_EV_RESUME_CLIENT  = 1u << 3, /* response finished: feed the buffered client bytes again */
	HX_EV_UPSTREAM_DONE  = 1u << 4, /* upstream connection must not be reused (close it; reopen on next request) */
	HX_EV_ABORT          = 1u << 5, /* with CLOSE: the response was cut short: the client must see a broken
					 * connection (no close_notify, a reset), never a clean end */
};

/* Returns NULL on ENOMEM. env is copied; the strings it points to must outlive hx. */
struct hx *hx_new(const struct hx_env *env);
void hx_free(struct hx *h);  /* NULL-safe */

/* conn closed the upstream connection between requests for a reason of its
 * own (the last request's body had not all left): the next request asks for
 * a new one (HX_EV_OPEN_UPSTREAM). */
void hx_upstream_gone(struct hx *h);

/* Every request on this connection gets 503 naming reason (which must
 * outlive hx), then the connection closes: a broker over its connection
 * limit answers rather than dropping the connection unexplained. */
void hx_refuse_all(struct hx *h, const char *reason);

/* The connection is going away (why: the broker's reason). Writes the audit
 * line of a request it cut short (with why, unless hx knew better), and a
 * WebSocket tunnel's, whose bytes (tunnel_in from the sandbox, tunnel_out to
 * it, after the 101) only the caller counted. Call once, before hx_free. */
void hx_end(struct hx *h, const char *why, uint64_t tunnel_in, uint64_t tunnel_out);

/* Bytes from the client. Appends to to_up (toward the upstream) and/or to_client
 * (local answers: 400, 403, 421, 431...). Sets *consumed to the bytes taken and
 * ORs HX_EV_* into *ev. Returns 0, or -errno for an internal failure (ENOMEM)
 * after which the caller closes the connection. */
int hx_on_client(struct hx *h, const char *data, size_t len, size_t *consumed,
		 struct buf *to_up, struct buf *to_client, unsigned *ev);
/* The client closed its write side. */
int hx_on_client_eof(struct hx *h, struct buf *to_up, unsigned *ev);

/* Bytes from the upstream (always all consumed). */
int hx_on_upstream(struct hx *h, const char *data, size_t len,
		   struct buf *to_client, unsigned *ev);
int hx_on_upstream_eof(struct hx *h, struct buf *to_client, unsigned *ev);
/* The upstream could not be reached or failed: status 502 (connect, TLS
 * verification: reason says which) or 504 (timeout). Answers the request in
 * flight, if any, with a JSON error naming the reason. */
int hx_on_upstream_error(struct hx *h, int status, const char *reason,
			 struct buf *to_client, unsigned *ev);
/* The client sat too long in a request head (slowloris) or body: answers 408. */
int hx_on_timeout(struct hx *h, struct buf *to_client, unsigned *ev);

/*
 * Zero-copy response bodies. While a response body goes to the sandbox byte
 * for byte (Content-Length framing, no secret to scrub on this connection),
 * the caller may read the next upstream bytes straight into to_client's tail
 * (buf_reserve, not committed) instead of a scratch buffer, and pass them to
 * hx_on_upstream_inplace, which commits them in place: no copy.
 * hx_upstream_passthrough returns how many bytes may be read that way now
 * (at most the rest of the body: read no more than that), or 0 when the next
 * bytes must go through hx_on_upstream. Ask again before every read.
 */
size_t hx_upstream_passthrough(const struct hx *h);
/* n (<= hx_upstream_passthrough()) bytes sit uncommitted at to_client's tail:
 * same contract as hx_on_upstream (events, -errno), minus the copy. -EINVAL if
 * n is more than hx_upstream_passthrough() allowed (the caller then closes). */
int hx_on_upstream_inplace(struct hx *h, struct buf *to_client, size_t n, unsigned *ev);

/* A WebSocket tunnel whose upstream has secrets bound: its bytes toward the
 * client go through hx_on_ws_upstream (frames rebuilt with scrubbed payloads),
 * never straight to the client. */
bool hx_ws_scrubbing(const struct hx *h);
/* Tunnel bytes from such an upstream. 0, -ENOMEM, or -EPROTO for a frame
 * RFC 6455 forbids here (the caller breaks the connection). */
int hx_on_ws_upstream(struct hx *h, const char *data, size_t len, struct buf *to_client);

/* Host to dial (lower-case, no port): the SNI on TLS, the Host header on plain HTTP. */
const char *hx_upstream_host(const struct hx *h);
/* The request in flight may be sent twice (RFC 9110 9.2.2: GET, HEAD,
 * OPTIONS, TRACE, PUT, DELETE; a method override header counts too). */
bool hx_request_idempotent(const struct hx *h);
/* True when the rule that allowed the current request names its host exactly:
 * only then may its upstream be inside this host (policy_rule_names_host). */
bool hx_rule_names_host(const struct hx *h);
/* conn tells hx that the upstream it dialled is an internal address: later
 * requests on that connection need a rule naming the host too, else 502. */
void hx_set_upstream_internal(struct hx *h, bool internal);
/* True between requests (for idle vs. header timeouts). */
bool hx_idle(const struct hx *h);
/* Requests begun on this connection so far (the idle timer restarts when it moves). */
uint64_t hx_requests(const struct hx *h);

#endif /* SLUICE_HX_H */
