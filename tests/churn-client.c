/* SPDX-License-Identifier: MIT */
/*
 * churn-client: connection churn and hostile clients for the echo servers
 * (iou_port7 in plain TCP, iou_tlsd with --tls), driven from outside the
 * library: blocking sockets, one thread per worker, and OpenSSL (libssl)
 * through memory BIOs, so that every byte of a handshake can be paced by
 * hand.  Deliberately not built on ioucontext: it tests the servers, not
 * itself.
 *
 * The default mode runs N cycles in all over K concurrent workers; a cycle
 * connects, (with --tls) completes a full handshake verifying the server,
 * sends a pseudo-random payload of 1..B bytes, reads the echo back and
 * checks it byte for byte, then closes with a reset (SO_LINGER 0: no
 * TIME_WAIT, so a hundred thousand cycles do not exhaust the ephemeral
 * ports), or as --close says.  --udp M has one more thread check M
 * datagrams meanwhile.  The other modes are the hostile clients of the
 * fault tests (tests/fault-*.sh):
 *   --hold N        open N connections, check one echo on each, print
 *                   "holding: S served, R refused, F failed" and keep them
 *                   idle for --hold-time seconds, then check another echo
 *                   on each (or, with --expect-drop, that the server has
 *                   closed each) and reset them all; with --allow-refused,
 *                   connections the server closes at once (at its limits)
 *                   count as refused, and some but not all must be;
 *   --trickle MS    send one byte at a time, MS ms apart (with --tls the
 *                   ClientHello too: a slow-loris handshake);
 *   --stall BYTES   send only the first BYTES bytes (of the handshake with
 *                   --tls), then wait for the server to drop the connection;
 *   --no-read       send without ever reading until the server drops the
 *                   connection;
 *   --expect-drop   each connection must be closed or reset by the server
 *                   before its echo is complete; the times it lasted are
 *                   reported.
 * Every wait is bounded by --timeout.  Prints one summary line beginning
 * "churn:" on stdout; exits 0 only if every check passed, 1 otherwise (the
 * first failures are described on stderr), 2 on a usage error.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#define MAX_WORKERS 1024
#define MAX_BYTES (1u << 20)
#define MAX_HOLD 100000
#define HOLD_PROBE 32
#define UDP_MAX 1400
#define UDP_TRIES 5
#define UDP_WAIT_MS 1000
#define IO_CHUNK 16384

enum close_how {
	CLOSE_RST,
	CLOSE_FIN,
	CLOSE_HALF
};

/* Command-line settings. */
static struct {
	struct sockaddr_storage addr;
	socklen_t addrlen;
	unsigned long cycles, workers, hold, udp, stall;
	size_t bytes;
	double timeout, hold_time, trickle_ms;
	enum close_how close;
	bool tls, expect_drop, no_read, stall_set, allow_refused;
	const char *cafile, *servername;
	uint64_t seed;
} opt = {
	.cycles = 1000,
	.workers = 8,
	.bytes = 1024,
	.timeout = 10,
	.hold_time = 1,
	.servername = "localhost",
};

static SSL_CTX *ctx;

/* Work handed out to the workers, and what they found. */
static atomic_ulong next_cycle;
static atomic_ulong done_cycles, dropped;
static atomic_ulong failures, refused;
static pthread_mutex_t stats_lock = PTHREAD_MUTEX_INITIALIZER;
static double drop_min = 1e300, drop_max, cycle_max;

__attribute__((format(printf, 1, 2))) static void failure(const char *fmt, ...)
{
	va_list ap;

	if (atomic_fetch_add(&failures, 1) >= 10)
		return;
	va_start(ap, fmt);
	flockfile(stderr);
	fputs("churn-client: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	funlockfile(stderr);
	va_end(ap);
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_ms(double ms)
{
	struct timespec ts = { .tv_sec = (time_t)(ms / 1000),
			       .tv_nsec = (long)((ms - (double)(time_t)(ms / 1000) * 1000) * 1e6) };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
	}
}

static uint64_t splitmix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15u;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9u;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebu;
	return x ^ (x >> 31);
}

