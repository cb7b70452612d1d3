// SPDX-License-Identifier: MIT
#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <netdb.h>
#include <pthread.h>
#include <resolv.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>
#include "log.h"
#include "resolve.h"

#define CACHE_TTL_SECS 30
#define CACHE_MAX 1024
#define NAME_MAX_LEN 256

struct rs_entry {              /* overrides, /etc/hosts and the cache */
	struct rs_entry *next;
	time_t expires;            /* 0 = never */
	struct rs_result res;
	char name[NAME_MAX_LEN];
};

struct rs_job {
	struct rs_job *next;
	struct resolver *r;        /* the handle whose loop runs done */
	rs_done_fn done;           /* NULL once cancelled */
	void *ctx;
	struct rs_result res;
	char name[NAME_MAX_LEN];
};

/*
 * What every worker shares: the lookup threads, their queue, the names and
 * the cache. Overrides, /etc/hosts and the own addresses are written before
 * any worker starts and only read after, so they need no lock; the cache and
 * the queues are under lock.
 */
struct rs_core {
	struct rs_entry *overrides, *hosts, *cache;
	size_t n_cache;
	struct rs_addr own[64];
	size_t n_own;
	pthread_t th[4];
	unsigned n_th;
	unsigned refs;             /* handles; under lock */
	pthread_mutex_t lock;
	pthread_cond_t cond;       /* work queued, or stop */
	pthread_cond_t idle;       /* a thread finished a job (resolver_free waits on it) */
	struct rs_job *todo, *todo_tail;
	bool stop;
};

/* One per event loop: finished jobs come back to the loop that asked, through
 * its own eventfd, so callbacks always run on the submitting thread. */
struct resolver {
	struct rs_core *c;
	int efd;
	unsigned busy;             /* jobs of this handle in a lookup thread; under c->lock */
	struct rs_job *doneq;      /* under c->lock */
};

static int parse_addr(const char *s, struct rs_addr *a)
{
	char tmp[64];
	size_t n = strlen(s);

	if (n >= 2 && s[0] == '[' && s[n - 1] == ']') {
		if (n - 2 >= sizeof(tmp))
			return -EINVAL;
		memcpy(tmp, s + 1, n - 2);
		tmp[n - 2] = 0;
		s = tmp;
	}
	memset(a, 0, sizeof(*a));
	if (inet_pton(AF_INET, s, a->addr) == 1) {
		a->family = AF_INET;
		return 0;
	}
	if (inet_pton(AF_INET6, s, a->addr) == 1) {
		a->family = AF_INET6;
		return 0;
	}
	return -EINVAL;
}

static void lower_copy(char *dst, const char *src, size_t cap)
{
	size_t i;

	for (i = 0; src[i] && i + 1 < cap; i++)
		dst[i] = (src[i] >= 'A' && src[i] <= 'Z') ? src[i] + 32 : src[i];
	dst[i] = 0;
	if (i && dst[i - 1] == '.')
		dst[i - 1] = 0;
}

static struct rs_entry *find(struct rs_entry *list, const char *name)
{
	for (; list; list = list->next)
		if (!strcmp(list->name, name))
			return list;
	return NULL;
}

static int entry_add(struct rs_entry **list, const char *name, const struct rs_addr *a, bool pinned)
{
	char lname[NAME_MAX_LEN];
	struct rs_entry *e;

	lower_copy(lname, name, sizeof(lname));
	e = find(*list, lname);
	if (!e) {
		e = calloc(1, sizeof(*e));
		if (!e)
			return -ENOMEM;
		memcpy(e->name, lname, sizeof(lname));
		e->res.pinned = pinned;
		e->next = *list;
		*list = e;
	}
	if (e->res.n < RS_MAX_ADDRS)
		e->res.a[e->res.n++] = *a;
	return 0;
}

