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

#include "switch.h"

/*
 * Direct fiber-to-fiber switches allowed before control returns to the
 * driver, so that busy fibers cannot starve completions and timers.
 */
#define BUDGET 128

void iou__wake(struct reactor *r, struct iou__wait *w)
{
	w->done = true;
	if (w->fiber) {
		iou__runq_push(r, w->fiber);
	} else {
		/* The thread's own context waits: hand control back soon. */
		r->budget = 0;
	}
}

int iou__wait(struct reactor *r, struct iou__wait *w)
{
	w->fiber = r->current;
	if (w->fiber) {
		while (!w->done)
			IOU__PARK(r);
		return 0;
	}
	return iou__drive(r, &w->done);
}

/* Hand every completion in the CQ to the operation that submitted it. */
static void reap(struct reactor *r)
{
	struct io_uring_cqe *cqe;
	unsigned head, n = 0;

	io_uring_for_each_cqe(&r->ring, head, cqe)
	{
		n++;
		/* 0 and LIBURING_UDATA_TIMEOUT carry no operation of ours. */
		if (cqe->user_data == 0 || cqe->user_data == LIBURING_UDATA_TIMEOUT)
			continue;
	}
	io_uring_cq_advance(&r->ring, n);
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
		iou__wake(r, t->wait);
	}
}

/*
 * Submit what is queued, collect completions and fire due timers.  With
 * @block, wait in the kernel for a completion or the earliest timer first.
 * Makes no system call when nothing is queued or in flight and not blocking.
 */
int iou__poll(struct reactor *r, bool block)
{
	struct iou__timer *t = iou__timer_first(&r->timers);
	bool queued = io_uring_sq_ready(&r->ring) > 0;
	struct __kernel_timespec ts, *tsp = NULL;
	struct io_uring_cqe *cqe;
	int ret = 0;

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
	if (block) {
		if (!t && !r->inflight && !queued)
			return -EDEADLK;
		ret = io_uring_submit_and_wait_timeout(&r->ring, &cqe, 1, tsp, NULL);
	} else if (queued || r->inflight) {
		ret = io_uring_submit_and_get_events(&r->ring);
	}
	/* Timeouts, signals and a full CQ backlog are not failures here. */
	if (ret == -ETIME || ret == -EINTR || ret == -EAGAIN || ret == -EBUSY)
		ret = 0;
	if (ret < 0)
		return ret;
	reap(r);
	expire(r);
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
		if (done ? *done : (r->nfibers == 0 && r->inflight == 0))
			break;
		if (r->runq_head)
			ret = round_robin(r, BUDGET);
		else
			ret = iou__poll(r, true);
		if (ret < 0)
			break;
	}
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
