/* SPDX-License-Identifier: MIT */
/*
 * Tests for reactor groups, reactor_serve()/reactor_stop(), and fibers
 * spawned on another reactor (fiber_spawn_on() and the fiber_remote_*
 * calls): results, deadlines and cancellation on the join, remote cancel,
 * spawn errors, detach, and targets torn down before or while the fiber
 * runs.
 */
#include <errno.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <threads.h>
#include <unistd.h>

#include "ops-harness.h"

#define MEMBERS 3

static struct reactor_group *group;
static struct reactor *members[MEMBERS];
static atomic_int up;

/* Each member records its reactor, then serves until stopped. */
static int serving(struct reactor *r, unsigned index, void *arg)
{
	(void)arg;
	members[index] = r;
	atomic_fetch_add(&up, 1);
	return reactor_serve(r);
}

static int start_serving(void)
{
	atomic_store(&up, 0);
	ASSERT_EQ(reactor_group_start(MEMBERS, serving, NULL, &group), 0);
	while (atomic_load(&up) < MEMBERS)
		thrd_yield();
	return 0;
}

static int stop_serving(void)
{
	struct reactor *r = reactor_get();
	int res[MEMBERS];

	for (unsigned i = 0; i < MEMBERS; i++)
		ASSERT_EQ(reactor_stop(r, reactor_group_ref(group, i)), 0);
	ASSERT_EQ(reactor_group_join(group, res), 0);
	for (unsigned i = 0; i < MEMBERS; i++)
		ASSERT_EQ(res[i], 0);
	return 0;
}

/* ---- groups -------------------------------------------------------------------- */

struct census {
	atomic_int ran;
	int cpu[8];
	unsigned index_seen[8];
	thrd_t thread[8];
};

static int count_member(struct reactor *r, unsigned index, void *arg)
{
	struct census *c = arg;

	c->cpu[index] = reactor_cpu(r);
	c->index_seen[index] = index;
	c->thread[index] = thrd_current();
	FIBER_CHECK(reactor_current() == r);
	atomic_fetch_add(&c->ran, 1);
	return (int)index * 10;
}

static int group_basics(void)
{
	struct census c = { 0 };
	struct reactor_group *g;
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	int res[4];
	unsigned n = ncpu >= 2 && ncpu <= 4 ? (unsigned)ncpu : 2;

	ASSERT_EQ(reactor_group_start(0, count_member, &c, &g), -EINVAL);
	ASSERT_EQ(reactor_group_start(5000, count_member, &c, &g), -EINVAL);
	ASSERT_EQ(reactor_group_start(2, NULL, &c, &g), -EINVAL);
	ASSERT_EQ(reactor_group_start(2, count_member, &c, NULL), -EINVAL);
	ASSERT_EQ(reactor_group_join(NULL, NULL), -EINVAL);
	ASSERT_EQ(reactor_group_size(NULL), 0);
	ASSERT_TRUE(reactor_group_ref(NULL, 0) == NULL);
	ASSERT_EQ(reactor_group_start(n, count_member, &c, &g), 0);
	ASSERT_EQ(reactor_group_size(g), n);
	for (unsigned i = 0; i < n; i++)
		ASSERT_TRUE(reactor_group_ref(g, i) != NULL);
	ASSERT_EQ(reactor_group_join(g, res), 0);
	ASSERT_EQ(atomic_load(&c.ran), (int)n);
	for (unsigned i = 0; i < n; i++) {
		ASSERT_EQ(res[i], (int)i * 10);
		ASSERT_EQ(c.index_seen[i], i);
		/* Pinned, each to its own CPU while there are enough. */
		if (c.cpu[i] != -ENOTSUP) {
			ASSERT_GE(c.cpu[i], 0);
			for (unsigned j = 0; j < i; j++)
				ASSERT_NE(c.cpu[i], c.cpu[j]);
		}
	}
	ASSERT_NO_FIBER_FAILURES();
	return 0;
}

/* Joined from a thread without a reactor: plain thrd_join. */
static int join_without_reactor(void)
{
	struct census c = { 0 };
	struct reactor_group *g;

	ASSERT_TRUE(reactor_current() == NULL);
	ASSERT_EQ(reactor_group_start(2, count_member, &c, &g), 0);
	ASSERT_EQ(reactor_group_join(g, NULL), 0);
	ASSERT_EQ(atomic_load(&c.ran), 2);
	ASSERT_TRUE(reactor_current() == NULL);
	return 0;
}

static atomic_bool gate_open;
static struct reactor_group *self_group;

