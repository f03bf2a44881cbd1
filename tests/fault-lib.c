/* SPDX-License-Identifier: MIT */
/*
 * Fault injection at the library's edges: io_uring_setup refused by a
 * seccomp filter (EPERM, ENOMEM, ENOSYS, and EINVAL for every flag set),
 * which reactor_create() must report as that -errno and reactor_get() as
 * NULL, leaking nothing; fresh fiber stacks refused (the IOU_FAULT_STACKS
 * testing aid), which fiber_spawn() reports as -ENOMEM and recovers from
 * once stacks return to the pool; and iou_accept_each_with() telling its
 * refused callback about connections it had to close, for want of a stack
 * (-ENOMEM) and at the descriptor limit (-EMFILE), while it keeps serving.
 *
 * The same program is the scripts' way to make ring creation fail in an
 * example: "fault-lib --errno NAME -- COMMAND [ARG]..." installs the
 * filter (io_uring_setup fails with NAME: EPERM, ENOMEM, ENOSYS or EINVAL)
 * and executes COMMAND, which inherits it.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <netinet/in.h>

#include <ioucontext/ioucontext.h>

#include "harness.h"

#if defined(__x86_64__)
#define AUDIT_ARCH_HERE AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define AUDIT_ARCH_HERE AUDIT_ARCH_AARCH64
#endif

#ifndef __NR_io_uring_setup
#define __NR_io_uring_setup 425
#endif

/* ---- the seccomp filter ---------------------------------------------------- */

/* Make io_uring_setup fail with @err in this process and its children. */
static int refuse_ring_setup(int err)
{
#ifdef AUDIT_ARCH_HERE
	struct sock_filter code[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_HERE, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ((unsigned)err & SECCOMP_RET_DATA)),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { .len = sizeof(code) / sizeof(code[0]), .filter = code };

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
	    prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) < 0)
		return -errno;
	return 0;
#else
	(void)err;
	return -ENOTSUP;
#endif
}

static const struct {
	const char *name;
	int err;
} errnos[] = {
	{ "EPERM", EPERM },
	{ "ENOMEM", ENOMEM },
	{ "ENOSYS", ENOSYS },
	{ "EINVAL", EINVAL },
};

/* ---- ring creation refused ------------------------------------------------------ */

/* In a child: the filter, then reactor_create() and reactor_get(); its exit status. */
static int ring_child(int err)
{
	struct reactor *r = (struct reactor *)&r;
	int fds = test_count_fds(), ret;

	ret = refuse_ring_setup(err);
	if (ret < 0) {
		fprintf(stderr, "  cannot install the seccomp filter: %s\n", strerror(-ret));
		return TEST_SKIP;
	}
	ret = reactor_create(NULL, &r);
	if (ret != -err) {
		fprintf(stderr, "  reactor_create: %d (%s), not -%d\n", ret, iou_strerror(ret),
			err);
		return 1;
	}
	if (reactor_get() != NULL || reactor_current() != NULL) {
		fprintf(stderr, "  reactor_get() made a reactor without a ring\n");
		return 1;
	}
	/* The second try fails the same way: nothing half-made was kept. */
	if ((ret = reactor_create(NULL, &r)) != -err) {
		fprintf(stderr, "  second reactor_create: %d\n", ret);
		return 1;
	}
	if (test_count_fds() != fds) {
		fprintf(stderr, "  descriptors: %d after, %d before\n", test_count_fds(), fds);
		return 1;
	}
	return 0;
}

