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
#include <sched.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/audit.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <linux/securebits.h>
#include "sluice.h"

#define ERR(...) (snprintf(err, errlen, __VA_ARGS__), -1)

int sb_ident_resolve(const char *user, struct sb_ident *id, char *err, size_t errlen)
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

	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL))
		return ERR("Couldn't make the sandbox's mounts private: %s", strerror(errno));
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
	/* /proc/sys holds knobs a uid 0 may write without capabilities. */
	if (!mount("/proc/sys", "/proc/sys", NULL, MS_BIND, NULL))
		mount(NULL, "/proc/sys", NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV |
		      MS_NOEXEC, NULL);
	return 0;
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

/*
 * cgroup/sock_create only sees AF_INET/AF_INET6. Other families (vsock,
 * packet, bluetooth, xdp...) are refused here; io_uring is refused too,
 * because its socket operations would not pass through this filter.
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
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_socket, 1, 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_socketpair, 0, 5), /* no: allow */
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0])),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AF_UNIX, 3, 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AF_INET, 2, 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AF_INET6, 1, 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AF_NETLINK, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EAFNOSUPPORT),
	};
	struct sock_fprog prog = { .len = sizeof(f) / sizeof(f[0]), .filter = f };

	if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog))
		return ERR("Couldn't install the seccomp filter: %s", strerror(errno));
	return 0;
}

int sb_exec(const char *cgroup_path, const struct sb_ident *id, char *const *cmd, char **envp,
	    char *err, size_t errlen)
{
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
	if (unshare(CLONE_NEWNS | CLONE_NEWCGROUP))
		return ERR("Couldn't create the sandbox's mount and cgroup namespaces: %s", strerror(errno));
	if (harden_mounts(err, errlen))
		return -1;
	if (drop_privs(id, err, errlen))
		return -1;
	if (install_seccomp(err, errlen))
		return -1;
	execvpe(cmd[0], cmd, envp);
	e = errno;
	snprintf(err, errlen, "Couldn't run %s: %s", cmd[0], strerror(e));
	errno = e;
	return -1;
}