static int gated_member(struct reactor *r, unsigned index, void *arg)
{
	(void)arg;
	(void)index;
	/* Joining one's own group is refused. */
	FIBER_CHECK(reactor_group_join(self_group, NULL) == -EDEADLK);
	while (!atomic_load(&gate_open))
		fiber_sleep(r, IOU_MSEC);
	return 0;
}

/* The join obeys deadlines; the group stays joinable. */
static int join_deadline(void)
{
	struct reactor *r = reactor_get();
	int64_t t0;

	atomic_store(&gate_open, false);
	ASSERT_EQ(reactor_group_start(2, gated_member, NULL, &self_group), 0);
	t0 = iou_now();
	fiber_set_deadline(r, iou_deadline_after(20 * IOU_MSEC));
	ASSERT_EQ(reactor_group_join(self_group, NULL), -ETIMEDOUT);
	fiber_set_deadline(r, IOU_DEADLINE_NEVER);
	ASSERT_GE(iou_now() - t0, 20 * IOU_MSEC);
	atomic_store(&gate_open, true);
	ASSERT_EQ(reactor_group_join(self_group, NULL), 0);
	ASSERT_NO_FIBER_FAILURES();
	ASSERT_EQ(reactor_destroy(r), 0);
	return 0;
}

/* ---- serve and stop --------------------------------------------------------------- */

static void note(struct reactor *r, void *arg, int status)
{
	(void)r;
	if (status == 0)
		atomic_fetch_add((atomic_int *)arg, 1);
}

static int serve_stop(void)
{
	struct reactor *r = reactor_get();
	struct reactor_ref *me;
	atomic_int notes = 0;

	/* Nobody holds a handle: nothing could ever stop it. */
	ASSERT_EQ(reactor_serve(r), -EDEADLK);
	ASSERT_EQ(reactor_ref_get(r, &me), 0);
	/* A stop that arrived before the call counts. */
	ASSERT_EQ(reactor_post(r, me, note, &notes), 0);
	ASSERT_EQ(reactor_stop(r, me), 0);
	ASSERT_EQ(reactor_serve(r), 0);
	ASSERT_EQ(atomic_load(&notes), 1);
	ASSERT_EQ(reactor_stop(NULL, me), -EINVAL);
	ASSERT_EQ(reactor_serve(NULL), -EINVAL);
	reactor_ref_put(me);
	ASSERT_EQ(reactor_destroy(r), 0);
	return 0;
}

/* ---- fibers on other reactors ------------------------------------------------------- */

static void *twice(void *arg)
{
	/* Runs on the target's thread, in a fiber. */
	struct reactor *r = reactor_current();
	bool ours = false;

	for (unsigned i = 0; i < MEMBERS; i++)
		ours |= members[i] == r;
	FIBER_CHECK(ours && fiber_self(r) != NULL);
	fiber_yield(r);
	return (void *)((uintptr_t)arg * 2);
}

static int spawn_join(void)
{
	struct reactor *r = reactor_get();
	struct fiber_remote *f[60];
	void *res;

	if (start_serving())
		return 1;
	ASSERT_EQ(fiber_spawn_on(NULL, reactor_group_ref(group, 0), NULL, twice, NULL, &f[0]),
		  -EINVAL);
	ASSERT_EQ(fiber_spawn_on(r, NULL, NULL, twice, NULL, &f[0]), -EINVAL);
	ASSERT_EQ(fiber_spawn_on(r, reactor_group_ref(group, 0), NULL, NULL, NULL, &f[0]), -EINVAL);
	ASSERT_EQ(fiber_spawn_on(r, reactor_group_ref(group, 0), NULL, twice, NULL, NULL), -EINVAL);
	for (uintptr_t i = 0; i < 60; i++) {
		struct fiber_options o = { .name = "remote" };

		ASSERT_EQ(fiber_spawn_on(r, reactor_group_ref(group, i % MEMBERS), &o, twice,
					 (void *)i, &f[i]),
			  0);
	}
	for (uintptr_t i = 0; i < 60; i++) {
		ASSERT_EQ(fiber_remote_join(f[i], &res), 0);
		ASSERT_EQ((uintptr_t)res, i * 2);
	}
	ASSERT_EQ(fiber_remote_join(NULL, &res), -EINVAL);
	if (stop_serving())
		return 1;
	ASSERT_NO_FIBER_FAILURES();
	ASSERT_EQ(reactor_destroy(r), 0);
	return 0;
}

static void *slow(void *arg)
{
	struct reactor *r = reactor_current();
	int ret = fiber_sleep(r, (int64_t)(intptr_t)arg * IOU_MSEC);

	return (void *)(intptr_t)ret;
}

