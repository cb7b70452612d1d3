// SPDX-License-Identifier: MIT
/* Loads the kernel programs for one sandbox, attaches them to its cgroup and
 * pins the links, so enforcement outlives this process (fail closed). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/utsname.h>
#include <unistd.h>
#include <linux/magic.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "log.h"
#include "sluice.h"
#include "bpf/sluice.skel.h"

struct loader {
	struct sluice_bpf *skel;
	int cg_fd;
	int life_fd; /* the pin directory, flock()ed while this loader lives */
};

/* The verifier's log is long; keep the tail, which names the failing insn. */
static char vlog[16384];
static size_t vlog_len;

static void vlog_add(const char *s, size_t n)
{
	if (n >= sizeof(vlog)) {
		s += n - (sizeof(vlog) - 1);
		n = sizeof(vlog) - 1;
	}
	if (vlog_len + n >= sizeof(vlog)) {
		size_t keep = sizeof(vlog) - 1 - n;

		memmove(vlog, vlog + vlog_len - keep, keep);
		vlog_len = keep;
	}
	memcpy(vlog + vlog_len, s, n);
	vlog_len += n;
	vlog[vlog_len] = 0;
}

/* libbpf hands over the whole verifier log in one call: keep its tail. */
static int libbpf_print(enum libbpf_print_level lvl, const char *fmt, va_list ap)
{
	char line[1024], *big;
	va_list ap2;
	int n;

	if (lvl == LIBBPF_DEBUG)
		return 0;
	va_copy(ap2, ap);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	if (n > 0 && (size_t)n < sizeof(line)) {
		vlog_add(line, n);
	} else if (n > 0 && (big = malloc((size_t)n + 1))) {
		vsnprintf(big, (size_t)n + 1, fmt, ap2);
		vlog_add(big, n);
		free(big);
	}
	va_end(ap2);
	return 0;
}

/* The verifier's last lines name the instruction and the reason. */
static void vlog_dump(void)
{
	const char *p = vlog + vlog_len, *end = vlog + vlog_len;
	int lines = 0;

	/* libbpf frames the verifier log; its last lines are just before the end marker. */
	const char *m = strstr(vlog, "-- END PROG LOAD LOG --");

	if (m) {
		end = m;
		p = m;
	}
	while (p > vlog && lines < 16)
		if (*--p == '\n')
			lines++;
	if (vlog_len)
		fprintf(stderr, "sluice: the verifier/libbpf said (last lines):\n%.*s%s", (int)(end - p), p,
			m ? m + strlen("-- END PROG LOAD LOG --") : "");
}

#define SL_MIN_KERNEL_MAJOR 5
#define SL_MIN_KERNEL_MINOR 8

int kernel_release_check(const char *release, char *err, size_t errlen)
{
	unsigned long maj, min;
	char *end;

	errno = 0;
	maj = strtoul(release, &end, 10);
	if (errno || end == release || *end != '.') {
		snprintf(err, errlen, "Couldn't read the kernel version from '%s'; sluice needs Linux %d.%d "
			 "or later", release, SL_MIN_KERNEL_MAJOR, SL_MIN_KERNEL_MINOR);
		return -EINVAL;
	}
	release = end + 1;
	min = strtoul(release, &end, 10);
	if (errno || end == release) {
		snprintf(err, errlen, "Couldn't read the kernel version from '%s'; sluice needs Linux %d.%d "
			 "or later", release, SL_MIN_KERNEL_MAJOR, SL_MIN_KERNEL_MINOR);
		return -EINVAL;
	}
	if (maj < SL_MIN_KERNEL_MAJOR || (maj == SL_MIN_KERNEL_MAJOR && min < SL_MIN_KERNEL_MINOR)) {
		snprintf(err, errlen, "kernel %lu.%lu is too old: sluice needs Linux %d.%d or later "
			 "(bpf_link for cgroup programs, cgroup/getpeername hooks); boot a newer kernel",
			 maj, min, SL_MIN_KERNEL_MAJOR, SL_MIN_KERNEL_MINOR);
		return -EOPNOTSUPP;
	}
	return 0;
}

#define CAPB(c) (1ULL << (c))
#ifndef CAP_BPF
#define CAP_BPF 39
#endif

