// SPDX-License-Identifier: MIT
/*
 * Policy lifecycle, decisions and secrets. Parsing lives in parse.c.
 * Decisions allocate nothing unless the request-target is longer than the
 * stack buffer, so the broker can call policy_decide() per request.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include "policy_int.h"

/* ---- arena ---- */

struct arena_chunk {
	struct arena_chunk *next;
	size_t used, cap;
	_Alignas(16) char data[];
};

void *arena_alloc(struct arena *a, size_t n)
{
	struct arena_chunk *c = a->head;
	void *p;

	n = (n + 15) & ~(size_t)15;
	if (!c || c->cap - c->used < n) {
		size_t cap = n > 4000 ? n : 4000;

		c = malloc(sizeof(*c) + cap);
		if (!c)
			return NULL;
		c->next = a->head;
		c->used = 0;
		c->cap = cap;
		a->head = c;
	}
	p = c->data + c->used;
	c->used += n;
	memset(p, 0, n);
	return p;
}

char *arena_strndup(struct arena *a, const char *s, size_t n)
{
	char *d = arena_alloc(a, n + 1);

	if (d) {
		memcpy(d, s, n);
		d[n] = '\0';
	}
	return d;
}

char *arena_printf(struct arena *a, const char *fmt, ...)
{
	va_list ap;
	int n;
	char *d;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || !(d = arena_alloc(a, (size_t)n + 1)))
		return NULL;
	va_start(ap, fmt);
	vsnprintf(d, (size_t)n + 1, fmt, ap);
	va_end(ap);
	return d;
}

void arena_free(struct arena *a)
{
	struct arena_chunk *c = a->head, *next;

	for (; c; c = next) {
		next = c->next;
		/* literal secret values live here too */
		explicit_bzero(c->data, c->used);
		free(c);
	}
	a->head = NULL;
}

/* ---- lifecycle ---- */

static struct policy *policy_alloc(void)
{
	struct policy *p = calloc(1, sizeof(*p));

	if (p)
		atomic_init(&p->refs, 1);
	return p;
}

void policy_forget_secret_values(struct policy *p)
{
	for (size_t i = 0; p && i < p->n_secrets; i++) {
		struct secret *s = &p->secrets[i];

		if (s->value_mem) {
			explicit_bzero(s->value_mem, s->pub.value_len);
			free(s->value_mem);
		}
		s->value_mem = NULL;
		s->pub.value = NULL;
		s->pub.value_len = 0;
	}
}

static void policy_free(struct policy *p)
{
	policy_forget_secret_values(p);
	arena_free(&p->arena);
	free(p);
}

struct policy *policy_ref(struct policy *p)
{
	if (p)
		atomic_fetch_add_explicit(&p->refs, 1, memory_order_relaxed);
	return p;
}

void policy_unref(struct policy *p)
{
	if (p && atomic_fetch_sub_explicit(&p->refs, 1, memory_order_acq_rel) == 1)
		policy_free(p);
}

const char *policy_source(const struct policy *p)
{
	return p ? p->source : NULL;
}

int policy_load_buf(const char *buf, size_t len, const char *name, enum policy_format fmt,
		    struct policy **out, char *err, size_t errlen)
{
	struct policy *p;
	int ret;

	if (err && errlen)
		err[0] = '\0';
	if (!out || (!buf && len))
		return -EINVAL;
	*out = NULL;
	if (!name)
		name = "<policy>";
	p = policy_alloc();
	if (!p || !(p->source = arena_strndup(&p->arena, name, strlen(name)))) {
		if (p)
			policy_free(p);
		snprintf(err, errlen, "%s: out of memory while loading the policy", name);
		return -ENOMEM;
	}
	ret = policy_parse(p, buf ? buf : "", len, name, fmt, err, errlen);
	if (ret) {
		policy_free(p);
		return ret;
	}
	*out = p;
	return 0;
}