static int test_ring_setup_refused(void)
{
	int skipped = 0;

	for (size_t i = 0; i < sizeof(errnos) / sizeof(errnos[0]); i++) {
		int status;
		pid_t pid;

		fflush(NULL);
		pid = fork();
		ASSERT_GE(pid, 0);
		if (pid == 0)
			_exit(ring_child(errnos[i].err));
		ASSERT_EQ(waitpid(pid, &status, 0), pid);
		ASSERT_TRUE(WIFEXITED(status));
		if (WEXITSTATUS(status) == TEST_SKIP) {
			skipped++;
			continue;
		}
		ASSERT_EQ(WEXITSTATUS(status), 0);
		printf("# io_uring_setup refused with %s: reactor_create() returns -%s (%s)\n",
		       errnos[i].name, errnos[i].name, iou_strerror(-errnos[i].err));
	}
	return skipped ? TEST_SKIP : 0;
}

/* ---- fresh stacks refused ----------------------------------------------------------- */

/* Create a reactor whose fresh stacks beyond @n fail (IOU_FAULT_STACKS). */
static int faulty_reactor(unsigned n, struct reactor **r)
{
	struct reactor_options o;
	char v[16];
	int ret;

	snprintf(v, sizeof(v), "%u", n);
	setenv("IOU_FAULT_STACKS", v, 1);
	reactor_options_init(&o);
	o.fiber_pool = 0; /* finished stacks go cold: reused without a fresh one */
	ret = reactor_create(&o, r);
	unsetenv("IOU_FAULT_STACKS");
	return ret;
}

static void *idle_fiber(void *arg)
{
	(void)arg;
	fiber_yield(reactor_current());
	return NULL;
}

static int test_stack_refused(void)
{
	struct fiber *f[4];
	struct reactor *r;

	ASSERT_EQ(faulty_reactor(3, &r), 0);
	for (int i = 0; i < 3; i++)
		ASSERT_EQ(fiber_spawn(r, idle_fiber, NULL, &f[i]), 0);
	ASSERT_EQ(fiber_spawn(r, idle_fiber, NULL, &f[3]), -ENOMEM);
	for (int i = 0; i < 3; i++)
		ASSERT_EQ(fiber_join(f[i], NULL), 0);
	/* Their stacks are free again: spawning works without a fresh one. */
	ASSERT_EQ(fiber_spawn(r, idle_fiber, NULL, &f[0]), 0);
	ASSERT_EQ(fiber_join(f[0], NULL), 0);
	ASSERT_EQ(reactor_run(r), 0);
	ASSERT_EQ(reactor_destroy(r), 0);
	return 0;
}

/* ---- iou_accept_each_with(): refusals reported -------------------------------------- */

struct server {
	struct reactor *r;
	int lfd;
	struct sockaddr_in addr;
	int refused_err;     /* the last error the callback was given */
	unsigned refused;    /* connections it was told of */
	unsigned calls;	     /* times it was called */
	unsigned served;     /* handlers that echoed and closed */
	struct fiber *fiber; /* the accept loop */
	int ret;	     /* what iou_accept_each_with() returned */
};

static void on_refused(struct reactor *r, int err, unsigned n, void *arg)
{
	struct server *s = arg;

	FIBER_CHECK(r == s->r);
	s->refused_err = err;
	s->refused += n;
	s->calls++;
}

/* Echo one short message, then close. */
static void echo_once(struct reactor *r, int fd, void *arg)
{
	struct server *s = arg;
	char buf[64];
	ssize_t n = iou_recv(r, fd, buf, sizeof(buf), 0);

	if (n > 0 && iou_send(r, fd, buf, (size_t)n, 0) == n)
		s->served++;
	iou_close(r, fd);
}

static void *accept_loop(void *arg)
{
	struct server *s = arg;
	const struct fiber_options fo = { .stack_size = 64 * 1024, .name = "echo" };
	const struct iou_accept_options o = { .fiber = &fo, .refused = on_refused };

	s->ret = iou_accept_each_with(s->r, s->lfd, echo_once, s, &o);
	return NULL;
}

