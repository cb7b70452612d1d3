// SPDX-License-Identifier: MIT
/* sluiced: the broker. Started by `sluice run` (see the usage text). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/eventfd.h>
#include <sys/fsuid.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/inotify.h>
#include <sys/prctl.h>
#include <libgen.h>
#include <malloc.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <openssl/ssl.h>
#include "broker.h"
#include "log.h"
#include "origdst.h"

static int take_origdst(struct broker *b, int fd, const struct sockaddr_storage *peer,
			const struct sockaddr_storage *local, struct sluice_orig_dst *out)
{
	/* The map appears when the first sandbox is set up, maybe after we start. */
	if (b->orig_fd < 0)
		b->orig_fd = origdst_open(b->cfg->pin_root);
	if (b->orig_fd < 0)
		return b->orig_fd;
	return origdst_take_addr(b->orig_fd, fd, peer, local, out);
}

/*
 * Workers: each is a whole broker (event loop, connections, upstream pool,
 * timers, audit buffer) with its own SO_REUSEPORT listeners on the shared
 * port, so the kernel spreads the redirected connections and no lock is taken
 * per connection. Shared, each with its own lock: the policy, the certificate
 * cache, the resolver's threads and cache, the upstream TLS sessions and the
 * DNS names table. Worker 0 runs on the main thread and alone owns the DNS
 * sockets, the signalfd and the policy watch, so one worker is exactly the
 * single-threaded broker.
 */
struct worker {
	struct broker b;
	struct broker_cfg cfg;         /* copy: --max-conns is split between the workers */
	struct ev_io wake;             /* eventfd: drain now (fd -1 with one worker) */
	pthread_t th;
	unsigned idx;
};

static struct worker *wk;
static unsigned n_wk;
static atomic_int exit_rc;