int policy_load(const char *path, enum policy_format fmt, struct policy **out,
		char *err, size_t errlen)
{
	int fd, ret;

	if (err && errlen)
		err[0] = '\0';
	if (!path || !out)
		return -EINVAL;
	*out = NULL;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		ret = -errno;
		snprintf(err, errlen, "%s: cannot open the policy: %s; check the path and its permissions",
			 path, strerror(-ret));
		return ret;
	}
	ret = policy_load_fd(fd, path, fmt, out, err, errlen);
	close(fd);
	return ret;
}

int policy_load_fd(int fd, const char *path, enum policy_format fmt, struct policy **out,
		   char *err, size_t errlen)
{
	struct stat st;
	char *buf = NULL;
	size_t got = 0;
	int ret;

	if (err && errlen)
		err[0] = '\0';
	if (fd < 0 || !path || !out)
		return -EINVAL;
	*out = NULL;
	if (fstat(fd, &st) < 0) {
		ret = -errno;
		snprintf(err, errlen, "%s: cannot stat the policy: %s", path, strerror(-ret));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		ret = -EINVAL;
		snprintf(err, errlen, "%s: not a regular file; give the path of a policy file", path);
		goto out;
	}
	if (st.st_size > 16 << 20) {
		ret = -EFBIG;
		snprintf(err, errlen, "%s: policy larger than 16 MiB; split it or trim it", path);
		goto out;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		ret = -ENOMEM;
		snprintf(err, errlen, "%s: out of memory reading the policy", path);
		goto out;
	}
	while (got < (size_t)st.st_size) {
		ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			ret = -errno;
			snprintf(err, errlen, "%s: read failed: %s", path, strerror(-ret));
			goto out;
		}
		if (r == 0)
			break;
		got += (size_t)r;
	}
	ret = policy_load_buf(buf, got, path, fmt, out, err, errlen);
out:
	if (buf) {
		explicit_bzero(buf, got); /* may hold literal secret values */
		free(buf);
	}
	return ret;
}

int policy_reload(const char *path, enum policy_format fmt, struct policy **inout,
		  char *err, size_t errlen)
{
	struct policy *np = NULL, *old;
	int ret;

	if (!inout)
		return -EINVAL;
	ret = policy_load(path, fmt, &np, err, errlen);
	if (ret)
		return ret;
	old = *inout;
	*inout = np;
	policy_unref(old);
	return 0;
}

struct policy *policy_new_allow_hosts(const char *const *hosts, size_t n)
{
	struct policy *p = policy_alloc();

	if (!p)
		return NULL;
	p->fmt = POLICY_FMT_SLUICE;
	p->source = "<--allow>";
	if (n && !(p->rules = arena_alloc(&p->arena, n * sizeof(*p->rules))))
		goto fail;
	for (size_t i = 0; i < n; i++) {
		struct rule *r = &p->rules[i];
		size_t hl = strlen(hosts[i]);
		char *h = arena_strndup(&p->arena, hosts[i], hl);

		if (!h || !(r->hosts = arena_alloc(&p->arena, sizeof(*r->hosts))))
			goto fail;
		for (size_t k = 0; k < hl; k++)
			h[k] = (h[k] >= 'A' && h[k] <= 'Z') ? (char)(h[k] + 32) : h[k];
		r->allow = true;
		r->hmode = HOST_LABEL;
		r->hosts[0] = h;
		r->n_hosts = 1;
		if (!(r->desc = arena_printf(&p->arena, "allow host=%s", h)))
			goto fail;
		p->n_rules++;
	}
	return p;
fail:
	policy_free(p);
	return NULL;
}

/* ---- decisions ---- */

static bool rule_host_match(const struct rule *r, const char *host, size_t hl)
{
	if (!r->n_hosts)
		return true;
	for (size_t i = 0; i < r->n_hosts; i++)
		if (host_match_mode(r->hmode, r->hosts[i], host, hl))
			return true;
	return false;
}

static bool list_has_ci(const char *const *list, size_t n, const char *s, size_t sl)
{
	for (size_t i = 0; i < n; i++)
		if (strlen(list[i]) == sl && !strncasecmp(list[i], s, sl))
			return true;
	return false;
}

static bool port_match(const struct rule *r, uint16_t port)
{
	if (!r->n_ports)
		return true;
	for (size_t i = 0; i < r->n_ports; i++)
		if (r->ports[i] == port)
			return true;
	return false;
}

