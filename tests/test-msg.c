/* SPDX-License-Identifier: MIT */
/*
 * Tests for messaging between reactors (<ioucontext/thread.h>): handles,
 * posting and its order, a million messages bounced between two reactors
 * (lost wake-ups), back-pressure on a full mailbox, cross-thread channels
 * with many producers and consumers, and teardown while messages are in
 * flight both ways.  Run twice by CTest: as is (MSG_RING doorbells) and with
 * IOU_DISABLE_OPCODES=40 (the eventfd fallback); the "doorbell" test checks
 * which one is in use.
 */
#include <dirent.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <threads.h>
#include <unistd.h>

#include "ops-harness.h"

/* Divide counts by this under slow instrumentation. */
static long scale_down(void)
{
	return RUNNING_ON_VALGRIND ? 100 : IOU_TEST_TSAN ? 10 : IOU_TEST_ASAN ? 4 : 1;
}

/* Descriptors open in this process, and those that are eventfds / rings. */
static int count_fds(const char *kind)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	if (!d)
		return -1;
	while ((e = readdir(d))) {
		char path[300], link[128];
		ssize_t len;

		if (e->d_name[0] == '.')
			continue;
		if (!kind) {
			n++;
			continue;
		}
		snprintf(path, sizeof(path), "/proc/self/fd/%s", e->d_name);
		len = readlink(path, link, sizeof(link) - 1);
		if (len > 0) {
			link[len] = '\0';
			n += strstr(link, kind) != NULL;
		}
	}
	closedir(d);
	return n - (kind ? 0 : 1); /* the directory itself */
}

static bool fallback_expected(void)
{
	const char *e = getenv("IOU_DISABLE_OPCODES");

	return e && strstr(e, "40");
}

/* ---- handles ---------------------------------------------------------------- */

static int refs_from_thread(void *arg)
{
	struct reactor *other = arg;
	struct reactor_ref *ref = NULL;

	return reactor_ref_get(other, &ref) == -EPERM && !ref ? 0 : 1;
}

static int handles(void)
{
	struct reactor *r = reactor_get();
	struct reactor_ref *a, *b;
	thrd_t t;
	int res = -1;

	ASSERT_TRUE(r != NULL);
	ASSERT_EQ(reactor_ref_get(NULL, &a), -EINVAL);
	ASSERT_EQ(reactor_ref_get(r, NULL), -EINVAL);
	ASSERT_EQ(reactor_ref_get(r, &a), 0);
	ASSERT_EQ(reactor_ref_get(r, &b), 0);
	ASSERT_PTR_EQ(a, b);
	ASSERT_TRUE(reactor_ref_alive(a));
	ASSERT_PTR_EQ(reactor_ref_dup(a), a);
	reactor_ref_put(a);
	reactor_ref_put(a);
	reactor_ref_put(b);
	reactor_ref_put(NULL);
	ASSERT_EQ(reactor_mailbox_create(r, 64), -EEXIST);
	ASSERT_EQ(thrd_create(&t, refs_from_thread, r), thrd_success);
	ASSERT_EQ(thrd_join(t, &res), thrd_success);
	ASSERT_EQ(res, 0);
	ASSERT_TRUE(!reactor_ref_alive(NULL));
	ASSERT_EQ(reactor_destroy(r), 0);
	/* Sizes are checked; a fresh reactor takes one. */
	r = reactor_get();
	ASSERT_EQ(reactor_mailbox_create(r, 1), -EINVAL);
	ASSERT_EQ(reactor_mailbox_create(r, 65537), -EINVAL);
	ASSERT_EQ(reactor_mailbox_create(r, 3), 0);
	ASSERT_EQ(reactor_destroy(r), 0);
	return 0;
}

