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
 * same bytes.  Worker 0 is the main thread itself, workers 1 and up are C11
 * threads, so -t 1 is a single-threaded server.
 *
 * The main thread blocks SIGINT and SIGTERM before any thread or reactor
 * exists (so every thread inherits the mask), binds its own sockets (with
 * -p 0 it learns the kernel's port, which the other workers then bind),
 * starts the other workers and waits until each is ready, and prints one
 * "listening" line.  A fiber of its reactor then waits on a signalfd.  On a
 * signal it asks every worker to stop through the worker's eventfd (which
 * a fiber of each worker waits on with iou_eventfd_read()); the worker
 * cancels its accept loop, its UDP fiber and every live connection fiber,
 * closes its sockets and returns, and main joins the threads and exits 0.
 * A worker that hits a fatal error tells main through another eventfd, and
 * everyone stops the same way, with exit status 1.
 *
 * Resource policy, chosen for a server that must outlive its clients:
 * - The soft RLIMIT_NOFILE is raised to the hard limit at start.  At the
 *   limit, iou_accept_each() keeps serving existing connections and refuses
 *   new ones (accepts and closes them at once, using a spare descriptor)
 *   until descriptors free up, waking every 50 ms rather than spinning.
 * - A client that resets or closes ends its fiber's recv or send with an
 *   error or end of file, and the descriptor is closed at once.
 * - An idle client costs one fiber and one descriptor for as long as it
 *   stays connected (echo clients may pause); SO_KEEPALIVE lets the kernel
 *   notice a client whose host has vanished.
 * - A client that stops reading while we still have its bytes to return is
 *   given SEND_STALL seconds without progress, then disconnected: without
 *   that bound it would hold a fiber and a descriptor forever.
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
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <threads.h>
#include <unistd.h>

#include "signals.h"
#include <ioucontext/ioucontext.h>

#define DEFAULT_PORT 12345
#define MAX_THREADS 256

/* A stalled reader gets this long to accept more of its echo. */
#define SEND_STALL (60 * IOU_SEC)

/* Connection fibers need little stack: the buffer is their only big item. */
#define CONN_STACK ((size_t)64 * 1024)
#define CONN_BUFFER 16384

/* Larger than any UDP payload (65,507 bytes over IPv4, 65,527 over IPv6). */
#define DGRAM_MAX 65536

/* With -p 0, how often to pick a new port if UDP finds the TCP one taken. */
#define PORT_TRIES 16

/* A worker's start-up state, as main sees it. */
enum {
	WORKER_STARTING = 1,
	WORKER_READY = 0 /* or a -errno: it failed */
};

struct server;

/* A live TCP connection, on its handler fiber's stack. */
struct conn {
	struct conn *prev, *next; /* in the worker's list of live connections */
	struct fiber *fiber;	  /* the handler, to cancel it at shutdown */
};

/* One worker: its own thread (worker 0: the main thread), reactor, sockets. */
struct worker {
	struct server *srv;
	thrd_t thread;	  /* workers 1 and up */
	bool started;	  /* thread created: main must join it */
	int stopfd;	  /* eventfd written by main to ask for a stop */
	int status;	  /* WORKER_STARTING, WORKER_READY or -errno (srv->lock) */
	const char *what; /* what failed, for status or error */
	int error;	  /* a fatal error after start-up (-errno), 0 if none */
	uint16_t port;	  /* the port bound (worker 0 learns it for -p 0) */

	/* The rest belongs to the worker thread alone. */
	struct reactor *r;
	int tcp, udp;				      /* the sockets, -1 when closed */
	struct fiber *acceptor, *datagrams, *stopper; /* joinable */
	struct conn *conns;			      /* live connections */
	bool stopping;				      /* no new connection may start */
	unsigned char *dgram;			      /* the UDP fiber's buffer */
};

/* What every thread shares. */
struct server {
	struct sockaddr_storage addr; /* where to listen; the port is set per bind */
	socklen_t addrlen;
	char host[NI_MAXHOST]; /* the address as printed */
	uint16_t port;	       /* from -p, or learned from worker 0 */
	unsigned nthreads;
	mtx_t lock;    /* protects each worker's status */
	cnd_t changed; /* a worker's status changed */
	int failfd;    /* eventfd: some worker failed at run time */
	struct worker *workers;
};