/* @len pseudo-random bytes, a function of (seed, @stream). */
static void payload(uint64_t stream, unsigned char *out, size_t len)
{
	uint64_t key = splitmix(opt.seed ^ (stream * 0x2545f4914f6cdd1du));

	for (size_t off = 0; off < len; off += 8) {
		uint64_t block = splitmix(key + off / 8);

		for (size_t i = 0; i < 8 && off + i < len; i++)
			out[off + i] = (unsigned char)(block >> (8 * i));
	}
}

/* ---- one connection ---------------------------------------------------------- */

/* A connection; with --tls its session talks through memory BIOs. */
struct conn {
	int fd;
	SSL *ssl;
	BIO *rb, *wb;  /* ciphertext in (from the socket), out (to it) */
	size_t sent;   /* bytes written to the socket so far */
	bool dropped;  /* the server closed or reset it */
	double opened; /* when the connect completed */
	char why[160]; /* what went wrong */
};

__attribute__((format(printf, 2, 3))) static int conn_fail(struct conn *c, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(c->why, sizeof(c->why), fmt, ap);
	va_end(ap);
	return -1;
}

/* The server's side ended: end of file or a reset.  Counts as a drop. */
static int conn_dropped(struct conn *c, const char *what)
{
	c->dropped = true;
	return conn_fail(c, "%s", what);
}

static int open_conn(struct conn *c)
{
	struct timeval tv = { .tv_sec = (time_t)opt.timeout,
			      .tv_usec = (suseconds_t)((opt.timeout - (double)(time_t)opt.timeout) *
						       1e6) };
	int one = 1;

	memset(c, 0, sizeof(*c));
	c->fd = socket(opt.addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0)
		return conn_fail(c, "socket: %s", strerror(errno));
	/* Bounds every blocking send, receive and the connect itself. */
	setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(c->fd, (struct sockaddr *)&opt.addr, opt.addrlen) < 0)
		return conn_fail(c, "connect: %s", strerror(errno));
	c->opened = now();
	if (!opt.tls)
		return 0;
	c->ssl = SSL_new(ctx);
	c->rb = BIO_new(BIO_s_mem());
	c->wb = BIO_new(BIO_s_mem());
	if (!c->ssl || !c->rb || !c->wb) {
		BIO_free(c->rb);
		BIO_free(c->wb);
		c->rb = c->wb = NULL;
		return conn_fail(c, "out of memory for a TLS session");
	}
	SSL_set_bio(c->ssl, c->rb, c->wb);
	SSL_set_connect_state(c->ssl);
	if (!SSL_set_tlsext_host_name(c->ssl, opt.servername) ||
	    !SSL_set1_host(c->ssl, opt.servername))
		return conn_fail(c, "cannot set the server name");
	return 0;
}

static void close_conn(struct conn *c, enum close_how how)
{
	if (c->ssl)
		SSL_free(c->ssl); /* frees the BIOs too */
	c->ssl = NULL;
	if (c->fd < 0)
		return;
	if (how == CLOSE_RST) {
		struct linger lg = { .l_onoff = 1, .l_linger = 0 };

		setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	}
	close(c->fd);
	c->fd = -1;
}

/*
 * Has the server closed or reset the connection?  Does not wait.  @drain:
 * bytes before the end (a TLS alert) are read and dropped; otherwise they
 * are left (an echo still to be read), and the end is not seen past them.
 */
static bool peer_gone(struct conn *c, bool drain)
{
	struct pollfd p = { .fd = c->fd, .events = POLLIN };
	char buf[4096];

	while (poll(&p, 1, 0) == 1) {
		ssize_t n = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT | (drain ? 0 : MSG_PEEK));

		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
			return true;
		if (n < 0 || !drain)
			return false;
		/* Bytes (a TLS alert): keep looking for the end. */
	}
	return false;
}

/* Send @len raw bytes, paced by --trickle and cut short by --stall. */
static int send_raw(struct conn *c, const unsigned char *buf, size_t len)
{
	while (len > 0) {
		size_t n = len;
		ssize_t ret;

		if (opt.stall_set) {
			if (c->sent >= opt.stall)
				return 0; /* the rest is never sent */
			if (n > opt.stall - c->sent)
				n = opt.stall - c->sent;
		}
		if (opt.trickle_ms > 0) {
			if (peer_gone(c, false))
				return conn_dropped(c, "closed by the server while trickling");
			n = 1;
		}
		ret = send(c->fd, buf, n, MSG_NOSIGNAL);
		if (ret < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EPIPE || errno == ECONNRESET)
				return conn_dropped(c, strerror(errno));
			if (errno == EAGAIN)
				return conn_fail(c, "send: no progress in %g s", opt.timeout);
			return conn_fail(c, "send: %s", strerror(errno));
		}
		c->sent += (size_t)ret;
		buf += ret;
		len -= (size_t)ret;
		if (opt.trickle_ms > 0 && len > 0)
			sleep_ms(opt.trickle_ms);
	}
	return 0;
}

