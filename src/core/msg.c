/* SPDX-License-Identifier: MIT */
/*
 * Messaging between reactors: the mailbox each reactor empties, posting to
 * it, the doorbell that wakes a sleeping owner, the wake queue through which
 * other threads hand back callers parked on cross-reactor objects, and what
 * a mailbox does when its reactor goes.
 *
 * Mailbox.  A bounded multi-producer, single-consumer ring of calls.
 * Senders claim a position with one compare-and-swap on the tail, write the
 * call into its slot and publish it by storing position + 1 in the slot's
 * sequence number; no lock, no system call.  The owner takes published
 * calls in position order, a batch at a time, and frees the batch's slots
 * by storing its head once; senders keep a recent copy of the head and read
 * the real one only when the copy says the ring may be full.  So the slot
 * lines only ever travel from senders to the owner.  Senders from one
 * thread claim positions in program order, so their calls run in the order
 * posted.
 *
 * Doorbell.  The owner announces that it is about to block (`sleeping`,
 * then a last look at the queue); a sender that publishes and then finds
 * the announcement takes it (exchange to 0) and rings: an IORING_OP_MSG_RING
 * from its own ring to a dup of the owner's ring fd, whose CQE
 * (IOU__UDATA_MAIL) ends the owner's io_uring_enter; or, without MSG_RING,
 * a write to an eventfd on which the owner keeps a read armed.  The store
 * and load on each side are sequentially consistent, so one side always
 * sees the other: no lost wake-up, and at most one doorbell per sleep.  The
 * doorbell we send is a counted request whose user_data is the target
 * mailbox tagged IOU__UDATA_BELL; it holds a reference on the mailbox until
 * its completion is reaped (and is sent again if the kernel failed it for
 * want of memory).
 *
 * Remote waits (struct iou__rwait, core.h).  A caller parked on an object
 * of another thread is completed by that thread under the object's lock:
 * it is pushed on the waiter's mailbox's wake queue (an intrusive LIFO,
 * reversed when taken), and the doorbell is rung if the owner sleeps.  The
 * owner wakes it on its next poll.  Each such wait is registered as a
 * teardown hook on its reactor, so that a reactor torn down takes its
 * parked callers off other threads' objects before their stacks go.
 *
 * Back-pressure.  A full mailbox makes reactor_post() wait: the first of a
 * reactor's senders waiting for that mailbox links itself on the mailbox's
 * "want" list and tries once more; the owner, whenever it has freed slots
 * and finds the list non-empty, wakes every sender on it through their own
 * wake queues (a message back, not polling); the others wait in their
 * reactor's FIFO behind the first.  The owner frees a batch's slots before
 * it runs the batch, so senders refill while it works.
 *
 * Teardown.  Hooks first (remote waits unlinked, remote fibers reported);
 * then the mailbox closes: the closed bit in the tail makes every later
 * claim fail with -ESHUTDOWN, the calls already queued run their callbacks
 * with -ESHUTDOWN, and senders waiting for room are woken to learn it.  The
 * doorbells we still owe are sent and settled before the ring is drained.
 * The mailbox itself lives on while handles refer to it.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "core.h"

#define rwait_of(w) ((struct iou__rwait *)((char *)(w) - offsetof(struct iou__rwait, wait)))
#define rwait_of_hook(h) ((struct iou__rwait *)((char *)(h) - offsetof(struct iou__rwait, hook)))

#define MIN_SLOTS 2u
#define MAX_SLOTS 65536u

/* A reactor_post() caller waiting for room in a full mailbox. */
struct iou__psend {
	struct iou__rwait rw;	   /* on the target's want list while first in line */
	struct reactor_ref *to;	   /* the target */
	struct iou__psend *prev, *next; /* r->sendq */
};

/* ---- hooks ------------------------------------------------------------------ */

void iou__hook_add(struct reactor *r, struct iou__hook *h)
{
	h->prev = NULL;
	h->next = r->hooks;
	if (r->hooks)
		r->hooks->prev = h;
	r->hooks = h;
}

void iou__hook_del(struct reactor *r, struct iou__hook *h)
{
	if (h->prev)
		h->prev->next = h->next;
	else
		r->hooks = h->next;
	if (h->next)
		h->next->prev = h->prev;
	h->prev = h->next = NULL;
}