static void load_hosts(struct rs_core *c, const char *path)
{
	char line[1024];
	FILE *f = fopen(path, "re");

	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		char *save, *tok, *hash = strchr(line, '#');
		struct rs_addr a;

		if (hash)
			*hash = 0;
		tok = strtok_r(line, " \t\r\n", &save);
		if (!tok || parse_addr(tok, &a))
			continue;
		while ((tok = strtok_r(NULL, " \t\r\n", &save)))
			entry_add(&c->hosts, tok, &a, false);
	}
	fclose(f);
}

static void load_own(struct rs_core *c)
{
	struct ifaddrs *ifa, *i;

	if (getifaddrs(&ifa))
		return;
	for (i = ifa; i && c->n_own < 64; i = i->ifa_next) {
		struct rs_addr *a = &c->own[c->n_own];

		if (!i->ifa_addr)
			continue;
		memset(a, 0, sizeof(*a));
		if (i->ifa_addr->sa_family == AF_INET) {
			a->family = AF_INET;
			memcpy(a->addr, &((struct sockaddr_in *)i->ifa_addr)->sin_addr, 4);
		} else if (i->ifa_addr->sa_family == AF_INET6) {
			a->family = AF_INET6;
			memcpy(a->addr, &((struct sockaddr_in6 *)i->ifa_addr)->sin6_addr, 16);
		} else {
			continue;
		}
		c->n_own++;
	}
	freeifaddrs(ifa);
}

static void do_getaddrinfo(const char *name, struct rs_result *res)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai, *i;
	int rc;

	memset(res, 0, sizeof(*res));
	/* The name looked up must be the name the rules checked: no search list
	 * or default domain from resolv.conf ("db" must not become db.corp.example,
	 * a name a deny rule may cover). A trailing dot would do it too, but glibc
	 * then skips /etc/hosts. _res is this thread's, and glibc takes a _res
	 * whose options differ from resolv.conf's for one the program set up
	 * itself: it would never reload it when resolv.conf changes (a VPN, DHCP).
	 * res_init() before every lookup reloads it (glibc re-parses the file
	 * only when its stat changed), then the options are set again. */
	res_init();
	_res.options &= ~(unsigned long)(RES_DEFNAMES | RES_DNSRCH);
	rc = getaddrinfo(name, NULL, &hints, &ai);
	if (rc) {
		res->err = (rc == EAI_NONAME || rc == EAI_NODATA) ? -ENOENT : -EAGAIN;
		return;
	}
	/* Both families get room: a name with eight addresses of the family
	 * sorted first must still answer a query for the other. The first pass
	 * takes up to half the slots per family, in getaddrinfo's order; the
	 * second fills the rest with what is left. */
	for (int pass = 0; pass < 2; pass++) {
		size_t seen4 = 0, seen6 = 0;

		for (i = ai; i && res->n < RS_MAX_ADDRS; i = i->ai_next) {
			struct rs_addr *a = &res->a[res->n];
			size_t k;

			if (i->ai_family == AF_INET)
				k = seen4++;
			else if (i->ai_family == AF_INET6)
				k = seen6++;
			else
				continue;
			if ((k < RS_MAX_ADDRS / 2) != (pass == 0))
				continue;
			memset(a, 0, sizeof(*a));
			a->family = i->ai_family;
			if (i->ai_family == AF_INET)
				memcpy(a->addr, &((struct sockaddr_in *)i->ai_addr)->sin_addr, 4);
			else
				memcpy(a->addr, &((struct sockaddr_in6 *)i->ai_addr)->sin6_addr, 16);
			res->n++;
		}
	}
	freeaddrinfo(ai);
	if (!res->n)
		res->err = -ENOENT;
}

static void *worker(void *arg)
{
	struct rs_core *c = arg;
	uint64_t one = 1;

	pthread_mutex_lock(&c->lock);
	for (;;) {
		struct rs_job *j;

		while (!c->todo && !c->stop)
			pthread_cond_wait(&c->cond, &c->lock);
		if (c->stop)
			break;
		j = c->todo;
		c->todo = j->next;
		if (!c->todo)
			c->todo_tail = NULL;
		j->r->busy++;
		pthread_mutex_unlock(&c->lock);
		do_getaddrinfo(j->name, &j->res);
		pthread_mutex_lock(&c->lock);
		j->next = j->r->doneq;
		j->r->doneq = j;
		if (write(j->r->efd, &one, sizeof(one)) < 0)
			pr_warn("resolver: eventfd write failed: %s", strerror(errno));
		if (!--j->r->busy)
			pthread_cond_broadcast(&c->idle);
	}
	pthread_mutex_unlock(&c->lock);
	return NULL;
}

