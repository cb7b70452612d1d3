// SPDX-License-Identifier: MIT
/*
 * The sandboxed child, between fork() and exec(): it joins the cgroup only
 * now that every program is attached, proves the hooks apply to it, and
 * takes away every way back out: its own cgroup and mount namespaces with
 * cgroupfs read-only and bpffs gone (a uid 0 without capabilities still owns
 * the cgroupfs files), no capabilities, no_new_privs, and a seccomp filter
 * for the socket families the cgroup hooks do not see.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <poll.h>
#include <sched.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/audit.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/landlock.h>
#include <linux/netlink.h>
#include <linux/seccomp.h>
#include <linux/securebits.h>
#include "sluice.h"

extern char **environ;

#define ERR(...) (snprintf(err, errlen, __VA_ARGS__), -1)

int sb_hide_add(struct sb_hide *h, const char *path)
{
	char *r;

	if (!path || !*path)
		return 0;
	r = realpath(path, NULL);
	if (!r)
		return errno == ENOENT ? 0 : -errno;
	if (h->n >= SB_MAX_HIDE) {
		free(r);
		return -E2BIG;
	}
	h->path[h->n++] = r;
	return 0;
}

int sb_priv_add(struct sb_hide *h, const char *path, uid_t owner)
{
	struct stat st;
	char *r;

	/* The directory itself, not where a symlink planted in a shared /tmp
	 * (by an earlier sandbox of the same uid) would send the mount. */
	if (lstat(path, &st))
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISDIR(st.st_mode) || st.st_uid != owner)
		return -EPERM;
	r = realpath(path, NULL);
	if (!r)
		return -errno;
	if (h->n_priv >= SB_MAX_PRIV) {
		free(r);
		return -E2BIG;
	}
	h->priv[h->n_priv++] = r;
	return 0;
}

int sb_sock_add(struct sb_hide *h, const char *path, bool optional)
{
	struct stat st;
	char *r = realpath(path, NULL);
	int err;

	if (!r)
		return -errno;
	err = stat(r, &st) ? -errno : S_ISSOCK(st.st_mode) ? 0 : -ENOTSOCK;
	if (err) {
		free(r);
		return err;
	}
	if (h->n_sock >= SB_MAX_PRIV) {
		free(r);
		return -E2BIG;
	}
	h->sock_dev[h->n_sock] = st.st_dev;
	h->sock_ino[h->n_sock] = st.st_ino;
	h->sock_opt[h->n_sock] = optional;
	h->sock[h->n_sock++] = r;
	return 0;
}

int sb_hide_set_run_dir(struct sb_hide *h, const char *run_dir)
{
	char *r = realpath(run_dir, NULL);

	if (!r)
		return -errno;
	free((char *)h->run_dir);
	h->run_dir = r;
	return 0;
}

/* Whether path is dir or below it. */
bool path_under(const char *path, const char *dir)
{
	size_t n = strlen(dir);

	return !strncmp(path, dir, n) && (path[n] == 0 || path[n] == '/');
}

int sb_keep_add(struct sb_hide *h, const char *path)
{
	char *r = realpath(path, NULL);

	if (!r)
		return -errno;
	/* The whole host, or the kernel's own trees (sysfs knobs a uid 0 owns,
	 * the sandbox's /proc, device nodes): never writable. */
	if (!strcmp(r, "/") || path_under(r, "/proc") || path_under(r, "/sys") || path_under(r, "/dev")) {
		free(r);
		return -EPERM;
	}
	if (h->n_keep >= sizeof(h->keep) / sizeof(h->keep[0])) {
		free(r);
		return -E2BIG;
	}
	h->keep[h->n_keep++] = r;
	return 0;
}

void sb_hide_free(struct sb_hide *h)
{
	if (!h)
		return;
	for (size_t i = 0; i < h->n; i++)
		free((char *)h->path[i]);
	for (size_t i = 0; i < h->n_priv; i++)
		free((char *)h->priv[i]);
	for (size_t i = 0; i < h->n_keep; i++)
		free((char *)h->keep[i]);
	for (size_t i = 0; i < h->n_sock; i++)
		free((char *)h->sock[i]);
	free((char *)h->run_dir);
	memset(h, 0, sizeof(*h));
}

#define MNT_LOCKDOWN (MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)

/*
 * Makes path unreadable in this mount namespace: a directory gets an empty
 * read-only tmpfs of mode 000 on top; a file gets /dev/null bound on top and
 * remounted nodev, so opening it fails with EACCES even for uid 0 (whose
 * owner permissions would otherwise open a 0600 root file). A path that is
 * gone has nothing to hide.
 */
