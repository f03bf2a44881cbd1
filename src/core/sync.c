/* SPDX-License-Identifier: MIT */
/*
 * Synchronisation between the fibers of one reactor (<ioucontext/sync.h>):
 * mutex, condition variable, semaphore, wait group and bounded channel, all
 * built on one idea -- an intrusive FIFO of waiters, each a record on its
 * parked caller's stack around the struct iou__wait that every blocking call
 * of the library parks on.
 *
 * Handoff: whoever releases something (the mutex, a unit, an item, a slot)
 * takes the first waiter off the list, gives it what was released -- the
 * mutex's owner field, an item copied into its buffer -- and wakes it.  The
 * waiter owns it from then on; a fiber that comes later finds nothing free.
 *
 * Interruption: a fiber's waiter carries an abort hook, so a deadline or a
 * cancel takes it off the list at the moment it fires.  iou__interrupt()
 * ignores a waiter already woken, so one that was handed something keeps
 * it: a handoff is never lost, and an interrupted waiter never holds up the
 * ones behind it.  The thread's own context waits without an abort hook,
 * because with one iou__wait_until() would keep driving a reactor where
 * nothing can happen instead of returning -EDEADLK; an interrupt then wakes
 * it (w.why set) while it is still listed, so the release path skips such
 * waiters, and the waiter unlinks itself when its wait returns.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <ioucontext/sync.h>

#include "switch.h"

/* One parked caller of a sync call; lives on its stack. */
struct iou__waiter {
	struct iou__wait wait; /* first: the abort hook casts back */
	struct iou__waiter *prev, *next;
	struct iou_waitlist *list; /* the list it is on, NULL once taken off */
	void *buf;		   /* channel: the item to send or the place to receive */
	int res;		   /* what the waker hands over: 0 or -EPIPE */
};

/* ---- Waiter lists ----------------------------------------------------------- */

static void list_push(struct iou_waitlist *l, struct iou__waiter *w)
{
	w->list = l;
	w->next = NULL;
	w->prev = l->tail;
	if (l->tail)
		l->tail->next = w;
	else
		l->head = w;
	l->tail = w;
}

static void list_unlink(struct iou__waiter *w)
{
	struct iou_waitlist *l = w->list;

	if (w->prev)
		w->prev->next = w->next;
	else
		l->head = w->next;
	if (w->next)
		w->next->prev = w->prev;
	else
		l->tail = w->prev;
	w->prev = w->next = NULL;
	w->list = NULL;
}

/*
 * Take the first waiter that can still be served off @l, or NULL.  Skips
 * (and unlinks) interrupted waiters of the thread's own context.
 */
static struct iou__waiter *list_take(struct iou_waitlist *l)
{
	struct iou__waiter *w;

	while ((w = l->head)) {
		list_unlink(w);
		if (iou__likely(!w->wait.why))
			return w;
	}
	return NULL;
}

/* True if a waiter that can still be served is on @l (drops stale ones). */
static bool list_busy(struct iou_waitlist *l)
{
	struct iou__waiter *w;

	while ((w = l->head) && iou__unlikely(w->wait.why))
		list_unlink(w);
	return w != NULL;
}

/* Hand @w its result and wake it; it left its list in list_take(). */
static void grant(struct reactor *r, struct iou__waiter *w, int res)
{
	w->res = res;
	iou__wake(r, &w->wait);
}

/* A fiber waiter's abort hook: leave the list, then wake with w->why. */
static void waiter_abort(struct reactor *r, struct iou__wait *wait)
{
	struct iou__waiter *w = (struct iou__waiter *)wait;

	if (w->list)
		list_unlink(w);
	iou__wake(r, wait);
}

/*
 * Whether the caller may wait at all: a cancelled fiber or a deadline that
 * has passed fails at once, before anything is given up or queued.
 */
static int may_wait(struct reactor *r)
{
	struct fiber *f = r->current;
	int64_t deadline = f ? f->deadline : r->deadline;

	if (f && f->cancelled)
		return -ECANCELED;
	if (deadline != IOU_DEADLINE_NEVER && deadline <= iou_now())
		return -ETIMEDOUT;
	return 0;
}