/* Receive up to @len raw bytes: > 0, or -1 (end of file and resets are drops). */
static ssize_t recv_raw(struct conn *c, void *buf, size_t len)
{
	for (;;) {
		ssize_t n = recv(c->fd, buf, len, 0);

		if (n > 0)
			return n;
		if (n == 0)
			return conn_dropped(c, "end of file from the server");
		if (errno == EINTR)
			continue;
		if (errno == ECONNRESET)
			return conn_dropped(c, "connection reset by the server");
		if (errno == EAGAIN)
			return conn_fail(c, "nothing from the server in %g s", opt.timeout);
		return conn_fail(c, "recv: %s", strerror(errno));
	}
}

/* TLS: send what the session has queued for the server. */
static int flush_tls(struct conn *c)
{
	unsigned char buf[IO_CHUNK];
	int n;

	while ((n = BIO_read(c->wb, buf, sizeof(buf))) > 0) {
		if (send_raw(c, buf, (size_t)n) < 0)
			return -1;
	}
	return 0;
}

/* TLS: feed the session what the server sent. */
static int fill_tls(struct conn *c)
{
	unsigned char buf[IO_CHUNK];
	ssize_t n = recv_raw(c, buf, sizeof(buf));

	if (n < 0)
		return -1;
	if (BIO_write(c->rb, buf, (int)n) != (int)n)
		return conn_fail(c, "BIO_write failed");
	return 0;
}

static int tls_error(struct conn *c, const char *what, int ret)
{
	int e = SSL_get_error(c->ssl, ret);
	unsigned long code = ERR_get_error();
	char text[120];

	ERR_clear_error();
	if (e == SSL_ERROR_ZERO_RETURN)
		return conn_dropped(c, "close_notify from the server");
	if (code) {
		ERR_error_string_n(code, text, sizeof(text));
		return conn_fail(c, "%s: %s", what, text);
	}
	return conn_fail(c, "%s: SSL error %d", what, e);
}

static int handshake(struct conn *c)
{
	for (;;) {
		int ret = SSL_do_handshake(c->ssl);

		if (flush_tls(c) < 0)
			return -1;
		if (ret == 1)
			break;
		if (SSL_get_error(c->ssl, ret) != SSL_ERROR_WANT_READ)
			return tls_error(c, "handshake", ret);
		/* Stalled on purpose: only wait for the server to give up. */
		if (opt.stall_set && c->sent >= opt.stall) {
			char buf[4096];

			while (recv_raw(c, buf, sizeof(buf)) > 0) {
			}
			return -1;
		}
		if (fill_tls(c) < 0)
			return -1;
	}
	if (SSL_get_verify_result(c->ssl) != X509_V_OK)
		return conn_fail(c, "certificate: %s",
				 X509_verify_cert_error_string(SSL_get_verify_result(c->ssl)));
	return 0;
}

static int send_data(struct conn *c, const unsigned char *buf, size_t len)
{
	if (!c->ssl)
		return send_raw(c, buf, len);
	while (len > 0) {
		int n = len > IO_CHUNK ? IO_CHUNK : (int)len;
		int ret = SSL_write(c->ssl, buf, n);

		if (ret <= 0)
			return tls_error(c, "SSL_write", ret);
		if (flush_tls(c) < 0)
			return -1;
		buf += ret;
		len -= (size_t)ret;
	}
	return 0;
}

/* Receive exactly @len bytes of echo into @buf. */
static int recv_data(struct conn *c, unsigned char *buf, size_t len)
{
	size_t got = 0;

	while (got < len) {
		if (!c->ssl) {
			ssize_t n = recv_raw(c, buf + got, len - got);

			if (n < 0)
				return -1;
			got += (size_t)n;
			continue;
		}
		int want = len - got > IO_CHUNK ? IO_CHUNK : (int)(len - got);
		int ret = SSL_read(c->ssl, buf + got, want);

		if (ret > 0) {
			got += (size_t)ret;
			continue;
		}
		if (SSL_get_error(c->ssl, ret) != SSL_ERROR_WANT_READ)
			return tls_error(c, "SSL_read", ret);
		if (flush_tls(c) < 0 || fill_tls(c) < 0)
			return -1;
	}
	return 0;
}

