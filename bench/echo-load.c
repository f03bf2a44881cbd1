/* SPDX-License-Identifier: MIT */
/*
 * echo-load: a load generator for TCP and UDP echo servers (RFC 862), used
 * to compare the library's server with epoll, libuv and liburing peers.  It
 * deliberately uses neither ioucontext nor io_uring: non-blocking sockets,
 * one edge-triggered epoll per client thread, and one sendmsg/recv (TCP) or
 * sendmmsg/recvmmsg (UDP) per batch, so that it measures the server rather
 * than itself.  All connections are opened first (at most MAX_CONNECTING
 * connects outstanding, because listen backlogs are finite), then each
 * keeps DEPTH messages in flight through a warm-up and a measured window.
 * A message is a deterministic function of (connection, sequence number,
 * offset): an 8-byte header holding both, then the connection's slice of a
 * shared random pattern, so every echoed byte is checked without keeping a
 * copy of what was sent.  Latencies of the window go to a log-linear
 * histogram; with -P the server's CPU time and memory are read from /proc.
 * --idle instead measures the server's memory per idle connection.  The
 * last line on stdout is "result key=value ...".  Exit status: 0 when every
 * echo came back intact, 1 on a runtime error or a failed echo, 2 on a
 * usage error.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define NSEC 1000000000ull
#define MSEC 1000000ull

#define MAX_CONNS 1000000
#define MAX_THREADS 256
#define MAX_DEPTH 4096
#define MAX_SIZE (1u << 20)
#define UDP_MAX_SIZE 65507 /* largest UDP payload over IPv4 */

/* Connect phase: bounded like a real client farm, and never forever. */
#define MAX_CONNECTING 256
#define CONNECT_TIMEOUT (10 * NSEC)
#define RETRY_DELAY (20 * MSEC)

/* A datagram not back after UDP_LOSS is lost; flows are checked this often. */
#define UDP_LOSS (200 * MSEC)
#define UDP_SCAN (50 * MSEC)

/* Connections start at different offsets of the pattern, so they differ. */
#define PAT_SPREAD 4096
#define RX_BUF (256 * 1024) /* TCP receive buffer, one per thread */
#define SEND_MSGS 64	    /* messages per sendmsg or sendmmsg */
#define UDP_BATCH 32	    /* datagrams per recvmmsg */
#define EVENTS 512

/*
 * Latency histogram in nanoseconds: exact below 2*SUB, then SUB buckets
 * per power of two (0.8% wide), up to 2^40 ns (18 minutes).  A fixed array,
 * so recording a sample costs a few instructions and no allocation.
 */
#define SUB_BITS 7
#define SUB (1u << SUB_BITS)
#define HIST_LIMIT (1ull << 40)
#define HIST_N (2 * SUB + 32 * SUB)

enum conn_state {
	C_QUEUED,     /* waiting for a connect attempt */
	C_CONNECTING, /* non-blocking connect in progress */
	C_OPEN,	      /* carrying load */
	C_DEAD	      /* dropped after an error, fd closed */
};
enum slot_state {
	S_FREE,	   /* unused: the quota is reached */
	S_PENDING, /* datagram waits to be sent */
	S_FLIGHT   /* sent, echo not back yet */
};

/* A UDP datagram slot: the datagram of seq lives in slot seq % depth. */
struct slot {
	uint64_t seq; /* sequence number of the slot's datagram */
	uint64_t t;   /* when it was handed to sendmmsg (S_FLIGHT) */
	int state;    /* enum slot_state */
};

struct conn {
	int fd;
	uint32_t id;		  /* index over all connections: in headers, picks the pattern */
	uint8_t state;		  /* enum conn_state */
	bool blocked;		  /* send buffer full: wait for EPOLLOUT */
	bool rx_bad;		  /* TCP: the message being received has a wrong byte */
	const unsigned char *pat; /* byte i of every message is pat[i] (past the header) */
	uint64_t deadline;	  /* connect phase: give up after this */
	uint64_t not_before;	  /* connect phase: retry no earlier than this */
	uint64_t done;		  /* echoes completed */
	/* TCP: the stream is messages 0, 1, 2, ... back to back. */
	uint64_t *tsend;  /* send time of message seq at [seq % depth] */
	uint64_t queued;  /* messages allowed on the stream so far */
	uint64_t tx_msg;  /* message holding the send cursor ... */
	uint32_t tx_moff; /* ... and the cursor's offset in it */
	uint32_t rx_moff; /* bytes of message `done` received so far */
	/* UDP */
	struct slot *slots;	    /* depth slots */
	uint32_t inflight, pending; /* slots in S_FLIGHT, S_PENDING */
};

struct worker {
	pthread_t thread;
	struct conn *conns; /* this worker's slice of the connections */
	size_t nconns;
	int epfd;
	size_t unfinished; /* open connections with echoes still to make */
	bool measuring;	   /* inside the measured window */
	uint64_t p0, p1;   /* the measured window as this worker saw it: see worker_run() */
	uint64_t requests, errors, verify_errors, lost, late;
	uint64_t max_ns;
	unsigned char *buf; /* RX_BUF bytes (TCP) or UDP_BATCH datagrams */
	struct mmsghdr rmsg[UDP_BATCH];
	struct iovec riov[UDP_BATCH];
	uint64_t hist[HIST_N]; /* latencies in the window, see hist_index() */
};