/* Prepare @w for a wait on @l and queue it (nothing else runs before the park). */
static void waiter_queue(struct reactor *r, struct iou_waitlist *l, struct iou__waiter *w,
			 void *buf, bool hard)
{
	struct fiber *f = r->current;

	w->wait = (struct iou__wait){ .fiber = f, .hard = hard, .abort = f ? waiter_abort : NULL };
	w->buf = buf;
	w->res = 0;
	list_push(l, w);
}

/* Park until @w is served or interrupted; its result.  The general case. */
static int waiter_wait(struct reactor *r, struct iou__waiter *w)
{
	int ret = iou__wait(r, &w->wait);

	/* Only the thread's own context comes back still listed (see the top). */
	if (iou__unlikely(w->list != NULL))
		list_unlink(w);
	return ret < 0 ? ret : w->res;
}

/*
 * WAITER_PARK(r, w): waiter_wait() with its common case -- a fiber without
 * a deadline -- parked right here, so that a resumed fiber returns straight
 * to its caller instead of through frames whose returns all mispredict
 * after the stack switch (see switch.h).  Such a wait needs no timer; a
 * cancel still reaches it through f->wait.  A statement expression because
 * GCC never inlines a function that calls sigsetjmp.
 */
#define WAITER_PARK(r, w)                                                         \
	({                                                                        \
		struct reactor *wp_r_ = (r);                                      \
		struct iou__waiter *wp_w_ = (w);                                  \
		struct fiber *wp_f_ = wp_r_->current;                             \
		int wp_ret_;                                                      \
                                                                                  \
		if (iou__likely(wp_f_ && wp_f_->deadline == IOU_DEADLINE_NEVER && \
				!wp_w_->wait.hard)) {                             \
			wp_f_->wait = &wp_w_->wait;                               \
			do                                                        \
				IOU__PARK(wp_r_);                                 \
			while (!wp_w_->wait.done);                                \
			wp_f_->wait = NULL;                                       \
			wp_ret_ = wp_w_->wait.why ? wp_w_->wait.why : wp_w_->res; \
		} else {                                                          \
			wp_ret_ = waiter_wait(wp_r_, wp_w_);                      \
		}                                                                 \
		wp_ret_;                                                          \
	})

/*
 * The caller's reactor, checked against the object's: binds an unbound
 * object to it.  Returns NULL with *@err set on failure.
 */
static struct reactor *bind_slow(struct reactor **slot, int *err)
{
	struct reactor *r = iou__self;

	if (*slot) {
		*err = -EPERM;
		return NULL;
	}
	if (!r) {
		r = reactor_get();
		if (!r) {
			*err = -ENOMEM;
			return NULL;
		}
	}
	*slot = r;
	return r;
}

/* Evaluates to the reactor, or returns the error from the calling function. */
#define BIND(slot)                                                   \
	({                                                           \
		struct reactor *bind_r_ = iou__self;                 \
		if (iou__unlikely(*(slot) != bind_r_ || !bind_r_)) { \
			int bind_err_ = 0;                           \
			bind_r_ = bind_slow((slot), &bind_err_);     \
			if (!bind_r_)                                \
				return bind_err_;                    \
		}                                                    \
		bind_r_;                                             \
	})

/* Who the caller is, as a mutex owner: its fiber, or the reactor itself. */
static inline const void *me(const struct reactor *r)
{
	return r->current ? (const void *)r->current : (const void *)r;
}

/* ---- Mutex ------------------------------------------------------------------ */

IOU_API int iou_mutex_init(struct iou_mutex *m)
{
	if (!m)
		return -EINVAL;
	*m = (struct iou_mutex)IOU_MUTEX_INIT;
	return 0;
}

IOU_API int iou_mutex_destroy(struct iou_mutex *m)
{
	if (!m)
		return -EINVAL;
	if (m->owner || list_busy(&m->waiters))
		return -EBUSY;
	*m = (struct iou_mutex)IOU_MUTEX_INIT;
	return 0;
}

/* Wait for @m's handoff, ignoring deadline and cancellation. */
static int mutex_wait_hard(struct reactor *r, struct iou_mutex *m)
{
	struct iou__waiter w;

	waiter_queue(r, &m->waiters, &w, NULL, true);
	return waiter_wait(r, &w);
}

