/* SPDX-License-Identifier: MIT */
/*
 * Same-reactor synchronisation (<ioucontext/sync.h>): mutex, condition
 * variable, semaphore, wait group and channel.  For each: the basic
 * semantics and errors; FIFO service and handoff (a waiter is served before
 * fibers that come later, so none starves); the deadline and cancellation on
 * every wait, including the races where a waiter is handed something and
 * then interrupted (it keeps it) or interrupted first (the next waiter gets
 * it); waits from the thread's own context; -EPERM from another thread.
 * Then a randomized stress run: 5,000 fibers on all five primitives at once
 * with random yields, deadlines and cancels, driven by a seeded PRNG
 * (IOU_TEST_SEED=<n> reproduces a run), checking mutual exclusion, that the
 * semaphore never over-admits, that every item is received exactly once and
 * in order per producer, and that nothing is left waiting (no lost wake-up).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <threads.h>
#include <unistd.h>

#include <ioucontext/ioucontext.h>

#include "ops-harness.h"

/* ---- Helpers ------------------------------------------------------------------ */

/* Order in which fibers got what they waited for. */
#define MAX_ORDER 4096
static int order[MAX_ORDER], norder;

static void record(int id)
{
	if (norder < MAX_ORDER)
		order[norder++] = id;
}

static int check_order(int first, int n)
{
	ASSERT_EQ(norder, n);
	for (int i = 0; i < n; i++)
		ASSERT_EQ(order[i], first + i);
	return 0;
}

static void *nop_fn(void *arg)
{
	(void)arg;
	return NULL;
}

/* Busy-wait (without parking) until CLOCK_MONOTONIC passes @t. */
static void spin_until(int64_t t)
{
	while (iou_now() <= t)
		;
}

/*
 * Put @n finishing fibers in the run queue ahead of whatever is woken next:
 * the driver's batch budget (128 switches) then runs out before that fiber
 * resumes, so expired timers fire while it is still queued.
 */
static int crowd(struct reactor *r, int n)
{
	for (int i = 0; i < n; i++)
		ASSERT_EQ(fiber_spawn(r, nop_fn, NULL, NULL), 0);
	return 0;
}

static int64_t ms(int64_t n)
{
	return n * IOU_MSEC * test_slowdown();
}

/* What every waiting test fiber does: its object, its deadline, its result. */
struct job {
	int id;
	bool timed; /* set @deadline before waiting */
	int64_t deadline;
	int hold;	/* yields while holding what it got */
	bool keep;	/* do not release what it got */
	int rc;		/* the wait's result */
	int64_t t_done; /* when the wait returned */
	struct iou_mutex *m;
	struct iou_cond *c;
	struct iou_sem *s;
	struct iou_waitgroup *wg;
	struct iou_chan *ch;
	int item;	 /* item to send, or the one received */
	bool held_after; /* cond: the mutex was held on return */
};

static void job_begin(struct job *j)
{
	j->rc = 99;
	if (j->timed)
		fiber_set_deadline(reactor_get(), j->deadline);
}

static void job_hold(struct job *j)
{
	for (int i = 0; i < j->hold; i++)
		fiber_yield(reactor_get());
}

static void *lock_fn(void *arg)
{
	struct job *j = arg;

	job_begin(j);
	j->rc = iou_mutex_lock(j->m);
	j->t_done = iou_now();
	if (j->rc == 0) {
		record(j->id);
		job_hold(j);
		if (!j->keep)
			FIBER_CHECK(iou_mutex_unlock(j->m) == 0);
	}
	return NULL;
}

static void *cond_fn(void *arg)
{
	struct job *j = arg;

	FIBER_CHECK(iou_mutex_lock(j->m) == 0);
	job_begin(j);
	j->rc = iou_cond_wait(j->c, j->m);
	j->t_done = iou_now();
	if (j->rc == 0)
		record(j->id);
	j->held_after = iou_mutex_unlock(j->m) == 0;
	return NULL;
}

static void *acquire_fn(void *arg)
{
	struct job *j = arg;

	job_begin(j);
	j->rc = iou_sem_acquire(j->s);
	j->t_done = iou_now();
	if (j->rc == 0) {
		record(j->id);
		job_hold(j);
		if (!j->keep)
			FIBER_CHECK(iou_sem_release(j->s) == 0);
	}
	return NULL;
}

static void *wg_wait_fn(void *arg)
{
	struct job *j = arg;

	job_begin(j);
	j->rc = iou_waitgroup_wait(j->wg);
	j->t_done = iou_now();
	if (j->rc == 0)
		record(j->id);
	return NULL;
}

static void *send_fn(void *arg)
{
	struct job *j = arg;

	job_begin(j);
	j->rc = iou_chan_send(j->ch, &j->item);
	j->t_done = iou_now();
	if (j->rc == 0)
		record(j->id);
	return NULL;
}

static void *recv_fn(void *arg)
{
	struct job *j = arg;

	job_begin(j);
	j->item = -1;
	j->rc = iou_chan_recv(j->ch, &j->item);
	j->t_done = iou_now();
	if (j->rc == 0)
		record(j->id);
	return NULL;
}

/* Spawn @n jobs of @fn over @jobs (ids @first..), joinable into @f. */
static int spawn_jobs(fiber_fn *fn, struct job *jobs, struct fiber **f, int n)
{
	for (int i = 0; i < n; i++)
		ASSERT_EQ(fiber_spawn(reactor_get(), fn, &jobs[i], &f[i]), 0);
	return 0;
}

static int join_all(struct fiber **f, int n)
{
	for (int i = 0; i < n; i++)
		ASSERT_EQ(fiber_join(f[i], NULL), 0);
	return 0;
}

/* ---- Mutex -------------------------------------------------------------------- */

static struct iou_mutex static_mutex = IOU_MUTEX_INIT;

static void *unlock_foreign_fn(void *arg)
{
	struct iou_mutex *m = arg;

	/* Held by the thread's own context: not ours to unlock. */
	FIBER_CHECK(iou_mutex_unlock(m) == -EPERM);
	FIBER_CHECK(iou_mutex_trylock(m) == -EBUSY);
	return NULL;
}

static void *lock_and_leave_fn(void *arg)
{
	FIBER_CHECK(iou_mutex_lock(arg) == 0);
	return NULL;
}

static int test_mutex_basic(void)
{
	struct reactor *r = reactor_get();
	struct iou_mutex m;
	struct fiber *f;

	ASSERT_EQ(iou_mutex_init(NULL), -EINVAL);
	ASSERT_EQ(iou_mutex_lock(NULL), -EINVAL);
	ASSERT_EQ(iou_mutex_trylock(NULL), -EINVAL);
	ASSERT_EQ(iou_mutex_unlock(NULL), -EINVAL);
	ASSERT_EQ(iou_mutex_destroy(NULL), -EINVAL);
	ASSERT_EQ(iou_mutex_init(&m), 0);
	ASSERT_EQ(iou_mutex_unlock(&m), -EPERM); /* not held */
	ASSERT_EQ(iou_mutex_lock(&m), 0);
	ASSERT_EQ(iou_mutex_lock(&m), -EDEADLK);
	ASSERT_EQ(iou_mutex_trylock(&m), -EBUSY);
	ASSERT_EQ(iou_mutex_destroy(&m), -EBUSY);
	ASSERT_EQ(fiber_spawn(r, unlock_foreign_fn, &m, &f), 0);
	ASSERT_EQ(fiber_join(f, NULL), 0);
	ASSERT_EQ(iou_mutex_unlock(&m), 0);
	ASSERT_EQ(iou_mutex_unlock(&m), -EPERM);
	ASSERT_EQ(iou_mutex_trylock(&m), 0);
	ASSERT_EQ(iou_mutex_unlock(&m), 0);
	/* A fiber that ends holding it: still its, nobody else's to unlock. */
	ASSERT_EQ(fiber_spawn(r, lock_and_leave_fn, &m, &f), 0);
	ASSERT_EQ(fiber_join(f, NULL), 0);
	ASSERT_EQ(iou_mutex_unlock(&m), -EPERM);
	ASSERT_EQ(iou_mutex_destroy(&m), -EBUSY);
	ASSERT_EQ(iou_mutex_init(&m), 0);
	ASSERT_EQ(iou_mutex_destroy(&m), 0);
	/* Statically initialised. */
	ASSERT_EQ(iou_mutex_lock(&static_mutex), 0);
	ASSERT_EQ(iou_mutex_unlock(&static_mutex), 0);
	ASSERT_NO_FIBER_FAILURES();
	return 0;
}

#define NQ 100
#define NBARGE 10

static int test_mutex_fifo_handoff(void)
{
	struct reactor *r = reactor_get();
	struct iou_mutex m = IOU_MUTEX_INIT;
	static struct job jobs[NQ + NBARGE];
	static struct fiber *f[NQ + NBARGE];

	norder = 0;
	for (int i = 0; i < NQ + NBARGE; i++)
		jobs[i] = (struct job){ .id = i, .m = &m, .hold = 1 };
	ASSERT_EQ(iou_mutex_lock(&m), 0);
	ASSERT_EQ(spawn_jobs(lock_fn, jobs, f, NQ), 0);
	ASSERT_EQ(fiber_yield(r), 0); /* all queue, in spawn order */
	ASSERT_EQ(norder, 0);
	ASSERT_EQ(iou_mutex_unlock(&m), 0);
	/* Handed to the first waiter at once: nobody can barge in now. */
	ASSERT_EQ(iou_mutex_trylock(&m), -EBUSY);
	ASSERT_EQ(spawn_jobs(lock_fn, jobs + NQ, f + NQ, NBARGE), 0);
	ASSERT_EQ(join_all(f, NQ + NBARGE), 0);
	for (int i = 0; i < NQ + NBARGE; i++)
		ASSERT_EQ(jobs[i].rc, 0);
	ASSERT_EQ(check_order(0, NQ + NBARGE), 0);
	ASSERT_EQ(iou_mutex_destroy(&m), 0);
	ASSERT_NO_FIBER_FAILURES();
	return 0;
}

/* Starvation: a fiber relocking in a tight loop cannot keep a waiter out. */
struct greedy {
	struct iou_mutex m;
	int round;     /* the greedy fiber's current iteration */
	int queued_at; /* round when the waiter queued */
	int served_at; /* round when the waiter got the lock */
};

static void *greedy_fn(void *arg)
{
	struct greedy *g = arg;

	for (g->round = 0; g->round < 1000; g->round++) {
		FIBER_CHECK(iou_mutex_lock(&g->m) == 0);
		fiber_yield(reactor_get());
		FIBER_CHECK(iou_mutex_unlock(&g->m) == 0);
	}
	return NULL;
}

static void *starving_fn(void *arg)
{
	struct greedy *g = arg;

	for (int i = 0; i < 3; i++)
		fiber_yield(reactor_get());
	g->queued_at = g->round;
	FIBER_CHECK(iou_mutex_lock(&g->m) == 0);
	g->served_at = g->round;
	FIBER_CHECK(iou_mutex_unlock(&g->m) == 0);
	return NULL;
}