/* Set by main() before any worker starts, read-only afterwards. */
static struct config {
	struct sockaddr_storage addr;
	socklen_t addrlen;
	const char *addr_text;
	unsigned long port, conns, size, depth, threads;
	uint32_t hlen; /* header bytes: 8, or the whole message if smaller */
	double secs, warmup, idle;
	bool udp, idle_mode;
	unsigned long pid;	     /* server, or 0 */
	uint64_t quota;		     /* echoes per connection (UINT64_MAX: no limit) */
	uint64_t win_start, win_end; /* measured window, CLOCK_MONOTONIC ns */
	unsigned char *pattern;	     /* size + PAT_SPREAD random bytes */
} cfg = { .addr_text = "127.0.0.1",
	  .conns = 1,
	  .size = 64,
	  .depth = 1,
	  .threads = 1,
	  .secs = 5,
	  .warmup = 1 };

/* Errors: one line; status 2 for usage errors, 1 at run time (from any thread). */
__attribute__((format(printf, 2, 3), noreturn)) static void fail(int status, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fputs("echo-load: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(status);
}

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * NSEC + (uint64_t)ts.tv_nsec;
}

static void sleep_until(uint64_t t)
{
	struct timespec ts = { .tv_sec = (time_t)(t / NSEC), .tv_nsec = (long)(t % NSEC) };

	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
}

static unsigned hist_index(uint64_t v)
{
	unsigned shift;

	if (v < 2 * SUB)
		return (unsigned)v;
	if (v >= HIST_LIMIT)
		v = HIST_LIMIT - 1;
	shift = 63u - (unsigned)__builtin_clzll(v) - SUB_BITS;
	return 2 * SUB + (shift - 1) * SUB + (unsigned)(v >> shift) - SUB;
}

/* The middle of bucket i, in ns. */
static double hist_value(unsigned i)
{
	unsigned k, shift;

	if (i < 2 * SUB)
		return i;
	k = i - 2 * SUB;
	shift = k / SUB + 1;
	return (double)((uint64_t)(k % SUB + SUB) << shift) + (double)(1ull << shift) / 2;
}

/* Quantile q of the histogram in µs, never above the exact maximum. */
static double hist_quantile(const uint64_t *h, uint64_t total, double q, uint64_t max_ns)
{
	uint64_t rank = (uint64_t)ceil(q * (double)total), sum = 0;

	if (total == 0)
		return 0;
	if (rank < 1)
		rank = 1;
	for (unsigned i = 0; i < HIST_N; i++) {
		sum += h[i];
		if (sum >= rank) {
			double v = hist_value(i);
			return (v > (double)max_ns ? (double)max_ns : v) / 1e3;
		}
	}
	return (double)max_ns / 1e3;
}

/* Header: sequence number in the low 48 bits, connection in the top 16, little endian. */
static void put_header(unsigned char *h, uint32_t id, uint64_t seq)
{
	uint64_t v = (seq & ((1ull << 48) - 1)) | (uint64_t)(id & 0xffff) << 48;

	for (int i = 0; i < 8; i++)
		h[i] = (unsigned char)(v >> (8 * i));
}

static void make_pattern(void)
{
	uint64_t x = 0x9e3779b97f4a7c15ull; /* xorshift64*: cheap and not periodic in bytes */
	size_t n = cfg.size + PAT_SPREAD;

	cfg.pattern = malloc(n);
	if (!cfg.pattern)
		fail(1, "out of memory");
	for (size_t i = 0; i < n; i++) {
		x ^= x >> 12;
		x ^= x << 25;
		x ^= x >> 27;
		cfg.pattern[i] = (unsigned char)((x * 0x2545f4914f6cdd1dull) >> 56);
	}
}

static void drop(struct worker *w, struct conn *c, const char *why)
{
	if (!w->errors)
		fprintf(stderr, "echo-load: connection %" PRIu32 " dropped: %s\n", c->id, why);
	w->errors++;
	close(c->fd);
	c->fd = -1;
	c->state = C_DEAD;
	if (c->done < cfg.quota)
		w->unfinished--;
}

static void bad_echo(struct worker *w, struct conn *c)
{
	if (!w->verify_errors)
		fprintf(stderr,
			"echo-load: connection %" PRIu32 ": echoed bytes differ from those sent\n",
			c->id);
	w->verify_errors++;
}

/* An echo came back whole: t0 is when its first byte was handed to the kernel. */
static void complete(struct worker *w, struct conn *c, uint64_t t0, uint64_t now, bool bad)
{
	if (bad) {
		bad_echo(w, c);
	} else if (w->measuring) {
		uint64_t lat = now > t0 ? now - t0 : 0;

		w->requests++;
		w->hist[hist_index(lat)]++;
		if (lat > w->max_ns)
			w->max_ns = lat;
	}
	if (++c->done == cfg.quota)
		w->unfinished--;
}

/*
 * Sends the queued part of the stream, straight from the pattern with the
 * headers built on the stack: no copy of the stream is ever kept.  Edge
 * triggered epoll reports writability only after the buffer filled, so
 * this goes on until everything is sent or the kernel took less than asked.
 */
