/* SPDX-License-Identifier: MIT */
/*
 * Operations on any descriptor (<ioucontext/io.h>): each checks its
 * arguments, prepares one SQE and waits for its completion through op.c;
 * read_all/write_all loop over them.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <sys/uio.h>
#include <unistd.h>

#include <ioucontext/io.h>

#include "op.h"

void iou__filled_iov(const struct iovec *iov, size_t cnt, size_t n)
{
	for (size_t i = 0; i < cnt && n > 0; i++) {
		size_t k = iov[i].iov_len < n ? iov[i].iov_len : n;

		iou__filled(iov[i].iov_base, k);
		n -= k;
	}
}

static ssize_t rw(struct reactor *r, int opcode, int fd, const void *buf, size_t len,
		  int64_t off)
{
	struct io_uring_sqe *sqe;
	struct iou__op op;
	int ret;

	if (iou__unlikely(fd < 0))
		return -EBADF;
	if (iou__unlikely(!buf && len))
		return -EFAULT;
	IOU__OP_BEGIN(r, opcode, op, sqe);
	io_uring_prep_rw(opcode, sqe, fd, buf, iou__clamp_len(len), (uint64_t)off);
	ret = IOU__OP_RUN(r, &op, sqe);
	if (opcode == IORING_OP_READ && ret > 0)
		iou__filled(buf, (size_t)ret);
	return ret;
}

IOU_API ssize_t iou_read(struct reactor *r, int fd, void *buf, size_t len)
{
	return rw(r, IORING_OP_READ, fd, buf, len, -1);
}

IOU_API ssize_t iou_pread(struct reactor *r, int fd, void *buf, size_t len, int64_t off)
{
	if (off < 0)
		return -EINVAL;
	return rw(r, IORING_OP_READ, fd, buf, len, off);
}

IOU_API ssize_t iou_write(struct reactor *r, int fd, const void *buf, size_t len)
{
	return rw(r, IORING_OP_WRITE, fd, buf, len, -1);
}

IOU_API ssize_t iou_pwrite(struct reactor *r, int fd, const void *buf, size_t len, int64_t off)
{
	if (off < 0)
		return -EINVAL;
	return rw(r, IORING_OP_WRITE, fd, buf, len, off);
}

static ssize_t rwv(struct reactor *r, int opcode, int fd, const struct iovec *iov, int iovcnt,
		   int64_t off)
{
	struct io_uring_sqe *sqe;
	struct iou__op op;
	int ret;

	if (iou__unlikely(fd < 0))
		return -EBADF;
	if (iou__unlikely(iovcnt < 0 || iovcnt > IOV_MAX))
		return -EINVAL;
	if (iou__unlikely(!iov && iovcnt))
		return -EFAULT;
	IOU__OP_BEGIN(r, opcode, op, sqe);
	io_uring_prep_rw(opcode, sqe, fd, iov, (unsigned)iovcnt, (uint64_t)off);
	ret = IOU__OP_RUN(r, &op, sqe);
	if (opcode == IORING_OP_READV && ret > 0)
		iou__filled_iov(iov, (size_t)iovcnt, (size_t)ret);
	return ret;
}

IOU_API ssize_t iou_readv(struct reactor *r, int fd, const struct iovec *iov, int iovcnt)
{
	return rwv(r, IORING_OP_READV, fd, iov, iovcnt, -1);
}

IOU_API ssize_t iou_preadv(struct reactor *r, int fd, const struct iovec *iov, int iovcnt,
			   int64_t off)
{
	if (off < 0)
		return -EINVAL;
	return rwv(r, IORING_OP_READV, fd, iov, iovcnt, off);
}

IOU_API ssize_t iou_writev(struct reactor *r, int fd, const struct iovec *iov, int iovcnt)
{
	return rwv(r, IORING_OP_WRITEV, fd, iov, iovcnt, -1);
}

IOU_API ssize_t iou_pwritev(struct reactor *r, int fd, const struct iovec *iov, int iovcnt,
			    int64_t off)
{
	if (off < 0)
		return -EINVAL;
	return rwv(r, IORING_OP_WRITEV, fd, iov, iovcnt, off);
}

/*
 * The loop behind read_all/write_all: go on over short transfers and
 * -EINTR; on an O_NONBLOCK descriptor, wait for readiness after -EAGAIN.
 */
static ssize_t transfer_all(struct reactor *r, int opcode, int fd, const void *buf, size_t len,
			    size_t *moved)
{
	const unsigned events = opcode == IORING_OP_READ ? POLLIN : POLLOUT;
	size_t done = 0;
	ssize_t ret = 0;

	if (!buf && len)
		ret = -EFAULT;
	while (ret >= 0 && done < len) {
		ret = rw(r, opcode, fd, (const char *)buf + done, len - done, -1);
		if (ret > 0) {
			done += (size_t)ret;
		} else if (ret == 0) {
			if (opcode == IORING_OP_READ)
				break; /* end of file */
			ret = -EIO;    /* a write that moves nothing would spin */
		} else if (ret == -EINTR) {
			ret = 0;
		} else if (ret == -EAGAIN) {
			ret = iou_poll(r, fd, events);
		}
	}
	if (moved)
		*moved = done;
	return ret < 0 ? ret : (ssize_t)done;
}

