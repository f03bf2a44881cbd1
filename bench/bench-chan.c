/* SPDX-License-Identifier: MIT */
/*
 * Same-reactor synchronisation costs (<ioucontext/sync.h>):
 *
 * - "chan pingpong": two fibers bounce a 64-bit item through a pair of
 *   channels of capacity 1, N round trips; ns per message (2N messages).
 *   Every message parks the receiver and wakes it, so each is one switch
 *   plus the channel's bookkeeping; "chan yield" is the bare fiber_yield()
 *   switch measured the same way, the floor for it.
 * - "chan rendezvous": the same over capacity-0 channels.
 * - "chan stream": one producer, one consumer, a channel of capacity 64;
 *   ns per item (the sides switch once per 64 items at best).
 * - "mutex uncontended": iou_mutex_lock()+iou_mutex_unlock() in a fiber,
 *   ns per pair; "mutex c11_mtx" is C11 mtx_lock()+mtx_unlock() (glibc's
 *   uncontended futex-free path) in the same loop, for reference.
 * - "sem uncontended": iou_sem_acquire()+iou_sem_release(), ns per pair.
 *
 * Each is warmed up, then timed BENCH_REPS times; the best repetition is
 * reported as "<benchmark> <name> <ns>".
 *
 * Usage: bench-chan [N]   (N round trips or pairs per repetition, default 2M)
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <stdint.h>
#include <stdio.h>
#include <threads.h>

#include <ioucontext/ioucontext.h>

#include "bench.h"

struct pingpong {
	struct iou_chan there, back;
	long n;
	int64_t t0, t1;
	int err;
};

static void *ping(void *arg)
{
	struct pingpong *pp = arg;
	uint64_t v = 0;

	pp->t0 = iou_now();
	for (long i = 0; i < pp->n; i++) {
		int rc = iou_chan_send(&pp->there, &(uint64_t){ (uint64_t)i });

		if (rc == 0)
			rc = iou_chan_recv(&pp->back, &v);
		if (rc < 0 || v != (uint64_t)i + 1) {
			pp->err = rc < 0 ? rc : -EPROTO;
			break;
		}
	}
	pp->t1 = iou_now();
	return NULL;
}

static void *pong(void *arg)
{
	struct pingpong *pp = arg;
	uint64_t v = 0;

	for (long i = 0; i < pp->n; i++) {
		int rc = iou_chan_recv(&pp->there, &v);

		if (rc == 0)
			rc = iou_chan_send(&pp->back, &(uint64_t){ v + 1 });
		if (rc < 0) {
			pp->err = rc;
			break;
		}
	}
	return NULL;
}

static void run_pair(struct reactor *r, fiber_fn *a_fn, fiber_fn *b_fn, void *arg)
{
	struct fiber *a, *b;
	int rc;

	if ((rc = fiber_spawn(r, a_fn, arg, &a)) < 0 || (rc = fiber_spawn(r, b_fn, arg, &b)) < 0)
		bench_die("fiber_spawn", rc);
	if ((rc = fiber_join(a, NULL)) < 0 || (rc = fiber_join(b, NULL)) < 0)
		bench_die("fiber_join", rc);
}

static double pingpong_cap(struct reactor *r, long n, size_t cap)
{
	struct pingpong pp = { .n = n };
	int rc;

	if ((rc = iou_chan_init(&pp.there, sizeof(uint64_t), cap)) < 0 ||
	    (rc = iou_chan_init(&pp.back, sizeof(uint64_t), cap)) < 0)
		bench_die("iou_chan_init", rc);
	run_pair(r, ping, pong, &pp);
	if (pp.err < 0)
		bench_die("channel ping-pong", pp.err);
	iou_chan_destroy(&pp.there);
	iou_chan_destroy(&pp.back);
	return (double)(pp.t1 - pp.t0) / (2.0 * (double)n);
}

static double do_pingpong(struct reactor *r, long n)
{
	return pingpong_cap(r, n, 1);
}

static double do_rendezvous(struct reactor *r, long n)
{
	return pingpong_cap(r, n, 0);
}

struct yielders {
	struct reactor *r;
	long n;
	int64_t t0, t1;
	int started, finished;
};

static void *yielder(void *arg)
{
	struct yielders *y = arg;

	if (y->started++ == 0)
		y->t0 = iou_now();
	for (long i = 0; i < y->n; i++)
		fiber_yield(y->r);
	if (++y->finished == 2)
		y->t1 = iou_now();
	return NULL;
}

static double do_yield(struct reactor *r, long n)
{
	struct yielders y = { .r = r, .n = n };

	run_pair(r, yielder, yielder, &y);
	return (double)(y.t1 - y.t0) / (2.0 * (double)n);
}

struct stream {
	struct iou_chan ch;
	long n;
	int64_t t0, t1;
	int err;
};

static void *producer(void *arg)
{
	struct stream *s = arg;

	s->t0 = iou_now();
	for (long i = 0; i < s->n; i++) {
		int rc = iou_chan_send(&s->ch, &(uint64_t){ (uint64_t)i });

		if (rc < 0) {
			s->err = rc;
			break;
		}
	}
	return NULL;
}

static void *consumer(void *arg)
{
	struct stream *s = arg;
	uint64_t v = 0;

	for (long i = 0; i < s->n; i++) {
		int rc = iou_chan_recv(&s->ch, &v);

		if (rc < 0 || v != (uint64_t)i) {
			s->err = rc < 0 ? rc : -EPROTO;
			break;
		}
	}
	s->t1 = iou_now();
	return NULL;
}

static double do_stream(struct reactor *r, long n)
{
	struct stream s = { .n = n };
	int rc = iou_chan_init(&s.ch, sizeof(uint64_t), 64);

	if (rc < 0)
		bench_die("iou_chan_init", rc);
	run_pair(r, producer, consumer, &s);
	if (s.err < 0)
		bench_die("channel stream", s.err);
	iou_chan_destroy(&s.ch);
	return (double)(s.t1 - s.t0) / (double)n;
}

/* A loop body run inside one fiber, timed there. */
struct solo {
	long n;
	double (*loop)(long n);
	double ns;
};

