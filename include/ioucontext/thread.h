/* SPDX-License-Identifier: MIT */
/*
 * Many reactors: messages and function calls posted from one thread's
 * reactor to another's, a channel between fibers of different threads,
 * fibers spawned on another reactor and joined from this one, and a group
 * of threads each running its own pinned reactor.
 *
 * Mailboxes.  Every reactor that takes part has a mailbox, which only the
 * owning reactor empties.  Each reactor that posts to it gets a lane there
 * of its own: a bounded queue of IOU_DEFAULT_MAILBOX calls (unless the
 * owner's reactor_mailbox_create() said otherwise), made on its first post.
 * Posting takes no lock, no atomic read-modify-write and no system call
 * unless the owner is asleep; then one doorbell wakes it: an
 * IORING_OP_MSG_RING request from the sender's ring to the owner's, or,
 * where the kernel lacks MSG_RING (or IOU_DISABLE_OPCODES=40 says to act as
 * if), a write to an eventfd the owner keeps a read armed on.  A call
 * posted from a fiber or a callback is published at once; the doorbell for
 * a sleeping owner goes out at the sender's next poll, as io_uring
 * submissions do, or after about a thousand more calls if the sender keeps
 * posting (so a fiber should not post and then compute for long without
 * ever parking).  From the thread's own context outside the driver it goes
 * out at once.  A reactor blocks only in io_uring_enter; no futex is
 * involved anywhere.
 *
 * Delivery.  The owner runs posted calls in its thread's own context (not
 * in a fiber), between batches of fibers, whenever it polls its ring: in
 * reactor_run(), reactor_serve() or any blocking call made outside a fiber.
 * Messages posted while its thread is busy elsewhere (not in ioucontext)
 * wait in the mailbox until it comes back.  Calls from one sending reactor
 * to one target run in the order posted.
 *
 * Handles.  A struct reactor_ref is a counted handle on a reactor's
 * mailbox, not on the reactor: it stays valid after the reactor has been
 * destroyed (posts then fail with -ESHUTDOWN), until its last reference is
 * dropped.  That is how other threads may keep talking to a reactor that
 * can go away at any time.
 *
 * Teardown.  When a reactor is destroyed (reactor_destroy() or thread
 * exit), its mailbox closes: calls still queued in it are handed back to
 * their callbacks with status -ESHUTDOWN -- on the sending reactor's thread,
 * when it next polls (or is torn down itself), or, if the sender is gone
 * already, right there -- senders waiting for room fail with -ESHUTDOWN,
 * fibers it ran for fiber_spawn_on() report -ESHUTDOWN to their joiners,
 * and its own fibers parked on cross-reactor objects are taken off them.
 * Calls it posted to others before it went are still delivered.  Nothing is
 * lost silently and nothing leaks.
 *
 * Calls in this header that can suspend obey the caller's deadline and
 * fiber_cancel() like every blocking call (-ETIMEDOUT, -ECANCELED); outside
 * a fiber they drive the caller's reactor until done.  The thread's own
 * context inside a posted callback must not suspend: there, calls that
 * would wait fail with -EAGAIN instead.
 */
#ifndef IOUCONTEXT_THREAD_H
#define IOUCONTEXT_THREAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ioucontext/fiber.h>