static void tcp_send(struct worker *w, struct conn *c)
{
	struct iovec iov[2 * SEND_MSGS];
	unsigned char hdr[SEND_MSGS][8];

	while (c->tx_msg < c->queued) {
		uint64_t seq = c->tx_msg, t;
		uint32_t o = c->tx_moff;
		size_t total = 0;
		int ni = 0, nm = 0;
		ssize_t n;

		for (; seq < c->queued && nm < SEND_MSGS; seq++, nm++, o = 0) {
			if (o < cfg.hlen) {
				put_header(hdr[nm], c->id, seq);
				iov[ni++] = (struct iovec){ hdr[nm] + o, cfg.hlen - o };
				total += cfg.hlen - o;
				o = cfg.hlen;
			}
			if (o < cfg.size) {
				iov[ni++] = (struct iovec){ (void *)(c->pat + o), cfg.size - o };
				total += cfg.size - o;
			}
		}
		t = mono_ns();
		n = sendmsg(c->fd, &(struct msghdr){ .msg_iov = iov, .msg_iovlen = (size_t)ni },
			    MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				c->blocked = true;
			else
				drop(w, c, strerror(errno));
			return;
		}
		/* A message's latency starts when its first byte is accepted. */
		for (size_t left = (size_t)n; left > 0;) {
			size_t rest = cfg.size - c->tx_moff;

			if (c->tx_moff == 0)
				c->tsend[c->tx_msg % cfg.depth] = t;
			if (left < rest) {
				c->tx_moff += (uint32_t)left;
				break;
			}
			left -= rest;
			c->tx_msg++;
			c->tx_moff = 0;
		}
		if ((size_t)n < total) {
			c->blocked = true;
			return;
		}
	}
}

/*
 * Checks received stream bytes against what was sent; pieces may split or
 * merge messages anywhere.  Returns false if the connection was dropped.
 */
static bool tcp_consume(struct worker *w, struct conn *c, const unsigned char *p, size_t n,
			uint64_t now)
{
	uint64_t sent = c->tx_msg * cfg.size + c->tx_moff;
	uint64_t got = c->done * cfg.size + c->rx_moff;

	if (n > sent - got) {
		bad_echo(w, c);
		drop(w, c, "server sent more bytes than it was sent");
		return false;
	}
	while (n > 0) {
		uint32_t o = c->rx_moff, take = cfg.size - o, k = 0;

		if (take > n)
			take = (uint32_t)n;
		if (o < cfg.hlen) {
			unsigned char h[8];

			put_header(h, c->id, c->done);
			k = cfg.hlen - o < take ? cfg.hlen - o : take;
			if (memcmp(p, h + o, k))
				c->rx_bad = true;
		}
		if (memcmp(p + k, c->pat + o + k, take - k))
			c->rx_bad = true;
		p += take;
		n -= take;
		if (o + take < cfg.size) {
			c->rx_moff = o + take;
			break;
		}
		c->rx_moff = 0;
		complete(w, c, c->tsend[c->done % cfg.depth], now, c->rx_bad);
		c->rx_bad = false;
		if (c->queued < cfg.quota)
			c->queued++;
	}
	return true;
}

static void tcp_event(struct worker *w, struct conn *c, uint32_t events, uint64_t now)
{
	if (events & EPOLLOUT)
		c->blocked = false;
	/* Edge triggered: read until a short read shows the socket is drained. */
	while (events & (EPOLLIN | EPOLLERR | EPOLLHUP | EPOLLRDHUP)) {
		ssize_t n = recv(c->fd, w->buf, RX_BUF, MSG_DONTWAIT);

		if (n > 0) {
			if (!tcp_consume(w, c, w->buf, (size_t)n, now))
				return;
			if (n < RX_BUF)
				break;
		} else if (n == 0) {
			drop(w, c, "server closed the connection");
			return;
		} else if (errno == EAGAIN || errno == EWOULDBLOCK) {
			break;
		} else if (errno != EINTR) {
			drop(w, c, strerror(errno));
			return;
		}
	}
	if (!c->blocked && c->tx_msg < c->queued)
		tcp_send(w, c);
}

/* Gives a slot that completed or was lost its next datagram, if the quota allows. */
static void udp_refill(struct conn *c, struct slot *s)
{
	if (c->done + c->inflight + c->pending < cfg.quota) {
		s->seq += cfg.depth;
		s->state = S_PENDING;
		c->pending++;
	} else {
		s->state = S_FREE;
	}
}

static void udp_send(struct worker *w, struct conn *c)
{
	struct mmsghdr mm[SEND_MSGS];
	struct iovec iov[2 * SEND_MSGS];
	unsigned char hdr[SEND_MSGS][8];
	uint32_t idx[SEND_MSGS];

	while (c->pending && !c->blocked) {
		unsigned nm = 0;
		uint64_t t;
		int n;

		for (uint32_t s = 0; s < cfg.depth && nm < SEND_MSGS; s++) {
			if (c->slots[s].state != S_PENDING)
				continue;
			put_header(hdr[nm], c->id, c->slots[s].seq);
			iov[2 * nm] = (struct iovec){ hdr[nm], cfg.hlen };
			iov[2 * nm + 1] =
				(struct iovec){ (void *)(c->pat + cfg.hlen), cfg.size - cfg.hlen };
			mm[nm] = (struct mmsghdr){ .msg_hdr = { .msg_iov = &iov[2 * nm],
								.msg_iovlen = 2 } };
			idx[nm++] = s;
		}
		t = mono_ns();
		n = sendmmsg(c->fd, mm, nm, MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS)
				c->blocked = true; /* EPOLLOUT or the next scan retries */
			else if (errno != EINTR)
				drop(w, c, strerror(errno));
			return;
		}
		for (int i = 0; i < n; i++) {
			c->slots[idx[i]].state = S_FLIGHT;
			c->slots[idx[i]].t = t;
		}
		c->pending -= (uint32_t)n;
		c->inflight += (uint32_t)n;
		if ((unsigned)n < nm)
			c->blocked = true;
	}
}

