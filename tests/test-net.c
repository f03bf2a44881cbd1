/* SPDX-License-Identifier: MIT */
/*
 * Socket tests, all on loopback (127.0.0.1 and ::1, port 0 + getsockname):
 * iou_socket/bind/listen/connect/accept, with the peer address accept
 * reports checked against the client's own; a send/recv round trip between
 * fibers and a half-close (recv sees 0 after the peer's SHUT_WR, the other
 * direction keeps working); an 8 MiB full-duplex transfer checked byte for
 * byte; UDP sendto/recvfrom and sendmsg/recvmsg with the peer address and
 * its length, two-buffer iovecs, MSG_TRUNC and control messages;
 * iou_accept_each serving 200 echo clients, stopped by fiber_cancel(), by a
 * deadline and by shutdown, run outside a fiber, on a non-blocking
 * listener and at the descriptor limit, failing promptly on sockets that
 * cannot accept, leaking no descriptor, and all that again with multishot
 * off (IOU_MULTISHOT=0, in a thread with its own reactor); and the errors:
 * -ECONNREFUSED, -EBADF, -EFAULT, -EAGAIN, -EPIPE without SIGPIPE,
 * -ETIMEDOUT and -ECANCELED on recv with the connection still usable
 * afterwards, and the socket option calls.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <ioucontext/ioucontext.h>

#include "harness.h"

/* Connections iou_accept_each serves in the echo test. */
#define ECHO_CLIENTS 200
/* Largest echo payload a client sends. */
#define ECHO_MAX 16384

/* How long a test may wait for something that should happen at once. */
#define GUARD (10 * IOU_SEC * test_slowdown())

/* ---- helpers ------------------------------------------------------------ */

static uint64_t xorshift(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static void fill_random(unsigned char *p, size_t n, uint64_t seed)
{
	uint64_t s = seed * 0x9e3779b97f4a7c15u + 0x2545f4914f6cdd1du, v = 0;

	for (size_t i = 0; i < n; i++) {
		if (i % 8 == 0)
			v = xorshift(&s);
		p[i] = (unsigned char)(v >> (8 * (i % 8)));
	}
}

/* The loopback address of @family with port 0; returns its length. */
static socklen_t loopback(int family, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	if (family == AF_INET6) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;

		s6->sin6_family = AF_INET6;
		s6->sin6_addr = in6addr_loopback;
		return sizeof(*s6);
	}
	struct sockaddr_in *s4 = (struct sockaddr_in *)ss;

	s4->sin_family = AF_INET;
	s4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	return sizeof(*s4);
}

/* Whether ::1 can be bound here (checked with plain system calls). */
static bool have_ipv6(void)
{
	struct sockaddr_storage ss;
	socklen_t len = loopback(AF_INET6, &ss);
	int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bool ok;

	if (fd < 0)
		return false;
	ok = bind(fd, (struct sockaddr *)&ss, len) == 0;
	close(fd);
	return ok;
}

#define SKIP_WITHOUT_IPV6()                                                            \
	do {                                                                           \
		if (!have_ipv6()) {                                                    \
			printf("# ::1 is unavailable here: skipping the IPv6 case\n"); \
			return TEST_SKIP;                                              \
		}                                                                      \
	} while (0)

/* Same family, port and address. */
static bool same_addr(const struct sockaddr_storage *a, socklen_t alen,
		      const struct sockaddr_storage *b, socklen_t blen)
{
	if (alen != blen || a->ss_family != b->ss_family)
		return false;
	if (a->ss_family == AF_INET6) {
		const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;

		return x->sin6_port == y->sin6_port &&
		       !memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr));
	}
	const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;

	return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
}

static int port_of(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET6)
		return ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
	return ntohs(((const struct sockaddr_in *)ss)->sin_port);
}

/*
 * A socket of @type bound to loopback port 0 (listening if @backlog > 0),
 * its address in *@addr.  Returns the descriptor or -errno.
 */
static int bound_socket(struct reactor *r, int family, int type, int backlog,
			struct sockaddr_storage *addr, socklen_t *alen)
{
	int fd = iou_socket(r, family, type | SOCK_CLOEXEC, 0);
	int ret;

	if (fd < 0)
		return fd;
	*alen = loopback(family, addr);
	ret = iou_bind(r, fd, (struct sockaddr *)addr, *alen);
	if (!ret && backlog > 0)
		ret = iou_listen(r, fd, backlog);
	if (!ret) {
		*alen = sizeof(*addr);
		ret = getsockname(fd, (struct sockaddr *)addr, alen) ? -errno : 0;
	}
	if (ret) {
		close(fd);
		return ret;
	}
	return fd;
}

/*
 * A connected TCP pair: *@client and *@server, the accepted end.  Loopback
 * completes the handshake into the backlog, so connect-then-accept works
 * from one context.  Returns 0 or -errno.
 */
static int tcp_pair(struct reactor *r, int family, int *client, int *server)
{
	struct sockaddr_storage addr;
	socklen_t alen;
	int lfd, c, s, ret;

	lfd = bound_socket(r, family, SOCK_STREAM, 4, &addr, &alen);
	if (lfd < 0)
		return lfd;
	c = iou_socket(r, family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c < 0) {
		close(lfd);
		return c;
	}
	ret = iou_connect(r, c, (struct sockaddr *)&addr, alen);
	s = ret ? ret : iou_accept(r, lfd, NULL, NULL, SOCK_CLOEXEC);
	close(lfd);
	if (s < 0) {
		close(c);
		return s;
	}
	*client = c;
	*server = s;
	return 0;
}

/* Receive exactly @len bytes (fewer only at end of stream); bytes or -errno. */
static ssize_t recv_exact(struct reactor *r, int fd, void *buf, size_t len)
{
	size_t got = 0;

	while (got < len) {
		ssize_t n = iou_recv(r, fd, (char *)buf + got, len - got, 0);

		if (n < 0)
			return n;
		if (n == 0)
			break;
		got += (size_t)n;
	}
	return (ssize_t)got;
}

/* Send all @len bytes; @len or -errno. */
static ssize_t send_all(struct reactor *r, int fd, const void *buf, size_t len)
{
	size_t sent = 0;

	while (sent < len) {
		ssize_t n = iou_send(r, fd, (const char *)buf + sent, len - sent, 0);

		if (n <= 0)
			return n < 0 ? n : -EIO;
		sent += (size_t)n;
	}
	return (ssize_t)len;
}

/* ---- socket creation ---------------------------------------------------- */

