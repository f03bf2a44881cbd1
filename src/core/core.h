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
#include <setjmp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <threads.h>
#include <ucontext.h>

#include <ioucontext/clock.h>
#include <ioucontext/fiber.h>
#include <ioucontext/reactor.h>

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

/*
 * One parked caller.  Every blocking call puts one of these on its own stack,
 * hands its address to whatever will complete it, and parks until `done`.
 */
struct iou__wait {
	struct fiber *fiber; /* parked fiber, or NULL: the thread's own context */
	bool done;	     /* set by iou__wake() */
};

/* A sleep or deadline in the reactor's min-heap; lives on the waiter's stack. */
struct iou__timer {
	int64_t deadline;     /* absolute CLOCK_MONOTONIC ns */
	uint64_t seq;	      /* insertion order: equal deadlines fire FIFO */
	uint32_t index;	      /* position in the heap, for removal */
	struct iou__wait *wait; /* woken on expiry */
};

struct iou__timer_heap {
	struct iou__timer **v; /* v[0] is the earliest */
	uint32_t len, cap;
	uint64_t seq;
};

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
	char name[IOU_FIBER_NAME_MAX + 1];
	/* The stack: [map, map + guard) is the guard, [lo, (char *)this) usable. */
	char *map;		/* start of the mapping (the guard) */
	size_t map_size;	/* guard + usable + this struct, page multiple */
	char *lo;		/* lowest usable byte */
	size_t size;		/* usable bytes, below this struct */
	unsigned vg_id;		/* valgrind stack id */
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
};

struct reactor {
	struct io_uring ring;
	struct fiber *current;	/* running fiber, NULL in the thread's context */
	struct fiber *runq_head, *runq_tail;
	unsigned budget;	/* fiber-to-fiber switches left before the scheduler polls */
	bool driving;		/* iou__drive() is on the thread's stack */
	bool from_sched;	/* ASan: the last switch left the thread's own context */
	unsigned nfibers;	/* spawned and not yet finished */
	unsigned inflight;	/* kernel operations not yet completed */
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
};

/* The calling thread's reactor, or NULL. */
extern _Thread_local struct reactor *iou__self __attribute__((tls_model("initial-exec")));

/* sched.c (the run queue, iou__park and iou__switch are inline in switch.h) */
void iou__wake(struct reactor *r, struct iou__wait *w);
int iou__wait(struct reactor *r, struct iou__wait *w);
int iou__drive(struct reactor *r, const bool *done);
int iou__poll(struct reactor *r, bool block);
int iou__tick(struct reactor *r);

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

/* pin.c */
void iou__pin(struct reactor *r);
void iou__unpin(struct reactor *r);

/* options.c */
int iou__options_check(const struct reactor_options *o);

#endif
