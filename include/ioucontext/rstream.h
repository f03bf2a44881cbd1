/* SPDX-License-Identifier: MIT */
/*
 * Receive streams: one multishot receive kept armed on a socket, reading
 * into buffers the kernel picks from a ring of provided buffers, consumed
 * in place by the fiber that reads.
 *
 * A plain receive loop (iou_recv() then iou_send()) submits one request per
 * receive, and the kernel arms a fresh readiness poll for each.  A receive
 * stream submits one request for as long as data keeps coming: each arrival
 * is a completion naming the buffer the kernel filled, queued on the stream
 * in arrival order; iou_rstream_peek() hands out the oldest bytes without a
 * copy and iou_rstream_consume() returns a buffer to the ring once all its
 * bytes are used.  That path -- completion, wake-up, peek, consume, buffer
 * back in the ring -- makes no system call and no allocation.
 *
 *     struct iou_rstream *s;
 *     const void *p;
 *     ssize_t n;
 *
 *     if (iou_rstream_open(r, fd, NULL, &s) < 0)   // the reactor's default ring
 *             return;
 *     while ((n = iou_rstream_peek(r, s, &p)) > 0) {
 *             if (iou_write_all(r, fd, p, (size_t)n, NULL) < 0)
 *                     break;
 *             iou_rstream_consume(s, (size_t)n);
 *     }
 *     iou_rstream_close(r, s);                     // fd stays open
 *     iou_close(r, fd);
 *
 * Common rules:
 *
 * - A buffer ring (struct iou_bufring) belongs to one reactor and is shared
 *   by any number of its streams.  Each reactor has a default ring, made on
 *   the first iou_rstream_open() that asks for it (IOU_DEFAULT_BUFRING_COUNT
 *   buffers of IOU_DEFAULT_BUFRING_SIZE bytes, or the reactor options
 *   bufring_count and bufring_size).
 * - Fairness.  A stream holding IOU_RSTREAM_LIMIT(count) buffers of its
 *   ring -- an eighth of the ring, at least 2 -- while its reader lags has
 *   its request cancelled, and re-armed once the reader has consumed down
 *   to half that, so one slow reader cannot take the whole ring (a burst
 *   already waiting in the socket can take more buffers before the
 *   pause takes effect: the kernel fills buffers without asking).  When the
 *   ring runs dry anyway (say, nine clients that send and never read their
 *   replies, each stream at its limit), a reader that needs a buffer
 *   reclaims them: every other stream whose reader is not waiting for data
 *   has its queued bytes copied to a heap area of its own (its "spill",
 *   served before anything received later, freed once read) and its
 *   request paused until its reader has read them; bytes of a reader's last
 *   peek that it has not consumed yet are never moved.  A stalled stream so
 *   costs heap memory for what it had already received -- at most its
 *   limit of buffers plus that burst -- instead of ring buffers.  If
 *   nothing can be reclaimed (every buffer is the unconsumed bytes of some
 *   reader's peek) the reader waits (parked, never spinning) until a buffer
 *   comes back.  Bytes are delivered exactly once and in order across all
 *   of this: the kernel keeps them in the socket until a request takes
 *   them, and a request is re-armed only after the previous one's last
 *   completion.
 * - One reader at a time: a peek, read, forward or flush while another
 *   fiber of the same stream is parked in one fails with -EBUSY.
 * - Deadlines and cancellation bound the waiting, as for every blocking
 *   call: a peek or read that has to wait fails with -ETIMEDOUT once the
 *   caller's deadline passes (IOU_DEADLINE_NOW: data already received is
 *   returned, otherwise -ETIMEDOUT) and with -ECANCELED in a cancelled
 *   fiber.  The stream stays usable and loses nothing: the receive request
 *   goes on, and what it brings is there for the next call.  Data already
 *   queued is returned even in a cancelled fiber, since no wait is needed.
 * - Outside a fiber (the thread's own context) every call is allowed; a
 *   wait drives the reactor and fails with -EDEADLK if nothing could ever
 *   end it.  An armed stream does not keep reactor_run() going by itself.
 * - End of stream.  A peek or read returns 0 once the peer has shut down
 *   its side and every byte before that has been read, and -errno (say
 *   -ECONNRESET) after every byte received before the error; both are
 *   sticky: every later call returns the same.
 * - Without multishot receive or buffer rings (kernels before 6.0, or a
 *   reactor made with multishot off: IOU_MULTISHOT=0), the same calls work
 *   through one plain receive per peek into a buffer of the ring's buffer
 *   size that each stream allocates for itself, with the same guarantees.
 * - Lifetime.  Close every stream of a ring before destroying the ring, and
 *   a stream before closing its descriptor (the receive request holds its
 *   own reference to the socket: closing the descriptor alone ends
 *   nothing; shutting the socket down does).  Destroying the reactor
 *   cancels every request, waits for them, and frees its streams and rings:
 *   their handles are dead afterwards.
 * - Errors every call can return besides its own: -EINVAL for a NULL
 *   reactor or object, or an object of another reactor; -EPERM if @r is not
 *   the calling thread's reactor, or is being destroyed.
 */
