/* SPDX-License-Identifier: MIT */
/*
 * What the core library's subsystems share: the reactor and fiber
 * structures, the wait record every blocking call parks on, the timer heap,
 * stack allocation and the context switch.  Nothing here is public; every
 * non-static symbol is named iou__* and hidden by visibility.
 */
#ifndef IOU_CORE_H
#define IOU_CORE_H

#include <liburing.h>
#include <sched.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <threads.h>
#include <ucontext.h>

#include <ioucontext/clock.h>
#include <ioucontext/fiber.h>
#include <ioucontext/reactor.h>
#include <ioucontext/thread.h>

#define IOU_API __attribute__((visibility("default")))
#define iou__likely(x) __builtin_expect(!!(x), 1)
#define iou__unlikely(x) __builtin_expect(!!(x), 0)

/* liburing 2.3 predates these; the kernel interface values are fixed. */
#ifndef IORING_SETUP_COOP_TASKRUN
#define IORING_SETUP_COOP_TASKRUN (1U << 8)
#endif
#ifndef IORING_SETUP_SINGLE_ISSUER
#define IORING_SETUP_SINGLE_ISSUER (1U << 12)
#endif
#ifndef IORING_SETUP_DEFER_TASKRUN
#define IORING_SETUP_DEFER_TASKRUN (1U << 13)
#endif
#ifndef LIBURING_UDATA_TIMEOUT
#define LIBURING_UDATA_TIMEOUT ((uint64_t)-1)
#endif

struct iou__wait;
/* How to interrupt a wait (see iou__interrupt); it must end in iou__wake(). */
typedef void iou__abort_fn(struct reactor *r, struct iou__wait *w);

/*
 * One parked caller.  Every blocking call puts one of these on its own stack,
 * hands its address to whatever will complete it, and parks until `done`.
 */
struct iou__wait {
	struct fiber *fiber;  /* parked fiber, or NULL: the thread's own context */
	bool done;	      /* set by iou__wake() */
	bool hard;	      /* ignores deadline and cancellation (e.g. close) */
	int why;	      /* 0, or the -errno it was interrupted with */
	iou__abort_fn *abort; /* NULL: an interrupt wakes it at once */
};

#define IOU__TIMER_IDLE UINT32_MAX

/* A sleep or deadline in the reactor's min-heap; lives on the waiter's stack. */
struct iou__timer {
	int64_t deadline;	/* absolute CLOCK_MONOTONIC ns */
	uint64_t seq;		/* insertion order: equal deadlines fire FIFO */
	uint32_t index;		/* position in the heap, IOU__TIMER_IDLE when out */
	int why;		/* 0: wake the waiter; else interrupt it with this */
	struct iou__wait *wait; /* what expiry ends */
};

struct iou__timer_heap {
	struct iou__timer **v; /* v[0] is the earliest */
	uint32_t len, cap;
	uint64_t seq;
};

/* Where an operation is in its life. */
enum iou__op_state {
	IOU_OP_STAGED,	  /* SQE prepared in op->sqe, waiting in the FIFO for a ring slot */
	IOU_OP_SUBMITTED, /* in a ring slot or in the kernel */
	IOU_OP_DONE,	  /* final completion reaped (or never submitted) */
};

struct iou__op;
/*
 * Called by the reaper for every completion of an operation that set one
 * (multishot operations); op->state is IOU_OP_DONE on the last.  Without
 * one, the last completion's result is stored and the waiter woken.
 */
typedef void iou__complete_fn(struct reactor *r, struct iou__op *op,
			      const struct io_uring_cqe *cqe);

/*
 * One io_uring operation.  Lives on the submitting caller's stack; its
 * address is the SQE's user_data.  Invariant: a submitted op's record stays
 * valid until its last completion is reaped -- iou__op_run() never returns
 * before that, whatever interrupts it.
 */
