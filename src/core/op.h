/* SPDX-License-Identifier: MIT */
/*
 * What the operation wrappers (io.c, fs.c, net.c) share: the begin/run
 * pair from op.c and the checks for calls that fall back to a plain system
 * call.
 */
#ifndef IOU_OP_H
#define IOU_OP_H

#include <ioucontext/io.h>

#include "switch.h"

/*
 * Memory the kernel filled through io_uring is invisible to valgrind, which
 * would call it uninitialised: say so.  Costs a few instructions natively.
 */
#if defined(IOU_HAVE_VALGRIND)
#include <valgrind/memcheck.h>
#define iou__filled(p, n) ((void)VALGRIND_MAKE_MEM_DEFINED((p), (n)))
#else
#define iou__filled(p, n) ((void)(p), (void)(n))
#endif

struct iovec;
/* iou__filled() over the first @n bytes of an iovec array. */
void iou__filled_iov(const struct iovec *iov, size_t cnt, size_t n);

/* A transfer length as an SQE holds it, capped as read(2) caps it. */
static inline unsigned iou__clamp_len(size_t len)
{
	return len > IOU_IO_MAX ? (unsigned)IOU_IO_MAX : (unsigned)len;
}

/* Start an operation or return the reason it cannot start. */
#define IOU__OP_BEGIN(r, opcode, op, sqe)                                   \
	do {                                                                \
		int begin_ret_ = iou__op_begin((r), (opcode), &(op), &(sqe)); \
		if (iou__unlikely(begin_ret_ < 0))                          \
			return begin_ret_;                                  \
	} while (0)

/*
 * IOU__OP_RUN(r, op, sqe): iou__op_run() with its common case -- a fiber
 * without a deadline -- parked right here.  Expanded into each wrapper, a
 * resumed fiber returns straight to its caller instead of unwinding through
 * frames whose returns all mispredict after the stack switch.  A macro
 * (a statement expression) because GCC never inlines a function that calls
 * sigsetjmp.
 */
#define IOU__OP_RUN(r, op, sqe)                                                             \
	({                                                                                  \
		struct reactor *run_r_ = (r);                                               \
		struct iou__op *run_op_ = (op);                                             \
		struct fiber *run_f_ = run_r_->current;                                     \
		int run_ret_;                                                               \
                                                                                            \
		if (iou__unlikely(!run_f_ || run_f_->deadline != IOU_DEADLINE_NEVER ||      \
				  run_op_->state != IOU_OP_SUBMITTED)) {                    \
			run_ret_ = iou__op_run(run_r_, run_op_, (sqe));                     \
		} else {                                                                    \
			io_uring_sqe_set_data((sqe), run_op_);                              \
			run_r_->inflight++;                                                 \
			run_op_->wait.fiber = run_f_;                                       \
			run_f_->wait = &run_op_->wait;                                      \
			do                                                                  \
				IOU__PARK(run_r_);                                          \
			while (!run_op_->wait.done);                                        \
			run_f_->wait = NULL;                                                \
			run_ret_ = iou__op_result(run_op_);                                 \
		}                                                                           \
		run_ret_;                                                                   \
	})

/*
 * The checks an operation makes before it may run, for calls that end up
 * as a synchronous system call (a kernel without the opcode).
 */
static inline int iou__check(const struct reactor *r)
{
	if (!r)
		return -EINVAL;
	if (r != iou__self || r->closing)
		return -EPERM;
	if (r->current && r->current->cancelled)
		return -ECANCELED;
	return 0;
}

/* A system call's result as -errno. */
static inline int iou__sys(int ret)
{
	return ret < 0 ? -errno : ret;
}

#endif
