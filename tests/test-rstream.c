/* SPDX-License-Identifier: MIT */
/*
 * Receive streams (<ioucontext/rstream.h>), over loopback TCP and UNIX
 * socket pairs: several MiB sent in random-sized writes and taken in
 * random-sized peek/consume steps or read() calls, checked byte for byte,
 * on the default ring and on small rings that keep pausing and running dry;
 * partial peek/consume and read() gathering several buffers; end of stream
 * and a peer reset after data (both sticky); a 4-buffer ring shared by
 * streams whose readers lag, so that it runs dry, a starved reader waits
 * and resumes when a buffer comes back, and nothing is lost; idle streams
 * reclaimed (spilled) so that a reader that reads is served at once, with
 * the bytes a reader is using left in place and every byte read back in
 * order; the per-stream limit leaving data in the socket; deadlines
 * (-ETIMEDOUT, and IOU_DEADLINE_NOW) and cancellation (-ECANCELED) of a
 * waiting peek with the stream usable afterwards; one reader at a time
 * (-EBUSY); close while the request is armed and while buffers are queued
 * (they return: the next stream gets the whole ring); 1,000 connections
 * echoed by fibers through streams on the default ring; reactor_run() not
 * held up by armed streams; destroying a ring in use (-EBUSY); reactor
 * teardown with open streams and rings (explicit and at thread exit: no
 * leak, no descriptor left); and bad arguments.  Forwarding
 * (iou_rstream_forward/flush): relays from one socket pair to another, in
 * random-sized parts of each peek, checked byte for byte by a plain
 * receiver, on the default ring and on a 4-buffer ring shared by three
 * relays with slow peers (buffers pinned by sends while the ring runs dry;
 * all back in the end); peers that do not read: a forward that waits for
 * the previous send times out consuming nothing, stalled sends give their
 * ring buffers back so other streams on the ring keep flowing, and every
 * byte arrives once the peers read; errors (a peer gone: -EPIPE or
 * -ECONNRESET, sticky), -EBUSY both ways with a parked peek or forward,
 * cancelled fibers (-ECANCELED, nothing consumed or sent), bad arguments,
 * and a read leaving nothing to forward; close with a send stalled (prompt,
 * the unsent rest lost) and after a flush (nothing lost); forwarding from
 * the thread's own context; reactor teardown with sends in flight and a
 * fiber parked in a forward.  Registered files: an open stream's socket is
 * in the ring's file table (seen in /proc fdinfo) and out of it when close
 * returns, so the peer sees the end as soon as the socket is closed (also
 * right after open, after the end of stream, and after a thread exits with
 * the stream open); a table of two slots (the other streams use their
 * descriptor), slots reused.  CTest runs it twice: as is (multishot
 * receive into buffer rings) and with IOU_MULTISHOT=0 (the plain-receive
 * fallback, where forward sends a heap copy).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <poll.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ops-harness.h"

/* How long a test may wait for something that should happen at once. */
#define GUARD (10 * IOU_SEC * test_slowdown())

/* ---- helpers ------------------------------------------------------------ */

/* The run without multishot requests (IOU_MULTISHOT=0): the fallback path. */
static bool fallback(void)
{
	const char *e = getenv("IOU_MULTISHOT");

	return e && (!strcmp(e, "0") || !strcmp(e, "no") || !strcmp(e, "off"));
}

/* Divide sizes and counts by this under slow instrumentation. */
static size_t scale_down(void)
{
	return RUNNING_ON_VALGRIND ? 8 : IOU_TEST_TSAN ? 4 : IOU_TEST_ASAN ? 2 : 1;
}

static uint64_t xorshift(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static uint64_t seeded(uint64_t seed)
{
	return seed * 0x9e3779b97f4a7c15u + 0x2545f4914f6cdd1du;
}

static void fill_random(unsigned char *p, size_t n, uint64_t seed)
{
	uint64_t s = seeded(seed), v = 0;

	for (size_t i = 0; i < n; i++) {
		if (i % 8 == 0)
			v = xorshift(&s);
		p[i] = (unsigned char)(v >> (8 * (i % 8)));
	}
}

/* A number in [lo, hi]. */
static size_t between(uint64_t *s, size_t lo, size_t hi)
{
	return lo + (size_t)(xorshift(s) % (hi - lo + 1));
}

/* A connected loopback TCP pair (plain system calls); 0 or -errno. */
static int tcp_pair(int *a, int *b)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t len = sizeof(sa);
	int l, c, s;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (l < 0)
		return -errno;
	if (bind(l, (struct sockaddr *)&sa, sizeof(sa)) || listen(l, 4) ||
	    getsockname(l, (struct sockaddr *)&sa, &len)) {
		close(l);
		return -errno;
	}
	c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c < 0 || connect(c, (struct sockaddr *)&sa, len)) {
		int err = -errno;

		if (c >= 0)
			close(c);
		close(l);
		return err;
	}
	s = accept4(l, NULL, NULL, SOCK_CLOEXEC);
	close(l);
	if (s < 0) {
		close(c);
		return -errno;
	}
	*a = s;
	*b = c;
	return 0;
}

static int unix_pair(int *a, int *b)
{
	int sv[2];

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv))
		return -errno;
	*a = sv[0];
	*b = sv[1];
	return 0;
}

/* Bytes waiting in @fd's receive queue (not yet taken by any request). */
static int inq(int fd)
{
	int n = -1;

	return ioctl(fd, FIONREAD, &n) ? -errno : n;
}

/* Write all of @p with plain blocking writes (test set-up only). */
static int write_all(int fd, const void *p, size_t n)
{
	while (n) {
		ssize_t k = write(fd, p, n);

		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return -errno;
		p = (const char *)p + k;
		n -= (size_t)k;
	}
	return 0;
}

/*
 * Read exactly @len bytes from @s with iou_rstream_read (fewer only at end
 * of stream) and compare them with @want; returns the count or -errno, or
 * -EILSEQ on a mismatch.
 */
static ssize_t read_check(struct reactor *r, struct iou_rstream *s, const unsigned char *want,
			  size_t len)
{
	unsigned char buf[4096];
	size_t got = 0;

	while (got < len) {
		size_t ask = len - got < sizeof(buf) ? len - got : sizeof(buf);
		ssize_t n = iou_rstream_read(r, s, buf, ask);

		if (n < 0)
			return n;
		if (n == 0)
			break;
		if (memcmp(buf, want + got, (size_t)n))
			return -EILSEQ;
		got += (size_t)n;
	}
	return (ssize_t)got;
}

/* ---- transfers, verified byte for byte ---------------------------------- */

enum how {
	PEEK,
	READ
};

struct xfer {
	int rfd, wfd;		   /* the stream reads rfd; the sender writes wfd */
	struct iou_bufring *br;	   /* NULL: the default ring */
	const unsigned char *data; /* what is sent */
	size_t len;
	uint64_t seed;
	enum how how;
	int slow;    /* reader: sleep this many ms every 8 steps */
	size_t got;  /* bytes the reader saw, in order */
	ssize_t end; /* the reader's last result (0: end of stream) */
};

static void *sender(void *arg)
{
	struct xfer *x = arg;
	struct reactor *r = reactor_get();
	uint64_t s = seeded(x->seed ^ 0x5e);
	size_t off = 0;

	while (off < x->len) {
		size_t n = between(&s, 1, 65536);
		ssize_t k;

		if (n > x->len - off)
			n = x->len - off;
		k = iou_send(r, x->wfd, x->data + off, n, 0);
		FIBER_CHECK(k > 0);
		if (k <= 0)
			return NULL;
		off += (size_t)k;
	}
	FIBER_CHECK(iou_shutdown(r, x->wfd, SHUT_WR) == 0);
	return NULL;
}

static void *reader(void *arg)
{
	struct xfer *x = arg;
	struct reactor *r = reactor_get();
	uint64_t s = seeded(x->seed ^ 0x7ea);
	struct iou_rstream *st;
	unsigned char *buf = NULL;
	unsigned steps = 0;

	FIBER_CHECK(iou_rstream_open(r, x->rfd, x->br, &st) == 0);
	if (x->how == READ)
		buf = malloc(200000);
	for (;;) {
		const void *p;
		ssize_t n;

		if (x->slow && ++steps % 8 == 0)
			fiber_sleep(r, x->slow * IOU_MSEC);
		if (x->how == PEEK) {
			n = iou_rstream_peek(r, st, &p);
			if (n > 0) {
				/* Take a random part of it; sometimes peek again first. */
				size_t k = between(&s, 1, (size_t)n);

				if (x->got + k > x->len || memcmp(p, x->data + x->got, k)) {
					FIBER_CHECK(!"peeked bytes differ from those sent");
					break;
				}
				if (xorshift(&s) % 8 == 0) {
					const void *q;

					FIBER_CHECK(iou_rstream_peek(r, st, &q) == n && q == p);
				}
				/*
				 * A slow reader sometimes dawdles holding the bytes
				 * it peeked: other readers may reclaim the ring
				 * meanwhile, and those bytes must stay put.
				 */
				if (x->slow && xorshift(&s) % 4 == 0) {
					fiber_sleep(r, x->slow * IOU_MSEC);
					FIBER_CHECK(!memcmp(p, x->data + x->got, k));
				}
				iou_rstream_consume(st, k);
				x->got += k;
			}
		} else {
			size_t ask = between(&s, 1, 200000);

			n = iou_rstream_read(r, st, buf, ask);
			if (n > 0) {
				FIBER_CHECK((size_t)n <= ask);
				if (x->got + (size_t)n > x->len ||
				    memcmp(buf, x->data + x->got, (size_t)n)) {
					FIBER_CHECK(!"read bytes differ from those sent");
					break;
				}
				x->got += (size_t)n;
			}
		}
		if (n <= 0) {
			x->end = n;
			break;
		}
	}
	/* End of stream is sticky. */
	if (x->end == 0) {
		const void *p;

		FIBER_CHECK(iou_rstream_peek(r, st, &p) == 0);
		FIBER_CHECK(iou_rstream_read(r, st, &steps, 1) == 0);
	}
	FIBER_CHECK(iou_rstream_close(r, st) == 0);
	free(buf);
	return NULL;
}

static int transfer(struct iou_bufring *br, enum how how, size_t len, uint64_t seed, bool tcp)
{
	struct reactor *r = reactor_get();
	struct xfer x = { .br = br, .len = len, .seed = seed, .how = how, .end = 1 };
	unsigned char *data = malloc(len);

	ASSERT_TRUE(data != NULL);
	fill_random(data, len, seed);
	x.data = data;
	ASSERT_EQ(tcp ? tcp_pair(&x.rfd, &x.wfd) : unix_pair(&x.rfd, &x.wfd), 0);
	ASSERT_EQ(fiber_spawn(r, reader, &x, NULL), 0);
	ASSERT_EQ(fiber_spawn(r, sender, &x, NULL), 0);
	ASSERT_EQ(reactor_run(r), 0);
	ASSERT_NO_FIBER_FAILURES();
	ASSERT_EQ(x.end, 0);
	ASSERT_EQ(x.got, len);
	ASSERT_EQ(close(x.rfd), 0);
	ASSERT_EQ(close(x.wfd), 0);
	free(data);
	return 0;
}

static int test_transfer_peek_consume_default_ring(void)
{
	return transfer(NULL, PEEK, ((size_t)8 << 20) / scale_down(), 1, true);
}

static int test_transfer_read_default_ring(void)
{
	return transfer(NULL, READ, ((size_t)8 << 20) / scale_down(), 2, true);
}

/* A small ring: the stream keeps hitting its limit and the ring runs dry. */
static int test_transfer_small_ring(void)
{
	struct reactor *r = reactor_get();
	struct iou_bufring *br;

	ASSERT_EQ(iou_bufring_create(r, 16, 4096, &br), 0);
	if (transfer(br, PEEK, ((size_t)4 << 20) / scale_down(), 3, true))
		return 1;
	if (transfer(br, READ, ((size_t)4 << 20) / scale_down(), 4, false))
		return 1;
	/* One-byte buffers: every byte a completion of its own. */
	ASSERT_EQ(iou_bufring_destroy(r, br), 0);
	ASSERT_EQ(iou_bufring_create(r, 64, 1, &br), 0);
	if (transfer(br, PEEK, 20000 / scale_down(), 5, false))
		return 1;
	ASSERT_EQ(iou_bufring_destroy(r, br), 0);
	return 0;
}

/* ---- peek, consume, read ------------------------------------------------ */

static int test_peek_and_consume_parts(void)
{
	struct reactor *r = reactor_get();
	struct iou_rstream *s;
	const void *p, *q;
	char buf[16];
	int a = -1, b = -1;

	ASSERT_EQ(unix_pair(&a, &b), 0);
	ASSERT_EQ(write_all(b, "hello world", 11), 0);
	ASSERT_EQ(iou_rstream_open(r, a, NULL, &s), 0);
	ASSERT_EQ(iou_rstream_peek(r, s, &p), 11);
	ASSERT_TRUE(!memcmp(p, "hello world", 11));
	/* Peeking again without consuming: the same bytes. */
	ASSERT_EQ(iou_rstream_peek(r, s, &q), 11);
	ASSERT_PTR_EQ(q, p);
	iou_rstream_consume(s, 5);
	ASSERT_EQ(iou_rstream_peek(r, s, &p), 6);
	ASSERT_TRUE(!memcmp(p, " world", 6));
	/* More than peeked is clamped to what was peeked. */
	iou_rstream_consume(s, 100);
	iou_rstream_consume(s, 1); /* nothing peeked: nothing happens */
	fiber_set_deadline(r, IOU_DEADLINE_NOW);
	ASSERT_EQ(iou_rstream_peek(r, s, &p), -ETIMEDOUT);
	fiber_set_deadline(r, IOU_DEADLINE_NEVER);

	/* read() takes part of a buffer, then the rest. */
	ASSERT_EQ(write_all(b, "xyz", 3), 0);
	fiber_set_deadline(r, iou_deadline_after(GUARD));
	ASSERT_EQ(iou_rstream_read(r, s, buf, 2), 2);
	ASSERT_TRUE(!memcmp(buf, "xy", 2));
	ASSERT_EQ(iou_rstream_read(r, s, buf, sizeof(buf)), 1);
	ASSERT_EQ(buf[0], 'z');
	/* A mix: peek, consume part, read the rest. */
	ASSERT_EQ(write_all(b, "abcdef", 6), 0);
	ASSERT_EQ(iou_rstream_peek(r, s, &p), 6);
	iou_rstream_consume(s, 2);
	ASSERT_EQ(iou_rstream_read(r, s, buf, sizeof(buf)), 4);
	ASSERT_TRUE(!memcmp(buf, "cdef", 4));
	ASSERT_EQ(iou_rstream_read(r, s, buf, 0), 0); /* len 0: at once */
	fiber_set_deadline(r, IOU_DEADLINE_NEVER);
	ASSERT_EQ(iou_rstream_close(r, s), 0);
	ASSERT_EQ(close(a), 0);
	ASSERT_EQ(close(b), 0);
	return 0;
}

