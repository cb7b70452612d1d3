// SPDX-License-Identifier: MIT
/*
 * Escape probes that need raw syscalls (compiled by the escape tests into
 * their scratch dir and run inside `sluice run`). Each prints one line,
 * "<name> <outcome> [detail]", so the test can assert on it:
 *
 *   escape_probe tfo ADDR PORT            TCP Fast Open: sendto(MSG_FASTOPEN) with data
 *   escape_probe tfo-connect ADDR PORT    TCP_FASTOPEN_CONNECT then connect + write
 *   escape_probe iouring ADDR PORT        io_uring_setup, then IORING_OP_CONNECT + SEND
 *   escape_probe bpf MAPID PROGID LINKID  bpf(): get fds of sluice's objects by id, load a
 *                                         cgroup connect program, create a map
 *   escape_probe x32                      socket(AF_VSOCK) through the x32 syscall ABI
 *   escape_probe clone3 CGDIR ADDR PORT   clone3(CLONE_INTO_CGROUP) into cgroup directory CGDIR
 *                                         (the host's root cgroup: no sluice program there), then
 *                                         the child connects to ADDR:PORT
 *
 * ADDR may be IPv4 or IPv6. "connected" lines carry what the peer sent first.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <linux/bpf.h>
#include <linux/sched.h>
#include <linux/io_uring.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef TCP_FASTOPEN_CONNECT
#define TCP_FASTOPEN_CONNECT 30
#endif

static const char *en(int e)
{
	switch (e) {
	case EPERM: return "EPERM";
	case EACCES: return "EACCES";
	case ENOSYS: return "ENOSYS";
	case ECONNREFUSED: return "ECONNREFUSED";
	case ECONNRESET: return "ECONNRESET";
	case ENETUNREACH: return "ENETUNREACH";
	case EINVAL: return "EINVAL";
	case EAFNOSUPPORT: return "EAFNOSUPPORT";
	case ETIMEDOUT: return "ETIMEDOUT";
	case EPIPE: return "EPIPE";
	case ENOENT: return "ENOENT";
	case EBADF: return "EBADF";
	default: return strerror(e);
	}
}

static socklen_t mkaddr(const char *a, const char *p, struct sockaddr_storage *ss)
{
	struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;

	memset(ss, 0, sizeof(*ss));
	if (inet_pton(AF_INET, a, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		s4->sin_port = htons((unsigned short)atoi(p));
		return sizeof(*s4);
	}
	if (inet_pton(AF_INET6, a, &s6->sin6_addr) == 1) {
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((unsigned short)atoi(p));
		return sizeof(*s6);
	}
	fprintf(stderr, "bad address %s\n", a);
	exit(2);
}

/* What the peer says first (the fake internet's tcpcount says "hello"), 3 s at most. */
static void peer_says(const char *name, int fd)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	char buf[128];
	ssize_t n = 0;

	if (poll(&pfd, 1, 3000) > 0)
		n = read(fd, buf, sizeof(buf) - 1);
	if (n < 0) {
		printf("%s connected read-error %s\n", name, en(errno));
		return;
	}
	buf[n] = 0;
	buf[strcspn(buf, "\r\n")] = 0;
	printf("%s connected data=[%s]\n", name, buf);
}

static int do_tfo(const char *a, const char *p, int sockopt)
{
	const char *name = sockopt ? "tfo-connect" : "tfo";
	struct sockaddr_storage ss;
	socklen_t sl = mkaddr(a, p, &ss);
	static const char msg[] = "TFO-DATA\n";
	int fd = socket(ss.ss_family, SOCK_STREAM, 0), one = 1;
	ssize_t n;

	if (fd < 0) {
		printf("%s socket-error %s\n", name, en(errno));
		return 0;
	}
	if (sockopt) {
		if (setsockopt(fd, IPPROTO_TCP, TCP_FASTOPEN_CONNECT, &one, sizeof(one)))
			printf("%s sockopt-error %s\n", name, en(errno));
		if (connect(fd, (struct sockaddr *)&ss, sl)) {
			printf("%s error %s\n", name, en(errno));
			return 0;
		}
		n = write(fd, msg, sizeof(msg) - 1);
	} else {
		n = sendto(fd, msg, sizeof(msg) - 1, MSG_FASTOPEN, (struct sockaddr *)&ss, sl);
	}
	if (n < 0) {
		printf("%s error %s\n", name, en(errno));
		return 0;
	}
	peer_says(name, fd);
	close(fd);
	return 0;
}

static int uring_setup(unsigned entries, struct io_uring_params *p)
{
	return (int)syscall(__NR_io_uring_setup, entries, p);
}

static int uring_enter(int fd, unsigned submit, unsigned wait)
{
	return (int)syscall(__NR_io_uring_enter, fd, submit, wait, IORING_ENTER_GETEVENTS, NULL, 0);
}

