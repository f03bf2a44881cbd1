/* SPDX-License-Identifier: MIT */
/*
 * File-system operations (<ioucontext/fs.h>).  Each uses its io_uring
 * opcode when the reactor's probe found it and the plain system call
 * otherwise.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ioucontext/fs.h>

#include "op.h"

/* A directory descriptor and a path, as every *at call takes them. */
static inline int path_args(int dirfd, const char *path)
{
	if (dirfd < 0 && dirfd != AT_FDCWD)
		return -EBADF;
	return path ? 0 : -EFAULT;
}

/*
 * Begin an operation with @opcode, or -- where the kernel lacks it -- check
 * that a synchronous fallback may run and return 1 to ask for it.
 */
static int begin(struct reactor *r, unsigned opcode, struct iou__op *op,
		 struct io_uring_sqe **sqe)
{
	if (r && !iou__has_op(r, opcode)) {
		int ret = iou__check(r);

		return ret < 0 ? ret : 1;
	}
	return iou__op_begin(r, opcode, op, sqe);
}

IOU_API int iou_openat(struct reactor *r, int dirfd, const char *path, int flags, mode_t mode)
{
	struct io_uring_sqe *sqe;
	struct iou__op op;
	int ret;

	ret = path_args(dirfd, path);
	if (ret < 0)
		return ret;
	ret = begin(r, IORING_OP_OPENAT, &op, &sqe);
	if (ret)
		return ret < 0 ? ret : iou__sys(openat(dirfd, path, flags, mode));
	io_uring_prep_openat(sqe, dirfd, path, flags, mode);
	return IOU__OP_RUN(r, &op, sqe);
}

IOU_API int iou_open(struct reactor *r, const char *path, int flags, mode_t mode)
{
	return iou_openat(r, AT_FDCWD, path, flags, mode);
}

IOU_API int iou_close(struct reactor *r, int fd)
{
	struct io_uring_sqe *sqe;
	struct iou__op op;
	int ret;

	if (fd < 0)
		return -EBADF;
	if (r && r->current && r->current->cancelled) {
		/* Cancelled fibers must still release descriptors. */
		if (r != iou__self)
			return -EPERM;
		return iou__sys(close(fd));
	}
	ret = begin(r, IORING_OP_CLOSE, &op, &sqe);
	if (ret)
		return ret < 0 ? ret : iou__sys(close(fd));
	op.wait.hard = true;
	io_uring_prep_close(sqe, fd);
	/*
	 * Not IOU__OP_RUN: its fast path parks with the wait exposed to
	 * fiber_cancel() (f->wait), which would send the close a cancel.
	 */
	return iou__op_run(r, &op, sqe);
}

static int sync_op(struct reactor *r, int fd, unsigned flags)
{
	struct io_uring_sqe *sqe;
	struct iou__op op;

	if (fd < 0)
		return -EBADF;
	IOU__OP_BEGIN(r, IORING_OP_FSYNC, op, sqe);
	io_uring_prep_fsync(sqe, fd, flags);
	return IOU__OP_RUN(r, &op, sqe);
}

IOU_API int iou_fsync(struct reactor *r, int fd)
{
	return sync_op(r, fd, 0);
}

IOU_API int iou_fdatasync(struct reactor *r, int fd)
{
	return sync_op(r, fd, IORING_FSYNC_DATASYNC);
}

IOU_API int iou_statx(struct reactor *r, int dirfd, const char *path, int flags, unsigned mask,
		      struct statx *out)
{
	struct io_uring_sqe *sqe;
	struct iou__op op;
	int ret;

	ret = path_args(dirfd, path);
	if (ret < 0)
		return ret;
	if (!out)
		return -EFAULT;
	ret = begin(r, IORING_OP_STATX, &op, &sqe);
	if (ret)
		return ret < 0 ? ret : iou__sys(statx(dirfd, path, flags, mask, out));
	io_uring_prep_statx(sqe, dirfd, path, flags, mask, out);
	ret = IOU__OP_RUN(r, &op, sqe);
	if (ret == 0)
		iou__filled(out, sizeof(*out));
	return ret;
}

IOU_API int iou_fallocate(struct reactor *r, int fd, int mode, int64_t off, int64_t len)
{
	struct io_uring_sqe *sqe;
	struct iou__op op;
	int ret;

	if (fd < 0)
		return -EBADF;
	if (off < 0 || len <= 0)
		return -EINVAL;
	ret = begin(r, IORING_OP_FALLOCATE, &op, &sqe);
	if (ret)
		return ret < 0 ? ret : iou__sys(fallocate(fd, mode, off, len));
	io_uring_prep_fallocate(sqe, fd, mode, (off_t)off, (off_t)len);
	return IOU__OP_RUN(r, &op, sqe);
}

IOU_API int iou_ftruncate(struct reactor *r, int fd, int64_t len)
{
	struct io_uring_sqe *sqe;
	struct iou__op op;
	int ret;

	if (fd < 0)
		return -EBADF;
	if (len < 0)
		return -EINVAL;
	ret = begin(r, IOU__OP_FTRUNCATE, &op, &sqe);
	if (ret)
		return ret < 0 ? ret : iou__sys(ftruncate(fd, (off_t)len));
	io_uring_prep_rw(IOU__OP_FTRUNCATE, sqe, fd, NULL, 0, (uint64_t)len);
	return IOU__OP_RUN(r, &op, sqe);
}

IOU_API int iou_unlinkat(struct reactor *r, int dirfd, const char *path, int flags)
{
	struct io_uring_sqe *sqe;
	struct iou__op op;
	int ret;

	ret = path_args(dirfd, path);
	if (ret < 0)
		return ret;
	ret = begin(r, IORING_OP_UNLINKAT, &op, &sqe);
	if (ret)
		return ret < 0 ? ret : iou__sys(unlinkat(dirfd, path, flags));
	io_uring_prep_unlinkat(sqe, dirfd, path, flags);
	return IOU__OP_RUN(r, &op, sqe);
}

IOU_API int iou_renameat(struct reactor *r, int olddirfd, const char *oldpath, int newdirfd,
			 const char *newpath, unsigned flags)
{
	struct io_uring_sqe *sqe;
	struct iou__op op;
	int ret, ret2;

	ret = path_args(olddirfd, oldpath);
	ret2 = path_args(newdirfd, newpath);
	if (ret == -EBADF || ret2 == -EBADF)
		return -EBADF; /* a bad descriptor is reported before a NULL path */
	if (ret < 0 || ret2 < 0)
		return -EFAULT;
	ret = begin(r, IORING_OP_RENAMEAT, &op, &sqe);
	if (ret)
		return ret < 0 ? ret
			       : iou__sys(renameat2(olddirfd, oldpath, newdirfd, newpath, flags));
	io_uring_prep_renameat(sqe, olddirfd, oldpath, newdirfd, newpath, flags);
	return IOU__OP_RUN(r, &op, sqe);
}

IOU_API int iou_mkdirat(struct reactor *r, int dirfd, const char *path, mode_t mode)
{
	struct io_uring_sqe *sqe;
	struct iou__op op;
	int ret;

	ret = path_args(dirfd, path);
	if (ret < 0)
		return ret;
	ret = begin(r, IORING_OP_MKDIRAT, &op, &sqe);
	if (ret)
		return ret < 0 ? ret : iou__sys(mkdirat(dirfd, path, mode));
	io_uring_prep_mkdirat(sqe, dirfd, path, mode);
	return IOU__OP_RUN(r, &op, sqe);
}
