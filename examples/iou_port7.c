/* SPDX-License-Identifier: MIT */
/*
 * iou_port7: the echo service of RFC 862 on TCP and UDP, on one port.  Each
 * of THREADS workers runs on its own thread with its own reactor (pinned to
 * its own CPU by the library) and its own TCP and UDP sockets bound to the
 * same address and port; with more than one worker the sockets share the
 * port through SO_REUSEPORT and the kernel spreads connections and
 * datagrams over them.  In a worker, iou_accept_each() gives every TCP
 * connection a fiber that sends back what it receives until the client
 * shuts its side down, and one fiber answers each UDP datagram with the
 * same bytes.  Worker 0 is the main thread itself, workers 1 and up are a
 * reactor group, so -t 1 is a single-threaded server.
 *
 * The threads, start-up and stop are the skeleton of workers.h: the main
 * thread blocks SIGINT and SIGTERM before any thread or reactor exists,
 * binds worker 0's sockets (with -p 0 it learns the kernel's port, which
 * the other workers then bind), starts the other workers and waits until
 * each is ready, and prints one "listening" line.  A fiber of its reactor
 * then waits on a signalfd.  On a signal, main has every worker's
 * stop_worker() run on that worker's thread (a call posted to its
 * reactor): it cancels the accept loop, the UDP fiber and every live
 * connection fiber; the worker closes its sockets and returns, and main
 * joins the threads and exits 0.  A worker that hits a fatal error stops
 * itself and tells main (a posted call), and everyone stops the same way,
 * with exit status 1.
 *
 * Resource policy, chosen for a server that must outlive its clients:
 * - The soft RLIMIT_NOFILE is raised to the hard limit at start.  At the
 *   limit, iou_accept_each_with() keeps serving existing connections and
 *   refuses new ones (accepts and closes them at once, using a spare
 *   descriptor) until descriptors free up, waking every 50 ms rather than
 *   spinning.  A connection whose fiber gets no stack (out of memory) is
 *   closed the same way.  Either says so on standard error, one line at
 *   most once a second per thread with the number refused: "iou_port7:
 *   worker N: refusing connections: REASON; N refused".
 * - Each worker makes its ring of receive buffers at start, so a server
 *   short of memory fails then, with one line, rather than later refuse
 *   every client.
 * - A client that resets or closes ends its fiber's recv or send with an
 *   error or end of file, and the descriptor is closed at once.
 * - An idle client costs one fiber and one descriptor for as long as it
 *   stays connected (echo clients may pause); SO_KEEPALIVE lets the kernel
 *   notice a client whose host has vanished.
 * - A client that stops reading holds at most one ring buffer's worth of
 *   its echo (16 KiB) in heap memory, beside what the kernel's socket
 *   buffers take; the ring buffer itself goes back to the others at once.
 *   If it goes on sending, each further echo waits for the previous one to
 *   go out, for SEND_STALL at most; then it is disconnected.  One that
 *   stops reading and sending is an idle client, as above.
 * - With one thread SO_REUSEPORT is not set, so a second server on the same
 *   port fails with "Address already in use" instead of silently sharing it.
 *
 * Exit status: 0 after a signal, 1 on a runtime error (such as the port
 * being in use), 2 on a usage error.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define EXAMPLE_NAME "iou_port7"
#include "usage.h"
#include "workers.h"
#include <ioucontext/ioucontext.h>

#define DEFAULT_PORT 12345

/* A client that does not read its echo gets this long to make room for more. */
#define SEND_STALL (60 * IOU_SEC)

/*
 * Connection fibers need little stack: received bytes stay in the reactor's
 * ring of buffers, so a fiber's frames fit in the top page of its stack.
 */
#define CONN_STACK ((size_t)64 * 1024)

/* Larger than any UDP payload (65,507 bytes over IPv4, 65,527 over IPv6). */
#define DGRAM_MAX 65536

/* With -p 0, how often to pick a new port if UDP finds the TCP one taken. */
#define PORT_TRIES 16

/* A live TCP connection, on its handler fiber's stack. */
struct conn {
	struct conn *prev, *next; /* in the worker's list of live connections */
	struct fiber *fiber;	  /* the handler, to cancel it at shutdown */
};

/* One worker: its own thread (worker 0: the main thread), reactor, sockets. */
struct worker {
	struct worker_slot *slot; /* the skeleton's record: index, what failed */
	struct reactor *r;
	int tcp, udp;			    /* the sockets, -1 when closed */
	struct fiber *acceptor, *datagrams; /* to cancel (workers_spawn()'s) */
	struct conn *conns;		    /* live connections */
	bool stopping;			    /* no new connection may start */
	unsigned char *dgram;		    /* the UDP fiber's buffer */
	struct iou_bufring *ring;	    /* the receive streams' buffers */
};

