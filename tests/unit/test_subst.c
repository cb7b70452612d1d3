// SPDX-License-Identifier: MIT
/*
 * Streaming substitution: every split offset, every 2-way split, byte-by-byte
 * feeds, needle-is-prefix-of-needle, keep/abort from on_match, many patterns,
 * checked against a naive reference implementation.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "subst.h"

struct sink {
	char out[16384];
	size_t len;
	int matches[64];
	int n_matches;
	int keep_id;   /* on_match returns 1 for this id */
	int abort_id;  /* on_match returns -EACCES for this id */
	int emits;
};

static int emit(void *ctx, const char *d, size_t n)
{
	struct sink *s = ctx;

	assert_true(n > 0);
	assert_true(s->len + n <= sizeof(s->out));
	memcpy(s->out + s->len, d, n);
	s->len += n;
	s->emits++;
	return 0;
}

static int on_match(void *ctx, int id)
{
	struct sink *s = ctx;

	if (s->n_matches < 64)
		s->matches[s->n_matches++] = id;
	if (id == s->abort_id)
		return -EACCES;
	return id == s->keep_id ? 1 : 0;
}

/* Reference: leftmost match, longest needle at that position, no carry. */
static size_t naive(const struct subst_pat *p, size_t n, const char *in, size_t len, char *out, int keep_id)
{
	size_t o = 0;

	for (size_t i = 0; i < len; ) {
		int best = -1;

		for (size_t k = 0; k < n; k++)
			if (p[k].needle_len <= len - i && !memcmp(in + i, p[k].needle, p[k].needle_len) &&
			    (best < 0 || p[k].needle_len > p[best].needle_len))
				best = (int)k;
		if (best < 0) {
			out[o++] = in[i++];
			continue;
		}
		if (p[best].id == keep_id) {
			memcpy(out + o, p[best].needle, p[best].needle_len);
			o += p[best].needle_len;
		} else {
			memcpy(out + o, p[best].repl, p[best].repl_len);
			o += p[best].repl_len;
		}
		i += p[best].needle_len;
	}
	return o;
}

static void run_split(const struct subst *s, const char *in, size_t len, const size_t *cuts, size_t ncuts,
		      struct sink *sk)
{
	struct subst_stream st;
	size_t prev = 0;

	subst_stream_init(&st, s);
	for (size_t i = 0; i <= ncuts; i++) {
		size_t end = i < ncuts ? cuts[i] : len;

		assert_int_equal(subst_stream_feed(&st, in + prev, end - prev, emit, on_match, sk), 0);
		assert_true(st.carry_len < SUBST_CARRY_MAX);
		prev = end;
	}
	assert_int_equal(subst_stream_finish(&st, emit, sk), 0);
}

static const struct subst_pat placeholders[] = {
	{ "SLUICE_PLACEHOLDER_GH", 21, "ghp_real", 8, 0 },
	{ "SLUICE_PLACEHOLDER_GH_APP", 25, "app-secret-value", 16, 1 },
	{ "SLUICE_PLACEHOLDER_KEY", 22, "", 0, 2 },
	{ "SANDCAT_PLACEHOLDER_KEY", 23, "k", 1, 3 },
};

static const char *inputs[] = {
	"Authorization: Bearer SLUICE_PLACEHOLDER_GH\r\n",
	"x=SLUICE_PLACEHOLDER_GH_APP&y=SLUICE_PLACEHOLDER_GH_AP&z=SLUICE_PLACEHOLDER_GH",
	"SLUICE_PLACEHOLDER_KEYSLUICE_PLACEHOLDER_GHSANDCAT_PLACEHOLDER_KEY",
	"SSSLUICE_PLACEHOLDER_SLUICE_PLACEHOLDER_GHS",
	"no placeholder here at all, just S and SLUICE and SLUICE_PLACEHOLDER_",
	"SLUICE_PLACEHOLDER_G",
	"",
};

static void test_every_split(void **state)
{
	struct subst *s = subst_compile(placeholders, 4);

	assert_non_null(s);
	assert_int_equal(subst_max_needle(s), 25);
	for (size_t t = 0; t < sizeof(inputs) / sizeof(inputs[0]); t++) {
		const char *in = inputs[t];
		size_t len = strlen(in);
		char want[1024];
		size_t wl = naive(placeholders, 4, in, len, want, -1);

		/* one cut at every offset, and two cuts at every pair of offsets */
		for (size_t a = 0; a <= len; a++)
			for (size_t b = a; b <= len; b++) {
				struct sink sk = { .keep_id = -1, .abort_id = -1 };
				size_t cuts[2] = { a, b };

				run_split(s, in, len, cuts, 2, &sk);
				if (sk.len != wl || memcmp(sk.out, want, wl))
					fail_msg("input %zu cut %zu,%zu: got '%.*s' want '%.*s'", t, a, b,
						 (int)sk.len, sk.out, (int)wl, want);
			}
		/* byte by byte */
		{
			struct sink sk = { .keep_id = -1, .abort_id = -1 };
			size_t cuts[256];

			for (size_t i = 0; i < len; i++)
				cuts[i] = i;
			run_split(s, in, len, cuts, len, &sk);
			assert_int_equal(sk.len, wl);
			assert_memory_equal(sk.out, want, wl);
		}
	}
	subst_free(s);
}

