/* SPDX-License-Identifier: MIT */
/*
 * A growable byte buffer with a read offset. All-zero is a valid empty buffer.
 * Bytes live in data[off .. off+len). Owner of the memory: the struct's owner.
 */
#ifndef SLUICE_BUF_H
#define SLUICE_BUF_H
#include <stddef.h>
#include <string.h>

struct buf {
	char  *data;
	size_t off;   /* first unread byte */
	size_t len;   /* unread bytes */
	size_t cap;   /* allocated bytes */
};

static inline const char *buf_head(const struct buf *b) { return b->data + b->off; }
static inline size_t buf_len(const struct buf *b) { return b->len; }

/* Makes room for at least n more bytes at the tail; returns a pointer to it or NULL (ENOMEM). */
char *buf_reserve(struct buf *b, size_t n);
/* Marks n bytes written at the tail (after buf_reserve). */
void buf_commit(struct buf *b, size_t n);
/* Appends; returns 0 or -ENOMEM. */
int buf_append(struct buf *b, const void *p, size_t n);
int buf_appendf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* buf_append with the common case (room at the tail) inlined: small appends
 * on the per-request path cost a bounds check and a memcpy, not two calls. */
static inline int buf_put(struct buf *b, const void *p, size_t n)
{
	if (n && b->cap - b->off - b->len >= n) {
		memcpy(b->data + b->off + b->len, p, n);
		b->len += n;
		return 0;
	}
	return buf_append(b, p, n);
}
/* Appends v in decimal; 0 or -ENOMEM. */
int buf_put_u64(struct buf *b, unsigned long long v);
/* Appends v in lower-case hex (chunk sizes); 0 or -ENOMEM. */
int buf_put_hex(struct buf *b, unsigned long long v);
/* Drops n bytes from the head. */
void buf_consume(struct buf *b, size_t n);
/* Frees memory above keep bytes of capacity when empty (idle connections stay small). */
void buf_shrink(struct buf *b, size_t keep);
void buf_free(struct buf *b);

#endif