/* One SQE, submit, wait for one CQE; returns its res. Enough for a probe. */
static int uring_one(int rfd, struct io_uring_params *pr, void *sq, void *cq, struct io_uring_sqe *sqes,
		     const struct io_uring_sqe *in)
{
	unsigned *tail = (unsigned *)((char *)sq + pr->sq_off.tail);
	unsigned *mask = (unsigned *)((char *)sq + pr->sq_off.ring_mask);
	unsigned *arr = (unsigned *)((char *)sq + pr->sq_off.array);
	unsigned *chead = (unsigned *)((char *)cq + pr->cq_off.head);
	unsigned *ctail = (unsigned *)((char *)cq + pr->cq_off.tail);
	unsigned *cmask = (unsigned *)((char *)cq + pr->cq_off.ring_mask);
	struct io_uring_cqe *cqes = (struct io_uring_cqe *)((char *)cq + pr->cq_off.cqes);
	unsigned t = *tail, idx = t & *mask, h;
	int res;

	sqes[idx] = *in;
	arr[idx] = idx;
	__atomic_store_n(tail, t + 1, __ATOMIC_RELEASE);
	if (uring_enter(rfd, 1, 1) < 0)
		return -errno;
	h = __atomic_load_n(chead, __ATOMIC_ACQUIRE);
	if (h == __atomic_load_n(ctail, __ATOMIC_ACQUIRE))
		return -EAGAIN;
	res = cqes[h & *cmask].res;
	__atomic_store_n(chead, h + 1, __ATOMIC_RELEASE);
	return res;
}

static int do_iouring(const char *a, const char *p)
{
	struct io_uring_params pr;
	struct sockaddr_storage ss;
	socklen_t sl = mkaddr(a, p, &ss);
	struct io_uring_sqe sqe;
	static const char msg[] = "IOURING-DATA\n";
	void *sq, *cq;
	struct io_uring_sqe *sqes;
	int rfd, fd, res;

	memset(&pr, 0, sizeof(pr));
	rfd = uring_setup(4, &pr);
	if (rfd < 0) {
		printf("iouring setup-error %s\n", en(errno));
		return 0;
	}
	sq = mmap(NULL, pr.sq_off.array + pr.sq_entries * sizeof(unsigned), PROT_READ | PROT_WRITE,
		  MAP_SHARED | MAP_POPULATE, rfd, IORING_OFF_SQ_RING);
	cq = mmap(NULL, pr.cq_off.cqes + pr.cq_entries * sizeof(struct io_uring_cqe), PROT_READ | PROT_WRITE,
		  MAP_SHARED | MAP_POPULATE, rfd, IORING_OFF_CQ_RING);
	sqes = mmap(NULL, pr.sq_entries * sizeof(struct io_uring_sqe), PROT_READ | PROT_WRITE,
		    MAP_SHARED | MAP_POPULATE, rfd, IORING_OFF_SQES);
	if (sq == MAP_FAILED || cq == MAP_FAILED || sqes == MAP_FAILED) {
		printf("iouring mmap-error %s\n", en(errno));
		return 0;
	}
	/* The socket itself through io_uring too (IORING_OP_SOCKET, 5.19+): no socket() syscall. */
	memset(&sqe, 0, sizeof(sqe));
	sqe.opcode = IORING_OP_SOCKET;
	sqe.fd = ss.ss_family;
	sqe.off = SOCK_STREAM;
	res = uring_one(rfd, &pr, sq, cq, sqes, &sqe);
	if (res < 0) {
		printf("iouring op-socket-error %s\n", en(-res));
		fd = socket(ss.ss_family, SOCK_STREAM, 0);
		if (fd < 0) {
			printf("iouring socket-error %s\n", en(errno));
			return 0;
		}
	} else {
		fd = res;
	}
	memset(&sqe, 0, sizeof(sqe));
	sqe.opcode = IORING_OP_CONNECT;
	sqe.fd = fd;
	sqe.addr = (unsigned long)&ss;
	sqe.off = sl;
	res = uring_one(rfd, &pr, sq, cq, sqes, &sqe);
	if (res < 0) {
		printf("iouring error %s\n", en(-res));
		return 0;
	}
	memset(&sqe, 0, sizeof(sqe));
	sqe.opcode = IORING_OP_SEND;
	sqe.fd = fd;
	sqe.addr = (unsigned long)msg;
	sqe.len = sizeof(msg) - 1;
	res = uring_one(rfd, &pr, sq, cq, sqes, &sqe);
	if (res < 0)
		printf("iouring send-error %s\n", en(-res));
	peer_says("iouring", fd);
	return 0;
}

static long sys_bpf(int cmd, union bpf_attr *attr)
{
	return syscall(__NR_bpf, cmd, attr, sizeof(*attr));
}

