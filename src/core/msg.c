/* SPDX-License-Identifier: MIT */
/*
 * Messaging between reactors: the mailbox each reactor empties, the lanes
 * through which other reactors post to it, the doorbell that wakes a
 * sleeping owner, the wake queue through which other threads hand back
 * callers parked on cross-reactor objects, and what a mailbox does when its
 * reactor goes.
 *
 * Lanes.  Each sending reactor posts to a mailbox through a lane of its own:
 * a bounded single-producer, single-consumer ring of calls, made on its
 * first post there and registered with the mailbox through a lock-free
 * stack that the owner adopts from.  Posting writes the call into the next
 * slot and publishes the lane's tail with a release store: no lock, no
 * read-modify-write, no fence, no system call -- which matters, because a
 * locked instruction per message would wait for the cache lines of every
 * slot written before it.  The owner takes what each lane holds a batch at
 * a time, frees the batch's slots by publishing the lane's head, tells
 * blocked senders there is room, and only then runs the batch, so senders
 * refill while it works.  One lane per sender and target keeps the calls of
 * a sender in the order posted, and bounds each sender on its own.
 *
 * Doorbell.  The owner announces that it is about to block (`sleeping`),
 * then takes a last look at its lanes, its wake queue and its lane
 * registrations; a sender that publishes and then finds the announcement
 * takes it (exchange to 0) and rings: an IORING_OP_MSG_RING from its own
 * ring to a dup of the owner's ring fd, whose CQE (IOU__UDATA_MAIL) ends the
 * owner's io_uring_enter; or, without MSG_RING, a write to an eventfd on
 * which the owner keeps a read armed.  The handshake needs each side's
 * store ordered before its load, which on the sender's side would be a
 * fence per message.  So a sender in a fiber or a callback publishes with a
 * plain store and only peeks at the announcement, and its reactor settles
 * the lanes it published to at its next poll, which always comes before it
 * blocks or returns: one sequentially consistent store per lane, then the
 * look (iou__lanes_settle(); submissions wait for that poll too).  The
 * thread's own context outside the driver, after which nothing may come,
 * makes that store at once.  Either way no wake-up is lost, and at most one
 * doorbell is rung per sleep.  A streaming sender that finds the owner
 * asleep rings after some more calls (RING_AFTER) or at its next poll,
 * whichever comes first, and the owner looks once more after a round that
 * delivered calls before it sleeps: a wake-up costs the waker microseconds,
 * so each should find plenty of work.  The doorbell we send is a counted request
 * whose user_data is the target mailbox tagged IOU__UDATA_BELL; it holds a
 * reference on the mailbox until its completion is reaped (and is sent
 * again if the kernel failed it for want of memory).
 *
 * Remote waits (struct iou__rwait, core.h).  A caller parked on an object
 * of another thread is completed by that thread under the object's lock:
 * it is pushed on the waiter's mailbox's wake queue (an intrusive LIFO,
 * reversed when taken), and the doorbell is rung if the owner sleeps.  The
 * owner wakes it on its next poll.  Each such wait is registered as a
 * teardown hook on its reactor, so that a reactor torn down takes its
 * parked callers off other threads' objects before their stacks go.  The
 * same queue carries notices, records that run a function on the reactor
 * instead of waking a caller ("your lane's target closed").
 *
 * Back-pressure.  A full lane makes reactor_post() wait: the first of a
 * reactor's senders waiting for that mailbox links itself on the mailbox's
 * "want" list and tries once more; the owner, whenever it has freed slots
 * and finds the list non-empty, wakes every sender on it through their own
 * wake queues (a message back, not polling); the others wait in their
 * reactor's FIFO behind the first.
 *
 * Teardown.  Hooks first (remote waits unlinked, remote fibers reported).
 * Then the reactor lets go of its lanes into other mailboxes (their owners
 * still deliver what is in them).  Then its mailbox closes: later posts and
 * lane registrations fail with -ESHUTDOWN; each lane whose sender is gone
 * has its calls handed back here, with -ESHUTDOWN; each other lane is
 * marked closed and its sender told through a notice, so that the sender
 * hands back its own undelivered calls on its own thread; senders waiting
 * for room learn it too.  The doorbells we still owe are sent and settled
 * before the ring is drained.  The mailbox itself lives on while handles
 * refer to it.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "core.h"

#define rwait_of(w) ((struct iou__rwait *)((char *)(w)-offsetof(struct iou__rwait, wait)))
#define rwait_of_hook(h) ((struct iou__rwait *)((char *)(h)-offsetof(struct iou__rwait, hook)))
#define lane_of_note(rw) ((struct iou__lane *)((char *)(rw)-offsetof(struct iou__lane, note)))

#define MIN_SLOTS 2u
#define MAX_SLOTS 65536u
/* Calls taken from a lane at a time, before any of them runs. */
#define BATCH 64
/*
 * A sender in a fiber that finds the owner asleep rings after this many
 * more calls (at most a quarter of the lane), or at its next poll if that
 * comes first: a wake-up costs the waker several microseconds here, and
 * one that finds a thousand calls is worth it where one per call is not.
 */
