// SPDX-License-Identifier: MIT
/*
 * sluice run / attach / detach / status / policy check.
 * Order of `run`: cgroup, programs attached and pinned, broker ready, sandbox
 * entry written, and only then the command enters the cgroup. Teardown is the
 * reverse; whatever crashes in between leaves the pinned programs refusing.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <glob.h>
#include <stdbool.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "log.h"
#include "policy.h"
#include "sluice.h"

extern char **environ;

#define BROKER_READY_MS 15000

struct sandbox {
	struct run_opts *o;
	char name[64];
	char cg_path[512];
	bool cg_created;       /* run: we made the cgroup and remove it */
	__u64 cgid;
	struct loader *ld;
	bool attached;
	struct broker broker;
	bool entry;
	struct policy *policy;
	char **envp;
	char bundle[512];      /* the CA bundle the broker writes for the sandbox */
	struct sb_hide hide;   /* what the sandbox's mount namespace hides */
};

static int sandbox_entry(struct sandbox *s)
{
	struct sluice_sandbox sb = {
		.broker_ip4 = htonl(INADDR_LOOPBACK),
		.broker_port = s->broker.port,
		.dns_port = s->broker.dns_port,
		.flags = SLUICE_SB_ALLOW_LOOPBACK_BOUND,
	};
	int err;

	struct sluice_sb_info info = {
		.broker_pid = (__u32)s->broker.pid,
		.sluice_pid = (__u32)getpid(),
	};

	sb.broker_ip6[15] = 1; /* ::1 */
	snprintf(info.name, sizeof(info.name), "%.47s", s->name);
	err = loader_set_sandbox(s->o->pin_root, s->cgid, &sb);
	if (!err)
		s->entry = true;
	if (!err && loader_set_info(s->o->pin_root, s->cgid, &info))
		pr_warn("Couldn't record the broker's pid for sluice status");
	return err;
}

/* Teardown in reverse order; every step tolerates "never happened". */
static void sandbox_teardown(struct sandbox *s)
{
	if (s->cg_created)
		cg_destroy(s->cg_path);
	if (s->entry)
		loader_del_sandbox(s->o->pin_root, s->cgid);
	/* By name, but only its own links: a supervisor stopped late must not
	 * take the pins of the next attach under the same name. */
	if (s->attached)
		loader_detach_own(s->o->pin_root, s->name, s->cgid);
	loader_close(s->ld);
	s->ld = NULL;
	broker_stop(&s->broker);
	policy_unref(s->policy);
	s->policy = NULL;
	free(s->envp);
	s->envp = NULL;
	sb_hide_free(&s->hide);
}

static int sandbox_setup(struct sandbox *s)
{
	int err;

	err = loader_prepare(s->o->pin_root);
	if (err)
		return err;
	cg_sockmatch_check();
	err = cg_id(s->cg_path, &s->cgid);
	if (err) {
		pr_err("Couldn't stat cgroup %s: %s", s->cg_path, strerror(-err));
		return err;
	}
	snprintf(s->o->sandbox_cgid, sizeof(s->o->sandbox_cgid), "%llu", (unsigned long long)s->cgid);
	err = loader_attach(s->o->pin_root, s->name, s->cg_path, LOADER_DEVICES, &s->ld);
	if (err)
		return err;
	s->attached = true;
	err = broker_start(s->o, 0, BROKER_READY_MS, &s->broker);
	if (err)
		return err;
	return sandbox_entry(s);
}

/* The broker died: start it again (same port when free) and point the
 * sandbox at it. Until then the sandbox's entry has no broker (port 0), so
 * the hooks refuse its connects and datagrams: whatever binds the dead
 * broker's ports meanwhile (a host process, another sandbox's broker) must
 * not receive them. */
static void broker_restart(struct sandbox *s)
{
	uint16_t port = s->broker.port, dns = s->broker.dns_port;

	s->broker.pid = 0;
	s->broker.port = s->broker.dns_port = 0;
	if (s->entry && sandbox_entry(s))
		pr_err("Couldn't take the dead broker's ports out of the sandbox's entry");
	s->broker.port = port;
	s->broker.dns_port = dns;
	/* The old port taken meanwhile: any free one (the entry says which). */
	if (broker_start(s->o, port, BROKER_READY_MS, &s->broker) &&
	    (!port || broker_start(s->o, 0, BROKER_READY_MS, &s->broker))) {
		s->broker.port = port;
		return;
	}
	if (sandbox_entry(s))
		pr_err("the restarted broker is not reachable from the sandbox");
	else
		pr_info("broker restarted (pid %d, port %u, dns %u)", (int)s->broker.pid,
			s->broker.port, s->broker.dns_port);
}

/*
 * Waits for the command (child > 0) or for a stop signal (attach), restarting
 * the broker whenever it dies, forwarding signals to the command. Returns
 * the command's exit status (128+signal when killed), or 0 for attach.
 */
/* The signals sluice waits for with sigtimedwait(): blocked before the command
 * starts, so none is lost while the sandbox is set up. */
static void supervised_signals(sigset_t *set)
{
	sigemptyset(set);
	sigaddset(set, SIGCHLD);
	sigaddset(set, SIGINT);
	sigaddset(set, SIGTERM);
	sigaddset(set, SIGHUP);
	sigaddset(set, SIGQUIT);
}

