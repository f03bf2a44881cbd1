/* SPDX-License-Identifier: MIT */
/*
 * The scheduler: the run queue, parking and waking, and the loop that drives
 * a reactor from the thread's own context.
 *
 * Fibers switch directly to one another: a parking fiber resumes the next
 * runnable fiber itself, and returns to the thread's own context only when
 * the run queue is empty or its budget of direct switches is spent.  There
 * the driver collects kernel completions (without a system call when nothing
 * is in flight), fires expired timers, and when nothing is runnable blocks in
 * io_uring_enter until the earliest timer or the next completion.
 */
#include <errno.h>
#include <poll.h>

#include "switch.h"

/*
 * Direct fiber-to-fiber switches allowed before control returns to the
 * driver, so that busy fibers cannot starve completions and timers.
 */
#define BUDGET 128

void iou__wake(struct reactor *r, struct iou__wait *w)
{
	/* Idempotent: an interrupt and the event itself may both arrive. */
	if (w->done)
		return;
	w->done = true;
	if (w->fiber) {
		/* It runs after the rest of this batch: time for its lines to arrive. */
		iou__fiber_prefetch(w->fiber, w);
		iou__runq_push(r, w->fiber);
	} else {
		/* The thread's own context waits: hand control back soon. */
		r->budget = 0;
	}
}

/* End @w early with @why (-ETIMEDOUT, -ECANCELED); the first reason wins. */
void iou__interrupt(struct reactor *r, struct iou__wait *w, int why)
{
	if (w->done || w->why)
		return;
	w->why = why;
	if (w->abort)
		w->abort(r, w);
	else
		iou__wake(r, w);
}

/*
 * Park the caller until @w is woken, or until @until passes (then it ends
 * normally), or until the caller's deadline passes or its fiber is
 * cancelled (then it is interrupted).  One timer covers both times.
 * Return: 0, or the -errno the wait was interrupted with.
 */
int iou__wait_until(struct reactor *r, struct iou__wait *w, int64_t until)
{
	struct fiber *f = r->current;
	struct iou__timer t = { .index = IOU__TIMER_IDLE };
	int64_t deadline = IOU_DEADLINE_NEVER;
	int err = 0;

	/*
	 * Not yet the fiber's: an interrupt right here wakes @w at once, and
	 * must not queue the fiber that is running (it would be resumed again
	 * later, at whatever it parked in next, even after it finished).
	 */
	w->fiber = NULL;
	if (!w->hard) {
		deadline = f ? f->deadline : r->deadline;
		if (f && f->cancelled)
			iou__interrupt(r, w, -ECANCELED);
	}
	w->fiber = f;
	if (!w->done && (until != IOU_DEADLINE_NEVER || deadline != IOU_DEADLINE_NEVER)) {
		t.deadline = until <= deadline ? until : deadline;
		t.why = until <= deadline ? 0 : -ETIMEDOUT;
		t.wait = w;
		if (iou__timer_add(&r->timers, &t) < 0)
			iou__interrupt(r, w, -ENOMEM);
	}
	if (f) {
		if (!w->hard)
			f->wait = w;
		while (!w->done)
			IOU__PARK(r);
		f->wait = NULL;
	} else {
		while (!w->done) {
			err = iou__drive(r, &w->done);
			/* An operation in the kernel must end before its record goes. */
			if (err < 0 && !w->abort)
				break;
		}
	}
	if (t.index != IOU__TIMER_IDLE)
		iou__timer_del(&r->timers, &t);
	return w->why ? w->why : w->done ? 0 : err;
}

static void expire(struct reactor *r)
{
	struct iou__timer *t = iou__timer_first(&r->timers);
	int64_t now;

	if (!t)
		return;
	now = iou_now();
	while ((t = iou__timer_first(&r->timers)) && t->deadline <= now) {
		iou__timer_del(&r->timers, t);
		t->index = IOU__TIMER_IDLE;
		if (t->why)
			iou__interrupt(r, t->wait, t->why);
		else
			iou__wake(r, t->wait);
	}
}

/*
 * Under valgrind: wait in ppoll() on the ring fd instead of in
 * io_uring_enter.  valgrind 3.19 keeps its big lock while a thread sits in
 * io_uring_enter, so two reactors waiting for each other there would stall
 * every thread; ppoll is a call it knows to release the lock for.  The ring
 * has no DEFER_TASKRUN then (reactor.c): completions are posted to the CQ
 * by the kernel (or by task work, which interrupts the ppoll), and a poll
 * on the ring fd reports them, CQ overflow included.
 */