/* A listening socket for @s; server_start() runs its accept loop. */
static int server_listen(struct reactor *r, struct server *s)
{
	socklen_t len = sizeof(s->addr);

	memset(s, 0, sizeof(*s));
	s->r = r;
	s->addr.sin_family = AF_INET;
	s->addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s->lfd < 0 || bind(s->lfd, (struct sockaddr *)&s->addr, len) < 0 ||
	    listen(s->lfd, 64) < 0 || getsockname(s->lfd, (struct sockaddr *)&s->addr, &len) < 0)
		return -errno;
	return 0;
}

static int server_start(struct server *s)
{
	return fiber_spawn(s->r, accept_loop, s, &s->fiber);
}

/* Wait (a while at most) until @n handlers have finished their echo. */
static unsigned await_served(struct server *s, unsigned n)
{
	for (int i = 0; s->served < n && i < 1000 * test_slowdown(); i++)
		fiber_sleep(s->r, IOU_MSEC);
	return s->served;
}

static int server_stop(struct server *s)
{
	ASSERT_EQ(fiber_cancel(s->fiber), 0);
	ASSERT_EQ(fiber_join(s->fiber, NULL), 0);
	ASSERT_EQ(s->ret, -ECANCELED);
	ASSERT_EQ(close(s->lfd), 0);
	return 0;
}

/* A blocking client socket connected to @s (from the thread's own context). */
static int client(struct server *s)
{
	int fd = iou_socket(s->r, AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd >= 0 && iou_connect(s->r, fd, (struct sockaddr *)&s->addr, sizeof(s->addr)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Send a probe on @fd: 1 if echoed, 0 if the server closed it, -1 otherwise. */
static int probe(struct reactor *r, int fd)
{
	char buf[8];
	ssize_t n;

	fiber_set_deadline(r, iou_deadline_after(10 * IOU_SEC * test_slowdown()));
	n = iou_send(r, fd, "probe", 5, 0);
	if (n == 5)
		n = iou_recv(r, fd, buf, sizeof(buf), 0);
	fiber_set_deadline(r, IOU_DEADLINE_NEVER);
	if (n == 5 && !memcmp(buf, "probe", 5))
		return 1;
	return n == 0 || n == -ECONNRESET || n == -EPIPE ? 0 : -1;
}

static int test_accept_refused_enomem(void)
{
	int fds = test_count_fds(), c[3];
	struct reactor *r;
	struct server s;

	/* The accept loop's own fiber and one handler: the second connection has none. */
	ASSERT_EQ(faulty_reactor(2, &r), 0);
	ASSERT_EQ(server_listen(r, &s), 0);
	ASSERT_EQ(server_start(&s), 0);
	/* c[0]'s handler holds the last stack until its probe comes. */
	for (int i = 0; i < 2; i++)
		ASSERT_GE(c[i] = client(&s), 0);
	ASSERT_EQ(probe(r, c[1]), 0);
	ASSERT_EQ(s.refused_err, -ENOMEM);
	ASSERT_EQ(s.refused, 1);
	ASSERT_EQ(probe(r, c[0]), 1);
	/* c[0]'s handler has ended: its stack serves the next connection. */
	ASSERT_GE(c[2] = client(&s), 0);
	ASSERT_EQ(probe(r, c[2]), 1);
	ASSERT_EQ(await_served(&s, 2), 2);
	ASSERT_EQ(s.calls, 1);
	for (int i = 0; i < 3; i++)
		ASSERT_EQ(close(c[i]), 0);
	ASSERT_EQ(server_stop(&s), 0);
	ASSERT_EQ(reactor_run(r), 0);
	ASSERT_EQ(reactor_destroy(r), 0);
	ASSERT_EQ(test_count_fds(), fds);
	ASSERT_NO_FIBER_FAILURES();
	return 0;
}

/* The lowest RLIMIT_NOFILE under which exactly @room descriptor numbers are free. */
static int limit_leaving(int room)
{
	bool used[4096] = { false };
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;

	if (!d)
		return -1;
	while ((e = readdir(d))) {
		int fd = atoi(e->d_name);

		if (e->d_name[0] != '.' && fd != dirfd(d) && fd < 4096)
			used[fd] = true;
	}
	closedir(d);
	for (int fd = 0; fd < 4096; fd++)
		if (!used[fd] && --room == 0)
			return fd + 1;
	return -1;
}

static int test_accept_refused_emfile(void)
{
	int fds = test_count_fds(), c[4], late, limit;
	struct rlimit old, low;
	struct reactor *r;
	struct server s;

	if (RUNNING_ON_VALGRIND) {
		/* valgrind keeps its own soft limit, which io_uring does not see. */
		printf("# skipping the descriptor limit case under valgrind\n");
		return TEST_SKIP;
	}
	ASSERT_EQ(reactor_create(NULL, &r), 0);
	ASSERT_EQ(server_listen(r, &s), 0);
	/* Connected (in the backlog) before the limit and the accept loop. */
	for (int i = 0; i < 4; i++)
		ASSERT_GE(c[i] = client(&s), 0);
	/* Room for the loop's spare descriptor and one connection. */
	limit = limit_leaving(2);
	ASSERT_GT(limit, 0);
	ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &old), 0);
	low = old;
	low.rlim_cur = (rlim_t)limit;
	ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &low), 0);
	ASSERT_EQ(server_start(&s), 0);
	/* One is served (its handler waits for its probe), the others refused. */
	for (int i = 1; i < 4; i++)
		ASSERT_EQ(probe(r, c[i]), 0);
	ASSERT_EQ(probe(r, c[0]), 1);
	ASSERT_EQ(s.refused_err, -EMFILE);
	ASSERT_EQ(s.refused, 3);
	for (int i = 0; i < 4; i++)
		ASSERT_EQ(close(c[i]), 0);
	/* Descriptors are free again: a new client is served (after the pause). */
	ASSERT_GE(late = client(&s), 0);
	ASSERT_EQ(probe(r, late), 1);
	ASSERT_EQ(close(late), 0);
	ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &old), 0);
	ASSERT_EQ(await_served(&s, 2), 2);
	ASSERT_EQ(server_stop(&s), 0);
	ASSERT_EQ(reactor_run(r), 0);
	ASSERT_EQ(reactor_destroy(r), 0);
	ASSERT_EQ(test_count_fds(), fds);
	ASSERT_NO_FIBER_FAILURES();
	return 0;
}