/* read() copies from several queued buffers without waiting in between. */
static int test_read_gathers_buffers(void)
{
	struct reactor *r = reactor_get();
	struct iou_bufring *br;
	struct iou_rstream *s;
	unsigned char want[40], buf[64];
	int a = -1, b = -1;

	fill_random(want, sizeof(want), 9);
	ASSERT_EQ(iou_bufring_create(r, 16, 8, &br), 0);
	ASSERT_EQ(unix_pair(&a, &b), 0);
	ASSERT_EQ(iou_rstream_open(r, a, br, &s), 0);
	ASSERT_EQ(write_all(b, want, sizeof(want)), 0);
	/* Let the request take it all (five 8-byte buffers). */
	ASSERT_EQ(fiber_sleep(r, 20 * IOU_MSEC), 0);
	fiber_set_deadline(r, iou_deadline_after(GUARD));
	ASSERT_EQ(iou_rstream_read(r, s, buf, sizeof(buf)), 40);
	fiber_set_deadline(r, IOU_DEADLINE_NEVER);
	ASSERT_TRUE(!memcmp(buf, want, sizeof(want)));
	ASSERT_EQ(iou_rstream_close(r, s), 0);
	ASSERT_EQ(iou_bufring_destroy(r, br), 0);
	ASSERT_EQ(close(a), 0);
	ASSERT_EQ(close(b), 0);
	return 0;
}

/* ---- how streams end ---------------------------------------------------- */

static int test_end_of_stream_after_data(void)
{
	struct reactor *r = reactor_get();
	struct iou_rstream *s;
	unsigned char want[5000];
	const void *p;
	char c;
	int a = -1, b = -1;

	fill_random(want, sizeof(want), 11);
	ASSERT_EQ(tcp_pair(&a, &b), 0);
	ASSERT_EQ(iou_rstream_open(r, a, NULL, &s), 0);
	ASSERT_EQ(write_all(b, want, sizeof(want)), 0);
	ASSERT_EQ(shutdown(b, SHUT_WR), 0);
	fiber_set_deadline(r, iou_deadline_after(GUARD));
	ASSERT_EQ(read_check(r, s, want, sizeof(want)), (ssize_t)sizeof(want));
	ASSERT_EQ(iou_rstream_read(r, s, &c, 1), 0);
	ASSERT_EQ(iou_rstream_read(r, s, &c, 1), 0);
	ASSERT_EQ(iou_rstream_peek(r, s, &p), 0);
	fiber_set_deadline(r, IOU_DEADLINE_NEVER);
	ASSERT_EQ(iou_rstream_close(r, s), 0);
	ASSERT_EQ(close(a), 0);
	ASSERT_EQ(close(b), 0);
	return 0;
}