/*
 * Matches a datagram to its slot by the sequence number in its header, so
 * any order will do.  A datagram with a sound header but wrong bytes ends
 * its slot as a verify error; one that names no datagram ever sent is a
 * verify error that leaves the slot to time out.
 */
static void udp_datagram(struct worker *w, struct conn *c, const unsigned char *p, size_t len,
			 uint64_t now)
{
	bool bad = len != cfg.size || memcmp(p + cfg.hlen, c->pat + cfg.hlen, cfg.size - cfg.hlen);
	unsigned char h[8];
	struct slot *s = NULL;

	if (cfg.hlen == 8) {
		uint64_t v = 0, seq;

		for (int i = 7; i >= 0; i--)
			v = v << 8 | p[i];
		seq = v & ((1ull << 48) - 1);
		s = &c->slots[seq % cfg.depth];
		if (v >> 48 != (c->id & 0xffff) || seq > s->seq) {
			bad_echo(w, c);
			return;
		}
		if (seq < s->seq || s->state != S_FLIGHT)
			s = NULL; /* already lost and replaced, or a duplicate */
	} else {
		/* Tiny datagrams carry only the low bytes of seq: compare those. */
		for (uint32_t i = 0; i < cfg.depth && !s; i++) {
			put_header(h, c->id, c->slots[i].seq);
			if (c->slots[i].state == S_FLIGHT && !memcmp(h, p, cfg.hlen))
				s = &c->slots[i];
		}
	}
	if (!s) {
		if (bad)
			bad_echo(w, c);
		w->late++;
		return;
	}
	c->inflight--;
	complete(w, c, s->t, now, bad);
	udp_refill(c, s);
}

static void udp_event(struct worker *w, struct conn *c, uint32_t events, uint64_t now)
{
	if (events & EPOLLOUT)
		c->blocked = false;
	while (events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
		int n = recvmmsg(c->fd, w->rmsg, UDP_BATCH, MSG_DONTWAIT, NULL);

		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			if (errno != EINTR) {
				drop(w, c, strerror(errno));
				return;
			}
			continue;
		}
		for (int i = 0; i < n; i++)
			udp_datagram(w, c, w->riov[i].iov_base, w->rmsg[i].msg_len, now);
		if (n < UDP_BATCH)
			break;
	}
	if (c->pending && !c->blocked)
		udp_send(w, c);
}

/* Declares datagrams lost after UDP_LOSS and replaces them, so the load goes on. */
static void udp_scan(struct worker *w, uint64_t now)
{
	for (size_t i = 0; i < w->nconns; i++) {
		struct conn *c = &w->conns[i];

		if (c->state != C_OPEN)
			continue;
		for (uint32_t s = 0; s < cfg.depth; s++) {
			struct slot *sl = &c->slots[s];

			if (sl->state == S_FLIGHT && now > sl->t + UDP_LOSS) {
				c->inflight--;
				if (w->measuring)
					w->lost++;
				udp_refill(c, sl);
			}
		}
		if (c->pending) {
			c->blocked = false;
			udp_send(w, c);
		}
	}
}

static void start_sending(struct worker *w, struct conn *c)
{
	uint64_t first = cfg.depth < cfg.quota ? cfg.depth : cfg.quota;

	if (!cfg.udp) {
		c->queued = first;
		tcp_send(w, c);
		return;
	}
	for (uint32_t s = 0; s < cfg.depth; s++) {
		c->slots[s] = (struct slot){ .seq = s, .state = s < first ? S_PENDING : S_FREE };
	}
	c->pending = (uint32_t)first;
	udp_send(w, c);
}

/*
 * The event loop of one client thread.  The clock is read once per
 * epoll_wait, and the echoes an iteration stamped `now` sees arrived since
 * the previous stamp.  So the window starts after the first iteration
 * stamped at or past win_start (p0) and ends with the first one stamped at
 * or past win_end (p1): what is counted arrived in (p0, p1], and p1 - p0
 * is the measured time.  The loop wakes at both edges even when idle.
 */
static void *worker_run(void *arg)
{
	struct worker *w = arg;
	struct epoll_event ev[EVENTS];
	uint64_t now = mono_ns(), next_scan = now + UDP_SCAN;

	for (size_t i = 0; i < w->nconns; i++)
		if (w->conns[i].state == C_OPEN)
			start_sending(w, &w->conns[i]);
	for (;;) {
		uint64_t next = w->measuring ? cfg.win_end : cfg.win_start;
		int n, timeout;

		if (cfg.udp && next_scan < next)
			next = next_scan;
		timeout = next <= now ? 0 : (int)((next - now + MSEC - 1) / MSEC);
		n = epoll_wait(w->epfd, ev, EVENTS, timeout > 100 ? 100 : timeout);
		if (n < 0) {
			if (errno != EINTR)
				fail(1, "epoll_wait: %s", strerror(errno));
			n = 0;
		}
		now = mono_ns();
		if (w->measuring)
			w->p1 = now;
		for (int i = 0; i < n; i++) {
			struct conn *c = ev[i].data.ptr;

			if (c->state != C_OPEN)
				continue;
			if (cfg.udp)
				udp_event(w, c, ev[i].events, now);
			else
				tcp_event(w, c, ev[i].events, now);
		}
		if (now >= cfg.win_end || w->unfinished == 0)
			break;
		if (!w->measuring && now >= cfg.win_start) {
			w->measuring = true;
			w->p0 = w->p1 = now;
		}
		if (cfg.udp && now >= next_scan) {
			udp_scan(w, now);
			next_scan = now + UDP_SCAN;
		}
	}
	return NULL;
}

