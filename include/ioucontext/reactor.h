/* SPDX-License-Identifier: MIT */
/*
 * The reactor: one per thread, owning that thread's io_uring, its fibers,
 * its timers and a user cookie.  A reactor is created by the first
 * reactor_get() (or an explicit reactor_create()) in a thread and torn down
 * when the thread exits or by reactor_destroy().  All reactor calls must be
 * made from the thread that owns the reactor.
 */
#ifndef IOUCONTEXT_REACTOR_H
#define IOUCONTEXT_REACTOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** A thread's reactor (opaque). */
struct reactor;

/** Destructor for the cookie stored with reactor_cookie_jar(). */
typedef void reactor_cookie_eater(void *cookie);

/*
 * io_uring setup flags the reactor may try, most capable first.  The reactor
 * tries all allowed flags together and drops them one by one (DEFER_TASKRUN,
 * then SINGLE_ISSUER, then COOP_TASKRUN) while the kernel refuses.
 */
#define IOU_RING_SINGLE_ISSUER 0x1u /**< IORING_SETUP_SINGLE_ISSUER */
#define IOU_RING_DEFER_TASKRUN 0x2u /**< IORING_SETUP_DEFER_TASKRUN (needs SINGLE_ISSUER) */
#define IOU_RING_COOP_TASKRUN 0x4u  /**< IORING_SETUP_COOP_TASKRUN */
#define IOU_RING_ALL 0x7u           /**< every flag above (the default) */

/** Defaults used when neither an option nor the environment says otherwise. */
#define IOU_DEFAULT_RING_ENTRIES 256u
#define IOU_DEFAULT_STACK_SIZE ((size_t)256 * 1024)
#define IOU_DEFAULT_FIBER_POOL 1024u
/** The default buffer ring of receive streams (<ioucontext/rstream.h>): 8 MiB. */
#define IOU_DEFAULT_BUFRING_COUNT 512u
#define IOU_DEFAULT_BUFRING_SIZE ((size_t)16 * 1024)

/**
 * Registered files: the default and the largest size of the reactor's
 * table of registered files (see struct reactor_options).  The kernel
 * takes 8 bytes per slot.
 */
#define IOU_DEFAULT_FILE_SLOTS 65536u
#define IOU_FILE_SLOTS_MAX (1u << 20)

/**
 * struct reactor_options - how to build a reactor.
 *
 * Fill it with reactor_options_init() (which reads the environment), then
 * change what you need.  Environment variables, read by
 * reactor_options_init():
 *
 *   IOU_RING_ENTRIES=N   submission queue entries (power of two, 1..32768)
 *   IOU_STACK_SIZE=N     default fiber stack size; K, M suffixes accepted
 *   IOU_FIBER_POOL=N     finished fibers kept ready for reuse
 *   IOU_PIN=0            do not pin the thread to a CPU
 *   IOU_RING_FLAGS=LIST  comma-separated subset of single_issuer,
 *                        defer_taskrun, coop_taskrun; or "none"
 *   IOU_MULTISHOT=0      never use multishot requests (tests the fallbacks)
 *   IOU_BUFRING_COUNT=N  buffers in the default ring of receive streams
 *                        (power of two, 1..32768)
 *   IOU_BUFRING_SIZE=N   their size in bytes (1..1M); K, M suffixes accepted
 *   IOU_FILE_SLOTS=N     slots of the registered-file table (0..1M; 0: none)
 *
 * and two read by reactor_create() itself, testing aids:
 *
 *   IOU_DISABLE_OPCODES=N,N,...  treat these IORING_OP_* numbers as missing
 *                        from the kernel: calls use their fallback (see
 *                        <ioucontext/fs.h>, <ioucontext/net.h>) or fail
 *                        with -EOPNOTSUPP
 *   IOU_FAULT_STACKS=N   map at most N fiber stacks: spawning a fiber that
 *                        needs another fails with -ENOMEM, as when memory
 *                        runs out (pooled stacks are still reused)
 *
 * Malformed values are ignored (the default stays).
 */
struct reactor_options {
	unsigned ring_entries; /**< SQ size, rounded up to a power of two */
	size_t stack_size;     /**< default fiber stack size in bytes */
	unsigned fiber_pool;   /**< max finished fibers kept for reuse */
	unsigned ring_flags;   /**< IOU_RING_* flags the reactor may try */
	bool pin;              /**< pin the thread and io-wq to one CPU */
	bool multishot;        /**< use multishot requests where the kernel can */
	unsigned bufring_count; /**< buffers of the default receive-stream ring
				 * (power of two; 0: IOU_DEFAULT_BUFRING_COUNT) */
	size_t bufring_size;   /**< their size (0: IOU_DEFAULT_BUFRING_SIZE) */
	/**
	 * Slots of the ring's registered-file table, made when the first
	 * receive stream opens: each open stream takes one, and the
	 * stream's receives and its forwards back to the same socket name
	 * the slot instead of the descriptor, which saves the kernel a
	 * file lookup and reference per request.  Capped at the process's
	 * open-file limit (RLIMIT_NOFILE) at that moment; streams beyond
	 * the table, and all of them on kernels without sparse tables
	 * (before 5.19), use their descriptor as before.  0: no table.
	 */
	unsigned file_slots;
};

/**
 * reactor_options_init() - fill @opts with defaults and environment values.
 */
void reactor_options_init(struct reactor_options *opts);