static int test_peer_reset_after_data(void)
{
	struct reactor *r = reactor_get();
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };
	struct iou_rstream *s;
	unsigned char want[3000];
	const void *p;
	char c;
	int a = -1, b = -1;

	fill_random(want, sizeof(want), 12);
	ASSERT_EQ(tcp_pair(&a, &b), 0);
	ASSERT_EQ(iou_rstream_open(r, a, NULL, &s), 0);
	ASSERT_EQ(write_all(b, want, sizeof(want)), 0);
	ASSERT_EQ(fiber_sleep(r, 20 * IOU_MSEC), 0);
	/* Close with a zero linger: an RST. */
	ASSERT_EQ(setsockopt(b, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
	ASSERT_EQ(close(b), 0);
	fiber_set_deadline(r, iou_deadline_after(GUARD));
	/* The data first, then the error, which stays. */
	ASSERT_EQ(read_check(r, s, want, sizeof(want)), (ssize_t)sizeof(want));
	ASSERT_EQ(iou_rstream_read(r, s, &c, 1), -ECONNRESET);
	ASSERT_EQ(iou_rstream_read(r, s, &c, 1), -ECONNRESET);
	ASSERT_EQ(iou_rstream_peek(r, s, &p), -ECONNRESET);
	fiber_set_deadline(r, IOU_DEADLINE_NEVER);
	ASSERT_EQ(iou_rstream_close(r, s), 0);
	ASSERT_EQ(close(a), 0);
	return 0;
}

/* The same, reading with a buffer larger than the data: data, then the error. */
static int test_peer_reset_data_comes_first(void)
{
	struct reactor *r = reactor_get();
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };
	struct iou_rstream *s;
	unsigned char want[3000], buf[4096];
	size_t got = 0;
	ssize_t n;
	int a = -1, b = -1;

	fill_random(want, sizeof(want), 13);
	ASSERT_EQ(tcp_pair(&a, &b), 0);
	ASSERT_EQ(iou_rstream_open(r, a, NULL, &s), 0);
	ASSERT_EQ(write_all(b, want, sizeof(want)), 0);
	ASSERT_EQ(fiber_sleep(r, 20 * IOU_MSEC), 0);
	ASSERT_EQ(setsockopt(b, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
	ASSERT_EQ(close(b), 0);
	fiber_set_deadline(r, iou_deadline_after(GUARD));
	while ((n = iou_rstream_read(r, s, buf + got, sizeof(buf) - got)) > 0)
		got += (size_t)n;
	fiber_set_deadline(r, IOU_DEADLINE_NEVER);
	ASSERT_EQ(n, -ECONNRESET);
	ASSERT_EQ(got, sizeof(want));
	ASSERT_TRUE(!memcmp(buf, want, sizeof(want)));
	ASSERT_EQ(iou_rstream_close(r, s), 0);
	ASSERT_EQ(close(a), 0);
	return 0;
}

/* ---- sharing a ring ----------------------------------------------------- */

/* @n UNIX socket pairs, each with a stream on @br reading a[i] (b[i] writes). */
static int streams_open(struct reactor *r, struct iou_bufring *br, int n, struct iou_rstream **s,
			int *a, int *b)
{
	for (int i = 0; i < n; i++) {
		ASSERT_EQ(unix_pair(&a[i], &b[i]), 0);
		ASSERT_EQ(iou_rstream_open(r, a[i], br, &s[i]), 0);
	}
	return 0;
}

/* Close what streams_open() made, then destroy @br. */
static int streams_close(struct reactor *r, struct iou_bufring *br, int n, struct iou_rstream **s,
			 const int *a, const int *b)
{
	for (int i = 0; i < n; i++) {
		ASSERT_EQ(iou_rstream_close(r, s[i]), 0);
		ASSERT_EQ(close(a[i]), 0);
		ASSERT_EQ(close(b[i]), 0);
	}
	ASSERT_EQ(iou_bufring_destroy(r, br), 0);
	return 0;
}

/*
 * Two streams whose readers do not read fill a 4-buffer ring; a third
 * stream's reader still gets its bytes at once, because the idle streams'
 * buffers are reclaimed into their spill areas -- except the head buffer
 * of a reader that is using it (peeked, not consumed).  Then the ring runs
 * dry again while one reader is using its spill (it must stay put) and
 * another holds its head buffer, and a fifth stream is served the same
 * way.  Every byte of every stream is then read back, in order.
 */
static int test_dry_ring_reclaims_idle_streams(void)
{
	struct reactor *r = reactor_get();
	enum {
		N = 5
	};
	struct iou_bufring *br;
	struct iou_rstream *s[N];
	static unsigned char want[N][2][8192]; /* stream, round */
	size_t got[N] = { 0 };
	int a[N], b[N];
	const void *p0, *p1, *q;
	char buf[8];
	ssize_t n0, n1;

	ASSERT_EQ(iou_bufring_create(r, 4, 1024, &br), 0);
	ASSERT_EQ(streams_open(r, br, N, s, a, b), 0);
	for (int i = 0; i < N; i++) {
		for (int k = 0; k < 2; k++)
			fill_random(want[i][k], sizeof(want[i][k]), 20 + (uint64_t)(i * 2 + k));
	}
	for (int i = 0; i < 2; i++)
		ASSERT_EQ(write_all(b[i], want[i][0], sizeof(want[i][0])), 0);
	ASSERT_EQ(fiber_sleep(r, 30 * IOU_MSEC), 0);
	/* s[0]'s reader is using its first bytes: they must not move. */
	fiber_set_deadline(r, IOU_DEADLINE_NOW);
	n0 = iou_rstream_peek(r, s[0], &p0);
	fiber_set_deadline(r, IOU_DEADLINE_NEVER);
	ASSERT_GT(n0, 0);
	ASSERT_TRUE(!memcmp(p0, want[0][0], (size_t)n0));
	ASSERT_EQ(write_all(b[2], "hi", 2), 0);
	/* Every buffer is in s[0] or s[1], yet s[2] is served at once. */
	fiber_set_deadline(r, iou_deadline_after(GUARD));
	ASSERT_EQ(iou_rstream_read(r, s[2], buf, sizeof(buf)), 2);
	ASSERT_TRUE(!memcmp(buf, "hi", 2));
	/* s[1] was spilled whole; its reader now uses the spill. */
	n1 = iou_rstream_peek(r, s[1], &p1);
	ASSERT_GT(n1, 0);
	ASSERT_TRUE(!memcmp(p1, want[1][0], (size_t)n1));
	/* Dry again: s[2] and s[3] take the free buffers and do not read. */
	ASSERT_EQ(write_all(b[2], want[2][0], sizeof(want[2][0])), 0);
	ASSERT_EQ(write_all(b[3], want[3][0], sizeof(want[3][0])), 0);
	ASSERT_EQ(fiber_sleep(r, 30 * IOU_MSEC), 0);
	ASSERT_EQ(write_all(b[4], "hey", 3), 0);
	ASSERT_EQ(iou_rstream_read(r, s[4], buf, sizeof(buf)), 3);
	ASSERT_TRUE(!memcmp(buf, "hey", 3));
	/* The bytes s[0]'s and s[1]'s readers hold are where they were. */
	ASSERT_EQ(iou_rstream_peek(r, s[0], &q), n0);
	ASSERT_TRUE(q == p0 && !memcmp(q, want[0][0], (size_t)n0));
	iou_rstream_consume(s[0], (size_t)n0);
	ASSERT_EQ(iou_rstream_peek(r, s[1], &q), n1);
	ASSERT_TRUE(q == p1 && !memcmp(q, want[1][0], (size_t)n1));
	iou_rstream_consume(s[1], (size_t)n1);
	got[0] = (size_t)n0;
	got[1] = (size_t)n1;
	/* All the rest, in order, spilled or not; then more, read normally. */
	for (int i = 0; i < 4; i++) {
		ASSERT_EQ(read_check(r, s[i], want[i][0] + got[i], sizeof(want[i][0]) - got[i]),
			  (ssize_t)(sizeof(want[i][0]) - got[i]));
		ASSERT_EQ(write_all(b[i], want[i][1], sizeof(want[i][1])), 0);
		ASSERT_EQ(read_check(r, s[i], want[i][1], sizeof(want[i][1])),
			  (ssize_t)sizeof(want[i][1]));
	}
	fiber_set_deadline(r, IOU_DEADLINE_NEVER);
	return streams_close(r, br, N, s, a, b);
}

/*
 * Four readers each using (peeked, not consumed) the one buffer they
 * hold: nothing can be reclaimed from a 4-buffer ring, so a fifth stream's
 * reader waits, its bytes left in the socket, until one of them consumes.
 */
static int test_dry_ring_starves_then_resumes(void)
{
	struct reactor *r = reactor_get();
	enum {
		N = 5
	};
	struct iou_bufring *br;
	struct iou_rstream *s[N];
	unsigned char want[N - 1][100];
	int a[N], b[N];
	const void *p[N - 1];
	char buf[8];
	int64_t t0;

	ASSERT_EQ(iou_bufring_create(r, 4, 1024, &br), 0);
	ASSERT_EQ(streams_open(r, br, N, s, a, b), 0);
	fiber_set_deadline(r, iou_deadline_after(GUARD));
	for (int i = 0; i < N - 1; i++) {
		fill_random(want[i], sizeof(want[i]), 50 + (uint64_t)i);
		ASSERT_EQ(write_all(b[i], want[i], sizeof(want[i])), 0);
		ASSERT_EQ(iou_rstream_peek(r, s[i], &p[i]), (ssize_t)sizeof(want[i]));
	}
	fiber_set_deadline(r, IOU_DEADLINE_NEVER);
	ASSERT_EQ(write_all(b[N - 1], "hi", 2), 0);
	if (!fallback()) {
		t0 = iou_now();
		fiber_set_deadline(r, iou_deadline_after(100 * IOU_MSEC));
		ASSERT_EQ(iou_rstream_read(r, s[N - 1], buf, sizeof(buf)), -ETIMEDOUT);
		fiber_set_deadline(r, IOU_DEADLINE_NEVER);
		ASSERT_GE(iou_now() - t0, 100 * IOU_MSEC);
		/* The bytes stayed in the socket, waiting for a buffer. */
		ASSERT_EQ(inq(a[N - 1]), 2);
	}
	/* One buffer back, and the starved stream gets its turn. */
	ASSERT_TRUE(!memcmp(p[0], want[0], sizeof(want[0])));
	iou_rstream_consume(s[0], sizeof(want[0]));
	fiber_set_deadline(r, iou_deadline_after(GUARD));
	ASSERT_EQ(iou_rstream_read(r, s[N - 1], buf, sizeof(buf)), 2);
	ASSERT_TRUE(!memcmp(buf, "hi", 2));
	fiber_set_deadline(r, IOU_DEADLINE_NEVER);
	for (int i = 1; i < N - 1; i++) {
		ASSERT_TRUE(!memcmp(p[i], want[i], sizeof(want[i])));
		iou_rstream_consume(s[i], sizeof(want[i]));
	}
	return streams_close(r, br, N, s, a, b);
}

/* Four streams, readers of different slowness, one 4-buffer ring. */
static int test_tiny_ring_shared_by_slow_readers(void)
{
	struct reactor *r = reactor_get();
	enum {
		N = 4
	};
	struct xfer x[N];
	struct iou_bufring *br;
	size_t len = ((size_t)256 << 10) / scale_down();

	ASSERT_EQ(iou_bufring_create(r, 4, 1024, &br), 0);
	for (int i = 0; i < N; i++) {
		unsigned char *d = malloc(len);

		ASSERT_TRUE(d != NULL);
		fill_random(d, len, 30 + (uint64_t)i);
		x[i] = (struct xfer){ .br = br,
				      .data = d,
				      .len = len,
				      .seed = 30 + (uint64_t)i,
				      .how = i % 2 ? READ : PEEK,
				      .slow = i,
				      .end = 1 };
		ASSERT_EQ(i % 2 ? tcp_pair(&x[i].rfd, &x[i].wfd) : unix_pair(&x[i].rfd, &x[i].wfd),
			  0);
		ASSERT_EQ(fiber_spawn(r, reader, &x[i], NULL), 0);
		ASSERT_EQ(fiber_spawn(r, sender, &x[i], NULL), 0);
	}
	ASSERT_EQ(reactor_run(r), 0);
	ASSERT_NO_FIBER_FAILURES();
	for (int i = 0; i < N; i++) {
		ASSERT_EQ(x[i].end, 0);
		ASSERT_EQ(x[i].got, len);
		ASSERT_EQ(close(x[i].rfd), 0);
		ASSERT_EQ(close(x[i].wfd), 0);
		free((void *)x[i].data);
	}
	ASSERT_EQ(iou_bufring_destroy(r, br), 0);
	return 0;
}

/* Sends 1 KiB messages one by one, pausing in between. */
struct trickle {
	int fd;
	const unsigned char *data;
	int count;
};

static void *trickler(void *arg)
{
	struct trickle *t = arg;
	struct reactor *r = reactor_get();

	for (int i = 0; i < t->count; i++) {
		FIBER_CHECK(iou_send(r, t->fd, t->data + i * 1024, 1024, 0) == 1024);
		fiber_sleep(r, 2 * IOU_MSEC);
	}
	return NULL;
}

/*
 * A stream whose reader does not read stops taking buffers at its limit
 * (64 buffers: 8), leaving the rest in the socket; reading resumes it.
 */
static int test_per_stream_limit(void)
{
	struct reactor *r = reactor_get();
	enum {
		MSGS = 40
	};
	static unsigned char want[MSGS * 1024];
	struct trickle t = { .data = want, .count = MSGS };
	struct iou_bufring *br;
	struct iou_rstream *s;
	struct fiber *f;
	int a = -1;

	fill_random(want, sizeof(want), 40);
	ASSERT_EQ(iou_bufring_create(r, 64, 1024, &br), 0);
	ASSERT_EQ(IOU_RSTREAM_LIMIT(64u), 8u);
	ASSERT_EQ(IOU_RSTREAM_LIMIT(4u), 2u);
	ASSERT_EQ(unix_pair(&a, &t.fd), 0);
	ASSERT_EQ(iou_rstream_open(r, a, br, &s), 0);
	ASSERT_EQ(fiber_spawn(r, trickler, &t, &f), 0);
	ASSERT_EQ(fiber_join(f, NULL), 0);
	ASSERT_EQ(fiber_sleep(r, 20 * IOU_MSEC), 0);
	if (!fallback()) {
		int left = inq(a);

		/* About 8 buffers taken (a few more may race the pause), not 40. */
		printf("# limit: %d of %d bytes left in the socket\n", left, (int)sizeof(want));
		ASSERT_GE(left, (int)sizeof(want) - 20 * 1024);
	}
	fiber_set_deadline(r, iou_deadline_after(GUARD));
	ASSERT_EQ(read_check(r, s, want, sizeof(want)), (ssize_t)sizeof(want));
	fiber_set_deadline(r, IOU_DEADLINE_NEVER);
	ASSERT_EQ(inq(a), 0);
	ASSERT_EQ(iou_rstream_close(r, s), 0);
	ASSERT_EQ(iou_bufring_destroy(r, br), 0);
	ASSERT_EQ(close(a), 0);
	ASSERT_EQ(close(t.fd), 0);
	return 0;
}

/* ---- deadlines, cancellation, one reader -------------------------------- */

static int test_deadline_keeps_stream(void)
{
	struct reactor *r = reactor_get();
	struct iou_rstream *s;
	const void *p;
	int64_t t0;
	int a = -1, b = -1;

	ASSERT_EQ(tcp_pair(&a, &b), 0);
	ASSERT_EQ(iou_rstream_open(r, a, NULL, &s), 0);
	t0 = iou_now();
	fiber_set_deadline(r, iou_deadline_after(50 * IOU_MSEC));
	ASSERT_EQ(iou_rstream_peek(r, s, &p), -ETIMEDOUT);
	ASSERT_GE(iou_now() - t0, 50 * IOU_MSEC);
	ASSERT_LT(iou_now() - t0, GUARD);
	fiber_set_deadline(r, IOU_DEADLINE_NOW);
	ASSERT_EQ(iou_rstream_read(r, s, &t0, 1), -ETIMEDOUT);
	/* The stream lost nothing and works on. */
	ASSERT_EQ(write_all(b, "abc", 3), 0);
	fiber_set_deadline(r, iou_deadline_after(GUARD));
	ASSERT_EQ(iou_rstream_peek(r, s, &p), 3);
	ASSERT_TRUE(!memcmp(p, "abc", 3));
	/* Queued data needs no wait: "do not wait" returns it. */
	fiber_set_deadline(r, IOU_DEADLINE_NOW);
	ASSERT_EQ(iou_rstream_peek(r, s, &p), 3);
	iou_rstream_consume(s, 3);
	ASSERT_EQ(iou_rstream_peek(r, s, &p), -ETIMEDOUT);
	fiber_set_deadline(r, IOU_DEADLINE_NEVER);
	ASSERT_EQ(iou_rstream_close(r, s), 0);
	ASSERT_EQ(close(a), 0);
	ASSERT_EQ(close(b), 0);
	return 0;
}

struct cancel_job {
	struct iou_rstream *s;
	struct fiber *victim;
	ssize_t first, again, queued;
};

static void *peek_until_cancelled(void *arg)
{
	struct cancel_job *j = arg;
	struct reactor *r = reactor_get();
	const void *p;

	j->first = iou_rstream_peek(r, j->s, &p);
	j->again = iou_rstream_peek(r, j->s, &p);
	return NULL;
}

static void *cancel_later(void *arg)
{
	struct cancel_job *j = arg;

	FIBER_CHECK(fiber_sleep(reactor_get(), 20 * IOU_MSEC) == 0);
	FIBER_CHECK(fiber_cancel(j->victim) == 0);
	return NULL;
}

/* A cancelled fiber still gets bytes that are already queued. */
static void *cancelled_with_data(void *arg)
{
	struct cancel_job *j = arg;
	struct reactor *r = reactor_get();
	const void *p;

	fiber_cancel(fiber_self(r));
	j->queued = iou_rstream_peek(r, j->s, &p);
	if (j->queued > 0)
		iou_rstream_consume(j->s, (size_t)j->queued);
	j->again = iou_rstream_peek(r, j->s, &p);
	return NULL;
}

static int test_cancel_keeps_stream(void)
{
	struct reactor *r = reactor_get();
	struct cancel_job j = { 0 };
	const void *p;
	char buf[8];
	int a = -1, b = -1;

	ASSERT_EQ(tcp_pair(&a, &b), 0);
	ASSERT_EQ(iou_rstream_open(r, a, NULL, &j.s), 0);
	ASSERT_EQ(fiber_spawn(r, peek_until_cancelled, &j, &j.victim), 0);
	ASSERT_EQ(fiber_spawn(r, cancel_later, &j, NULL), 0);
	fiber_set_deadline(r, iou_deadline_after(GUARD));
	ASSERT_EQ(fiber_join(j.victim, NULL), 0);
	ASSERT_EQ(j.first, -ECANCELED);
	ASSERT_EQ(j.again, -ECANCELED);
	/* Usable by others. */
	ASSERT_EQ(write_all(b, "xyz", 3), 0);
	ASSERT_EQ(iou_rstream_read(r, j.s, buf, sizeof(buf)), 3);
	ASSERT_TRUE(!memcmp(buf, "xyz", 3));

	ASSERT_EQ(write_all(b, "q", 1), 0);
	ASSERT_EQ(iou_rstream_peek(r, j.s, &p), 1); /* queued now */
	ASSERT_EQ(fiber_spawn(r, cancelled_with_data, &j, &j.victim), 0);
	ASSERT_EQ(fiber_join(j.victim, NULL), 0);
	ASSERT_EQ(j.queued, 1);
	ASSERT_EQ(j.again, -ECANCELED);
	fiber_set_deadline(r, IOU_DEADLINE_NEVER);
	ASSERT_EQ(reactor_run(r), 0);
	ASSERT_NO_FIBER_FAILURES();
	ASSERT_EQ(iou_rstream_close(r, j.s), 0);
	ASSERT_EQ(close(a), 0);
	ASSERT_EQ(close(b), 0);
	return 0;
}

static void *peek_once(void *arg)
{
	struct cancel_job *j = arg;
	const void *p;

	j->first = iou_rstream_peek(reactor_get(), j->s, &p);
	if (j->first > 0)
		iou_rstream_consume(j->s, (size_t)j->first);
	return NULL;
}

static int test_one_reader_at_a_time(void)
{
	struct reactor *r = reactor_get();
	struct cancel_job j = { 0 };
	const void *p;
	char c;
	int a = -1, b = -1;

	ASSERT_EQ(unix_pair(&a, &b), 0);
	ASSERT_EQ(iou_rstream_open(r, a, NULL, &j.s), 0);
	ASSERT_EQ(fiber_spawn(r, peek_once, &j, &j.victim), 0);
	ASSERT_EQ(fiber_yield(r), 0); /* it parks in the peek */
	ASSERT_EQ(iou_rstream_peek(r, j.s, &p), -EBUSY);
	ASSERT_EQ(iou_rstream_read(r, j.s, &c, 1), -EBUSY);
	ASSERT_EQ(iou_rstream_close(r, j.s), -EBUSY);
	ASSERT_EQ(write_all(b, "!", 1), 0);
	fiber_set_deadline(r, iou_deadline_after(GUARD));
	ASSERT_EQ(fiber_join(j.victim, NULL), 0);
	fiber_set_deadline(r, IOU_DEADLINE_NEVER);
	ASSERT_EQ(j.first, 1);
	ASSERT_EQ(iou_rstream_close(r, j.s), 0);
	ASSERT_EQ(close(a), 0);
	ASSERT_EQ(close(b), 0);
	return 0;
}

/* ---- close -------------------------------------------------------------- */

/* Closing an armed stream cancels its request: later bytes stay in the socket. */
static int test_close_while_armed(void)
{
	struct reactor *r = reactor_get();
	struct iou_rstream *s;
	char buf[8];
	int a = -1, b = -1;

	ASSERT_EQ(tcp_pair(&a, &b), 0);
	ASSERT_EQ(iou_rstream_open(r, a, NULL, &s), 0);
	ASSERT_EQ(fiber_sleep(r, 5 * IOU_MSEC), 0); /* the request is in the kernel */
	ASSERT_EQ(iou_rstream_close(r, s), 0);
	ASSERT_EQ(write_all(b, "late", 4), 0);
	ASSERT_EQ(fiber_sleep(r, 10 * IOU_MSEC), 0);
	ASSERT_EQ(inq(a), 4);
	ASSERT_EQ(iou_rstream_open(r, a, NULL, &s), 0);
	fiber_set_deadline(r, iou_deadline_after(GUARD));
	ASSERT_EQ(iou_rstream_read(r, s, buf, sizeof(buf)), 4);
	fiber_set_deadline(r, IOU_DEADLINE_NEVER);
	ASSERT_TRUE(!memcmp(buf, "late", 4));
	ASSERT_EQ(iou_rstream_close(r, s), 0);
	/* Closed before its request ever reached the kernel. */
	ASSERT_EQ(iou_rstream_open(r, a, NULL, &s), 0);
	ASSERT_EQ(iou_rstream_close(r, s), 0);
	ASSERT_EQ(close(a), 0);
	ASSERT_EQ(close(b), 0);
	return 0;
}

static void *close_cancelled(void *arg)
{
	struct cancel_job *j = arg;
	struct reactor *r = reactor_get();

	fiber_cancel(fiber_self(r));
	j->first = iou_rstream_close(r, j->s);
	return NULL;
}

static int test_close_in_cancelled_fiber(void)
{
	struct reactor *r = reactor_get();
	struct cancel_job j = { .first = 1 };
	int a = -1, b = -1;

	ASSERT_EQ(tcp_pair(&a, &b), 0);
	ASSERT_EQ(iou_rstream_open(r, a, NULL, &j.s), 0);
	ASSERT_EQ(fiber_sleep(r, 5 * IOU_MSEC), 0);
	ASSERT_EQ(fiber_spawn(r, close_cancelled, &j, NULL), 0);
	ASSERT_EQ(reactor_run(r), 0);
	ASSERT_EQ(j.first, 0);
	ASSERT_EQ(close(a), 0);
	ASSERT_EQ(close(b), 0);
	return 0;
}

/* Buffers held by a closed stream go back: the next stream gets the whole ring. */
static int test_close_returns_buffers(void)
{
	struct reactor *r = reactor_get();
	struct iou_bufring *br;
	struct iou_rstream *s;
	unsigned char want[4096];
	const void *p;
	int a = -1, b = -1;

	fill_random(want, sizeof(want), 50);
	ASSERT_EQ(iou_bufring_create(r, 4, 1024, &br), 0);
	for (int round = 0; round < 3; round++) {
		ASSERT_EQ(unix_pair(&a, &b), 0);
		ASSERT_EQ(iou_rstream_open(r, a, br, &s), 0);
		ASSERT_EQ(write_all(b, want, sizeof(want)), 0);
		ASSERT_EQ(fiber_sleep(r, 20 * IOU_MSEC), 0);
		if (!fallback())
			ASSERT_EQ(inq(a), 0); /* all four buffers were free for it */
		if (round == 2) {
			fiber_set_deadline(r, iou_deadline_after(GUARD));
			ASSERT_EQ(read_check(r, s, want, sizeof(want)), (ssize_t)sizeof(want));
			fiber_set_deadline(r, IOU_DEADLINE_NEVER);
		} else if (round == 1) {
			/* Part of a buffer consumed, the rest discarded. */
			fiber_set_deadline(r, iou_deadline_after(GUARD));
			ASSERT_GT(iou_rstream_peek(r, s, &p), 10);
			fiber_set_deadline(r, IOU_DEADLINE_NEVER);
			iou_rstream_consume(s, 10);
		}
		ASSERT_EQ(iou_rstream_close(r, s), 0);
		ASSERT_EQ(close(a), 0);
		ASSERT_EQ(close(b), 0);
	}
	ASSERT_EQ(iou_bufring_destroy(r, br), 0);
	return 0;
}

static int test_destroy_ring_in_use(void)
{
	struct reactor *r = reactor_get();
	struct iou_bufring *br, *br2;
	struct iou_rstream *s, *s2;
	int a = -1, b = -1;

	ASSERT_EQ(iou_bufring_create(r, 8, 512, &br), 0);
	ASSERT_EQ(iou_bufring_create(r, 8, 512, &br2), 0); /* its own group id */
	ASSERT_EQ(unix_pair(&a, &b), 0);
	ASSERT_EQ(iou_rstream_open(r, a, br, &s), 0);
	ASSERT_EQ(iou_rstream_open(r, b, br2, &s2), 0);
	ASSERT_EQ(iou_bufring_destroy(r, br), -EBUSY);
	ASSERT_EQ(iou_bufring_destroy(r, br2), -EBUSY);
	/* Both rings work, each for its own stream. */
	ASSERT_EQ(write_all(b, "ab", 2), 0);
	ASSERT_EQ(write_all(a, "cd", 2), 0);
	fiber_set_deadline(r, iou_deadline_after(GUARD));
	char buf[4];
	ASSERT_EQ(iou_rstream_read(r, s, buf, sizeof(buf)), 2);
	ASSERT_TRUE(!memcmp(buf, "ab", 2));
	ASSERT_EQ(iou_rstream_read(r, s2, buf, sizeof(buf)), 2);
	ASSERT_TRUE(!memcmp(buf, "cd", 2));
	fiber_set_deadline(r, IOU_DEADLINE_NEVER);
	ASSERT_EQ(iou_rstream_close(r, s), 0);
	ASSERT_EQ(iou_bufring_destroy(r, br), 0);
	ASSERT_EQ(iou_rstream_close(r, s2), 0);
	ASSERT_EQ(iou_bufring_destroy(r, br2), 0);
	ASSERT_EQ(close(a), 0);
	ASSERT_EQ(close(b), 0);
	return 0;
}

/* ---- many connections --------------------------------------------------- */

struct echo_server {
	int lfd;
	struct sockaddr_in addr;
	unsigned served;
};

/* The handler: echo through a stream on the default ring until end of stream. */
static void echo_conn(struct reactor *r, int fd, void *arg)
{
	struct echo_server *e = arg;
	struct iou_rstream *s;
	const void *p;
	ssize_t n;

	if (iou_rstream_open(r, fd, NULL, &s) < 0) {
		FIBER_CHECK(!"iou_rstream_open failed");
		iou_close(r, fd);
		return;
	}
	while ((n = iou_rstream_peek(r, s, &p)) > 0) {
		if (iou_write_all(r, fd, p, (size_t)n, NULL) < 0)
			break;
		iou_rstream_consume(s, (size_t)n);
	}
	FIBER_CHECK(n == 0);
	FIBER_CHECK(iou_rstream_close(r, s) == 0);
	iou_close(r, fd);
	e->served++;
}

static void *echo_accept(void *arg)
{
	struct echo_server *e = arg;
	struct reactor *r = reactor_get();

	FIBER_CHECK(iou_accept_each(r, e->lfd, echo_conn, e, NULL) == -ECANCELED);
	return NULL;
}

struct echo_client {
	struct echo_server *e;
	unsigned id;
	bool ok;
};

static void *echo_client(void *arg)
{
	struct echo_client *c = arg;
	struct reactor *r = reactor_get();
	unsigned char out[3000], in[3000];
	uint64_t s = seeded(c->id);
	size_t len = between(&s, 1, sizeof(out)), sent = 0, got = 0;
	int fd = iou_socket(r, AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	fill_random(out, len, 1000 + c->id);
	FIBER_CHECK(fd >= 0);
	if (fd < 0)
		return NULL;
	FIBER_CHECK(iou_connect(r, fd, (struct sockaddr *)&c->e->addr, sizeof(c->e->addr)) == 0);
	while (sent < len) {
		size_t n = between(&s, 1, len - sent);

		if (iou_send(r, fd, out + sent, n, 0) != (ssize_t)n)
			break;
		sent += n;
	}
	FIBER_CHECK(sent == len);
	FIBER_CHECK(iou_shutdown(r, fd, SHUT_WR) == 0);
	for (;;) {
		ssize_t n = iou_recv(r, fd, in + got, sizeof(in) - got, 0);

		if (n <= 0)
			break;
		got += (size_t)n;
	}
	c->ok = got == len && !memcmp(in, out, len);
	FIBER_CHECK(c->ok);
	iou_close(r, fd);
	return NULL;
}

static int test_many_connections_echoed(void)
{
	struct reactor *r = reactor_get();
	struct echo_server e = { .addr = { .sin_family = AF_INET } };
	unsigned n = 1000 / (unsigned)scale_down();
	struct echo_client *c = calloc(n, sizeof(*c));
	struct fiber **f = calloc(n, sizeof(*f));
	struct fiber *acceptor;
	socklen_t alen = sizeof(e.addr);
	struct rlimit rl;

	ASSERT_TRUE(c && f);
	ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &rl), 0);
	if (rl.rlim_cur < 2 * n + 64 && rl.rlim_max >= 2 * n + 64) {
		rl.rlim_cur = 2 * n + 64;
		ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &rl), 0);
	}
	if (rl.rlim_cur < 2 * n + 64)
		n = (unsigned)(rl.rlim_cur - 64) / 2;
	e.addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	e.lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ASSERT_GE(e.lfd, 0);
	ASSERT_EQ(bind(e.lfd, (struct sockaddr *)&e.addr, sizeof(e.addr)), 0);
	ASSERT_EQ(listen(e.lfd, 4096), 0);
	ASSERT_EQ(getsockname(e.lfd, (struct sockaddr *)&e.addr, &alen), 0);
	ASSERT_EQ(fiber_spawn(r, echo_accept, &e, &acceptor), 0);
	for (unsigned i = 0; i < n; i++) {
		c[i] = (struct echo_client){ .e = &e, .id = i };
		ASSERT_EQ(fiber_spawn(r, echo_client, &c[i], &f[i]), 0);
	}
	fiber_set_deadline(r, iou_deadline_after(6 * GUARD));
	for (unsigned i = 0; i < n; i++)
		ASSERT_EQ(fiber_join(f[i], NULL), 0);
	/* Handlers finish after their client saw the end: let them. */
	while (e.served < n)
		ASSERT_EQ(fiber_sleep(r, IOU_MSEC), 0);
	fiber_set_deadline(r, IOU_DEADLINE_NEVER);
	ASSERT_EQ(fiber_cancel(acceptor), 0);
	ASSERT_EQ(fiber_join(acceptor, NULL), 0);
	ASSERT_EQ(reactor_run(r), 0);
	ASSERT_NO_FIBER_FAILURES();
	for (unsigned i = 0; i < n; i++)
		ASSERT_TRUE(c[i].ok);
	ASSERT_EQ(e.served, n);
	ASSERT_EQ(close(e.lfd), 0);
	free(c);
	free(f);
	return 0;
}