static int test_mutex_no_starvation(void)
{
	struct reactor *r = reactor_get();
	struct greedy g = { .m = IOU_MUTEX_INIT, .served_at = -1 };
	struct fiber *a, *b;

	ASSERT_EQ(fiber_spawn(r, greedy_fn, &g, &a), 0);
	ASSERT_EQ(fiber_spawn(r, starving_fn, &g, &b), 0);
	ASSERT_EQ(fiber_join(a, NULL), 0);
	ASSERT_EQ(fiber_join(b, NULL), 0);
	/* Served at the greedy fiber's next unlock, not after its 1,000 rounds. */
	ASSERT_GE(g.served_at, g.queued_at);
	ASSERT_LE(g.served_at, g.queued_at + 1);
	ASSERT_NO_FIBER_FAILURES();
	return 0;
}

static void *cancel_self_then_lock_fn(void *arg)
{
	struct iou_mutex *m = arg;

	FIBER_CHECK(fiber_cancel(fiber_self(reactor_get())) == 0);
	/* Free: taken at once even though cancelled. */
	FIBER_CHECK(iou_mutex_lock(m) == 0);
	FIBER_CHECK(iou_mutex_unlock(m) == 0);
	return NULL;
}

static int test_mutex_interrupted(void)
{
	struct reactor *r = reactor_get();
	struct iou_mutex m = IOU_MUTEX_INIT;
	struct job j[3];
	struct fiber *f[3];

	/* A deadline ends the wait, and the waiter leaves the queue. */
	norder = 0;
	ASSERT_EQ(iou_mutex_lock(&m), 0);
	j[0] = (struct job){ .id = 0,
			     .m = &m,
			     .timed = true,
			     .deadline = iou_deadline_after(ms(10)) };
	j[1] = (struct job){ .id = 1, .m = &m };
	ASSERT_EQ(spawn_jobs(lock_fn, j, f, 2), 0);
	ASSERT_EQ(fiber_join(f[0], NULL), 0);
	ASSERT_EQ(j[0].rc, -ETIMEDOUT);
	ASSERT_GE(j[0].t_done, j[0].deadline);
	ASSERT_EQ(iou_mutex_unlock(&m), 0); /* to the second, not the timed-out one */
	ASSERT_EQ(fiber_join(f[1], NULL), 0);
	ASSERT_EQ(j[1].rc, 0);
	ASSERT_EQ(check_order(1, 1), 0);

	/* IOU_DEADLINE_NOW: fails at once when it would wait. */
	ASSERT_EQ(iou_mutex_lock(&m), 0);
	j[0] = (struct job){ .id = 0, .m = &m, .timed = true, .deadline = IOU_DEADLINE_NOW };
	ASSERT_EQ(spawn_jobs(lock_fn, j, f, 1), 0);
	ASSERT_EQ(fiber_join(f[0], NULL), 0);
	ASSERT_EQ(j[0].rc, -ETIMEDOUT);
	ASSERT_EQ(iou_mutex_unlock(&m), 0);
	ASSERT_EQ(iou_mutex_trylock(&m), 0); /* nobody queued */
	ASSERT_EQ(iou_mutex_unlock(&m), 0);

	/* Cancel ends the wait; a cancelled fiber can still take a free mutex. */
	ASSERT_EQ(iou_mutex_lock(&m), 0);
	j[0] = (struct job){ .id = 0, .m = &m };
	ASSERT_EQ(spawn_jobs(lock_fn, j, f, 1), 0);
	ASSERT_EQ(fiber_yield(r), 0);
	ASSERT_EQ(fiber_cancel(f[0]), 0);
	ASSERT_EQ(fiber_join(f[0], NULL), 0);
	ASSERT_EQ(j[0].rc, -ECANCELED);
	ASSERT_EQ(iou_mutex_unlock(&m), 0);
	ASSERT_EQ(fiber_spawn(r, cancel_self_then_lock_fn, &m, &f[0]), 0);
	ASSERT_EQ(fiber_join(f[0], NULL), 0);
	/* ... but a cancelled fiber that would wait fails at once. */
	ASSERT_EQ(iou_mutex_lock(&m), 0);
	ASSERT_EQ(spawn_jobs(lock_fn, j, f, 1), 0);
	ASSERT_EQ(fiber_cancel(f[0]), 0); /* before it ever runs */
	ASSERT_EQ(fiber_join(f[0], NULL), 0);
	ASSERT_EQ(j[0].rc, -ECANCELED);
	ASSERT_EQ(iou_mutex_unlock(&m), 0);

	/* Handed the lock, then cancelled before it ran: it keeps the lock. */
	norder = 0;
	ASSERT_EQ(iou_mutex_lock(&m), 0);
	j[0] = (struct job){ .id = 0, .m = &m, .keep = true };
	j[1] = (struct job){ .id = 1, .m = &m };
	ASSERT_EQ(spawn_jobs(lock_fn, j, f, 2), 0);
	ASSERT_EQ(fiber_yield(r), 0);
	ASSERT_EQ(iou_mutex_unlock(&m), 0);
	ASSERT_EQ(fiber_cancel(f[0]), 0);
	ASSERT_EQ(fiber_join(f[0], NULL), 0);
	ASSERT_EQ(j[0].rc, 0);
	ASSERT_EQ(iou_mutex_trylock(&m), -EBUSY); /* still f[0]'s */
	ASSERT_EQ(j[1].rc, 99);			  /* still waiting */
	ASSERT_EQ(iou_mutex_destroy(&m), -EBUSY);
	/* A finished fiber's mutex cannot be unlocked by us: start afresh. */
	ASSERT_EQ(fiber_cancel(f[1]), 0);
	ASSERT_EQ(fiber_join(f[1], NULL), 0);
	ASSERT_EQ(j[1].rc, -ECANCELED);
	ASSERT_EQ(iou_mutex_init(&m), 0);

	/* Handed the lock, then its deadline fired while it was still queued. */
	ASSERT_EQ(iou_mutex_lock(&m), 0);
	j[0] = (struct job){ .id = 0,
			     .m = &m,
			     .timed = true,
			     .deadline = iou_deadline_after(ms(20)) };
	ASSERT_EQ(spawn_jobs(lock_fn, j, f, 1), 0);
	ASSERT_EQ(fiber_yield(r), 0);
	ASSERT_EQ(crowd(r, 300), 0);
	ASSERT_EQ(iou_mutex_unlock(&m), 0);
	spin_until(j[0].deadline);
	ASSERT_EQ(fiber_join(f[0], NULL), 0);
	ASSERT_EQ(j[0].rc, 0);
	ASSERT_GT(j[0].t_done, j[0].deadline);
	ASSERT_EQ(iou_mutex_trylock(&m), 0);

	/* Interrupted first: the next waiter gets the lock, nothing is lost. */
	norder = 0;
	j[0] = (struct job){ .id = 0,
			     .m = &m,
			     .timed = true,
			     .deadline = iou_deadline_after(ms(5)) };
	j[1] = (struct job){ .id = 1, .m = &m };
	j[2] = (struct job){ .id = 2, .m = &m };
	ASSERT_EQ(spawn_jobs(lock_fn, j, f, 3), 0);
	ASSERT_EQ(fiber_join(f[0], NULL), 0);
	ASSERT_EQ(j[0].rc, -ETIMEDOUT);
	ASSERT_EQ(iou_mutex_unlock(&m), 0);
	ASSERT_EQ(join_all(f + 1, 2), 0);
	ASSERT_EQ(check_order(1, 2), 0);
	ASSERT_EQ(iou_mutex_destroy(&m), 0);
	ASSERT_NO_FIBER_FAILURES();
	return 0;
}

/* Hold @m across a sleep, or park holding it until unparked. */
struct holder {
	struct iou_mutex *m;
	int64_t sleep;	  /* > 0: sleep this long; 0: park */
	int64_t t_unlock; /* when it unlocked */
};

static void *holder_fn(void *arg)
{
	struct holder *h = arg;
	struct reactor *r = reactor_get();

	FIBER_CHECK(iou_mutex_lock(h->m) == 0);
	if (h->sleep)
		FIBER_CHECK(fiber_sleep(r, h->sleep) == 0);
	else
		FIBER_CHECK(fiber_park(r, IOU_DEADLINE_NEVER) == 1);
	h->t_unlock = iou_now();
	FIBER_CHECK(iou_mutex_unlock(h->m) == 0);
	return NULL;
}

static int test_mutex_thread_context(void)
{
	struct reactor *r = reactor_get();
	struct iou_mutex m = IOU_MUTEX_INIT;
	struct holder h = { .m = &m, .sleep = ms(5) };
	struct job j = { .id = 0, .m = &m, .hold = 2 };
	struct fiber *f, *g;

	/* The thread's own context hands the lock to a fiber ... */
	ASSERT_EQ(iou_mutex_lock(&m), 0);
	ASSERT_EQ(fiber_spawn(r, lock_fn, &j, &f), 0);
	ASSERT_EQ(fiber_yield(r), 0);
	ASSERT_EQ(iou_mutex_unlock(&m), 0);
	ASSERT_EQ(iou_mutex_trylock(&m), -EBUSY);
	/* ... and waits for it, driving the reactor meanwhile. */
	ASSERT_EQ(iou_mutex_lock(&m), 0);
	ASSERT_EQ(j.rc, 0);
	ASSERT_EQ(iou_mutex_unlock(&m), 0);
	ASSERT_EQ(fiber_join(f, NULL), 0);
	ASSERT_EQ(fiber_spawn(r, holder_fn, &h, &f), 0);
	ASSERT_EQ(fiber_yield(r), 0);
	ASSERT_EQ(iou_mutex_lock(&m), 0);
	ASSERT_GE(iou_now(), h.t_unlock);
	ASSERT_EQ(iou_mutex_unlock(&m), 0);
	ASSERT_EQ(fiber_join(f, NULL), 0);

	/* The thread's deadline bounds its wait. */
	h = (struct holder){ .m = &m, .sleep = ms(100) };
	ASSERT_EQ(fiber_spawn(r, holder_fn, &h, &f), 0);
	ASSERT_EQ(fiber_yield(r), 0);
	fiber_set_deadline(r, iou_deadline_after(ms(5)));
	ASSERT_EQ(iou_mutex_lock(&m), -ETIMEDOUT);
	fiber_set_deadline(r, IOU_DEADLINE_NEVER);
	ASSERT_EQ(fiber_join(f, NULL), 0);
	ASSERT_EQ(iou_mutex_trylock(&m), 0); /* nobody left queued */
	ASSERT_EQ(iou_mutex_unlock(&m), 0);

	/* Nothing could ever release it: -EDEADLK, not a hang. */
	h = (struct holder){ .m = &m };
	ASSERT_EQ(fiber_spawn(r, holder_fn, &h, &g), 0);
	ASSERT_EQ(fiber_yield(r), 0);
	ASSERT_EQ(iou_mutex_lock(&m), -EDEADLK);
	ASSERT_EQ(fiber_unpark(g), 0);
	ASSERT_EQ(fiber_join(g, NULL), 0);
	ASSERT_EQ(iou_mutex_trylock(&m), 0);
	ASSERT_EQ(iou_mutex_unlock(&m), 0);
	ASSERT_TRUE(!reactor_runnable(r));
	ASSERT_NO_FIBER_FAILURES();
	return 0;
}