static int hide_path(const char *p, char *err, size_t errlen)
{
	struct stat st;

	if (stat(p, &st))
		return errno == ENOENT || errno == ENOTDIR ? 0 : ERR("Couldn't stat %s to hide it: %s", p, strerror(errno));
	if (S_ISDIR(st.st_mode)) {
		if (mount("sluice-hidden", p, "tmpfs", MNT_LOCKDOWN, "mode=000,size=4k"))
			return ERR("Couldn't hide directory %s from the sandbox: %s", p, strerror(errno));
		return 0;
	}
	if (mount("/dev/null", p, NULL, MS_BIND, NULL) ||
	    mount(NULL, p, NULL, MS_REMOUNT | MS_BIND | MNT_LOCKDOWN, NULL))
		return ERR("Couldn't hide %s from the sandbox: %s", p, strerror(errno));
	return 0;
}

/*
 * The run directory holds the broker's log, the audit log and pid files next
 * to the two files the sandbox needs: it becomes an empty tmpfs with only
 * ca.crt and ca-bundle.pem bound back, all read-only.
 */
static int hide_run_dir(const char *dir, char *err, size_t errlen)
{
	static const char *const keep[] = { "ca.crt", "ca-bundle.pem" };
	int fd[2] = { -1, -1 }, rc = 0;
	char p[4096], src[64];

	for (int i = 0; i < 2; i++) {
		snprintf(p, sizeof(p), "%s/%s", dir, keep[i]);
		fd[i] = open(p, O_PATH | O_CLOEXEC);
	}
	if (mount("sluice-run", dir, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0755,size=64k")) {
		rc = ERR("Couldn't hide the run directory %s from the sandbox: %s", dir, strerror(errno));
		goto out;
	}
	for (int i = 0; i < 2 && !rc; i++) {
		int f;

		if (fd[i] < 0)
			continue;
		snprintf(p, sizeof(p), "%s/%s", dir, keep[i]);
		snprintf(src, sizeof(src), "/proc/self/fd/%d", fd[i]);
		f = open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
		if (f >= 0)
			close(f);
		if (f < 0 || mount(src, p, NULL, MS_BIND, NULL) ||
		    mount(NULL, p, NULL, MS_REMOUNT | MS_BIND | MNT_LOCKDOWN, NULL))
			rc = ERR("Couldn't show %s to the sandbox: %s", p, strerror(errno));
	}
	if (!rc && mount(NULL, dir, NULL, MS_REMOUNT | MNT_LOCKDOWN, "mode=0755,size=64k"))
		rc = ERR("Couldn't make the sandbox's %s read-only: %s", dir, strerror(errno));
out:
	for (int i = 0; i < 2; i++)
		if (fd[i] >= 0)
			close(fd[i]);
	return rc;
}

/* Makes the directories above path, below top, in the sandbox's own tmpfs
 * (0700, the sandbox's), and binds the socket held by fd at path. */
static int bind_sock_back(const char *top, const char *path, int fd, const struct sb_ident *id)
{
	char p[4096], src[64];
	int f;

	snprintf(p, sizeof(p), "%s", path);
	for (char *s = p + strlen(top) + 1; (s = strchr(s, '/')); s++) {
		*s = 0;
		if (mkdir(p, 0700) && errno != EEXIST)
			return -errno;
		if (chown(p, id->uid, id->gid))
			return -errno;
		*s = '/';
	}
	f = open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	if (f < 0)
		return -errno;
	close(f);
	snprintf(src, sizeof(src), "/proc/self/fd/%d", fd);
	return mount(src, p, NULL, MS_BIND, NULL) ? -errno : 0;
}

/*
 * The terminal servers' and the session's directories (the runtime dir
 * /run/user/UID among them) become empty tmpfs of the sandbox's own; the
 * sockets asked for (h->sock: ssh-agent's, --keep-socket) are bound back in.
 * Their fds are taken before any mount covers them.
 */
static int private_dirs(const struct sb_hide *h, const struct sb_ident *id, char *err, size_t errlen)
{
	int fd[SB_MAX_PRIV], fe[SB_MAX_PRIV], rc = 0;
	char opts[96];

	/* Resolved by the parent (realpath): what is there now must be the socket
	 * it found, not another put in its place since. */
	for (size_t i = 0; i < h->n_sock; i++) {
		struct stat st;

		fd[i] = open(h->sock[i], O_PATH | O_NOFOLLOW | O_CLOEXEC);
		fe[i] = fd[i] < 0 ? errno : 0;
		if (fd[i] >= 0 && (fstat(fd[i], &st) || !S_ISSOCK(st.st_mode) ||
				   st.st_dev != h->sock_dev[i] || st.st_ino != h->sock_ino[i])) {
			close(fd[i]);
			fd[i] = -1;
			fe[i] = ESTALE;
		}
	}
	snprintf(opts, sizeof(opts), "mode=0700,uid=%u,gid=%u,size=4m", (unsigned)id->uid, (unsigned)id->gid);
	for (size_t i = 0; i < h->n_priv && !rc; i++) {
		bool covered = h->run_dir && path_under(h->priv[i], h->run_dir);

		/* Inside another private, hidden or run dir: that one's tmpfs is on
		 * top, and empty (tmux's inside the runtime dir). */
		for (size_t j = 0; j < h->n_priv; j++)
			covered |= j != i && path_under(h->priv[i], h->priv[j]) && strcmp(h->priv[i], h->priv[j]);
		for (size_t j = 0; j < h->n; j++)
			covered |= path_under(h->priv[i], h->path[j]);
		if (!covered && mount("sluice-private", h->priv[i], "tmpfs", MS_NOSUID | MS_NODEV, opts))
			rc = ERR("Couldn't give the sandbox its own %s: %s (run sluice again; if it stays, "
				 "report it)", h->priv[i], strerror(errno));
	}
	for (size_t i = 0; i < h->n_sock && !rc; i++) {
		const char *top = NULL;
		int e;

		for (size_t j = 0; j < h->n_priv; j++)
			if (path_under(h->sock[i], h->priv[j]) && strcmp(h->sock[i], h->priv[j]) &&
			    (!top || path_under(top, h->priv[j])))
				top = h->priv[j]; /* the outermost: its tmpfs is the one on top */
		if (!top || (fd[i] < 0 && h->sock_opt[i]))
			continue; /* not in an emptied directory, or an optional one gone */
		if (fd[i] < 0)
			rc = ERR("Couldn't keep the socket %s for the sandbox: %s", h->sock[i],
				 fe[i] == ESTALE ? "it was replaced after sluice checked it; run sluice again" :
				 strerror(fe[i]));
		else if ((e = bind_sock_back(top, h->sock[i], fd[i], id)))
			rc = ERR("Couldn't keep the socket %s for the sandbox: %s", h->sock[i], strerror(-e));
	}
	for (size_t i = 0; i < h->n_sock; i++)
		if (fd[i] >= 0)
			close(fd[i]);
	return rc;
}

/* A /proc of the sandbox's own PID namespace (other processes, the broker's
 * included, are not there), with the kernel knobs a uid 0 could write or
 * read without capabilities masked as container runtimes do. */
static int own_proc(char *err, size_t errlen)
{
	static const char *const masked[] = {
		"/proc/sysrq-trigger", "/proc/kcore", "/proc/keys", "/proc/timer_list",
		"/proc/latency_stats", "/proc/sched_debug", "/proc/acpi", "/proc/scsi",
		"/proc/kallsyms", "/sys/firmware", NULL,
	};
	static const char *const ro[] = { "/proc/sys", "/proc/bus", "/proc/fs", "/proc/irq", NULL };

	if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL))
		return ERR("Couldn't mount the sandbox's own /proc: %s", strerror(errno));
	for (int i = 0; masked[i]; i++)
		if (hide_path(masked[i], err, errlen))
			return -1;
	for (int i = 0; ro[i]; i++) {
		if (mount(ro[i], ro[i], NULL, MS_BIND | MS_REC, NULL)) {
			if (errno == ENOENT)
				continue;
			return ERR("Couldn't bind %s: %s", ro[i], strerror(errno));
		}
		if (mount(NULL, ro[i], NULL, MS_REMOUNT | MS_BIND | MNT_LOCKDOWN, NULL))
			return ERR("Couldn't make %s read-only: %s", ro[i], strerror(errno));
	}
	return 0;
}