int caps_check(uint64_t capeff, char *err, size_t errlen)
{
	static const struct { int cap; const char *name, *why; } need[] = {
		{ 21, "CAP_SYS_ADMIN", "namespaces and mounts for the sandbox" },
		{ 12, "CAP_NET_ADMIN", "attaching programs to a cgroup" },
	};
	char miss[160] = "";
	size_t len = 0;

	for (size_t i = 0; i < sizeof(need) / sizeof(need[0]); i++)
		if (!(capeff & CAPB(need[i].cap)))
			len += snprintf(miss + len, sizeof(miss) - len, "%s%s (%s)", len ? ", " : "",
					need[i].name, need[i].why);
	if (!(capeff & (CAPB(CAP_BPF) | CAPB(21))))
		len += snprintf(miss + len, sizeof(miss) - len, "%sCAP_BPF (loading BPF programs)",
				len ? ", " : "");
	if (!len)
		return 0;
	snprintf(err, errlen, "missing %s: run sluice as root on the host, or give its container "
		 "--cap-add SYS_ADMIN --cap-add NET_ADMIN --cap-add BPF", miss);
	return -EPERM;
}

int loader_preflight(void)
{
	char err[512], line[256];
	unsigned long long capeff = 0;
	struct utsname u;
	FILE *f;
	int rc;

	if (geteuid() != 0) {
		pr_err("sluice needs root (CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN) to attach BPF programs "
		       "to a cgroup: run it with sudo (the command itself runs unprivileged)");
		return -EPERM;
	}
	f = fopen("/proc/self/status", "re");
	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "CapEff: %llx", &capeff) == 1)
			break;
	if (f)
		fclose(f);
	if ((rc = caps_check(capeff, err, sizeof(err)))) {
		pr_err("%s", err);
		return rc;
	}
	if (uname(&u) || (rc = kernel_release_check(u.release, err, sizeof(err)))) {
		pr_err("%s", err);
		return rc ? rc : -EINVAL;
	}
	/* The programs are CO-RE: libbpf relocates them against the kernel's BTF. */
	if (access("/sys/kernel/btf/vmlinux", R_OK)) {
		pr_err("this kernel (%s) has no BTF (/sys/kernel/btf/vmlinux): sluice's programs need it; "
		       "use a kernel built with CONFIG_DEBUG_INFO_BTF=y (Debian, Ubuntu and Fedora kernels are)",
		       u.release);
		return -EOPNOTSUPP;
	}
	if ((rc = cg2_mount_find(line, sizeof(line))))
		return rc;
	return 0;
}