static struct resolver *handle_new(struct rs_core *c, char *err, size_t errlen)
{
	struct resolver *r = calloc(1, sizeof(*r));

	if (!r) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	r->c = c;
	r->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (r->efd < 0) {
		snprintf(err, errlen, "Couldn't create the resolver eventfd: %s", strerror(errno));
		free(r);
		return NULL;
	}
	return r;
}

static void list_free(struct rs_entry *e)
{
	while (e) {
		struct rs_entry *n = e->next;

		free(e);
		e = n;
	}
}

static void core_free(struct rs_core *c)
{
	unsigned i;

	pthread_mutex_lock(&c->lock);
	c->stop = true;
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
	for (i = 0; i < c->n_th; i++)
		pthread_join(c->th[i], NULL);
	list_free(c->overrides);
	list_free(c->hosts);
	list_free(c->cache);
	pthread_mutex_destroy(&c->lock);
	pthread_cond_destroy(&c->cond);
	pthread_cond_destroy(&c->idle);
	free(c);
}

struct resolver *resolver_new(const char *hosts_file, unsigned threads, char *err, size_t errlen)
{
	struct rs_core *c = calloc(1, sizeof(*c));
	struct resolver *r;
	unsigned i;

	if (!c) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	pthread_mutex_init(&c->lock, NULL);
	pthread_cond_init(&c->cond, NULL);
	pthread_cond_init(&c->idle, NULL);
	c->refs = 1;
	r = handle_new(c, err, errlen);
	if (!r) {
		core_free(c);
		return NULL;
	}
	load_hosts(c, hosts_file ? hosts_file : "/etc/hosts");
	load_own(c);
	if (threads < 1)
		threads = 1;
	if (threads > 4)
		threads = 4;
	for (i = 0; i < threads; i++) {
		if (pthread_create(&c->th[i], NULL, worker, c))
			break;
		c->n_th++;
	}
	if (!c->n_th) {
		snprintf(err, errlen, "Couldn't start a resolver thread");
		resolver_free(r);
		return NULL;
	}
	return r;
}

struct resolver *resolver_clone(struct resolver *r, char *err, size_t errlen)
{
	struct resolver *n = handle_new(r->c, err, errlen);

	if (!n)
		return NULL;
	pthread_mutex_lock(&r->c->lock);
	r->c->refs++;
	pthread_mutex_unlock(&r->c->lock);
	return n;
}

void resolver_free(struct resolver *r)
{
	struct rs_core *c;
	struct rs_job **pp, *j, *done;
	bool last;

	if (!r)
		return;
	c = r->c;
	pthread_mutex_lock(&c->lock);
	/* This handle's queued jobs go; the ones a thread is running finish
	 * first, since they come back to this handle. */
	c->todo_tail = NULL;
	for (pp = &c->todo; (j = *pp);) {
		if (j->r == r) {
			*pp = j->next;
			free(j);
			continue;
		}
		c->todo_tail = j;
		pp = &j->next;
	}
	while (r->busy)
		pthread_cond_wait(&c->idle, &c->lock);
	done = r->doneq;
	r->doneq = NULL;
	last = --c->refs == 0;
	pthread_mutex_unlock(&c->lock);
	while (done) {
		j = done;
		done = j->next;
		free(j);
	}
	close(r->efd);
	free(r);
	if (last)
		core_free(c);
}

int resolver_add_override(struct resolver *r, const char *spec, char *err, size_t errlen)
{
	const char *colon = strchr(spec, ':');
	char host[NAME_MAX_LEN];
	struct rs_addr a;

	if (!colon || colon == spec || (size_t)(colon - spec) >= sizeof(host) ||
	    parse_addr(colon + 1, &a)) {
		snprintf(err, errlen, "--resolve %s: expected HOST:ADDR (e.g. api.example.com:10.0.0.5 "
			 "or api.example.com:[fd00::5])", spec);
		return -EINVAL;
	}
	memcpy(host, spec, (size_t)(colon - spec));
	host[colon - spec] = 0;
	return entry_add(&r->c->overrides, host, &a, true);
}