/* From inside a fiber: deadline on the join, then join again. */
static void *joiner_fiber(void *arg)
{
	struct reactor *r = reactor_current();
	struct fiber_remote *f;
	void *res = (void *)1;

	(void)arg;
	FIBER_CHECK(fiber_spawn_on(r, reactor_group_ref(group, 1), NULL, slow, (void *)(intptr_t)50,
				   &f) == 0);
	fiber_set_deadline(r, iou_deadline_after(5 * IOU_MSEC));
	FIBER_CHECK(fiber_remote_join(f, &res) == -ETIMEDOUT);
	fiber_set_deadline(r, IOU_DEADLINE_NEVER);
	FIBER_CHECK(fiber_remote_join(f, &res) == 0);
	FIBER_CHECK(res == NULL);
	/* Cancel: the remote sleep ends with -ECANCELED. */
	FIBER_CHECK(fiber_spawn_on(r, reactor_group_ref(group, 2), NULL, slow,
				   (void *)(intptr_t)100000, &f) == 0);
	FIBER_CHECK(fiber_remote_cancel(r, f) == 0);
	FIBER_CHECK(fiber_remote_join(f, &res) == 0);
	FIBER_CHECK((intptr_t)res == -ECANCELED);
	/* A cancelled joiner: the join fails, the handle stays good. */
	FIBER_CHECK(fiber_spawn_on(r, reactor_group_ref(group, 0), NULL, slow, (void *)(intptr_t)20,
				   &f) == 0);
	fiber_cancel(fiber_self(r));
	FIBER_CHECK(fiber_remote_join(f, &res) == -ECANCELED);
	FIBER_CHECK(fiber_remote_detach(f) == 0);
	return NULL;
}

static int join_in_fiber(void)
{
	struct reactor *r = reactor_get();
	struct fiber *f;

	if (start_serving())
		return 1;
	ASSERT_EQ(fiber_spawn(r, joiner_fiber, NULL, &f), 0);
	ASSERT_EQ(fiber_join(f, NULL), 0);
	if (stop_serving())
		return 1;
	ASSERT_NO_FIBER_FAILURES();
	ASSERT_EQ(reactor_destroy(r), 0);
	return 0;
}

static atomic_int detached_ran;

static void *mark(void *arg)
{
	(void)arg;
	atomic_fetch_add(&detached_ran, 1);
	return NULL;
}

static int spawn_errors_and_detach(void)
{
	struct reactor *r = reactor_get();
	struct fiber_options tiny = { .stack_size = 1024 };
	struct fiber_remote *f;
	void *res;

	if (start_serving())
		return 1;
	/* The fiber cannot be started there: the join says why. */
	ASSERT_EQ(fiber_spawn_on(r, reactor_group_ref(group, 0), &tiny, mark, NULL, &f), 0);
	ASSERT_EQ(fiber_remote_join(f, &res), -EINVAL);
	/* Detached: runs anyway. */
	atomic_store(&detached_ran, 0);
	for (int i = 0; i < 10; i++) {
		ASSERT_EQ(fiber_spawn_on(r, reactor_group_ref(group, 1), NULL, mark, NULL, &f), 0);
		ASSERT_EQ(fiber_remote_detach(f), 0);
	}
	ASSERT_EQ(fiber_remote_detach(NULL), -EINVAL);
	ASSERT_EQ(fiber_remote_cancel(r, NULL), -EINVAL);
	if (stop_serving())
		return 1;
	ASSERT_EQ(atomic_load(&detached_ran), 10);
	ASSERT_EQ(reactor_destroy(r), 0);
	return 0;
}

/* A target torn down while the remote fiber runs, or before it starts. */
struct doomed {
	struct reactor_ref *ref;
	atomic_int ready;
	atomic_bool go;
	bool poll; /* run spawned fibers before dying */
};

static int doomed_main(void *arg)
{
	struct doomed *d = arg;
	struct reactor *r = reactor_get();

	if (!r || reactor_ref_get(r, &d->ref) < 0)
		return 1;
	atomic_store(&d->ready, 1);
	while (!atomic_load(&d->go)) {
		if (d->poll)
			fiber_sleep(r, IOU_MSEC);
		else
			thrd_yield();
	}
	return 0; /* thread exit destroys the reactor, parked fibers and all */
}