/* ---- mailboxes ---------------------------------------------------------------- */

int iou__mail_new(unsigned slots, struct reactor_ref **out)
{
	struct reactor_ref *mb;
	size_t head = (sizeof(*mb) + 63) & ~(size_t)63;
	size_t calls = (size_t)slots * sizeof(mb->slots[0]);
	size_t size = (head + calls + (size_t)slots * sizeof(mb->seq[0]) + 63) & ~(size_t)63;

	mb = aligned_alloc(64, size);
	if (!mb)
		return -ENOMEM;
	memset(mb, 0, size);
	atomic_init(&mb->refs, 1);
	mb->ring_fd = -1;
	mb->efd = -1;
	mb->mask = slots - 1;
	mb->slots = (struct iou__mslot *)((char *)mb + head);
	mb->seq = (_Atomic uint32_t *)((char *)mb + head + calls);
	atomic_init(&mb->tail, 0);
	atomic_init(&mb->head_seen, 0);
	atomic_init(&mb->sleeping, 0);
	atomic_init(&mb->wakeq, NULL);
	atomic_init(&mb->head, 0);
	atomic_init(&mb->nwant, 0);
	atomic_init(&mb->want_lock.held, false);
	/* seq[i] == 0 never matches position i + 1 of the first lap. */
	for (unsigned i = 0; i < slots; i++)
		atomic_init(&mb->seq[i], 0);
	*out = mb;
	return 0;
}

/* The kernel may write an eventfd read here even after a reactor is gone. */
static uint64_t efd_sink;

/* Fallback: keep a read armed on the mailbox's eventfd. */
static void arm(struct reactor *r)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&r->ring);

	if (!sqe)
		return; /* r->rearm stays set: the next poll tries again */
	io_uring_prep_read(sqe, r->mbox->efd, &efd_sink, sizeof(efd_sink), 0);
	io_uring_sqe_set_data64(sqe, IOU__UDATA_MAIL);
	r->rearm = false;
}

/*
 * Make @mb @r's mailbox (on @r's thread): choose the doorbell, and take a
 * reference for the reactor.
 */
int iou__mail_bind(struct reactor *r, struct reactor_ref *mb)
{
	int fd;

	if (r->mbox)
		return -EEXIST;
	if (iou__has_op(r, IORING_OP_MSG_RING)) {
		/* Our own reference to the ring: senders never hit a reused number. */
		fd = fcntl(r->ring.ring_fd, F_DUPFD_CLOEXEC, 3);
		if (fd < 0)
			return -errno;
		mb->ring_fd = fd;
	} else {
		fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (fd < 0)
			return -errno;
		mb->efd = fd;
		r->rearm = true;
	}
	atomic_fetch_add_explicit(&mb->refs, 1, memory_order_relaxed);
	r->mbox = mb;
	if (r->rearm)
		arm(r);
	return 0;
}

static int mail_create(struct reactor *r, unsigned slots)
{
	struct reactor_ref *mb;
	int ret = iou__mail_new(slots, &mb);

	if (ret < 0)
		return ret;
	ret = iou__mail_bind(r, mb);
	iou__mail_put(mb);
	return ret;
}

/* Give @r a mailbox if it has none (to receive, or to be woken). */
int iou__mail_self(struct reactor *r)
{
	return iou__likely(r->mbox != NULL) ? 0 : mail_create(r, IOU_DEFAULT_MAILBOX);
}

void iou__mail_put(struct reactor_ref *mb)
{
	if (!mb || atomic_fetch_sub_explicit(&mb->refs, 1, memory_order_acq_rel) != 1)
		return;
	/* Never bound (a group member that failed early): hand back what it holds. */
	if (!(atomic_load_explicit(&mb->tail, memory_order_relaxed) & IOU__MAIL_CLOSED))
		iou__mail_close(NULL, mb);
	if (mb->ring_fd >= 0)
		close(mb->ring_fd);
	if (mb->efd >= 0)
		close(mb->efd);
	free(mb);
}

/* ---- doorbells ------------------------------------------------------------------ */

static void efd_ring(int fd)
{
	uint64_t one = 1;

	while (write(fd, &one, sizeof(one)) < 0 && errno == EINTR)
		;
}

