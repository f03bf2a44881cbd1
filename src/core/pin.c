/* SPDX-License-Identifier: MIT */
/*
 * Pinning: each reactor's thread (and its ring's io-wq workers) is bound to
 * one CPU of the thread's affinity mask, the one fewest live reactors use,
 * so successive reactors spread over distinct CPUs.
 *
 * A thread created by an already pinned thread inherits its one-CPU mask.
 * When a new reactor's thread has exactly such a mask, set by ioucontext
 * itself, the choice is made from the mask the pinned threads had before we
 * narrowed it, so that worker threads do not all pile onto their creator's
 * CPU.
 */
#include <errno.h>
#include <sched.h>
#include <stdlib.h>

#include "core.h"

static once_flag lock_once = ONCE_FLAG_INIT;
static mtx_t lock;
static unsigned users[CPU_SETSIZE]; /* live reactors pinned to each CPU */
static cpu_set_t ours;		    /* CPUs ioucontext has pinned a thread to */
static cpu_set_t before;	    /* union of masks threads had before pinning */

static void lock_init(void)
{
	mtx_init(&lock, mtx_plain);
}

void iou__pin(struct reactor *r)
{
	cpu_set_t mask, one;
	cpu_set_t *saved;
	int cpu, best = -1;

	if (sched_getaffinity(0, sizeof(mask), &mask)) {
		r->cpu = -errno;
		return;
	}
	saved = malloc(sizeof(*saved));
	if (!saved) {
		r->cpu = -ENOMEM;
		return;
	}
	*saved = mask;
	call_once(&lock_once, lock_init);
	mtx_lock(&lock);
	if (CPU_COUNT(&mask) == 1) {
		for (cpu = 0; cpu < CPU_SETSIZE && !CPU_ISSET(cpu, &mask); cpu++)
			;
		if (CPU_ISSET(cpu, &ours))
			mask = before;
	} else {
		CPU_OR(&before, &before, &mask);
	}
	for (cpu = 0; cpu < CPU_SETSIZE; cpu++)
		if (CPU_ISSET(cpu, &mask) && (best < 0 || users[cpu] < users[best]))
			best = cpu;
	if (best >= 0) {
		CPU_ZERO(&one);
		CPU_SET(best, &one);
		if (sched_setaffinity(0, sizeof(one), &one) == 0) {
			users[best]++;
			CPU_SET(best, &ours);
			if (CPU_COUNT(&before) == 0)
				CPU_OR(&before, &before, saved);
		} else {
			best = -errno;
		}
	} else {
		best = -EINVAL;
	}
	mtx_unlock(&lock);
	r->cpu = best;
	if (best < 0) {
		free(saved);
		return;
	}
	r->saved_affinity = saved;
	/* io-wq workers follow; kernels without the register op just don't. */
	io_uring_register_iowq_aff(&r->ring, sizeof(one), &one);
}

void iou__unpin(struct reactor *r)
{
	if (r->cpu < 0 || !r->saved_affinity)
		return;
	mtx_lock(&lock);
	users[r->cpu]--;
	mtx_unlock(&lock);
	sched_setaffinity(0, sizeof(cpu_set_t), r->saved_affinity);
	free(r->saved_affinity);
	r->saved_affinity = NULL;
}
