/* SPDX-License-Identifier: MIT */
/*
 * The byte-stream peer of the TLS harnesses (peer.h).  The harness itself
 * is the peer, outside any fiber: it writes a piece with a plain send(),
 * then lets the reactor run (fiber_yield() outside a fiber runs what is
 * runnable and collects completions without blocking) until the code
 * under test has taken the piece off the socket, has ended, or a bounded
 * number of rounds has passed (it may be waiting for something else).
 * Whatever the code under test sends is read and dropped as it comes, so
 * that it never waits for room.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fuzz.h"
#include "peer.h"

/* Reactor rounds a piece may take to be received. */
#define SETTLE_ROUNDS 64

/* The fiber running the code under test. */
struct side {
	struct reactor *r;
	int fd;		  /* its end of the socketpair */
	fuzz_side_fn *fn; /* the code under test */
	void *arg;
	bool done; /* fn has returned */
};

static void *side_main(void *arg)
{
	struct side *s = arg;

	fiber_set_deadline(s->r, iou_deadline_after(FUZZ_STALL));
	s->fn(s->r, s->fd, s->arg);
	s->done = true;
	return NULL;
}

/* Bytes waiting in @fd's receive queue. */
static int queued(int fd)
{
	int n = 0;

	return ioctl(fd, FIONREAD, &n) < 0 ? 0 : n;
}

/* Read and drop what the code under test has sent so far. */
static void drain(int fd)
{
	char buf[4096];

	while (fd >= 0 && recv(fd, buf, sizeof(buf), MSG_DONTWAIT) > 0)
		;
}

/* Run the reactor until the side has taken what was sent, or has ended. */
static void settle(struct reactor *r, struct side *s, int peer)
{
	for (int i = 0; i < SETTLE_ROUNDS && !s->done; i++) {
		drain(peer);
		if (i > 0 && queued(s->fd) == 0)
			break;
		FUZZ_CHECK(fiber_yield(r) == 0, "fiber_yield failed");
	}
}

void fuzz_peer_run(struct reactor *r, const uint8_t *data, size_t size, size_t chunk,
		   bool close_end, fuzz_side_fn *fn, void *arg)
{
	struct side s = { .r = r, .fn = fn, .arg = arg };
	struct fiber *f;
	size_t off = 0;
	int sv[2], ret;

	FUZZ_CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0, "socketpair: %m");
	s.fd = sv[0];
	ret = fiber_spawn(r, side_main, &s, &f);
	FUZZ_CHECK(ret == 0, "fiber_spawn: %s", iou_strerror(ret));
	settle(r, &s, sv[1]); /* a client says hello first */
	while (off < size && !s.done) {
		size_t n = chunk && chunk < size - off ? chunk : size - off;
		ssize_t m = send(sv[1], data + off, n, MSG_DONTWAIT | MSG_NOSIGNAL);

		if (m <= 0)
			break; /* full (the side does not read) or closed: stop sending */
		off += (size_t)m;
		settle(r, &s, sv[1]);
	}
	drain(sv[1]);
	if (close_end) {
		close(sv[1]);
		sv[1] = -1;
	} else {
		shutdown(sv[1], SHUT_WR);
	}
	/* Only the side's fiber is left: this returns when it has ended. */
	while (!s.done) {
		ret = reactor_run(r);
		FUZZ_CHECK(ret == 0, "reactor_run: %s", iou_strerror(ret));
	}
	fiber_join(f, NULL);
	close(sv[0]);
	if (sv[1] >= 0)
		close(sv[1]);
}

void fuzz_peer_record(struct reactor *r, bool listen_, fuzz_side_fn *fn, void *arg)
{
	const char *port = getenv("IOU_FUZZ_TLS_RECORD");
	struct sockaddr_in sin = { .sin_family = AF_INET };
	struct side s = { .r = r, .fn = fn, .arg = arg };
	struct fiber *f;
	int fd, one = 1, ret;

	if (!port)
		return;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sin.sin_port = htons((uint16_t)atoi(port));
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	FUZZ_CHECK(fd >= 0, "socket: %m");
	if (listen_) {
		int lfd = fd;

		setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		FUZZ_CHECK(bind(lfd, (struct sockaddr *)&sin, sizeof(sin)) == 0, "bind: %m");
		FUZZ_CHECK(listen(lfd, 1) == 0, "listen: %m");
		fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		FUZZ_CHECK(fd >= 0, "accept: %m");
		close(lfd);
	} else {
		FUZZ_CHECK(connect(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0, "connect: %m");
	}
	s.fd = fd;
	ret = fiber_spawn(r, side_main, &s, &f);
	FUZZ_CHECK(ret == 0, "fiber_spawn: %s", iou_strerror(ret));
	while (!s.done) {
		ret = reactor_run(r);
		FUZZ_CHECK(ret == 0, "reactor_run: %s", iou_strerror(ret));
	}
	fiber_join(f, NULL);
	close(fd);
	exit(0);
}