/* ---- "--errno NAME -- COMMAND": run a program whose rings cannot be made ------------ */

static int exec_refused(int argc, char **argv)
{
	int err = 0, ret;

	if (argc < 5 || strcmp(argv[1], "--errno") || strcmp(argv[3], "--")) {
		fprintf(stderr, "usage: fault-lib --errno NAME -- COMMAND [ARG]...\n");
		return 2;
	}
	for (size_t i = 0; i < sizeof(errnos) / sizeof(errnos[0]); i++)
		if (!strcmp(argv[2], errnos[i].name))
			err = errnos[i].err;
	if (!err) {
		fprintf(stderr, "fault-lib: --errno '%s': EPERM, ENOMEM, ENOSYS or EINVAL\n",
			argv[2]);
		return 2;
	}
	ret = refuse_ring_setup(err);
	if (ret < 0) {
		fprintf(stderr, "fault-lib: cannot install the seccomp filter: %s\n",
			strerror(-ret));
		return TEST_SKIP;
	}
	execvp(argv[4], argv + 4);
	fprintf(stderr, "fault-lib: %s: %s\n", argv[4], strerror(errno));
	return 127;
}

static const struct test_case tests[] = {
	T(test_ring_setup_refused),
	T(test_stack_refused),
	T(test_accept_refused_enomem),
	T(test_accept_refused_emfile),
};

int main(int argc, char **argv)
{
	if (argc > 1 && !strcmp(argv[1], "--errno"))
		return exec_refused(argc, argv);
	return test_run(tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
}
