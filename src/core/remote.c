/* SPDX-License-Identifier: MIT */
/*
 * Fibers on other reactors: fiber_spawn_on() posts a call that spawns the
 * fiber on the target; the handle (struct fiber_remote) is shared by the
 * two sides and counted, and carries the result back.  A joiner parks on a
 * remote wait (msg.c) that the target completes, under the handle's lock,
 * when the fiber returns -- or when the target is torn down first (a
 * teardown hook), or could not start it.  A cancel is one more posted call.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"

struct fiber_remote {
	_Atomic int refs; /* the handle's, and the target side's */
	iou__spin lock;
	bool done;		   /* finished, or will never run (under lock) */
	int err;		   /* with done: 0, or why it did not finish */
	void *result;		   /* with done and !err: what fn returned */
	struct iou__rwait *joiner; /* a parked fiber_remote_join() (under lock) */
	struct reactor_ref *to;	   /* the target (a reference) */
	/* The request, read by the target. */
	fiber_fn *fn;
	void *arg;
	size_t stack_size;
	bool named;
	char name[IOU_FIBER_NAME_MAX + 1];
	/* The target's side, touched on its thread only (under lock for safety). */
	struct fiber *fiber;   /* running there, or NULL */
	bool cancel;	       /* a cancel arrived before the spawn */
	struct iou__hook hook; /* while it runs: the target's teardown reports it */
};

#define remote_of_hook(h) ((struct fiber_remote *)((char *)(h)-offsetof(struct fiber_remote, hook)))

static void remote_put(struct fiber_remote *rf)
{
	if (atomic_fetch_sub_explicit(&rf->refs, 1, memory_order_acq_rel) != 1)
		return;
	reactor_ref_put(rf->to);
	free(rf);
}

static void unlink_joiner(struct iou__rwait *rw)
{
	struct fiber_remote *rf = rw->obj;

	rf->joiner = NULL;
}

/* The fiber is over (or never ran): record it, wake the joiner, drop the target's reference. */
static void finish(struct fiber_remote *rf, void *result, int err)
{
	struct iou__rwait *w;

	iou__spin_lock(&rf->lock);
	rf->done = true;
	rf->result = result;
	rf->err = err;
	rf->fiber = NULL;
	if ((w = rf->joiner)) {
		rf->joiner = NULL;
		w->linked = false;
		iou__rwake(iou__self, w, 0);
	}
	iou__spin_unlock(&rf->lock);
	remote_put(rf);
}

static void runner_teardown(struct reactor *r, struct iou__hook *h)
{
	(void)r;
	finish(remote_of_hook(h), NULL, -ESHUTDOWN);
}

static void *runner(void *arg)
{
	struct fiber_remote *rf = arg;
	void *result = rf->fn(rf->arg);

	iou__hook_del(iou__self, &rf->hook);
	finish(rf, result, 0);
	return NULL;
}

/* The posted call, on the target. */
static void spawn_call(struct reactor *r, void *arg, int status)
{
	struct fiber_remote *rf = arg;
	struct fiber_options opts = {
		.stack_size = rf->stack_size,
		.name = rf->named ? rf->name : NULL,
	};
	struct fiber *f;
	bool cancel;
	int ret;

	if (status < 0) {
		finish(rf, NULL, status);
		return;
	}
	ret = fiber_spawn_with(r, &opts, runner, rf, &f);
	if (ret < 0) {
		finish(rf, NULL, ret);
		return;
	}
	/* Released when it finishes; the handle never joins it locally. */
	fiber_detach(f);
	rf->hook.fn = runner_teardown;
	iou__hook_add(r, &rf->hook);
	iou__spin_lock(&rf->lock);
	rf->fiber = f;
	cancel = rf->cancel;
	iou__spin_unlock(&rf->lock);
	if (cancel)
		fiber_cancel(f);
}

IOU_API int fiber_spawn_on(struct reactor *r, struct reactor_ref *to,
			   const struct fiber_options *opts, fiber_fn *fn, void *arg,
			   struct fiber_remote **out)
{
	struct fiber_remote *rf;
	int ret;

	if (!r || !to || !fn || !out)
		return -EINVAL;
	rf = calloc(1, sizeof(*rf));
	if (!rf)
		return -ENOMEM;
	atomic_init(&rf->refs, 2);
	atomic_init(&rf->lock.held, false);
	rf->fn = fn;
	rf->arg = arg;
	rf->to = reactor_ref_dup(to);
	if (opts) {
		rf->stack_size = opts->stack_size;
		if (opts->name) {
			strncpy(rf->name, opts->name, IOU_FIBER_NAME_MAX);
			rf->named = true;
		}
	}
	ret = reactor_post(r, to, spawn_call, rf);
	if (ret < 0) {
		reactor_ref_put(rf->to);
		free(rf);
		return ret;
	}
	*out = rf;
	return 0;
}

IOU_API int fiber_remote_join(struct fiber_remote *rf, void **result)
{
	struct reactor *r;
	struct iou__rwait rw;
	int ret;

	if (!rf)
		return -EINVAL;
	r = reactor_get();
	if (!r)
		return -ENOMEM;
	ret = iou__mail_self(r);
	if (ret < 0)
		return ret;
	iou__spin_lock(&rf->lock);
	if (rf->joiner) {
		iou__spin_unlock(&rf->lock);
		return -EINVAL;
	}
	if (!rf->done) {
		if (!r->current && r->driving) {
			iou__spin_unlock(&rf->lock);
			return -EAGAIN;
		}
		iou__rwait_prepare(r, &rw, rf, &rf->lock, unlink_joiner, NULL);
		rf->joiner = &rw;
		rw.linked = rw.pending = true;
		iou__spin_unlock(&rf->lock);
		ret = iou__rwait_park(r, &rw);
		iou__rwait_end(r, &rw);
		if (!rw.served)
			return ret;
		iou__spin_lock(&rf->lock);
	}
	ret = rf->err;
	if (!ret && result)
		*result = rf->result;
	iou__spin_unlock(&rf->lock);
	remote_put(rf);
	return ret;
}

IOU_API int fiber_remote_detach(struct fiber_remote *rf)
{
	bool busy;

	if (!rf)
		return -EINVAL;
	iou__spin_lock(&rf->lock);
	busy = rf->joiner != NULL;
	iou__spin_unlock(&rf->lock);
	if (busy)
		return -EINVAL;
	remote_put(rf);
	return 0;
}

static void cancel_call(struct reactor *r, void *arg, int status)
{
	struct fiber_remote *rf = arg;
	struct fiber *f;

	(void)r;
	iou__spin_lock(&rf->lock);
	f = rf->fiber;
	if (!f && !rf->done)
		rf->cancel = true;
	iou__spin_unlock(&rf->lock);
	if (f && status == 0)
		fiber_cancel(f);
	remote_put(rf);
}

IOU_API int fiber_remote_cancel(struct reactor *r, struct fiber_remote *rf)
{
	int ret;

	if (!rf)
		return -EINVAL;
	atomic_fetch_add_explicit(&rf->refs, 1, memory_order_relaxed);
	ret = reactor_post(r, rf->to, cancel_call, rf);
	if (ret < 0)
		remote_put(rf);
	return ret;
}
