/* SPDX-License-Identifier: MIT */
/*
 * echo-client: drives an RFC 862 echo server (iou_port7) from outside and
 * checks every byte it returns.  Deliberately not built on ioucontext: a
 * plain epoll loop runs N concurrent TCP clients, each sending B
 * pseudo-random bytes in random-sized chunks while verifying the echo,
 * then shutting down its side and expecting the server to finish the echo
 * and close; K of them instead reset the connection mid-stream (SO_LINGER
 * 0).  A second thread sends M UDP datagrams of random sizes, one at a
 * time with retries (UDP may drop), and checks each reply.
 *
 * --hold N is a separate mode for descriptor-limit tests: it opens N
 * connections, classifies each as served (its probe is echoed) or refused
 * (closed or reset by the server), prints "holding: ..." and keeps them
 * open for --hold-time seconds, then checks that every served connection
 * still echoes before closing them all.
 *
 * Payloads are generated from (seed, client, offset), so nothing is stored
 * and a failure can be replayed with --seed.  Prints one summary line;
 * exits 0 only if everything was verified, 1 otherwise, 2 on usage errors.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define CHUNK_MAX 65536
#define UDP_TRIES 5
#define UDP_WAIT_MS 1000
#define HOLD_PROBE 16

/* Command-line settings. */
static struct {
	struct sockaddr_storage addr;
	socklen_t addrlen;
	unsigned clients, resets, udp, hold;
	size_t bytes;
	double timeout, hold_time;
	bool expect_refused;
	uint64_t seed;
} opt = { .bytes = 65536, .timeout = 60, .hold_time = 1 };

/* Failures are reported, counted, and only the first few printed. */
static pthread_mutex_t fail_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned failures;

__attribute__((format(printf, 1, 2))) static void failure(const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&fail_lock);
	if (++failures <= 10) {
		va_start(ap, fmt);
		fputs("echo-client: ", stderr);
		vfprintf(stderr, fmt, ap);
		fputc('\n', stderr);
		va_end(ap);
	}
	pthread_mutex_unlock(&fail_lock);
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t splitmix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15u;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9u;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebu;
	return x ^ (x >> 31);
}

/* A small per-user generator for sizes and choices. */
static uint64_t next_rand(uint64_t *state)
{
	*state += 1;
	return splitmix(*state);
}

/* The @len payload bytes of stream @stream starting at @off. */
static void payload(uint64_t stream, size_t off, unsigned char *out, size_t len)
{
	uint64_t key = splitmix(opt.seed ^ (stream * 0x2545f4914f6cdd1du));

	while (len > 0) {
		uint64_t block = splitmix(key + off / 8);
		size_t skip = off % 8, n = 8 - skip < len ? 8 - skip : len;

		for (size_t i = 0; i < n; i++)
			out[i] = (unsigned char)(block >> (8 * (skip + i)));
		out += n;
		off += n;
		len -= n;
	}
}

/* A chunk size from 1 to CHUNK_MAX, spread over the orders of magnitude. */
static size_t chunk_size(uint64_t *rng)
{
	unsigned bits = (unsigned)(next_rand(rng) % 17);

	return 1 + (size_t)(next_rand(rng) % ((size_t)1 << bits)) % CHUNK_MAX;
}

static void reset_close(int fd)
{
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };

	setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(fd);
}

/* ---- TCP clients ----------------------------------------------------------- */

enum state {
	CONNECTING,
	SENDING,
	DRAINING,
	FINISHED,
	FAILED
};

struct client {
	unsigned id;
	int fd;
	enum state state;
	bool reset;	  /* resets mid-stream instead of finishing */
	bool reset_early; /* resets right after sending, not after some echo */
	size_t total;	  /* bytes it sends (a reset client stops early) */
	size_t sent, recvd;
	uint64_t rng;
};

struct tcp_stats {
	unsigned verified, reset;
	uint64_t bytes;
};