/* ---- Condition variable --------------------------------------------------------- */

static int test_cond_basic(void)
{
	struct reactor *r = reactor_get();
	struct iou_mutex m = IOU_MUTEX_INIT, other = IOU_MUTEX_INIT;
	struct iou_cond c;
	static struct job j[50];
	static struct fiber *f[50];

	ASSERT_EQ(iou_cond_init(NULL), -EINVAL);
	ASSERT_EQ(iou_cond_wait(NULL, &m), -EINVAL);
	ASSERT_EQ(iou_cond_wait(&c, NULL), -EINVAL);
	ASSERT_EQ(iou_cond_signal(NULL), -EINVAL);
	ASSERT_EQ(iou_cond_broadcast(NULL), -EINVAL);
	ASSERT_EQ(iou_cond_destroy(NULL), -EINVAL);
	ASSERT_EQ(iou_cond_init(&c), 0);
	ASSERT_EQ(iou_cond_signal(&c), 0); /* nobody waits: nothing happens */
	ASSERT_EQ(iou_cond_broadcast(&c), 0);
	ASSERT_EQ(iou_cond_wait(&c, &m), -EPERM); /* not holding it */
	ASSERT_EQ(iou_mutex_lock(&other), 0);
	ASSERT_EQ(iou_cond_wait(&c, &m), -EPERM);
	ASSERT_EQ(iou_mutex_unlock(&other), 0);

	/* Signals wake in FIFO order, one each; broadcast wakes the rest. */
	norder = 0;
	for (int i = 0; i < 50; i++)
		j[i] = (struct job){ .id = i, .m = &m, .c = &c };
	ASSERT_EQ(spawn_jobs(cond_fn, j, f, 50), 0);
	ASSERT_EQ(fiber_yield(r), 0);
	ASSERT_EQ(iou_cond_destroy(&c), -EBUSY);
	for (int i = 0; i < 10; i++)
		ASSERT_EQ(iou_cond_signal(&c), 1);
	ASSERT_EQ(fiber_yield(r), 0);
	ASSERT_EQ(check_order(0, 10), 0);
	ASSERT_EQ(iou_cond_broadcast(&c), 40);
	ASSERT_EQ(iou_cond_signal(&c), 0);
	ASSERT_EQ(join_all(f, 50), 0);
	ASSERT_EQ(check_order(0, 50), 0);
	for (int i = 0; i < 50; i++) {
		ASSERT_EQ(j[i].rc, 0);
		ASSERT_TRUE(j[i].held_after);
	}
	ASSERT_EQ(iou_cond_destroy(&c), 0);
	ASSERT_NO_FIBER_FAILURES();
	return 0;
}

static void *cancel_self_then_wait_fn(void *arg)
{
	struct job *j = arg;

	FIBER_CHECK(iou_mutex_lock(j->m) == 0);
	FIBER_CHECK(fiber_cancel(fiber_self(reactor_get())) == 0);
	j->rc = iou_cond_wait(j->c, j->m); /* always waits: fails at once */
	j->held_after = iou_mutex_unlock(j->m) == 0;
	return NULL;
}

/* Signal @c with @m held, then sleep on holding it. */
static void *signal_and_hold_fn(void *arg)
{
	struct holder *h = arg;
	struct reactor *r = reactor_get();

	FIBER_CHECK(iou_mutex_lock(h->m) == 0);
	FIBER_CHECK(fiber_sleep(r, h->sleep) == 0);
	h->t_unlock = iou_now();
	FIBER_CHECK(iou_mutex_unlock(h->m) == 0);
	return NULL;
}

static int test_cond_interrupted(void)
{
	struct reactor *r = reactor_get();
	struct iou_mutex m = IOU_MUTEX_INIT;
	struct iou_cond c = IOU_COND_INIT;
	struct holder h = { .m = &m, .sleep = ms(40) };
	struct job j[3];
	struct fiber *f[3], *g;

	/*
	 * The deadline ends the wait for the signal, but the mutex is taken
	 * back regardless, even while someone else holds it past the deadline.
	 */
	j[0] = (struct job){ .id = 0,
			     .m = &m,
			     .c = &c,
			     .timed = true,
			     .deadline = iou_deadline_after(ms(10)) };
	ASSERT_EQ(spawn_jobs(cond_fn, j, f, 1), 0);
	ASSERT_EQ(fiber_yield(r), 0);
	ASSERT_EQ(fiber_spawn(r, signal_and_hold_fn, &h, &g), 0);
	ASSERT_EQ(fiber_join(f[0], NULL), 0);
	ASSERT_EQ(j[0].rc, -ETIMEDOUT);
	ASSERT_TRUE(j[0].held_after);
	ASSERT_GE(j[0].t_done, h.t_unlock);
	ASSERT_EQ(fiber_join(g, NULL), 0);

	/* Cancel: -ECANCELED, mutex held; a cancelled fiber fails at once. */
	j[0] = (struct job){ .id = 0, .m = &m, .c = &c };
	ASSERT_EQ(spawn_jobs(cond_fn, j, f, 1), 0);
	ASSERT_EQ(fiber_yield(r), 0);
	ASSERT_EQ(fiber_cancel(f[0]), 0);
	ASSERT_EQ(fiber_join(f[0], NULL), 0);
	ASSERT_EQ(j[0].rc, -ECANCELED);
	ASSERT_TRUE(j[0].held_after);
	ASSERT_EQ(fiber_spawn(r, cancel_self_then_wait_fn, &j[0], &f[0]), 0);
	ASSERT_EQ(fiber_join(f[0], NULL), 0);
	ASSERT_EQ(j[0].rc, -ECANCELED);
	ASSERT_TRUE(j[0].held_after);

	/* Signalled, then cancelled before it ran: the signal is its (rc 0). */
	norder = 0;
	j[0] = (struct job){ .id = 0, .m = &m, .c = &c };
	j[1] = (struct job){ .id = 1, .m = &m, .c = &c };
	ASSERT_EQ(spawn_jobs(cond_fn, j, f, 2), 0);
	ASSERT_EQ(fiber_yield(r), 0);
	ASSERT_EQ(iou_cond_signal(&c), 1);
	ASSERT_EQ(fiber_cancel(f[0]), 0);
	ASSERT_EQ(fiber_join(f[0], NULL), 0);
	ASSERT_EQ(j[0].rc, 0);
	ASSERT_TRUE(j[0].held_after);
	ASSERT_EQ(j[1].rc, 99); /* the one signal did not wake it */
	/* Cancelled first: the next signal goes to the next waiter. */
	j[2] = (struct job){ .id = 2, .m = &m, .c = &c };
	ASSERT_EQ(spawn_jobs(cond_fn, j + 2, f + 2, 1), 0);
	ASSERT_EQ(fiber_yield(r), 0);
	ASSERT_EQ(fiber_cancel(f[1]), 0);
	ASSERT_EQ(iou_cond_signal(&c), 1);
	ASSERT_EQ(join_all(f + 1, 2), 0);
	ASSERT_EQ(j[1].rc, -ECANCELED);
	ASSERT_EQ(j[2].rc, 0);
	ASSERT_TRUE(j[1].held_after && j[2].held_after);
	ASSERT_EQ(iou_cond_destroy(&c), 0);
	ASSERT_NO_FIBER_FAILURES();
	return 0;
}

struct flag {
	struct iou_mutex m;
	struct iou_cond c;
	bool set;
};

static void *set_flag_fn(void *arg)
{
	struct flag *fl = arg;

	FIBER_CHECK(fiber_sleep(reactor_get(), ms(2)) == 0);
	FIBER_CHECK(iou_mutex_lock(&fl->m) == 0);
	fl->set = true;
	FIBER_CHECK(iou_cond_signal(&fl->c) == 1);
	FIBER_CHECK(iou_mutex_unlock(&fl->m) == 0);
	return NULL;
}

static void *signal_and_keep_fn(void *arg)
{
	struct flag *fl = arg;
	struct reactor *r = reactor_get();

	FIBER_CHECK(iou_mutex_lock(&fl->m) == 0);
	FIBER_CHECK(iou_cond_signal(&fl->c) == 1);
	FIBER_CHECK(fiber_park(r, IOU_DEADLINE_NEVER) == 1);
	FIBER_CHECK(iou_mutex_unlock(&fl->m) == 0);
	return NULL;
}

static int test_cond_thread_context(void)
{
	struct reactor *r = reactor_get();
	struct flag fl = { .m = IOU_MUTEX_INIT, .c = IOU_COND_INIT };
	struct fiber *f;

	ASSERT_EQ(fiber_spawn(r, set_flag_fn, &fl, &f), 0);
	ASSERT_EQ(iou_mutex_lock(&fl.m), 0);
	while (!fl.set)
		ASSERT_EQ(iou_cond_wait(&fl.c, &fl.m), 0);
	ASSERT_EQ(iou_mutex_unlock(&fl.m), 0);
	ASSERT_EQ(fiber_join(f, NULL), 0);
	/* With nothing left to signal it: -EDEADLK, mutex held again. */
	ASSERT_EQ(iou_mutex_lock(&fl.m), 0);
	ASSERT_EQ(iou_cond_wait(&fl.c, &fl.m), -EDEADLK);
	ASSERT_EQ(iou_mutex_unlock(&fl.m), 0);
	/* And its deadline. */
	ASSERT_EQ(iou_mutex_lock(&fl.m), 0);
	fiber_set_deadline(r, iou_deadline_after(ms(2)));
	ASSERT_EQ(iou_cond_wait(&fl.c, &fl.m), -ETIMEDOUT);
	fiber_set_deadline(r, IOU_DEADLINE_NEVER);
	ASSERT_EQ(iou_mutex_unlock(&fl.m), 0);
	/* Signalled by a fiber that then keeps the mutex forever: -ENOLCK, not held. */
	ASSERT_EQ(iou_mutex_lock(&fl.m), 0);
	ASSERT_EQ(fiber_spawn(r, signal_and_keep_fn, &fl, &f), 0);
	ASSERT_EQ(iou_cond_wait(&fl.c, &fl.m), -ENOLCK);
	ASSERT_EQ(iou_mutex_unlock(&fl.m), -EPERM);
	ASSERT_EQ(fiber_unpark(f), 0);
	ASSERT_EQ(fiber_join(f, NULL), 0);
	ASSERT_EQ(iou_mutex_trylock(&fl.m), 0);
	ASSERT_EQ(iou_mutex_unlock(&fl.m), 0);
	ASSERT_EQ(iou_cond_destroy(&fl.c), 0);
	ASSERT_NO_FIBER_FAILURES();
	return 0;
}

/* ---- Semaphore ------------------------------------------------------------------ */