int loader_prepare(const char *pin_root)
{
	struct statfs sfs;
	char p[512];

	if (geteuid() != 0) {
		pr_err("sluice needs root (CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN): run it with sudo");
		return -EPERM;
	}
	if (statfs("/sys/fs/bpf", &sfs) || sfs.f_type != BPF_FS_MAGIC) {
		if (mount("bpf", "/sys/fs/bpf", "bpf", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0700")) {
			int err = -errno;

			pr_err("Couldn't mount bpffs at /sys/fs/bpf: %s (mount it: mount -t bpf bpf /sys/fs/bpf)",
			       strerror(-err));
			return err;
		}
	}
	snprintf(p, sizeof(p), "%s", pin_root);
	for (char *s = p + 1; *s; s++) {
		if (*s != '/')
			continue;
		*s = 0;
		mkdir(p, 0700);
		*s = '/';
	}
	if (mkdir(p, 0700) && errno != EEXIST) {
		int err = -errno;

		pr_err("Couldn't create %s: %s", p, strerror(-err));
		return err;
	}
	return 0;
}

/* Loads are serialised so that two loaders do not both create a shared map. */
static int pin_lock(const char *pin_root)
{
	int fd = open(pin_root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	if (flock(fd, LOCK_EX)) {
		int err = -errno;

		close(fd);
		return err;
	}
	return fd;
}

static const char *kernel_hint(int err)
{
	static char buf[160];
	struct utsname u;

	if (err != -EINVAL && err != -EOPNOTSUPP && err != -524 /* ENOTSUPP */)
		return "";
	uname(&u);
	snprintf(buf, sizeof(buf), " (kernel %s: sluice needs 5.8 or later with cgroup BPF hooks)",
		 u.release);
	return buf;
}

void loader_close(struct loader *l)
{
	if (!l)
		return;
	sluice_bpf__destroy(l->skel);
	if (l->cg_fd >= 0)
		close(l->cg_fd);
	if (l->life_fd >= 0)
		close(l->life_fd);
	free(l);
}

static int pinned_cgid(const char *dir, __u64 *cgid);

int loader_attach(const char *pin_root, const char *name, const char *cgroup_path,
		  unsigned flags, struct loader **out)
{
	LIBBPF_OPTS(bpf_object_open_opts, oo, .pin_root_path = pin_root);
	struct loader *l = calloc(1, sizeof(*l));
	struct bpf_program *prog;
	char dir[512], p[768];
	int err = 0, lock = -1;
	__u64 old_cgid = 0;
	struct stat st;

	if (!l)
		return -ENOMEM;
	l->cg_fd = -1;
	l->life_fd = -1;
	libbpf_set_print(libbpf_print);
	vlog_len = 0;

	lock = pin_lock(pin_root);
	if (lock < 0) {
		err = lock;
		pr_err("Couldn't lock %s: %s", pin_root, strerror(-err));
		goto out;
	}
	l->skel = sluice_bpf__open_opts(&oo);
	if (!l->skel) {
		err = -errno;
		pr_err("Failed to open the BPF programs: %s", strerror(-err));
		goto out;
	}
	/* Shared maps are reused from pin_root or created and pinned there. */
	err = sluice_bpf__load(l->skel);
	if (err) {
		pr_err("Failed to load the BPF programs: %s%s (the verifier's or libbpf's words follow; "
		       "a pinned map of another shape under %s is removed by 'rm -r %s' when no sandbox runs)",
		       strerror(-err), kernel_hint(err), pin_root, pin_root);
		vlog_dump();
		goto out;
	}
	l->cg_fd = open(cgroup_path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (l->cg_fd < 0) {
		err = -errno;
		pr_err("Couldn't open cgroup %s: %s", cgroup_path, strerror(-err));
		goto out;
	}
	snprintf(dir, sizeof(dir), "%s/%s", pin_root, name);
	/* Pinning over another live cgroup's links would drop their last
	 * reference: that sandbox would run on with no program at all. Links of
	 * a cgroup that is gone say 0; the same cgroup is attached again. */
	if (!pinned_cgid(dir, &old_cgid) && old_cgid && (fstat(l->cg_fd, &st) || st.st_ino != old_cgid)) {
		err = -EBUSY;
		pr_err("The sandbox name '%s' is in use: %s holds the links of another cgroup (id %llu), "
		       "which is still attached (another container, or one just removed: then retry in a "
		       "moment). Give this one another name (--name; compose: SLUICE_TARGET and "
		       "SLUICE_SANDBOX)", name, dir, (unsigned long long)old_cgid);
		goto out;
	}
	if (mkdir(dir, 0700) && errno != EEXIST) {
		err = -errno;
		pr_err("Couldn't create %s: %s", dir, strerror(-err));
		goto out;
	}
	/* Held until loader_close(): the clean-up of killed runs takes only pins
	 * whose lock it can get, because kill() cannot tell a PID that is gone
	 * from one in another PID namespace (a sluice run in a container that
	 * shares the host's bpffs). Taken before any pin: held by someone else,
	 * the name is a live loader's, whose pins must stay. */
	l->life_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (l->life_fd < 0) {
		err = -errno;
		pr_err("Couldn't open %s: %s", dir, strerror(-err));
		goto out;
	}
	if (flock(l->life_fd, LOCK_EX | LOCK_NB)) {
		err = errno == EWOULDBLOCK ? -EBUSY : -errno;
		if (err == -EBUSY)
			pr_err("The sandbox name '%s' is in use: a live sluice holds %s (a sluice run in "
			       "another PID namespace, or an attach under way). Give this one another name "
			       "(--name; compose: SLUICE_TARGET and SLUICE_SANDBOX)", name, dir);
		else
			pr_err("Couldn't lock %s: %s", dir, strerror(-err));
		goto out;
	}
	bpf_object__for_each_program(prog, l->skel->obj) {
		struct bpf_link *link;

		if (prog == l->skel->progs.sluice_dev && !(flags & LOADER_DEVICES))
			continue;
		link = bpf_program__attach_cgroup(prog, l->cg_fd);
		if (!link) {
			err = -errno;
			pr_err("Failed to attach %s to %s: %s%s", bpf_program__name(prog), cgroup_path,
			       strerror(-err), kernel_hint(err));
			goto out_unpin;
		}
		/* An unpinned link detaches when its fd closes: pin before anything runs. */
		snprintf(p, sizeof(p), "%s/%s", dir, bpf_program__name(prog));
		unlink(p);
		err = bpf_link__pin(link, p);
		bpf_link__destroy(link); /* the pin keeps it */
		if (err) {
			pr_err("Failed to pin link %s: %s", p, strerror(-err));
			goto out_unpin;
		}
	}
	goto out;
out_unpin:
	loader_detach(pin_root, name);
out:
	if (lock >= 0)
		close(lock);
	if (err) {
		loader_close(l);
		return err;
	}
	*out = l;
	return 0;
}

int loader_detach(const char *pin_root, const char *name)
{
	char dir[512], p[1024];
	struct dirent *de;
	DIR *d;
	int err = 0;

	snprintf(dir, sizeof(dir), "%s/%s", pin_root, name);
	d = opendir(dir);
	if (!d)
		return -errno;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(p, sizeof(p), "%s/%s", dir, de->d_name);
		if (unlink(p) && !err)
			err = -errno;
	}
	closedir(d);
	if (rmdir(dir) && !err)
		err = -errno;
	return err;
}

static int map_open(const char *pin_root, const char *name)
{
	char p[512];
	int fd;

	snprintf(p, sizeof(p), "%s/%s", pin_root, name);
	fd = bpf_obj_get(p);
	if (fd < 0)
		return -errno;
	return fd;
}

_Static_assert(SLUICE_STAT_MAX <= SLUICE_SB_STATS_SLOTS, "struct sluice_sb_stats needs more slots");

/* The counters start at zero with the sandbox; a broker restart keeps them. */
static void sb_stats_create(const char *pin_root, __u64 cgid)
{
	int fd = map_open(pin_root, SLUICE_MAP_SB_STATS), ncpu = libbpf_num_possible_cpus();
	struct sluice_sb_stats *zero;

	if (fd < 0 || ncpu <= 0) {
		pr_warn("Couldn't open %s/%s: %s; per-sandbox counters are off", pin_root,
			SLUICE_MAP_SB_STATS, strerror(fd < 0 ? -fd : EINVAL));
		if (fd >= 0)
			close(fd);
		return;
	}
	zero = calloc(ncpu, sizeof(*zero));
	if (zero && bpf_map_update_elem(fd, &cgid, zero, BPF_NOEXIST) && errno != EEXIST)
		pr_warn("Couldn't create the counters of cgroup %llu: %s", (unsigned long long)cgid,
			strerror(errno));
	free(zero);
	close(fd);
}

int loader_set_sandbox(const char *pin_root, __u64 cgid, const struct sluice_sandbox *sb)
{
	int fd = map_open(pin_root, SLUICE_MAP_SANDBOXES), err = 0;

	if (fd < 0) {
		pr_err("Couldn't open %s/%s: %s", pin_root, SLUICE_MAP_SANDBOXES, strerror(-fd));
		return fd;
	}
	sb_stats_create(pin_root, cgid);
	if (bpf_map_update_elem(fd, &cgid, sb, BPF_ANY)) {
		err = -errno;
		pr_err("Couldn't write the sandbox entry: %s", strerror(-err));
	}
	close(fd);
	return err;
}

int loader_set_info(const char *pin_root, __u64 cgid, const struct sluice_sb_info *info)
{
	int fd = map_open(pin_root, SLUICE_MAP_SB_INFO), err = 0;

	if (fd < 0)
		return fd;
	if (bpf_map_update_elem(fd, &cgid, info, BPF_ANY))
		err = -errno;
	close(fd);
	return err;
}

static void map_del(const char *pin_root, const char *map, __u64 cgid)
{
	int fd = map_open(pin_root, map);

	if (fd < 0)
		return;
	bpf_map_delete_elem(fd, &cgid);
	close(fd);
}

int loader_del_sandbox(const char *pin_root, __u64 cgid)
{
	int fd = map_open(pin_root, SLUICE_MAP_SANDBOXES), err = 0;

	map_del(pin_root, SLUICE_MAP_SB_INFO, cgid);
	map_del(pin_root, SLUICE_MAP_SB_STATS, cgid);
	if (fd < 0)
		return fd;
	if (bpf_map_delete_elem(fd, &cgid))
		err = -errno;
	close(fd);
	return err;
}

/* The cgroup a pinned sandbox's links are attached to (from any one link). */
static int pinned_cgid(const char *dir, __u64 *cgid)
{
	struct bpf_link_info info;
	__u32 len = sizeof(info);
	struct dirent *de;
	char p[1024];
	DIR *d = opendir(dir);
	int fd, err = -ENOENT;

	if (!d)
		return -errno;
	while ((de = readdir(d)) && err) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(p, sizeof(p), "%s/%s", dir, de->d_name);
		fd = bpf_obj_get(p);
		if (fd < 0)
			continue;
		memset(&info, 0, sizeof(info));
		if (!bpf_obj_get_info_by_fd(fd, &info, &len) && info.type == BPF_LINK_TYPE_CGROUP) {
			*cgid = info.cgroup.cgroup_id;
			err = 0;
		}
		close(fd);
	}
	closedir(d);
	return err;
}

/*
 * What a `sluice run` killed with SIGKILL leaves: its pinned links, its sandbox
 * entry and its cgroup (empty: the sandbox died with it). Only what is provably
 * such a run's goes: the name is run-PID (a prefix --name refuses) and PID is
 * gone, and its links are attached to no cgroup any more (released) or to the
 * empty cgroup cg_parent/run-PID, and nobody holds its directory's lock (a
 * live run does, also one in another PID namespace, to which kill() says
 * ESRCH). A cgroup this process cannot see, or one with processes in it,
 * keeps its links. Under the pin lock, as attach.
 */
void loader_gc_runs(const char *pin_root, const char *cg_parent)
{
	char dir[512], cg[1024];
	struct dirent *de;
	int lock;
	DIR *d;

	lock = pin_lock(pin_root);
	if (lock < 0)
		return;
	d = opendir(pin_root);
	while (d && (de = readdir(d))) {
		unsigned long pid;
		struct stat st;
		__u64 cgid = 0;
		char *end;
		int life;

		if (strncmp(de->d_name, "run-", 4))
			continue;
		pid = strtoul(de->d_name + 4, &end, 10);
		if (*end || !pid || pid > INT32_MAX || !kill((pid_t)pid, 0) || errno != ESRCH)
			continue;
		snprintf(dir, sizeof(dir), "%s/%s", pin_root, de->d_name);
		/* A live run holds its directory's lock (loader_attach), whichever
		 * PID namespace it is in. */
		life = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (life < 0)
			continue;
		if (flock(life, LOCK_EX | LOCK_NB) || pinned_cgid(dir, &cgid))
			goto next; /* alive, or no link that says where it is attached: left */
		if (cgid) {
			if (!cg_parent)
				goto next;
			snprintf(cg, sizeof(cg), "%s/%s", cg_parent, de->d_name);
			if (stat(cg, &st) || st.st_ino != cgid || cg_populated(cg) != 0)
				goto next;
			loader_del_sandbox(pin_root, cgid);
		}
		if (loader_detach(pin_root, de->d_name))
			goto next;
		if (cgid)
			rmdir(cg);
		pr_info("removed what sandbox %s left (its sluice was killed)", de->d_name);
next:
		close(life);
	}
	if (d)
		closedir(d);
	close(lock);
}

int loader_pinned_cgid(const char *pin_root, const char *name, __u64 *cgid)
{
	char dir[512];

	snprintf(dir, sizeof(dir), "%s/%s", pin_root, name);
	return pinned_cgid(dir, cgid);
}

int loader_detach_own(const char *pin_root, const char *name, __u64 cgid)
{
	__u64 cur = 0;
	int lock, err;

	lock = pin_lock(pin_root);
	if (lock < 0)
		return lock;
	if (!loader_pinned_cgid(pin_root, name, &cur) && cur && cur != cgid)
		err = -EBUSY;
	else
		err = loader_detach(pin_root, name);
	close(lock);
	return err;
}

static const char *const stat_names[SLUICE_STAT_MAX] = {
	"tcp_redirected", "udp_dns_redirected", "denied_connect",
	"denied_udp", "denied_socket", "loopback_passed",
};

/* "pid N (alive)" / "(gone)": a dead broker means the sandbox's connects are refused. */
static const char *pid_state(__u32 pid, char *buf, size_t len)
{
	char p[64], comm[32] = "";
	FILE *f;

	if (!pid) {
		snprintf(buf, len, "none");
		return buf;
	}
	snprintf(p, sizeof(p), "/proc/%u/comm", pid);
	f = fopen(p, "re");
	if (f) {
		if (!fgets(comm, sizeof(comm), f))
			comm[0] = 0;
		comm[strcspn(comm, "\n")] = 0;
		fclose(f);
	}
	if (f && !(kill((pid_t)pid, 0) && errno == ESRCH))
		snprintf(buf, len, "pid %u (alive, %s)", pid, comm);
	else
		snprintf(buf, len, "pid %u (gone)", pid);
	return buf;
}

/* One sandbox: where its traffic goes, who serves it, what it tried. */
static void status_one(FILE *f, const char *name, __u64 cgid, int sb_fd, int info_fd, int st_fd, int ncpu,
		       struct sluice_sb_stats *vals)
{
	struct sluice_sandbox sb;
	struct sluice_sb_info info = {};
	char b1[96], b2[96];

	if (bpf_map_lookup_elem(sb_fd, &cgid, &sb)) {
		fprintf(f, "%-24s %-12llu (no broker entry: connects are refused)\n", name,
			(unsigned long long)cgid);
		return;
	}
	if (info_fd >= 0)
		bpf_map_lookup_elem(info_fd, &cgid, &info);
	fprintf(f, "%-24s %-12llu %-12u %-8u broker %s, supervisor %s\n", name, (unsigned long long)cgid,
		sb.broker_port, sb.dns_port, pid_state(info.broker_pid, b1, sizeof(b1)),
		pid_state(info.sluice_pid, b2, sizeof(b2)));
	if (st_fd < 0 || bpf_map_lookup_elem(st_fd, &cgid, vals))
		return;
	fprintf(f, "  counters:");
	for (int i = 0; i < SLUICE_STAT_MAX; i++) {
		unsigned long long sum = 0;

		for (int c = 0; c < ncpu; c++)
			sum += vals[c].n[i];
		fprintf(f, " %s=%llu", stat_names[i], sum);
	}
	fprintf(f, "\n");
}

int loader_status(const char *pin_root, FILE *f)
{
	struct sluice_sb_stats *svals;
	__u64 key, *next = NULL, vals[1024], cgid = 0;
	int fd, info_fd, st_fd, ncpu = libbpf_num_possible_cpus(), n = 0;
	struct dirent *de;
	char p[768];
	DIR *d;

	fd = map_open(pin_root, SLUICE_MAP_SANDBOXES);
	if (fd < 0) {
		fprintf(f, "no sandboxes (nothing pinned at %s)\n", pin_root);
		return 0;
	}
	if (ncpu <= 0 || ncpu > 1024) {
		close(fd);
		pr_err("Couldn't count the possible CPUs: %s", strerror(ncpu < 0 ? -ncpu : EINVAL));
		return -EINVAL;
	}
	svals = calloc(ncpu, sizeof(*svals));
	if (!svals) {
		close(fd);
		return -ENOMEM;
	}
	info_fd = map_open(pin_root, SLUICE_MAP_SB_INFO);
	st_fd = map_open(pin_root, SLUICE_MAP_SB_STATS);
	fprintf(f, "%-24s %-12s %-12s %-8s %s\n", "SANDBOX", "CGROUP-ID", "BROKER-PORT", "DNS-PORT", "PROCESSES");
	/* Pinned sandboxes (name -> cgroup from the link); the map may also hold
	 * entries without pins (a loader that died half-way), counted below. */
	d = opendir(pin_root);
	while (d && (de = readdir(d))) {
		if (de->d_type != DT_DIR || de->d_name[0] == '.')
			continue;
		snprintf(p, sizeof(p), "%s/%s", pin_root, de->d_name);
		if (pinned_cgid(p, &cgid)) {
			fprintf(f, "%-24s %-12s (no attached link)\n", de->d_name, "-");
			continue;
		}
		status_one(f, de->d_name, cgid, fd, info_fd, st_fd, ncpu, svals);
	}
	if (d)
		closedir(d);
	free(svals);
	if (info_fd >= 0)
		close(info_fd);
	if (st_fd >= 0)
		close(st_fd);
	while (!bpf_map_get_next_key(fd, next, &key)) {
		next = &key;
		n++;
	}
	close(fd);
	fprintf(f, "%d sandbox entr%s in %s/%s\n", n, n == 1 ? "y" : "ies", pin_root, SLUICE_MAP_SANDBOXES);
	fd = map_open(pin_root, SLUICE_MAP_STATS);
	if (fd >= 0) {
		fprintf(f, "counters (all sandboxes, since the maps were created):\n");
		for (__u32 i = 0; i < SLUICE_STAT_MAX; i++) {
			unsigned long long sum = 0;

			if (bpf_map_lookup_elem(fd, &i, vals))
				continue;
			for (int c = 0; c < ncpu; c++)
				sum += vals[c];
			fprintf(f, "  %-20s %llu\n", stat_names[i], sum);
		}
		close(fd);
	}
	return 0;
}