static bool retryable(int err)
{
	return err == ECONNREFUSED || err == EAGAIN || err == ECONNRESET || err == ETIMEDOUT ||
	       err == EADDRNOTAVAIL || err == EINTR;
}

/* Returns 0 when connected, 1 when in progress (and watched by ep), or -errno. */
static int start_connect(struct conn *c, int ep)
{
	int fd = socket(cfg.addr.ss_family,
			(cfg.udp ? SOCK_DGRAM : SOCK_STREAM) | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0) {
		if (errno == EMFILE || errno == ENFILE)
			fail(1, "out of file descriptors after %" PRIu32 " connections", c->id);
		fail(1, "socket: %s", strerror(errno));
	}
	c->fd = fd;
	if (connect(fd, (struct sockaddr *)&cfg.addr, cfg.addrlen) == 0)
		return 0;
	if (errno != EINPROGRESS)
		return -errno;
	if (epoll_ctl(ep, EPOLL_CTL_ADD, fd,
		      &(struct epoll_event){ .events = EPOLLOUT, .data.u32 = c->id }) < 0)
		fail(1, "epoll_ctl: %s", strerror(errno));
	c->state = C_CONNECTING;
	return 1;
}

static void connected(struct conn *c)
{
	int one = 1;

	c->state = C_OPEN;
	if (!cfg.udp && setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0)
		fail(1, "TCP_NODELAY: %s", strerror(errno));
}

/* Retries a refused connect (the server may be starting up) until its deadline. */
static void requeue(struct conn *c, int err, uint64_t now, uint32_t *q, size_t qtail)
{
	close(c->fd);
	c->fd = -1;
	if (!retryable(err) || now >= c->deadline)
		fail(1, "cannot connect to %s port %lu: %s%s", cfg.addr_text, cfg.port,
		     strerror(err), retryable(err) ? " (for 10 s)" : "");
	c->state = C_QUEUED;
	c->not_before = now + RETRY_DELAY;
	q[qtail] = c->id;
}

/*
 * Opens every connection with at most MAX_CONNECTING connects outstanding.
 * The retry queue is FIFO and every retry waits the same RETRY_DELAY, so
 * its head is always the first connection due.
 */
static void connect_all(struct conn *conns)
{
	size_t n = cfg.conns, qhead = 0, qlen = n, open = 0, connecting = 0;
	uint32_t *q = malloc(n * sizeof *q);
	struct epoll_event ev[256];
	uint64_t next_check = mono_ns() + 100 * MSEC;
	int ep = epoll_create1(EPOLL_CLOEXEC);

	if (!q || ep < 0)
		fail(1, "connect setup: %s", strerror(errno));
	for (size_t i = 0; i < n; i++)
		q[i] = (uint32_t)i;
	while (open < n) {
		uint64_t now = mono_ns();
		int k, timeout = 100;

		while (connecting < MAX_CONNECTING && qlen && conns[q[qhead]].not_before <= now) {
			struct conn *c = &conns[q[qhead]];
			int r;

			qhead = (qhead + 1) % n;
			qlen--;
			if (!c->deadline)
				c->deadline = now + CONNECT_TIMEOUT;
			r = start_connect(c, ep);
			if (r == 0) {
				connected(c);
				open++;
			} else if (r == 1) {
				connecting++;
			} else {
				requeue(c, -r, now, q, (qhead + qlen++) % n);
			}
		}
		if (open == n)
			break;
		if (qlen && connecting < MAX_CONNECTING) {
			uint64_t due = conns[q[qhead]].not_before;
			timeout = due <= now ? 0 : (int)((due - now + MSEC - 1) / MSEC);
		}
		k = epoll_wait(ep, ev, 256, timeout);
		now = mono_ns();
		for (int i = 0; i < k; i++) {
			struct conn *c = &conns[ev[i].data.u32];
			int err = 0;
			socklen_t len = sizeof err;

			epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
			connecting--;
			if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
				err = errno;
			if (err == 0) {
				connected(c);
				open++;
			} else {
				requeue(c, err, now, q, (qhead + qlen++) % n);
			}
		}
		/* SYNs dropped by a full backlog leave connects pending for long. */
		if (now >= next_check) {
			for (size_t i = 0; i < n; i++)
				if (conns[i].state == C_CONNECTING && now >= conns[i].deadline)
					fail(1, "cannot connect to %s port %lu: no answer for 10 s",
					     cfg.addr_text, cfg.port);
			next_check = now + 100 * MSEC;
		}
	}
	close(ep);
	free(q);
}

/*
 * CPU time of the server in ns: the sum of its threads' schedstat (exact),
 * else utime + stime from /proc/PID/stat (clock ticks).  -1 if unreadable.
 */
static int64_t server_cpu_ns(void)
{
	char path[512];
	unsigned long long ut, st, v;
	int64_t sum = 0;
	int found = 0;
	struct dirent *de;
	const char *p;
	FILE *f;
	DIR *d;

	snprintf(path, sizeof path, "/proc/%lu/task", cfg.pid);
	d = opendir(path);
	while (d && (de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof path, "/proc/%lu/task/%s/schedstat", cfg.pid, de->d_name);
		f = fopen(path, "r");
		if (!f)
			continue; /* the thread just ended */
		if (fscanf(f, "%llu", &v) == 1) {
			sum += (int64_t)v;
			found++;
		}
		fclose(f);
	}
	if (d)
		closedir(d);
	if (found)
		return sum;

	snprintf(path, sizeof path, "/proc/%lu/stat", cfg.pid);
	f = fopen(path, "r");
	if (!f)
		return -1;
	found = fread(path, 1, sizeof path - 1, f) > 0;
	fclose(f);
	path[sizeof path - 1] = '\0';
	/* Fields after the command (which may hold spaces): state is field 3, utime 14. */
	p = strrchr(path, ')');
	if (!found || !p ||
	    sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
		return -1;
	return (int64_t)((ut + st) * NSEC / (unsigned long long)sysconf(_SC_CLK_TCK));
}

/* VmRSS of the server in KiB, or -1. */
static long server_rss_kb(void)
{
	char path[64], line[256];
	long kb = -1;
	FILE *f;

	snprintf(path, sizeof path, "/proc/%lu/status", cfg.pid);
	f = fopen(path, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof line, f))
		if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
			break;
	fclose(f);
	return kb;
}

