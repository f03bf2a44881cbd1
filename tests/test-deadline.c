/* SPDX-License-Identifier: MIT */
/*
 * Deadlines and cancellation: an operation bounded by a deadline fails with
 * -ETIMEDOUT and consumes nothing; fiber_cancel() interrupts a parked fiber
 * with -ECANCELED and stays in force; sleeps and joins obey both; a deadline
 * in the past means "do not wait"; the thread's own context has a deadline
 * too.  The buffer guarantee: after an interrupted read returns, the kernel
 * never writes into its buffer, and every byte sent is received exactly
 * once -- checked in a race where data and deadline arrive together.
 * Operations waiting for a ring slot are interrupted too, and a reactor
 * destroyed with operations in flight cancels them in the kernel first.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <threads.h>
#include <unistd.h>

#include <ioucontext/ioucontext.h>

#include "ops-harness.h"

#define SENTINEL 0xAA

static bool all_bytes(const unsigned char *p, size_t n, unsigned char v)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != v)
			return false;
	return true;
}

/* ---- a read with a deadline ---------------------------------------------- */

static int pipefd[2];
static unsigned char buf[64];

static void *read_with_deadline(void *arg)
{
	struct reactor *r = reactor_get();
	int64_t start = iou_now();
	ssize_t n;

	(void)arg;
	FIBER_CHECK(fiber_set_deadline(r, iou_deadline_after(50 * IOU_MSEC)) == IOU_DEADLINE_NEVER);
	memset(buf, SENTINEL, sizeof(buf));
	n = iou_read(r, pipefd[0], buf, sizeof(buf));
	FIBER_CHECK(n == -ETIMEDOUT);
	FIBER_CHECK(iou_now() - start >= 50 * IOU_MSEC);
	/* The deadline stays until changed. */
	FIBER_CHECK(iou_read(r, pipefd[0], buf, sizeof(buf)) == -ETIMEDOUT);
	fiber_set_deadline(r, IOU_DEADLINE_NEVER);
	return NULL;
}

static int test_read_times_out_and_consumes_nothing(void)
{
	struct reactor *r = reactor_get();
	unsigned char got[8];

	ASSERT_EQ(pipe2(pipefd, O_CLOEXEC), 0);
	ASSERT_EQ(fiber_spawn(r, read_with_deadline, NULL, NULL), 0);
	ASSERT_EQ(reactor_run(r), 0);
	/* Data written after the timeout stays in the pipe for the next reader. */
	ASSERT_EQ(write(pipefd[1], "abcdefgh", 8), 8);
	ASSERT_TRUE(all_bytes(buf, sizeof(buf), SENTINEL));
	ASSERT_EQ(iou_read(r, pipefd[0], got, sizeof(got)), 8);
	ASSERT_EQ(memcmp(got, "abcdefgh", 8), 0);
	ASSERT_TRUE(all_bytes(buf, sizeof(buf), SENTINEL));
	close(pipefd[0]);
	close(pipefd[1]);
	ASSERT_NO_FIBER_FAILURES();
	return 0;
}

/* ---- deadline "now": try without waiting --------------------------------- */

static int test_deadline_now_does_not_wait(void)
{
	struct reactor *r = reactor_get();
	char c;

	ASSERT_EQ(pipe2(pipefd, O_CLOEXEC), 0);
	ASSERT_EQ(fiber_set_deadline(r, IOU_DEADLINE_NOW), IOU_DEADLINE_NEVER);
	ASSERT_EQ(fiber_deadline(r), IOU_DEADLINE_NOW);
	ASSERT_EQ(iou_read(r, pipefd[0], &c, 1), -ETIMEDOUT);
	ASSERT_EQ(write(pipefd[1], "x", 1), 1);
	ASSERT_EQ(iou_read(r, pipefd[0], &c, 1), 1);
	ASSERT_EQ(c, 'x');
	ASSERT_EQ(fiber_sleep(r, 10 * IOU_MSEC), -ETIMEDOUT);
	fiber_set_deadline(r, IOU_DEADLINE_NEVER);
	ASSERT_EQ(iou_nop(r), 0);
	close(pipefd[0]);
	close(pipefd[1]);
	return 0;
}

/* ---- cancellation --------------------------------------------------------- */

static int cancelled_fd;

