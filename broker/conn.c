// SPDX-License-Identifier: MIT
/*
 * Connections: accept, protocol sniffing, TLS toward the sandbox, feeding hx,
 * dialling and pooling upstreams, backpressure, timeouts, close.
 *
 * Every fd is registered once, edge-triggered, for both directions. Each side
 * remembers whether its last read or write hit EAGAIN / WANT_*; any event on
 * the fd clears both (a spurious retry costs one failed call), and conn_run()
 * then does all the work it can until nothing moves. This keeps OpenSSL's
 * "a read may need a write" cases simple and correct.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <openssl/err.h>
#include <openssl/x509.h>
#include "broker.h"
#include "log.h"

#define CIN_MAX   (64 * 1024)   /* client bytes hx has not taken yet */
#define OUT_MAX   (256 * 1024)  /* per output buffer: stop reading the other side above it */
#define READ_CHUNK 16384
/* conn_run rounds before other connections get a turn. */
#define CONN_RUN_ROUNDS 64
/* A bulk response is read from upstream until this much waits for the client,
 * then encrypted in one SSL_write and sent in one send(): fewer syscalls and
 * wake-ups of the reader than one record at a time. */
#define UP_BATCH  (128 * 1024)
/* Plaintext per SSL_write: bounds the ciphertext the BIO collects before a send. */
#define TLS_WRITE_MAX (128 * 1024)
/* Request bytes kept for one retry on a fresh upstream connection. */
#define REPLAY_MAX (64 * 1024)
/* A connection a proto: tcp rule allows that sends nothing this long is taken
 * for a server-speaks-first protocol (SSH, SMTP, MySQL) and tunnelled. */
#define FIRST_BYTES_MS 300
/* Names remembered for one address, checked against the tcp rules. */
#define RAW_NAMES 8
/* Longest method token taken for the start of a request line (see request_line_start). */
#define RAW_METHOD_MAX 24

/* A raw TCP connection a proto: tcp rule allows (allocated only for those). */
struct rawtcp {
	char host[DNS_SEEN_NAME];      /* the name (or address literal) the rule allowed */
	char why[256];                 /* the verdict, for the audit line */
	struct rs_addr addr;           /* the original destination: dialled as is */
	uint64_t start_us, bytes_in, bytes_out;
	int status;                    /* for the audit line: 200 once connected, 502 dial failed */
	bool started;                  /* the tunnel was opened (else: classified as TLS/HTTP) */
	bool cl_shut, up_shut;         /* write side shut after the other side's EOF */
};

/* An idle upstream connection kept for reuse. */
struct upconn {
	struct ev_io io;
	struct upconn *next, *prev;
	struct ev_tnode timer;
	struct broker *b;
	SSL *ssl;
	struct rs_addr addr;
	uint16_t port;
	bool tls;
	bool dead;                     /* closed; memory freed before sleep */
	char host[256];
};

static void conn_run(struct conn *c);
static bool up_read(struct conn *c);
static void client_io_cb(struct ev_io *io, uint32_t events);
static void up_io_cb(struct ev_io *io, uint32_t events);

static void conn_close(struct conn *c, const char *reason)
{
	if (c->closing)
		return;
	c->closing = true;
	c->st = CS_CLOSING;
	/* Copied: a reason may be built on the caller's stack (up_fail). */
	snprintf(c->close_reason, sizeof(c->close_reason), "%s", reason ? reason : "");
	c->next_close = c->b->close_list;
	c->b->close_list = c;
}

/* ---- upstream pool ---- */

static void pool_unlink(struct broker *b, struct upconn *u)
{
	if (u->prev)
		u->prev->next = u->next;
	else
		b->pool = u->next;
	if (u->next)
		u->next->prev = u->prev;
	u->next = u->prev = NULL;
	b->n_pool--;
	ev_timer_stop(&u->timer);
	/* No EPOLL_CTL_DEL: close() or the next owner's EPOLL_CTL_MOD takes the fd. */
}

