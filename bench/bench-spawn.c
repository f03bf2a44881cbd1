/* SPDX-License-Identifier: MIT */
/*
 * Fiber spawn+join cost on pooled stacks.  A driver fiber spawns a trivial
 * fiber and joins it, N times; the same loop is also run from main, outside
 * any fiber, where fiber_join() drives the reactor itself; and a batch
 * variant spawns BATCH fibers before joining them all, so that fibers queue
 * up and the pool is drained and refilled each round.  Every variant is
 * warmed up first, so that all stacks come from the pool and no system call
 * is expected, then timed BENCH_REPS times; the best repetition is reported
 * as "spawn_join <variant> <ns per fiber>".
 *
 * Usage: bench-spawn [N]   (fibers per repetition, default 1M)
 */
#include <stdint.h>
#include <stdio.h>

#include <ioucontext/ioucontext.h>

#include "bench.h"

/* Fibers spawned before the first is joined, in the batch variant. */
#define BATCH 1000

/* The fiber under test: hands its argument back so joins can be checked. */
static void *child(void *arg)
{
	return arg;
}

/* Spawn and join @n fibers one after the other; returns elapsed ns. */
static int64_t spawn_join_loop(struct reactor *r, long n)
{
	int64_t t0 = iou_now();

	for (long i = 0; i < n; i++) {
		void *want = (void *)(intptr_t)(i + 1), *got;
		struct fiber *f;
		int rc;

		rc = fiber_spawn(r, child, want, &f);
		if (rc < 0)
			bench_die("fiber_spawn", rc);
		rc = fiber_join(f, &got);
		if (rc < 0)
			bench_die("fiber_join", rc);
		if (got != want)
			bench_die("fiber_join returned the wrong result", EPROTO);
	}
	return iou_now() - t0;
}

/* Spawn BATCH fibers, then join them all, until @n are done; elapsed ns. */
static int64_t spawn_join_batch(struct reactor *r, long n)
{
	static struct fiber *batch[BATCH];
	int64_t t0 = iou_now();

	for (long done = 0; done < n; done += BATCH) {
		for (intptr_t i = 0; i < BATCH; i++) {
			int rc = fiber_spawn(r, child, (void *)(i + 1), &batch[i]);

			if (rc < 0)
				bench_die("fiber_spawn", rc);
		}
		for (intptr_t i = 0; i < BATCH; i++) {
			void *got;
			int rc = fiber_join(batch[i], &got);

			if (rc < 0)
				bench_die("fiber_join", rc);
			if (got != (void *)(i + 1))
				bench_die("fiber_join returned the wrong result", EPROTO);
		}
	}
	return iou_now() - t0;
}

/* What one variant runs, and where (the driver fiber or main). */
struct variant {
	const char *name;
	int64_t (*loop)(struct reactor *r, long n);
	struct reactor *r;
	long n;
};

/* Warm up, time BENCH_REPS repetitions, print the best. */
static void *run_variant(void *arg)
{
	struct variant *v = arg;
	long n = v->loop == spawn_join_batch ? (v->n + BATCH - 1) / BATCH * BATCH : v->n;
	long warm = n / 10 > 2 * BATCH ? n / 10 : 2 * BATCH;
	double best = 0;

	v->loop(v->r, warm);
	printf("# %s:", v->name);
	for (int rep = 0; rep < BENCH_REPS; rep++) {
		double ns = (double)v->loop(v->r, n) / (double)n;

		printf(" %.1f", ns);
		if (rep == 0 || ns < best)
			best = ns;
	}
	printf("\n");
	bench_result("spawn_join", v->name, best);
	return NULL;
}

/* Run @v inside a fiber spawned for the purpose. */
static void in_fiber(struct variant *v)
{
	struct fiber *driver;
	int rc;

	rc = fiber_spawn(v->r, run_variant, v, &driver);
	if (rc < 0)
		bench_die("fiber_spawn", rc);
	rc = fiber_join(driver, NULL);
	if (rc < 0)
		bench_die("fiber_join", rc);
}

int main(int argc, char **argv)
{
	long n = bench_count(argc, argv, 1, 1000000);
	struct reactor_options opts;
	struct reactor *r;
	int rc;

	/* The pool must hold a whole batch, or the batch variant would map. */
	reactor_options_init(&opts);
	if (opts.fiber_pool < BATCH + 2)
		opts.fiber_pool = BATCH + 2;
	rc = reactor_create(&opts, &r);
	if (rc < 0)
		bench_die("reactor_create", rc);
	printf("# bench-spawn: %ld fibers x %d repetitions, best reported; "
	       "stack %zu KiB, pool %u, reactor cpu %d\n",
	       n, BENCH_REPS, opts.stack_size / 1024, opts.fiber_pool, reactor_cpu(r));

	in_fiber(&(struct variant){ "fiber", spawn_join_loop, r, n });
	run_variant(&(struct variant){ "main", spawn_join_loop, r, n });
	in_fiber(&(struct variant){ "batch1000", spawn_join_batch, r, n });

	rc = reactor_destroy(r);
	if (rc < 0)
		bench_die("reactor_destroy", rc);
	return 0;
}
