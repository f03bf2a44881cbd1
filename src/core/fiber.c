/* SPDX-License-Identifier: MIT */
/*
 * Fibers: spawn, the trampoline every fiber runs in, join, detach, yield,
 * self and sleep.  A fiber's stack keeps its trampoline frame for life: when
 * the body returns, the fiber parks inside the trampoline, and a later spawn
 * on the pooled stack simply resumes it with a new body, which makes no
 * system call.
 */
#include <errno.h>
#include <string.h>

#include "switch.h"

#define MIN_STACK ((size_t)16 * 1024)
#define MAX_STACK ((size_t)1024 * 1024 * 1024)

static void finished(struct reactor *r, struct fiber *f)
{
	r->nfibers--;
	if (f->detached) {
		iou__stack_put(r, f);
		return;
	}
	f->state = IOU_FIBER_DONE;
	if (f->joiner)
		iou__wake(r, f->joiner);
}

void iou__fiber_main(void)
{
	struct reactor *r = iou__self;
	struct fiber *f = r->current;

	iou__switch_entered();
	f->entered = true;
	for (;;) {
		f->result = f->fn(f->arg);
		finished(r, f);
		/* Parks until a spawn reuses this stack (see iou__stack_get). */
		IOU__PARK(r);
	}
}

IOU_API int fiber_spawn_with(struct reactor *r, const struct fiber_options *opts, fiber_fn *fn,
			     void *arg, struct fiber **out)
{
	size_t size;
	struct fiber *f;
	int ret;

	if (!r || !fn)
		return -EINVAL;
	if (r != iou__self)
		return -EPERM;
	size = opts && opts->stack_size ? opts->stack_size : r->stack_size;
	if (size < MIN_STACK || size > MAX_STACK)
		return -EINVAL;
	ret = iou__stack_get(r, size, &f);
	if (ret < 0)
		return ret;
	f->r = r;
	f->fn = fn;
	f->arg = arg;
	f->result = NULL;
	f->joiner = NULL;
	f->id = ++r->next_id;
	f->detached = !out;
	f->cancelled = false;
	f->deadline = IOU_DEADLINE_NEVER;
	f->wait = NULL;
	f->parked = NULL;
	f->permit = false;
	f->name[0] = '\0';
	if (opts && opts->name) {
		strncpy(f->name, opts->name, IOU_FIBER_NAME_MAX);
		f->name[IOU_FIBER_NAME_MAX] = '\0';
	}
	f->state = IOU_FIBER_LIVE;
	r->nfibers++;
	iou__runq_push(r, f);
	if (out)
		*out = f;
	return 0;
}

IOU_API int fiber_spawn(struct reactor *r, fiber_fn *fn, void *arg, struct fiber **out)
{
	return fiber_spawn_with(r, NULL, fn, arg, out);
}

IOU_API int fiber_join(struct fiber *f, void **result)
{
	struct reactor *r;
	int ret;

	if (!f)
		return -EINVAL;
	r = f->r;
	if (r != iou__self)
		return -EPERM;
	if (f->detached || f->joiner || f->state == IOU_FIBER_POOLED)
		return -EINVAL;
	if (f == r->current)
		return -EDEADLK;
	if (f->state != IOU_FIBER_DONE) {
		struct iou__wait w = { 0 };

		f->joiner = &w;
		ret = iou__wait(r, &w);
		f->joiner = NULL;
		if (ret < 0)
			return ret;
	}
	if (result)
		*result = f->result;
	iou__stack_put(r, f);
	return 0;
}

IOU_API int fiber_detach(struct fiber *f)
{
	if (!f)
		return -EINVAL;
	if (f->r != iou__self)
		return -EPERM;
	if (f->detached || f->joiner || f->state == IOU_FIBER_POOLED)
		return -EINVAL;
	f->detached = true;
	if (f->state == IOU_FIBER_DONE)
		iou__stack_put(f->r, f);
	return 0;
}