IOU_API int iou_mutex_lock(struct iou_mutex *m)
{
	struct iou__waiter w;
	struct reactor *r;
	const void *self;
	int ret;

	if (iou__unlikely(!m))
		return -EINVAL;
	r = BIND(&m->r);
	self = me(r);
	if (iou__likely(!m->owner)) {
		m->owner = self;
		return 0;
	}
	if (m->owner == self)
		return -EDEADLK;
	ret = may_wait(r);
	if (ret < 0)
		return ret;
	/* Served means handed: unlock() made us the owner before waking us. */
	waiter_queue(r, &m->waiters, &w, NULL, false);
	return WAITER_PARK(r, &w);
}

IOU_API int iou_mutex_trylock(struct iou_mutex *m)
{
	struct reactor *r;

	if (iou__unlikely(!m))
		return -EINVAL;
	r = BIND(&m->r);
	if (m->owner)
		return -EBUSY;
	m->owner = me(r);
	return 0;
}

/* Release @m held by the caller: hand it on or free it. */
static void mutex_release(struct reactor *r, struct iou_mutex *m)
{
	struct iou__waiter *w = list_take(&m->waiters);

	if (iou__likely(!w)) {
		m->owner = NULL;
		return;
	}
	m->owner = w->wait.fiber ? (const void *)w->wait.fiber : (const void *)r;
	grant(r, w, 0);
}

IOU_API int iou_mutex_unlock(struct iou_mutex *m)
{
	struct reactor *r;

	if (iou__unlikely(!m))
		return -EINVAL;
	r = BIND(&m->r);
	if (iou__unlikely(m->owner != me(r)))
		return -EPERM;
	mutex_release(r, m);
	return 0;
}

/* ---- Condition variable ----------------------------------------------------- */

IOU_API int iou_cond_init(struct iou_cond *c)
{
	if (!c)
		return -EINVAL;
	*c = (struct iou_cond)IOU_COND_INIT;
	return 0;
}

IOU_API int iou_cond_destroy(struct iou_cond *c)
{
	if (!c)
		return -EINVAL;
	if (list_busy(&c->waiters))
		return -EBUSY;
	*c = (struct iou_cond)IOU_COND_INIT;
	return 0;
}

IOU_API int iou_cond_wait(struct iou_cond *c, struct iou_mutex *m)
{
	struct iou__waiter w;
	struct reactor *r;
	int ret, relock;

	if (!c || !m)
		return -EINVAL;
	r = BIND(&c->r);
	if (m->r != r || m->owner != me(r))
		return -EPERM;
	ret = may_wait(r);
	if (ret < 0)
		return ret;
	/* Queue first, then release: no signal can fall between the two. */
	waiter_queue(r, &c->waiters, &w, NULL, false);
	mutex_release(r, m);
	ret = WAITER_PARK(r, &w);
	/*
	 * Whatever ended the wait, the caller gets the mutex back, queueing
	 * FIFO behind the lockers already waiting; that wait is not
	 * interruptible, or the caller could not know whether it holds @m.
	 */
	if (iou__likely(!m->owner)) {
		m->owner = me(r);
		return ret;
	}
	relock = mutex_wait_hard(r, m);
	/* Only the thread's own context can fail here (-EDEADLK, io_uring_enter). */
	return relock < 0 ? -ENOLCK : ret;
}

IOU_API int iou_cond_signal(struct iou_cond *c)
{
	struct iou__waiter *w;
	struct reactor *r;

	if (!c)
		return -EINVAL;
	r = BIND(&c->r);
	w = list_take(&c->waiters);
	if (!w)
		return 0;
	grant(r, w, 0);
	return 1;
}

IOU_API int iou_cond_broadcast(struct iou_cond *c)
{
	struct iou__waiter *w;
	struct reactor *r;
	int n = 0;

	if (!c)
		return -EINVAL;
	r = BIND(&c->r);
	while ((w = list_take(&c->waiters))) {
		grant(r, w, 0);
		if (n < INT_MAX)
			n++;
	}
	return n;
}

/* ---- Semaphore -------------------------------------------------------------- */

IOU_API int iou_sem_init(struct iou_sem *s, unsigned value)
{
	if (!s)
		return -EINVAL;
	*s = (struct iou_sem)IOU_SEM_INIT(value);
	return 0;
}

IOU_API int iou_sem_destroy(struct iou_sem *s)
{
	if (!s)
		return -EINVAL;
	if (list_busy(&s->waiters))
		return -EBUSY;
	*s = (struct iou_sem)IOU_SEM_INIT(0);
	return 0;
}