struct iou__op {
	struct iou__wait wait;
	int32_t res;		   /* last completion's result */
	uint32_t cqe_flags;	   /* and its flags */
	uint8_t state;		   /* enum iou__op_state */
	bool cancel_queued;	   /* on r->cancelq, cancel not yet in a ring slot */
	bool cancel_sent;	   /* an ASYNC_CANCEL for it went to the kernel */
	iou__complete_fn *complete; /* NULL for one-shot operations */
	struct iou__op *prev, *next; /* FIFO (staged) or cancel queue link */
	struct io_uring_sqe sqe;   /* staging copy while no ring slot is free */
};

/*
 * What an operation's caller gets: its real result, unless a deadline or
 * cancel interrupted it and the kernel reports it cancelled.
 */
static inline int iou__op_result(const struct iou__op *op)
{
	int why = op->wait.why;

	if (why && (op->res == -ECANCELED || op->res == -EINTR || op->res == why))
		return why;
	return op->res;
}

/* A doubly linked FIFO of operations. */
struct iou__opq {
	struct iou__op *head, *tail;
};

/*
 * Reserved user_data values.  Operation records are pointers, 8-aligned and
 * never 0, so any value that is 0 or has one of the low three bits set is
 * ours (or liburing's LIBURING_UDATA_TIMEOUT, all ones) and takes the
 * reaper's slow path.
 */
#define IOU__UDATA_TAGS ((uint64_t)7)
/* our ASYNC_CANCEL requests */
#define IOU__UDATA_CANCEL ((uint64_t)1)
/* a doorbell that arrived: a MSG_RING from another reactor, or the read of
 * the mailbox's eventfd (fallback) completing (msg.c) */
#define IOU__UDATA_MAIL ((uint64_t)2)
/* low bits of a doorbell we sent: the rest is the target's mailbox (msg.c) */
#define IOU__UDATA_BELL ((uint64_t)3)

/*
 * Fiber life cycle.  Whether a live fiber is running, runnable or parked is
 * not recorded: nothing needs it, and the switch stays two stores lighter.
 */
enum iou__fiber_state {
	IOU_FIBER_LIVE,	  /* spawned, body not yet returned */
	IOU_FIBER_DONE,	  /* body returned; waiting to be joined */
	IOU_FIBER_POOLED, /* released; stack kept warm for reuse */
};

/*
 * A fiber.  It lives at the top of its own stack mapping, so a sleeping
 * fiber's struct shares the stack's one touched page.
 */
struct fiber {
	sigjmp_buf env;		/* where to resume it (valid unless !entered) */
	struct reactor *r;	/* owner */
	fiber_fn *fn;		/* body and its argument */
	void *arg;
	void *result;		/* what fn returned */
	struct fiber *next;	/* run queue or pool link */
	struct iou__wait *joiner; /* parked in fiber_join(), or NULL */
	uint64_t id;		/* unique per reactor, from 1 */
	uint8_t state;		/* enum iou__fiber_state */
	bool entered;		/* a trampoline frame is live on the stack */
	bool detached;		/* release on finish, nobody joins */
	bool cancelled;		/* fiber_cancel() ran: every wait now fails */
	int64_t deadline;	/* bound on its blocking calls, IOU_DEADLINE_NEVER if none */
	struct iou__wait *wait;	/* the interruptible wait it is parked in, or NULL */
	struct iou__wait *parked; /* its fiber_park() wait, or NULL */
	bool permit;		/* fiber_unpark() came first: the next park returns */
	char name[IOU_FIBER_NAME_MAX + 1];
	/* The stack: [map, map + guard) is the guard, [lo, (char *)this) usable. */
	char *map;		/* start of the mapping (the guard) */
	size_t map_size;	/* guard + usable + this struct, page multiple */
	char *lo;		/* lowest usable byte */
	size_t size;		/* usable bytes, below this struct */
	unsigned vg_id;		/* valgrind stack id */
#if defined(IOU_TSAN)
	void *tsan;		/* TSan: its fiber context, while its stack is warm */
	struct fiber *tsan_prev, *tsan_next; /* r->stacks.tsan: every fiber holding one */
#endif
};

/* A stack with no fiber on it (kept cold: pages dropped). */
struct iou__cold_stack {
	char *map;
	unsigned vg_id;
};