/*
 * Doorbells rung from a thread without a usable ring (a group member whose
 * reactor could not be created, a reactor being torn down): one ring for
 * the whole process, under a lock, completions skipped on success.
 */
static once_flag anon_once = ONCE_FLAG_INIT;
static struct io_uring anon_ring;
static bool anon_ok;
static iou__spin anon_lock;

static void anon_init(void)
{
	anon_ok = io_uring_queue_init(8, &anon_ring, 0) == 0;
}

static void anon_bell(struct reactor_ref *mb)
{
	struct io_uring_sqe *sqe;
	struct io_uring_cqe *cqe;
	unsigned head, n = 0;

	call_once(&anon_once, anon_init);
	if (!anon_ok)
		return;
	iou__spin_lock(&anon_lock);
	sqe = io_uring_get_sqe(&anon_ring);
	if (sqe) {
		io_uring_prep_msg_ring(sqe, mb->ring_fd, 0, IOU__UDATA_MAIL, 0);
		sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
		io_uring_sqe_set_data64(sqe, 0);
		io_uring_submit(&anon_ring);
	}
	/* Only failures post completions; nobody is left to retry them. */
	io_uring_for_each_cqe(&anon_ring, head, cqe) n++;
	io_uring_cq_advance(&anon_ring, n);
	iou__spin_unlock(&anon_lock);
}

static void prep_bell(struct reactor *r, struct io_uring_sqe *sqe, struct reactor_ref *mb)
{
	io_uring_prep_msg_ring(sqe, mb->ring_fd, 0, IOU__UDATA_MAIL, 0);
	io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)mb | IOU__UDATA_BELL);
	r->inflight++;
	r->bells_out++;
}

/* Remember a doorbell (and its reference) for when an SQE frees. */
static void owe(struct reactor *r, struct reactor_ref *mb)
{
	if (r->nowed == r->owed_cap) {
		unsigned cap = r->owed_cap ? r->owed_cap * 2 : 16;
		struct reactor_ref **v = realloc(r->owed, cap * sizeof(*v));

		if (!v) {
			anon_bell(mb);
			iou__mail_put(mb);
			return;
		}
		r->owed = v;
		r->owed_cap = cap;
	}
	r->owed[r->nowed++] = mb;
}

/* Move owed doorbells into free SQEs, in order. */
int iou__mail_flush(struct reactor *r)
{
	unsigned i = 0;

	if (!r->nowed)
		return 0;
	while (i < r->nowed) {
		struct io_uring_sqe *sqe = io_uring_get_sqe(&r->ring);

		if (!sqe)
			break;
		prep_bell(r, sqe, r->owed[i++]);
	}
	memmove(r->owed, r->owed + i, (r->nowed - i) * sizeof(r->owed[0]));
	r->nowed -= i;
	return 0;
}

/*
 * Wake the owner of @mb, which announced it sleeps, from @r (the calling
 * thread's reactor, or NULL).
 */
static void bell(struct reactor *r, struct reactor_ref *mb)
{
	struct io_uring_sqe *sqe;

	if (mb->efd >= 0) {
		efd_ring(mb->efd);
		return;
	}
	if (mb->ring_fd < 0)
		return; /* not bound yet: its owner looks before it first sleeps */
	if (!r || r->closing) {
		anon_bell(mb);
		return;
	}
	atomic_fetch_add_explicit(&mb->refs, 1, memory_order_relaxed);
	sqe = r->nowed ? NULL : io_uring_get_sqe(&r->ring);
	if (sqe)
		prep_bell(r, sqe, mb);
	else
		owe(r, mb);
	if (!r->current && !r->driving) {
		/* The thread's own context outside the driver: nobody submits for us. */
		for (unsigned tries = 0; tries < 64; tries++) {
			io_uring_submit(&r->ring);
			if (!r->nowed)
				break;
			iou__mail_flush(r);
		}
	}
}

/* Did the owner announce it sleeps?  Then we (and only we) must ring. */
static bool take_sleeper(struct reactor_ref *mb)
{
	return atomic_load_explicit(&mb->sleeping, memory_order_seq_cst) &&
	       atomic_exchange_explicit(&mb->sleeping, 0, memory_order_seq_cst);
}

