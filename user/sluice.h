/* SPDX-License-Identifier: MIT */
/* Internals of the sluice CLI (user/). */
#ifndef SLUICE_USER_H
#define SLUICE_USER_H
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdint.h>
#include <sys/types.h>
#include <linux/types.h>
#include "common_kern_user.h"

#define SLUICE_RUN_DIR   "/run/sluice"
#define SLUICE_CA_DIR    "/var/lib/sluice/ca"
#define SLUICE_CG_PARENT "sluice"  /* sandbox cgroups live in <cgroup2 mount>/sluice/ */
#define SLUICE_MAX_ARGS  64

/* Options of run/attach, declared once (main.c fills them). */
struct run_opts {
	const char *policy;
	const char *user;
	const char *audit;
	const char *broker;     /* sluiced binary; default: next to this binary */
	const char *pin_root;   /* default SLUICE_PIN_ROOT */
	const char *run_dir;    /* default SLUICE_RUN_DIR */
	const char *ca_dir;
	const char *cgroup;     /* attach/detach: an existing cgroup */
	const char *name;       /* sandbox name (pin dir, cgroup, broker --sandbox) */
	const char *broker_workers; /* sluiced --workers (it checks the range) */
	char sandbox_cgid[24];  /* sluiced --cgroup-id: the sandbox's cgroup id, once known */
	int verbose;            /* -v: the broker's log stays on this terminal */
	int readonly_root;      /* --readonly-root: the uid 0 filesystem lockdown for any user */
	const char *upstream_ca[SLUICE_MAX_ARGS]; size_t n_upstream_ca;
	const char *resolve[SLUICE_MAX_ARGS];     size_t n_resolve;
	const char *allow[SLUICE_MAX_ARGS];       size_t n_allow;
	const char *writable[SLUICE_MAX_ARGS];    size_t n_writable; /* stay writable under readonly root */
	const char *keep_socket[SLUICE_MAX_ARGS]; size_t n_keep_socket; /* stay reachable in the runtime dir */
	char *const *cmd;       /* NULL-terminated */
};

/* ---- cgroup.c ---- */
/* Undoes mountinfo's octal escapes (space, tab, newline and backslash are
 * written as \ooo) in place. */
void mountinfo_unescape(char *s);
/* Finds the cgroup v2 mount point in mountinfo text. Returns 0, -ENOENT when
 * there is none, -ENAMETOOLONG when out is too small. */
int cg2_mount_parse(const char *mountinfo, char *out, size_t outlen);
/* Same from /proc/self/mountinfo. */
int cg2_mount_find(char *out, size_t outlen);
/* The cgroup id of a cgroup directory (its inode number on cgroup2). */
int cg_id(const char *path, __u64 *id);
/* <cgroup2 mount>/SLUICE_CG_PARENT, where sluice run's cgroups live. 0 or -errno. */
int cg_parent_path(char *path, size_t pathlen);
/* Creates <mount>/sluice/<name> (mode 0755); path receives its path. */
int cg_create(const char *name, char *path, size_t pathlen);
/* Moves pid (0: the caller) into the cgroup at path. */
int cg_enter(const char *path, pid_t pid);
/* Kills what is left in the cgroup, waits for it to empty, removes it. */
int cg_destroy(const char *path);
/* path's contents (at most max bytes) NUL-terminated, to free(); NULL (errno) on error. */
char *read_file(const char *path, size_t max);
/* 1 when a process is left in path's subtree, 0 when none, or -errno. */
int cg_populated(const char *path);
/* Cgroup v1 net_cls/net_prio in use turns off cgroup2 socket matching. Returns
 * 0 when cgroup2 socket hooks can apply, -EOPNOTSUPP (with a message) when not. */
int cg_sockmatch_check(void);

/* ---- loader.c ---- */
/* Pure checks behind loader_preflight(), each writing what is wrong and what
 * to do into err. release is uname's ("6.1.0-18-amd64"): -EOPNOTSUPP below
 * 5.8, -EINVAL when unreadable. capeff is /proc/self/status CapEff: -EPERM
 * without CAP_SYS_ADMIN, CAP_NET_ADMIN and (CAP_BPF or CAP_SYS_ADMIN). */
int kernel_release_check(const char *release, char *err, size_t errlen);
int caps_check(uint64_t capeff, char *err, size_t errlen);
/* Before anything is created: root, capabilities, kernel 5.8+, BTF, cgroup v2.
 * Prints the reason and returns -errno when sluice cannot work here. */