static int test_sem(void)
{
	struct reactor *r = reactor_get();
	struct iou_sem s, full = IOU_SEM_INIT(UINT_MAX);
	static struct job j[20];
	static struct fiber *f[20];

	ASSERT_EQ(iou_sem_init(NULL, 1), -EINVAL);
	ASSERT_EQ(iou_sem_acquire(NULL), -EINVAL);
	ASSERT_EQ(iou_sem_tryacquire(NULL), -EINVAL);
	ASSERT_EQ(iou_sem_release(NULL), -EINVAL);
	ASSERT_EQ(iou_sem_value(NULL), -EINVAL);
	ASSERT_EQ(iou_sem_destroy(NULL), -EINVAL);
	ASSERT_EQ(iou_sem_release(&full), -EOVERFLOW);
	ASSERT_EQ(iou_sem_value(&full), UINT_MAX);
	ASSERT_EQ(iou_sem_init(&s, 2), 0);
	ASSERT_EQ(iou_sem_value(&s), 2);
	ASSERT_EQ(iou_sem_tryacquire(&s), 0);
	ASSERT_EQ(iou_sem_acquire(&s), 0);
	ASSERT_EQ(iou_sem_tryacquire(&s), -EAGAIN);
	ASSERT_EQ(iou_sem_value(&s), 0);

	/* FIFO handoff: each release goes to the first waiter, not to a barger. */
	norder = 0;
	for (int i = 0; i < 20; i++)
		j[i] = (struct job){ .id = i, .s = &s, .keep = true };
	ASSERT_EQ(spawn_jobs(acquire_fn, j, f, 20), 0);
	ASSERT_EQ(fiber_yield(r), 0);
	ASSERT_EQ(iou_sem_destroy(&s), -EBUSY);
	for (int i = 0; i < 20; i++) {
		ASSERT_EQ(iou_sem_release(&s), 0);
		ASSERT_EQ(iou_sem_tryacquire(&s), -EAGAIN);
		ASSERT_EQ(iou_sem_value(&s), 0);
	}
	ASSERT_EQ(join_all(f, 20), 0);
	ASSERT_EQ(check_order(0, 20), 0);

	/* Deadline and cancel; interrupted waiters leave the queue. */
	norder = 0;
	j[0] = (struct job){ .id = 0,
			     .s = &s,
			     .timed = true,
			     .deadline = iou_deadline_after(ms(5)) };
	j[1] = (struct job){ .id = 1, .s = &s };
	j[2] = (struct job){ .id = 2, .s = &s, .keep = true };
	ASSERT_EQ(spawn_jobs(acquire_fn, j, f, 3), 0);
	ASSERT_EQ(fiber_join(f[0], NULL), 0);
	ASSERT_EQ(j[0].rc, -ETIMEDOUT);
	ASSERT_EQ(fiber_cancel(f[1]), 0);
	ASSERT_EQ(fiber_join(f[1], NULL), 0);
	ASSERT_EQ(j[1].rc, -ECANCELED);
	ASSERT_EQ(iou_sem_release(&s), 0); /* to the third */
	ASSERT_EQ(fiber_join(f[2], NULL), 0);
	ASSERT_EQ(j[2].rc, 0);
	ASSERT_EQ(check_order(2, 1), 0);
	ASSERT_EQ(iou_sem_value(&s), 0);
	j[0] = (struct job){ .id = 0, .s = &s, .timed = true, .deadline = IOU_DEADLINE_NOW };
	ASSERT_EQ(spawn_jobs(acquire_fn, j, f, 1), 0);
	ASSERT_EQ(fiber_join(f[0], NULL), 0);
	ASSERT_EQ(j[0].rc, -ETIMEDOUT);

	/* Handed a unit, then cancelled: it keeps the unit. */
	j[0] = (struct job){ .id = 0, .s = &s, .keep = true };
	ASSERT_EQ(spawn_jobs(acquire_fn, j, f, 1), 0);
	ASSERT_EQ(fiber_yield(r), 0);
	ASSERT_EQ(iou_sem_release(&s), 0);
	ASSERT_EQ(fiber_cancel(f[0]), 0);
	ASSERT_EQ(fiber_join(f[0], NULL), 0);
	ASSERT_EQ(j[0].rc, 0);
	ASSERT_EQ(iou_sem_value(&s), 0);
	/* Handed a unit, then its deadline fired while it was still queued. */
	j[0] = (struct job){ .id = 0,
			     .s = &s,
			     .keep = true,
			     .timed = true,
			     .deadline = iou_deadline_after(ms(20)) };
	ASSERT_EQ(spawn_jobs(acquire_fn, j, f, 1), 0);
	ASSERT_EQ(fiber_yield(r), 0);
	ASSERT_EQ(crowd(r, 300), 0);
	ASSERT_EQ(iou_sem_release(&s), 0);
	spin_until(j[0].deadline);
	ASSERT_EQ(fiber_join(f[0], NULL), 0);
	ASSERT_EQ(j[0].rc, 0);
	ASSERT_EQ(iou_sem_value(&s), 0);

	/* From the thread's own context: waits while fibers release. */
	j[0] = (struct job){ .id = 0, .s = &s, .hold = 3 };
	ASSERT_EQ(iou_sem_release(&s), 0);
	ASSERT_EQ(spawn_jobs(acquire_fn, j, f, 1), 0);
	ASSERT_EQ(fiber_yield(r), 0); /* it takes the unit and holds it */
	ASSERT_EQ(iou_sem_acquire(&s), 0);
	ASSERT_EQ(fiber_join(f[0], NULL), 0);
	ASSERT_EQ(iou_sem_acquire(&s), -EDEADLK);
	ASSERT_EQ(iou_sem_destroy(&s), 0);
	ASSERT_NO_FIBER_FAILURES();
	return 0;
}

/* ---- Wait group ----------------------------------------------------------------- */

struct worker {
	struct iou_waitgroup *wg;
	int64_t sleep;
	int *finished;
};

static void *worker_fn(void *arg)
{
	struct worker *w = arg;

	FIBER_CHECK(fiber_sleep(reactor_get(), w->sleep) == 0);
	(*w->finished)++;
	FIBER_CHECK(iou_waitgroup_done(w->wg) >= 0);
	return NULL;
}

static int test_waitgroup(void)
{
	struct reactor *r = reactor_get();
	struct iou_waitgroup wg;
	struct job j[5];
	struct fiber *f[5];
	struct worker w[10];
	int finished = 0;

	ASSERT_EQ(iou_waitgroup_init(NULL), -EINVAL);
	ASSERT_EQ(iou_waitgroup_add(NULL, 1), -EINVAL);
	ASSERT_EQ(iou_waitgroup_done(NULL), -EINVAL);
	ASSERT_EQ(iou_waitgroup_wait(NULL), -EINVAL);
	ASSERT_EQ(iou_waitgroup_destroy(NULL), -EINVAL);
	ASSERT_EQ(iou_waitgroup_init(&wg), 0);
	ASSERT_EQ(iou_waitgroup_wait(&wg), 0); /* zero: at once */
	ASSERT_EQ(iou_waitgroup_add(&wg, 3), 3);
	ASSERT_EQ(iou_waitgroup_add(&wg, -4), -EINVAL);
	ASSERT_EQ(iou_waitgroup_add(&wg, INT64_MAX), -EOVERFLOW);
	ASSERT_EQ(iou_waitgroup_add(&wg, INT64_MIN), -EINVAL);
	ASSERT_EQ(iou_waitgroup_done(&wg), 2);

	/* Every waiter wakes when the count reaches zero, not before. */
	norder = 0;
	for (int i = 0; i < 5; i++)
		j[i] = (struct job){ .id = i, .wg = &wg };
	ASSERT_EQ(spawn_jobs(wg_wait_fn, j, f, 5), 0);
	ASSERT_EQ(fiber_yield(r), 0);
	ASSERT_EQ(iou_waitgroup_destroy(&wg), -EBUSY);
	ASSERT_EQ(iou_waitgroup_done(&wg), 1);
	ASSERT_EQ(fiber_yield(r), 0);
	ASSERT_EQ(norder, 0);
	ASSERT_EQ(iou_waitgroup_done(&wg), 0);
	ASSERT_EQ(iou_waitgroup_add(&wg, 1), 1); /* the woken still return 0 */
	ASSERT_EQ(join_all(f, 5), 0);
	ASSERT_EQ(check_order(0, 5), 0);
	for (int i = 0; i < 5; i++)
		ASSERT_EQ(j[i].rc, 0);

	/* Deadline, NOW and cancel. */
	j[0] = (struct job){ .id = 0,
			     .wg = &wg,
			     .timed = true,
			     .deadline = iou_deadline_after(ms(5)) };
	j[1] = (struct job){ .id = 1, .wg = &wg };
	j[2] = (struct job){ .id = 2, .wg = &wg, .timed = true, .deadline = IOU_DEADLINE_NOW };
	ASSERT_EQ(spawn_jobs(wg_wait_fn, j, f, 3), 0);
	ASSERT_EQ(fiber_join(f[0], NULL), 0);
	ASSERT_EQ(fiber_join(f[2], NULL), 0);
	ASSERT_EQ(fiber_cancel(f[1]), 0);
	ASSERT_EQ(fiber_join(f[1], NULL), 0);
	ASSERT_EQ(j[0].rc, -ETIMEDOUT);
	ASSERT_EQ(j[1].rc, -ECANCELED);
	ASSERT_EQ(j[2].rc, -ETIMEDOUT);
	/* Woken by zero, then cancelled before it ran: 0. */
	j[0] = (struct job){ .id = 0, .wg = &wg };
	ASSERT_EQ(spawn_jobs(wg_wait_fn, j, f, 1), 0);
	ASSERT_EQ(fiber_yield(r), 0);
	ASSERT_EQ(iou_waitgroup_done(&wg), 0);
	ASSERT_EQ(fiber_cancel(f[0]), 0);
	ASSERT_EQ(fiber_join(f[0], NULL), 0);
	ASSERT_EQ(j[0].rc, 0);

	/* The thread's own context waits for ten sleepers. */
	ASSERT_EQ(iou_waitgroup_add(&wg, 10), 10);
	for (int i = 0; i < 10; i++) {
		w[i] = (struct worker){ .wg = &wg,
					.sleep = (i % 3 + 1) * IOU_MSEC,
					.finished = &finished };
		ASSERT_EQ(fiber_spawn(r, worker_fn, &w[i], NULL), 0);
	}
	ASSERT_EQ(iou_waitgroup_wait(&wg), 0);
	ASSERT_EQ(finished, 10);
	ASSERT_EQ(iou_waitgroup_add(&wg, 1), 1);
	ASSERT_EQ(iou_waitgroup_wait(&wg), -EDEADLK);
	ASSERT_EQ(iou_waitgroup_done(&wg), 0);
	ASSERT_EQ(reactor_run(r), 0);
	ASSERT_EQ(iou_waitgroup_destroy(&wg), 0);
	ASSERT_NO_FIBER_FAILURES();
	return 0;
}

/* ---- Channel -------------------------------------------------------------------- */