static void upconn_free(struct upconn *u)
{
	if (u->ssl) {
		ERR_clear_error();
		/* Freed without a shutdown, OpenSSL marks the session unresumable. */
		SSL_set_shutdown(u->ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
		SSL_free(u->ssl);
	}
	if (u->io.fd >= 0)
		close(u->io.fd);
	u->ssl = NULL;
	u->io.fd = -1;
	/* An event fetched in this epoll batch may still name u: free it later. */
	u->dead = true;
	u->next = u->b->pool_dead;
	u->b->pool_dead = u;
}

/* An idle pooled connection got an event: the server closed it or sent
 * something unasked. Either way it is no longer reusable. */
static void pool_io_cb(struct ev_io *io, uint32_t events)
{
	struct upconn *u = container_of(io, struct upconn, io);

	if (u->dead)
		return;
	pool_unlink(u->b, u);
	upconn_free(u);
}

static void pool_expire(struct ev_tnode *n)
{
	struct upconn *u = container_of(n, struct upconn, timer);

	pool_unlink(u->b, u);
	upconn_free(u);
}

/* Moves c's healthy idle upstream into the pool. */
static void pool_put(struct conn *c)
{
	struct broker *b = c->b;
	struct upconn *u;

	if (c->ust != US_READY || c->up_no_reuse || c->tunnel || c->up.eof || c->up.hup || buf_len(&c->uout) ||
	    (c->up.ssl && (tls_pending_out(c->up.ssl) || SSL_has_pending(c->up.ssl))) ||
	    !c->hx || !hx_idle(c->hx) || b->draining || c->addr_i >= c->addrs.n || !b->cfg->pool_max)
		return;
	/* The timer list is in put order: its head is the connection idle longest. */
	if (b->n_pool >= b->cfg->pool_max)
		pool_expire(b->t_pool.head.next);
	u = calloc(1, sizeof(*u));
	if (!u)
		return;
	u->b = b;
	u->io.fd = c->up.io.fd;
	u->io.cb = pool_io_cb;
	u->ssl = c->up.ssl;
	u->addr = c->addrs.a[c->addr_i];
	u->port = c->port;
	u->tls = c->tls;
	memcpy(u->host, c->up_host, sizeof(u->host));
	/* One EPOLL_CTL_MOD moves the fd's events to u (no DEL + ADD). */
	if (ev_mod(&b->loop, &u->io, EPOLLIN | EPOLLRDHUP | EPOLLET)) {
		free(u);
		return;
	}
	c->up.io.fd = -1;
	ev_forget(&b->loop, &c->up.io); /* the fd's events are u's now */
	c->up.ssl = NULL;
	c->ust = US_NONE;
	if (u->ssl)
		(void)SSL_free_buffers(u->ssl); /* idle in the pool: no record buffers */
	u->next = b->pool;
	if (b->pool)
		b->pool->prev = u;
	b->pool = u;
	b->n_pool++;
	ev_timer_arm(&b->loop, &b->t_pool, &u->timer);
}

static struct upconn *pool_take(struct broker *b, const struct rs_addr *a, uint16_t port,
				bool tls, const char *host)
{
	struct upconn *u;
	char probe;

	for (u = b->pool; u; u = u->next) {
		if (u->port != port || u->tls != tls || u->addr.family != a->family ||
		    memcmp(u->addr.addr, a->addr, 16) || strcmp(u->host, host))
			continue;
		pool_unlink(b, u);
		/* A server may have closed it since the last event was seen. */
		if ((u->ssl && SSL_has_pending(u->ssl)) ||
		    recv(u->io.fd, &probe, 1, MSG_PEEK | MSG_DONTWAIT) != -1 || errno != EAGAIN) {
			upconn_free(u);
			return NULL;
		}
		return u;
	}
	return NULL;
}

/* ---- helpers ---- */

/* SSL_get_error() needs an empty error queue before each call; every failing
 * path empties it (tls_err_text), so it is almost always empty already, and
 * peeking costs a tenth of ERR_clear_error()'s walk over all its slots. */
static inline void err_queue_clear(void)
{
	if (ERR_peek_error())
		ERR_clear_error();
}

/* Sockets are registered for EPOLLIN only: EPOLLOUT edges come after every
 * ACK and would wake the loop for nothing. A write that finds the socket
 * full asks for EPOLLOUT here, once per registration (edge-triggered: the
 * MOD itself reports the socket if it became writable meanwhile). */
static void side_want_out(struct side *s)
{
	s->wr_blocked = true;
	if (s->out_armed || !s->loop || s->io.fd < 0)
		return;
	if (!ev_mod(s->loop, &s->io, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET))
		s->out_armed = true;
}

/* Sockets come non-blocking from accept4()/socket() flags: no fcntl round trips. */
static void set_nodelay(int fd)
{
	int one = 1;

	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static void handle_events(struct conn *c, unsigned ev);

static void up_close(struct conn *c)
{
	if (c->rjob) {
		resolver_cancel(c->rjob);
		c->rjob = NULL;
	}
	if (c->up.io.fd >= 0) {
		close(c->up.io.fd); /* leaves the epoll set with it: no EPOLL_CTL_DEL */
		c->up.io.fd = -1;
		ev_forget(&c->b->loop, &c->up.io); /* a redial reuses c->up.io */
	}
	if (c->up.ssl) {
		ERR_clear_error();
		/* A healthy connection's session stays resumable for the next dial. */
		if (c->ust == US_READY)
			SSL_set_shutdown(c->up.ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
		SSL_free(c->up.ssl);
		c->up.ssl = NULL;
	}
	c->up.eof = c->up.rd_blocked = c->up.wr_blocked = c->up.hup = false;
	c->ust = US_NONE;
	c->up_eof_fed = false;
	c->up_no_reuse = false;
	c->up_internal = false;
	buf_consume(&c->uout, buf_len(&c->uout));
}

static void up_fail(struct conn *c, int status, const char *reason)
{
	unsigned ev = 0;

	pr_info("upstream %s:%u: %s", c->up_host, c->port, reason);
	up_close(c);
	if (!c->hx) {
		/* Raw TCP has no way to say why: the client sees the connection close. */
		if (c->raw && c->raw->status != 200)
			c->raw->status = status;
		conn_close(c, reason);
		return;
	}
	if (hx_on_upstream_error(c->hx, status, reason, &c->cout, &ev))
		conn_close(c, "out of memory");
	else
		handle_events(c, ev & ~HX_EV_UPSTREAM_DONE);
}

static void up_dial_next(struct conn *c);

static void up_ready(struct conn *c)
{
	c->ust = US_READY;
	if (c->raw)
		c->raw->status = 200;
}

static void up_dial_next(struct conn *c)
{
	struct broker *b = c->b;
	struct sockaddr_storage ss;
	socklen_t sl;
	int fd;

	for (; c->addr_i < c->addrs.n; c->addr_i++) {
		const struct rs_addr *a = &c->addrs.a[c->addr_i];
		struct upconn *u = c->skip_pool ? NULL : pool_take(b, a, c->port, c->tls, c->up_host);

		if (u) {
			c->up.io.fd = u->io.fd;
			c->up.ssl = u->ssl;
			u->io.fd = -1;
			u->ssl = NULL;
			upconn_free(u);
			c->up.io.cb = up_io_cb;
			c->up.rd_blocked = c->up.wr_blocked = c->up.hup = c->up.eof = false;
			c->up.out_armed = false;
			c->up_used = c->replay_ok = true;
			buf_consume(&c->replay, buf_len(&c->replay));
			if (ev_mod(&b->loop, &c->up.io, EPOLLIN | EPOLLRDHUP | EPOLLET)) {
				up_fail(c, 502, "couldn't register the upstream socket");
				return;
			}
			up_ready(c);
			return;
		}
		memset(&ss, 0, sizeof(ss));
		if (a->family == AF_INET) {
			struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;

			s4->sin_family = AF_INET;
			s4->sin_port = htons(c->port);
			memcpy(&s4->sin_addr, a->addr, 4);
			sl = sizeof(*s4);
		} else {
			struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;

			s6->sin6_family = AF_INET6;
			s6->sin6_port = htons(c->port);
			memcpy(&s6->sin6_addr, a->addr, 16);
			sl = sizeof(*s6);
		}
		fd = socket(a->family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0)
			continue;
		set_nodelay(fd);
		if (connect(fd, (struct sockaddr *)&ss, sl) && errno != EINPROGRESS) {
			close(fd);
			continue;
		}
		c->up.io.fd = fd;
		c->up.io.cb = up_io_cb;
		c->up.rd_blocked = c->up.wr_blocked = false;
		if (ev_add(&b->loop, &c->up.io, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET)) {
			close(fd);
			c->up.io.fd = -1;
			continue;
		}
		c->ust = US_CONNECTING;
		c->up.out_armed = true;
		c->up.wr_blocked = true; /* wait for the connect to finish */
		c->skip_pool = false;
		c->up_used = c->replay_ok = false;
		return;
	}
	{
		char reason[400];

		snprintf(reason, sizeof(reason), "couldn't connect to %s port %u", c->up_host, c->port);
		up_fail(c, 502, reason);
	}
}

/* The addresses are known: dial, or fail the request. The caller runs the
 * connection afterwards (conn_run), never this: from up_open, inside
 * conn_run, a dial that fails at once would otherwise recurse once per
 * pipelined request (20,000 HEADs overflowed the stack). */
static void up_resolved_now(struct conn *c, const struct rs_result *r)
{
	struct broker *b = c->b;
	char reason[400];
	size_t i, n = 0;

	if (r->err) {
		snprintf(reason, sizeof(reason), "couldn't resolve %s: %s", c->up_host,
			 r->err == -ENOENT ? "no such name" : "temporary failure");
		up_fail(c, 502, reason);
		return;
	}
	c->addrs = *r;
	/* A name the operator did not pin may lead inside this host or to
	 * link-local services (cloud metadata) only when the rule that allowed
	 * this request names it exactly: else DNS, or a broad rule, would be a
	 * way around the rules. */
	bool named = c->hx && hx_rule_names_host(c->hx);

	c->up_internal = false;
	for (i = 0; i < r->n; i++) {
		bool internal = !r->pinned && resolver_addr_internal(b->res, &r->a[i]);

		if (internal && !named)
			continue;
		c->up_internal |= internal;
		c->addrs.a[n++] = r->a[i];
	}
	c->addrs.n = n;
	if (c->hx)
		hx_set_upstream_internal(c->hx, c->up_internal);
	c->addr_i = 0;
	if (!n) {
		snprintf(reason, sizeof(reason), "%s resolves to an internal address (loopback, link-local "
			 "or this host); refused: name it in an allow rule or pin it with --resolve", c->up_host);
		up_fail(c, 502, reason);
		return;
	}
	up_dial_next(c);
}

/* The resolver's answer, from the loop (asynchronous lookups only). */
static void up_resolved(void *ctx, const struct rs_result *r)
{
	struct conn *c = ctx;

	c->rjob = NULL;
	if (c->magic != CONN_MAGIC || c->closing)
		return;
	up_resolved_now(c, r);
	conn_run(c);
}

static void up_open(struct conn *c)
{
	struct broker *b = c->b;
	const char *host = hx_upstream_host(c->hx);
	struct rs_result r;

	if (!host || !*host) {
		up_fail(c, 502, "no upstream host");
		return;
	}
	if (c->ust != US_NONE) {
		/* Not one hx gave up on: bytes it could not place (a response
		 * nobody asked for) would be read as this request's answer. */
		if (!strcmp(host, c->up_host) && !c->up_no_reuse) {
			/* Kept alive to an internal address for a request whose rule
			 * named the host: the next request needs such a rule too. */
			if (c->up_internal && !hx_rule_names_host(c->hx)) {
				up_fail(c, 502, "this upstream is an internal address (loopback, link-local or "
					"this host), which only a rule naming the host exactly may reach; refused");
				return;
			}
			return;
		}
		/* Plain HTTP keep-alive to another Host: a new upstream. The
		 * request hx just wrote goes to it, not away with the old one. */
		{
			struct buf req = c->uout;

			memset(&c->uout, 0, sizeof(c->uout));
			up_close(c);
			buf_free(&c->uout);
			/* Only this request's bytes: anything before them was for
			 * the old connection. */
			buf_consume(&req, c->uout_mark <= buf_len(&req) ? c->uout_mark : buf_len(&req));
			c->uout = req;
		}
	}
	snprintf(c->up_host, sizeof(c->up_host), "%s", host);
	c->ust = US_RESOLVING;
	if (resolver_lookup_fast(b->res, host, &r) == 0) {
		up_resolved_now(c, &r);
		return;
	}
	c->rjob = resolver_submit(b->res, host, up_resolved, c);
	if (!c->rjob)
		up_fail(c, 502, "out of memory");
}

/* The connection ends once what is queued for the client has left. */
static void set_want_close(struct conn *c)
{
	c->want_close = true;
	c->cl.out_held = false; /* no response may come to carry a held ticket */
}

static void handle_events(struct conn *c, unsigned ev)
{
	if (ev & HX_EV_UPSTREAM_DONE)
		c->up_no_reuse = true;
	if (ev & HX_EV_OPEN_UPSTREAM)
		c->rq_sent = true;
	if (ev & HX_EV_RESUME_CLIENT) {
		/* The upstream answered before the whole request body left (an
		 * early 401 or 413): the rest waits in uout. It belongs to that
		 * connection, mid-body, and never to another: sent on a new one it
		 * would be read as a request of its own, which no rule checked. */
		if (buf_len(&c->uout) && !c->tunnel && !(ev & HX_EV_TUNNEL))
			c->up_no_reuse = true;
		c->hx_paused = false;
		c->rq_sent = false;
		c->retried = false;
		/* The next request on this upstream may meet a server that closed it meanwhile. */
		c->up_used = c->replay_ok = c->ust == US_READY;
		buf_consume(&c->replay, buf_len(&c->replay));
		if (c->up_no_reuse && c->ust != US_NONE) {
			up_close(c);
			hx_upstream_gone(c->hx); /* the next request asks for a new one */
		}
	}
	if ((ev & HX_EV_TUNNEL) && !c->tunnel) {
		c->tunnel = true;
		/* What the client sent after its upgrade request, before the 101
		 * (a first frame sent optimistically), goes first. */
		if (buf_len(&c->cin)) {
			if (buf_append(&c->uout, buf_head(&c->cin), buf_len(&c->cin))) {
				conn_close(c, "out of memory");
				return;
			}
			c->tun_in += buf_len(&c->cin);
			buf_consume(&c->cin, buf_len(&c->cin));
		}
	}
	if (ev & HX_EV_CLOSE)
		set_want_close(c);
	if (ev & HX_EV_ABORT)
		c->abort = true;
	if ((ev & HX_EV_OPEN_UPSTREAM) && !c->want_close)
		up_open(c);
}

/* ---- I/O primitives: return >0 bytes, 0 EOF, -EAGAIN (blocked flag set), -EIO ---- */

static ssize_t side_read(struct side *s, char *p, size_t n, const char **why)
{
	if (s->ssl) {
		size_t got = 0;
		int rc, err;

		err_queue_clear();
		errno = 0;
		rc = SSL_read_ex(s->ssl, p, n, &got);
		if (rc == 1) {
			/* Socket emptied and nothing buffered: the next bytes bring an
			 * event, so skip the read that would only say EAGAIN. */
			if (!s->hup && tls_read_drained(s->ssl) && !SSL_has_pending(s->ssl))
				s->rd_blocked = true;
			return (ssize_t)got;
		}
		err = SSL_get_error(s->ssl, rc);
		switch (err) {
		case SSL_ERROR_WANT_READ:
			s->rd_blocked = true;
			return -EAGAIN;
		case SSL_ERROR_WANT_WRITE:
			s->rd_blocked = true;
			side_want_out(s);
			return -EAGAIN;
		case SSL_ERROR_ZERO_RETURN:
			return 0;
		case SSL_ERROR_SYSCALL:
			/* A reset (errno set by recv) is an error, never the end of a
			 * body that runs to the close; a bare EOF (no errno) is an EOF
			 * and framing (hx) decides. OpenSSL 3 reports an EOF without
			 * close_notify as SSL_ERROR_SSL: the default case. */
			if (!ERR_peek_error()) {
				if (!errno)
					return 0;
				*why = strerror(errno);
				return -EIO;
			}
			/* fallthrough */
		default:
			*why = tls_err_text();
			return -EIO;
		}
	}
	{
		ssize_t r = recv(s->io.fd, p, n, 0);

		if (r >= 0) {
			if (r > 0 && (size_t)r < n && !s->hup)
				s->rd_blocked = true;
			return r;
		}
		if (errno == EAGAIN || errno == EINTR) {
			s->rd_blocked = true;
			return -EAGAIN;
		}
		*why = strerror(errno);
		return -EIO;
	}
}

/* last: these are the final bytes of the connection; once all are taken,
 * the close_notify is queued behind them so that both leave in one send(). */
static ssize_t side_write(struct side *s, const char *p, size_t n, bool last, const char **why)
{
	if (s->ssl) {
		size_t put = 0;
		int rc, err;

		/* Records of the last write still queued: the socket is full. A
		 * held ticket is not: it leaves with these records, below. */
		rc = s->out_held ? 0 : tls_flush(s->ssl);
		s->out_held = false;
		if (rc == -EAGAIN) {
			side_want_out(s);
			return -EAGAIN;
		}
		if (rc) {
			*why = strerror(-rc);
			return -EIO;
		}
		/* With SSL_MODE_ENABLE_PARTIAL_WRITE each SSL_write stops after one
		 * record: loop, so that all records of this batch leave in one send. */
		if (n > TLS_WRITE_MAX) {
			n = TLS_WRITE_MAX;
			last = false;
		}
		/* Direct sends the record at once: not when the close_notify is to follow it. */
		tls_write_direct(s->ssl, n <= 16384 && !last);
		do {
			size_t k = 0;

			err_queue_clear();
			rc = SSL_write_ex(s->ssl, p + put, n - put, &k);
			put += k;
		} while (rc == 1 && put < n);
		tls_write_direct(s->ssl, false);
		if (last && put == n) {
			ERR_clear_error();
			SSL_shutdown(s->ssl);
		}
		if (put) {
			/* The bytes are taken; a full socket only delays them (next EPOLLOUT). */
			rc = tls_flush(s->ssl);
			if (rc == -EAGAIN)
				side_want_out(s);
			else if (rc) {
				*why = strerror(-rc);
				return -EIO;
			}
			return (ssize_t)put;
		}
		err = SSL_get_error(s->ssl, rc);
		if (err == SSL_ERROR_WANT_WRITE || err == SSL_ERROR_WANT_READ) {
			side_want_out(s);
			return -EAGAIN;
		}
		*why = err == SSL_ERROR_SYSCALL ? "connection reset" : tls_err_text();
		return -EIO;
	}
	{
		ssize_t r = send(s->io.fd, p, n, MSG_NOSIGNAL);

		if (r >= 0)
			return r;
		if (errno == EAGAIN || errno == EINTR) {
			side_want_out(s);
			return -EAGAIN;
		}
		*why = strerror(errno);
		return -EIO;
	}
}

/* Sends ciphertext the BIO collected outside side_write (handshake flights,
 * alerts, key updates): 1 when bytes left, 0 when nothing moved, -EIO. */
static int side_flush(struct side *s)
{
	size_t before;
	int rc;

	if (!s->ssl || s->wr_blocked || s->out_held || !(before = tls_pending_out(s->ssl)))
		return 0;
	rc = tls_flush(s->ssl);
	if (rc == -EAGAIN)
		side_want_out(s);
	else if (rc)
		return -EIO;
	return tls_pending_out(s->ssl) < before;
}

/* ---- the state machine ---- */

static void hx_audit_cb(void *ctx, const struct hx_audit *rec)
{
	struct conn *c = ctx;

	audit_record(c->b, c, rec);
}

/* ---- raw TCP (proto: tcp rules) ---- */

static void raw_audit(struct conn *c, const char *host, int status, const char *rule,
		      uint64_t start_us, uint64_t in, uint64_t out)
{
	struct hx_audit rec;

	memset(&rec, 0, sizeof(rec));
	rec.method = "TCP";
	rec.method_len = 3;
	rec.host = host;
	rec.host_len = strlen(host);
	rec.status = status;
	rec.rule = rule;
	rec.bytes_in = in;
	rec.bytes_out = out;
	rec.start_us = start_us;
	rec.end_us = ev_now_us();
	audit_record(c->b, c, &rec);
}

/*
 * The destination of a raw connection is only an address. The names this
 * broker's DNS answered with it, and the address literal, are checked against
 * the proto: tcp rules; the first allowed one is what the audit line names.
 * An internal address (loopback, link-local, this host) needs a rule naming
 * the host exactly, as for HTTP dials. Allocates c->raw when allowed; on a
 * refusal fills why (for the log) and returns false.
 */
static bool raw_prepare(struct conn *c, char *why, size_t whylen)
{
	char names[RAW_NAMES][DNS_SEEN_NAME];
	struct policy_verdict v;
	struct rs_addr a;
	struct policy *p;
	bool internal, blocked = false;
	size_t i, n;

	p = broker_policy_get(c);
	if (!p) {
		snprintf(why, whylen, "no policy in force (or the audit log can't record)");
		return false;
	}
	/* The usual case, on every accepted connection: no tcp rule at all. */
	if (!policy_tcp_possible(p, c->port)) {
		policy_unref(p);
		snprintf(why, whylen, "no proto: tcp rule allows it");
		return false;
	}
	memset(&a, 0, sizeof(a));
	a.family = c->od.family == SLUICE_AF_INET6 ? AF_INET6 : AF_INET;
	memcpy(a.addr, c->od.addr, a.family == AF_INET6 ? 16 : 4);
	n = dns_names_for(a.family, a.addr, names, RAW_NAMES - 1);
	if (!inet_ntop(a.family, a.addr, names[n], DNS_SEEN_NAME)) {
		policy_unref(p);
		snprintf(why, whylen, "unprintable address");
		return false;
	}
	n++;
	internal = c->b->res && resolver_addr_internal(c->b->res, &a);
	for (i = 0; i < n; i++) {
		size_t len = strlen(names[i]);

		if (!policy_tcp_allowed(p, names[i], len, c->port, &v))
			continue;
		if (internal && !policy_rule_names_host(p, v.rule, names[i], len)) {
			blocked = true;
			continue;
		}
		c->raw = calloc(1, sizeof(*c->raw));
		if (!c->raw) {
			snprintf(why, whylen, "out of memory");
			break;
		}
		memcpy(c->raw->host, names[i], DNS_SEEN_NAME);
		snprintf(c->raw->why, sizeof(c->raw->why), "%s", v.why);
		c->raw->addr = a;
		c->raw->status = 502;
		break;
	}
	policy_unref(p);
	if (c->raw)
		return true;
	if (i == n)
		snprintf(why, whylen, blocked ? "internal address (loopback, link-local or this host): "
			 "only a proto: tcp rule naming the host exactly allows it"
			 : "no proto: tcp rule allows it");
	return false;
}

/* Tunnels a connection raw_prepare() allowed: dial the original address and
 * port (it came from our own DNS answer or is the literal the rule allowed). */
static void raw_start(struct conn *c)
{
	struct rawtcp *r = c->raw;
	char addr[64];

	r->started = true;
	r->start_us = ev_now_us();
	c->st = CS_HTTP;
	c->tunnel = true;
	c->rq_sent = true;
	c->skip_pool = true;
	snprintf(c->up_host, sizeof(c->up_host), "%s", r->host);
	inet_ntop(r->addr.family, r->addr.addr, addr, sizeof(addr));
	pr_info("raw TCP from pid %u (%.16s) to %s (%s) port %u: allowed by %s", c->od.pid, c->od.comm,
		r->host, addr, c->port, r->why);
	memset(&c->addrs, 0, sizeof(c->addrs));
	c->addrs.n = 1;
	c->addrs.a[0] = r->addr;
	c->addr_i = 0;
	c->ust = US_RESOLVING; /* up_dial_next sets the real state */
	up_dial_next(c);
}

static void raw_refuse(struct conn *c, const char *why)
{
	char addr[64];
	const char *host = inet_ntop(c->od.family == SLUICE_AF_INET6 ? AF_INET6 : AF_INET, c->od.addr,
				     addr, sizeof(addr)) ? addr : "?";

	pr_info("refused non-HTTP TCP from pid %u (%.16s) to %s port %u: %s", c->od.pid, c->od.comm,
		host, c->port, why);
	raw_audit(c, host, 403, why, ev_now_us(), 0, 0);
	conn_close(c, "non-HTTP TCP refused");
}

/* The tunnel's decision was made at accept; a reload since (in the wait for
 * the first bytes) may have changed it either way: decide again with the
 * policy in force. false: refused (and closed). */
static bool raw_recheck(struct conn *c)
{
	char why[256];

	free(c->raw);
	c->raw = NULL;
	if (raw_prepare(c, why, sizeof(why)))
		return true;
	raw_refuse(c, why);
	return false;
}

/* Both sides of a raw tunnel pass EOF on as a half-close; done when both did. */
static bool raw_half_close(struct conn *c)
{
	struct rawtcp *r = c->raw;

	if (c->cl.eof && !buf_len(&c->uout) && !r->up_shut && c->ust == US_READY) {
		shutdown(c->up.io.fd, SHUT_WR);
		r->up_shut = true;
	}
	if (c->up.eof && !buf_len(&c->cout) && !r->cl_shut) {
		shutdown(c->cl.io.fd, SHUT_WR);
		r->cl_shut = true;
	}
	if (r->up_shut && r->cl_shut) {
		conn_close(c, "done");
		return true;
	}
	return false;
}

static int hx_start(struct conn *c)
{
	struct hx_env env;

	memset(&env, 0, sizeof(env));
	env.sni = c->tls ? c->sni : NULL;
	env.port = c->port;
	env.client_tls = c->tls;
	env.limits = &c->b->limits;
	env.policy_get = broker_policy_get;
	env.audit = hx_audit_cb;
	env.ctx = c;
	c->hx = hx_new(&env);
	if (!c->hx)
		return -ENOMEM;
	if (c->over)
		hx_refuse_all(c->hx, "the broker has too many connections open (sluiced --max-conns); "
				     "close idle connections or retry later");
	return 0;
}

/*
 * Upper-case first bytes toward a destination a proto: tcp rule allows: HTTP
 * only if they start a request line, a method token then a space. Clients of
 * other protocols speak first in capitals too: OpenSSH sends "SSH-2.0-...",
 * Redis "PING\r\n". 1: HTTP; 0: not; -EAGAIN: only capitals so far.
 */
static int request_line_start(const unsigned char *p, size_t n)
{
	size_t i;

	for (i = 0; i < n && i < RAW_METHOD_MAX; i++) {
		if (p[i] == ' ')
			return i > 0;
		if (p[i] < 'A' || p[i] > 'Z')
			return 0;
	}
	return i < RAW_METHOD_MAX ? -EAGAIN : 0;
}

static bool do_peek(struct conn *c)
{
	struct broker *b = c->b;
	unsigned char head[RAW_METHOD_MAX], first;
	ssize_t r = recv(c->cl.io.fd, head, c->raw ? sizeof(head) : 1, MSG_PEEK);

	if (r < 0) {
		if (errno == EAGAIN)
			c->cl.rd_blocked = true;
		else
			conn_close(c, "client error before the first byte");
		return false;
	}
	if (r == 0) {
		conn_close(c, "client closed before sending anything");
		return false;
	}
	first = head[0];
	if (c->raw && first >= 'A' && first <= 'Z') {
		int http = request_line_start(head, (size_t)r);

		if (http == -EAGAIN) {
			/* The rest of the line comes with the next EPOLLIN; if
			 * it does not, the first-bytes timer starts the tunnel. */
			c->cl.rd_blocked = true;
			return false;
		}
		if (!http)
			first = 0; /* raw TCP below */
	}
	if (first == 0x16 || (first >= 'A' && first <= 'Z')) {
		/* TLS or HTTP: the HTTP rules apply, whatever tcp rule exists. */
		free(c->raw);
		c->raw = NULL;
	}
	if (first == 0x16) {
		c->tls = true;
		c->cl.ssl = SSL_new(b->srv_ctx);
		if (!c->cl.ssl || tls_set_fd(c->cl.ssl, c->cl.io.fd)) {
			conn_close(c, "out of memory");
			return false;
		}
		tls_server_set_sni_buf(c->cl.ssl, c->sni);
		SSL_set_accept_state(c->cl.ssl);
		c->st = CS_HANDSHAKE;
		return true;
	}
	if (first >= 'A' && first <= 'Z') {
		c->st = CS_HTTP;
		if (hx_start(c)) {
			conn_close(c, "out of memory");
			return false;
		}
		return true;
	}
	/* Over the limit, taken only to answer 503: nothing to say to raw TCP. */
	if (c->over) {
		conn_close(c, "too many connections (raw TCP over --max-conns)");
		return false;
	}
	/* Not TLS, not HTTP: raw TCP, allowed only when accept found a proto: tcp
	 * rule for this destination. */
	if (!raw_recheck(c))
		return false;
	raw_start(c);
	return true;
}

static bool do_handshake(struct conn *c)
{
	int rc, err;

	err_queue_clear();
	rc = SSL_do_handshake(c->cl.ssl);
	/* A TLS 1.3 server's handshake ends with the session ticket, which the
	 * client does not wait for: it rides with the first response instead of
	 * costing a send() here and a wake-up and recv() in the client. (In TLS
	 * 1.2 the last flight ends with the server's Finished: sent now.) */
	if (rc == 1 && SSL_version(c->cl.ssl) == TLS1_3_VERSION)
		c->cl.out_held = true;
	if (side_flush(&c->cl) < 0) {
		conn_close(c, "client write error in the handshake");
		return false;
	}
	if (rc == 1) {
		c->st = CS_HTTP;
		if (hx_start(c)) {
			conn_close(c, "out of memory");
			return false;
		}
		return true;
	}
	err = SSL_get_error(c->cl.ssl, rc);
	if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
		c->cl.rd_blocked = true;
		return false;
	}
	if (!c->sni[0])
		pr_info("refused TLS without SNI from pid %u (%.16s): no host to check the rules against",
			c->od.pid, c->od.comm);
	else
		pr_info("TLS handshake with pid %u (%.16s) for %s failed: %s", c->od.pid, c->od.comm,
			c->sni, err == SSL_ERROR_SYSCALL ? "connection closed" : tls_err_text());
	conn_close(c, "TLS handshake failed");
	return false;
}

static bool up_progress_connect(struct conn *c)
{
	struct broker *b = c->b;
	int soerr = 0, rc, err;
	socklen_t sl = sizeof(soerr);

	if (c->ust == US_CONNECTING) {
		if (c->up.wr_blocked)
			return false;
		getsockopt(c->up.io.fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
		if (soerr == EINPROGRESS || soerr == EALREADY)
			return false;
		if (soerr) {
			close(c->up.io.fd);
			c->up.io.fd = -1;
			ev_forget(&c->b->loop, &c->up.io);
			pr_debug("connect to %s (address %zu) failed: %s", c->up_host, c->addr_i, strerror(soerr));
			c->addr_i++;
			up_dial_next(c);
			return true;
		}
		if (!c->tls) {
			up_ready(c);
			return true;
		}
		c->up.ssl = SSL_new(b->cli_ctx);
		if (!c->up.ssl || tls_set_fd(c->up.ssl, c->up.io.fd) ||
		    tls_client_prepare(c->up.ssl, c->up_host, c->port)) {
			up_fail(c, 502, "out of memory");
			return true;
		}
		SSL_set_connect_state(c->up.ssl);
		c->ust = US_HANDSHAKE;
	}
	if (c->ust == US_HANDSHAKE) {
		ERR_clear_error();
		rc = SSL_do_handshake(c->up.ssl);
		if (side_flush(&c->up) < 0) {
			up_fail(c, 502, "upstream connection failed in the TLS handshake");
			return true;
		}
		if (rc == 1) {
			up_ready(c);
			return true;
		}
		err = SSL_get_error(c->up.ssl, rc);
		if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
			c->up.rd_blocked = true;
			if (err == SSL_ERROR_WANT_WRITE)
				side_want_out(&c->up);
			return false;
		}
		{
			long vr = SSL_get_verify_result(c->up.ssl);
			char reason[512];

			if (vr != X509_V_OK)
				snprintf(reason, sizeof(reason), "upstream certificate of %s did not verify: %s",
					 c->up_host, X509_verify_cert_error_string(vr));
			else
				snprintf(reason, sizeof(reason), "TLS handshake with %s failed: %s", c->up_host,
					 err == SSL_ERROR_SYSCALL ? "connection closed" : tls_err_text());
			up_fail(c, 502, reason);
		}
		return true;
	}
	return false;
}

static bool client_read(struct conn *c)
{
	struct buf *dst = c->tunnel ? &c->uout : &c->cin;
	const char *why = "";
	ssize_t r;
	char *p;

	if (c->cl.rd_blocked || c->cl.eof || c->want_close)
		return false;
	if (c->tunnel ? buf_len(&c->uout) >= OUT_MAX
		      : (buf_len(&c->cin) >= CIN_MAX || buf_len(&c->uout) >= OUT_MAX ||
			 buf_len(&c->cout) >= OUT_MAX))
		return false;
	p = buf_reserve(dst, READ_CHUNK);
	if (!p) {
		conn_close(c, "out of memory");
		return false;
	}
	r = side_read(&c->cl, p, READ_CHUNK, &why);
	if (r > 0) {
		buf_commit(dst, (size_t)r);
		if (c->raw)
			c->raw->bytes_in += (uint64_t)r;
		else if (c->tunnel)
			c->tun_in += (uint64_t)r;
		return true;
	}
	if (r == 0) {
		c->cl.eof = true;
		return true;
	}
	if (r == -EIO) {
		pr_debug("client read: %s", why);
		conn_close(c, "client connection lost (read failed)");
	}
	return false;
}

static bool feed_hx(struct conn *c)
{
	unsigned ev = 0;
	size_t used = 0;
	bool moved = false;

	if (c->tunnel || !c->hx || c->hx_paused || c->want_close)
		return false;
	/* A next request goes out on a kept-alive upstream only once that one
	 * has been read dry: bytes it sent after the last response (a body
	 * read exactly to its end, a read stopped at UP_BATCH) would otherwise
	 * be taken for the new request's answer. up_read gets there this round;
	 * what it finds makes hx give the connection up. */
	if (c->ust == US_READY && !c->up.rd_blocked && !c->up.eof && hx_idle(c->hx) && buf_len(&c->cin)) {
		up_read(c);
		if (c->closing || c->want_close || c->hx_paused ||
		    (c->ust == US_READY && !c->up.rd_blocked && !c->up.eof))
			return false;
	}
	if (buf_len(&c->cin) && buf_len(&c->uout) < OUT_MAX && buf_len(&c->cout) < OUT_MAX) {
		size_t up_before = buf_len(&c->uout);

		c->uout_mark = up_before;
		if (hx_on_client(c->hx, buf_head(&c->cin), buf_len(&c->cin), &used, &c->uout, &c->cout, &ev)) {
			conn_close(c, "out of memory");
			return false;
		}
		if (buf_len(&c->uout) > up_before)
			c->rq_sent = true;
		buf_consume(&c->cin, used);
		if (buf_len(&c->cin) && !(ev & HX_EV_RESUME_CLIENT))
			c->hx_paused = true;
		handle_events(c, ev);
		moved = used > 0 || ev;
	}
	if (c->cl.eof && !buf_len(&c->cin) && !c->client_eof_fed && !c->hx_paused) {
		c->client_eof_fed = true;
		ev = 0;
		if (hx_on_client_eof(c->hx, &c->uout, &ev)) {
			conn_close(c, "out of memory");
			return false;
		}
		handle_events(c, ev);
		moved = true;
	}
	return moved;
}

/*
 * A reused upstream connection (pooled, or kept alive from the previous
 * request) may have been closed by the server just before the request went
 * out: no liveness check closes that race. If nothing of the answer came back
 * and every byte sent is still in replay, send it again, once, on a fresh
 * connection. Returns true when the retry was started.
 */
static bool up_retry(struct conn *c)
{
	size_t n;

	/* Not for a connection given up on (a request cut off mid-body, bytes
	 * nobody asked for) or closing, nor with no request in flight. */
	if (!c->replay_ok || c->retried || c->tunnel || !buf_len(&c->replay) || c->closing ||
	    c->up_no_reuse || c->want_close || !c->hx || hx_idle(c->hx))
		return false;
	/* The server may have acted on it before closing: a POST is not sent
	 * twice by a proxy (RFC 9110 9.2.2); the client gets 502 and decides. */
	if (!c->hx || !hx_request_idempotent(c->hx)) {
		pr_info("upstream %s:%u closed a reused connection before answering a non-idempotent "
			"request; not sending it again", c->up_host, c->port);
		return false;
	}
	if (buf_append(&c->replay, buf_head(&c->uout), buf_len(&c->uout)))
		return false;
	n = buf_len(&c->uout);
	buf_consume(&c->uout, n);
	{
		bool internal = c->up_internal; /* the same addresses are dialled again */

		up_close(c);
		c->up_internal = internal;
	}
	{
		struct buf t = c->uout;

		c->uout = c->replay;
		c->replay = t;
	}
	c->retried = true;
	c->replay_ok = false;
	c->skip_pool = true;
	pr_info("upstream %s:%u closed a reused connection before answering; sending the request "
		"again on a new connection", c->up_host, c->port);
	c->ust = US_RESOLVING; /* up_dial_next sets the real state */
	up_dial_next(c);
	return true;
}

static bool up_write(struct conn *c)
{
	const char *why = "";
	ssize_t r;

	if (c->ust != US_READY || c->up.wr_blocked || !buf_len(&c->uout))
		return false;
	r = side_write(&c->up, buf_head(&c->uout), buf_len(&c->uout), false, &why);
	if (r > 0) {
		if (c->replay_ok && !c->tunnel) {
			if (buf_len(&c->replay) + (size_t)r > REPLAY_MAX ||
			    buf_append(&c->replay, buf_head(&c->uout), (size_t)r)) {
				c->replay_ok = false;
				buf_free(&c->replay);
			}
		}
		buf_consume(&c->uout, (size_t)r);
		return true;
	}
	if (r == -EIO) {
		if (c->tunnel) {
			conn_close(c, "upstream write error in tunnel");
			return false;
		}
		if (up_retry(c))
			return true;
		up_fail(c, 502, "upstream connection failed while sending the request");
		return true;
	}
	return false;
}

static bool up_read_once(struct conn *c)
{
	struct broker *b = c->b;
	const char *why = "";
	unsigned ev = 0;
	size_t want = READ_CHUNK, pass = 0;
	bool ws = c->tunnel && c->hx && hx_ws_scrubbing(c->hx);
	ssize_t r;
	char *p;

	if (c->ust != US_READY || c->up.rd_blocked || c->up.eof || buf_len(&c->cout) >= OUT_MAX)
		return false;
	/* A body hx forwards unchanged is read straight into cout (no copy),
	 * never past its end: what follows must go through hx_on_upstream. */
	if (!c->tunnel && (pass = hx_upstream_passthrough(c->hx)) && pass < want)
		want = pass;
	if ((c->tunnel && !ws) || pass) {
		p = buf_reserve(&c->cout, want);
		if (!p) {
			conn_close(c, "out of memory");
			return false;
		}
	} else {
		p = b->scratch;
	}
	r = side_read(&c->up, p, want, &why);
	if (r == -EAGAIN)
		return false;
	if (r == -EIO) {
		pr_debug("upstream read from %s: %s", c->up_host, why);
		if (c->tunnel) {
			conn_close(c, "upstream read error in tunnel");
			return false;
		}
		if (up_retry(c))
			return true;
		up_fail(c, 502, "upstream connection failed while reading the response");
		return true;
	}
	if (r == 0) {
		c->up.eof = true;
		if (c->tunnel) {
			if (!c->raw)
				set_want_close(c);
			return true;
		}
		if (up_retry(c))
			return true;
		if (!c->up_eof_fed) {
			c->up_eof_fed = true;
			if (hx_on_upstream_eof(c->hx, &c->cout, &ev)) {
				c->abort = true;
				conn_close(c, "out of memory handling the upstream's response");
				return false;
			}
			/* This connection is finished whatever hx says. */
			up_close(c);
			handle_events(c, ev & ~HX_EV_UPSTREAM_DONE);
		}
		return true;
	}
	if (ws) {
		/* Frames from a host with secrets: rebuilt with scrubbed payloads. */
		size_t before = buf_len(&c->cout);
		int e = hx_on_ws_upstream(c->hx, p, (size_t)r, &c->cout);

		c->tun_out += buf_len(&c->cout) - before;
		if (e) {
			c->abort = true;
			conn_close(c, e == -EPROTO ? "the upstream sent a WebSocket frame RFC 6455 forbids here"
						   : "out of memory scrubbing a WebSocket tunnel");
			return false;
		}
		return true;
	}
	if (c->tunnel) {
		buf_commit(&c->cout, (size_t)r);
		if (c->raw)
			c->raw->bytes_out += (uint64_t)r;
		else
			c->tun_out += (uint64_t)r;
		return true;
	}
	if (c->replay_ok) {
		/* The answer started: the request was taken, never send it again. */
		c->replay_ok = false;
		buf_consume(&c->replay, buf_len(&c->replay));
	}
	if (pass ? hx_on_upstream_inplace(c->hx, &c->cout, (size_t)r, &ev)
		 : hx_on_upstream(c->hx, p, (size_t)r, &c->cout, &ev)) {
		/* Mid-response: the client must see it broken, not ended. */
		c->abort = true;
		conn_close(c, "out of memory handling the upstream's response");
		return false;
	}
	handle_events(c, ev);
	return true;
}

static bool up_read(struct conn *c)
{
	bool moved = false;

	while (up_read_once(c)) {
		moved = true;
		if (c->closing || c->ust != US_READY || buf_len(&c->cout) >= UP_BATCH)
			break;
	}
	return moved;
}

static bool client_write(struct conn *c)
{
	const char *why = "";
	ssize_t r;

	if (c->cl.wr_blocked || !buf_len(&c->cout))
		return false;
	r = side_write(&c->cl, buf_head(&c->cout), buf_len(&c->cout), c->want_close && !c->abort, &why);
	if (r > 0) {
		buf_consume(&c->cout, (size_t)r);
		return true;
	}
	if (r == -EIO) {
		pr_debug("client write: %s", why);
		conn_close(c, "client connection lost (write failed)");
	}
	return false;
}

static bool tls_out_waiting(const struct conn *c)
{
	return c->cl.ssl && tls_pending_out(c->cl.ssl);
}

static void timer_update(struct conn *c, bool progress)
{
	struct broker *b = c->b;
	enum timer_kind want;
	struct ev_tlist *t;

	if (c->st == CS_PEEK && c->raw)
		want = TK_FIRST;
	else if (c->st == CS_PEEK || c->st == CS_HANDSHAKE)
		want = TK_HANDSHAKE;
	else if (c->tunnel)
		want = TK_IO;
	else if (hx_idle(c->hx) && !buf_len(&c->cout) && !buf_len(&c->uout) && !buf_len(&c->cin))
		want = TK_IDLE;
	else if (!c->rq_sent && !c->want_close)
		/* Reading a request head, the first or a later one on a kept-alive
		 * connection: absolute, not renewed by trickled bytes (slowloris). */
		want = TK_HEADER;
	else
		want = TK_IO;
	/* Draining: an idle connection goes, once the TLS records of its last
	 * response have left too (they wait in the socket BIO, not in cout). */
	if (want == TK_IDLE && c->b->draining && !tls_out_waiting(c)) {
		conn_close(c, "draining");
		return;
	}
	/* Idle: absolute too, from the end of the last exchange; an empty line
	 * (CRLF, which RFC 9112 2.2 lets precede a request) is no request. A
	 * request answered here (403, 421) within one run is an exchange too:
	 * hx counts the requests begun. */
	if (want == TK_IDLE && c->tk == TK_IDLE && c->hx && hx_requests(c->hx) != c->idle_seq)
		progress = true;
	else if (want == c->tk && (!progress || want == TK_HANDSHAKE || want == TK_HEADER ||
				   want == TK_FIRST || want == TK_IDLE))
		return;
	if (want == TK_IDLE && c->hx)
		c->idle_seq = hx_requests(c->hx);
	if (want == TK_IDLE && c->tk != TK_IDLE) {
		/* Idle keep-alive connections should cost little memory, but a
		 * busy one goes idle between every two requests: trim later. */
		ev_timer_arm(&b->loop, &b->t_trim, &c->trim);
	} else if (want != TK_IDLE && c->tk == TK_IDLE) {
		ev_timer_stop(&c->trim);
	}
	c->tk = want;
	t = want == TK_HANDSHAKE ? &b->t_handshake : want == TK_HEADER ? &b->t_header
	  : want == TK_IDLE ? &b->t_idle : want == TK_FIRST ? &b->t_first : &b->t_io;
	ev_timer_arm(&b->loop, t, &c->timer);
}

static void conn_run(struct conn *c)
{
	bool progress = false, moved = false;
	int guard;

	for (guard = 0; guard < CONN_RUN_ROUNDS && !c->closing; guard++) {
		bool read;

		progress = false;
		if (c->st == CS_PEEK)
			progress = do_peek(c);
		else if (c->st == CS_HANDSHAKE)
			progress = do_handshake(c);
		if (c->closing || c->st != CS_HTTP) {
			if (!progress)
				break;
			continue;
		}
		/* Bytes read from the client renew no timer by themselves: only
		 * once they move on (taken by hx, sent upstream). Else bytes of a
		 * pipelined request, trickled, would hold off the 504 of the one
		 * waiting for its upstream. */
		read = client_read(c);
		progress = feed_hx(c);
		if (c->ust == US_CONNECTING || c->ust == US_HANDSHAKE)
			progress |= up_progress_connect(c);
		progress |= up_write(c);
		progress |= up_read(c);
		progress |= client_write(c);
		if (c->closing)
			return;
		/* Handshake flights and alerts that no write of ours carried. */
		if (side_flush(&c->cl) < 0) {
			conn_close(c, "client connection lost (write failed)");
			return;
		}
		if (c->ust == US_READY && side_flush(&c->up) < 0) {
			up_fail(c, 502, "upstream connection failed");
			continue;
		}
		/* Done when the last records (and the close_notify queued with
		 * them) have left the socket BIO too, not only cout: a full socket
		 * holds them until EPOLLOUT. An aborted response need not wait. */
		if (c->want_close && !buf_len(&c->cout) &&
		    (c->abort || !c->cl.ssl || !tls_pending_out(c->cl.ssl))) {
			conn_close(c, "done");
			return;
		}
		if (c->raw) {
			if (raw_half_close(c))
				return;
		} else if (c->tunnel && c->cl.eof && !buf_len(&c->uout)) {
			conn_close(c, "tunnel closed by client");
			return;
		}
		moved |= progress;
		progress |= read;
		if (!progress)
			break;
	}
	if (c->closing)
		return;
	/* Yielded with work left: edge-triggered epoll will not report bytes
	 * that are already queued, so finish before the loop sleeps. */
	if (progress && guard == CONN_RUN_ROUNDS && !c->queued) {
		c->queued = true;
		c->next_run = c->b->run_list;
		c->b->run_list = c;
	}
	timer_update(c, moved);
}

static struct conn *conn_from_io(struct ev_io *io, bool up)
{
	struct conn *c = up ? container_of(io, struct conn, up.io) : container_of(io, struct conn, cl.io);

	return c->magic == CONN_MAGIC ? c : NULL;
}

/* Updates s from an epoll event; false when the event changes nothing (an
 * EPOLLOUT edge, after ACKs freed space, while no write was waiting for it):
 * the connection then has nothing to do. */
static bool side_event(struct side *s, uint32_t events)
{
	bool was_wr_blocked = s->wr_blocked;

	if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
		s->rd_blocked = false;
		if (s->ssl)
			tls_set_readable(s->ssl, events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR));
		if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
			s->hup = true;
		if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR))
			s->wr_blocked = false;
		return true;
	}
	if (events & EPOLLOUT)
		s->wr_blocked = false;
	return was_wr_blocked;
}