static void *blocked_reader(void *arg)
{
	struct reactor *r = reactor_get();
	int fd;

	(void)arg;
	memset(buf, SENTINEL, sizeof(buf));
	FIBER_CHECK(iou_read(r, pipefd[0], buf, sizeof(buf)) == -ECANCELED);
	FIBER_CHECK(fiber_cancelled(r));
	/* Sticky: every later blocking call fails at once ... */
	FIBER_CHECK(iou_nop(r) == -ECANCELED);
	FIBER_CHECK(fiber_sleep(r, IOU_SEC) == -ECANCELED);
	FIBER_CHECK(iou_open(r, "/dev/null", O_RDONLY, 0) == -ECANCELED);
	/* ... but descriptors can still be released. */
	fd = dup(pipefd[0]);
	FIBER_CHECK(fd >= 0);
	FIBER_CHECK(iou_close(r, fd) == 0);
	cancelled_fd = fd;
	return (void *)1;
}

static void *canceller(void *arg)
{
	struct reactor *r = reactor_get();

	FIBER_CHECK(fiber_sleep(r, 20 * IOU_MSEC) == 0);
	FIBER_CHECK(fiber_cancel(arg) == 0);
	FIBER_CHECK(!fiber_cancelled(r));
	return NULL;
}

static int test_cancel_interrupts_and_sticks(void)
{
	struct reactor *r = reactor_get();
	struct fiber *f;
	void *res = NULL;

	ASSERT_EQ(pipe2(pipefd, O_CLOEXEC), 0);
	ASSERT_EQ(fiber_spawn(r, blocked_reader, NULL, &f), 0);
	ASSERT_EQ(fiber_spawn(r, canceller, f, NULL), 0);
	ASSERT_EQ(fiber_join(f, &res), 0);
	ASSERT_PTR_EQ(res, (void *)1);
	ASSERT_EQ(reactor_run(r), 0);
	ASSERT_EQ(fcntl(cancelled_fd, F_GETFD), -1);
	ASSERT_EQ(write(pipefd[1], "z", 1), 1);
	ASSERT_TRUE(all_bytes(buf, sizeof(buf), SENTINEL));
	close(pipefd[0]);
	close(pipefd[1]);
	ASSERT_EQ(fiber_cancel(NULL), -EINVAL);
	ASSERT_NO_FIBER_FAILURES();
	return 0;
}

static void *sleeper(void *arg)
{
	(void)arg;
	FIBER_CHECK(fiber_sleep(reactor_get(), 10 * IOU_SEC) == -ECANCELED);
	return NULL;
}

static void *joiner(void *arg)
{
	struct reactor *r = reactor_get();

	/* The joiner's own deadline ends the join; the target runs on. */
	fiber_set_deadline(r, iou_deadline_after(20 * IOU_MSEC));
	FIBER_CHECK(fiber_join(arg, NULL) == -ETIMEDOUT);
	fiber_set_deadline(r, IOU_DEADLINE_NEVER);
	FIBER_CHECK(fiber_cancel(arg) == 0);
	FIBER_CHECK(fiber_join(arg, NULL) == 0);
	return NULL;
}

static int test_sleep_and_join_obey_deadline_and_cancel(void)
{
	struct reactor *r = reactor_get();
	struct fiber *s;
	int64_t start = iou_now();

	ASSERT_EQ(fiber_spawn(r, sleeper, NULL, &s), 0);
	ASSERT_EQ(fiber_spawn(r, joiner, s, NULL), 0);
	ASSERT_EQ(reactor_run(r), 0);
	ASSERT_LT(iou_now() - start, 5 * IOU_SEC);
	/* A sleep shorter than the deadline ends normally. */
	ASSERT_EQ(fiber_set_deadline(r, iou_deadline_after(IOU_SEC)), IOU_DEADLINE_NEVER);
	ASSERT_EQ(fiber_sleep(r, 5 * IOU_MSEC), 0);
	/* One longer than the deadline is cut short. */
	fiber_set_deadline(r, iou_deadline_after(10 * IOU_MSEC));
	start = iou_now();
	ASSERT_EQ(fiber_sleep(r, 10 * IOU_SEC), -ETIMEDOUT);
	ASSERT_GE(iou_now() - start, 10 * IOU_MSEC);
	fiber_set_deadline(r, IOU_DEADLINE_NEVER);
	ASSERT_NO_FIBER_FAILURES();
	return 0;
}

/* ---- the buffer guarantee under a race ------------------------------------ */

