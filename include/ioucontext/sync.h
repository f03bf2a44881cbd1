/* SPDX-License-Identifier: MIT */
/*
 * Synchronisation between the fibers of one reactor: mutex, condition
 * variable, semaphore, wait group and a bounded channel of fixed-size items.
 *
 * Common rules for every type here:
 *
 * - One reactor only.  An object belongs to the reactor of the thread that
 *   first uses it (init does not bind it), for the rest of its life; a call
 *   from another thread fails with -EPERM and touches nothing.  These are
 *   not thread-safe locks: to talk between threads, use the cross-reactor
 *   facilities.  To use an object with another reactor (say, after its own
 *   was destroyed), destroy it and initialise it again.  A thread without a
 *   reactor gets one (reactor_get()) on its first call here.
 * - Pure userspace.  A wait parks the calling fiber on the object's FIFO of
 *   waiters; nothing here makes a system call, and a call that need not
 *   wait costs a few loads and stores.
 * - FIFO and handoff.  Waiters are served strictly in arrival order.  What
 *   is released -- the mutex, a semaphore unit, a channel item or slot --
 *   is handed directly to the first waiter, which owns it from then on, so a
 *   fiber arriving later (a "barging" fiber) can never overtake or starve a
 *   waiter.  Nothing is ever woken without reason: no spurious wake-ups.
 * - Deadlines and cancellation bound the waiting, not the call.  A call that
 *   can complete at once does so, whatever the caller's deadline and even in
 *   a cancelled fiber (as fiber_join() of a finished fiber does), so that a
 *   cancelled fiber can still take an uncontended lock while it unwinds.  A
 *   call that has to wait fails with -ETIMEDOUT once the caller's deadline
 *   (fiber_set_deadline()) has passed -- at once if it already has, so
 *   IOU_DEADLINE_NOW means "do not wait" -- and with -ECANCELED if the fiber
 *   is or gets cancelled (fiber_cancel()).  An interrupted waiter is taken
 *   off the waiters' list at once and has received nothing; a waiter that
 *   was handed the mutex, a unit or an item before the interrupt arrived
 *   keeps it and its call succeeds (the cancel stays sticky for the next
 *   call).  Either way nothing handed over is lost.
 * - Outside a fiber (the thread's own context, e.g. main before
 *   reactor_run()) every call is allowed.  A wait there drives the reactor
 *   -- other fibers run -- until it is served or the thread's deadline
 *   passes; if nothing could ever serve it (no runnable fiber, no operation
 *   in flight, no timer) it fails with -EDEADLK instead of hanging.
 * - Lifetime.  The structures are public so that they can be embedded and
 *   need no allocation, but every field is private.  An object must not be
 *   destroyed, moved or freed while fibers wait on it; the destroy calls
 *   refuse with -EBUSY then.  Destroying the reactor discards its parked
 *   fibers without resuming them: objects they waited on must then be
 *   initialised again before any further use.
 * - Errors every call below can return besides its own: -EINVAL for a NULL
 *   object; -EPERM from a thread other than the owning reactor's; -ENOMEM if
 *   the thread has no reactor and none can be created.  A call that waits can
 *   also return -ETIMEDOUT, -ECANCELED, -ENOMEM (the deadline timer could not
 *   be stored) and, outside a fiber, -EDEADLK or an -errno of io_uring_enter.
 */
#ifndef IOUCONTEXT_SYNC_H
#define IOUCONTEXT_SYNC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct reactor;
struct iou__waiter; /* a parked caller (private) */

/** A FIFO of parked callers (private; embedded in every type below). */
struct iou_waitlist {
	struct iou__waiter *head, *tail;
};

/* ---- Mutex -------------------------------------------------------------- */

/**
 * struct iou_mutex - a non-recursive, error-checking mutual exclusion lock.
 *
 * Owned by one fiber (or by the thread's own context) at a time.  Unlock
 * hands the lock straight to the longest-waiting fiber.  All fields private.
 */
struct iou_mutex {
	struct reactor *r;	     /* owning reactor; NULL until first use */
	const void *owner;	     /* holder: its fiber, or the reactor for the
				       * thread's own context; NULL when free */
	struct iou_waitlist waiters; /* lock() callers, FIFO */
};

/** Static initialiser: `struct iou_mutex m = IOU_MUTEX_INIT;` (same as iou_mutex_init()). */
/* clang-format off */
#define IOU_MUTEX_INIT { NULL, NULL, { NULL, NULL } }
/* clang-format on */

/**
 * iou_mutex_init() - initialise @m unlocked.  Never suspends.
 *
 * Return: 0; -EINVAL if @m is NULL.
 */