static void raise_nofile(void)
{
	rlim_t need = (rlim_t)cfg.conns + cfg.threads + 32;
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		fail(1, "getrlimit: %s", strerror(errno));
	rl.rlim_cur = rl.rlim_max;
	if (rl.rlim_max < need) {
		struct rlimit more = { need, need };

		if (setrlimit(RLIMIT_NOFILE, &more) == 0)
			return; /* privileged: the hard limit could rise too */
	}
	if (setrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur < need)
		fail(1, "%lu connections need %llu file descriptors; the limit is %llu", cfg.conns,
		     (unsigned long long)need, (unsigned long long)rl.rlim_cur);
}

static void help(void)
{
	printf("usage: echo-load -p PORT [-a ADDR] [-c CONNS] [-s SIZE] [-d DEPTH] [-t SECONDS]\n"
	       "                 [-w WARMUP] [-u] [-P SERVER_PID] [-T THREADS] [--idle SECONDS]\n"
	       "Load generator for TCP and UDP echo servers; checks every echoed byte.\n"
	       "\n"
	       "  -a, --address ADDR  numeric IPv4 or IPv6 address (default 127.0.0.1)\n"
	       "  -p, --port PORT     server port (required)\n"
	       "  -c, --conns N       TCP connections or UDP flows (default 1)\n"
	       "  -s, --size BYTES    message size, 1..%u (UDP: ..%u; default 64)\n"
	       "  -d, --depth N       messages in flight per connection (default 1)\n"
	       "  -t, --time SECONDS  measured window (default 5)\n"
	       "  -w, --warmup SECS   load before the window, not counted (default 1)\n"
	       "  -u, --udp           UDP: one connected socket per flow\n"
	       "  -P, --pid PID       server process: report its CPU time and memory\n"
	       "  -T, --threads N     client threads, each with its own epoll (default 1)\n"
	       "      --idle SECONDS  memory mode: open all, echo once on each, hold them\n"
	       "                      idle, report the server's RSS per connection (needs -P)\n"
	       "  -h, --help          show this help\n"
	       "\n"
	       "The last line on stdout is \"result key=value ...\".  Exit status: 0 if\n"
	       "every echo was intact, 1 on errors, 2 on a usage error.\n",
	       MAX_SIZE, UDP_MAX_SIZE);
}

static int parse_ulong(const char *s, unsigned long min, unsigned long max, unsigned long *out)
{
	unsigned long v;
	char *end;

	if (*s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || *end || v < min || v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

static int parse_secs(const char *s, double *out)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || *end || !(v >= 0) || v > 1e6) /* !(v >= 0) catches NaN */
		return -EINVAL;
	*out = v;
	return 0;
}

static void parse_args(int argc, char **argv)
{
	static const struct option longopts[] = { { "address", required_argument, NULL, 'a' },
						  { "port", required_argument, NULL, 'p' },
						  { "conns", required_argument, NULL, 'c' },
						  { "size", required_argument, NULL, 's' },
						  { "depth", required_argument, NULL, 'd' },
						  { "time", required_argument, NULL, 't' },
						  { "warmup", required_argument, NULL, 'w' },
						  { "udp", no_argument, NULL, 'u' },
						  { "pid", required_argument, NULL, 'P' },
						  { "threads", required_argument, NULL, 'T' },
						  { "idle", required_argument, NULL, 'I' },
						  { "help", no_argument, NULL, 'h' },
						  { NULL, 0, NULL, 0 } };
	static const struct {
		int opt;
		const char *what;
		unsigned long min, max, *to;
	} nums[] = { { 'p', "port", 1, 65535, &cfg.port },
		     { 'c', "connections", 1, MAX_CONNS, &cfg.conns },
		     { 's', "size", 1, MAX_SIZE, &cfg.size },
		     { 'd', "depth", 1, MAX_DEPTH, &cfg.depth },
		     { 'T', "threads", 1, MAX_THREADS, &cfg.threads },
		     { 'P', "pid", 1, 4194304, &cfg.pid } };
	static const struct {
		int opt;
		const char *what;
		double *to;
	} times[] = { { 't', "time", &cfg.secs },
		      { 'w', "warm-up", &cfg.warmup },
		      { 'I', "idle time", &cfg.idle } };
	struct sockaddr_in *sin = (struct sockaddr_in *)&cfg.addr;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&cfg.addr;
	int c;

	opterr = 0; /* one line of our own instead of getopt's message */
	while ((c = getopt_long(argc, argv, ":a:p:c:s:d:t:w:uP:T:h", longopts, NULL)) != -1) {
		for (size_t i = 0; i < sizeof nums / sizeof nums[0]; i++)
			if (c == nums[i].opt &&
			    parse_ulong(optarg, nums[i].min, nums[i].max, nums[i].to))
				fail(2, "%s '%s' must be %lu..%lu", nums[i].what, optarg,
				     nums[i].min, nums[i].max);
		for (size_t i = 0; i < sizeof times / sizeof times[0]; i++)
			if (c == times[i].opt && parse_secs(optarg, times[i].to))
				fail(2, "%s '%s' must be a number of seconds", times[i].what,
				     optarg);
		switch (c) {
		case 'a':
			cfg.addr_text = optarg;
			break;
		case 'u':
			cfg.udp = true;
			break;
		case 'I':
			cfg.idle_mode = true;
			break;
		case 'h':
			help();
			exit(0);
		case ':':
			fail(2, "option '%s' needs an argument", argv[optind - 1]);
		case '?':
			if (optopt)
				fail(2, "unknown option '-%c' (try --help)", optopt);
			fail(2, "unknown option '%s' (try --help)", argv[optind - 1]);
		}
	}
	if (optind < argc)
		fail(2, "unexpected argument '%s' (try --help)", argv[optind]);
	if (!cfg.port)
		fail(2, "the server's port is required (-p PORT)");
	if (cfg.secs <= 0)
		fail(2, "the measured time must be above 0 seconds");
	if (cfg.udp && cfg.size > UDP_MAX_SIZE)
		fail(2, "UDP messages must be at most %d bytes", UDP_MAX_SIZE);
	if (cfg.idle_mode && !cfg.pid)
		fail(2, "--idle needs the server's pid (-P PID)");
	if (inet_pton(AF_INET, cfg.addr_text, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)cfg.port);
		cfg.addrlen = sizeof *sin;
	} else if (inet_pton(AF_INET6, cfg.addr_text, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)cfg.port);
		cfg.addrlen = sizeof *sin6;
	} else {
		fail(2, "'%s' is not a numeric IPv4 or IPv6 address", cfg.addr_text);
	}
	if (cfg.threads > cfg.conns)
		cfg.threads = cfg.conns;
	cfg.hlen = cfg.size < 8 ? (uint32_t)cfg.size : 8;
}