#define RACE_BYTES 16
static int sock[2];
static unsigned char race_buf[RACE_BYTES];
static size_t sent, received;
static int timeouts, completions, corrupted;

static void *race_reader(void *arg)
{
	struct reactor *r = reactor_get();
	int64_t at = *(int64_t *)arg;
	ssize_t n;

	memset(race_buf, SENTINEL, sizeof(race_buf));
	fiber_set_deadline(r, at);
	n = iou_recv(r, sock[0], race_buf, sizeof(race_buf), 0);
	fiber_set_deadline(r, IOU_DEADLINE_NEVER);
	if (n == -ETIMEDOUT) {
		timeouts++;
		/* Let anything in flight land; the buffer must stay untouched. */
		FIBER_CHECK(fiber_yield(r) == 0);
		FIBER_CHECK(iou_nop(r) == 0);
		if (!all_bytes(race_buf, sizeof(race_buf), SENTINEL))
			corrupted++;
	} else {
		FIBER_CHECK(n > 0);
		if (n > 0) {
			completions++;
			received += (size_t)n;
		}
	}
	return NULL;
}

static void *race_writer(void *arg)
{
	struct reactor *r = reactor_get();
	int64_t at = *(int64_t *)arg;

	FIBER_CHECK(fiber_sleep_until(r, at) == 0);
	FIBER_CHECK(iou_send(r, sock[1], "0123456789abcdef", RACE_BYTES, 0) == RACE_BYTES);
	sent += RACE_BYTES;
	return NULL;
}

static int test_buffer_never_written_after_timeout(void)
{
	struct reactor *r = reactor_get();
	int rounds = RUNNING_ON_VALGRIND ? 100 : 1000;
	unsigned seed = 12345;
	unsigned char drain[RACE_BYTES * 64];

	ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sock), 0);
	sent = received = 0;
	timeouts = completions = corrupted = 0;
	for (int i = 0; i < rounds; i++) {
		/* Deadline and data within 1 ms of each other, either first. */
		int64_t base = iou_now() + 200 * IOU_USEC;
		int64_t deadline = base + (int64_t)(rand_r(&seed) % 1000) * IOU_USEC;
		int64_t write_at = base + (int64_t)(rand_r(&seed) % 1000) * IOU_USEC;

		ASSERT_EQ(fiber_spawn(r, race_reader, &deadline, NULL), 0);
		ASSERT_EQ(fiber_spawn(r, race_writer, &write_at, NULL), 0);
		ASSERT_EQ(reactor_run(r), 0);
		/* What a timed-out read left in the socket is still there. */
		fiber_set_deadline(r, IOU_DEADLINE_NOW);
		for (;;) {
			ssize_t n = iou_recv(r, sock[0], drain, sizeof(drain), 0);

			if (n <= 0)
				break;
			received += (size_t)n;
		}
		fiber_set_deadline(r, IOU_DEADLINE_NEVER);
	}
	printf("# %d rounds: %d completed, %d timed out\n", rounds, completions, timeouts);
	ASSERT_EQ(corrupted, 0);
	ASSERT_EQ(received, sent);
	ASSERT_EQ(sent, (size_t)rounds * RACE_BYTES);
	close(sock[0]);
	close(sock[1]);
	ASSERT_NO_FIBER_FAILURES();
	return 0;
}

/* ---- the thread's own context --------------------------------------------- */

static int test_thread_context_deadline(void)
{
	struct reactor *r = reactor_get();
	char c;

	ASSERT_EQ(pipe2(pipefd, O_CLOEXEC), 0);
	ASSERT_PTR_EQ(fiber_self(r), NULL);
	fiber_set_deadline(r, iou_deadline_after(20 * IOU_MSEC));
	ASSERT_EQ(iou_read(r, pipefd[0], &c, 1), -ETIMEDOUT);
	ASSERT_EQ(fiber_set_deadline(r, IOU_DEADLINE_NEVER) != IOU_DEADLINE_NEVER, 1);
	ASSERT_TRUE(!reactor_runnable(r));
	close(pipefd[0]);
	close(pipefd[1]);
	return 0;
}

/* ---- operations waiting for a ring slot ------------------------------------ */

#define STAGED_FIBERS 100
static int staged_timeouts, staged_cancels;