/* ---- the reactor -------------------------------------------------------- */

static void *nothing(void *arg)
{
	return arg;
}

/* An armed stream waits for data nobody may send: reactor_run() does not. */
static int test_armed_stream_does_not_hold_reactor(void)
{
	struct reactor *r = reactor_get();
	struct iou_rstream *s;
	char buf[4];
	int a = -1, b = -1;

	ASSERT_EQ(unix_pair(&a, &b), 0);
	ASSERT_EQ(iou_rstream_open(r, a, NULL, &s), 0);
	ASSERT_EQ(fiber_spawn(r, nothing, NULL, NULL), 0);
	ASSERT_EQ(reactor_run(r), 0);
	ASSERT_TRUE(!reactor_runnable(r));
	ASSERT_EQ(write_all(b, "ok", 2), 0);
	fiber_set_deadline(r, iou_deadline_after(GUARD));
	ASSERT_EQ(iou_rstream_read(r, s, buf, sizeof(buf)), 2);
	fiber_set_deadline(r, IOU_DEADLINE_NEVER);
	ASSERT_EQ(iou_rstream_close(r, s), 0);
	ASSERT_EQ(close(a), 0);
	ASSERT_EQ(close(b), 0);
	return 0;
}

/* A fiber left parked in a peek when the reactor goes. */
static void *parked_reader(void *arg)
{
	const void *p;

	iou_rstream_peek(reactor_get(), arg, &p);
	FIBER_CHECK(!"a fiber of a destroyed reactor ran on");
	return NULL;
}

/* Open rings and streams in every state, then let the reactor go. */
static int teardown_body(bool destroy)
{
	struct reactor *r = reactor_get();
	struct iou_bufring *br, *idle;
	struct iou_rstream *s[4];
	int a[4], b[4];
	unsigned char junk[6000];

	ASSERT_TRUE(r != NULL);
	fill_random(junk, sizeof(junk), 60);
	ASSERT_EQ(iou_bufring_create(r, 8, 1024, &br), 0);
	ASSERT_EQ(iou_bufring_create(r, 2, 100, &idle), 0);
	for (int i = 0; i < 4; i++) {
		ASSERT_EQ(tcp_pair(&a[i], &b[i]), 0);
		ASSERT_EQ(iou_rstream_open(r, a[i], i % 2 ? br : NULL, &s[i]), 0);
	}
	/* s[0], s[1]: buffers queued; s[2]: armed, idle; s[3]: a fiber waits on it. */
	ASSERT_EQ(write_all(b[0], junk, sizeof(junk)), 0);
	ASSERT_EQ(write_all(b[1], junk, sizeof(junk)), 0);
	ASSERT_EQ(fiber_spawn(r, parked_reader, s[3], NULL), 0);
	ASSERT_EQ(fiber_sleep(r, 20 * IOU_MSEC), 0);
	if (destroy)
		ASSERT_EQ(reactor_destroy(r), 0);
	/* else: thread exit tears it down */
	for (int i = 0; i < 4; i++) {
		ASSERT_EQ(close(a[i]), 0);
		ASSERT_EQ(close(b[i]), 0);
	}
	return 0;
}

static int test_reactor_teardown_with_open_streams(void)
{
	int fds = test_count_fds();

	ASSERT_EQ(test_teardown_both_ways(teardown_body), 0);
	ASSERT_NO_FIBER_FAILURES();
	ASSERT_EQ(test_count_fds(), fds); /* the rings' descriptors are gone too */
	return 0;
}

/* Options: the default ring's shape, and what is refused. */
static int options_body(void)
{
	struct reactor_options o;
	struct reactor *r;
	struct iou_rstream *s;
	unsigned char want[300];
	int a = -1, b = -1;

	reactor_options_init(&o);
	ASSERT_EQ(o.bufring_count, IOU_DEFAULT_BUFRING_COUNT);
	ASSERT_EQ(o.bufring_size, IOU_DEFAULT_BUFRING_SIZE);
	o.bufring_count = 3;
	ASSERT_EQ(reactor_create(&o, &r), -EINVAL);
	o.bufring_count = 4;
	o.bufring_size = IOU_BUFRING_MAX_SIZE + 1;
	ASSERT_EQ(reactor_create(&o, &r), -EINVAL);
	/* A default ring of 4 buffers of 16 bytes. */
	o.bufring_size = 16;
	ASSERT_EQ(reactor_create(&o, &r), 0);
	fill_random(want, sizeof(want), 70);
	ASSERT_EQ(unix_pair(&a, &b), 0);
	ASSERT_EQ(iou_rstream_open(r, a, NULL, &s), 0);
	ASSERT_EQ(write_all(b, want, sizeof(want)), 0);
	fiber_set_deadline(r, iou_deadline_after(GUARD));
	if (!fallback()) {
		const void *p;

		ASSERT_EQ(iou_rstream_peek(r, s, &p), 16); /* one buffer's worth */
	}
	ASSERT_EQ(read_check(r, s, want, sizeof(want)), (ssize_t)sizeof(want));
	ASSERT_EQ(iou_rstream_close(r, s), 0);
	ASSERT_EQ(reactor_destroy(r), 0);
	ASSERT_EQ(close(a), 0);
	ASSERT_EQ(close(b), 0);
	return 0;
}

static int test_reactor_options(void)
{
	return test_in_thread(options_body);
}

/* ---- registered files --------------------------------------------------- */

/*
 * How many io_uring instances of this process hold @fd's socket in their
 * table of registered files (their /proc fdinfo lists it), or -errno.
 */
static int registered(int fd)
{
	char path[300], want[64], line[256];
	struct stat st;
	struct dirent *d;
	DIR *dir;
	int n = 0;

	if (fstat(fd, &st))
		return -errno;
	snprintf(want, sizeof(want), ": socket:[%lu]\n", (unsigned long)st.st_ino);
	dir = opendir("/proc/self/fd");
	if (!dir)
		return -errno;
	while ((d = readdir(dir))) {
		char link[64];
		ssize_t k;
		FILE *f;

		snprintf(path, sizeof(path), "/proc/self/fd/%s", d->d_name);
		k = readlink(path, link, sizeof(link) - 1);
		if (k < 0)
			continue;
		link[k] = 0;
		if (strcmp(link, "anon_inode:[io_uring]"))
			continue;
		snprintf(path, sizeof(path), "/proc/self/fdinfo/%s", d->d_name);
		f = fopen(path, "r");
		if (!f)
			continue;
		while (fgets(line, sizeof(line), f))
			if (strstr(line, want))
				n++;
		fclose(f);
	}
	closedir(dir);
	return n;
}

/* This run has tables: multishot streams, and slots not turned off. */
static bool slots_wanted(void)
{
	const char *e = getenv("IOU_FILE_SLOTS");

	return !fallback() && !(e && !strcmp(e, "0"));
}

/* The peer of a socket just closed sees the end, without the reactor running again. */
static int peer_sees_end(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	char c;

	ASSERT_EQ(poll(&p, 1, (int)(GUARD / IOU_MSEC)), 1);
	ASSERT_EQ(recv(fd, &c, 1, MSG_DONTWAIT), 0);
	return 0;
}

/*
 * Echo @len random bytes from peer @b through @s, the stream of @a,
 * forwarded back to @a itself (the case that names the slot).
 */
static int echo_through(struct reactor *r, struct iou_rstream *s, int a, int b, size_t len,
			uint64_t seed)
{
	unsigned char want[4096], got[4096];
	size_t n = 0;

	ASSERT_LE(len, sizeof(want));
	fill_random(want, len, seed);
	ASSERT_EQ(write_all(b, want, len), 0);
	fiber_set_deadline(r, iou_deadline_after(GUARD));
	while (n < len) {
		const void *p;
		ssize_t k = iou_rstream_peek(r, s, &p);

		ASSERT_GT(k, 0);
		ASSERT_LE(n + (size_t)k, len);
		ASSERT_TRUE(!memcmp(p, want + n, (size_t)k));
		ASSERT_EQ(iou_rstream_forward(r, s, a, (size_t)k), k);
		n += (size_t)k;
	}
	ASSERT_EQ(iou_rstream_flush(r, s), 0);
	fiber_set_deadline(r, IOU_DEADLINE_NEVER);
	for (n = 0; n < len;) {
		ssize_t k = recv(b, got + n, len - n, 0);

		ASSERT_GT(k, 0);
		n += (size_t)k;
	}
	ASSERT_TRUE(!memcmp(got, want, len));
	return 0;
}

/*
 * An open stream's socket sits in the ring's table of registered files
 * (once the update is done: by the time data arrives), echoes go through
 * it, and close takes it out before returning, so that closing the socket
 * right after really closes it: the peer sees the end at once, also when
 * the stream is closed just after opening, with its update still queued.
 */
