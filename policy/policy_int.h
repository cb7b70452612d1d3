/* SPDX-License-Identifier: MIT */
/*
 * Private to policy/: the layout behind struct policy. Everything a loaded
 * policy points to lives in one arena, freed at once by the last unref, so
 * the parsers can bail out at any point without a cleanup path per field.
 */
#ifndef SLUICE_POLICY_INT_H
#define SLUICE_POLICY_INT_H
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "policy.h"

struct arena_chunk;
struct arena {
	struct arena_chunk *head;
};

void *arena_alloc(struct arena *a, size_t n);                 /* zeroed; NULL on ENOMEM */
char *arena_strndup(struct arena *a, const char *s, size_t n);
char *arena_printf(struct arena *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void arena_free(struct arena *a);

/* How a rule's or a secret's host globs are read, so each format keeps the
 * meaning it has in the tool it comes from. */
enum host_mode {
	HOST_LABEL = 0, /* sluice: '*' stays inside a label, a leading "*." is one or more labels */
	HOST_FNMATCH,   /* sandcat: Python fnmatch, '*' crosses dots ("*.x" never matches "x") */
	HOST_SUFFIX,    /* agent-sandbox: "x" exactly; "*.x" is x itself and anything below it */
};

struct rule {
	bool allow;
	bool tcp;                          /* proto: tcp (non-HTTP TCP); never used for HTTP decisions */
	enum host_mode hmode;
	const char **hosts;   size_t n_hosts;   /* 0 = any host */
	const char **methods; size_t n_methods; /* upper-case; 0 = any */
	const char **paths;   size_t n_paths;   /* normalised path globs; 0 = any */
	uint16_t *ports;      size_t n_ports;   /* 0 = any */
	const char *name;                  /* optional label from the file */
	unsigned line, col;                /* where the rule starts in the file (0 = built in) */
	const char *desc;                  /* "allow host=... method=..." for verdicts and dumps */
};

struct secret {
	struct policy_secret pub;          /* first: policy_secret_at() hands out &pub */
	enum host_mode hmode;
	const char *file_source;           /* file the value is read from, or NULL */
	const char *literal;               /* value written in the policy, or NULL */
	size_t literal_len;
	char *value_mem;                   /* malloc'd resolved value, wiped before free */
	unsigned line, col;
};

struct policy {
	atomic_uint refs;
	struct arena arena;
	const char *source;
	enum policy_format fmt;
	struct rule *rules;     size_t n_rules;
	struct secret *secrets; size_t n_secrets;
};

/* Host matching in a given mode; host is as received (any case, maybe a trailing dot). */
bool host_match_mode(enum host_mode m, const char *glob, const char *host, size_t host_len);

/* Parser entry (parse.c): fills a fresh policy p (arena, rules, secrets, fmt). */
int policy_parse(struct policy *p, const char *buf, size_t len, const char *name,
		 enum policy_format fmt, char *err, size_t errlen);

#endif /* SLUICE_POLICY_INT_H */