/* The doorbell in use: a dup of the ring (MSG_RING) or an eventfd. */
static int doorbell(void)
{
	int rings = count_fds("io_uring"), efds = count_fds("eventfd");
	struct reactor *r = reactor_get();
	struct reactor_ref *ref;

	ASSERT_TRUE(r != NULL);
	ASSERT_EQ(count_fds("io_uring"), rings + 1);
	rings++;
	efds = count_fds("eventfd"); /* valgrind: the reactor registers one */
	ASSERT_EQ(reactor_ref_get(r, &ref), 0);
	if (fallback_expected() || !reactor_op_supported(r, 40)) {
		ASSERT_EQ(count_fds("eventfd"), efds + 1);
		ASSERT_EQ(count_fds("io_uring"), rings);
		printf("# doorbell: eventfd\n");
	} else {
		ASSERT_EQ(count_fds("io_uring"), rings + 1);
		ASSERT_EQ(count_fds("eventfd"), efds);
		printf("# doorbell: IORING_OP_MSG_RING\n");
	}
	ASSERT_EQ(reactor_destroy(r), 0);
	/* The handle keeps the mailbox (and its descriptor) until dropped. */
	ASSERT_TRUE(!reactor_ref_alive(ref));
	reactor_ref_put(ref);
	ASSERT_EQ(count_fds("io_uring"), rings - 1);
	ASSERT_LE(count_fds("eventfd"), efds);
	return 0;
}

/* ---- posting ---------------------------------------------------------------------- */

struct tally {
	atomic_long ran, refused;
	atomic_long bad_order;
	long next[8]; /* per sender: the next sequence number expected */
};

/* arg encodes sender (top bits) and sequence number. */
#define MSG(sender, seq) ((void *)(uintptr_t)(((uint64_t)(sender) << 48) | (uint64_t)(seq)))
#define MSG_SENDER(p) ((unsigned)((uintptr_t)(p) >> 48))
#define MSG_SEQ(p) ((long)((uintptr_t)(p) & ((UINT64_C(1) << 48) - 1)))

static struct tally tally, back_tally;

static void counted(struct reactor *r, void *arg, int status)
{
	if (status < 0) {
		FIBER_CHECK(r == NULL && status == -ESHUTDOWN);
		atomic_fetch_add(&tally.refused, 1);
		return;
	}
	FIBER_CHECK(r == reactor_current());
	if (MSG_SEQ(arg) != tally.next[MSG_SENDER(arg)])
		atomic_fetch_add(&tally.bad_order, 1);
	tally.next[MSG_SENDER(arg)] = MSG_SEQ(arg) + 1;
	atomic_fetch_add(&tally.ran, 1);
}

/* The same for calls posted back to the test thread. */
static void counted_back(struct reactor *r, void *arg, int status)
{
	(void)r;
	(void)arg;
	atomic_fetch_add(status < 0 ? &back_tally.refused : &back_tally.ran, 1);
}

/* A posted callback runs inside the reactor's own driving: it cannot run it again. */
static int run_from_callback_rc = 1;

static void run_from_callback(struct reactor *r, void *arg, int status)
{
	(void)arg;
	if (status == 0)
		run_from_callback_rc = reactor_run(r);
}

static int post_to_self(void)
{
	struct reactor *r = reactor_get();
	struct reactor_ref *me;

	memset(&tally, 0, sizeof(tally));
	ASSERT_EQ(reactor_ref_get(r, &me), 0);
	ASSERT_EQ(reactor_post(NULL, me, counted, MSG(0, 0)), -EINVAL);
	ASSERT_EQ(reactor_post(r, NULL, counted, MSG(0, 0)), -EINVAL);
	ASSERT_EQ(reactor_post(r, me, NULL, MSG(0, 0)), -EINVAL);
	for (long i = 0; i < 10; i++)
		ASSERT_EQ(reactor_post(r, me, counted, MSG(0, i)), 0);
	/* Delivered when the reactor next polls, in order, in the thread's context. */
	ASSERT_EQ(atomic_load(&tally.ran), 0);
	ASSERT_EQ(fiber_yield(r), 0);
	ASSERT_EQ(atomic_load(&tally.ran), 10);
	ASSERT_EQ(atomic_load(&tally.bad_order), 0);
	ASSERT_EQ(reactor_post(r, me, run_from_callback, NULL), 0);
	ASSERT_EQ(fiber_yield(r), 0);
	ASSERT_EQ(run_from_callback_rc, -EBUSY);
	reactor_ref_put(me);
	ASSERT_NO_FIBER_FAILURES();
	ASSERT_EQ(reactor_destroy(r), 0);
	return 0;
}