static int test_chan_basic(void)
{
	struct iou_chan ch;
	int v;

	ASSERT_EQ(iou_chan_init(NULL, 4, 1), -EINVAL);
	ASSERT_EQ(iou_chan_init(&ch, 0, 1), -EINVAL);
	ASSERT_EQ(iou_chan_init(&ch, 4, SIZE_MAX / 2), -EINVAL);
	if (!IOU_TEST_ASAN && !RUNNING_ON_VALGRIND) /* they refuse such sizes loudly */
		ASSERT_EQ(iou_chan_init(&ch, (size_t)1 << 20, (size_t)1 << 36), -ENOMEM);
	ASSERT_EQ(iou_chan_send(NULL, &v), -EINVAL);
	ASSERT_EQ(iou_chan_recv(NULL, &v), -EINVAL);
	ASSERT_EQ(iou_chan_trysend(NULL, &v), -EINVAL);
	ASSERT_EQ(iou_chan_tryrecv(NULL, &v), -EINVAL);
	ASSERT_EQ(iou_chan_close(NULL), -EINVAL);
	ASSERT_EQ(iou_chan_len(NULL), -EINVAL);
	ASSERT_EQ(iou_chan_destroy(NULL), -EINVAL);

	ASSERT_EQ(iou_chan_init(&ch, sizeof(int), 4), 0);
	ASSERT_EQ(iou_chan_send(&ch, NULL), -EINVAL);
	ASSERT_EQ(iou_chan_recv(&ch, NULL), -EINVAL);
	ASSERT_EQ(iou_chan_tryrecv(&ch, &v), -EAGAIN);
	/* Wrap the ring a few times. */
	for (int round = 0; round < 3; round++) {
		for (int i = 0; i < 4; i++)
			ASSERT_EQ(iou_chan_trysend(&ch, &(int){ round * 10 + i }), 0);
		ASSERT_EQ(iou_chan_trysend(&ch, &(int){ 99 }), -EAGAIN);
		ASSERT_EQ(iou_chan_len(&ch), 4);
		for (int i = 0; i < 3; i++) {
			ASSERT_EQ(iou_chan_recv(&ch, &v), 0);
			ASSERT_EQ(v, round * 10 + i);
		}
		ASSERT_EQ(iou_chan_tryrecv(&ch, &v), 0);
		ASSERT_EQ(v, round * 10 + 3);
		ASSERT_EQ(iou_chan_send(&ch, &(int){ -1 }), 0);
		ASSERT_EQ(iou_chan_recv(&ch, &v), 0);
		ASSERT_EQ(v, -1);
	}
	/* Close: what is in the ring is still delivered, then -EPIPE. */
	ASSERT_EQ(iou_chan_send(&ch, &(int){ 7 }), 0);
	ASSERT_EQ(iou_chan_send(&ch, &(int){ 8 }), 0);
	ASSERT_EQ(iou_chan_close(&ch), 0);
	ASSERT_EQ(iou_chan_close(&ch), -EPIPE);
	ASSERT_EQ(iou_chan_send(&ch, &(int){ 9 }), -EPIPE);
	ASSERT_EQ(iou_chan_trysend(&ch, &(int){ 9 }), -EPIPE);
	ASSERT_EQ(iou_chan_recv(&ch, &v), 0);
	ASSERT_EQ(v, 7);
	ASSERT_EQ(iou_chan_tryrecv(&ch, &v), 0);
	ASSERT_EQ(v, 8);
	ASSERT_EQ(iou_chan_recv(&ch, &v), -EPIPE);
	ASSERT_EQ(iou_chan_tryrecv(&ch, &v), -EPIPE);
	ASSERT_EQ(iou_chan_destroy(&ch), 0);
	/* Destroyed with items inside: they are dropped, no leak. */
	ASSERT_EQ(iou_chan_init(&ch, 100, 3), 0);
	ASSERT_EQ(iou_chan_send(&ch, (char[100]){ 1 }), 0);
	ASSERT_EQ(iou_chan_destroy(&ch), 0);
	return 0;
}

/* Producers and consumers over a small ring: per-producer order, exactly once. */
#define NPROD 4
#define NCONS 3
#define PER_PROD 1000

struct pc {
	struct iou_chan ch;
	struct iou_waitgroup producing;
	int last[NCONS][NPROD];		/* per consumer: last number seen from each producer */
	uint8_t seen[NPROD * PER_PROD]; /* times each item was received */
	int received;
	int bad;
};

struct pc_arg {
	struct pc *pc;
	int id;
};

static void *pc_producer(void *arg)
{
	struct pc_arg *a = arg;
	struct reactor *r = reactor_get();

	for (int i = 0; i < PER_PROD; i++) {
		FIBER_CHECK(iou_chan_send(&a->pc->ch, &(int){ a->id * PER_PROD + i }) == 0);
		if (i % 7 == a->id)
			fiber_yield(r);
	}
	iou_waitgroup_done(&a->pc->producing);
	return NULL;
}

static void *pc_consumer(void *arg)
{
	struct pc_arg *a = arg;
	struct pc *pc = a->pc;
	int v, ret;

	/*
	 * Each consumer sees each producer's items in increasing order (the
	 * channel is FIFO).  Across consumers, the order in which they run after
	 * being woken is not the order of hand-over, so only counts compare.
	 */
	while ((ret = iou_chan_recv(&pc->ch, &v)) == 0) {
		if (v < 0 || v >= NPROD * PER_PROD ||
		    pc->last[a->id][v / PER_PROD] >= v % PER_PROD) {
			pc->bad++;
		} else {
			pc->last[a->id][v / PER_PROD] = v % PER_PROD;
			pc->seen[v]++;
		}
		pc->received++;
		if (v % 5 == a->id)
			fiber_yield(reactor_get());
	}
	FIBER_CHECK(ret == -EPIPE);
	return NULL;
}

static void *pc_closer(void *arg)
{
	struct pc *pc = arg;

	FIBER_CHECK(iou_waitgroup_wait(&pc->producing) == 0);
	FIBER_CHECK(iou_chan_close(&pc->ch) == 0);
	return NULL;
}

static int run_pc(size_t capacity)
{
	struct reactor *r = reactor_get();
	static struct pc pc;
	struct pc_arg a[NPROD + NCONS];

	pc = (struct pc){ .producing = IOU_WAITGROUP_INIT };
	memset(pc.last, 0xff, sizeof(pc.last)); /* -1: nothing seen yet */
	ASSERT_EQ(iou_chan_init(&pc.ch, sizeof(int), capacity), 0);
	ASSERT_EQ(iou_waitgroup_add(&pc.producing, NPROD), NPROD);
	for (int i = 0; i < NCONS; i++) {
		a[NPROD + i] = (struct pc_arg){ .pc = &pc, .id = i };
		ASSERT_EQ(fiber_spawn(r, pc_consumer, &a[NPROD + i], NULL), 0);
	}
	for (int i = 0; i < NPROD; i++) {
		a[i] = (struct pc_arg){ .pc = &pc, .id = i };
		ASSERT_EQ(fiber_spawn(r, pc_producer, &a[i], NULL), 0);
	}
	ASSERT_EQ(fiber_spawn(r, pc_closer, &pc, NULL), 0);
	ASSERT_EQ(reactor_run(r), 0);
	ASSERT_EQ(pc.bad, 0);
	ASSERT_EQ(pc.received, NPROD * PER_PROD);
	for (int i = 0; i < NPROD * PER_PROD; i++)
		ASSERT_EQ(pc.seen[i], 1); /* exactly once */
	ASSERT_EQ(iou_chan_destroy(&pc.ch), 0);
	ASSERT_NO_FIBER_FAILURES();
	return 0;
}

static int test_chan_producers_consumers(void)
{
	ASSERT_EQ(run_pc(1), 0);
	ASSERT_EQ(run_pc(3), 0);
	ASSERT_EQ(run_pc(64), 0);
	ASSERT_EQ(run_pc(0), 0); /* rendezvous */
	return 0;
}

static int test_chan_rendezvous(void)
{
	struct reactor *r = reactor_get();
	struct iou_chan ch;
	struct job j[4];
	struct fiber *f[4];
	int v;

	ASSERT_EQ(iou_chan_init(&ch, sizeof(int), 0), 0);
	ASSERT_EQ(iou_chan_trysend(&ch, &(int){ 1 }), -EAGAIN); /* nobody receives */
	ASSERT_EQ(iou_chan_tryrecv(&ch, &v), -EAGAIN);
	ASSERT_EQ(iou_chan_len(&ch), 0);
	/* A waiting receiver takes a trysend; a waiting sender feeds a tryrecv. */
	j[0] = (struct job){ .id = 0, .ch = &ch };
	ASSERT_EQ(spawn_jobs(recv_fn, j, f, 1), 0);
	ASSERT_EQ(fiber_yield(r), 0);
	ASSERT_EQ(iou_chan_trysend(&ch, &(int){ 42 }), 0);
	ASSERT_EQ(fiber_join(f[0], NULL), 0);
	ASSERT_EQ(j[0].rc, 0);
	ASSERT_EQ(j[0].item, 42);
	for (int i = 0; i < 3; i++)
		j[i] = (struct job){ .id = i, .ch = &ch, .item = 100 + i };
	ASSERT_EQ(spawn_jobs(send_fn, j, f, 3), 0);
	ASSERT_EQ(fiber_yield(r), 0);
	ASSERT_EQ(j[0].rc, 99); /* a send waits for its receiver */
	ASSERT_EQ(iou_chan_tryrecv(&ch, &v), 0);
	ASSERT_EQ(v, 100);
	ASSERT_EQ(iou_chan_recv(&ch, &v), 0); /* the thread's context: at once */
	ASSERT_EQ(v, 101);
	/* Close fails the waiting sender: its item was never received. */
	ASSERT_EQ(iou_chan_close(&ch), 0);
	ASSERT_EQ(join_all(f, 3), 0);
	ASSERT_EQ(j[0].rc, 0);
	ASSERT_EQ(j[1].rc, 0);
	ASSERT_EQ(j[2].rc, -EPIPE);
	ASSERT_EQ(iou_chan_recv(&ch, &v), -EPIPE);
	ASSERT_EQ(iou_chan_destroy(&ch), 0);
	return 0;
}

static int test_chan_close_wakes_all(void)
{
	struct reactor *r = reactor_get();
	struct iou_chan ch;
	struct job j[10];
	struct fiber *f[10];
	int v;

	/* Receivers on an empty channel. */
	ASSERT_EQ(iou_chan_init(&ch, sizeof(int), 2), 0);
	for (int i = 0; i < 5; i++)
		j[i] = (struct job){ .id = i, .ch = &ch };
	ASSERT_EQ(spawn_jobs(recv_fn, j, f, 5), 0);
	ASSERT_EQ(fiber_yield(r), 0);
	ASSERT_EQ(iou_chan_destroy(&ch), -EBUSY);
	ASSERT_EQ(iou_chan_close(&ch), 0);
	ASSERT_EQ(join_all(f, 5), 0);
	for (int i = 0; i < 5; i++)
		ASSERT_EQ(j[i].rc, -EPIPE);
	ASSERT_EQ(iou_chan_destroy(&ch), 0);
	/* Senders on a full one: they fail, the ring's items stay. */
	norder = 0;
	ASSERT_EQ(iou_chan_init(&ch, sizeof(int), 2), 0);
	for (int i = 0; i < 7; i++)
		j[i] = (struct job){ .id = i, .ch = &ch, .item = i };
	ASSERT_EQ(spawn_jobs(send_fn, j, f, 7), 0);
	ASSERT_EQ(fiber_yield(r), 0);
	ASSERT_EQ(check_order(0, 2), 0);
	ASSERT_EQ(iou_chan_close(&ch), 0);
	ASSERT_EQ(join_all(f, 7), 0);
	for (int i = 2; i < 7; i++)
		ASSERT_EQ(j[i].rc, -EPIPE);
	for (int i = 0; i < 2; i++) {
		ASSERT_EQ(iou_chan_recv(&ch, &v), 0);
		ASSERT_EQ(v, i);
	}
	ASSERT_EQ(iou_chan_recv(&ch, &v), -EPIPE);
	ASSERT_EQ(iou_chan_destroy(&ch), 0);
	return 0;
}

