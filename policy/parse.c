// SPDX-License-Identifier: MIT
/*
 * Policy files -> struct policy, with libyaml's document API so every error
 * can point at the node it is about ("file:line:col: what; what to do").
 * JSON is YAML's flow style, so sandcat's settings.json goes through the
 * same loader. Unknown keys are errors in every format: a typo must never
 * silently widen or narrow what is allowed.
 *
 * Formats (see policy/README.md for the full reference):
 *  - sluice:        rules: [...] and secrets: {...}
 *  - sandcat:       network: [{action, host, method}] and secrets: {NAME: {value, hosts}}
 *  - agent-sandbox: services: [names] and domains: [hosts]
 */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>
#include "policy_int.h"

struct pctx {
	struct policy *p;
	yaml_document_t *doc;
	const char *name;
	char *err;
	size_t errlen;
};

__attribute__((format(printf, 3, 4)))
static int perr(struct pctx *c, const yaml_node_t *n, const char *fmt, ...)
{
	va_list ap;
	int off;

	if (!c->err || !c->errlen)
		return -EINVAL;
	if (n)
		off = snprintf(c->err, c->errlen, "%s:%zu:%zu: ", c->name,
			       n->start_mark.line + 1, n->start_mark.column + 1);
	else
		off = snprintf(c->err, c->errlen, "%s: ", c->name);
	if (off < 0 || (size_t)off >= c->errlen)
		return -EINVAL;
	va_start(ap, fmt);
	vsnprintf(c->err + off, c->errlen - (size_t)off, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

static int enomem(struct pctx *c)
{
	snprintf(c->err, c->errlen, "%s: out of memory while loading the policy", c->name);
	return -ENOMEM;
}

static yaml_node_t *node_at(struct pctx *c, int id)
{
	return yaml_document_get_node(c->doc, id);
}

static bool is_scalar(const yaml_node_t *n)
{
	return n && n->type == YAML_SCALAR_NODE;
}

static const char *sval(const yaml_node_t *n)
{
	return (const char *)n->data.scalar.value;
}

static size_t slen(const yaml_node_t *n)
{
	return n->data.scalar.length;
}

static bool scalar_is(const yaml_node_t *n, const char *s)
{
	return is_scalar(n) && slen(n) == strlen(s) && !memcmp(sval(n), s, slen(n));
}

/* An empty value ("key:" with nothing, ~ or null) counts as an empty list. */
static bool is_null(const yaml_node_t *n)
{
	return is_scalar(n) && n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
	       (slen(n) == 0 || scalar_is(n, "~") || scalar_is(n, "null"));
}

static const char *kind(const yaml_node_t *n)
{
	switch (n->type) {
	case YAML_SCALAR_NODE: return "a scalar";
	case YAML_SEQUENCE_NODE: return "a list";
	case YAML_MAPPING_NODE: return "a mapping";
	default: return "nothing";
	}
}

/* Shortened copy of a scalar for messages (never used on secret values). */
static const char *shown(const yaml_node_t *n, char *buf, size_t len)
{
	size_t l = slen(n) < len - 4 ? slen(n) : len - 4;

	memcpy(buf, sval(n), l);
	strcpy(buf + l, slen(n) > l ? "..." : "");
	for (size_t i = 0; i < l; i++)
		if ((unsigned char)buf[i] < 0x20)
			buf[i] = '?';
	return buf;
}

/* Checks a mapping's keys: scalars, no duplicates, all in allowed. */
static int check_keys(struct pctx *c, yaml_node_t *map, const char *const *allowed,
		      const char *where, const char *expect)
{
	for (yaml_node_pair_t *pr = map->data.mapping.pairs.start; pr < map->data.mapping.pairs.top; pr++) {
		yaml_node_t *k = node_at(c, pr->key);
		bool ok = false;
		char b[64];

		if (!is_scalar(k))
			return perr(c, k, "a key in %s is %s; keys are plain names (%s)", where, kind(k), expect);
		for (size_t i = 0; allowed && allowed[i]; i++)
			if (scalar_is(k, allowed[i]))
				ok = true;
		if (allowed && !ok)
			return perr(c, k, "unknown key '%s' in %s; expected one of: %s",
				    shown(k, b, sizeof(b)), where, expect);
		for (yaml_node_pair_t *q = map->data.mapping.pairs.start; q < pr; q++) {
			yaml_node_t *k2 = node_at(c, q->key);

			if (is_scalar(k2) && slen(k2) == slen(k) && !memcmp(sval(k2), sval(k), slen(k)))
				return perr(c, k, "duplicate key '%s' in %s (first at line %zu); keep only one",
					    shown(k, b, sizeof(b)), where, k2->start_mark.line + 1);
		}
	}
	return 0;
}

static yaml_node_t *map_get(struct pctx *c, yaml_node_t *map, const char *key)
{
	for (yaml_node_pair_t *pr = map->data.mapping.pairs.start; pr < map->data.mapping.pairs.top; pr++)
		if (scalar_is(node_at(c, pr->key), key))
			return node_at(c, pr->value);
	return NULL;
}

/* ---- typed values ---- */

typedef int (*item_fn)(struct pctx *c, yaml_node_t *n, const char *what, char *val);

/* Reads a scalar or a list of scalars into an arena array of strings, each
 * copied and then checked/normalised in place by fn. */
static int str_list(struct pctx *c, yaml_node_t *n, const char *what, item_fn fn,
		    const char ***out, size_t *count)
{
	yaml_node_item_t *it;
	size_t cnt;

	*out = NULL;
	*count = 0;
	if (is_scalar(n)) {
		cnt = 1;
	} else if (n->type == YAML_SEQUENCE_NODE) {
		cnt = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
		if (!cnt)
			return perr(c, n, "%s is an empty list; remove the key to mean any, or list at least one", what);
	} else {
		return perr(c, n, "%s must be a string or a list of strings, not %s; write %s: X or %s: [X, Y]", what, kind(n), what, what);
	}
	*out = arena_alloc(&c->p->arena, cnt * sizeof(**out));
	if (!*out)
		return enomem(c);
	for (size_t i = 0; i < cnt; i++) {
		yaml_node_t *e = n;
		char *v;
		int ret;

		if (!is_scalar(n)) {
			it = n->data.sequence.items.start + i;
			e = node_at(c, *it);
			if (!is_scalar(e))
				return perr(c, e, "each entry of %s must be a string, not %s; write - NAME per line or [A, B]",
					    what, kind(e));
		}
		if (!slen(e) || memchr(sval(e), '\0', slen(e)))
			return perr(c, e, "%s entry is empty; write a value or drop it", what);
		v = arena_strndup(&c->p->arena, sval(e), slen(e));
		if (!v)
			return enomem(c);
		if (fn && (ret = fn(c, e, what, v)))
			return ret;
		(*out)[i] = v;
	}
	*count = cnt;
	return 0;
}

static void lower(char *s)
{
	for (; *s; s++)
		if (*s >= 'A' && *s <= 'Z')
			*s = (char)(*s + 32);
}

static void strip_dot(char *s)
{
	size_t l = strlen(s);

	if (l > 1 && s[l - 1] == '.')
		s[l - 1] = '\0';
}

/* sluice host glob: letters, digits, '-', '_', '.', '*', and ':' '[' ']' for address literals. */
static int host_item(struct pctx *c, yaml_node_t *n, const char *what, char *v)
{
	char b[64];

	lower(v);
	strip_dot(v);
	for (const char *s = v; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || strchr("-_.*:[]", *s)))
			return perr(c, n, "%s '%s' has the character '%c'; a host glob uses letters, digits, '-', '.' and '*'",
				    what, shown(n, b, sizeof(b)), *s);
	if (v[0] == '.' || strstr(v, ".."))
		return perr(c, n, "%s '%s' has an empty label; write names like api.example.com or *.example.com",
			    what, shown(n, b, sizeof(b)));
	return 0;
}

static int fnmatch_host_item(struct pctx *c, yaml_node_t *n, const char *what, char *v)
{
	lower(v);
	strip_dot(v);
	return 0;
}

static int suffix_host_item(struct pctx *c, yaml_node_t *n, const char *what, char *v)
{
	char b[64];

	lower(v);
	strip_dot(v);
	if ((v[0] == '*' && v[1] != '.') || strchr(v + 1, '*') || (v[0] == '*' && !v[2]))
		return perr(c, n, "domain '%s' uses a wildcard agent-sandbox does not support; only a leading '*.' is allowed",
			    shown(n, b, sizeof(b)));
	return 0;
}

static int method_item(struct pctx *c, yaml_node_t *n, const char *what, char *v)
{
	char b[64];

	for (char *s = v; *s; s++) {
		if (*s >= 'a' && *s <= 'z')
			*s = (char)(*s - 32);
		if (!((*s >= 'A' && *s <= 'Z') || *s == '-' || *s == '_'))
			return perr(c, n, "%s '%s' is not an HTTP method; write e.g. GET, POST, PUT",
				    what, shown(n, b, sizeof(b)));
	}
	return 0;
}

/* Path globs are normalised like request paths, so "/a%2Db" and "/a-b" are
 * the same rule; dot-segments in a rule are refused as they read ambiguously. */
static int path_item(struct pctx *c, yaml_node_t *n, const char *what, char *v)
{
	size_t l = strlen(v);
	char b[64], *tmp;
	int r;

	if (v[0] != '/')
		return perr(c, n, "%s '%s' must start with '/'; write e.g. /v1/**", what, shown(n, b, sizeof(b)));
	for (const char *s = v; *s; ) {
		const char *e = strchr(s + 1, '/');
		size_t sl = (e ? (size_t)(e - s) : strlen(s)) - 1;

		if ((sl == 1 && s[1] == '.') || (sl == 2 && s[1] == '.' && s[2] == '.'))
			return perr(c, n, "%s '%s' has a '.' or '..' segment; write the resolved path",
				    what, shown(n, b, sizeof(b)));
		if (memmem(s + 1, sl, "**", 2) && sl != 2)
			return perr(c, n, "%s '%s': '**' must be a whole segment (/a/**/b); use '*' inside a segment",
				    what, shown(n, b, sizeof(b)));
		if (!e)
			break;
		s = e;
	}
	tmp = arena_alloc(&c->p->arena, l + 2);
	if (!tmp)
		return enomem(c);
	r = policy_path_normalise(v, l, tmp, l + 2);
	if (r >= 0)
		memcpy(v, tmp, (size_t)r + 1); /* never longer: v starts with '/' */
	else
		return perr(c, n, "%s '%s' has a bad %%-escape or a space; write %%XX with two hex digits",
			    what, shown(n, b, sizeof(b)));
	return 0;
}

static int parse_ports(struct pctx *c, yaml_node_t *n, struct rule *r)
{
	size_t cnt = is_scalar(n) ? 1 : 0;

	if (n->type == YAML_SEQUENCE_NODE)
		cnt = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
	else if (!cnt)
		return perr(c, n, "port must be a number or a list of numbers, not %s", kind(n));
	if (!cnt)
		return perr(c, n, "port is an empty list; remove it to mean any port");
	r->ports = arena_alloc(&c->p->arena, cnt * sizeof(*r->ports));
	if (!r->ports)
		return enomem(c);
	for (size_t i = 0; i < cnt; i++) {
		yaml_node_t *e = is_scalar(n) ? n : node_at(c, n->data.sequence.items.start[i]);
		unsigned long v = 0;
		char b[64];

		if (!is_scalar(e))
			return perr(c, e, "each port must be a number, not %s", kind(e));
		for (size_t k = 0; k < slen(e) && v <= 65535; k++) {
			if (sval(e)[k] < '0' || sval(e)[k] > '9') {
				v = 0;
				break;
			}
			v = v * 10 + (unsigned long)(sval(e)[k] - '0');
		}
		if (!slen(e) || v < 1 || v > 65535)
			return perr(c, e, "port '%s' is not a number from 1 to 65535; write e.g. port: 443",
				    shown(e, b, sizeof(b)));
		r->ports[i] = (uint16_t)v;
	}
	r->n_ports = cnt;
	return 0;
}

static char *join(struct arena *a, const char *const *l, size_t n)
{
	size_t len = 1;
	char *s, *w;

	for (size_t i = 0; i < n; i++)
		len += strlen(l[i]) + 1;
	s = w = arena_alloc(a, len);
	if (!s)
		return NULL;
	for (size_t i = 0; i < n; i++)
		w += sprintf(w, "%s%s", i ? "," : "", l[i]);
	return s;
}

static int rule_desc(struct pctx *c, struct rule *r)
{
	struct arena *a = &c->p->arena;
	char ports[6 * 64 + 8] = "", *w = ports;
	const char *h = r->n_hosts ? join(a, r->hosts, r->n_hosts) : NULL;
	const char *m = r->n_methods ? join(a, r->methods, r->n_methods) : NULL;
	const char *pa = r->n_paths ? join(a, r->paths, r->n_paths) : NULL;

	if ((r->n_hosts && !h) || (r->n_methods && !m) || (r->n_paths && !pa))
		return enomem(c);
	for (size_t i = 0; i < r->n_ports && i < 64; i++)
		w += sprintf(w, "%s%u", i ? "," : "", r->ports[i]);
	r->desc = arena_printf(a, "%s%s%s%s%s%s%s%s%s%s", r->allow ? "allow" : "deny",
			       h ? " host=" : " host=*", h ? h : "",
			       m ? " method=" : "", m ? m : "",
			       pa ? " path=" : "", pa ? pa : "",
			       r->n_ports ? " port=" : "", ports,
			       r->tcp ? " proto=tcp" : "");
	return r->desc ? 0 : enomem(c);
}

static int parse_action(struct pctx *c, yaml_node_t *n, bool *allow)
{
	char b[64];

	if (scalar_is(n, "allow"))
		*allow = true;
	else if (scalar_is(n, "deny"))
		*allow = false;
	else
		return perr(c, n, "action must be allow or deny, not %s%s%s; write action: allow or action: deny",
			    is_scalar(n) ? "'" : "", is_scalar(n) ? shown(n, b, sizeof(b)) : kind(n),
			    is_scalar(n) ? "'" : "");
	return 0;
}

static struct rule *rules_alloc(struct pctx *c, size_t n)
{
	c->p->rules = n ? arena_alloc(&c->p->arena, n * sizeof(struct rule)) : NULL;
	return c->p->rules;
}

/* ---- sluice ---- */

static const char *const sluice_rule_keys[] = { "action", "host", "method", "path", "port", "proto", "name", NULL };
#define SLUICE_RULE_KEYS "action, host, method, path, port, proto, name"

static int sluice_rule(struct pctx *c, yaml_node_t *n, struct rule *r)
{
	yaml_node_t *v;
	int ret;

	if (n->type != YAML_MAPPING_NODE)
		return perr(c, n, "a rule must be a mapping like {action: allow, host: example.com}, not %s; write each rule as a mapping", kind(n));
	if ((ret = check_keys(c, n, sluice_rule_keys, "a rule", SLUICE_RULE_KEYS)))
		return ret;
	r->line = (unsigned)n->start_mark.line + 1;
	r->col = (unsigned)n->start_mark.column + 1;
	r->hmode = HOST_LABEL;
	if (!(v = map_get(c, n, "action")))
		return perr(c, n, "rule has no action; add action: allow or action: deny");
	if ((ret = parse_action(c, v, &r->allow)))
		return ret;
	if ((v = map_get(c, n, "proto"))) {
		if (scalar_is(v, "tcp"))
			r->tcp = true;
		else if (!scalar_is(v, "http"))
			return perr(c, v, "proto must be http or tcp; http (the default) matches HTTP requests, tcp other TCP");
	}
	if ((v = map_get(c, n, "host")) && (ret = str_list(c, v, "host", host_item, &r->hosts, &r->n_hosts)))
		return ret;
	if ((v = map_get(c, n, "method"))) {
		if (r->tcp)
			return perr(c, v, "method has no meaning with proto: tcp; remove it or use proto: http");
		if ((ret = str_list(c, v, "method", method_item, &r->methods, &r->n_methods)))
			return ret;
	}
	if ((v = map_get(c, n, "path"))) {
		if (r->tcp)
			return perr(c, v, "path has no meaning with proto: tcp; remove it or use proto: http");
		if ((ret = str_list(c, v, "path", path_item, &r->paths, &r->n_paths)))
			return ret;
	}
	if ((v = map_get(c, n, "port")) && (ret = parse_ports(c, v, r)))
		return ret;
	if ((v = map_get(c, n, "name"))) {
		if (!is_scalar(v))
			return perr(c, v, "name must be a string, not %s; write name: some-label", kind(v));
		if (!(r->name = arena_strndup(&c->p->arena, sval(v), slen(v))))
			return enomem(c);
	}
	return rule_desc(c, r);
}

static int rules_seq(struct pctx *c, yaml_node_t *n, const char *key,
		     int (*one)(struct pctx *, yaml_node_t *, struct rule *))
{
	size_t cnt;
	int ret;

	if (is_null(n))
		return 0;
	if (n->type != YAML_SEQUENCE_NODE)
		return perr(c, n, "%s must be a list of rules, not %s; start each rule with '- action: ...'", key, kind(n));
	cnt = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
	if (cnt && !rules_alloc(c, cnt))
		return enomem(c);
	for (size_t i = 0; i < cnt; i++) {
		if ((ret = one(c, node_at(c, n->data.sequence.items.start[i]), &c->p->rules[i])))
			return ret;
		c->p->n_rules++;
	}
	return 0;
}

static bool env_name_ok(const char *s, size_t l)
{
	if (!l || (s[0] >= '0' && s[0] <= '9'))
		return false;
	for (size_t i = 0; i < l; i++)
		if (!((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= 'a' && s[i] <= 'z') ||
		      (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
			return false;
	return true;
}

static int secret_common(struct pctx *c, yaml_node_t *k, struct secret *s)
{
	char b[64];

	if (!is_scalar(k) || !env_name_ok(sval(k), slen(k)))
		return perr(c, k, "secret name '%s' is not an environment variable name; use letters, digits and _",
			    is_scalar(k) ? shown(k, b, sizeof(b)) : kind(k));
	s->line = (unsigned)k->start_mark.line + 1;
	s->col = (unsigned)k->start_mark.column + 1;
	s->pub.name = arena_strndup(&c->p->arena, sval(k), slen(k));
	s->pub.placeholder = arena_printf(&c->p->arena, "SLUICE_PLACEHOLDER_%s", s->pub.name ? s->pub.name : "");
	if (!s->pub.name || !s->pub.placeholder)
		return enomem(c);
	return 0;
}

static const char *const sluice_secret_keys[] = { "value", "env", "file", "hosts", "methods", "paths",
						  "in", "inject", "user", NULL };
#define SLUICE_SECRET_KEYS "value, env, file, hosts, methods, paths, in, inject, user"

/* A relative file: is read relative to the policy file's directory. */
static const char *secret_path(struct pctx *c, const char *v, size_t l)
{
	const char *slash = strrchr(c->name, '/');

	if (v[0] == '/' || !slash)
		return arena_strndup(&c->p->arena, v, l);
	return arena_printf(&c->p->arena, "%.*s/%.*s", (int)(slash - c->name), c->name, (int)l, v);
}

static int sluice_secret(struct pctx *c, yaml_node_t *k, yaml_node_t *n, struct secret *s)
{
	static const char *const wn[] = { "header", "query", "body", "path" };
	yaml_node_t *v, *src = NULL;
	const char **in = NULL;
	size_t n_in = 0, n_src = 0;
	int ret;

	if ((ret = secret_common(c, k, s)))
		return ret;
	if (n->type != YAML_MAPPING_NODE)
		return perr(c, n, "secret %s must be a mapping like {env: VAR, hosts: [api.example.com]}, not %s",
			    s->pub.name, kind(n));
	if ((ret = check_keys(c, n, sluice_secret_keys, "a secret", SLUICE_SECRET_KEYS)))
		return ret;
	s->hmode = HOST_LABEL;
	for (const char *const *key = (const char *const[]){ "value", "env", "file", NULL }; *key; key++)
		if ((v = map_get(c, n, *key))) {
			n_src++;
			src = v;
			if (!is_scalar(v) || !slen(v))
				return perr(c, v, "secret %s: %s must be a non-empty string; write %s: ...", s->pub.name, *key, *key);
			if (!strcmp(*key, "value")) {
				s->literal = arena_strndup(&c->p->arena, sval(v), slen(v));
				s->literal_len = slen(v);
				if (!s->literal)
					return enomem(c);
			} else if (!strcmp(*key, "env")) {
				if (!env_name_ok(sval(v), slen(v)))
					return perr(c, v, "secret %s: env must name an environment variable; use letters, digits and _",
						    s->pub.name);
				if (!(s->pub.env_source = arena_strndup(&c->p->arena, sval(v), slen(v))))
					return enomem(c);
			} else if (!(s->pub.file_source = s->file_source = secret_path(c, sval(v), slen(v)))) {
				return enomem(c);
			}
		}
	if (n_src != 1)
		return perr(c, n_src ? src : n, "secret %s needs exactly one of value, env or file; keep one", s->pub.name);
	if (!(v = map_get(c, n, "hosts")))
		return perr(c, n, "secret %s has no hosts; add hosts: [api.example.com] (where the value may go)",
			    s->pub.name);
	if ((ret = str_list(c, v, "hosts", host_item, (const char ***)&s->pub.hosts, &s->pub.n_hosts)))
		return ret;
	if ((v = map_get(c, n, "methods")) &&
	    (ret = str_list(c, v, "methods", method_item, (const char ***)&s->pub.methods, &s->pub.n_methods)))
		return ret;
	if ((v = map_get(c, n, "paths")) &&
	    (ret = str_list(c, v, "paths", path_item, (const char ***)&s->pub.paths, &s->pub.n_paths)))
		return ret;
	s->pub.where = SECRET_IN_HEADER;
	if ((v = map_get(c, n, "in"))) {
		if ((ret = str_list(c, v, "in", NULL, &in, &n_in)))
			return ret;
		s->pub.where = 0;
		for (size_t i = 0; i < n_in; i++) {
			unsigned b;

			for (b = 0; b < 4 && strcmp(in[i], wn[b]); b++)
				;
			if (b == 4)
				return perr(c, v, "secret %s: in: '%s' is not a place; use header, query, body or path",
					    s->pub.name, in[i]);
			s->pub.where |= 1u << b;
		}
	}
	if ((v = map_get(c, n, "inject"))) {
		if (scalar_is(v, "bearer")) {
			s->pub.inject = SECRET_INJECT_BEARER;
		} else if (scalar_is(v, "basic")) {
			s->pub.inject = SECRET_INJECT_BASIC;
		} else if (v->type == YAML_MAPPING_NODE) {
			yaml_node_t *h;

			if ((ret = check_keys(c, v, (const char *const[]){ "header", NULL }, "inject", "header")))
				return ret;
			h = map_get(c, v, "header");
			if (!h || !is_scalar(h) || !slen(h))
				return perr(c, v, "secret %s: inject needs header: NAME, e.g. inject: {header: X-Api-Key}",
					    s->pub.name);
			for (size_t i = 0; i < slen(h); i++) {
				char ch = sval(h)[i];

				if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
				      strchr("!#$%&'*+-.^_`|~", ch)))
					return perr(c, h, "secret %s: inject header name has the character '%c'; use a header token like X-Api-Key",
						    s->pub.name, ch);
			}
			s->pub.inject = SECRET_INJECT_HEADER;
			if (!(s->pub.inject_header = arena_strndup(&c->p->arena, sval(h), slen(h))))
				return enomem(c);
		} else {
			return perr(c, v, "secret %s: inject is not known; write inject: bearer, inject: basic or inject: {header: NAME}", s->pub.name);
		}
	}
	if ((v = map_get(c, n, "user"))) {
		if (s->pub.inject != SECRET_INJECT_BASIC)
			return perr(c, v, "secret %s: user is only used with inject: basic; remove it or set inject: basic",
				    s->pub.name);
		if (!is_scalar(v) || memchr(sval(v), ':', slen(v)))
			return perr(c, v, "secret %s: user must be a string without ':'", s->pub.name);
		if (!(s->pub.inject_user = arena_strndup(&c->p->arena, sval(v), slen(v))))
			return enomem(c);
	} else if (s->pub.inject == SECRET_INJECT_BASIC) {
		return perr(c, map_get(c, n, "inject"),
			    "secret %s: inject: basic needs user:; add e.g. user: x-access-token (GitHub)", s->pub.name);
	}
	return 0;
}

static int secrets_map(struct pctx *c, yaml_node_t *n,
		       int (*one)(struct pctx *, yaml_node_t *, yaml_node_t *, struct secret *))
{
	size_t cnt;
	int ret;

	if (is_null(n))
		return 0;
	if (n->type != YAML_MAPPING_NODE)
		return perr(c, n, "secrets must be a mapping, not %s; write NAME: {...} per secret", kind(n));
	if ((ret = check_keys(c, n, NULL, "secrets", "secret names")))
		return ret;
	cnt = (size_t)(n->data.mapping.pairs.top - n->data.mapping.pairs.start);
	if (!cnt)
		return 0;
	/* The broker keeps per-request secret sets as 64-bit masks. */
	if (cnt > POLICY_MAX_SECRETS)
		return perr(c, n, "%zu secrets: at most %d per policy; split the agents' work across sandboxes",
			    cnt, POLICY_MAX_SECRETS);
	c->p->secrets = arena_alloc(&c->p->arena, cnt * sizeof(struct secret));
	if (!c->p->secrets)
		return enomem(c);
	for (size_t i = 0; i < cnt; i++) {
		yaml_node_pair_t *pr = n->data.mapping.pairs.start + i;

		if ((ret = one(c, node_at(c, pr->key), node_at(c, pr->value), &c->p->secrets[i])))
			return ret;
		c->p->n_secrets++;
	}
	return 0;
}

static int parse_sluice(struct pctx *c, yaml_node_t *root)
{
	yaml_node_t *v;
	int ret;

	if ((ret = check_keys(c, root, (const char *const[]){ "rules", "secrets", NULL },
			      "the sluice policy", "rules, secrets")))
		return ret;
	if ((v = map_get(c, root, "rules")) && (ret = rules_seq(c, v, "rules", sluice_rule)))
		return ret;
	if ((v = map_get(c, root, "secrets")) && (ret = secrets_map(c, v, sluice_secret)))
		return ret;
	return 0;
}

/* ---- sandcat settings.json ---- */

static int sandcat_rule(struct pctx *c, yaml_node_t *n, struct rule *r)
{
	yaml_node_t *v;
	int ret;

	if (n->type != YAML_MAPPING_NODE)
		return perr(c, n, "a network rule must be an object like {\"action\": \"allow\", \"host\": \"*\"}, not %s",
			    kind(n));
	if ((ret = check_keys(c, n, (const char *const[]){ "action", "host", "method", NULL },
			      "a sandcat network rule", "action, host, method")))
		return ret;
	r->line = (unsigned)n->start_mark.line + 1;
	r->col = (unsigned)n->start_mark.column + 1;
	r->hmode = HOST_FNMATCH;
	if (!(v = map_get(c, n, "action")))
		return perr(c, n, "network rule has no action; add \"action\": \"allow\" or \"deny\"");
	if ((ret = parse_action(c, v, &r->allow)))
		return ret;
	if (!(v = map_get(c, n, "host")))
		return perr(c, n, "network rule has no host (sandcat requires it); add \"host\": \"*\" to match all");
	if (!is_scalar(v))
		return perr(c, v, "host must be a string glob, not %s; write \"host\": \"*.example.com\"", kind(v));
	if ((ret = str_list(c, v, "host", fnmatch_host_item, &r->hosts, &r->n_hosts)))
		return ret;
	if ((v = map_get(c, n, "method"))) {
		if (!is_scalar(v))
			return perr(c, v, "method must be one string in sandcat's format, not %s; write one rule per method", kind(v));
		if ((ret = str_list(c, v, "method", method_item, &r->methods, &r->n_methods)))
			return ret;
	}
	return rule_desc(c, r);
}

static int sandcat_secret(struct pctx *c, yaml_node_t *k, yaml_node_t *n, struct secret *s)
{
	yaml_node_t *v;
	int ret;

	if ((ret = secret_common(c, k, s)))
		return ret;
	if (n->type != YAML_MAPPING_NODE)
		return perr(c, n, "secret %s must be an object {\"value\": ..., \"hosts\": [...]}, not %s",
			    s->pub.name, kind(n));
	if ((ret = check_keys(c, n, (const char *const[]){ "value", "hosts", NULL }, "a sandcat secret",
			      "value, hosts")))
		return ret;
	s->hmode = HOST_FNMATCH;
	/* sandcat substitutes in the URL, the headers and the body */
	s->pub.where = SECRET_IN_HEADER | SECRET_IN_QUERY | SECRET_IN_BODY | SECRET_IN_PATH;
	s->pub.placeholder_alias = arena_printf(&c->p->arena, "SANDCAT_PLACEHOLDER_%s", s->pub.name);
	if (!s->pub.placeholder_alias)
		return enomem(c);
	if (!(v = map_get(c, n, "value")))
		return perr(c, n, "secret %s has no value; add \"value\": \"...\"", s->pub.name);
	if (!is_scalar(v) || !slen(v))
		return perr(c, v, "secret %s: value must be a non-empty string; write \"value\": \"...\"", s->pub.name);
	s->literal = arena_strndup(&c->p->arena, sval(v), slen(v));
	s->literal_len = slen(v);
	if (!s->literal)
		return enomem(c);
	/* sandcat: hosts defaults to [] (the secret may go nowhere: any use is a leak) */
	if ((v = map_get(c, n, "hosts")) && !is_null(v)) {
		if (v->type == YAML_SEQUENCE_NODE && v->data.sequence.items.top == v->data.sequence.items.start)
			return 0;
		if (v->type != YAML_SEQUENCE_NODE)
			return perr(c, v, "secret %s: hosts must be a list of globs, not %s; write [\"api.example.com\"]", s->pub.name, kind(v));
		if ((ret = str_list(c, v, "hosts", fnmatch_host_item, (const char ***)&s->pub.hosts,
				    &s->pub.n_hosts)))
			return ret;
	}
	return 0;
}

static int parse_sandcat(struct pctx *c, yaml_node_t *root)
{
	yaml_node_t *v;
	int ret;

	if ((ret = check_keys(c, root, (const char *const[]){ "secrets", "network", NULL },
			      "sandcat settings", "secrets, network")))
		return ret;
	if ((v = map_get(c, root, "network")) && (ret = rules_seq(c, v, "network", sandcat_rule)))
		return ret;
	if ((v = map_get(c, root, "secrets")) && (ret = secrets_map(c, v, sandcat_secret)))
		return ret;
	return 0;
}

/* ---- agent-sandbox policy.yaml ---- */

/* What agent-sandbox's service names expand to (its proxy's service catalog);
 * "github" is the catch-all GitHub entry. Hosts use agent-sandbox's meaning:
 * "*.x" also matches x. */
static const struct {
	const char *name;
	const char *const *hosts;
} as_services[] = {
	{ "github", (const char *const[]){ "github.com", "*.github.com", "githubusercontent.com",
					   "*.githubusercontent.com", NULL } },
	{ "claude", (const char *const[]){ "*.anthropic.com", "*.claude.ai", "*.claude.com", NULL } },
	{ "codex", (const char *const[]){ "*.openai.com", "chatgpt.com", "*.chatgpt.com", NULL } },
	{ "copilot", (const char *const[]){ "github.com", "api.github.com",
					    "copilot-telemetry.githubusercontent.com", "collector.github.com",
					    "default.exp-tas.com", "copilot-proxy.githubusercontent.com",
					    "origin-tracker.githubusercontent.com", "*.githubcopilot.com",
					    "*.githubassets.com", NULL } },
	{ "gemini", (const char *const[]){ "cloudcode-pa.googleapis.com", "generativelanguage.googleapis.com",
					   "oauth2.googleapis.com", NULL } },
	{ "opencode", (const char *const[]){ "opencode.ai", "*.opencode.ai", "models.dev", NULL } },
	{ "factory", (const char *const[]){ "api.factory.ai", "api.workos.com", NULL } },
	{ "vscode", (const char *const[]){ "update.code.visualstudio.com", "marketplace.visualstudio.com",
					   "mobile.events.data.microsoft.com", "main.vscode-cdn.net",
					   "*.vsassets.io", NULL } },
	{ "jetbrains", (const char *const[]){ "plugins.jetbrains.com", "downloads.marketplace.jetbrains.com",
					      NULL } },
};
#define AS_SERVICE_NAMES "github, claude, codex, copilot, gemini, opencode, factory, vscode, jetbrains"

static int as_add(struct pctx *c, const char *host, unsigned line, unsigned col, const char *via)
{
	struct rule *r = &c->p->rules[c->p->n_rules];

	r->allow = true;
	r->hmode = HOST_SUFFIX;
	r->line = line;
	r->col = col;
	r->hosts = arena_alloc(&c->p->arena, sizeof(*r->hosts));
	if (!r->hosts)
		return enomem(c);
	r->hosts[0] = host;
	r->n_hosts = 1;
	r->name = via;
	c->p->n_rules++;
	return rule_desc(c, r);
}

static int parse_agent_sandbox(struct pctx *c, yaml_node_t *root)
{
	yaml_node_t *svc, *dom;
	size_t total = 0;
	int ret;

	if ((ret = check_keys(c, root, (const char *const[]){ "services", "domains", NULL },
			      "the agent-sandbox policy", "services, domains")))
		return ret;
	svc = map_get(c, root, "services");
	dom = map_get(c, root, "domains");
	for (int li = 0; li < 2; li++) {
		yaml_node_t *l = li ? dom : svc;

		if (!l || is_null(l))
			continue;
		if (l->type != YAML_SEQUENCE_NODE)
			return perr(c, l, "%s must be a list, not %s; write one - entry per line", l == svc ? "services" : "domains", kind(l));
		total += (size_t)(l->data.sequence.items.top - l->data.sequence.items.start);
	}
	if (svc && !is_null(svc)) {
		for (yaml_node_item_t *it = svc->data.sequence.items.start; it < svc->data.sequence.items.top; it++) {
			yaml_node_t *e = node_at(c, *it);
			size_t k;
			char b[64];

			if (!is_scalar(e))
				return perr(c, e, "a service must be a name, not %s; use one of %s", kind(e), AS_SERVICE_NAMES);
			for (k = 0; k < sizeof(as_services) / sizeof(as_services[0]); k++)
				if (slen(e) == strlen(as_services[k].name) &&
				    !strncasecmp(sval(e), as_services[k].name, slen(e)))
					break;
			if (k == sizeof(as_services) / sizeof(as_services[0]))
				return perr(c, e, "unknown service '%s'; known services: %s (or list hosts under domains:)",
					    shown(e, b, sizeof(b)), AS_SERVICE_NAMES);
			for (const char *const *h = as_services[k].hosts; *h; h++)
				total++;
		}
	}
	if (total && !rules_alloc(c, total))
		return enomem(c);
	if (svc && !is_null(svc)) {
		for (yaml_node_item_t *it = svc->data.sequence.items.start; it < svc->data.sequence.items.top; it++) {
			yaml_node_t *e = node_at(c, *it);
			size_t k;
			const char *via;

			for (k = 0; strncasecmp(sval(e), as_services[k].name, slen(e)) ||
				    slen(e) != strlen(as_services[k].name); k++)
				;
			via = arena_printf(&c->p->arena, "service %s", as_services[k].name);
			if (!via)
				return enomem(c);
			for (const char *const *h = as_services[k].hosts; *h; h++)
				if ((ret = as_add(c, *h, (unsigned)e->start_mark.line + 1,
						  (unsigned)e->start_mark.column + 1, via)))
					return ret;
		}
	}
	if (dom && !is_null(dom)) {
		for (yaml_node_item_t *it = dom->data.sequence.items.start; it < dom->data.sequence.items.top; it++) {
			yaml_node_t *e = node_at(c, *it);
			const char **h;
			size_t n;

			if (!is_scalar(e))
				return perr(c, e, "a domain must be a host name, not %s; write api.example.com or *.example.com",
					    kind(e));
			if ((ret = str_list(c, e, "domain", suffix_host_item, &h, &n)))
				return ret;
			if ((ret = as_add(c, h[0], (unsigned)e->start_mark.line + 1,
					  (unsigned)e->start_mark.column + 1, NULL)))
				return ret;
		}
	}
	return 0;
}

/* ---- entry ---- */

static bool sandcat_secret_shapes(struct pctx *c, yaml_node_t *sec)
{
	if (!sec || sec->type != YAML_MAPPING_NODE)
		return false;
	for (yaml_node_pair_t *pr = sec->data.mapping.pairs.start; pr < sec->data.mapping.pairs.top; pr++) {
		yaml_node_t *v = node_at(c, pr->value);

		if (v->type != YAML_MAPPING_NODE || !map_get(c, v, "value"))
			return false;
		for (yaml_node_pair_t *q = v->data.mapping.pairs.start; q < v->data.mapping.pairs.top; q++)
			if (!scalar_is(node_at(c, q->key), "value") && !scalar_is(node_at(c, q->key), "hosts"))
				return false;
	}
	return true;
}

static enum policy_format detect(struct pctx *c, yaml_node_t *root)
{
	size_t nl = strlen(c->name);

	if (nl >= 5 && !strcasecmp(c->name + nl - 5, ".json"))
		return POLICY_FMT_SANDCAT;
	if (!root || root->type != YAML_MAPPING_NODE || map_get(c, root, "rules"))
		return POLICY_FMT_SLUICE;
	if (map_get(c, root, "domains") || map_get(c, root, "services"))
		return POLICY_FMT_AGENT_SANDBOX;
	if (map_get(c, root, "network"))
		return POLICY_FMT_SANDCAT;
	if (map_get(c, root, "secrets") && sandcat_secret_shapes(c, map_get(c, root, "secrets")))
		return POLICY_FMT_SANDCAT;
	return POLICY_FMT_SLUICE;
}

static void offset_to_linecol(const char *buf, size_t len, size_t off, size_t *line, size_t *col)
{
	*line = 1;
	*col = 1;
	for (size_t i = 0; i < off && i < len; i++) {
		if (buf[i] == '\n') {
			(*line)++;
			*col = 1;
		} else {
			(*col)++;
		}
	}
}

int policy_parse(struct policy *p, const char *buf, size_t len, const char *name,
		 enum policy_format fmt, char *err, size_t errlen)
{
	struct pctx c = { .p = p, .name = name, .err = err, .errlen = errlen };
	yaml_parser_t parser;
	yaml_document_t doc;
	yaml_node_t *root;
	int ret = 0;

	if (!yaml_parser_initialize(&parser))
		return enomem(&c);
	yaml_parser_set_input_string(&parser, (const unsigned char *)buf, len);
	if (!yaml_parser_load(&parser, &doc)) {
		size_t line = parser.problem_mark.line + 1, col = parser.problem_mark.column + 1;

		if (parser.error == YAML_MEMORY_ERROR) {
			yaml_parser_delete(&parser);
			return enomem(&c);
		}
		if (parser.error == YAML_READER_ERROR)
			offset_to_linecol(buf, len, parser.problem_offset, &line, &col);
		snprintf(err, errlen, "%s:%zu:%zu: %s error: %s%s%s; fix the %s syntax there", name, line, col,
			 parser.error == YAML_READER_ERROR ? "encoding" : "syntax",
			 parser.problem ? parser.problem : "malformed input",
			 parser.context ? " " : "", parser.context ? parser.context : "",
			 (fmt == POLICY_FMT_SANDCAT || (strlen(name) > 5 && !strcasecmp(name + strlen(name) - 5, ".json")))
				 ? "JSON" : "YAML");
		yaml_parser_delete(&parser);
		return -EINVAL;
	}
	c.doc = &doc;
	root = yaml_document_get_root_node(&doc);
	if (fmt == POLICY_FMT_AUTO)
		fmt = detect(&c, root);
	p->fmt = fmt;
	if (!root || is_null(root)) {
		/* an empty file is an empty rule list: everything is denied */
	} else if (root->type != YAML_MAPPING_NODE) {
		ret = perr(&c, root, "the policy must be a mapping, not %s; write it as %s", kind(root),
			   fmt == POLICY_FMT_SANDCAT ? "{\"network\": [...], \"secrets\": {...}}"
			   : fmt == POLICY_FMT_AGENT_SANDBOX ? "services: and domains:" : "rules: and secrets:");
	} else if (fmt == POLICY_FMT_SANDCAT) {
		ret = parse_sandcat(&c, root);
	} else if (fmt == POLICY_FMT_AGENT_SANDBOX) {
		ret = parse_agent_sandbox(&c, root);
	} else {
		ret = parse_sluice(&c, root);
	}
	yaml_document_delete(&doc);
	if (!ret) {
		/* a second document would be silently ignored: refuse it */
		yaml_document_t doc2;

		if (!yaml_parser_load(&parser, &doc2)) {
			ret = perr(&c, NULL, "cannot read past the first YAML document; keep one document per file");
		} else {
			if (yaml_document_get_root_node(&doc2))
				ret = perr(&c, NULL, "more than one YAML document (---); keep one document per file");
			yaml_document_delete(&doc2);
		}
	}
	yaml_parser_delete(&parser);
	return ret;
}
