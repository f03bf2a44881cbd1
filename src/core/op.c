/* SPDX-License-Identifier: MIT */
/*
 * Operations: getting an SQE (or a place in the FIFO of operations waiting
 * for one), submission in batches, the reaper that hands each completion to
 * the operation that asked for it, interruption by deadline or cancel, and
 * draining the ring at teardown.
 *
 * Life of an operation: the caller's iou__op lives on its own stack and is
 * the SQE's user_data.  If the SQ has a free slot and nobody is queued
 * before it, the SQE is prepared in place; otherwise it is prepared in the
 * record itself and the record joins the FIFO, which the driver copies into
 * the ring as slots free.  The driver submits everything at once when the
 * run queue runs dry.  A deadline or fiber_cancel() that interrupts a queued
 * operation unlinks it; one already submitted gets an ASYNC_CANCEL, and the
 * caller keeps waiting for the operation's own completion, so the kernel
 * never writes into a buffer after its call has returned.
 */
#include <errno.h>
#include <stddef.h>

#include "core.h"

#define op_of(w) ((struct iou__op *)((char *)(w) - offsetof(struct iou__op, wait)))

static void opq_push(struct iou__opq *q, struct iou__op *op)
{
	op->next = NULL;
	op->prev = q->tail;
	if (q->tail)
		q->tail->next = op;
	else
		q->head = op;
	q->tail = op;
}

static void opq_unlink(struct iou__opq *q, struct iou__op *op)
{
	if (op->prev)
		op->prev->next = op->next;
	else
		q->head = op->next;
	if (op->next)
		op->next->prev = op->prev;
	else
		q->tail = op->prev;
	op->prev = op->next = NULL;
}

/* The abort hook of every operation: see the file comment. */
static void op_abort(struct reactor *r, struct iou__wait *w)
{
	struct iou__op *op = op_of(w);

	if (op->state == IOU_OP_STAGED) {
		opq_unlink(&r->staged, op);
		op->state = IOU_OP_DONE;
		op->res = w->why;
		r->inflight--;
		iou__wake(r, w);
	} else if (op->state == IOU_OP_SUBMITTED && !op->cancel_sent && !op->cancel_queued) {
		op->cancel_queued = true;
		opq_push(&r->cancelq, op);
	}
}

/* Reset @op and find it a ring slot, or a place in the FIFO. */
static inline int prepare(struct reactor *r, struct iou__op *op, struct io_uring_sqe **sqe)
{
	op->wait = (struct iou__wait){ .abort = op_abort };
	op->complete = NULL;
	op->cancel_queued = op->cancel_sent = false;
	op->res = 0;
	op->cqe_flags = 0;
	/* FIFO: once anyone waits for a slot, newcomers queue behind them. */
	if (iou__likely(!r->staged.head)) {
		*sqe = io_uring_get_sqe(&r->ring);
		if (iou__likely(*sqe != NULL)) {
			op->state = IOU_OP_SUBMITTED;
			return 0;
		}
	}
	op->state = IOU_OP_STAGED;
	*sqe = &op->sqe;
	return 0;
}

/*
 * Begin an @opcode operation on @r from the calling context: check that the
 * kernel has it, that the caller may block here and has not been
 * cancelled, then return in *@sqe where to prepare it.
 */
int iou__op_begin(struct reactor *r, unsigned opcode, struct iou__op *op,
		  struct io_uring_sqe **sqe)
{
	struct fiber *f;

	if (iou__unlikely(!r))
		return -EINVAL;
	if (iou__unlikely(r != iou__self || r->closing))
		return -EPERM;
	if (iou__unlikely(!iou__has_op(r, opcode)))
		return -EOPNOTSUPP;
	f = r->current;
	if (iou__unlikely(f && f->cancelled))
		return -ECANCELED;
	return prepare(r, op, sqe);
}

/*
 * iou__op_begin() without its checks: for a request that the library
 * submits again from a completion callback, where whichever fiber happens
 * to be current has nothing to do with it.
 */
int iou__op_prepare(struct reactor *r, struct iou__op *op, struct io_uring_sqe **sqe)
{
	return prepare(r, op, sqe);
}

/* Hand the prepared operation to the ring (or the FIFO); does not wait. */
int iou__op_start(struct reactor *r, struct iou__op *op, struct io_uring_sqe *sqe)
{
	io_uring_sqe_set_data(sqe, op);
	r->inflight++;
	if (op->state == IOU_OP_STAGED)
		opq_push(&r->staged, op);
	return 0;
}

/*
 * Wait for the operation's last completion and return its result; if a
 * deadline or cancel interrupted it and the kernel reports it cancelled,
 * return why instead.  A result the kernel produced anyway (data read or
 * written, a connection accepted) is returned as is: nothing is lost.
 */
int iou__op_finish(struct reactor *r, struct iou__op *op)
{
	iou__wait(r, &op->wait);
	return iou__op_result(op);
}

int iou__op_run(struct reactor *r, struct iou__op *op, struct io_uring_sqe *sqe)
{
	iou__op_start(r, op, sqe);
	return iou__op_finish(r, op);
}