/* Several threads post to one serving reactor: per-sender order, every call once. */
#define SENDERS 4
static struct reactor_group *group;

struct fan {
	long per_sender;
	atomic_int senders_done;
};

static int fan_member(struct reactor *r, unsigned index, void *arg)
{
	struct fan *fan = arg;
	struct reactor_ref *sink = reactor_group_ref(group, 0);
	int ret = 0;

	if (index == 0)
		return reactor_serve(r);
	for (long i = 0; i < fan->per_sender && ret == 0; i++)
		ret = reactor_post(r, sink, counted, MSG(index, i));
	if (atomic_fetch_add(&fan->senders_done, 1) + 1 == SENDERS)
		reactor_stop(r, sink);
	return ret;
}

static int post_fan_in(void)
{
	struct fan fan = { .per_sender = 200000 / scale_down() };
	int res[SENDERS + 1];

	memset(&tally, 0, sizeof(tally));
	ASSERT_EQ(reactor_group_start(SENDERS + 1, fan_member, &fan, &group), 0);
	ASSERT_EQ(reactor_group_size(group), SENDERS + 1);
	ASSERT_TRUE(reactor_group_ref(group, SENDERS + 1) == NULL);
	ASSERT_EQ(reactor_group_join(group, res), 0);
	for (int i = 0; i <= SENDERS; i++)
		ASSERT_EQ(res[i], 0);
	ASSERT_EQ(atomic_load(&tally.ran), SENDERS * fan.per_sender);
	ASSERT_EQ(atomic_load(&tally.refused), 0);
	ASSERT_EQ(atomic_load(&tally.bad_order), 0);
	ASSERT_NO_FIBER_FAILURES();
	return 0;
}

/* ---- lost wake-ups: a million messages bounced between two reactors ---------------- */

struct bounce {
	long total;  /* messages to deliver, both ways together */
	long window; /* tokens in flight at once */
	atomic_long delivered;
	long seen[2];	     /* per side, touched by that side only */
	atomic_int finished; /* tokens retired */
	atomic_int errors;
};

static struct bounce bounce;

static void token(struct reactor *r, void *arg, int status)
{
	unsigned side = (unsigned)(uintptr_t)arg; /* the side this runs on */
	long n;

	if (status < 0) {
		atomic_fetch_add(&bounce.errors, 1);
		return;
	}
	bounce.seen[side]++;
	n = atomic_fetch_add(&bounce.delivered, 1) + 1;
	if (n <= bounce.total - bounce.window) {
		/* One token: its sender never has more than window in flight here. */
		if (reactor_post_try(r, reactor_group_ref(group, 1 - side), token,
				     (void *)(uintptr_t)(1 - side)) < 0)
			atomic_fetch_add(&bounce.errors, 1);
	} else if (atomic_fetch_add(&bounce.finished, 1) + 1 == bounce.window) {
		/* The last token retired: stop both sides. */
		reactor_stop(r, reactor_group_ref(group, 0));
		reactor_stop(r, reactor_group_ref(group, 1));
	}
}

static int bounce_member(struct reactor *r, unsigned index, void *arg)
{
	(void)arg;
	if (index == 0)
		for (long i = 0; i < bounce.window; i++)
			if (reactor_post(r, reactor_group_ref(group, 1), token,
					 (void *)(uintptr_t)1))
				return -1;
	return reactor_serve(r);
}

static int bounce_run(long total, long window)
{
	int res[2];
	int64_t t = iou_now();

	memset(&bounce, 0, sizeof(bounce));
	bounce.total = total;
	bounce.window = window;
	ASSERT_EQ(reactor_group_start(2, bounce_member, NULL, &group), 0);
	ASSERT_EQ(reactor_group_join(group, res), 0);
	ASSERT_EQ(res[0], 0);
	ASSERT_EQ(res[1], 0);
	ASSERT_EQ(atomic_load(&bounce.errors), 0);
	ASSERT_EQ(atomic_load(&bounce.delivered), total);
	ASSERT_EQ(bounce.seen[0] + bounce.seen[1], total);
	ASSERT_LE(bounce.seen[0] - bounce.seen[1], window);
	ASSERT_LE(bounce.seen[1] - bounce.seen[0], window);
	printf("# %ld messages, %ld in flight: %.0f ns each\n", total, window,
	       (double)(iou_now() - t) / (double)total);
	return 0;
}