static void wake_cb(struct ev_io *io, uint32_t events)
{
	struct worker *w = container_of(io, struct worker, wake);
	uint64_t v;

	if (read(io->fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		pr_warn("worker %u: eventfd read: %s", w->idx, strerror(errno));
	broker_drain(&w->b);
}

/* Every worker stops accepting and finishes its connections; the eventfd
 * write is the only cross-thread touch, each broker drains itself. */
static void drain_all(void)
{
	uint64_t one = 1;
	unsigned i;

	for (i = 0; i < n_wk; i++)
		if (wk[i].wake.fd >= 0 && write(wk[i].wake.fd, &one, sizeof(one)) < 0)
			pr_warn("Couldn't wake worker %u to drain: %s", i, strerror(errno));
}

static void worker_report(const struct worker *w)
{
	if (n_wk > 1)
		pr_info("worker %u: %lu connection(s) accepted, %lu refused", w->idx,
			w->b.n_accepted, w->b.n_refused);
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;

	while (!w->b.loop.stop) {
		int rc = ev_run_once(&w->b.loop);

		if (rc < 0) {
			/* Fail closed: the whole broker goes, `sluice run` restarts it. */
			pr_err("worker %u: event loop failed: %s; stopping the broker", w->idx, strerror(-rc));
			atomic_store(&exit_rc, 1);
			drain_all();
			break;
		}
	}
	worker_report(w);
	broker_fini(&w->b);
	certcache_thread_done();
	return NULL;
}

static const char usage[] =
"usage: sluiced --listen 127.0.0.1:PORT --ready-fd N [options]\n"
"  --listen 127.0.0.1:P   TCP on 127.0.0.1:P and [::1]:P, UDP DNS likewise (P=0: the kernel picks)\n"
"  --ready-fd N           write \"READY <tcp-port> <dns-port>\\n\" to fd N once listening\n"
"  --policy FILE          rules and secrets (reloaded when it changes on disk, or on SIGHUP)\n"
"  --allow HOSTGLOB       without --policy: allow every request to these hosts (repeatable)\n"
"  --upstream-ca FILE     extra trust anchor for upstream TLS (repeatable)\n"
"  --resolve HOST:ADDR    dial ADDR for HOST (repeatable; may point at internal addresses)\n"
"  --ca-dir DIR           CA key and cert (default /var/lib/sluice/ca, 0700)\n"
"  --run-dir DIR          public files: ca.crt, ca-bundle.pem (default /run/sluice)\n"
"  --audit FILE|-         JSON-lines audit log (default <run-dir>/<sandbox>/audit.jsonl, or stderr)\n"
"  --pin-root DIR         bpffs directory of the pinned maps (default " SLUICE_PIN_ROOT ")\n"
"  --sandbox NAME         name written in the audit log\n"
"  --workers N            worker threads, each with its own SO_REUSEPORT listeners (default 1, max 64)\n"
"  --log-level L          error|warn|info|debug\n"
"  --max-conns N          connections open at once, split evenly between workers (default 16384);\n"
"                         over it, N/16 more (at least 8) are answered 503, the rest closed\n"
"  --handshake-timeout S, --header-timeout S, --idle-timeout S, --io-timeout S   (seconds, decimals ok)\n"
"  --drain-timeout S      on SIGTERM/SIGINT, how long busy connections may finish (default 10)\n"
"  --max-header-bytes N   request/response head limit (default 65536)\n"
"  --cgroup-id N          the sandbox's cgroup id: connections recorded for another are refused\n"
"  --pool-max N           idle upstream connections kept for reuse, per worker (default 256; 0: none)\n"
"  --origdst-fixed ADDR:PORT  TEST AID: treat every connection as redirected from ADDR:PORT\n";

enum {
	OPT_LISTEN = 256, OPT_READY, OPT_POLICY, OPT_ALLOW, OPT_UPCA, OPT_RESOLVE, OPT_CADIR,
	OPT_RUNDIR, OPT_AUDIT, OPT_PIN, OPT_SANDBOX, OPT_WORKERS, OPT_LOGLEVEL, OPT_ORIGFIXED,
	OPT_MAXCONNS, OPT_HS_TO, OPT_HDR_TO, OPT_IDLE_TO, OPT_IO_TO, OPT_DRAIN_TO, OPT_MAXHDR, OPT_POOLMAX, OPT_CGID, OPT_HELP,
};

static const struct option opts[] = {
	{ "listen", required_argument, NULL, OPT_LISTEN },
	{ "ready-fd", required_argument, NULL, OPT_READY },
	{ "policy", required_argument, NULL, OPT_POLICY },
	{ "allow", required_argument, NULL, OPT_ALLOW },
	{ "upstream-ca", required_argument, NULL, OPT_UPCA },
	{ "resolve", required_argument, NULL, OPT_RESOLVE },
	{ "ca-dir", required_argument, NULL, OPT_CADIR },
	{ "run-dir", required_argument, NULL, OPT_RUNDIR },
	{ "audit", required_argument, NULL, OPT_AUDIT },
	{ "pin-root", required_argument, NULL, OPT_PIN },
	{ "sandbox", required_argument, NULL, OPT_SANDBOX },
	{ "workers", required_argument, NULL, OPT_WORKERS },
	{ "log-level", required_argument, NULL, OPT_LOGLEVEL },
	{ "origdst-fixed", required_argument, NULL, OPT_ORIGFIXED },
	{ "max-conns", required_argument, NULL, OPT_MAXCONNS },
	{ "handshake-timeout", required_argument, NULL, OPT_HS_TO },
	{ "header-timeout", required_argument, NULL, OPT_HDR_TO },
	{ "idle-timeout", required_argument, NULL, OPT_IDLE_TO },
	{ "io-timeout", required_argument, NULL, OPT_IO_TO },
	{ "drain-timeout", required_argument, NULL, OPT_DRAIN_TO },
	{ "max-header-bytes", required_argument, NULL, OPT_MAXHDR },
	{ "pool-max", required_argument, NULL, OPT_POOLMAX },
	{ "cgroup-id", required_argument, NULL, OPT_CGID },
	{ "help", no_argument, NULL, OPT_HELP },
	{ 0 },
};

static int die(const char *what)
{
	pr_err("%s", what);
	return 1;
}

static int parse_ulong(const char *s, unsigned long max, unsigned long *out)
{
	char *end;

	errno = 0;
	*out = strtoul(s, &end, 10);
	return (errno || !*s || *end || *out > max) ? -EINVAL : 0;
}

static int parse_secs(const char *s, uint32_t *ms)
{
	char *end;
	double d = strtod(s, &end);

	/* Written so that NaN fails too; under a millisecond would be a timer of 0. */
	if (!*s || *end || !(d >= 0.001 && d <= 86400))
		return -EINVAL;
	*ms = (uint32_t)(d * 1000);
	return 0;
}

/* "1.2.3.4:443" or "[::1]:443" into an orig-dst entry. */
static int parse_origdst(const char *s, struct sluice_orig_dst *d)
{
	char host[64];
	const char *colon;
	unsigned long port;

	memset(d, 0, sizeof(*d));
	if (s[0] == '[') {
		const char *rb = strchr(s, ']');

		if (!rb || rb[1] != ':' || (size_t)(rb - s - 1) >= sizeof(host))
			return -EINVAL;
		memcpy(host, s + 1, (size_t)(rb - s - 1));
		host[rb - s - 1] = 0;
		colon = rb + 1;
		d->family = SLUICE_AF_INET6;
		if (inet_pton(AF_INET6, host, d->addr) != 1)
			return -EINVAL;
	} else {
		colon = strrchr(s, ':');
		if (!colon || (size_t)(colon - s) >= sizeof(host))
			return -EINVAL;
		memcpy(host, s, (size_t)(colon - s));
		host[colon - s] = 0;
		d->family = SLUICE_AF_INET;
		if (inet_pton(AF_INET, host, d->addr) != 1)
			return -EINVAL;
	}
	if (parse_ulong(colon + 1, 65535, &port) || !port)
		return -EINVAL;
	d->port = (uint16_t)port;
	d->proto = IPPROTO_TCP;
	memcpy(d->comm, "(fixed)", 8);
	return 0;
}

/*
 * A socket owned by SLUICE_LISTEN_UID, a uid no sandbox has: the kernel lets
 * a socket join a SO_REUSEPORT group only with the uid of its members, and a
 * uid 0 sandbox (no capabilities, but the broker's uid) would otherwise bind
 * the broker's port with SO_REUSEPORT and be handed a share of every
 * sandbox's connections. fsuid is per thread and only the main thread makes
 * these sockets.
 */
static int listen_socket(int family, int type, bool reuseport)
{
	uid_t prev = (uid_t)setfsuid(SLUICE_LISTEN_UID);
	bool switched = (uid_t)setfsuid(SLUICE_LISTEN_UID) == SLUICE_LISTEN_UID;
	int fd = socket(family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), e = errno;

	setfsuid(prev);
	if (fd < 0)
		return -e;
	if (!switched && reuseport) {
		/* Not root: a group under our own uid is open to any process of it. */
		pr_err("--workers needs sluiced to run as root: its SO_REUSEPORT listeners belong to uid %u "
		       "so that no sandbox can join them; run it as root or with --workers 1",
		       SLUICE_LISTEN_UID);
		close(fd);
		return -EPERM;
	}
	return fd;
}

static int bind_sock(int family, int type, const char *addr, uint16_t port, bool reuseport)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	int fd, one = 1;

	memset(&ss, 0, sizeof(ss));
	if (family == AF_INET) {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;

		s4->sin_family = AF_INET;
		s4->sin_port = htons(port);
		if (inet_pton(AF_INET, addr, &s4->sin_addr) != 1)
			return -EINVAL;
		sl = sizeof(*s4);
	} else {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;

		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(port);
		s6->sin6_addr = in6addr_loopback;
		sl = sizeof(*s6);
	}
	fd = listen_socket(family, type, reuseport);
	if (fd < 0)
		return fd;
	/* Listeners only (a restart on the port of one in TIME_WAIT). On UDP it
	 * would let any process bind the resolver's port too and take its queries. */
	if (type == SOCK_STREAM)
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (reuseport)
		setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
	if (family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (type == SOCK_DGRAM) {
		/* Every process of every sandbox asks this one socket: room for
		 * bursts (a build resolving hundreds of names at once). */
		int rcv = 1 << 20;

		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof(rcv));
	}
	if (bind(fd, (struct sockaddr *)&ss, sl) ||
	    (type == SOCK_STREAM && listen(fd, 4096))) {
		int e = -errno;

		close(fd);
		return e;
	}
	return fd;
}

static uint16_t sock_port(int fd)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);

	if (getsockname(fd, (struct sockaddr *)&ss, &sl))
		return 0;
	return ntohs(ss.ss_family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
					     : ((struct sockaddr_in6 *)&ss)->sin6_port);
}

