// SPDX-License-Identifier: MIT
/* Starts sluiced outside the sandbox and waits for its "READY P Q" line. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "log.h"
#include "sluice.h"

int broker_parse_ready(const char *line, uint16_t *port, uint16_t *dns_port)
{
	unsigned long p, q;
	char *end;

	if (strncmp(line, "READY ", 6))
		return -EINVAL;
	errno = 0;
	p = strtoul(line + 6, &end, 10);
	if (errno || end == line + 6 || *end != ' ' || !p || p > 65535)
		return -EINVAL;
	line = end + 1;
	q = strtoul(line, &end, 10);
	if (errno || end == line || (*end != '\n' && *end) || !q || q > 65535)
		return -EINVAL;
	*port = (uint16_t)p;
	*dns_port = (uint16_t)q;
	return 0;
}

#define ADD(s) do { if (n + 1 >= (int)max) return -E2BIG; argv[n++] = (s); } while (0)

int broker_argv(const struct run_opts *o, const char *bin, uint16_t listen_port, int ready_fd,
		char *storage, size_t storage_len, const char **argv, size_t max)
{
	int n = 0, w;
	size_t i;

	w = snprintf(storage, storage_len, "127.0.0.1:%u%c%d", listen_port, 0, ready_fd);
	if (w < 0 || (size_t)w >= storage_len)
		return -E2BIG;
	ADD(bin);
	ADD("--listen");
	ADD(storage);
	ADD("--ready-fd");
	ADD(storage + strlen(storage) + 1);
	if (o->policy) { ADD("--policy"); ADD(o->policy); }
	for (i = 0; i < o->n_allow; i++) { ADD("--allow"); ADD(o->allow[i]); }
	for (i = 0; i < o->n_upstream_ca; i++) { ADD("--upstream-ca"); ADD(o->upstream_ca[i]); }
	for (i = 0; i < o->n_resolve; i++) { ADD("--resolve"); ADD(o->resolve[i]); }
	if (o->ca_dir) { ADD("--ca-dir"); ADD(o->ca_dir); }
	if (o->run_dir) { ADD("--run-dir"); ADD(o->run_dir); }
	if (o->audit) { ADD("--audit"); ADD(o->audit); }
	if (o->pin_root) { ADD("--pin-root"); ADD(o->pin_root); }
	if (o->name) { ADD("--sandbox"); ADD(o->name); }
	if (o->broker_workers) { ADD("--workers"); ADD(o->broker_workers); }
	if (o->sandbox_cgid[0]) { ADD("--cgroup-id"); ADD(o->sandbox_cgid); }
	argv[n] = NULL;
	return n;
}

int broker_log_path(const struct run_opts *o, char *buf, size_t len)
{
	const char *rd = o->run_dir ? o->run_dir : SLUICE_RUN_DIR;
	int n = snprintf(buf, len, "%s/%s/sluiced.log", rd, o->name ? o->name : "sluiced");

	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

/* Opens the broker's log (its directory made 0755 like the audit log's). */
static int broker_log_open(const struct run_opts *o, char *path, size_t len)
{
	char *slash;
	int fd;

	if (broker_log_path(o, path, len))
		return -ENAMETOOLONG;
	slash = strrchr(path, '/');
	*slash = 0;
	for (char *p = path + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = 0;
		mkdir(path, 0755);
		*p = '/';
	}
	mkdir(path, 0755);
	*slash = '/';
	fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return -errno;
	fchmod(fd, 0600);
	return fd;
}

/* The broker's last words, when it failed to start. */
static void broker_log_tail(const char *path, off_t from)
{
	char buf[4096];
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return;
	if (lseek(fd, 0, SEEK_END) - from > (off_t)sizeof(buf) - 1)
		from = lseek(fd, 0, SEEK_END) - (off_t)sizeof(buf) + 1;
	n = pread(fd, buf, sizeof(buf) - 1, from);
	close(fd);
	if (n > 0)
		fprintf(stderr, "%.*s", (int)n, buf);
}

/* sluiced next to this binary (build/ or the install dir), else on PATH. */
static const char *broker_bin(const struct run_opts *o, char *buf, size_t len)
{
	ssize_t n;
	char *slash;

	if (o->broker)
		return o->broker;
	n = readlink("/proc/self/exe", buf, len - 16);
	if (n > 0) {
		buf[n] = 0;
		slash = strrchr(buf, '/');
		if (slash) {
			strcpy(slash + 1, "sluiced");
			if (!access(buf, X_OK))
				return buf;
		}
	}
	return "sluiced";
}