/* One message in flight: every delivery is a sleep and a doorbell. */
static int pingpong(void)
{
	return bounce_run(20000 / scale_down(), 1);
}

/* 1,000,000 messages with 64 tokens in flight: sleeps and wakes by the thousand. */
static int million(void)
{
	return bounce_run(1000000 / scale_down(), 64);
}

/* ---- back-pressure ------------------------------------------------------------------- */

struct pressure {
	atomic_int ready;	    /* the target's mailbox exists */
	struct reactor_ref *target; /* a 4-slot mailbox */
	atomic_bool release;	    /* the target may start consuming */
	atomic_long eagain;	    /* try-posts refused for want of room */
	long per_fiber;
	int fibers;
};

static struct pressure pressure;

static int pressure_target(void *arg)
{
	struct reactor *r = reactor_get();

	(void)arg;
	if (!r || reactor_mailbox_create(r, 4) < 0 || reactor_ref_get(r, &pressure.target) < 0)
		return 1;
	atomic_store(&pressure.ready, 1);
	/* Not polling: let the senders fill the mailbox and park first. */
	while (!atomic_load(&pressure.release))
		thrd_yield();
	return reactor_serve(r) == 0 ? 0 : 1;
}

static void *pressure_sender(void *arg)
{
	struct reactor *r = reactor_get();
	unsigned id = (unsigned)(uintptr_t)arg;

	for (long i = 0; i < pressure.per_fiber; i++)
		FIBER_CHECK(reactor_post(r, pressure.target, counted, MSG(id, i)) == 0);
	return NULL;
}

static int backpressure(void)
{
	struct reactor *r = reactor_get();
	struct fiber *f[4];
	thrd_t t;
	int res = -1;
	int64_t t0;

	memset(&tally, 0, sizeof(tally));
	memset(&pressure, 0, sizeof(pressure));
	pressure.per_fiber = 5000 / scale_down();
	pressure.fibers = 4;
	ASSERT_EQ(thrd_create(&t, pressure_target, NULL), thrd_success);
	while (!atomic_load(&pressure.ready))
		thrd_yield();
	for (int i = 0; i < 4; i++)
		ASSERT_EQ(reactor_post_try(r, pressure.target, counted, MSG(7, i)), 0);
	/* Full: try refuses, a wait times out, a cancelled fiber's post fails. */
	ASSERT_EQ(reactor_post_try(r, pressure.target, counted, MSG(7, 99)), -EAGAIN);
	t0 = iou_now();
	fiber_set_deadline(r, iou_deadline_after(20 * IOU_MSEC));
	ASSERT_EQ(reactor_post(r, pressure.target, counted, MSG(7, 99)), -ETIMEDOUT);
	fiber_set_deadline(r, IOU_DEADLINE_NEVER);
	ASSERT_GE(iou_now() - t0, 20 * IOU_MSEC);
	/* Fibers pile up behind the full mailbox; all their posts get in, in order. */
	for (int i = 0; i < 4; i++)
		ASSERT_EQ(fiber_spawn(r, pressure_sender, (void *)(uintptr_t)i, &f[i]), 0);
	ASSERT_EQ(fiber_yield(r), 0);
	atomic_store(&pressure.release, true);
	for (int i = 0; i < 4; i++)
		ASSERT_EQ(fiber_join(f[i], NULL), 0);
	ASSERT_EQ(reactor_stop(r, pressure.target), 0);
	ASSERT_EQ(thrd_join(t, &res), thrd_success);
	ASSERT_EQ(res, 0);
	reactor_ref_put(pressure.target);
	ASSERT_EQ(atomic_load(&tally.ran), 4 + 4 * pressure.per_fiber);
	ASSERT_EQ(atomic_load(&tally.bad_order), 0);
	ASSERT_EQ(atomic_load(&tally.refused), 0);
	ASSERT_NO_FIBER_FAILURES();
	ASSERT_EQ(reactor_destroy(r), 0);
	return 0;
}