/* After a half-close the echo has come back: the server must now close. */
static int expect_eof(struct conn *c)
{
	unsigned char buf[256];

	if (c->ssl) {
		int ret = SSL_read(c->ssl, buf, sizeof(buf));

		while (ret <= 0 && SSL_get_error(c->ssl, ret) == SSL_ERROR_WANT_READ) {
			if (fill_tls(c) < 0)
				return c->dropped ? 0 : -1;
			ret = SSL_read(c->ssl, buf, sizeof(buf));
		}
		if (ret > 0)
			return conn_fail(c, "more bytes than were sent");
		/* close_notify, or end of file without it: both end the session. */
		ERR_clear_error();
		return 0;
	}
	ssize_t n = recv(c->fd, buf, sizeof(buf), 0);

	if (n == 0)
		return 0;
	if (n > 0)
		return conn_fail(c, "more bytes than were sent");
	return conn_fail(c, "after the half-close: %s",
			 errno == EAGAIN ? "no end of file" : strerror(errno));
}

/* Echo @len bytes of stream @stream on @c and check them. */
static int echo_check(struct conn *c, uint64_t stream, size_t len, unsigned char *out,
		      unsigned char *in)
{
	payload(stream, out, len);
	if (send_data(c, out, len) < 0)
		return -1;
	if (opt.close == CLOSE_HALF && shutdown(c->fd, SHUT_WR) < 0)
		return conn_fail(c, "shutdown: %s", strerror(errno));
	if (recv_data(c, in, len) < 0)
		return -1;
	for (size_t i = 0; i < len; i++) {
		if (in[i] != out[i])
			return conn_fail(c, "echo differs at byte %zu of %zu", i, len);
	}
	return 0;
}

/* --no-read: send until the server gives up on us. */
static int flood(struct conn *c, unsigned char *buf)
{
	for (uint64_t i = 0;; i++) {
		payload(i, buf, IO_CHUNK);
		if (send_data(c, buf, IO_CHUNK) < 0)
			return -1;
	}
}

static void note_drop(struct conn *c)
{
	double lasted = now() - c->opened;

	atomic_fetch_add(&dropped, 1);
	pthread_mutex_lock(&stats_lock);
	if (lasted < drop_min)
		drop_min = lasted;
	if (lasted > drop_max)
		drop_max = lasted;
	pthread_mutex_unlock(&stats_lock);
}

/* One cycle; 0 if it went as expected. */
static int cycle(unsigned long i, unsigned char *out, unsigned char *in)
{
	struct conn c;
	double t0 = now();
	size_t len = 1 + (size_t)(splitmix(opt.seed + i) % opt.bytes);
	int ret = open_conn(&c);

	if (ret == 0 && c.ssl)
		ret = handshake(&c);
	if (ret == 0 && opt.no_read)
		ret = flood(&c, out);
	else if (ret == 0 && opt.stall_set && opt.tls)
		ret = conn_fail(&c, "the handshake completed with only %lu bytes sent", opt.stall);
	else if (ret == 0)
		ret = echo_check(&c, i, len, out, in);
	if (ret == 0 && opt.close == CLOSE_HALF)
		ret = expect_eof(&c);
	if (ret == 0 && opt.close == CLOSE_FIN && c.ssl) {
		SSL_shutdown(c.ssl);
		ret = flush_tls(&c);
	}
	if (opt.expect_drop) {
		if (c.dropped) {
			note_drop(&c);
			ret = 0;
		} else if (ret == 0) {
			ret = conn_fail(&c, "served, not dropped");
		}
	}
	if (ret < 0)
		failure("cycle %lu (%zu bytes): %s", i, len, c.why);
	close_conn(&c, opt.close);
	t0 = now() - t0;
	pthread_mutex_lock(&stats_lock);
	if (t0 > cycle_max)
		cycle_max = t0;
	pthread_mutex_unlock(&stats_lock);
	return ret;
}

