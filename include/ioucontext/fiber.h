/* SPDX-License-Identifier: MIT */
/*
 * Fibers: cooperatively scheduled functions, each on its own stack, run by
 * the reactor of the thread that spawned them.  A fiber runs until it parks
 * (an operation, a sleep, a join, a yield) and is resumed when what it waits
 * for happens.  Switching between fibers makes no system call.
 *
 * Signal mask: fibers are entered through ucontext and switched with
 * sigsetjmp(env, 0)/siglongjmp, which never save or restore the signal
 * mask.  Changing the process or thread signal mask after the first fiber
 * has been created is unsupported: fibers may run with either mask.
 *
 * Floating-point environment: switches leave it alone, so fibers share the
 * thread's rounding mode and exception flags; but a fiber started on a fresh
 * stack begins with the environment captured when the reactor was created.
 * Set the rounding mode before creating the reactor, or in each fiber.
 *
 * Lifetime: a fiber has terminated once its body has returned, joined or
 * not; reactor_run() waits for that, not for joins.
 *
 * Deadlines and cancellation: every call that can suspend -- each operation
 * in <ioucontext/io.h>, fiber_sleep(), fiber_join() -- is bounded by the
 * caller's deadline, set with fiber_set_deadline() and kept until changed,
 * and fails with -ETIMEDOUT once it passes.  fiber_cancel() makes every
 * such call of the target fiber, the one it is parked in and all later
 * ones, fail with -ECANCELED.  An interrupted operation returns only after
 * the kernel has posted its own completion, so the kernel never touches the
 * caller's buffers after the call has returned; if the operation completed
 * anyway (bytes moved, a connection accepted), its real result is returned
 * and nothing is lost.  Deadlines live in the reactor's timer heap: no
 * kernel timeout per operation.
 *
 * The exceptions, which ignore the deadline and cancellation and always run
 * to completion so that a cancelled or late fiber can still release what
 * it holds and unwind: iou_close(), which never waits long;
 * iou_rstream_close(), which waits only for the kernel to confirm that the
 * stream's receive request has ended; and the re-taking of the mutex at the
 * end of iou_cond_wait(), which queues behind the other lockers so that the
 * call returns holding the mutex (the wait for the signal itself is bounded
 * as usual).
 *
 * Thread: every call here must be made from the thread that owns the
 * reactor concerned (for a fiber, the reactor it was spawned on); from
 * another thread every call that returns int fails with -EPERM and touches
 * nothing.
 */
#ifndef IOUCONTEXT_FIBER_H
#define IOUCONTEXT_FIBER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct reactor;

/** A fiber (opaque).  The handle stays valid until joined or detached. */
struct fiber;

/** A fiber's body; its return value is what fiber_join() collects. */
typedef void *fiber_fn(void *arg);

/** Longest fiber name kept, without the terminating NUL. */
#define IOU_FIBER_NAME_MAX 31

/**
 * struct fiber_options - per-fiber settings for fiber_spawn_with().
 */
struct fiber_options {
	size_t stack_size; /**< bytes of stack; 0: the reactor's default */
	const char *name;  /**< copied (truncated to IOU_FIBER_NAME_MAX); NULL: none */
};

/**
 * fiber_spawn() - start a fiber running @fn(@arg) on reactor @r.
 * @out: receives a joinable handle; NULL spawns the fiber detached.
 *
 * The fiber becomes runnable and first runs when the caller parks (or, from
 * outside a fiber, at the next reactor_run() or blocking call).  Reuses a
 * pooled stack when one of the right size is free, which makes no system
 * call.  Never suspends.
 *
 * Return: 0; -EINVAL if @fn is NULL or the stack size is below 16 KiB or
 * above 1 GiB; -ENOMEM if no stack could be mapped; -EPERM if called from
 * another thread than @r's owner.
 */
int fiber_spawn(struct reactor *r, fiber_fn *fn, void *arg, struct fiber **out);

/**
 * fiber_spawn_with() - fiber_spawn() with per-fiber options (may be NULL).
 */
int fiber_spawn_with(struct reactor *r, const struct fiber_options *opts, fiber_fn *fn,
		     void *arg, struct fiber **out);

/**
 * fiber_join() - wait for @f to finish and collect its result.
 * @result: receives @fn's return value (may be NULL).
 *
 * Suspends the calling fiber; from outside a fiber, drives the reactor until
 * @f finishes.  On success the handle is released.
 *
 * Return: 0; -EINVAL if @f is NULL, detached or already has a joiner;
 * -EPERM if @f belongs to another thread's reactor; -EDEADLK if @f is the
 * caller, or (outside a fiber) if @f can never finish because nothing else
 * can run; -ETIMEDOUT or -ECANCELED if the caller's deadline or a cancel
 * ended the wait (@f keeps running and may be joined again).
 */
int fiber_join(struct fiber *f, void **result);

/**
 * fiber_detach() - let @f release itself when it finishes.
 *
 * The handle must not be used afterwards.  Never suspends.
 *
 * Return: 0; -EINVAL if @f is NULL, already detached or being joined;
 * -EPERM if @f belongs to another thread's reactor.
 */
int fiber_detach(struct fiber *f);

/**
 * fiber_yield() - let every other runnable fiber run once, then continue.
 *
 * In a fiber: moves the caller to the back of the run queue and resumes the
 * next runnable fiber directly (no system call).  Outside a fiber: runs each
 * fiber runnable now once, then collects completions, without blocking.
 *
 * Return: 0; -EINVAL if @r is NULL; -EPERM from another thread than @r's
 * owner; outside a fiber, a -errno from io_uring_enter.
 */