__attribute__((format(printf, 2, 3))) static void client_fail(struct client *c, const char *fmt,
							      ...)
{
	char msg[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	failure("tcp client %u: %s (sent %zu of %zu, received %zu)", c->id, msg, c->sent, c->total,
		c->recvd);
	c->state = FAILED;
	close(c->fd);
	c->fd = -1;
}

static void client_reset(struct client *c, struct tcp_stats *st)
{
	reset_close(c->fd);
	c->fd = -1;
	c->state = FINISHED;
	st->reset++;
}

static void client_send(struct client *c, struct tcp_stats *st, unsigned char *buf)
{
	size_t n = chunk_size(&c->rng);
	ssize_t ret;

	if (n > c->total - c->sent)
		n = c->total - c->sent;
	payload(c->id, c->sent, buf, n);
	ret = send(c->fd, buf, n, MSG_NOSIGNAL);
	if (ret < 0) {
		if (errno != EAGAIN && errno != EINTR)
			client_fail(c, "send: %s", strerror(errno));
		return;
	}
	c->sent += (size_t)ret;
	if (c->sent < c->total)
		return;
	if (c->reset) {
		if (c->reset_early)
			client_reset(c, st);
		else
			c->state = DRAINING;
		return;
	}
	/* Half-close: the server must still echo the rest, then close. */
	if (shutdown(c->fd, SHUT_WR) < 0)
		client_fail(c, "shutdown: %s", strerror(errno));
	else
		c->state = DRAINING;
}

static void client_recv(struct client *c, struct tcp_stats *st, unsigned char *buf,
			unsigned char *want)
{
	ssize_t n = recv(c->fd, buf, CHUNK_MAX, 0);

	if (n < 0) {
		if (errno != EAGAIN && errno != EINTR)
			client_fail(c, "recv: %s", strerror(errno));
		return;
	}
	if (n == 0) {
		if (c->reset || c->sent < c->total || c->recvd < c->total) {
			client_fail(c, "server closed early");
			return;
		}
		close(c->fd);
		c->fd = -1;
		c->state = FINISHED;
		st->verified++;
		return;
	}
	if (c->recvd + (size_t)n > c->sent) {
		client_fail(c, "received more than was sent");
		return;
	}
	payload(c->id, c->recvd, want, (size_t)n);
	if (memcmp(buf, want, (size_t)n) != 0) {
		for (ssize_t i = 0; i < n; i++) {
			if (buf[i] != want[i]) {
				client_fail(c, "echo differs at byte %zu", c->recvd + (size_t)i);
				return;
			}
		}
	}
	c->recvd += (size_t)n;
	st->bytes += (uint64_t)n;
	if (c->reset && c->state == DRAINING && c->recvd >= c->sent / 2)
		client_reset(c, st);
}

static void client_connect(struct client *c, int ep)
{
	struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT, .data.ptr = c };

	c->fd = socket(opt.addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (c->fd < 0) {
		client_fail(c, "socket: %s", strerror(errno));
		return;
	}
	if (connect(c->fd, (struct sockaddr *)&opt.addr, opt.addrlen) < 0 && errno != EINPROGRESS) {
		client_fail(c, "connect: %s", strerror(errno));
		return;
	}
	c->state = CONNECTING;
	if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) < 0)
		client_fail(c, "epoll_ctl: %s", strerror(errno));
}

static void client_event(struct client *c, uint32_t events, int ep, struct tcp_stats *st,
			 unsigned char *buf, unsigned char *want)
{
	if (c->state == CONNECTING) {
		int err = 0;
		socklen_t len = sizeof(err);

		if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
			return;
		getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
		if (err) {
			client_fail(c, "connect: %s", strerror(err));
			return;
		}
		c->state = SENDING;
	}
	if (c->state == SENDING && (events & (EPOLLOUT | EPOLLERR)))
		client_send(c, st, buf);
	if (c->state == DRAINING && c->fd >= 0) {
		/* Nothing more to send: wait for input only. */
		struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };

		epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
	}
	if ((c->state == SENDING || c->state == DRAINING) &&
	    (events & (EPOLLIN | EPOLLERR | EPOLLHUP)))
		client_recv(c, st, buf, want);
}

