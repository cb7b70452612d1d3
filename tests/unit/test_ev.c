// SPDX-License-Identifier: MIT
/* The event loop's ev_forget: a connection that closes its upstream fd and
 * dials a new one into the same struct ev_io in the middle of an epoll batch
 * must not get, on the new fd, an event the batch still holds for the old one
 * (a stale error would fail the new dial without trying the next address). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <unistd.h>
#include <cmocka.h>
#include "ev.h"

struct side {
	struct ev_io io;
	struct side *other;
	struct ev_loop *l;
	int calls;
	int pipe[2];
};

/* Whichever of the two runs first in the batch closes the other's fd and
 * forgets its pending event, as up_close does. */
static void on_readable(struct ev_io *io, uint32_t events)
{
	struct side *s = container_of(io, struct side, io);

	(void)events;
	s->calls++;
	ev_forget(s->l, &s->other->io);
}

static void test_forget_drops_pending_event(void **state)
{
	struct ev_loop l;
	struct side a = { 0 }, b = { 0 };

	(void)state;
	assert_int_equal(ev_init(&l), 0);
	a.other = &b;
	b.other = &a;
	a.l = b.l = &l;
	for (struct side *s = &a; s; s = s == &a ? &b : NULL) {
		assert_int_equal(pipe(s->pipe), 0);
		assert_int_equal(write(s->pipe[1], "x", 1), 1);
		s->io.fd = s->pipe[0];
		s->io.cb = on_readable;
		/* level-triggered: each batch reports both again */
		assert_int_equal(ev_add(&l, &s->io, EPOLLIN), 0);
	}
	assert_int_equal(ev_run_once(&l), 0);
	assert_int_equal(a.calls + b.calls, 1);
	/* Only the batch's pending events go, not the registration. */
	assert_int_equal(ev_run_once(&l), 0);
	assert_int_equal(a.calls + b.calls, 2);
	/* Outside a batch it does nothing. */
	ev_forget(&l, &a.io);
	assert_int_equal(ev_run_once(&l), 0);
	assert_int_equal(a.calls + b.calls, 3);
	for (struct side *s = &a; s; s = s == &a ? &b : NULL) {
		close(s->pipe[0]);
		close(s->pipe[1]);
	}
	ev_fini(&l);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_forget_drops_pending_event),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
