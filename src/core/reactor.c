/* SPDX-License-Identifier: MIT */
/*
 * The reactor's life: creation on a thread's first reactor_get(), the ring
 * set-up with its flag fallbacks and opcode probe, the thread-local slot and
 * C11 tss destructor that tear it down at thread exit, explicit destruction,
 * the cookie jar, reactor_run() and the queries.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"

#if defined(IOU_HAVE_VALGRIND)
#include <valgrind/valgrind.h>
#else
#define RUNNING_ON_VALGRIND 0
#endif

_Thread_local struct reactor *iou__self __attribute__((tls_model("initial-exec")));

static once_flag key_once = ONCE_FLAG_INIT;
static tss_t key;
static bool key_ok;

static void teardown(struct reactor *r)
{
	void *cookie = r->cookie;
	reactor_cookie_eater *eat = r->eat;

	/* Eat the cookie first, while the reactor is still whole. */
	r->cookie = NULL;
	r->eat = NULL;
	if (eat)
		eat(cookie);
	if (r->cookie && r->eat) /* the eater stored another one */
		r->eat(r->cookie);

	while (r->exts) {
		struct iou__ext *e = r->exts;

		r->exts = e->next;
		if (e->fini)
			e->fini(r, e->value);
		free(e);
	}
	/* Messages: take our waits off other threads' objects, close the mailbox. */
	iou__mail_fini(r);
	iou__ops_drain(r);
	/* Nothing in the kernel can write into a buffer ring any more. */
	iou__rstreams_fini(r);
	iou__files_fini(r);
	iou__self = NULL;
	if (key_ok)
		tss_set(key, NULL);
	io_uring_queue_exit(&r->ring);
	iou__mail_release(r);
	iou__stacks_fini(&r->stacks);
	iou__timer_free(&r->timers);
	iou__unpin(r);
	iou__overflow_handler_release(r);
	free(r);
}

/* The thread is exiting: tear its reactor down (tss destructor). */
static void on_thread_exit(void *p)
{
	struct reactor *r = p;

	/* thrd_exit() from inside a fiber would run us on a stack we own. */
	if (r && !r->current)
		teardown(r);
}

/* exit() ran: tear down the calling thread's reactor, as thread exit would. */
static void on_process_exit(void)
{
	struct reactor *r = iou__self;

	if (r && !r->current && !r->driving)
		teardown(r);
}

static void key_init(void)
{
	key_ok = tss_create(&key, on_thread_exit) == thrd_success;
	if (key_ok)
		atexit(on_process_exit);
}

static unsigned kernel_flags(unsigned f)
{
	return (f & IOU_RING_SINGLE_ISSUER ? IORING_SETUP_SINGLE_ISSUER : 0) |
	       (f & IOU_RING_DEFER_TASKRUN ? IORING_SETUP_DEFER_TASKRUN : 0) |
	       (f & IOU_RING_COOP_TASKRUN ? IORING_SETUP_COOP_TASKRUN : 0);
}

/* Try the allowed flags, dropping one at a time while the kernel says EINVAL. */
static int ring_setup(struct reactor *r, const struct reactor_options *o)
{
	static const unsigned ladder[] = {
		IOU_RING_ALL,
		IOU_RING_ALL & ~IOU_RING_DEFER_TASKRUN,
		IOU_RING_COOP_TASKRUN,
		0,
	};
	unsigned last = ~0u;
	int ret = -EINVAL;

	for (size_t i = 0; i < sizeof(ladder) / sizeof(ladder[0]); i++) {
		unsigned flags = o->ring_flags & ladder[i];
		struct io_uring_params p;

		if (!(flags & IOU_RING_SINGLE_ISSUER))
			flags &= ~IOU_RING_DEFER_TASKRUN;
		if (flags == last)
			continue;
		last = flags;
		memset(&p, 0, sizeof(p));
		p.flags = kernel_flags(flags);
		ret = io_uring_queue_init_params(o->ring_entries, &r->ring, &p);
		if (ret == 0) {
			r->ring_flags = flags;
			r->ring_entries = r->ring.sq.ring_entries;
			return 0;
		}
		if (ret != -EINVAL)
			break;
	}
	return ret;
}

static void probe(struct reactor *r)
{
	struct io_uring_probe *p = io_uring_get_probe_ring(&r->ring);

	if (!p) {
		/* Too old to probe: only the first release's opcodes. */
		for (unsigned op = IORING_OP_NOP; op <= IORING_OP_WRITE_FIXED; op++)
			r->probe[op / 8] |= 1u << (op % 8);
		return;
	}
	for (unsigned i = 0; i < p->ops_len && i < 256; i++)
		if (p->ops[i].flags & IO_URING_OP_SUPPORTED)
			r->probe[p->ops[i].op / 8] |= 1u << (p->ops[i].op % 8);
	io_uring_free_probe(p);
}

/*
 * IOU_DISABLE_OPCODES=N,N,...: act as if the kernel lacked these opcodes, so
 * that the fallback paths can be tested on a kernel that has them all.
 */
static void disable_opcodes(struct reactor *r)
{
	const char *s = getenv("IOU_DISABLE_OPCODES");

	while (s && *s) {
		char *end;
		unsigned long op = strtoul(s, &end, 10);

		if (end == s)
			break;
		if (op < 256)
			r->probe[op / 8] &= (uint8_t)~(1u << (op % 8));
		s = *end == ',' ? end + 1 : end;
	}
}

/*
 * Wait in ppoll() on the ring fd instead of in io_uring_enter (see vg_wait()
 * in sched.c): under valgrind, or when IOU_PPOLL_WAIT is set (a testing aid
 * that runs the same path natively).  Such a ring is set up without
 * DEFER_TASKRUN: with it, work deferred to the ring's task (a MSG_RING, a
 * poll wake-up) is reported by a poll on the ring fd but does not wake one.
 */