static bool run_tcp(struct tcp_stats *st)
{
	struct client *cl = calloc(opt.clients, sizeof(*cl));
	unsigned char *buf = malloc(CHUNK_MAX), *want = malloc(CHUNK_MAX);
	struct epoll_event evs[256];
	double deadline = now() + opt.timeout;
	unsigned live = 0, assigned = 0;
	int ep = epoll_create1(EPOLL_CLOEXEC);

	if (!cl || !buf || !want || ep < 0) {
		failure("tcp: setting up: %s", strerror(errno ? errno : ENOMEM));
		return false;
	}
	for (unsigned i = 0; i < opt.clients; i++) {
		struct client *c = &cl[i];

		c->id = i;
		c->rng = opt.seed * 31 + i;
		c->total = opt.bytes;
		/* Spread the resets over the clients, alternating the two kinds. */
		if (opt.resets && (uint64_t)i * opt.resets / opt.clients !=
					  (uint64_t)(i + 1) * opt.resets / opt.clients) {
			c->reset = true;
			c->reset_early = assigned++ % 2 == 0;
			c->total =
				opt.bytes / 4 + (size_t)(next_rand(&c->rng) % (opt.bytes / 2 + 1));
			if (c->total == 0)
				c->total = 1;
		}
		client_connect(c, ep);
		if (c->state != FAILED)
			live++;
	}
	while (live > 0) {
		double left = deadline - now();
		int n;

		if (left <= 0)
			break;
		n = epoll_wait(ep, evs, 256, left > 1 ? 1000 : (int)(left * 1000) + 1);
		if (n < 0 && errno != EINTR) {
			failure("epoll_wait: %s", strerror(errno));
			break;
		}
		for (int i = 0; i < n; i++) {
			struct client *c = evs[i].data.ptr;

			client_event(c, evs[i].events, ep, st, buf, want);
			if (c->state == FINISHED || c->state == FAILED)
				live--;
		}
	}
	for (unsigned i = 0; i < opt.clients; i++) {
		struct client *c = &cl[i];

		if (c->state != FINISHED && c->state != FAILED)
			client_fail(c, "timed out");
	}
	close(ep);
	free(cl);
	free(buf);
	free(want);
	return st->verified + st->reset == opt.clients;
}

/* ---- UDP ------------------------------------------------------------------- */

struct udp_stats {
	unsigned verified;
	uint64_t bytes;
};

static void *run_udp(void *arg)
{
	struct udp_stats *st = arg;
	size_t max = opt.addr.ss_family == AF_INET6 ? 65527 : 65507;
	unsigned char *out = malloc(max), *in = malloc(65536);
	uint64_t rng = opt.seed ^ 0x75647000u;
	int fd, big = 1 << 20;

	fd = socket(opt.addr.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	/* Connected: only the server's replies arrive, and ICMP errors show. */
	if (!out || !in || fd < 0 || connect(fd, (struct sockaddr *)&opt.addr, opt.addrlen) < 0) {
		failure("udp: setting up: %s", strerror(errno));
		goto out;
	}
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
	setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
	for (unsigned i = 0; i < opt.udp; i++) {
		/* Mostly small datagrams, some up to the largest one IP carries. */
		size_t len = next_rand(&rng) % 4 == 0 ? max - next_rand(&rng) % 1024 :
							8 + next_rand(&rng) % 2048;
		bool ok = false;

		if (i % 7 == 3)
			len = max; /* the exact maximum, regularly */
		payload(UINT32_MAX + (uint64_t)i, 0, out, len);
		memcpy(out, &i, sizeof(i)); /* replies to retries are told apart */
		for (int t = 0; t < UDP_TRIES && !ok; t++) {
			struct pollfd pfd = { .fd = fd, .events = POLLIN };
			double until = now() + UDP_WAIT_MS / 1e3 * (t + 1);

			if (send(fd, out, len, 0) != (ssize_t)len) {
				failure("udp datagram %u (%zu bytes): send: %s", i, len,
					strerror(errno));
				goto out;
			}
			while (!ok && now() < until) {
				ssize_t n;
				unsigned seq;

				if (poll(&pfd, 1, (int)((until - now()) * 1000) + 1) <= 0)
					continue;
				n = recv(fd, in, 65536, 0);
				if (n < 0) {
					failure("udp datagram %u: recv: %s", i, strerror(errno));
					goto out;
				}
				memcpy(&seq, in, sizeof(seq));
				if (n >= (ssize_t)sizeof(seq) && seq < i)
					continue; /* a late reply to an earlier retry */
				if ((size_t)n != len || memcmp(in, out, len) != 0) {
					failure("udp datagram %u: reply of %zd bytes differs from the "
						"%zu sent",
						i, n, len);
					goto out;
				}
				ok = true;
			}
		}
		if (!ok) {
			failure("udp datagram %u (%zu bytes): no reply after %d tries", i, len,
				UDP_TRIES);
			goto out;
		}
		st->verified++;
		st->bytes += len;
	}
out:
	if (fd >= 0)
		close(fd);
	free(out);
	free(in);
	return NULL;
}

/* ---- hold mode ------------------------------------------------------------- */

/*
 * Wait until @fd has echoed @len bytes equal to @want.  Returns 1 if so, 0
 * if the server closed or reset it, -1 on a timeout or a wrong echo.
 */
static int await_echo(int fd, const unsigned char *want, size_t len, double until)
{
	unsigned char buf[4096];
	size_t got = 0;

	while (got < len) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		ssize_t n;
		double left = until - now();

		if (left <= 0)
			return -1;
		if (poll(&pfd, 1, (int)(left * 1000) + 1) <= 0)
			continue;
		n = recv(fd, buf, len - got < sizeof(buf) ? len - got : sizeof(buf), MSG_DONTWAIT);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (n <= 0)
			return 0;
		if (memcmp(buf, want + got, (size_t)n) != 0)
			return -1;
		got += (size_t)n;
	}
	return 1;
}