static int supervise(struct sandbox *s, pid_t child)
{
	struct timespec tick = { .tv_sec = 1 };
	sigset_t set;
	siginfo_t si;
	int status, sig;
	pid_t pid;

	supervised_signals(&set);
	for (;;) {
		while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
			if (pid == child && child > 0)
				return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
			if (pid == s->broker.pid) {
				pr_warn("the broker (pid %d) %s %d; restarting it", (int)pid,
					WIFEXITED(status) ? "exited with" : "was killed by signal",
					WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
				broker_restart(s);
			}
		}
		if (!s->broker.pid)
			broker_restart(s);
		sig = sigtimedwait(&set, &si, &tick);
		if (sig <= 0 || sig == SIGCHLD)
			continue;
		if (child > 0)
			kill(child, sig);
		else
			return 0;
	}
}

static int sandbox_name(struct run_opts *o, char *buf, size_t len, const char *prefix, unsigned long long id)
{
	if (o->name) {
		/* It names a directory under the pin root, the cgroup root and the
		 * run directory: "." would be the pin root itself (detach unlinks
		 * what is in it). */
		bool ok = o->name[0] && o->name[0] != '.' && strlen(o->name) < len;

		for (const char *p = o->name; ok && *p; p++)
			ok = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
			     *p == '-' || *p == '_' || *p == '.';
		if (!ok) {
			pr_err("--name %s: use letters, digits, '-', '_' and '.' (not first), at most %zu characters",
			       o->name, len - 1);
			return -EINVAL;
		}
		snprintf(buf, len, "%s", o->name);
	} else {
		snprintf(buf, len, "%s%llu", prefix, id);
		o->name = buf;
	}
	return 0;
}

/* run-PID names are sluice run's own: their leftovers are removed once PID is
 * gone, which must never hit a live sandbox. Refused for run and attach (detach
 * takes them, to remove what the clean-up left). */
static int name_reserved(const char *name)
{
	if (name && !strncmp(name, "run-", 4)) {
		pr_err("--name %s: names starting with 'run-' are sluice run's own; pick another", name);
		return -EINVAL;
	}
	return 0;
}

/* Secrets as the sandbox sees them: NAME=placeholder; sources removed. */
static int build_env(struct sandbox *s)
{
	struct env_secret sec[256];
	size_t n = 0, i;
	char err[512];

	/* The values themselves, read here (as root, before the sandbox exists)
	 * only to drop any variable that holds one under another name, then
	 * wiped. What cannot be read now, the broker will report. */
	if (s->policy)
		policy_resolve_secrets(s->policy, err, sizeof(err));
	if (s->policy) {
		n = policy_secret_count(s->policy);
		if (n > sizeof(sec) / sizeof(sec[0])) {
			pr_err("%s: %zu secrets; sluice run supports up to %zu", s->o->policy, n,
			       sizeof(sec) / sizeof(sec[0]));
			return -E2BIG;
		}
		for (i = 0; i < n; i++) {
			const struct policy_secret *ps = policy_secret_at(s->policy, i);

			sec[i] = (struct env_secret){ ps->name, ps->placeholder, ps->env_source,
						      ps->value, ps->value_len };
		}
	}
	snprintf(s->bundle, sizeof(s->bundle), "%s/ca-bundle.pem", s->o->run_dir ? s->o->run_dir : SLUICE_RUN_DIR);
	s->envp = env_build(environ, sec, n, s->bundle);
	policy_forget_secret_values(s->policy);
	return s->envp ? 0 : -ENOMEM;
}

/* The directory named sluice that path is directly in, or false. */
static bool sluice_dir_of(const char *path, char *dir, size_t dirlen)
{
	char *slash;

	snprintf(dir, dirlen, "%s", path);
	slash = strrchr(dir, '/');
	if (slash && slash > dir && slash - dir >= 6 && !strncmp(slash - 6, "sluice", 6) &&
	    (slash - dir == 6 || slash[-7] == '/')) {
		*slash = 0;
		return true;
	}
	return false;
}

/* A directory named sluice is sluice's own (/etc/sluice, ~/.config/sluice):
 * all of it is hidden, so a file in it replaced by rename stays hidden too.
 * Elsewhere only the file is covered, and Linux drops a mount over a file
 * that the host renames another over (an editor's save, mv, sed -i): the new
 * one is then visible inside. sensitive: the file holds secret values. */
static int hide_file(struct sandbox *s, const char *path, bool sensitive, const char **what)
{
	char dir[4096], *real;
	int err = 0;

	*what = path;
	/* The link's own sluice directory, hidden whole ... */
	if (sluice_dir_of(path, dir, sizeof(dir)))
		err = sb_hide_add(&s->hide, dir);
	if (err)
		return err;
	/* ... and where the file really is (a dotfile manager's symlink points elsewhere). */
	real = realpath(path, NULL);
	if (!real)
		return errno == ENOENT ? 0 : -errno;
	if (sluice_dir_of(real, dir, sizeof(dir))) {
		err = sb_hide_add(&s->hide, dir);
	} else {
		if (sensitive)
			pr_warn("%s holds secret values and is hidden from the sandbox file by file: if it is "
				"replaced by a rename while the sandbox runs (an editor's save, mv, sed -i), the new "
				"file is visible inside. Keep it in a directory named sluice (hidden whole), e.g. "
				"~/.config/sluice/", real);
		err = sb_hide_add(&s->hide, real);
	}
	free(real);
	return err;
}