static void client_io_cb(struct ev_io *io, uint32_t events)
{
	struct conn *c = conn_from_io(io, false);

	if (!c || c->closing)
		return;
	if (side_event(&c->cl, events))
		conn_run(c);
}

static void up_io_cb(struct ev_io *io, uint32_t events)
{
	struct conn *c = conn_from_io(io, true);

	if (!c || c->closing)
		return;
	if (side_event(&c->up, events))
		conn_run(c);
}

static void conn_trim(struct ev_tnode *n)
{
	struct conn *c = container_of(n, struct conn, trim);

	if (c->magic != CONN_MAGIC || c->closing)
		return;
	/* Both fail harmlessly when bytes are still buffered. */
	if (c->cl.ssl)
		(void)SSL_free_buffers(c->cl.ssl);
	if (c->up.ssl)
		(void)SSL_free_buffers(c->up.ssl);
	buf_shrink(&c->cin, 0);
	buf_shrink(&c->cout, 0);
	buf_shrink(&c->uout, 0);
	buf_shrink(&c->replay, 0);
}

static void conn_expire(struct ev_tnode *n)
{
	struct conn *c = container_of(n, struct conn, timer);
	unsigned ev = 0;

	if (c->magic != CONN_MAGIC || c->closing)
		return;
	switch (c->tk) {
	case TK_FIRST:
		/* Silent client, destination allowed raw: the server speaks first. */
		c->tk = TK_NONE;
		if (raw_recheck(c))
			raw_start(c);
		break;
	case TK_HANDSHAKE:
		conn_close(c, "handshake timeout");
		return;
	case TK_IDLE:
		conn_close(c, "idle timeout");
		return;
	case TK_HEADER:
		if (c->want_close) {
			conn_close(c, "timeout");
			return;
		}
		c->tk = TK_NONE;
		if (hx_on_timeout(c->hx, &c->cout, &ev)) {
			conn_close(c, "out of memory");
			return;
		}
		handle_events(c, ev);
		set_want_close(c);
		break;
	default:
		if (c->want_close) {
			conn_close(c, "timeout");
			return;
		}
		c->tk = TK_NONE;
		if (c->tunnel) {
			conn_close(c, "tunnel idle timeout");
			return;
		}
		if (c->ust != US_NONE || !hx_idle(c->hx)) {
			up_fail(c, 504, "upstream timed out");
		}
		set_want_close(c);
		break;
	}
	conn_run(c);
	/* Nothing can make progress any more (client gone silent): do not wait forever. */
	if (!c->closing && c->tk == TK_NONE)
		conn_close(c, "timeout");
}