int loader_preflight(void);
struct loader;
/* Mounts bpffs at /sys/fs/bpf if needed and creates pin_root. */
int loader_prepare(const char *pin_root);
/* Loads the programs (shared maps reused from pin_root), attaches them to
 * the cgroup and pins the links under pin_root/name/. Returns 0 or -errno
 * (-EBUSY: the name is another live cgroup's, or its directory is locked).
 * Holds pin_root/name's flock until loader_close(): a run keeps its loader
 * for its whole life, so the clean-up of killed runs leaves it alone; attach
 * closes it at once (its names are never run-*, which that clean-up takes).
 * LOADER_DEVICES: also limit the device nodes the cgroup may open (sluice run). */
#define LOADER_DEVICES 1u
int loader_attach(const char *pin_root, const char *name, const char *cgroup_path,
		  unsigned flags, struct loader **out);
/* Closes our fds and releases the name's lock; the pinned links keep
 * enforcement in place. NULL-safe. */
void loader_close(struct loader *l);
/* Unpins (detaches) the links of sandbox name. Returns 0 or -errno (-ENOENT: none). */
int loader_detach(const char *pin_root, const char *name);
/* The same, unless name's links are attached to a live cgroup other than cgid
 * (an attach of another cgroup under that name came since): then -EBUSY. */
int loader_detach_own(const char *pin_root, const char *name, __u64 cgid);
/* The cgroup id name's pinned links are attached to (0: a cgroup released). */
int loader_pinned_cgid(const char *pin_root, const char *name, __u64 *cgid);
/* Removes what runs killed with SIGKILL left (pins, sandbox entry, empty cgroup
 * under cg_parent, which may be NULL: then only pins of released cgroups). */
void loader_gc_runs(const char *pin_root, const char *cg_parent);
/* Writes / deletes the sluice_sandboxes entry of cgroup id. */
int loader_set_sandbox(const char *pin_root, __u64 cgid, const struct sluice_sandbox *sb);
int loader_del_sandbox(const char *pin_root, __u64 cgid);
/* Records the broker and supervisor pids of cgroup id (for `sluice status`). */
int loader_set_info(const char *pin_root, __u64 cgid, const struct sluice_sb_info *info);
/* Prints the sandboxes map, the pinned sandboxes and the counters. */
int loader_status(const char *pin_root, FILE *f);

/* ---- broker.c ---- */
struct broker {
	pid_t pid;
	uint16_t port;      /* TCP, on 127.0.0.1 and ::1 */
	uint16_t dns_port;  /* UDP, same addresses */
};
/* Parses "READY P Q\n". Returns 0 or -EINVAL. */
int broker_parse_ready(const char *line, uint16_t *port, uint16_t *dns_port);
/* Builds sluiced's argv from the options (listen port 0 = any). Returns the
 * argc or -E2BIG; strings in argv point into o, storage (listen address) and name. */
int broker_argv(const struct run_opts *o, const char *bin, uint16_t listen_port, int ready_fd,
		char *storage, size_t storage_len, const char **argv, size_t max);
/* Where the broker's stderr goes: <run-dir>/<name>/sluiced.log. */
int broker_log_path(const struct run_opts *o, char *buf, size_t len);
/* Starts sluiced and waits (up to timeout_ms) for its READY line. Its
 * messages go to broker_log_path() (0600), not to the sandbox's terminal,
 * unless o->verbose; on failure the log's last lines are printed. */
int broker_start(const struct run_opts *o, uint16_t listen_port, int timeout_ms, struct broker *b);
void broker_stop(struct broker *b);

/* ---- env.c ---- */
struct env_secret {
	const char *name;         /* env var the sandbox sees */
	const char *placeholder;  /* its value there */
	const char *env_source;   /* var holding the real value (removed), or NULL */
	const char *value;        /* the real value (file: or value:), or NULL: any var holding it is removed */
	size_t value_len;
};
/* Builds the sandbox's environment from env (NULL-terminated): every secret's
 * source var and every var whose value contains a secret's value is dropped,
 * NAME=placeholder added, the CA trust variables point at bundle. Returns a
 * malloc'd NULL-terminated array (one block, free() it) or NULL on ENOMEM. */
char **env_build(char *const *env, const struct env_secret *s, size_t n, const char *bundle);