static int ident_resolve(const char *user, struct sb_ident *id, char *err, size_t errlen);

/* The sandbox's user: --user, else the one sudo ran sluice for, else nobody.
 * Never the broker's listening uid, which would open its SO_REUSEPORT group. */
int sb_ident_resolve(const char *user, struct sb_ident *id, char *err, size_t errlen)
{
	int rc = ident_resolve(user, id, err, errlen);

	if (!rc && id->uid == SLUICE_LISTEN_UID) {
		snprintf(err, errlen, "uid %u is reserved for the broker's listening sockets: run the sandbox "
			 "as another user (--user)", SLUICE_LISTEN_UID);
		return -EINVAL;
	}
	return rc;
}

static int ident_resolve(const char *user, struct sb_ident *id, char *err, size_t errlen)
{
	const char *su = getenv("SUDO_UID"), *sg = getenv("SUDO_GID");
	struct passwd *pw;
	char *end;

	if (user) {
		unsigned long u = strtoul(user, &end, 10);

		pw = getpwnam(user);
		if (!pw && *user && !*end)
			pw = getpwuid((uid_t)u);
		if (!pw) {
			snprintf(err, errlen, "--user %s: no such user (give a name or uid from /etc/passwd)", user);
			return -ENOENT;
		}
		id->uid = pw->pw_uid;
		id->gid = pw->pw_gid;
		snprintf(id->name, sizeof(id->name), "%s", pw->pw_name);
		return 0;
	}
	if (su && *su) {
		id->uid = (uid_t)strtoul(su, &end, 10);
		if (*end) {
			snprintf(err, errlen, "SUDO_UID=%s is not a number; pass --user", su);
			return -EINVAL;
		}
		id->gid = sg && *sg ? (gid_t)strtoul(sg, NULL, 10) : id->uid;
		pw = getpwuid(id->uid);
		snprintf(id->name, sizeof(id->name), "%s", pw ? pw->pw_name : su);
		return 0;
	}
	pw = getpwnam("nobody");
	if (!pw) {
		snprintf(err, errlen, "no --user, no SUDO_UID and no 'nobody' user: pass --user");
		return -ENOENT;
	}
	id->uid = pw->pw_uid;
	id->gid = pw->pw_gid;
	snprintf(id->name, sizeof(id->name), "nobody");
	return 0;
}