/* The completion of an IOU__UDATA_MAIL or IOU__UDATA_BELL request on @r's ring. */
void iou__mail_cqe(struct reactor *r, const struct io_uring_cqe *cqe)
{
	struct reactor_ref *mb;
	int res = cqe->res;

	if (cqe->user_data == IOU__UDATA_MAIL) {
		/* A doorbell arrived; in the fallback, our eventfd read completed. */
		if (r->mbox && r->mbox->efd >= 0 && !r->closing)
			r->rearm = true;
		return;
	}
	mb = (struct reactor_ref *)(uintptr_t)(cqe->user_data & ~IOU__UDATA_TAGS);
	r->inflight--;
	r->bells_out--;
	if ((res == -ENOMEM || res == -EAGAIN || res == -EOVERFLOW || res == -EINTR) && !r->closing &&
	    !(atomic_load_explicit(&mb->tail, memory_order_relaxed) & IOU__MAIL_CLOSED)) {
		owe(r, mb); /* keeps the reference */
		return;
	}
	/* Other failures mean the target's thread or ring is gone. */
	iou__mail_put(mb);
}

/* ---- the owner's side ------------------------------------------------------------- */

/* Is the call at position @pos published? */
static bool published(const struct reactor_ref *mb, uint64_t pos, memory_order mo)
{
	return atomic_load_explicit(&mb->seq[pos & mb->mask], mo) == (uint32_t)(pos + 1);
}

static bool has_mail(const struct reactor_ref *mb)
{
	return atomic_load_explicit(&mb->wakeq, memory_order_seq_cst) != NULL ||
	       published(mb, mb->next, memory_order_seq_cst);
}

/*
 * About to block in the kernel: announce it, unless mail is waiting (then
 * return false: do not block).
 */
bool iou__mail_sleep(struct reactor *r)
{
	struct reactor_ref *mb = r->mbox;

	if (r->rearm) {
		arm(r);
		if (r->rearm)
			return false;
	}
	atomic_store_explicit(&mb->sleeping, 1, memory_order_seq_cst);
	if (has_mail(mb)) {
		atomic_store_explicit(&mb->sleeping, 0, memory_order_relaxed);
		return false;
	}
	return true;
}

void iou__mail_awake(struct reactor *r)
{
	atomic_store_explicit(&r->mbox->sleeping, 0, memory_order_relaxed);
}

/* Can anything but our own ring wake us: a handle, or a remote wait? */
bool iou__mail_reachable(const struct reactor *r)
{
	const struct reactor_ref *mb = r->mbox;

	return mb && (r->rwaits > 0 || atomic_load_explicit(&mb->refs, memory_order_relaxed) > 1 ||
		      atomic_load_explicit(&mb->wakeq, memory_order_relaxed) != NULL);
}

/* Take @rw (a blocked sender) off @mb's want list; want_lock held. */
static void want_unlink(struct iou__rwait *rw)
{
	struct reactor_ref *mb = rw->obj;

	if (rw->prev)
		rw->prev->next = rw->next;
	else
		mb->want_head = rw->next;
	if (rw->next)
		rw->next->prev = rw->prev;
	else
		mb->want_tail = rw->prev;
	rw->prev = rw->next = NULL;
	if (!mb->want_head)
		atomic_store_explicit(&mb->nwant, 0, memory_order_relaxed);
}

/* Wake every sender waiting for room in @mb with @res. */
static void want_wake(struct reactor *r, struct reactor_ref *mb, int res)
{
	struct iou__rwait *rw;

	iou__spin_lock(&mb->want_lock);
	while ((rw = mb->want_head)) {
		want_unlink(rw);
		rw->linked = false;
		iou__rwake(r, rw, res);
	}
	iou__spin_unlock(&mb->want_lock);
}

/* Wake the remote waits other threads completed for us, oldest first. */
static void take_wakes(struct reactor *r, struct reactor_ref *mb)
{
	struct iou__rwait *l = atomic_exchange_explicit(&mb->wakeq, NULL, memory_order_acquire);
	struct iou__rwait *rev = NULL, *n;

	while (l) {
		n = l->wnext;
		l->wnext = rev;
		rev = l;
		l = n;
	}
	while (rev) {
		n = rev->wnext;
		rev->pending = false;
		iou__wake(r, &rev->wait);
		rev = n;
	}
}

