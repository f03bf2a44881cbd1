/* SPDX-License-Identifier: MIT */
/*
 * Context-switch cost: two parties hand control back and forth N times and
 * the wall time is divided by the number of hand-overs.  Measured for
 * ioucontext (two fibers calling fiber_yield()), for glibc swapcontext()
 * between two ucontexts, and for a bare sigsetjmp(env, 0)/siglongjmp()
 * pair between two stacks, the primitive ioucontext switches with and so
 * the floor it can approach.  Each is warmed up, then timed BENCH_REPS times;
 * the best repetition is reported as "switch <name> <ns per switch>".
 * swapcontext() makes a system call per switch, so it runs a tenth of the
 * round trips to keep the whole program within seconds.  The floating-point
 * exception flags are cleared before each timed run: swapcontext() (like
 * Boost's jump_fcontext) reloads MXCSR, and a peer whose saved flags differ
 * from main's pays ~50 ns per switch here for loading a changed MXCSR.
 *
 * Usage: bench-switch [N]   (N round trips per repetition, default 10M)
 */

/* Fortified siglongjmp refuses to jump to another stack; see DESIGN.md §4. */
#undef _FORTIFY_SOURCE
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <fenv.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <ucontext.h>

#include <ioucontext/ioucontext.h>

#include "bench.h"

/*
 * The ucontext and sigsetjmp peers switch stacks behind AddressSanitizer's
 * back (ioucontext annotates its own switches); skip them under ASan.
 */
#if defined(__SANITIZE_ADDRESS__)
#define PEERS 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define PEERS 0
#endif
#endif
#ifndef PEERS
#define PEERS 1
#endif

/* Stack for the ucontext-based peers; their bodies use very little. */
#define PEER_STACK_SIZE (64 * 1024)

/* State shared by the two ping-pong fibers of one repetition. */
struct pingpong {
	struct reactor *r;
	long n;	      /* yields each fiber makes */
	int started;  /* fibers that have begun their loop */
	int finished; /* fibers that have left their loop */
	int64_t t0;   /* when the first fiber began */
	int64_t t1;   /* when the second fiber finished */
	int err;      /* first failure of fiber_yield(), or 0 */
};

static void *pingpong_fiber(void *arg)
{
	struct pingpong *pp = arg;

	if (pp->started++ == 0)
		pp->t0 = iou_now();
	for (long i = 0; i < pp->n; i++) {
		int rc = fiber_yield(pp->r);

		if (rc < 0) {
			pp->err = rc;
			break;
		}
	}
	if (++pp->finished == 2)
		pp->t1 = iou_now();
	return NULL;
}

/* ns per switch for one repetition: 2n yields, each one switch. */
static double run_ioucontext(struct reactor *r, long n)
{
	struct pingpong pp = { .r = r, .n = n };
	struct fiber *a, *b;
	int rc;

	rc = fiber_spawn(r, pingpong_fiber, &pp, &a);
	if (rc < 0)
		bench_die("fiber_spawn", rc);
	rc = fiber_spawn(r, pingpong_fiber, &pp, &b);
	if (rc < 0)
		bench_die("fiber_spawn", rc);
	rc = fiber_join(a, NULL);
	if (rc < 0)
		bench_die("fiber_join", rc);
	rc = fiber_join(b, NULL);
	if (rc < 0)
		bench_die("fiber_join", rc);
	if (pp.err < 0)
		bench_die("fiber_yield", pp.err);
	return (double)(pp.t1 - pp.t0) / (2.0 * (double)n);
}

static ucontext_t uc_main, uc_peer;

static void uc_body(void)
{
	for (;;)
		swapcontext(&uc_peer, &uc_main);
}

/* ns per switch: main and the peer each swap n times. */
static double run_swapcontext(long n)
{
	int64_t t0 = iou_now();

	for (long i = 0; i < n; i++)
		swapcontext(&uc_main, &uc_peer);
	return (double)(iou_now() - t0) / (2.0 * (double)n);
}

static sigjmp_buf sj_main, sj_peer;
static ucontext_t sj_uc;

static void sj_body(void)
{
	for (;;)
		if (!sigsetjmp(sj_peer, 0))
			siglongjmp(sj_main, 1);
}

