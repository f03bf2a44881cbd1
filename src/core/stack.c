/* SPDX-License-Identifier: MIT */
/*
 * Fiber stacks.  Stacks are carved from large MAP_NORESERVE reservations so
 * that the number of fibers is not capped by vm.max_map_count; each has a
 * guard page below it, installed with MADV_GUARD_INSTALL where the kernel
 * has it (no new mapping) and mprotect otherwise.  Finished fibers stay warm
 * in a bounded pool (their trampoline still live, so reuse costs no system
 * call); beyond the bound their pages are dropped and the stack is kept cold
 * for a later fresh start.  A SIGSEGV handler on an alternate stack turns a
 * fault in a guard page into a message naming the fiber.
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core.h"

#if defined(IOU_ASAN)
#include <sanitizer/asan_interface.h>
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif

#if defined(IOU_TSAN)
#include <sanitizer/tsan_interface.h>

/*
 * TSan: every stack with a live trampoline runs as a TSan fiber of its own.
 * A context is made when a fresh stack gets its fiber and freed when the
 * stack goes cold (its frames are gone) or the reactor goes.
 */
static void tsan_attach(struct iou__stacks *s, struct fiber *f)
{
	f->tsan = __tsan_create_fiber(0);
	f->tsan_prev = NULL;
	f->tsan_next = s->tsan;
	if (s->tsan)
		s->tsan->tsan_prev = f;
	s->tsan = f;
}

static void tsan_detach(struct iou__stacks *s, struct fiber *f)
{
	if (f->tsan_prev)
		f->tsan_prev->tsan_next = f->tsan_next;
	else
		s->tsan = f->tsan_next;
	if (f->tsan_next)
		f->tsan_next->tsan_prev = f->tsan_prev;
	__tsan_destroy_fiber(f->tsan);
	f->tsan = NULL;
}
#else
#define tsan_attach(s, f) ((void)(s), (void)(f))
#define tsan_detach(s, f) ((void)(s), (void)(f))
#endif

#if defined(IOU_HAVE_VALGRIND)
#include <valgrind/valgrind.h>
#else
#define VALGRIND_STACK_REGISTER(lo, hi) ((void)(lo), (void)(hi), 0u)
#define VALGRIND_STACK_DEREGISTER(id) ((void)(id))
#define RUNNING_ON_VALGRIND 0
#endif

#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102
#endif
#ifndef MAP_STACK
#define MAP_STACK 0
#endif

#define FIRST_CHUNK ((size_t)16 << 20)
#define MAX_CHUNK ((size_t)1 << 30)
#define ALTSTACK_SIZE ((size_t)64 * 1024)

/* 0: untried, 1: MADV_GUARD_INSTALL works, 2: fall back to mprotect. */
static atomic_int guard_mode;

int iou__stacks_init(struct iou__stacks *s, unsigned warm_max)
{
	long page = sysconf(_SC_PAGESIZE);
	const char *e;

	memset(s, 0, sizeof(*s));
	s->page = page > 0 ? (size_t)page : 4096;
	s->guard = s->page;
	s->next_chunk = FIRST_CHUNK;
	s->warm_max = warm_max;
	s->carve_max = ULONG_MAX;
	/* IOU_FAULT_STACKS=N, a testing aid: fresh stacks beyond N fail (-ENOMEM). */
	if ((e = getenv("IOU_FAULT_STACKS")) && *e >= '0' && *e <= '9')
		s->carve_max = strtoul(e, NULL, 10);
	return 0;
}

void iou__stacks_fini(struct iou__stacks *s)
{
	struct iou__stack_class *c, *cn;
	struct iou__arena_chunk *k, *kn;

#if defined(IOU_TSAN)
	while (s->tsan)
		tsan_detach(s, s->tsan);
#endif
	for (c = s->classes; c; c = cn) {
		cn = c->next;
		free(c->cold);
		free(c);
	}
	for (k = s->chunks; k; k = kn) {
		kn = k->next;
		UNPOISON(k->base, k->used);
		munmap(k->base, k->size);
		free(k);
	}
	if (RUNNING_ON_VALGRIND) {
		for (unsigned i = 0; i < s->nvg; i++)
			VALGRIND_STACK_DEREGISTER(s->vg_ids[i]);
	}
	free(s->vg_ids);
	memset(s, 0, sizeof(*s));
}

static struct iou__stack_class *class_for(struct iou__stacks *s, size_t map_size)
{
	struct iou__stack_class **pp, *c;

	for (pp = &s->classes; (c = *pp); pp = &c->next) {
		if (c->map_size == map_size) {
			/* Move to front: spawns mostly use one size. */
			*pp = c->next;
			c->next = s->classes;
			s->classes = c;
			return c;
		}
	}
	c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->map_size = map_size;
	c->next = s->classes;
	s->classes = c;
	return c;
}