/* Gives each worker its slice of the connections, its epoll and its buffers. */
static struct worker *setup_workers(struct conn *conns)
{
	size_t stride =
		(cfg.size + 64) & ~(size_t)63; /* one spare byte shows oversized datagrams */
	struct worker *ws = calloc(cfg.threads, sizeof *ws);

	if (!ws)
		fail(1, "out of memory");
	for (size_t t = 0; t < cfg.threads; t++) {
		struct worker *w = &ws[t];
		size_t lo = t * cfg.conns / cfg.threads, hi = (t + 1) * cfg.conns / cfg.threads;

		w->conns = conns + lo;
		w->nconns = hi - lo;
		w->unfinished = w->nconns;
		w->buf = malloc(cfg.udp ? UDP_BATCH * stride : RX_BUF);
		w->epfd = epoll_create1(EPOLL_CLOEXEC);
		if (!w->buf || w->epfd < 0)
			fail(1, "worker setup: %s", strerror(errno));
		for (size_t i = 0; i < UDP_BATCH && cfg.udp; i++) {
			w->riov[i] = (struct iovec){ w->buf + i * stride, cfg.size + 1 };
			w->rmsg[i].msg_hdr =
				(struct msghdr){ .msg_iov = &w->riov[i], .msg_iovlen = 1 };
		}
		for (size_t i = 0; i < w->nconns; i++) {
			struct epoll_event ev = { .events =
							  EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
						  .data.ptr = &w->conns[i] };

			if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->conns[i].fd, &ev) < 0)
				fail(1, "epoll_ctl: %s", strerror(errno));
		}
	}
	return ws;
}

static void run_workers(struct worker *ws)
{
	for (size_t t = 0; t < cfg.threads; t++)
		if ((errno = pthread_create(&ws[t].thread, NULL, worker_run, &ws[t])) != 0)
			fail(1, "pthread_create: %s", strerror(errno));
}

/* Waits for the workers and frees what they used; their counters stay. */
/* Waits for the workers and frees their buffers; their counters stay. */
static void join_workers(struct worker *ws)
{
	for (size_t t = 0; t < cfg.threads; t++) {
		pthread_join(ws[t].thread, NULL);
		close(ws[t].epfd);
		free(ws[t].buf);
	}
}

/* --idle: the server's memory for connections that do nothing. */
static int idle_mode(struct conn *conns, long rss_before)
{
	struct worker *ws = setup_workers(conns);
	uint64_t errors = 0, bad = 0;
	long rss_idle;

	cfg.quota = 1;
	cfg.win_start = mono_ns();
	cfg.win_end = cfg.win_start + CONNECT_TIMEOUT;
	run_workers(ws);
	join_workers(ws);
	for (size_t t = 0; t < cfg.threads; t++) {
		errors += ws[t].errors;
		bad += ws[t].verify_errors;
	}
	for (size_t i = 0; i < cfg.conns; i++)
		if (conns[i].state == C_OPEN && conns[i].done < 1)
			errors++;
	fprintf(stderr, "echo-load: %lu connections echoed once, holding them idle for %g s\n",
		cfg.conns, cfg.idle);
	sleep_until(mono_ns() + (uint64_t)(cfg.idle * 1e9));
	rss_idle = server_rss_kb();
	if (rss_idle < 0)
		fail(1, "cannot read /proc/%lu/status", cfg.pid);
	/* A wrong echo is an error here too: there is no verify_errors field. */
	printf("result proto=%s mode=idle conns=%lu rss_before_kb=%ld rss_idle_kb=%ld "
	       "kib_per_conn=%.2f errors=%" PRIu64 "\n",
	       cfg.udp ? "udp" : "tcp", cfg.conns, rss_before, rss_idle,
	       (double)(rss_idle - rss_before) / (double)cfg.conns, errors + bad);
	free(ws);
	return errors + bad ? 1 : 0;
}