static int test_stream_socket_registered(void)
{
	struct reactor *r = reactor_get();
	struct iou_rstream *s;
	int a = -1, b = -1;

	ASSERT_EQ(tcp_pair(&a, &b), 0);
	ASSERT_EQ(registered(a), 0);
	ASSERT_EQ(iou_rstream_open(r, a, NULL, &s), 0);
	ASSERT_EQ(echo_through(r, s, a, b, 3000, 130), 0);
	ASSERT_EQ(registered(a), slots_wanted() ? 1 : 0);
	ASSERT_EQ(iou_rstream_close(r, s), 0);
	ASSERT_EQ(registered(a), 0);
	ASSERT_EQ(close(a), 0);
	ASSERT_EQ(peer_sees_end(b), 0);
	ASSERT_EQ(close(b), 0);
	/* Opened and closed with nothing in between: the update never ran yet. */
	for (int i = 0; i < 3; i++) {
		ASSERT_EQ(tcp_pair(&a, &b), 0);
		ASSERT_EQ(iou_rstream_open(r, a, NULL, &s), 0);
		if (i == 1)
			ASSERT_EQ(fiber_yield(r), 0);
		ASSERT_EQ(iou_rstream_close(r, s), 0);
		ASSERT_EQ(registered(a), 0);
		ASSERT_EQ(close(a), 0);
		ASSERT_EQ(peer_sees_end(b), 0);
		ASSERT_EQ(close(b), 0);
	}
	/* The end of stream came first (the receive is over): the same. */
	ASSERT_EQ(tcp_pair(&a, &b), 0);
	ASSERT_EQ(iou_rstream_open(r, a, NULL, &s), 0);
	ASSERT_EQ(echo_through(r, s, a, b, 100, 131), 0);
	ASSERT_EQ(shutdown(b, SHUT_WR), 0);
	fiber_set_deadline(r, iou_deadline_after(GUARD));
	{
		const void *p;

		ASSERT_EQ(iou_rstream_peek(r, s, &p), 0);
	}
	fiber_set_deadline(r, IOU_DEADLINE_NEVER);
	ASSERT_EQ(iou_rstream_close(r, s), 0);
	ASSERT_EQ(close(a), 0);
	ASSERT_EQ(peer_sees_end(b), 0);
	ASSERT_EQ(close(b), 0);
	ASSERT_EQ(reactor_run(r), 0);
	return 0;
}

/*
 * A table of two slots: the third stream and later ones use their
 * descriptor and work the same; slots freed by close go to the next
 * streams; many streams opened and closed in turn reuse one slot, each
 * echoing its own bytes (a slot is refilled only after it was emptied).
 */
static int small_table_body(void)
{
	enum { N = 5 };
	struct reactor_options o;
	struct reactor *r;
	struct iou_rstream *s[N];
	int a[N], b[N], held = 0;

	reactor_options_init(&o);
	ASSERT_EQ(o.file_slots, getenv("IOU_FILE_SLOTS") ? o.file_slots : IOU_DEFAULT_FILE_SLOTS);
	o.file_slots = IOU_FILE_SLOTS_MAX + 1;
	ASSERT_EQ(reactor_create(&o, &r), -EINVAL);
	o.file_slots = slots_wanted() ? 2 : 0;
	ASSERT_EQ(reactor_create(&o, &r), 0);
	for (int i = 0; i < N; i++) {
		ASSERT_EQ(tcp_pair(&a[i], &b[i]), 0);
		ASSERT_EQ(iou_rstream_open(r, a[i], NULL, &s[i]), 0);
	}
	for (int i = 0; i < N; i++) {
		ASSERT_EQ(echo_through(r, s[i], a[i], b[i], 2000, 140 + (uint64_t)i), 0);
		held += registered(a[i]);
	}
	ASSERT_EQ(held, slots_wanted() ? 2 : 0);
	if (slots_wanted()) {
		ASSERT_EQ(registered(a[0]), 1); /* the lowest slots went first */
		ASSERT_EQ(registered(a[1]), 1);
	}
	/* Free the two slots: the next two streams take them. */
	for (int i = 0; i < 2; i++) {
		ASSERT_EQ(iou_rstream_close(r, s[i]), 0);
		ASSERT_EQ(close(a[i]), 0);
		ASSERT_EQ(peer_sees_end(b[i]), 0);
		ASSERT_EQ(close(b[i]), 0);
		ASSERT_EQ(tcp_pair(&a[i], &b[i]), 0);
		ASSERT_EQ(iou_rstream_open(r, a[i], NULL, &s[i]), 0);
		ASSERT_EQ(echo_through(r, s[i], a[i], b[i], 1000, 150 + (uint64_t)i), 0);
		ASSERT_EQ(registered(a[i]), slots_wanted() ? 1 : 0);
	}
	for (int i = 2; i < N; i++)
		ASSERT_EQ(registered(a[i]), 0);
	/* One slot left free and used over and over. */
	ASSERT_EQ(iou_rstream_close(r, s[0]), 0);
	ASSERT_EQ(close(a[0]), 0);
	ASSERT_EQ(close(b[0]), 0);
	for (unsigned i = 0; i < 200 / scale_down(); i++) {
		ASSERT_EQ(tcp_pair(&a[0], &b[0]), 0);
		ASSERT_EQ(iou_rstream_open(r, a[0], NULL, &s[0]), 0);
		ASSERT_EQ(echo_through(r, s[0], a[0], b[0], 64, 160 + i), 0);
		ASSERT_EQ(registered(a[0]), slots_wanted() ? 1 : 0);
		ASSERT_EQ(iou_rstream_close(r, s[0]), 0);
		ASSERT_EQ(close(a[0]), 0);
		ASSERT_EQ(peer_sees_end(b[0]), 0);
		ASSERT_EQ(close(b[0]), 0);
	}
	for (int i = 1; i < N; i++) {
		ASSERT_EQ(iou_rstream_close(r, s[i]), 0);
		ASSERT_EQ(close(a[i]), 0);
		ASSERT_EQ(close(b[i]), 0);
	}
	ASSERT_EQ(reactor_destroy(r), 0);
	return 0;
}

static int test_small_file_table(void)
{
	return test_in_thread(small_table_body);
}

/*
 * A thread exits with a stream open and its socket in the table: the table
 * goes with the ring, so closing the socket afterwards really closes it.
 */
static int leave_pair[2];

static int open_and_leave(void)
{
	struct reactor *r = reactor_get();
	struct iou_rstream *s;

	ASSERT_TRUE(r != NULL);
	ASSERT_EQ(iou_rstream_open(r, leave_pair[0], NULL, &s), 0);
	ASSERT_EQ(echo_through(r, s, leave_pair[0], leave_pair[1], 500, 170), 0);
	ASSERT_EQ(registered(leave_pair[0]), slots_wanted() ? 1 : 0);
	return 0; /* the thread's exit tears the reactor down, stream and all */
}

static int test_thread_exit_leaves_no_reference(void)
{
	ASSERT_EQ(tcp_pair(&leave_pair[0], &leave_pair[1]), 0);
	ASSERT_EQ(test_in_thread(open_and_leave), 0);
	ASSERT_EQ(registered(leave_pair[0]), 0);
	ASSERT_EQ(close(leave_pair[0]), 0);
	ASSERT_EQ(peer_sees_end(leave_pair[1]), 0);
	ASSERT_EQ(close(leave_pair[1]), 0);
	return 0;
}

/* ---- forwarding --------------------------------------------------------- */

/*
 * Small socket buffers on both ends of a pair (@out sends, @in receives): a
 * peer that does not read soon stalls sends.  TCP over loopback crawls with
 * buffers much below 64 KiB (its window and acknowledgement timers).
 */
static int socket_buffers(int out, int in, int size)
{
	ASSERT_EQ(setsockopt(out, SOL_SOCKET, SO_SNDBUF, &size, sizeof(size)), 0);
	ASSERT_EQ(setsockopt(in, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size)), 0);
	return 0;
}

static int small_buffers(int out, int in)
{
	return socket_buffers(out, in, 4096);
}

/* Bytes readable on @fd now, read without waiting and compared with @want; -EILSEQ on a mismatch. */
static ssize_t drain_now(int fd, const unsigned char *want, size_t len)
{
	unsigned char buf[4096];
	size_t got = 0;

	for (;;) {
		ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			break;
		if (n <= 0)
			return n < 0 ? -errno : (ssize_t)got;
		if (got + (size_t)n > len || memcmp(buf, want + got, (size_t)n))
			return -EILSEQ;
		got += (size_t)n;
	}
	return (ssize_t)got;
}

/*
 * Forward what @s receives -- @want[*@off..@len) -- to @out, each peek whole,
 * until a forward has to wait because @out's peer does not read: that one
 * fails with -ETIMEDOUT at its deadline and leaves its bytes in place,
 * which *@p and *@n describe.  *@off counts the bytes forwarded.
 */
static int forward_until_stalled(struct reactor *r, struct iou_rstream *s, int out,
				 const unsigned char *want, size_t len, size_t *off, const void **p,
				 ssize_t *n)
{
	for (;;) {
		ssize_t k;

		fiber_set_deadline(r, iou_deadline_after(GUARD));
		*n = iou_rstream_peek(r, s, p);
		fiber_set_deadline(r, IOU_DEADLINE_NEVER);
		ASSERT_GT(*n, 0); /* the data ran out before the peer's buffers filled */
		ASSERT_LE(*off + (size_t)*n, len);
		ASSERT_TRUE(!memcmp(*p, want + *off, (size_t)*n));
		fiber_set_deadline(r, iou_deadline_after(30 * IOU_MSEC * test_slowdown()));
		k = iou_rstream_forward(r, s, out, (size_t)*n);
		fiber_set_deadline(r, IOU_DEADLINE_NEVER);
		if (k == -ETIMEDOUT)
			return 0;
		ASSERT_EQ(k, *n);
		*off += (size_t)k;
	}
}

/* Peeking again returns what the last peek did: nothing was consumed. */
static int same_peek(struct reactor *r, struct iou_rstream *s, const void *p, ssize_t n)
{
	const void *q;

	fiber_set_deadline(r, IOU_DEADLINE_NOW); /* queued: no wait */
	ASSERT_EQ(iou_rstream_peek(r, s, &q), n);
	fiber_set_deadline(r, IOU_DEADLINE_NEVER);
	ASSERT_PTR_EQ(q, p);
	return 0;
}

/* A relay: a stream on @rfd forwards all it receives to @out, in random-sized parts. */
struct relay {
	int rfd, out;
	struct iou_bufring *br;
	struct iou_rstream *st;	   /* opened by the relay if NULL */
	const unsigned char *data; /* what the stream must see */
	size_t len;
	uint64_t seed;
	size_t fwd;	 /* bytes forwarded, in order */
	ssize_t end;	 /* the last peek's result (0: end of stream) */
	int flushed;	 /* flush's result after the end */
	bool forwarding; /* inside iou_rstream_forward() */
	bool done;
};

/*
 * Peek, check, forward a random part (the whole peek half the time, so a
 * buffer is often forwarded in pieces), until end of stream; then flush,
 * close the stream and shut @out down for writing.
 */
static int relay_run(struct reactor *r, struct relay *x)
{
	uint64_t s = seeded(x->seed ^ 0xf0);

	x->end = 1;
	x->flushed = 1;
	if (!x->st)
		ASSERT_EQ(iou_rstream_open(r, x->rfd, x->br, &x->st), 0);
	for (;;) {
		const void *p;
		ssize_t n = iou_rstream_peek(r, x->st, &p), k;
		size_t part;

		if (n <= 0) {
			x->end = n;
			break;
		}
		part = xorshift(&s) % 2 ? (size_t)n : between(&s, 1, (size_t)n);
		ASSERT_LE(x->fwd + part, x->len);
		ASSERT_TRUE(!memcmp(p, x->data + x->fwd, part));
		x->forwarding = true;
		k = iou_rstream_forward(r, x->st, x->out, part);
		x->forwarding = false;
		ASSERT_EQ(k, (ssize_t)part);
		x->fwd += part;
	}
	x->flushed = iou_rstream_flush(r, x->st);
	ASSERT_EQ(iou_rstream_close(r, x->st), 0);
	x->st = NULL;
	ASSERT_EQ(shutdown(x->out, SHUT_WR), 0);
	x->done = true;
	return 0;
}

static void *relay_fiber(void *arg)
{
	FIBER_CHECK(relay_run(reactor_get(), arg) == 0);
	return NULL;
}

/* Reads @fd with plain receives of random sizes until end of stream, checking every byte. */
struct sink {
	int fd;
	const unsigned char *data;
	size_t len;
	uint64_t seed;
	int slow;    /* sleep this many ms every 8 receives */
	size_t got;  /* bytes received, in order */
	ssize_t end; /* the last receive's result (0: end of stream) */
};

static void *sink(void *arg)
{
	struct sink *k = arg;
	struct reactor *r = reactor_get();
	uint64_t s = seeded(k->seed ^ 0x51);
	unsigned char *buf = malloc(65536);
	unsigned steps = 0;

	FIBER_CHECK(buf != NULL);
	k->end = 1;
	while (buf) {
		ssize_t n = iou_recv(r, k->fd, buf, between(&s, 1, 65536), 0);

		if (n <= 0) {
			k->end = n;
			break;
		}
		if (k->got + (size_t)n > k->len || memcmp(buf, k->data + k->got, (size_t)n)) {
			FIBER_CHECK(!"relayed bytes differ from those sent");
			break;
		}
		k->got += (size_t)n;
		if (k->slow && ++steps % 8 == 0)
			fiber_sleep(r, k->slow * IOU_MSEC);
	}
	free(buf);
	return NULL;
}

/* One relay's sockets and bookkeeping: A (sender -> stream), B (forward -> sink). */
struct relay_set {
	int a_rd, a_wr, b_out, b_in;
	unsigned char *data;
	struct xfer x; /* the sender into A */
	struct relay rl;
	struct sink k;
};

static int relay_set_open(struct relay_set *c, struct iou_bufring *br, size_t len, uint64_t seed,
			  bool tcp)
{
	*c = (struct relay_set){ .a_rd = -1 };
	c->data = malloc(len ? len : 1);
	ASSERT_TRUE(c->data != NULL);
	fill_random(c->data, len, seed);
	ASSERT_EQ(tcp ? tcp_pair(&c->a_rd, &c->a_wr) : unix_pair(&c->a_rd, &c->a_wr), 0);
	ASSERT_EQ(tcp ? tcp_pair(&c->b_out, &c->b_in) : unix_pair(&c->b_out, &c->b_in), 0);
	c->x = (struct xfer){ .wfd = c->a_wr, .data = c->data, .len = len, .seed = seed };
	c->rl = (struct relay){ .rfd = c->a_rd,
				.out = c->b_out,
				.br = br,
				.data = c->data,
				.len = len,
				.seed = seed,
				.end = 1,
				.flushed = 1 };
	c->k = (struct sink){ .fd = c->b_in, .data = c->data, .len = len, .seed = seed, .end = 1 };
	return 0;
}

/* Everything arrived, in order, and the relay saw a clean end; then close the sockets. */
static int relay_set_check_close(struct relay_set *c)
{
	ASSERT_TRUE(c->rl.done);
	ASSERT_EQ(c->rl.end, 0);
	ASSERT_EQ(c->rl.flushed, 0);
	ASSERT_EQ(c->rl.fwd, c->rl.len);
	ASSERT_EQ(c->k.end, 0);
	ASSERT_EQ(c->k.got, c->rl.len);
	ASSERT_EQ(close(c->a_rd), 0);
	ASSERT_EQ(close(c->a_wr), 0);
	ASSERT_EQ(close(c->b_out), 0);
	ASSERT_EQ(close(c->b_in), 0);
	free(c->data);
	return 0;
}

