/* SPDX-License-Identifier: MIT */
/*
 * tour: a short guided run of the core library, printing what each step
 * shows: the thread's reactor and how it was set up, fibers taking turns,
 * sleeps waking in deadline order, join collecting results, a blocking call
 * from main while fibers run, many fibers at once, two threads with their
 * own pinned reactors, and the cookie eaten at teardown.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <threads.h>

#include <ioucontext/ioucontext.h>

static void step(const char *title)
{
	printf("\n== %s\n", title);
}

static void *player(void *arg)
{
	struct reactor *r = reactor_get();
	const char *name = arg;

	for (int i = 1; i <= 3; i++) {
		printf("  %s: turn %d\n", name, i);
		fiber_yield(r);
	}
	return NULL;
}

static void *napper(void *arg)
{
	intptr_t ms = (intptr_t)arg;
	int64_t t0 = iou_now();

	fiber_sleep(reactor_get(), ms * IOU_MSEC);
	printf("  slept %3" PRIdPTR " ms, woke after %5.1f ms\n", ms, (iou_now() - t0) / 1e6);
	return NULL;
}

static void *square(void *arg)
{
	intptr_t n = (intptr_t)arg;

	fiber_yield(reactor_get());
	return (void *)(n * n);
}

static void *count_up(void *arg)
{
	(*(long *)arg)++;
	return NULL;
}

static int thread_main(void *arg)
{
	struct reactor *r = reactor_get();

	*(int *)arg = r ? reactor_cpu(r) : -1;
	return 0;
}

static void eat_cookie(void *cookie)
{
	printf("  cookie \"%s\" eaten at teardown\n", (const char *)cookie);
}

static int die(const char *what, int err)
{
	fprintf(stderr, "tour: %s: %s\n", what, strerror(-err));
	return 1;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = { { "help", no_argument, NULL, 'h' },
						  { "fibers", required_argument, NULL, 'n' },
						  { NULL, 0, NULL, 0 } };
	long many = 100000, counted = 0;
	struct fiber *f[5];
	struct reactor *r;
	int c, ret, cpus[2];
	int64_t t0;

	while ((c = getopt_long(argc, argv, "hn:", longopts, NULL)) != -1) {
		switch (c) {
		case 'n':
			many = strtol(optarg, NULL, 10);
			if (many < 1 || many > 10000000) {
				fprintf(stderr, "tour: --fibers must be 1..10000000\n");
				return 2;
			}
			break;
		case 'h':
			printf("usage: tour [--fibers N]\n"
			       "A guided run of ioucontext's reactor and fibers.\n");
			return 0;
		default:
			fprintf(stderr, "usage: tour [--fibers N]\n");
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "tour: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}

	step("1. the thread's reactor, created by the first reactor_get()");
	r = reactor_get();
	if (!r) {
		ret = reactor_create(NULL, &r);
		return die("creating the reactor", ret);
	}
	printf("  io_uring with %u entries, flags:%s%s%s\n", reactor_ring_entries(r),
	       reactor_ring_flags(r) & IOU_RING_SINGLE_ISSUER ? " SINGLE_ISSUER" : "",
	       reactor_ring_flags(r) & IOU_RING_DEFER_TASKRUN ? " DEFER_TASKRUN" : "",
	       reactor_ring_flags(r) & IOU_RING_COOP_TASKRUN ? " COOP_TASKRUN" : "");
	if (reactor_cpu(r) >= 0)
		printf("  thread pinned to CPU %d\n", reactor_cpu(r));
	else
		printf("  not pinned: %s\n", strerror(-reactor_cpu(r)));
	reactor_cookie_jar(r, "main's cookie", eat_cookie);

	step("2. three fibers take turns with fiber_yield()");
	fiber_spawn(r, player, "ann", NULL);
	fiber_spawn(r, player, "bob", NULL);
	fiber_spawn(r, player, "cat", NULL);
	if ((ret = reactor_run(r)) < 0)
		return die("reactor_run", ret);

	step("3. sleeps live in a timer heap and wake in deadline order");
	fiber_spawn(r, napper, (void *)(intptr_t)30, NULL);
	fiber_spawn(r, napper, (void *)(intptr_t)10, NULL);
	fiber_spawn(r, napper, (void *)(intptr_t)20, NULL);
	if ((ret = reactor_run(r)) < 0)
		return die("reactor_run", ret);

	step("4. fiber_join() collects each fiber's result");
	for (intptr_t i = 0; i < 5; i++)
		fiber_spawn(r, square, (void *)(i + 1), &f[i]);
	for (int i = 0; i < 5; i++) {
		void *res;

		fiber_join(f[i], &res);
		printf("  fiber %" PRIu64 " returned %" PRIdPTR "\n", fiber_id(f[i]) , (intptr_t)res);
	}

	step("5. a blocking call from main drives the reactor until it is done");
	fiber_spawn(r, napper, (void *)(intptr_t)5, NULL);
	fiber_spawn(r, napper, (void *)(intptr_t)80, NULL);
	fiber_sleep(r, 40 * IOU_MSEC);
	printf("  main slept 40 ms; work still pending: %s\n", reactor_runnable(r) ? "yes" : "no");
	reactor_run(r);
	printf("  after reactor_run: pending: %s\n", reactor_runnable(r) ? "yes" : "no");

	step("6. many fibers, each with its own guarded stack");
	t0 = iou_now();
	for (long i = 0; i < many; i++) {
		ret = fiber_spawn(r, count_up, &counted, NULL);
		if (ret < 0)
			return die("fiber_spawn", ret);
	}
	if ((ret = reactor_run(r)) < 0)
		return die("reactor_run", ret);
	printf("  %ld fibers alive at once, run and finished in %.1f ms (fresh stacks)\n",
	       counted, (iou_now() - t0) / 1e6);
	counted = 0;
	t0 = iou_now();
	for (long done = 0; done < many; done += 1000) {
		for (long i = done; i < many && i < done + 1000; i++)
			fiber_spawn(r, count_up, &counted, NULL);
		reactor_run(r);
	}
	printf("  %ld more in batches of 1,000 on pooled stacks: %.0f ns per fiber\n", counted,
	       (double)(iou_now() - t0) / (double)counted);

	step("7. each thread gets its own reactor, pinned to the least used CPU");
	for (int i = 0; i < 2; i++) {
		thrd_t t;

		thrd_create(&t, thread_main, &cpus[i]);
		thrd_join(t, NULL);
	}
	printf("  main's reactor: CPU %d; thread 1's: CPU %d; thread 2's (after thread 1 ended): CPU %d\n",
	       reactor_cpu(r), cpus[0], cpus[1]);

	step("8. teardown");
	reactor_destroy(r);
	printf("\ntour complete\n");
	return 0;
}
