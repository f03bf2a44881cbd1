/* SPDX-License-Identifier: MIT */
/*
 * Reactor tests: one reactor per thread, created on first use; pinning of
 * two threads to distinct CPUs; the cookie eaten exactly once at thread exit,
 * at explicit destroy and at replacement; reactor_run() returning only when
 * every fiber has ended; blocking calls from outside a fiber; options and
 * environment; ring flag fallback; the opcode probe; and misuse errors.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <threads.h>

#include <ioucontext/ioucontext.h>
#include <liburing.h>

#include "harness.h"

static int eaten;
static void *eaten_cookie;

static void eat(void *cookie)
{
	eaten++;
	eaten_cookie = cookie;
}

static int test_get_is_per_thread_and_stable(void)
{
	struct reactor *r = reactor_get();

	ASSERT_TRUE(r != NULL);
	ASSERT_PTR_EQ(reactor_get(), r);
	ASSERT_TRUE(!reactor_runnable(r));
	ASSERT_GE(reactor_ring_entries(r), 1);
	ASSERT_EQ(reactor_destroy(r), 0);
	return 0;
}

struct thread_info {
	struct reactor *r;
	int cpu;
	mtx_t *m;
	cnd_t *c;
	int *arrived;
};

static int thread_get(void *arg)
{
	struct thread_info *ti = arg;

	ti->r = reactor_get();
	ti->cpu = reactor_cpu(ti->r);
	/* Keep both reactors alive at once so they compete for CPUs. */
	mtx_lock(ti->m);
	(*ti->arrived)++;
	cnd_broadcast(ti->c);
	while (*ti->arrived < 2)
		cnd_wait(ti->c, ti->m);
	mtx_unlock(ti->m);
	ti->cpu = reactor_cpu(ti->r);
	return ti->r ? 0 : 1;
}

static int test_two_threads_distinct_reactors_and_cpus(void)
{
	mtx_t m;
	cnd_t c;
	int arrived = 0, rc0, rc1;
	struct thread_info ti[2] = { { .m = &m, .c = &c, .arrived = &arrived },
				     { .m = &m, .c = &c, .arrived = &arrived } };
	thrd_t t[2];
	cpu_set_t mask;

	mtx_init(&m, mtx_plain);
	cnd_init(&c);
	ASSERT_EQ(thrd_create(&t[0], thread_get, &ti[0]), thrd_success);
	ASSERT_EQ(thrd_create(&t[1], thread_get, &ti[1]), thrd_success);
	thrd_join(t[0], &rc0);
	thrd_join(t[1], &rc1);
	ASSERT_EQ(rc0, 0);
	ASSERT_EQ(rc1, 0);
	ASSERT_TRUE(ti[0].r != ti[1].r);
	ASSERT_EQ(sched_getaffinity(0, sizeof(mask), &mask), 0);
	if (CPU_COUNT(&mask) >= 2) {
		ASSERT_GE(ti[0].cpu, 0);
		ASSERT_GE(ti[1].cpu, 0);
		ASSERT_NE(ti[0].cpu, ti[1].cpu);
	}
	cnd_destroy(&c);
	mtx_destroy(&m);
	return 0;
}

/* A thread created by a pinned thread inherits its mask; it must still spread. */
static int thread_cpu(void *arg)
{
	*(int *)arg = reactor_cpu(reactor_get());
	return 0;
}

static int test_thread_of_pinned_thread_spreads(void)
{
	struct reactor *r = reactor_get();
	cpu_set_t mask;
	int cpu = -1, rc;
	thrd_t t;

	ASSERT_TRUE(r != NULL);
	ASSERT_EQ(thrd_create(&t, thread_cpu, &cpu), thrd_success);
	thrd_join(t, &rc);
	ASSERT_EQ(sched_getaffinity(0, sizeof(mask), &mask), 0);
	ASSERT_EQ(CPU_COUNT(&mask), 1); /* we are pinned */
	ASSERT_EQ(reactor_destroy(r), 0);
	ASSERT_EQ(sched_getaffinity(0, sizeof(mask), &mask), 0);
	if (CPU_COUNT(&mask) >= 2) {
		ASSERT_GE(cpu, 0);
		ASSERT_GE(reactor_cpu(r = reactor_get()), 0);
		/* The main thread's reactor was pinned while the thread's lived. */
		ASSERT_EQ(reactor_destroy(r), 0);
	}
	return 0;
}

