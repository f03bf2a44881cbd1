/* SPDX-License-Identifier: MIT */
/*
 * Operations on file descriptors of any kind: read and write (plain,
 * positioned, vectored, and the read_all/write_all loops), poll, splice,
 * tee, pipe, eventfd and timerfd reads, nop, and cancelling every operation
 * on a descriptor.
 *
 * Common rules for every call here, in <ioucontext/fs.h> and in
 * <ioucontext/net.h>:
 *
 * - Each call submits one io_uring request on reactor @r, which must be the
 *   calling thread's reactor, and suspends the calling fiber until the
 *   request completes; other fibers run meanwhile.  Outside a fiber the call
 *   drives the reactor (running other fibers too) until its own completion,
 *   and may return while other work is pending (see reactor_runnable()).
 * - Results are >= 0 on success and -errno on failure; errno is never read
 *   or set.  The kernel's own errors are returned as the system call would
 *   return them (e.g. -EBADF for a descriptor that is not open).
 * - O_NONBLOCK: io_uring waits for readiness itself, and kernels since 6.x do
 *   so even on descriptors opened O_NONBLOCK; older ones return -EAGAIN
 *   there.  To try without waiting, set a deadline of IOU_DEADLINE_NOW
 *   (fiber_set_deadline()): -ETIMEDOUT then means "not ready", and nothing
 *   was consumed.  iou_read_all() and iou_write_all() handle both kinds of
 *   kernel.
 * - Every call is bounded by the caller's deadline (fiber_set_deadline()):
 *   -ETIMEDOUT; and fails with -ECANCELED once fiber_cancel() has been
 *   called on the fiber.  An interrupted call returns only after the kernel
 *   has posted the request's own completion; if it completed anyway, its
 *   real result is returned (nothing read or written is lost).
 * - Errors every call can return besides its own: -EINVAL if @r is NULL;
 *   -EPERM if @r is not the calling thread's reactor or is being destroyed;
 *   -EBADF for a negative descriptor; -EFAULT for a NULL buffer with a
 *   non-zero length; -ETIMEDOUT; -ECANCELED; -ENOMEM if the deadline timer
 *   cannot be stored; -EOPNOTSUPP if the kernel lacks the io_uring opcode
 *   and the call has no system-call fallback (reactor_op_supported()).
 *   Outside a fiber, also a -errno of io_uring_enter.
 * - Transfers are capped at IOU_IO_MAX bytes per call (as Linux caps read(2)
 *   and write(2)); the *_all helpers loop past it.
 * - Calls are batched: requests made while fibers run are submitted together
 *   when the run queue empties.  A request that finds the submission queue
 *   full waits, in FIFO order, for a slot; none is dropped.
 */
#ifndef IOUCONTEXT_IO_H
#define IOUCONTEXT_IO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

struct reactor;
struct iovec;

/** Largest transfer one call makes (Linux's MAX_RW_COUNT on 4 KiB pages). */
#define IOU_IO_MAX ((size_t)0x7ffff000)

/**
 * iou_read() - read up to @len bytes from @fd at its current position.
 *
 * Return: bytes read (0 at end of file), or -errno as read(2).
 */
ssize_t iou_read(struct reactor *r, int fd, void *buf, size_t len);

/**
 * iou_pread() - read up to @len bytes from @fd at offset @off (>= 0).
 *
 * Return: bytes read, or -errno as pread(2); -EINVAL if @off is negative.
 */
ssize_t iou_pread(struct reactor *r, int fd, void *buf, size_t len, int64_t off);

/**
 * iou_write() - write up to @len bytes to @fd at its current position.
 *
 * Return: bytes written (may be short), or -errno as write(2).
 */
ssize_t iou_write(struct reactor *r, int fd, const void *buf, size_t len);

/**
 * iou_pwrite() - write up to @len bytes to @fd at offset @off (>= 0).
 *
 * Return: bytes written, or -errno as pwrite(2); -EINVAL if @off < 0.
 */
ssize_t iou_pwrite(struct reactor *r, int fd, const void *buf, size_t len, int64_t off);

/**
 * iou_readv() - scatter read into @iovcnt buffers at the current position.
 *
 * @iov must stay valid until the call returns (it does: the call waits).
 * Return: bytes read, or -errno as readv(2); -EFAULT if @iov is NULL with
 * @iovcnt > 0; -EINVAL if @iovcnt is negative or above IOV_MAX.
 */
ssize_t iou_readv(struct reactor *r, int fd, const struct iovec *iov, int iovcnt);

/** iou_preadv() - iou_readv() at offset @off (>= 0). */
ssize_t iou_preadv(struct reactor *r, int fd, const struct iovec *iov, int iovcnt, int64_t off);

/** iou_writev() - gather write from @iovcnt buffers; errors as iou_readv(). */
ssize_t iou_writev(struct reactor *r, int fd, const struct iovec *iov, int iovcnt);

