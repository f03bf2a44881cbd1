/* SPDX-License-Identifier: MIT */
/*
 * echo-epoll: the epoll peer of the echo benchmark.  One thread, one epoll
 * set, non-blocking sockets, level-triggered.  A readable connection is read
 * into one shared 64 KiB scratch buffer and the bytes are sent back at once;
 * only what the kernel would not take is copied into a per-connection
 * pending buffer, and then the connection waits for EPOLLOUT instead of
 * EPOLLIN until that is gone (so a client that does not read cannot make us
 * buffer more than one read's worth).  The listening socket is accepted
 * from until EAGAIN; at the descriptor limit it leaves the epoll set for
 * 100 ms.  UDP datagrams are taken and returned in batches with recvmmsg and
 * sendmmsg.  SIGINT/SIGTERM arrive through a signalfd and end the loop.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define PEER_NAME "echo-epoll"
#include "echo-peer.h"

/*
 * One read.  Shared, so it stays in cache; 64 KiB, so that pipelined
 * clients cost fewer calls (here 30-40% faster than 16 KiB).
 */
#define SCRATCH 65536
#define READ_ROUNDS 4	    /* full reads per readable event, for fairness */
#define UDP_BATCH 16	    /* datagrams per recvmmsg */
#define UDP_ROUNDS 8	    /* full batches per readable event */
#define DGRAM_MAX 65536	    /* larger than any UDP payload */
#define ACCEPT_PAUSE_MS 100 /* accept pause at the descriptor limit */
#define MAX_EVENTS 256

enum kind {
	K_CONN,
	K_LISTEN,
	K_UDP,
	K_SIGNAL
};

/* An epoll registration; for K_CONN, a connection. */
struct conn {
	enum kind kind;
	int fd;
	char *pend;	   /* bytes the kernel would not take yet, or NULL */
	size_t plen, poff; /* size of pend, and how much of it is sent */
};

static int epfd;
static struct conn listener = { .kind = K_LISTEN }, udp = { .kind = K_UDP },
		   sig = { .kind = K_SIGNAL };
static char scratch[SCRATCH];
static bool accept_paused;
static struct timespec accept_resume; /* when a paused listener rejoins */

static void watch(int op, struct conn *c, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.ptr = c };

	if (epoll_ctl(epfd, op, c->fd, &ev) < 0 && c->kind != K_CONN)
		peer_fail("epoll_ctl: %s", strerror(errno));
}

static void conn_close(struct conn *c)
{
	close(c->fd); /* also leaves the epoll set: the descriptor is not shared */
	free(c->pend);
	free(c);
}

/* Keep the unsent tail of scratch and wait for room (or close c). */
static void conn_stash(struct conn *c, const char *p, size_t n)
{
	struct epoll_event ev = { .events = EPOLLOUT, .data.ptr = c };

	c->pend = malloc(n);
	if (!c->pend || epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev) < 0) {
		conn_close(c);
		return;
	}
	memcpy(c->pend, p, n);
	c->plen = n;
	c->poff = 0;
}

static void conn_readable(struct conn *c)
{
	for (int round = 0; round < READ_ROUNDS; round++) {
		ssize_t n = recv(c->fd, scratch, sizeof(scratch), 0), s;

		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		if (n <= 0) { /* end of file, reset, or another error */
			conn_close(c);
			return;
		}
		s = send(c->fd, scratch, (size_t)n, MSG_NOSIGNAL);
		if (s < 0 && errno != EAGAIN && errno != EINTR) {
			conn_close(c);
			return;
		}
		if (s < 0)
			s = 0;
		if (s < n) {
			conn_stash(c, scratch + s, (size_t)(n - s));
			return;
		}
		if (n < (ssize_t)sizeof(scratch))
			return; /* drained: a further recv would only say EAGAIN */
	}
}

static void conn_writable(struct conn *c)
{
	ssize_t s = send(c->fd, c->pend + c->poff, c->plen - c->poff, MSG_NOSIGNAL);

	if (s < 0) {
		if (errno != EAGAIN && errno != EINTR)
			conn_close(c);
		return;
	}
	c->poff += (size_t)s;
	if (c->poff < c->plen)
		return;
	free(c->pend);
	c->pend = NULL;
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };
	if (epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev) < 0)
		conn_close(c);
}

