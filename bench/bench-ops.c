/* SPDX-License-Identifier: MIT */
/*
 * The cost of an operation: IORING_OP_NOP round trips through ioucontext
 * (a fiber parks, the driver submits and reaps, the fiber resumes) against
 * the same requests made with raw liburing in a loop, in the same run.  Two
 * shapes: one request in flight at a time (latency: every round trip is a
 * system call on both sides), and 64 in flight (64 fibers against batches
 * of 64 SQEs per io_uring_enter: the per-request overhead).
 *
 *   bench-ops [N]      N round trips per measurement (default 2,000,000)
 */
#define _GNU_SOURCE
#include <liburing.h>

#include <ioucontext/ioucontext.h>

#include "bench.h"

#define WIDE 64

static double best_ns(double a, double b)
{
	return a < b ? a : b;
}

/* The raw ring gets the same setup flags as the reactor's. */
static void raw_init(struct io_uring *ring)
{
	struct io_uring_params p = { .flags = (1U << 12) | (1U << 13) | (1U << 8) };
	int ret = io_uring_queue_init_params(WIDE, ring, &p);

	if (ret < 0)
		bench_die("io_uring_queue_init_params", ret);
}

static double raw_serial(long n)
{
	struct io_uring ring;
	struct io_uring_cqe *cqe;
	int64_t t;
	int ret;

	raw_init(&ring);
	t = iou_now();
	for (long i = 0; i < n; i++) {
		io_uring_prep_nop(io_uring_get_sqe(&ring));
		ret = io_uring_submit_and_wait(&ring, 1);
		if (ret < 0 || io_uring_peek_cqe(&ring, &cqe) < 0)
			bench_die("raw nop", ret);
		io_uring_cqe_seen(&ring, cqe);
	}
	t = iou_now() - t;
	io_uring_queue_exit(&ring);
	return (double)t / (double)n;
}

static double raw_wide(long n)
{
	struct io_uring ring;
	int64_t t;
	int ret;

	raw_init(&ring);
	t = iou_now();
	for (long done = 0; done < n; done += WIDE) {
		struct io_uring_cqe *cqe;
		unsigned head, k = 0;

		for (int j = 0; j < WIDE; j++)
			io_uring_prep_nop(io_uring_get_sqe(&ring));
		ret = io_uring_submit_and_wait(&ring, WIDE);
		if (ret < 0)
			bench_die("raw nop batch", ret);
		io_uring_for_each_cqe(&ring, head, cqe) k++;
		io_uring_cq_advance(&ring, k);
	}
	t = iou_now() - t;
	io_uring_queue_exit(&ring);
	return (double)t / (double)n;
}

static long per_fiber;

static void *nop_loop(void *arg)
{
	struct reactor *r = reactor_get();

	(void)arg;
	for (long i = 0; i < per_fiber; i++) {
		int ret = iou_nop(r);

		if (ret < 0)
			bench_die("iou_nop", ret);
	}
	return NULL;
}

static double iou_fibers(long n, int fibers)
{
	struct reactor *r = reactor_get();
	int64_t t;
	int ret;

	per_fiber = n / fibers;
	t = iou_now();
	for (int i = 0; i < fibers; i++) {
		ret = fiber_spawn(r, nop_loop, NULL, NULL);
		if (ret < 0)
			bench_die("fiber_spawn", ret);
	}
	ret = reactor_run(r);
	if (ret < 0)
		bench_die("reactor_run", ret);
	t = iou_now() - t;
	return (double)t / (double)(per_fiber * fibers);
}

int main(int argc, char **argv)
{
	long n = bench_count(argc, argv, 1, 2000000);
	double rs = 1e30, rw = 1e30, is = 1e30, iw = 1e30;

	if (!reactor_get())
		bench_die("reactor_get", ENOMEM);
	for (int rep = 0; rep < BENCH_REPS; rep++) {
		rs = best_ns(rs, raw_serial(n / 4));
		is = best_ns(is, iou_fibers(n / 4, 1));
		rw = best_ns(rw, raw_wide(n));
		iw = best_ns(iw, iou_fibers(n, WIDE));
	}
	printf("# nop round trip, ns per operation (best of %d)\n", BENCH_REPS);
	bench_result("ops", "raw_serial_ns", rs);
	bench_result("ops", "iou_serial_ns", is);
	bench_result("ops", "raw_wide64_ns", rw);
	bench_result("ops", "iou_wide64_ns", iw);
	return 0;
}