static bool ppoll_wanted(void)
{
	return RUNNING_ON_VALGRIND || getenv("IOU_PPOLL_WAIT");
}

IOU_API int reactor_create(const struct reactor_options *opts, struct reactor **out)
{
	struct reactor_options defaults;
	struct reactor *r;
	int ret;

	if (!out)
		return -EINVAL;
	if (!opts) {
		reactor_options_init(&defaults);
		opts = &defaults;
	}
	ret = iou__options_check(opts);
	if (ret < 0)
		return ret;
	call_once(&key_once, key_init);
	if (!key_ok)
		return -EAGAIN;
	if (iou__self)
		return -EEXIST;
	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->stack_size = opts->stack_size;
	r->deadline = IOU_DEADLINE_NEVER;
	r->multishot = opts->multishot;
	r->file_slots = opts->file_slots;
	r->bufring_count = opts->bufring_count ? opts->bufring_count : IOU_DEFAULT_BUFRING_COUNT;
	r->bufring_size = opts->bufring_size ? opts->bufring_size : IOU_DEFAULT_BUFRING_SIZE;
	if (ppoll_wanted()) {
		defaults = *opts;
		defaults.ring_flags &= ~IOU_RING_DEFER_TASKRUN;
		opts = &defaults;
		r->ppoll_wait = true;
	}
	ret = ring_setup(r, opts);
	if (ret < 0) {
		free(r);
		return ret;
	}
	/*
	 * Register the ring's own fd with itself, so that io_uring_enter skips
	 * a descriptor lookup each time.  The registration belongs to this
	 * thread, the only one that enters this ring.  Optional (kernel 5.18+);
	 * skipped under valgrind, which checks the fd of every enter.
	 */
	if (!r->ppoll_wait)
		(void)io_uring_register_ring_fd(&r->ring);
	probe(r);
	disable_opcodes(r);
	iou__stacks_init(&r->stacks, opts->fiber_pool);
	ret = iou__switch_init(r);
	if (ret < 0)
		goto fail;
	ret = iou__overflow_handler_install(r);
	if (ret < 0)
		goto fail;
	if (opts->pin)
		iou__pin(r);
	else
		r->cpu = -ENOTSUP;
	if (tss_set(key, r) != thrd_success) {
		ret = -ENOMEM;
		goto fail;
	}
	iou__self = r;
	*out = r;
	return 0;
fail:
	iou__unpin(r);
	iou__overflow_handler_release(r);
	iou__stacks_fini(&r->stacks);
	io_uring_queue_exit(&r->ring);
	free(r);
	return ret;
}

IOU_API struct reactor *reactor_get(void)
{
	struct reactor *r = iou__self;

	if (iou__likely(r != NULL))
		return r;
	return reactor_create(NULL, &r) == 0 ? r : NULL;
}

IOU_API struct reactor *reactor_current(void)
{
	return iou__self;
}

IOU_API int reactor_destroy(struct reactor *r)
{
	if (!r)
		return -EINVAL;
	if (r != iou__self)
		return -EPERM;
	if (r->current || r->driving)
		return -EBUSY;
	teardown(r);
	return 0;
}

IOU_API int reactor_run(struct reactor *r)
{
	if (!r)
		return -EINVAL;
	if (r != iou__self || r->current)
		return -EPERM;
	if (r->driving)
		return -EBUSY;
	return iou__drive(r, NULL);
}

IOU_API bool reactor_runnable(const struct reactor *r)
{
	return r && (r->nfibers > 0 || r->inflight > r->background);
}

IOU_API int reactor_cookie_jar(struct reactor *r, void *cookie, reactor_cookie_eater *eat)
{
	void *old;
	reactor_cookie_eater *old_eat;

	if (!r)
		return -EINVAL;
	old = r->cookie;
	old_eat = r->eat;
	r->cookie = cookie;
	r->eat = eat;
	if (old_eat && (old != cookie || old_eat != eat))
		old_eat(old);
	return 0;
}

IOU_API void *reactor_cookie(const struct reactor *r)
{
	return r ? r->cookie : NULL;
}

IOU_API int reactor_cpu(const struct reactor *r)
{
	return r ? r->cpu : -EINVAL;
}

IOU_API unsigned reactor_ring_flags(const struct reactor *r)
{
	return r ? r->ring_flags : 0;
}

IOU_API unsigned reactor_ring_entries(const struct reactor *r)
{
	return r ? r->ring_entries : 0;
}

IOU_API bool reactor_op_supported(const struct reactor *r, unsigned opcode)
{
	return r && opcode < 256 && (r->probe[opcode / 8] >> (opcode % 8)) & 1;
}

IOU_API int reactor_ext_set(struct reactor *r, const void *id, void *value,
			    reactor_ext_fini *fini)
{
	struct iou__ext **pe, *e;

	if (!r || !id)
		return -EINVAL;
	for (pe = &r->exts; (e = *pe); pe = &e->next)
		if (e->key == id)
			break;
	if (!value) {
		if (e) {
			*pe = e->next;
			free(e);
		}
		return 0;
	}
	if (!e) {
		e = calloc(1, sizeof(*e));
		if (!e)
			return -ENOMEM;
		e->key = id;
		e->next = r->exts;
		r->exts = e;
	}
	e->value = value;
	e->fini = fini;
	return 0;
}

IOU_API void *reactor_ext_get(const struct reactor *r, const void *id)
{
	for (const struct iou__ext *e = r ? r->exts : NULL; e; e = e->next)
		if (e->key == id)
			return e->value;
	return NULL;
}