/* ---- channels between threads ------------------------------------------------------------ */

#define CH_THREADS 4
#define CH_FIBERS 50 /* per thread: half produce, half consume */

struct item {
	uint32_t producer;
	uint32_t seq;
};

struct chan_test {
	struct iou_xchan *ch;
	long per_producer;
	atomic_int producers_left;
	atomic_uchar *seen; /* [producer * per_producer + seq] */
	atomic_long received, dup, disorder;
};

static struct chan_test ct;

static void *producer(void *arg)
{
	uint32_t id = (uint32_t)(uintptr_t)arg;

	for (long i = 0; i < ct.per_producer; i++) {
		struct item it = { id, (uint32_t)i };

		FIBER_CHECK(iou_xchan_send(ct.ch, &it) == 0);
	}
	if (atomic_fetch_sub(&ct.producers_left, 1) == 1)
		FIBER_CHECK(iou_xchan_close(ct.ch) == 0);
	return NULL;
}

static void *consumer(void *arg)
{
	long last[CH_THREADS * CH_FIBERS];
	struct item it;
	int ret;

	(void)arg;
	for (int i = 0; i < CH_THREADS * CH_FIBERS; i++)
		last[i] = -1;
	while ((ret = iou_xchan_recv(ct.ch, &it)) == 0) {
		/* Per producer, one consumer sees increasing numbers. */
		if ((long)it.seq <= last[it.producer])
			atomic_fetch_add(&ct.disorder, 1);
		last[it.producer] = it.seq;
		if (atomic_fetch_add(&ct.seen[it.producer * ct.per_producer + it.seq], 1))
			atomic_fetch_add(&ct.dup, 1);
		atomic_fetch_add(&ct.received, 1);
	}
	FIBER_CHECK(ret == -EPIPE);
	return NULL;
}

static int chan_member(struct reactor *r, unsigned index, void *arg)
{
	(void)arg;
	for (unsigned i = 0; i < CH_FIBERS; i++) {
		uint32_t id = index * CH_FIBERS + i;

		if (fiber_spawn(r, i % 2 ? consumer : producer, (void *)(uintptr_t)id, NULL) < 0)
			return -1;
	}
	return reactor_run(r);
}

static int chan_many(void)
{
	int res[CH_THREADS];
	long producers = CH_THREADS * CH_FIBERS / 2, total;

	memset(&ct, 0, sizeof(ct));
	ct.per_producer = 2000 / scale_down();
	total = producers * ct.per_producer;
	atomic_store(&ct.producers_left, (int)producers);
	/* Producer ids run up to CH_THREADS * CH_FIBERS: size for all. */
	ct.seen = calloc((size_t)CH_THREADS * CH_FIBERS * (size_t)ct.per_producer, 1);
	ASSERT_TRUE(ct.seen != NULL);
	ASSERT_EQ(iou_xchan_create(sizeof(struct item), 16, &ct.ch), 0);
	ASSERT_EQ(reactor_group_start(CH_THREADS, chan_member, NULL, &group), 0);
	ASSERT_EQ(reactor_group_join(group, res), 0);
	for (int i = 0; i < CH_THREADS; i++)
		ASSERT_EQ(res[i], 0);
	ASSERT_EQ(atomic_load(&ct.received), total);
	ASSERT_EQ(atomic_load(&ct.dup), 0);
	ASSERT_EQ(atomic_load(&ct.disorder), 0);
	ASSERT_EQ(iou_xchan_len(ct.ch), 0);
	ASSERT_EQ(iou_xchan_destroy(ct.ch), 0);
	free(ct.seen);
	ASSERT_NO_FIBER_FAILURES();
	return 0;
}

