// SPDX-License-Identifier: MIT
/* The audit log: one JSON object per line per request, batched per loop wake-up. */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include "broker.h"
#include "log.h"

#define SW_ONES  0x0101010101010101ull
#define SW_HIGHS 0x8080808080808080ull

/* Length of the prefix of s (in steps of 8) that JSON takes as is: no quote,
 * backslash, control byte, DEL or byte above 0x7f (SWAR, 8 bytes a step). */
static size_t json_plain8(const char *s, size_t n)
{
	size_t i = 0;

	for (; i + 8 <= n; i += 8) {
		uint64_t x, q, bs, lo, del;

		memcpy(&x, s + i, 8);
		q = x ^ (SW_ONES * '"');
		bs = x ^ (SW_ONES * '\\');
		del = x ^ (SW_ONES * 0x7f);
		lo = (x - SW_ONES * 0x20) & ~x;              /* high bit: byte < 0x20 */
		if ((((q - SW_ONES) & ~q) | ((bs - SW_ONES) & ~bs) | ((del - SW_ONES) & ~del) |
		     lo | x) & SW_HIGHS)
			break;
	}
	return i;
}

int audit_json_str(struct buf *out, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	size_t i;
	char *p;

	if (!s)
		return buf_put(out, "null", 4);
	/* Worst case 6 bytes per input byte, plus the quotes. */
	p = buf_reserve(out, n * 6 + 2);
	if (!p)
		return -ENOMEM;
	*p++ = '"';
	i = json_plain8(s, n);
	memcpy(p, s, i);
	p += i;
	for (; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];

		if (ch == '"' || ch == '\\') {
			*p++ = '\\';
			*p++ = (char)ch;
		} else if (ch < 0x20 || ch >= 0x7f) {
			/* Bytes, not text: never let a client forge lines or break the JSON. */
			*p++ = '\\'; *p++ = 'u'; *p++ = '0'; *p++ = '0';
			*p++ = hex[ch >> 4];
			*p++ = hex[ch & 15];
		} else {
			*p++ = (char)ch;
		}
	}
	*p++ = '"';
	buf_commit(out, (size_t)(p - (out->data + out->off + out->len)));
	return 0;
}


#define PUT_LIT(o, s) buf_put((o), (s), sizeof(s) - 1)