/* Remounts (or for bpffs, detaches) what a uid 0 could use to get out. */
static int harden_mounts(char *err, size_t errlen)
{
	static const char *const ro_types[] = {
		"cgroup", "cgroup2", "sysfs", "debugfs", "tracefs", "securityfs", "configfs",
		"pstore", "efivarfs", NULL,
	};
	char line[4096];
	FILE *f;

	f = fopen("/proc/self/mountinfo", "re");
	if (!f)
		return ERR("Couldn't read /proc/self/mountinfo: %s", strerror(errno));
	while (fgets(line, sizeof(line), f)) {
		char mp[4096], type[64], *sep = strstr(line, " - ");
		int i, ro = 0;

		if (!sep || sscanf(line, "%*s %*s %*s %*s %4095s", mp) != 1 ||
		    sscanf(sep + 3, "%63s", type) != 1)
			continue;
		/* mountinfo escapes spaces; such mount points are not ours to handle */
		if (strchr(mp, '\\'))
			continue;
		if (!strcmp(type, "bpf")) {
			if (umount2(mp, MNT_DETACH) && errno != EINVAL && errno != ENOENT) {
				fclose(f);
				return ERR("Couldn't hide bpffs at %s: %s", mp, strerror(errno));
			}
			continue;
		}
		for (i = 0; ro_types[i]; i++)
			ro |= !strcmp(type, ro_types[i]);
		if (ro && mount(NULL, mp, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV |
				MS_NOEXEC, NULL) && errno != ENOENT && errno != EACCES) {
			fclose(f);
			return ERR("Couldn't make %s (%s) read-only: %s", mp, type, strerror(errno));
		}
	}
	fclose(f);
	return 0;
}

/*
 * Kernels before 5.12 have no mount_setattr(): every mount is remounted
 * read-only one by one. A bind remount replaces all per-mount flags, so
 * nosuid/nodev/noexec/atime are carried over from mountinfo. A mount the
 * path no longer reaches (covered by a later mount) is unreachable from the
 * sandbox too (it has no fds): ENOENT/EINVAL there are not failures.
 */
static int ro_walk(char *err, size_t errlen)
{
	static const struct { const char *name; unsigned long flag; } fl[] = {
		{ "nosuid", MS_NOSUID }, { "nodev", MS_NODEV }, { "noexec", MS_NOEXEC },
		{ "noatime", MS_NOATIME }, { "nodiratime", MS_NODIRATIME },
		{ "relatime", MS_RELATIME }, { "strictatime", MS_STRICTATIME },
	};
	char line[8192], mp[4096], opts[1024], *o, *save;
	FILE *f = fopen("/proc/self/mountinfo", "re");

	if (!f)
		return ERR("Couldn't read /proc/self/mountinfo: %s", strerror(errno));
	while (fgets(line, sizeof(line), f)) {
		unsigned long flags = MS_REMOUNT | MS_BIND | MS_RDONLY;

		if (sscanf(line, "%*s %*s %*s %*s %4095s %1023s", mp, opts) != 2) {
			fclose(f);
			return ERR("Couldn't parse a /proc/self/mountinfo line to make it read-only: %.200s", line);
		}
		mountinfo_unescape(mp);
		for (o = strtok_r(opts, ",", &save); o; o = strtok_r(NULL, ",", &save))
			for (size_t i = 0; i < sizeof(fl) / sizeof(fl[0]); i++)
				if (!strcmp(o, fl[i].name))
					flags |= fl[i].flag;
		if (mount(NULL, mp, NULL, flags, NULL) && errno != ENOENT && errno != EINVAL &&
		    errno != ENOTDIR) {
			fclose(f);
			return ERR("Couldn't make %s read-only in the sandbox: %s", mp, strerror(errno));
		}
	}
	fclose(f);
	return 0;
}

/* mkdir -p of p's parents (and p itself when dir; else an empty file), on
 * the fresh tmpfs a keep path below /tmp lands on. */
