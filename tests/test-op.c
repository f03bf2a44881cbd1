/* SPDX-License-Identifier: MIT */
/*
 * The operation machinery: with a ring of 8 entries, 10,000 concurrent
 * operations from 1,000 fibers all complete with correct results and are
 * served in the order they were asked for (FIFO); far more completions than
 * the CQ holds arriving between two reaps are all delivered (the kernel
 * keeps the overflow, the reaper drains it); a reactor with nothing to do
 * sleeps in the kernel instead of spinning; and operations issued while
 * fibers run are submitted in batches (io_uring_enter counted with strace).
 * With opcodes hidden from the probe (IOU_DISABLE_OPCODES), calls fall back
 * to their system calls or fail with -EOPNOTSUPP, never crash.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <threads.h>
#include <unistd.h>

#include <ioucontext/ioucontext.h>

#include "ops-harness.h"

#define FIBERS 1000
#define ROUNDS 10

static struct reactor *small_reactor(unsigned entries)
{
	struct reactor_options o;
	struct reactor *r;

	reactor_options_init(&o);
	o.ring_entries = entries;
	return reactor_create(&o, &r) == 0 ? r : NULL;
}

/* ---- FIFO wait-queue -------------------------------------------------------- */

static unsigned next_ticket, next_served;
static unsigned unfair;

static void *nop_fiber(void *arg)
{
	struct reactor *r = reactor_get();

	(void)arg;
	for (int i = 0; i < ROUNDS; i++) {
		unsigned ticket = next_ticket++;

		FIBER_CHECK(iou_nop(r) == 0);
		/* Completions come back in the order the operations were asked for. */
		if (ticket != next_served)
			unfair++;
		next_served++;
	}
	return NULL;
}

static int fifo_body(void)
{
	struct reactor *r = small_reactor(8);

	ASSERT_TRUE(r != NULL);
	ASSERT_EQ(reactor_ring_entries(r), 8);
	next_ticket = next_served = unfair = 0;
	for (int i = 0; i < FIBERS; i++)
		ASSERT_EQ(fiber_spawn(r, nop_fiber, NULL, NULL), 0);
	ASSERT_EQ(reactor_run(r), 0);
	ASSERT_EQ(next_served, FIBERS * ROUNDS);
	ASSERT_EQ(unfair, 0);
	ASSERT_EQ(reactor_destroy(r), 0);
	ASSERT_NO_FIBER_FAILURES();
	return 0;
}

static int test_wait_queue_is_fifo(void)
{
	return test_in_thread(fifo_body);
}

/* Each fiber reads its own records from a file; every byte is checked. */
static int data_fd;
static unsigned bad_reads;

static uint64_t record(unsigned fiber, unsigned round)
{
	return (uint64_t)fiber * 1000003u + round * 7919u + 1;
}

static void *pread_fiber(void *arg)
{
	struct reactor *r = reactor_get();
	unsigned me = (unsigned)(uintptr_t)arg;

	for (unsigned k = 0; k < ROUNDS; k++) {
		uint64_t v = 0;
		int64_t off = (int64_t)((me * ROUNDS + k) * sizeof(v));

		if (iou_pread(r, data_fd, &v, sizeof(v), off) != sizeof(v) || v != record(me, k))
			bad_reads++;
	}
	return NULL;
}

static int results_body(void)
{
	struct reactor *r = small_reactor(8);
	char path[] = "/tmp/iou-test-op.XXXXXX";
	uint64_t *data;

	ASSERT_TRUE(r != NULL);
	data_fd = mkstemp(path);
	ASSERT_GE(data_fd, 0);
	unlink(path);
	data = malloc(FIBERS * ROUNDS * sizeof(*data));
	ASSERT_TRUE(data != NULL);
	for (unsigned i = 0; i < FIBERS; i++)
		for (unsigned k = 0; k < ROUNDS; k++)
			data[i * ROUNDS + k] = record(i, k);
	ASSERT_EQ(iou_write_all(r, data_fd, data, FIBERS * ROUNDS * sizeof(*data), NULL),
		  (ssize_t)(FIBERS * ROUNDS * sizeof(*data)));
	free(data);
	bad_reads = 0;
	for (unsigned i = 0; i < FIBERS; i++)
		ASSERT_EQ(fiber_spawn(r, pread_fiber, (void *)(uintptr_t)i, NULL), 0);
	ASSERT_EQ(reactor_run(r), 0);
	ASSERT_EQ(bad_reads, 0);
	close(data_fd);
	ASSERT_EQ(reactor_destroy(r), 0);
	return 0;
}