/* Stacks of one mapping size: warm fibers ready to run, cold stacks. */
struct iou__stack_class {
	size_t map_size;
	struct fiber *warm; /* pooled fibers, entered, LIFO */
	unsigned nwarm;
	struct iou__cold_stack *cold;
	unsigned ncold, cold_cap;
	struct iou__stack_class *next;
};

/* A large reservation stacks are carved from. */
struct iou__arena_chunk {
	char *base;
	size_t size, used;
	struct iou__arena_chunk *next;
};

struct iou__stacks {
	struct iou__stack_class *classes;
	struct iou__arena_chunk *chunks;
	size_t next_chunk;	/* size of the next reservation */
	unsigned nwarm;		/* warm fibers over all classes */
	unsigned warm_max;	/* pool bound */
	size_t page, guard;
	unsigned *vg_ids;	/* stacks registered with valgrind */
	unsigned nvg, vg_cap;
	unsigned long carved;	 /* fresh stacks made so far */
	unsigned long carve_max; /* IOU_FAULT_STACKS: fail fresh stacks beyond */
#if defined(IOU_TSAN)
	struct fiber *tsan;	/* fibers holding a TSan context (to free them) */
#endif
};

/* A library's per-reactor slot (reactor_ext_set()). */
struct iou__ext {
	const void *key;
	void *value;
	reactor_ext_fini *fini;
	struct iou__ext *next;
};

/* The ring's registered-file table (files.c). */
enum { IOU__FILES_UNTRIED, IOU__FILES_ON, IOU__FILES_OFF };
struct iou__files {
	int state;	/* IOU__FILES_*: registered on first use */
	unsigned size;	/* slots registered */
	unsigned next;	/* slots below it have been handed out */
	unsigned *free; /* slots handed back, a stack; room for @next */
	unsigned nfree, cap;
};

struct reactor {
	struct io_uring ring;
	struct fiber *current;	/* running fiber, NULL in the thread's context */
	struct fiber *runq_head, *runq_tail;
	unsigned budget;	/* fiber-to-fiber switches left before the scheduler polls */
	bool driving;		/* iou__drive() is on the thread's stack */
	bool from_sched;	/* ASan: the last switch left the thread's own context */
	unsigned nfibers;	/* spawned and not yet finished */
	unsigned inflight;	/* kernel requests whose last completion is not reaped */
	unsigned background;	/* of those, requests nobody waits for (armed receive
				 * streams): reactor_run() does not wait for them */
	bool closing;		/* teardown is draining the ring: wake nobody */
	struct iou__opq staged;	/* operations waiting for a ring slot, FIFO */
	struct iou__opq cancelq; /* operations to cancel, before any staged one */
	int64_t deadline;	/* the thread's own context's deadline */
	bool multishot;		/* multishot requests allowed (options) */
	struct iou__ext *exts;	/* libraries' slots, newest first */
	uint64_t next_id;
	sigjmp_buf sched_env;	/* the thread's own context while fibers run */
	ucontext_t entry;	/* template for entering fresh stacks */
	struct iou__timer_heap timers;
	struct iou__stacks stacks;
	size_t stack_size;	/* default usable stack size */
	unsigned ring_entries, ring_flags;
	uint8_t probe[256 / 8]; /* supported opcodes */
	int cpu;		/* pinned CPU or -errno */
	void *saved_affinity;	/* cpu_set_t to restore, or NULL */
	void *altstack;		/* our sigaltstack, or NULL */
	void *cookie;
	reactor_cookie_eater *eat;
	void *sched_lo;		/* the thread stack, for sanitizer annotations */
	size_t sched_size;
#if defined(IOU_TSAN)
	void *tsan_sched;	/* TSan: the thread's own context as a fiber */
#endif
	/* Messaging between reactors (msg.c). */
	struct reactor_ref *mbox; /* our mailbox, created on first use, or NULL */
	struct iou__hook *hooks; /* run at teardown: remote waits to unregister */
	unsigned rwaits;	/* remote waits registered (others can wake us) */
	unsigned bells_out;	/* doorbells sent whose completion is not reaped */
	struct iou__psend *sendq_head, *sendq_tail; /* reactor_post() callers
						 * waiting for mailbox space, FIFO */
	struct iou__lane *lanes_out; /* our lanes into other mailboxes, MRU first */
	struct reactor_ref **owed; /* doorbells that found no SQE, to send */
	unsigned nowed, owed_cap;
	bool rearm;		/* fallback: the mailbox's eventfd read must be re-armed */
	bool lanes_dirty;	/* a lane was published without a fence (msg.c): settle */
	bool mail_came;		/* the last poll delivered calls: look again before sleeping */
	bool stop;		/* reactor_stop() arrived */
	bool ppoll_wait;	/* block in ppoll() on the ring fd (valgrind; sched.c) */
	/* Receive streams (rstream.c). */
	struct iou_bufring *bufrings; /* every buffer ring of this reactor */
	struct iou_bufring *bufring_default; /* made on first use, or NULL */
	unsigned bufring_count;	/* the default ring's shape (options) */
	size_t bufring_size;
	uint16_t next_bgid;	/* where the search for a free buffer group id starts */
	/* Registered files (files.c). */
	unsigned file_slots;	/* the table's size asked for (options; 0: no table) */
	struct iou__files files;
};