bool resolver_is_pinned(const struct resolver *r, const char *host)
{
	char lname[NAME_MAX_LEN];

	lower_copy(lname, host, sizeof(lname));
	return find(r->c->overrides, lname) != NULL;
}

int resolver_lookup_fast(struct resolver *r, const char *host, struct rs_result *out)
{
	struct rs_core *c = r->c;
	char lname[NAME_MAX_LEN];
	struct rs_entry *e, **pp, *dead = NULL;
	time_t now;
	int rc = -EAGAIN;

	lower_copy(lname, host, sizeof(lname));
	if ((e = find(c->overrides, lname)) || (e = find(c->hosts, lname))) {
		*out = e->res;
		return 0;
	}
	memset(out, 0, sizeof(*out));
	if (parse_addr(lname, &out->a[0]) == 0) {
		out->n = 1;
		return 0;
	}
	now = time(NULL);
	pthread_mutex_lock(&c->lock);
	for (pp = &c->cache; (e = *pp);) {
		if (e->expires <= now) {
			*pp = e->next;
			e->next = dead;
			dead = e;
			c->n_cache--;
			continue;
		}
		if (!strcmp(e->name, lname)) {
			*out = e->res;
			rc = 0;
			break;
		}
		pp = &e->next;
	}
	pthread_mutex_unlock(&c->lock);
	list_free(dead);
	return rc;
}

struct rs_job *resolver_submit(struct resolver *r, const char *host, rs_done_fn done, void *ctx)
{
	struct rs_core *c = r->c;
	struct rs_job *j = calloc(1, sizeof(*j));

	if (!j)
		return NULL;
	j->r = r;
	j->done = done;
	j->ctx = ctx;
	lower_copy(j->name, host, sizeof(j->name));
	pthread_mutex_lock(&c->lock);
	if (c->todo_tail)
		c->todo_tail->next = j;
	else
		c->todo = j;
	c->todo_tail = j;
	pthread_cond_signal(&c->cond);
	pthread_mutex_unlock(&c->lock);
	return j;
}

void resolver_cancel(struct rs_job *j)
{
	if (j)
		j->done = NULL;
}

int resolver_eventfd(const struct resolver *r) { return r->efd; }

/* Successful answers are cached so a burst of connections (on any worker)
 * resolves once. Caller holds c->lock. */
static void cache_put(struct rs_core *c, const struct rs_job *j, struct rs_entry **spare)
{
	struct rs_entry *e = *spare;

	if (!e || j->res.err || c->n_cache >= CACHE_MAX || find(c->cache, j->name))
		return;
	*spare = NULL;
	memcpy(e->name, j->name, sizeof(e->name));
	e->res = j->res;
	e->expires = time(NULL) + CACHE_TTL_SECS;
	e->next = c->cache;
	c->cache = e;
	c->n_cache++;
}