static int thread_cookie(void *arg)
{
	struct reactor *r = reactor_get();

	reactor_cookie_jar(r, arg, eat);
	return 0;
}

static int test_cookie_eaten_once_at_thread_exit(void)
{
	static int cookie;
	thrd_t t;
	int rc;

	eaten = 0;
	eaten_cookie = NULL;
	ASSERT_EQ(thrd_create(&t, thread_cookie, &cookie), thrd_success);
	ASSERT_EQ(thrd_join(t, &rc), thrd_success);
	ASSERT_EQ(eaten, 1);
	ASSERT_PTR_EQ(eaten_cookie, &cookie);
	return 0;
}

static int test_cookie_eaten_once_at_destroy(void)
{
	static int a, b;
	struct reactor *r = reactor_get();

	eaten = 0;
	ASSERT_EQ(reactor_cookie_jar(r, &a, eat), 0);
	ASSERT_PTR_EQ(reactor_cookie(r), &a);
	/* Replacing eats the old cookie once, now. */
	ASSERT_EQ(reactor_cookie_jar(r, &b, eat), 0);
	ASSERT_EQ(eaten, 1);
	ASSERT_PTR_EQ(eaten_cookie, &a);
	/* Storing the same cookie again is not a replacement. */
	ASSERT_EQ(reactor_cookie_jar(r, &b, eat), 0);
	ASSERT_EQ(eaten, 1);
	ASSERT_EQ(reactor_destroy(r), 0);
	ASSERT_EQ(eaten, 2);
	ASSERT_PTR_EQ(eaten_cookie, &b);
	/* A new reactor starts with an empty jar. */
	r = reactor_get();
	ASSERT_PTR_EQ(reactor_cookie(r), NULL);
	ASSERT_EQ(reactor_destroy(r), 0);
	ASSERT_EQ(eaten, 2);
	return 0;
}

static int order[16], norder;
static int64_t sleep_base; /* the sleepers' deadlines count from here */

/*
 * Sleeps until sleep_base + @arg ms: absolute deadlines, so that the order
 * holds however slowly the fibers start (valgrind on a loaded machine).
 */
static void *sleeper(void *arg)
{
	int64_t ms = (int64_t)(intptr_t)arg;

	fiber_sleep_until(reactor_get(), sleep_base + ms * IOU_MSEC);
	order[norder++] = (int)ms;
	return NULL;
}

static int test_run_returns_after_every_fiber(void)
{
	struct reactor *r = reactor_get();

	norder = 0;
	sleep_base = iou_now();
	ASSERT_EQ(fiber_spawn(r, sleeper, (void *)(intptr_t)30, NULL), 0);
	ASSERT_EQ(fiber_spawn(r, sleeper, (void *)(intptr_t)10, NULL), 0);
	ASSERT_EQ(fiber_spawn(r, sleeper, (void *)(intptr_t)20, NULL), 0);
	ASSERT_TRUE(reactor_runnable(r));
	ASSERT_EQ(reactor_run(r), 0);
	ASSERT_EQ(norder, 3);
	ASSERT_EQ(order[0], 10);
	ASSERT_EQ(order[1], 20);
	ASSERT_EQ(order[2], 30);
	ASSERT_TRUE(!reactor_runnable(r));
	/* Nothing to do: returns at once. */
	ASSERT_EQ(reactor_run(r), 0);
	ASSERT_EQ(reactor_destroy(r), 0);
	return 0;
}