/* ns per switch: each hand-over is one sigsetjmp plus one siglongjmp. */
static double run_sigsetjmp(long n)
{
	int64_t t0 = iou_now();

	for (long i = 0; i < n; i++)
		if (!sigsetjmp(sj_main, 0))
			siglongjmp(sj_peer, 1);
	return (double)(iou_now() - t0) / (2.0 * (double)n);
}

/*
 * The same pair wrapped in a function, as any switch API must be: after the
 * stack changes, that function's return mispredicts.  This is the floor for
 * a fiber_yield() built on sigsetjmp/siglongjmp.
 */
static sigjmp_buf sf_main, sf_peer;
static ucontext_t sf_uc;

__attribute__((noinline)) static void sf_switch(sigjmp_buf from, sigjmp_buf to)
{
	if (!sigsetjmp(from, 0))
		siglongjmp(to, 1);
}

static void sf_body(void)
{
	for (;;)
		sf_switch(sf_peer, sf_main);
}

static double run_sigsetjmp_fn(long n)
{
	int64_t t0 = iou_now();

	for (long i = 0; i < n; i++)
		sf_switch(sf_main, sf_peer);
	return (double)(iou_now() - t0) / (2.0 * (double)n);
}

/* Prepare @uc to run @body on a fresh stack (getcontext saves MXCSR: clear first). */
static void make_peer(ucontext_t *uc, void (*body)(void))
{
	void *stack = malloc(PEER_STACK_SIZE);

	if (!stack)
		bench_die("malloc", ENOMEM);
	if (getcontext(uc))
		bench_die("getcontext", errno);
	uc->uc_stack.ss_sp = stack;
	uc->uc_stack.ss_size = PEER_STACK_SIZE;
	uc->uc_link = NULL;
	makecontext(uc, body, 0);
}

static void setup_peers(void)
{
	/* The flags getcontext() saves are the clear ones used for timing. */
	feclearexcept(FE_ALL_EXCEPT);
	make_peer(&uc_peer, uc_body);
	make_peer(&sj_uc, sj_body);
	make_peer(&sf_uc, sf_body);
	/* Enter each body once: it records its jump buffer and jumps straight back. */
	if (!sigsetjmp(sj_main, 0))
		setcontext(&sj_uc);
	if (!sigsetjmp(sf_main, 0))
		setcontext(&sf_uc);
}

static void report(const char *name, double (*run)(void *, long), void *ctx, long n)
{
	double best = 0;
	long warm = n / 10 > 1000 ? n / 10 : 1000;

	feclearexcept(FE_ALL_EXCEPT);
	run(ctx, warm);
	printf("# %s:", name);
	for (int rep = 0; rep < BENCH_REPS; rep++) {
		double ns;

		feclearexcept(FE_ALL_EXCEPT);
		ns = run(ctx, n);

		printf(" %.2f", ns);
		if (rep == 0 || ns < best)
			best = ns;
	}
	printf("\n");
	bench_result("switch", name, best);
}

static double do_ioucontext(void *ctx, long n)
{
	return run_ioucontext(ctx, n);
}

static double do_swapcontext(void *ctx, long n)
{
	(void)ctx;
	return run_swapcontext(n);
}

static double do_sigsetjmp_fn(void *ctx, long n)
{
	(void)ctx;
	return run_sigsetjmp_fn(n);
}

static double do_sigsetjmp(void *ctx, long n)
{
	(void)ctx;
	return run_sigsetjmp(n);
}

int main(int argc, char **argv)
{
	long n = bench_count(argc, argv, 1, 10000000);
	struct reactor *r;
	int rc;

	rc = reactor_create(NULL, &r);
	if (rc < 0)
		bench_die("reactor_create", rc);
	printf("# bench-switch: %ld round trips x %d repetitions, best reported; "
	       "reactor cpu %d\n",
	       n, BENCH_REPS, reactor_cpu(r));

	report("ioucontext", do_ioucontext, r, n);

	if (PEERS) {
		setup_peers();
		report("swapcontext", do_swapcontext, NULL, n / 10 > 1000 ? n / 10 : 1000);
		report("sigsetjmp", do_sigsetjmp, NULL, n);
		report("sigsetjmp_fn", do_sigsetjmp_fn, NULL, n);
	} else {
		printf("# swapcontext and sigsetjmp peers skipped under AddressSanitizer\n");
	}

	rc = reactor_destroy(r);
	if (rc < 0)
		bench_die("reactor_destroy", rc);
	return 0;
}
