/* SPDX-License-Identifier: MIT */
/*
 * Name resolution for the broker, off the event loop: --resolve overrides and
 * /etc/hosts answer at once; other names go to resolver threads running
 * getaddrinfo, whose results come back through an eventfd the loop watches,
 * and are cached briefly. Several event loops (workers) share one resolver
 * through handles (resolver_clone): threads, names and cache are shared, each
 * handle has its own eventfd, and a job's callback runs on the loop that
 * submitted it.
 */
#ifndef SLUICE_RESOLVE_H
#define SLUICE_RESOLVE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RS_MAX_ADDRS 8

struct rs_addr {
	int family;          /* AF_INET or AF_INET6 */
	uint8_t addr[16];    /* IPv4 in addr[0..3] */
};

struct rs_result {
	int err;             /* 0, or -errno (-ENOENT: no such name, -EAGAIN: temporary) */
	bool pinned;         /* from --resolve: the operator chose these addresses */
	size_t n;
	struct rs_addr a[RS_MAX_ADDRS];
};

struct resolver;
struct rs_job;
typedef void (*rs_done_fn)(void *ctx, const struct rs_result *r);

/* Returns NULL with a message in err. hosts_file NULL = /etc/hosts. */
struct resolver *resolver_new(const char *hosts_file, unsigned threads, char *err, size_t errlen);
/* Frees this handle (its queued jobs are dropped, running ones waited for);
 * the shared part goes with the last handle. */
void resolver_free(struct resolver *r);
/* Another handle on r's threads, names and cache, for another event loop.
 * Returns NULL with a message in err. Overrides must be added before. */
struct resolver *resolver_clone(struct resolver *r, char *err, size_t errlen);
/* "HOST:ADDR" (ADDR v4 or v6, brackets allowed); repeatable per host. Returns 0 or -EINVAL. */
int resolver_add_override(struct resolver *r, const char *spec, char *err, size_t errlen);
bool resolver_is_pinned(const struct resolver *r, const char *host);

/* Answers from overrides, address literals, /etc/hosts or the cache: returns 0
 * with out filled, or -EAGAIN when the name needs the resolver threads. */
int resolver_lookup_fast(struct resolver *r, const char *host, struct rs_result *out);
/* Queues a lookup; done runs later on the loop thread (from resolver_dispatch).
 * Returns the job (for resolver_cancel) or NULL on ENOMEM. */
struct rs_job *resolver_submit(struct resolver *r, const char *host, rs_done_fn done, void *ctx);
/* done will not be called for this job. Only from the loop thread. */
void resolver_cancel(struct rs_job *j);
int resolver_eventfd(const struct resolver *r);
/* Runs the callbacks of finished jobs; call when the eventfd is readable. */
void resolver_dispatch(struct resolver *r);

/* Loopback, link-local, unspecified, multicast, or one of this host's own
 * interface addresses: never dialled unless the operator pinned the name. */
bool resolver_addr_internal(const struct resolver *r, const struct rs_addr *a);

#endif /* SLUICE_RESOLVE_H */