int iou_mutex_init(struct iou_mutex *m);

/**
 * iou_mutex_destroy() - end @m's life (it needs no other clean-up).
 *
 * Never suspends.  Afterwards @m may be initialised again.
 *
 * Return: 0; -EINVAL if @m is NULL; -EBUSY if it is locked or has waiters.
 */
int iou_mutex_destroy(struct iou_mutex *m);

/**
 * iou_mutex_lock() - take @m, waiting in FIFO order while another holds it.
 *
 * Suspends the calling fiber while @m is held; outside a fiber, drives the
 * reactor meanwhile.  Takes a free mutex at once even past the deadline or
 * in a cancelled fiber (see the rules above).
 *
 * Return: 0, the caller holds @m; -EDEADLK if the caller already holds it
 * (or, outside a fiber, if nothing could ever release it); -ETIMEDOUT;
 * -ECANCELED; the common errors.  On failure the caller does not hold @m.
 */
int iou_mutex_lock(struct iou_mutex *m);

/**
 * iou_mutex_trylock() - take @m only if it is free.  Never suspends.
 *
 * Return: 0, the caller holds @m; -EBUSY if it is held (by anyone, the
 * caller included) or was just handed to a waiter; the common errors.
 */
int iou_mutex_trylock(struct iou_mutex *m);

/**
 * iou_mutex_unlock() - release @m, handing it to its first waiter if any.
 *
 * The woken waiter holds @m from this moment, even before it runs.  Never
 * suspends.
 *
 * Return: 0; -EPERM if the caller (this fiber, or the thread's own context)
 * does not hold @m; the common errors.
 */
int iou_mutex_unlock(struct iou_mutex *m);

/* ---- Condition variable ------------------------------------------------- */

/**
 * struct iou_cond - a condition variable for fibers holding a struct iou_mutex.
 *
 * All fields private.
 */
struct iou_cond {
	struct reactor *r;	     /* owning reactor; NULL until first use */
	struct iou_waitlist waiters; /* wait() callers, FIFO */
};

/** Static initialiser: `struct iou_cond c = IOU_COND_INIT;`. */
/* clang-format off */
#define IOU_COND_INIT { NULL, { NULL, NULL } }
/* clang-format on */

/**
 * iou_cond_init() - initialise @c with no waiters.  Never suspends.
 *
 * Return: 0; -EINVAL if @c is NULL.
 */
int iou_cond_init(struct iou_cond *c);

/**
 * iou_cond_destroy() - end @c's life.  Never suspends.
 *
 * Return: 0; -EINVAL if @c is NULL; -EBUSY if fibers wait on it.
 */
int iou_cond_destroy(struct iou_cond *c);

/**
 * iou_cond_wait() - release @m, wait for a signal on @c, take @m again.
 *
 * The caller must hold @m.  Releasing @m and joining @c's waiters happen
 * together (no other fiber runs in between), so a signal sent after the
 * caller's check of its predicate is never missed.  Wake-ups come only from
 * iou_cond_signal()/iou_cond_broadcast(), in FIFO order, but another fiber
 * may change the predicate before the woken one re-takes @m: check it in a
 * loop, as with any condition variable.
 *
 * Suspends the calling fiber (outside a fiber, drives the reactor).  The
 * deadline and cancellation end the wait for the signal, not the re-taking
 * of @m afterwards, which ignores them and queues behind other lockers: the
 * caller holds @m again on every return but -EINVAL, -EPERM and -ENOLCK.
 * As this call always waits, in a cancelled fiber or past the deadline it
 * fails at once, @m still held.
 *
 * Return: 0 when signalled; -ETIMEDOUT; -ECANCELED; -ENOMEM; -EPERM if the
 * caller does not hold @m, or @c and @m belong to different reactors;
 * -EINVAL if @c or @m is NULL; outside a fiber, -EDEADLK (or an -errno of
 * io_uring_enter) if nothing could ever signal @c, and -ENOLCK if the wait
 * ended but nothing could ever release @m to the caller again: then, alone,
 * the caller does not hold @m.
 */
int iou_cond_wait(struct iou_cond *c, struct iou_mutex *m);

/**
 * iou_cond_signal() - wake the longest-waiting fiber on @c, if any.
 *
 * Need not be called with the mutex held.  Never suspends.
 *
 * Return: 1 if a waiter was woken, 0 if none was waiting; the common errors.
 */
int iou_cond_signal(struct iou_cond *c);

/**
 * iou_cond_broadcast() - wake every fiber waiting on @c, in FIFO order.
 *
 * Never suspends.
 *
 * Return: the number of waiters woken (>= 0); the common errors.
 */
