// SPDX-License-Identifier: MIT
/* Sandbox cgroups on the cgroup v2 hierarchy, wherever it is mounted. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "log.h"
#include "sluice.h"

void mountinfo_unescape(char *s)
{
	char *w = s;

	for (; *s; s++) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' && s[2] <= '7' &&
		    s[3] >= '0' && s[3] <= '7') {
			*w++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
			s += 3;
		} else {
			*w++ = *s;
		}
	}
	*w = 0;
}

int cg2_mount_parse(const char *mountinfo, char *out, size_t outlen)
{
	const char *line = mountinfo, *nl;
	char buf[4096];

	for (; line && *line; line = nl ? nl + 1 : NULL) {
		char *f[16], *sep, *save = NULL, *tok;
		int n = 0;
		size_t len;

		nl = strchr(line, '\n');
		len = nl ? (size_t)(nl - line) : strlen(line);
		if (len >= sizeof(buf))
			continue;
		memcpy(buf, line, len);
		buf[len] = 0;
		/* "id parent maj:min root mountpoint opts [optional...] - fstype source superopts" */
		sep = strstr(buf, " - ");
		if (!sep)
			continue;
		*sep = 0;
		for (tok = strtok_r(buf, " ", &save); tok && n < 16; tok = strtok_r(NULL, " ", &save))
			f[n++] = tok;
		if (n < 5)
			continue;
		tok = strtok_r(sep + 3, " ", &save);
		if (!tok || strcmp(tok, "cgroup2"))
			continue;
		mountinfo_unescape(f[4]);
		if (strlen(f[4]) >= outlen)
			return -ENAMETOOLONG;
		strcpy(out, f[4]);
		return 0;
	}
	return -ENOENT;
}

char *read_file(const char *path, size_t max)
{
	size_t len = 0;
	char *s = malloc(max + 1);
	int fd;
	ssize_t r;

	if (!s)
		return NULL;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		free(s);
		return NULL;
	}
	while (len < max && (r = read(fd, s + len, max - len)) > 0)
		len += r;
	close(fd);
	s[len] = 0;
	return s;
}

int cg2_mount_find(char *out, size_t outlen)
{
	char *mi = read_file("/proc/self/mountinfo", 1 << 20);
	int err;

	if (!mi)
		return -errno;
	err = cg2_mount_parse(mi, out, outlen);
	free(mi);
	if (err == -ENOENT)
		pr_err("no cgroup v2 hierarchy is mounted (none in /proc/self/mountinfo); "
		       "mount one with: mount -t cgroup2 none /sys/fs/cgroup/unified");
	return err;
}

int cg_id(const char *path, __u64 *id)
{
	struct stat st;

	if (stat(path, &st))
		return -errno;
	*id = st.st_ino;
	return 0;
}

static int write_str(const char *path, const char *s)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC), err = 0;

	if (fd < 0)
		return -errno;
	if (write(fd, s, strlen(s)) < 0)
		err = -errno;
	close(fd);
	return err;
}

int cg_parent_path(char *path, size_t pathlen)
{
	char mnt[512];
	int err = cg2_mount_find(mnt, sizeof(mnt));

	if (err)
		return err;
	if ((size_t)snprintf(path, pathlen, "%s/%s", mnt, SLUICE_CG_PARENT) >= pathlen)
		return -ENAMETOOLONG;
	return 0;
}

int cg_create(const char *name, char *path, size_t pathlen)
{
	char parent[512];
	int err = cg_parent_path(parent, sizeof(parent));

	if (err)
		return err;
	if (mkdir(parent, 0755) && errno != EEXIST) {
		err = -errno;
		pr_err("Couldn't create cgroup %s: %s", parent, strerror(-err));
		return err;
	}
	if ((size_t)snprintf(path, pathlen, "%s/%s", parent, name) >= pathlen)
		return -ENAMETOOLONG;
	if (mkdir(path, 0755)) {
		err = -errno;
		pr_err("Couldn't create cgroup %s: %s%s", path, strerror(-err),
		       err == -EEXIST ? " (a sandbox of that name exists; pick another --name or "
					"run 'sluice detach --cgroup' on it)" : "");
		return err;
	}
	return 0;
}

int cg_enter(const char *path, pid_t pid)
{
	char p[4096], v[32];

	if ((size_t)snprintf(p, sizeof(p), "%s/cgroup.procs", path) >= sizeof(p))
		return -ENAMETOOLONG;
	snprintf(v, sizeof(v), "%d\n", (int)pid);
	return write_str(p, v);
}

/* cgroup.events says "populated 0" once no process is left in the subtree. */
int cg_populated(const char *path)
{
	char p[4096], *s;
	int r;

	snprintf(p, sizeof(p), "%s/cgroup.events", path);
	s = read_file(p, 4096);
	if (!s)
		return -errno;
	r = strstr(s, "populated 1") != NULL;
	free(s);
	return r;
}

int cg_destroy(const char *path)
{
	char p[4096];
	int i;

	if (!path || !*path)
		return 0;
	snprintf(p, sizeof(p), "%s/cgroup.kill", path);
	/* cgroup.kill (5.14+) takes the whole subtree, including processes that
	 * forked away from the command; older kernels: the command's own exit. */
	if (cg_populated(path) == 1 && write_str(p, "1") && errno != ENOENT)
		pr_warn("Couldn't kill the processes left in %s: %s", path, strerror(errno));
	for (i = 0; i < 200 && cg_populated(path) == 1; i++)
		usleep(10000);
	if (rmdir(path) && errno != ENOENT) {
		int err = -errno;

		pr_warn("Couldn't remove cgroup %s: %s (remove it by hand once it is empty)",
			path, strerror(-err));
		return err;
	}
	return 0;
}

int cg_sockmatch_check(void)
{
	/* The kernel stops matching sockets to cgroup2 as soon as someone sets a
	 * net_cls classid or a net_prio map (cgroup_sk_alloc_disable()); it
	 * says so once in the kernel log. The sandbox child also proves the
	 * hooks apply to it before it runs anything (sb_exec). */
	char *mi = read_file("/proc/self/mountinfo", 1 << 20);
	int err = 0;

	if (!mi)
		return 0;
	if (strstr(mi, " cgroup rw") && (strstr(mi, "net_cls") || strstr(mi, "net_prio")))
		pr_warn("a cgroup v1 net_cls/net_prio hierarchy is mounted: if anything sets a "
			"classid or priority there, the kernel disables cgroup2 socket matching and "
			"sluice refuses to run");
	free(mi);
	return err;
}
