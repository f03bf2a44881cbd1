/* SPDX-License-Identifier: MIT */
/*
 * Timer tests: sleeps wake in deadline order, equal deadlines in the order
 * they were armed, never early; sleep_until in the past returns at once;
 * 10,000 fibers with shuffled deadlines wake sorted; a sleep from outside a
 * fiber lets fibers run meanwhile; and sleeping fibers keep the thread
 * blocked in the kernel, not spinning (CPU time stays far below wall time).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <sys/resource.h>

#include <ioucontext/ioucontext.h>

#include "harness.h"

#define N 10000

static int64_t woke_at[N];
static int wake_order[N], nwoke;
static int64_t deadlines[N];

static void *sleep_until_slot(void *arg)
{
	int i = (int)(intptr_t)arg;

	FIBER_CHECK(fiber_sleep_until(reactor_get(), deadlines[i]) == 0);
	woke_at[i] = iou_now();
	wake_order[nwoke++] = i;
	return NULL;
}

static int test_wake_in_deadline_order_never_early(void)
{
	struct reactor *r = reactor_get();
	const int ms[] = { 40, 10, 30, 10, 20, 0 };
	const int expect[] = { 5, 1, 3, 4, 2, 0 };
	int64_t base;

	nwoke = 0;
	for (int i = 0; i < 6; i++)
		ASSERT_EQ(fiber_spawn(r, sleep_until_slot, (void *)(intptr_t)i, NULL), 0);
	/*
	 * The deadlines are set once the (possibly slow, first-touch) spawns
	 * are done, and leave the fibers room to start and arm them all before
	 * the first expires: one armed too late would return at once, out of
	 * order.  Under valgrind, a loaded machine needs more room.
	 */
	base = iou_now() + (RUNNING_ON_VALGRIND ? 300 : 50) * IOU_MSEC;
	for (int i = 0; i < 6; i++)
		deadlines[i] = base + ms[i] * IOU_MSEC;
	ASSERT_EQ(reactor_run(r), 0);
	ASSERT_EQ(nwoke, 6);
	for (int i = 0; i < 6; i++) {
		ASSERT_EQ(wake_order[i], expect[i]);
		ASSERT_GE(woke_at[i], deadlines[i]);
	}
	ASSERT_NO_FIBER_FAILURES();
	return 0;
}

static int test_many_shuffled_deadlines(void)
{
	struct reactor *r = reactor_get();
	int n = test_max_fibers(RUNNING_ON_VALGRIND ? N / 10 : N);
	int64_t base;

	srand(12345);
	nwoke = 0;
	for (int i = 0; i < n; i++)
		ASSERT_EQ(fiber_spawn(r, sleep_until_slot, (void *)(intptr_t)i, NULL), 0);
	/*
	 * Fibers first run in reactor_run(): deadlines set now, far enough
	 * ahead that every fiber arms its timer before the first fires (the
	 * spawning, whose first-touch cost varies a lot on this VM, is done).
	 */
	base = iou_now() + 200 * IOU_MSEC * test_slowdown();
	for (int i = 0; i < n; i++)
		deadlines[i] = base + (rand() % 200) * IOU_USEC * 500;
	ASSERT_EQ(reactor_run(r), 0);
	ASSERT_EQ(nwoke, n);
	for (int k = 1; k < n; k++) {
		int a = wake_order[k - 1], b = wake_order[k];

		/* Sorted by deadline; ties keep arming (spawn) order. */
		ASSERT_TRUE(deadlines[a] < deadlines[b] || (deadlines[a] == deadlines[b] && a < b));
	}
	for (int i = 0; i < n; i++)
		ASSERT_GE(woke_at[i], deadlines[i]);
	ASSERT_NO_FIBER_FAILURES();
	return 0;
}

static int ticks;

static void *ticker(void *arg)
{
	struct reactor *r = reactor_get();

	(void)arg;
	for (int i = 0; i < 5; i++) {
		fiber_sleep(r, 2 * IOU_MSEC);
		ticks++;
	}
	return NULL;
}

static int test_past_and_zero_sleeps_return_at_once(void)
{
	struct reactor *r = reactor_get();

	ticks = 0;
	ASSERT_EQ(fiber_spawn(r, ticker, NULL, NULL), 0);
	/* No timer armed by these: the ticker does not get to run. */
	ASSERT_EQ(fiber_sleep_until(r, iou_now() - IOU_SEC), 0);
	ASSERT_EQ(fiber_sleep_until(r, IOU_DEADLINE_NOW), 0);
	ASSERT_EQ(fiber_sleep(r, 0), 0);
	ASSERT_EQ(fiber_sleep(r, -5), 0);
	ASSERT_EQ(ticks, 0);
	/* A real sleep from main drives the reactor: the ticker finishes. */
	ASSERT_EQ(fiber_sleep(r, 60 * IOU_MSEC), 0);
	ASSERT_EQ(ticks, 5);
	ASSERT_TRUE(!reactor_runnable(r));
	ASSERT_EQ(fiber_sleep(NULL, 1), -EINVAL);
	return 0;
}

static int test_idle_reactor_blocks_in_kernel(void)
{
	struct reactor *r = reactor_get();
	struct rusage a, b;
	int64_t t0, wall, cpu;

	nwoke = 0;
	deadlines[0] = iou_now() + 300 * IOU_MSEC;
	ASSERT_EQ(fiber_spawn(r, sleep_until_slot, (void *)(intptr_t)0, NULL), 0);
	getrusage(RUSAGE_THREAD, &a);
	t0 = iou_now();
	ASSERT_EQ(reactor_run(r), 0);
	wall = iou_now() - t0;
	getrusage(RUSAGE_THREAD, &b);
	cpu = ((int64_t)(b.ru_utime.tv_sec - a.ru_utime.tv_sec) * IOU_SEC +
	       (int64_t)(b.ru_utime.tv_usec - a.ru_utime.tv_usec) * IOU_USEC) +
	      ((int64_t)(b.ru_stime.tv_sec - a.ru_stime.tv_sec) * IOU_SEC +
	       (int64_t)(b.ru_stime.tv_usec - a.ru_stime.tv_usec) * IOU_USEC);
	ASSERT_GE(wall, 290 * IOU_MSEC);
	/* A spinning loop would burn the whole 300 ms. */
	ASSERT_LT(cpu, wall / 4);
	return 0;
}

TEST_MAIN(T(test_wake_in_deadline_order_never_early), T(test_many_shuffled_deadlines),
	  T(test_past_and_zero_sleeps_return_at_once), T(test_idle_reactor_blocks_in_kernel))