static void help(void)
{
	printf("usage: iou_port7 [-a ADDR] [-p PORT] [-t THREADS]\n"
	       "Echo service (RFC 862) on TCP and UDP on the same port.\n"
	       "\n"
	       "  -a, --address ADDR   numeric IPv4 or IPv6 address to listen on\n"
	       "                       (default ::, which also serves IPv4; 0.0.0.0\n"
	       "                       where the kernel has no IPv6)\n"
	       "  -p, --port PORT      port (default %d); 0 lets the kernel pick one\n"
	       "  -t, --threads N      worker threads, each with its own reactor and\n"
	       "                       sockets (default 1, at most %d)\n"
	       "  -h, --help           show this help\n"
	       "\n"
	       "Prints \"iou_port7: listening on ADDR port PORT (...)\" when ready and runs\n"
	       "until SIGINT or SIGTERM.  Exit status: 0 after a signal, 1 runtime error,\n"
	       "2 usage error.\n",
	       DEFAULT_PORT, MAX_THREADS);
}

/* ---- the worker's fibers ------------------------------------------------- */

/* Cancel every fiber of the worker so that reactor_run() returns. */
static void stop_all(struct worker *w)
{
	w->stopping = true;
	fiber_cancel(w->acceptor);
	fiber_cancel(w->datagrams);
	/* fiber_cancel() does not run the target, so the list stays intact. */
	for (struct conn *c = w->conns; c; c = c->next)
		fiber_cancel(c->fiber);
}

/*
 * Echo the @len bytes just peeked from @s.  The send goes out with the
 * fiber's next wait (see iou_rstream_forward()), so the fiber parks once
 * per echo, in the peek.  Only when the client is slow to read does a
 * forward wait for the previous one, for SEND_STALL at most: the first
 * try does not wait at all, so that the common case reads no clock.
 */
static int echo_chunk(struct reactor *r, int fd, struct iou_rstream *s, size_t len)
{
	int64_t old = fiber_set_deadline(r, IOU_DEADLINE_NOW);
	ssize_t n = iou_rstream_forward(r, s, fd, len);

	if (n == -ETIMEDOUT) {
		fiber_set_deadline(r, iou_deadline_after(SEND_STALL));
		n = iou_rstream_forward(r, s, fd, len);
	}
	fiber_set_deadline(r, old);
	return n < 0 ? (int)n : 0;
}

/* End of file: the last echoes must be out before the close. */
static void echo_flush(struct reactor *r, struct iou_rstream *s)
{
	int64_t old = fiber_set_deadline(r, iou_deadline_after(SEND_STALL));

	(void)iou_rstream_flush(r, s);
	fiber_set_deadline(r, old);
}

/* One TCP connection: echo until end of file, an error, or a cancel. */
static void echo_conn(struct reactor *r, int fd, void *arg)
{
	struct worker *w = arg;
	struct conn c = { .fiber = fiber_self(r) };
	struct iou_rstream *s = NULL;
	int on = 1, ret;

	/* Accepted while the worker was being stopped: it missed the cancel. */
	if (w->stopping) {
		iou_close(r, fd);
		return;
	}
	c.next = w->conns;
	if (w->conns)
		w->conns->prev = &c;
	w->conns = &c;

	iou_setsockopt(r, fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof(on));
	/* The stream's receive reads into the worker's ring of buffers. */
	ret = iou_rstream_open(r, fd, w->ring, &s);
	if (ret < 0)
		workers_refused(w->slot, ret, 1, "cannot open a receive stream");
	if (ret == 0) {
		for (;;) {
			const void *data;
			ssize_t n = iou_rstream_peek(r, s, &data);

			/*
			 * 0: the client shut down its side (or closed); once
			 * what it sent is echoed, closing completes the
			 * half-close.  < 0: reset, stall, cancelled at shutdown.
			 */
			if (n == 0)
				echo_flush(r, s);
			if (n <= 0 || echo_chunk(r, fd, s, (size_t)n) < 0)
				break;
		}
		iou_rstream_close(r, s);
	}

	if (c.prev)
		c.prev->next = c.next;
	else
		w->conns = c.next;
	if (c.next)
		c.next->prev = c.prev;
	iou_close(r, fd);
}

/* Connections refused at the descriptor limit or for want of memory: say so. */
static void refused(struct reactor *r, int err, unsigned n, void *arg)
{
	struct worker *w = arg;

	(void)r;
	workers_refused(w->slot, err, n, NULL);
}

