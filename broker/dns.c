// SPDX-License-Identifier: MIT
/*
 * The sandbox's DNS resolver: answers only names some rule could allow, with
 * the addresses the broker itself would dial; everything else is REFUSED and
 * never forwarded. Names under an allowed glob (*.example.com) are looked up
 * by the broker's own resolver, so the sandbox can still make it ask about
 * <anything>.example.com: a narrow channel to that domain's name servers,
 * which is why the docs advise globs only over domains one trusts.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include "broker.h"
#include "dnsmsg.h"
#include "log.h"

#define DNS_TTL 30
/* How long an answer's name stays tied to its address for raw TCP: longer
 * than the TTL given, since clients cache past it (Java, nscd, pools). */
#define SEEN_KEEP_MS (10 * 60 * 1000ull)
#define DNS_MAX_MSG 1232
/* Queries waiting for the resolver's threads at once; more get SERVFAIL at
 * once. Under a glob rule a sandbox can ask for endless new names, each
 * a lookup that may wait seconds on a slow name server: without a bound, the
 * queue and its memory grow as fast as it sends. */
#define DNS_MAX_INFLIGHT 256

/*
 * Which names this resolver answered with which address, so a raw TCP
 * connection (which carries only an address) can be matched against
 * `proto: tcp` rules naming hosts. Bounded, least recently used out first,
 * each entry kept SEEN_KEEP_MS after its last answer. Scope is the broker: the kernel does
 * not tell a UDP receiver the sender's cgroup, and one sluiced serves one
 * sandbox (one policy), so a name learnt here allows nothing that sandbox
 * could not resolve itself. With --workers N the table is one for all workers
 * (under seen.lock): worker 0 owns the DNS sockets and writes it, a raw
 * connection on any worker reads it.
 */
#define SEEN_MAX 2048
#define SEEN_BUCKETS 512

struct dns_seen {
	struct dns_seen *hnext;          /* bucket chain (by address) */
	struct dns_seen *lprev, *lnext;  /* LRU list, most recent at the head */
	uint64_t expires_ms;
	uint8_t family;                  /* AF_INET or AF_INET6 */
	uint8_t addr[16];
	char name[DNS_SEEN_NAME];
};

static struct {
	pthread_mutex_t lock;
	struct dns_seen *bucket[SEEN_BUCKETS];
	struct dns_seen *head, *tail;    /* LRU */
	size_t n;
} seen = { .lock = PTHREAD_MUTEX_INITIALIZER };

static unsigned seen_hash(int family, const uint8_t *addr)
{
	uint32_t h = 2166136261u;
	size_t i, n = family == AF_INET6 ? 16 : 4;

	for (i = 0; i < n; i++)
		h = (h ^ addr[i]) * 16777619u;
	return h % SEEN_BUCKETS;
}

static void seen_lru_unlink(struct dns_seen *e)
{
	if (e->lprev)
		e->lprev->lnext = e->lnext;
	else
		seen.head = e->lnext;
	if (e->lnext)
		e->lnext->lprev = e->lprev;
	else
		seen.tail = e->lprev;
	e->lprev = e->lnext = NULL;
}

static void seen_lru_front(struct dns_seen *e)
{
	e->lnext = seen.head;
	if (seen.head)
		seen.head->lprev = e;
	seen.head = e;
	if (!seen.tail)
		seen.tail = e;
}

static void seen_remove(struct dns_seen *e)
{
	struct dns_seen **pp = &seen.bucket[seen_hash(e->family, e->addr)];

	for (; *pp; pp = &(*pp)->hnext)
		if (*pp == e) {
			*pp = e->hnext;
			break;
		}
	seen_lru_unlink(e);
	seen.n--;
}

static bool seen_same(const struct dns_seen *e, int family, const uint8_t *addr)
{
	return e->family == family && !memcmp(e->addr, addr, family == AF_INET6 ? 16 : 4);
}

/* Caller holds seen.lock. */
static void seen_add(const char *name, int family, const uint8_t *addr, uint64_t expires_ms)
{
	unsigned h = seen_hash(family, addr);
	struct dns_seen *e;

	if (strlen(name) >= DNS_SEEN_NAME)
		return;
	for (struct dns_seen **pp = &seen.bucket[h]; (e = *pp); pp = &e->hnext)
		if (seen_same(e, family, addr) && !strcasecmp(e->name, name)) {
			/* To the front of its chain too: dns_names_for reads the
			 * first few names of an address, the ones asked for last. */
			*pp = e->hnext;
			e->hnext = seen.bucket[h];
			seen.bucket[h] = e;
			e->expires_ms = expires_ms;
			seen_lru_unlink(e);
			seen_lru_front(e);
			return;
		}
	if (seen.n >= SEEN_MAX) {
		e = seen.tail;
		seen_remove(e);
	} else {
		e = malloc(sizeof(*e));
		if (!e)
			return; /* the mapping is an aid: without it the connection is refused */
	}
	memset(e, 0, sizeof(*e));
	e->family = (uint8_t)family;
	memcpy(e->addr, addr, family == AF_INET6 ? 16 : 4);
	snprintf(e->name, sizeof(e->name), "%s", name);
	e->expires_ms = expires_ms;
	e->hnext = seen.bucket[h];
	seen.bucket[h] = e;
	seen_lru_front(e);
	seen.n++;
}

