/* SPDX-License-Identifier: MIT */
/*
 * Fiber tests: spawn, join, detach, yield and self ordering (asserting order,
 * never durations); results through join; join from inside and outside a
 * fiber; misuse errors (another thread's fiber or reactor: -EPERM for every
 * call); names and ids; stack sizes; pooled stack reuse; and
 * 100,000 fibers spawned and joined.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <threads.h>

#include <ioucontext/ioucontext.h>

#include "harness.h"

static char trace[256];
static int ntrace;

static void mark(char c)
{
	if (ntrace < (int)sizeof(trace) - 1)
		trace[ntrace++] = c;
	trace[ntrace] = '\0';
}

static void *yielder(void *arg)
{
	char c = (char)(intptr_t)arg;
	struct reactor *r = reactor_get();

	for (int i = 0; i < 3; i++) {
		mark(c);
		fiber_yield(r);
	}
	return arg;
}

static int test_yield_round_robin(void)
{
	struct reactor *r = reactor_get();
	struct fiber *a, *b, *c;
	void *res;

	ntrace = 0;
	ASSERT_EQ(fiber_spawn(r, yielder, (void *)(intptr_t)'a', &a), 0);
	ASSERT_EQ(fiber_spawn(r, yielder, (void *)(intptr_t)'b', &b), 0);
	ASSERT_EQ(fiber_spawn(r, yielder, (void *)(intptr_t)'c', &c), 0);
	/* Nothing runs until the caller parks. */
	ASSERT_EQ(ntrace, 0);
	ASSERT_EQ(reactor_run(r), 0);
	ASSERT_STREQ(trace, "abcabcabc");
	ASSERT_EQ(fiber_join(a, &res), 0);
	ASSERT_EQ((intptr_t)res, 'a');
	ASSERT_EQ(fiber_join(b, &res), 0);
	ASSERT_EQ((intptr_t)res, 'b');
	ASSERT_EQ(fiber_join(c, NULL), 0);
	return 0;
}

static void *child(void *arg)
{
	mark('c');
	fiber_yield(reactor_get());
	mark('C');
	return (void *)((intptr_t)arg * 2);
}

static void *parent(void *arg)
{
	struct reactor *r = reactor_get();
	struct fiber *f;
	void *res = NULL;

	(void)arg;
	mark('p');
	FIBER_CHECK(fiber_spawn(r, child, (void *)(intptr_t)21, &f) == 0);
	mark('s');
	FIBER_CHECK(fiber_join(f, &res) == 0);
	mark('j');
	FIBER_CHECK((intptr_t)res == 42);
	return NULL;
}

static int test_join_from_fiber_waits(void)
{
	struct reactor *r = reactor_get();

	ntrace = 0;
	ASSERT_EQ(fiber_spawn(r, parent, NULL, NULL), 0);
	ASSERT_EQ(reactor_run(r), 0);
	ASSERT_STREQ(trace, "pscCj");
	ASSERT_NO_FIBER_FAILURES();
	return 0;
}

static int test_join_from_main_drives(void)
{
	struct reactor *r = reactor_get();
	struct fiber *f;
	void *res = NULL;

	ntrace = 0;
	ASSERT_EQ(fiber_spawn(r, child, (void *)(intptr_t)5, &f), 0);
	ASSERT_EQ(fiber_join(f, &res), 0);
	ASSERT_EQ((intptr_t)res, 10);
	ASSERT_STREQ(trace, "cC");
	ASSERT_TRUE(!reactor_runnable(r));
	return 0;
}

static void *quick(void *arg)
{
	mark((char)(intptr_t)arg);
	return NULL;
}

static int test_join_after_finish_and_detach(void)
{
	struct reactor *r = reactor_get();
	struct fiber *f, *g;

	ntrace = 0;
	ASSERT_EQ(fiber_spawn(r, quick, (void *)(intptr_t)'x', &f), 0);
	ASSERT_EQ(fiber_spawn(r, quick, (void *)(intptr_t)'y', &g), 0);
	ASSERT_EQ(fiber_detach(g), 0);
	ASSERT_EQ(fiber_detach(g), -EINVAL);
	ASSERT_EQ(fiber_join(g, NULL), -EINVAL);
	ASSERT_EQ(reactor_run(r), 0);
	ASSERT_STREQ(trace, "xy");
	/* Finished before anyone joined: join returns at once. */
	ASSERT_EQ(fiber_join(f, NULL), 0);

	/* Detaching a finished fiber releases it. */
	ASSERT_EQ(fiber_spawn(r, quick, (void *)(intptr_t)'z', &f), 0);
	ASSERT_EQ(reactor_run(r), 0);
	ASSERT_EQ(fiber_detach(f), 0);
	ASSERT_STREQ(trace, "xyz");
	ASSERT_EQ(fiber_join(NULL, NULL), -EINVAL);
	ASSERT_EQ(fiber_detach(NULL), -EINVAL);
	return 0;
}