static int test_chan_interrupted(void)
{
	struct reactor *r = reactor_get();
	struct iou_chan ch;
	struct job j[3];
	struct fiber *f[3];
	int v;

	ASSERT_EQ(iou_chan_init(&ch, sizeof(int), 1), 0);
	/* Deadlines on recv and send; NOW fails at once; cancel. */
	j[0] = (struct job){ .id = 0,
			     .ch = &ch,
			     .timed = true,
			     .deadline = iou_deadline_after(ms(5)) };
	j[1] = (struct job){ .id = 1, .ch = &ch, .timed = true, .deadline = IOU_DEADLINE_NOW };
	j[2] = (struct job){ .id = 2, .ch = &ch };
	ASSERT_EQ(spawn_jobs(recv_fn, j, f, 3), 0);
	ASSERT_EQ(fiber_join(f[0], NULL), 0);
	ASSERT_EQ(fiber_join(f[1], NULL), 0);
	ASSERT_EQ(fiber_cancel(f[2]), 0);
	ASSERT_EQ(fiber_join(f[2], NULL), 0);
	ASSERT_EQ(j[0].rc, -ETIMEDOUT);
	ASSERT_GE(j[0].t_done, j[0].deadline);
	ASSERT_EQ(j[1].rc, -ETIMEDOUT);
	ASSERT_EQ(j[2].rc, -ECANCELED);
	ASSERT_EQ(iou_chan_send(&ch, &(int){ 1 }), 0); /* into the ring: nobody waits */
	ASSERT_EQ(iou_chan_len(&ch), 1);
	j[0] = (struct job){ .id = 0,
			     .ch = &ch,
			     .item = 2,
			     .timed = true,
			     .deadline = iou_deadline_after(ms(5)) };
	j[1] = (struct job){ .id = 1, .ch = &ch, .item = 3 };
	ASSERT_EQ(spawn_jobs(send_fn, j, f, 2), 0);
	ASSERT_EQ(fiber_join(f[0], NULL), 0);
	ASSERT_EQ(j[0].rc, -ETIMEDOUT);
	ASSERT_EQ(fiber_cancel(f[1]), 0);
	ASSERT_EQ(fiber_join(f[1], NULL), 0);
	ASSERT_EQ(j[1].rc, -ECANCELED);
	ASSERT_EQ(iou_chan_recv(&ch, &v), 0);
	ASSERT_EQ(v, 1);
	ASSERT_EQ(iou_chan_tryrecv(&ch, &v), -EAGAIN); /* neither was sent */

	/* Handed an item, then cancelled before it ran: it keeps the item. */
	j[0] = (struct job){ .id = 0, .ch = &ch };
	j[1] = (struct job){ .id = 1, .ch = &ch };
	ASSERT_EQ(spawn_jobs(recv_fn, j, f, 2), 0);
	ASSERT_EQ(fiber_yield(r), 0);
	ASSERT_EQ(iou_chan_send(&ch, &(int){ 10 }), 0);
	ASSERT_EQ(fiber_cancel(f[0]), 0);
	ASSERT_EQ(fiber_join(f[0], NULL), 0);
	ASSERT_EQ(j[0].rc, 0);
	ASSERT_EQ(j[0].item, 10);
	/* Cancelled first: the next item goes to the next receiver. */
	j[2] = (struct job){ .id = 2, .ch = &ch };
	ASSERT_EQ(spawn_jobs(recv_fn, j + 2, f + 2, 1), 0);
	ASSERT_EQ(fiber_yield(r), 0);
	ASSERT_EQ(fiber_cancel(f[1]), 0);
	ASSERT_EQ(iou_chan_send(&ch, &(int){ 11 }), 0);
	ASSERT_EQ(join_all(f + 1, 2), 0);
	ASSERT_EQ(j[1].rc, -ECANCELED);
	ASSERT_EQ(j[2].rc, 0);
	ASSERT_EQ(j[2].item, 11);
	ASSERT_EQ(iou_chan_len(&ch), 0);

	/* A sender whose item was taken into the ring, then cancelled: sent. */
	ASSERT_EQ(iou_chan_send(&ch, &(int){ 20 }), 0);
	j[0] = (struct job){ .id = 0, .ch = &ch, .item = 21 };
	ASSERT_EQ(spawn_jobs(send_fn, j, f, 1), 0);
	ASSERT_EQ(fiber_yield(r), 0);
	ASSERT_EQ(iou_chan_recv(&ch, &v), 0);
	ASSERT_EQ(v, 20);
	ASSERT_EQ(fiber_cancel(f[0]), 0);
	ASSERT_EQ(fiber_join(f[0], NULL), 0);
	ASSERT_EQ(j[0].rc, 0);
	ASSERT_EQ(iou_chan_recv(&ch, &v), 0);
	ASSERT_EQ(v, 21);

	/* Handed an item, then its deadline fired while it was still queued. */
	j[0] = (struct job){ .id = 0,
			     .ch = &ch,
			     .timed = true,
			     .deadline = iou_deadline_after(ms(20)) };
	ASSERT_EQ(spawn_jobs(recv_fn, j, f, 1), 0);
	ASSERT_EQ(fiber_yield(r), 0);
	ASSERT_EQ(crowd(r, 300), 0);
	ASSERT_EQ(iou_chan_send(&ch, &(int){ 30 }), 0);
	spin_until(j[0].deadline);
	ASSERT_EQ(fiber_join(f[0], NULL), 0);
	ASSERT_EQ(j[0].rc, 0);
	ASSERT_EQ(j[0].item, 30);
	ASSERT_GT(j[0].t_done, j[0].deadline);
	ASSERT_EQ(iou_chan_destroy(&ch), 0);
	return 0;
}

static void *send_some_fn(void *arg)
{
	struct iou_chan *ch = arg;
	struct reactor *r = reactor_get();

	for (int i = 0; i < 10; i++) {
		FIBER_CHECK(fiber_sleep(r, IOU_MSEC / 4) == 0);
		FIBER_CHECK(iou_chan_send(ch, &i) == 0);
	}
	return NULL;
}

static void *recv_some_fn(void *arg)
{
	struct iou_chan *ch = arg;
	int v;

	for (int i = 0; i < 10; i++) {
		FIBER_CHECK(iou_chan_recv(ch, &v) == 0);
		FIBER_CHECK(v == i);
	}
	return NULL;
}

static int test_chan_thread_context(void)
{
	struct reactor *r = reactor_get();
	struct iou_chan ch;
	struct fiber *f;
	int v;

	ASSERT_EQ(iou_chan_init(&ch, sizeof(int), 2), 0);
	/* Receiving from main drives the producing fiber. */
	ASSERT_EQ(fiber_spawn(r, send_some_fn, &ch, &f), 0);
	for (int i = 0; i < 10; i++) {
		ASSERT_EQ(iou_chan_recv(&ch, &v), 0);
		ASSERT_EQ(v, i);
	}
	ASSERT_EQ(fiber_join(f, NULL), 0);
	/* Sending into a full channel drives the consumer. */
	ASSERT_EQ(fiber_spawn(r, recv_some_fn, &ch, &f), 0);
	for (int i = 0; i < 10; i++)
		ASSERT_EQ(iou_chan_send(&ch, &i), 0);
	ASSERT_EQ(fiber_join(f, NULL), 0);
	/* Nobody will ever send: -EDEADLK; the deadline bounds the wait. */
	ASSERT_EQ(iou_chan_recv(&ch, &v), -EDEADLK);
	fiber_set_deadline(r, iou_deadline_after(ms(2)));
	ASSERT_EQ(iou_chan_recv(&ch, &v), -ETIMEDOUT);
	fiber_set_deadline(r, IOU_DEADLINE_NEVER);
	ASSERT_EQ(iou_chan_destroy(&ch), 0); /* no stale waiter left */
	ASSERT_NO_FIBER_FAILURES();
	return 0;
}

/* ---- Other threads -------------------------------------------------------------- */

static struct iou_mutex bound_mutex = IOU_MUTEX_INIT;
static struct iou_cond bound_cond = IOU_COND_INIT;
static struct iou_sem bound_sem = IOU_SEM_INIT(1);
static struct iou_waitgroup bound_wg = IOU_WAITGROUP_INIT;
static struct iou_chan bound_chan;
static struct iou_mutex foreign_mutex = IOU_MUTEX_INIT;

static int foreign_body(void)
{
	struct iou_mutex fresh = IOU_MUTEX_INIT;
	int v = 0;

	/* Objects bound to the main thread's reactor are refused here. */
	ASSERT_EQ(iou_mutex_lock(&bound_mutex), -EPERM);
	ASSERT_EQ(iou_mutex_trylock(&bound_mutex), -EPERM);
	ASSERT_EQ(iou_mutex_unlock(&bound_mutex), -EPERM);
	ASSERT_EQ(iou_cond_signal(&bound_cond), -EPERM);
	ASSERT_EQ(iou_cond_broadcast(&bound_cond), -EPERM);
	ASSERT_EQ(iou_sem_acquire(&bound_sem), -EPERM);
	ASSERT_EQ(iou_sem_tryacquire(&bound_sem), -EPERM);
	ASSERT_EQ(iou_sem_release(&bound_sem), -EPERM);
	ASSERT_EQ(iou_sem_value(&bound_sem), -EPERM);
	ASSERT_EQ(iou_waitgroup_add(&bound_wg, 1), -EPERM);
	ASSERT_EQ(iou_waitgroup_wait(&bound_wg), -EPERM);
	ASSERT_EQ(iou_chan_send(&bound_chan, &v), -EPERM);
	ASSERT_EQ(iou_chan_trysend(&bound_chan, &v), -EPERM);
	ASSERT_EQ(iou_chan_recv(&bound_chan, &v), -EPERM);
	ASSERT_EQ(iou_chan_tryrecv(&bound_chan, &v), -EPERM);
	ASSERT_EQ(iou_chan_close(&bound_chan), -EPERM);
	ASSERT_EQ(iou_chan_len(&bound_chan), -EPERM);
	/* A fresh object binds to this thread's reactor, created on demand. */
	ASSERT_PTR_EQ(reactor_current(), NULL);
	ASSERT_EQ(iou_mutex_lock(&fresh), 0);
	ASSERT_TRUE(reactor_current() != NULL);
	ASSERT_EQ(iou_mutex_unlock(&fresh), 0);
	ASSERT_EQ(iou_mutex_lock(&foreign_mutex), 0);
	ASSERT_EQ(reactor_destroy(reactor_current()), 0);
	return 0;
}