static int make_mountpoint(const char *p, bool dir)
{
	char buf[4096];
	int fd;

	if (snprintf(buf, sizeof(buf), "%s", p) >= (int)sizeof(buf))
		return -ENAMETOOLONG;
	for (char *s = strchr(buf + 1, '/'); s; s = strchr(s + 1, '/')) {
		*s = 0;
		if (mkdir(buf, 0755) && errno != EEXIST)
			return -errno;
		*s = '/';
	}
	if (dir)
		return mkdir(buf, 0755) && errno != EEXIST ? -errno : 0;
	fd = open(buf, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0)
		return errno == EISDIR ? 0 : -errno;
	close(fd);
	return 0;
}

static int keep_cmp(const void *a, const void *b)
{
	size_t la = strlen(*(const char *const *)a), lb = strlen(*(const char *const *)b);

	return la < lb ? -1 : la > lb;
}

/*
 * uid 0 owns /etc, /usr, /var/spool/cron...: a file written there (a cron
 * job, a systemd unit) would later run outside the sandbox with the network
 * open. So every mount becomes read-only, /tmp and /dev/shm fresh private
 * tmpfs, /etc/shadow and /etc/gshadow empty; the keep paths (the project,
 * --writable) are copies of the host's mounts taken before (open_tree keeps
 * their flags and what was hidden in them), put back on top. Without
 * CAP_SYS_ADMIN the sandbox cannot undo any of it.
 */