static int test_small_ring_correct_results(void)
{
	return test_in_thread(results_body);
}

/* ---- CQ overflow ------------------------------------------------------------- */

static int efd;
static unsigned polled;

static void *poll_fiber(void *arg)
{
	(void)arg;
	if (iou_poll(reactor_get(), efd, POLLIN) & POLLIN)
		polled++;
	return NULL;
}

static int overflow_body(void)
{
	/* 64,000 completions into a CQ of 16; fewer under instrumentation. */
	unsigned n = (unsigned)test_max_fibers(RUNNING_ON_VALGRIND ? 2000 : IOU_TEST_ASAN ? 16000 : 64000);
	struct fiber_options fo = { .stack_size = 16 * 1024 };
	struct reactor *r = small_reactor(8);

	ASSERT_TRUE(r != NULL);
	efd = eventfd(0, EFD_CLOEXEC);
	ASSERT_GE(efd, 0);
	polled = 0;
	for (unsigned i = 0; i < n; i++)
		ASSERT_EQ(fiber_spawn_with(r, &fo, poll_fiber, NULL, NULL), 0);
	/* Every fiber runs once and parks in its poll; the driver arms them all. */
	ASSERT_EQ(fiber_yield(r), 0);
	ASSERT_EQ(polled, 0);
	{
		uint64_t one = 1;

		/* One event completes every poll at once: n CQEs for a CQ of 16. */
		ASSERT_EQ(write(efd, &one, sizeof(one)), (ssize_t)sizeof(one));
	}
	ASSERT_EQ(reactor_run(r), 0);
	ASSERT_EQ(polled, n);
	close(efd);
	ASSERT_EQ(reactor_destroy(r), 0);
	return 0;
}

static int test_cq_overflow_loses_nothing(void)
{
	return test_in_thread(overflow_body);
}

/* ---- idle means blocked in the kernel --------------------------------------- */

static int idle_pipe[2];

static void *idle_reader(void *arg)
{
	char c;

	(void)arg;
	FIBER_CHECK(iou_read(reactor_get(), idle_pipe[0], &c, 1) == 1);
	return NULL;
}

static void *late_writer(void *arg)
{
	struct reactor *r = reactor_get();

	(void)arg;
	FIBER_CHECK(fiber_sleep(r, 300 * IOU_MSEC) == 0);
	FIBER_CHECK(iou_write(r, idle_pipe[1], "x", 1) == 1);
	return NULL;
}