static void *accept_loop(void *arg)
{
	struct worker *w = arg;
	const struct fiber_options fo = { .stack_size = CONN_STACK, .name = "echo" };
	const struct iou_accept_options opts = { .fiber = &fo, .refused = refused };
	int ret = iou_accept_each_with(w->r, w->tcp, echo_conn, w, &opts);

	if (ret != -ECANCELED) {
		workers_fail(w->slot, "accepting TCP connections", ret);
		stop_all(w);
	}
	return NULL;
}

/* Errors a UDP socket may report that concern one datagram, not the socket. */
static bool udp_transient(ssize_t err)
{
	switch (-err) {
	case EINTR:
	case EAGAIN:
	case ENOMEM:
	case ENOBUFS:
	case ECONNREFUSED:
	case EHOSTUNREACH:
	case ENETUNREACH:
	case EMSGSIZE:
		return true;
	default:
		return false;
	}
}

static void *echo_datagrams(void *arg)
{
	struct worker *w = arg;

	for (;;) {
		struct sockaddr_storage peer;
		socklen_t peerlen = sizeof(peer);
		ssize_t n;

		n = iou_recvfrom(w->r, w->udp, w->dgram, DGRAM_MAX, 0, (struct sockaddr *)&peer,
				 &peerlen);
		if (n == -ECANCELED)
			break;
		if (n < 0) {
			if (udp_transient(n))
				continue;
			workers_fail(w->slot, "receiving UDP datagrams", (int)n);
			stop_all(w);
			break;
		}
		/* A reply that cannot be sent is lost, as UDP allows. */
		n = iou_sendto(w->r, w->udp, w->dgram, (size_t)n, 0, (struct sockaddr *)&peer,
			       peerlen);
		if (n == -ECANCELED)
			break;
	}
	return NULL;
}

/* ---- worker set-up (the hooks of workers.h) ---------------------------------- */

static int open_socket(struct worker *w, int type, int *fd)
{
	const struct workers *ws = w->slot->ws;
	struct reactor *r = w->r;
	int on = 1, off = 0, ret;

	ret = iou_socket(r, ws->addr.ss_family, type | SOCK_CLOEXEC, 0);
	if (ret < 0)
		return ret;
	*fd = ret;
	/* A restarted server must not wait for old connections' TIME_WAIT. */
	if (type == SOCK_STREAM)
		ret = iou_setsockopt(r, *fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
	if (ret >= 0 && ws->n > 1)
		ret = iou_setsockopt(r, *fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on));
	/* "::" serves IPv4 too, whatever net.ipv6.bindv6only says. */
	if (ret >= 0 && ws->addr.ss_family == AF_INET6)
		ret = iou_setsockopt(r, *fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof(off));
	return ret < 0 ? ret : 0;
}

static void close_sockets(struct worker *w)
{
	if (w->tcp >= 0)
		iou_close(w->r, w->tcp);
	if (w->udp >= 0)
		iou_close(w->r, w->udp);
	w->tcp = w->udp = -1;
}

/* The step of bind_pair() that -p 0 may retry. */
static const char bind_udp[] = "binding the UDP socket";

/* Bind TCP and UDP to one port; @port 0 takes the kernel's pick for TCP. */
static int bind_pair(struct worker *w, uint16_t port)
{
	struct worker_slot *s = w->slot;
	struct sockaddr_storage ss = s->ws->addr;
	socklen_t len = s->ws->addrlen;
	int ret;

	s->what = "creating a socket";
	if ((ret = open_socket(w, SOCK_STREAM, &w->tcp)) < 0 ||
	    (ret = open_socket(w, SOCK_DGRAM, &w->udp)) < 0)
		return ret;
	set_port(&ss, port);
	s->what = "binding the TCP socket";
	ret = iou_bind(w->r, w->tcp, (struct sockaddr *)&ss, len);
	if (ret < 0)
		return ret;
	if (port == 0) {
		ret = getsockname(w->tcp, (struct sockaddr *)&ss, &len);
		if (ret < 0)
			return -errno;
	}
	s->port = get_port(&ss);
	s->what = bind_udp;
	ret = iou_bind(w->r, w->udp, (struct sockaddr *)&ss, len);
	if (ret < 0)
		return ret;
	s->what = "listening";
	return iou_listen(w->r, w->tcp, SOMAXCONN);
}

/*
 * Bind the worker's sockets and spawn its fibers (which first run when its
 * reactor runs).  On failure s->what says which step failed.
 */