/* Calls taken from the mailbox at a time, before any of them runs. */
#define BATCH 64

/*
 * Deliver what arrived: remote wakes, then up to one mailbox-full of calls
 * (so that a flood cannot starve the fibers).  Calls are taken a batch at a
 * time and their slots freed, and blocked senders told there is room,
 * before the batch runs: senders refill while we work.
 */
void iou__mail_poll(struct reactor *r)
{
	struct reactor_ref *mb = r->mbox;
	struct iou__mslot batch[BATCH];
	unsigned total = 0;

	if (atomic_load_explicit(&mb->wakeq, memory_order_relaxed))
		take_wakes(r, mb);
	while (total <= mb->mask) {
		uint64_t pos = mb->next;
		unsigned k = 0;

		while (k < BATCH && total + k <= mb->mask && published(mb, pos, memory_order_acquire)) {
			batch[k].fn = mb->slots[pos & mb->mask].fn;
			batch[k].arg = mb->slots[pos & mb->mask].arg;
			pos++;
			k++;
		}
		if (!k)
			break;
		/* Copied out: free the slots, then tell blocked senders. */
		mb->next = pos;
		atomic_store_explicit(&mb->head, pos, memory_order_seq_cst);
		if (atomic_load_explicit(&mb->nwant, memory_order_seq_cst))
			want_wake(r, mb, 0);
		for (unsigned i = 0; i < k; i++)
			batch[i].fn(r, batch[i].arg, 0);
		total += k;
	}
	if (r->rearm && !r->closing)
		arm(r);
}

/* ---- remote waits -------------------------------------------------------------------- */

/* Deadline or cancel: leave the object, unless a wake is already on its way. */
static void rwait_abort(struct reactor *r, struct iou__wait *w)
{
	struct iou__rwait *rw = rwait_of(w);

	if (rw->pending) {
		iou__spin_lock(rw->lock);
		if (rw->linked) {
			rw->unlink(rw);
			rw->linked = false;
			rw->pending = false;
		}
		iou__spin_unlock(rw->lock);
	}
	if (!rw->pending)
		iou__wake(r, w);
}

/* Teardown: the waiter's stack is going; take it off the object. */
static void rwait_teardown(struct reactor *r, struct iou__hook *h)
{
	struct iou__rwait *rw = rwait_of_hook(h);

	if (rw->pending) {
		iou__spin_lock(rw->lock);
		if (rw->linked) {
			rw->unlink(rw);
			rw->linked = false;
		}
		iou__spin_unlock(rw->lock);
	}
	r->rwaits--;
}

/*
 * Set up @rw for @r's caller to wait on @obj, protected by @lock.  The
 * caller then links it (under @lock: rw->linked = rw->pending = true),
 * parks with iou__rwait_park() and always ends with iou__rwait_end().
 */
int iou__rwait_prepare(struct reactor *r, struct iou__rwait *rw, void *obj, iou__spin *lock,
		       iou__unlink_fn *unlink, void *data)
{
	int ret = iou__mail_self(r);

	if (ret < 0)
		return ret;
	*rw = (struct iou__rwait){
		.wait = { .abort = rwait_abort },
		.hook = { .fn = rwait_teardown },
		.mb = r->mbox,
		.lock = lock,
		.unlink = unlink,
		.obj = obj,
		.data = data,
	};
	iou__hook_add(r, &rw->hook);
	r->rwaits++;
	return 0;
}

/* Park until served, or the deadline or a cancel ends the wait. */
int iou__rwait_park(struct reactor *r, struct iou__rwait *rw)
{
	rw->wait.done = false;
	return iou__wait(r, &rw->wait);
}

/*
 * The wait is over: make sure no other thread holds @rw any more (unlink
 * it, or wait out a wake already on its way), then unregister it.
 */
