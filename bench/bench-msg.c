/* SPDX-License-Identifier: MIT */
/*
 * Messages between two threads pinned to two CPUs: ioucontext's reactor
 * mailboxes (reactor_post from a fiber, and fibers through a cross-reactor
 * channel)
 * against a pair of threads passing messages through a queue under a C11
 * mutex with condition variables, and through the same queue with eventfd
 * wake-ups waited for in epoll, all in the same run.  Two shapes:
 *
 *   round trip   one message in flight: A sends, B answers, A sends again.
 *                Every message wakes a sleeping thread; the figure is ns
 *                per round trip.
 *   streaming    A sends N messages as fast as the receiver takes them,
 *                through a queue of 1024; the receiver takes everything
 *                queued at each wake-up (batching, the same for all).  The
 *                figure is messages per second.
 *
 *   bench-msg [N_STREAM [N_ROUNDTRIP]]    defaults 2,000,000 and 20,000
 */
#define _GNU_SOURCE
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <threads.h>
#include <unistd.h>

#include <ioucontext/ioucontext.h>

#include "bench.h"

#define QUEUE 4096 /* every queue: the mailbox, the channel, the peers' rings */
#define REPS 3

static long n_stream, n_rtt;

static void pin(int cpu)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	sched_setaffinity(0, sizeof(set), &set); /* best effort, as the reactors do */
}

static int ncpus(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	return n > 0 ? (int)n : 1;
}

/* ---- ioucontext: posted calls ----------------------------------------------------- */

static struct reactor_group *group;
static long count[2]; /* per member, touched by that member only */
static int64_t t_start, t_end;
static atomic_int started;

/* Round trip: each call answers with a call to the other member. */
static void rtt_call(struct reactor *r, void *arg, int status)
{
	unsigned me = (unsigned)(uintptr_t)arg;

	if (status < 0)
		bench_die("round trip call", status);
	if (me == 0 && ++count[0] == n_rtt) {
		t_end = iou_now();
		reactor_stop(r, reactor_group_ref(group, 0));
		reactor_stop(r, reactor_group_ref(group, 1));
		return;
	}
	if (reactor_post_try(r, reactor_group_ref(group, 1 - me), rtt_call,
			     (void *)(uintptr_t)(1 - me)) < 0)
		bench_die("round trip post", -EAGAIN);
}

static int rtt_member(struct reactor *r, unsigned index, void *arg)
{
	(void)arg;
	if (index == 0) {
		t_start = iou_now();
		if (reactor_post(r, reactor_group_ref(group, 1), rtt_call, (void *)(uintptr_t)1))
			return -1;
	}
	return reactor_serve(r);
}

/* Streaming: member 0 posts n calls, member 1 counts them. */
static void stream_call(struct reactor *r, void *arg, int status)
{
	(void)arg;
	if (status < 0)
		bench_die("stream call", status);
	if (++count[1] == n_stream) {
		t_end = iou_now();
		reactor_stop(r, reactor_group_ref(group, 1));
	}
}

/* The sender: a fiber posting one call at a time (parks when its lane is full). */
static void *stream_sender(void *arg)
{
	struct reactor *r = reactor_current();

	(void)arg;
	t_start = iou_now();
	for (long i = 0; i < n_stream; i++) {
		int ret = reactor_post(r, reactor_group_ref(group, 1), stream_call, NULL);

		if (ret < 0)
			bench_die("reactor_post", ret);
	}
	return NULL;
}

static int stream_member(struct reactor *r, unsigned index, void *arg)
{
	(void)arg;
	if (index == 1)
		return reactor_serve(r);
	if (fiber_spawn(r, stream_sender, NULL, NULL) < 0)
		return -1;
	return reactor_run(r);
}

static double run_group(reactor_group_fn *fn)
{
	int res[2];
	int ret;

	count[0] = count[1] = 0;
	ret = reactor_group_start(2, fn, NULL, &group);
	if (ret < 0)
		bench_die("reactor_group_start", ret);
	ret = reactor_group_join(group, res);
	if (ret < 0 || res[0] < 0 || res[1] < 0)
		bench_die("reactor group", ret < 0 ? ret : -EIO);
	return (double)(t_end - t_start);
}

/* ---- ioucontext: fibers through a cross-reactor channel ------------------------------ */

static struct iou_xchan *xch[2]; /* [0]: A to B, [1]: B to A */
static bool xstream;

static void *xfiber(void *arg)
{
	unsigned me = (unsigned)(uintptr_t)arg;
	long n = xstream ? n_stream : n_rtt, item = 0;
	int ret = 0;

	if (me == 0)
		t_start = iou_now();
	for (long i = 0; i < n && ret == 0; i++) {
		if (xstream) {
			ret = me == 0 ? iou_xchan_send(xch[0], &i) : iou_xchan_recv(xch[0], &item);
		} else if (me == 0) {
			ret = iou_xchan_send(xch[0], &i);
			if (ret == 0)
				ret = iou_xchan_recv(xch[1], &item);
		} else {
			ret = iou_xchan_recv(xch[0], &item);
			if (ret == 0)
				ret = iou_xchan_send(xch[1], &item);
		}
	}
	if (ret < 0)
		bench_die("xchan", ret);
	if (xstream ? me == 1 : me == 0)
		t_end = iou_now();
	return NULL;
}