#ifndef IOUCONTEXT_RSTREAM_H
#define IOUCONTEXT_RSTREAM_H

#include <stddef.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

struct reactor;

/** A ring of provided buffers registered with one reactor's io_uring (opaque). */
struct iou_bufring;

/** A multishot receive on one socket, reading into a buffer ring (opaque). */
struct iou_rstream;

/** Most buffers a ring can have (the kernel's limit). */
#define IOU_BUFRING_MAX_COUNT 32768u
/** Largest buffer size. */
#define IOU_BUFRING_MAX_SIZE ((size_t)1 << 20)

/**
 * IOU_RSTREAM_LIMIT() - buffers of a ring of @count that one stream may hold
 * before its request is paused: @count / 8, at least 2.  It resumes when
 * its reader has consumed down to half that.
 */
#define IOU_RSTREAM_LIMIT(count) ((count) / 8 >= 2 ? (count) / 8 : 2u)

/**
 * iou_bufring_create() - make a ring of @count buffers of @size bytes and
 * register it with @r's io_uring.
 * @count: a power of two, 1..IOU_BUFRING_MAX_COUNT.
 * @size:  bytes per buffer, 1..IOU_BUFRING_MAX_SIZE: the most one
 *         completion delivers.  Each buffer takes @size rounded up to 64
 *         bytes of address space; pages are only made resident as the
 *         kernel writes them.
 * @out:   receives the ring, which @r owns: free it with
 *         iou_bufring_destroy(), or let the reactor's teardown do it.
 *
 * Picks a buffer group id no other ring of @r uses.  Where the kernel has
 * no buffer rings (before 5.19) or the reactor has multishot requests off,
 * no memory is mapped and streams on the ring use the plain-receive
 * fallback.  Never suspends.
 *
 * Return: 0; -EINVAL for a bad @count or @size, or a NULL @out; -ENOMEM;
 * -ENOSPC if all 65536 buffer group ids are taken; or the -errno of
 * io_uring_register_buf_ring(); the common errors.
 */
int iou_bufring_create(struct reactor *r, unsigned count, size_t size, struct iou_bufring **out);

/**
 * iou_bufring_destroy() - unregister and free @br.
 *
 * Never suspends.  Return: 0; -EBUSY while streams are open on it (close
 * them first); the common errors.
 */
int iou_bufring_destroy(struct reactor *r, struct iou_bufring *br);

