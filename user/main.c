// SPDX-License-Identifier: MIT
/* sluice: run a command with its network locked down to the sluice broker. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "log.h"
#include "sluice.h"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: sluice run [--policy FILE] [--allow HOSTGLOB]... [--upstream-ca FILE]...\n"
		"                  [--resolve HOST:ADDR]... [--user USER] [--audit FILE] [--name NAME]\n"
		"                  [--writable PATH]... [--readonly-root] [--keep-socket PATH]... -- CMD [ARGS...]\n"
		"       sluice attach --cgroup PATH [--policy FILE] [--allow HOSTGLOB]... [same options as run]\n"
		"       sluice detach --cgroup PATH\n"
		"       sluice status\n"
		"       sluice policy check FILE\n"
		"run as uid 0 (or with --readonly-root): the host's files are read-only in the sandbox, /tmp and\n"
		"  /dev/shm are private and empty, /etc/shadow is empty; the current directory (the project) and\n"
		"  each --writable PATH stay writable\n"
		"the session's runtime dir (/run/user/UID) is an empty one of the sandbox's own; ssh-agent's\n"
		"  socket and each --keep-socket PATH (a unix socket in it, e.g. gpg-agent's) stay reachable\n"
		"expert options: --broker PATH (sluiced binary), --pin-root DIR (bpffs dir, default %s),\n"
		"                --run-dir DIR (default %s), --ca-dir DIR (default %s), -v,\n"
		"                --broker-workers N (sluiced event loops, 1-64; default 1)\n",
		SLUICE_PIN_ROOT, SLUICE_RUN_DIR, SLUICE_CA_DIR);
}

/* Option table: name -> where it goes (a string or a repeatable list). */
struct opt {
	const char *name;
	size_t str_off;         /* offsetof a const char * in run_opts, or -1 */
	size_t list_off;        /* offsetof the list (with its count right after) */
};
#define S(f) { "--" #f, offsetof(struct run_opts, f), (size_t)-1 }
static const struct opt opts[] = {
	S(policy), S(user), S(audit), S(broker), S(cgroup), S(name),
	{ "--pin-root", offsetof(struct run_opts, pin_root), (size_t)-1 },
	{ "--run-dir", offsetof(struct run_opts, run_dir), (size_t)-1 },
	{ "--ca-dir", offsetof(struct run_opts, ca_dir), (size_t)-1 },
	{ "--broker-workers", offsetof(struct run_opts, broker_workers), (size_t)-1 },
	{ "--upstream-ca", (size_t)-1, offsetof(struct run_opts, upstream_ca) },
	{ "--resolve", (size_t)-1, offsetof(struct run_opts, resolve) },
	{ "--allow", (size_t)-1, offsetof(struct run_opts, allow) },
	{ "--writable", (size_t)-1, offsetof(struct run_opts, writable) },
	{ "--keep-socket", (size_t)-1, offsetof(struct run_opts, keep_socket) },
};

static int list_add(struct run_opts *o, size_t off, const char *v)
{
	const char **list = (const char **)((char *)o + off);
	size_t *n = (size_t *)(list + SLUICE_MAX_ARGS);

	if (*n >= SLUICE_MAX_ARGS)
		return -E2BIG;
	list[(*n)++] = v;
	return 0;
}

/* Parses argv[i..] up to "--" (or the end); returns 0 or -EINVAL with a message. */
static int parse_opts(int argc, char **argv, struct run_opts *o)
{
	for (int i = 0; i < argc; i++) {
		const char *a = argv[i], *v = NULL, *eq;
		size_t k, alen;

		if (!strcmp(a, "--")) {
			o->cmd = argv + i + 1;
			return 0;
		}
		if (!strcmp(a, "-v")) {
			log_set_level(LOG_LVL_DEBUG);
			o->verbose = 1;
			continue;
		}
		if (!strcmp(a, "--readonly-root")) {
			o->readonly_root = 1;
			continue;
		}
		if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			usage(stdout);
			exit(0);
		}
		eq = strchr(a, '=');
		alen = eq ? (size_t)(eq - a) : strlen(a);
		for (k = 0; k < sizeof(opts) / sizeof(opts[0]); k++)
			if (strlen(opts[k].name) == alen && !strncmp(a, opts[k].name, alen))
				break;
		if (k == sizeof(opts) / sizeof(opts[0])) {
			pr_err("unknown option %s (see sluice --help; the command goes after --)", a);
			return -EINVAL;
		}
		if (eq)
			v = eq + 1;
		else if (i + 1 < argc)
			v = argv[++i];
		else {
			pr_err("%s needs a value", a);
			return -EINVAL;
		}
		if (opts[k].str_off != (size_t)-1)
			*(const char **)((char *)o + opts[k].str_off) = v;
		else if (list_add(o, opts[k].list_off, v)) {
			pr_err("too many %s options (at most %d)", opts[k].name, SLUICE_MAX_ARGS);
			return -EINVAL;
		}
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct run_opts o = {};
	const char *cmd = argc > 1 ? argv[1] : "";

	log_set_prefix("sluice");
	if (!strcmp(cmd, "policy")) {
		if (argc != 4 || strcmp(argv[2], "check")) {
			usage(stderr);
			return 2;
		}
		return do_policy_check(argv[3]);
	}
	if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
		usage(stdout);
		return 0;
	}
	if (argc < 2 || parse_opts(argc - 2, argv + 2, &o))
		goto bad;
	if (!strcmp(cmd, "run"))
		return do_run(&o);
	if (o.cmd) {
		pr_err("%s takes no command", cmd);
		return 2;
	}
	if (!strcmp(cmd, "attach"))
		return do_attach(&o);
	if (!strcmp(cmd, "detach"))
		return do_detach(&o);
	if (!strcmp(cmd, "status"))
		return do_status(&o);
bad:
	usage(stderr);
	return 2;
}