/* The calling thread's reactor, or NULL. */
extern _Thread_local struct reactor *iou__self __attribute__((tls_model("initial-exec")));

/* sched.c (the run queue, iou__park and iou__switch are inline in switch.h) */
void iou__wake(struct reactor *r, struct iou__wait *w);
void iou__interrupt(struct reactor *r, struct iou__wait *w, int why);
int iou__wait_until(struct reactor *r, struct iou__wait *w, int64_t until);
static inline int iou__wait(struct reactor *r, struct iou__wait *w)
{
	return iou__wait_until(r, w, IOU_DEADLINE_NEVER);
}
int iou__drive(struct reactor *r, const bool *done);
int iou__poll(struct reactor *r, bool block);
int iou__tick(struct reactor *r);

/* Opcodes newer than liburing 2.3 (kernel interface values). */
#define IOU__OP_FTRUNCATE 55
#define IOU__OP_BIND 56
#define IOU__OP_LISTEN 57
#define IOU__OP_PIPE 62

static inline bool iou__has_op(const struct reactor *r, unsigned op)
{
	return (r->probe[op / 8] >> (op % 8)) & 1;
}

/* op.c */
int iou__op_begin(struct reactor *r, unsigned opcode, struct iou__op *op,
		  struct io_uring_sqe **sqe);
int iou__op_prepare(struct reactor *r, struct iou__op *op, struct io_uring_sqe **sqe);
int iou__op_run(struct reactor *r, struct iou__op *op, struct io_uring_sqe *sqe);
int iou__op_start(struct reactor *r, struct iou__op *op, struct io_uring_sqe *sqe);
int iou__op_finish(struct reactor *r, struct iou__op *op);
int iou__flush(struct reactor *r);
void iou__reap(struct reactor *r);
void iou__ops_drain(struct reactor *r);

/* switch.c */
_Noreturn void iou__enter(struct fiber *f);
void iou__switch_entered(void);
#if defined(IOU_ASAN)
void iou__switch_finish(void *fake);
#else
#define iou__switch_finish(fake) ((void)(fake))
#endif
int iou__switch_init(struct reactor *r);

/* fiber.c */
void iou__fiber_main(void);

/* timer.c */
int iou__timer_add(struct iou__timer_heap *h, struct iou__timer *t);
void iou__timer_del(struct iou__timer_heap *h, struct iou__timer *t);
static inline struct iou__timer *iou__timer_first(const struct iou__timer_heap *h)
{
	return h->len ? h->v[0] : NULL;
}
void iou__timer_free(struct iou__timer_heap *h);

/* stack.c */
int iou__stacks_init(struct iou__stacks *s, unsigned warm_max);
void iou__stacks_fini(struct iou__stacks *s);
int iou__stack_get(struct reactor *r, size_t size, struct fiber **out);
void iou__stack_put(struct reactor *r, struct fiber *f);
void iou__stacks_trim(struct reactor *r);
int iou__overflow_handler_install(struct reactor *r);
void iou__overflow_handler_release(struct reactor *r);