/*
 * Every buffer of @br (@count of @size bytes) is back in the ring: a new
 * stream takes @count * @size bytes written at once, leaving nothing in the
 * socket (a buffer pinned for good by a forward would leave @size there).
 */
static int ring_is_whole(struct reactor *r, struct iou_bufring *br, unsigned count, size_t size)
{
	size_t len = count * size;
	unsigned char *want = malloc(len);
	struct iou_rstream *s;
	int a = -1, b = -1;

	ASSERT_TRUE(want != NULL);
	fill_random(want, len, 99);
	ASSERT_EQ(unix_pair(&a, &b), 0);
	ASSERT_EQ(iou_rstream_open(r, a, br, &s), 0);
	ASSERT_EQ(write_all(b, want, len), 0);
	ASSERT_EQ(fiber_sleep(r, 20 * IOU_MSEC), 0);
	if (!fallback())
		ASSERT_EQ(inq(a), 0);
	fiber_set_deadline(r, iou_deadline_after(GUARD));
	ASSERT_EQ(read_check(r, s, want, len), (ssize_t)len);
	fiber_set_deadline(r, IOU_DEADLINE_NEVER);
	ASSERT_EQ(iou_rstream_close(r, s), 0);
	ASSERT_EQ(close(a), 0);
	ASSERT_EQ(close(b), 0);
	free(want);
	return 0;
}

/*
 * Join the @n fibers @f within @ns; if they are not all done by then (a
 * reader starved for good, a send that never ends), cancel the rest, join
 * them and fail rather than hang.
 */
static int join_within(struct reactor *r, struct fiber **f, int n, int64_t ns)
{
	int i = 0;

	fiber_set_deadline(r, iou_deadline_after(ns));
	for (; i < n; i++) {
		int ret = fiber_join(f[i], NULL);

		if (ret < 0) {
			ASSERT_EQ(ret, -ETIMEDOUT);
			break;
		}
	}
	fiber_set_deadline(r, IOU_DEADLINE_NEVER);
	if (i == n)
		return 0;
	for (int k = i; k < n; k++)
		ASSERT_EQ(fiber_cancel(f[k]), 0);
	for (int k = i; k < n; k++)
		ASSERT_EQ(fiber_join(f[k], NULL), 0);
	ASSERT_TRUE(!"fibers still running at their deadline (cancelled)");
	return 1;
}

/* @n relays at once on @br, each of @len bytes; @slow: the sinks dawdle. */
static int relays(struct iou_bufring *br, int n, size_t len, uint64_t seed, int slow)
{
	struct reactor *r = reactor_get();
	struct relay_set c[3];
	struct fiber *f[3 * 3];

	ASSERT_LE(n, 3);
	for (int i = 0; i < n; i++) {
		ASSERT_EQ(relay_set_open(&c[i], br, len, seed + (uint64_t)i, i % 2 == 0), 0);
		if (slow) {
			/* Small socket buffers too: sends stall and finish from the heap. */
			c[i].k.slow = slow + i;
			ASSERT_EQ(socket_buffers(c[i].b_out, c[i].b_in, i % 2 ? 4096 : 65536), 0);
		}
		ASSERT_EQ(fiber_spawn(r, sender, &c[i].x, &f[3 * i]), 0);
		ASSERT_EQ(fiber_spawn(r, relay_fiber, &c[i].rl, &f[3 * i + 1]), 0);
		ASSERT_EQ(fiber_spawn(r, sink, &c[i].k, &f[3 * i + 2]), 0);
	}
	ASSERT_EQ(join_within(r, f, 3 * n, 3 * GUARD), 0);
	ASSERT_EQ(reactor_run(r), 0);
	ASSERT_NO_FIBER_FAILURES();
	for (int i = 0; i < n; i++)
		ASSERT_EQ(relay_set_check_close(&c[i]), 0);
	return 0;
}

/* Several MiB relayed from one socket pair to another, byte for byte. */
static int test_forward_relay_default_ring(void)
{
	return relays(NULL, 1, ((size_t)8 << 20) / scale_down(), 80, 0);
}

/*
 * Three relays sharing a 4-buffer ring, their sinks reading slowly: a
 * buffer is pinned while its send goes on, the ring keeps running dry
 * with buffers pinned, and every buffer comes back in the end.
 */
static int test_forward_relay_small_ring(void)
{
	struct reactor *r = reactor_get();
	struct iou_bufring *br;

	ASSERT_EQ(iou_bufring_create(r, 4, 4096, &br), 0);
	if (relays(br, 1, ((size_t)2 << 20) / scale_down(), 90, 0))
		return 1;
	if (ring_is_whole(r, br, 4, 4096))
		return 1;
	if (relays(br, 3, ((size_t)2 << 20) / scale_down(), 100, 1))
		return 1;
	if (ring_is_whole(r, br, 4, 4096))
		return 1;
	ASSERT_EQ(iou_bufring_destroy(r, br), 0);
	return 0;
}

/*
 * Peers that do not read: a forward waits for the previous one's send
 * (bounded by the deadline, consuming nothing; flush likewise), relays
 * keep calling forward and park in it, and another stream on their
 * 4-buffer ring keeps flowing meanwhile.  Then the peers read, and every
 * byte arrives in order.
 */
static int test_forward_slow_consumer(void)
{
	struct reactor *r = reactor_get();
	enum {
		N = 2
	};
	size_t len = ((size_t)512 << 10) / scale_down();
	struct relay_set c[N];
	struct fiber *f[3 * N];
	struct iou_bufring *br;
	struct iou_rstream *t;
	struct xfer tx;
	unsigned char *tdata = malloc(len);
	const void *p, *q;
	size_t off = 0;
	ssize_t n;
	int ta = -1, tb = -1;

	ASSERT_TRUE(tdata != NULL);
	ASSERT_EQ(iou_bufring_create(r, 4, 4096, &br), 0);
	for (int i = 0; i < N; i++) {
		ASSERT_EQ(relay_set_open(&c[i], br, len, 110 + (uint64_t)i, false), 0);
		ASSERT_EQ(small_buffers(c[i].b_out, c[i].b_in), 0);
		ASSERT_EQ(fiber_spawn(r, sender, &c[i].x, &f[3 * i]), 0);
	}
	/* By hand first: forward until a forward waits; it times out, consuming nothing. */
	ASSERT_EQ(iou_rstream_open(r, c[0].a_rd, br, &c[0].rl.st), 0);
	ASSERT_EQ(forward_until_stalled(r, c[0].rl.st, c[0].b_out, c[0].data, len, &off, &p, &n),
		  0);
	ASSERT_LT(off, len);
	ASSERT_EQ(same_peek(r, c[0].rl.st, p, n), 0);
	ASSERT_TRUE(!memcmp(p, c[0].data + off, (size_t)n));
	/* The send is still stalled: flush times out too, and the stream is as it was. */
	fiber_set_deadline(r, iou_deadline_after(20 * IOU_MSEC));
	ASSERT_EQ(iou_rstream_flush(r, c[0].rl.st), -ETIMEDOUT);
	fiber_set_deadline(r, IOU_DEADLINE_NEVER);
	ASSERT_EQ(same_peek(r, c[0].rl.st, p, n), 0);
	/* "Do not wait": both fail at once, and still nothing is consumed. */
	fiber_set_deadline(r, IOU_DEADLINE_NOW);
	ASSERT_EQ(iou_rstream_forward(r, c[0].rl.st, c[0].b_out, (size_t)n), -ETIMEDOUT);
	ASSERT_EQ(iou_rstream_flush(r, c[0].rl.st), -ETIMEDOUT);
	fiber_set_deadline(r, IOU_DEADLINE_NEVER);
	ASSERT_EQ(same_peek(r, c[0].rl.st, p, n), 0);
	c[0].rl.fwd = off; /* its relay fiber goes on from there */
	/* Now relays in fibers keep forwarding to their stalled peers. */
	for (int i = 0; i < N; i++)
		ASSERT_EQ(fiber_spawn(r, relay_fiber, &c[i].rl, &f[3 * i + 1]), 0);
	ASSERT_EQ(fiber_sleep(r, 30 * IOU_MSEC * test_slowdown()), 0);
	for (int i = 0; i < N; i++) {
		ASSERT_TRUE(c[i].rl.forwarding); /* parked in a forward */
		ASSERT_LT(c[i].rl.fwd, len);
	}
	/* Another stream on the same ring, whose reader reads, flows meanwhile. */
	fill_random(tdata, len, 120);
	ASSERT_EQ(unix_pair(&ta, &tb), 0);
	tx = (struct xfer){ .wfd = tb, .data = tdata, .len = len, .seed = 120 };
	ASSERT_EQ(iou_rstream_open(r, ta, br, &t), 0);
	ASSERT_EQ(fiber_spawn(r, sender, &tx, NULL), 0);
	fiber_set_deadline(r, iou_deadline_after(GUARD));
	ASSERT_EQ(read_check(r, t, tdata, len), (ssize_t)len);
	ASSERT_EQ(iou_rstream_peek(r, t, &q), 0);
	fiber_set_deadline(r, IOU_DEADLINE_NEVER);
	ASSERT_EQ(iou_rstream_close(r, t), 0);
	for (int i = 0; i < N; i++) {
		ASSERT_TRUE(c[i].rl.forwarding && !c[i].rl.done); /* still stalled */
		ASSERT_LT(c[i].rl.fwd, len);
	}
	/* The peers read at last: everything arrives, in order. */
	for (int i = 0; i < N; i++)
		ASSERT_EQ(fiber_spawn(r, sink, &c[i].k, &f[3 * i + 2]), 0);
	ASSERT_EQ(join_within(r, f, 3 * N, 3 * GUARD), 0);
	ASSERT_EQ(reactor_run(r), 0);
	ASSERT_NO_FIBER_FAILURES();
	ASSERT_EQ(ring_is_whole(r, br, 4, 4096), 0);
	ASSERT_EQ(iou_bufring_destroy(r, br), 0);
	for (int i = 0; i < N; i++)
		ASSERT_EQ(relay_set_check_close(&c[i]), 0);
	ASSERT_EQ(close(ta), 0);
	ASSERT_EQ(close(tb), 0);
	free(tdata);
	return 0;
}

/*
 * A forward's send that stalls gives its ring buffer back (the rest goes
 * out from the heap): four streams whose sends are all stalled, and whose
 * readers hold nothing peeked, leave their 4-buffer ring to a fifth.
 */
static int test_stalled_forwards_hold_no_buffer(void)
{
	struct reactor *r = reactor_get();
	enum {
		N = 4
	};
	static unsigned char want[64 * 1024];
	struct iou_bufring *br;
	struct iou_rstream *s[N + 1];
	int a[N + 1], b[N + 1], c[N], d[N];
	const void *p;
	char buf[4];
	ssize_t n;

	fill_random(want, sizeof(want), 125);
	ASSERT_EQ(iou_bufring_create(r, 4, 4096, &br), 0);
	ASSERT_EQ(streams_open(r, br, N + 1, s, a, b), 0);
	for (int i = 0; i < N; i++) {
		size_t off = 0;

		ASSERT_EQ(unix_pair(&c[i], &d[i]), 0);
		ASSERT_EQ(small_buffers(c[i], d[i]), 0);
		ASSERT_EQ(write_all(b[i], want, sizeof(want)), 0);
		ASSERT_EQ(forward_until_stalled(r, s[i], c[i], want, sizeof(want), &off, &p, &n),
			  0);
		iou_rstream_consume(s[i], (size_t)n); /* dropped: nothing peeked left */
	}
	/* Every stream is stalled with bytes queued; the fifth reads at once. */
	ASSERT_EQ(write_all(b[N], "hi", 2), 0);
	fiber_set_deadline(r, iou_deadline_after(GUARD));
	ASSERT_EQ(iou_rstream_read(r, s[N], buf, sizeof(buf)), 2);
	fiber_set_deadline(r, IOU_DEADLINE_NEVER);
	ASSERT_TRUE(!memcmp(buf, "hi", 2));
	for (int i = 0; i < N; i++) {
		fiber_set_deadline(r, IOU_DEADLINE_NOW);
		ASSERT_EQ(iou_rstream_flush(r, s[i]), -ETIMEDOUT); /* still stalled */
		fiber_set_deadline(r, IOU_DEADLINE_NEVER);
	}
	ASSERT_EQ(streams_close(r, br, N + 1, s, a, b), 0);
	for (int i = 0; i < N; i++) {
		ASSERT_EQ(close(c[i]), 0);
		ASSERT_EQ(close(d[i]), 0);
	}
	return 0;
}

/* Forward and flush refuse bad arguments, and do nothing for nothing. */
static int test_forward_bad_arguments(void)
{
	struct reactor *r = reactor_get();
	struct test_foreign fo;
	struct iou_rstream *s;
	const void *p;
	char buf[8];
	int a = -1, b = -1, c = -1, d = -1;

	ASSERT_EQ(unix_pair(&a, &b), 0);
	ASSERT_EQ(unix_pair(&c, &d), 0);
	ASSERT_EQ(iou_rstream_open(r, a, NULL, &s), 0);
	ASSERT_EQ(iou_rstream_forward(NULL, s, c, 1), -EINVAL);
	ASSERT_EQ(iou_rstream_forward(r, NULL, c, 1), -EINVAL);
	ASSERT_EQ(iou_rstream_flush(NULL, s), -EINVAL);
	ASSERT_EQ(iou_rstream_flush(r, NULL), -EINVAL);
	ASSERT_EQ(iou_rstream_forward(r, s, -1, 1), -EBADF);
	/* Nothing peeked, or nothing asked for: 0, and nothing sent. */
	ASSERT_EQ(iou_rstream_forward(r, s, c, 100), 0);
	ASSERT_EQ(iou_rstream_flush(r, s), 0);
	ASSERT_EQ(write_all(b, "abcdef", 6), 0);
	fiber_set_deadline(r, iou_deadline_after(GUARD));
	ASSERT_EQ(iou_rstream_peek(r, s, &p), 6);
	fiber_set_deadline(r, IOU_DEADLINE_NEVER);
	ASSERT_EQ(iou_rstream_forward(r, s, c, 0), 0);
	ASSERT_EQ(iou_rstream_forward(r, s, -1, 6), -EBADF);
	ASSERT_EQ(same_peek(r, s, p, 6), 0);
	/* Another thread's reactor. */
	ASSERT_EQ(test_foreign_start(&fo), 0);
	ASSERT_EQ(iou_rstream_forward(fo.r, s, c, 6), -EPERM);
	ASSERT_EQ(iou_rstream_flush(fo.r, s), -EPERM);
	ASSERT_EQ(test_foreign_stop(&fo), 0);
	ASSERT_EQ(same_peek(r, s, p, 6), 0);
	ASSERT_EQ(fiber_sleep(r, 10 * IOU_MSEC), 0);
	ASSERT_EQ(inq(d), 0);
	/* More than peeked is clamped to it; less leaves the rest for later. */
	ASSERT_EQ(iou_rstream_forward(r, s, c, 2), 2);
	ASSERT_EQ(iou_rstream_forward(r, s, c, 100), 4);
	ASSERT_EQ(iou_rstream_forward(r, s, c, 100), 0);
	fiber_set_deadline(r, iou_deadline_after(GUARD));
	ASSERT_EQ(iou_rstream_flush(r, s), 0);
	fiber_set_deadline(r, IOU_DEADLINE_NEVER);
	ASSERT_EQ(read(d, buf, sizeof(buf)), 6);
	ASSERT_TRUE(!memcmp(buf, "abcdef", 6));
	/* Partly consumed by hand, the rest forwarded: the rest only. */
	ASSERT_EQ(write_all(b, "ghijk", 5), 0);
	fiber_set_deadline(r, iou_deadline_after(GUARD));
	ASSERT_EQ(iou_rstream_peek(r, s, &p), 5);
	iou_rstream_consume(s, 3);
	ASSERT_EQ(iou_rstream_forward(r, s, c, 5), 2);
	ASSERT_EQ(iou_rstream_flush(r, s), 0);
	fiber_set_deadline(r, IOU_DEADLINE_NEVER);
	ASSERT_EQ(read(d, buf, sizeof(buf)), 2);
	ASSERT_TRUE(!memcmp(buf, "jk", 2));
	ASSERT_EQ(iou_rstream_close(r, s), 0);
	ASSERT_EQ(close(a), 0);
	ASSERT_EQ(close(b), 0);
	ASSERT_EQ(close(c), 0);
	ASSERT_EQ(close(d), 0);
	return 0;
}