/**
 * iou_rstream_open() - start receiving from socket @fd into @br.
 * @fd:  a connected stream socket (TCP, UNIX); not taken over: the caller
 *       still closes it, after iou_rstream_close().
 * @br:  the buffer ring to read into, or NULL for @r's default ring (made
 *       now if this is the first use; see the rules above).
 * @out: receives the stream, which the caller owns: free it with
 *       iou_rstream_close(), or let the reactor's teardown do it.
 *
 * Arms the receive at once, so data that arrives before the first peek is
 * already waiting for it.  Puts @fd in a free slot of the reactor's table
 * of registered files, if it has one (reactor_options.file_slots): the
 * stream's receive and its forwards back to @fd then name the slot, which
 * spares the kernel a file lookup per request.  Allocates the stream (and,
 * in the fallback, its buffer).  Never suspends.
 *
 * Return: 0; -EBADF if @fd is negative or not open; -EINVAL if @out is
 * NULL; -ENOMEM; the errors of iou_bufring_create() for the default ring;
 * the common errors.
 */
int iou_rstream_open(struct reactor *r, int fd, struct iou_bufring *br, struct iou_rstream **out);

/**
 * iou_rstream_peek() - the oldest bytes of @s not yet consumed, in place.
 * @data: receives their address, valid until they are consumed, the stream
 *        closed or the reactor destroyed; the bytes are the caller's to
 *        read (and even to modify) until then.
 *
 * Waits until data is queued (parks the calling fiber; outside a fiber,
 * drives the reactor), re-arming the receive request if it had ended
 * (ring ran dry, fairness pause).  The bytes returned lie in one buffer; a
 * later peek after consuming them returns the next buffer's.  Peeking
 * again without consuming returns the same bytes.
 *
 * Return: the number of bytes at *@data (> 0); 0 at end of stream (the peer
 * shut down, after all its data); the socket's -errno after all data
 * queued before it (-ECONNRESET, ...; sticky, as 0); -ETIMEDOUT;
 * -ECANCELED; -EBUSY if another fiber is already waiting in a peek or read
 * of @s; -ENOMEM (a deadline timer, or the fallback's buffer); outside a
 * fiber, -EDEADLK or an -errno of io_uring_enter; -EINVAL if @data is
 * NULL; the common errors.
 */
ssize_t iou_rstream_peek(struct reactor *r, struct iou_rstream *s, const void **data);

/**
 * iou_rstream_consume() - mark the first @n bytes of the last peek as used.
 * @n: at most what the last iou_rstream_peek() returned, less what was
 *     consumed since; a larger @n is clamped to that (never beyond what the
 *     caller has seen).
 *
 * A buffer whose bytes are all consumed goes back to the ring at once (a
 * store into shared memory, no system call); a stream paused for holding
 * too many buffers is re-armed once down to its low mark.  Never suspends,
 * never fails: a NULL @s, a call from another thread than the stream's
 * reactor's, or a closed reactor, does nothing.
 */
void iou_rstream_consume(struct iou_rstream *s, size_t n);

/**
 * iou_rstream_read() - copy up to @len received bytes into @buf, as recv(2).
 *
 * Waits as iou_rstream_peek() for the first byte, then copies from as many
 * queued buffers as it can without waiting again, and consumes what it
 * copied.  @len 0 returns 0 at once.
 *
 * Return: bytes copied (> 0); 0 at end of stream; otherwise as
 * iou_rstream_peek(); -EFAULT if @buf is NULL with a non-zero @len.  An
 * error or end of stream that follows copied bytes is returned by the next
 * call.
 */
ssize_t iou_rstream_read(struct reactor *r, struct iou_rstream *s, void *buf, size_t len);