static bool run_hold(void)
{
	int *fds = malloc(opt.hold * sizeof(*fds));
	char *served = calloc(opt.hold, 1);
	unsigned char probe[HOLD_PROBE], again[1000];
	unsigned nserved = 0, nrefused = 0, hung = 0, lost = 0;
	double until, hold_until;

	if (!fds || !served) {
		failure("hold: out of memory");
		return false;
	}
	payload(1u << 31, 0, probe, sizeof(probe));
	payload((1u << 31) + 1, 0, again, sizeof(again));
	/* Connect all first: the server meets the limit while they queue. */
	for (unsigned i = 0; i < opt.hold; i++) {
		fds[i] = socket(opt.addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fds[i] < 0 || connect(fds[i], (struct sockaddr *)&opt.addr, opt.addrlen) < 0) {
			/* A full backlog or a refusal at connect: the server said no. */
			if (fds[i] >= 0)
				close(fds[i]);
			fds[i] = -1;
			nrefused++;
		}
	}
	until = now() + opt.timeout;
	for (unsigned i = 0; i < opt.hold; i++) {
		int r;

		if (fds[i] < 0)
			continue;
		if (send(fds[i], probe, sizeof(probe), MSG_NOSIGNAL) != sizeof(probe)) {
			r = 0; /* already closed by the server */
		} else {
			r = await_echo(fds[i], probe, sizeof(probe), until);
		}
		if (r > 0) {
			served[i] = 1;
			nserved++;
		} else if (r == 0) {
			close(fds[i]);
			fds[i] = -1;
			nrefused++;
		} else {
			failure("hold: connection %u neither echoed nor closed", i);
			hung++;
		}
	}
	printf("holding: %u served, %u refused, %u hung\n", nserved, nrefused, hung);
	fflush(stdout);
	hold_until = now() + opt.hold_time;
	while (now() < hold_until)
		usleep(10000);
	/* The server must still be serving the connections it kept. */
	until = now() + opt.timeout;
	for (unsigned i = 0; i < opt.hold; i++) {
		if (!served[i])
			continue;
		if (send(fds[i], again, sizeof(again), MSG_NOSIGNAL) != sizeof(again) ||
		    await_echo(fds[i], again, sizeof(again), until) != 1) {
			failure("hold: served connection %u stopped echoing", i);
			lost++;
		}
	}
	for (unsigned i = 0; i < opt.hold; i++) {
		if (fds[i] >= 0)
			close(fds[i]);
	}
	free(fds);
	free(served);
	printf("echo-client: hold %u: %u served and still echoing after %.1f s, %u refused, %u "
	       "hung, %u lost\n",
	       opt.hold, nserved - lost, opt.hold_time, nrefused, hung, lost);
	if (nserved == 0)
		failure("hold: no connection was served");
	if (opt.expect_refused && nrefused == 0)
		failure("hold: no connection was refused");
	return hung == 0 && lost == 0 && nserved > 0 && (!opt.expect_refused || nrefused > 0);
}

/* ---- main ------------------------------------------------------------------ */

static void usage(FILE *to)
{
	fprintf(to,
		"usage: echo-client --port P [--host ADDR] [--clients N] [--bytes B] [--reset K]\n"
		"                   [--udp M] [--timeout S] [--seed S]\n"
		"       echo-client --port P [--host ADDR] --hold N [--hold-time S]\n"
		"                   [--expect-refused] [--timeout S]\n");
}

static int bad_usage(const char *what, const char *arg)
{
	fprintf(stderr, "echo-client: bad %s '%s'\n", what, arg);
	return 2;
}