static int xchan_member(struct reactor *r, unsigned index, void *arg)
{
	(void)arg;
	if (fiber_spawn(r, xfiber, (void *)(uintptr_t)index, NULL) < 0)
		return -1;
	return reactor_run(r);
}

static double run_xchan(bool stream)
{
	double t;

	xstream = stream;
	for (int i = 0; i < 2; i++)
		if (iou_xchan_create(sizeof(long), stream ? QUEUE : 1, &xch[i]) < 0)
			bench_die("iou_xchan_create", -ENOMEM);
	t = run_group(xchan_member);
	for (int i = 0; i < 2; i++)
		iou_xchan_destroy(xch[i]);
	return t;
}

/* ---- peers: a queue under a mutex, woken by condition variables or eventfds --------- */

struct queue {
	mtx_t lock;
	cnd_t not_empty, not_full; /* condition variable peer */
	int efd_data, efd_room;	   /* eventfd peer: "items came", "room came" */
	bool use_efd;
	long item[QUEUE];
	unsigned head, len;
	bool taker_waits, giver_waits;
};

static struct queue q;

/* One epoll instance per eventfd, made once. */
static int ep_data, ep_room;

static void wait_on(int ep, int efd)
{
	struct epoll_event ev;
	uint64_t v;

	while (epoll_wait(ep, &ev, 1, -1) < 0)
		;
	if (read(efd, &v, sizeof(v)) < 0) {
		/* EAGAIN: another wake-up took it; look at the queue again */
	}
}

static void ring(int efd)
{
	uint64_t one = 1;

	if (write(efd, &one, sizeof(one)) < 0)
		bench_die("eventfd write", -errno);
}

static void q_put(long v)
{
	mtx_lock(&q.lock);
	while (q.len == QUEUE) {
		q.giver_waits = true;
		if (q.use_efd) {
			mtx_unlock(&q.lock);
			wait_on(ep_room, q.efd_room);
			mtx_lock(&q.lock);
		} else {
			cnd_wait(&q.not_full, &q.lock);
		}
	}
	q.giver_waits = false;
	q.item[(q.head + q.len++) % QUEUE] = v;
	if (q.taker_waits) {
		q.taker_waits = false;
		if (q.use_efd)
			ring(q.efd_data);
		else
			cnd_signal(&q.not_empty);
	}
	mtx_unlock(&q.lock);
}

/* Take everything queued (at least one item); the number taken. */
static unsigned q_take_all(long *out)
{
	unsigned n;

	mtx_lock(&q.lock);
	while (q.len == 0) {
		q.taker_waits = true;
		if (q.use_efd) {
			mtx_unlock(&q.lock);
			wait_on(ep_data, q.efd_data);
			mtx_lock(&q.lock);
		} else {
			cnd_wait(&q.not_empty, &q.lock);
		}
	}
	q.taker_waits = false;
	n = q.len;
	for (unsigned i = 0; i < n; i++)
		out[i] = q.item[(q.head + i) % QUEUE];
	q.head = (q.head + n) % QUEUE;
	q.len = 0;
	if (q.giver_waits) {
		q.giver_waits = false;
		if (q.use_efd)
			ring(q.efd_room);
		else
			cnd_signal(&q.not_full);
	}
	mtx_unlock(&q.lock);
	return n;
}

static int stream_taker(void *arg)
{
	static long batch[QUEUE];
	long got = 0;

	(void)arg;
	pin(ncpus() > 1 ? 1 : 0);
	atomic_fetch_add(&started, 1);
	while (got < n_stream)
		got += q_take_all(batch);
	t_end = iou_now();
	return 0;
}

/* Round trip for the peers: a turn flag, two wake-ups per trip. */
struct turn {
	mtx_t lock;
	cnd_t cond[2];
	int efd[2], ep[2];
	bool use_efd;
	int whose; /* 0 or 1 */
};

static struct turn tn;

static void turn_wait(int me)
{
	if (tn.use_efd) {
		wait_on(tn.ep[me], tn.efd[me]);
		return;
	}
	mtx_lock(&tn.lock);
	while (tn.whose != me)
		cnd_wait(&tn.cond[me], &tn.lock);
	mtx_unlock(&tn.lock);
}

static void turn_give(int to)
{
	if (tn.use_efd) {
		ring(tn.efd[to]);
		return;
	}
	mtx_lock(&tn.lock);
	tn.whose = to;
	cnd_signal(&tn.cond[to]);
	mtx_unlock(&tn.lock);
}

static int rtt_peer(void *arg)
{
	(void)arg;
	pin(ncpus() > 1 ? 1 : 0);
	atomic_fetch_add(&started, 1);
	for (long i = 0; i < n_rtt; i++) {
		turn_wait(1);
		turn_give(0);
	}
	return 0;
}