/*
 * Terminal and editor servers run what any client of theirs asks, in their own
 * context, outside the sandbox: `tmux run-shell`, `screen -X exec`,
 * `emacsclient --eval`, `wezterm cli spawn`, `zellij run`, VS Code's `code`
 * IPC, kitty's remote control; and the X server (keystrokes into any
 * terminal). Agents are often run inside one, so its socket is there.
 * Their per-user directories become empty ones of the sandbox's own (its
 * own tmux still works); other paths are hidden. Best effort: a session
 * socket that cannot be resolved or does not fit is warned about, not fatal.
 */
static void session_add(struct sandbox *s, const char *p, bool dir, uid_t uid)
{
	static bool full_warned;
	int err = dir ? sb_priv_add(&s->hide, p, uid) : sb_hide_add(&s->hide, p);

	if (err == -E2BIG && !full_warned) {
		full_warned = true;
		pr_warn("too many terminal, editor or ssh sockets to hide (%s and more stay reachable from "
			"the sandbox); remove stale ones", p);
	} else if (err && err != -E2BIG) {
		pr_warn("Couldn't resolve %s to hide it from the sandbox: %s", p, strerror(-err));
	}
}

/* A listening unix socket with a path, from /proc/net/unix. */
struct unix_listener {
	unsigned long inode;
	char *path;
};

/* Num RefCount Protocol Flags Type St Inode Path; flag 0x10000: listening.
 * Abstract names (@...) are left out: Landlock keeps those out of reach. */
static size_t unix_listeners(const char *net_unix, struct unix_listener **out)
{
	struct unix_listener *v = NULL;
	size_t n = 0, cap = 0;

	for (const char *l = net_unix; l && *l; l = strchr(l, '\n'), l = l ? l + 1 : NULL) {
		unsigned long flags, inode;
		char path[4096];

		if (sscanf(l, "%*s %*s %*s %lx %*s %*s %lu %4095[^\n]", &flags, &inode, path) != 3 ||
		    !(flags & 0x10000) || path[0] == '@')
			continue;
		if (n == cap) {
			struct unix_listener *w = realloc(v, (cap = cap ? 2 * cap : 64) * sizeof(*v));

			if (!w)
				break;
			v = w;
		}
		if (!(v[n].path = strdup(path)))
			break;
		v[n++].inode = inode;
	}
	*out = v;
	return n;
}

/* OpenSSH binds a ControlMaster at "ControlPath.XXXXXXXXXXXXXXXX" (16 random
 * characters), links that to ControlPath and unlinks it: /proc/net/unix keeps
 * the name it was bound at, which is gone. Cut the suffix off such a name. */
static bool ssh_temp_name(char *p)
{
	size_t n = strlen(p);

	if (n < 18 || p[n - 17] != '.')
		return false;
	for (size_t i = n - 16; i < n; i++)
		if (!isalnum((unsigned char)p[i]))
			return false;
	p[n - 17] = 0;
	return true;
}

/*
 * ssh's listening unix sockets lead out of the host: a ControlMaster socket
 * (`ControlMaster auto` with `ControlPersist` in ~/.ssh/config) opens a session
 * or a forward over the live connection for whoever connects (`ssh -S PATH
 * host cmd`, `ssh -S PATH -O forward ...`), `ssh -L PATH:...` forwards to the
 * far side, and sshd listens for a client's `ssh -R PATH:...`. The paths are
 * the user's choice (ControlPath), so they are found by what holds them: the
 * listening sockets in /proc/net/unix whose inode an ssh process has open.
 * sshd's agent-forwarding socket (ssh-XXXX/agent.N) is an ssh-agent's: it
 * signs, it does not carry traffic, and stays. Best effort: ones started after
 * the sandbox, or bound in another mount or network namespace, stay reachable
 * (README); one that cannot be found is warned about.
 */
static void hide_ssh_sockets(struct sandbox *s, uid_t uid, const char *net_unix)
{
	static const char *const names[] = { "ssh", "slogin", "sshd", "sshd-session" };
	struct unix_listener *ls = NULL;
	size_t n = unix_listeners(net_unix, &ls);
	struct dirent *d;
	DIR *proc;

	if (!n || !(proc = opendir("/proc")))
		goto out;
	while ((d = readdir(proc))) {
		char p[300], comm[32] = "", link[64];
		bool sshd = false, found = false;
		struct dirent *f;
		DIR *fds;
		FILE *c;

		if (d->d_name[0] < '1' || d->d_name[0] > '9')
			continue;
		snprintf(p, sizeof(p), "/proc/%s/comm", d->d_name);
		if (!(c = fopen(p, "re")))
			continue;
		if (!fgets(comm, sizeof(comm), c))
			comm[0] = 0;
		fclose(c);
		comm[strcspn(comm, "\n")] = 0;
		for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
			if (!strcmp(comm, names[i])) {
				found = true;
				sshd = i >= 2;
			}
		if (!found)
			continue;
		snprintf(p, sizeof(p), "/proc/%s/fd", d->d_name);
		if (!(fds = opendir(p)))
			continue;
		while ((f = readdir(fds))) {
			char fp[600], path[4400];
			unsigned long inode;
			struct stat st;
			size_t i;
			ssize_t k;

			snprintf(fp, sizeof(fp), "%s/%s", p, f->d_name);
			k = readlink(fp, link, sizeof(link) - 1);
			if (k <= 0)
				continue;
			link[k] = 0;
			if (sscanf(link, "socket:[%lu]", &inode) != 1)
				continue;
			for (i = 0; i < n && ls[i].inode != inode; i++)
				;
			if (i == n)
				continue;
			/* A relative name was bound in the holder's working directory. */
			if (ls[i].path[0] == '/')
				snprintf(path, sizeof(path), "%s", ls[i].path);
			else
				snprintf(path, sizeof(path), "/proc/%s/cwd/%s", d->d_name, ls[i].path);
			if (sshd && fnmatch("*/ssh-*/agent.*", ls[i].path, 0) == 0)
				continue;
			if (lstat(path, &st) && !(errno == ENOENT && ssh_temp_name(path) && !lstat(path, &st)))
				st.st_mode = 0;
			if (S_ISSOCK(st.st_mode))
				session_add(s, path, false, uid);
			else
				pr_warn("Couldn't find the socket %s that %s (pid %s) listens on, to hide it from "
					"the sandbox: it may stay reachable there (bound in another mount namespace?)",
					ls[i].path, comm, d->d_name);
		}
		closedir(fds);
	}
	closedir(proc);
out:
	for (size_t i = 0; i < n; i++)
		free(ls[i].path);
	free(ls);
}

