// SPDX-License-Identifier: MIT
/*
 * Streaming multi-pattern find-and-replace.
 *
 * Needles are grouped by their first byte; within a group they are sorted
 * longest first and share a common prefix (placeholders all start with
 * "SLUICE_PLACEHOLDER_"), checked once per candidate. Candidates are found
 * with memchr when every needle starts with the same byte (the placeholder
 * case), else with a 256-entry table. Non-matching bytes are emitted in runs
 * straight from the caller's buffer; only a tail that is a proper prefix of
 * some needle is held back in the carry (at most max_needle-1 bytes), so a
 * response without placeholders flows through with no copy and no delay.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "subst.h"

struct subst {
	size_t n, max_needle;
	struct subst_pat *pats;      /* sorted: by first byte, then longest first */
	uint32_t grp_start[256], grp_end[256];
	uint16_t grp_prefix[256];    /* bytes every needle of the group shares */
	int single_first;            /* the only first byte in use, or -1 */
};

static int pat_cmp(const void *a, const void *b)
{
	const struct subst_pat *x = a, *y = b;
	unsigned char fx = (unsigned char)x->needle[0], fy = (unsigned char)y->needle[0];

	if (fx != fy)
		return fx < fy ? -1 : 1;
	if (x->needle_len != y->needle_len)
		return x->needle_len > y->needle_len ? -1 : 1;
	return 0;
}

struct subst *subst_compile(const struct subst_pat *pats, size_t n)
{
	struct subst *s;
	int firsts = 0;

	if (n && !pats)
		return NULL;
	for (size_t i = 0; i < n; i++)
		if (!pats[i].needle || !pats[i].needle_len || pats[i].needle_len > SUBST_NEEDLE_MAX ||
		    (pats[i].repl_len && !pats[i].repl))
			return NULL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->n = n;
	s->single_first = -1;
	if (n) {
		s->pats = malloc(n * sizeof(*s->pats));
		if (!s->pats) {
			free(s);
			return NULL;
		}
		memcpy(s->pats, pats, n * sizeof(*s->pats));
		qsort(s->pats, n, sizeof(*s->pats), pat_cmp);
	}
	for (size_t i = 0; i < n; ) {
		unsigned char f = (unsigned char)s->pats[i].needle[0];
		size_t j = i, cp = s->pats[i].needle_len;

		while (j < n && (unsigned char)s->pats[j].needle[0] == f) {
			size_t k = 0;

			while (k < cp && k < s->pats[j].needle_len && s->pats[j].needle[k] == s->pats[i].needle[k])
				k++;
			cp = k;
			if (s->pats[j].needle_len > s->max_needle)
				s->max_needle = s->pats[j].needle_len;
			j++;
		}
		s->grp_start[f] = (uint32_t)i;
		s->grp_end[f] = (uint32_t)j;
		s->grp_prefix[f] = (uint16_t)cp;
		s->single_first = f;
		firsts++;
		i = j;
	}
	if (firsts != 1)
		s->single_first = -1;
	return s;
}

void subst_free(struct subst *s)
{
	if (!s)
		return;
	free(s->pats);
	free(s);
}

size_t subst_max_needle(const struct subst *s)
{
	return s ? s->max_needle : 0;
}

void subst_stream_init(struct subst_stream *st, const struct subst *s)
{
	memset(st, 0, sizeof(*st));
	st->s = s;
}

void subst_stream_fini(struct subst_stream *st)
{
	if (st->xbuf) {
		/* it may hold part of a secret value */
		explicit_bzero(st->xbuf, st->xcap);
		free(st->xbuf);
	}
	st->xbuf = NULL;
	st->xcap = 0;
	st->carry_len = 0;
}

/* Where the carry lives: in the stream, or for long needles on the heap. */
static char *carry_of(struct subst_stream *st)
{
	return st->xbuf ? st->xbuf : st->carry;
}

enum { EVAL_NONE, EVAL_MATCH, EVAL_PENDING };

/* At buf[0..len): the longest needle matching here, or PENDING when more
 * bytes could still make a (longer) needle match. */
static int eval_at(const struct subst *s, const char *buf, size_t len, bool final,
		   const struct subst_pat **hit)
{
	unsigned char f = (unsigned char)buf[0];
	const struct subst_pat *g = s->pats + s->grp_start[f], *ge = s->pats + s->grp_end[f];
	size_t cp = s->grp_prefix[f];

	if (g == ge)
		return EVAL_NONE;
	if (memcmp(buf, g->needle, cp < len ? cp : len))
		return EVAL_NONE;
	if (len < cp)
		return final ? EVAL_NONE : EVAL_PENDING;
	for (; g < ge; g++) {
		if (g->needle_len <= len) {
			if (!memcmp(buf + cp, g->needle + cp, g->needle_len - cp)) {
				*hit = g;
				return EVAL_MATCH;
			}
		} else if (!final && !memcmp(buf + cp, g->needle + cp, len - cp)) {
			return EVAL_PENDING;
		}
	}
	return EVAL_NONE;
}