void iou__rwait_end(struct reactor *r, struct iou__rwait *rw)
{
	if (rw->pending) {
		iou__spin_lock(rw->lock);
		if (rw->linked) {
			rw->unlink(rw);
			rw->linked = false;
			rw->pending = false;
		}
		iou__spin_unlock(rw->lock);
	}
	if (rw->pending) {
		/* Already pushed to our wake queue: it arrives at our next poll. */
		rw->wait.hard = true;
		rw->wait.done = false;
		while (rw->pending)
			iou__wait(r, &rw->wait);
	}
	iou__hook_del(r, &rw->hook);
	r->rwaits--;
}

/*
 * Complete @rw with @res, from @r (the calling thread's reactor, or NULL).
 * Call with *rw->lock held, @rw already unlinked: from here on it belongs
 * to its waiter's reactor.
 */
void iou__rwake(struct reactor *r, struct iou__rwait *rw, int res)
{
	struct reactor_ref *mb = rw->mb;
	struct iou__rwait *old;

	rw->res = res;
	rw->served = true;
	if (r && mb == r->mbox) {
		/* Same thread: no need to go through the queue. */
		rw->pending = false;
		iou__wake(r, &rw->wait);
		return;
	}
	old = atomic_load_explicit(&mb->wakeq, memory_order_relaxed);
	do
		rw->wnext = old;
	while (!atomic_compare_exchange_weak_explicit(&mb->wakeq, &old, rw, memory_order_seq_cst,
						      memory_order_relaxed));
	if (take_sleeper(mb))
		bell(r, mb);
}

/* ---- posting ---------------------------------------------------------------------------- */

/*
 * Claim a slot of @mb and publish the call in it.  A sender reads the
 * owner's head (one line the owner writes once per batch) only when the
 * copy it last saw says the ring might be full, and never reads what the
 * owner wrote in the slots: the slot lines only travel from senders to the
 * owner.  Return: 1 if queued and the owner must be woken; 0 if queued;
 * -EAGAIN if full; -ESHUTDOWN if the mailbox is closed.
 */
static int push(struct reactor_ref *mb, reactor_call_fn *fn, void *arg)
{
	uint64_t pos = atomic_load_explicit(&mb->tail, memory_order_relaxed);

	for (;;) {
		if (pos & IOU__MAIL_CLOSED)
			return -ESHUTDOWN;
		if (pos - atomic_load_explicit(&mb->head_seen, memory_order_acquire) > mb->mask) {
			uint64_t head = atomic_load_explicit(&mb->head, memory_order_seq_cst);

			atomic_store_explicit(&mb->head_seen, head, memory_order_release);
			if (pos - head > mb->mask)
				return -EAGAIN;
		}
		if (atomic_compare_exchange_weak_explicit(&mb->tail, &pos, pos + 1, memory_order_relaxed,
							  memory_order_relaxed))
			break;
	}
	mb->slots[pos & mb->mask].fn = fn;
	mb->slots[pos & mb->mask].arg = arg;
	atomic_store_explicit(&mb->seq[pos & mb->mask], (uint32_t)(pos + 1), memory_order_seq_cst);
	return take_sleeper(mb) ? 1 : 0;
}

/* Ring after a successful push if it asked for it; the push's result. */
static int rang(struct reactor *r, struct reactor_ref *mb, int ret)
{
	if (ret == 1) {
		bell(r, mb);
		ret = 0;
	}
	return ret;
}

static struct iou__psend *queued_for(const struct reactor *r, const struct reactor_ref *to,
				     const struct iou__psend *after)
{
	struct iou__psend *p = after ? after->next : r->sendq_head;

	for (; p; p = p->next)
		if (p->to == to)
			return p;
	return NULL;
}

/* Link @s on its target's want list; -ESHUTDOWN if the target closed. */
static int want(struct iou__psend *s)
{
	struct reactor_ref *mb = s->to;
	struct iou__rwait *rw = &s->rw;

	iou__spin_lock(&mb->want_lock);
	if (atomic_load_explicit(&mb->tail, memory_order_relaxed) & IOU__MAIL_CLOSED) {
		iou__spin_unlock(&mb->want_lock);
		return -ESHUTDOWN;
	}
	rw->next = NULL;
	rw->prev = mb->want_tail;
	if (mb->want_tail)
		mb->want_tail->next = rw;
	else
		mb->want_head = rw;
	mb->want_tail = rw;
	rw->linked = rw->pending = true;
	atomic_store_explicit(&mb->nwant, 1, memory_order_seq_cst);
	iou__spin_unlock(&mb->want_lock);
	return 0;
}