static void hide_sessions(struct sandbox *s, uid_t uid)
{
	static const char *const dirs[] = {
		"/tmp/tmux-%u", "/run/user/%u/tmux-%u", "/tmp/zellij-%u", "/run/user/%u/zellij",
		"/run/user/%u/wezterm", "/run/user/%u/emacs", "/tmp/emacs%u",
	};
	static const char *const hidden[] = { "/run/screen", "/var/run/screen", "/tmp/.X11-unix" };
	static const char *const globs[] = {
		"/run/user/%u/vscode-*.sock", "/tmp/vscode-*.sock", "/run/user/%u/kitty-*", "/tmp/kitty-*",
	};
	/* The servers this sluice runs under name their sockets here (tmux:
	 * "path,pid,session"; kitty: "unix:path", "unix:@name" is abstract). */
	static const char *const vars[] = { "TMUX", "VSCODE_IPC_HOOK_CLI", "WEZTERM_UNIX_SOCKET", "KITTY_LISTEN_ON" };
	const char *tmux_dir = getenv("TMUX_TMPDIR");
	char p[4096], *listening;

	/* The live ones first: if the list fills up, stale glob matches are what is left out. */
	for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++) {
		const char *v = getenv(vars[i]);

		if (!v || !*v)
			continue;
		if (!strncmp(v, "unix:", 5))
			v += 5;
		if (*v != '/')
			continue;
		snprintf(p, sizeof(p), "%.*s", (int)strcspn(v, ","), v);
		session_add(s, p, false, uid);
	}
	for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
		snprintf(p, sizeof(p), dirs[i], (unsigned)uid, (unsigned)uid);
		session_add(s, p, true, uid);
	}
	if (tmux_dir && *tmux_dir) {
		snprintf(p, sizeof(p), "%s/tmux-%u", tmux_dir, (unsigned)uid);
		session_add(s, p, true, uid);
	}
	/* The runtime dir whole: the session's daemons (keep_sockets). Not when
	 * sluice's run directory is in it: the sandbox reads its CA bundle there. */
	snprintf(p, sizeof(p), "/run/user/%u", (unsigned)uid);
	if (s->hide.run_dir && path_under(s->hide.run_dir, p))
		pr_warn("the run directory %s is inside the session's runtime dir %s, so the sandbox "
			"keeps the runtime dir and the session daemons' sockets in it (the keyring, "
			"gpg-agent, PipeWire, Wayland): use the default run directory", s->hide.run_dir, p);
	else
		session_add(s, p, true, uid);
	for (size_t i = 0; i < sizeof(hidden) / sizeof(hidden[0]); i++)
		session_add(s, hidden[i], false, uid);
	/* Of the glob matches, only sockets something listens on (/proc/net/unix
	 * lists their paths): editors leave hundreds of stale ones behind. */
	listening = read_file("/proc/net/unix", 16 << 20);
	for (size_t i = 0; i < sizeof(globs) / sizeof(globs[0]); i++) {
		glob_t g;

		snprintf(p, sizeof(p), globs[i], (unsigned)uid);
		if (glob(p, GLOB_NOSORT, NULL, &g) == 0)
			for (size_t j = 0; j < g.gl_pathc; j++) {
				struct stat st;
				char line[4100];

				snprintf(line, sizeof(line), " %s\n", g.gl_pathv[j]);
				if (!lstat(g.gl_pathv[j], &st) && S_ISSOCK(st.st_mode) &&
				    (!listening || strstr(listening, line)))
					session_add(s, g.gl_pathv[j], false, uid);
			}
		globfree(&g);
	}
	hide_ssh_sockets(s, uid, listening);
	free(listening);
}

/*
 * Host daemons whose unix sockets would run a command outside the sandbox for
 * it (a transient unit, a container, a shell in a terminal multiplexer) or
 * resolve names for it: the user's systemd and session bus (`systemd-run
 * --user`), container engines, terminal and editor servers, the system bus
 * and the host's resolvers, and for uid 0, which systemd trusts, systemd's
 * private socket. AF_UNIX is not mediated, so these are hidden by path; the
 * README's limits say what else to keep out.
 */