static void *run_worker(void *arg)
{
	unsigned char *out = malloc(opt.bytes > IO_CHUNK ? opt.bytes : IO_CHUNK);
	unsigned char *in = malloc(opt.bytes);
	unsigned long i;

	(void)arg;
	if (!out || !in) {
		failure("out of memory");
		free(out);
		free(in);
		return NULL;
	}
	while ((i = atomic_fetch_add(&next_cycle, 1)) < opt.cycles) {
		if (cycle(i, out, in) == 0)
			atomic_fetch_add(&done_cycles, 1);
	}
	free(out);
	free(in);
	return NULL;
}

/* ---- --hold -------------------------------------------------------------------- */

static struct conn *held;

/* Open and probe connections [from, to) of the hold. */
struct hold_range {
	unsigned long from, to;
};

static void *open_held(void *arg)
{
	struct hold_range *h = arg;
	unsigned char out[HOLD_PROBE], in[HOLD_PROBE];

	for (unsigned long i = h->from; i < h->to; i++) {
		struct conn *c = &held[i];
		int ret = open_conn(c);

		if (ret == 0 && c->ssl)
			ret = handshake(c);
		if (ret == 0)
			ret = echo_check(c, i, HOLD_PROBE, out, in);
		if (ret < 0 && c->dropped && opt.allow_refused) {
			/* Refused by the server: not held, not a failure. */
			atomic_fetch_add(&refused, 1);
			close_conn(c, CLOSE_RST);
			continue;
		}
		if (ret < 0)
			failure("held connection %lu: opening: %s", i, c->why);
	}
	return NULL;
}

static void *check_held(void *arg)
{
	struct hold_range *h = arg;
	unsigned char out[HOLD_PROBE], in[HOLD_PROBE];

	for (unsigned long i = h->from; i < h->to; i++) {
		struct conn *c = &held[i];
		int ret = -1;

		if (c->fd < 0 || c->why[0])
			continue; /* refused, or already failed when opened */
		if (opt.expect_drop) {
			/* The server must have closed it meanwhile. */
			if (peer_gone(c, true)) {
				c->dropped = true;
				atomic_fetch_add(&dropped, 1);
				ret = 0;
			} else {
				conn_fail(c, "still open after %g s", opt.hold_time);
			}
		} else {
			ret = echo_check(c, opt.hold + i, HOLD_PROBE, out, in);
			if (ret == 0)
				atomic_fetch_add(&done_cycles, 1);
		}
		if (ret < 0)
			failure("held connection %lu: %s", i, c->why);
		close_conn(c, CLOSE_RST);
	}
	return NULL;
}

/* Run @fn over the held connections with the workers; 0 or -1. */
static int over_held(void *(*fn)(void *))
{
	pthread_t tids[MAX_WORKERS];
	struct hold_range ranges[MAX_WORKERS];
	unsigned long k = opt.workers < opt.hold ? opt.workers : opt.hold;

	for (unsigned long w = 0; w < k; w++) {
		ranges[w].from = opt.hold * w / k;
		ranges[w].to = opt.hold * (w + 1) / k;
		if (pthread_create(&tids[w], NULL, fn, &ranges[w]) != 0) {
			failure("pthread_create failed");
			k = w;
			break;
		}
	}
	for (unsigned long w = 0; w < k; w++)
		pthread_join(tids[w], NULL);
	return 0;
}

static void run_hold(void)
{
	held = calloc(opt.hold, sizeof(*held));
	if (!held) {
		failure("out of memory for %lu connections", opt.hold);
		return;
	}
	for (unsigned long i = 0; i < opt.hold; i++)
		held[i].fd = -1;
	over_held(open_held);
	if (opt.allow_refused && !atomic_load(&refused))
		failure("--allow-refused: the server refused none of %lu connections", opt.hold);
	if (opt.allow_refused && atomic_load(&refused) == opt.hold)
		failure("--allow-refused: the server refused all %lu connections", opt.hold);
	printf("holding: %lu served, %lu refused, %lu failed\n",
	       opt.hold - (unsigned long)atomic_load(&refused),
	       (unsigned long)atomic_load(&refused), (unsigned long)atomic_load(&failures));
	fflush(stdout);
	sleep_ms(opt.hold_time * 1000);
	over_held(check_held);
	for (unsigned long i = 0; i < opt.hold; i++)
		close_conn(&held[i], CLOSE_RST);
	free(held);
}