/* Wait for room in @s->to, in FIFO order with @r's other senders to it. */
static int post_wait(struct reactor *r, struct iou__psend *s, reactor_call_fn *fn, void *arg)
{
	struct iou__psend *next;
	int ret = iou__rwait_prepare(r, &s->rw, s->to, &s->to->want_lock, want_unlink, NULL);

	if (ret < 0)
		return ret;
	s->next = NULL;
	s->prev = r->sendq_tail;
	if (r->sendq_tail)
		r->sendq_tail->next = s;
	else
		r->sendq_head = s;
	r->sendq_tail = s;
	for (;;) {
		s->rw.served = false;
		if (queued_for(r, s->to, NULL) == s) {
			ret = push(s->to, fn, arg);
			if (ret != -EAGAIN)
				break;
			ret = want(s);
			if (ret < 0)
				break;
			/* Room may have freed before the owner could see us. */
			ret = push(s->to, fn, arg);
			if (ret != -EAGAIN)
				break;
		}
		ret = iou__rwait_park(r, &s->rw);
		if (ret < 0)
			break;
	}
	iou__rwait_end(r, &s->rw);
	next = queued_for(r, s->to, s);
	if (s->prev)
		s->prev->next = s->next;
	else
		r->sendq_head = s->next;
	if (s->next)
		s->next->prev = s->prev;
	else
		r->sendq_tail = s->prev;
	/* The next in line (parked locally, not linked anywhere) takes over. */
	if (next)
		iou__wake(r, &next->rw.wait);
	return ret;
}

static int post(struct reactor *r, struct reactor_ref *to, reactor_call_fn *fn, void *arg, bool wait)
{
	struct iou__psend s;
	int ret;

	if (!r || !to || !fn)
		return -EINVAL;
	if (r != iou__self)
		return -EPERM;
	if (!r->sendq_head || !queued_for(r, to, NULL)) {
		ret = push(to, fn, arg);
		if (ret != -EAGAIN)
			return rang(r, to, ret);
	}
	/* Full.  A posted callback (the thread's context inside the driver) must not wait. */
	if (!wait || (!r->current && r->driving))
		return -EAGAIN;
	s.to = to;
	ret = post_wait(r, &s, fn, arg);
	return rang(r, to, ret);
}

IOU_API int reactor_post(struct reactor *r, struct reactor_ref *to, reactor_call_fn *fn, void *arg)
{
	return post(r, to, fn, arg, true);
}

IOU_API int reactor_post_try(struct reactor *r, struct reactor_ref *to, reactor_call_fn *fn,
			     void *arg)
{
	return post(r, to, fn, arg, false);
}

/* ---- handles ------------------------------------------------------------------------------ */

IOU_API int reactor_mailbox_create(struct reactor *r, unsigned slots)
{
	unsigned n = MIN_SLOTS;

	if (!r)
		return -EINVAL;
	if (r != iou__self)
		return -EPERM;
	if (slots < MIN_SLOTS || slots > MAX_SLOTS)
		return -EINVAL;
	if (r->mbox)
		return -EEXIST;
	while (n < slots)
		n *= 2;
	return mail_create(r, n);
}

IOU_API int reactor_ref_get(struct reactor *r, struct reactor_ref **out)
{
	int ret;

	if (!r || !out)
		return -EINVAL;
	if (r != iou__self)
		return -EPERM;
	ret = iou__mail_self(r);
	if (ret < 0)
		return ret;
	atomic_fetch_add_explicit(&r->mbox->refs, 1, memory_order_relaxed);
	*out = r->mbox;
	return 0;
}

IOU_API struct reactor_ref *reactor_ref_dup(struct reactor_ref *ref)
{
	if (ref)
		atomic_fetch_add_explicit(&ref->refs, 1, memory_order_relaxed);
	return ref;
}

IOU_API void reactor_ref_put(struct reactor_ref *ref)
{
	iou__mail_put(ref);
}

IOU_API bool reactor_ref_alive(const struct reactor_ref *ref)
{
	return ref && !(atomic_load_explicit(&ref->tail, memory_order_relaxed) & IOU__MAIL_CLOSED);
}