/*
 * Messaging between reactors (msg.c).
 *
 * A short spinlock for cross-thread objects (channels, remote joins, the
 * mailbox's list of blocked senders).  Critical sections are a few dozen
 * instructions; a waiter that spins too long yields the CPU.  Never a
 * futex: the reactor thread blocks only in io_uring_enter.
 */
typedef struct {
	atomic_bool held;
} iou__spin;

static inline void iou__cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield");
#endif
}

static inline void iou__spin_lock(iou__spin *s)
{
	unsigned n = 0;

	while (atomic_exchange_explicit(&s->held, true, memory_order_acquire)) {
		while (atomic_load_explicit(&s->held, memory_order_relaxed)) {
			if (++n < 128)
				iou__cpu_relax();
			else
				sched_yield();
		}
	}
}

static inline void iou__spin_unlock(iou__spin *s)
{
	atomic_store_explicit(&s->held, false, memory_order_release);
}

/* Something to do for a reactor's remote state when it is torn down. */
struct iou__hook;
typedef void iou__hook_fn(struct reactor *r, struct iou__hook *h);
struct iou__hook {
	struct iou__hook *prev, *next; /* r->hooks */
	iou__hook_fn *fn;
};

struct iou__rwait;
/* Take @rw off its object's waiter list; called with *rw->lock held. */
typedef void iou__unlink_fn(struct iou__rwait *rw);

/*
 * A caller parked on an object other threads can complete (a cross-reactor
 * channel, a remote join, a full mailbox).  Lives on the caller's stack.
 * The object links it under the object's lock; a thread that completes it
 * does so under that lock: unlinks it, sets @res and @served, and calls
 * iou__rwake(), which hands it to the waiter's reactor through that
 * reactor's mailbox (wake queue + doorbell).  The waiter's reactor owns
 * @pending: set while a wake may be on its way, so that an interrupted
 * waiter whose record was already unlinked keeps waiting for that wake
 * rather than leave the record while another thread still holds it.
 */
struct iou__rwait {
	struct iou__wait wait;	   /* what the caller parks on */
	struct iou__hook hook;	   /* teardown: unlink from the object */
	struct iou__rwait *wnext;  /* wake queue link (written by the waker) */
	struct reactor_ref *mb;	   /* the waiter's reactor's mailbox */
	iou__spin *lock;	   /* the object's lock */
	iou__unlink_fn *unlink;	   /* the object's unlink */
	/* Not a wait but a notice: run on the waiter's reactor instead of waking. */
	void (*notice)(struct reactor *r, struct iou__rwait *rw);
	void *obj;		   /* the object */
	void *data;		   /* object-specific (the item to move) */
	struct iou__rwait *prev, *next; /* the object's waiter list (under *lock) */
	bool linked;		   /* in the object's list (under *lock) */
	bool pending;		   /* linked, or a wake is on its way (owner only) */
	bool served;		   /* the object completed it: @res is its result */
	int res;
};

/* One call in a mailbox. */
struct iou__mslot {
	reactor_call_fn *fn;
	void *arg;
};

/*
 * A lane: the single-producer ring through which one sending reactor posts
 * to one mailbox (msg.c).  Counted: the sender's registry holds one
 * reference, the target's list of lanes the other.
 */
struct iou__lane {
	/* The sender's (its reactor's thread only). */
	struct iou__lane *out_next;	/* r->lanes_out */
	struct reactor_ref *to;		/* the target mailbox (a reference) */
	uint64_t tail_local;		/* next position to write */
	uint64_t head_seen;		/* a recent @head */
	bool unfenced;			/* published since the last settle */
	uint64_t ring_at;		/* ring the sleeping owner at this position (0: no) */
	/* Published by the sender. */
	_Alignas(64) _Atomic uint64_t tail; /* positions below hold calls */
	/* The owner's. */
	_Alignas(64) _Atomic uint64_t head; /* positions below are free again */
	uint64_t next;			     /* next position to take */
	struct iou__lane *prev, *lnext;	     /* the owner's list of lanes */
	struct iou__lane *reg_next;	     /* the registration stack (mb->newlanes) */
	/* Shared, rarely. */
	_Atomic int refs;
	iou__spin lock;		/* who hands back the calls when one side goes */
	bool closed;		/* the target closed (under lock) */
	_Atomic bool gone;	/* the sender went: the owner frees the lane once empty */
	struct reactor_ref *from; /* the sender's mailbox (a reference), for @note */
	struct iou__rwait note;	  /* "closed": handed to the sender's wake queue */
	uint32_t mask;		  /* slots - 1 */
	_Alignas(64) struct iou__mslot slots[];
};