/* Move cancels, then staged operations, into free ring slots. */
static bool fill(struct reactor *r)
{
	struct io_uring_sqe *sqe;
	struct iou__op *op;

	while ((op = r->cancelq.head)) {
		sqe = io_uring_get_sqe(&r->ring);
		if (!sqe)
			return false;
		opq_unlink(&r->cancelq, op);
		op->cancel_queued = false;
		op->cancel_sent = true;
		io_uring_prep_cancel64(sqe, (uint64_t)(uintptr_t)op, 0);
		io_uring_sqe_set_data64(sqe, IOU__UDATA_CANCEL);
		r->inflight++;
	}
	while ((op = r->staged.head)) {
		sqe = io_uring_get_sqe(&r->ring);
		if (!sqe)
			return false;
		opq_unlink(&r->staged, op);
		*sqe = op->sqe;
		op->state = IOU_OP_SUBMITTED;
	}
	return true;
}

/*
 * Make room: while operations wait for ring slots, fill the SQ, submit it
 * and reap, so that the FIFO drains in order.  Stops early if the kernel
 * pushes back (-EBUSY/-EAGAIN); the next poll resumes.
 */
int iou__flush(struct reactor *r)
{
	while (!fill(r)) {
		int ret = io_uring_submit(&r->ring);

		if (ret == -EBUSY || ret == -EAGAIN || ret == -EINTR) {
			iou__reap(r);
			return 0;
		}
		if (ret < 0)
			return ret;
		iou__reap(r);
	}
	return 0;
}

/* A completion whose user_data is not an operation record (see core.h). */
static void reserved(struct reactor *r, const struct io_uring_cqe *cqe)
{
	uint64_t ud = cqe->user_data;

	if (ud == IOU__UDATA_CANCEL)
		r->inflight--;
	else if (ud == IOU__UDATA_MAIL || (ud & IOU__UDATA_TAGS) == IOU__UDATA_BELL)
		iou__mail_cqe(r, cqe);
	/* 0 and LIBURING_UDATA_TIMEOUT carry nothing of ours. */
}

static void complete(struct reactor *r, const struct io_uring_cqe *cqe)
{
	struct iou__op *op;

	if (iou__unlikely((cqe->user_data & IOU__UDATA_TAGS) || cqe->user_data == 0)) {
		reserved(r, cqe);
		return;
	}
	op = (struct iou__op *)(uintptr_t)cqe->user_data;
	if (!(cqe->flags & IORING_CQE_F_MORE)) {
		r->inflight--;
		op->state = IOU_OP_DONE;
		if (op->cancel_queued) {
			opq_unlink(&r->cancelq, op);
			op->cancel_queued = false;
		}
	}
	if (op->complete) {
		op->complete(r, op, cqe);
		return;
	}
	op->res = cqe->res;
	op->cqe_flags = cqe->flags;
	if (op->state == IOU_OP_DONE && !r->closing)
		iou__wake(r, &op->wait);
}

/*
 * Hand every completion in the CQ to its operation.  If the kernel had to
 * hold completions back because the CQ was full (it keeps them: NODROP),
 * ask for them and go on until none is left.
 */
void iou__reap(struct reactor *r)
{
	for (;;) {
		struct io_uring_cqe *cqe;
		unsigned head, n = 0;

		io_uring_for_each_cqe(&r->ring, head, cqe)
		{
			n++;
			complete(r, cqe);
		}
		io_uring_cq_advance(&r->ring, n);
		if (!io_uring_cq_has_overflow(&r->ring))
			break;
		if (io_uring_get_events(&r->ring) < 0 && n == 0)
			break;
	}
}

/*
 * Teardown: nothing may be left in the kernel that could write into a stack
 * or buffer about to be freed.  Cancel everything and reap until the ring
 * is quiet; waiters are not woken (their fibers will never run again).
 */
void iou__ops_drain(struct reactor *r)
{
	bool asked = false;
	unsigned idle = 0;

	r->closing = true;
	/* Never-submitted operations just leave. */
	while (r->staged.head) {
		struct iou__op *op = r->staged.head;

		opq_unlink(&r->staged, op);
		op->state = IOU_OP_DONE;
		r->inflight--;
	}
	while (r->cancelq.head) {
		struct iou__op *op = r->cancelq.head;

		opq_unlink(&r->cancelq, op);
		op->cancel_queued = false;
	}
	while (r->inflight > 0 && idle < 50) {
		struct __kernel_timespec ts = { .tv_nsec = 100 * IOU_MSEC };
		struct io_uring_cqe *cqe;
		unsigned before = r->inflight;
		int ret;

		if (!asked) {
			struct io_uring_sqe *sqe = io_uring_get_sqe(&r->ring);

			if (!sqe) {
				io_uring_submit(&r->ring);
				continue;
			}
			/* Kernels before 5.19 refuse ANY; their operations end on their own. */
			io_uring_prep_cancel64(sqe, 0, IORING_ASYNC_CANCEL_ANY | IORING_ASYNC_CANCEL_ALL);
			io_uring_sqe_set_data64(sqe, 0);
			asked = true;
		}
		ret = io_uring_submit_and_wait_timeout(&r->ring, &cqe, 1, &ts, NULL);
		if (ret < 0 && ret != -ETIME && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY)
			break;
		iou__reap(r);
		/* Give up on an operation the kernel will not end (5 s of silence). */
		idle = r->inflight < before ? 0 : idle + 1;
	}
}