/* Usage errors: one line, status 2. */
__attribute__((format(printf, 1, 2))) static int bad_usage(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fputs("iou_port7: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	return 2;
}

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

static int parse_uint(const char *s, unsigned long max, unsigned long *out)
{
	unsigned long v;
	char *end;

	if (*s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (*end != '\0' || errno == ERANGE || v > max)
		return -ERANGE;
	*out = v;
	return 0;
}

/* A numeric address, optionally in brackets ("[::1]"), into srv->addr. */
static int parse_address(struct server *srv, const char *text)
{
	struct addrinfo hints = {
		.ai_flags = AI_NUMERICHOST | AI_PASSIVE,
		.ai_socktype = SOCK_STREAM,
	};
	struct addrinfo *res;
	char buf[256];
	size_t len = strlen(text);

	if (len >= sizeof(buf))
		return -EINVAL;
	if (len >= 2 && text[0] == '[' && text[len - 1] == ']') {
		memcpy(buf, text + 1, len - 2);
		buf[len - 2] = '\0';
	} else {
		memcpy(buf, text, len + 1);
	}
	if (getaddrinfo(buf, NULL, &hints, &res) != 0)
		return -EINVAL;
	memcpy(&srv->addr, res->ai_addr, res->ai_addrlen);
	srv->addrlen = res->ai_addrlen;
	freeaddrinfo(res);
	/* Printed as the kernel will see it ("::ffff:1.2.3.4", "fe80::1%lo"). */
	if (getnameinfo((struct sockaddr *)&srv->addr, srv->addrlen, srv->host, sizeof(srv->host),
			NULL, 0, NI_NUMERICHOST) != 0)
		return -EINVAL;
	return 0;
}

static void set_port(struct sockaddr_storage *ss, uint16_t port)
{
	if (ss->ss_family == AF_INET6)
		((struct sockaddr_in6 *)ss)->sin6_port = htons(port);
	else
		((struct sockaddr_in *)ss)->sin_port = htons(port);
}

static uint16_t get_port(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET6)
		return ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
	return ntohs(((const struct sockaddr_in *)ss)->sin_port);
}

/* ---- the worker's fibers ------------------------------------------------- */

/* Record the first fatal error and tell main (which then stops everyone). */
static void worker_fail(struct worker *w, const char *what, int err)
{
	uint64_t one = 1;

	if (w->error)
		return;
	w->error = err;
	w->what = what;
	/*
	 * A plain write: adding 1 to an eventfd never blocks, and this must
	 * work from a cancelled fiber or after the reactor itself failed.
	 */
	if (write(w->srv->failfd, &one, sizeof(one)) < 0)
		perror("iou_port7: writing the failure eventfd");
}

/* Cancel every fiber of the worker so that reactor_run() returns. */
static void stop_all(struct worker *w)
{
	w->stopping = true;
	fiber_cancel(w->acceptor);
	fiber_cancel(w->datagrams);
	fiber_cancel(w->stopper);
	/* fiber_cancel() does not run the target, so the list stays intact. */
	for (struct conn *c = w->conns; c; c = c->next)
		fiber_cancel(c->fiber);
}

/*
 * Send all of @len bytes.  Each send must make progress within SEND_STALL:
 * a client that does not read its echo cannot hold the fiber forever.
 */
static int send_all(struct reactor *r, int fd, const char *buf, size_t len)
{
	while (len > 0) {
		int64_t old = fiber_set_deadline(r, iou_deadline_after(SEND_STALL));
		ssize_t n = iou_send(r, fd, buf, len, 0);

		fiber_set_deadline(r, old);
		if (n < 0)
			return (int)n;
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/* One TCP connection: echo until end of file, an error, or a cancel. */
static void echo_conn(struct reactor *r, int fd, void *arg)
{
	struct worker *w = arg;
	struct conn c = { .fiber = fiber_self(r) };
	char buf[CONN_BUFFER];
	int on = 1;

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
	for (;;) {
		ssize_t n = iou_recv(r, fd, buf, sizeof(buf), 0);

		/*
		 * 0: the client shut down its side (or closed), and everything it
		 * sent has been echoed already; closing completes the half-close.
		 * < 0: reset, stall, or cancelled at shutdown.
		 */
		if (n <= 0 || send_all(r, fd, buf, (size_t)n) < 0)
			break;
	}

	if (c.prev)
		c.prev->next = c.next;
	else
		w->conns = c.next;
	if (c.next)
		c.next->prev = c.prev;
	iou_close(r, fd);
}

static void *accept_loop(void *arg)
{
	struct worker *w = arg;
	const struct fiber_options opts = { .stack_size = CONN_STACK, .name = "echo" };
	int ret = iou_accept_each(w->r, w->tcp, echo_conn, w, &opts);

	if (ret != -ECANCELED) {
		worker_fail(w, "accepting TCP connections", ret);
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
			worker_fail(w, "receiving UDP datagrams", (int)n);
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

/* Waits for main's request to stop. */
static void *await_stop(void *arg)
{
	struct worker *w = arg;
	uint64_t value;
	int ret = iou_eventfd_read(w->r, w->stopfd, &value);

	if (ret < 0 && ret != -ECANCELED)
		worker_fail(w, "reading the stop eventfd", ret);
	stop_all(w);
	return NULL;
}

/* ---- worker set-up --------------------------------------------------------- */

static int open_socket(struct worker *w, int type, int *fd)
{
	struct reactor *r = w->r;
	int on = 1, off = 0, ret;

	ret = iou_socket(r, w->srv->addr.ss_family, type | SOCK_CLOEXEC, 0);
	if (ret < 0)
		return ret;
	*fd = ret;
	/* A restarted server must not wait for old connections' TIME_WAIT. */
	if (type == SOCK_STREAM)
		ret = iou_setsockopt(r, *fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
	if (ret >= 0 && w->srv->nthreads > 1)
		ret = iou_setsockopt(r, *fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on));
	/* "::" serves IPv4 too, whatever net.ipv6.bindv6only says. */
	if (ret >= 0 && w->srv->addr.ss_family == AF_INET6)
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
	struct sockaddr_storage ss = w->srv->addr;
	socklen_t len = w->srv->addrlen;
	int ret;

	w->what = "creating a socket";
	if ((ret = open_socket(w, SOCK_STREAM, &w->tcp)) < 0 ||
	    (ret = open_socket(w, SOCK_DGRAM, &w->udp)) < 0)
		return ret;
	set_port(&ss, port);
	w->what = "binding the TCP socket";
	ret = iou_bind(w->r, w->tcp, (struct sockaddr *)&ss, len);
	if (ret < 0)
		return ret;
	if (port == 0) {
		ret = getsockname(w->tcp, (struct sockaddr *)&ss, &len);
		if (ret < 0)
			return -errno;
	}
	w->port = get_port(&ss);
	w->what = bind_udp;
	ret = iou_bind(w->r, w->udp, (struct sockaddr *)&ss, len);
	if (ret < 0)
		return ret;
	w->what = "listening";
	return iou_listen(w->r, w->tcp, SOMAXCONN);
}

/*
 * Create the calling thread's reactor, bind the sockets and spawn the
 * worker's fibers (which first run in reactor_run()).  On failure w->what
 * says which step failed.
 */
static int worker_setup(struct worker *w)
{
	int ret;

	w->r = reactor_get();
	if (!w->r) {
		/* reactor_get() says only NULL; creating it again tells why. */
		w->what = "creating the reactor";
		ret = reactor_create(NULL, &w->r);
		if (ret < 0)
			return ret;
	}
	w->dgram = malloc(DGRAM_MAX);
	if (!w->dgram) {
		w->what = "allocating a buffer";
		return -ENOMEM;
	}
	for (int i = 0;; i++) {
		ret = bind_pair(w, w->srv->port);
		/* The kernel's TCP pick may be taken for UDP: pick again. */
		if (ret != -EADDRINUSE || w->what != bind_udp || w->srv->port != 0 ||
		    i + 1 == PORT_TRIES)
			break;
		close_sockets(w);
	}
	if (ret < 0)
		return ret;
	w->what = "starting a fiber";
	if ((ret = fiber_spawn(w->r, await_stop, w, &w->stopper)) < 0 ||
	    (ret = fiber_spawn(w->r, accept_loop, w, &w->acceptor)) < 0 ||
	    (ret = fiber_spawn(w->r, echo_datagrams, w, &w->datagrams)) < 0)
		return ret;
	return 0;
}

/*
 * Release what worker_setup() made.  @ran: reactor_run() returned 0, so
 * the fibers have finished and joining just frees the handles; otherwise
 * reactor_destroy() discards them without running them.
 */
static void worker_finish(struct worker *w, bool ran)
{
	if (ran) {
		fiber_join(w->acceptor, NULL);
		fiber_join(w->datagrams, NULL);
		fiber_join(w->stopper, NULL);
	}
	if (w->r) {
		close_sockets(w);
		reactor_destroy(w->r);
	}
	free(w->dgram);
	w->dgram = NULL;
}

static void report(struct worker *w, int status)
{
	mtx_lock(&w->srv->lock);
	w->status = status;
	cnd_broadcast(&w->srv->changed);
	mtx_unlock(&w->srv->lock);
}

/* The body of workers 1 and up, each on a thread of its own. */
static int worker_thread(void *arg)
{
	struct worker *w = arg;
	int ret = worker_setup(w);

	report(w, ret < 0 ? ret : WORKER_READY);
	if (ret >= 0) {
		ret = reactor_run(w->r);
		if (ret < 0)
			worker_fail(w, "running the reactor", ret);
	}
	worker_finish(w, ret == 0);
	return 0;
}

/* ---- main thread ------------------------------------------------------------ */

/*
 * Main's two waits, run as fibers on worker 0's reactor: whichever ends
 * first cancels the other and asks every worker to stop.
 */
struct waits {
	struct server *srv;
	int sigfd;
	struct fiber *signal, *failure;
};

static void stop_workers(struct server *srv)
{
	for (unsigned i = 0; i < srv->nthreads; i++) {
		struct worker *w = &srv->workers[i];
		uint64_t one = 1;

		/* Never blocks; a plain write also works from a cancelled fiber. */
		if (w->stopfd >= 0 && write(w->stopfd, &one, sizeof(one)) < 0)
			perror("iou_port7: writing a stop eventfd");
	}
}

static void *await_signal(void *arg)
{
	struct waits *m = arg;
	struct signalfd_siginfo si;
	ssize_t ret = example_read_signal(m->srv->workers[0].r, m->sigfd, &si);

	if (ret < 0 && ret != -ECANCELED)
		worker_fail(&m->srv->workers[0], "reading the signalfd", (int)ret);
	fiber_cancel(m->failure);
	stop_workers(m->srv);
	return NULL;
}

static void *await_failure(void *arg)
{
	struct waits *m = arg;
	uint64_t value;

	iou_eventfd_read(m->srv->workers[0].r, m->srv->failfd, &value);
	fiber_cancel(m->signal);
	stop_workers(m->srv);
	return NULL;
}

/* Many clients at once need many descriptors: take all we are allowed. */
static void raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

/* Start worker @i on a thread and wait until it is serving or has failed. */
static int start_worker(struct server *srv, unsigned i)
{
	struct worker *w = &srv->workers[i];
	int status;

	w->status = WORKER_STARTING;
	if (thrd_create(&w->thread, worker_thread, w) != thrd_success) {
		w->what = "creating a thread";
		return -EAGAIN;
	}
	w->started = true;
	mtx_lock(&srv->lock);
	while (w->status == WORKER_STARTING)
		cnd_wait(&srv->changed, &srv->lock);
	status = w->status;
	mtx_unlock(&srv->lock);
	return status;
}

/*
 * Worker 0 runs on the main thread, next to main's waits: one thread fewer,
 * and with -t 1 the whole server is one thread.  (That also keeps it
 * testable under valgrind 3.19, which holds its global lock through a
 * blocking io_uring_enter and so stalls every other thread meanwhile.)
 */
static int serve(struct server *srv, int sigfd)
{
	struct worker *w0 = &srv->workers[0], *failed = w0;
	struct waits m = { .srv = srv, .sigfd = sigfd };
	int ret, status = 0;
	bool ran = false;

	ret = worker_setup(w0);
	if (ret >= 0 && srv->port == 0)
		srv->port = w0->port; /* the others bind the port the first one got */
	for (unsigned i = 1; ret >= 0 && i < srv->nthreads; i++) {
		failed = &srv->workers[i];
		ret = start_worker(srv, i);
	}
	if (ret < 0) {
		fprintf(stderr, "iou_port7: %s %s port %u: %s\n", failed->what, srv->host,
			(unsigned)(failed->port ? failed->port : srv->port), strerror(-ret));
		status = 1;
		stop_workers(srv);
	} else {
		printf("iou_port7: listening on %s port %u (tcp+udp, %u thread%s)\n", srv->host,
		       (unsigned)srv->port, srv->nthreads, srv->nthreads == 1 ? "" : "s");
		fflush(stdout);
		ret = fiber_spawn(w0->r, await_signal, &m, &m.signal);
		if (ret >= 0)
			ret = fiber_spawn(w0->r, await_failure, &m, &m.failure);
		if (ret < 0) {
			worker_fail(w0, "starting a fiber", ret);
		} else if ((ret = reactor_run(w0->r)) < 0) {
			worker_fail(w0, "running the reactor", ret);
		} else {
			fiber_join(m.signal, NULL);
			fiber_join(m.failure, NULL);
			ran = true;
		}
		if (ret < 0)
			stop_workers(srv);
	}
	worker_finish(w0, ran);
	for (unsigned i = 0; i < srv->nthreads; i++) {
		struct worker *w = &srv->workers[i];

		if (w->started)
			thrd_join(w->thread, NULL);
		if (w->error) {
			fprintf(stderr, "iou_port7: worker %u: %s: %s\n", i, w->what,
				strerror(-w->error));
			status = 1;
		}
	}
	return status;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = { { "address", required_argument, NULL, 'a' },
						  { "port", required_argument, NULL, 'p' },
						  { "threads", required_argument, NULL, 't' },
						  { "help", no_argument, NULL, 'h' },
						  { NULL, 0, NULL, 0 } };
	struct server srv = { .port = DEFAULT_PORT, .nthreads = 1, .failfd = -1 };
	const char *address = NULL;
	unsigned long v;
	sigset_t sigs;
	int c, sigfd, status;

	opterr = 0; /* one line of our own instead of getopt's message */
	while ((c = getopt_long(argc, argv, ":a:p:t:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'a':
			address = optarg;
			break;
		case 'p':
			if (parse_uint(optarg, 65535, &v) < 0)
				return bad_usage("port '%s' must be 0..65535", optarg);
			srv.port = (uint16_t)v;
			break;
		case 't':
			if (parse_uint(optarg, MAX_THREADS, &v) < 0 || v == 0)
				return bad_usage("threads '%s' must be 1..%d", optarg, MAX_THREADS);
			srv.nthreads = (unsigned)v;
			break;
		case 'h':
			help();
			return 0;
		case ':':
			return bad_usage("option '%s' needs an argument", argv[optind - 1]);
		default:
			if (optopt)
				return bad_usage("unknown option '-%c' (try --help)", optopt);
			return bad_usage("unknown option '%s' (try --help)", argv[optind - 1]);
		}
	}
	if (optind < argc)
		return bad_usage("unexpected argument '%s' (try --help)", argv[optind]);
	if (address) {
		if (parse_address(&srv, address) < 0)
			return bad_usage("'%s' is not a numeric IPv4 or IPv6 address", address);
	} else {
		/* "::" where the kernel has IPv6 (it serves IPv4 too), else 0.0.0.0. */
		int probe = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);

		parse_address(&srv, probe >= 0 ? "::" : "0.0.0.0");
		if (probe >= 0)
			close(probe);
	}

	raise_nofile();
	/*
	 * Block the stop signals before any thread or reactor exists: every
	 * worker inherits the mask, and fibers never change it afterwards.
	 */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	if (sigprocmask(SIG_BLOCK, &sigs, NULL) < 0 ||
	    (sigfd = signalfd(-1, &sigs, SFD_CLOEXEC | SFD_NONBLOCK)) < 0) {
		perror("iou_port7: signalfd");
		return 1;
	}
	srv.failfd = eventfd(0, EFD_CLOEXEC);
	srv.workers = calloc(srv.nthreads, sizeof(*srv.workers));
	if (srv.failfd < 0 || !srv.workers || mtx_init(&srv.lock, mtx_plain) != thrd_success ||
	    cnd_init(&srv.changed) != thrd_success) {
		fprintf(stderr, "iou_port7: setting up: %s\n", strerror(errno ? errno : ENOMEM));
		return 1;
	}
	for (unsigned i = 0; i < srv.nthreads; i++) {
		struct worker *w = &srv.workers[i];

		*w = (struct worker){ .srv = &srv, .tcp = -1, .udp = -1 };
		w->stopfd = eventfd(0, EFD_CLOEXEC);
		if (w->stopfd < 0) {
			perror("iou_port7: eventfd");
			return 1;
		}
	}

	status = serve(&srv, sigfd);

	for (unsigned i = 0; i < srv.nthreads; i++)
		close(srv.workers[i].stopfd);
	cnd_destroy(&srv.changed);
	mtx_destroy(&srv.lock);
	free(srv.workers);
	close(srv.failfd);
	close(sigfd);
	return status;
}