IOU_API ssize_t iou_read_all(struct reactor *r, int fd, void *buf, size_t len, size_t *moved)
{
	return transfer_all(r, IORING_OP_READ, fd, buf, len, moved);
}

IOU_API ssize_t iou_write_all(struct reactor *r, int fd, const void *buf, size_t len,
			      size_t *moved)
{
	return transfer_all(r, IORING_OP_WRITE, fd, buf, len, moved);
}

IOU_API int iou_poll(struct reactor *r, int fd, unsigned events)
{
	struct io_uring_sqe *sqe;
	struct iou__op op;

	if (iou__unlikely(fd < 0))
		return -EBADF;
	IOU__OP_BEGIN(r, IORING_OP_POLL_ADD, op, sqe);
	io_uring_prep_poll_add(sqe, fd, events);
	return IOU__OP_RUN(r, &op, sqe);
}

IOU_API ssize_t iou_splice(struct reactor *r, int fd_in, int64_t off_in, int fd_out,
			   int64_t off_out, size_t len, unsigned flags)
{
	struct io_uring_sqe *sqe;
	struct iou__op op;

	if (iou__unlikely(fd_in < 0 || fd_out < 0))
		return -EBADF;
	if (iou__unlikely(off_in < -1 || off_out < -1))
		return -EINVAL;
	IOU__OP_BEGIN(r, IORING_OP_SPLICE, op, sqe);
	io_uring_prep_splice(sqe, fd_in, off_in, fd_out, off_out, iou__clamp_len(len), flags);
	return IOU__OP_RUN(r, &op, sqe);
}

IOU_API ssize_t iou_tee(struct reactor *r, int fd_in, int fd_out, size_t len, unsigned flags)
{
	struct io_uring_sqe *sqe;
	struct iou__op op;

	if (iou__unlikely(fd_in < 0 || fd_out < 0))
		return -EBADF;
	IOU__OP_BEGIN(r, IORING_OP_TEE, op, sqe);
	io_uring_prep_tee(sqe, fd_in, fd_out, iou__clamp_len(len), flags);
	return IOU__OP_RUN(r, &op, sqe);
}

IOU_API int iou_pipe(struct reactor *r, int fds[2], int flags)
{
	struct io_uring_sqe *sqe;
	struct iou__op op;
	int ret;

	if (!fds)
		return -EFAULT;
	if (!r || !iou__has_op(r, IOU__OP_PIPE)) {
		ret = iou__check(r);
		if (ret < 0)
			return ret;
		return pipe2(fds, flags) ? -errno : 0;
	}
	IOU__OP_BEGIN(r, IOU__OP_PIPE, op, sqe);
	io_uring_prep_rw(IOU__OP_PIPE, sqe, 0, fds, 0, 0);
	sqe->rw_flags = flags;
	ret = IOU__OP_RUN(r, &op, sqe);
	if (ret == 0)
		iou__filled(fds, 2 * sizeof(int));
	return ret;
}

/* eventfd and timerfd transfer exactly one 8-byte counter. */
static int counter_rw(struct reactor *r, int opcode, int fd, uint64_t *value)
{
	ssize_t ret = rw(r, opcode, fd, value, sizeof(*value), -1);

	if (ret < 0)
		return (int)ret;
	return ret == sizeof(*value) ? 0 : -EIO;
}

IOU_API int iou_eventfd_read(struct reactor *r, int fd, uint64_t *value)
{
	if (!value)
		return -EFAULT;
	return counter_rw(r, IORING_OP_READ, fd, value);
}

IOU_API int iou_eventfd_write(struct reactor *r, int fd, uint64_t value)
{
	return counter_rw(r, IORING_OP_WRITE, fd, &value);
}

IOU_API int iou_timerfd_read(struct reactor *r, int fd, uint64_t *expirations)
{
	if (!expirations)
		return -EFAULT;
	return counter_rw(r, IORING_OP_READ, fd, expirations);
}

IOU_API int iou_nop(struct reactor *r)
{
	struct io_uring_sqe *sqe;
	struct iou__op op;

	IOU__OP_BEGIN(r, IORING_OP_NOP, op, sqe);
	io_uring_prep_nop(sqe);
	return IOU__OP_RUN(r, &op, sqe);
}

IOU_API int iou_cancel_fd(struct reactor *r, int fd)
{
	struct io_uring_sqe *sqe;
	struct iou__op op;
	int ret;

	int staged = 0;

	if (fd < 0)
		return -EBADF;
	IOU__OP_BEGIN(r, IORING_OP_ASYNC_CANCEL, op, sqe);
	/* Operations still waiting for a ring slot are not in the kernel yet. */
	for (struct iou__op *o = r->staged.head, *next; o; o = next) {
		next = o->next;
		if (o != &op && o->sqe.fd == fd && o->sqe.opcode != IORING_OP_ASYNC_CANCEL) {
			iou__interrupt(r, &o->wait, -ECANCELED);
			staged++;
		}
	}
	io_uring_prep_cancel_fd(sqe, fd, IORING_ASYNC_CANCEL_ALL);
	ret = IOU__OP_RUN(r, &op, sqe);
	if (ret == -ENOENT)
		ret = 0;
	return ret < 0 ? ret : ret + staged;
}