#define RING_AFTER 1024u

/* mb->newlanes once the mailbox is closed: no lane can register. */
#define SHUT ((struct iou__lane *)(uintptr_t)1)

/* A reactor_post() caller waiting for room in a full lane. */
struct iou__psend {
	struct iou__rwait rw;		/* on the target's want list while first in line */
	struct reactor_ref *to;		/* the target */
	struct iou__psend *prev, *next; /* r->sendq */
};

static void lane_put(struct iou__lane *l);

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

	mb = aligned_alloc(64, (sizeof(*mb) + 63) & ~(size_t)63);
	if (!mb)
		return -ENOMEM;
	memset(mb, 0, sizeof(*mb));
	atomic_init(&mb->refs, 1);
	mb->ring_fd = -1;
	mb->efd = -1;
	mb->lane_slots = slots;
	atomic_init(&mb->closed, false);
	atomic_init(&mb->sleeping, 0);
	atomic_init(&mb->wakeq, NULL);
	atomic_init(&mb->newlanes, NULL);
	atomic_init(&mb->nwant, 0);
	atomic_init(&mb->want_lock.held, false);
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
static int anon_ready(void);

int iou__mail_bind(struct reactor *r, struct reactor_ref *mb)
{
	int fd;

	if (r->mbox)
		return -EEXIST;
	if (iou__has_op(r, IORING_OP_MSG_RING)) {
		/*
		 * A sender without a ring of its own wakes us through the
		 * process's spare ring: make it now, while a failure can still
		 * be reported, rather than lose a wake-up later (at EMFILE).
		 */
		int ret = anon_ready();

		if (ret < 0)
			return ret;
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
	/* Never bound and never closed: nobody can have posted (a lane would hold it). */
	if (!atomic_load_explicit(&mb->closed, memory_order_relaxed))
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
static int anon_err; /* why it could not be made (-errno) */
static iou__spin anon_lock;

static void anon_init(void)
{
	anon_err = io_uring_queue_init(8, &anon_ring, 0);
	anon_ok = anon_err == 0;
}

/* Make the spare ring if it is not made yet: 0, or why it cannot be. */
static int anon_ready(void)
{
	call_once(&anon_once, anon_init);
	return anon_ok ? 0 : anon_err ? anon_err : -ESHUTDOWN;
}

static void anon_bell(struct reactor_ref *mb)
{
	struct io_uring_sqe *sqe;
	struct io_uring_cqe *cqe;
	unsigned head, n = 0;

	call_once(&anon_once, anon_init);
	iou__spin_lock(&anon_lock);
	sqe = anon_ok ? io_uring_get_sqe(&anon_ring) : NULL;
	if (sqe) {
		io_uring_prep_msg_ring(sqe, mb->ring_fd, 0, IOU__UDATA_MAIL, 0);
		sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
		io_uring_sqe_set_data64(sqe, 0);
		io_uring_submit(&anon_ring);
	}
	/* Only failures post completions; nobody is left to retry them. */
	if (anon_ok) {
		io_uring_for_each_cqe (&anon_ring, head, cqe)
			n++;
		io_uring_cq_advance(&anon_ring, n);
	}
	iou__spin_unlock(&anon_lock);
}

/* The library going away (exit, dlclose) closes the ring if it was made. */
__attribute__((destructor)) static void anon_fini(void)
{
	iou__spin_lock(&anon_lock);
	if (anon_ok) {
		anon_ok = false;
		io_uring_queue_exit(&anon_ring);
	}
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
 * thread's reactor, or NULL).  @now: submit at once (calls posted through a
 * lane: the owner would otherwise sleep while a sender streams), else with
 * the next batch, when the calling fiber parks.
 */
static void bell(struct reactor *r, struct reactor_ref *mb, bool now)
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
	/*
	 * From the thread's own context outside the driver, nobody would
	 * submit for us.  At most once per sleep of the target.
	 */
	if (!now && (r->current || r->driving))
		return;
	for (unsigned tries = 0; tries < 64; tries++) {
		io_uring_submit(&r->ring);
		if (!r->nowed)
			break;
		iou__mail_flush(r);
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
	if ((res == -ENOMEM || res == -EAGAIN || res == -EOVERFLOW || res == -EINTR) &&
	    !r->closing && !atomic_load_explicit(&mb->closed, memory_order_relaxed)) {
		owe(r, mb); /* keeps the reference */
		return;
	}
	/* Other failures mean the target's thread or ring is gone. */
	iou__mail_put(mb);
}

/* ---- lanes ------------------------------------------------------------------------ */

static void lane_put(struct iou__lane *l)
{
	if (atomic_fetch_sub_explicit(&l->refs, 1, memory_order_acq_rel) != 1)
		return;
	iou__mail_put(l->to);
	free(l);
}

/* Hand back the calls still in @l with -ESHUTDOWN (the side left owns them). */
static void sweep(struct iou__lane *l)
{
	uint64_t pos = atomic_load_explicit(&l->head, memory_order_acquire);
	uint64_t tail = atomic_load_explicit(&l->tail, memory_order_acquire);

	for (; pos != tail; pos++) {
		struct iou__mslot *s = &l->slots[pos & l->mask];

		s->fn(NULL, s->arg, -ESHUTDOWN);
	}
	atomic_store_explicit(&l->head, tail, memory_order_release);
}

/* Notice on the sender's reactor: the target closed the lane. */
static void lane_closed(struct reactor *r, struct iou__rwait *rw)
{
	struct iou__lane *l = lane_of_note(rw), **pp;

	for (pp = &r->lanes_out; *pp; pp = &(*pp)->out_next) {
		if (*pp == l) {
			*pp = l->out_next;
			sweep(l);
			lane_put(l);
			return;
		}
	}
}

/* A new lane from @r to @to, registered with the target. */
static int lane_new(struct reactor *r, struct reactor_ref *to, struct iou__lane **out)
{
	struct iou__lane *l, *old;
	size_t size;
	int ret = iou__mail_self(r);

	if (ret < 0)
		return ret;
	if (atomic_load_explicit(&to->closed, memory_order_acquire))
		return -ESHUTDOWN;
	size = (sizeof(*l) + (size_t)to->lane_slots * sizeof(l->slots[0]) + 63) & ~(size_t)63;
	l = aligned_alloc(64, size);
	if (!l)
		return -ENOMEM;
	memset(l, 0, size);
	l->to = reactor_ref_dup(to);
	l->from = r->mbox;
	l->mask = to->lane_slots - 1;
	atomic_init(&l->tail, 0);
	atomic_init(&l->head, 0);
	atomic_init(&l->refs, 2);
	atomic_init(&l->gone, false);
	atomic_init(&l->lock.held, false);
	l->note.notice = lane_closed;
	l->note.mb = r->mbox;
	old = atomic_load_explicit(&to->newlanes, memory_order_relaxed);
	do {
		if (old == SHUT) {
			iou__mail_put(to);
			free(l);
			return -ESHUTDOWN;
		}
		l->reg_next = old;
	} while (!atomic_compare_exchange_weak_explicit(
		&to->newlanes, &old, l, memory_order_seq_cst, memory_order_relaxed));
	l->out_next = r->lanes_out;
	r->lanes_out = l;
	*out = l;
	return 0;
}

/* @r's lane to @to, made on first use; the most recently used come first. */
static int lane_get(struct reactor *r, struct reactor_ref *to, struct iou__lane **out)
{
	struct iou__lane *l = r->lanes_out, **pp;

	if (iou__likely(l && l->to == to)) {
		*out = l;
		return 0;
	}
	for (pp = &r->lanes_out; (l = *pp); pp = &l->out_next) {
		if (l->to == to) {
			*pp = l->out_next;
			l->out_next = r->lanes_out;
			r->lanes_out = l;
			*out = l;
			return 0;
		}
	}
	return lane_new(r, to, out);
}

/* Let go of every lane of @r (teardown): their owners deliver what is in them. */
static void lanes_drop(struct reactor *r)
{
	struct iou__lane *l;

	if (r->lanes_dirty)
		iou__lanes_settle(r);
	while ((l = r->lanes_out)) {
		bool closed;

		r->lanes_out = l->out_next;
		iou__spin_lock(&l->lock);
		atomic_store_explicit(&l->gone, true, memory_order_release);
		closed = l->closed;
		iou__spin_unlock(&l->lock);
		/* Closed: its notice sits in our (abandoned) wake queue; we hand back. */
		if (closed)
			sweep(l);
		lane_put(l);
	}
}

/* ---- the owner's side ------------------------------------------------------------- */

/* Take the lanes registered since the last look into our list. */
static void adopt(struct reactor_ref *mb, struct iou__lane *l)
{
	while (l && l != SHUT) {
		struct iou__lane *n = l->reg_next;

		l->prev = NULL;
		l->lnext = mb->lanes;
		if (mb->lanes)
			mb->lanes->prev = l;
		mb->lanes = l;
		l = n;
	}
}

static void lane_unlink(struct reactor_ref *mb, struct iou__lane *l)
{
	if (l->prev)
		l->prev->lnext = l->lnext;
	else
		mb->lanes = l->lnext;
	if (l->lnext)
		l->lnext->prev = l->prev;
	l->prev = l->lnext = NULL;
}

/* Anything for us: a wake, a new lane, a call in a lane? */
static bool has_mail(const struct reactor_ref *mb)
{
	struct iou__lane *n = atomic_load_explicit(&mb->newlanes, memory_order_seq_cst);

	if (atomic_load_explicit(&mb->wakeq, memory_order_seq_cst) || (n && n != SHUT))
		return true;
	for (const struct iou__lane *l = mb->lanes; l; l = l->lnext)
		if (atomic_load_explicit(&l->tail, memory_order_seq_cst) != l->next)
			return true;
	return false;
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
	/*
	 * Calls came in the last round: take one more before announcing a
	 * sleep, so that a sender in mid-stream keeps us delivering instead of
	 * paying a wake-up for each time we catch up with it.  A round that
	 * finds nothing ends this.
	 */
	if (r->mail_came) {
		r->mail_came = false;
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

/*
 * Can anything but our own ring wake us: a handle or a lane someone else
 * holds, or a remote wait?  (A lane of ours to ourselves does not count.)
 */
bool iou__mail_reachable(const struct reactor *r)
{
	const struct reactor_ref *mb = r->mbox;
	long self = 0;

	if (!mb)
		return false;
	for (const struct iou__lane *l = r->lanes_out; l; l = l->out_next)
		self += l->to == mb;
	return r->rwaits > 0 || atomic_load_explicit(&mb->refs, memory_order_relaxed) - self > 1 ||
	       atomic_load_explicit(&mb->wakeq, memory_order_relaxed) != NULL;
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

/*
 * Wake every sender waiting for room in @mb with @res.  Their doorbells go
 * out at once, not with our next batch: a sender refills while we work
 * through the rest of the lane.
 */
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
	if (r && !r->closing && io_uring_sq_ready(&r->ring))
		io_uring_submit(&r->ring);
}

/* Wake the remote waits other threads completed for us (and run notices), oldest first. */
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
		if (rev->notice) {
			rev->notice(r, rev);
		} else {
			rev->pending = false;
			iou__wake(r, &rev->wait);
		}
		rev = n;
	}
}

/*
 * Deliver up to one lane-full of calls from @l, a batch at a time: copy the
 * batch out, free its slots, tell blocked senders, then run it.
 */
static void drain(struct reactor *r, struct reactor_ref *mb, struct iou__lane *l)
{
	struct iou__mslot batch[BATCH];
	uint64_t tail = atomic_load_explicit(&l->tail, memory_order_acquire);
	unsigned total = 0;

	while (l->next != tail && total <= l->mask) {
		unsigned k = tail - l->next < BATCH ? (unsigned)(tail - l->next) : BATCH;

		for (unsigned i = 0; i < k; i++)
			batch[i] = l->slots[(l->next + i) & l->mask];
		l->next += k;
		total += k;
		atomic_store_explicit(&l->head, l->next, memory_order_seq_cst);
		if (atomic_load_explicit(&mb->nwant, memory_order_seq_cst))
			want_wake(r, mb, 0);
		for (unsigned i = 0; i < k; i++)
			batch[i].fn(r, batch[i].arg, 0);
		if (l->next == tail)
			tail = atomic_load_explicit(&l->tail, memory_order_acquire);
	}
}

/*
 * Deliver what arrived: remote wakes and notices, new lanes, then up to a
 * lane-full of calls from each lane in turn (so that a flood cannot starve
 * the fibers).  A lane whose sender is gone is freed once empty.
 */
void iou__mail_poll(struct reactor *r)
{
	struct reactor_ref *mb = r->mbox;
	struct iou__lane *l, *n;

	if (atomic_load_explicit(&mb->wakeq, memory_order_relaxed))
		take_wakes(r, mb);
	if (atomic_load_explicit(&mb->newlanes, memory_order_relaxed))
		adopt(mb, atomic_exchange_explicit(&mb->newlanes, NULL, memory_order_acquire));
	for (l = mb->lanes; l; l = n) {
		n = l->lnext;
		if (atomic_load_explicit(&l->tail, memory_order_relaxed) != l->next) {
			drain(r, mb, l);
			r->mail_came = true;
		}
		if (atomic_load_explicit(&l->gone, memory_order_acquire) &&
		    atomic_load_explicit(&l->tail, memory_order_acquire) == l->next) {
			lane_unlink(mb, l);
			lane_put(l);
		}
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
		bell(r, mb, false);
}

/* ---- posting ---------------------------------------------------------------------------- */

/*
 * Post into @l from @r: write the call, publish the tail.  From a fiber or
 * a posted callback, the tail is published with a plain release store and
 * the owner's sleep announcement only peeked at; the lane is marked, and
 * @r's next poll -- which comes before @r blocks, and before the driver
 * returns -- publishes it once more with a sequentially consistent store and
 * looks again (iou__lanes_settle()), as submissions wait for the poll too.
 * From the thread's own context outside the driver, nothing may come after:
 * that store is made at once.  Return: 1 if posted and the owner must be
 * woken; 0 if posted; -EAGAIN if the lane is full; -ESHUTDOWN if the target
 * closed.
 */
static int push(struct reactor *r, struct iou__lane *l, reactor_call_fn *fn, void *arg)
{
	uint64_t pos = l->tail_local;

	if (iou__unlikely(pos - l->head_seen > l->mask)) {
		l->head_seen = atomic_load_explicit(&l->head, memory_order_seq_cst);
		if (pos - l->head_seen > l->mask)
			return atomic_load_explicit(&l->to->closed, memory_order_relaxed) ?
				       -ESHUTDOWN :
				       -EAGAIN;
	}
	l->slots[pos & l->mask].fn = fn;
	l->slots[pos & l->mask].arg = arg;
	l->tail_local = pos + 1;
	if (iou__likely(r->current || r->driving)) {
		atomic_store_explicit(&l->tail, pos + 1, memory_order_release);
		if (!l->unfenced) {
			l->unfenced = true;
			r->lanes_dirty = true;
		}
		/*
		 * The owner sleeps: ring after RING_AFTER more calls, or at our
		 * next poll, whichever comes first (see RING_AFTER).
		 */
		if (iou__likely(!l->ring_at)) {
			if (atomic_load_explicit(&l->to->sleeping, memory_order_relaxed))
				l->ring_at = pos + 1 +
					     (l->mask / 4 < RING_AFTER ? l->mask / 4 : RING_AFTER);
			return 0;
		}
		if (pos + 1 < l->ring_at)
			return 0;
		l->ring_at = 0;
		return take_sleeper(l->to);
	}
	atomic_store_explicit(&l->tail, pos + 1, memory_order_seq_cst);
	return take_sleeper(l->to) ? 1 : 0;
}

/*
 * The other half of the sleep handshake for lanes published without a
 * fence: store each such tail again, sequentially consistent, then look at
 * the owner's announcement.  Either the owner's last look saw the calls, or
 * we see it asleep and ring.
 */
void iou__lanes_settle(struct reactor *r)
{
	r->lanes_dirty = false;
	for (struct iou__lane *l = r->lanes_out; l; l = l->out_next) {
		if (!l->unfenced)
			continue;
		l->unfenced = false;
		l->ring_at = 0;
		atomic_store_explicit(&l->tail, l->tail_local, memory_order_seq_cst);
		if (take_sleeper(l->to))
			bell(r, l->to, true);
	}
}

/* Post @fn(@arg) from @r to @to through @r's lane there. */
static int push_to(struct reactor *r, struct reactor_ref *to, reactor_call_fn *fn, void *arg)
{
	struct iou__lane *l;
	int ret;

	if (iou__unlikely(atomic_load_explicit(&to->closed, memory_order_relaxed)))
		return -ESHUTDOWN;
	ret = lane_get(r, to, &l);
	return ret < 0 ? ret : push(r, l, fn, arg);
}

/* Ring after a successful push if it asked for it; the push's result. */
static int rang(struct reactor *r, struct reactor_ref *mb, int ret)
{
	if (ret == 1) {
		bell(r, mb, true);
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
	if (atomic_load_explicit(&mb->closed, memory_order_relaxed)) {
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
			ret = push_to(r, s->to, fn, arg);
			if (ret != -EAGAIN)
				break;
			ret = want(s);
			if (ret < 0)
				break;
			/* Room may have freed before the owner could see us. */
			ret = push_to(r, s->to, fn, arg);
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

static int post(struct reactor *r, struct reactor_ref *to, reactor_call_fn *fn, void *arg,
		bool wait)
{
	struct iou__psend s;
	int ret;

	if (!r || !to || !fn)
		return -EINVAL;
	if (r != iou__self)
		return -EPERM;
	if (!r->sendq_head || !queued_for(r, to, NULL)) {
		ret = push_to(r, to, fn, arg);
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
	return ref && !atomic_load_explicit(&ref->closed, memory_order_relaxed);
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
 * Close @mb: no post or lane registration succeeds any more; calls left in
 * lanes whose senders are gone are handed back here with -ESHUTDOWN; the
 * senders of the other lanes are told, and hand back their own; senders
 * waiting for room learn it.  @r: the owner being torn down (its ring rings
 * the doorbells), or NULL.
 */
void iou__mail_close(struct reactor *r, struct reactor_ref *mb)
{
	struct iou__lane *l;
	bool driving = r && r->driving;

	atomic_store_explicit(&mb->closed, true, memory_order_seq_cst);
	adopt(mb, atomic_exchange_explicit(&mb->newlanes, SHUT, memory_order_acq_rel));
	/* Callbacks run as in the driver: nothing they call may wait. */
	if (r)
		r->driving = true;
	while ((l = mb->lanes)) {
		bool gone;

		lane_unlink(mb, l);
		/* What we took is done: the rest is for whoever hands back. */
		atomic_store_explicit(&l->head, l->next, memory_order_release);
		iou__spin_lock(&l->lock);
		l->closed = true;
		gone = atomic_load_explicit(&l->gone, memory_order_acquire);
		if (!gone) {
			/* Under the lock: the sender cannot go (nor its mailbox) meanwhile. */
			l->note.linked = false;
			iou__rwake(r, &l->note, -ESHUTDOWN);
		}
		iou__spin_unlock(&l->lock);
		if (gone)
			sweep(l);
		lane_put(l);
	}
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
 * hooks, let go of our lanes, close the mailbox, settle the doorbells.
 */
void iou__mail_fini(struct reactor *r)
{
	struct iou__hook *h;

	while ((h = r->hooks)) {
		iou__hook_del(r, h);
		h->fn(r, h);
	}
	r->sendq_head = r->sendq_tail = NULL;
	lanes_drop(r);
	if (r->mbox) {
		iou__mail_close(r, r->mbox);
		/* Hooks the callbacks may have added (none should) go the same way. */
		while ((h = r->hooks)) {
			iou__hook_del(r, h);
			h->fn(r, h);
		}
		/* What is left there are records on our own stacks, and notices. */
		atomic_store_explicit(&r->mbox->wakeq, NULL, memory_order_relaxed);
	}
	/* Lanes the handed-back callbacks posted through (none should). */
	lanes_drop(r);
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