/* fold: ASCII case folded (the wide view of a path). */
static bool paths_match(const char *const *globs, size_t n, const char *path, size_t pl, bool fold)
{
	if (!n)
		return true;
	for (size_t i = 0; i < n; i++)
		if (fold ? policy_path_glob_match_fold(globs[i], path, pl)
			 : policy_path_glob_match(globs[i], path, pl))
			return true;
	return false;
}

/* Appends to a bounded string (truncating, like snprintf). */
struct why_out {
	char *p;
	size_t n, cap;
};

static void why_str(struct why_out *w, const char *s)
{
	size_t l = strlen(s);

	if (l > w->cap - 1 - w->n)
		l = w->cap - 1 - w->n;
	memcpy(w->p + w->n, s, l);
	w->n += l;
}

static void why_uint(struct why_out *w, unsigned long v)
{
	char tmp[24], *q = tmp + sizeof(tmp);

	*--q = 0;
	do {
		*--q = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	why_str(w, q);
}

static void set_why_lit(struct policy_verdict *v, const char *s)
{
	struct why_out w = { v->why, 0, sizeof(v->why) };

	why_str(&w, s);
	w.p[w.n] = 0;
}

/* "rule N (source[:line:col]): desc", without printf: it runs per request. */
static void set_why(const struct policy *p, const struct rule *r, int idx, struct policy_verdict *v)
{
	struct why_out w = { v->why, 0, sizeof(v->why) };

	why_str(&w, "rule ");
	why_uint(&w, (unsigned long)idx + 1);
	why_str(&w, " (");
	why_str(&w, p->source ? p->source : "(null)");
	if (r->line) {
		why_str(&w, ":");
		why_uint(&w, r->line);
		why_str(&w, ":");
		why_uint(&w, r->col);
	}
	why_str(&w, "): ");
	why_str(&w, r->desc ? r->desc : "(null)");
	w.p[w.n] = 0;
}

/* Normalises into stack (or heap when long); *heap must be freed by the caller. */
static int normalise_target(const char *t, size_t tl, char *stack, size_t stacklen,
			    char **path, char **heap)
{
	int n;

	*heap = NULL;
	*path = stack;
	if (t && policy_target_ambiguous(t, tl))
		return -EBADMSG;
	if (tl + 2 > stacklen) {
		*heap = malloc(tl + 2);
		if (!*heap)
			return -ENOMEM;
		*path = *heap;
		stacklen = tl + 2;
	}
	n = policy_path_normalise(t ? t : "", t ? tl : 0, *path, stacklen);
	if (n < 0) {
		free(*heap);
		*heap = NULL;
	}
	return n;
}

int policy_decide(const struct policy *p, const struct policy_req *r, struct policy_verdict *v)
{
	char stack[2048], wstack[2048], *path, *heap, *wide = NULL;
	int pl, wl = -1;

	if (!v)
		return -EINVAL;
	v->allow = false;
	v->rule = -1;
	set_why_lit(v, "no rule matched: default deny");
	if (!p || !r || !r->host)
		return -EINVAL;
	pl = normalise_target(r->target, r->target_len, stack, sizeof(stack), &path, &heap);
	if (pl < 0) {
		snprintf(v->why, sizeof(v->why), "request-target cannot be normalised: %s",
			 pl == -ENOMEM ? "out of memory" :
			 pl == -EBADMSG ? "a '#', a %00, a '.' or '..' segment (also behind '\\', %2F or %5C, "
					  "or before a ';' parameter) or a leading '//', which an upstream "
					  "could read as another path; "
					  "send the path without them" :
			 "bad percent-encoding or path above the root");
		return pl == -ENOMEM ? -ENOMEM : -EINVAL;
	}
	for (size_t i = 0; i < p->n_rules; i++) {
		const struct rule *ru = &p->rules[i];

		if (ru->tcp || !port_match(ru, r->port) || !rule_host_match(ru, r->host, r->host_len))
			continue;
		if (ru->n_methods && !list_has_ci(ru->methods, ru->n_methods, r->method ? r->method : "",
						  r->method ? r->method_len : 0))
			continue;
		if (!paths_match(ru->paths, ru->n_paths, path, (size_t)pl, false)) {
			/* A deny rule also takes the widest view an upstream may have
			 * (made once, when the first deny rule needs it). */
			if (ru->allow)
				continue;
			if (!wide) {
				wide = pl + 2 <= (int)sizeof(wstack) ? wstack : malloc((size_t)pl + 2);
				if (!wide) {
					free(heap);
					return -ENOMEM;
				}
				wl = policy_path_wide(path, (size_t)pl, wide, (size_t)pl + 2);
			}
			/* No wide view (cannot happen: the buffer fits): the deny holds. */
			if (wl >= 0 && !paths_match(ru->paths, ru->n_paths, wide, (size_t)wl, true))
				continue;
		}
		v->allow = ru->allow;
		v->rule = (int)i;
		set_why(p, ru, (int)i, v);
		break;
	}
	if (wide != wstack)
		free(wide);
	free(heap);
	return 0;
}

bool policy_host_may_allow(const struct policy *p, const char *host, size_t host_len)
{
	if (!p || !host)
		return false;
	/* HTTP requests meet only the HTTP rules, raw TCP only the proto: tcp
	 * ones (policy_decide, policy_tcp_allowed): an unconditional deny
	 * shadows the allows after it of its own kind only. */
	bool http_shut = false, tcp_shut = false;

	for (size_t i = 0; i < p->n_rules && !(http_shut && tcp_shut); i++) {
		const struct rule *r = &p->rules[i];
		bool *shut = r->tcp ? &tcp_shut : &http_shut;

		if (*shut || !rule_host_match(r, host, host_len))
			continue;
		if (r->allow)
			return true;
		if (!r->n_methods && !r->n_paths && !r->n_ports)
			*shut = true;
	}
	return false;
}

bool policy_host_named(const struct policy *p, const char *host, size_t host_len)
{
	if (!p || !host)
		return false;
	for (size_t i = 0; i < p->n_rules; i++) {
		const struct rule *r = &p->rules[i];

		if (!r->allow)
			continue;
		for (size_t j = 0; j < r->n_hosts; j++)
			if (!strpbrk(r->hosts[j], "*?[") &&
			    host_match_mode(r->hmode, r->hosts[j], host, host_len))
				return true;
	}
	return false;
}

bool policy_rule_names_host(const struct policy *p, int rule, const char *host, size_t host_len)
{
	const struct rule *r;

	if (!p || !host || rule < 0 || (size_t)rule >= p->n_rules)
		return false;
	r = &p->rules[rule];
	if (!r->allow)
		return false;
	for (size_t j = 0; j < r->n_hosts; j++)
		if (!strpbrk(r->hosts[j], "*?[") && host_match_mode(r->hmode, r->hosts[j], host, host_len))
			return true;
	return false;
}

bool policy_tcp_allowed(const struct policy *p, const char *host, size_t host_len,
			uint16_t port, struct policy_verdict *v)
{
	if (v) {
		v->allow = false;
		v->rule = -1;
		set_why_lit(v, "no proto: tcp rule matched: default deny");
	}
	if (!p || !host)
		return false;
	for (size_t i = 0; i < p->n_rules; i++) {
		const struct rule *r = &p->rules[i];

		if (!r->tcp || !port_match(r, port) || !rule_host_match(r, host, host_len))
			continue;
		if (v) {
			v->allow = r->allow;
			v->rule = (int)i;
			set_why(p, r, (int)i, v);
		}
		return r->allow;
	}
	return false;
}

bool policy_tcp_possible(const struct policy *p, uint16_t port)
{
	if (!p)
		return false;
	for (size_t i = 0; i < p->n_rules; i++)
		if (p->rules[i].tcp && p->rules[i].allow && port_match(&p->rules[i], port))
			return true;
	return false;
}

/* ---- secrets ---- */

size_t policy_secret_count(const struct policy *p)
{
	return p ? p->n_secrets : 0;
}

const struct policy_secret *policy_secret_at(const struct policy *p, size_t i)
{
	return (p && i < p->n_secrets) ? &p->secrets[i].pub : NULL;
}

bool policy_secret_host_allowed(const struct policy_secret *ps, const char *host, size_t host_len)
{
	const struct secret *s = (const struct secret *)ps;

	if (!s || !host)
		return false;
	for (size_t i = 0; i < ps->n_hosts; i++)
		if (host_match_mode(s->hmode, ps->hosts[i], host, host_len))
			return true;
	return false;
}

bool policy_secret_allowed(const struct policy_secret *ps, const char *host, size_t host_len,
			   const char *method, size_t method_len,
			   const char *target, size_t target_len)
{
	char stack[2048], *path, *heap;
	bool ok;
	int pl;

	if (!policy_secret_host_allowed(ps, host, host_len))
		return false;
	if (ps->n_methods && !list_has_ci(ps->methods, ps->n_methods, method ? method : "",
					  method ? method_len : 0))
		return false;
	if (!ps->n_paths)
		return true;
	pl = normalise_target(target, target_len, stack, sizeof(stack), &path, &heap);
	if (pl < 0)
		return false;
	ok = paths_match(ps->paths, ps->n_paths, path, (size_t)pl, false);
	free(heap);
	return ok;
}

static int read_secret_file(struct secret *s, char *err, size_t errlen)
{
	const char *name = s->pub.name, *path = s->file_source;
	char *buf = NULL;
	size_t len = 0, cap = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC), ret = 0;

	if (fd < 0) {
		ret = -errno;
		snprintf(err, errlen, "secret %s: cannot open file %s: %s; fix file: or its permissions",
			 name, path, strerror(-ret));
		return ret;
	}
	for (;;) {
		ssize_t r;

		if (cap - len < 512) {
			char *nb;

			if (cap >= 1 << 20) {
				ret = -EFBIG;
				snprintf(err, errlen, "secret %s: file %s is larger than 1 MiB; a secret file holds only the value",
					 name, path);
				goto out;
			}
			nb = malloc(cap ? cap * 2 : 1024);
			if (!nb) {
				ret = -ENOMEM;
				snprintf(err, errlen, "secret %s: out of memory reading %s", name, path);
				goto out;
			}
			/* no realloc: the old block would be freed without being wiped */
			if (buf) {
				memcpy(nb, buf, len);
				explicit_bzero(buf, cap);
				free(buf);
			}
			buf = nb;
			cap = cap ? cap * 2 : 1024;
		}
		r = read(fd, buf + len, cap - len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			ret = -errno;
			snprintf(err, errlen, "secret %s: reading %s failed: %s", name, path, strerror(-ret));
			goto out;
		}
		if (!r)
			break;
		len += (size_t)r;
	}
	/* files written by editors or `echo` end with one newline that is not part of the value */
	if (len && buf[len - 1] == '\n') {
		len--;
		if (len && buf[len - 1] == '\r')
			len--;
	}
	if (!len) {
		ret = -EINVAL;
		snprintf(err, errlen, "secret %s: file %s is empty; write the value into it", name, path);
		goto out;
	}
	s->value_mem = buf;
	s->pub.value = buf;
	s->pub.value_len = len;
	buf = NULL;
out:
	if (buf) {
		explicit_bzero(buf, cap);
		free(buf);
	}
	close(fd);
	return ret;
}

