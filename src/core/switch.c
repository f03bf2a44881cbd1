/* SPDX-License-Identifier: MIT */
/*
 * The context switch.  Fibers are entered the first time through ucontext
 * (makecontext on a per-reactor template, then setcontext: one
 * rt_sigprocmask, only for a stack that has never run a fiber) and from then
 * on switched with sigsetjmp(env, 0)/siglongjmp, which never touch the signal
 * mask and so make no system call.  Sanitizer builds annotate every switch.
 *
 * Compiled with -U_FORTIFY_SOURCE: the fortified longjmp refuses to jump to
 * another stack.
 */
#include <errno.h>

#include "core.h"

#if defined(IOU_ASAN)
#include <sanitizer/common_interface_defs.h>
#define ASAN_START(fake, lo, size) __sanitizer_start_switch_fiber((fake), (lo), (size))
#define ASAN_FINISH(fake, lo, size) __sanitizer_finish_switch_fiber((fake), (lo), (size))
#else
#define ASAN_START(fake, lo, size) ((void)(fake), (void)(lo), (void)(size))
#define ASAN_FINISH(fake, lo, size) ((void)(fake), (void)(lo), (void)(size))
#endif

/* Record the thread stack's bounds the first time we leave it. */
static void finish(struct reactor *r, void *fake)
{
	const void *lo = NULL;
	size_t size = 0;

	ASAN_FINISH(fake, &lo, &size);
	if (r->from_sched && !r->sched_size) {
		r->sched_lo = (void *)lo;
		r->sched_size = size;
	}
}

/* Start @f on its stack: it begins in iou__fiber_main(), which never returns. */
static _Noreturn void enter(struct reactor *r, struct fiber *f)
{
	r->entry.uc_stack.ss_sp = f->lo;
	r->entry.uc_stack.ss_size = f->size;
	r->entry.uc_link = NULL;
	makecontext(&r->entry, iou__fiber_main, 0);
	setcontext(&r->entry);
	__builtin_unreachable();
}

/*
 * Suspend @from (NULL: the thread's own context) and resume @to (NULL: the
 * thread's own context).  Returns when something switches back to @from.
 */
void iou__switch(struct reactor *r, struct fiber *from, struct fiber *to)
{
	sigjmp_buf *save = from ? &from->env : &r->sched_env;
	void *fake = NULL;

	r->current = to;
	r->from_sched = !from;
	if (to) {
		to->state = IOU_FIBER_RUNNING;
		ASAN_START(&fake, to->lo, to->size);
	} else {
		ASAN_START(&fake, r->sched_lo, r->sched_size);
	}
	if (sigsetjmp(*save, 0) == 0) {
		if (!to)
			siglongjmp(r->sched_env, 1);
		if (!to->entered)
			enter(r, to);
		siglongjmp(to->env, 1);
	}
	finish(r, fake);
}

/* First code a fiber runs on a fresh stack: complete the annotation. */
void iou__switch_entered(struct reactor *r)
{
	finish(r, NULL);
}

/* Capture the template every fresh stack is entered through (one syscall). */
int iou__switch_init(struct reactor *r)
{
	return getcontext(&r->entry) ? -errno : 0;
}