void audit_record(struct broker *b, const struct conn *c, const struct hx_audit *rec)
{
	/* strftime and printf cost more than the rest of a line: the
	 * "YYYY-MM-DDTHH:MM:SS." prefix is formatted once per second. */
	static __thread time_t ts_sec = -1;
	static __thread char ts[32];
	static __thread size_t ts_len;
	struct buf *o = &b->audit_buf;
	struct timeval tv;
	const char *sb = b->cfg->sandbox ? b->cfg->sandbox : "";
	size_t sb_len = strlen(sb), comm_len = strnlen(c->od.comm, sizeof(c->od.comm));
	size_t rule_len = rec->rule ? strlen(rec->rule) : 0, sec_len = rec->secrets ? strlen(rec->secrets) : 0;
	char ms[5];

	if (b->audit_fd < 0)
		return;
	gettimeofday(&tv, NULL);
	if (tv.tv_sec != ts_sec) {
		struct tm tm;

		gmtime_r(&tv.tv_sec, &tm);
		ts_len = strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S.", &tm);
		ts_sec = tv.tv_sec;
	}
	ms[0] = (char)('0' + tv.tv_usec / 100000);
	ms[1] = (char)('0' + tv.tv_usec / 10000 % 10);
	ms[2] = (char)('0' + tv.tv_usec / 1000 % 10);
	ms[3] = 'Z';
	ms[4] = '"';
	/* One reservation for the line (strings at their worst-case escaping):
	 * every append below then takes the inline path. */
	buf_reserve(o, 320 + 6 * (sb_len + comm_len + rec->method_len + rec->host_len +
				  rec->target_len + rule_len + sec_len + (rec->cut ? strlen(rec->cut) : 0)));
	PUT_LIT(o, "{\"time\":\"");
	buf_put(o, ts, ts_len);
	buf_put(o, ms, sizeof(ms));
	PUT_LIT(o, ",\"sandbox\":");
	audit_json_str(o, sb, sb_len);
	PUT_LIT(o, ",\"pid\":");
	buf_put_u64(o, c->od.pid);
	PUT_LIT(o, ",\"comm\":");
	audit_json_str(o, c->od.comm, comm_len);
	PUT_LIT(o, ",\"method\":");
	audit_json_str(o, rec->method, rec->method_len);
	PUT_LIT(o, ",\"host\":");
	audit_json_str(o, rec->host, rec->host_len);
	PUT_LIT(o, ",\"port\":");
	buf_put_u64(o, c->port);
	if (c->tls)
		PUT_LIT(o, ",\"tls\":true,\"path\":");
	else
		PUT_LIT(o, ",\"tls\":false,\"path\":");
	audit_json_str(o, rec->target, rec->target_len);
	PUT_LIT(o, ",\"status\":");
	if (rec->status < 0) {
		PUT_LIT(o, "-");
		buf_put_u64(o, (uint64_t)-(int64_t)rec->status);
	} else {
		buf_put_u64(o, (uint64_t)rec->status);
	}
	PUT_LIT(o, ",\"rule\":");
	audit_json_str(o, rec->rule, rule_len);
	PUT_LIT(o, ",\"secrets\":");
	audit_json_str(o, rec->secrets, sec_len);
	PUT_LIT(o, ",\"bytes_in\":");
	buf_put_u64(o, rec->bytes_in);
	PUT_LIT(o, ",\"bytes_out\":");
	buf_put_u64(o, rec->bytes_out);
	PUT_LIT(o, ",\"duration_us\":");
	buf_put_u64(o, rec->end_us >= rec->start_us ? rec->end_us - rec->start_us : 0);
	if (rec->cut) {
		PUT_LIT(o, ",\"cut\":");
		audit_json_str(o, rec->cut, strlen(rec->cut));
	}
	PUT_LIT(o, "}\n");
	if (buf_len(o) > 64 * 1024)
		audit_flush(b);
}

/*
 * When the log file can't take the lines (disk full, I/O error) they go to
 * the broker's stderr (its log) after a line saying why, so no served request
 * goes unrecorded. If that fails too, audit_ok() turns false and the broker
 * refuses new requests (broker_policy_get() hands out no policy: default
 * deny) until a write to the log file succeeds again.
 */
/* Written by every worker's flush, read by every worker: atomic. */
static atomic_bool audit_failing;
/* The log ends in part of a line (a write stopped mid-line): the next write
 * starts with a newline, so the next line is not glued to the fragment.
 * Global: with several workers, whichever writes next follows the fragment. */
static atomic_bool audit_torn;
/* Held from reading audit_torn to setting it after a write: without it,
 * another worker's lines could land right behind a fragment in the moment
 * before the flag says it is there. Taken once per event-loop batch. */
static pthread_mutex_t audit_mu = PTHREAD_MUTEX_INITIALIZER;

bool audit_ok(void)
{
	return !atomic_load(&audit_failing);
}

/* A full pipe (a non-blocking stdout) whose reader did not drain it within
 * the wait: later flushes do not wait again (the loop would stall a second
 * per wake-up) until a write goes through. */
static atomic_int stuck_fd = -1;

/* *done counts what went out, also when an error stops the rest. A full pipe
 * gets a second to drain before that counts as a failure. */
static int write_all_raw(int fd, const char *p, size_t n, size_t *done)
{
	while (n) {
		ssize_t w = write(fd, p, n);

		if (w < 0) {
			struct pollfd pfd = { .fd = fd, .events = POLLOUT };

			if (errno == EINTR)
				continue;
			if (errno == EAGAIN) {
				if (atomic_load(&stuck_fd) != fd && poll(&pfd, 1, 1000) > 0)
					continue;
				atomic_store(&stuck_fd, fd);
				return -EAGAIN;
			}
			return -errno;
		}
		if (atomic_load(&stuck_fd) == fd)
			atomic_store(&stuck_fd, -1);
		p += w;
		n -= (size_t)w;
		*done += (size_t)w;
	}
	return 0;
}