static int worker_setup(struct worker_slot *s)
{
	struct worker *w = s->data;
	struct reactor_options o;
	int ret;

	w->r = s->r;
	w->dgram = malloc(DGRAM_MAX);
	if (!w->dgram) {
		s->what = "allocating a buffer";
		return -ENOMEM;
	}
	for (int i = 0;; i++) {
		ret = bind_pair(w, s->ws->port);
		/* The kernel's TCP pick may be taken for UDP: pick again. */
		if (ret != -EADDRINUSE || s->what != bind_udp || s->ws->port != 0 ||
		    i + 1 == PORT_TRIES)
			break;
		close_sockets(w);
	}
	if (ret < 0)
		return ret;
	/*
	 * The ring the reactor would make on the first connection, made now
	 * (reactor_options_init() reads IOU_BUFRING_COUNT and _SIZE): short of
	 * memory, the server fails at start rather than serve nobody later.
	 */
	s->what = "creating the receive ring";
	reactor_options_init(&o);
	ret = iou_bufring_create(w->r, o.bufring_count, o.bufring_size, &w->ring);
	if (ret < 0)
		return ret;
	s->what = "starting a fiber";
	if ((ret = workers_spawn(s, accept_loop, w, &w->acceptor)) < 0 ||
	    (ret = workers_spawn(s, echo_datagrams, w, &w->datagrams)) < 0)
		return ret;
	return 0;
}

/* Main's request to stop, run on the worker's thread. */
static void stop_worker(struct worker_slot *s)
{
	stop_all(s->data);
}

/* Release what worker_setup() made, once the worker's fibers are over. */
static void worker_finish(struct worker_slot *s)
{
	struct worker *w = s->data;

	close_sockets(w);
	free(w->dgram);
	w->dgram = NULL;
	/* -EBUSY if fibers were discarded with streams open: the teardown frees it. */
	if (w->ring)
		iou_bufring_destroy(w->r, w->ring);
	w->ring = NULL;
}

/* ---- main thread ------------------------------------------------------------ */

/* parse_args()'s value when the program should go on and run. */
#define ARGS_RUN (-1)

/*
 * The command line into @ws (address, port, threads; the caller has set
 * the defaults).  Return: ARGS_RUN to go on, or the exit status to end
 * with now (0 after --help, 2 on a usage error, its message printed).
 * Allocates nothing.
 */
static int parse_args(int argc, char **argv, struct workers *ws)
{
	static const struct option longopts[] = { { "address", required_argument, NULL, 'a' },
						  { "port", required_argument, NULL, 'p' },
						  { "threads", required_argument, NULL, 't' },
						  { "help", no_argument, NULL, 'h' },
						  { NULL, 0, NULL, 0 } };
	const char *address = NULL;
	unsigned long v;
	int c;

	opterr = 0; /* one line of our own instead of getopt's message */
	while ((c = getopt_long(argc, argv, ":a:p:t:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'a':
			address = optarg;
			break;
		case 'p':
			if (parse_uint(optarg, 65535, &v) < 0)
				return bad_usage("port '%s' must be 0..65535", optarg);
			ws->port = (uint16_t)v;
			break;
		case 't':
			if (parse_uint(optarg, MAX_THREADS, &v) < 0 || v == 0)
				return bad_usage("threads '%s' must be 1..%d", optarg, MAX_THREADS);
			ws->n = (unsigned)v;
			break;
		case 'h':
			help();
			return 0;
		case ':':
			return bad_usage("option '%s' needs an argument", argv[optind - 1]);
		default:
			if (optopt)
				return bad_usage("unknown option '-%c'", optopt);
			return bad_usage("unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind < argc)
		return bad_usage("unexpected argument '%s'", argv[optind]);
	/* Without -a, the default ("::" or 0.0.0.0) always parses. */
	if (workers_address(ws, address) < 0)
		return bad_usage("'%s' is not a numeric IPv4 or IPv6 address", address);
	return ARGS_RUN;
}

#ifndef IOU_EXAMPLE_NO_MAIN
int main(int argc, char **argv)
{
	static const struct workers_ops ops = {
		.start = worker_setup,
		.stop = stop_worker,
		.finish = worker_finish,
	};
	static struct workers ws = {
		.ops = &ops,
		.proto = "tcp+udp",
		.port = DEFAULT_PORT,
		.n = 1,
	};
	struct worker *workers;
	int status;

	if ((status = parse_args(argc, argv, &ws)) != ARGS_RUN)
		return status;
	workers = calloc(ws.n, sizeof(*workers));
	if (!workers) {
		fprintf(stderr, "iou_port7: setting up: %s\n", strerror(ENOMEM));
		return 1;
	}
	for (unsigned i = 0; i < ws.n; i++) {
		workers[i] = (struct worker){ .slot = &ws.slot[i], .tcp = -1, .udp = -1 };
		ws.slot[i].data = &workers[i];
	}
	status = workers_serve(&ws);
	free(workers);
	return status;
}
#endif
