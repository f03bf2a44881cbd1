/* SPDX-License-Identifier: MIT */
/*
 * What the operation wrappers (io.c, fs.c, net.c) share: the begin/run
 * pair from op.c and the checks for calls that fall back to a plain system
 * call.
 */
#ifndef IOU_OP_H
#define IOU_OP_H

#include <ioucontext/io.h>

#include "core.h"

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