IOU_API int iou_sem_acquire(struct iou_sem *s)
{
	struct iou__waiter w;
	struct reactor *r;
	int ret;

	if (iou__unlikely(!s))
		return -EINVAL;
	r = BIND(&s->r);
	/* value > 0 implies nobody waits: release() hands units to waiters first. */
	if (iou__likely(s->value > 0)) {
		s->value--;
		return 0;
	}
	ret = may_wait(r);
	if (ret < 0)
		return ret;
	waiter_queue(r, &s->waiters, &w, NULL, false);
	return WAITER_PARK(r, &w);
}

IOU_API int iou_sem_tryacquire(struct iou_sem *s)
{
	if (iou__unlikely(!s))
		return -EINVAL;
	(void)BIND(&s->r);
	if (s->value == 0)
		return -EAGAIN;
	s->value--;
	return 0;
}

IOU_API int iou_sem_release(struct iou_sem *s)
{
	struct iou__waiter *w;
	struct reactor *r;

	if (iou__unlikely(!s))
		return -EINVAL;
	r = BIND(&s->r);
	w = list_take(&s->waiters);
	if (w) {
		grant(r, w, 0);
		return 0;
	}
	if (s->value == UINT_MAX)
		return -EOVERFLOW;
	s->value++;
	return 0;
}

IOU_API int64_t iou_sem_value(struct iou_sem *s)
{
	if (!s)
		return -EINVAL;
	(void)BIND(&s->r);
	return s->value;
}

/* ---- Wait group ------------------------------------------------------------- */

IOU_API int iou_waitgroup_init(struct iou_waitgroup *wg)
{
	if (!wg)
		return -EINVAL;
	*wg = (struct iou_waitgroup)IOU_WAITGROUP_INIT;
	return 0;
}

IOU_API int iou_waitgroup_destroy(struct iou_waitgroup *wg)
{
	if (!wg)
		return -EINVAL;
	if (list_busy(&wg->waiters))
		return -EBUSY;
	*wg = (struct iou_waitgroup)IOU_WAITGROUP_INIT;
	return 0;
}

IOU_API int64_t iou_waitgroup_add(struct iou_waitgroup *wg, int64_t n)
{
	struct iou__waiter *w;
	struct reactor *r;

	if (!wg)
		return -EINVAL;
	r = BIND(&wg->r);
	/* count >= 0, so count + n cannot overflow when n < 0. */
	if (n < 0 ? wg->count + n < 0 : wg->count > INT64_MAX - n)
		return n < 0 ? -EINVAL : -EOVERFLOW;
	wg->count += n;
	if (wg->count == 0)
		while ((w = list_take(&wg->waiters)))
			grant(r, w, 0);
	return wg->count;
}

IOU_API int64_t iou_waitgroup_done(struct iou_waitgroup *wg)
{
	return iou_waitgroup_add(wg, -1);
}

IOU_API int iou_waitgroup_wait(struct iou_waitgroup *wg)
{
	struct iou__waiter w;
	struct reactor *r;
	int ret;

	if (!wg)
		return -EINVAL;
	r = BIND(&wg->r);
	if (wg->count == 0)
		return 0;
	ret = may_wait(r);
	if (ret < 0)
		return ret;
	waiter_queue(r, &wg->waiters, &w, NULL, false);
	return WAITER_PARK(r, &w);
}

/* ---- Channel ---------------------------------------------------------------- */

IOU_API int iou_chan_init(struct iou_chan *ch, size_t item_size, size_t capacity)
{
	unsigned char *buf = NULL;

	if (!ch || item_size == 0 || (capacity && item_size > SIZE_MAX / capacity))
		return -EINVAL;
	if (capacity) {
		buf = malloc(item_size * capacity);
		if (!buf)
			return -ENOMEM;
	}
	*ch = (struct iou_chan){ .buf = buf, .item_size = item_size, .capacity = capacity };
	return 0;
}

IOU_API int iou_chan_destroy(struct iou_chan *ch)
{
	if (!ch)
		return -EINVAL;
	if (list_busy(&ch->senders) || list_busy(&ch->receivers))
		return -EBUSY;
	free(ch->buf);
	*ch = (struct iou_chan){ .buf = NULL };
	return 0;
}

static inline unsigned char *slot(const struct iou_chan *ch, size_t i)
{
	i += ch->head;
	if (i >= ch->capacity)
		i -= ch->capacity;
	return ch->buf + i * ch->item_size;
}