static int ro_root(const struct sb_hide *h, char *err, size_t errlen)
{
	static const char *const fresh[] = { "/tmp", "/dev/shm" };
	static const char *const blank[] = { "/etc/shadow", "/etc/gshadow" };
	const size_t nb = sizeof(blank) / sizeof(blank[0]);
	const char *keep[sizeof(h->keep) / sizeof(h->keep[0])];
	int kfd[sizeof(h->keep) / sizeof(h->keep[0])], bfd[2] = { -1, -1 }, tmpfd = -1, rc = 0;
	struct mount_attr ro = { .attr_set = MOUNT_ATTR_RDONLY };
	char cwd[4096], empty[] = "/tmp/.sluice-empty-XXXXXX";
	bool have_cwd = getcwd(cwd, sizeof(cwd)) != NULL;
	size_t n = h->n_keep, i;
	struct stat st;

	/* Outer paths first, so none covers one inside it. */
	memcpy(keep, h->keep, n * sizeof(keep[0]));
	qsort(keep, n, sizeof(keep[0]), keep_cmp);
	for (i = 0; i < n; i++)
		kfd[i] = -1;
	for (i = 0; i < n; i++) {
		kfd[i] = (int)open_tree(AT_FDCWD, keep[i], OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
		if (kfd[i] < 0) {
			rc = ERR("Couldn't copy the mount of %s to keep it writable in the sandbox: %s (kernel >= 5.2 needed)",
				 keep[i], strerror(errno));
			goto out;
		}
	}
	if (mount_setattr(-1, "/", AT_RECURSIVE, &ro, sizeof(ro))) {
		if (errno != ENOSYS) {
			rc = ERR("Couldn't make the sandbox's filesystem read-only: %s", strerror(errno));
			goto out;
		}
		if ((rc = ro_walk(err, errlen)))
			goto out;
	}
	for (i = 0; i < sizeof(fresh) / sizeof(fresh[0]); i++) {
		if (stat(fresh[i], &st) || !S_ISDIR(st.st_mode))
			continue;
		if (mount("sluice-tmp", fresh[i], "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777")) {
			rc = ERR("Couldn't mount a private tmpfs on the sandbox's %s: %s", fresh[i], strerror(errno));
			goto out;
		}
	}
	/* The empty file lives on the fresh /tmp only until its copies are on
	 * /etc/shadow (a detached copy of an unlinked file cannot be attached),
	 * removed through tmpfd since a keep path may cover /tmp by then: the
	 * sandbox's /tmp starts empty. */
	tmpfd = open("/tmp", O_PATH | O_DIRECTORY | O_CLOEXEC);
	i = 0;
	{
		int fd = mkstemp(empty);

		if (fd < 0) {
			rc = ERR("Couldn't create an empty file in the sandbox's /tmp to hide /etc/shadow: %s",
				 strerror(errno));
			goto out;
		}
		close(fd);
		for (; i < nb; i++) {
			bfd[i] = (int)open_tree(AT_FDCWD, empty, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
			if (bfd[i] < 0)
				break;
		}
		if (i < nb) {
			unlink(empty);
			rc = ERR("Couldn't copy an empty file to hide %s: %s", blank[i], strerror(errno));
			goto out;
		}
	}
	for (i = 0; i < n; i++) {
		int e = fstat(kfd[i], &st) ? -errno : make_mountpoint(keep[i], S_ISDIR(st.st_mode));

		if (!e && move_mount(kfd[i], "", AT_FDCWD, keep[i], MOVE_MOUNT_F_EMPTY_PATH))
			e = -errno;
		if (e) {
			rc = ERR("Couldn't keep %s writable in the sandbox: %s", keep[i], strerror(-e));
			goto out;
		}
	}
	for (i = 0; i < nb; i++) {
		if (lstat(blank[i], &st))
			continue;
		if (!S_ISREG(st.st_mode) || move_mount(bfd[i], "", AT_FDCWD, blank[i], MOVE_MOUNT_F_EMPTY_PATH) ||
		    mount(NULL, blank[i], NULL, MS_REMOUNT | MS_BIND | MNT_LOCKDOWN, NULL)) {
			rc = ERR("Couldn't hide %s from the sandbox: %s", blank[i],
				 S_ISREG(st.st_mode) ? strerror(errno) : "not a regular file");
			goto out;
		}
	}
	/* The working directory still points into the mount made read-only;
	 * entering it again by path lands on the writable copy on top. */
	if (have_cwd && chdir(cwd))
		rc = ERR("Couldn't enter %s again in the sandbox: %s", cwd, strerror(errno));
out:
	if (tmpfd >= 0) {
		unlinkat(tmpfd, empty + 5, 0);
		close(tmpfd);
	}
	for (i = 0; i < n; i++)
		if (kfd[i] >= 0)
			close(kfd[i]);
	for (i = 0; i < nb; i++)
		if (bfd[i] >= 0)
			close(bfd[i]);
	return rc;
}

static int drop_privs(const struct sb_ident *id, char *err, size_t errlen)
{
	struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct data[2] = {};
	int last = CAP_LAST_CAP;
	FILE *f = fopen("/proc/sys/kernel/cap_last_cap", "re");

	if (f) {
		if (fscanf(f, "%d", &last) != 1)
			last = CAP_LAST_CAP;
		fclose(f);
	}
	/* uid 0 must not get capabilities back at exec or from setuid binaries. */
	if (prctl(PR_SET_SECUREBITS, SECBIT_NOROOT | SECBIT_NOROOT_LOCKED | SECBIT_NO_SETUID_FIXUP |
		  SECBIT_NO_SETUID_FIXUP_LOCKED | SECBIT_KEEP_CAPS_LOCKED | SECBIT_NO_CAP_AMBIENT_RAISE |
		  SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED))
		return ERR("Couldn't lock the securebits: %s", strerror(errno));
	for (int c = 0; c <= last; c++)
		if (prctl(PR_CAPBSET_DROP, c, 0, 0, 0) && errno != EINVAL)
			return ERR("Couldn't drop capability %d from the bounding set: %s", c, strerror(errno));
	prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
	if (setgroups(1, &id->gid))
		return ERR("Couldn't set groups: %s", strerror(errno));
	if (setresgid(id->gid, id->gid, id->gid))
		return ERR("Couldn't switch to gid %u: %s", (unsigned)id->gid, strerror(errno));
	if (setresuid(id->uid, id->uid, id->uid))
		return ERR("Couldn't switch to uid %u: %s", (unsigned)id->uid, strerror(errno));
	if (syscall(SYS_capset, &hdr, data))
		return ERR("Couldn't clear capabilities: %s", strerror(errno));
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
		return ERR("Couldn't set no_new_privs: %s", strerror(errno));
	return 0;
}

/* Landlock's scopes (ABI 6, Linux 6.12): newer than the uapi headers of
 * some distributions this builds on, so spelled out here. */
struct sl_landlock_attr {
	__u64 handled_access_fs;
	__u64 handled_access_net;
	__u64 scoped;
};
#define SL_LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET (1ULL << 0)

int sb_landlock_abi(void)
{
	long v = syscall(SYS_landlock_create_ruleset, NULL, 0, LANDLOCK_CREATE_RULESET_VERSION);

	return v < 0 ? -errno : (int)v;
}

/*
 * Abstract unix sockets have no path for the mounts to hide, and their names
 * belong to the network namespace, which the sandbox shares with the host:
 * X's @/tmp/.X11-unix/X0 (keystrokes into the desktop's terminals), a D-Bus
 * or IDE socket bound there, an ssh ControlMaster tunnel bound there. With
 * Landlock's scope the sandbox reaches only the ones bound inside it, by
 * connect() and by sendto() alike. A kernel without it leaves them reachable;
 * sluice warned before the fork (sb_landlock_abi() in run.c).
 */
static int scope_abstract_unix(char *err, size_t errlen)
{
	struct sl_landlock_attr a = { .scoped = SL_LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET };
	int fd, e;

	if (sb_landlock_abi() < 6)
		return 0;
	fd = (int)syscall(SYS_landlock_create_ruleset, &a, sizeof(a), 0);
	if (fd < 0)
		return ERR("Couldn't create the Landlock ruleset that keeps the host's abstract unix "
			   "sockets out of the sandbox's reach: %s", strerror(errno));
	if (syscall(SYS_landlock_restrict_self, fd, 0)) {
		e = errno;
		close(fd);
		return ERR("Couldn't keep the host's abstract unix sockets out of the sandbox's reach "
			   "(landlock_restrict_self): %s", strerror(e));
	}
	close(fd);
	return 0;
}

/*
 * cgroup/sock_create only sees AF_INET/AF_INET6. Other families (vsock,
 * packet, bluetooth, xdp...) are refused here; io_uring is refused too,
 * because its socket operations would not pass through this filter.
 * Netlink only as NETLINK_ROUTE (libc's getaddrinfo and getifaddrs, `ip`).
 * The other families are kernel code an agent has no use for, reachable with
 * the CAP_NET_ADMIN of a user namespace the sandbox may make: nf_tables,
 * xfrm and the generic families are where many kernel privilege escalations
 * started. Unprivileged, sock_diag adds the owner and peer of every host
 * socket to what /proc/net shows, and uevents stream the host's devices.
 */
static int install_seccomp(char *err, size_t errlen)
{
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
#if defined(__x86_64__)
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
#elif defined(__aarch64__)
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_AARCH64, 1, 0),
#else
#error "add this architecture's AUDIT_ARCH here"
#endif
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
#if defined(__x86_64__)
		/* x32 calls come as AUDIT_ARCH_X86_64 with bit 30 set in nr: on a
		 * kernel built with x32, socket(AF_VSOCK) would slip past the
		 * number checks below. No x32 call is needed here. */
		BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, 0x40000000, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
#endif
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
		/* clone3's CLONE_INTO_CGROUP starts a child in any cgroup whose
		 * cgroup.procs the caller may write: a uid-0 sandbox owns the root's.
		 * The read-only cgroupfs mount does not stop it (the kernel checks
		 * the superblock), nor does the cgroup namespace without nsdelegate.
		 * Its flags are in memory, out of seccomp's reach, so clone3 goes
		 * whole; libc falls back to clone on ENOSYS (as in Docker's profile). */
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_clone3, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
		/* The kernel's keyrings: request_key("dns_resolver", name) makes the
		 * host's /sbin/request-key resolve a name of the sandbox's choosing,
		 * outside its cgroup, and hands the answer back (keyutils installed). */
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_request_key, 2, 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_add_key, 1, 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_keyctl, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
		/* TIOCSTI and TIOCLINUX (selection paste) push input into a terminal:
		 * into the caller's, whose session the command shares, they would type
		 * commands that run outside the sandbox. The request is an unsigned
		 * int, the low word of args[1] on these little-endian ABIs. */
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_ioctl, 0, 5),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[1])),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, TIOCSTI, 2, 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, TIOCLINUX, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_socket, 1, 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_socketpair, 0, 8), /* no: allow */
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0])),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AF_UNIX, 6, 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AF_INET, 5, 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AF_INET6, 4, 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AF_NETLINK, 0, 4),
		/* The protocol is an int: its low word is what the kernel reads. */
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[2])),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, NETLINK_ROUTE, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPROTONOSUPPORT),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EAFNOSUPPORT),
	};
	struct sock_fprog prog = { .len = sizeof(f) / sizeof(f[0]), .filter = f };

	if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog))
		return ERR("Couldn't install the seccomp filter: %s", strerror(errno));
	return 0;
}