int iou_cond_broadcast(struct iou_cond *c);

/* ---- Semaphore ---------------------------------------------------------- */

/**
 * struct iou_sem - a counting semaphore with FIFO handoff.
 *
 * release() gives its unit directly to the first waiter rather than to
 * whoever asks next.  All fields private.
 */
struct iou_sem {
	struct reactor *r;	     /* owning reactor; NULL until first use */
	unsigned value;		     /* free units; 0 whenever someone waits */
	struct iou_waitlist waiters; /* acquire() callers, FIFO */
};

/** Static initialiser with @value free units. */
/* clang-format off */
#define IOU_SEM_INIT(value) { NULL, (value), { NULL, NULL } }
/* clang-format on */

/**
 * iou_sem_init() - initialise @s with @value free units.  Never suspends.
 *
 * Return: 0; -EINVAL if @s is NULL.
 */
int iou_sem_init(struct iou_sem *s, unsigned value);

/**
 * iou_sem_destroy() - end @s's life.  Never suspends.
 *
 * Return: 0; -EINVAL if @s is NULL; -EBUSY if fibers wait on it.
 */
int iou_sem_destroy(struct iou_sem *s);

/**
 * iou_sem_acquire() - take one unit of @s, waiting (FIFO) while none is free.
 *
 * Suspends the calling fiber while no unit is free (outside a fiber,
 * drives the reactor).
 *
 * Return: 0, one unit taken; -ETIMEDOUT; -ECANCELED; the common errors.
 * On failure no unit was taken.
 */
int iou_sem_acquire(struct iou_sem *s);

/**
 * iou_sem_tryacquire() - take one unit of @s only if one is free.
 *
 * Never suspends.
 *
 * Return: 0; -EAGAIN if no unit is free; the common errors.
 */
int iou_sem_tryacquire(struct iou_sem *s);

/**
 * iou_sem_release() - return one unit to @s, handing it to its first waiter.
 *
 * Any fiber (or the thread's own context) may release; units are not owned.
 * Never suspends.
 *
 * Return: 0; -EOVERFLOW if @s already holds UINT_MAX free units; the common
 * errors.
 */
int iou_sem_release(struct iou_sem *s);

/**
 * iou_sem_value() - @s's free units (0 while fibers wait), or -EINVAL if
 * @s is NULL, -EPERM from another reactor's thread.  Never suspends.
 */
int64_t iou_sem_value(struct iou_sem *s);

/* ---- Wait group --------------------------------------------------------- */

/**
 * struct iou_waitgroup - waits for a count of tasks to reach zero.
 *
 * All fields private.
 */
struct iou_waitgroup {
	struct reactor *r;	     /* owning reactor; NULL until first use */
	int64_t count;		     /* tasks not yet done */
	struct iou_waitlist waiters; /* wait() callers, FIFO */
};

/** Static initialiser: a count of zero. */
/* clang-format off */
#define IOU_WAITGROUP_INIT { NULL, 0, { NULL, NULL } }
/* clang-format on */

/**
 * iou_waitgroup_init() - initialise @wg with a count of zero.  Never suspends.
 *
 * Return: 0; -EINVAL if @wg is NULL.
 */
int iou_waitgroup_init(struct iou_waitgroup *wg);

/**
 * iou_waitgroup_destroy() - end @wg's life.  Never suspends.
 *
 * Return: 0; -EINVAL if @wg is NULL; -EBUSY if fibers wait on it.
 */
int iou_waitgroup_destroy(struct iou_waitgroup *wg);

/**
 * iou_waitgroup_add() - add @n (may be negative) to @wg's count.
 *
 * When the count reaches zero every waiter is woken.  Never suspends.
 *
 * Return: the new count (>= 0); -EINVAL if it would go below zero (the
 * count is left unchanged); -EOVERFLOW if it would exceed INT64_MAX; the
 * common errors.
 */
int64_t iou_waitgroup_add(struct iou_waitgroup *wg, int64_t n);

/**
 * iou_waitgroup_done() - iou_waitgroup_add(@wg, -1).
 */
int64_t iou_waitgroup_done(struct iou_waitgroup *wg);

/**
 * iou_waitgroup_wait() - wait until @wg's count is zero.
 *
 * Returns at once if it is zero.  Suspends the calling fiber otherwise
 * (outside a fiber, drives the reactor).  A waiter woken by the count
 * reaching zero returns 0 even if the count has grown again since.
 *
 * Return: 0; -ETIMEDOUT; -ECANCELED; the common errors.
 */
int iou_waitgroup_wait(struct iou_waitgroup *wg);

/* ---- Channel ------------------------------------------------------------ */