/* One consumer: strict per-producer FIFO, through a rendezvous channel too. */
static int chan_fifo_member(struct reactor *r, unsigned index, void *arg)
{
	struct item it;
	long next[4] = { 0 }, got = 0;
	int ret;

	(void)arg;
	if (index > 0) {
		for (long i = 0; i < ct.per_producer; i++) {
			it = (struct item){ index, (uint32_t)i };
			if (iou_xchan_send(ct.ch, &it))
				return -1;
		}
		if (atomic_fetch_sub(&ct.producers_left, 1) == 1)
			iou_xchan_close(ct.ch);
		return 0;
	}
	(void)r;
	while ((ret = iou_xchan_recv(ct.ch, &it)) == 0) {
		if (it.seq != next[it.producer])
			return -2;
		next[it.producer]++;
		got++;
	}
	return ret == -EPIPE && got == 3 * ct.per_producer ? 0 : -3;
}

static int chan_fifo(void)
{
	for (size_t cap = 0; cap <= 8; cap += 8) {
		int res[4];

		memset(&ct, 0, sizeof(ct));
		ct.per_producer = 10000 / scale_down();
		atomic_store(&ct.producers_left, 3);
		ASSERT_EQ(iou_xchan_create(sizeof(struct item), cap, &ct.ch), 0);
		ASSERT_EQ(reactor_group_start(4, chan_fifo_member, NULL, &group), 0);
		ASSERT_EQ(reactor_group_join(group, res), 0);
		for (int i = 0; i < 4; i++)
			ASSERT_EQ(res[i], 0);
		ASSERT_EQ(iou_xchan_destroy(ct.ch), 0);
	}
	return 0;
}

static void *recv_one(void *arg)
{
	struct item it;

	return (void *)(intptr_t)iou_xchan_recv(arg, &it);
}

static int chan_api(void)
{
	struct reactor *r = reactor_get();
	struct iou_xchan *ch;
	struct item it = { 1, 2 }, out;
	struct fiber *f;
	void *res;
	int64_t t0;

	ASSERT_EQ(iou_xchan_create(0, 4, &ch), -EINVAL);
	ASSERT_EQ(iou_xchan_create(8, 4, NULL), -EINVAL);
	ASSERT_EQ(iou_xchan_create(SIZE_MAX / 2, 4, &ch), -EINVAL);
	ASSERT_EQ(iou_xchan_create(sizeof(it), 1, &ch), 0);
	ASSERT_EQ(iou_xchan_send(NULL, &it), -EINVAL);
	ASSERT_EQ(iou_xchan_send(ch, NULL), -EINVAL);
	ASSERT_EQ(iou_xchan_tryrecv(ch, &out), -EAGAIN);
	ASSERT_EQ(iou_xchan_trysend(ch, &it), 0);
	ASSERT_EQ(iou_xchan_trysend(ch, &it), -EAGAIN);
	ASSERT_EQ(iou_xchan_len(ch), 1);
	/* Waits end with the deadline: outside a fiber and in one. */
	t0 = iou_now();
	fiber_set_deadline(r, iou_deadline_after(10 * IOU_MSEC));
	ASSERT_EQ(iou_xchan_send(ch, &it), -ETIMEDOUT);
	fiber_set_deadline(r, IOU_DEADLINE_NEVER);
	ASSERT_GE(iou_now() - t0, 10 * IOU_MSEC);
	ASSERT_EQ(iou_xchan_recv(ch, &out), 0);
	ASSERT_EQ(out.producer, 1);
	ASSERT_EQ(out.seq, 2);
	/* A cancelled receiver leaves the channel; destroy then succeeds. */
	ASSERT_EQ(fiber_spawn(r, recv_one, ch, &f), 0);
	ASSERT_EQ(fiber_yield(r), 0);
	ASSERT_EQ(iou_xchan_destroy(ch), -EBUSY);
	ASSERT_EQ(fiber_cancel(f), 0);
	ASSERT_EQ(fiber_join(f, &res), 0);
	ASSERT_EQ((intptr_t)res, -ECANCELED);
	/* Close: waiting receivers fail, buffered items stay receivable. */
	ASSERT_EQ(fiber_spawn(r, recv_one, ch, &f), 0);
	ASSERT_EQ(fiber_yield(r), 0);
	ASSERT_EQ(iou_xchan_close(ch), 0);
	ASSERT_EQ(iou_xchan_close(ch), -EPIPE);
	ASSERT_EQ(fiber_join(f, &res), 0);
	ASSERT_EQ((intptr_t)res, -EPIPE);
	ASSERT_EQ(iou_xchan_send(ch, &it), -EPIPE);
	ASSERT_EQ(iou_xchan_recv(ch, &out), -EPIPE);
	ASSERT_EQ(iou_xchan_destroy(ch), 0);
	/* Buffered items survive close. */
	ASSERT_EQ(iou_xchan_create(sizeof(it), 2, &ch), 0);
	ASSERT_EQ(iou_xchan_send(ch, &it), 0);
	ASSERT_EQ(iou_xchan_close(ch), 0);
	ASSERT_EQ(iou_xchan_recv(ch, &out), 0);
	ASSERT_EQ(iou_xchan_tryrecv(ch, &out), -EPIPE);
	ASSERT_EQ(iou_xchan_destroy(ch), 0);
	ASSERT_EQ(iou_xchan_destroy(NULL), -EINVAL);
	ASSERT_EQ(iou_xchan_len(NULL), -EINVAL);
	ASSERT_EQ(reactor_destroy(r), 0);
	return 0;
}