static long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000;
}

int broker_start(const struct run_opts *o, uint16_t listen_port, int timeout_ms, struct broker *b)
{
	const char *argv[8 + 4 * SLUICE_MAX_ARGS * 2];
	char storage[64], bin[PATH_MAX], line[64], logp[PATH_MAX] = "";
	const char *path = broker_bin(o, bin, sizeof(bin));
	int pfd[2], err, status, logfd = -1;
	off_t log_from = 0;
	size_t got = 0;
	long deadline;
	pid_t pid, parent;

	/* fd 3 in the child is the ready pipe (set up below). */
	if (broker_argv(o, path, listen_port, 3, storage, sizeof(storage), argv,
			sizeof(argv) / sizeof(argv[0])) < 0)
		return -E2BIG;
	if (!o->verbose) {
		logfd = broker_log_open(o, logp, sizeof(logp));
		if (logfd < 0) {
			pr_err("Couldn't open the broker's log %s: %s (check --run-dir)", logp, strerror(-logfd));
			return logfd;
		}
		log_from = lseek(logfd, 0, SEEK_END);
	}
	if (pipe2(pfd, O_CLOEXEC)) {
		err = -errno;
		if (logfd >= 0)
			close(logfd);
		return err;
	}
	parent = getpid();
	pid = fork();
	if (pid < 0) {
		err = -errno;
		close(pfd[0]);
		close(pfd[1]);
		if (logfd >= 0)
			close(logfd);
		return err;
	}
	if (pid == 0) {
		/* Its own process group: a ^C at the terminal goes to sluice, which
		 * stops the broker last, after the sandboxed command. */
		sigset_t none;

		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		setpgid(0, 0);
		int nul = open("/dev/null", O_RDONLY);

		if (nul > 0) {
			dup2(nul, 0);
			close(nul);
		}
		/* Its messages must not land on the sandbox's terminal (stdout stays
		 * for --audit -). */
		if (logfd >= 0) {
			dup2(logfd, 2);
			if (!o->audit || strcmp(o->audit, "-"))
				dup2(logfd, 1);
		}
		if (dup2(pfd[1], 3) < 0)
			_exit(127);
		close_range(4, ~0U, 0);
		/* Its sluice killed (SIGKILL, the OOM killer): the sandbox went with
		 * it, so the broker drains and exits instead of living on orphaned. */
		if (prctl(PR_SET_PDEATHSIG, SIGTERM, 0, 0, 0) || getppid() != parent)
			_exit(127);
		execvp(path, (char *const *)argv);
		fprintf(stderr, "sluice: Couldn't start the broker %s: %s (build it with make, or "
			"pass --broker PATH)\n", path, strerror(errno));
		_exit(127);
	}
	close(pfd[1]);
	if (logfd >= 0)
		close(logfd);
	deadline = now_ms() + timeout_ms;
	while (got < sizeof(line) - 1 && !memchr(line, '\n', got)) {
		struct pollfd p = { .fd = pfd[0], .events = POLLIN };
		long left = deadline - now_ms();
		ssize_t r;

		if (left <= 0 || poll(&p, 1, (int)left) <= 0) {
			err = -ETIMEDOUT;
			pr_err("the broker %s did not report READY within %d ms; stopping it", path, timeout_ms);
			goto fail;
		}
		r = read(pfd[0], line + got, sizeof(line) - 1 - got);
		if (r <= 0) {
			err = -EPIPE;
			pr_err("the broker %s exited before it was ready (%s%s)", path,
			       logp[0] ? "its log follows; it is in " : "its messages are above", logp);
			goto fail;
		}
		got += r;
	}
	line[got] = 0;
	close(pfd[0]);
	b->pid = pid;
	err = broker_parse_ready(line, &b->port, &b->dns_port);
	if (err) {
		pr_err("the broker %s said '%.*s' instead of 'READY PORT DNSPORT'", path,
		       (int)strcspn(line, "\n"), line);
		broker_stop(b);
		return err;
	}
	return 0;
fail:
	close(pfd[0]);
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	if (logp[0])
		broker_log_tail(logp, log_from);
	return err;
}

void broker_stop(struct broker *b)
{
	int status, i;

	if (!b || b->pid <= 0)
		return;
	kill(b->pid, SIGTERM);
	for (i = 0; i < 200; i++) {
		if (waitpid(b->pid, &status, WNOHANG) != 0)
			goto done;
		usleep(10000);
	}
	kill(b->pid, SIGKILL);
	waitpid(b->pid, &status, 0);
done:
	b->pid = 0;
}