static void conn_free(struct conn *c)
{
	struct broker *b = c->b;

	if (c->queued) {
		struct conn **pp;

		for (pp = &b->run_list; *pp; pp = &(*pp)->next_run)
			if (*pp == c) {
				*pp = c->next_run;
				break;
			}
	}
	if (c->raw && c->raw->started)
		raw_audit(c, c->raw->host, c->raw->status, c->raw->why, c->raw->start_us,
			  c->raw->bytes_in, c->raw->bytes_out);
	free(c->raw);
	pool_put(c);
	up_close(c);
	ev_timer_stop(&c->timer);
	ev_timer_stop(&c->trim);
	if (c->cl.io.fd >= 0) {
		if (c->abort) {
			/* A truncated response must not look complete: no close_notify,
			 * and a reset rather than a FIN (plain HTTP has nothing else). */
			struct linger lg = { .l_onoff = 1, .l_linger = 0 };

			setsockopt(c->cl.io.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		} else if (c->cl.ssl && SSL_is_init_finished(c->cl.ssl) &&
			   !(SSL_get_shutdown(c->cl.ssl) & SSL_SENT_SHUTDOWN)) {
			SSL_shutdown(c->cl.ssl); /* best effort close_notify */
			tls_flush(c->cl.ssl);
		}
		close(c->cl.io.fd);
	}
	if (c->cl.ssl) {
		ERR_clear_error();
		SSL_free(c->cl.ssl);
	}
	/* Before the sockets go: a request cut short still gets its audit line. */
	hx_end(c->hx, c->close_reason[0] ? c->close_reason : NULL, c->tun_in, c->tun_out);
	hx_free(c->hx);
	buf_free(&c->cin);
	buf_free(&c->cout);
	buf_free(&c->uout);
	buf_free(&c->replay);
	c->prev->next = c->next;
	c->next->prev = c->prev;
	c->magic = 0;
	b->n_conns--;
	if (c->over)
		b->n_over--;
	pr_debug("connection closed: %s", c->close_reason);
	free(c);
}

static void pool_reap(struct broker *b)
{
	while (b->pool_dead) {
		struct upconn *u = b->pool_dead;

		b->pool_dead = u->next;
		free(u);
	}
}

void broker_before_sleep(void *ctx)
{
	struct broker *b = ctx;
	struct conn *run = b->run_list;

	b->run_list = NULL;
	while (run) {
		struct conn *c = run;

		run = c->next_run;
		c->queued = false;
		if (!c->closing)
			conn_run(c);
	}
	if (b->run_list)
		b->loop.no_wait = true;

	while (b->close_list) {
		struct conn *c = b->close_list;

		b->close_list = c->next_close;
		conn_free(c);
	}
	pool_reap(b);
	audit_flush(b);
	if (b->draining && (b->n_conns == 0 || b->loop.now_ms >= b->drain_deadline))
		b->loop.stop = true;
}

/* The sandbox can open connections as fast as it likes: one line per 10 s,
 * with how many were refused meanwhile (the worker's own counters). */
static void warn_refused(struct broker *b, const char *what)
{
	if (b->loop.now_ms - b->refused_warned_ms < 10000) {
		b->refused_quiet++;
		return;
	}
	pr_warn("refused a connection: %s (%zu open, --max-conns %u; %lu more refused since the last "
		"such line)", what, b->n_conns - b->n_over, b->cfg->max_conns, b->refused_quiet);
	b->refused_warned_ms = b->loop.now_ms;
	b->refused_quiet = 0;
}

/* peer: from accept(); li: the listener (0 IPv4, 1 IPv6). TCP_NODELAY
 * comes from the listener (inherited by accepted sockets). */
static void accept_one(struct broker *b, int fd, const struct sockaddr_storage *peer, int li)
{
	/* Over the limit, a few more (1/16 of it, 8 at least) are taken only to
	 * be told so: 503 naming the limit, then closed. Beyond those: closed. */
	size_t over_slots = b->cfg->max_conns / 16 > 8 ? b->cfg->max_conns / 16 : 8;
	/* Those taken only to answer 503 do not count: they must not keep
	 * others out once real connections are below the limit again. */
	bool over = b->n_conns - b->n_over >= b->cfg->max_conns;
	struct conn *c;
	int rc;

	if (b->draining || (over && b->n_over >= over_slots)) {
		struct sluice_orig_dst od;

		/* Its record goes too: refused connections must not fill the shared map. */
		if (!b->cfg->origdst_fixed_set && b->origdst_take)
			b->origdst_take(b, fd, peer, b->lis_local_ok[li] ? &b->lis_local[li] : NULL, &od);
		b->n_refused++;
		warn_refused(b, b->draining ? "shutting down" : "too many connections, closed");
		close(fd);
		return;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		close(fd);
		return;
	}
	c->magic = CONN_MAGIC;
	c->b = b;
	c->cl.io.fd = fd;
	c->cl.io.cb = client_io_cb;
	c->up.io.fd = -1;
	c->up.io.cb = up_io_cb;
	if (b->cfg->origdst_fixed_set) {
		c->od = b->cfg->origdst_fixed;
		rc = 0;
	} else {
		rc = b->origdst_take ? b->origdst_take(b, fd, peer,
						      b->lis_local_ok[li] ? &b->lis_local[li] : NULL, &c->od)
				     : -ENOSYS;
	}
	if (rc) {
		/* Not redirected by sluice: someone dialled the broker directly. */
		pr_warn("refused a connection without an original destination (%s): only sandboxed "
			"programs redirected by the kernel may use the broker", strerror(-rc));
		close(fd);
		free(c);
		b->n_refused++;
		return;
	}
	/* The record's key is the connection's addresses and ports, which two
	 * network namespaces (two pods) can share: a record of another sandbox
	 * would lend this one its destination. */
	if (b->cfg->sandbox_cgid && c->od.cgroup_id != b->cfg->sandbox_cgid) {
		pr_warn("refused a connection recorded for another sandbox (cgroup id %llu; this broker "
			"serves %llu): two sandboxes' connections had the same addresses and ports; retry",
			(unsigned long long)c->od.cgroup_id, (unsigned long long)b->cfg->sandbox_cgid);
		close(fd);
		free(c);
		b->n_refused++;
		return;
	}
	c->port = c->od.port;
	if (over) {
		c->over = true;
		b->n_over++;
		b->n_refused++;
		warn_refused(b, "too many connections, answered 503");
	}
	c->next = &b->conns;
	c->prev = b->conns.prev;
	b->conns.prev->next = c;
	b->conns.prev = c;
	b->n_conns++;
	b->n_accepted++;
	c->cl.loop = c->up.loop = &b->loop;
	if (ev_add(&b->loop, &c->cl.io, EPOLLIN | EPOLLRDHUP | EPOLLET)) {
		conn_close(c, "couldn't register the socket");
		return;
	}
	/* Decided from the destination before any byte: only then may silence
	 * mean a server-first protocol. (Not for a connection over the limit:
	 * it is taken only to answer 503, which needs HTTP.) */
	if (!c->over) {
		char why[256];

		if (raw_prepare(c, why, sizeof(why))) {
			c->tk = TK_FIRST;
			ev_timer_arm(&b->loop, &b->t_first, &c->timer);
			conn_run(c);
			return;
		}
	}
	c->tk = TK_HANDSHAKE;
	ev_timer_arm(&b->loop, &b->t_handshake, &c->timer);
	conn_run(c);
}

/* True when fd is bound to one address (not INADDR_ANY / in6addr_any), copied into out. */
static bool lis_bound_to_one(int fd, struct sockaddr_storage *out)
{
	socklen_t l = sizeof(*out);

	if (getsockname(fd, (struct sockaddr *)out, &l))
		return false;
	if (out->ss_family == AF_INET)
		return ((struct sockaddr_in *)out)->sin_addr.s_addr != htonl(INADDR_ANY);
	if (out->ss_family == AF_INET6)
		return !IN6_IS_ADDR_UNSPECIFIED(&((struct sockaddr_in6 *)out)->sin6_addr);
	return false;
}

/* Edge-triggered: accept until the queue is empty, or connections left in it
 * would wait for the next one to arrive. */
static void accept_all(struct broker *b, struct ev_io *io, int li)
{
	struct sockaddr_storage peer;
	socklen_t pl;
	int fd;

	for (;;) {
		pl = sizeof(peer);
		fd = accept4(io->fd, (struct sockaddr *)&peer, &pl, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno == EMFILE || errno == ENFILE)
				pr_warn("accept: %s: raise the fd limit (ulimit -n) or lower --max-conns",
					strerror(errno));
			return;
		}
		accept_one(b, fd, pl <= sizeof(peer) ? &peer : NULL, li);
	}
}