static const char *next_candidate(const struct subst *s, const char *p, const char *end)
{
	if (s->single_first >= 0)
		return memchr(p, s->single_first, (size_t)(end - p));
	for (; p < end; p++)
		if (s->grp_end[(unsigned char)*p] != s->grp_start[(unsigned char)*p])
			return p;
	return NULL;
}

/*
 * Scans candidate positions [start, limit) of buf[0..len) and emits what
 * precedes each decision. Returns 0 with *stop = where to resume (>= limit,
 * past a match that ran beyond limit), or 1 with *stop = the start of a
 * pending partial match that must be carried, or -errno.
 */
static int scan(const struct subst *s, const char *buf, size_t len, size_t start, size_t limit,
		bool final, subst_emit_fn emit, subst_match_fn on_match, void *ctx, size_t *stop)
{
	const char *end = buf + limit, *p = buf + start, *run = p;
	int ret;

	while (p < end) {
		const char *q = next_candidate(s, p, end);
		const struct subst_pat *hit = NULL;
		int r;

		if (!q)
			break;
		r = eval_at(s, q, (size_t)(buf + len - q), final, &hit);
		if (r == EVAL_NONE) {
			p = q + 1;
			continue;
		}
		if (q > run && (ret = emit(ctx, run, (size_t)(q - run))))
			return ret;
		if (r == EVAL_PENDING) {
			*stop = (size_t)(q - buf);
			return 1;
		}
		r = on_match ? on_match(ctx, hit->id) : 0;
		if (r < 0)
			return r;
		if (r == 0)
			ret = hit->repl_len ? emit(ctx, hit->repl, hit->repl_len) : 0;
		else
			ret = emit(ctx, hit->needle, hit->needle_len);
		if (ret)
			return ret;
		p = run = q + hit->needle_len;
	}
	if (run < end && (ret = emit(ctx, run, (size_t)(end - run))))
		return ret;
	*stop = p > end ? (size_t)(p - buf) : limit;
	return 0;
}

int subst_stream_feed(struct subst_stream *st, const char *in, size_t n,
		      subst_emit_fn emit, subst_match_fn on_match, void *ctx)
{
	const struct subst *s = st->s;
	size_t off = 0, stop;
	int r;

	st->last_on_match = on_match;
	if (!n)
		return 0;
	if (!s || !s->n)
		return emit(ctx, in, n);
	if (st->carry_len) {
		/* Candidates that start in the carry: look at them through a small
		 * window of carry + the first max_needle-1 new bytes. A heap carry
		 * is its own window (it has room for both). */
		char ws[2 * SUBST_CARRY_MAX], *w = st->xbuf ? st->xbuf : ws;
		size_t take = n < s->max_needle - 1 ? n : s->max_needle - 1, cl = st->carry_len;

		if (!st->xbuf)
			memcpy(w, st->carry, cl);
		memcpy(w + cl, in, take);
		r = scan(s, w, cl + take, 0, cl, false, emit, on_match, ctx, &stop);
		if (r < 0)
			return r;
		if (r == 1) {
			/* only possible when all of in fit in the window */
			st->carry_len = cl + take - stop;
			memmove(carry_of(st), w + stop, st->carry_len);
			return 0;
		}
		st->carry_len = 0;
		off = stop - cl;
	}
	r = scan(s, in, n, off, n, false, emit, on_match, ctx, &stop);
	if (r < 0)
		return r;
	if (r == 1) {
		if (s->max_needle > SUBST_CARRY_MAX && !st->xbuf) {
			st->xbuf = malloc(2 * s->max_needle);
			if (!st->xbuf)
				return -ENOMEM;
			st->xcap = 2 * s->max_needle;
		}
		st->carry_len = n - stop;
		memcpy(carry_of(st), in + stop, st->carry_len);
	}
	return 0;
}

int subst_stream_finish(struct subst_stream *st, subst_emit_fn emit, void *ctx)
{
	size_t stop, cl = st->carry_len;
	int r;

	if (!cl)
		return 0;
	st->carry_len = 0;
	if (!st->s || !st->s->n)
		return emit(ctx, carry_of(st), cl);
	r = scan(st->s, carry_of(st), cl, 0, cl, true, emit, st->last_on_match, ctx, &stop);
	return r < 0 ? r : 0;
}
