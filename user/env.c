// SPDX-License-Identifier: MIT
/* The sandbox's environment: placeholders instead of secrets, sluice's CA trusted. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "sluice.h"

static const char *const ca_vars[] = {
	"SSL_CERT_FILE", "CURL_CA_BUNDLE", "REQUESTS_CA_BUNDLE", "NODE_EXTRA_CA_CERTS", "GIT_SSL_CAINFO",
};
#define N_CA_VARS (sizeof(ca_vars) / sizeof(ca_vars[0]))

static int var_is(const char *kv, const char *name)
{
	size_t n = strlen(name);

	return !strncmp(kv, name, n) && kv[n] == '=';
}

/* Does kv's value contain some secret's value (its source var's, or the one
 * read from its file or policy)? A copy of a token under another name must not
 * reach the sandbox either. */
static int holds_secret(const char *kv, char *const *env, const struct env_secret *s, size_t n)
{
	const char *val = strchr(kv, '=');

	if (!val)
		return 1; /* malformed: drop it */
	val++;
	for (size_t i = 0; i < n; i++) {
		if (s[i].value && s[i].value_len && memmem(val, strlen(val), s[i].value, s[i].value_len))
			return 1;
		if (!s[i].env_source)
			continue;
		for (char *const *e = env; *e; e++) {
			const char *sv;

			if (!var_is(*e, s[i].env_source))
				continue;
			sv = *e + strlen(s[i].env_source) + 1;
			if (*sv && strstr(val, sv))
				return 1;
		}
	}
	return 0;
}

/* Where the servers sluice runs under listen: hidden from the sandbox (run.c),
 * so a client in it would find nothing there (and tmux refuses to nest). */
static const char *const session_vars[] = {
	"TMUX", "TMUX_PANE", "STY", "VSCODE_IPC_HOOK_CLI", "WEZTERM_UNIX_SOCKET", "KITTY_LISTEN_ON",
};

static int dropped(const char *kv, char *const *env, const struct env_secret *s, size_t n)
{
	for (size_t i = 0; i < sizeof(session_vars) / sizeof(session_vars[0]); i++)
		if (var_is(kv, session_vars[i]))
			return 1;
	for (size_t i = 0; i < n; i++)
		if (var_is(kv, s[i].name) || (s[i].env_source && var_is(kv, s[i].env_source)))
			return 1;
	for (size_t i = 0; i < N_CA_VARS; i++)
		if (var_is(kv, ca_vars[i]))
			return 1;
	return holds_secret(kv, env, s, n);
}

char **env_build(char *const *env, const struct env_secret *s, size_t n, const char *bundle)
{
	size_t count = 0, bytes = 0, k = 0;
	char **out, *p;

	for (char *const *e = env; *e; e++) {
		if (dropped(*e, env, s, n))
			continue;
		count++;
		bytes += strlen(*e) + 1;
	}
	for (size_t i = 0; i < n; i++)
		bytes += strlen(s[i].name) + strlen(s[i].placeholder) + 2;
	for (size_t i = 0; i < N_CA_VARS; i++)
		bytes += strlen(ca_vars[i]) + strlen(bundle) + 2;
	count += n + N_CA_VARS;

	/* One block: the pointer array, then the strings. */
	out = malloc((count + 1) * sizeof(char *) + bytes);
	if (!out)
		return NULL;
	p = (char *)(out + count + 1);
	for (char *const *e = env; *e; e++) {
		if (dropped(*e, env, s, n))
			continue;
		out[k++] = p;
		p = stpcpy(p, *e) + 1;
	}
	for (size_t i = 0; i < n; i++) {
		out[k++] = p;
		p = stpcpy(stpcpy(stpcpy(p, s[i].name), "="), s[i].placeholder) + 1;
	}
	for (size_t i = 0; i < N_CA_VARS; i++) {
		out[k++] = p;
		p = stpcpy(stpcpy(stpcpy(p, ca_vars[i]), "="), bundle) + 1;
	}
	out[k] = NULL;
	return out;
}
