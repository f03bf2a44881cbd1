/* SPDX-License-Identifier: MIT */
/*
 * The hot path of the context switch, inlined into its few callers.
 *
 * Why inline: after a stack switch the CPU's return-stack predictor holds
 * the other fiber's return addresses, so every `ret` on the way back up the
 * resumed fiber's call chain mispredicts.  With the switch inlined into
 * fiber_yield() and friends, a resumed fiber executes a single `ret` before
 * it is back in user code.
 *
 * Every file that includes this must be compiled with -U_FORTIFY_SOURCE: the
 * fortified siglongjmp refuses to jump to another stack.
 */
#ifndef IOU_SWITCH_H
#define IOU_SWITCH_H

#include "core.h"

#if defined(IOU_ASAN)
#include <sanitizer/common_interface_defs.h>
/* Tell ASan which stack we are about to run on; see iou__switch_finish(). */
#define IOU_ASAN_START(r, fake, from, to)                                                 \
	do {                                                                              \
		(r)->from_sched = !(from);                                                \
		if (to)                                                                   \
			__sanitizer_start_switch_fiber((fake), (to)->lo, (to)->size);     \
		else                                                                      \
			__sanitizer_start_switch_fiber((fake), (r)->sched_lo,             \
						       (r)->sched_size);                  \
	} while (0)
#else
#define IOU_ASAN_START(r, fake, from, to) ((void)(r), (void)(fake), (void)(from), (void)(to))
#endif

#if defined(IOU_TSAN)
#include <sanitizer/tsan_interface.h>
/*
 * Tell TSan which fiber runs next, after the sigsetjmp that saved the one
 * leaving (TSan files a jump buffer under the fiber that saved it, and looks
 * up a siglongjmp's target under the fiber current at the jump).  The
 * switch orders everything before it before everything after, as it does
 * on one thread.
 */
#define IOU_TSAN_SWITCH(r, to) __tsan_switch_to_fiber((to) ? (to)->tsan : (r)->tsan_sched, 0)
#else
#define IOU_TSAN_SWITCH(r, to) ((void)(r), (void)(to))
#endif

#define iou__always_inline inline __attribute__((always_inline))

/*
 * The locals live across the sigsetjmp in IOU__SWITCH are never modified
 * between it and the siglongjmp that returns to it, so C11 7.13.2.1 keeps
 * their values; GCC's -Wclobbered cannot see that.
 */
#ifndef __clang__ /* clang has no such warning, and -Werror rejects unknown ones */
#pragma GCC diagnostic ignored "-Wclobbered"
#endif

static iou__always_inline void iou__runq_push(struct reactor *r, struct fiber *f)
{
	f->next = NULL;
	if (r->runq_tail)
		r->runq_tail->next = f;
	else
		r->runq_head = f;
	r->runq_tail = f;
}

/*
 * Ask for the cache lines a switch to @f reads: its saved registers and
 * flags, and the stack frames around the wait it parked in.  With
 * thousands of parked fibers these are cold (every fiber's stack is a page
 * of its own), and a miss costs more than the rest of a switch.
 */
static iou__always_inline void iou__fiber_prefetch(const struct fiber *f, const void *wait)
{
	const char *p = (const char *)f, *w = (const char *)wait;

	__builtin_prefetch(p);
	__builtin_prefetch(p + 64);
	__builtin_prefetch(p + 256);
	/* The frames it resumes in: the parking code's just below the wait record, its callers' above. */
	__builtin_prefetch(w - 192);
	__builtin_prefetch(w - 128);
	__builtin_prefetch(w - 64);
	__builtin_prefetch(w + 64);
	__builtin_prefetch(w + 128);
}

static iou__always_inline struct fiber *iou__runq_pop(struct reactor *r)
{
	struct fiber *f = r->runq_head;

	if (f) {
		struct fiber *g = f->next;

		r->runq_head = g;
		if (!g)
			r->runq_tail = NULL;
	}
	return f;
}

/*
 * IOU__SWITCH(r, from, to): suspend @from (NULL: the thread's own context)
 * and resume @to (NULL: the thread's own context); execution continues after
 * the macro when something switches back to @from.  A macro, because GCC
 * never inlines a function that calls sigsetjmp.
 */
#define IOU__SWITCH(r, from, to)                                                          \
	do {                                                                              \
		struct reactor *sw_r_ = (r);                                              \
		struct fiber *sw_from_ = (from), *sw_to_ = (to);                          \
		/* Only these two cross the sigsetjmp: GCC keeps such values in memory. */\
		sigjmp_buf *sw_target_ = sw_to_ ? &sw_to_->env : &sw_r_->sched_env;      \
		struct fiber *sw_fresh_ = sw_to_ && !sw_to_->entered ? sw_to_ : NULL;     \
		void *sw_fake_ = NULL;                                                    \
                                                                                          \
		sw_r_->current = sw_to_;                                                  \
		IOU_ASAN_START(sw_r_, &sw_fake_, sw_from_, sw_to_);                       \
		if (sigsetjmp(sw_from_ ? sw_from_->env : sw_r_->sched_env, 0) == 0) {     \
			IOU_TSAN_SWITCH(sw_r_, sw_to_);                                   \
			if (iou__unlikely(sw_fresh_ != NULL))                             \
				iou__enter(sw_fresh_);                                    \
			siglongjmp(*sw_target_, 1);                                       \
		}                                                                         \
		iou__switch_finish(sw_fake_);                                             \
	} while (0)

/*
 * IOU__PARK(r): suspend the running fiber, which has already arranged to be
 * woken (or put itself in the run queue), and run the next fiber, or the
 * driver when the run queue is empty or the batch's budget is spent.
 */
#define IOU__PARK(r)                                                                      \
	do {                                                                              \
		struct reactor *pk_r_ = (r);                                              \
		struct fiber *pk_self_ = pk_r_->current, *pk_next_ = NULL;                \
                                                                                          \
		if (pk_r_->budget && pk_r_->runq_head) {                                  \
			pk_r_->budget--;                                                  \
			pk_next_ = iou__runq_pop(pk_r_);                                  \
			if (pk_next_ == pk_self_)                                         \
				break; /* a lone yielder: nothing else to run */          \
		}                                                                         \
		IOU__SWITCH(pk_r_, pk_self_, pk_next_);                                   \
	} while (0)

#endif