/** iou_pwritev() - iou_writev() at offset @off (>= 0). */
ssize_t iou_pwritev(struct reactor *r, int fd, const struct iovec *iov, int iovcnt, int64_t off);

/**
 * iou_read_all() - read until @len bytes have arrived or end of file.
 * @moved: if not NULL, receives the bytes read, also when an error ends the
 *         loop (so a caller knows what arrived before it).
 *
 * Loops over short reads and -EINTR.  On a descriptor opened O_NONBLOCK,
 * -EAGAIN makes it wait for readiness with iou_poll() and go on.
 *
 * Return: bytes read (less than @len only at end of file), or -errno from
 * the failing read (what was read before it is in *@moved).
 */
ssize_t iou_read_all(struct reactor *r, int fd, void *buf, size_t len, size_t *moved);

/**
 * iou_write_all() - write all @len bytes, looping over short writes.
 * @moved: as for iou_read_all().
 *
 * Return: @len, or -errno from the failing write (e.g. -EPIPE, -ETIMEDOUT),
 * or -EIO if a write moved nothing (looping on it would spin); what was
 * written before it is in *@moved.
 */
ssize_t iou_write_all(struct reactor *r, int fd, const void *buf, size_t len, size_t *moved);

/**
 * iou_poll() - wait until @fd reports one of @events (POLLIN, POLLOUT, ...).
 *
 * Return: the events that are ready (as poll(2)'s revents, which may
 * include POLLERR, POLLHUP, POLLNVAL), or -errno.
 */
int iou_poll(struct reactor *r, int fd, unsigned events);

/**
 * iou_splice() - move up to @len bytes between @fd_in and @fd_out, one of
 * which must be a pipe, without copying through user space.
 * @off_in, @off_out: offset in a non-pipe file, or -1 for its position
 *         (always -1 for a pipe).
 * @flags: SPLICE_F_* (SPLICE_F_MOVE, SPLICE_F_NONBLOCK, ...).
 *
 * Return: bytes moved (0: end of input), or -errno as splice(2).
 */
ssize_t iou_splice(struct reactor *r, int fd_in, int64_t off_in, int fd_out, int64_t off_out,
		   size_t len, unsigned flags);

/**
 * iou_tee() - duplicate up to @len bytes from pipe @fd_in into pipe @fd_out
 * without consuming them.
 *
 * Return: bytes duplicated, or -errno as tee(2).
 */
ssize_t iou_tee(struct reactor *r, int fd_in, int fd_out, size_t len, unsigned flags);

/**
 * iou_pipe() - create a pipe: @fds[0] is the read end, @fds[1] the write end.
 * @flags: O_CLOEXEC, O_NONBLOCK, O_DIRECT, as pipe2(2).
 *
 * Uses IORING_OP_PIPE where the kernel has it (6.16+), pipe2(2) otherwise
 * (which never blocks).
 *
 * Return: 0, or -errno as pipe2(2); -EFAULT if @fds is NULL.
 */
int iou_pipe(struct reactor *r, int fds[2], int flags);

/**
 * iou_eventfd_read() - wait for and take an eventfd's counter.
 * @value: receives the counter (or 1 in EFD_SEMAPHORE mode).
 *
 * Return: 0, or -errno as read(2) on an eventfd; -EFAULT if @value is NULL;
 * -EIO if the read moved other than 8 bytes (@fd is no eventfd).
 */
int iou_eventfd_read(struct reactor *r, int fd, uint64_t *value);

/**
 * iou_eventfd_write() - add @value to an eventfd's counter, waiting while
 * it would overflow.
 *
 * Return: 0, or -errno as write(2) on an eventfd (-EINVAL for UINT64_MAX);
 * -EIO if the write moved other than 8 bytes (@fd is no eventfd).
 */
int iou_eventfd_write(struct reactor *r, int fd, uint64_t value);

/**
 * iou_timerfd_read() - wait until a timerfd expires.
 * @expirations: receives how many expirations happened since the last read.
 *
 * Return: 0, or -errno as read(2) on a timerfd (-ECANCELED also when a
 * TFD_TIMER_CANCEL_ON_SET clock was changed); -EFAULT if @expirations is
 * NULL; -EIO if the read moved other than 8 bytes (@fd is no timerfd).
 */
int iou_timerfd_read(struct reactor *r, int fd, uint64_t *expirations);

/**
 * iou_nop() - a request that does nothing: one round trip through the ring.
 *
 * Return: 0, or -errno.
 */
int iou_nop(struct reactor *r);

/**
 * iou_cancel_fd() - cancel every operation in flight on @fd, from any fiber.
 *
 * The cancelled operations return -ECANCELED to their callers (or their
 * real result, if they completed first).  Does not wait for them.
 *
 * Return: how many operations were found and cancelled (0 if none), or
 * -errno; -EINVAL on kernels before 5.19, which cannot cancel by descriptor.
 */
int iou_cancel_fd(struct reactor *r, int fd);

#ifdef __cplusplus
}
#endif

#endif