/* Bytes of p[0..n) to write at once on a pipe: at most PIPE_BUF, cut after a
 * newline; a line longer than PIPE_BUF cannot be atomic and goes alone. */
size_t audit_pipe_chunk(const char *p, size_t n)
{
	const char *nl;

	if (!p || n <= PIPE_BUF)
		return n;
	nl = memrchr(p, '\n', PIPE_BUF);
	if (!nl)
		nl = memchr(p, '\n', n);
	return nl ? (size_t)(nl - p) + 1 : n;
}

/* Whole lines, never interleaved with another worker's: one write() on an
 * O_APPEND file is, but on a pipe only up to PIPE_BUF bytes are, so there
 * the lines go in chunks cut by audit_pipe_chunk(). */
static int write_all(int fd, bool fifo, const char *p, size_t n, size_t *done)
{
	size_t off = 0;

	*done = 0;
	if (n <= PIPE_BUF || !fifo)
		return write_all_raw(fd, p, n, done);
	while (off < n) {
		size_t k = audit_pipe_chunk(p + off, n - off);
		int rc = write_all_raw(fd, p + off, k, done);

		if (rc)
			return rc;
		off += k;
	}
	return 0;
}

/* Where the line holding byte done of p starts: the lines before it are
 * whole in the log; it and the rest must be written elsewhere. */
size_t audit_resume_at(const char *p, size_t done)
{
	const char *nl = p && done ? memrchr(p, '\n', done) : NULL;

	return nl ? (size_t)(nl - p) + 1 : 0;
}

static bool fd_is_fifo(int fd)
{
	struct stat st;

	return !fstat(fd, &st) && S_ISFIFO(st.st_mode);
}

void audit_set_fd(struct broker *b, int fd)
{
	b->audit_fd = fd;
	b->audit_fifo = fd >= 0 && fd_is_fifo(fd);
}

void audit_flush(struct broker *b)
{
	struct buf *o = &b->audit_buf;
	size_t done = 0, from;
	int rc = 0;

	if (!buf_len(o))
		return;
	pthread_mutex_lock(&audit_mu);
	if (atomic_exchange(&audit_torn, false)) {
		rc = write_all(b->audit_fd, b->audit_fifo, "\n", 1, &done);
		done = 0;
		if (rc)
			atomic_store(&audit_torn, true);
	}
	if (!rc)
		rc = write_all(b->audit_fd, b->audit_fifo, buf_head(o), buf_len(o), &done);
	if (rc) {
		char why[256];
		int n = snprintf(why, sizeof(why),
				 "sluiced: error: Couldn't write the audit log: %s; its lines follow here "
				 "(free space on the audit log's filesystem)\n", strerror(-rc));
		bool fifo = fd_is_fifo(STDERR_FILENO);
		size_t ignored;

		/* The lines the log took whole stay there only; one it took in
		 * part is written whole here. */
		from = audit_resume_at(buf_head(o), done);
		if (done > from)
			atomic_store(&audit_torn, true);
		if (write_all(STDERR_FILENO, fifo, why, (size_t)n, &ignored) ||
		    write_all(STDERR_FILENO, fifo, buf_head(o) + from, buf_len(o) - from, &ignored)) {
			if (!atomic_exchange(&audit_failing, true))
				pr_err("audit log and stderr both unwritable: refusing requests until the "
				       "audit log can be written");
		}
	} else if (atomic_load(&audit_failing) && atomic_exchange(&audit_failing, false)) {
		pr_info("audit log writable again: serving requests");
	}
	pthread_mutex_unlock(&audit_mu);
	buf_consume(o, buf_len(o));
	buf_shrink(o, 64 * 1024);
}