int policy_resolve_secrets(struct policy *p, char *err, size_t errlen)
{
	if (err && errlen)
		err[0] = '\0';
	if (!p)
		return -EINVAL;
	for (size_t i = 0; i < p->n_secrets; i++) {
		struct secret *s = &p->secrets[i];
		const char *src = NULL;
		size_t sl = 0;
		int ret;

		if (s->pub.value)
			continue;
		if (s->file_source) {
			ret = read_secret_file(s, err, errlen);
			if (ret)
				return ret;
			continue;
		}
		if (s->pub.env_source) {
			src = getenv(s->pub.env_source);
			if (!src || !*src) {
				snprintf(err, errlen,
					 "secret %s: environment variable %s is %s; export it in the environment of sluiced",
					 s->pub.name, s->pub.env_source, src ? "empty" : "not set");
				return -ENOENT;
			}
			sl = strlen(src);
		} else if (s->literal) {
			src = s->literal;
			sl = s->literal_len;
		} else {
			snprintf(err, errlen, "secret %s has no source; give value, env or file", s->pub.name);
			return -EINVAL;
		}
		s->value_mem = malloc(sl + 1);
		if (!s->value_mem) {
			snprintf(err, errlen, "secret %s: out of memory", s->pub.name);
			return -ENOMEM;
		}
		memcpy(s->value_mem, src, sl);
		s->value_mem[sl] = '\0';
		s->pub.value = s->value_mem;
		s->pub.value_len = sl;
	}
	return 0;
}