/* One callback per listener: ev_io carries no context, and container_of()
 * must name the member the io really is. */
void broker_accept_cb(struct ev_io *io, uint32_t events)
{
	accept_all(container_of(io, struct broker, lis[0]), io, 0);
}

static void broker_accept6_cb(struct ev_io *io, uint32_t events)
{
	accept_all(container_of(io, struct broker, lis[1]), io, 1);
}

static void resio_cb(struct ev_io *io, uint32_t events)
{
	struct broker *b = container_of(io, struct broker, resio);

	resolver_dispatch(b->res);
}

int broker_init(struct broker *b, struct broker_cfg *cfg, struct ca *ca, int lis4, int lis6)
{
	int rc;

	b->cfg = cfg;
	b->ca = ca;
	b->orig_fd = -1;
	b->audit_fd = -1;
	b->conns.next = b->conns.prev = &b->conns;
	rc = ev_init(&b->loop);
	if (rc)
		return rc;
	b->loop.before_sleep = broker_before_sleep;
	b->loop.ctx = b;
	ev_tlist_init(&b->loop, &b->t_handshake, cfg->handshake_ms, conn_expire);
	ev_tlist_init(&b->loop, &b->t_header, cfg->header_ms, conn_expire);
	ev_tlist_init(&b->loop, &b->t_idle, cfg->idle_ms, conn_expire);
	ev_tlist_init(&b->loop, &b->t_io, cfg->io_ms, conn_expire);
	ev_tlist_init(&b->loop, &b->t_pool, cfg->pool_idle_ms, pool_expire);
	ev_tlist_init(&b->loop, &b->t_trim, 1000, conn_trim);
	ev_tlist_init(&b->loop, &b->t_first, FIRST_BYTES_MS, conn_expire);
	b->limits.max_header_bytes = cfg->max_header_bytes;
	b->limits.max_headers = cfg->max_headers;
	b->lis[0].fd = lis4;
	b->lis[1].fd = lis6;
	b->lis[0].cb = broker_accept_cb;
	b->lis[1].cb = broker_accept6_cb;
	for (int i = 0; i < 2; i++) {
		int fd = b->lis[i].fd, one = 1;

		if (fd < 0)
			continue;
		/* Set once here, inherited by every accepted socket. */
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		b->lis_local_ok[i] = lis_bound_to_one(fd, &b->lis_local[i]);
	}
	if (lis4 >= 0 && (rc = ev_add(&b->loop, &b->lis[0], EPOLLIN | EPOLLET)))
		return rc;
	if (lis6 >= 0 && (rc = ev_add(&b->loop, &b->lis[1], EPOLLIN | EPOLLET)))
		return rc;
	if (b->res) {
		b->resio.fd = resolver_eventfd(b->res);
		b->resio.cb = resio_cb;
		if ((rc = ev_add(&b->loop, &b->resio, EPOLLIN | EPOLLET)))
			return rc;
	}
	return 0;
}

