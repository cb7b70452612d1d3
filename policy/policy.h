/* SPDX-License-Identifier: MIT */
/*
 * The policy model: ordered rules (first match wins, no match = deny) and
 * secrets (placeholder -> real value, only toward the secret's hosts).
 * Loaded from a sluice policy (YAML), a sandcat settings.json or an
 * agent-sandbox policy.yaml. A loaded policy is immutable and refcounted, so
 * the broker swaps in a reloaded one atomically while requests in flight keep
 * the one they started with.
 *
 * Owner: policy/. This header is the contract used by user/ and broker/:
 * extend it, do not change the meaning of what is here.
 */
#ifndef SLUICE_POLICY_H
#define SLUICE_POLICY_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum policy_format {
	POLICY_FMT_AUTO = 0,      /* by content: sandcat JSON, agent-sandbox (domains/services), else sluice */
	POLICY_FMT_SLUICE,
	POLICY_FMT_SANDCAT,
	POLICY_FMT_AGENT_SANDBOX,
};

struct policy;

/* Loads and validates FILE. On error returns -EINVAL (or -errno for I/O) and
 * writes "file:line:col: what is wrong; what to do" into err. */
int policy_load(const char *path, enum policy_format fmt, struct policy **out,
		char *err, size_t errlen);
/* The same from an open file (not closed); path names it in messages and
 * relative secret files are read relative to its directory. */
int policy_load_fd(int fd, const char *path, enum policy_format fmt, struct policy **out,
		   char *err, size_t errlen);
/* Same from memory; name is used in messages in place of the file name. */
int policy_load_buf(const char *buf, size_t len, const char *name, enum policy_format fmt,
		    struct policy **out, char *err, size_t errlen);
/* A built-in policy allowing every request to the given host globs (any method,
 * path and port), used by `sluiced --allow HOST`. Returns NULL on ENOMEM. */
struct policy *policy_new_allow_hosts(const char *const *hosts, size_t n);

/* Loads path and, only on success, replaces *inout (the old policy is unref'd;
 * requests holding a ref keep it). On error *inout is untouched and err says
 * why (same contract as policy_load). For the broker's SIGHUP/inotify reload;
 * the caller serialises writers to *inout. */
int policy_reload(const char *path, enum policy_format fmt, struct policy **inout,
		  char *err, size_t errlen);

struct policy *policy_ref(struct policy *p);   /* atomic; returns p */
void policy_unref(struct policy *p);           /* NULL-safe; frees at zero */

/* Prints the rules and secrets (names, hosts: never values) as sluice understands them. */
int policy_dump(const struct policy *p, FILE *f);
const char *policy_source(const struct policy *p); /* file name it was loaded from */

/* ---- rules ---- */

struct policy_req {
	const char *host;   size_t host_len;    /* as received (SNI or Host); matched case-insensitively, trailing dot ignored */
	const char *method; size_t method_len;
	const char *target; size_t target_len;  /* request-target as received (origin-form, with query); normalised inside */
	uint16_t port;                          /* the original destination port */
};

struct policy_verdict {
	bool allow;
	int rule;           /* index of the matching rule, -1 = no rule matched */
	char why[256];      /* e.g. "rule 3 (p.yaml:12:5): allow host=*.github.com method=POST"
	                     *  or "no rule matched: default deny"
	                     *  (the number in the text counts from 1, .rule from 0) */
};

/* Returns 0 with v filled, or -EINVAL when the target cannot be normalised
 * (bad percent-encoding, escapes above the root...): the caller answers 400. */
int policy_decide(const struct policy *p, const struct policy_req *r, struct policy_verdict *v);

/* For DNS: true when some allow rule could match a request to this host (any
 * method, path or port), i.e. the name is worth resolving for the sandbox. */
bool policy_host_may_allow(const struct policy *p, const char *host, size_t host_len);

/* True when an allow rule names this host exactly (no wildcard in the pattern).
 * The broker dials names that resolve to loopback, link-local or its own
 * addresses only then: a glob like "*" must not open the way to 169.254.169.254. */
bool policy_host_named(const struct policy *p, const char *host, size_t host_len);

/* True when rule (an index from a verdict) is an allow rule that names this
 * host exactly. What the dial of an allowed request may reach inside this host
 * (loopback, link-local, its own addresses) depends on the rule that allowed
 * that request, not on some other rule naming the host for another port,
 * method or path. */
bool policy_rule_names_host(const struct policy *p, int rule, const char *host, size_t host_len);

/* For non-HTTP TCP (no TLS, or TLS that is not HTTP): true only when a rule
 * with `proto: tcp` allows host:port. host may be a name or an address literal. */
bool policy_tcp_allowed(const struct policy *p, const char *host, size_t host_len,
			uint16_t port, struct policy_verdict *v);
/* Whether any proto: tcp rule allowing port exists: when none does, no host
 * needs looking at (the broker asks this for every connection it accepts). */
