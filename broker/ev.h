/* SPDX-License-Identifier: MIT */
/*
 * A small epoll loop (redis ae style): each fd is a struct ev_io with one
 * callback, registered edge-triggered for both directions once, so no
 * re-arming syscalls on the hot path. Timeouts use FIFO lists, one per fixed
 * duration: appending at the tail keeps each list sorted by deadline, so
 * arming, re-arming and expiry are all O(1).
 */
#ifndef SLUICE_EV_H
#define SLUICE_EV_H
#include <stdbool.h>
#include <stdint.h>
#include <sys/epoll.h>

struct ev_io {
	void (*cb)(struct ev_io *io, uint32_t events);
	int fd;
};

struct ev_tnode {
	struct ev_tnode *prev, *next; /* NULL,NULL: not armed */
	uint64_t deadline_ms;         /* CLOCK_MONOTONIC */
};

struct ev_tlist {
	struct ev_tnode head;  /* circular sentinel */
	uint32_t dur_ms;
	void (*expire)(struct ev_tnode *n); /* called with n already unlinked */
};

struct ev_loop {
	int epfd;
	uint64_t now_ms;       /* cached at each wake-up */
	struct ev_tlist *lists[8];
	int n_lists;
	void (*before_sleep)(void *ctx);
	void *ctx;
	bool no_wait;          /* set by before_sleep: work is pending, poll without sleeping */
	bool stop;
	struct epoll_event *batch; /* the events ev_run_once is handing out, or NULL */
	int batch_i, batch_n;
};

/* Returns 0 or -errno. */
int ev_init(struct ev_loop *l);
void ev_fini(struct ev_loop *l);
/* Registers io->fd for events (EPOLLIN|EPOLLOUT|EPOLLET|EPOLLRDHUP usually). Returns 0 or -errno. */
int ev_add(struct ev_loop *l, struct ev_io *io, uint32_t events);
int ev_mod(struct ev_loop *l, struct ev_io *io, uint32_t events);
void ev_del(struct ev_loop *l, struct ev_io *io);
/* io's fd was closed (and io may get a new fd before the batch ends): drops
 * the events of the current batch not yet handed out for io, which were for
 * the old fd. */
void ev_forget(struct ev_loop *l, struct ev_io *io);

void ev_tlist_init(struct ev_loop *l, struct ev_tlist *t, uint32_t dur_ms,
		   void (*expire)(struct ev_tnode *n));
/* (Re)arms n to fire dur_ms of list t from now. */
void ev_timer_arm(struct ev_loop *l, struct ev_tlist *t, struct ev_tnode *n);
void ev_timer_stop(struct ev_tnode *n);
static inline bool ev_timer_armed(const struct ev_tnode *n) { return n->next != NULL; }

uint64_t ev_now_ms(void);
/* CLOCK_MONOTONIC in microseconds (audit durations). */
uint64_t ev_now_us(void);
/* One iteration: before_sleep, epoll_wait (until the next deadline), callbacks, expired timers. */
int ev_run_once(struct ev_loop *l);

#define container_of(ptr, type, member) ((type *)((char *)(ptr) - __builtin_offsetof(type, member)))

#endif /* SLUICE_EV_H */