static bool parse_ul(const char *s, unsigned long long max, unsigned long long *out)
{
	char *end;

	if (*s < '0' || *s > '9')
		return false;
	errno = 0;
	*out = strtoull(s, &end, 10);
	return *end == '\0' && errno == 0 && *out <= max;
}

static bool parse_count(const char *s, unsigned *out)
{
	unsigned long long v;

	if (!parse_ul(s, 1000000, &v))
		return false;
	*out = (unsigned)v;
	return true;
}

static bool parse_seconds(const char *s, double *out)
{
	char *end;

	*out = strtod(s, &end);
	return end != s && *end == '\0' && *out >= 0 && *out < 1e6;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "port", required_argument, NULL, 'p' },
		{ "host", required_argument, NULL, 'H' },
		{ "clients", required_argument, NULL, 'n' },
		{ "bytes", required_argument, NULL, 'b' },
		{ "reset", required_argument, NULL, 'r' },
		{ "udp", required_argument, NULL, 'u' },
		{ "timeout", required_argument, NULL, 'T' },
		{ "seed", required_argument, NULL, 's' },
		{ "hold", required_argument, NULL, 'o' },
		{ "hold-time", required_argument, NULL, 'O' },
		{ "expect-refused", no_argument, NULL, 'e' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *host = "127.0.0.1", *port = NULL;
	struct tcp_stats tcp = { 0 };
	struct udp_stats udp = { 0 };
	unsigned long long v;
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res;
	struct rlimit rl;
	pthread_t udp_thread;
	double t0;
	bool ok;
	int c;

	opt.seed = (uint64_t)time(NULL) * 1000003u ^ (uint64_t)getpid();
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case 'p':
			if (!parse_ul(optarg, 65535, &v) || v == 0)
				return bad_usage("port", optarg);
			port = optarg;
			break;
		case 'H':
			host = optarg;
			break;
		case 'n':
			if (!parse_count(optarg, &opt.clients))
				return bad_usage("client count", optarg);
			break;
		case 'r':
			if (!parse_count(optarg, &opt.resets))
				return bad_usage("reset count", optarg);
			break;
		case 'u':
			if (!parse_count(optarg, &opt.udp))
				return bad_usage("datagram count", optarg);
			break;
		case 'o':
			if (!parse_count(optarg, &opt.hold))
				return bad_usage("connection count", optarg);
			break;
		case 'b':
			if (!parse_ul(optarg, (unsigned long long)1 << 40, &v) || v == 0)
				return bad_usage("byte count", optarg);
			opt.bytes = (size_t)v;
			break;
		case 'T':
			if (!parse_seconds(optarg, &opt.timeout))
				return bad_usage("timeout", optarg);
			break;
		case 'O':
			if (!parse_seconds(optarg, &opt.hold_time))
				return bad_usage("hold time", optarg);
			break;
		case 's':
			if (!parse_ul(optarg, UINT64_MAX, &v))
				return bad_usage("seed", optarg);
			opt.seed = v;
			break;
		case 'e':
			opt.expect_refused = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (!port || optind < argc || opt.resets > opt.clients ||
	    (!opt.clients && !opt.udp && !opt.hold)) {
		usage(stderr);
		return 2;
	}
	if (getaddrinfo(host, port, &hints, &res) != 0)
		return bad_usage("host", host);
	memcpy(&opt.addr, res->ai_addr, res->ai_addrlen);
	opt.addrlen = res->ai_addrlen;
	freeaddrinfo(res);
	/* Hundreds of clients need hundreds of descriptors. */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}

	t0 = now();
	if (opt.hold) {
		ok = run_hold();
		return ok && failures == 0 ? 0 : 1;
	}
	if (opt.udp && pthread_create(&udp_thread, NULL, run_udp, &udp) != 0) {
		failure("cannot start the UDP thread");
		opt.udp = 0;
	}
	ok = opt.clients ? run_tcp(&tcp) : true;
	if (opt.udp)
		pthread_join(udp_thread, NULL);
	ok = ok && udp.verified == opt.udp && failures == 0;
	printf("echo-client: %s: tcp %u/%u verified (%u of %u reset mid-stream), %" PRIu64
	       " bytes echoed; udp %u/%u verified, %" PRIu64 " bytes; %.2f s; seed %" PRIu64 "\n",
	       ok ? "ok" : "FAILED", tcp.verified, opt.clients - opt.resets, tcp.reset, opt.resets,
	       tcp.bytes, udp.verified, opt.udp, udp.bytes, now() - t0, opt.seed);
	return ok ? 0 : 1;
}