static int hide_daemons(struct sandbox *s, uid_t uid)
{
	static const char *const all[] = {
		"/run/user/%u/bus", "/run/user/%u/systemd", "/run/user/%u/docker.sock",
		"/run/user/%u/podman", "/run/docker.sock", "/var/run/docker.sock",
		"/run/containerd/containerd.sock", "/run/podman/podman.sock", "/run/crio/crio.sock",
		/* The system bus (systemd-resolved's ResolveHostname answers anyone)
		 * and the host's resolvers: DNS that does not go through the broker. */
		"/run/dbus/system_bus_socket", "/var/run/dbus/system_bus_socket",
		"/run/systemd/resolve/io.systemd.Resolve", "/run/systemd/resolve/io.systemd.Resolve.Monitor",
		"/run/nscd/socket", "/var/run/nscd/socket", "/run/avahi-daemon/socket",
	};
	static const char *const root[] = { "/run/systemd/private" };
	char p[128];
	int err = 0;

	for (size_t i = 0; !err && i < sizeof(all) / sizeof(all[0]); i++) {
		snprintf(p, sizeof(p), all[i], (unsigned)uid);
		err = sb_hide_add(&s->hide, p);
	}
	for (size_t i = 0; !err && !uid && i < sizeof(root) / sizeof(root[0]); i++)
		err = sb_hide_add(&s->hide, root[i]);
	if (!err)
		hide_sessions(s, uid);
	return err;
}

/* Why the socket real (resolved) cannot be kept in the emptied runtime dir
 * rt, or NULL: it is in a terminal server's directory (its server runs what
 * any client asks), or sluice hides it (a daemon that would run commands or
 * resolve names outside). */
static const char *keep_refused(const struct sb_hide *h, const char *rt, const char *real, char *why,
				size_t len)
{
	for (size_t j = 0; j < h->n_priv; j++)
		if (strcmp(h->priv[j], rt) && path_under(real, h->priv[j]))
			return snprintf(why, len, "it is in %s, a terminal server's directory (its server "
					"runs what any client asks, outside the sandbox)", h->priv[j]), why;
	for (size_t j = 0; j < h->n; j++)
		if (path_under(real, h->path[j]))
			return snprintf(why, len, "sluice hides %s from every sandbox (a daemon there would "
					"run commands or resolve names outside it)", h->path[j]), why;
	return NULL;
}

/*
 * The runtime dir (/run/user/UID) is an empty one of the sandbox's own: the
 * session's daemons listen there (the keyring; gpg-agent; PipeWire and
 * PulseAudio, whose modules open connections of their own; the Wayland
 * compositor, which may type into any window). ssh-agent's socket
 * ($SSH_AUTH_SOCK) is bound back in, as it is reachable anywhere else: it
 * signs, it carries nothing, and git over ssh needs it. --keep-socket keeps
 * another of the runtime dir's sockets. Each is checked where sb_sock_add
 * resolved it, which is what the sandbox gets.
 */
static int keep_sockets(struct sandbox *s, uid_t uid)
{
	const char *agent = getenv("SSH_AUTH_SOCK"), *no = NULL;
	struct sb_hide *h = &s->hide;
	bool rt_private = false;
	char rt[64], why[512];
	int err;

	snprintf(rt, sizeof(rt), "/run/user/%u", (unsigned)uid);
	for (size_t j = 0; j < h->n_priv; j++)
		rt_private |= !strcmp(h->priv[j], rt);
	if (rt_private && agent && *agent == '/' && !(err = sb_sock_add(h, agent, true))) {
		const char *real = h->sock[h->n_sock - 1];

		if (!path_under(real, rt) || (no = keep_refused(h, rt, real, why, sizeof(why)))) {
			if (path_under(real, rt))
				pr_warn("ssh-agent's socket %s stays out of the sandbox: %s", agent, no);
			free((char *)h->sock[--h->n_sock]); /* elsewhere: reachable, or hidden, as it is */
		}
	}
	for (size_t i = 0; i < s->o->n_keep_socket; i++) {
		const char *p = s->o->keep_socket[i], *real;

		err = sb_sock_add(h, p, false);
		if (err == -E2BIG)
			pr_err("--keep-socket %s: too many sockets to keep (at most %d, ssh-agent's included)",
			       p, SB_MAX_PRIV);
		else if (err)
			pr_err("--keep-socket %s: %s", p, err == -ENOTSOCK ? "not a unix socket" : strerror(-err));
		if (err)
			return err;
		real = h->sock[h->n_sock - 1];
		if (!path_under(real, rt)) {
			pr_err("--keep-socket %s: refused, only sockets in the session's runtime dir %s, which "
			       "the sandbox gets empty, are kept; elsewhere a socket is reachable as it is "
			       "unless sluice hides it: drop this --keep-socket", p, rt);
			return -EPERM;
		}
		if (!rt_private) {
			pr_info("--keep-socket %s: reachable as it is (the runtime dir %s is not emptied for "
				"this sandbox)", p, rt);
			free((char *)h->sock[--h->n_sock]); /* nothing to bind back */
			continue;
		}
		if ((no = keep_refused(h, rt, real, why, sizeof(why)))) {
			pr_err("--keep-socket %s: refused, %s", p, no);
			return -EPERM;
		}
	}
	return 0;
}

/* Keys, the policy (it may hold literal secrets), secret files, the audit and
 * broker logs: a uid 0 sandbox would pass owner permission checks on them. */