/* A blocking call from main drives the reactor until its own completion. */
static int test_blocking_call_outside_fiber(void)
{
	struct reactor *r = reactor_get();
	int64_t t0 = iou_now();

	norder = 0;
	sleep_base = t0;
	ASSERT_EQ(fiber_spawn(r, sleeper, (void *)(intptr_t)5, NULL), 0);
	ASSERT_EQ(fiber_spawn(r, sleeper, (void *)(intptr_t)200, NULL), 0);
	ASSERT_EQ(fiber_sleep(r, 50 * IOU_MSEC), 0);
	ASSERT_GE(iou_now() - t0, 50 * IOU_MSEC);
	/* The short sleeper ran meanwhile; the long one is still pending. */
	ASSERT_EQ(norder, 1);
	ASSERT_EQ(order[0], 5);
	ASSERT_TRUE(reactor_runnable(r));
	ASSERT_EQ(reactor_run(r), 0);
	ASSERT_EQ(norder, 2);
	ASSERT_TRUE(!reactor_runnable(r));
	ASSERT_EQ(reactor_destroy(r), 0);
	return 0;
}

static void *sleep_forever(void *arg)
{
	(void)arg;
	fiber_sleep_until(reactor_get(), IOU_DEADLINE_NEVER);
	return NULL;
}

static int test_run_reports_deadlock(void)
{
	struct reactor *r = reactor_get();

	ASSERT_EQ(fiber_spawn(r, sleep_forever, NULL, NULL), 0);
	ASSERT_EQ(reactor_run(r), -EDEADLK);
	ASSERT_TRUE(reactor_runnable(r));
	/* Destroy discards the parked fiber. */
	ASSERT_EQ(reactor_destroy(r), 0);
	return 0;
}

static int destroy_rc;

static void *try_destroy(void *arg)
{
	struct reactor *r = arg;

	destroy_rc = reactor_destroy(r);
	return NULL;
}

static int other_thread_rc;

static int destroy_other(void *arg)
{
	other_thread_rc = reactor_destroy(arg);
	if (other_thread_rc == -EPERM)
		other_thread_rc = reactor_run(arg);
	other_thread_rc = other_thread_rc == -EPERM ? 0 : other_thread_rc;
	return 0;
}

static int test_misuse_errors(void)
{
	struct reactor *r = reactor_get(), *r2;
	struct reactor_options o;
	thrd_t t;
	int rc;

	ASSERT_EQ(reactor_create(NULL, &r2), -EEXIST);
	ASSERT_EQ(reactor_create(NULL, NULL), -EINVAL);
	ASSERT_EQ(reactor_run(NULL), -EINVAL);
	ASSERT_EQ(reactor_destroy(NULL), -EINVAL);
	ASSERT_EQ(reactor_cpu(NULL), -EINVAL);
	ASSERT_EQ(fiber_spawn(r, NULL, NULL, NULL), -EINVAL);
	ASSERT_EQ(fiber_spawn(NULL, try_destroy, NULL, NULL), -EINVAL);

	ASSERT_EQ(fiber_spawn(r, try_destroy, r, NULL), 0);
	ASSERT_EQ(reactor_run(r), 0);
	ASSERT_EQ(destroy_rc, -EBUSY);

	other_thread_rc = 1;
	ASSERT_EQ(thrd_create(&t, destroy_other, r), thrd_success);
	thrd_join(t, &rc);
	ASSERT_EQ(other_thread_rc, 0);

	ASSERT_EQ(reactor_destroy(r), 0);

	reactor_options_init(&o);
	o.stack_size = 1024;
	ASSERT_EQ(reactor_create(&o, &r2), -EINVAL);
	reactor_options_init(&o);
	o.ring_entries = 0;
	ASSERT_EQ(reactor_create(&o, &r2), -EINVAL);
	return 0;
}

/*
 * The variables test_options_and_environment() sets, saved and restored so
 * that a switch the whole run was started with (IOU_RING_FLAGS=none, ...)
 * still holds for the tests after it.
 */
static const char *const env_names[] = { "IOU_RING_ENTRIES", "IOU_STACK_SIZE", "IOU_PIN",
					 "IOU_RING_FLAGS" };
static char *env_saved[sizeof(env_names) / sizeof(env_names[0])];

static void env_save(void)
{
	for (size_t i = 0; i < sizeof(env_names) / sizeof(env_names[0]); i++) {
		const char *v = getenv(env_names[i]);

		env_saved[i] = v ? strdup(v) : NULL;
	}
}