static struct fiber *self_seen;
static int self_join_rc, double_join_rc;

static void *who_am_i(void *arg)
{
	struct reactor *r = reactor_get();

	(void)arg;
	self_seen = fiber_self(r);
	self_join_rc = fiber_join(self_seen, NULL);
	return NULL;
}

static void *second_joiner(void *arg)
{
	double_join_rc = fiber_join(arg, NULL);
	return NULL;
}

static void *first_joiner(void *arg)
{
	fiber_join(arg, NULL);
	return NULL;
}

static int test_self_and_join_errors(void)
{
	struct reactor *r = reactor_get();
	struct fiber *f, *target;

	ASSERT_PTR_EQ(fiber_self(r), NULL);
	ASSERT_EQ(fiber_spawn(r, who_am_i, NULL, &f), 0);
	ASSERT_EQ(reactor_run(r), 0);
	ASSERT_PTR_EQ(self_seen, f);
	ASSERT_EQ(self_join_rc, -EDEADLK);
	ASSERT_EQ(fiber_join(f, NULL), 0);

	/* A second joiner is refused while the first waits. */
	ASSERT_EQ(fiber_spawn(r, child, NULL, &target), 0);
	ASSERT_EQ(fiber_spawn(r, first_joiner, target, NULL), 0);
	ASSERT_EQ(fiber_spawn(r, second_joiner, target, NULL), 0);
	ASSERT_EQ(reactor_run(r), 0);
	ASSERT_EQ(double_join_rc, -EINVAL);
	return 0;
}

/* What another thread gets from each call on this thread's fiber and reactor. */
struct foreign {
	struct reactor *r;
	struct fiber *f;
	int join, detach, cancel, unpark, spawn, yield, sleep0, sleep, sleep_until, park;
};

static int foreign_calls(void *arg)
{
	struct foreign *x = arg;

	x->join = fiber_join(x->f, NULL);
	x->detach = fiber_detach(x->f);
	x->cancel = fiber_cancel(x->f);
	x->unpark = fiber_unpark(x->f);
	x->spawn = fiber_spawn(x->r, quick, NULL, NULL);
	x->yield = fiber_yield(x->r);
	x->sleep0 = fiber_sleep(x->r, 0);
	x->sleep = fiber_sleep(x->r, IOU_MSEC);
	x->sleep_until = fiber_sleep_until(x->r, 0);
	x->park = fiber_park(x->r, 0);
	return 0;
}

static void *cancelled_sleeps(void *arg)
{
	struct reactor *r = reactor_current();
	int *rc = arg;

	fiber_cancel(fiber_self(r));
	rc[0] = fiber_sleep(r, 0);
	rc[1] = fiber_sleep(r, -1);
	rc[2] = fiber_sleep_until(r, 0);
	rc[3] = fiber_sleep(r, IOU_SEC);
	return NULL;
}

/*
 * Another thread's fiber is -EPERM for every call, the same for all of
 * them and touching nothing; a zero sleep checks as a real one does.
 */