static int test_other_thread(void)
{
	struct iou_mutex m = IOU_MUTEX_INIT;
	int v;

	ASSERT_EQ(iou_mutex_lock(&bound_mutex), 0);
	ASSERT_EQ(iou_cond_signal(&bound_cond), 0);
	ASSERT_EQ(iou_sem_value(&bound_sem), 1);
	ASSERT_EQ(iou_waitgroup_add(&bound_wg, 0), 0);
	ASSERT_EQ(iou_chan_init(&bound_chan, sizeof(int), 1), 0);
	ASSERT_EQ(iou_chan_trysend(&bound_chan, &(int){ 5 }), 0);
	ASSERT_EQ(test_in_thread(foreign_body), 0);
	/* Untouched by the refused calls. */
	ASSERT_EQ(iou_mutex_unlock(&bound_mutex), 0);
	ASSERT_EQ(iou_sem_value(&bound_sem), 1);
	ASSERT_EQ(iou_chan_recv(&bound_chan, &v), 0);
	ASSERT_EQ(v, 5);
	ASSERT_EQ(iou_chan_destroy(&bound_chan), 0);
	/* A cond and a mutex of different reactors do not mix. */
	ASSERT_EQ(iou_mutex_lock(&foreign_mutex), -EPERM);
	ASSERT_EQ(iou_cond_wait(&bound_cond, &foreign_mutex), -EPERM);
	ASSERT_EQ(iou_mutex_lock(&m), 0);
	ASSERT_EQ(iou_cond_wait(&bound_cond, &m), -EDEADLK); /* same reactor: fine */
	ASSERT_EQ(iou_mutex_unlock(&m), 0);
	return 0;
}

/* ---- Randomized stress ---------------------------------------------------------- */

/*
 * One PRNG stream per fiber (found by fiber id), one for the thread's own
 * context: a fiber's choices then do not depend on how the others' calls
 * interleave, so a run without timers repeats exactly for a given seed.
 */
static uint64_t rng_main, *rng_fiber;
static uint64_t rng_first_id, rng_nfiber;

static void rng_seed(uint64_t seed, uint64_t first_id, uint64_t n)
{
	rng_main = seed;
	rng_first_id = first_id;
	rng_nfiber = n;
	for (uint64_t i = 0; i < n; i++)
		rng_fiber[i] = seed ^ ((i + 1) * 0xd1b54a32d192ed03ULL);
}