static int test_socket_types_and_flags(void)
{
	struct reactor *r = reactor_get();
	int fd, v;
	socklen_t len = sizeof(v);

	fd = iou_socket(r, AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ASSERT_GE(fd, 0);
	ASSERT_TRUE(fcntl(fd, F_GETFD) & FD_CLOEXEC);
	ASSERT_EQ(fcntl(fd, F_GETFL) & O_NONBLOCK, 0);
	ASSERT_EQ(iou_getsockopt(r, fd, SOL_SOCKET, SO_TYPE, &v, &len), 0);
	ASSERT_EQ(v, SOCK_STREAM);
	ASSERT_EQ(close(fd), 0);

	fd = iou_socket(r, AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	ASSERT_GE(fd, 0);
	ASSERT_TRUE(fcntl(fd, F_GETFD) & FD_CLOEXEC);
	ASSERT_TRUE(fcntl(fd, F_GETFL) & O_NONBLOCK);
	len = sizeof(v);
	ASSERT_EQ(iou_getsockopt(r, fd, SOL_SOCKET, SO_TYPE, &v, &len), 0);
	ASSERT_EQ(v, SOCK_DGRAM);
	ASSERT_EQ(close(fd), 0);

	/* Without SOCK_CLOEXEC the descriptor is inherited across exec. */
	fd = iou_socket(r, AF_INET, SOCK_DGRAM, 0);
	ASSERT_GE(fd, 0);
	ASSERT_EQ(fcntl(fd, F_GETFD) & FD_CLOEXEC, 0);
	ASSERT_EQ(close(fd), 0);

	ASSERT_EQ(iou_socket(r, AF_MAX + 10, SOCK_STREAM, 0), -EAFNOSUPPORT);
	ASSERT_EQ(iou_socket(r, AF_INET, SOCK_STREAM, IPPROTO_UDP), -EPROTONOSUPPORT);
	ASSERT_EQ(iou_socket(NULL, AF_INET, SOCK_STREAM, 0), -EINVAL);
	return 0;
}

static int test_bind_listen_accept_errors(void)
{
	struct reactor *r = reactor_get();
	struct sockaddr_storage a, b;
	socklen_t alen, blen;
	int lfd, fd, udp;

	lfd = bound_socket(r, AF_INET, SOCK_STREAM, 8, &a, &alen);
	ASSERT_GE(lfd, 0);
	ASSERT_EQ(alen, sizeof(struct sockaddr_in));
	ASSERT_NE(port_of(&a), 0);

	/* The port is taken: a second bind to it fails. */
	fd = iou_socket(r, AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ASSERT_GE(fd, 0);
	ASSERT_EQ(iou_bind(r, fd, (struct sockaddr *)&a, alen), -EADDRINUSE);
	/* Bound once, it cannot be bound again. */
	blen = loopback(AF_INET, &b);
	ASSERT_EQ(iou_bind(r, fd, (struct sockaddr *)&b, blen), 0);
	ASSERT_EQ(iou_bind(r, fd, (struct sockaddr *)&b, blen), -EINVAL);
	/* Accepting on a socket that does not listen. */
	ASSERT_EQ(iou_accept(r, fd, NULL, NULL, 0), -EINVAL);
	/* Not connected: nothing to shut down. */
	ASSERT_EQ(iou_shutdown(r, fd, SHUT_RDWR), -ENOTCONN);
	ASSERT_EQ(close(fd), 0);

	/* Datagram sockets do not listen. */
	udp = iou_socket(r, AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	ASSERT_GE(udp, 0);
	ASSERT_EQ(iou_listen(r, udp, 4), -EOPNOTSUPP);
	ASSERT_EQ(close(udp), 0);

	/* A deadline bounds accept: nobody connects. */
	fiber_set_deadline(r, iou_deadline_after(20 * IOU_MSEC));
	ASSERT_EQ(iou_accept(r, lfd, NULL, NULL, 0), -ETIMEDOUT);
	fiber_set_deadline(r, IOU_DEADLINE_NOW);
	ASSERT_EQ(iou_accept(r, lfd, NULL, NULL, 0), -ETIMEDOUT);
	fiber_set_deadline(r, IOU_DEADLINE_NEVER);

	/* SOCK_NONBLOCK reaches the accepted descriptor. */
	fd = iou_socket(r, AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ASSERT_GE(fd, 0);
	ASSERT_EQ(iou_connect(r, fd, (struct sockaddr *)&a, alen), 0);
	int s = iou_accept(r, lfd, NULL, NULL, SOCK_NONBLOCK);

	ASSERT_GE(s, 0);
	ASSERT_TRUE(fcntl(s, F_GETFL) & O_NONBLOCK);
	ASSERT_EQ(fcntl(s, F_GETFD) & FD_CLOEXEC, 0);
	ASSERT_EQ(close(s), 0);
	ASSERT_EQ(close(fd), 0);
	ASSERT_EQ(close(lfd), 0);
	return 0;
}

/*
 * io.h: on an O_NONBLOCK socket with nothing ready, older kernels say
 * -EAGAIN and 6.x kernels wait as for a blocking one; with a deadline of
 * "now" the caller never waits either way, and nothing is lost.
 */
static int test_nonblocking_sockets_do_not_wait_with_deadline_now(void)
{
	struct reactor *r = reactor_get();
	struct sockaddr_storage a;
	socklen_t alen;
	int lfd, c, s, ret;
	ssize_t n;
	char ch;

	lfd = bound_socket(r, AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 8, &a, &alen);
	ASSERT_GE(lfd, 0);
	fiber_set_deadline(r, IOU_DEADLINE_NOW);
	ret = iou_accept(r, lfd, NULL, NULL, 0);
	fiber_set_deadline(r, IOU_DEADLINE_NEVER);
	ASSERT_TRUE(ret == -EAGAIN || ret == -ETIMEDOUT);
	c = iou_socket(r, AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ASSERT_GE(c, 0);
	ASSERT_EQ(iou_connect(r, c, (struct sockaddr *)&a, alen), 0);
	s = iou_accept(r, lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	ASSERT_GE(s, 0);
	fiber_set_deadline(r, IOU_DEADLINE_NOW);
	n = iou_recv(r, s, &ch, 1, 0);
	fiber_set_deadline(r, IOU_DEADLINE_NEVER);
	ASSERT_TRUE(n == -EAGAIN || n == -ETIMEDOUT);
	/* With something there, it is simply received. */
	ASSERT_EQ(send_all(r, c, "x", 1), 1);
	ASSERT_EQ(iou_recv(r, s, &ch, 1, 0), 1);
	ASSERT_EQ(ch, 'x');
	ASSERT_EQ(close(s), 0);
	ASSERT_EQ(close(c), 0);
	ASSERT_EQ(close(lfd), 0);
	return 0;
}

/* ---- TCP round trip and half-close ------------------------------------- */

struct round_trip {
	int family;
	int lfd;
	struct sockaddr_storage laddr; /* the listener's address */
	socklen_t llen;
	struct sockaddr_storage peer; /* what iou_accept reported */
	socklen_t peerlen;
	struct sockaddr_storage local; /* the client's getsockname */
	socklen_t locallen;
	bool server_done, client_done;
};

static const char client_hello[] = "hello from the client fiber";
static const char server_hello[] = "and hello back from the server";
static const char after_eof[] = "still talking after your SHUT_WR";

static void *rt_server(void *arg)
{
	struct round_trip *x = arg;
	struct reactor *r = reactor_get();
	char buf[128];
	int fd;

	x->peerlen = sizeof(x->peer);
	memset(&x->peer, 0xa5, sizeof(x->peer));
	fd = iou_accept(r, x->lfd, (struct sockaddr *)&x->peer, &x->peerlen, SOCK_CLOEXEC);
	FIBER_CHECK(fd >= 0);
	if (fd < 0)
		return NULL;
	FIBER_CHECK(fcntl(fd, F_GETFD) & FD_CLOEXEC);

	FIBER_CHECK(recv_exact(r, fd, buf, sizeof(client_hello)) == sizeof(client_hello));
	FIBER_CHECK(!memcmp(buf, client_hello, sizeof(client_hello)));
	FIBER_CHECK(send_all(r, fd, server_hello, sizeof(server_hello)) == sizeof(server_hello));

	/* The client shut down its sending side: end of stream, and it stays so. */
	FIBER_CHECK(iou_recv(r, fd, buf, sizeof(buf), 0) == 0);
	FIBER_CHECK(iou_recv(r, fd, buf, sizeof(buf), 0) == 0);
	/* This direction still works. */
	FIBER_CHECK(send_all(r, fd, after_eof, sizeof(after_eof)) == sizeof(after_eof));
	FIBER_CHECK(close(fd) == 0);
	x->server_done = true;
	return NULL;
}

static void *rt_client(void *arg)
{
	struct round_trip *x = arg;
	struct reactor *r = reactor_get();
	char buf[128];
	int fd;

	fd = iou_socket(r, x->family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	FIBER_CHECK(fd >= 0);
	if (fd < 0)
		return NULL;
	FIBER_CHECK(iou_connect(r, fd, (struct sockaddr *)&x->laddr, x->llen) == 0);
	x->locallen = sizeof(x->local);
	FIBER_CHECK(getsockname(fd, (struct sockaddr *)&x->local, &x->locallen) == 0);

	FIBER_CHECK(send_all(r, fd, client_hello, sizeof(client_hello)) == sizeof(client_hello));
	FIBER_CHECK(recv_exact(r, fd, buf, sizeof(server_hello)) == sizeof(server_hello));
	FIBER_CHECK(!memcmp(buf, server_hello, sizeof(server_hello)));

	FIBER_CHECK(iou_shutdown(r, fd, SHUT_WR) == 0);
	/* Sending after SHUT_WR: -EPIPE, and no SIGPIPE (MSG_NOSIGNAL). */
	FIBER_CHECK(iou_send(r, fd, "x", 1, 0) == -EPIPE);
	FIBER_CHECK(recv_exact(r, fd, buf, sizeof(after_eof)) == sizeof(after_eof));
	FIBER_CHECK(!memcmp(buf, after_eof, sizeof(after_eof)));
	/* The server closed: end of stream. */
	FIBER_CHECK(iou_recv(r, fd, buf, sizeof(buf), 0) == 0);
	FIBER_CHECK(close(fd) == 0);
	x->client_done = true;
	return NULL;
}

static int round_trip(int family)
{
	struct reactor *r = reactor_get();
	struct round_trip x = { .family = family };

	signal(SIGPIPE, SIG_DFL);
	x.lfd = bound_socket(r, family, SOCK_STREAM, 4, &x.laddr, &x.llen);
	ASSERT_GE(x.lfd, 0);
	ASSERT_EQ(fiber_spawn(r, rt_server, &x, NULL), 0);
	ASSERT_EQ(fiber_spawn(r, rt_client, &x, NULL), 0);
	ASSERT_EQ(reactor_run(r), 0);
	ASSERT_NO_FIBER_FAILURES();
	ASSERT_TRUE(x.server_done);
	ASSERT_TRUE(x.client_done);
	/* accept reported exactly the client's own address. */
	ASSERT_EQ(x.peerlen,
		  family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in));
	ASSERT_EQ(x.peer.ss_family, family);
	ASSERT_TRUE(same_addr(&x.peer, x.peerlen, &x.local, x.locallen));
	ASSERT_EQ(close(x.lfd), 0);
	return 0;
}

static int test_tcp_round_trip_and_half_close_ipv4(void)
{
	return round_trip(AF_INET);
}

static int test_tcp_round_trip_and_half_close_ipv6(void)
{
	SKIP_WITHOUT_IPV6();
	return round_trip(AF_INET6);
}

/* ---- large transfer ----------------------------------------------------- */

struct stream {
	int fd;
	const unsigned char *src; /* what the sender sends */
	unsigned char *dst;	  /* where the receiver puts it */
	size_t len;
	size_t moved;
	bool eof; /* the receiver saw end of stream after len bytes */
};

static void *stream_send(void *arg)
{
	struct stream *st = arg;
	struct reactor *r = reactor_get();
	size_t chunk = 1000;

	while (st->moved < st->len) {
		size_t n = st->len - st->moved < chunk ? st->len - st->moved : chunk;
		ssize_t ret = iou_send(r, st->fd, st->src + st->moved, n, 0);

		FIBER_CHECK(ret > 0);
		if (ret <= 0)
			return NULL;
		st->moved += (size_t)ret;
		/* Vary the request sizes, up to 1 MiB. */
		chunk = (chunk * 7 + 4093) % (1u << 20) + 1;
	}
	FIBER_CHECK(iou_shutdown(r, st->fd, SHUT_WR) == 0);
	return NULL;
}

static void *stream_recv(void *arg)
{
	struct stream *st = arg;
	struct reactor *r = reactor_get();
	size_t chunk = 65537;

	while (st->moved < st->len) {
		size_t n = st->len - st->moved < chunk ? st->len - st->moved : chunk;
		ssize_t ret = iou_recv(r, st->fd, st->dst + st->moved, n, 0);

		FIBER_CHECK(ret > 0);
		if (ret <= 0)
			return NULL;
		st->moved += (size_t)ret;
		chunk = chunk % 300000 + 77777;
	}
	unsigned char extra;

	st->eof = iou_recv(r, st->fd, &extra, 1, 0) == 0;
	return NULL;
}

static int test_large_transfer_full_duplex(void)
{
	struct reactor *r = reactor_get();
	size_t len = (size_t)8 << 20;
	unsigned char *up_src = malloc(len), *up_dst = malloc(len);
	unsigned char *down_src = malloc(len), *down_dst = malloc(len);
	struct stream up_tx, up_rx, down_tx, down_rx;
	int c, s;

	ASSERT_TRUE(up_src && up_dst && down_src && down_dst);
	fill_random(up_src, len, 1);
	fill_random(down_src, len, 2);
	memset(up_dst, 0, len);
	memset(down_dst, 0, len);
	ASSERT_EQ(tcp_pair(r, AF_INET, &c, &s), 0);

	/* Both directions at once: neither side may wait for the other. */
	up_tx = (struct stream){ .fd = c, .src = up_src, .len = len };
	up_rx = (struct stream){ .fd = s, .dst = up_dst, .len = len };
	down_tx = (struct stream){ .fd = s, .src = down_src, .len = len };
	down_rx = (struct stream){ .fd = c, .dst = down_dst, .len = len };
	ASSERT_EQ(fiber_spawn(r, stream_send, &up_tx, NULL), 0);
	ASSERT_EQ(fiber_spawn(r, stream_recv, &up_rx, NULL), 0);
	ASSERT_EQ(fiber_spawn(r, stream_send, &down_tx, NULL), 0);
	ASSERT_EQ(fiber_spawn(r, stream_recv, &down_rx, NULL), 0);
	ASSERT_EQ(reactor_run(r), 0);
	ASSERT_NO_FIBER_FAILURES();

	ASSERT_EQ(up_tx.moved, len);
	ASSERT_EQ(up_rx.moved, len);
	ASSERT_EQ(down_tx.moved, len);
	ASSERT_EQ(down_rx.moved, len);
	ASSERT_TRUE(up_rx.eof);
	ASSERT_TRUE(down_rx.eof);
	ASSERT_TRUE(!memcmp(up_src, up_dst, len));
	ASSERT_TRUE(!memcmp(down_src, down_dst, len));
	ASSERT_EQ(close(c), 0);
	ASSERT_EQ(close(s), 0);
	free(up_src);
	free(up_dst);
	free(down_src);
	free(down_dst);
	return 0;
}

/* ---- UDP ---------------------------------------------------------------- */

static int udp_sendto_recvfrom(int family)
{
	struct reactor *r = reactor_get();
	struct sockaddr_storage aa, ba, from;
	socklen_t alen, blen, flen;
	socklen_t want =
		family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
	char buf[64];
	int a, b;

	a = bound_socket(r, family, SOCK_DGRAM, 0, &aa, &alen);
	ASSERT_GE(a, 0);
	b = bound_socket(r, family, SOCK_DGRAM, 0, &ba, &blen);
	ASSERT_GE(b, 0);
	ASSERT_EQ(alen, want);

	ASSERT_EQ(iou_sendto(r, a, "ping", 4, 0, (struct sockaddr *)&ba, blen), 4);
	memset(&from, 0xa5, sizeof(from));
	flen = sizeof(from);
	ASSERT_EQ(iou_recvfrom(r, b, buf, sizeof(buf), 0, (struct sockaddr *)&from, &flen), 4);
	ASSERT_TRUE(!memcmp(buf, "ping", 4));
	ASSERT_EQ(flen, want);
	ASSERT_EQ(from.ss_family, family);
	ASSERT_TRUE(same_addr(&from, flen, &aa, alen));

	/* Reply to the address just learned; the receiver may ignore the sender. */
	ASSERT_EQ(iou_sendto(r, b, "pong", 4, 0, (struct sockaddr *)&from, flen), 4);
	ASSERT_EQ(iou_recvfrom(r, a, buf, sizeof(buf), 0, NULL, NULL), 4);
	ASSERT_TRUE(!memcmp(buf, "pong", 4));

	/* Too little room: the address is cut, its real length reported. */
	ASSERT_EQ(iou_sendto(r, a, "cut", 3, 0, (struct sockaddr *)&ba, blen), 3);
	memset(&from, 0xa5, sizeof(from));
	flen = 4;
	ASSERT_EQ(iou_recvfrom(r, b, buf, sizeof(buf), 0, (struct sockaddr *)&from, &flen), 3);
	ASSERT_EQ(flen, want);
	ASSERT_EQ(from.ss_family, family);
	ASSERT_EQ(((unsigned char *)&from)[4], 0xa5);

	/* A datagram longer than the buffer is cut to it. */
	ASSERT_EQ(iou_sendto(r, a, "0123456789", 10, 0, (struct sockaddr *)&ba, blen), 10);
	ASSERT_EQ(iou_recvfrom(r, b, buf, 4, 0, NULL, NULL), 4);
	ASSERT_TRUE(!memcmp(buf, "0123", 4));

	/* Connected: sendto without an address goes to the peer. */
	ASSERT_EQ(iou_connect(r, a, (struct sockaddr *)&ba, blen), 0);
	ASSERT_EQ(iou_sendto(r, a, "conn", 4, 0, NULL, 0), 4);
	flen = sizeof(from);
	ASSERT_EQ(iou_recvfrom(r, b, buf, sizeof(buf), 0, (struct sockaddr *)&from, &flen), 4);
	ASSERT_TRUE(!memcmp(buf, "conn", 4));
	ASSERT_TRUE(same_addr(&from, flen, &aa, alen));

	/* Nothing queued and "do not block": -ETIMEDOUT, nothing consumed later. */
	fiber_set_deadline(r, IOU_DEADLINE_NOW);
	ASSERT_EQ(iou_recvfrom(r, b, buf, sizeof(buf), 0, NULL, NULL), -ETIMEDOUT);
	fiber_set_deadline(r, IOU_DEADLINE_NEVER);

	ASSERT_EQ(close(a), 0);
	ASSERT_EQ(close(b), 0);
	return 0;
}

static int test_udp_sendto_recvfrom_ipv4(void)
{
	return udp_sendto_recvfrom(AF_INET);
}

static int test_udp_sendto_recvfrom_ipv6(void)
{
	SKIP_WITHOUT_IPV6();
	return udp_sendto_recvfrom(AF_INET6);
}

static int udp_sendmsg_recvmsg(int family)
{
	struct reactor *r = reactor_get();
	struct sockaddr_storage aa, ba, from;
	socklen_t alen, blen;
	socklen_t want =
		family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
	char p1[4], p2[32], big[100];
	union {
		struct cmsghdr hdr;
		char buf[256];
	} control;
	int a, b, one = 1;

	a = bound_socket(r, family, SOCK_DGRAM, 0, &aa, &alen);
	ASSERT_GE(a, 0);
	b = bound_socket(r, family, SOCK_DGRAM, 0, &ba, &blen);
	ASSERT_GE(b, 0);

	/* Two buffers out, two buffers in, split elsewhere. */
	struct iovec siov[2] = { { .iov_base = "hello ", .iov_len = 6 },
				 { .iov_base = "world", .iov_len = 5 } };
	struct msghdr sm = { .msg_name = &ba,
			     .msg_namelen = blen,
			     .msg_iov = siov,
			     .msg_iovlen = 2 };
	struct iovec riov[2] = { { .iov_base = p1, .iov_len = sizeof(p1) },
				 { .iov_base = p2, .iov_len = sizeof(p2) } };
	struct msghdr rm = { .msg_name = &from,
			     .msg_namelen = sizeof(from),
			     .msg_iov = riov,
			     .msg_iovlen = 2,
			     .msg_flags = MSG_TRUNC /* must be overwritten */ };

	ASSERT_EQ(iou_sendmsg(r, a, &sm, 0), 11);
	memset(&from, 0, sizeof(from));
	ASSERT_EQ(iou_recvmsg(r, b, &rm, 0), 11);
	ASSERT_TRUE(!memcmp(p1, "hell", 4));
	ASSERT_TRUE(!memcmp(p2, "o world", 7));
	ASSERT_EQ(rm.msg_namelen, want);
	ASSERT_TRUE(same_addr(&from, rm.msg_namelen, &aa, alen));
	ASSERT_EQ(rm.msg_flags & MSG_TRUNC, 0);

	/* A datagram larger than both buffers: cut, and MSG_TRUNC says so. */
	memset(big, 'z', sizeof(big));
	siov[0] = (struct iovec){ .iov_base = big, .iov_len = sizeof(big) };
	sm.msg_iovlen = 1;
	ASSERT_EQ(iou_sendmsg(r, a, &sm, 0), (ssize_t)sizeof(big));
	riov[1].iov_len = 6;
	rm.msg_namelen = sizeof(from);
	rm.msg_flags = 0;
	ASSERT_EQ(iou_recvmsg(r, b, &rm, 0), 10);
	ASSERT_TRUE(rm.msg_flags & MSG_TRUNC);
	ASSERT_EQ(rm.msg_namelen, want);
	riov[1].iov_len = sizeof(p2);

	/* Control messages: the packet's destination address. */
	if (family == AF_INET)
		ASSERT_EQ(iou_setsockopt(r, b, IPPROTO_IP, IP_PKTINFO, &one, sizeof(one)), 0);
	else
		ASSERT_EQ(iou_setsockopt(r, b, IPPROTO_IPV6, IPV6_RECVPKTINFO, &one, sizeof(one)),
			  0);
	siov[0] = (struct iovec){ .iov_base = "ctl", .iov_len = 3 };
	ASSERT_EQ(iou_sendmsg(r, a, &sm, 0), 3);
	memset(&control, 0, sizeof(control));
	rm.msg_namelen = sizeof(from);
	rm.msg_control = control.buf;
	rm.msg_controllen = sizeof(control.buf);
	rm.msg_flags = 0;
	ASSERT_EQ(iou_recvmsg(r, b, &rm, 0), 3);
	ASSERT_EQ(rm.msg_namelen, want);
	ASSERT_GT(rm.msg_controllen, 0);
	ASSERT_LT(rm.msg_controllen, sizeof(control.buf));
	ASSERT_EQ(rm.msg_flags & MSG_CTRUNC, 0);
	struct cmsghdr *cm = CMSG_FIRSTHDR(&rm);

	ASSERT_TRUE(cm != NULL);
	if (family == AF_INET) {
		struct in_pktinfo pi;

		ASSERT_EQ(cm->cmsg_level, IPPROTO_IP);
		ASSERT_EQ(cm->cmsg_type, IP_PKTINFO);
		memcpy(&pi, CMSG_DATA(cm), sizeof(pi));
		ASSERT_EQ(pi.ipi_addr.s_addr, htonl(INADDR_LOOPBACK));
	} else {
		struct in6_pktinfo pi;

		ASSERT_EQ(cm->cmsg_level, IPPROTO_IPV6);
		ASSERT_EQ(cm->cmsg_type, IPV6_PKTINFO);
		memcpy(&pi, CMSG_DATA(cm), sizeof(pi));
		ASSERT_TRUE(!memcmp(&pi.ipi6_addr, &in6addr_loopback, sizeof(pi.ipi6_addr)));
	}

	ASSERT_EQ(close(a), 0);
	ASSERT_EQ(close(b), 0);
	return 0;
}

static int test_udp_sendmsg_recvmsg_ipv4(void)
{
	return udp_sendmsg_recvmsg(AF_INET);
}

static int test_udp_sendmsg_recvmsg_ipv6(void)
{
	SKIP_WITHOUT_IPV6();
	return udp_sendmsg_recvmsg(AF_INET6);
}

/* ---- iou_accept_each ---------------------------------------------------- */

/* One accept_each experiment's shared state (tests run one at a time). */
struct echo {
	struct reactor *r;
	int family;
	int lfd;
	struct sockaddr_storage addr;
	socklen_t alen;
	iou_accept_fn *handler; /* NULL: echo_handler */
	int64_t deadline_ns;	/* server: stop after this long (0: no deadline) */
	int accept_ret;		/* what iou_accept_each returned */
	bool accept_returned;
	int64_t accept_elapsed;
	int handled;	/* handlers that closed their connection */
	int clients_ok; /* clients whose echo came back intact */
};

static struct echo echo;

static void echo_handler(struct reactor *r, int fd, void *arg)
{
	struct echo *e = arg;
	unsigned char *buf = NULL;
	uint32_t len;

	FIBER_CHECK(e == &echo);
	FIBER_CHECK(fcntl(fd, F_GETFD) & FD_CLOEXEC);
	FIBER_CHECK(!strcmp(fiber_name(fiber_self(r)), "echo"));
	if (recv_exact(r, fd, &len, sizeof(len)) != sizeof(len) || len > ECHO_MAX) {
		FIBER_CHECK(!"no valid header");
		goto out;
	}
	buf = malloc(len);
	FIBER_CHECK(buf != NULL);
	if (!buf)
		goto out;
	FIBER_CHECK(recv_exact(r, fd, buf, len) == (ssize_t)len);
	FIBER_CHECK(send_all(r, fd, buf, len) == (ssize_t)len);
out:
	free(buf);
	FIBER_CHECK(close(fd) == 0);
	e->handled++;
}

static void *accept_server(void *arg)
{
	struct echo *e = arg;
	const struct fiber_options fo = { .stack_size = 128 * 1024, .name = "echo" };
	int64_t t0;

	if (e->deadline_ns)
		fiber_set_deadline(e->r, iou_deadline_after(e->deadline_ns));
	t0 = iou_now();
	e->accept_ret =
		iou_accept_each(e->r, e->lfd, e->handler ? e->handler : echo_handler, e, &fo);
	e->accept_elapsed = iou_now() - t0;
	e->accept_returned = true;
	return NULL;
}

static void *echo_client(void *arg)
{
	struct reactor *r = echo.r;
	uint64_t seed = (uint64_t)(intptr_t)arg + 1, s = seed;
	uint32_t len = (uint32_t)(xorshift(&s) % ECHO_MAX) + 1;
	unsigned char *out = malloc(len), *in = malloc(len);
	unsigned char c;
	int fd = -1;

	FIBER_CHECK(out && in);
	if (!out || !in)
		goto out;
	fill_random(out, len, seed);
	fd = iou_socket(r, echo.family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	FIBER_CHECK(fd >= 0);
	if (fd < 0)
		goto out;
	if (iou_connect(r, fd, (struct sockaddr *)&echo.addr, echo.alen)) {
		FIBER_CHECK(!"connect failed");
		goto out;
	}
	FIBER_CHECK(send_all(r, fd, &len, sizeof(len)) == sizeof(len));
	FIBER_CHECK(send_all(r, fd, out, len) == (ssize_t)len);
	memset(in, 0, len);
	if (recv_exact(r, fd, in, len) == (ssize_t)len && !memcmp(in, out, len) &&
	    iou_recv(r, fd, &c, 1, 0) == 0) /* the handler closed */
		echo.clients_ok++;
	else
		FIBER_CHECK(!"echo differs");
out:
	if (fd >= 0)
		FIBER_CHECK(close(fd) == 0);
	free(out);
	free(in);
	return NULL;
}

/* @flags: SOCK_NONBLOCK for a non-blocking listener, or 0. */
static void echo_setup(struct reactor *r, int family, int flags)
{
	memset(&echo, 0, sizeof(echo));
	echo.r = r;
	echo.family = family;
	echo.accept_ret = 1;
	echo.lfd = bound_socket(r, family, SOCK_STREAM | flags, ECHO_CLIENTS + 16, &echo.addr,
				&echo.alen);
}

/*
 * @n clients against iou_accept_each in one server fiber, which is then
 * cancelled; no descriptor may be left behind.
 */
static int accept_each_echo(struct reactor *r, int family, int flags, int n)
{
	struct fiber *server, **clients = calloc((size_t)n, sizeof(*clients));
	int fds_before = test_count_fds();

	ASSERT_TRUE(clients != NULL);
	ASSERT_GT(fds_before, 0);
	echo_setup(r, family, flags);
	ASSERT_GE(echo.lfd, 0);
	ASSERT_EQ(fiber_spawn(r, accept_server, &echo, &server), 0);
	for (int i = 0; i < n; i++)
		ASSERT_EQ(fiber_spawn(r, echo_client, (void *)(intptr_t)i, &clients[i]), 0);
	/* A guard, so that a lost connection fails the test instead of hanging it. */
	fiber_set_deadline(r, iou_deadline_after(GUARD));
	for (int i = 0; i < n; i++)
		ASSERT_EQ(fiber_join(clients[i], NULL), 0);
	ASSERT_EQ(echo.clients_ok, n);
	ASSERT_TRUE(!echo.accept_returned);

	ASSERT_EQ(fiber_cancel(server), 0);
	ASSERT_EQ(fiber_join(server, NULL), 0);
	fiber_set_deadline(r, IOU_DEADLINE_NEVER);
	ASSERT_TRUE(echo.accept_returned);
	ASSERT_EQ(echo.accept_ret, -ECANCELED);
	/* Handlers still finishing up. */
	ASSERT_EQ(reactor_run(r), 0);
	ASSERT_EQ(echo.handled, n);
	ASSERT_EQ(close(echo.lfd), 0);
	ASSERT_EQ(test_count_fds(), fds_before);
	ASSERT_NO_FIBER_FAILURES();
	free(clients);
	return 0;
}

/* A deadline stops the loop, which keeps serving until then. */
static int accept_each_deadline(struct reactor *r)
{
	int fds_before = test_count_fds();
	struct fiber *server, *client;
	int64_t limit = 200 * IOU_MSEC;

	echo_setup(r, AF_INET, 0);
	ASSERT_GE(echo.lfd, 0);
	echo.deadline_ns = limit;
	ASSERT_EQ(fiber_spawn(r, accept_server, &echo, &server), 0);
	ASSERT_EQ(fiber_spawn(r, echo_client, (void *)(intptr_t)7, &client), 0);
	fiber_set_deadline(r, iou_deadline_after(GUARD));
	ASSERT_EQ(fiber_join(client, NULL), 0);
	ASSERT_EQ(fiber_join(server, NULL), 0);
	fiber_set_deadline(r, IOU_DEADLINE_NEVER);
	ASSERT_EQ(reactor_run(r), 0);
	ASSERT_EQ(echo.accept_ret, -ETIMEDOUT);
	ASSERT_GE(echo.accept_elapsed, limit);
	ASSERT_LT(echo.accept_elapsed, limit + GUARD);
	ASSERT_EQ(echo.clients_ok, 1);
	ASSERT_EQ(echo.handled, 1);
	ASSERT_EQ(close(echo.lfd), 0);
	ASSERT_EQ(test_count_fds(), fds_before);
	ASSERT_NO_FIBER_FAILURES();
	return 0;
}

/* From the thread's own context, under a deadline, with fibers as clients. */
static int accept_each_outside_fiber(struct reactor *r)
{
	const struct fiber_options fo = { .name = "echo" };
	int fds_before = test_count_fds();
	int64_t t0, limit = 300 * IOU_MSEC;

	echo_setup(r, AF_INET, 0);
	ASSERT_GE(echo.lfd, 0);
	for (int i = 0; i < 3; i++)
		ASSERT_EQ(fiber_spawn(r, echo_client, (void *)(intptr_t)i, NULL), 0);
	t0 = iou_now();
	fiber_set_deadline(r, iou_deadline_after(limit));
	ASSERT_EQ(iou_accept_each(r, echo.lfd, echo_handler, &echo, &fo), -ETIMEDOUT);
	fiber_set_deadline(r, IOU_DEADLINE_NEVER);
	ASSERT_GE(iou_now() - t0, limit);
	ASSERT_EQ(reactor_run(r), 0);
	ASSERT_EQ(echo.clients_ok, 3);
	ASSERT_EQ(echo.handled, 3);
	ASSERT_EQ(close(echo.lfd), 0);
	ASSERT_EQ(test_count_fds(), fds_before);
	ASSERT_NO_FIBER_FAILURES();
	return 0;
}

static void *shutdown_after_a_while(void *arg)
{
	struct reactor *r = reactor_get();

	(void)arg;
	FIBER_CHECK(fiber_sleep(r, 30 * IOU_MSEC) == 0);
	FIBER_CHECK(iou_shutdown(r, echo.lfd, SHUT_RDWR) == 0);
	return NULL;
}

/* Shutting the listening socket down stops the loop with an error. */
static int accept_each_shutdown(struct reactor *r)
{
	int fds_before = test_count_fds();
	struct fiber *server;

	echo_setup(r, AF_INET, 0);
	ASSERT_GE(echo.lfd, 0);
	echo.deadline_ns = GUARD;
	ASSERT_EQ(fiber_spawn(r, accept_server, &echo, &server), 0);
	ASSERT_EQ(fiber_spawn(r, shutdown_after_a_while, NULL, NULL), 0);
	ASSERT_EQ(fiber_join(server, NULL), 0);
	ASSERT_EQ(reactor_run(r), 0);
	ASSERT_LT(echo.accept_ret, 0);
	ASSERT_NE(echo.accept_ret, -ETIMEDOUT);
	ASSERT_NE(echo.accept_ret, -ECANCELED);
	ASSERT_EQ(close(echo.lfd), 0);
	ASSERT_EQ(test_count_fds(), fds_before);
	ASSERT_NO_FIBER_FAILURES();
	return 0;
}

static void never_called(struct reactor *r, int fd, void *arg)
{
	(void)r;
	(void)arg;
	FIBER_CHECK(!"handler called");
	close(fd);
}

/* Run iou_accept_each on @fd under a guard deadline; its result. */
static int accept_each_bounded(struct reactor *r, int fd, iou_accept_fn *fn)
{
	int64_t old = fiber_set_deadline(r, iou_deadline_after(GUARD));
	int ret = iou_accept_each(r, fd, fn, NULL, NULL);

	fiber_set_deadline(r, old);
	return ret;
}

/* Sockets that cannot accept make it fail at once, never return 0. */
static int accept_each_errors(struct reactor *r)
{
	struct sockaddr_storage a;
	socklen_t alen;
	int fds_before = test_count_fds();
	int fd, pfd[2];

	/* Bound but not listening. */
	fd = bound_socket(r, AF_INET, SOCK_STREAM, 0, &a, &alen);
	ASSERT_GE(fd, 0);
	ASSERT_EQ(accept_each_bounded(r, fd, never_called), -EINVAL);
	/* Not even bound. */
	ASSERT_EQ(close(fd), 0);
	fd = iou_socket(r, AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ASSERT_GE(fd, 0);
	ASSERT_EQ(accept_each_bounded(r, fd, never_called), -EINVAL);
	ASSERT_EQ(close(fd), 0);
	/* A datagram socket. */
	fd = bound_socket(r, AF_INET, SOCK_DGRAM, 0, &a, &alen);
	ASSERT_GE(fd, 0);
	ASSERT_EQ(accept_each_bounded(r, fd, never_called), -EOPNOTSUPP);
	/* No handler. */
	ASSERT_EQ(iou_accept_each(r, fd, NULL, NULL, NULL), -EINVAL);
	ASSERT_EQ(close(fd), 0);
	ASSERT_EQ(accept_each_bounded(r, -1, never_called), -EBADF);
	/* Not a socket. */
	ASSERT_EQ(pipe2(pfd, O_CLOEXEC), 0);
	ASSERT_EQ(accept_each_bounded(r, pfd[0], never_called), -ENOTSOCK);
	ASSERT_EQ(close(pfd[0]), 0);
	ASSERT_EQ(close(pfd[1]), 0);
	ASSERT_EQ(iou_accept_each(NULL, 3, never_called, NULL, NULL), -EINVAL);
	ASSERT_EQ(reactor_run(r), 0);
	ASSERT_EQ(test_count_fds(), fds_before);
	/*
	 * A descriptor that is not open: -EBADF, as accept4(2) says.  Nothing
	 * else opens descriptors here, so its number can only be reused by the
	 * library itself (which must not make the call fail otherwise).
	 */
	fd = iou_socket(r, AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ASSERT_GE(fd, 0);
	ASSERT_EQ(close(fd), 0);
	ASSERT_EQ(accept_each_bounded(r, fd, never_called), -EBADF);
	ASSERT_EQ(test_count_fds(), fds_before);
	ASSERT_NO_FIBER_FAILURES();
	return 0;
}

/* Echoes one message, then holds the connection until the client closes. */
static void hold_handler(struct reactor *r, int fd, void *arg)
{
	struct echo *e = arg;
	char buf[64];
	ssize_t n = iou_recv(r, fd, buf, sizeof(buf), 0);

	FIBER_CHECK(n > 0);
	if (n > 0)
		FIBER_CHECK(send_all(r, fd, buf, (size_t)n) == n);
	while ((n = iou_recv(r, fd, buf, sizeof(buf), 0)) > 0)
		;
	FIBER_CHECK(n == 0);
	FIBER_CHECK(close(fd) == 0);
	e->handled++;
}

/*
 * The lowest limit under which exactly @room descriptor numbers are free
 * (the kernel gives out the lowest free number below RLIMIT_NOFILE), or -1.
 */
static int limit_leaving(int room)
{
	static bool open_fd[4096];
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;

	if (!d)
		return -1;
	memset(open_fd, 0, sizeof(open_fd));
	while ((e = readdir(d))) {
		int fd = atoi(e->d_name);

		if (e->d_name[0] != '.' && fd != dirfd(d) && fd < (int)sizeof(open_fd))
			open_fd[fd] = true;
	}
	closedir(d);
	for (int fd = 0; fd < (int)sizeof(open_fd); fd++)
		if (!open_fd[fd] && --room == 0)
			return fd + 1;
	return -1;
}

#define HOLD_SERVED 2
#define HOLD_REFUSED 4

/*
 * At the descriptor limit: connections that cannot get a descriptor are
 * accepted and closed at once (refused, not left hanging); once
 * descriptors are free again, new connections are served.
 */
static int accept_each_at_fd_limit(struct reactor *r)
{
	int fds_before = test_count_fds();
	int c[HOLD_SERVED + HOLD_REFUSED], limit, late, n = 0;
	struct rlimit old, low;
	struct fiber *server;
	char buf[16];

	if (RUNNING_ON_VALGRIND) {
		/* valgrind keeps its own soft limit, which io_uring does not see. */
		printf("# skipping the descriptor limit case under valgrind\n");
		return TEST_SKIP;
	}
	echo_setup(r, AF_INET, 0);
	ASSERT_GE(echo.lfd, 0);
	echo.handler = hold_handler;
	/* Clients first: they need descriptors of their own. */
	for (int i = 0; i < HOLD_SERVED + HOLD_REFUSED; i++) {
		c[i] = iou_socket(r, AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		ASSERT_GE(c[i], 0);
		ASSERT_EQ(iou_connect(r, c[i], (struct sockaddr *)&echo.addr, echo.alen), 0);
	}
	/* Room for the loop's spare descriptor and two connections. */
	limit = limit_leaving(1 + HOLD_SERVED);
	ASSERT_GT(limit, 0);
	ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &old), 0);
	low = old;
	low.rlim_cur = (rlim_t)limit;
	ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &low), 0);

	ASSERT_EQ(fiber_spawn(r, accept_server, &echo, &server), 0);
	fiber_set_deadline(r, iou_deadline_after(GUARD));
	for (int i = 0; i < HOLD_SERVED; i++) {
		ASSERT_EQ(send_all(r, c[i], "hi", 2), 2);
		ASSERT_EQ(recv_exact(r, c[i], buf, 2), 2);
		ASSERT_TRUE(!memcmp(buf, "hi", 2));
	}
	/* The others are closed by the server, not left waiting. */
	for (int i = HOLD_SERVED; i < HOLD_SERVED + HOLD_REFUSED; i++) {
		ssize_t ret = iou_recv(r, c[i], buf, sizeof(buf), 0);

		if (ret != -ECONNRESET)
			ASSERT_EQ(ret, 0);
	}
	for (int i = 0; i < HOLD_SERVED + HOLD_REFUSED; i++)
		ASSERT_EQ(close(c[i]), 0);
	while (echo.handled < HOLD_SERVED && n++ < 10000)
		ASSERT_EQ(fiber_sleep(r, IOU_MSEC), 0);
	ASSERT_EQ(echo.handled, HOLD_SERVED);

	/* Still under the low limit, with room again: served (after the pause). */
	late = iou_socket(r, AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ASSERT_GE(late, 0);
	ASSERT_EQ(iou_connect(r, late, (struct sockaddr *)&echo.addr, echo.alen), 0);
	ASSERT_EQ(send_all(r, late, "again", 5), 5);
	ASSERT_EQ(recv_exact(r, late, buf, 5), 5);
	ASSERT_TRUE(!memcmp(buf, "again", 5));
	ASSERT_EQ(close(late), 0);

	ASSERT_EQ(fiber_cancel(server), 0);
	ASSERT_EQ(fiber_join(server, NULL), 0);
	fiber_set_deadline(r, IOU_DEADLINE_NEVER);
	ASSERT_EQ(reactor_run(r), 0);
	ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &old), 0);
	ASSERT_EQ(echo.accept_ret, -ECANCELED);
	ASSERT_EQ(echo.handled, HOLD_SERVED + 1);
	ASSERT_EQ(close(echo.lfd), 0);
	ASSERT_EQ(test_count_fds(), fds_before);
	ASSERT_NO_FIBER_FAILURES();
	return 0;
}

static int test_accept_each_echo_ipv4(void)
{
	return accept_each_echo(reactor_get(), AF_INET, 0, ECHO_CLIENTS);
}

static int test_accept_each_echo_ipv6(void)
{
	SKIP_WITHOUT_IPV6();
	return accept_each_echo(reactor_get(), AF_INET6, 0, ECHO_CLIENTS);
}

static int test_accept_each_nonblocking_listener(void)
{
	return accept_each_echo(reactor_get(), AF_INET, SOCK_NONBLOCK, 20);
}

static int test_accept_each_outside_fiber(void)
{
	return accept_each_outside_fiber(reactor_get());
}

static int test_accept_each_deadline(void)
{
	return accept_each_deadline(reactor_get());
}

static int test_accept_each_stopped_by_shutdown(void)
{
	return accept_each_shutdown(reactor_get());
}

static int test_accept_each_at_fd_limit(void)
{
	return accept_each_at_fd_limit(reactor_get());
}

static int test_accept_each_errors(void)
{
	return accept_each_errors(reactor_get());
}

/* The same, in a thread whose reactor was built with IOU_MULTISHOT=0. */
struct thread_job {
	struct reactor *main_r; /* the main thread's reactor: not ours to use */
	int rc;
};

static int no_multishot_body(struct reactor *main_r)
{
	struct reactor_options o;
	struct reactor *r;
	char b;
	int fd, rc;

	reactor_options_init(&o);
	ASSERT_TRUE(!o.multishot);
	ASSERT_EQ(reactor_create(&o, &r), 0);

	/* Another thread's reactor is refused. */
	fd = iou_socket(r, AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	ASSERT_GE(fd, 0);
	ASSERT_EQ(iou_socket(main_r, AF_INET, SOCK_DGRAM, 0), -EPERM);
	ASSERT_EQ(iou_recv(main_r, fd, &b, 1, 0), -EPERM);
	ASSERT_EQ(iou_send(main_r, fd, &b, 1, 0), -EPERM);
	ASSERT_EQ(close(fd), 0);

	rc = accept_each_echo(r, AF_INET, 0, ECHO_CLIENTS);
	if (!rc)
		rc = accept_each_echo(r, AF_INET, SOCK_NONBLOCK, 20);
	if (!rc)
		rc = accept_each_outside_fiber(r);
	if (!rc)
		rc = accept_each_deadline(r);
	if (!rc)
		rc = accept_each_shutdown(r);
	if (!rc)
		rc = accept_each_at_fd_limit(r);
	if (rc == TEST_SKIP)
		rc = 0;
	if (!rc)
		rc = accept_each_errors(r);
	ASSERT_EQ(reactor_destroy(r), 0);
	return rc;
}

static void *no_multishot_thread(void *arg)
{
	struct thread_job *job = arg;

	job->rc = no_multishot_body(job->main_r);
	return NULL;
}

static int test_accept_each_without_multishot(void)
{
	struct thread_job job = { .main_r = reactor_get(), .rc = 1 };
	const char *old = getenv("IOU_MULTISHOT");
	char *saved = old ? strdup(old) : NULL;
	int fds_before = test_count_fds();
	pthread_t t;

	ASSERT_TRUE(job.main_r != NULL);
	/* Only this thread exists now, so changing the environment is safe. */
	ASSERT_EQ(setenv("IOU_MULTISHOT", "0", 1), 0);
	ASSERT_EQ(pthread_create(&t, NULL, no_multishot_thread, &job), 0);
	ASSERT_EQ(pthread_join(t, NULL), 0);
	if (saved)
		setenv("IOU_MULTISHOT", saved, 1);
	else
		unsetenv("IOU_MULTISHOT");
	free(saved);
	ASSERT_EQ(job.rc, 0);
	/* The thread's ring is gone too. */
	ASSERT_EQ(test_count_fds(), fds_before);
	ASSERT_NO_FIBER_FAILURES();
	return 0;
}

/* ---- errors ------------------------------------------------------------- */

static int connect_refused(int family)
{
	struct reactor *r = reactor_get();
	struct sockaddr_storage a;
	socklen_t alen;
	int bound, fd;

	/* A port that is bound but not listening refuses, without races. */
	bound = bound_socket(r, family, SOCK_STREAM, 0, &a, &alen);
	ASSERT_GE(bound, 0);
	fd = iou_socket(r, family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ASSERT_GE(fd, 0);
	ASSERT_EQ(iou_connect(r, fd, (struct sockaddr *)&a, alen), -ECONNREFUSED);
	ASSERT_EQ(close(fd), 0);
	ASSERT_EQ(close(bound), 0);
	return 0;
}

static int test_connect_refused_ipv4(void)
{
	return connect_refused(AF_INET);
}

static int test_connect_refused_ipv6(void)
{
	SKIP_WITHOUT_IPV6();
	return connect_refused(AF_INET6);
}

static int test_bad_descriptors(void)
{
	struct reactor *r = reactor_get();
	struct sockaddr_storage a;
	socklen_t alen = loopback(AF_INET, &a), len;
	char buf[8] = "abc";
	struct iovec iov = { .iov_base = buf, .iov_len = sizeof(buf) };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1 };
	int v = 1, closed, bad[2];

	closed = iou_socket(r, AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ASSERT_GE(closed, 0);
	ASSERT_EQ(close(closed), 0);
	bad[0] = -1;
	bad[1] = closed;
	for (int i = 0; i < 2; i++) {
		int fd = bad[i];

		ASSERT_EQ(iou_bind(r, fd, (struct sockaddr *)&a, alen), -EBADF);
		ASSERT_EQ(iou_listen(r, fd, 4), -EBADF);
		ASSERT_EQ(iou_connect(r, fd, (struct sockaddr *)&a, alen), -EBADF);
		ASSERT_EQ(iou_accept(r, fd, NULL, NULL, 0), -EBADF);
		ASSERT_EQ(iou_send(r, fd, buf, sizeof(buf), 0), -EBADF);
		ASSERT_EQ(iou_recv(r, fd, buf, sizeof(buf), 0), -EBADF);
		ASSERT_EQ(iou_sendto(r, fd, buf, sizeof(buf), 0, (struct sockaddr *)&a, alen),
			  -EBADF);
		ASSERT_EQ(iou_recvfrom(r, fd, buf, sizeof(buf), 0, NULL, NULL), -EBADF);
		ASSERT_EQ(iou_sendmsg(r, fd, &m, 0), -EBADF);
		ASSERT_EQ(iou_recvmsg(r, fd, &m, 0), -EBADF);
		ASSERT_EQ(iou_shutdown(r, fd, SHUT_RDWR), -EBADF);
		len = sizeof(v);
		ASSERT_EQ(iou_getsockopt(r, fd, SOL_SOCKET, SO_REUSEADDR, &v, &len), -EBADF);
		ASSERT_EQ(iou_setsockopt(r, fd, SOL_SOCKET, SO_REUSEADDR, &v, sizeof(v)), -EBADF);
	}
	return 0;
}

static int test_bad_addresses(void)
{
	struct reactor *r = reactor_get();
	struct sockaddr_storage a;
	int c, s, udp;
	char buf[8];

	loopback(AF_INET, &a);
	ASSERT_EQ(tcp_pair(r, AF_INET, &c, &s), 0);
	udp = iou_socket(r, AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	ASSERT_GE(udp, 0);

	ASSERT_EQ(iou_send(r, c, NULL, 10, 0), -EFAULT);
	ASSERT_EQ(iou_recv(r, s, NULL, 10, 0), -EFAULT);
	ASSERT_EQ(iou_sendto(r, udp, NULL, 10, 0, NULL, 0), -EFAULT);
	ASSERT_EQ(iou_recvfrom(r, udp, NULL, 10, 0, NULL, NULL), -EFAULT);
	ASSERT_EQ(iou_recvfrom(r, udp, buf, sizeof(buf), 0, (struct sockaddr *)&a, NULL), -EFAULT);
	ASSERT_EQ(iou_bind(r, udp, NULL, sizeof(struct sockaddr_in)), -EFAULT);
	ASSERT_EQ(iou_connect(r, udp, NULL, sizeof(struct sockaddr_in)), -EFAULT);
	ASSERT_EQ(iou_sendmsg(r, c, NULL, 0), -EFAULT);
	ASSERT_EQ(iou_recvmsg(r, s, NULL, 0), -EFAULT);
	ASSERT_EQ(iou_accept(r, s, (struct sockaddr *)&a, NULL, 0), -EFAULT);

	/* A NULL buffer with no length is fine. */
	ASSERT_EQ(iou_send(r, c, NULL, 0, 0), 0);

	/* The connection is untouched by all that. */
	ASSERT_EQ(send_all(r, c, "ok", 2), 2);
	ASSERT_EQ(recv_exact(r, s, buf, 2), 2);
	ASSERT_TRUE(!memcmp(buf, "ok", 2));

	/* No reactor. */
	ASSERT_EQ(iou_send(NULL, c, "x", 1, 0), -EINVAL);
	ASSERT_EQ(iou_recv(NULL, s, buf, 1, 0), -EINVAL);
	ASSERT_EQ(iou_connect(NULL, udp, (struct sockaddr *)&a, sizeof(struct sockaddr_in)),
		  -EINVAL);
	ASSERT_EQ(close(udp), 0);
	ASSERT_EQ(close(c), 0);
	ASSERT_EQ(close(s), 0);
	return 0;
}

static int test_send_to_closed_peer_without_sigpipe(void)
{
	struct reactor *r = reactor_get();
	char buf[4096];
	struct iovec iov = { .iov_base = buf, .iov_len = sizeof(buf) };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1 };
	ssize_t ret = 0;
	sigset_t pending;
	int c, s;

	/* Make sure a SIGPIPE, if one came, would kill us (CTest may ignore it). */
	signal(SIGPIPE, SIG_DFL);
	memset(buf, 'p', sizeof(buf));
	ASSERT_EQ(tcp_pair(r, AF_INET, &c, &s), 0);
	ASSERT_EQ(close(s), 0);
	/* The first sends may still go out; the peer's RST ends that. */
	for (int i = 0; i < 1000 && ret >= 0; i++) {
		ret = iou_send(r, c, buf, sizeof(buf), 0);
		if (ret >= 0)
			fiber_sleep(r, IOU_MSEC);
	}
	if (ret != -EPIPE)
		ASSERT_EQ(ret, -ECONNRESET);
	ASSERT_EQ(iou_send(r, c, buf, sizeof(buf), 0), -EPIPE);
	ASSERT_EQ(iou_sendmsg(r, c, &m, 0), -EPIPE);
	ASSERT_EQ(iou_sendto(r, c, buf, sizeof(buf), 0, NULL, 0), -EPIPE);
	ASSERT_EQ(sigpending(&pending), 0);
	ASSERT_TRUE(!sigismember(&pending, SIGPIPE));
	ASSERT_EQ(close(c), 0);
	return 0;
}

/* recv under a deadline, then the connection must still work. */
struct idle {
	int c, s;
	ssize_t first;
	int64_t elapsed;
	struct fiber *victim;
	ssize_t again;
	bool cancelled;
	bool done;
};

static void *recv_with_deadline(void *arg)
{
	struct idle *x = arg;
	struct reactor *r = reactor_get();
	int64_t t0 = iou_now(), old;
	char buf[16];

	old = fiber_set_deadline(r, iou_deadline_after(50 * IOU_MSEC));
	FIBER_CHECK(old == IOU_DEADLINE_NEVER);
	x->first = iou_recv(r, x->c, buf, sizeof(buf), 0);
	x->elapsed = iou_now() - t0;
	fiber_set_deadline(r, old);

	FIBER_CHECK(send_all(r, x->c, "ping", 4) == 4);
	FIBER_CHECK(recv_exact(r, x->c, buf, 4) == 4);
	FIBER_CHECK(!memcmp(buf, "pong", 4));
	x->done = true;
	return NULL;
}

static void *ponger(void *arg)
{
	struct idle *x = arg;
	struct reactor *r = reactor_get();
	char buf[16];

	/* Nothing may have arrived before "ping", nor been lost. */
	FIBER_CHECK(recv_exact(r, x->s, buf, 4) == 4);
	FIBER_CHECK(!memcmp(buf, "ping", 4));
	FIBER_CHECK(send_all(r, x->s, "pong", 4) == 4);
	return NULL;
}

static int test_recv_deadline_keeps_connection(void)
{
	struct reactor *r = reactor_get();
	struct idle x = { 0 };
	char buf[16];

	ASSERT_EQ(tcp_pair(r, AF_INET, &x.c, &x.s), 0);
	ASSERT_EQ(fiber_spawn(r, recv_with_deadline, &x, NULL), 0);
	ASSERT_EQ(fiber_spawn(r, ponger, &x, NULL), 0);
	ASSERT_EQ(reactor_run(r), 0);
	ASSERT_NO_FIBER_FAILURES();
	ASSERT_EQ(x.first, -ETIMEDOUT);
	ASSERT_GE(x.elapsed, 50 * IOU_MSEC);
	ASSERT_LT(x.elapsed, GUARD);
	ASSERT_TRUE(x.done);

	/* "Do not block": nothing there is -ETIMEDOUT, something there is data. */
	fiber_set_deadline(r, IOU_DEADLINE_NOW);
	ASSERT_EQ(iou_recv(r, x.c, buf, sizeof(buf), 0), -ETIMEDOUT);
	fiber_set_deadline(r, IOU_DEADLINE_NEVER);
	ASSERT_EQ(send_all(r, x.s, "now", 3), 3);
	ASSERT_EQ(iou_poll(r, x.c, POLLIN) & POLLIN, POLLIN);
	fiber_set_deadline(r, IOU_DEADLINE_NOW);
	ASSERT_EQ(iou_recv(r, x.c, buf, sizeof(buf), 0), 3);
	fiber_set_deadline(r, IOU_DEADLINE_NEVER);
	ASSERT_TRUE(!memcmp(buf, "now", 3));

	ASSERT_EQ(close(x.c), 0);
	ASSERT_EQ(close(x.s), 0);
	return 0;
}

static void *recv_until_cancelled(void *arg)
{
	struct idle *x = arg;
	struct reactor *r = reactor_get();
	char buf[16];

	x->first = iou_recv(r, x->c, buf, sizeof(buf), 0);
	x->cancelled = fiber_cancelled(r);
	/* Sticky: later calls fail at once instead of waiting. */
	x->again = iou_recv(r, x->c, buf, sizeof(buf), 0);
	return NULL;
}

static void *canceller(void *arg)
{
	struct idle *x = arg;
	struct reactor *r = reactor_get();

	FIBER_CHECK(fiber_sleep(r, 20 * IOU_MSEC) == 0);
	FIBER_CHECK(fiber_cancel(x->victim) == 0);
	return NULL;
}

static int test_recv_cancelled_by_another_fiber(void)
{
	struct reactor *r = reactor_get();
	struct idle x = { 0 };
	char buf[16];

	ASSERT_EQ(tcp_pair(r, AF_INET, &x.c, &x.s), 0);
	ASSERT_EQ(fiber_spawn(r, recv_until_cancelled, &x, &x.victim), 0);
	ASSERT_EQ(fiber_spawn(r, canceller, &x, NULL), 0);
	fiber_set_deadline(r, iou_deadline_after(GUARD));
	ASSERT_EQ(fiber_join(x.victim, NULL), 0);
	fiber_set_deadline(r, IOU_DEADLINE_NEVER);
	ASSERT_EQ(reactor_run(r), 0);
	ASSERT_NO_FIBER_FAILURES();
	ASSERT_EQ(x.first, -ECANCELED);
	ASSERT_TRUE(x.cancelled);
	ASSERT_EQ(x.again, -ECANCELED);

	/* The socket is still good for everyone else. */
	ASSERT_EQ(send_all(r, x.s, "alive", 5), 5);
	ASSERT_EQ(recv_exact(r, x.c, buf, 5), 5);
	ASSERT_TRUE(!memcmp(buf, "alive", 5));
	ASSERT_EQ(send_all(r, x.c, "back", 4), 4);
	ASSERT_EQ(recv_exact(r, x.s, buf, 4), 4);
	ASSERT_TRUE(!memcmp(buf, "back", 4));
	ASSERT_EQ(close(x.c), 0);
	ASSERT_EQ(close(x.s), 0);
	return 0;
}

static int test_socket_options(void)
{
	struct reactor *r = reactor_get();
	struct sockaddr_storage a;
	socklen_t alen, len;
	int fd, udp, v, closed, pfd[2];
	char ch = 0;

	fd = iou_socket(r, AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ASSERT_GE(fd, 0);
	/* SO_REUSEADDR round trip. */
	v = 1;
	ASSERT_EQ(iou_setsockopt(r, fd, SOL_SOCKET, SO_REUSEADDR, &v, sizeof(v)), 0);
	v = 0;
	len = sizeof(v);
	ASSERT_EQ(iou_getsockopt(r, fd, SOL_SOCKET, SO_REUSEADDR, &v, &len), 0);
	ASSERT_EQ(len, sizeof(int));
	ASSERT_NE(v, 0);
	v = 0;
	ASSERT_EQ(iou_setsockopt(r, fd, SOL_SOCKET, SO_REUSEADDR, &v, sizeof(v)), 0);
	v = 1;
	len = sizeof(v);
	ASSERT_EQ(iou_getsockopt(r, fd, SOL_SOCKET, SO_REUSEADDR, &v, &len), 0);
	ASSERT_EQ(v, 0);
	/* A fresh socket has no pending error. */
	v = -1;
	len = sizeof(v);
	ASSERT_EQ(iou_getsockopt(r, fd, SOL_SOCKET, SO_ERROR, &v, &len), 0);
	ASSERT_EQ(v, 0);
	/* Unknown options. */
	len = sizeof(v);
	ASSERT_EQ(iou_getsockopt(r, fd, SOL_SOCKET, 0x7ead, &v, &len), -ENOPROTOOPT);
	ASSERT_EQ(iou_setsockopt(r, fd, SOL_SOCKET, 0x7ead, &v, sizeof(v)), -ENOPROTOOPT);

	/* Argument errors. */
	len = sizeof(v);
	ASSERT_EQ(iou_getsockopt(r, fd, SOL_SOCKET, SO_REUSEADDR, &v, NULL), -EFAULT);
	ASSERT_EQ(iou_getsockopt(r, fd, SOL_SOCKET, SO_REUSEADDR, NULL, &len), -EFAULT);
	ASSERT_EQ(iou_setsockopt(r, fd, SOL_SOCKET, SO_REUSEADDR, NULL, sizeof(v)), -EFAULT);
	ASSERT_EQ(iou_getsockopt(NULL, fd, SOL_SOCKET, SO_REUSEADDR, &v, &len), -EINVAL);
	ASSERT_EQ(iou_setsockopt(NULL, fd, SOL_SOCKET, SO_REUSEADDR, &v, sizeof(v)), -EINVAL);
	ASSERT_EQ(iou_getsockopt(r, -1, SOL_SOCKET, SO_REUSEADDR, &v, &len), -EBADF);
	ASSERT_EQ(iou_setsockopt(r, -1, SOL_SOCKET, SO_REUSEADDR, &v, sizeof(v)), -EBADF);
	ASSERT_EQ(close(fd), 0);
	closed = fd;
	len = sizeof(v);
	ASSERT_EQ(iou_getsockopt(r, closed, SOL_SOCKET, SO_ERROR, &v, &len), -EBADF);
	ASSERT_EQ(iou_setsockopt(r, closed, SOL_SOCKET, SO_REUSEADDR, &v, sizeof(v)), -EBADF);
	ASSERT_EQ(pipe2(pfd, O_CLOEXEC), 0);
	ASSERT_EQ(iou_getsockopt(r, pfd[0], SOL_SOCKET, SO_ERROR, &v, &len), -ENOTSOCK);
	ASSERT_EQ(close(pfd[0]), 0);
	ASSERT_EQ(close(pfd[1]), 0);

	/*
	 * SO_ERROR reports an asynchronous error once: a connected UDP socket
	 * that sends to a port nobody has gets ECONNREFUSED from the ICMP.
	 */
	fd = bound_socket(r, AF_INET, SOCK_DGRAM, 0, &a, &alen);
	ASSERT_GE(fd, 0);
	ASSERT_EQ(close(fd), 0);
	udp = iou_socket(r, AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	ASSERT_GE(udp, 0);
	ASSERT_EQ(iou_connect(r, udp, (struct sockaddr *)&a, alen), 0);
	ASSERT_EQ(iou_send(r, udp, &ch, 1, 0), 1);
	fiber_set_deadline(r, iou_deadline_after(GUARD));
	ASSERT_TRUE(iou_poll(r, udp, POLLIN) & POLLERR);
	fiber_set_deadline(r, IOU_DEADLINE_NEVER);
	v = 0;
	len = sizeof(v);
	ASSERT_EQ(iou_getsockopt(r, udp, SOL_SOCKET, SO_ERROR, &v, &len), 0);
	ASSERT_EQ(v, ECONNREFUSED);
	len = sizeof(v);
	ASSERT_EQ(iou_getsockopt(r, udp, SOL_SOCKET, SO_ERROR, &v, &len), 0);
	ASSERT_EQ(v, 0);
	ASSERT_EQ(close(udp), 0);
	return 0;
}

TEST_MAIN(T(test_socket_types_and_flags), T(test_bind_listen_accept_errors),
	  T(test_nonblocking_sockets_do_not_wait_with_deadline_now), T(test_tcp_round_trip_and_half_close_ipv4),
	  T(test_tcp_round_trip_and_half_close_ipv6), T(test_large_transfer_full_duplex),
	  T(test_udp_sendto_recvfrom_ipv4), T(test_udp_sendto_recvfrom_ipv6),
	  T(test_udp_sendmsg_recvmsg_ipv4), T(test_udp_sendmsg_recvmsg_ipv6),
	  T(test_accept_each_echo_ipv4), T(test_accept_each_echo_ipv6),
	  T(test_accept_each_nonblocking_listener), T(test_accept_each_outside_fiber),
	  T(test_accept_each_deadline), T(test_accept_each_stopped_by_shutdown),
	  T(test_accept_each_at_fd_limit), T(test_accept_each_errors),
	  T(test_accept_each_without_multishot), T(test_connect_refused_ipv4),
	  T(test_connect_refused_ipv6), T(test_bad_descriptors), T(test_bad_addresses),
	  T(test_send_to_closed_peer_without_sigpipe), T(test_recv_deadline_keeps_connection),
	  T(test_recv_cancelled_by_another_fiber), T(test_socket_options))