static void test_keep_and_abort(void **state)
{
	struct subst *s = subst_compile(placeholders, 4);
	const char *in = "a SLUICE_PLACEHOLDER_GH b SLUICE_PLACEHOLDER_KEY c";
	struct subst_stream st;
	struct sink sk = { .keep_id = 0, .abort_id = -1 };
	char want[256];
	size_t wl = naive(placeholders, 4, in, strlen(in), want, 0);

	subst_stream_init(&st, s);
	assert_int_equal(subst_stream_feed(&st, in, strlen(in), emit, on_match, &sk), 0);
	assert_int_equal(subst_stream_finish(&st, emit, &sk), 0);
	assert_int_equal(sk.len, wl);
	assert_memory_equal(sk.out, want, wl);
	assert_int_equal(sk.n_matches, 2);
	assert_int_equal(sk.matches[0], 0);
	assert_int_equal(sk.matches[1], 2);

	/* abort: the match is reported before anything of it is emitted */
	memset(&sk, 0, sizeof(sk));
	sk.keep_id = -1;
	sk.abort_id = 2;
	subst_stream_init(&st, s);
	assert_int_equal(subst_stream_feed(&st, in, 30, emit, on_match, &sk), 0);
	assert_int_equal(subst_stream_feed(&st, in + 30, strlen(in) - 30, emit, on_match, &sk), -EACCES);
	assert_null(memmem(sk.out, sk.len, "SLUICE_PLACEHOLDER_KEY", 22));
	assert_int_equal(sk.len, strlen("a ghp_real b "));
	subst_free(s);
}

/* A needle that is a prefix of another is confirmed only at finish. */
static void test_prefix_needle_at_end(void **state)
{
	struct subst *s = subst_compile(placeholders, 4);
	struct subst_stream st;
	struct sink sk = { .keep_id = -1, .abort_id = -1 };

	subst_stream_init(&st, s);
	assert_int_equal(subst_stream_feed(&st, "xSLUICE_PLACEHOLDER_GH", 22, emit, on_match, &sk), 0);
	assert_int_equal(sk.len, 1); /* "SLUICE_PLACEHOLDER_GH" could still become ..._GH_APP */
	assert_int_equal(st.carry_len, 21);
	assert_int_equal(subst_stream_finish(&st, emit, &sk), 0);
	assert_int_equal(sk.len, 9);
	assert_memory_equal(sk.out, "xghp_real", 9);
	assert_int_equal(sk.n_matches, 1);
	subst_free(s);
}

/* Without a possible needle start nothing is held back or copied. */
static void test_no_match_fast_path(void **state)
{
	struct subst *s = subst_compile(placeholders, 4);
	static char big[8192];
	struct subst_stream st;
	struct sink sk = { .keep_id = -1, .abort_id = -1 };

	memset(big, 'a', sizeof(big));
	subst_stream_init(&st, s);
	assert_int_equal(subst_stream_feed(&st, big, sizeof(big), emit, on_match, &sk), 0);
	assert_int_equal(sk.len, sizeof(big));
	assert_int_equal(sk.emits, 1);
	assert_int_equal(st.carry_len, 0);
	/* a lone trailing 'S' is held (could start a placeholder), "Sx" is not */
	assert_int_equal(subst_stream_feed(&st, "abcS", 4, emit, on_match, &sk), 0);
	assert_int_equal(st.carry_len, 1);
	assert_int_equal(subst_stream_feed(&st, "x", 1, emit, on_match, &sk), 0);
	assert_int_equal(st.carry_len, 0);
	assert_int_equal(sk.len, sizeof(big) + 5);
	subst_free(s);
}

/* Response scrubbing direction: arbitrary value needles, many of them,
 * different first bytes, overlapping prefixes. */