/*
 * A reactor's mailbox, which is what a struct reactor_ref points to: the
 * lanes of its senders, its doorbell, and its wake queue (msg.c).
 * Reference counted: the reactor holds one reference, every handle
 * (reactor_ref_get()), group, lane and doorbell in flight another, so that
 * the memory and the descriptors in it outlive the reactor for as long as
 * anyone can still post.  When the reactor goes, the mailbox is closed:
 * posts fail with -ESHUTDOWN.
 */
struct reactor_ref {
	_Atomic long refs;
	int ring_fd;	     /* MSG_RING target: a dup of the owner's ring fd, or -1 */
	int efd;	     /* fallback: eventfd the owner keeps a read armed on, or -1 */
	uint32_t lane_slots; /* slots of each lane into it */
	_Atomic bool closed; /* the owner is gone */
	/* Written by senders. */
	_Alignas(64) _Atomic int sleeping;     /* owner is (about to be) blocked: ring */
	_Atomic(struct iou__rwait *) wakeq;    /* remote waits to wake, LIFO */
	_Atomic(struct iou__lane *) newlanes;  /* lanes to adopt, LIFO; IOU__SHUT when closed */
	/* The owner's. */
	_Alignas(64) struct iou__lane *lanes;  /* adopted lanes, polled in turn */
	_Atomic int nwant;		     /* want list non-empty */
	iou__spin want_lock;
	struct iou__rwait *want_head, *want_tail; /* senders waiting for space */
};

int iou__mail_self(struct reactor *r);
int iou__mail_new(unsigned slots, struct reactor_ref **out);
int iou__mail_bind(struct reactor *r, struct reactor_ref *mb);
void iou__mail_close(struct reactor *r, struct reactor_ref *mb);
void iou__mail_put(struct reactor_ref *mb);
bool iou__mail_sleep(struct reactor *r);
void iou__mail_awake(struct reactor *r);
bool iou__mail_reachable(const struct reactor *r);
void iou__mail_poll(struct reactor *r);
void iou__mail_cqe(struct reactor *r, const struct io_uring_cqe *cqe);
int iou__mail_flush(struct reactor *r);
void iou__mail_fini(struct reactor *r);
void iou__mail_release(struct reactor *r);
void iou__lanes_settle(struct reactor *r);
void iou__hook_add(struct reactor *r, struct iou__hook *h);
void iou__hook_del(struct reactor *r, struct iou__hook *h);
int iou__rwait_prepare(struct reactor *r, struct iou__rwait *rw, void *obj, iou__spin *lock,
		       iou__unlink_fn *unlink, void *data);
int iou__rwait_park(struct reactor *r, struct iou__rwait *rw);
void iou__rwait_end(struct reactor *r, struct iou__rwait *rw);
void iou__rwake(struct reactor *r, struct iou__rwait *rw, int res);

/* pin.c */
void iou__pin(struct reactor *r);
void iou__unpin(struct reactor *r);

/* rstream.c: free every stream and buffer ring (teardown, after the drain). */
void iou__rstreams_fini(struct reactor *r);

/*
 * files.c: a free slot of the registered-file table (registered on first
 * call), or -1 if there is no table or no free slot; give it back once
 * the kernel has emptied it.
 */
int iou__file_slot_get(struct reactor *r);
void iou__file_slot_put(struct reactor *r, int slot);
void iou__files_fini(struct reactor *r);

/* options.c */
int iou__options_check(const struct reactor_options *o);

#endif