/*
 * The policy's directory, pinned when sluiced starts: the file is opened
 * through it, and a reload first finds that same directory at the policy's
 * path, or is refused. A sandbox that can rename a directory on the path (the
 * project it works in, say) could otherwise put a directory of its own there,
 * with a policy binding the secrets to its hosts.
 */
static int pol_dirfd = -1;
static dev_t pol_dir_dev;
static ino_t pol_dir_ino;
static char pol_dir[4096], pol_base[256];

static int pol_pin(const char *file)
{
	char tmp[4096];
	struct stat st;

	snprintf(tmp, sizeof(tmp), "%s", file);
	snprintf(pol_dir, sizeof(pol_dir), "%s", dirname(tmp));
	snprintf(tmp, sizeof(tmp), "%s", file);
	snprintf(pol_base, sizeof(pol_base), "%s", basename(tmp));
	pol_dirfd = open(pol_dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (pol_dirfd < 0 || fstat(pol_dirfd, &st)) {
		int e = -errno;

		pr_err("%s: cannot open the policy's directory %s: %s; check the path", file, pol_dir,
		       strerror(-e));
		return e;
	}
	pol_dir_dev = st.st_dev;
	pol_dir_ino = st.st_ino;
	return 0;
}

static bool pol_dir_same(void)
{
	struct stat st;

	return !stat(pol_dir, &st) && st.st_dev == pol_dir_dev && st.st_ino == pol_dir_ino;
}

static int load_policy(const struct broker_cfg *cfg, bool initial)
{
	char err[1024];
	struct policy *p = NULL;
	int rc, fd;

	if (cfg->policy_file) {
		if (pol_dirfd < 0 && (rc = pol_pin(cfg->policy_file)))
			return rc;
		if (!pol_dir_same()) {
			pr_err("%s: the directory %s was renamed or replaced since sluiced started, so this "
			       "may not be the policy you wrote; keeping the policy in force (restart the "
			       "sandbox to use a policy in the new directory)", cfg->policy_file, pol_dir);
			return -ESTALE;
		}
		fd = openat(pol_dirfd, pol_base, O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			rc = -errno;
			snprintf(err, sizeof(err), "%.600s: cannot open the policy: %s; check the path and its permissions",
				 cfg->policy_file, strerror(-rc));
		} else {
			rc = policy_load_fd(fd, cfg->policy_file, POLICY_FMT_AUTO, &p, err, sizeof(err));
			close(fd);
		}
		if (!rc)
			rc = policy_resolve_secrets(p, err, sizeof(err));
		/* Relative secret files were read by path: the same directory still? */
		if (!rc && !pol_dir_same()) {
			rc = -ESTALE;
			snprintf(err, sizeof(err), "%.300s: the directory %.300s was renamed or replaced while "
				 "the policy was read; not using it", cfg->policy_file, pol_dir);
		}
		if (rc) {
			policy_unref(p);
			pr_err("%s%s", err, initial ? "" : " (keeping the policy in force)");
			return rc;
		}
	} else {
		p = policy_new_allow_hosts(cfg->allow, cfg->n_allow);
		if (!p) {
			pr_err("out of memory building the --allow policy");
			return -ENOMEM;
		}
	}
	broker_policy_set(p);
	if (!initial)
		pr_info("policy reloaded from %s", cfg->policy_file ? cfg->policy_file : "--allow");
	return 0;
}

static void sig_cb(struct ev_io *io, uint32_t events)
{
	struct broker *b = container_of(io, struct broker, sig);
	struct signalfd_siginfo si;

	while (read(io->fd, &si, sizeof(si)) == sizeof(si)) {
		if (si.ssi_signo == SIGHUP) {
			load_policy(b->cfg, false);
		} else {
			if (n_wk > 1)
				pr_info("signal %u: draining %u workers, then exiting", si.ssi_signo, n_wk);
			else
				pr_info("signal %u: draining %zu connection(s), then exiting", si.ssi_signo, b->n_conns);
			drain_all();
			broker_drain(b);
		}
	}
}

/*
 * The policy file is watched through its directory, not itself: editors and
 * config management replace files by rename, and a Kubernetes ConfigMap swaps
 * a "..data" symlink, neither of which an inotify watch on the old inode sees.
 * Only complete-file events count (close after write, rename into place), so a
 * half-written file is never loaded; a bad one is refused by load_policy()
 * and the policy in force stays.
 */
static struct ev_io pol_watch = { .fd = -1 };
static const struct broker_cfg *pol_watch_cfg;
static char pol_watch_name[256];

static void pol_watch_cb(struct ev_io *io, uint32_t events)
{
	char ev_buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
	bool reload = false;
	ssize_t n;

	while ((n = read(io->fd, ev_buf, sizeof(ev_buf))) > 0) {
		for (char *p = ev_buf; p < ev_buf + n;) {
			const struct inotify_event *e = (const struct inotify_event *)p;

			if (e->len && (!strcmp(e->name, pol_watch_name) || !strncmp(e->name, "..", 2)))
				reload = true;
			p += sizeof(*e) + e->len;
		}
	}
	if (reload) {
		pr_info("%s changed on disk", pol_watch_cfg->policy_file);
		load_policy(pol_watch_cfg, false);
	}
}

static void pol_watch_start(struct ev_loop *loop, const struct broker_cfg *cfg)
{
	char dir[64];
	int fd;

	if (!cfg->policy_file || pol_dirfd < 0)
		return;
	snprintf(pol_watch_name, sizeof(pol_watch_name), "%s", pol_base);
	/* Through the pinned directory, so the watch is on it, whatever the path names now. */
	snprintf(dir, sizeof(dir), "/proc/self/fd/%d", pol_dirfd);
	fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (fd < 0 || inotify_add_watch(fd, dir, IN_CLOSE_WRITE | IN_MOVED_TO) < 0) {
		pr_warn("Couldn't watch %s for changes (%s): reload it with SIGHUP",
			cfg->policy_file, strerror(errno));
		if (fd >= 0)
			close(fd);
		return;
	}
	pol_watch_cfg = cfg;
	pol_watch.fd = fd;
	pol_watch.cb = pol_watch_cb;
	if (ev_add(loop, &pol_watch, EPOLLIN)) {
		close(fd);
		pol_watch.fd = -1;
	}
}

static int open_audit(struct broker_cfg *cfg)
{
	char path[4096];
	const char *p = cfg->audit;
	int fd;

	if (p && !strcmp(p, "-"))
		return dup(STDOUT_FILENO);
	if (!p && cfg->sandbox) {
		snprintf(path, sizeof(path), "%s/%s", cfg->run_dir, cfg->sandbox);
		mkdir(path, 0755);
		snprintf(path, sizeof(path), "%s/%s/audit.jsonl", cfg->run_dir, cfg->sandbox);
		p = path;
	}
	if (!p)
		return dup(STDERR_FILENO);
	/* Not through a symlink: sluiced runs as root, and the directory may be one a
	 * sandbox can write (a symlink there would make root append to any file). */
	fd = open(p, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0640);
	if (fd < 0)
		pr_err("Couldn't open the audit log %s: %s; pass --audit FILE or --audit -", p, strerror(errno));
	return fd < 0 ? -errno : fd;
}

int main(int argc, char **argv)
{
	static struct broker_cfg cfg;
	static struct ca ca;
	/* Static, as cfg and ca: a start-up failure returns early, and what these
	 * hold stays reachable until exit instead of showing as leaked. */
	static struct certcache *cc;
	static struct resolver *res;
	static SSL_CTX *srv_ctx, *cli_ctx;
	struct broker *b0;
	char err[1024];
	int opt, rc, lis4, lis6, udp4, udp6, sfd, audit_fd;
	unsigned long v;
	sigset_t mask;
	uint16_t port = 0, dport;
	/* The parent-death signal sluice asked for: listen_socket()'s setfsuid
	 * clears it (a credential change), so it is set again once listening. */
	int pdeath = 0;
	pid_t parent = getppid();
	bool reuse, have6 = false;

	prctl(PR_GET_PDEATHSIG, &pdeath);

	log_set_prefix("sluiced");
	/* This process holds the real secret values and the CA key: no core
	 * file (it would land in the caller's directory, often the project the
	 * sandbox sees) and no ptrace or /proc/<pid>/mem reads without
	 * CAP_SYS_PTRACE. */
	{
		struct rlimit no_core = { 0, 0 };

		if (setrlimit(RLIMIT_CORE, &no_core) || prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)) {
			fprintf(stderr, "sluiced: cannot turn off core dumps: %s\n", strerror(errno));
			return 1;
		}
	}
	/* Each new TLS connection allocates and frees some 400 blocks (OpenSSL):
	 * with glibc's 128 KiB trim threshold the heap top shrinks and grows
	 * again, a brk() and fresh page faults every other connection. Keeping
	 * up to 1 MiB of free heap stops that, at a bounded cost in RSS. */
	mallopt(M_TRIM_THRESHOLD, 1 << 20);
	strcpy(cfg.listen_addr, "127.0.0.1");
	cfg.ready_fd = -1;
	cfg.ca_dir = "/var/lib/sluice/ca";
	cfg.run_dir = "/run/sluice";
	cfg.workers = 1;
	cfg.max_conns = 16384;
	cfg.handshake_ms = 10000;
	cfg.header_ms = 30000;
	cfg.idle_ms = 60000;
	cfg.io_ms = 120000;
	cfg.pool_idle_ms = 15000;
	cfg.max_header_bytes = 65536;
	cfg.max_headers = 128;
	cfg.pool_max = 256;
	cfg.drain_ms = 10000;

	while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (opt) {
		case OPT_LISTEN: {
			const char *colon = strrchr(optarg, ':');

			if (!colon || (size_t)(colon - optarg) >= sizeof(cfg.listen_addr) ||
			    parse_ulong(colon + 1, 65535, &v)) {
				fprintf(stderr, "sluiced: --listen %s: expected 127.0.0.1:PORT\n", optarg);
				return 2;
			}
			memcpy(cfg.listen_addr, optarg, (size_t)(colon - optarg));
			cfg.listen_addr[colon - optarg] = 0;
			cfg.listen_port = (uint16_t)v;
			break;
		}
		case OPT_READY:
			if (parse_ulong(optarg, 1 << 20, &v)) {
				fprintf(stderr, "sluiced: --ready-fd %s: expected a file descriptor number\n", optarg);
				return 2;
			}
			cfg.ready_fd = (int)v;
			break;
		case OPT_POLICY: cfg.policy_file = optarg; break;
		case OPT_ALLOW:
		case OPT_UPCA:
		case OPT_RESOLVE: {
			const char **arr = opt == OPT_ALLOW ? cfg.allow : opt == OPT_UPCA ? cfg.upstream_ca : cfg.resolve;
			size_t *n = opt == OPT_ALLOW ? &cfg.n_allow : opt == OPT_UPCA ? &cfg.n_upstream_ca : &cfg.n_resolve;

			if (*n >= BROKER_MAX_LIST) {
				fprintf(stderr, "sluiced: too many --%s options (max %d)\n",
					opts[opt - OPT_LISTEN].name, BROKER_MAX_LIST);
				return 2;
			}
			arr[(*n)++] = optarg;
			break;
		}
		case OPT_CADIR: cfg.ca_dir = optarg; break;
		case OPT_RUNDIR: cfg.run_dir = optarg; break;
		case OPT_AUDIT: cfg.audit = optarg; break;
		case OPT_PIN: cfg.pin_root = optarg; break;
		case OPT_SANDBOX: cfg.sandbox = optarg; break;
		case OPT_WORKERS:
			if (parse_ulong(optarg, 64, &v) || !v) {
				fprintf(stderr, "sluiced: --workers %s: expected 1..64\n", optarg);
				return 2;
			}
			cfg.workers = (unsigned)v;
			break;
		case OPT_LOGLEVEL:
			if (!strcmp(optarg, "error")) log_set_level(LOG_LVL_ERROR);
			else if (!strcmp(optarg, "warn") || !strcmp(optarg, "warning")) log_set_level(LOG_LVL_WARN);
			else if (!strcmp(optarg, "info")) log_set_level(LOG_LVL_INFO);
			else if (!strcmp(optarg, "debug")) log_set_level(LOG_LVL_DEBUG);
			else {
				fprintf(stderr, "sluiced: --log-level %s: expected error, warn, info or debug\n", optarg);
				return 2;
			}
			break;
		case OPT_ORIGFIXED:
			if (parse_origdst(optarg, &cfg.origdst_fixed)) {
				fprintf(stderr, "sluiced: --origdst-fixed %s: expected ADDR:PORT or [ADDR6]:PORT\n", optarg);
				return 2;
			}
			cfg.origdst_fixed_set = true;
			break;
		case OPT_MAXCONNS:
			if (parse_ulong(optarg, 1000000, &v) || !v) {
				fprintf(stderr, "sluiced: --max-conns %s: expected a positive number\n", optarg);
				return 2;
			}
			cfg.max_conns = (unsigned)v;
			break;
		case OPT_CGID: {
			char *end;

			errno = 0;
			cfg.sandbox_cgid = strtoull(optarg, &end, 10);
			if (errno || end == optarg || *end || !cfg.sandbox_cgid) {
				fprintf(stderr, "sluiced: --cgroup-id %s: expected a cgroup id (a positive number)\n",
					optarg);
				return 2;
			}
			break;
		}
		case OPT_POOLMAX:
			if (parse_ulong(optarg, 100000, &v)) {
				fprintf(stderr, "sluiced: --pool-max %s: expected a number from 0 to 100000\n", optarg);
				return 2;
			}
			cfg.pool_max = (unsigned)v;
			break;
		case OPT_HS_TO:
		case OPT_HDR_TO:
		case OPT_IDLE_TO:
		case OPT_IO_TO:
		case OPT_DRAIN_TO: {
			uint32_t *ms = opt == OPT_HS_TO ? &cfg.handshake_ms : opt == OPT_HDR_TO ? &cfg.header_ms
				     : opt == OPT_IDLE_TO ? &cfg.idle_ms : opt == OPT_IO_TO ? &cfg.io_ms
				     : &cfg.drain_ms;

			if (parse_secs(optarg, ms)) {
				fprintf(stderr, "sluiced: --%s %s: expected seconds (0.001 <= S <= 86400)\n",
					opts[opt - OPT_LISTEN].name, optarg);
				return 2;
			}
			break;
		}
		case OPT_MAXHDR:
			if (parse_ulong(optarg, 1 << 24, &v) || v < 1024) {
				fprintf(stderr, "sluiced: --max-header-bytes %s: expected 1024..16777216\n", optarg);
				return 2;
			}
			cfg.max_header_bytes = v;
			break;
		case OPT_HELP:
		case 'h':
			fputs(usage, stdout);
			return 0;
		default:
			fputs(usage, stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "sluiced: unexpected argument %s\n%s", argv[optind], usage);
		return 2;
	}
	if (cfg.policy_file && cfg.n_allow) {
		fprintf(stderr, "sluiced: give either --policy or --allow, not both\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	/* A file size limit on the audit log: write() fails (EFBIG), the lines go
	 * to stderr (audit_flush), the broker lives on. */
	signal(SIGXFSZ, SIG_IGN);
	/* Blocked before any thread starts, so only the signalfd ever sees them. */
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &mask, NULL);
	{
		/* Each connection holds up to two fds. */
		struct rlimit rl;

		if (!getrlimit(RLIMIT_NOFILE, &rl) && rl.rlim_cur < rl.rlim_max) {
			rl.rlim_cur = rl.rlim_max;
			setrlimit(RLIMIT_NOFILE, &rl);
		}
	}

	if (cfg.workers > 1 && cfg.listen_port) {
		/* SO_REUSEPORT would silently join a group someone else (a stale
		 * broker of the same uid) still listens in, and share connections
		 * with it: a plain bind proves the port free first. */
		int probe = bind_sock(AF_INET, SOCK_STREAM, cfg.listen_addr, cfg.listen_port, false);

		if (probe < 0) {
			pr_err("Couldn't listen on %s:%u: %s", cfg.listen_addr, cfg.listen_port, strerror(-probe));
			return 1;
		}
		close(probe);
	}

	if (load_policy(&cfg, true))
		return 1;
	rc = ca_load_or_create(&ca, cfg.ca_dir, err, sizeof(err));
	if (rc)
		return die(err);
	rc = ca_publish(&ca, cfg.run_dir, "/etc/ssl/certs/ca-certificates.crt", err, sizeof(err));
	if (rc)
		return die(err);
	cc = certcache_new(&ca, 1024, 7L * 24 * 3600);
	if (!cc)
		return die("out of memory");
	/* One server context for all workers: a session ticket issued by one
	 * resumes on any other. */
	srv_ctx = tls_server_ctx_new(cc, err, sizeof(err));
	if (!srv_ctx)
		return die(err);
	cli_ctx = tls_client_ctx_new(cfg.upstream_ca, cfg.n_upstream_ca, err, sizeof(err));
	if (!cli_ctx)
		return die(err);
	res = resolver_new(NULL, 2, err, sizeof(err));
	if (!res)
		return die(err);
	for (size_t i = 0; i < cfg.n_resolve; i++)
		if (resolver_add_override(res, cfg.resolve[i], err, sizeof(err)))
			return die(err);
	audit_fd = open_audit(&cfg);
	if (audit_fd < 0)
		return 1;

	n_wk = cfg.workers;
	wk = calloc(n_wk, sizeof(*wk));
	if (!wk)
		return die("out of memory for the workers");
	reuse = n_wk > 1;
	for (unsigned i = 0; i < n_wk; i++) {
		struct worker *w = &wk[i];
		struct broker *b = &w->b;

		w->idx = i;
		w->wake.fd = -1;
		w->cfg = cfg;
		w->cfg.max_conns = (cfg.max_conns + n_wk - 1) / n_wk;
		lis4 = bind_sock(AF_INET, SOCK_STREAM, cfg.listen_addr, i ? port : cfg.listen_port, reuse);
		if (lis4 < 0) {
			pr_err("Couldn't listen on %s:%u%s: %s", cfg.listen_addr, i ? port : cfg.listen_port,
			       i ? " (SO_REUSEPORT, for another worker)" : "", strerror(-lis4));
			return 1;
		}
		if (!i)
			port = sock_port(lis4);
		lis6 = -1;
		if (!i || have6) {
			/* As for IPv4 above: a plain bind first, so that the first
			 * SO_REUSEPORT listener joins no group someone else holds. */
			int probe = !i && reuse ? bind_sock(AF_INET6, SOCK_STREAM, "::1", port, false) : -1;

			if (probe >= 0)
				close(probe);
			lis6 = !i && reuse && probe < 0 ? probe
			     : bind_sock(AF_INET6, SOCK_STREAM, "::1", port, reuse);
			/* Held by another socket: the sandboxes' IPv6 connections would
			 * go to it. Without IPv6 on the host, nothing can hold it. */
			if (lis6 == -EADDRINUSE) {
				pr_err("Couldn't listen on [::1]:%u: another socket holds it, and the sandboxes' "
				       "IPv6 connections would reach it; pick another --listen port", port);
				return 1;
			}
			if (lis6 < 0 && !i)
				pr_warn("Couldn't listen on [::1]:%u: %s; IPv6 connections will fail",
					port, strerror(-lis6));
			else if (lis6 < 0) {
				pr_err("Couldn't listen on [::1]:%u for worker %u: %s", port, i, strerror(-lis6));
				return 1;
			}
			have6 = lis6 >= 0;
		}
		b->res = i ? resolver_clone(res, err, sizeof(err)) : res;
		if (!b->res)
			return die(err);
		rc = broker_init(b, &w->cfg, &ca, lis4, lis6);
		if (rc) {
			pr_err("Couldn't set up the event loop of worker %u: %s", i, strerror(-rc));
			return 1;
		}
		b->port = port;
		b->origdst_take = take_origdst;
		b->cc = cc;
		b->srv_ctx = srv_ctx;
		b->cli_ctx = cli_ctx;
		/* Shared O_APPEND fd: each worker writes whole lines in one write(). */
		audit_set_fd(b, audit_fd);
		if (n_wk > 1) {
			w->wake.fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
			w->wake.cb = wake_cb;
			if (w->wake.fd < 0 || ev_add(&b->loop, &w->wake, EPOLLIN | EPOLLET)) {
				pr_err("Couldn't set up worker %u's wake-up eventfd: %s", i, strerror(errno));
				return 1;
			}
		}
	}

	b0 = &wk[0].b;
	/* DNS on the same port number when free (UDP and TCP ports are separate). */
	udp4 = bind_sock(AF_INET, SOCK_DGRAM, cfg.listen_addr, port, false);
	if (udp4 < 0 && !cfg.listen_port)
		udp4 = bind_sock(AF_INET, SOCK_DGRAM, cfg.listen_addr, 0, false);
	if (udp4 < 0) {
		pr_err("Couldn't bind the DNS socket on %s: %s", cfg.listen_addr, strerror(-udp4));
		return 1;
	}
	dport = sock_port(udp4);
	udp6 = bind_sock(AF_INET6, SOCK_DGRAM, "::1", dport, false);
	/* [::1] on that port held by another socket: the sandboxes' IPv6 DNS
	 * would go to it. Another port, when the port was ours to pick. */
	for (int tries = 0; udp6 == -EADDRINUSE && !cfg.listen_port && tries < 16; tries++) {
		close(udp4);
		udp4 = bind_sock(AF_INET, SOCK_DGRAM, cfg.listen_addr, 0, false);
		if (udp4 < 0)
			break;
		dport = sock_port(udp4);
		udp6 = bind_sock(AF_INET6, SOCK_DGRAM, "::1", dport, false);
	}
	if (udp4 < 0) {
		pr_err("Couldn't bind the DNS socket on %s: %s", cfg.listen_addr, strerror(-udp4));
		return 1;
	}
	if (udp6 == -EADDRINUSE) {
		pr_err("Couldn't bind DNS on [::1]:%u: another socket holds it, and the sandboxes' IPv6 DNS "
		       "would reach it; pick another --listen port", dport);
		return 1;
	}
	if (udp6 < 0)
		pr_warn("Couldn't bind DNS on [::1]:%u: %s", dport, strerror(-udp6));
	for (unsigned i = 0; i < n_wk; i++)
		wk[i].b.dns_port = dport;
	b0->udp[0].fd = udp4;
	b0->udp[1].fd = udp6;
	b0->udp[0].cb = dns_udp_cb;
	b0->udp[1].cb = dns_udp6_cb;
	ev_add(&b0->loop, &b0->udp[0], EPOLLIN);
	if (udp6 >= 0)
		ev_add(&b0->loop, &b0->udp[1], EPOLLIN);

	sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	if (sfd < 0) {
		pr_err("signalfd: %s", strerror(errno));
		return 1;
	}
	b0->sig.fd = sfd;
	b0->sig.cb = sig_cb;
	ev_add(&b0->loop, &b0->sig, EPOLLIN | EPOLLET);
	pol_watch_start(&b0->loop, &cfg);

	for (unsigned i = 1; i < n_wk; i++) {
		char name[16];

		rc = pthread_create(&wk[i].th, NULL, worker_main, &wk[i]);
		if (rc) {
			/* Fail closed: no READY, the ones started drain and the broker exits. */
			pr_err("Couldn't start worker thread %u of %u: %s; lower --workers or raise the "
			       "thread limit (ulimit -u)", i, n_wk, strerror(rc));
			drain_all();
			for (unsigned k = 1; k < i; k++)
				pthread_join(wk[k].th, NULL);
			return 1;
		}
		snprintf(name, sizeof(name), "sluiced-w%u", (unsigned char)i); /* i < 64 */
		pthread_setname_np(wk[i].th, name);
	}

	if (cfg.origdst_fixed_set)
		pr_warn("--origdst-fixed is a test aid: every connection is treated as redirected to it");
	if (n_wk > 1)
		pr_info("listening on %s:%u and [::1]:%u with %u workers (SO_REUSEPORT), DNS on udp port %u",
			cfg.listen_addr, port, port, n_wk, dport);
	else
		pr_info("listening on %s:%u and [::1]:%u, DNS on udp port %u", cfg.listen_addr, port, port, dport);
	if (pdeath > 0 && !prctl(PR_SET_PDEATHSIG, pdeath) && getppid() != parent)
		kill(getpid(), pdeath); /* it died meanwhile */
	if (cfg.ready_fd >= 0) {
		char line[64];
		int n = snprintf(line, sizeof(line), "READY %u %u\n", port, dport);

		if (write(cfg.ready_fd, line, (size_t)n) != n)
			pr_warn("Couldn't write READY to fd %d: %s", cfg.ready_fd, strerror(errno));
		close(cfg.ready_fd);
	}

	while (!b0->loop.stop) {
		rc = ev_run_once(&b0->loop);
		if (rc < 0) {
			pr_err("worker 0: event loop failed: %s; stopping the broker", strerror(-rc));
			atomic_store(&exit_rc, 1);
			drain_all();
			break;
		}
	}
	worker_report(&wk[0]);
	broker_fini(b0);
	for (unsigned i = 1; i < n_wk; i++)
		pthread_join(wk[i].th, NULL);
	dns_seen_free(); /* one table for all workers: freed once they are gone */
	close(udp4);
	if (udp6 >= 0)
		close(udp6);
	for (unsigned i = 0; i < n_wk; i++) {
		if (wk[i].wake.fd >= 0)
			close(wk[i].wake.fd);
		resolver_free(wk[i].b.res);
	}
	free(wk);
	SSL_CTX_free(srv_ctx);
	SSL_CTX_free(cli_ctx);
	certcache_free(cc);
	ca_fini(&ca);
	broker_policy_set(NULL);
	close(audit_fd);
	rc = atomic_load(&exit_rc);
	if (rc)
		pr_err("exited after a worker failed");
	else
		pr_info("exited cleanly");
	return rc;
}