static void test_many_patterns(void **state)
{
	enum { N = 200 };
	static char needles[N][40], repls[N][40];
	static struct subst_pat pats[N];
	static char in[6000], want[12000];
	struct subst *s;
	unsigned seed = 12345;
	size_t len = 0, wl;

	for (int i = 0; i < N; i++) {
		int nl = 3 + i % 30;

		for (int k = 0; k < nl; k++)
			needles[i][k] = (char)('a' + (i * 7 + k * (i % 5 + 1)) % 6);
		snprintf(repls[i], sizeof(repls[i]), "<%d>", i);
		pats[i] = (struct subst_pat){ needles[i], (size_t)nl, repls[i], strlen(repls[i]), i };
	}
	/* drop exact duplicates so the reference's tie-break does not matter */
	for (int i = 0; i < N; i++)
		for (int j = 0; j < i; j++)
			if (pats[i].needle_len == pats[j].needle_len &&
			    !memcmp(pats[i].needle, pats[j].needle, pats[i].needle_len))
				needles[i][0] = 'z', needles[i][1] = (char)('A' + i % 26);
	while (len < sizeof(in) - 40) {
		seed = seed * 1103515245 + 12345;
		if ((seed >> 16) % 4 == 0) {
			int k = (int)((seed >> 8) % N);

			memcpy(in + len, pats[k].needle, pats[k].needle_len);
			len += pats[k].needle_len;
		} else {
			in[len++] = (char)('a' + (seed >> 20) % 7);
		}
	}
	s = subst_compile(pats, N);
	assert_non_null(s);
	wl = naive(pats, N, in, len, want, -1);
	for (size_t step = 1; step < 80; step += 7) {
		struct sink *sk = calloc(1, sizeof(*sk));
		size_t cuts[6000], nc = 0;

		sk->keep_id = sk->abort_id = -1;
		for (size_t c = step; c < len; c += step)
			cuts[nc++] = c;
		run_split(s, in, len, cuts, nc, sk);
		if (sk->len != wl || memcmp(sk->out, want, wl))
			fail_msg("step %zu: output differs from the reference (%zu vs %zu bytes)", step, sk->len, wl);
		free(sk);
	}
	subst_free(s);
}

/* Values longer than the in-stream carry (a PEM key, a JWT): found across
 * every kind of split, the carry on the heap, wiped and freed by fini. */
static void test_long_needles(void **state)
{
	enum { L = 3000, N = 3 * L + 300 };
	static char val[L], in[N], want[N];
	struct subst_pat p[] = { { val, L, "SLUICE_PLACEHOLDER_PEM", 22, 0 },
				 { "short-one", 9, "S", 1, 1 } };
	struct subst *s;
	size_t wl;

	(void)state;
	for (size_t i = 0; i < L; i++)
		val[i] = (char)('A' + (i * 7) % 26);
	memset(in, '.', sizeof(in));
	memcpy(in + 100, val, L);
	memcpy(in + 100 + L + 5, "short-one", 9);
	memcpy(in + 2 * L + 200, val, L - 1); /* a near miss at the end */
	s = subst_compile(p, 2);
	assert_non_null(s);
	wl = naive(p, 2, in, N, want, -1);
	for (size_t step = 1; step <= N; step = step < 64 ? step + 1 : step * 3) {
		struct subst_stream st;
		struct sink *sk = calloc(1, sizeof(*sk));
		size_t off = 0;

		assert_non_null(sk);
		sk->keep_id = sk->abort_id = -1;
		memset(&st, 0, sizeof(st));
		subst_stream_init(&st, s);
		while (off < N) {
			size_t k = N - off < step ? N - off : step;

			assert_int_equal(subst_stream_feed(&st, in + off, k, emit, on_match, sk), 0);
			off += k;
		}
		assert_int_equal(subst_stream_finish(&st, emit, sk), 0);
		subst_stream_fini(&st);
		assert_null(st.xbuf);
		if (sk->len != wl || memcmp(sk->out, want, wl))
			fail_msg("step %zu: output differs from the reference (%zu vs %zu bytes)", step, sk->len, wl);
		free(sk);
	}
	subst_free(s);
}

static void test_compile_edge_cases(void **state)
{
	static char huge[SUBST_NEEDLE_MAX + 1];
	struct subst_pat empty = { "", 0, "x", 1, 0 };
	struct subst_pat too_long = { huge, sizeof(huge), "x", 1, 0 };
	struct subst *s;
	struct subst_stream st;
	struct sink sk = { .keep_id = -1, .abort_id = -1 };

	assert_null(subst_compile(&empty, 1));
	assert_null(subst_compile(&too_long, 1));
	/* no patterns: a pass-through */
	s = subst_compile(NULL, 0);
	assert_non_null(s);
	subst_stream_init(&st, s);
	assert_int_equal(subst_stream_feed(&st, "SLUICE", 6, emit, on_match, &sk), 0);
	assert_int_equal(subst_stream_finish(&st, emit, &sk), 0);
	assert_int_equal(sk.len, 6);
	subst_free(s);
	subst_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_every_split),
		cmocka_unit_test(test_keep_and_abort),
		cmocka_unit_test(test_prefix_needle_at_end),
		cmocka_unit_test(test_no_match_fast_path),
		cmocka_unit_test(test_many_patterns),
		cmocka_unit_test(test_long_needles),
		cmocka_unit_test(test_compile_edge_cases),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