/**
 * struct iou_chan - a bounded FIFO channel of fixed-size items, copied by value.
 *
 * A ring buffer of @capacity items; capacity 0 makes a rendezvous channel,
 * where each send waits for a receiver and hands its item over directly.
 * Senders and receivers are each served in FIFO order, so the items of one
 * sender arrive in the order sent; each item is received exactly once.
 * All fields private.
 */
struct iou_chan {
	struct reactor *r;	       /* owning reactor; NULL until first use */
	unsigned char *buf;	       /* capacity * item_size bytes, or NULL */
	size_t item_size;	       /* bytes per item */
	size_t capacity;	       /* items the ring holds */
	size_t head;		       /* ring index of the oldest item */
	size_t len;		       /* items in the ring */
	bool closed;		       /* iou_chan_close() was called */
	struct iou_waitlist senders;   /* send() callers with their item, FIFO */
	struct iou_waitlist receivers; /* recv() callers with their buffer, FIFO */
};

/**
 * iou_chan_init() - initialise @ch for items of @item_size bytes.
 * @capacity: items buffered; 0 for a rendezvous channel.
 *
 * Allocates the ring (capacity * item_size bytes) with malloc; free it with
 * iou_chan_destroy().  Never suspends.
 *
 * Return: 0; -EINVAL if @ch is NULL, @item_size is 0 or the ring size
 * overflows; -ENOMEM.
 */
int iou_chan_init(struct iou_chan *ch, size_t item_size, size_t capacity);

/**
 * iou_chan_destroy() - free @ch's ring; items still in it are dropped.
 *
 * Never suspends.  Afterwards @ch may be initialised again.
 *
 * Return: 0; -EINVAL if @ch is NULL; -EBUSY if fibers wait on it.
 */
int iou_chan_destroy(struct iou_chan *ch);

/**
 * iou_chan_send() - copy the item at @item into @ch, waiting for room.
 *
 * Hands the item directly to the first waiting receiver if there is one,
 * else queues it in the ring; when the ring is full (always, for capacity
 * 0) suspends the calling fiber (outside a fiber, drives the reactor) until
 * a receiver makes room, in FIFO order with other senders.
 *
 * Return: 0, the item is in the channel (or received); -EPIPE if @ch is
 * closed, or gets closed while waiting (the item was not sent); -ETIMEDOUT;
 * -ECANCELED (not sent); -EINVAL if @item is NULL; the common errors.
 */
int iou_chan_send(struct iou_chan *ch, const void *item);

/**
 * iou_chan_trysend() - iou_chan_send() only if it need not wait.
 *
 * Never suspends.
 *
 * Return: 0; -EAGAIN if the ring is full (capacity 0: no receiver waits);
 * -EPIPE if @ch is closed; -EINVAL if @item is NULL; the common errors.
 */
int iou_chan_trysend(struct iou_chan *ch, const void *item);

/**
 * iou_chan_recv() - take the oldest item of @ch into @item, waiting for one.
 *
 * Suspends the calling fiber (outside a fiber, drives the reactor) while
 * @ch is empty and open, in FIFO order with other receivers.  Items sent
 * before close() are still delivered after it.
 *
 * Return: 0, @item holds the item; -EPIPE if @ch is closed and empty (now,
 * or when closed while waiting): nothing more will come; -ETIMEDOUT;
 * -ECANCELED (nothing taken); -EINVAL if @item is NULL; the common errors.
 */
int iou_chan_recv(struct iou_chan *ch, void *item);

/**
 * iou_chan_tryrecv() - iou_chan_recv() only if it need not wait.
 *
 * Never suspends.
 *
 * Return: 0; -EAGAIN if @ch is empty and open (capacity 0: no sender
 * waits); -EPIPE if @ch is closed and empty; -EINVAL if @item is NULL; the
 * common errors.
 */
int iou_chan_tryrecv(struct iou_chan *ch, void *item);

/**
 * iou_chan_close() - refuse further sends; wake every waiter.
 *
 * Waiting senders fail with -EPIPE (their items are not sent); waiting
 * receivers (there are only any when @ch is empty) fail with -EPIPE.
 * Items already in the ring stay receivable.  Never suspends.
 *
 * Return: 0; -EPIPE if @ch was already closed; the common errors.
 */
int iou_chan_close(struct iou_chan *ch);

/**
 * iou_chan_len() - items in @ch's ring now, or -EINVAL if @ch is NULL,
 * -EPERM from another reactor's thread.  Never suspends.
 */
int64_t iou_chan_len(struct iou_chan *ch);

#ifdef __cplusplus
}
#endif

#endif