static int test_other_threads_fiber_is_eperm(void)
{
	struct reactor *r = reactor_get();
	struct foreign x = { .r = r };
	int rc[4] = { 1, 1, 1, 1 };
	thrd_t t;

	ntrace = 0;
	ASSERT_EQ(fiber_spawn(r, quick, (void *)(intptr_t)'p', &x.f), 0);
	ASSERT_EQ(thrd_create(&t, foreign_calls, &x), thrd_success);
	ASSERT_EQ(thrd_join(t, NULL), thrd_success);
	ASSERT_EQ(x.join, -EPERM);
	ASSERT_EQ(x.detach, -EPERM);
	ASSERT_EQ(x.cancel, -EPERM);
	ASSERT_EQ(x.unpark, -EPERM);
	ASSERT_EQ(x.spawn, -EPERM);
	ASSERT_EQ(x.yield, -EPERM);
	ASSERT_EQ(x.sleep0, -EPERM);
	ASSERT_EQ(x.sleep, -EPERM);
	ASSERT_EQ(x.sleep_until, -EPERM);
	ASSERT_EQ(x.park, -EPERM);
	/* Nothing was touched: the fiber runs, uncancelled, and joins. */
	ASSERT_EQ(reactor_run(r), 0);
	ASSERT_STREQ(trace, "p");
	ASSERT_EQ(fiber_join(x.f, NULL), 0);

	ASSERT_EQ(fiber_sleep(NULL, 0), -EINVAL);
	ASSERT_EQ(fiber_sleep(r, 0), 0);
	ASSERT_EQ(fiber_spawn(r, cancelled_sleeps, rc, NULL), 0);
	ASSERT_EQ(reactor_run(r), 0);
	ASSERT_EQ(rc[0], -ECANCELED);
	ASSERT_EQ(rc[1], -ECANCELED);
	ASSERT_EQ(rc[2], -ECANCELED);
	ASSERT_EQ(rc[3], -ECANCELED);
	return 0;
}

static int test_ids_names_and_stack_sizes(void)
{
	struct reactor *r = reactor_get();
	struct fiber_options o = { .stack_size = 32 * 1024, .name = "a-rather-long-fiber-name-that-gets-truncated" };
	struct fiber *f, *g;

	ASSERT_EQ(fiber_spawn_with(r, &o, quick, (void *)(intptr_t)'n', &f), 0);
	ASSERT_EQ(fiber_spawn(r, quick, (void *)(intptr_t)'m', &g), 0);
	ASSERT_GT(fiber_id(f), 0);
	ASSERT_EQ(fiber_id(g), fiber_id(f) + 1);
	ASSERT_EQ(strlen(fiber_name(f)), IOU_FIBER_NAME_MAX);
	ASSERT_TRUE(!strncmp(fiber_name(f), o.name, IOU_FIBER_NAME_MAX));
	ASSERT_STREQ(fiber_name(g), "");
	ASSERT_EQ(reactor_run(r), 0);
	ASSERT_EQ(fiber_join(f, NULL), 0);
	ASSERT_EQ(fiber_join(g, NULL), 0);

	o.stack_size = 4096;
	ASSERT_EQ(fiber_spawn_with(r, &o, quick, NULL, NULL), -EINVAL);
	o.stack_size = (size_t)2 << 30;
	ASSERT_EQ(fiber_spawn_with(r, &o, quick, NULL, NULL), -EINVAL);
	return 0;
}

/* Uses most of a 1 MiB stack: the per-fiber size is really provided. */
static void *deep(void *arg)
{
	volatile char buf[900 * 1024];

	buf[0] = 1;
	buf[sizeof(buf) - 1] = 2;
	(void)arg;
	return (void *)(intptr_t)(buf[0] + buf[sizeof(buf) - 1]);
}

static int test_large_stack(void)
{
	struct reactor *r = reactor_get();
	struct fiber_options o = { .stack_size = 1024 * 1024 };
	struct fiber *f;
	void *res;

	ASSERT_EQ(fiber_spawn_with(r, &o, deep, NULL, &f), 0);
	ASSERT_EQ(fiber_join(f, &res), 0);
	ASSERT_EQ((intptr_t)res, 3);
	return 0;
}

static void *noop(void *arg)
{
	return arg;
}

/* Spawning on a pooled stack reuses it: the mapping count does not move. */
static int test_pool_reuse(void)
{
	struct reactor *r = reactor_get();
	struct fiber *f, *prev = NULL;
	int maps;

	ASSERT_EQ(fiber_spawn(r, noop, NULL, &f), 0);
	ASSERT_EQ(fiber_join(f, NULL), 0);
	prev = f;
	maps = test_count_maps();
	for (int i = 0; i < 1000; i++) {
		void *res;

		ASSERT_EQ(fiber_spawn(r, noop, (void *)(intptr_t)i, &f), 0);
		ASSERT_PTR_EQ(f, prev); /* the warm stack, again */
		ASSERT_EQ(fiber_join(f, &res), 0);
		ASSERT_EQ((intptr_t)res, i);
	}
	ASSERT_EQ(test_count_maps(), maps);
	return 0;
}