/*
 * What iou_rstream_read() copied is all the caller has seen: a forward or
 * consume after it, with no peek in between, takes nothing (the rest of
 * the buffer the read took bytes from is the next peek's).
 */
static int test_read_leaves_nothing_to_forward(void)
{
	struct reactor *r = reactor_get();
	struct iou_rstream *s;
	const void *p;
	char buf[16];
	int a = -1, b = -1, c = -1, d = -1;

	ASSERT_EQ(unix_pair(&a, &b), 0);
	ASSERT_EQ(unix_pair(&c, &d), 0);
	ASSERT_EQ(iou_rstream_open(r, a, NULL, &s), 0);
	ASSERT_EQ(write_all(b, "hello", 5), 0);
	fiber_set_deadline(r, iou_deadline_after(GUARD));
	ASSERT_EQ(iou_rstream_read(r, s, buf, 2), 2);
	ASSERT_EQ(iou_rstream_forward(r, s, c, 100), 0);
	iou_rstream_consume(s, 100);
	ASSERT_EQ(iou_rstream_flush(r, s), 0);
	ASSERT_EQ(iou_rstream_peek(r, s, &p), 3);
	ASSERT_TRUE(!memcmp(p, "llo", 3));
	ASSERT_EQ(iou_rstream_forward(r, s, c, 100), 3);
	ASSERT_EQ(iou_rstream_flush(r, s), 0);
	fiber_set_deadline(r, IOU_DEADLINE_NEVER);
	ASSERT_EQ(read(d, buf, sizeof(buf)), 3);
	ASSERT_TRUE(!memcmp(buf, "llo", 3));
	ASSERT_EQ(iou_rstream_close(r, s), 0);
	ASSERT_EQ(close(a), 0);
	ASSERT_EQ(close(b), 0);
	ASSERT_EQ(close(c), 0);
	ASSERT_EQ(close(d), 0);
	return 0;
}

/*
 * Forwarding to a socket whose peer is gone: some forward or flush fails
 * with -EPIPE or -ECONNRESET, consuming nothing, and every later forward
 * and flush return the same; the stream itself reads on.
 */