static void *staged_reader(void *arg)
{
	struct reactor *r = reactor_get();
	char c;
	ssize_t n;

	if (arg)
		fiber_set_deadline(r, iou_deadline_after(30 * IOU_MSEC));
	n = iou_read(r, pipefd[0], &c, 1);
	if (n == -ETIMEDOUT)
		staged_timeouts++;
	else if (n == -ECANCELED)
		staged_cancels++;
	else
		FIBER_CHECK(!"unexpected result");
	return NULL;
}

static int staged_body(void)
{
	struct reactor_options o;
	struct reactor *r;
	struct fiber *f[STAGED_FIBERS];

	reactor_options_init(&o);
	o.ring_entries = 8;
	ASSERT_EQ(reactor_create(&o, &r), 0);
	ASSERT_EQ(reactor_ring_entries(r), 8);
	ASSERT_EQ(pipe2(pipefd, O_CLOEXEC), 0);
	staged_timeouts = staged_cancels = 0;
	/* Odd fibers time out, even ones are cancelled; most wait for a slot. */
	for (int i = 0; i < STAGED_FIBERS; i++)
		ASSERT_EQ(fiber_spawn(r, staged_reader, (void *)(intptr_t)(i & 1), &f[i]), 0);
	ASSERT_EQ(fiber_yield(r), 0);
	for (int i = 0; i < STAGED_FIBERS; i += 2)
		ASSERT_EQ(fiber_cancel(f[i]), 0);
	for (int i = 0; i < STAGED_FIBERS; i++)
		ASSERT_EQ(fiber_join(f[i], NULL), 0);
	ASSERT_EQ(staged_timeouts, STAGED_FIBERS / 2);
	ASSERT_EQ(staged_cancels, STAGED_FIBERS / 2);
	ASSERT_TRUE(!reactor_runnable(r));
	/* Nothing was consumed by the interrupted reads. */
	ASSERT_EQ(write(pipefd[1], "q", 1), 1);
	{
		char c = 0;

		ASSERT_EQ(iou_read(r, pipefd[0], &c, 1), 1);
		ASSERT_EQ(c, 'q');
	}
	close(pipefd[0]);
	close(pipefd[1]);
	ASSERT_EQ(reactor_destroy(r), 0);
	ASSERT_NO_FIBER_FAILURES();
	return 0;
}

static int test_staged_operations_are_interrupted(void)
{
	return test_in_thread(staged_body);
}

/* ---- teardown with operations in flight ------------------------------------ */

static int eaten_result;

static void eat_and_try(void *cookie)
{
	/* The cookie is eaten while the reactor is still whole. */
	eaten_result = iou_nop(cookie);
}

static void *park_reading(void *arg)
{
	char c;

	(void)arg;
	(void)iou_read(reactor_get(), pipefd[0], &c, 1);
	FIBER_CHECK(!"a fiber of a destroyed reactor ran on");
	return NULL;
}

static int teardown_body(void)
{
	struct reactor *r;
	char c;

	ASSERT_EQ(reactor_create(NULL, &r), 0);
	ASSERT_EQ(pipe2(pipefd, O_CLOEXEC), 0);
	for (int i = 0; i < 10; i++)
		ASSERT_EQ(fiber_spawn(r, park_reading, NULL, NULL), 0);
	ASSERT_EQ(fiber_yield(r), 0); /* they submit their reads and park */
	ASSERT_EQ(fiber_yield(r), 0);
	ASSERT_TRUE(reactor_runnable(r));
	eaten_result = 1;
	ASSERT_EQ(reactor_cookie_jar(r, r, eat_and_try), 0);
	ASSERT_EQ(reactor_destroy(r), 0);
	ASSERT_EQ(eaten_result, 0);
	/* The cancelled reads consumed nothing. */
	ASSERT_EQ(write(pipefd[1], "k", 1), 1);
	ASSERT_EQ(read(pipefd[0], &c, 1), 1);
	ASSERT_EQ(c, 'k');
	close(pipefd[0]);
	close(pipefd[1]);
	ASSERT_NO_FIBER_FAILURES();
	return 0;
}

static int test_destroy_cancels_operations_in_flight(void)
{
	return test_in_thread(teardown_body);
}

TEST_MAIN(T(test_read_times_out_and_consumes_nothing), T(test_deadline_now_does_not_wait),
	  T(test_cancel_interrupts_and_sticks), T(test_sleep_and_join_obey_deadline_and_cancel),
	  T(test_buffer_never_written_after_timeout), T(test_thread_context_deadline),
	  T(test_staged_operations_are_interrupted),
	  T(test_destroy_cancels_operations_in_flight))
