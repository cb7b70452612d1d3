// SPDX-License-Identifier: MIT
/*
 * Streaming substitution (policy/subst.h): the same haystack fed in random
 * pieces, fed whole, and run through a naive leftmost-longest reference must
 * give the same bytes, the same matches in the same order and the same error.
 * Input: n_pats, then per pattern (needle len, needle, repl len, repl,
 * action), then n_splits and the piece sizes, then the haystack.
 */
#include "fuzz.h"
#include "subst.h"

#define MAX_PATS 8
#define MAX_MATCHES 4096

enum { ACT_REPLACE, ACT_KEEP, ACT_ABORT };

struct sink {
	char *out;
	size_t len, cap;
	int ids[MAX_MATCHES];
	size_t n_ids;
	const int *act;       /* action per id */
};

static int sink_emit(void *ctx, const char *d, size_t n)
{
	struct sink *k = ctx;

	if (!n)
		fz_die("emit called with 0 bytes");
	if (k->len + n > k->cap) {
		k->cap = (k->len + n) * 2;
		k->out = realloc(k->out, k->cap);
		if (!k->out)
			abort();
	}
	memcpy(k->out + k->len, d, n);
	k->len += n;
	return 0;
}

static int sink_match(void *ctx, int id)
{
	struct sink *k = ctx;

	if (k->n_ids < MAX_MATCHES)
		k->ids[k->n_ids++] = id;
	switch (k->act[id]) {
	case ACT_KEEP: return 1;
	case ACT_ABORT: return -EACCES;
	default: return 0;
	}
}

/* Leftmost match, longest needle at that position, no overlap. */
static int reference(const struct subst_pat *p, size_t np, const char *h, size_t n, struct sink *k)
{
	size_t i = 0, run = 0;

	while (i < n) {
		const struct subst_pat *best = NULL;
		int r;

		for (size_t j = 0; j < np; j++)
			if (p[j].needle_len <= n - i && !memcmp(h + i, p[j].needle, p[j].needle_len) &&
			    (!best || p[j].needle_len > best->needle_len))
				best = &p[j];
		if (!best) {
			i++;
			continue;
		}
		if (i > run)
			sink_emit(k, h + run, i - run);
		r = sink_match(k, best->id);
		if (r < 0)
			return r;
		if (r == 0 && best->repl_len)
			sink_emit(k, best->repl, best->repl_len);
		else if (r == 1)
			sink_emit(k, best->needle, best->needle_len);
		i = run = i + best->needle_len;
	}
	if (n > run)
		sink_emit(k, h + run, n - run);
	return 0;
}

static int streamed(const struct subst *s, const char *h, size_t n, const uint8_t *splits,
		    size_t n_splits, struct sink *k)
{
	struct subst_stream st;
	size_t off = 0, si = 0;
	int r;

	subst_stream_init(&st, s);
	while (off < n) {
		size_t piece = n_splits ? splits[si++ % n_splits] : n - off;
		char *c;

		/* An empty feed must be harmless; then move on by one byte. */
		if (!piece && (r = subst_stream_feed(&st, h + off, 0, sink_emit, sink_match, k)))
			return r;
		if (!piece)
			piece = 1;
		if (piece > n - off)
			piece = n - off;
		/* Exact-size copy, freed right away: the stream must keep nothing pointing into it. */
		c = fz_dup(h + off, piece);
		r = subst_stream_feed(&st, c, piece, sink_emit, sink_match, k);
		free(c);
		if (r)
			return r;
		off += piece;
		if (st.carry_len >= subst_max_needle(s) && subst_max_needle(s))
			fz_die("carry %zu >= max needle %zu", st.carry_len, subst_max_needle(s));
	}
	return subst_stream_finish(&st, sink_emit, k);
}

static void same(const struct sink *a, const struct sink *b, int ra, int rb, const char *what)
{
	if (ra != rb)
		fz_die("%s: result %d vs %d", what, ra, rb);
	if (a->n_ids != b->n_ids || (a->n_ids && memcmp(a->ids, b->ids, a->n_ids * sizeof(int))))
		fz_die("%s: matches differ (%zu vs %zu)", what, a->n_ids, b->n_ids);
	if (a->len != b->len || (a->len && memcmp(a->out, b->out, a->len)))
		fz_die("%s: output differs (%zu vs %zu bytes)", what, a->len, b->len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz f = { data, size };
	struct subst_pat pats[MAX_PATS];
	int act[MAX_PATS];
	size_t np = 0, want = fz_u8(&f) % MAX_PATS + 1, n_splits, hn, got;
	const uint8_t *splits;
	const char *hay;
	struct sink ref = { .act = act }, one = { .act = act }, str = { .act = act };
	struct subst *s;
	int rr, r1, rs;

	for (size_t i = 0; i < want; i++) {
		uint8_t b = fz_u8(&f);
		/* Mostly short needles; now and then one near the carry limit. */
		size_t nl = b == 255 ? SUBST_CARRY_MAX : b % 24 + 1, rl;
		const char *nd = (const char *)fz_take(&f, nl, &got);
		const char *rp;
		bool seen = false;

		if (got != nl)
			break;
		rl = fz_u8(&f) % 24;
		rp = (const char *)fz_take(&f, rl, &got);
		rl = got;
		for (size_t j = 0; j < np; j++)
			seen |= pats[j].needle_len == nl && !memcmp(pats[j].needle, nd, nl);
		if (seen)
			continue;   /* which of two equal needles reports is unspecified */
		act[np] = fz_u8(&f) % 8 == 7 ? ACT_ABORT : (fz_u8(&f) % 4 == 3 ? ACT_KEEP : ACT_REPLACE);
		pats[np] = (struct subst_pat){ nd, nl, rl ? rp : NULL, rl, (int)np };
		np++;
	}
	n_splits = fz_u8(&f) % 16;
	splits = fz_take(&f, n_splits, &n_splits);
	hay = (const char *)fz_take(&f, f.n, &hn);

	s = subst_compile(pats, np);
	if (!s)
		fz_die("subst_compile failed on %zu valid patterns", np);
	if (!np)
		goto out;
	rr = reference(pats, np, hay, hn, &ref);
	r1 = streamed(s, hay, hn, NULL, 0, &one);
	rs = streamed(s, hay, hn, splits, n_splits, &str);
	same(&ref, &one, rr, r1, "one feed vs reference");
	same(&ref, &str, rr, rs, "split feeds vs reference");
out:
	subst_free(s);
	free(ref.out);
	free(one.out);
	free(str.out);
	return 0;
}