/* ---- UDP ----------------------------------------------------------------------- */

static atomic_ulong udp_ok;

static void *run_udp(void *arg)
{
	unsigned char out[UDP_MAX], in[UDP_MAX + 1];
	int fd = socket(opt.addr.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	(void)arg;
	if (fd < 0 || connect(fd, (struct sockaddr *)&opt.addr, opt.addrlen) < 0) {
		failure("udp: %s", strerror(errno));
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	for (unsigned long i = 0; i < opt.udp; i++) {
		size_t len = 1 + (size_t)(splitmix(opt.seed ^ (i << 20) ^ 0x5a5a) % UDP_MAX);
		bool ok = false;

		payload(((uint64_t)1 << 40) + i, out, len);
		for (int t = 0; t < UDP_TRIES && !ok; t++) {
			struct pollfd p = { .fd = fd, .events = POLLIN };

			if (send(fd, out, len, 0) < 0)
				break;
			/* Stale replies of earlier tries are skipped by content. */
			while (!ok && poll(&p, 1, UDP_WAIT_MS) == 1) {
				ssize_t n = recv(fd, in, sizeof(in), 0);

				if (n == (ssize_t)len && !memcmp(in, out, len))
					ok = true;
				else if (n < 0)
					break;
			}
		}
		if (!ok)
			failure("udp datagram %lu (%zu bytes): no correct echo in %d tries", i, len,
				UDP_TRIES);
		else
			atomic_fetch_add(&udp_ok, 1);
	}
	close(fd);
	return NULL;
}

/* ---- options and main ----------------------------------------------------------- */

static void usage(FILE *f)
{
	fprintf(f,
		"usage: churn-client -p PORT [OPTION]...\n"
		"Connection churn and hostile clients for an echo server (TCP or TLS).\n"
		"  -H, --host ADDR        numeric server address (default 127.0.0.1)\n"
		"  -p, --port PORT        server port\n"
		"  -n, --cycles N         connect/echo/close cycles in all (default 1000)\n"
		"  -c, --concurrency K    workers running at once (default 8)\n"
		"  -b, --bytes B          payload of 1..B random bytes (default 1024)\n"
		"      --close HOW        end of a cycle: rst (SO_LINGER 0, default), fin\n"
		"                         (TLS: close_notify first), or half (shutdown(SHUT_WR)\n"
		"                         after sending, no close_notify; the echo must come\n"
		"                         back whole, then end of file)\n"
		"      --tls              speak TLS, verifying the server\n"
		"      --cafile FILE      CA certificates for --tls\n"
		"      --servername NAME  name to verify and send as SNI (default localhost)\n"
		"      --udp M            also check M UDP datagrams meanwhile\n"
		"      --hold N           hold N connections idle for --hold-time instead\n"
		"      --hold-time SEC    (default 1)\n"
		"      --trickle MS       send one byte each MS milliseconds\n"
		"      --stall BYTES      send only BYTES bytes, then wait to be dropped\n"
		"      --no-read          send without reading until dropped\n"
		"      --expect-drop      every connection must be dropped by the server\n"
		"      --allow-refused    with --hold: connections the server closes at once\n"
		"                         are counted as refused (some must be, not all)\n"
		"  -T, --timeout SEC      longest wait for any one step (default 10)\n"
		"  -s, --seed N           payload seed (default 0)\n");
}

__attribute__((format(printf, 1, 2))) static int bad(const char *fmt, ...)
{
	va_list ap;

	fputs("churn-client: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return 2;
}

static bool num(const char *s, unsigned long max, unsigned long *out)
{
	char *end;
	unsigned long v;

	if (!s || *s < '0' || *s > '9')
		return false;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || *end || v > max)
		return false;
	*out = v;
	return true;
}

static bool seconds(const char *s, double *out)
{
	char *end;
	double v;

	if (!s || !*s)
		return false;
	v = strtod(s, &end);
	if (*end || !(v >= 0) || v > 1e6)
		return false;
	*out = v;
	return true;
}

int main(int argc, char **argv)
{
	enum {
		O_CLOSE = 256,
		O_TLS,
		O_CAFILE,
		O_SNI,
		O_UDP,
		O_HOLD,
		O_HOLD_TIME,
		O_TRICKLE,
		O_STALL,
		O_NO_READ,
		O_EXPECT_DROP,
		O_ALLOW_REFUSED
	};
	static const struct option longopts[] = {
		{ "host", required_argument, NULL, 'H' },
		{ "port", required_argument, NULL, 'p' },
		{ "cycles", required_argument, NULL, 'n' },
		{ "concurrency", required_argument, NULL, 'c' },
		{ "bytes", required_argument, NULL, 'b' },
		{ "close", required_argument, NULL, O_CLOSE },
		{ "tls", no_argument, NULL, O_TLS },
		{ "cafile", required_argument, NULL, O_CAFILE },
		{ "servername", required_argument, NULL, O_SNI },
		{ "udp", required_argument, NULL, O_UDP },
		{ "hold", required_argument, NULL, O_HOLD },
		{ "hold-time", required_argument, NULL, O_HOLD_TIME },
		{ "trickle", required_argument, NULL, O_TRICKLE },
		{ "stall", required_argument, NULL, O_STALL },
		{ "no-read", no_argument, NULL, O_NO_READ },
		{ "expect-drop", no_argument, NULL, O_EXPECT_DROP },
		{ "allow-refused", no_argument, NULL, O_ALLOW_REFUSED },
		{ "timeout", required_argument, NULL, 'T' },
		{ "seed", required_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *host = "127.0.0.1";
	unsigned long port = 0, v;
	bool have_port = false;
	struct addrinfo hints = { .ai_flags = AI_NUMERICHOST, .ai_socktype = SOCK_STREAM };
	struct addrinfo *res;
	pthread_t tids[MAX_WORKERS], udp_tid;
	unsigned long started = 0;
	struct rlimit rl;
	double t0, elapsed;
	char portstr[8];
	int c;

	while ((c = getopt_long(argc, argv, "H:p:n:c:b:T:s:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'H':
			host = optarg;
			break;
		case 'p':
			if (!num(optarg, 65535, &port) || port == 0)
				return bad("port '%s' must be 1..65535", optarg);
			have_port = true;
			break;
		case 'n':
			if (!num(optarg, 1000000000, &opt.cycles))
				return bad("cycles '%s' must be 0..1e9", optarg);
			break;
		case 'c':
			if (!num(optarg, MAX_WORKERS, &opt.workers) || opt.workers == 0)
				return bad("concurrency '%s' must be 1..1024", optarg);
			break;
		case 'b':
			if (!num(optarg, MAX_BYTES, &v) || v == 0)
				return bad("bytes '%s' must be 1..1048576", optarg);
			opt.bytes = v;
			break;
		case O_CLOSE:
			if (!strcmp(optarg, "rst"))
				opt.close = CLOSE_RST;
			else if (!strcmp(optarg, "fin"))
				opt.close = CLOSE_FIN;
			else if (!strcmp(optarg, "half"))
				opt.close = CLOSE_HALF;
			else
				return bad("--close '%s' must be rst, fin or half", optarg);
			break;
		case O_TLS:
			opt.tls = true;
			break;
		case O_CAFILE:
			opt.cafile = optarg;
			break;
		case O_SNI:
			opt.servername = optarg;
			break;
		case O_UDP:
			if (!num(optarg, 100000000, &opt.udp))
				return bad("--udp '%s' must be a count", optarg);
			break;
		case O_HOLD:
			if (!num(optarg, MAX_HOLD, &opt.hold) || opt.hold == 0)
				return bad("--hold '%s' must be 1..100000", optarg);
			break;
		case O_HOLD_TIME:
			if (!seconds(optarg, &opt.hold_time))
				return bad("--hold-time '%s' must be seconds", optarg);
			break;
		case O_TRICKLE:
			if (!seconds(optarg, &opt.trickle_ms))
				return bad("--trickle '%s' must be milliseconds", optarg);
			break;
		case O_STALL:
			if (!num(optarg, 1000000000, &opt.stall))
				return bad("--stall '%s' must be a byte count", optarg);
			opt.stall_set = true;
			opt.expect_drop = true;
			break;
		case O_NO_READ:
			opt.no_read = true;
			opt.expect_drop = true;
			break;
		case O_EXPECT_DROP:
			opt.expect_drop = true;
			break;
		case O_ALLOW_REFUSED:
			opt.allow_refused = true;
			break;
		case 'T':
			if (!seconds(optarg, &opt.timeout) || opt.timeout == 0)
				return bad("timeout '%s' must be positive seconds", optarg);
			break;
		case 's':
			if (!num(optarg, ULONG_MAX, &v))
				return bad("seed '%s' must be a number", optarg);
			opt.seed = v;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc)
		return bad("unexpected argument '%s'", argv[optind]);
	if (!have_port)
		return bad("%s", "--port is required");
	if (opt.tls && !opt.cafile)
		return bad("%s", "--tls needs --cafile");
	if (opt.allow_refused && !opt.hold)
		return bad("%s", "--allow-refused goes with --hold");
	snprintf(portstr, sizeof(portstr), "%lu", port);
	if (getaddrinfo(host, portstr, &hints, &res) != 0)
		return bad("'%s' is not a numeric address", host);
	memcpy(&opt.addr, res->ai_addr, res->ai_addrlen);
	opt.addrlen = res->ai_addrlen;
	freeaddrinfo(res);

	/* Many held connections need many descriptors. */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	if (opt.tls) {
		ctx = SSL_CTX_new(TLS_client_method());
		if (!ctx || SSL_CTX_load_verify_locations(ctx, opt.cafile, NULL) != 1) {
			fprintf(stderr, "churn-client: cannot load the CA file '%s'\n", opt.cafile);
			return 1;
		}
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
		/* Every cycle a full handshake: that is the churn. */
		SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
		SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
	}

	t0 = now();
	if (opt.udp && pthread_create(&udp_tid, NULL, run_udp, NULL) != 0) {
		fprintf(stderr, "churn-client: cannot start a thread\n");
		return 1;
	}
	if (opt.hold) {
		run_hold();
	} else {
		for (; started < opt.workers && started < opt.cycles; started++) {
			if (pthread_create(&tids[started], NULL, run_worker, NULL) != 0) {
				failure("cannot start worker %lu", started);
				break;
			}
		}
		for (unsigned long w = 0; w < started; w++)
			pthread_join(tids[w], NULL);
	}
	if (opt.udp)
		pthread_join(udp_tid, NULL);
	elapsed = now() - t0;
	SSL_CTX_free(ctx);

	if (opt.hold) {
		printf("churn: held %lu %s connections (%lu refused at once) for %g s: %lu %s, "
		       "%lu failures",
		       opt.hold - (unsigned long)atomic_load(&refused), opt.tls ? "TLS" : "TCP",
		       (unsigned long)atomic_load(&refused), opt.hold_time,
		       opt.expect_drop ? (unsigned long)atomic_load(&dropped) :
					 (unsigned long)atomic_load(&done_cycles),
		       opt.expect_drop ? "dropped by the server" : "still echo",
		       (unsigned long)atomic_load(&failures));
	} else if (opt.expect_drop) {
		printf("churn: %lu %s connections (%s) dropped by the server after %.2f..%.2f s, "
		       "%lu failures",
		       (unsigned long)atomic_load(&dropped), opt.tls ? "TLS" : "TCP",
		       opt.no_read	  ? "never reading" :
		       opt.stall_set	  ? "stalled" :
		       opt.trickle_ms > 0 ? "trickling" :
					    "plain",
		       atomic_load(&dropped) ? drop_min : 0.0, drop_max,
		       (unsigned long)atomic_load(&failures));
	} else {
		printf("churn: %lu cycles (%s, %lu workers, 1..%zu bytes, close %s) in %.2f s, "
		       "%.0f cycles/s, slowest %.0f ms, %lu failures",
		       (unsigned long)atomic_load(&done_cycles), opt.tls ? "TLS" : "TCP",
		       opt.workers, opt.bytes,
		       opt.close == CLOSE_RST ? "rst" :
		       opt.close == CLOSE_FIN ? "fin" :
						"half",
		       elapsed, elapsed > 0 ? (double)atomic_load(&done_cycles) / elapsed : 0.0,
		       cycle_max * 1000, (unsigned long)atomic_load(&failures));
	}
	if (opt.udp)
		printf("; udp %lu/%lu", (unsigned long)atomic_load(&udp_ok), opt.udp);
	printf("\n");
	return atomic_load(&failures) ? 1 : 0;
}