static void env_restore(void)
{
	for (size_t i = 0; i < sizeof(env_names) / sizeof(env_names[0]); i++) {
		if (env_saved[i])
			setenv(env_names[i], env_saved[i], 1);
		else
			unsetenv(env_names[i]);
		free(env_saved[i]);
		env_saved[i] = NULL;
	}
}

static int check_options_and_environment(void)
{
	struct reactor_options o;
	struct reactor *r;

	setenv("IOU_RING_ENTRIES", "8", 1);
	setenv("IOU_STACK_SIZE", "64K", 1);
	setenv("IOU_PIN", "0", 1);
	setenv("IOU_RING_FLAGS", "coop_taskrun", 1);
	reactor_options_init(&o);
	ASSERT_EQ(o.ring_entries, 8);
	ASSERT_EQ(o.stack_size, 64 * 1024);
	ASSERT_TRUE(!o.pin);
	ASSERT_EQ(o.ring_flags, IOU_RING_COOP_TASKRUN);

	/* Malformed values leave the defaults. */
	setenv("IOU_RING_ENTRIES", "many", 1);
	setenv("IOU_STACK_SIZE", "12", 1);
	setenv("IOU_RING_FLAGS", "bogus", 1);
	reactor_options_init(&o);
	ASSERT_EQ(o.ring_entries, IOU_DEFAULT_RING_ENTRIES);
	ASSERT_EQ(o.stack_size, IOU_DEFAULT_STACK_SIZE);
	ASSERT_EQ(o.ring_flags, IOU_RING_ALL);

	setenv("IOU_RING_ENTRIES", "8", 1);
	setenv("IOU_RING_FLAGS", "none", 1);
	r = reactor_get();
	ASSERT_TRUE(r != NULL);
	ASSERT_EQ(reactor_ring_entries(r), 8);
	ASSERT_EQ(reactor_ring_flags(r), 0);
	ASSERT_EQ(reactor_cpu(r), -ENOTSUP);
	ASSERT_EQ(reactor_destroy(r), 0);
	return 0;
}

static int test_options_and_environment(void)
{
	int rc;

	env_save();
	rc = check_options_and_environment();
	env_restore();
	return rc;
}

static int test_flags_and_probe(void)
{
	struct reactor_options o;
	struct reactor *r;

	reactor_options_init(&o);
	o.ring_entries = 100; /* rounded up */
	ASSERT_EQ(reactor_create(&o, &r), 0);
	ASSERT_EQ(reactor_ring_entries(r), 128);
	/*
	 * Never a flag the options (IOU_RING_FLAGS, default all) do not allow;
	 * kernel 5.19+ accepts all of those, older kernels fall back, never fail.
	 */
	printf("# ring flags allowed 0x%x, granted 0x%x\n", o.ring_flags, reactor_ring_flags(r));
	ASSERT_EQ(reactor_ring_flags(r) & ~o.ring_flags, 0);
	if (reactor_ring_flags(r) & IOU_RING_DEFER_TASKRUN)
		ASSERT_TRUE(reactor_ring_flags(r) & IOU_RING_SINGLE_ISSUER);
	ASSERT_TRUE(reactor_op_supported(r, IORING_OP_NOP));
	ASSERT_TRUE(reactor_op_supported(r, IORING_OP_READV));
	ASSERT_TRUE(!reactor_op_supported(r, 255));
	ASSERT_TRUE(!reactor_op_supported(r, 100000));
	ASSERT_EQ(reactor_destroy(r), 0);
	return 0;
}

TEST_MAIN(T(test_get_is_per_thread_and_stable), T(test_two_threads_distinct_reactors_and_cpus),
	  T(test_thread_of_pinned_thread_spreads), T(test_cookie_eaten_once_at_thread_exit),
	  T(test_cookie_eaten_once_at_destroy), T(test_run_returns_after_every_fiber),
	  T(test_blocking_call_outside_fiber), T(test_run_reports_deadlock),
	  T(test_misuse_errors), T(test_options_and_environment), T(test_flags_and_probe))