int fiber_yield(struct reactor *r);

/**
 * fiber_self() - the fiber running on @r, or NULL outside a fiber.
 */
struct fiber *fiber_self(struct reactor *r);

/**
 * fiber_sleep() - suspend the caller for at least @ns nanoseconds.
 *
 * Sleeps live in the reactor's userspace timer heap; the kernel sees one
 * timeout, for the earliest expiry.  From outside a fiber, drives the
 * reactor until the time has passed (other fibers run meanwhile).
 * A zero or negative @ns returns at once, after the same checks (0, or
 * -ECANCELED in a cancelled fiber).
 *
 * Return: 0; -EINVAL if @r is NULL; -EPERM from another thread than @r's
 * owner; -ENOMEM if the timer heap cannot grow; -ETIMEDOUT if the caller's
 * deadline comes first; -ECANCELED if the fiber is cancelled; outside a
 * fiber, a -errno from io_uring_enter.
 */
int fiber_sleep(struct reactor *r, int64_t ns);

/**
 * fiber_sleep_until() - suspend the caller until CLOCK_MONOTONIC @deadline.
 *
 * As fiber_sleep().  IOU_DEADLINE_NEVER arms no timer and sleeps forever:
 * the fiber then only ends with the reactor, and reactor_run() returns
 * -EDEADLK once nothing else can run (outside a fiber, this call does).
 *
 * Return: as fiber_sleep(), plus -EDEADLK outside a fiber as just said.
 */
int fiber_sleep_until(struct reactor *r, int64_t deadline);

/**
 * fiber_set_deadline() - bound every later blocking call of the caller.
 * @deadline: absolute CLOCK_MONOTONIC time (iou_deadline_after() helps);
 *            IOU_DEADLINE_NEVER removes the bound; IOU_DEADLINE_NOW (or any
 *            past time) means "do not wait": an operation that cannot
 *            complete at once fails with -ETIMEDOUT.
 *
 * Applies to the running fiber, or outside a fiber to the thread's own
 * context; a new fiber starts with no deadline.  Scoped use:
 *
 *     int64_t old = fiber_set_deadline(r, iou_deadline_after(5 * IOU_SEC));
 *     n = iou_recv(r, fd, buf, sizeof(buf), 0);   // -ETIMEDOUT after 5 s
 *     fiber_set_deadline(r, old);
 *
 * Never suspends.  Return: the previous deadline (IOU_DEADLINE_NEVER if @r
 * is NULL).
 */
int64_t fiber_set_deadline(struct reactor *r, int64_t deadline);

/**
 * fiber_deadline() - the caller's current deadline (IOU_DEADLINE_NEVER: none).
 */
int64_t fiber_deadline(const struct reactor *r);

/**
 * fiber_cancel() - ask @f to stop: its blocking calls fail with -ECANCELED.
 *
 * If @f is parked in a blocking call, that call is interrupted (an
 * operation in the kernel is cancelled there, and the call returns once
 * the kernel confirms it).  The request is sticky: every later blocking call
 * of @f fails at once, so @f unwinds and returns.  The clean-up calls that
 * ignore cancellation (see the file comment: iou_close(),
 * iou_rstream_close(), the re-lock of iou_cond_wait()) still work.
 * Cancelling the caller itself is allowed.  Never suspends; does not wait
 * for @f to finish (join it for that).
 *
 * Return: 0 (also if @f has already finished); -EINVAL if @f is NULL or
 * released; -EPERM if @f belongs to another thread's reactor.
 */
int fiber_cancel(struct fiber *f);

/**
 * fiber_cancelled() - true if the running fiber on @r has been cancelled.
 */
bool fiber_cancelled(const struct reactor *r);

/**
 * fiber_park() - suspend the calling fiber until fiber_unpark() or @until.
 * @until: CLOCK_MONOTONIC time to give up waiting, or IOU_DEADLINE_NEVER.
 *
 * The building block for waiting on events that are not kernel operations
 * (libraries' callbacks, hand-made queues).  Each fiber has one permit:
 * fiber_unpark() sets it and wakes the fiber if parked; fiber_park()
 * consumes it, returning at once if it was already set, so a wake-up that
 * comes before the park is not lost.  Obeys the caller's deadline and
 * cancellation like every blocking call.  Fiber only.
 *
 * Return: 1 if unparked; 0 if @until passed first; -ETIMEDOUT, -ECANCELED
 * as every blocking call; -EPERM outside a fiber or from another thread
 * than @r's owner; -EINVAL if @r is NULL.
 */
int fiber_park(struct reactor *r, int64_t until);

/**
 * fiber_unpark() - give @f its permit and wake it if it is in fiber_park().
 *
 * May be called from any fiber of @f's reactor or from the thread's own
 * context (e.g. a callback); never suspends.
 *
 * Return: 0; -EINVAL if @f is NULL or released; -EPERM from another thread.
 */
int fiber_unpark(struct fiber *f);

/**
 * fiber_id() - the fiber's number, unique within its reactor (from 1).
 */
uint64_t fiber_id(const struct fiber *f);

/**
 * fiber_name() - the name given at spawn, or "" if none.
 */
const char *fiber_name(const struct fiber *f);

#ifdef __cplusplus
}
#endif

#endif