#ifdef __cplusplus
extern "C" {
#endif

struct reactor;

/** Calls each sender's lane into a mailbox holds, unless reactor_mailbox_create() says otherwise. */
#define IOU_DEFAULT_MAILBOX 4096u

/** A counted handle on a reactor's mailbox (opaque); see the file comment. */
struct reactor_ref;

/**
 * reactor_call_fn - a call posted to a reactor.
 * @r:      the reactor running it (the caller's thread's), or NULL when
 *          @status < 0
 * @arg:    what was posted with it
 * @status: 0: delivered, running on @r's thread; -ESHUTDOWN: not delivered,
 *          the target was torn down first (runs on the sender's thread at
 *          its next poll or teardown, or on the target's thread as it goes
 *          down if the sender is gone already; @r is NULL), so the callback
 *          can release @arg
 *
 * Runs exactly once per successful post, in the target thread's own
 * context, never in a fiber.  It must not suspend (spawn a fiber for
 * that): it may spawn fibers, unpark fibers, use the try variants and
 * reactor_post_try(), and post to other reactors (reactor_post() here
 * behaves as reactor_post_try()).
 */
typedef void reactor_call_fn(struct reactor *r, void *arg, int status);

/**
 * reactor_mailbox_create() - give @r its mailbox now, with lanes of @slots.
 * @slots: calls each sender's lane holds, rounded up to a power of two, 2
 *         to 65536 (16 bytes each, allocated on each sender's first post).
 *
 * Mailboxes are otherwise created on first use with lanes of
 * IOU_DEFAULT_MAILBOX calls; call this first to choose another size.  Costs
 * one descriptor (a dup of the ring's, or an eventfd in the fallback).
 * Never suspends.  Call from @r's thread.
 *
 * Return: 0; -EEXIST if @r already has one; -EINVAL for a bad @slots;
 * -EPERM from another thread; -ENOMEM; -EMFILE or -ENFILE.
 */
int reactor_mailbox_create(struct reactor *r, unsigned slots);

/**
 * reactor_ref_get() - a new handle on @r's mailbox (created if need be).
 * @out: receives the handle; release it with reactor_ref_put().
 *
 * Call from @r's thread; hand the handle to other threads as you like.
 * Never suspends.
 *
 * Return: 0; -EINVAL if @r or @out is NULL; -EPERM from another thread;
 * the errors of reactor_mailbox_create() when the mailbox is created here.
 */
int reactor_ref_get(struct reactor *r, struct reactor_ref **out);

/**
 * reactor_ref_dup() - another reference to @ref (which must be live).
 * Any thread.  Return: @ref.
 */
struct reactor_ref *reactor_ref_dup(struct reactor_ref *ref);

/**
 * reactor_ref_put() - drop a reference; the last one frees the mailbox.
 * Any thread; NULL is ignored.
 */
void reactor_ref_put(struct reactor_ref *ref);

/**
 * reactor_ref_alive() - true while the reactor behind @ref exists (its
 * mailbox is open).  Any thread.  A hint only: the reactor may be torn
 * down right after the answer.
 */
bool reactor_ref_alive(const struct reactor_ref *ref);

/**
 * reactor_post() - have @fn(target, @arg, 0) run on the reactor behind @to.
 * @r: the calling thread's reactor (it sends the doorbell, and parks).
 *
 * Queues the call in @r's lane into the target's mailbox (made on first
 * use) and wakes the target if it sleeps.  When the lane is full, waits for
 * room: the calling fiber parks (outside a fiber, the thread drives @r)
 * until the target has consumed some calls and said so, in FIFO order with
 * @r's other senders to that target, so calls from @r arrive in the order
 * posted.
 * Inside a posted callback it does not wait (-EAGAIN).  Posting to @r's
 * own mailbox is allowed.
 *
 * Ownership: on success the call belongs to the target: @fn runs exactly
 * once, with status 0 or, if the target is torn down first, -ESHUTDOWN.
 * On failure @fn never runs and @arg stays the caller's.
 *
 * Return: 0; -ESHUTDOWN if the target is gone (or goes while waiting);
 * -ETIMEDOUT, -ECANCELED (not posted); -EAGAIN in a callback when full;
 * -EINVAL if @r, @to or @fn is NULL; -EPERM from another thread than @r's;
 * -ENOMEM, -EMFILE if @r's own mailbox (to be woken) cannot be created.
 */
int reactor_post(struct reactor *r, struct reactor_ref *to, reactor_call_fn *fn, void *arg);

/**
 * reactor_post_try() - reactor_post() without waiting: never suspends.
 *
 * Return: as reactor_post(); -EAGAIN if @r's lane there is full (or other
 * senders of @r wait for room in it).
 */
int reactor_post_try(struct reactor *r, struct reactor_ref *to, reactor_call_fn *fn, void *arg);

/**
 * reactor_serve() - run @r for others: like reactor_run(), but keeps going
 * while no fiber is left, serving posted calls, until reactor_stop().
 *
 * Returns once a stop request has arrived (one that arrived before the
 * call counts) and every fiber has finished.  Blocks in io_uring while
 * idle.  Call from @r's thread, outside any fiber.
 *
 * Return: 0; -EPERM from a fiber or another thread; -EBUSY if @r is already
 * running; -EDEADLK if nothing can ever stop it (no handle on its mailbox
 * exists and no fiber can run); -ENOMEM, -EMFILE (mailbox); or a -errno
 * of io_uring_enter.
 */
int reactor_serve(struct reactor *r);

/**
 * reactor_stop() - ask the reactor behind @to to return from
 * reactor_serve() (now, or from its next call).  A posted message: may
 * suspend as reactor_post() does.  @r: the calling thread's reactor.
 *
 * Return: as reactor_post().
 */
int reactor_stop(struct reactor *r, struct reactor_ref *to);

/* ---- Channels between reactors --------------------------------------------- */

/**
 * struct iou_xchan - a bounded channel of fixed-size items between fibers
 * of any threads (opaque).
 *
 * Like struct iou_chan (<ioucontext/sync.h>), but safe across threads: a
 * fiber on one reactor sends, a fiber on another receives, and each parks
 * only itself, never its thread.  Items are copied in and out under a
 * short spinlock.  Senders and receivers are each served in FIFO order; an
 * item handed to a waiting receiver is copied straight into its buffer;
 * each item is received exactly once, and the items of one sender arrive in
 * the order sent.  Deadlines and fiber_cancel() end every wait; a waiter
 * that was served before the interrupt arrived keeps what it was given and
 * succeeds.  A call from a thread without a reactor creates one
 * (reactor_get()).
 *
 * Lifetime: create it, hand the pointer to other threads, destroy it once
 * nobody uses it any more (iou_xchan_destroy() refuses while fibers wait).
 * A reactor torn down while its fibers wait on the channel takes them off
 * it first.
 */
struct iou_xchan;

/**
 * iou_xchan_create() - a channel for items of @item_size bytes.
 * @capacity: items buffered; 0 makes a rendezvous channel (each send waits
 *            for a receiver).
 * @out:      receives the channel; free it with iou_xchan_destroy().
 *
 * Any thread; never suspends.
 *
 * Return: 0; -EINVAL if @out is NULL, @item_size is 0 or the sizes
 * overflow; -ENOMEM.
 */
int iou_xchan_create(size_t item_size, size_t capacity, struct iou_xchan **out);

/**
 * iou_xchan_destroy() - free @ch; items still buffered are dropped.
 *
 * Return: 0; -EINVAL if @ch is NULL; -EBUSY if fibers wait on it (nothing
 * is freed).
 */
int iou_xchan_destroy(struct iou_xchan *ch);

/**
 * iou_xchan_send() - copy @item into @ch, waiting for room.
 *
 * Suspends the calling fiber while @ch is full (outside a fiber, drives
 * the thread's reactor).
 *
 * Return: 0 (the item is in the channel or with a receiver); -EPIPE if @ch
 * is or gets closed (not sent); -ETIMEDOUT, -ECANCELED (not sent); -EAGAIN
 * in a posted callback when full; -EINVAL if @ch or @item is NULL;
 * -ENOMEM, -EMFILE if the thread's reactor or its mailbox cannot be made.
 */
int iou_xchan_send(struct iou_xchan *ch, const void *item);

/**
 * iou_xchan_trysend() - iou_xchan_send() only if it need not wait.
 *
 * Return: 0; -EAGAIN if full (capacity 0: no receiver waits); -EPIPE if
 * closed; -EINVAL; -ENOMEM, -EMFILE as iou_xchan_send().
 */
int iou_xchan_trysend(struct iou_xchan *ch, const void *item);

/**
 * iou_xchan_recv() - take the oldest item of @ch into @item, waiting for one.
 *
 * Suspends the calling fiber while @ch is empty and open.  Items sent
 * before close are still received after it.
 *
 * Return: 0; -EPIPE if @ch is closed and empty; -ETIMEDOUT, -ECANCELED
 * (nothing taken); -EAGAIN in a posted callback when empty; -EINVAL;
 * -ENOMEM, -EMFILE as iou_xchan_send().
 */
int iou_xchan_recv(struct iou_xchan *ch, void *item);

/**
 * iou_xchan_tryrecv() - iou_xchan_recv() only if it need not wait.
 *
 * Return: 0; -EAGAIN if empty and open; -EPIPE if closed and empty;
 * -EINVAL; -ENOMEM, -EMFILE as iou_xchan_send().
 */
int iou_xchan_tryrecv(struct iou_xchan *ch, void *item);

/**
 * iou_xchan_close() - refuse further sends and wake every waiter: waiting
 * senders and receivers fail with -EPIPE.  Buffered items stay receivable.
 * Never suspends.
 *
 * Return: 0; -EPIPE if already closed; -EINVAL; -ENOMEM, -EMFILE as
 * iou_xchan_send().
 */
int iou_xchan_close(struct iou_xchan *ch);

/**
 * iou_xchan_len() - items buffered in @ch now (a snapshot), or -EINVAL.
 */
int64_t iou_xchan_len(struct iou_xchan *ch);

/* ---- Fibers on other reactors ---------------------------------------------- */

/** A handle on a fiber spawned on another reactor (opaque). */
struct fiber_remote;

/**
 * fiber_spawn_on() - start a fiber running @fn(@arg) on the reactor behind @to.
 * @r:    the calling thread's reactor.
 * @opts: stack size and name for the fiber (copied), or NULL.
 * @out:  receives the handle: join it with fiber_remote_join() or give it
 *        up with fiber_remote_detach(); it stays valid until one of them
 *        has released it.
 *
 * Posts a call that spawns the fiber on the target (a message: may suspend
 * for mailbox room as reactor_post() does).  The fiber runs there like any
 * fiber of that reactor; its result comes back through the handle.
 *
 * Return: 0; the errors of reactor_post() (nothing was started); -EINVAL
 * if @fn or @out is NULL; -ENOMEM.
 */
int fiber_spawn_on(struct reactor *r, struct reactor_ref *to, const struct fiber_options *opts,
		   fiber_fn *fn, void *arg, struct fiber_remote **out);

/**
 * fiber_remote_join() - wait for the remote fiber @f to finish.
 * @result: receives @fn's return value (may be NULL).
 *
 * Suspends the calling fiber (outside a fiber, drives the thread's
 * reactor; a thread without one gets one) until the fiber has finished on
 * its reactor.  Final outcomes release @f: 0 with the result; -ESHUTDOWN
 * if the target was torn down before the fiber finished (or before it
 * started); the fiber_spawn() error (-ENOMEM, -EINVAL) if it could not be
 * started there.  -ETIMEDOUT and -ECANCELED (the caller's deadline or
 * cancel) leave @f valid: join again or detach.
 *
 * Return: as just said; -EINVAL if @f is NULL or already being joined;
 * -EAGAIN in a posted callback while the fiber runs; -ENOMEM, -EMFILE or
 * -ENFILE if the calling thread's reactor or its mailbox cannot be made.
 */
int fiber_remote_join(struct fiber_remote *f, void **result);

/**
 * fiber_remote_detach() - give up @f: the fiber runs on and its result is
 * dropped.  Any thread; never suspends; @f must not be used afterwards.
 *
 * Return: 0; -EINVAL if @f is NULL or a join is waiting on it.
 */
int fiber_remote_detach(struct fiber_remote *f);

/**
 * fiber_remote_cancel() - fiber_cancel() the remote fiber @f on its reactor.
 * @r: the calling thread's reactor.
 *
 * A message (may suspend for mailbox room as reactor_post() does); the
 * cancel takes effect when the target runs it, before the fiber starts if
 * need be.  Join to learn when it has finished.
 *
 * Return: 0; -EINVAL if @f is NULL; the errors of reactor_post()
 * (-ESHUTDOWN: the target is gone, and so is the fiber).
 */
int fiber_remote_cancel(struct reactor *r, struct fiber_remote *f);

/* ---- Groups of reactor threads ---------------------------------------------- */

/** A group of threads, each with its own reactor (opaque). */
struct reactor_group;

/**
 * reactor_group_fn - what each member thread runs, with its reactor.
 * @r:     the member's reactor, created and pinned for it
 * @index: the member's number, 0 to n - 1
 *
 * The return value is collected by reactor_group_join().  When it returns,
 * the thread exits, which tears its reactor down (see the file comment).
 */
typedef int reactor_group_fn(struct reactor *r, unsigned index, void *arg);

/**
 * reactor_group_start() - start @n C11 threads, each running @fn on a
 * reactor of its own, pinned (as every reactor is; see reactor_cpu()).
 * @out: receives the group before any member runs @fn (so members may read
 *       the caller's variable); reactor_group_join() ends it.
 *
 * Every member's mailbox exists when this returns, so that
 * reactor_group_ref() can be posted to at once, by members too: calls
 * posted before a member's reactor is up wait for it.  No member runs @fn
 * before every member has its reactor, so that each is pinned to a CPU of
 * its own while there are enough.  Never suspends.  Any thread.
 *
 * Return: 0; -EINVAL if @n is 0 or above 4096 or @fn or @out is NULL;
 * -ENOMEM; -EMFILE; -EAGAIN if a thread could not be created (the members
 * already started are stopped before they run @fn, and joined).
 */
int reactor_group_start(unsigned n, reactor_group_fn *fn, void *arg, struct reactor_group **out);

/** reactor_group_size() - the number of members of @g (0 if NULL). */
unsigned reactor_group_size(const struct reactor_group *g);

/**
 * reactor_group_ref() - a handle on member @index's reactor, owned by @g
 * and valid until reactor_group_join() has freed it (reactor_ref_dup() it
 * to keep it longer).  NULL if @index is out of range.  Any thread.
 */
struct reactor_ref *reactor_group_ref(const struct reactor_group *g, unsigned index);

/**
 * reactor_group_join() - wait until every member has returned, join the
 * threads and free @g.
 * @results: if not NULL, receives each member's return value (an array of
 *           reactor_group_size() ints); a member whose reactor could not
 *           be created gets that -errno.
 *
 * If the caller's thread has a reactor, the calling fiber suspends (outside
 * a fiber, the thread drives its reactor) until every member's function
 * has returned, so that members can still post to it meanwhile; then the
 * threads are joined, which only waits for their exit.  Without a reactor,
 * the thread blocks in thrd_join().  Must not be called from a member.
 *
 * Return: 0 (@g is freed); -ETIMEDOUT, -ECANCELED (the caller's deadline
 * or cancel: @g stays valid, join again later); -EINVAL if @g is NULL;
 * -EDEADLK if called from one of @g's own members.
 */
int reactor_group_join(struct reactor_group *g, int *results);

#ifdef __cplusplus
}
#endif

#endif