/*
 * Send without waiting: straight to a waiting receiver, else into the ring.
 * Return 0, -EAGAIN (would wait) or -EPIPE.
 */
static int chan_put(struct reactor *r, struct iou_chan *ch, const void *item)
{
	struct iou__waiter *w;

	if (iou__unlikely(ch->closed))
		return -EPIPE;
	/* Receivers wait only on an empty ring. */
	if ((w = list_take(&ch->receivers))) {
		memcpy(w->buf, item, ch->item_size);
		grant(r, w, 0);
		return 0;
	}
	if (ch->len == ch->capacity)
		return -EAGAIN;
	memcpy(slot(ch, ch->len), item, ch->item_size);
	ch->len++;
	return 0;
}

/*
 * Receive without waiting: the oldest item of the ring (refilled from the
 * first waiting sender), or on a rendezvous channel straight from a sender.
 * Return 0, -EAGAIN (would wait) or -EPIPE (closed and drained).
 */
static int chan_get(struct reactor *r, struct iou_chan *ch, void *item)
{
	struct iou__waiter *w;

	if (ch->len) {
		memcpy(item, slot(ch, 0), ch->item_size);
		ch->head = ch->head + 1 == ch->capacity ? 0 : ch->head + 1;
		ch->len--;
		/* Senders wait only on a full ring: the first one takes the free slot. */
		if ((w = list_take(&ch->senders))) {
			memcpy(slot(ch, ch->len), w->buf, ch->item_size);
			ch->len++;
			grant(r, w, 0);
		}
		return 0;
	}
	if ((w = list_take(&ch->senders))) {
		memcpy(item, w->buf, ch->item_size);
		grant(r, w, 0);
		return 0;
	}
	return ch->closed ? -EPIPE : -EAGAIN;
}

IOU_API int iou_chan_send(struct iou_chan *ch, const void *item)
{
	struct iou__waiter w;
	struct reactor *r;
	int ret;

	if (iou__unlikely(!ch || !item))
		return -EINVAL;
	r = BIND(&ch->r);
	ret = chan_put(r, ch, item);
	if (iou__likely(ret != -EAGAIN))
		return ret;
	ret = may_wait(r);
	if (ret < 0)
		return ret;
	/* The receiver that frees a slot copies the item from our stack. */
	waiter_queue(r, &ch->senders, &w, (void *)(uintptr_t)item, false);
	return WAITER_PARK(r, &w);
}

IOU_API int iou_chan_trysend(struct iou_chan *ch, const void *item)
{
	struct reactor *r;

	if (iou__unlikely(!ch || !item))
		return -EINVAL;
	r = BIND(&ch->r);
	return chan_put(r, ch, item);
}

IOU_API int iou_chan_recv(struct iou_chan *ch, void *item)
{
	struct iou__waiter w;
	struct reactor *r;
	int ret;

	if (iou__unlikely(!ch || !item))
		return -EINVAL;
	r = BIND(&ch->r);
	ret = chan_get(r, ch, item);
	if (iou__likely(ret != -EAGAIN))
		return ret;
	ret = may_wait(r);
	if (ret < 0)
		return ret;
	/* The sender copies its item straight into @item. */
	waiter_queue(r, &ch->receivers, &w, item, false);
	return WAITER_PARK(r, &w);
}

IOU_API int iou_chan_tryrecv(struct iou_chan *ch, void *item)
{
	struct reactor *r;

	if (iou__unlikely(!ch || !item))
		return -EINVAL;
	r = BIND(&ch->r);
	return chan_get(r, ch, item);
}

IOU_API int iou_chan_close(struct iou_chan *ch)
{
	struct iou__waiter *w;
	struct reactor *r;

	if (!ch)
		return -EINVAL;
	r = BIND(&ch->r);
	if (ch->closed)
		return -EPIPE;
	ch->closed = true;
	while ((w = list_take(&ch->senders)))
		grant(r, w, -EPIPE);
	while ((w = list_take(&ch->receivers)))
		grant(r, w, -EPIPE);
	return 0;
}

IOU_API int64_t iou_chan_len(struct iou_chan *ch)
{
	if (!ch)
		return -EINVAL;
	(void)BIND(&ch->r);
	return (int64_t)ch->len;
}