static int64_t cpu_ns(void)
{
	struct rusage ru;

	getrusage(RUSAGE_THREAD, &ru);
	return (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * IOU_SEC +
	       (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * IOU_USEC;
}

static int test_idle_reactor_does_not_spin(void)
{
	struct reactor *r = reactor_get();
	int64_t wall = iou_now(), cpu = cpu_ns();

	ASSERT_EQ(pipe2(idle_pipe, O_CLOEXEC), 0);
	for (int i = 0; i < 100; i++)
		ASSERT_EQ(fiber_spawn(r, idle_reader, NULL, NULL), 0);
	for (int i = 0; i < 100; i++)
		ASSERT_EQ(fiber_spawn(r, late_writer, NULL, NULL), 0);
	ASSERT_EQ(reactor_run(r), 0);
	wall = iou_now() - wall;
	cpu = cpu_ns() - cpu;
	printf("# 300 ms of waiting: %.1f ms CPU\n", (double)cpu / IOU_MSEC);
	ASSERT_GE(wall, 300 * IOU_MSEC);
	/* A spinning reactor would burn the whole 300 ms. */
	ASSERT_LT(cpu, wall / 3);
	close(idle_pipe[0]);
	close(idle_pipe[1]);
	ASSERT_NO_FIBER_FAILURES();
	return 0;
}

/* ---- batching ------------------------------------------------------------------ */

#define BATCH_FIBERS 200

static void *one_nop(void *arg)
{
	(void)arg;
	FIBER_CHECK(iou_nop(reactor_get()) == 0);
	return NULL;
}

/* The workload strace watches: BATCH_FIBERS fibers, one nop each. */
static int test_batch_workload(void)
{
	struct reactor *r = reactor_get();

	for (int i = 0; i < BATCH_FIBERS; i++)
		ASSERT_EQ(fiber_spawn(r, one_nop, NULL, NULL), 0);
	ASSERT_EQ(reactor_run(r), 0);
	ASSERT_NO_FIBER_FAILURES();
	return 0;
}

static int test_submissions_are_batched(void)
{
	char out[] = "/tmp/iou-test-strace.XXXXXX";
	char cmd[512], line[256];
	int fd, status, calls = -1;
	FILE *fp;

	if (RUNNING_ON_VALGRIND || system("command -v strace >/dev/null 2>&1") != 0) {
		printf("# strace unavailable (or under valgrind): skipped\n");
		return TEST_SKIP;
	}
	fd = mkstemp(out);
	ASSERT_GE(fd, 0);
	close(fd);
	snprintf(cmd, sizeof(cmd),
		 /* LeakSanitizer cannot run under ptrace. */
		 "ASAN_OPTIONS=detect_leaks=0 strace -f -qq -c -e trace=io_uring_enter -o %s "
		 "/proc/%d/exe test_batch_workload "
		 ">/dev/null",
		 out, (int)getpid());
	status = system(cmd);
	ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	fp = fopen(out, "r");
	ASSERT_TRUE(fp != NULL);
	while (fgets(line, sizeof(line), fp)) {
		double pct, secs;
		int usecs, n;

		if (sscanf(line, "%lf %lf %d %d", &pct, &secs, &usecs, &n) == 4 &&
		    strstr(line, "io_uring_enter"))
			calls = n;
	}
	fclose(fp);
	unlink(out);
	printf("# %d nops from %d fibers: %d io_uring_enter calls\n", BATCH_FIBERS, BATCH_FIBERS,
	       calls);
	ASSERT_GT(calls, 0);
	/* One submission per batch, not one per operation. */
	ASSERT_LE(calls, 10);
	return 0;
}

/* ---- kernels without an opcode ----------------------------------------------- */

static int fallback_body(void)
{
	struct reactor *r;
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct statx st;
	int fds[2], s, fd;
	char c;

	/* openat 18, read 22, socket 45, ftruncate 55, bind 56, listen 57, pipe 62 */
	setenv("IOU_DISABLE_OPCODES", "18,22,45,55,56,57,62", 1);
	ASSERT_EQ(reactor_create(NULL, &r), 0);
	unsetenv("IOU_DISABLE_OPCODES");
	ASSERT_TRUE(!reactor_op_supported(r, 22));
	ASSERT_TRUE(reactor_op_supported(r, 23)); /* write */
	/* No fallback for a read: a clear error, no crash. */
	ASSERT_EQ(pipe2(fds, O_CLOEXEC), 0);
	ASSERT_EQ(iou_read(r, fds[0], &c, 1), -EOPNOTSUPP);
	close(fds[0]);
	close(fds[1]);
	/* The others fall back to their system calls. */
	ASSERT_EQ(iou_pipe(r, fds, O_CLOEXEC), 0);
	ASSERT_EQ(iou_write(r, fds[1], "p", 1), 1);
	ASSERT_EQ(iou_close(r, fds[0]), 0);
	ASSERT_EQ(iou_close(r, fds[1]), 0);
	s = iou_socket(r, AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ASSERT_GE(s, 0);
	ASSERT_EQ(iou_bind(r, s, (struct sockaddr *)&a, sizeof(a)), 0);
	ASSERT_EQ(iou_listen(r, s, 8), 0);
	ASSERT_EQ(iou_close(r, s), 0);
	{
		char path[] = "/tmp/iou-test-fallback.XXXXXX";

		fd = mkstemp(path);
		ASSERT_GE(fd, 0);
		close(fd);
		fd = iou_open(r, path, O_RDWR | O_CLOEXEC, 0);
		ASSERT_GE(fd, 0);
		unlink(path);
	}
	ASSERT_EQ(iou_ftruncate(r, fd, 12345), 0);
	ASSERT_EQ(iou_statx(r, fd, "", AT_EMPTY_PATH, STATX_SIZE, &st), 0);
	ASSERT_EQ(st.stx_size, 12345);
	ASSERT_EQ(iou_close(r, fd), 0);
	ASSERT_EQ(reactor_destroy(r), 0);
	return 0;
}

static int test_missing_opcodes_fall_back_or_fail_cleanly(void)
{
	return test_in_thread(fallback_body);
}

TEST_MAIN(T(test_wait_queue_is_fifo), T(test_small_ring_correct_results),
	  T(test_cq_overflow_loses_nothing), T(test_idle_reactor_does_not_spin),
	  T(test_batch_workload), T(test_submissions_are_batched),
	  T(test_missing_opcodes_fall_back_or_fail_cleanly))