bool policy_tcp_possible(const struct policy *p, uint16_t port);

/* Matching primitives (exported for the broker and the tests). */
bool policy_host_glob_match(const char *glob, const char *host, size_t host_len);
bool policy_path_glob_match(const char *glob, const char *path, size_t path_len);
/* The same, ASCII case folded. */
bool policy_path_glob_match_fold(const char *glob, const char *path, size_t path_len);
/* The widest view of a normalised path that common servers take: '\', %2F
 * and %5C read as '/', ";params" (also %3B) dropped from each segment, empty
 * segments merged, lower-cased (Express routes ignore case). Deny rules match
 * it as well as the path itself, so "/admin;x/a", "/admin%2Fa" and "/ADMIN/a"
 * are denied by a rule on "/admin/" + "**". out needs len + 2 bytes. Returns
 * the length written or -EINVAL. */
int policy_path_wide(const char *path, size_t len, char *out, size_t outlen);
/* Normalises the path part of a request-target (query dropped): percent-decodes
 * unreserved characters, resolves dot-segments, merges "//". Returns the
 * length written to out (NUL-terminated) or -EINVAL / -ENOSPC. */
int policy_path_normalise(const char *target, size_t len, char *out, size_t outlen);
/* True when an upstream may read the request-target as another path than the
 * one normalised above, so a request with it is refused: it has a '#' (no
 * fragment is allowed in a request-target, RFC 9112 3.2: some servers drop
 * it, others keep it); a dot-segment ("." or "..", %2E spelled or not), which
 * RFC 3986 clients remove before sending but some routers never resolve; one
 * that appears once '\', %2F or %5C are read as '/'; or a path starting with
 * "//", which URL parsers read as an authority. The rules, and the upstream,
 * then see the same path. */
bool policy_target_ambiguous(const char *target, size_t len);

/* ---- secrets ---- */

#define POLICY_MAX_SECRETS 64

enum secret_where {
	SECRET_IN_HEADER = 1u << 0,  /* header values */
	SECRET_IN_QUERY  = 1u << 1,  /* the query string of the request-target */
	SECRET_IN_BODY   = 1u << 2,  /* the request body */
	SECRET_IN_PATH   = 1u << 3,  /* the path of the request-target */
};

enum secret_inject {
	SECRET_INJECT_NONE = 0,
	SECRET_INJECT_BEARER,        /* Authorization: Bearer <value> */
	SECRET_INJECT_BASIC,         /* Authorization: Basic base64(inject_user ":" value) */
	SECRET_INJECT_HEADER,        /* <inject_header>: <value> */
};

struct policy_secret {
	const char *name;            /* env var name in the sandbox, e.g. "GITHUB_TOKEN" */
	const char *placeholder;     /* "SLUICE_PLACEHOLDER_<NAME>": what the sandbox sees */
	const char *value;           /* NULL until policy_resolve_secrets(); never log it */
	size_t value_len;
	const char *const *hosts;    size_t n_hosts;    /* globs; where the value may go */
	const char *const *methods;  size_t n_methods;  /* empty = any */
	const char *const *paths;    size_t n_paths;    /* path globs; empty = any */
	unsigned where;              /* SECRET_IN_* mask: where substitution may happen */
	enum secret_inject inject;   /* added to matching requests even without a placeholder */
	const char *inject_header;   /* for SECRET_INJECT_HEADER */
	const char *inject_user;     /* for SECRET_INJECT_BASIC */
	const char *env_source;      /* env var the value is read from (removed from the sandbox's env), or NULL */
	const char *placeholder_alias; /* a second placeholder meaning the same secret, or NULL:
	                                * "SANDCAT_PLACEHOLDER_<NAME>" for sandcat files, so
	                                * sandboxes configured for sandcat keep working */
	const char *file_source;     /* file the value is read from, or NULL (sluice run hides it
	                              * from the sandbox) */
};

size_t policy_secret_count(const struct policy *p);
const struct policy_secret *policy_secret_at(const struct policy *p, size_t i);

/* Reads every secret's value (env var of this process, file, or literal).
 * The broker; sluice run too, briefly (policy_forget_secret_values). Errors name the secret and the source, never the value. */
int policy_resolve_secrets(struct policy *p, char *err, size_t errlen);

/* Wipes and drops every resolved value (the CLI reads them only to keep copies
 * out of the sandbox's environment). */
void policy_forget_secret_values(struct policy *p);

/* Is host one of this secret's hosts (methods and paths aside)? Responses from
 * such a host are scrubbed of the value, whatever was sent. */
bool policy_secret_host_allowed(const struct policy_secret *s, const char *host, size_t host_len);

/* May this secret's value go to host (method, target) at all? */
bool policy_secret_allowed(const struct policy_secret *s, const char *host, size_t host_len,
			   const char *method, size_t method_len,
			   const char *target, size_t target_len);

#endif /* SLUICE_POLICY_H */
