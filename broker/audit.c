// SPDX-License-Identifier: MIT
/* The audit log: one JSON object per line per request, batched per loop wake-up. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include "broker.h"
#include "log.h"

int audit_json_str(struct buf *out, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	size_t i;
	char *p;

	if (!s)
		return buf_append(out, "null", 4);
	/* Worst case 6 bytes per input byte, plus the quotes. */
	p = buf_reserve(out, n * 6 + 2);
	if (!p)
		return -ENOMEM;
	*p++ = '"';
	for (i = 0; i < n; i++) {
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

void audit_record(struct broker *b, const struct conn *c, const struct hx_audit *rec)
{
	struct buf *o = &b->audit_buf;
	struct timeval tv;
	struct tm tm;
	char ts[40];
	const char *sb = b->cfg->sandbox ? b->cfg->sandbox : "";

	if (b->audit_fd < 0)
		return;
	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
	buf_appendf(o, "{\"time\":\"%s.%03ldZ\",\"sandbox\":", ts, (long)tv.tv_usec / 1000);
	audit_json_str(o, sb, strlen(sb));
	buf_appendf(o, ",\"pid\":%u,\"comm\":", c->od.pid);
	audit_json_str(o, c->od.comm, strnlen(c->od.comm, sizeof(c->od.comm)));
	buf_append(o, ",\"method\":", 10);
	audit_json_str(o, rec->method, rec->method_len);
	buf_append(o, ",\"host\":", 8);
	audit_json_str(o, rec->host, rec->host_len);
	buf_appendf(o, ",\"port\":%u,\"tls\":%s,\"path\":", c->port, c->tls ? "true" : "false");
	audit_json_str(o, rec->target, rec->target_len);
	buf_appendf(o, ",\"status\":%d,\"rule\":", rec->status);
	audit_json_str(o, rec->rule, rec->rule ? strlen(rec->rule) : 0);
	buf_append(o, ",\"secrets\":", 11);
	audit_json_str(o, rec->secrets, rec->secrets ? strlen(rec->secrets) : 0);
	buf_appendf(o, ",\"bytes_in\":%llu,\"bytes_out\":%llu,\"duration_us\":%llu}\n",
		    (unsigned long long)rec->bytes_in, (unsigned long long)rec->bytes_out,
		    (unsigned long long)(rec->end_us >= rec->start_us ? rec->end_us - rec->start_us : 0));
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
static bool audit_failing;

bool audit_ok(void)
{
	return !audit_failing;
}

static int write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

void audit_flush(struct broker *b)
{
	struct buf *o = &b->audit_buf;
	int rc;

	if (!buf_len(o))
		return;
	rc = write_all(b->audit_fd, buf_head(o), buf_len(o));
	if (rc) {
		char why[256];
		int n = snprintf(why, sizeof(why),
				 "sluiced: error: Couldn't write the audit log: %s; its lines follow here "
				 "(free space on the audit log's filesystem)\n", strerror(-rc));

		if (write_all(STDERR_FILENO, why, (size_t)n) ||
		    write_all(STDERR_FILENO, buf_head(o), buf_len(o))) {
			if (!audit_failing)
				pr_err("audit log and stderr both unwritable: refusing requests until the "
				       "audit log can be written");
			audit_failing = true;
		}
	} else if (audit_failing) {
		pr_info("audit log writable again: serving requests");
		audit_failing = false;
	}
	buf_consume(o, buf_len(o));
	buf_shrink(o, 64 * 1024);
}