static int forward_to_gone_peer(bool tcp)
{
	struct reactor *r = reactor_get();
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };
	unsigned char want[64 * 1024];
	struct iou_rstream *s;
	const void *p;
	size_t off = 0;
	ssize_t n, err = 0;
	int a = -1, b = -1, c = -1, d = -1;

	fill_random(want, sizeof(want), tcp ? 130 : 131);
	ASSERT_EQ(unix_pair(&a, &b), 0);
	ASSERT_EQ(tcp ? tcp_pair(&c, &d) : unix_pair(&c, &d), 0);
	ASSERT_EQ(iou_rstream_open(r, a, NULL, &s), 0);
	/* The peer closes: with a zero linger, a TCP reset. */
	if (tcp)
		ASSERT_EQ(setsockopt(d, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
	ASSERT_EQ(close(d), 0);
	ASSERT_EQ(fiber_sleep(r, 10 * IOU_MSEC), 0);
	ASSERT_EQ(write_all(b, want, sizeof(want)), 0);
	fiber_set_deadline(r, iou_deadline_after(GUARD));
	while (!err) {
		n = iou_rstream_peek(r, s, &p);
		ASSERT_GT(n, 0); /* the error came before the data ran out */
		ASSERT_TRUE(!memcmp(p, want + off, (size_t)n));
		err = iou_rstream_forward(r, s, c, (size_t)n);
		if (err == n) {
			off += (size_t)n;
			err = iou_rstream_flush(r, s);
		}
	}
	fiber_set_deadline(r, IOU_DEADLINE_NEVER);
	printf("# %s: %s after %zu bytes\n", tcp ? "tcp" : "unix", strerror((int)-err), off);
	ASSERT_TRUE(err == -EPIPE || err == -ECONNRESET);
	/* Sticky; the bytes in hand stay put (the failing forward took none). */
	n = iou_rstream_peek(r, s, &p);
	ASSERT_GT(n, 0);
	ASSERT_TRUE(!memcmp(p, want + off, (size_t)n));
	ASSERT_EQ(iou_rstream_forward(r, s, c, (size_t)n), err);
	ASSERT_EQ(iou_rstream_flush(r, s), err);
	ASSERT_EQ(iou_rstream_forward(r, s, c, 1), err);
	ASSERT_EQ(iou_rstream_forward(r, s, c, 0), err);
	ASSERT_EQ(same_peek(r, s, p, n), 0);
	ASSERT_EQ(iou_rstream_flush(r, s), err);
	/* A send error is no receive error: the rest reads as usual. */
	fiber_set_deadline(r, iou_deadline_after(GUARD));
	ASSERT_EQ(read_check(r, s, want + off, sizeof(want) - off), (ssize_t)(sizeof(want) - off));
	ASSERT_EQ(shutdown(b, SHUT_WR), 0);
	ASSERT_EQ(iou_rstream_peek(r, s, &p), 0);
	fiber_set_deadline(r, IOU_DEADLINE_NEVER);
	ASSERT_EQ(iou_rstream_flush(r, s), err);
	ASSERT_EQ(iou_rstream_close(r, s), 0);
	ASSERT_EQ(close(a), 0);
	ASSERT_EQ(close(b), 0);
	ASSERT_EQ(close(c), 0);
	return 0;
}

static int test_forward_to_gone_peer(void)
{
	if (forward_to_gone_peer(true))
		return 1;
	return forward_to_gone_peer(false);
}

struct fw_job {
	struct iou_rstream *s;
	int out;
	bool cancel_first; /* cancel itself before anything */
	const void *p;	   /* what its peek returned */
	ssize_t peeked, forwarded, flushed;
};

/* Peek, then forward all of it (parks if the previous send is still going on). */
static void *peek_and_forward(void *arg)
{
	struct fw_job *j = arg;
	struct reactor *r = reactor_get();

	if (j->cancel_first)
		fiber_cancel(fiber_self(r));
	j->peeked = iou_rstream_peek(r, j->s, &j->p);
	if (j->peeked > 0)
		j->forwarded = iou_rstream_forward(r, j->s, j->out, (size_t)j->peeked);
	j->flushed = iou_rstream_flush(r, j->s);
	return NULL;
}

/*
 * One caller at a time: a fiber parked in a peek, or in a forward waiting
 * for the previous send, makes every other call on the stream fail with
 * -EBUSY.  A cancelled fiber: its forward fails with -ECANCELED, whether
 * it had to wait or not, and consumes nothing; so does its flush if it has
 * to wait.
 */
static int test_forward_busy_and_cancelled(void)
{
	struct reactor *r = reactor_get();
	struct cancel_job cj = { 0 };
	struct fw_job j = { 0 };
	unsigned char want[64 * 1024];
	struct iou_rstream *s;
	struct fiber *f;
	const void *p;
	char buf[8];
	size_t off = 0;
	ssize_t n;
	int a = -1, b = -1, c = -1, d = -1;

	fill_random(want, sizeof(want), 140);
	ASSERT_EQ(unix_pair(&a, &b), 0);
	ASSERT_EQ(unix_pair(&c, &d), 0);
	ASSERT_EQ(small_buffers(c, d), 0);
	ASSERT_EQ(iou_rstream_open(r, a, NULL, &s), 0);
	/* A fiber parked in a peek. */
	cj.s = s;
	ASSERT_EQ(fiber_spawn(r, peek_once, &cj, &cj.victim), 0);
	ASSERT_EQ(fiber_yield(r), 0);
	ASSERT_EQ(iou_rstream_forward(r, s, c, 1), -EBUSY);
	ASSERT_EQ(iou_rstream_flush(r, s), -EBUSY);
	ASSERT_EQ(write_all(b, "!", 1), 0);
	fiber_set_deadline(r, iou_deadline_after(GUARD));
	ASSERT_EQ(fiber_join(cj.victim, NULL), 0);
	fiber_set_deadline(r, IOU_DEADLINE_NEVER);
	ASSERT_EQ(cj.first, 1);
	/* A cancelled fiber that need not wait: nothing sent, nothing consumed. */
	ASSERT_EQ(write_all(b, want, sizeof(want)), 0);
	fiber_set_deadline(r, iou_deadline_after(GUARD));
	ASSERT_GT(iou_rstream_peek(r, s, &p), 0); /* queued now */
	fiber_set_deadline(r, IOU_DEADLINE_NEVER);
	j = (struct fw_job){ .s = s, .out = c, .cancel_first = true };
	ASSERT_EQ(fiber_spawn(r, peek_and_forward, &j, &f), 0);
	ASSERT_EQ(fiber_join(f, NULL), 0);
	ASSERT_GT(j.peeked, 0); /* queued: no wait */
	ASSERT_EQ(j.forwarded, -ECANCELED);
	ASSERT_EQ(j.flushed, 0); /* nothing in flight: no wait either */
	ASSERT_EQ(same_peek(r, s, j.p, j.peeked), 0);
	ASSERT_EQ(fiber_sleep(r, 10 * IOU_MSEC), 0);
	ASSERT_EQ(inq(d), 0);
	/* Stall the send; a fiber then parks in its forward. */
	ASSERT_EQ(forward_until_stalled(r, s, c, want, sizeof(want), &off, &p, &n), 0);
	j = (struct fw_job){ .s = s, .out = c };
	ASSERT_EQ(fiber_spawn(r, peek_and_forward, &j, &f), 0);
	ASSERT_EQ(fiber_sleep(r, 10 * IOU_MSEC), 0);
	ASSERT_EQ(j.peeked, n);
	ASSERT_PTR_EQ(j.p, p);
	ASSERT_EQ(iou_rstream_peek(r, s, &p), -EBUSY);
	ASSERT_EQ(iou_rstream_read(r, s, buf, sizeof(buf)), -EBUSY);
	ASSERT_EQ(iou_rstream_forward(r, s, c, 1), -EBUSY);
	ASSERT_EQ(iou_rstream_flush(r, s), -EBUSY);
	ASSERT_EQ(iou_rstream_close(r, s), -EBUSY);
	/* Cancelled while it waits: -ECANCELED, nothing consumed, and its flush too. */
	ASSERT_EQ(fiber_cancel(f), 0);
	fiber_set_deadline(r, iou_deadline_after(GUARD));
	ASSERT_EQ(fiber_join(f, NULL), 0);
	fiber_set_deadline(r, IOU_DEADLINE_NEVER);
	ASSERT_EQ(j.forwarded, -ECANCELED);
	ASSERT_EQ(j.flushed, -ECANCELED);
	ASSERT_EQ(same_peek(r, s, j.p, j.peeked), 0);
	/* The same in a fiber cancelled before it started. */
	j = (struct fw_job){ .s = s, .out = c, .cancel_first = true };
	ASSERT_EQ(fiber_spawn(r, peek_and_forward, &j, &f), 0);
	ASSERT_EQ(fiber_join(f, NULL), 0);
	ASSERT_EQ(j.peeked, n);
	ASSERT_EQ(j.forwarded, -ECANCELED);
	ASSERT_EQ(j.flushed, -ECANCELED);
	ASSERT_EQ(same_peek(r, s, p, n), 0);
	/* The peer reads: the stalled send ends, and a relay forwards the rest. */
	{
		struct sink k = { .fd = d,
				  .data = want,
				  .len = sizeof(want),
				  .seed = 141,
				  .end = 1 };
		struct relay rl = { .rfd = a,
				    .out = c,
				    .st = s,
				    .data = want,
				    .len = sizeof(want),
				    .seed = 141,
				    .fwd = off };

		ASSERT_EQ(fiber_spawn(r, sink, &k, NULL), 0);
		ASSERT_EQ(fiber_spawn(r, relay_fiber, &rl, NULL), 0);
		ASSERT_EQ(shutdown(b, SHUT_WR), 0);
		ASSERT_EQ(reactor_run(r), 0);
		ASSERT_NO_FIBER_FAILURES();
		ASSERT_TRUE(rl.done);
		ASSERT_EQ(rl.end, 0);
		ASSERT_EQ(rl.flushed, 0);
		ASSERT_EQ(rl.fwd, sizeof(want));
		ASSERT_EQ(k.end, 0);
		ASSERT_EQ(k.got, sizeof(want));
	}
	ASSERT_EQ(close(a), 0);
	ASSERT_EQ(close(b), 0);
	ASSERT_EQ(close(c), 0);
	ASSERT_EQ(close(d), 0);
	return 0;
}

/*
 * Close while a forward's send is stalled (the peer does not read): close
 * cancels it and returns at once, the bytes not sent yet are lost, nothing
 * leaks.  With a flush first, every forwarded byte reaches the peer.
 */
static int test_close_with_forward_in_flight(void)
{
	struct reactor *r = reactor_get();
	static unsigned char want[64 * 1024];
	struct iou_rstream *s;
	struct sink k;
	const void *p;
	size_t off = 0;
	ssize_t n;
	int64_t t0;
	int a = -1, b = -1, c = -1, d = -1;
	int fds = test_count_fds();

	fill_random(want, sizeof(want), 150);
	for (int flush = 0; flush < 2; flush++) {
		ASSERT_EQ(unix_pair(&a, &b), 0);
		ASSERT_EQ(unix_pair(&c, &d), 0);
		ASSERT_EQ(small_buffers(c, d), 0);
		ASSERT_EQ(iou_rstream_open(r, a, NULL, &s), 0);
		ASSERT_EQ(write_all(b, want, sizeof(want)), 0);
		off = 0;
		ASSERT_EQ(forward_until_stalled(r, s, c, want, sizeof(want), &off, &p, &n), 0);
		k = (struct sink){ .fd = d, .data = want, .len = off, .seed = 151, .end = 1 };
		if (flush) {
			/* The peer reads, slowly; flush waits for it. */
			k.slow = 2;
			ASSERT_EQ(fiber_spawn(r, sink, &k, NULL), 0);
			fiber_set_deadline(r, iou_deadline_after(GUARD));
			ASSERT_EQ(iou_rstream_flush(r, s), 0);
			fiber_set_deadline(r, IOU_DEADLINE_NEVER);
		}
		t0 = iou_now();
		ASSERT_EQ(iou_rstream_close(r, s), 0);
		ASSERT_LT(iou_now() - t0, 500 * IOU_MSEC * test_slowdown());
		ASSERT_EQ(shutdown(c, SHUT_WR), 0);
		if (flush) {
			ASSERT_EQ(reactor_run(r), 0);
			ASSERT_NO_FIBER_FAILURES();
			ASSERT_EQ(k.end, 0);
			ASSERT_EQ(k.got, off); /* all of it */
		} else {
			/* What the peer can read is in order, and short of what was forwarded. */
			ssize_t got = drain_now(d, want, off);

			ASSERT_GE(got, 0);
			ASSERT_LT((size_t)got, off);
			printf("# close: %zd of %zu forwarded bytes reached the peer\n", got, off);
		}
		ASSERT_EQ(close(a), 0);
		ASSERT_EQ(close(b), 0);
		ASSERT_EQ(close(c), 0);
		ASSERT_EQ(close(d), 0);
	}
	ASSERT_EQ(test_count_fds(), fds);
	return 0;
}

/*
 * From the thread's own context, before reactor_run(): an echo (forward to
 * the stream's own socket), a forward that waits (driving the reactor) and
 * times out, and a whole relay while the sender and sink fibers run.
 */
static int test_forward_outside_fiber(void)
{
	struct reactor *r = reactor_get();
	struct relay_set rs;
	unsigned char want[64 * 1024];
	struct iou_rstream *s;
	const void *p;
	char buf[16];
	size_t off = 0;
	ssize_t n;
	int a = -1, b = -1, c = -1, d = -1;

	ASSERT_PTR_EQ(fiber_self(r), NULL);
	/* An echo. */
	ASSERT_EQ(unix_pair(&a, &b), 0);
	ASSERT_EQ(iou_rstream_open(r, a, NULL, &s), 0);
	ASSERT_EQ(write_all(b, "echo me", 7), 0);
	fiber_set_deadline(r, iou_deadline_after(GUARD));
	ASSERT_EQ(iou_rstream_peek(r, s, &p), 7);
	ASSERT_EQ(iou_rstream_forward(r, s, a, 7), 7);
	ASSERT_EQ(iou_rstream_flush(r, s), 0);
	fiber_set_deadline(r, IOU_DEADLINE_NEVER);
	ASSERT_EQ(read(b, buf, sizeof(buf)), 7);
	ASSERT_TRUE(!memcmp(buf, "echo me", 7));
	/* A forward that has to wait drives the reactor until its deadline. */
	fill_random(want, sizeof(want), 160);
	ASSERT_EQ(unix_pair(&c, &d), 0);
	ASSERT_EQ(small_buffers(c, d), 0);
	ASSERT_EQ(write_all(b, want, sizeof(want)), 0);
	ASSERT_EQ(forward_until_stalled(r, s, c, want, sizeof(want), &off, &p, &n), 0);
	ASSERT_EQ(same_peek(r, s, p, n), 0);
	/* Unstalled by a fiber that reads (the forwarded bytes, in order). */
	{
		struct sink k = { .fd = d,
				  .data = want,
				  .len = off + (size_t)n,
				  .seed = 161,
				  .end = 1 };

		ASSERT_EQ(fiber_spawn(r, sink, &k, NULL), 0);
		fiber_set_deadline(r, iou_deadline_after(GUARD));
		ASSERT_EQ(iou_rstream_forward(r, s, c, (size_t)n), n);
		ASSERT_EQ(iou_rstream_flush(r, s), 0);
		fiber_set_deadline(r, IOU_DEADLINE_NEVER);
		ASSERT_EQ(shutdown(c, SHUT_WR), 0);
		ASSERT_EQ(reactor_run(r), 0);
		ASSERT_NO_FIBER_FAILURES();
		ASSERT_EQ(k.end, 0);
		ASSERT_EQ(k.got, off + (size_t)n);
	}
	ASSERT_EQ(iou_rstream_close(r, s), 0);
	ASSERT_EQ(close(a), 0);
	ASSERT_EQ(close(b), 0);
	ASSERT_EQ(close(c), 0);
	ASSERT_EQ(close(d), 0);
	/* A relay run from here while the sender and the sink are fibers. */
	ASSERT_EQ(relay_set_open(&rs, NULL, ((size_t)2 << 20) / scale_down(), 162, true), 0);
	ASSERT_EQ(fiber_spawn(r, sender, &rs.x, NULL), 0);
	ASSERT_EQ(fiber_spawn(r, sink, &rs.k, NULL), 0);
	fiber_set_deadline(r, iou_deadline_after(6 * GUARD));
	ASSERT_EQ(relay_run(r, &rs.rl), 0);
	fiber_set_deadline(r, IOU_DEADLINE_NEVER);
	ASSERT_EQ(reactor_run(r), 0);
	ASSERT_NO_FIBER_FAILURES();
	return relay_set_check_close(&rs);
}

/* A fiber left parked in a forward when the reactor goes. */
static void *parked_forwarder(void *arg)
{
	struct fw_job *j = arg;
	struct reactor *r = reactor_get();

	j->peeked = iou_rstream_peek(r, j->s, &j->p);
	if (j->peeked > 0)
		iou_rstream_forward(r, j->s, j->out, (size_t)j->peeked);
	FIBER_CHECK(!"a fiber of a destroyed reactor ran on");
	return NULL;
}

/*
 * Forwards in every state when the reactor goes: a send stalled on a peer
 * that does not read (its rest copied to the heap) with a fiber parked
 * behind it, and a send from a ring buffer not even submitted yet.
 */
static int fw_teardown_body(bool destroy)
{
	struct reactor *r = reactor_get();
	unsigned char want[64 * 1024];
	struct fw_job j;
	struct iou_bufring *br;
	struct iou_rstream *s[2];
	int a[2], b[2], c[2], d[2];
	const void *p;
	size_t off = 0;
	ssize_t n;

	ASSERT_TRUE(r != NULL);
	fill_random(want, sizeof(want), 170);
	ASSERT_EQ(iou_bufring_create(r, 4, 4096, &br), 0);
	for (int i = 0; i < 2; i++) {
		ASSERT_EQ(unix_pair(&a[i], &b[i]), 0);
		ASSERT_EQ(unix_pair(&c[i], &d[i]), 0);
		ASSERT_EQ(small_buffers(c[i], d[i]), 0);
		ASSERT_EQ(iou_rstream_open(r, a[i], i ? br : NULL, &s[i]), 0);
	}
	ASSERT_EQ(write_all(b[0], want, sizeof(want)), 0);
	ASSERT_EQ(forward_until_stalled(r, s[0], c[0], want, sizeof(want), &off, &p, &n), 0);
	j = (struct fw_job){ .s = s[0], .out = c[0] };
	ASSERT_EQ(fiber_spawn(r, parked_forwarder, &j, NULL), 0);
	ASSERT_EQ(fiber_sleep(r, 10 * IOU_MSEC), 0);
	ASSERT_EQ(j.peeked, n);
	ASSERT_EQ(write_all(b[1], want, 1000), 0);
	fiber_set_deadline(r, iou_deadline_after(GUARD));
	ASSERT_EQ(iou_rstream_peek(r, s[1], &p), 1000);
	fiber_set_deadline(r, IOU_DEADLINE_NEVER);
	ASSERT_EQ(iou_rstream_forward(r, s[1], c[1], 1000), 1000);
	if (destroy) {
		ASSERT_EQ(reactor_destroy(r), 0);
	} else {
		/*
		 * Thread exit tears it down, after the descriptors are closed:
		 * the send must have reached the kernel (which then holds its
		 * own reference to the socket) rather than name a closed one.
		 */
		ASSERT_EQ(fiber_sleep(r, IOU_MSEC), 0);
	}
	for (int i = 0; i < 2; i++) {
		ASSERT_EQ(close(a[i]), 0);
		ASSERT_EQ(close(b[i]), 0);
		ASSERT_EQ(close(c[i]), 0);
		ASSERT_EQ(close(d[i]), 0);
	}
	return 0;
}

static int test_reactor_teardown_with_forwards(void)
{
	int fds = test_count_fds();

	ASSERT_EQ(test_teardown_both_ways(fw_teardown_body), 0);
	ASSERT_NO_FIBER_FAILURES();
	ASSERT_EQ(test_count_fds(), fds);
	return 0;
}

/* ---- bad arguments ------------------------------------------------------ */

static int test_bad_arguments(void)
{
	struct reactor *r = reactor_get();
	struct test_foreign fo;
	struct iou_bufring *br;
	struct iou_rstream *s;
	const void *p;
	char c;
	int a = -1, b = -1;

	ASSERT_EQ(unix_pair(&a, &b), 0);
	/* Rings. */
	ASSERT_EQ(iou_bufring_create(NULL, 4, 64, &br), -EINVAL);
	ASSERT_EQ(iou_bufring_create(r, 4, 64, NULL), -EINVAL);
	ASSERT_EQ(iou_bufring_create(r, 0, 64, &br), -EINVAL);
	ASSERT_EQ(iou_bufring_create(r, 3, 64, &br), -EINVAL);
	ASSERT_EQ(iou_bufring_create(r, 65536, 64, &br), -EINVAL);
	ASSERT_EQ(iou_bufring_create(r, 4, 0, &br), -EINVAL);
	ASSERT_EQ(iou_bufring_create(r, 4, IOU_BUFRING_MAX_SIZE + 1, &br), -EINVAL);
	ASSERT_EQ(iou_bufring_destroy(r, NULL), -EINVAL);
	ASSERT_EQ(iou_bufring_create(r, 1, IOU_BUFRING_MAX_SIZE, &br), 0);
	ASSERT_EQ(iou_bufring_destroy(NULL, br), -EINVAL);
	/* Streams. */
	ASSERT_EQ(iou_rstream_open(NULL, a, NULL, &s), -EINVAL);
	ASSERT_EQ(iou_rstream_open(r, a, NULL, NULL), -EINVAL);
	ASSERT_EQ(iou_rstream_open(r, -1, NULL, &s), -EBADF);
	ASSERT_EQ(iou_rstream_open(r, 1000000, NULL, &s), -EBADF);
	ASSERT_EQ(iou_rstream_open(r, a, br, &s), 0);
	ASSERT_EQ(iou_rstream_peek(NULL, s, &p), -EINVAL);
	ASSERT_EQ(iou_rstream_peek(r, NULL, &p), -EINVAL);
	ASSERT_EQ(iou_rstream_peek(r, s, NULL), -EINVAL);
	ASSERT_EQ(iou_rstream_read(NULL, s, &c, 1), -EINVAL);
	ASSERT_EQ(iou_rstream_read(r, NULL, &c, 1), -EINVAL);
	ASSERT_EQ(iou_rstream_read(r, s, NULL, 1), -EFAULT);
	ASSERT_EQ(iou_rstream_read(r, s, NULL, 0), 0);
	ASSERT_EQ(iou_rstream_close(NULL, s), -EINVAL);
	ASSERT_EQ(iou_rstream_close(r, NULL), -EINVAL);
	iou_rstream_consume(NULL, 10);
	iou_rstream_consume(s, 10); /* nothing peeked */
	/* Another thread's reactor. */
	ASSERT_EQ(test_foreign_start(&fo), 0);
	ASSERT_EQ(iou_bufring_create(fo.r, 4, 64, &br), -EPERM);
	ASSERT_EQ(iou_rstream_open(fo.r, a, NULL, &s), -EPERM);
	ASSERT_EQ(iou_rstream_peek(fo.r, s, &p), -EPERM);
	ASSERT_EQ(iou_rstream_read(fo.r, s, &c, 1), -EPERM);
	ASSERT_EQ(iou_rstream_close(fo.r, s), -EPERM);
	ASSERT_EQ(iou_bufring_destroy(fo.r, br), -EPERM);
	ASSERT_EQ(test_foreign_stop(&fo), 0);
	/* A non-socket is reported by the first peek, and stays. */
	ASSERT_EQ(iou_rstream_close(r, s), 0);
	int pfd[2];
	ASSERT_EQ(pipe2(pfd, O_CLOEXEC), 0);
	ASSERT_EQ(iou_rstream_open(r, pfd[0], br, &s), 0);
	fiber_set_deadline(r, iou_deadline_after(GUARD));
	ASSERT_EQ(iou_rstream_peek(r, s, &p), -ENOTSOCK);
	ASSERT_EQ(iou_rstream_read(r, s, &c, 1), -ENOTSOCK);
	fiber_set_deadline(r, IOU_DEADLINE_NEVER);
	ASSERT_EQ(iou_rstream_close(r, s), 0);
	ASSERT_EQ(close(pfd[0]), 0);
	ASSERT_EQ(close(pfd[1]), 0);
	ASSERT_EQ(iou_bufring_destroy(r, br), 0);
	ASSERT_EQ(close(a), 0);
	ASSERT_EQ(close(b), 0);
	return 0;
}

TEST_MAIN(T(test_transfer_peek_consume_default_ring), T(test_transfer_read_default_ring),
	  T(test_transfer_small_ring), T(test_peek_and_consume_parts), T(test_read_gathers_buffers),
	  T(test_end_of_stream_after_data), T(test_peer_reset_after_data),
	  T(test_peer_reset_data_comes_first), T(test_dry_ring_reclaims_idle_streams),
	  T(test_dry_ring_starves_then_resumes), T(test_tiny_ring_shared_by_slow_readers),
	  T(test_per_stream_limit), T(test_deadline_keeps_stream), T(test_cancel_keeps_stream),
	  T(test_one_reader_at_a_time), T(test_close_while_armed), T(test_close_in_cancelled_fiber),
	  T(test_close_returns_buffers), T(test_destroy_ring_in_use),
	  T(test_many_connections_echoed), T(test_armed_stream_does_not_hold_reactor),
	  T(test_reactor_teardown_with_open_streams), T(test_reactor_options),
	  T(test_bad_arguments), T(test_forward_relay_default_ring),
	  T(test_forward_relay_small_ring), T(test_forward_slow_consumer),
	  T(test_stalled_forwards_hold_no_buffer), T(test_forward_bad_arguments),
	  T(test_read_leaves_nothing_to_forward), T(test_forward_to_gone_peer),
	  T(test_forward_busy_and_cancelled), T(test_close_with_forward_in_flight),
	  T(test_forward_outside_fiber), T(test_reactor_teardown_with_forwards),
	  T(test_stream_socket_registered), T(test_small_file_table),
	  T(test_thread_exit_leaves_no_reference))
