// SPDX-License-Identifier: MIT
#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <netdb.h>
#include <pthread.h>
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
	struct resolver *r;
	rs_done_fn done;           /* NULL once cancelled */
	void *ctx;
	struct rs_result res;
	char name[NAME_MAX_LEN];
};

struct resolver {
	struct rs_entry *overrides, *hosts, *cache;
	size_t n_cache;
	struct rs_addr own[64];
	size_t n_own;
	int efd;
	pthread_t th[4];
	unsigned n_th;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct rs_job *todo, *todo_tail, *doneq;
	bool stop;
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

static void load_hosts(struct resolver *r, const char *path)
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
			entry_add(&r->hosts, tok, &a, false);
	}
	fclose(f);
}

static void load_own(struct resolver *r)
{
	struct ifaddrs *ifa, *i;

	if (getifaddrs(&ifa))
		return;
	for (i = ifa; i && r->n_own < 64; i = i->ifa_next) {
		struct rs_addr *a = &r->own[r->n_own];

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
		r->n_own++;
	}
	freeifaddrs(ifa);
}

static void do_getaddrinfo(const char *name, struct rs_result *res)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai, *i;
	int rc;

	memset(res, 0, sizeof(*res));
	rc = getaddrinfo(name, NULL, &hints, &ai);
	if (rc) {
		res->err = (rc == EAI_NONAME || rc == EAI_NODATA) ? -ENOENT : -EAGAIN;
		return;
	}
	for (i = ai; i && res->n < RS_MAX_ADDRS; i = i->ai_next) {
		struct rs_addr *a = &res->a[res->n];

		memset(a, 0, sizeof(*a));
		if (i->ai_family == AF_INET) {
			a->family = AF_INET;
			memcpy(a->addr, &((struct sockaddr_in *)i->ai_addr)->sin_addr, 4);
		} else if (i->ai_family == AF_INET6) {
			a->family = AF_INET6;
			memcpy(a->addr, &((struct sockaddr_in6 *)i->ai_addr)->sin6_addr, 16);
		} else {
			continue;
		}
		res->n++;
	}
	freeaddrinfo(ai);
	if (!res->n)
		res->err = -ENOENT;
}

static void *worker(void *arg)
{
	struct resolver *r = arg;
	uint64_t one = 1;

	pthread_mutex_lock(&r->lock);
	for (;;) {
		struct rs_job *j;

		while (!r->todo && !r->stop)
			pthread_cond_wait(&r->cond, &r->lock);
		if (r->stop)
			break;
		j = r->todo;
		r->todo = j->next;
		if (!r->todo)
			r->todo_tail = NULL;
		pthread_mutex_unlock(&r->lock);
		do_getaddrinfo(j->name, &j->res);
		pthread_mutex_lock(&r->lock);
		j->next = r->doneq;
		r->doneq = j;
		if (write(r->efd, &one, sizeof(one)) < 0)
			pr_warn("resolver: eventfd write failed: %s", strerror(errno));
	}
	pthread_mutex_unlock(&r->lock);
	return NULL;
}

struct resolver *resolver_new(const char *hosts_file, unsigned threads, char *err, size_t errlen)
{
	struct resolver *r = calloc(1, sizeof(*r));
	unsigned i;