void dns_seen_note(const char *name, int family, const uint8_t *addr)
{
	pthread_mutex_lock(&seen.lock);
	seen_add(name, family, addr, ev_now_ms() + SEEN_KEEP_MS);
	pthread_mutex_unlock(&seen.lock);
}

size_t dns_names_for(int family, const uint8_t *addr, char (*names)[DNS_SEEN_NAME], size_t max)
{
	uint64_t now = ev_now_ms();
	struct dns_seen *e, *next;
	size_t n = 0;

	pthread_mutex_lock(&seen.lock);
	for (e = seen.bucket[seen_hash(family, addr)]; e; e = next) {
		next = e->hnext;
		if (!seen_same(e, family, addr))
			continue;
		if (e->expires_ms <= now) {
			seen_remove(e);
			free(e);
			continue;
		}
		if (n < max)
			memcpy(names[n++], e->name, DNS_SEEN_NAME);
	}
	pthread_mutex_unlock(&seen.lock);
	return n;
}

void dns_seen_free(void)
{
	struct dns_seen *e;

	pthread_mutex_lock(&seen.lock);
	while ((e = seen.head)) {
		seen_remove(e);
		free(e);
	}
	pthread_mutex_unlock(&seen.lock);
}

struct dns_pending {
	struct broker *b;
	int fd;
	struct sockaddr_storage peer;
	socklen_t peer_len;
	size_t len;
	uint8_t msg[DNS_MAX_MSG];
};

static void send_reply(struct broker *b, int fd, const struct dns_query *q, int rcode,
		       const struct rs_result *r, const struct sockaddr *peer, socklen_t plen)
{
	uint8_t addrs[RS_MAX_ADDRS * 16], out[DNS_MAX_MSG];
	size_t i, n = 0, alen = q->qtype == 28 ? 16 : 4;
	int want = q->qtype == 28 ? AF_INET6 : AF_INET, len;
	struct policy *pol = r ? broker_policy_get(b) : NULL;
	/* Same rule as for dials (conn.c): internal addresses only for pinned
	 * names or names an allow rule spells out. */
	bool named = pol && policy_host_named(pol, q->name, strlen(q->name));

	policy_unref(pol);
	for (i = 0; r && i < r->n; i++) {
		if (r->a[i].family != want)
			continue;
		if (!r->pinned && !named && resolver_addr_internal(b->res, &r->a[i]))
			continue;
		memcpy(addrs + n * alen, r->a[i].addr, alen);
		n++;
	}
	for (i = 0; i < n; i++)
		dns_seen_note(q->name, want, addrs + i * alen);
	len = dns_build_reply(q, rcode, n ? addrs : NULL, n, DNS_TTL, out, sizeof(out));
	if (len < 0) {
		pr_warn("dns: couldn't build the reply for %s: %s", q->name, strerror(-len));
		return;
	}
	if (sendto(fd, out, (size_t)len, MSG_DONTWAIT, peer, plen) < 0)
		pr_debug("dns: sendto: %s", strerror(errno));
}

static void dns_resolved(void *ctx, const struct rs_result *r)
{
	struct dns_pending *p = ctx;
	struct dns_query q;

	p->b->dns_inflight--;
	if (dns_parse_query(p->msg, p->len, &q) == 0)
		send_reply(p->b, p->fd, &q, r->err == -ENOENT ? 3 : r->err ? 2 : 0, r->err ? NULL : r,
			   (struct sockaddr *)&p->peer, p->peer_len);
	free(p);
}

/* A query refused before any lookup gets a 12-byte header, so the client
 * fails at once instead of waiting out its timeout: FORMERR for a message
 * that is not one question we understand, NOTIMP for an opcode other than
 * QUERY, REFUSED for a class other than IN. Never longer than the query,
 * and nothing for a message that is itself a response. */