/* ---- dump ---- */

static const char *fmt_name(enum policy_format f)
{
	switch (f) {
	case POLICY_FMT_SANDCAT: return "sandcat settings.json";
	case POLICY_FMT_AGENT_SANDBOX: return "agent-sandbox policy.yaml";
	default: return "sluice";
	}
}

static const char *hmode_name(enum host_mode m)
{
	switch (m) {
	case HOST_FNMATCH: return "fnmatch: '*' crosses dots";
	case HOST_SUFFIX: return "\"*.x\" = x and below";
	default: return "label-anchored";
	}
}

static void dump_list(FILE *f, const char *key, const char *const *l, size_t n)
{
	if (!n)
		return;
	fprintf(f, " %s=", key);
	for (size_t i = 0; i < n; i++)
		fprintf(f, "%s%s", i ? "," : "", l[i]);
}

int policy_dump(const struct policy *p, FILE *f)
{
	if (!p || !f)
		return -EINVAL;
	fprintf(f, "# policy %s (format: %s)\n", p->source, fmt_name(p->fmt));
	fprintf(f, "# rules are tried in order; the first match decides; no match = deny\n");
	for (size_t i = 0; i < p->n_rules; i++) {
		const struct rule *r = &p->rules[i];

		fprintf(f, "rule %zu", i + 1);
		if (r->line)
			fprintf(f, " (%s:%u:%u)", p->source, r->line, r->col);
		fprintf(f, ": %s", r->desc);
		if (r->name)
			fprintf(f, " name=\"%s\"", r->name);
		if (r->n_hosts)
			fprintf(f, "  [hosts %s]", hmode_name(r->hmode));
		fputc('\n', f);
	}
	if (!p->n_rules)
		fprintf(f, "(no rules: every request is denied)\n");
	else
		fprintf(f, "default: deny\n");
	for (size_t i = 0; i < p->n_secrets; i++) {
		const struct secret *s = &p->secrets[i];
		const struct policy_secret *ps = &s->pub;
		static const char *const wn[] = { "header", "query", "body", "path" };
		bool first = true;

		fprintf(f, "secret %s", ps->name);
		if (s->line)
			fprintf(f, " (%s:%u:%u)", p->source, s->line, s->col);
		fprintf(f, ": placeholder=%s", ps->placeholder);
		if (ps->placeholder_alias)
			fprintf(f, " alias=%s", ps->placeholder_alias);
		if (s->file_source)
			fprintf(f, " from=file:%s", s->file_source);
		else if (ps->env_source)
			fprintf(f, " from=env:%s", ps->env_source);
		else
			fprintf(f, " from=literal");
		dump_list(f, "hosts", ps->hosts, ps->n_hosts);
		if (!ps->n_hosts)
			fprintf(f, " hosts=(none: any use is a leak)");
		dump_list(f, "methods", ps->methods, ps->n_methods);
		dump_list(f, "paths", ps->paths, ps->n_paths);
		fprintf(f, " in=");
		for (unsigned b = 0; b < 4; b++)
			if (ps->where & (1u << b)) {
				fprintf(f, "%s%s", first ? "" : ",", wn[b]);
				first = false;
			}
		switch (ps->inject) {
		case SECRET_INJECT_BEARER: fprintf(f, " inject=bearer"); break;
		case SECRET_INJECT_BASIC: fprintf(f, " inject=basic user=%s", ps->inject_user); break;
		case SECRET_INJECT_HEADER: fprintf(f, " inject=header:%s", ps->inject_header); break;
		default: break;
		}
		fputc('\n', f);
	}
	return ferror(f) ? -EIO : 0;
}