/* ---- sandbox.c ---- */
/* Identity the sandboxed command runs as. */
struct sb_ident {
	uid_t uid;
	gid_t gid;
	char  name[64];
};
/* --user NAME, else SUDO_UID/SUDO_GID, else nobody. */
int sb_ident_resolve(const char *user, struct sb_ident *id, char *err, size_t errlen);
/* What the sandbox must not read even as uid 0: absolute paths without
 * symlinks (realpath), filled by the parent before the fork. */
#define SB_MAX_HIDE 1000
#define SB_MAX_PRIV 16
struct sb_hide {
	const char *run_dir;            /* becomes an empty tmpfs with only ca.crt and
	                                 * ca-bundle.pem bound back (read-only) */
	const char *path[SB_MAX_HIDE];  /* files: an inaccessible node on top; dirs: empty tmpfs */
	size_t n;
	const char *priv[SB_MAX_PRIV];  /* dirs: an empty tmpfs of the sandbox's own on top */
	size_t n_priv;
	const char *sock[SB_MAX_PRIV];  /* sockets in those dirs bound back into the empty ones */
	dev_t sock_dev[SB_MAX_PRIV];    /* what sock[i] was when resolved: the child binds */
	ino_t sock_ino[SB_MAX_PRIV];    /* that socket or none */
	bool sock_opt[SB_MAX_PRIV];     /* gone by then: skipped (ssh-agent's), not fatal */
	size_t n_sock;
	/* Read-only root (uid 0, or --readonly-root): every mount read-only, a
	 * private tmpfs on /tmp and /dev/shm, /etc/shadow and /etc/gshadow empty;
	 * only the keep paths (the working directory, --writable) stay as the
	 * host has them, writable. */
	bool ro_root;
	const char *keep[SLUICE_MAX_ARGS + 1];
	size_t n_keep;
};
/* Adds path (realpath'd; it must exist) to the paths the read-only root keeps
 * writable. "/" is refused (-EPERM): it would make the whole host writable. */
int sb_keep_add(struct sb_hide *h, const char *path);
/* Adds path (resolved with realpath) to h; a path that does not exist has
 * nothing to hide. Returns 0, -E2BIG when full, or -errno from realpath. */
int sb_hide_add(struct sb_hide *h, const char *path);
/* Adds a directory (realpath'd; a missing one is skipped) that the sandbox
 * gets as an empty one of its own; it must be a directory (not a symlink)
 * owned by owner. 0, -E2BIG, -EPERM or -errno. */
int sb_priv_add(struct sb_hide *h, const char *path, uid_t owner);
/* Adds a unix socket (realpath'd; it must exist and be a socket: -ENOTSOCK)
 * that stays reachable where a directory above it becomes an empty one of
 * the sandbox's own. optional: one gone by the time the sandbox starts is
 * skipped. 0, -E2BIG or -errno. */
int sb_sock_add(struct sb_hide *h, const char *path, bool optional);
/* Frees the resolved paths (keep paths and run_dir included). */
void sb_hide_free(struct sb_hide *h);
int sb_hide_set_run_dir(struct sb_hide *h, const char *run_dir);
/* The kernel's Landlock ABI version (6 and up scope abstract unix sockets), or -errno. */
int sb_landlock_abi(void);
/* path is dir or below it (both absolute, without symlinks). */
bool path_under(const char *path, const char *dir);
/*
 * In the child made by clone(CLONE_NEWPID), so pid 1 of the sandbox's own
 * PID namespace: enter the cgroup, check the hooks apply, mount and cgroup
 * namespaces, a /proc of its own, hide what h names, read-only
 * cgroupfs/no bpffs, the read-only root when h->ro_root, drop to id without capabilities,
 * Landlock's abstract unix socket scope (ABI 6 and up), seccomp; then fork
 * the command and stay as its init (reaps orphans, forwards signals, exits
 * with the command's status). Returns only on failure, with a message in err;
 * an exec failure is written to errfd by the command's process.
 */
int sb_exec(const char *cgroup_path, const struct sb_ident *id, char *const *cmd, char **envp,
	    const struct sb_hide *h, int errfd, char *err, size_t errlen);

/* ---- run.c ---- */
int do_run(struct run_opts *o);
int do_attach(struct run_opts *o);
int do_detach(struct run_opts *o);
int do_status(struct run_opts *o);
int do_policy_check(const char *file);

#endif /* SLUICE_USER_H */