static int remote_teardown(void)
{
	struct reactor *r = reactor_get();
	struct fiber_remote *running, *queued;
	void *res;

	for (int poll = 1; poll >= 0; poll--) {
		struct doomed d = { .poll = poll };
		thrd_t t;
		int rc = -1;

		ASSERT_EQ(thrd_create(&t, doomed_main, &d), thrd_success);
		while (!atomic_load(&d.ready))
			thrd_yield();
		ASSERT_EQ(fiber_spawn_on(r, d.ref, NULL, slow, (void *)(intptr_t)100000, &running),
			  0);
		if (poll) {
			/* Let it start: it sleeps there for 100 s. */
			fiber_sleep(r, 20 * IOU_MSEC);
		}
		ASSERT_EQ(fiber_spawn_on(r, d.ref, NULL, slow, (void *)(intptr_t)1, &queued), 0);
		if (!poll) {
			/* Not polling: both calls are still in its mailbox. */
			ASSERT_EQ(fiber_remote_cancel(r, queued), 0);
		}
		atomic_store(&d.go, true);
		ASSERT_EQ(fiber_remote_join(running, &res), -ESHUTDOWN);
		rc = fiber_remote_join(queued, &res);
		/* Polling, the short one may have finished before the end. */
		if (!(poll && rc == 0))
			ASSERT_EQ(rc, -ESHUTDOWN);
		ASSERT_EQ(thrd_join(t, &rc), thrd_success);
		ASSERT_EQ(rc, 0);
		/* Gone: spawning there now fails at once. */
		ASSERT_EQ(fiber_spawn_on(r, d.ref, NULL, slow, NULL, &queued), -ESHUTDOWN);
		reactor_ref_put(d.ref);
	}
	ASSERT_EQ(reactor_destroy(r), 0);
	return 0;
}

/* Members post to each other right from the start, before all are up. */
static atomic_int greeted;

static void greet(struct reactor *r, void *arg, int status)
{
	(void)r;
	(void)arg;
	if (status == 0)
		atomic_fetch_add(&greeted, 1);
}

static int greeting_member(struct reactor *r, unsigned index, void *arg)
{
	unsigned n = (unsigned)(uintptr_t)arg;

	for (unsigned i = 0; i < n; i++)
		if (i != index && reactor_post(r, reactor_group_ref(self_group, i), greet, NULL))
			return -1;
	/* Everyone greeted everyone before the last stop arrives. */
	while (atomic_load(&greeted) < (int)(n * (n - 1)))
		fiber_sleep(r, IOU_MSEC / 4);
	return 0;
}

static int early_posts(void)
{
	int res[4];

	atomic_store(&greeted, 0);
	ASSERT_EQ(reactor_group_start(4, greeting_member, (void *)(uintptr_t)4, &self_group), 0);
	ASSERT_EQ(reactor_group_join(self_group, res), 0);
	for (int i = 0; i < 4; i++)
		ASSERT_EQ(res[i], 0);
	ASSERT_EQ(atomic_load(&greeted), 12);
	return 0;
}

/*
 * Regression: a fiber cancelled before it ran, which then sleeps, used to
 * queue itself while running (the up-front interrupt woke its own wait) and
 * was resumed again after finishing, re-running its body on a pooled stack.
 */
static atomic_int body_runs;

static void *sleeper_once(void *arg)
{
	struct reactor *r = reactor_current();

	(void)arg;
	atomic_fetch_add(&body_runs, 1);
	FIBER_CHECK(fiber_sleep(r, 50 * IOU_MSEC) == -ECANCELED);
	return NULL;
}

static void *busy_yielder(void *arg)
{
	(void)arg;
	for (int i = 0; i < 100; i++)
		fiber_yield(reactor_current());
	return NULL;
}

static int cancel_before_sleep(void)
{
	struct reactor *r = reactor_get();
	struct fiber *f;

	atomic_store(&body_runs, 0);
	ASSERT_EQ(fiber_spawn(r, sleeper_once, NULL, &f), 0);
	ASSERT_EQ(fiber_cancel(f), 0);
	ASSERT_EQ(fiber_detach(f), 0);
	ASSERT_EQ(fiber_spawn(r, busy_yielder, NULL, NULL), 0);
	ASSERT_EQ(reactor_run(r), 0);
	ASSERT_EQ(atomic_load(&body_runs), 1);
	ASSERT_NO_FIBER_FAILURES();
	ASSERT_EQ(reactor_destroy(r), 0);
	return 0;
}

TEST_MAIN(T(cancel_before_sleep), T(group_basics), T(join_without_reactor), T(join_deadline),
	  T(serve_stop), T(spawn_join), T(join_in_fiber), T(spawn_errors_and_detach),
	  T(remote_teardown), T(early_posts))
