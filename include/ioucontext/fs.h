/* SPDX-License-Identifier: MIT */
/*
 * File-system operations: open, close, sync, statx, fallocate, ftruncate,
 * unlink, rename, mkdir.  The common rules of <ioucontext/io.h> apply
 * (fiber-blocking, -errno, deadline and cancel, FIFO submission).
 *
 * @dirfd arguments accept AT_FDCWD; any other negative value is -EBADF.
 * A NULL path is -EFAULT.  Where the kernel lacks an opcode (the probe of
 * reactor_op_supported() decides), the call falls back to the system call
 * itself, which may block the thread for as long as that call takes.
 */
#ifndef IOUCONTEXT_FS_H
#define IOUCONTEXT_FS_H

#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

struct reactor;
struct statx;

/**
 * iou_openat() - open @path relative to @dirfd, as openat(2).
 * @flags: O_* flags; O_CLOEXEC is advised (not added for you).
 * @mode: permissions for O_CREAT/O_TMPFILE.
 *
 * Return: the new descriptor, or -errno as openat(2).
 */
int iou_openat(struct reactor *r, int dirfd, const char *path, int flags, mode_t mode);

/** iou_open() - iou_openat() relative to the current directory. */
int iou_open(struct reactor *r, const char *path, int flags, mode_t mode);

/**
 * iou_close() - close @fd.
 *
 * The one call here that ignores the caller's deadline and cancellation
 * (<ioucontext/fiber.h> lists the others): a cancelled fiber must still be
 * able to release its descriptors, and closing never waits long.  Operations still in flight on @fd keep their
 * own reference to the file and complete on their own: to end them, call
 * iou_cancel_fd() (or iou_shutdown() on a socket) first.
 *
 * Return: 0, or -errno as close(2) (-EBADF if @fd is not open).
 */
int iou_close(struct reactor *r, int fd);

/** iou_fsync() - flush @fd's data and metadata to storage, as fsync(2). */
int iou_fsync(struct reactor *r, int fd);

/** iou_fdatasync() - flush @fd's data (and the metadata needed to read it). */
int iou_fdatasync(struct reactor *r, int fd);

/**
 * iou_statx() - file status, as statx(2).
 * @flags: AT_* flags (AT_EMPTY_PATH with path "" for @dirfd itself).
 * @mask: STATX_* fields wanted.
 * @out: receives the result; include <sys/stat.h> (with _GNU_SOURCE) or
 *       <linux/stat.h> for its definition.
 *
 * Return: 0, or -errno as statx(2); -EFAULT if @out is NULL.
 */
int iou_statx(struct reactor *r, int dirfd, const char *path, int flags, unsigned mask,
	      struct statx *out);

/**
 * iou_fallocate() - allocate or punch file space, as fallocate(2).
 *
 * Return: 0, or -errno as fallocate(2).
 */
int iou_fallocate(struct reactor *r, int fd, int mode, int64_t off, int64_t len);

/**
 * iou_ftruncate() - set @fd's size to @len bytes, as ftruncate(2).
 *
 * IORING_OP_FTRUNCATE where the kernel has it (6.9+), ftruncate(2) otherwise.
 * Return: 0, or -errno as ftruncate(2); -EINVAL if @len is negative.
 */
int iou_ftruncate(struct reactor *r, int fd, int64_t len);

/** iou_unlinkat() - remove a name (AT_REMOVEDIR: a directory), as unlinkat(2). */
int iou_unlinkat(struct reactor *r, int dirfd, const char *path, int flags);

/**
 * iou_renameat() - rename, as renameat2(2).
 * @flags: 0, RENAME_NOREPLACE, RENAME_EXCHANGE or RENAME_WHITEOUT.
 */
int iou_renameat(struct reactor *r, int olddirfd, const char *oldpath, int newdirfd,
		 const char *newpath, unsigned flags);

/** iou_mkdirat() - create a directory, as mkdirat(2). */
int iou_mkdirat(struct reactor *r, int dirfd, const char *path, mode_t mode);

#ifdef __cplusplus
}
#endif

#endif