static void accept_all(void)
{
	for (;;) {
		int fd = accept4(listener.fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC), one = 1;
		struct conn *c;

		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
			    errno == ENOMEM) {
				/* Out of descriptors: existing clients go on, new ones wait. */
				epoll_ctl(epfd, EPOLL_CTL_DEL, listener.fd, NULL);
				accept_paused = true;
				clock_gettime(CLOCK_MONOTONIC, &accept_resume);
				accept_resume.tv_nsec += ACCEPT_PAUSE_MS * 1000000L;
				if (accept_resume.tv_nsec >= 1000000000L) {
					accept_resume.tv_sec++;
					accept_resume.tv_nsec -= 1000000000L;
				}
				return;
			}
			if (errno == EINTR || errno == ECONNABORTED || errno == EPERM ||
			    errno == EPROTO)
				continue;
			return; /* EAGAIN, or nothing we can help */
		}
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		c = calloc(1, sizeof(*c));
		if (!c) {
			close(fd);
			continue;
		}
		c->kind = K_CONN;
		c->fd = fd;
		struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };
		if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
			conn_close(c);
	}
}

static void accept_maybe_resume(void)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	if (now.tv_sec < accept_resume.tv_sec ||
	    (now.tv_sec == accept_resume.tv_sec && now.tv_nsec < accept_resume.tv_nsec))
		return;
	accept_paused = false;
	watch(EPOLL_CTL_ADD, &listener, EPOLLIN);
}

/* Answer every waiting datagram (up to UDP_ROUNDS batches); drop on error. */
static void udp_echo(void)
{
	static char dgram[UDP_BATCH][DGRAM_MAX];
	static struct sockaddr_storage from[UDP_BATCH];
	static struct iovec iov[UDP_BATCH];
	static struct mmsghdr msgs[UDP_BATCH];

	for (int round = 0; round < UDP_ROUNDS; round++) {
		int n, done = 0;

		for (int i = 0; i < UDP_BATCH; i++) {
			iov[i] = (struct iovec){ dgram[i], DGRAM_MAX };
			msgs[i].msg_hdr = (struct msghdr){ .msg_name = &from[i],
							   .msg_namelen = sizeof(from[i]),
							   .msg_iov = &iov[i],
							   .msg_iovlen = 1 };
		}
		n = recvmmsg(udp.fd, msgs, UDP_BATCH, MSG_DONTWAIT, NULL);
		if (n <= 0)
			return;
		for (int i = 0; i < n; i++)
			iov[i].iov_len = msgs[i].msg_len;
		while (done < n) {
			int s = sendmmsg(udp.fd, msgs + done, (unsigned)(n - done), MSG_DONTWAIT);

			done += s > 0 ? s : 1; /* skip a datagram the kernel refused */
		}
		if (n < UDP_BATCH)
			return;
	}
}

int main(int argc, char **argv)
{
	static struct epoll_event events[MAX_EVENTS];
	struct peer p;

	peer_setup(argc, argv, &p, SOCK_NONBLOCK);
	listener.fd = p.tcp;
	udp.fd = p.udp;
	sig.fd = peer_signalfd();
	epfd = epoll_create1(EPOLL_CLOEXEC);
	if (epfd < 0)
		peer_fail("epoll_create1: %s", strerror(errno));
	watch(EPOLL_CTL_ADD, &listener, EPOLLIN);
	watch(EPOLL_CTL_ADD, &udp, EPOLLIN);
	watch(EPOLL_CTL_ADD, &sig, EPOLLIN);
	peer_ready(&p);

	for (;;) {
		int n = epoll_wait(epfd, events, MAX_EVENTS, accept_paused ? ACCEPT_PAUSE_MS : -1);

		if (n < 0 && errno != EINTR)
			peer_fail("epoll_wait: %s", strerror(errno));
		for (int i = 0; i < n; i++) {
			struct conn *c = events[i].data.ptr;

			switch (c->kind) {
			case K_CONN:
				if (c->pend)
					conn_writable(c);
				else
					conn_readable(c);
				break;
			case K_LISTEN:
				accept_all();
				break;
			case K_UDP:
				udp_echo();
				break;
			case K_SIGNAL:
				return 0;
			}
		}
		if (accept_paused)
			accept_maybe_resume();
	}
}