/* ---- teardown with messages in flight ------------------------------------------------------ */

struct victim {
	struct reactor_ref *ref;  /* the victim's mailbox */
	struct reactor_ref *back; /* the test thread's */
	struct iou_xchan *ch;	  /* a fiber of the victim parks in recv */
	atomic_int ready;
	atomic_bool go;	 /* destroy now */
	long posts_back; /* to post to the test thread while dying */
	atomic_long back_ok, back_refused;
};

static void *victim_recv(void *arg)
{
	struct item it;

	iou_xchan_recv(arg, &it); /* never returns: its reactor dies */
	return NULL;
}

static int victim_main(void *arg)
{
	struct victim *v = arg;
	struct reactor *r = reactor_get();

	if (!r || reactor_mailbox_create(r, 8) < 0 || reactor_ref_get(r, &v->ref) < 0)
		return 1;
	if (fiber_spawn(r, victim_recv, v->ch, NULL) < 0 || fiber_yield(r) < 0)
		return 1;
	atomic_store(&v->ready, 1);
	while (!atomic_load(&v->go))
		thrd_yield();
	/* Post towards the test thread while going down. */
	for (long i = 0; i < v->posts_back; i++) {
		int ret = reactor_post_try(r, v->back, counted_back, MSG(1, i));

		if (ret == 0)
			atomic_fetch_add(&v->back_ok, 1);
		else
			atomic_fetch_add(&v->back_refused, 1);
	}
	/* Thread exit tears the reactor down, with posts in flight to it. */
	return 0;
}

