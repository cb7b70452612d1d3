// SPDX-License-Identifier: MIT
#include <errno.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "ev.h"
#include "log.h"

uint64_t ev_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

uint64_t ev_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

int ev_init(struct ev_loop *l)
{
	memset(l, 0, sizeof(*l));
	l->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (l->epfd < 0)
		return -errno;
	l->now_ms = ev_now_ms();
	return 0;
}

void ev_fini(struct ev_loop *l)
{
	if (l->epfd >= 0)
		close(l->epfd);
	l->epfd = -1;
}

int ev_add(struct ev_loop *l, struct ev_io *io, uint32_t events)
{
	struct epoll_event e = { .events = events, .data.ptr = io };

	return epoll_ctl(l->epfd, EPOLL_CTL_ADD, io->fd, &e) ? -errno : 0;
}

int ev_mod(struct ev_loop *l, struct ev_io *io, uint32_t events)
{
	struct epoll_event e = { .events = events, .data.ptr = io };

	return epoll_ctl(l->epfd, EPOLL_CTL_MOD, io->fd, &e) ? -errno : 0;
}

void ev_del(struct ev_loop *l, struct ev_io *io)
{
	if (io->fd >= 0)
		epoll_ctl(l->epfd, EPOLL_CTL_DEL, io->fd, NULL);
}

void ev_tlist_init(struct ev_loop *l, struct ev_tlist *t, uint32_t dur_ms,
		   void (*expire)(struct ev_tnode *n))
{
	t->head.prev = t->head.next = &t->head;
	t->dur_ms = dur_ms;
	t->expire = expire;
	if (l->n_lists < (int)(sizeof(l->lists) / sizeof(l->lists[0])))
		l->lists[l->n_lists++] = t;
}

void ev_timer_stop(struct ev_tnode *n)
{
	if (!n->next)
		return;
	n->prev->next = n->next;
	n->next->prev = n->prev;
	n->prev = n->next = NULL;
}

void ev_timer_arm(struct ev_loop *l, struct ev_tlist *t, struct ev_tnode *n)
{
	ev_timer_stop(n);
	n->deadline_ms = l->now_ms + t->dur_ms;
	n->prev = t->head.prev;
	n->next = &t->head;
	t->head.prev->next = n;
	t->head.prev = n;
}

static int next_timeout(struct ev_loop *l)
{
	uint64_t best = UINT64_MAX;
	int i;

	for (i = 0; i < l->n_lists; i++) {
		struct ev_tnode *h = l->lists[i]->head.next;

		if (h != &l->lists[i]->head && h->deadline_ms < best)
			best = h->deadline_ms;
	}
	if (best == UINT64_MAX)
		return 1000;
	if (best <= l->now_ms)
		return 0;
	return best - l->now_ms > 1000 ? 1000 : (int)(best - l->now_ms);
}

void ev_forget(struct ev_loop *l, struct ev_io *io)
{
	if (!l->batch)
		return;
	for (int i = l->batch_i + 1; i < l->batch_n; i++)
		if (l->batch[i].data.ptr == io)
			l->batch[i].data.ptr = NULL;
}

int ev_run_once(struct ev_loop *l)
{
	struct epoll_event evs[128];
	int n, i;

	if (l->before_sleep)
		l->before_sleep(l->ctx);
	n = epoll_wait(l->epfd, evs, 128, l->no_wait ? 0 : next_timeout(l));
	l->no_wait = false;
	if (n < 0 && errno != EINTR)
		return -errno;
	l->now_ms = ev_now_ms();
	l->batch = evs;
	l->batch_n = n;
	for (i = 0; i < n; i++) {
		struct ev_io *io = evs[i].data.ptr;

		l->batch_i = i;
		if (io)
			io->cb(io, evs[i].events);
	}
	l->batch = NULL;
	for (i = 0; i < l->n_lists; i++) {
		struct ev_tlist *t = l->lists[i];

		while (t->head.next != &t->head && t->head.next->deadline_ms <= l->now_ms) {
			struct ev_tnode *x = t->head.next;

			ev_timer_stop(x);
			t->expire(x);
		}
	}
	return 0;
}
