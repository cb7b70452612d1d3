/* SPDX-License-Identifier: MIT */
/*
 * Shared bits of the libFuzzer targets: a reader that takes control bytes
 * (split points, flags) from the input, and a fatal check. A broken invariant
 * aborts, so libFuzzer saves the input as a crash like any sanitizer report.
 */
#ifndef SLUICE_FUZZ_H
#define SLUICE_FUZZ_H
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct fz {
	const uint8_t *p;
	size_t n;
};

/* The next byte, 0 once the input is used up (the target still runs). */
static inline uint8_t fz_u8(struct fz *f)
{
	uint8_t v;

	if (!f->n)
		return 0;
	v = f->p[0];
	f->p++;
	f->n--;
	return v;
}

static inline uint16_t fz_u16(struct fz *f)
{
	uint16_t hi = fz_u8(f);

	return (uint16_t)(hi << 8 | fz_u8(f));
}

/* Up to max bytes (as many as are left). */
static inline const uint8_t *fz_take(struct fz *f, size_t max, size_t *got)
{
	const uint8_t *p = f->p;

	*got = max < f->n ? max : f->n;
	f->p += *got;
	f->n -= *got;
	return p;
}

/* An exact-size heap copy, so ASan sees any read past the end of a piece. */
static inline char *fz_dup(const void *p, size_t n)
{
	char *d = malloc(n ? n : 1);

	if (!d)
		abort();
	if (n)
		memcpy(d, p, n);
	return d;
}

__attribute__((format(printf, 1, 2), noreturn))
static inline void fz_die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fputs("fuzz invariant broken: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	abort();
}

static inline int fz_contains(const char *hay, size_t n, const char *needle)
{
	return memmem(hay, n, needle, strlen(needle)) != NULL;
}

/* Same, ignoring ASCII case (hosts are lower-cased on the way through). */
static inline int fz_contains_ci(const char *hay, size_t n, const char *needle)
{
	size_t nl = strlen(needle);

	for (size_t i = 0; nl && i + nl <= n; i++)
		if (!strncasecmp(hay + i, needle, nl))
			return 1;
	return 0;
}

#endif /* SLUICE_FUZZ_H */
