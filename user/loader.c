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
};

/* The verifier's log is long; keep the tail, which names the failing insn. */
static char vlog[16384];
static size_t vlog_len;

static int libbpf_print(enum libbpf_print_level lvl, const char *fmt, va_list ap)
{
	char line[1024];
	int n;

	n = vsnprintf(line, sizeof(line), fmt, ap);
	if (n <= 0)
		return 0;
	if (lvl == LIBBPF_DEBUG)
		return 0;
	if ((size_t)n >= sizeof(line))
		n = sizeof(line) - 1;
	if (vlog_len + n >= sizeof(vlog)) {
		size_t keep = sizeof(vlog) / 2;

		memmove(vlog, vlog + vlog_len - keep, keep);
		vlog_len = keep;
	}
	memcpy(vlog + vlog_len, line, n);
	vlog_len += n;
	vlog[vlog_len] = 0;
	return 0;
}

static void vlog_dump(void)
{
	const char *p = vlog + vlog_len;
	int lines = 0;

	while (p > vlog && lines < 15)
		if (*--p == '\n')
			lines++;
	if (vlog_len)
		fprintf(stderr, "sluice: libbpf said (last lines):\n%s", p);
}

int loader_prepare(const char *pin_root)
{
	struct statfs sfs;
	char p[512];

	if (geteuid() != 0) {
		pr_err("sluice needs root (CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN): run it with sudo");
		return -EPERM;
	}
	if (access("/sys/kernel/btf/vmlinux", R_OK))
		pr_warn("this kernel has no BTF (/sys/kernel/btf/vmlinux): the programs may not load; "
			"use a kernel built with CONFIG_DEBUG_INFO_BTF=y");
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
	free(l);
}

int loader_attach(const char *pin_root, const char *name, const char *cgroup_path,
		  struct loader **out)
{
	LIBBPF_OPTS(bpf_object_open_opts, oo, .pin_root_path = pin_root);
	struct loader *l = calloc(1, sizeof(*l));
	struct bpf_program *prog;
	char dir[512], p[768];
	int err = 0, lock = -1;

	if (!l)
		return -ENOMEM;
	l->cg_fd = -1;
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
	if (mkdir(dir, 0700) && errno != EEXIST) {
		err = -errno;
		pr_err("Couldn't create %s: %s", dir, strerror(-err));
		goto out;
	}
	bpf_object__for_each_program(prog, l->skel->obj) {
		struct bpf_link *link = bpf_program__attach_cgroup(prog, l->cg_fd);

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

int loader_set_sandbox(const char *pin_root, __u64 cgid, const struct sluice_sandbox *sb)
{
	int fd = map_open(pin_root, SLUICE_MAP_SANDBOXES), err = 0;

	if (fd < 0) {
		pr_err("Couldn't open %s/%s: %s", pin_root, SLUICE_MAP_SANDBOXES, strerror(-fd));
		return fd;
	}
	if (bpf_map_update_elem(fd, &cgid, sb, BPF_ANY)) {
		err = -errno;
		pr_err("Couldn't write the sandbox entry: %s", strerror(-err));
	}
	close(fd);
	return err;
}

int loader_del_sandbox(const char *pin_root, __u64 cgid)
{
	int fd = map_open(pin_root, SLUICE_MAP_SANDBOXES), err = 0;

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

int loader_status(const char *pin_root, FILE *f)
{
	static const char *const stat_names[SLUICE_STAT_MAX] = {
		"tcp_redirected", "udp_dns_redirected", "denied_connect",
		"denied_udp", "denied_socket", "loopback_passed",
	};
	struct sluice_sandbox sb;
	__u64 key, *next = NULL, vals[1024], cgid;
	int fd, ncpu = libbpf_num_possible_cpus(), n = 0;
	struct dirent *de;
	char p[768];
	DIR *d;

	fd = map_open(pin_root, SLUICE_MAP_SANDBOXES);
	if (fd < 0) {
		fprintf(f, "no sandboxes (nothing pinned at %s)\n", pin_root);
		return 0;
	}
	fprintf(f, "%-24s %-12s %-12s %-8s\n", "SANDBOX", "CGROUP-ID", "BROKER-PORT", "DNS-PORT");
	/* Pinned sandboxes first (name -> cgroup from the link), then map entries
	 * without pins (a loader that died half-way). */
	d = opendir(pin_root);
	while (d && (de = readdir(d))) {
		if (de->d_type != DT_DIR || de->d_name[0] == '.')
			continue;
		snprintf(p, sizeof(p), "%s/%s", pin_root, de->d_name);
		if (pinned_cgid(p, &cgid)) {
			fprintf(f, "%-24s %-12s (no attached link)\n", de->d_name, "-");
			continue;
		}
		if (bpf_map_lookup_elem(fd, &cgid, &sb))
			fprintf(f, "%-24s %-12llu (no broker entry: connects are refused)\n", de->d_name,
				(unsigned long long)cgid);
		else
			fprintf(f, "%-24s %-12llu %-12u %-8u\n", de->d_name, (unsigned long long)cgid,
				sb.broker_port, sb.dns_port);
	}
	if (d)
		closedir(d);
	while (!bpf_map_get_next_key(fd, next, &key)) {
		next = &key;
		n++;
	}
	close(fd);
	fprintf(f, "%d sandbox entr%s in %s/%s\n", n, n == 1 ? "y" : "ies", pin_root, SLUICE_MAP_SANDBOXES);
	fd = map_open(pin_root, SLUICE_MAP_STATS);
	if (fd >= 0 && ncpu > 0 && ncpu <= 1024) {
		fprintf(f, "counters (all sandboxes):\n");
		for (__u32 i = 0; i < SLUICE_STAT_MAX; i++) {
			unsigned long long sum = 0;

			if (bpf_map_lookup_elem(fd, &i, vals))
				continue;
			for (int c = 0; c < ncpu; c++)
				sum += vals[c];
			fprintf(f, "  %-20s %llu\n", stat_names[i], sum);
		}
	}
	if (fd >= 0)
		close(fd);
	return 0;
}