static void *solo_fiber(void *arg)
{
	struct solo *s = arg;

	s->ns = s->loop(s->n);
	return NULL;
}

static double in_fiber(struct reactor *r, long n, double (*loop)(long))
{
	struct solo s = { .n = n, .loop = loop };
	struct fiber *f;
	int rc;

	if ((rc = fiber_spawn(r, solo_fiber, &s, &f)) < 0)
		bench_die("fiber_spawn", rc);
	if ((rc = fiber_join(f, NULL)) < 0)
		bench_die("fiber_join", rc);
	return s.ns;
}

static struct iou_mutex mutex = IOU_MUTEX_INIT;
static struct iou_sem sem = IOU_SEM_INIT(1);
static mtx_t c11;
static volatile long sink;

static double mutex_loop(long n)
{
	int64_t t0 = iou_now();

	for (long i = 0; i < n; i++) {
		if (iou_mutex_lock(&mutex) < 0)
			bench_die("iou_mutex_lock", -EIO);
		sink = i;
		iou_mutex_unlock(&mutex);
	}
	return (double)(iou_now() - t0) / (double)n;
}

static double c11_loop(long n)
{
	int64_t t0 = iou_now();

	for (long i = 0; i < n; i++) {
		mtx_lock(&c11);
		sink = i;
		mtx_unlock(&c11);
	}
	return (double)(iou_now() - t0) / (double)n;
}

static double sem_loop(long n)
{
	int64_t t0 = iou_now();

	for (long i = 0; i < n; i++) {
		if (iou_sem_acquire(&sem) < 0)
			bench_die("iou_sem_acquire", -EIO);
		sink = i;
		iou_sem_release(&sem);
	}
	return (double)(iou_now() - t0) / (double)n;
}

static double do_mutex(struct reactor *r, long n)
{
	return in_fiber(r, n, mutex_loop);
}

static double do_c11(struct reactor *r, long n)
{
	return in_fiber(r, n, c11_loop);
}

static double do_sem(struct reactor *r, long n)
{
	return in_fiber(r, n, sem_loop);
}

static void report(const char *bench, const char *name, double (*run)(struct reactor *, long),
		   struct reactor *r, long n)
{
	double best = 0;

	run(r, n / 10 > 1000 ? n / 10 : 1000);
	printf("# %s %s:", bench, name);
	for (int rep = 0; rep < BENCH_REPS; rep++) {
		double ns = run(r, n);

		printf(" %.2f", ns);
		if (rep == 0 || ns < best)
			best = ns;
	}
	printf("\n");
	bench_result(bench, name, best);
}

int main(int argc, char **argv)
{
	long n = bench_count(argc, argv, 1, 2000000);
	struct reactor *r;
	int rc;

	rc = reactor_create(NULL, &r);
	if (rc < 0)
		bench_die("reactor_create", rc);
	if (mtx_init(&c11, mtx_plain) != thrd_success)
		bench_die("mtx_init", ENOMEM);
	printf("# bench-chan: %ld round trips or pairs x %d repetitions, best reported; "
	       "reactor cpu %d\n",
	       n, BENCH_REPS, reactor_cpu(r));

	report("chan", "pingpong", do_pingpong, r, n);
	report("chan", "rendezvous", do_rendezvous, r, n);
	report("chan", "yield", do_yield, r, n);
	report("chan", "stream", do_stream, r, n);
	report("mutex", "uncontended", do_mutex, r, n * 10);
	report("mutex", "c11_mtx", do_c11, r, n * 10);
	report("sem", "uncontended", do_sem, r, n * 10);

	mtx_destroy(&c11);
	rc = reactor_destroy(r);
	if (rc < 0)
		bench_die("reactor_destroy", rc);
	return 0;
}
