/* SPDX-License-Identifier: MIT */
/*
 * Streaming multi-pattern find-and-replace, the engine behind placeholder
 * substitution (request: placeholder -> value), leak detection (a placeholder
 * whose secret may not go here) and response scrubbing (value -> placeholder).
 * A needle split across feeds (TCP reads, chunk boundaries) is still found:
 * up to max_needle-1 bytes are carried between calls.
 *
 * Owner: policy/. Contract used by broker/.
 */
#ifndef SLUICE_SUBST_H
#define SLUICE_SUBST_H
#include <stddef.h>

struct subst_pat {
	const char *needle; size_t needle_len;
	const char *repl;   size_t repl_len;
	int id;             /* caller's tag, passed to on_match (e.g. the secret index) */
};

struct subst;  /* compiled, immutable; pats (and their bytes) must outlive it */

/* NULL on ENOMEM/EINVAL (an empty needle, or one longer than SUBST_NEEDLE_MAX).
 * n == 0 gives a matcher that passes everything through. Overlapping needles:
 * the leftmost match wins, and the longest needle at that position. */
struct subst *subst_compile(const struct subst_pat *pats, size_t n);
void subst_free(struct subst *s);                                    /* NULL-safe */
size_t subst_max_needle(const struct subst *s);

/* Output sink; returns 0 or -errno (stops the feed). */
typedef int (*subst_emit_fn)(void *ctx, const char *data, size_t len);
/* Called once per match before anything of it is emitted. Returns
 * 0 to emit the replacement, 1 to emit the needle unchanged, -errno to abort
 * the feed with that error (e.g. -EACCES: leak). */
typedef int (*subst_match_fn)(void *ctx, int id);

/* Needles up to SUBST_CARRY_MAX bytes carry in the stream itself; longer ones
 * (a PEM key, a JWT as a value to scrub) in a heap buffer of twice the
 * longest needle, taken at the first carry and dropped by subst_stream_fini. */
#define SUBST_CARRY_MAX 512
#define SUBST_NEEDLE_MAX 65536
struct subst_stream {
	const struct subst *s;
	size_t carry_len;
	char carry[SUBST_CARRY_MAX];
	char *xbuf;
	size_t xcap;
	/* engine-private matcher state may follow */
	size_t state;
	/* on_match of the last feed, used by finish: when one needle is a prefix
	 * of another (SLUICE_PLACEHOLDER_A / SLUICE_PLACEHOLDER_AB) the shorter
	 * one can only be confirmed at the end of the stream */
	subst_match_fn last_on_match;
};

/* st: zeroed, or last used with subst_stream_fini (init does not free). */
void subst_stream_init(struct subst_stream *st, const struct subst *s);
/* Wipes and frees what a long needle's carry took; st may be initialised again. */
void subst_stream_fini(struct subst_stream *st);
/* Feeds n bytes. Returns 0, or the first -errno from emit/on_match. */
int subst_stream_feed(struct subst_stream *st, const char *in, size_t n,
		      subst_emit_fn emit, subst_match_fn on_match, void *ctx);
/* End of stream: emits the carried bytes (no match can complete any more;
 * a carried needle that is complete is still reported to the on_match of
 * the last feed). After any error the stream is unusable: drop it. */
int subst_stream_finish(struct subst_stream *st, subst_emit_fn emit, void *ctx);

#endif /* SLUICE_SUBST_H */