/**
 * iou_rstream_forward() - send the first @n bytes of the last peek to @fd
 * without waiting for the send, and consume them.
 * @fd: a connected stream socket (often the stream's own: an echo), not
 *      taken over.
 * @n:  at most what the last iou_rstream_peek() returned, less what was
 *      consumed since; a larger @n is clamped to that (and to IOU_IO_MAX).
 *
 * The loop of a relay or an echo server,
 *
 *     while ((n = iou_rstream_peek(r, s, &p)) > 0)
 *             if (iou_rstream_forward(r, s, out, (size_t)n) < 0)
 *                     break;
 *     if (n == 0)
 *             iou_rstream_flush(r, s);     // the last bytes are out
 *
 * parks once per arrival (in the peek) instead of twice: the send goes to
 * the kernel with the next batch of requests and the caller goes on.  The
 * bytes are sent in place from the ring buffer, which returns to the ring
 * when the send ends.  If @fd's send buffer cannot take them all at once
 * (a peer that reads slowly), the rest is copied to a heap block of the
 * stream's and sent from there as room appears, so that a slow peer holds
 * no ring buffer; bytes from a stream's spill or from the plain-receive
 * fallback are copied to such a block from the start.
 *
 * A send in flight is an operation like any other: reactor_run() returns
 * only once it has ended (a peer that never reads holds it up; close the
 * stream or set a deadline on the next forward or flush).
 *
 * One forward at a time per stream: a forward while the previous one's
 * bytes are still going out waits for them (parks; outside a fiber,
 * drives the reactor), bounded by the caller's deadline (-ETIMEDOUT) and
 * cancellation (-ECANCELED), and then nothing is consumed.  A failure of
 * the send (the peer reset, say) is kept and returned by every later
 * forward and flush of @s: the bytes that were forwarded before it may or
 * may not have reached @fd.  A receive error stays the peek's to report.
 *
 * Return: bytes forwarded and consumed (> 0); 0 if @n (clamped) is 0; the
 * -errno of an earlier forward's send (sticky); -ETIMEDOUT; -ECANCELED
 * (also in a cancelled fiber that did not have to wait: nothing is sent);
 * -EBUSY if another fiber is waiting in a peek, read, forward or flush of
 * @s; -EBADF if @fd is negative; -ENOMEM (the copy of a spill or of the
 * fallback's buffer); -EOPNOTSUPP if the kernel has no send request;
 * outside a fiber, -EDEADLK or an -errno of io_uring_enter; the common
 * errors.  The send's own errors are those of send(2).
 */
ssize_t iou_rstream_forward(struct reactor *r, struct iou_rstream *s, int fd, size_t n);

/**
 * iou_rstream_flush() - wait until every byte forwarded from @s has been
 * sent, and report how the forwards went.
 *
 * Parks while a forward's send is in flight (outside a fiber, drives the
 * reactor), bounded by the caller's deadline and cancellation; returns at
 * once if none is.  Call it before iou_rstream_close() when the forwarded
 * bytes must not be lost (close cancels a send in flight).
 *
 * Return: 0 if every forward of @s was sent in full; the sticky -errno of
 * the first send that failed; -ETIMEDOUT or -ECANCELED (the send goes on);
 * -EBUSY as iou_rstream_forward(); outside a fiber, -EDEADLK or an -errno
 * of io_uring_enter; the common errors.
 */
int iou_rstream_flush(struct reactor *r, struct iou_rstream *s);

/**
 * iou_rstream_close() - stop receiving and free @s.
 *
 * Cancels the receive request if it is armed and waits for its last
 * completion (so the kernel never writes into the ring for @s afterwards),
 * ignoring the caller's deadline and cancellation; likewise cancels and
 * waits for a forward's send in flight (forwarded bytes not sent yet are
 * lost: iou_rstream_flush() first to keep them); returns every buffer @s
 * holds to the ring; frees @s.  Bytes received but not consumed are
 * discarded; bytes the kernel had not handed over stay in the socket.
 * Empties the stream's slot of the registered-file table and waits for
 * the kernel to have done it, so that closing the descriptor afterwards
 * closes the socket at once.  Does not close the descriptor.  May suspend
 * briefly (the cancellation, the table update); works in a cancelled fiber.
 *
 * Return: 0; -EBUSY if another fiber is parked in a peek, read, forward
 * or flush of @s (@s is left untouched: cancel that fiber first); the
 * common errors.
 */
int iou_rstream_close(struct reactor *r, struct iou_rstream *s);

#ifdef __cplusplus
}
#endif

#endif