/*
 * pid 1 of the sandbox: forwards the signals sluice relays to the command,
 * reaps orphans, and exits with the command's status (128+signal when it was
 * killed). Its exit ends the namespace: the kernel kills what is left.
 */
static void __attribute__((noreturn)) sb_init(pid_t cmd)
{
	sigset_t all;
	siginfo_t si;
	int status, sig;
	pid_t pid;

	sigfillset(&all);
	for (;;) {
		sig = sigwaitinfo(&all, &si);
		if (sig < 0)
			continue;
		if (sig != SIGCHLD) {
			kill(cmd, sig);
			continue;
		}
		while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
			if (pid == cmd)
				_exit(WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
	}
}

/*
 * sluice's own environment (secret source variables included) is still in
 * this process's memory, where the sandbox would read it as /proc/1/environ:
 * overwrite it. From here on the process uses envp (placeholders only).
 */
static void wipe_initial_env(char **envp)
{
	char buf[2048], *p;
	unsigned long start = 0, end = 0;
	ssize_t n;
	int fd = open("/proc/self/stat", O_RDONLY | O_CLOEXEC), field;

	environ = envp;
	if (fd < 0)
		return;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return;
	buf[n] = 0;
	/* comm may hold spaces: fields count from the last ')' (field 2) */
	p = strrchr(buf, ')');
	for (field = 2; p && *p && field < 51; field++) {
		p = strchr(p + 1, ' ');
		if (!p)
			return;
		if (field + 1 == 50)
			start = strtoul(p + 1, NULL, 10);
		else if (field + 1 == 51)
			end = strtoul(p + 1, NULL, 10);
	}
	if (start && end > start && end - start < (64UL << 20))
		explicit_bzero((void *)start, end - start);
}

int sb_exec(const char *cgroup_path, const struct sb_ident *id, char *const *cmd, char **envp,
	    const struct sb_hide *h, int errfd, char *err, size_t errlen)
{
	sigset_t all, old;
	ssize_t n;
	pid_t pid;
	int fd, e;

	if (cg_enter(cgroup_path, 0))
		return ERR("Couldn't move into cgroup %s: %s", cgroup_path, strerror(errno));
	/* Proof that the cgroup hooks see this process's sockets: as root, a raw
	 * socket would open unless sock_create refuses it. If the kernel stopped
	 * matching sockets to cgroup2 (a net_cls classid or net_prio map set on a
	 * v1 hierarchy), nothing would be enforced: refuse to run. */
	fd = socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_ICMP);
	if (fd >= 0) {
		close(fd);
		return ERR("the cgroup socket hooks do not apply to this process (a raw socket opened "
			   "inside the sandbox cgroup); the kernel disables cgroup2 socket matching once a "
			   "cgroup v1 net_cls classid or net_prio map is set: clear them or reboot without "
			   "net_cls/net_prio v1 mounts. Refusing to run unconfined.");
	}
	if (getpid() != 1)
		return ERR("the sandbox is not in a PID namespace of its own (pid %d)", (int)getpid());
	if (unshare(CLONE_NEWNS | CLONE_NEWCGROUP))
		return ERR("Couldn't create the sandbox's mount and cgroup namespaces: %s", strerror(errno));
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL))
		return ERR("Couldn't make the sandbox's mounts private: %s", strerror(errno));
	/* A directory hidden by a mount over it stays readable through a working
	 * directory inside it (the old inode): refuse to start there. */
	{
		char cwd[4096];

		if (h && getcwd(cwd, sizeof(cwd))) {
			if (h->run_dir && path_under(cwd, h->run_dir))
				return ERR("the current directory %s is inside sluice's run directory %s, "
					   "which the sandbox must not see; cd to the project first", cwd, h->run_dir);
			for (size_t i = 0; i < h->n; i++)
				if (path_under(cwd, h->path[i]))
					return ERR("the current directory %s is inside %s, which holds sluice's keys, "
						   "policy, secrets or logs and is hidden from the sandbox; cd to the "
						   "project first", cwd, h->path[i]);
			for (size_t i = 0; i < h->n_priv; i++)
				if (path_under(cwd, h->priv[i]))
					return ERR("the current directory %s is inside %s, which the sandbox "
						   "gets as an empty directory of its own (a terminal server's or the "
						   "session's runtime directory); cd to the project first",
						   cwd, h->priv[i]);
		}
	}
	/* Hidden before anything else changes: a failure here refuses to run. */
	if (h && h->run_dir && hide_run_dir(h->run_dir, err, errlen))
		return -1;
	for (size_t i = 0; h && i < h->n; i++)
		if (hide_path(h->path[i], err, errlen))
			return -1;
	if (h && private_dirs(h, id, err, errlen))
		return -1;
	if (own_proc(err, errlen))
		return -1;
	if (harden_mounts(err, errlen))
		return -1;
	if (h && h->ro_root && ro_root(h, err, errlen))
		return -1;
	if (drop_privs(id, err, errlen))
		return -1;
	/* sluice killed (SIGKILL, the OOM killer) takes the sandbox with it: nobody
	 * would restart its broker or remove its programs. Set after the uid
	 * change, which clears it. A parent already gone left no reader on errfd. */
	{
		struct pollfd p = { .fd = errfd };

		if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0))
			return ERR("Couldn't tie the sandbox to sluice's life: %s", strerror(errno));
		if (poll(&p, 1, 0) == 1 && (p.revents & POLLERR))
			_exit(1);
	}
	if (scope_abstract_unix(err, errlen) || install_seccomp(err, errlen))
		return -1;
	/* The sandbox must not read this process's memory (/proc/1/mem, environ)
	 * nor ptrace it: it is a copy of sluice's. exec makes the command dumpable again. */
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0))
		return ERR("Couldn't make the sandbox's init undumpable: %s", strerror(errno));
	wipe_initial_env(envp);

	/* Signals wait for sb_init from now on; the command gets the caller's mask back. */
	sigfillset(&all);
	sigprocmask(SIG_BLOCK, &all, &old);
	pid = fork();
	if (pid < 0) {
		e = errno;
		sigprocmask(SIG_SETMASK, &old, NULL);
		return ERR("Couldn't fork the sandboxed command: %s", strerror(e));
	}
	if (pid > 0) {
		close(errfd);
		sb_init(pid);
	}
	sigprocmask(SIG_SETMASK, &old, NULL);
	execvpe(cmd[0], cmd, envp);
	e = errno;
	snprintf(err, errlen, "Couldn't run %s: %s", cmd[0], strerror(e));
	n = write(errfd, err, strlen(err));
	(void)n;
	_exit(e == ENOENT ? 127 : 126);
}