static int teardown_races(void)
{
	int rounds = (int)(300 / (RUNNING_ON_VALGRIND ? 30 : IOU_TEST_TSAN ? 3 : 1));
	int fds;

	/* Warm up: the first reactor of the test thread makes lasting state. */
	{
		struct reactor *r = reactor_get();
		struct reactor_ref *me;

		ASSERT_EQ(reactor_ref_get(r, &me), 0);
		reactor_ref_put(me);
		ASSERT_EQ(reactor_destroy(r), 0);
	}
	fds = count_fds(NULL);
	for (int round = 0; round < rounds; round++) {
		struct reactor *r = reactor_get();
		struct victim v = { .posts_back = 16 };
		long posted = 0, refused = 0;
		thrd_t t;
		int res = -1;

		memset(&tally, 0, sizeof(tally));
		memset(&back_tally, 0, sizeof(back_tally));
		ASSERT_EQ(reactor_mailbox_create(r, 4), 0);
		ASSERT_EQ(reactor_ref_get(r, &v.back), 0);
		ASSERT_EQ(iou_xchan_create(sizeof(struct item), 1, &v.ch), 0);
		ASSERT_EQ(thrd_create(&t, victim_main, &v), thrd_success);
		while (!atomic_load(&v.ready))
			thrd_yield();
		atomic_store(&v.go, true);
		/* Post until refused: some run, some are handed back, none vanish. */
		for (;;) {
			int ret = reactor_post_try(r, v.ref, counted, MSG(0, 0));

			if (ret == 0)
				posted++;
			else if (ret == -EAGAIN)
				refused++;
			else {
				ASSERT_EQ(ret, -ESHUTDOWN);
				break;
			}
			if ((posted + refused) % 4 == 0) {
				fiber_yield(r);
				thrd_yield(); /* let the victim run (valgrind runs one thread at a time) */
			}
		}
		ASSERT_EQ(thrd_join(t, &res), thrd_success);
		ASSERT_EQ(res, 0);
		ASSERT_TRUE(!reactor_ref_alive(v.ref));
		/* Calls it never took come back to us, on our thread, when we next poll. */
		ASSERT_EQ(fiber_yield(r), 0);
		ASSERT_EQ(atomic_load(&tally.ran) + atomic_load(&tally.refused), posted);
		/* The victim's fiber left the channel when its reactor went. */
		ASSERT_EQ(iou_xchan_destroy(v.ch), 0);
		reactor_ref_put(v.ref);
		/* Posts towards us: those that got in run now or come back with the reactor. */
		ASSERT_EQ(fiber_yield(r), 0);
		reactor_ref_put(v.back);
		ASSERT_EQ(reactor_destroy(r), 0);
		ASSERT_EQ(atomic_load(&back_tally.ran) + atomic_load(&back_tally.refused),
			  atomic_load(&v.back_ok));
		ASSERT_EQ(atomic_load(&v.back_ok) + atomic_load(&v.back_refused), v.posts_back);
	}
	ASSERT_EQ(count_fds(NULL), fds);
	ASSERT_NO_FIBER_FAILURES();
	return 0;
}

/* A sender parked on a full mailbox learns that its target went away. */
static int dying_target(void *arg)
{
	struct victim *v = arg;
	struct reactor *r = reactor_get();

	if (!r || reactor_mailbox_create(r, 2) < 0 || reactor_ref_get(r, &v->ref) < 0)
		return 1;
	atomic_store(&v->ready, 1);
	/* Not polling: what is posted stays in the mailbox. */
	while (!atomic_load(&v->go))
		thrd_yield();
	return 0;
}

static void *parked_sender(void *arg)
{
	struct victim *v = arg;

	return (void *)(intptr_t)reactor_post(reactor_get(), v->ref, counted, MSG(2, 0));
}

static int teardown_parked(void)
{
	struct reactor *r = reactor_get();
	struct victim v = { .ref = NULL };
	struct fiber *f[3];
	thrd_t t;
	int res = -1;
	void *out;

	memset(&tally, 0, sizeof(tally));
	ASSERT_EQ(thrd_create(&t, dying_target, &v), thrd_success);
	while (!atomic_load(&v.ready))
		thrd_yield();
	ASSERT_EQ(reactor_post_try(r, v.ref, counted, MSG(3, 0)), 0);
	ASSERT_EQ(reactor_post_try(r, v.ref, counted, MSG(3, 1)), 0);
	for (int i = 0; i < 3; i++)
		ASSERT_EQ(fiber_spawn(r, parked_sender, &v, &f[i]), 0);
	ASSERT_EQ(fiber_yield(r), 0);
	atomic_store(&v.go, true);
	for (int i = 0; i < 3; i++) {
		ASSERT_EQ(fiber_join(f[i], &out), 0);
		ASSERT_EQ((intptr_t)out, -ESHUTDOWN);
	}
	ASSERT_EQ(thrd_join(t, &res), thrd_success);
	ASSERT_EQ(res, 0);
	/* The two queued calls were handed back. */
	ASSERT_EQ(atomic_load(&tally.ran), 0);
	ASSERT_EQ(atomic_load(&tally.refused), 2);
	ASSERT_EQ(reactor_post(r, v.ref, counted, MSG(3, 2)), -ESHUTDOWN);
	reactor_ref_put(v.ref);
	ASSERT_EQ(reactor_destroy(r), 0);
	return 0;
}

TEST_MAIN(T(handles), T(doorbell), T(post_to_self), T(post_fan_in), T(pingpong), T(million),
	  T(backpressure), T(chan_api), T(chan_many), T(chan_fifo), T(teardown_races),
	  T(teardown_parked))
