/* SPDX-License-Identifier: MIT */
/*
 * Reactor groups: N C11 threads, each creating its own (pinned) reactor and
 * running the group's function on it.  The members' mailboxes are made up
 * front and bound by each member when its reactor is up, so that handles on
 * every member exist as soon as reactor_group_start() returns.  Members wait
 * at a gate until every thread has been created (so that a failure can stop
 * them before they run anything) and every member has its reactor (so that
 * each is pinned to a CPU of its own while there are enough), and the last
 * one to return wakes a reactor_group_join() parked on the group.
 */
#include <errno.h>
#include <stdlib.h>

#include "core.h"

#define MAX_MEMBERS 4096u

struct member {
	struct reactor_group *g;
	unsigned index;
	bool started; /* its thread exists */
	thrd_t thread;
	struct reactor_ref *mb; /* the group's reference on its mailbox */
	int result;		/* what fn returned, or why it did not run */
};

struct reactor_group {
	unsigned n;
	reactor_group_fn *fn;
	void *arg;
	_Atomic int gate;	/* 0: wait; 1: run fn; -1: stop before it */
	_Atomic unsigned ready; /* members past creating their reactor */
	iou__spin lock;
	unsigned live;		   /* members whose fn has not returned (under lock) */
	struct iou__rwait *joiner; /* a parked reactor_group_join() (under lock) */
	struct member m[];
};

static void unlink_joiner(struct iou__rwait *rw)
{
	struct reactor_group *g = rw->obj;

	g->joiner = NULL;
}

static void member_done(struct reactor_group *g)
{
	struct iou__rwait *w;

	iou__spin_lock(&g->lock);
	if (--g->live == 0 && (w = g->joiner)) {
		g->joiner = NULL;
		w->linked = false;
		iou__rwake(iou__self, w, 0);
	}
	iou__spin_unlock(&g->lock);
}

static int member_main(void *p)
{
	struct member *m = p;
	struct reactor_group *g = m->g;
	struct reactor *r = NULL;
	int gate, ret = reactor_create(NULL, &r);

	if (ret == 0)
		ret = iou__mail_bind(r, m->mb);
	if (ret < 0)
		iou__mail_close(r, m->mb); /* posts fail from now on */
	/*
	 * Wait until every thread exists and every member has pinned its
	 * reactor (so that each gets a CPU of its own while there are enough):
	 * a short wait, for thread start-up only.
	 */
	atomic_fetch_add_explicit(&g->ready, 1, memory_order_acq_rel);
	while ((gate = atomic_load_explicit(&g->gate, memory_order_acquire)) == 0 ||
	       (gate > 0 && atomic_load_explicit(&g->ready, memory_order_acquire) < g->n))
		thrd_yield();
	if (ret == 0)
		ret = gate > 0 ? g->fn(r, m->index, g->arg) : -ECANCELED;
	m->result = ret;
	member_done(g);
	/* Thread exit tears the reactor down (reactor.c). */
	return 0;
}

static void group_free(struct reactor_group *g)
{
	for (unsigned i = 0; i < g->n; i++)
		iou__mail_put(g->m[i].mb);
	free(g);
}

IOU_API int reactor_group_start(unsigned n, reactor_group_fn *fn, void *arg,
				struct reactor_group **out)
{
	struct reactor_group *g;
	int ret = 0;

	if (!n || n > MAX_MEMBERS || !fn || !out)
		return -EINVAL;
	g = calloc(1, sizeof(*g) + n * sizeof(g->m[0]));
	if (!g)
		return -ENOMEM;
	g->n = n;
	g->fn = fn;
	g->arg = arg;
	atomic_init(&g->gate, 0);
	atomic_init(&g->ready, 0);
	atomic_init(&g->lock.held, false);
	g->live = n;
	for (unsigned i = 0; i < n && ret == 0; i++) {
		g->m[i].g = g;
		g->m[i].index = i;
		ret = iou__mail_new(IOU_DEFAULT_MAILBOX, &g->m[i].mb);
	}
	for (unsigned i = 0; i < n && ret == 0; i++) {
		int rc = thrd_create(&g->m[i].thread, member_main, &g->m[i]);

		if (rc != thrd_success)
			ret = rc == thrd_nomem ? -ENOMEM : -EAGAIN;
		else
			g->m[i].started = true;
	}
	if (ret < 0) {
		atomic_store_explicit(&g->gate, -1, memory_order_release);
		for (unsigned i = 0; i < n; i++)
			if (g->m[i].started)
				thrd_join(g->m[i].thread, NULL);
		group_free(g);
		return ret;
	}
	/* Set before any member runs fn, which may read it through the caller's variable. */
	*out = g;
	atomic_store_explicit(&g->gate, 1, memory_order_release);
	return 0;
}

IOU_API unsigned reactor_group_size(const struct reactor_group *g)
{
	return g ? g->n : 0;
}

IOU_API struct reactor_ref *reactor_group_ref(const struct reactor_group *g, unsigned index)
{
	return g && index < g->n ? g->m[index].mb : NULL;
}

IOU_API int reactor_group_join(struct reactor_group *g, int *results)
{
	struct reactor *r = iou__self;
	thrd_t self = thrd_current();
	int ret;

	if (!g)
		return -EINVAL;
	for (unsigned i = 0; i < g->n; i++)
		if (g->m[i].started && thrd_equal(g->m[i].thread, self))
			return -EDEADLK;
	if (r) {
		struct iou__rwait rw;

		ret = iou__mail_self(r);
		if (ret < 0)
			return ret;
		iou__spin_lock(&g->lock);
		if (g->live && g->joiner) {
			iou__spin_unlock(&g->lock);
			return -EINVAL;
		}
		if (g->live) {
			if (!r->current && r->driving) {
				iou__spin_unlock(&g->lock);
				return -EAGAIN;
			}
			iou__rwait_prepare(r, &rw, g, &g->lock, unlink_joiner, NULL);
			g->joiner = &rw;
			rw.linked = rw.pending = true;
			iou__spin_unlock(&g->lock);
			ret = iou__rwait_park(r, &rw);
			iou__rwait_end(r, &rw);
			if (!rw.served)
				return ret;
		} else {
			iou__spin_unlock(&g->lock);
		}
	}
	for (unsigned i = 0; i < g->n; i++) {
		thrd_join(g->m[i].thread, NULL);
		if (results)
			results[i] = g->m[i].result;
	}
	group_free(g);
	return 0;
}