/**
 * reactor_create() - create the calling thread's reactor.
 * @opts: options, or NULL for reactor_options_init() defaults.
 * @out:  receives the reactor (owned by the thread; see reactor_destroy()).
 *
 * Sets up the io_uring (falling back on refused flags), probes the kernel's
 * opcodes and pins the thread unless told not to; failure to pin is not an
 * error (see reactor_cpu()).  Never suspends.
 *
 * Return: 0; -EEXIST if the thread already has a reactor; -EINVAL if @out
 * is NULL or for bad options; -ENOMEM; -EAGAIN if the thread-local key
 * could not be made; the -errno of io_uring_queue_init_params(); or, rarely,
 * that of getcontext(3), sigaction(2) or sigaltstack(2) (setting up the
 * stack-overflow handler).
 */
int reactor_create(const struct reactor_options *opts, struct reactor **out);

/**
 * reactor_get() - the calling thread's reactor, created on first call.
 *
 * Creation uses reactor_options_init() defaults.  Never suspends.
 *
 * Return: the reactor, or NULL if it could not be created (call
 * reactor_create() to learn why).
 */
struct reactor *reactor_get(void);

/**
 * reactor_destroy() - tear the reactor down now.
 *
 * Fibers that have not finished are discarded without being resumed (their
 * stacks are released; nothing on them runs again), the ring is closed, the
 * thread's affinity is restored and the cookie is eaten.  A later
 * reactor_get() in the same thread creates a fresh reactor.  Thread exit
 * does the same automatically.
 *
 * Return: 0; -EINVAL if @r is NULL; -EPERM if called from another thread
 * than the owner; -EBUSY if called from one of the reactor's own fibers or
 * while it is running.
 */
int reactor_destroy(struct reactor *r);

/**
 * reactor_run() - run fibers until every fiber of @r has terminated.
 *
 * A fiber has terminated when its body returns; a joinable fiber's result
 * waits for fiber_join() after reactor_run() has returned.
 * Blocks the thread in io_uring while all fibers wait; never spins.
 * Pending operations started outside a fiber are completed along the way;
 * receive streams (<ioucontext/rstream.h>) waiting for data do not keep it
 * running.
 *
 * Return: 0 when no fiber is left; -EINVAL if @r is NULL; -EPERM if
 * called from inside a fiber or from another thread than the owner; -EBUSY
 * if called while @r is already running, from a callback it runs outside
 * any fiber (a reactor_post() call, for one); -EDEADLK if fibers remain but none
 * can ever be woken (all parked with nothing in flight and no timer armed);
 * or a -errno from io_uring_enter.
 */
int reactor_run(struct reactor *r);

/**
 * reactor_runnable() - true while @r has live fibers or pending operations
 * (an armed receive stream alone does not count).
 */
bool reactor_runnable(const struct reactor *r);

/**
 * reactor_cookie_jar() - store one user cookie with an optional destructor.
 *
 * The cookie is "eaten" (@eat called once with it) when the reactor is torn
 * down, whether by thread exit or reactor_destroy().  Storing a new cookie
 * eats the previous one first.  @eat may be NULL.
 *
 * The eater runs on the reactor's thread while the reactor still exists; it
 * must not call blocking ioucontext functions.
 *
 * Return: 0; -EINVAL if @r is NULL.
 */
int reactor_cookie_jar(struct reactor *r, void *cookie, reactor_cookie_eater *eat);

/**
 * reactor_cookie() - the cookie last stored with reactor_cookie_jar(), or NULL.
 */
void *reactor_cookie(const struct reactor *r);

/**
 * reactor_cpu() - the CPU the reactor's thread is pinned to.
 *
 * Return: the CPU number (>= 0); -ENOTSUP if pinning was turned off by
 * option or environment (IOU_PIN=0); -EINVAL if @r is NULL; otherwise the
 * -errno with which pinning failed (that of sched_getaffinity(2) or
 * sched_setaffinity(2), -ENOMEM, or -EINVAL for an empty affinity mask).
 */
int reactor_cpu(const struct reactor *r);

/**
 * reactor_ring_flags() - the IOU_RING_* flags the kernel accepted.
 */
unsigned reactor_ring_flags(const struct reactor *r);

/**
 * reactor_ring_entries() - the submission queue size in effect.
 */
unsigned reactor_ring_entries(const struct reactor *r);

/**
 * reactor_op_supported() - whether the kernel supports io_uring @opcode.
 *
 * Answered from the probe taken when the reactor was created.  On kernels
 * too old to be probed, only the opcodes of the original io_uring release
 * are reported as supported.
 */
bool reactor_op_supported(const struct reactor *r, unsigned opcode);

/**
 * reactor_current() - the calling thread's reactor, or NULL if it has none
 * (unlike reactor_get(), never creates one).  Never suspends.
 */
struct reactor *reactor_current(void);

/**
 * reactor_ext_fini - releases a library's per-reactor value at teardown.
 */
typedef void reactor_ext_fini(struct reactor *r, void *value);

/**
 * reactor_ext_set() - attach @value to @r under @key (any unique address,
 * e.g. of a static variable of the library), or replace what is there.
 * @fini: called once with @value when the reactor is torn down (after the
 *        cookie is eaten, before operations still in the kernel are
 *        cancelled; fibers never run again by then), or NULL.
 *
 * For libraries built on ioucontext (the DNS library keeps its resolver
 * here).  Replacing a value does not call the old one's @fini; a NULL
 * @value removes the slot.  Never suspends.
 *
 * Return: 0; -EINVAL if @r or @key is NULL; -ENOMEM.
 */
int reactor_ext_set(struct reactor *r, const void *key, void *value, reactor_ext_fini *fini);

/**
 * reactor_ext_get() - the value attached to @r under @key, or NULL.
 */
void *reactor_ext_get(const struct reactor *r, const void *key);

#ifdef __cplusplus
}
#endif

#endif