static int hide_list(struct sandbox *s, uid_t uid)
{
	const char *run_dir = s->o->run_dir ? s->o->run_dir : SLUICE_RUN_DIR;
	const char *what = run_dir;
	bool literal = false;
	int err;

	err = sb_hide_set_run_dir(&s->hide, run_dir);
	if (!err) {
		what = s->o->ca_dir ? s->o->ca_dir : SLUICE_CA_DIR;
		err = sb_hide_add(&s->hide, what);
	}
	if (!err && s->o->audit && strcmp(s->o->audit, "-"))
		err = sb_hide_add(&s->hide, what = s->o->audit);
	for (size_t i = 0; s->policy && i < policy_secret_count(s->policy); i++) {
		const struct policy_secret *ps = policy_secret_at(s->policy, i);

		literal |= !ps->env_source && !ps->file_source;
	}
	if (!err && s->o->policy)
		err = hide_file(s, s->o->policy, literal, &what);
	for (size_t i = 0; !err && s->policy && i < policy_secret_count(s->policy); i++) {
		const struct policy_secret *ps = policy_secret_at(s->policy, i);

		if (ps->file_source)
			err = hide_file(s, ps->file_source, true, &what);
	}
	if (!err && (err = hide_daemons(s, uid)))
		what = "a host daemon's socket";
	if (!err && (err = keep_sockets(s, uid)))
		return err;
	if (err)
		pr_err("Couldn't resolve %s to hide it from the sandbox: %s; refusing to run", what,
		       strerror(-err));
	return err;
}

/* Where a current directory is the host's own, not a project: keeping it
 * writable would undo the read-only root. */
static bool system_dir(const char *p)
{
	static const char *const under[] = {
		"/etc", "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/boot",
		"/run", "/var/spool", "/var/lib", "/opt/sluice", NULL,
	};
	static const char *const exact[] = { "/", "/var", "/opt", "/home", "/srv", "/mnt", "/media", "/root", NULL };
	struct passwd *pw;
	bool home = false;

	for (int i = 0; exact[i]; i++)
		if (!strcmp(p, exact[i]))
			return true;
	/* A home directory itself: its dotfiles (.bashrc, .profile, .config/autostart)
	 * run outside the sandbox later. A project below it is fine. */
	if (!strncmp(p, "/home/", 6) && p[6] && !strchr(p + 6, '/'))
		return true;
	setpwent();
	while (!home && (pw = getpwent()))
		home = pw->pw_dir && strcmp(pw->pw_dir, "/") && !strcmp(p, pw->pw_dir);
	endpwent();
	if (home)
		return true;
	for (int i = 0; under[i]; i++) {
		size_t n = strlen(under[i]);

		if (!strncmp(p, under[i], n) && (p[n] == 0 || p[n] == '/'))
			return true;
	}
	return false;
}

/* A uid 0 sandbox (or any, with --readonly-root) sees the host read-only,
 * but for the project it works on (the current directory) and --writable. */
static int fs_setup(struct sandbox *s, const struct sb_ident *id)
{
	char cwd[4096];
	int err;

	s->hide.ro_root = id->uid == 0 || s->o->readonly_root;
	if (!s->hide.ro_root) {
		if (s->o->n_writable)
			pr_warn("--writable changes nothing for a sandbox running as %s: its own permissions "
				"apply (add --readonly-root for the read-only host)", id->name);
		return 0;
	}
	for (size_t i = 0; i < s->o->n_writable; i++) {
		err = sb_keep_add(&s->hide, s->o->writable[i]);
		if (err == -EPERM) {
			pr_err("--writable %s: refused, / and the kernel's /proc, /sys and /dev never become "
			       "writable in the sandbox; name the directories the command must write", s->o->writable[i]);
			return err;
		}
		if (err) {
			pr_err("--writable %s: %s (create it first, or fix the path)", s->o->writable[i], strerror(-err));
			return err;
		}
	}
	if (!getcwd(cwd, sizeof(cwd)) || system_dir(cwd)) {
		pr_warn("the current directory %s is not a project directory: it stays read-only in the "
			"sandbox (cd to the project, or name it with --writable)", getcwd(cwd, sizeof(cwd)) ? cwd : "(unknown)");
		return 0;
	}
	err = sb_keep_add(&s->hide, cwd);
	if (err == -EPERM) {
		pr_warn("the current directory %s stays read-only in the sandbox", cwd);
		return 0;
	}
	if (err)
		pr_err("Couldn't resolve the current directory %s to keep it writable: %s; refusing to run",
		       cwd, strerror(-err));
	return err;
}