static int load_mode(struct conn *conns)
{
	struct worker *ws = setup_workers(conns);
	uint64_t requests = 0, errors = 0, bad = 0, lost = 0, late = 0, max_ns = 0, s0 = 0, s1 = 0;
	int64_t cpu0 = -1, cpu1 = -1;
	long rss = -1;
	double secs = 0, rps, cpu_ms = -1, cpu_per_req = -1;
	static uint64_t hist[HIST_N];

	cfg.quota = UINT64_MAX;
	cfg.win_start = mono_ns() + (uint64_t)(cfg.warmup * 1e9);
	cfg.win_end = cfg.win_start + (uint64_t)(cfg.secs * 1e9);
	run_workers(ws);
	if (cfg.pid) {
		sleep_until(cfg.win_start);
		cpu0 = server_cpu_ns();
		s0 = mono_ns();
		sleep_until(cfg.win_end);
		cpu1 = server_cpu_ns();
		s1 = mono_ns();
		rss = server_rss_kb();
	}
	join_workers(ws);

	for (size_t t = 0; t < cfg.threads; t++) {
		struct worker *w = &ws[t];

		requests += w->requests;
		errors += w->errors;
		bad += w->verify_errors;
		lost += w->lost;
		late += w->late;
		if (w->max_ns > max_ns)
			max_ns = w->max_ns;
		/* The longest window: it also covers a thread whose connections all died. */
		secs = fmax(secs, (double)(w->p1 - w->p0) / 1e9);
		for (unsigned i = 0; i < HIST_N; i++)
			hist[i] += w->hist[i];
	}
	rps = secs > 0 ? (double)requests / secs : 0;
	if (cpu0 >= 0 && cpu1 >= cpu0 && s1 > s0) {
		cpu_ms = (double)(cpu1 - cpu0) / 1e6;
		/* Per request as rates, so the two windows need not coincide exactly. */
		if (rps > 0)
			cpu_per_req = (double)(cpu1 - cpu0) / (double)(s1 - s0) * 1e6 / rps;
	} else if (cfg.pid) {
		fprintf(stderr, "echo-load: cannot read the CPU time of process %lu\n", cfg.pid);
	}
	if (lost || late)
		fprintf(stderr,
			"echo-load: %" PRIu64 " datagrams lost, %" PRIu64 " came back late\n", lost,
			late);
	/* Precision 0 prints an absent figure as exactly -1. */
	printf("result proto=%s conns=%lu size=%lu depth=%lu secs=%.3f requests=%" PRIu64
	       " rps=%.0f mbps=%.2f p50_us=%.1f p99_us=%.1f p999_us=%.1f max_us=%.1f"
	       " errors=%" PRIu64 " verify_errors=%" PRIu64 " lost=%" PRIu64 " server_cpu_ms=%.*f"
	       " server_cpu_us_per_req=%.*f server_rss_kb=%ld\n",
	       cfg.udp ? "udp" : "tcp", cfg.conns, cfg.size, cfg.depth, secs, requests, rps,
	       rps * (double)cfg.size / 1e6, hist_quantile(hist, requests, 0.50, max_ns),
	       hist_quantile(hist, requests, 0.99, max_ns),
	       hist_quantile(hist, requests, 0.999, max_ns), (double)max_ns / 1e3, errors, bad,
	       lost, cpu_ms < 0 ? 0 : 1, cpu_ms, cpu_per_req < 0 ? 0 : 3, cpu_per_req, rss);
	free(ws);
	return errors || bad ? 1 : 0;
}

int main(int argc, char **argv)
{
	struct conn *conns;
	uint64_t t0;
	long rss_before = -1;
	int status;

	parse_args(argc, argv);
	signal(SIGPIPE, SIG_IGN); /* a reset peer is an error to count, not a reason to die */
	raise_nofile();
	if (cfg.pid) {
		rss_before = server_rss_kb();
		if (rss_before < 0)
			fail(1, "cannot read /proc/%lu/status: %s", cfg.pid, strerror(errno));
	}
	make_pattern();
	conns = calloc(cfg.conns, sizeof *conns);
	if (!conns)
		fail(1, "out of memory");
	for (size_t i = 0; i < cfg.conns; i++) {
		struct conn *c = &conns[i];

		c->id = (uint32_t)i;
		c->fd = -1;
		c->pat = cfg.pattern + (i * 67) % PAT_SPREAD;
		if (cfg.udp)
			c->slots = calloc(cfg.depth, sizeof *c->slots);
		else
			c->tsend = calloc(cfg.depth, sizeof *c->tsend);
		if (!c->slots && !c->tsend)
			fail(1, "out of memory");
	}

	t0 = mono_ns();
	connect_all(conns);
	fprintf(stderr, "echo-load: %lu %s connections to %s port %lu open in %.3f s\n", cfg.conns,
		cfg.udp ? "udp" : "tcp", cfg.addr_text, cfg.port, (double)(mono_ns() - t0) / 1e9);
	status = cfg.idle_mode ? idle_mode(conns, rss_before) : load_mode(conns);
	for (size_t i = 0; i < cfg.conns; i++) {
		free(conns[i].slots);
		free(conns[i].tsend);
	}
	free(conns);
	free(cfg.pattern);
	return status;
}
