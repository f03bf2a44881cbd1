/* SPDX-License-Identifier: MIT */
/*
 * Stack tests: a fiber that overflows its stack kills the process with
 * SIGSEGV and a message naming the fiber; an ordinary crash in a fiber is
 * not mistaken for an overflow; stacks are carved from few mappings; and a
 * fiber may use (nearly) all of the stack size it asked for.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <ioucontext/ioucontext.h>

#include "harness.h"

static volatile int sink;

static int recurse(int depth)
{
	volatile char pad[512];

	pad[0] = (char)depth;
	sink = pad[0];
	if (sink >= 0) /* always: hides the endless recursion from the compiler */
		return recurse(depth + 1) + pad[0];
	return 0;
}

static void *overflow(void *arg)
{
	(void)arg;
	return (void *)(intptr_t)recurse(0);
}

static void *null_deref(void *arg)
{
	volatile int *p = arg;

	return (void *)(intptr_t)*p;
}

/* Run @fn in a fiber of a child; return its wait status and stderr text. */
static int crash_child(fiber_fn *fn, const char *name, char *err, size_t errlen)
{
	int pipefd[2], status;
	ssize_t n, got = 0;
	pid_t pid;

	if (pipe(pipefd))
		return -1;
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		struct reactor *r = reactor_get();
		struct fiber_options o = { .stack_size = 32 * 1024, .name = name };

		dup2(pipefd[1], 2);
		close(pipefd[0]);
		fiber_spawn_with(r, &o, fn, NULL, NULL);
		reactor_run(r);
		_exit(0);
	}
	close(pipefd[1]);
	while ((n = read(pipefd[0], err + got, errlen - 1 - (size_t)got)) > 0)
		got += n;
	err[got] = '\0';
	close(pipefd[0]);
	waitpid(pid, &status, 0);
	return status;
}

static int test_overflow_names_the_fiber(void)
{
	char err[4096];
	int status;

	if (RUNNING_ON_VALGRIND)
		return TEST_SKIP; /* valgrind reports the overflow itself */
	status = crash_child(overflow, "deep-thinker", err, sizeof(err));
	ASSERT_TRUE(WIFSIGNALED(status));
	ASSERT_EQ(WTERMSIG(status), SIGSEGV);
	if (!strstr(err, "stack overflow in fiber") || !strstr(err, "\"deep-thinker\""))
		TEST_FAIL_AT("unexpected stderr: %s", err);
	return 0;
}

static int test_other_crash_is_not_an_overflow(void)
{
	char err[4096];
	int status;

	if (RUNNING_ON_VALGRIND || IOU_TEST_ASAN)
		return TEST_SKIP; /* the tools report the NULL access themselves */
	status = crash_child(null_deref, "careless", err, sizeof(err));
	ASSERT_TRUE(WIFSIGNALED(status));
	ASSERT_EQ(WTERMSIG(status), SIGSEGV);
	if (strstr(err, "stack overflow"))
		TEST_FAIL_AT("misreported: %s", err);
	return 0;
}

static void *nap(void *arg)
{
	(void)arg;
	fiber_sleep(reactor_get(), 20 * IOU_MSEC);
	return NULL;
}

static int test_many_live_stacks_few_mappings(void)
{
	struct reactor_options o;
	struct reactor *r;
	int n = test_max_fibers(RUNNING_ON_VALGRIND ? 2000 : 20000), maps;

	ASSERT_EQ(reactor_destroy(reactor_get()), 0);
	reactor_options_init(&o);
	o.stack_size = 64 * 1024;
	ASSERT_EQ(reactor_create(&o, &r), 0);
	maps = test_count_maps();
	for (int i = 0; i < n; i++)
		ASSERT_EQ(fiber_spawn(r, nap, NULL, NULL), 0);
	/*
	 * 20,000 guarded stacks; an mprotect guard each adds two mappings.
	 * (Under TSan every fiber also gets TSan's own mappings: not counted.)
	 */
	if (getenv("IOU_GUARD") && !strcmp(getenv("IOU_GUARD"), "mprotect"))
		ASSERT_GE(test_count_maps() - maps, n);
	else if (!IOU_TEST_TSAN)
		ASSERT_LT(test_count_maps() - maps, 64);
	ASSERT_EQ(reactor_run(r), 0);
	ASSERT_EQ(reactor_destroy(r), 0);
	return 0;
}

TEST_MAIN(T(test_overflow_names_the_fiber), T(test_other_crash_is_not_an_overflow),
	  T(test_many_live_stacks_few_mappings))