static int vg_wait(struct reactor *r, const struct __kernel_timespec *tsp)
{
	struct pollfd p = { .fd = r->ring.ring_fd, .events = POLLIN };
	struct timespec ts, *tp = NULL;
	int ret = io_uring_submit_and_get_events(&r->ring);

	if (ret < 0 || io_uring_cq_ready(&r->ring) || io_uring_cq_has_overflow(&r->ring))
		return ret;
	if (tsp) {
		ts.tv_sec = tsp->tv_sec;
		ts.tv_nsec = tsp->tv_nsec;
		tp = &ts;
	}
	if (ppoll(&p, 1, tp, NULL) < 0 && errno != EINTR)
		return -errno;
	return io_uring_submit_and_get_events(&r->ring);
}

/*
 * Submit what is queued, collect completions and fire due timers.  With
 * @block, wait in the kernel for a completion or the earliest timer first.
 * Makes no system call when nothing is queued or in flight and not blocking.
 */
int iou__poll(struct reactor *r, bool block)
{
	struct iou__timer *t;
	struct __kernel_timespec ts, *tsp = NULL;
	struct io_uring_cqe *cqe;
	bool queued;
	int ret = 0;

	/* Calls posted without a fence: finish the handshake before anything waits. */
	if (iou__unlikely(r->lanes_dirty))
		iou__lanes_settle(r);
	if (iou__unlikely(r->staged.head || r->cancelq.head || r->nowed)) {
		if (r->nowed)
			iou__mail_flush(r);
		ret = iou__flush(r);
		if (ret < 0)
			return ret;
	}
	t = iou__timer_first(&r->timers);
	if (block && t) {
		int64_t left = t->deadline - iou_now();

		if (left <= 0) {
			block = false;
		} else {
			ts.tv_sec = left / IOU_SEC;
			ts.tv_nsec = left % IOU_SEC;
			tsp = &ts;
		}
	}
	/* Announce the sleep to senders; mail already waiting cancels it. */
	if (block && r->mbox && !iou__mail_sleep(r))
		block = false;
	queued = io_uring_sq_ready(&r->ring) > 0;
	if (block) {
		if (!t && !r->inflight && !queued && !iou__mail_reachable(r)) {
			if (r->mbox)
				iou__mail_awake(r);
			return -EDEADLK;
		}
		if (iou__unlikely(r->ppoll_wait))
			ret = vg_wait(r, tsp);
		else
			ret = io_uring_submit_and_wait_timeout(&r->ring, &cqe, 1, tsp, NULL);
		if (r->mbox)
			iou__mail_awake(r);
	} else if (queued || r->inflight) {
		ret = io_uring_submit_and_get_events(&r->ring);
	}
	/* Timeouts, signals and a full CQ backlog are not failures here. */
	if (ret == -ETIME || ret == -EINTR || ret == -EAGAIN || ret == -EBUSY)
		ret = 0;
	if (ret < 0)
		return ret;
	iou__reap(r);
	expire(r);
	if (r->mbox)
		iou__mail_poll(r);
	return 0;
}

/*
 * Run one batch of runnable fibers, then collect what completed.  @budget
 * bounds the direct switches within the batch.
 */
static int round_robin(struct reactor *r, unsigned budget)
{
	r->budget = budget;
	IOU__SWITCH(r, NULL, iou__runq_pop(r));
	iou__stacks_trim(r);
	return iou__poll(r, false);
}

/*
 * Run the reactor from the thread's own context until *@done, or with a NULL
 * @done until no fiber and no operation is left.
 */
int iou__drive(struct reactor *r, const bool *done)
{
	int ret = 0;

	r->driving = true;
	for (;;) {
		/* Armed receive streams wait for data nobody may ever send. */
		if (done ? *done : (r->nfibers == 0 && r->inflight == r->background))
			break;
		if (r->runq_head)
			ret = round_robin(r, BUDGET);
		else
			ret = iou__poll(r, true);
		if (ret < 0)
			break;
	}
	/* Fibers may have posted since the last poll: nothing else will settle that. */
	if (r->lanes_dirty)
		iou__lanes_settle(r);
	r->driving = false;
	return ret < 0 ? ret : 0;
}

/* One non-blocking round from the thread's own context: each fiber runnable now runs once. */
int iou__tick(struct reactor *r)
{
	int ret;

	r->driving = true;
	if (r->runq_head) {
		unsigned n = 0;

		for (struct fiber *f = r->runq_head; f; f = f->next)
			n++;
		ret = round_robin(r, n - 1);
	} else {
		ret = iou__poll(r, false);
	}
	r->driving = false;
	return ret;
}