#define MANY 100000

static long sum;

static void *add(void *arg)
{
	sum += (intptr_t)arg;
	if ((intptr_t)arg % 3 == 0)
		fiber_yield(reactor_get());
	return (void *)((intptr_t)arg + 1);
}

static int test_hundred_thousand_fibers(void)
{
	struct reactor_options o;
	struct reactor *r;
	struct fiber **fs = calloc(MANY, sizeof(*fs));
	long expect = 0, joined = 0;
	int n = test_max_fibers(RUNNING_ON_VALGRIND ? MANY / 10 : MANY);
	int maps_before;

	ASSERT_TRUE(fs != NULL);
	ASSERT_EQ(reactor_destroy(reactor_get()), 0);
	reactor_options_init(&o);
	o.stack_size = 32 * 1024;
	ASSERT_EQ(reactor_create(&o, &r), 0);
	maps_before = test_count_maps();
	sum = 0;
	for (int i = 0; i < n; i++) {
		ASSERT_EQ(fiber_spawn(r, add, (void *)(intptr_t)i, &fs[i]), 0);
		expect += i;
	}
	/* Stacks come from a few large reservations, not one mapping each (TSan adds its own). */
	if (!IOU_TEST_TSAN)
		ASSERT_LT(test_count_maps() - maps_before, 64);
	ASSERT_EQ(reactor_run(r), 0);
	ASSERT_EQ(sum, expect);
	for (int i = 0; i < n; i++) {
		void *res;

		ASSERT_EQ(fiber_join(fs[i], &res), 0);
		joined += (intptr_t)res - 1;
	}
	ASSERT_EQ(joined, expect);
	ASSERT_TRUE(!reactor_runnable(r));
	free(fs);
	ASSERT_EQ(reactor_destroy(r), 0);
	return 0;
}

/* Spawning from inside fibers, nested three deep, all joined. */
static void *tree(void *arg)
{
	intptr_t depth = (intptr_t)arg;
	struct reactor *r = reactor_get();
	struct fiber *kids[3];
	intptr_t total = 1;

	if (depth == 0)
		return (void *)total;
	for (int i = 0; i < 3; i++)
		FIBER_CHECK(fiber_spawn(r, tree, (void *)(depth - 1), &kids[i]) == 0);
	for (int i = 0; i < 3; i++) {
		void *res = NULL;

		FIBER_CHECK(fiber_join(kids[i], &res) == 0);
		total += (intptr_t)res;
	}
	return (void *)total;
}

static int test_spawn_tree(void)
{
	struct reactor *r = reactor_get();
	struct fiber *f;
	void *res;

	ASSERT_EQ(fiber_spawn(r, tree, (void *)(intptr_t)5, &f), 0);
	ASSERT_EQ(fiber_join(f, &res), 0);
	ASSERT_EQ((intptr_t)res, 1 + 3 + 9 + 27 + 81 + 243);
	ASSERT_NO_FIBER_FAILURES();
	return 0;
}

static int test_yield_outside_fiber_runs_one_round(void)
{
	struct reactor *r = reactor_get();

	ntrace = 0;
	ASSERT_EQ(fiber_spawn(r, yielder, (void *)(intptr_t)'q', NULL), 0);
	ASSERT_EQ(fiber_spawn(r, yielder, (void *)(intptr_t)'r', NULL), 0);
	ASSERT_EQ(fiber_yield(r), 0);
	ASSERT_STREQ(trace, "qr");
	ASSERT_TRUE(reactor_runnable(r));
	ASSERT_EQ(fiber_yield(r), 0);
	ASSERT_STREQ(trace, "qrqr");
	ASSERT_EQ(reactor_run(r), 0);
	ASSERT_STREQ(trace, "qrqrqr");
	return 0;
}

TEST_MAIN(T(test_yield_round_robin), T(test_join_from_fiber_waits), T(test_join_from_main_drives),
	  T(test_join_after_finish_and_detach), T(test_self_and_join_errors),
	  T(test_other_threads_fiber_is_eperm), T(test_ids_names_and_stack_sizes),
	  T(test_large_stack), T(test_pool_reuse), T(test_hundred_thousand_fibers),
	  T(test_spawn_tree), T(test_yield_outside_fiber_runs_one_round))