static int do_bpf(unsigned map_id, unsigned prog_id, unsigned link_id)
{
	/* r0 = 1 (allow); exit */
	struct bpf_insn insns[] = {
		{ .code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = 0, .imm = 1 },
		{ .code = BPF_JMP | BPF_EXIT },
	};
	union bpf_attr at;
	long r;

	memset(&at, 0, sizeof(at));
	at.map_id = map_id;
	r = sys_bpf(BPF_MAP_GET_FD_BY_ID, &at);
	printf("bpf map-by-id %s\n", r < 0 ? en(errno) : "GOT-FD");
	memset(&at, 0, sizeof(at));
	at.prog_id = prog_id;
	r = sys_bpf(BPF_PROG_GET_FD_BY_ID, &at);
	printf("bpf prog-by-id %s\n", r < 0 ? en(errno) : "GOT-FD");
	memset(&at, 0, sizeof(at));
	at.link_id = link_id;
	r = sys_bpf(BPF_LINK_GET_FD_BY_ID, &at);
	printf("bpf link-by-id %s\n", r < 0 ? en(errno) : "GOT-FD");
	memset(&at, 0, sizeof(at));
	at.prog_type = BPF_PROG_TYPE_CGROUP_SOCK_ADDR;
	at.expected_attach_type = BPF_CGROUP_INET4_CONNECT;
	at.insns = (unsigned long)insns;
	at.insn_cnt = 2;
	at.license = (unsigned long)"GPL";
	r = sys_bpf(BPF_PROG_LOAD, &at);
	printf("bpf prog-load-cgroup %s\n", r < 0 ? en(errno) : "LOADED");
	memset(&at, 0, sizeof(at));
	at.map_type = BPF_MAP_TYPE_ARRAY;
	at.key_size = 4;
	at.value_size = 4;
	at.max_entries = 1;
	r = sys_bpf(BPF_MAP_CREATE, &at);
	printf("bpf map-create %s\n", r < 0 ? en(errno) : "CREATED");
	memset(&at, 0, sizeof(at));
	at.pathname = (unsigned long)"/sys/fs/bpf/sluice/sluice_sandboxes";
	r = sys_bpf(BPF_OBJ_GET, &at);
	printf("bpf obj-get %s\n", r < 0 ? en(errno) : "GOT-FD");
	return 0;
}

static int do_x32(void)
{
	/* x32 syscall numbers carry bit 30; a seccomp filter matching only
	 * __NR_socket would miss them (kernels with CONFIG_X86_X32_ABI).
	 * AF_VSOCK needs no capability, so only the filter can stop it. */
#if defined(__x86_64__)
	long r = syscall(0x40000000L | 41, 40 /* AF_VSOCK */, SOCK_STREAM, 0);

	printf("x32 %s\n", r < 0 ? en(errno) : "CREATED");
#else
	printf("x32 ENOSYS not-x86_64\n");
#endif
	return 0;
}

/* A uid-0 sandbox owns the host's cgroup.procs files; a read-only mount of
 * cgroupfs does not stop CLONE_INTO_CGROUP (it checks the superblock), nor
 * does a cgroup namespace without nsdelegate. sluice's seccomp filter
 * answers clone3 with ENOSYS (libc falls back to clone, which has no such flag). */
static int do_clone3(const char *cgdir, const char *a, const char *p)
{
	struct clone_args ca = { .flags = CLONE_INTO_CGROUP, .exit_signal = SIGCHLD };
	struct sockaddr_storage ss;
	socklen_t sl = mkaddr(a, p, &ss);
	int cfd = open(cgdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), status;
	long pid;

	if (cfd < 0) {
		printf("clone3 open-error %s\n", en(errno));
		return 0;
	}
	ca.cgroup = (unsigned long long)cfd;
	fflush(stdout);
	pid = syscall(__NR_clone3, &ca, sizeof(ca));
	if (pid < 0) {
		printf("clone3 error %s\n", en(errno));
		return 0;
	}
	if (pid == 0) {
		int fd = socket(ss.ss_family, SOCK_STREAM, 0);

		if (fd < 0 || connect(fd, (struct sockaddr *)&ss, sl))
			printf("clone3 moved connect-error %s\n", en(errno));
		else
			peer_says("clone3 moved", fd);
		_exit(0);
	}
	waitpid((pid_t)pid, &status, 0);
	return 0;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc == 4 && !strcmp(argv[1], "tfo"))
		return do_tfo(argv[2], argv[3], 0);
	if (argc == 4 && !strcmp(argv[1], "tfo-connect"))
		return do_tfo(argv[2], argv[3], 1);
	if (argc == 4 && !strcmp(argv[1], "iouring"))
		return do_iouring(argv[2], argv[3]);
	if (argc == 5 && !strcmp(argv[1], "bpf"))
		return do_bpf((unsigned)atoi(argv[2]), (unsigned)atoi(argv[3]), (unsigned)atoi(argv[4]));
	if (argc == 2 && !strcmp(argv[1], "x32"))
		return do_x32();
	if (argc == 5 && !strcmp(argv[1], "clone3"))
		return do_clone3(argv[2], argv[3], argv[4]);
	fprintf(stderr, "usage: escape_probe tfo|tfo-connect|iouring ADDR PORT | bpf MAPID PROGID LINKID | x32 | clone3 CGDIR ADDR PORT\n");
	return 2;
}