static uint64_t rng(void)
{
	struct fiber *f = fiber_self(reactor_get());
	uint64_t *state = &rng_main, k;

	if (f && (k = fiber_id(f) - rng_first_id) < rng_nfiber)
		state = &rng_fiber[k];
	/* splitmix64 */
	uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static unsigned rnd(unsigned n)
{
	return (unsigned)(rng() % n);
}

#define SEM_UNITS 7

enum role {
	ROLE_MUTEX,
	ROLE_SEM,
	ROLE_PROD,
	ROLE_CONS,
	ROLE_COND,
	NROLES
};

static const char *const role_name[NROLES] = { "mutex", "sem", "producer", "consumer", "cond" };

/* Roles by fiber number modulo 10: producers outnumber consumers, so the ring fills. */
static const uint8_t role_of[10] = { ROLE_MUTEX, ROLE_SEM,  ROLE_PROD,	ROLE_PROD, ROLE_PROD,
				     ROLE_CONS,	 ROLE_CONS, ROLE_MUTEX, ROLE_SEM,  ROLE_COND };

struct stress {
	int nfibers, rounds;
	struct fiber **f;
	uint8_t *role;
	int *rid;		    /* number within its role */
	bool *ended_one;	    /* per worker: it has ended */
	struct iou_waitgroup alive; /* every worker, done when it ends */
	int ended;		    /* workers that ended */
	int64_t give_up;	    /* the watcher declares a hang after this */
	bool hung;
	bool timed; /* waits get short real deadlines too */
	/* mutex */
	struct iou_mutex m;
	int in_cs;
	long cs_entries;
	/* semaphore */
	struct iou_sem s;
	int holders, max_holders;
	long sem_entries;
	/* channel */
	struct iou_chan ch;
	struct iou_waitgroup producing;
	int nprod;
	int ncons;
	int *sent;	/* per producer: items sent successfully */
	uint32_t *seen; /* per producer: bit n set once item n was received */
	int8_t *last;	/* [consumer][producer]: last number received, -1: none */
	long received;
	int order_errors;
	/* condition variable: tokens handed from one producer to consumers */
	struct iou_mutex cm;
	struct iou_cond cv;
	long tokens, produced, taken;
	int cond_consumers;
	int cond_quota;
	/* bookkeeping */
	long timeouts, cancels;
	int unexpected;
};

static struct stress st;

struct item {
	uint32_t producer;
	uint32_t seq;
};

static void random_yields(struct reactor *r, unsigned max)
{
	for (unsigned n = rnd(max + 1); n > 0; n--)
		fiber_yield(r);
}

/* Before a wait: maybe a deadline (short, or "now"), maybe none. */
static void random_deadline(struct reactor *r)
{
	unsigned k = rnd(10);

	if (k == 0)
		fiber_set_deadline(r, IOU_DEADLINE_NOW);
	else if (k < 3 && st.timed)
		fiber_set_deadline(r, iou_deadline_after((int64_t)rnd(300) * IOU_USEC));
	else
		fiber_set_deadline(r, IOU_DEADLINE_NEVER);
}

/* An interrupted wait: count it; true if the fiber should stop. */
static bool interrupted(int ret)
{
	if (ret == -ETIMEDOUT) {
		st.timeouts++;
		return false;
	}
	if (ret == -ECANCELED) {
		st.cancels++;
		return true;
	}
	st.unexpected++;
	fprintf(stderr, "  unexpected result %d\n", ret);
	return true;
}

static void stress_mutex(struct reactor *r)
{
	for (int i = 0; i < st.rounds; i++) {
		int ret;

		random_deadline(r);
		ret = rnd(8) ? iou_mutex_lock(&st.m) : iou_mutex_trylock(&st.m);
		fiber_set_deadline(r, IOU_DEADLINE_NEVER);
		if (ret == -EBUSY)
			continue;
		if (ret < 0) {
			if (interrupted(ret))
				return;
			continue;
		}
		FIBER_CHECK(st.in_cs == 0);
		st.in_cs++;
		st.cs_entries++;
		random_yields(r, 2);
		st.in_cs--;
		FIBER_CHECK(iou_mutex_unlock(&st.m) == 0);
		random_yields(r, 1);
	}
}

static void stress_sem(struct reactor *r)
{
	for (int i = 0; i < st.rounds; i++) {
		int ret;

		random_deadline(r);
		ret = rnd(8) ? iou_sem_acquire(&st.s) : iou_sem_tryacquire(&st.s);
		fiber_set_deadline(r, IOU_DEADLINE_NEVER);
		if (ret == -EAGAIN)
			continue;
		if (ret < 0) {
			if (interrupted(ret))
				return;
			continue;
		}
		st.holders++;
		st.sem_entries++;
		if (st.holders > st.max_holders)
			st.max_holders = st.holders;
		random_yields(r, 3);
		st.holders--;
		FIBER_CHECK(iou_sem_release(&st.s) == 0);
	}
}

static void stress_producer(struct reactor *r, int p)
{
	struct item it = { .producer = (uint32_t)p };

	while ((int)it.seq < st.rounds) {
		int ret;

		random_deadline(r);
		ret = iou_chan_send(&st.ch, &it);
		fiber_set_deadline(r, IOU_DEADLINE_NEVER);
		if (ret == 0) {
			st.sent[p]++;
			it.seq++; /* a failed send is retried with the same number */
		} else if (interrupted(ret)) {
			break;
		}
		random_yields(r, 1);
	}
	iou_waitgroup_done(&st.producing);
}

static void stress_consumer(struct reactor *r, int c)
{
	struct item it;

	for (;;) {
		int ret;

		random_deadline(r);
		ret = rnd(6) ? iou_chan_recv(&st.ch, &it) : iou_chan_tryrecv(&st.ch, &it);
		fiber_set_deadline(r, IOU_DEADLINE_NEVER);
		if (ret == -EPIPE)
			return;
		if (ret == -EAGAIN)
			goto next;
		if (ret < 0) {
			if (interrupted(ret))
				return;
			goto next;
		}
		/* Exactly once; and in order per producer, as this consumer sees them. */
		st.received++;
		if (it.producer >= (uint32_t)st.nprod || it.seq >= 32 ||
		    (st.seen[it.producer] >> it.seq & 1) ||
		    st.last[(size_t)c * (size_t)st.nprod + it.producer] >= (int)it.seq) {
			st.order_errors++;
		} else {
			st.seen[it.producer] |= UINT32_C(1) << it.seq;
			st.last[(size_t)c * (size_t)st.nprod + it.producer] = (int8_t)it.seq;
		}
next:
		random_yields(r, 2);
	}
}

static void stress_cond_consumer(struct reactor *r)
{
	for (int got = 0; got < st.cond_quota;) {
		int ret = iou_mutex_lock(&st.cm);

		if (ret < 0) {
			interrupted(ret); /* cancelled while the mutex was busy */
			return;
		}
		while (st.tokens == 0 && ret == 0) {
			random_deadline(r);
			ret = iou_cond_wait(&st.cv, &st.cm);
			fiber_set_deadline(r, IOU_DEADLINE_NEVER);
			if (ret == -ETIMEDOUT) {
				st.timeouts++;
				ret = 0;
			}
		}
		if (ret < 0) {
			/* Quitting: pass on a signal this waiter may have absorbed. */
			iou_cond_signal(&st.cv);
			FIBER_CHECK(iou_mutex_unlock(&st.cm) == 0);
			interrupted(ret);
			return;
		}
		st.tokens--;
		st.taken++;
		got++;
		FIBER_CHECK(iou_mutex_unlock(&st.cm) == 0);
		random_yields(r, 2);
	}
}

struct worker_arg {
	int index;
};

static void *stress_worker(void *arg)
{
	struct reactor *r = reactor_get();
	int i = ((struct worker_arg *)arg)->index;

	random_yields(r, 3);
	switch (st.role[i]) {
	case ROLE_MUTEX:
		stress_mutex(r);
		break;
	case ROLE_SEM:
		stress_sem(r);
		break;
	case ROLE_PROD:
		stress_producer(r, st.rid[i]);
		break;
	case ROLE_CONS:
		stress_consumer(r, st.rid[i]);
		break;
	case ROLE_COND:
		stress_cond_consumer(r);
		break;
	}
	st.ended++;
	st.ended_one[i] = true;
	FIBER_CHECK(iou_waitgroup_done(&st.alive) >= 0);
	return NULL;
}

/* Closes the channel once every producer is done. */
static void *stress_closer(void *arg)
{
	(void)arg;
	FIBER_CHECK(iou_waitgroup_wait(&st.producing) == 0);
	FIBER_CHECK(iou_chan_close(&st.ch) == 0);
	return NULL;
}

/* Hands out the cond tokens one signal each, at random moments. */
static void *stress_token_producer(void *arg)
{
	struct reactor *r = reactor_get();
	long total = (long)st.cond_consumers * st.cond_quota;

	(void)arg;
	for (long i = 0; i < total; i++) {
		FIBER_CHECK(iou_mutex_lock(&st.cm) == 0);
		st.tokens++;
		st.produced++;
		iou_cond_signal(&st.cv);
		FIBER_CHECK(iou_mutex_unlock(&st.cm) == 0);
		random_yields(r, 3);
	}
	return NULL;
}

/* Cancels random workers now and then; never even-numbered consumers. */
static void *stress_chaos(void *arg)
{
	struct reactor *r = reactor_get();
	int cancels = st.nfibers / 20;

	(void)arg;
	for (int i = 0; i < cancels && st.ended < st.nfibers; i++) {
		int k = (int)rnd((unsigned)st.nfibers);

		random_yields(r, 20);
		if (st.role[k] == ROLE_CONS && st.rid[k] % 2 == 0)
			continue;
		FIBER_CHECK(fiber_cancel(st.f[k]) == 0);
	}
	return NULL;
}

/*
 * Waits for every worker with a short deadline, over and over.  Past
 * st.give_up it declares a hang (a lost wake-up leaves a fiber parked
 * forever while others still have timers), names what is stuck and
 * cancels everything, so that the test fails instead of timing out.
 */
static void *stress_watcher(void *arg)
{
	struct reactor *r = reactor_get();
	int ret;

	(void)arg;
	do {
		/* Untimed runs have no timer at all: a lost wake-up is -EDEADLK. */
		if (st.timed)
			fiber_set_deadline(r,
					   iou_deadline_after((int64_t)(rnd(2000) + 1) * IOU_USEC));
		ret = iou_waitgroup_wait(&st.alive);
	} while (ret == -ETIMEDOUT && iou_now() < st.give_up);
	fiber_set_deadline(r, IOU_DEADLINE_NEVER);
	if (ret != 0) {
		int stuck[NROLES] = { 0 };

		st.hung = true;
		for (int i = 0; i < st.nfibers; i++)
			if (!st.ended_one[i])
				stuck[st.role[i]]++;
		for (int k = 0; k < NROLES; k++)
			fprintf(stderr, "  stuck %s fibers: %d\n", role_name[k], stuck[k]);
		for (int i = 0; i < st.nfibers; i++)
			fiber_cancel(st.f[i]);
		return NULL;
	}
	FIBER_CHECK(st.ended == st.nfibers);
	return NULL;
}

/* One run with @seed, @timed or not; 0 if every invariant held. */
static int run_stress(uint64_t seed, bool timed)
{
	struct reactor *r = reactor_get();
	struct worker_arg *args;
	struct fiber *aux[4];
	int counts[NROLES] = { 0 };
	long total_sent = 0;

	printf("# stress seed %llu, %s (IOU_TEST_SEED=%llu repeats it%s)\n",
	       (unsigned long long)seed, timed ? "timed" : "untimed", (unsigned long long)seed,
	       timed ? "s choices; timers vary" : " exactly");
	fflush(stdout);
	st = (struct stress){
		.nfibers = 5000,
		.rounds = RUNNING_ON_VALGRIND ? 10 : 20,
		.m = IOU_MUTEX_INIT,
		.s = IOU_SEM_INIT(SEM_UNITS),
		.alive = IOU_WAITGROUP_INIT,
		.producing = IOU_WAITGROUP_INIT,
		.cm = IOU_MUTEX_INIT,
		.cv = IOU_COND_INIT,
		.cond_quota = 3,
		.give_up = iou_deadline_after(20 * IOU_SEC * test_slowdown()),
		.timed = timed,
	};
	rng_fiber = calloc((size_t)st.nfibers + 4, sizeof(*rng_fiber));
	ASSERT_TRUE(rng_fiber != NULL);
	/* Fiber ids are consecutive: the next spawn gets the next one. */
	{
		struct fiber *probe;

		ASSERT_EQ(fiber_spawn(r, nop_fn, NULL, &probe), 0);
		rng_seed(seed, fiber_id(probe) + 1, (uint64_t)st.nfibers + 4);
		ASSERT_EQ(fiber_join(probe, NULL), 0);
	}
	st.f = calloc((size_t)st.nfibers, sizeof(*st.f));
	st.role = calloc((size_t)st.nfibers, sizeof(*st.role));
	st.rid = calloc((size_t)st.nfibers, sizeof(*st.rid));
	st.ended_one = calloc((size_t)st.nfibers, sizeof(*st.ended_one));
	args = calloc((size_t)st.nfibers, sizeof(*args));
	ASSERT_TRUE(st.f && st.role && st.rid && st.ended_one && args);
	for (int i = 0; i < st.nfibers; i++) {
		st.role[i] = role_of[i % 10];
		st.rid[i] = counts[st.role[i]]++;
	}
	st.nprod = counts[ROLE_PROD];
	st.ncons = counts[ROLE_CONS];
	st.cond_consumers = counts[ROLE_COND];
	st.sent = calloc((size_t)st.nprod, sizeof(*st.sent));
	st.seen = calloc((size_t)st.nprod, sizeof(*st.seen));
	st.last = malloc((size_t)st.nprod * (size_t)st.ncons);
	ASSERT_TRUE(st.sent && st.seen && st.last);
	memset(st.last, 0xff, (size_t)st.nprod * (size_t)st.ncons);
	/* Rendezvous sometimes, else a small ring. */
	ASSERT_EQ(iou_chan_init(&st.ch, sizeof(struct item), rnd(4) ? 1 + rnd(16) : 0), 0);
	ASSERT_EQ(iou_waitgroup_add(&st.producing, st.nprod), st.nprod);
	ASSERT_EQ(iou_waitgroup_add(&st.alive, st.nfibers), st.nfibers);
	/* Spawn in a random order, so that roles interleave unpredictably. */
	for (int i = 0; i < st.nfibers; i++)
		args[i].index = i;
	for (int i = st.nfibers - 1; i > 0; i--) {
		int k = (int)rnd((unsigned)i + 1), t = args[i].index;

		args[i].index = args[k].index;
		args[k].index = t;
	}
	for (int i = 0; i < st.nfibers; i++)
		ASSERT_EQ(fiber_spawn(r, stress_worker, &args[i], &st.f[args[i].index]), 0);
	ASSERT_EQ(fiber_spawn(r, stress_closer, NULL, &aux[0]), 0);
	ASSERT_EQ(fiber_spawn(r, stress_token_producer, NULL, &aux[1]), 0);
	ASSERT_EQ(fiber_spawn(r, stress_chaos, NULL, &aux[2]), 0);
	ASSERT_EQ(fiber_spawn(r, stress_watcher, NULL, &aux[3]), 0);
	/* Every fiber ends: a lost wake-up would leave one parked (-EDEADLK). */
	ASSERT_EQ(reactor_run(r), 0);
	ASSERT_EQ(join_all(st.f, st.nfibers), 0);
	ASSERT_EQ(join_all(aux, 4), 0);
	ASSERT_TRUE(!st.hung);
	ASSERT_EQ(st.unexpected, 0);
	ASSERT_EQ(st.ended, st.nfibers);
	ASSERT_EQ(st.in_cs, 0);
	ASSERT_EQ(iou_mutex_trylock(&st.m), 0);
	ASSERT_EQ(iou_mutex_unlock(&st.m), 0);
	ASSERT_EQ(st.holders, 0);
	ASSERT_LE(st.max_holders, SEM_UNITS);
	ASSERT_EQ(iou_sem_value(&st.s), SEM_UNITS);
	for (int p = 0; p < st.nprod; p++) {
		/* Items 0..sent-1 each received once, nothing else. */
		ASSERT_EQ(st.seen[p],
			  st.sent[p] == 32 ? UINT32_MAX : (UINT32_C(1) << st.sent[p]) - 1);
		total_sent += st.sent[p];
	}
	ASSERT_EQ(st.order_errors, 0);
	ASSERT_EQ(st.received, total_sent);
	ASSERT_EQ(st.produced, (long)st.cond_consumers * st.cond_quota);
	ASSERT_EQ(st.taken + st.tokens, st.produced);
	printf("# %d fibers, channel capacity %zu: %ld critical sections, %ld semaphore "
	       "entries (max %d holders), %ld items, %ld tokens; %ld timeouts, %ld cancels\n",
	       st.nfibers, st.ch.capacity, st.cs_entries, st.sem_entries, st.max_holders,
	       st.received, st.taken, st.timeouts, st.cancels);
	ASSERT_GT(st.cs_entries, 0);
	ASSERT_GT(st.received, 0);
	ASSERT_EQ(iou_chan_destroy(&st.ch), 0);
	ASSERT_EQ(iou_mutex_destroy(&st.m), 0);
	ASSERT_EQ(iou_sem_destroy(&st.s), 0);
	ASSERT_EQ(iou_cond_destroy(&st.cv), 0);
	ASSERT_EQ(iou_waitgroup_destroy(&st.alive), 0);
	ASSERT_EQ(iou_waitgroup_destroy(&st.producing), 0);
	free(st.f);
	free(st.role);
	free(st.rid);
	free(st.ended_one);
	free(st.sent);
	free(st.seen);
	free(st.last);
	free(args);
	free(rng_fiber);
	rng_fiber = NULL;
	rng_nfiber = 0;
	ASSERT_NO_FIBER_FAILURES();
	return 0;
}

/*
 * Seeds in a row (one under valgrind), each run once without timers
 * (deterministic) and once with; IOU_TEST_SEED=<n> runs just seed n.
 */
static int test_stress(void)
{
	const char *env = getenv("IOU_TEST_SEED");
	int seeds = RUNNING_ON_VALGRIND ? 1 : IOU_TEST_ASAN ? 2 : 5;
	uint64_t seed = (uint64_t)iou_now() ^ ((uint64_t)getpid() << 32);

	if (env && *env) {
		seed = strtoull(env, NULL, 0);
		seeds = 1;
	}
	for (int i = 0; i < seeds; i++)
		if (run_stress(seed + (uint64_t)i, false) || run_stress(seed + (uint64_t)i, true))
			return 1;
	return 0;
}

TEST_MAIN(T(test_mutex_basic), T(test_mutex_fifo_handoff), T(test_mutex_no_starvation),
	  T(test_mutex_interrupted), T(test_mutex_thread_context), T(test_cond_basic),
	  T(test_cond_interrupted), T(test_cond_thread_context), T(test_sem), T(test_waitgroup),
	  T(test_chan_basic), T(test_chan_producers_consumers), T(test_chan_rendezvous),
	  T(test_chan_close_wakes_all), T(test_chan_interrupted), T(test_chan_thread_context),
	  T(test_other_thread), T(test_stress))