IOU_API int fiber_yield(struct reactor *r)
{
	struct fiber *self, *next = NULL;

	if (iou__unlikely(!r))
		return -EINVAL;
	if (iou__unlikely(r != iou__self))
		return -EPERM;
	self = r->current;
	if (iou__unlikely(!self))
		return iou__tick(r);
	/*
	 * Pop the next fiber before queueing ourselves: the other order reads
	 * back a just-stored link and puts a store-forwarding stall on the
	 * switch's critical path.
	 */
	if (iou__likely(r->budget)) {
		r->budget--;
		next = iou__runq_pop(r);
		if (!next)
			return 0; /* a lone yielder: nothing else to run */
	}
	iou__runq_push(r, self);
	IOU__SWITCH(r, self, next);
	return 0;
}

IOU_API int fiber_cancel(struct fiber *f)
{
	if (!f)
		return -EINVAL;
	if (f->r != iou__self)
		return -EPERM;
	if (f->state != IOU_FIBER_LIVE)
		return f->state == IOU_FIBER_DONE ? 0 : -EINVAL;
	f->cancelled = true;
	if (f->wait)
		iou__interrupt(f->r, f->wait, -ECANCELED);
	return 0;
}

IOU_API bool fiber_cancelled(const struct reactor *r)
{
	return r && r->current && r->current->cancelled;
}

IOU_API int64_t fiber_deadline(const struct reactor *r)
{
	if (!r)
		return IOU_DEADLINE_NEVER;
	return r->current ? r->current->deadline : r->deadline;
}

IOU_API int64_t fiber_set_deadline(struct reactor *r, int64_t deadline)
{
	int64_t *slot, old;

	if (!r)
		return IOU_DEADLINE_NEVER;
	slot = r->current ? &r->current->deadline : &r->deadline;
	old = *slot;
	*slot = deadline;
	return old;
}

IOU_API int fiber_park(struct reactor *r, int64_t until)
{
	struct iou__wait w = { 0 };
	struct fiber *f;
	int ret;

	if (!r)
		return -EINVAL;
	f = r->current;
	if (r != iou__self || !f)
		return -EPERM;
	if (f->permit) {
		f->permit = false;
		return f->cancelled ? -ECANCELED : 1;
	}
	f->parked = &w;
	ret = iou__wait_until(r, &w, until);
	f->parked = NULL;
	if (ret < 0)
		return ret;
	if (f->permit) {
		f->permit = false;
		return 1;
	}
	return 0;
}

IOU_API int fiber_unpark(struct fiber *f)
{
	if (!f)
		return -EINVAL;
	if (f->r != iou__self)
		return -EPERM;
	if (f->state == IOU_FIBER_POOLED)
		return -EINVAL;
	if (f->state != IOU_FIBER_LIVE)
		return 0;
	f->permit = true;
	if (f->parked)
		iou__wake(f->r, f->parked);
	return 0;
}

IOU_API struct fiber *fiber_self(struct reactor *r)
{
	return r ? r->current : NULL;
}

IOU_API int fiber_sleep_until(struct reactor *r, int64_t deadline)
{
	struct iou__wait w = { 0 };

	if (!r)
		return -EINVAL;
	if (r != iou__self)
		return -EPERM;
	if (deadline <= iou_now())
		return r->current && r->current->cancelled ? -ECANCELED : 0;
	return iou__wait_until(r, &w, deadline);
}

IOU_API int fiber_sleep(struct reactor *r, int64_t ns)
{
	if (ns <= 0) {
		/* Returns at once, with the checks and result fiber_sleep_until() has. */
		if (!r)
			return -EINVAL;
		if (r != iou__self)
			return -EPERM;
		return r->current && r->current->cancelled ? -ECANCELED : 0;
	}
	return fiber_sleep_until(r, iou_deadline_after(ns));
}

IOU_API uint64_t fiber_id(const struct fiber *f)
{
	return f ? f->id : 0;
}

IOU_API const char *fiber_name(const struct fiber *f)
{
	return f ? f->name : "";
}