int do_run(struct run_opts *o)
{
	struct sandbox s = { .o = o };
	char err[1024] = "", name[64];
	struct sb_ident id;
	int ep[2], rc = 1, status;
	sigset_t set, old;
	ssize_t n;
	pid_t child;

	if (!o->cmd || !o->cmd[0]) {
		pr_err("run: no command given (usage: sluice run [OPTIONS] -- CMD [ARGS...])");
		return 2;
	}
	/* An IP socket handed in as stdin/stdout/stderr (inetd, a shell's
	 * /dev/tcp) was made outside the sandbox's cgroup: no hook applies to it. */
	for (int fd = 0; fd <= 2; fd++) {
		int dom = 0;
		socklen_t dl = sizeof(dom);

		if (!getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &dom, &dl) && (dom == AF_INET || dom == AF_INET6)) {
			pr_err("run: file descriptor %d is a network socket opened outside the sandbox, which "
			       "sluice cannot confine; give the command a terminal, file or pipe instead", fd);
			return 2;
		}
	}
	if (!o->pin_root)
		o->pin_root = SLUICE_PIN_ROOT;
	if (name_reserved(o->name))
		return 2;
	if (sandbox_name(o, name, sizeof(name), "run-", (unsigned long long)getpid()))
		return 2;
	snprintf(s.name, sizeof(s.name), "%s", o->name);
	if (o->policy && policy_load(o->policy, POLICY_FMT_AUTO, &s.policy, err, sizeof(err))) {
		pr_err("%s", err);
		return 2;
	}
	if (sb_ident_resolve(o->user, &id, err, sizeof(err))) {
		pr_err("%s", err);
		goto out;
	}
	if (loader_preflight())
		goto out;
	{
		char cgp[512];

		/* Leftovers of runs killed with SIGKILL: not ours to fail on. */
		loader_gc_runs(o->pin_root, cg_parent_path(cgp, sizeof(cgp)) ? NULL : cgp);
	}
	if (build_env(&s))
		goto out;

	/* Signals wait in sigtimedwait() until the command runs; the children unblock them. */
	supervised_signals(&set);
	sigprocmask(SIG_BLOCK, &set, &old);

	if (cg_create(s.name, s.cg_path, sizeof(s.cg_path)))
		goto out;
	s.cg_created = true;
	if (sandbox_setup(&s))
		goto out;
	if (!o->verbose && !broker_log_path(o, err, sizeof(err)))
		pr_info("the broker (pid %d) logs to %s", (int)s.broker.pid, err);
	err[0] = 0;
	if (access(s.bundle, R_OK))
		pr_warn("the broker wrote no %s: TLS clients in the sandbox will not trust it", s.bundle);

	if (hide_list(&s, id.uid) || fs_setup(&s, &id))
		goto out;
	if (sb_landlock_abi() < 6)
		pr_warn("this kernel cannot keep the host's abstract unix sockets (X's @/tmp/.X11-unix/X0, "
			"a D-Bus or IDE socket) out of the sandbox's reach: that takes Landlock ABI 6 (Linux "
			"6.12 with landlock in the kernel's lsm= list); run the agent away from a desktop session");
	if (pipe2(ep, O_CLOEXEC)) {
		pr_err("pipe: %s", strerror(errno));
		goto out;
	}
	/* pid 1 of a PID namespace of its own: the sandbox cannot see, signal
	 * or ptrace the broker or this process. */
	child = (pid_t)syscall(SYS_clone, CLONE_NEWPID | SIGCHLD, NULL, NULL, NULL, NULL);
	if (child < 0) {
		pr_err("fork: %s", strerror(errno));
		close(ep[0]);
		close(ep[1]);
		goto out;
	}
	if (child == 0) {
		/* No inherited socket or BPF fd may enter the sandbox. */
		close(ep[0]);
		if (ep[1] != 3) {
			dup2(ep[1], 3);
			fcntl(3, F_SETFD, FD_CLOEXEC);
		}
		close_range(4, ~0U, 0);
		sigprocmask(SIG_SETMASK, &old, NULL);
		sb_exec(s.cg_path, &id, o->cmd, s.envp, &s.hide, 3, err, sizeof(err));
		n = write(3, err, strlen(err));
		(void)n;
		_exit(126);
	}
	close(ep[1]);
	n = read(ep[0], err, sizeof(err) - 1);
	close(ep[0]);
	if (n > 0) {
		err[n] = 0;
		pr_err("%s", err);
		waitpid(child, &status, 0);
		rc = WIFEXITED(status) ? WEXITSTATUS(status) : 126;
		goto out;
	}
	rc = supervise(&s, child);
out:
	sandbox_teardown(&s);
	return rc;
}

/* ---- attach / detach: a supervisor process per attached cgroup ---- */

static void state_path(const struct run_opts *o, const char *name, char *buf, size_t len)
{
	snprintf(buf, len, "%s/%s.pid", o->run_dir ? o->run_dir : SLUICE_RUN_DIR, name);
}

static int cg_resolve(struct run_opts *o, char *name, size_t len, __u64 *cgid)
{
	int err;

	if (!o->cgroup) {
		pr_err("--cgroup PATH is required (the cgroup v2 directory of the container)");
		return -EINVAL;
	}
	if (o->name && (err = sandbox_name(o, name, len, "", 0))) /* the arguments first */
		return err;
	err = cg_id(o->cgroup, cgid);
	if (err) {
		pr_err("Couldn't stat cgroup %s: %s (give its directory under the cgroup v2 mount)",
		       o->cgroup, strerror(-err));
		return err;
	}
	if (!o->pin_root)
		o->pin_root = SLUICE_PIN_ROOT;
	return sandbox_name(o, name, len, "cg-", (unsigned long long)*cgid);
}