	if (!r) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	pthread_mutex_init(&r->lock, NULL);
	pthread_cond_init(&r->cond, NULL);
	r->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (r->efd < 0) {
		snprintf(err, errlen, "Couldn't create the resolver eventfd: %s", strerror(errno));
		free(r);
		return NULL;
	}
	load_hosts(r, hosts_file ? hosts_file : "/etc/hosts");
	load_own(r);
	if (threads < 1)
		threads = 1;
	if (threads > 4)
		threads = 4;
	for (i = 0; i < threads; i++) {
		if (pthread_create(&r->th[i], NULL, worker, r))
			break;
		r->n_th++;
	}
	if (!r->n_th) {
		snprintf(err, errlen, "Couldn't start a resolver thread");
		resolver_free(r);
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

void resolver_free(struct resolver *r)
{
	unsigned i;

	if (!r)
		return;
	pthread_mutex_lock(&r->lock);
	r->stop = true;
	pthread_cond_broadcast(&r->cond);
	pthread_mutex_unlock(&r->lock);
	for (i = 0; i < r->n_th; i++)
		pthread_join(r->th[i], NULL);
	while (r->todo) {
		struct rs_job *j = r->todo;

		r->todo = j->next;
		free(j);
	}
	while (r->doneq) {
		struct rs_job *j = r->doneq;

		r->doneq = j->next;
		free(j);
	}
	list_free(r->overrides);
	list_free(r->hosts);
	list_free(r->cache);
	close(r->efd);
	free(r);
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
	return entry_add(&r->overrides, host, &a, true);
}

bool resolver_is_pinned(const struct resolver *r, const char *host)
{
	char lname[NAME_MAX_LEN];

	lower_copy(lname, host, sizeof(lname));
	return find(r->overrides, lname) != NULL;
}

int resolver_lookup_fast(struct resolver *r, const char *host, struct rs_result *out)
{
	char lname[NAME_MAX_LEN];
	struct rs_entry *e, **pp;
	time_t now;

	lower_copy(lname, host, sizeof(lname));
	if ((e = find(r->overrides, lname)) || (e = find(r->hosts, lname))) {
		*out = e->res;
		return 0;
	}
	memset(out, 0, sizeof(*out));
	if (parse_addr(lname, &out->a[0]) == 0) {
		out->n = 1;
		return 0;
	}
	now = time(NULL);
	for (pp = &r->cache; (e = *pp);) {
		if (e->expires <= now) {
			*pp = e->next;
			free(e);
			r->n_cache--;
			continue;
		}
		if (!strcmp(e->name, lname)) {
			*out = e->res;
			return 0;
		}
		pp = &e->next;
	}
	return -EAGAIN;
}

struct rs_job *resolver_submit(struct resolver *r, const char *host, rs_done_fn done, void *ctx)
{
	struct rs_job *j = calloc(1, sizeof(*j));

	if (!j)
		return NULL;
	j->r = r;
	j->done = done;
	j->ctx = ctx;
	lower_copy(j->name, host, sizeof(j->name));
	pthread_mutex_lock(&r->lock);
	if (r->todo_tail)
		r->todo_tail->next = j;
	else
		r->todo = j;
	r->todo_tail = j;
	pthread_cond_signal(&r->cond);
	pthread_mutex_unlock(&r->lock);
	return j;
}

void resolver_cancel(struct rs_job *j)
{
	if (j)
		j->done = NULL;
}

int resolver_eventfd(const struct resolver *r) { return r->efd; }

void resolver_dispatch(struct resolver *r)
{
	struct rs_job *list;
	uint64_t v;

	if (read(r->efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		pr_warn("resolver: eventfd read failed: %s", strerror(errno));
	pthread_mutex_lock(&r->lock);
	list = r->doneq;
	r->doneq = NULL;
	pthread_mutex_unlock(&r->lock);
	while (list) {
		struct rs_job *j = list;

		list = j->next;
		/* Successful answers are cached so a burst of connections resolves once. */
		if (!j->res.err && r->n_cache < CACHE_MAX && !find(r->cache, j->name)) {
			struct rs_entry *e = calloc(1, sizeof(*e));

			if (e) {
				memcpy(e->name, j->name, sizeof(e->name));
				e->res = j->res;
				e->expires = time(NULL) + CACHE_TTL_SECS;
				e->next = r->cache;
				r->cache = e;
				r->n_cache++;
			}
		}
		if (j->done)
			j->done(j->ctx, &j->res);
		free(j);
	}
}

bool resolver_addr_internal(const struct resolver *r, const struct rs_addr *a)
{
	static const uint8_t v4mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
	struct rs_addr v4;
	size_t i;

	if (a->family == AF_INET6 && !memcmp(a->addr, v4mapped, 12)) {
		memset(&v4, 0, sizeof(v4));
		v4.family = AF_INET;
		memcpy(v4.addr, a->addr + 12, 4);
		a = &v4;
	}
	if (a->family == AF_INET) {
		const uint8_t *b = a->addr;

		if (b[0] == 127 || b[0] == 0 || (b[0] == 169 && b[1] == 254) || b[0] >= 224)
			return true;
	} else {
		static const uint8_t zero[16], one[16] = { [15] = 1 };

		if (!memcmp(a->addr, zero, 16) || !memcmp(a->addr, one, 16) ||
		    (a->addr[0] == 0xfe && (a->addr[1] & 0xc0) == 0x80) || a->addr[0] == 0xff)
			return true;
	}
	for (i = 0; r && i < r->n_own; i++)
		if (r->own[i].family == a->family &&
		    !memcmp(r->own[i].addr, a->addr, a->family == AF_INET ? 4 : 16))
			return true;
	return false;
}