/* ---- serving ------------------------------------------------------------------------------- */

static void stop_call(struct reactor *r, void *arg, int status)
{
	(void)arg;
	if (status == 0)
		r->stop = true;
}

IOU_API int reactor_stop(struct reactor *r, struct reactor_ref *to)
{
	return post(r, to, stop_call, NULL, true);
}

IOU_API int reactor_serve(struct reactor *r)
{
	int ret;

	if (!r)
		return -EINVAL;
	if (r != iou__self || r->current)
		return -EPERM;
	if (r->driving)
		return -EBUSY;
	ret = iou__mail_self(r);
	if (ret < 0)
		return ret;
	ret = iou__drive(r, &r->stop);
	if (ret < 0)
		return ret;
	r->stop = false;
	return iou__drive(r, NULL);
}

/* ---- teardown -------------------------------------------------------------------------------- */

/*
 * Close @mb: no claim succeeds any more; calls already queued are handed
 * back to their callbacks with -ESHUTDOWN; senders waiting for room learn
 * it.  @r: the owner being torn down (its ring rings the doorbells), or
 * NULL.
 */
void iou__mail_close(struct reactor *r, struct reactor_ref *mb)
{
	uint64_t t = atomic_fetch_or_explicit(&mb->tail, IOU__MAIL_CLOSED, memory_order_seq_cst) &
		     ~IOU__MAIL_CLOSED;
	bool driving = r && r->driving;

	/* Callbacks run as in the driver: nothing they call may wait. */
	if (r)
		r->driving = true;
	for (; mb->next != t; mb->next++) {
		struct iou__mslot *s = &mb->slots[mb->next & mb->mask];
		unsigned spins = 0;

		/* Claimed before the close: its sender is a few stores from done. */
		while (!published(mb, mb->next, memory_order_acquire)) {
			if (++spins < 128)
				iou__cpu_relax();
			else
				sched_yield();
		}
		s->fn(NULL, s->arg, -ESHUTDOWN);
	}
	atomic_store_explicit(&mb->head, t, memory_order_release);
	if (r)
		r->driving = driving;
	want_wake(r, mb, -ESHUTDOWN);
}

/* Send what we owe and wait for the doorbells in flight (up to 5 s of silence). */
static void bells_settle(struct reactor *r)
{
	unsigned idle = 0;

	while ((r->nowed || r->bells_out) && idle < 50) {
		struct __kernel_timespec ts = { .tv_nsec = 100 * IOU_MSEC };
		struct io_uring_cqe *cqe;
		unsigned before = r->bells_out + r->nowed;
		int ret;

		iou__mail_flush(r);
		ret = io_uring_submit_and_wait_timeout(&r->ring, &cqe, 1, &ts, NULL);
		if (ret < 0 && ret != -ETIME && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY)
			break;
		iou__reap(r);
		idle = r->bells_out + r->nowed < before ? 0 : idle + 1;
	}
}

/*
 * First part of a reactor's teardown, before its ring is drained: run the
 * hooks, close the mailbox, settle the doorbells.
 */
void iou__mail_fini(struct reactor *r)
{
	struct iou__hook *h;

	while ((h = r->hooks)) {
		iou__hook_del(r, h);
		h->fn(r, h);
	}
	r->sendq_head = r->sendq_tail = NULL;
	if (r->mbox) {
		iou__mail_close(r, r->mbox);
		/* Hooks the callbacks may have added (none should) go the same way. */
		while ((h = r->hooks)) {
			iou__hook_del(r, h);
			h->fn(r, h);
		}
		/* What is left there are records on our own (now dead) stacks. */
		atomic_store_explicit(&r->mbox->wakeq, NULL, memory_order_relaxed);
	}
	bells_settle(r);
}

/* Last part, after the ring is gone: drop the reactor's reference. */
void iou__mail_release(struct reactor *r)
{
	for (unsigned i = 0; i < r->nowed; i++)
		iou__mail_put(r->owed[i]);
	free(r->owed);
	r->owed = NULL;
	r->nowed = r->owed_cap = 0;
	iou__mail_put(r->mbox);
	r->mbox = NULL;
}