static int install_guard(struct iou__stacks *s, char *p)
{
	int mode = atomic_load_explicit(&guard_mode, memory_order_relaxed);

	/* IOU_GUARD=mprotect forces the old-kernel path (for tests). */
	if (mode == 0) {
		const char *e = getenv("IOU_GUARD");

		if (e && !strcmp(e, "mprotect"))
			atomic_store_explicit(&guard_mode, mode = 2, memory_order_relaxed);
	}

	if (mode != 2) {
		if (madvise(p, s->guard, MADV_GUARD_INSTALL) == 0) {
			atomic_store_explicit(&guard_mode, 1, memory_order_relaxed);
			return 0;
		}
		if (errno != EINVAL)
			return -errno;
		atomic_store_explicit(&guard_mode, 2, memory_order_relaxed);
	}
	return mprotect(p, s->guard, PROT_NONE) ? -errno : 0;
}

/* Reserve a fresh stack mapping of @map_size bytes, guard installed. */
static int carve(struct iou__stacks *s, size_t map_size, struct iou__cold_stack *out)
{
	struct iou__arena_chunk *k = s->chunks;
	char *p;
	int ret;

	if (s->carved >= s->carve_max)
		return -ENOMEM;
	if (!k || k->size - k->used < map_size) {
		size_t size = s->next_chunk > map_size ? s->next_chunk : map_size;
		void *base = mmap(NULL, size, PROT_READ | PROT_WRITE,
				  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);

		/*
		 * Short of address space (RLIMIT_AS, strict overcommit): ask
		 * for less rather than fail while a smaller reservation still
		 * fits, but not below the first chunk's size (or one stack):
		 * what is left then stays for malloc, which a TLS session's
		 * allocations in Rust cannot survive failing.
		 */
		while (base == MAP_FAILED && size > map_size && size > FIRST_CHUNK) {
			size = size / 2 > FIRST_CHUNK ? size / 2 : FIRST_CHUNK;
			if (size < map_size)
				size = map_size;
			base = mmap(NULL, size, PROT_READ | PROT_WRITE,
				    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
		}
		if (base == MAP_FAILED)
			return -ENOMEM;
		/* A huge page would make every 64 KiB stack cost 2 MiB. */
		madvise(base, size, MADV_NOHUGEPAGE);
		k = malloc(sizeof(*k));
		if (!k) {
			munmap(base, size);
			return -ENOMEM;
		}
		k->base = base;
		k->size = size;
		k->used = 0;
		k->next = s->chunks;
		s->chunks = k;
		if (size < s->next_chunk)
			s->next_chunk = size; /* what fitted; growing would fail again */
		else if (s->next_chunk < MAX_CHUNK)
			s->next_chunk *= 2;
	}
	p = k->base + k->used;
	ret = install_guard(s, p);
	if (ret < 0)
		return ret;
	k->used += map_size;
	s->carved++;
	out->map = p;
	out->vg_id = 0;
	if (RUNNING_ON_VALGRIND) {
		unsigned *ids = s->vg_ids;

		if (s->nvg == s->vg_cap) {
			unsigned cap = s->vg_cap ? s->vg_cap * 2 : 64;

			ids = realloc(ids, cap * sizeof(*ids));
			if (!ids)
				return -ENOMEM;
			s->vg_ids = ids;
			s->vg_cap = cap;
		}
		out->vg_id = VALGRIND_STACK_REGISTER(p + s->guard, p + map_size);
		s->vg_ids[s->nvg++] = out->vg_id;
	}
	return 0;
}

/* Lay a fiber struct at the top of a cold stack. */
static struct fiber *fiber_on(struct iou__stacks *s, const struct iou__cold_stack *c,
			      size_t map_size)
{
	uintptr_t top = (uintptr_t)c->map + map_size;
	struct fiber *f = (struct fiber *)((top - sizeof(struct fiber)) & ~(uintptr_t)63);

	memset(f, 0, sizeof(*f));
	f->map = c->map;
	f->map_size = map_size;
	f->lo = c->map + s->guard;
	f->size = (size_t)((char *)f - f->lo);
	f->vg_id = c->vg_id;
	tsan_attach(s, f);
	return f;
}

int iou__stack_get(struct reactor *r, size_t size, struct fiber **out)
{
	struct iou__stacks *s = &r->stacks;
	size_t map_size = s->guard + ((size + sizeof(struct fiber) + 63 + s->page - 1) & ~(s->page - 1));
	struct iou__stack_class *c = class_for(s, map_size);
	struct iou__cold_stack cold;
	int ret;

	if (!c)
		return -ENOMEM;
	if (iou__likely(c->warm != NULL)) {
		struct fiber *f = c->warm;

		c->warm = f->next;
		c->nwarm--;
		s->nwarm--;
		*out = f;
		return 0;
	}
	if (c->ncold) {
		cold = c->cold[--c->ncold];
	} else {
		ret = carve(s, map_size, &cold);
		if (ret < 0)
			return ret;
	}
	*out = fiber_on(s, &cold, map_size);
	return 0;
}

void iou__stack_put(struct reactor *r, struct fiber *f)
{
	struct iou__stacks *s = &r->stacks;
	struct iou__stack_class *c = class_for(s, f->map_size);

	f->state = IOU_FIBER_POOLED;
	if (iou__unlikely(!c)) {
		/* No memory for a class record: the stack stays reserved, unused. */
		return;
	}
	f->next = c->warm;
	c->warm = f;
	c->nwarm++;
	s->nwarm++;
}

/* Drop pooled fibers beyond the bound; runs only in the thread's own context. */
void iou__stacks_trim(struct reactor *r)
{
	struct iou__stacks *s = &r->stacks;
	struct iou__stack_class *c;

	for (c = s->classes; c && s->nwarm > s->warm_max; c = c->next) {
		while (c->warm && s->nwarm > s->warm_max) {
			struct fiber *f = c->warm;
			struct iou__cold_stack cold = { f->map, f->vg_id };

			if (c->ncold == c->cold_cap) {
				unsigned cap = c->cold_cap ? c->cold_cap * 2 : 64;
				struct iou__cold_stack *v = realloc(c->cold, cap * sizeof(*v));

				if (!v)
					return; /* keep it warm; try again later */
				c->cold = v;
				c->cold_cap = cap;
			}
			c->warm = f->next;
			c->nwarm--;
			s->nwarm--;
			tsan_detach(s, f);
			UNPOISON(f->lo, c->map_size - s->guard);
			madvise(f->lo, c->map_size - s->guard, MADV_DONTNEED);
			c->cold[c->ncold++] = cold;
		}
	}
}

/*
 * Stack overflow detection.  One process-wide SIGSEGV handler (chaining to
 * whatever was installed before) and one alternate signal stack per reactor
 * thread that lacks one.
 */
static struct sigaction previous;
static once_flag handler_once = ONCE_FLAG_INIT;
static int handler_err;

static size_t put_str(char *buf, size_t at, size_t cap, const char *s)
{
	while (*s && at < cap)
		buf[at++] = *s++;
	return at;
}

static size_t put_num(char *buf, size_t at, size_t cap, uintptr_t v, unsigned base)
{
	char tmp[24];
	size_t n = 0;

	do {
		tmp[n++] = "0123456789abcdef"[v % base];
		v /= base;
	} while (v);
	while (n && at < cap)
		buf[at++] = tmp[--n];
	return at;
}

static void on_segv(int sig, siginfo_t *info, void *uctx)
{
	struct reactor *r = iou__self;
	struct fiber *f = r ? r->current : NULL;
	char *addr = info->si_addr;

	if (f && addr >= f->map && addr < f->lo) {
		char msg[256];
		size_t n = 0, cap = sizeof(msg) - 1;
		struct sigaction dfl;

		n = put_str(msg, n, cap, "ioucontext: stack overflow in fiber ");
		n = put_num(msg, n, cap, f->id, 10);
		if (f->name[0]) {
			n = put_str(msg, n, cap, " \"");
			n = put_str(msg, n, cap, f->name);
			n = put_str(msg, n, cap, "\"");
		}
		n = put_str(msg, n, cap, " (stack of ");
		n = put_num(msg, n, cap, f->size, 10);
		n = put_str(msg, n, cap, " bytes, fault at 0x");
		n = put_num(msg, n, cap, (uintptr_t)addr, 16);
		n = put_str(msg, n, cap, ")\n");
		if (write(STDERR_FILENO, msg, n) < 0) {
			/* Nothing left to report to. */
		}
		/* Die of this SIGSEGV: the faulting access repeats on return. */
		memset(&dfl, 0, sizeof(dfl));
		dfl.sa_handler = SIG_DFL;
		sigaction(SIGSEGV, &dfl, NULL);
		return;
	}
	if (previous.sa_flags & SA_SIGINFO) {
		previous.sa_sigaction(sig, info, uctx);
	} else if (previous.sa_handler != SIG_DFL && previous.sa_handler != SIG_IGN) {
		previous.sa_handler(sig);
	} else {
		struct sigaction dfl;

		memset(&dfl, 0, sizeof(dfl));
		dfl.sa_handler = SIG_DFL;
		sigaction(SIGSEGV, &dfl, NULL);
	}
}

static void install_handler(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_segv;
	sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGSEGV, &sa, &previous))
		handler_err = errno;
}

int iou__overflow_handler_install(struct reactor *r)
{
	stack_t ss;

	call_once(&handler_once, install_handler);
	if (handler_err)
		return -handler_err;
	if (sigaltstack(NULL, &ss) == 0 && (ss.ss_flags & SS_DISABLE)) {
		void *p = mmap(NULL, ALTSTACK_SIZE, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

		if (p == MAP_FAILED)
			return -ENOMEM;
		ss.ss_sp = p;
		ss.ss_size = ALTSTACK_SIZE;
		ss.ss_flags = 0;
		if (sigaltstack(&ss, NULL)) {
			int err = errno;

			munmap(p, ALTSTACK_SIZE);
			return -err;
		}
		r->altstack = p;
	}
	return 0;
}

void iou__overflow_handler_release(struct reactor *r)
{
	stack_t ss = { .ss_flags = SS_DISABLE };

	if (!r->altstack)
		return;
	sigaltstack(&ss, NULL);
	munmap(r->altstack, ALTSTACK_SIZE);
	r->altstack = NULL;
}
