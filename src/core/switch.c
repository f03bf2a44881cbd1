/* SPDX-License-Identifier: MIT */
/*
 * The cold half of the context switch (the hot half is inline in switch.h).
 * Fibers are entered the first time through ucontext: makecontext on a
 * per-reactor template, then setcontext, one rt_sigprocmask, only for a
 * stack that has never run a fiber.  From then on they are switched with
 * sigsetjmp(env, 0)/siglongjmp, which never touch the signal mask.
 * Sanitizer builds complete their switch annotations here (ASan) or name
 * the thread's own context as a fiber (TSan).
 *
 * Compiled with -U_FORTIFY_SOURCE: the fortified longjmp refuses to jump to
 * another stack.
 */
#include <errno.h>

#include "core.h"

#if defined(IOU_TSAN)
#include <sanitizer/tsan_interface.h>
#endif

#if defined(IOU_ASAN)
#include <sanitizer/common_interface_defs.h>

/* Complete a switch; record the thread stack's bounds the first time we leave it. */
void iou__switch_finish(void *fake)
{
	struct reactor *r = iou__self;
	const void *lo = NULL;
	size_t size = 0;

	__sanitizer_finish_switch_fiber(fake, &lo, &size);
	if (r->from_sched && !r->sched_size) {
		r->sched_lo = (void *)lo;
		r->sched_size = size;
	}
}
#endif

/* Start @f on its stack: it begins in iou__fiber_main(), which never returns. */
_Noreturn void iou__enter(struct fiber *f)
{
	struct reactor *r = f->r;

	r->entry.uc_stack.ss_sp = f->lo;
	r->entry.uc_stack.ss_size = f->size;
	r->entry.uc_link = NULL;
	makecontext(&r->entry, iou__fiber_main, 0);
	setcontext(&r->entry);
	__builtin_unreachable();
}

/* First code a fiber runs on a fresh stack: complete the annotation. */
void iou__switch_entered(void)
{
	iou__switch_finish(NULL);
}

/* Capture the template every fresh stack is entered through (one syscall). */
int iou__switch_init(struct reactor *r)
{
#if defined(IOU_TSAN)
	r->tsan_sched = __tsan_get_current_fiber();
#endif
	return getcontext(&r->entry) ? -errno : 0;
}
