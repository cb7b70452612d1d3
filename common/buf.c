// SPDX-License-Identifier: MIT
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "buf.h"

char *buf_reserve(struct buf *b, size_t n)
{
	size_t need, cap;
	char *p;

	if (b->cap - b->off - b->len >= n)
		return b->data + b->off + b->len;
	/* Slide unread bytes to the front before growing: cheaper than realloc. */
	if (b->off && b->cap - b->len >= n) {
		memmove(b->data, b->data + b->off, b->len);
		b->off = 0;
		return b->data + b->len;
	}
	need = b->len + n;
	cap = b->cap ? b->cap : 256;
	while (cap < need)
		cap *= 2;
	if (b->off) {
		memmove(b->data, b->data + b->off, b->len);
		b->off = 0;
	}
	p = realloc(b->data, cap);
	if (!p)
		return NULL;
	b->data = p;
	b->cap = cap;
	return b->data + b->len;
}

void buf_commit(struct buf *b, size_t n) { b->len += n; }

int buf_append(struct buf *b, const void *p, size_t n)
{
	char *dst;

	if (!n)
		return 0;
	dst = buf_reserve(b, n);
	if (!dst)
		return -ENOMEM;
	memcpy(dst, p, n);
	b->len += n;
	return 0;
}

int buf_appendf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;
	char *dst;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return -EINVAL;
	dst = buf_reserve(b, (size_t)n + 1);
	if (!dst)
		return -ENOMEM;
	va_start(ap, fmt);
	vsnprintf(dst, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
	return 0;
}

/* printf-free number formatting: vfprintf costs more than the rest of a
 * header line. */
int buf_put_u64(struct buf *b, unsigned long long v)
{
	char tmp[20], *p = tmp + sizeof(tmp);

	do {
		*--p = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	return buf_put(b, p, (size_t)(tmp + sizeof(tmp) - p));
}

int buf_put_hex(struct buf *b, unsigned long long v)
{
	static const char hex[] = "0123456789abcdef";
	char tmp[16], *p = tmp + sizeof(tmp);

	do {
		*--p = hex[v & 15];
		v >>= 4;
	} while (v);
	return buf_put(b, p, (size_t)(tmp + sizeof(tmp) - p));
}

void buf_consume(struct buf *b, size_t n)
{
	if (n >= b->len) {
		b->off = 0;
		b->len = 0;
		return;
	}
	b->off += n;
	b->len -= n;
	/*
	 * A short remainder behind a long consumed stretch (a big write that
	 * left a partial record): move it to the front now, while it is short.
	 * Otherwise the next reads fill the tail and buf_reserve slides the whole
	 * refilled buffer, copying every byte once more. len <= off bounds the
	 * total moved to twice the bytes consumed.
	 */
	if (b->len <= b->off && b->len <= 16384) {
		memmove(b->data, b->data + b->off, b->len);
		b->off = 0;
	}
}

void buf_shrink(struct buf *b, size_t keep)
{
	if (b->len || b->cap <= keep)
		return;
	free(b->data);
	b->data = NULL;
	b->cap = 0;
	b->off = 0;
}

void buf_free(struct buf *b)
{
	free(b->data);
	b->data = NULL;
	b->off = b->len = b->cap = 0;
}