int do_attach(struct run_opts *o)
{
	struct sandbox s = { .o = o };
	char name[64], sp[512], err[1024], msg[128] = "";
	int rc = 1, ep[2];
	sigset_t set;
	ssize_t n;
	pid_t pid;
	FILE *f;

	if (name_reserved(o->name) || cg_resolve(o, name, sizeof(name), &s.cgid))
		return 2;
	snprintf(o->sandbox_cgid, sizeof(o->sandbox_cgid), "%llu", (unsigned long long)s.cgid);
	snprintf(s.name, sizeof(s.name), "%s", o->name);
	snprintf(s.cg_path, sizeof(s.cg_path), "%s", o->cgroup);
	if (o->policy && policy_load(o->policy, POLICY_FMT_AUTO, &s.policy, err, sizeof(err))) {
		pr_err("%s", err);
		return 2;
	}
	if (loader_preflight())
		goto out;
	if (loader_prepare(o->pin_root))
		goto out;
	if (loader_attach(o->pin_root, s.name, s.cg_path, 0, &s.ld))
		goto out;
	s.attached = true;
	loader_close(s.ld);
	s.ld = NULL;
	state_path(o, s.name, sp, sizeof(sp));
	mkdir(o->run_dir ? o->run_dir : SLUICE_RUN_DIR, 0755);
	if (pipe2(ep, O_CLOEXEC)) {
		pr_err("pipe: %s", strerror(errno));
		goto out;
	}
	/* A supervisor outlives this command: the broker's parent, restarting it. */
	pid = fork();
	if (pid < 0) {
		pr_err("fork: %s", strerror(errno));
		goto out;
	}
	if (pid > 0) {
		close(ep[1]);
		n = read(ep[0], msg, sizeof(msg) - 1);
		close(ep[0]);
		if (n <= 0) {
			/* The supervisor logged its error and tore everything down. */
			waitpid(pid, NULL, 0);
			pr_err("the broker for %s did not start; see %s/%s.log", s.name,
			       o->run_dir ? o->run_dir : SLUICE_RUN_DIR, s.name);
			s.attached = false;
			goto out;
		}
		msg[n] = 0;
		printf("attached %s: cgroup %s (id %llu), %s\n", s.name, o->cgroup,
		       (unsigned long long)s.cgid, msg);
		policy_unref(s.policy);
		return 0;
	}
	close(ep[0]);
	setsid();
	supervised_signals(&set);
	sigprocmask(SIG_BLOCK, &set, NULL);
	/* The supervisor and its broker outlive the caller: their messages go to
	 * a log file, not to the caller's terminal or pipe. */
	snprintf(err, sizeof(err), "%s/%s.log", o->run_dir ? o->run_dir : SLUICE_RUN_DIR, s.name);
	n = open(err, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	if (n >= 0) {
		dup2(n, 2);
		close(n);
	}
	n = open("/dev/null", O_RDWR);
	if (n >= 0) {
		dup2(n, 0);
		dup2(n, 1);
		if (n > 2)
			close(n);
	}
	if (broker_start(o, 0, BROKER_READY_MS, &s.broker) || sandbox_entry(&s)) {
		sandbox_teardown(&s);
		_exit(1);
	}
	f = fopen(sp, "we");
	if (f) {
		fprintf(f, "%d\n", (int)getpid());
		fclose(f);
	}
	snprintf(msg, sizeof(msg), "broker pid %d port %u dns port %u", (int)s.broker.pid,
		 s.broker.port, s.broker.dns_port);
	n = write(ep[1], msg, strlen(msg));
	close(ep[1]);
	supervise(&s, 0);
	/* Only its own: an attach of a new cgroup under this name may have
	 * written its supervisor's pid there since. */
	f = fopen(sp, "re");
	if (f) {
		int who = 0;

		if (fscanf(f, "%d", &who) == 1 && who == (int)getpid())
			unlink(sp);
		fclose(f);
	}
	sandbox_teardown(&s);
	_exit(0);
out:
	sandbox_teardown(&s);
	return rc;
}

int do_detach(struct run_opts *o)
{
	char name[64], sp[512];
	__u64 cgid, cur = 0;
	int pid = 0, err, i;
	FILE *f;

	if (cg_resolve(o, name, sizeof(name), &cgid))
		return 2;
	/* Before its supervisor is stopped: the name may hold another cgroup's links now. */
	if (!loader_pinned_cgid(o->pin_root, o->name, &cur) && cur && cur != cgid) {
		pr_err("%s is attached to another cgroup (id %llu) than %s: nothing detached (give that "
		       "cgroup's path)", o->name, (unsigned long long)cur, o->cgroup);
		return 1;
	}
	state_path(o, o->name, sp, sizeof(sp));
	f = fopen(sp, "re");
	if (f) {
		if (fscanf(f, "%d", &pid) != 1)
			pid = 0;
		fclose(f);
	}
	if (pid > 0 && !kill(pid, SIGTERM)) {
		for (i = 0; i < 300 && !kill(pid, 0); i++)
			usleep(10000);
	}
	err = loader_detach_own(o->pin_root, o->name, cgid);
	if (err == -EBUSY) {
		pr_err("%s was attached to another cgroup than %s meanwhile: nothing detached", o->name,
		       o->cgroup);
		return 1;
	}
	unlink(sp);
	loader_del_sandbox(o->pin_root, cgid);
	if (err && err != -ENOENT) {
		pr_err("Couldn't unpin %s/%s: %s", o->pin_root, o->name, strerror(-err));
		return 1;
	}
	if (err == -ENOENT && pid <= 0) {
		pr_err("%s is not attached (nothing pinned at %s/%s)", o->cgroup, o->pin_root, o->name);
		return 1;
	}
	printf("detached %s from %s\n", o->name, o->cgroup);
	return 0;
}

int do_status(struct run_opts *o)
{
	return loader_status(o->pin_root ? o->pin_root : SLUICE_PIN_ROOT, stdout) ? 1 : 0;
}

int do_policy_check(const char *file)
{
	struct policy *p = NULL;
	char err[1024];

	if (policy_load(file, POLICY_FMT_AUTO, &p, err, sizeof(err))) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	policy_dump(p, stdout);
	policy_unref(p);
	return 0;
}