/* Out of the SO_REUSEPORT group: the kernel queues no more connections here
 * (a listener left open after its loop stopped would hold them unanswered). */
static void lis_close(struct broker *b)
{
	int i;

	for (i = 0; i < 2; i++) {
		if (b->lis[i].fd >= 0) {
			ev_del(&b->loop, &b->lis[i]);
			close(b->lis[i].fd);
			b->lis[i].fd = -1;
		}
	}
}

void broker_drain(struct broker *b)
{
	struct conn *c;

	if (b->draining)
		return;
	b->draining = true;
	b->drain_deadline = b->loop.now_ms + b->cfg->drain_ms;
	lis_close(b);
	/* Idle connections go now; busy ones finish their request (timer_update closes them). */
	for (c = b->conns.next; c != &b->conns; c = c->next)
		if (c->st != CS_HTTP || (c->hx && hx_idle(c->hx) && !buf_len(&c->cout) && !buf_len(&c->cin) &&
					 !tls_out_waiting(c)))
			conn_close(c, "draining");
	while (b->pool)
		pool_expire(&b->pool->timer);
}

void broker_fini(struct broker *b)
{
	struct conn *c;

	lis_close(b);
	for (c = b->conns.next; c != &b->conns; c = c->next)
		conn_close(c, "the broker stopped (drain deadline passed)");
	broker_before_sleep(b);
	while (b->pool)
		pool_expire(&b->pool->timer);
	pool_reap(b);
	buf_free(&b->audit_buf);
	ev_fini(&b->loop);
}

/* ---- the policy in force, shared by all workers ---- */

static struct policy *cur_policy;
static pthread_mutex_t policy_lock = PTHREAD_MUTEX_INITIALIZER;

struct policy *broker_policy_get(void *ctx)
{
	struct policy *p;

	if (!audit_ok())
		return NULL; /* unrecorded requests are refused requests */
	pthread_mutex_lock(&policy_lock);
	p = cur_policy ? policy_ref(cur_policy) : NULL;
	pthread_mutex_unlock(&policy_lock);
	return p;
}

void broker_policy_set(struct policy *p)
{
	struct policy *old;

	pthread_mutex_lock(&policy_lock);
	old = cur_policy;
	cur_policy = p;
	pthread_mutex_unlock(&policy_lock);
	/* Requests in flight hold their own reference to the old one. */
	policy_unref(old);
}