static void send_header_only(int fd, const uint8_t *msg, size_t len, int rcode,
			     const struct sockaddr *peer, socklen_t plen)
{
	uint8_t out[12] = { 0 };

	if (len < 12 || (msg[2] & 0x80))
		return;
	out[0] = msg[0];
	out[1] = msg[1];
	out[2] = (uint8_t)(0x80 | (msg[2] & 0x79)); /* QR, the opcode and RD as asked */
	out[3] = (uint8_t)rcode;
	if (sendto(fd, out, sizeof(out), MSG_DONTWAIT, peer, plen) < 0)
		pr_debug("dns: sendto: %s", strerror(errno));
}

/* The sandbox can send refused queries as fast as it likes, and the broker's
 * log is a file (often on tmpfs): 20 names per 10 s are logged, the rest
 * counted. Only worker 0 answers DNS. */
static void log_refused(const char *name)
{
	static uint64_t window_ms;
	static unsigned logged, quiet;
	uint64_t now = ev_now_ms();

	if (now - window_ms >= 10000) {
		if (quiet)
			pr_info("dns: %u more names refused in the last %llu s", quiet,
				(unsigned long long)(now - window_ms) / 1000);
		window_ms = now;
		logged = quiet = 0;
	}
	if (logged < 20) {
		logged++;
		pr_info("dns: refused %s (no rule could allow it)", name);
		if (logged == 20)
			pr_info("dns: 20 names refused within 10 s: the rest are counted, not logged");
	} else {
		quiet++;
	}
}

static void handle_query(struct broker *b, int fd, const uint8_t *msg, size_t len,
			 const struct sockaddr *peer, socklen_t plen)
{
	struct dns_query q;
	struct rs_result r;
	struct policy *pol;
	bool may;

	if (dns_parse_query(msg, len, &q)) {
		send_header_only(fd, msg, len, len >= 12 && (msg[2] & 0x78) ? 4 : 1, peer, plen);
		return;
	}
	if (q.qclass != 1) {
		/* CHAOS, HESIOD, ANY: before any lookup or log line */
		send_header_only(fd, msg, len, 5, peer, plen);
		return;
	}
	pol = broker_policy_get(b);
	may = pol && policy_host_may_allow(pol, q.name, strlen(q.name));
	policy_unref(pol);
	if (!may) {
		log_refused(q.name);
		send_reply(b, fd, &q, 5, NULL, peer, plen);
		return;
	}
	if (q.qtype != 1 && q.qtype != 28) {
		send_reply(b, fd, &q, 0, NULL, peer, plen); /* exists, no records of that type */
		return;
	}
	if (resolver_lookup_fast(b->res, q.name, &r) == 0) {
		send_reply(b, fd, &q, 0, &r, peer, plen);
		return;
	}
	if (b->dns_inflight >= DNS_MAX_INFLIGHT) {
		static uint64_t warned_ms;

		if (ev_now_ms() - warned_ms > 10000) {
			warned_ms = ev_now_ms();
			pr_warn("dns: %u lookups already waiting; answering SERVFAIL to new ones (a sandbox "
				"asking for many names at once)", b->dns_inflight);
		}
		send_reply(b, fd, &q, 2, NULL, peer, plen);
		return;
	}
	{
		struct dns_pending *p = malloc(sizeof(*p));

		if (!p)
			return;
		p->b = b;
		p->fd = fd;
		memcpy(&p->peer, peer, plen);
		p->peer_len = plen;
		p->len = len;
		memcpy(p->msg, msg, len);
		b->dns_inflight++;
		if (!resolver_submit(b->res, q.name, dns_resolved, p)) {
			b->dns_inflight--;
			free(p);
		}
	}
}

/* Level-triggered (see main.c): at most 256 datagrams per wake-up so a flood
 * on one socket cannot starve the TCP side; the rest wait for the next turn. */
static void dns_udp_read(struct broker *b, struct ev_io *io)
{
	struct sockaddr_storage peer;
	uint8_t msg[DNS_MAX_MSG];
	socklen_t plen;
	int i;

	for (i = 0; i < 256; i++) {
		ssize_t n;

		plen = sizeof(peer);
		n = recvfrom(io->fd, msg, sizeof(msg), MSG_DONTWAIT, (struct sockaddr *)&peer, &plen);
		if (n < 0)
			return;
		handle_query(b, io->fd, msg, (size_t)n, (struct sockaddr *)&peer, plen);
	}
}

/* One callback per socket: container_of() must name the member the io is. */
void dns_udp_cb(struct ev_io *io, uint32_t events)
{
	dns_udp_read(container_of(io, struct broker, udp[0]), io);
}

void dns_udp6_cb(struct ev_io *io, uint32_t events)
{
	dns_udp_read(container_of(io, struct broker, udp[1]), io);
}