void resolver_dispatch(struct resolver *r)
{
	struct rs_core *c = r->c;
	struct rs_job *list, *j;
	struct rs_entry *spare = NULL;
	uint64_t v;

	if (read(r->efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		pr_warn("resolver: eventfd read failed: %s", strerror(errno));
	pthread_mutex_lock(&c->lock);
	list = r->doneq;
	r->doneq = NULL;
	pthread_mutex_unlock(&c->lock);
	while (list) {
		j = list;
		list = j->next;
		if (!j->res.err) {
			/* allocated outside the lock: the other workers' lookups wait on it */
			if (!spare)
				spare = calloc(1, sizeof(*spare));
			pthread_mutex_lock(&c->lock);
			cache_put(c, j, &spare);
			pthread_mutex_unlock(&c->lock);
		}
		if (j->done)
			j->done(j->ctx, &j->res);
		free(j);
	}
	free(spare);
}

static bool addr_bindable(const struct rs_addr *a)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	int fd, rc;

	memset(&ss, 0, sizeof(ss));
	if (a->family == AF_INET) {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;

		s4->sin_family = AF_INET;
		memcpy(&s4->sin_addr, a->addr, 4);
		sl = sizeof(*s4);
	} else {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;

		s6->sin6_family = AF_INET6;
		memcpy(&s6->sin6_addr, a->addr, 16);
		sl = sizeof(*s6);
	}
	fd = socket(a->family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return true;
	rc = bind(fd, (struct sockaddr *)&ss, sl);
	close(fd);
	return rc == 0;
}

bool resolver_addr_internal(const struct resolver *r, const struct rs_addr *a)
{
	static const uint8_t v4mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
	/* NAT64 (RFC 6052 well-known prefix): the IPv4 address it carries counts */
	static const uint8_t nat64[12] = { 0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0 };
	/* NAT64 local-use prefix (RFC 8215), 64:ff9b:1::/48: the last 32 bits */
	static const uint8_t nat64l[6] = { 0, 0x64, 0xff, 0x9b, 0, 0x01 };
	/* IPv4-compatible (deprecated, ::a.b.c.d; :: and ::1 are handled below) */
	static const uint8_t v4compat[12];
	/* cloud metadata services outside link-local: AWS's IPv6 IMDS, GCP's */
	static const uint8_t imds6[16] = { 0xfd, 0, 0x0e, 0xc2, [15] = 0x54, [14] = 0x02 };
	static const uint8_t gcp6[16] = { 0xfd, 0x20, 0, 0xce, [14] = 0x02, [15] = 0x54 };
	struct rs_addr v4;
	size_t i;

	if (a->family == AF_INET6 && (!memcmp(a->addr, imds6, 16) || !memcmp(a->addr, gcp6, 16)))
		return true;
	if (a->family == AF_INET6 &&
	    (!memcmp(a->addr, v4mapped, 12) || !memcmp(a->addr, nat64, 12) || !memcmp(a->addr, nat64l, 6) ||
	     (!memcmp(a->addr, v4compat, 12) && (a->addr[12] || a->addr[13])) ||
	     (a->addr[0] == 0x20 && a->addr[1] == 0x02))) {
		/* 6to4 (2002::/16) carries the IPv4 address in bits 16-47 */
		size_t off = a->addr[0] == 0x20 ? 2 : 12;

		memset(&v4, 0, sizeof(v4));
		v4.family = AF_INET;
		memcpy(v4.addr, a->addr + off, 4);
		a = &v4;
	}
	if (a->family == AF_INET) {
		const uint8_t *b = a->addr;

		/* loopback, "this network", link-local (metadata at 169.254.169.254),
		 * multicast and reserved, shared address space 100.64/10 (carrier NAT,
		 * Tailscale's 100.100.100.100, Alibaba's metadata at 100.100.100.200),
		 * Azure's WireServer 168.63.129.16 */
		if (b[0] == 127 || b[0] == 0 || (b[0] == 169 && b[1] == 254) || b[0] >= 224 ||
		    (b[0] == 100 && (b[1] & 0xc0) == 64) ||
		    (b[0] == 168 && b[1] == 63 && b[2] == 129 && b[3] == 16))
			return true;
	} else {
		static const uint8_t zero[16], one[16] = { [15] = 1 };

		if (!memcmp(a->addr, zero, 16) || !memcmp(a->addr, one, 16) ||
		    (a->addr[0] == 0xfe && (a->addr[1] & 0xc0) == 0x80) || a->addr[0] == 0xff)
			return true;
	}
	for (i = 0; r && i < r->c->n_own; i++)
		if (r->c->own[i].family == a->family &&
		    !memcmp(r->c->own[i].addr, a->addr, a->family == AF_INET ? 4 : 16))
			return true;
	/* The list above is from startup: an address added since (a docker
	 * bridge, a VPN, a new lease) is this host's if it can be bound here.
	 * Fails closed when no socket can be made. */
	return r && addr_bindable(a);
}
