/* SPDX-License-Identifier: MIT */
/*
 * Helpers for the tests of operations (test-io, test-fs, test-op,
 * test-deadline, test-park), on top of harness.h: run a test body both
 * outside any fiber and inside one; run a body in a new C11 thread that
 * makes its own reactor; keep another thread's reactor alive to check that
 * calls on it are refused.  Header-only; include after harness.h.
 */
#ifndef IOU_TEST_OPS_HARNESS_H
#define IOU_TEST_OPS_HARNESS_H

#include <stdbool.h>
#include <threads.h>

#include <ioucontext/ioucontext.h>

#include "harness.h"

/* A test body, run once outside any fiber and once inside one. */
typedef int body_fn(struct reactor *r);

struct body_call {
	body_fn *fn;
	int rc; /* the body's result inside the fiber */
};

static inline void *body_fiber(void *arg)
{
	struct body_call *c = arg;

	FIBER_CHECK(fiber_self(reactor_get()) != NULL);
	c->rc = c->fn(reactor_get());
	return NULL;
}

/*
 * Run @fn from the thread's own context (as main does before reactor_run),
 * then from a fiber; both runs must pass and leave the reactor idle.
 */
static inline int in_both_contexts(body_fn *fn)
{
	struct reactor *r = reactor_get();
	struct body_call c = { .fn = fn, .rc = -1 };
	int rc;

	ASSERT_TRUE(r != NULL);
	ASSERT_PTR_EQ(fiber_self(r), NULL);
	rc = fn(r);
	/* A body that failed halfway must not leave its deadline behind. */
	fiber_set_deadline(r, IOU_DEADLINE_NEVER);
	if (rc) {
		fprintf(stderr, "  (failed in the thread's own context)\n");
		return 1;
	}
	ASSERT_TRUE(!reactor_runnable(r));
	ASSERT_EQ(fiber_spawn(r, body_fiber, &c, NULL), 0);
	ASSERT_EQ(reactor_run(r), 0);
	if (c.rc) {
		fprintf(stderr, "  (failed inside a fiber)\n");
		return 1;
	}
	ASSERT_TRUE(!reactor_runnable(r));
	ASSERT_NO_FIBER_FAILURES();
	return 0;
}

/* Run @body in a new C11 thread, which creates its own reactor; its result. */
struct test_job {
	int (*body)(void);	/* or, when NULL: */
	int (*body_flag)(bool); /* called with @flag */
	bool flag;
	int result;
};

static inline int test_job_main(void *arg)
{
	struct test_job *job = arg;

	job->result = job->body ? job->body() : job->body_flag(job->flag);
	return 0;
}

static inline int test_job_run(struct test_job *job)
{
	thrd_t t;

	job->result = -1;
	ASSERT_EQ(thrd_create(&t, test_job_main, job), thrd_success);
	ASSERT_EQ(thrd_join(t, NULL), thrd_success);
	return job->result;
}

static inline int test_in_thread(int (*body)(void))
{
	struct test_job job = { .body = body };

	return test_job_run(&job);
}

/*
 * The two ways a reactor goes, each in a thread of its own: @body(true)
 * calls reactor_destroy(), @body(false) leaves it to thread exit.
 */
static inline int test_teardown_both_ways(int (*body)(bool destroy))
{
	struct test_job job = { .body_flag = body };

	for (int destroy = 1; destroy >= 0; destroy--) {
		job.flag = destroy;
		ASSERT_EQ(test_job_run(&job), 0);
	}
	return 0;
}

/* A thread that creates its reactor, hands it over and waits to be released. */
struct test_foreign {
	mtx_t lock;
	cnd_t cond;
	struct reactor *r; /* the thread's reactor */
	bool ready;	   /* @r is set */
	bool release;	   /* the thread may exit (its reactor with it) */
	thrd_t thread;
};

static inline int test_foreign_main(void *arg)
{
	struct test_foreign *fo = arg;
	struct reactor *r = reactor_get();

	mtx_lock(&fo->lock);
	fo->r = r;
	fo->ready = true;
	cnd_broadcast(&fo->cond);
	while (!fo->release)
		cnd_wait(&fo->cond, &fo->lock);
	mtx_unlock(&fo->lock);
	return r ? 0 : 1;
}

/* Start a thread whose reactor is @fo->r on return (0 on success). */
static inline int test_foreign_start(struct test_foreign *fo)
{
	*fo = (struct test_foreign){ .r = NULL };
	ASSERT_EQ(mtx_init(&fo->lock, mtx_plain), thrd_success);
	ASSERT_EQ(cnd_init(&fo->cond), thrd_success);
	ASSERT_EQ(thrd_create(&fo->thread, test_foreign_main, fo), thrd_success);
	mtx_lock(&fo->lock);
	while (!fo->ready)
		cnd_wait(&fo->cond, &fo->lock);
	mtx_unlock(&fo->lock);
	return 0;
}

/* Let the thread exit (its reactor with it) and join it (0 on success). */
static inline int test_foreign_stop(struct test_foreign *fo)
{
	int res = -1;

	mtx_lock(&fo->lock);
	fo->release = true;
	cnd_broadcast(&fo->cond);
	mtx_unlock(&fo->lock);
	ASSERT_EQ(thrd_join(fo->thread, &res), thrd_success);
	cnd_destroy(&fo->cond);
	mtx_destroy(&fo->lock);
	ASSERT_EQ(res, 0);
	return 0;
}

#endif