static int make_ep(int efd)
{
	int ep = epoll_create1(EPOLL_CLOEXEC);
	struct epoll_event ev = { .events = EPOLLIN, .data.fd = efd };

	if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, efd, &ev) < 0)
		bench_die("epoll", -errno);
	return ep;
}

static double run_peer_rtt(bool use_efd)
{
	thrd_t t;
	int64_t t0;

	memset(&tn, 0, sizeof(tn));
	tn.use_efd = use_efd;
	mtx_init(&tn.lock, mtx_plain);
	for (int i = 0; i < 2; i++) {
		cnd_init(&tn.cond[i]);
		tn.efd[i] = eventfd(0, EFD_CLOEXEC);
		tn.ep[i] = make_ep(tn.efd[i]);
	}
	atomic_store(&started, 0);
	pin(0);
	if (thrd_create(&t, rtt_peer, NULL) != thrd_success)
		bench_die("thrd_create", -EAGAIN);
	while (!atomic_load(&started))
		thrd_yield();
	t0 = iou_now();
	for (long i = 0; i < n_rtt; i++) {
		turn_give(1);
		turn_wait(0);
	}
	t0 = iou_now() - t0;
	thrd_join(t, NULL);
	for (int i = 0; i < 2; i++) {
		cnd_destroy(&tn.cond[i]);
		close(tn.efd[i]);
		close(tn.ep[i]);
	}
	mtx_destroy(&tn.lock);
	return (double)t0;
}

static double run_peer_stream(bool use_efd)
{
	thrd_t t;

	memset(&q, 0, sizeof(q));
	q.use_efd = use_efd;
	mtx_init(&q.lock, mtx_plain);
	cnd_init(&q.not_empty);
	cnd_init(&q.not_full);
	q.efd_data = eventfd(0, EFD_CLOEXEC);
	q.efd_room = eventfd(0, EFD_CLOEXEC);
	ep_data = make_ep(q.efd_data);
	ep_room = make_ep(q.efd_room);
	atomic_store(&started, 0);
	pin(0);
	if (thrd_create(&t, stream_taker, NULL) != thrd_success)
		bench_die("thrd_create", -EAGAIN);
	while (!atomic_load(&started))
		thrd_yield();
	t_start = iou_now();
	for (long i = 0; i < n_stream; i++)
		q_put(i);
	thrd_join(t, NULL);
	cnd_destroy(&q.not_empty);
	cnd_destroy(&q.not_full);
	close(q.efd_data);
	close(q.efd_room);
	close(ep_data);
	close(ep_room);
	mtx_destroy(&q.lock);
	return (double)(t_end - t_start);
}

/* ---- driver ---------------------------------------------------------------------------- */

typedef double run_fn(void);

static double best_of(const char *name, run_fn *fn, long n, bool rate)
{
	double best = 0;

	printf("# %s:", name);
	for (int i = 0; i < REPS; i++) {
		double ns = fn();
		double v = rate ? (double)n * 1e9 / ns : ns / (double)n;

		printf(" %.0f", v);
		if (i == 0 || (rate ? v > best : v < best))
			best = v;
	}
	printf("\n");
	return best;
}

static double post_rtt(void)
{
	return run_group(rtt_member);
}
static double post_stream(void)
{
	return run_group(stream_member);
}
static double xchan_rtt(void)
{
	return run_xchan(false);
}
static double xchan_stream(void)
{
	return run_xchan(true);
}
static double condvar_rtt(void)
{
	return run_peer_rtt(false);
}
static double condvar_stream(void)
{
	return run_peer_stream(false);
}
static double epoll_rtt(void)
{
	return run_peer_rtt(true);
}
static double epoll_stream(void)
{
	return run_peer_stream(true);
}

int main(int argc, char **argv)
{
	double v;

	n_stream = bench_count(argc, argv, 1, 2000000);
	n_rtt = bench_count(argc, argv, 2, 20000);
	printf("# bench-msg: %d CPUs; streaming %ld messages, round trips %ld; best of %d\n",
	       ncpus(), n_stream, n_rtt, REPS);

	v = best_of("post round trip ns", post_rtt, n_rtt, false);
	bench_result("msg", "post_rtt_ns", v);
	v = best_of("xchan round trip ns", xchan_rtt, n_rtt, false);
	bench_result("msg", "xchan_rtt_ns", v);
	v = best_of("condvar round trip ns", condvar_rtt, n_rtt, false);
	bench_result("msg", "condvar_rtt_ns", v);
	v = best_of("eventfd+epoll round trip ns", epoll_rtt, n_rtt, false);
	bench_result("msg", "epoll_rtt_ns", v);

	v = best_of("post streaming msg/s", post_stream, n_stream, true);
	bench_result("msg", "post_stream_mps", v);
	v = best_of("xchan streaming msg/s", xchan_stream, n_stream, true);
	bench_result("msg", "xchan_stream_mps", v);
	v = best_of("condvar streaming msg/s", condvar_stream, n_stream, true);
	bench_result("msg", "condvar_stream_mps", v);
	v = best_of("eventfd+epoll streaming msg/s", epoll_stream, n_stream, true);
	bench_result("msg", "epoll_stream_mps", v);
	return 0;
}
