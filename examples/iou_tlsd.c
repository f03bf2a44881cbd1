/* SPDX-License-Identifier: MIT */
/*
 * iou_tlsd: a TLS echo server (TCP port 12345 by default): each client gets
 * back, encrypted, every byte it sends, until it sends close_notify, which
 * is answered with close_notify.  The certificate and key are loaded once
 * into one immutable TLS configuration that every thread shares.
 *
 * Threads: each of THREADS workers has its own thread, reactor (pinned to
 * its own CPU by the library) and listening socket bound to the same
 * address and port; with more than one, SO_REUSEPORT lets the kernel
 * spread connections over them.  Worker 0 is the main thread itself, so
 * -t 1 is a single-threaded server.  In a worker, iou_accept_each() gives
 * every connection its own fiber, which runs the handshake and then the
 * echo loop: a client that stalls mid-handshake holds only its own fiber,
 * never the others.
 *
 * Resource policy, for a server that must outlive abusive clients:
 * - A handshake must finish within --handshake-timeout (default 10 s).
 * - A connection that neither sends nor accepts data for --idle-timeout
 *   (default 300 s) gets close_notify and is closed.  The same bound applies
 *   to one echo write: a client that stops reading cannot hold a fiber.
 * - At most --max-conns connections (default 10,000, all threads together,
 *   handshakes included) are served.  Beyond that a new connection is
 *   accepted and closed at once, so its client learns at once instead of
 *   waiting in the kernel's backlog; one line says so, at most once a
 *   second per thread, with the number refused meanwhile.  The soft
 *   RLIMIT_NOFILE is raised to the hard limit at start; at the descriptor
 *   limit iou_accept_each() refuses the excess the same way.
 * - A client that sends garbage or plaintext, resets, closes mid-handshake
 *   or times out is dropped and logged in one line on standard error:
 *   "iou_tlsd: ADDR:PORT: handshake failed: REASON".  -q silences these
 *   per-connection lines.  Every path closes the descriptor and frees the
 *   session.
 *
 * Stopping: SIGINT and SIGTERM (blocked before any thread exists, read from
 * a signalfd by a fiber of the main thread) make main write every worker's
 * stop eventfd.  A worker then stops accepting, drops connections still in
 * their handshake, and interrupts the reads of established ones with
 * iou_cancel_fd(); each connection fiber, seeing the stop, sends
 * close_notify (within FAREWELL) and closes.  Connections that have not
 * finished after GRACE (a client not reading, say) are cancelled outright.
 * Then the worker returns and main exits 0.  A worker that hits a fatal
 * error tells main through another eventfd and everyone stops the same way,
 * with status 1.
 *
 * Exit status: 0 after a signal, 1 on a runtime error (port in use, bad
 * certificate or key), 2 on a usage error.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
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

#define EXAMPLE_NAME "iou_tlsd"
#include "usage.h"
#include <ioucontext/ioucontext.h>
#include <ioucontext/tls.h>

#define DEFAULT_PORT 12345
#define MAX_THREADS 256
#define DEFAULT_HANDSHAKE_TIMEOUT 10.0
#define DEFAULT_IDLE_TIMEOUT 300.0
#define DEFAULT_MAX_CONNS 10000
#define MAX_MAX_CONNS 10000000
/* ALPN protocols served at most. */

/*
 * Plaintext echoed per read: two full TLS records, about what one receive
 * decrypts to, so that an echo usually goes out as one send of two records
 * (with 16 KiB, 16 busy connections ran ~20% slower: twice the sends, and
 * twice the wake-ups of the client).
 */
#define ECHO_BUFFER 32768
/* How long a close_notify may take, at the end of a session or at a stop. */
#define FAREWELL (1 * IOU_SEC)
/* At a stop: how often reads are interrupted again, and when to give up. */
#define KICK_INTERVAL (100 * IOU_MSEC)
#define GRACE (2 * IOU_SEC)
/* At most one "refused" line per thread per this interval. */
#define REFUSE_LOG_INTERVAL (1 * IOU_SEC)

/* With -p 0 a port is picked once, by worker 0; the others bind it. */

/* getopt_long's values for options without a short form. */
enum {
	OPT_CERT = 256,
	OPT_KEY,
	OPT_HANDSHAKE_TIMEOUT,
	OPT_IDLE_TIMEOUT,
	OPT_MAX_CONNS,
	OPT_ALPN,
	OPT_CLIENT_CA,
	OPT_VERSION,
};

/* A worker's start-up state, as main sees it. */
enum {
	WORKER_STARTING = 1,
	WORKER_READY = 0 /* or a -errno: it failed */
};

struct server;
struct worker;

/* A live connection, on its handler fiber's stack. */
struct conn {
	struct conn *prev, *next; /* in the worker's list of live connections */
	struct fiber *fiber;	  /* the handler, to cancel it at a stop */
	int fd;
	bool established;		  /* handshake done: a stop sends close_notify */
	bool reading;			  /* parked in iou_tls_read(): a stop interrupts it */
	char peer[INET6_ADDRSTRLEN + 16]; /* "ADDR:PORT" for the log */
};

/* One worker: its own thread (worker 0: the main thread), reactor, socket. */
struct worker {
	struct server *srv;
	unsigned index;
	thrd_t thread;	  /* workers 1 and up */
	bool started;	  /* thread created: main must join it */
	int stopfd;	  /* eventfd written by main to ask for a stop */
	int status;	  /* WORKER_STARTING, WORKER_READY or -errno (srv->lock) */
	const char *what; /* what failed, for status or error */
	int error;	  /* a fatal error after start-up (-errno), 0 if none */
	uint16_t port;	  /* the port bound (worker 0 learns it for -p 0) */

	/* The rest belongs to the worker thread alone. */
	struct reactor *r;
	int lfd;			  /* the listening socket, -1 when closed */
	struct fiber *acceptor, *stopper; /* joinable */
	struct conn *conns;		  /* live connections */
	bool stopping;			  /* no new connection may start */
	bool stopper_waiting;		  /* the stopper waits for conns to end */
	int64_t refused_at;		  /* when the last "refused" line was logged */
	unsigned long refused_quiet;	  /* refused since, not yet logged */
};

/* What every thread shares. */
struct server {
	struct sockaddr_storage addr; /* where to listen; the port is set per bind */
	socklen_t addrlen;
	char host[NI_MAXHOST]; /* the address as printed */
	uint16_t port;	       /* from -p, or learned from worker 0 */
	unsigned nthreads;
	struct iou_tls_config *cfg; /* immutable: shared by every thread */
	int64_t handshake_ns;	    /* 0: no limit */
	int64_t idle_ns;	    /* 0: no limit */
	double handshake_s, idle_s; /* the same, for messages */
	unsigned long max_conns;
	atomic_ulong live; /* connections being served, all threads */
	bool quiet;	   /* -q: no per-connection lines */
	bool verbose;	   /* -v: a line for every handshake too */
	mtx_t lock;	   /* protects each worker's status */
	cnd_t changed;	   /* a worker's status changed */
	int failfd;	   /* eventfd: some worker failed at run time */
	struct worker *workers;
};

static void help(void)
{
	printf("usage: iou_tlsd --cert FILE --key FILE [OPTION]...\n"
	       "TLS echo server: sends every client back what it sends, encrypted.\n"
	       "\n"
	       "      --cert FILE             certificate chain, leaf first (PEM)\n"
	       "      --key FILE              its private key (PEM: PKCS#8, RSA or EC)\n"
	       "  -a, --address ADDR          numeric IPv4 or IPv6 address to listen on\n"
	       "                              (default ::, which also serves IPv4; 0.0.0.0\n"
	       "                              where the kernel has no IPv6)\n"
	       "  -p, --port PORT             port (default %d); 0 lets the kernel pick one\n"
	       "  -t, --threads N             worker threads, each with its own reactor and\n"
	       "                              socket (default 1, at most %d)\n"
	       "      --handshake-timeout SEC drop a client whose handshake takes longer\n"
	       "                              (default %g; 0: no limit)\n"
	       "      --idle-timeout SEC      close a connection idle that long (default %g;\n"
	       "                              0: no limit)\n"
	       "      --max-conns N           serve at most N connections at once; more are\n"
	       "                              accepted and closed at once (default %d)\n"
	       "      --alpn PROTO            speak application protocol PROTO (ALPN); repeat\n"
	       "                              or separate by commas for several, preferred\n"
	       "                              first; clients offering none of them fail\n"
	       "      --client-ca FILE        require client certificates issued by these CAs\n"
	       "  -q, --quiet                 no line for each dropped connection\n"
	       "  -v, --verbose               a line for each completed handshake too\n"
	       "  -h, --help                  show this help\n"
	       "      --version               show the version\n"
	       "\n"
	       "Prints \"iou_tlsd: listening on ADDR port PORT (tls, N threads)\" when ready\n"
	       "and runs until SIGINT or SIGTERM, which send close_notify to every client.\n"
	       "Exit status: 0 after a signal, 1 runtime error, 2 usage error.\n",
	       DEFAULT_PORT, MAX_THREADS, DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_IDLE_TIMEOUT,
	       DEFAULT_MAX_CONNS);
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

	if (len >= sizeof(buf) || len == 0)
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

/* ---- logging ------------------------------------------------------------------ */

/*
 * One line on standard error, in one write so that lines from several
 * threads never mix.  Through the ring when the fiber may still wait;
 * a cancelled fiber (at a stop) writes directly.
 */
__attribute__((format(printf, 2, 3))) static void log_line(struct reactor *r, const char *fmt, ...)
{
	char line[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n > sizeof(line) - 2)
		n = (int)sizeof(line) - 2;
	line[n++] = '\n';
	if (r && fiber_self(r) && !fiber_cancelled(r)) {
		int64_t old = fiber_set_deadline(r, iou_deadline_after(FAREWELL));

		iou_write_all(r, STDERR_FILENO, line, (size_t)n, NULL);
		fiber_set_deadline(r, old);
	} else if (write(STDERR_FILENO, line, (size_t)n) < 0) {
		/* Nowhere left to say it. */
	}
}

/* Why a session ended, for the log. */
static void log_tls_error(struct worker *w, struct conn *c, struct iou_tls *t, const char *what,
			  int err)
{
	const char *why = t ? iou_tls_reason(t) : "";

	if (w->srv->quiet)
		return;
	if (IOU_IS_ETLS(err) && why[0])
		log_line(w->r, "iou_tlsd: %s: %s: %s (%s)", c->peer, what, iou_strerror(err), why);
	else
		log_line(w->r, "iou_tlsd: %s: %s: %s", c->peer, what, iou_strerror(err));
}

/* "ADDR:PORT" ("[ADDR6]:PORT") of @fd's peer, while it is still connected. */
static void peer_name(int fd, char *buf, size_t size)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	char host[INET6_ADDRSTRLEN];

	if (getpeername(fd, (struct sockaddr *)&ss, &len) < 0)
		ss.ss_family = AF_UNSPEC;
	/* An IPv4 client of a "::" socket is printed as IPv4. */
	if (ss.ss_family == AF_INET6 &&
	    IN6_IS_ADDR_V4MAPPED(&((struct sockaddr_in6 *)&ss)->sin6_addr)) {
		struct sockaddr_in6 six = *(struct sockaddr_in6 *)&ss;
		struct sockaddr_in *four = (struct sockaddr_in *)&ss;

		memset(&ss, 0, sizeof(ss));
		four->sin_family = AF_INET;
		four->sin_port = six.sin6_port;
		memcpy(&four->sin_addr, &six.sin6_addr.s6_addr[12], 4);
	}
	if (ss.ss_family == AF_INET6 &&
	    inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, host, sizeof(host)))
		snprintf(buf, size, "[%s]:%u", host, (unsigned)get_port(&ss));
	else if (ss.ss_family == AF_INET &&
		 inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, host, sizeof(host)))
		snprintf(buf, size, "%s:%u", host, (unsigned)get_port(&ss));
	else
		snprintf(buf, size, "(unknown peer)");
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
	/* A plain write: adding 1 to an eventfd never blocks. */
	if (write(w->srv->failfd, &one, sizeof(one)) < 0)
		perror("iou_tlsd: writing the failure eventfd");
}

static const char *version_name(int v)
{
	return v == 0x0304 ? "TLSv1.3" : v == 0x0303 ? "TLSv1.2" : "TLS?";
}

/* Over --max-conns: say so, at most once a second per thread. */
static void log_refused(struct worker *w, const struct conn *c)
{
	int64_t now = iou_now();

	if (w->srv->quiet)
		return;
	if (w->refused_at && now - w->refused_at < REFUSE_LOG_INTERVAL) {
		w->refused_quiet++;
		return;
	}
	if (w->refused_quiet)
		log_line(w->r,
			 "iou_tlsd: %s: refused: %lu connections open (--max-conns); %lu more "
			 "refused before",
			 c->peer, w->srv->max_conns, w->refused_quiet);
	else
		log_line(w->r, "iou_tlsd: %s: refused: %lu connections open (--max-conns)", c->peer,
			 w->srv->max_conns);
	w->refused_at = now;
	w->refused_quiet = 0;
}

/* Send close_notify within FAREWELL; failures only mean the client left. */
static void farewell(struct reactor *r, struct iou_tls *t)
{
	int64_t old = fiber_set_deadline(r, iou_deadline_after(FAREWELL));

	iou_tls_shutdown(t);
	fiber_set_deadline(r, old);
}

static void set_deadline(struct reactor *r, int64_t ns)
{
	fiber_set_deadline(r, ns ? iou_deadline_after(ns) : IOU_DEADLINE_NEVER);
}

/* The echo loop of an established session; returns when it is over. */
static void echo(struct worker *w, struct conn *c, struct iou_tls *t)
{
	struct server *srv = w->srv;
	struct reactor *r = w->r;
	char buf[ECHO_BUFFER];

	for (;;) {
		ssize_t n;

		if (w->stopping) {
			farewell(r, t);
			return;
		}
		set_deadline(r, srv->idle_ns);
		c->reading = true;
		n = iou_tls_read(t, buf, sizeof(buf));
		c->reading = false;
		if (n == 0) {
			/* The client's close_notify: answer it. */
			farewell(r, t);
			return;
		}
		if (n == -ECANCELED && w->stopping && !fiber_cancelled(r)) {
			/* The stopper interrupted the read (iou_cancel_fd). */
			farewell(r, t);
			return;
		}
		if (n == -ETIMEDOUT) {
			if (!srv->quiet)
				log_line(r, "iou_tlsd: %s: idle for %g s: closing", c->peer,
					 srv->idle_s);
			farewell(r, t);
			return;
		}
		if (n < 0) {
			if (!w->stopping)
				log_tls_error(w, c, t, "receiving", (int)n);
			return;
		}
		set_deadline(r, srv->idle_ns);
		n = iou_tls_write(t, buf, (size_t)n);
		if (n < 0) {
			if (n == -ETIMEDOUT && !srv->quiet)
				log_line(r, "iou_tlsd: %s: not reading its echo for %g s: closing",
					 c->peer, srv->idle_s);
			else if (!w->stopping)
				log_tls_error(w, c, t, "sending", (int)n);
			return;
		}
	}
}

/* One connection: handshake, echo, goodbye; in its own fiber. */
static void serve_conn(struct reactor *r, int fd, void *arg)
{
	struct worker *w = arg;
	struct server *srv = w->srv;
	struct conn c = { .fiber = fiber_self(r), .fd = fd };
	struct iou_tls *t = NULL;
	int on = 1, ret;

	/* Accepted while the worker was being stopped: it missed the stop. */
	if (w->stopping) {
		iou_close(r, fd);
		return;
	}
	peer_name(fd, c.peer, sizeof(c.peer));
	if (atomic_fetch_add(&srv->live, 1) >= srv->max_conns) {
		atomic_fetch_sub(&srv->live, 1);
		log_refused(w, &c);
		iou_close(r, fd);
		return;
	}
	c.next = w->conns;
	if (w->conns)
		w->conns->prev = &c;
	w->conns = &c;

	/* Echoes go out at once; the kernel notices a vanished client host. */
	iou_setsockopt(r, fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
	iou_setsockopt(r, fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof(on));
	ret = iou_tls_server_new(r, srv->cfg, fd, &t);
	if (ret < 0) {
		t = NULL;
		if (!srv->quiet)
			log_line(r, "iou_tlsd: %s: cannot start TLS: %s", c.peer,
				 iou_strerror(ret));
		goto out;
	}
	set_deadline(r, srv->handshake_ns);
	ret = iou_tls_handshake(t);
	if (ret < 0) {
		/* Dropped by a stop, it is not the client's fault: no line. */
		if (w->stopping)
			goto out;
		if (ret == -ETIMEDOUT && !srv->quiet)
			log_line(r, "iou_tlsd: %s: handshake timed out after %g s", c.peer,
				 srv->handshake_s);
		else
			log_tls_error(w, &c, t, "handshake failed", ret);
		goto out;
	}
	c.established = true;
	if (srv->verbose) {
		const char *alpn = iou_tls_alpn(t);
		char subject[256];

		if (iou_tls_peer_subject(t, subject, sizeof(subject)) <= 0)
			snprintf(subject, sizeof(subject), "none");
		log_line(r, "iou_tlsd: %s: %s, cipher %s, ALPN %s, client certificate %s", c.peer,
			 version_name(iou_tls_version(t)), iou_tls_cipher_suite(t),
			 alpn ? alpn : "none", subject);
	}
	echo(w, &c, t);

out:
	if (c.prev)
		c.prev->next = c.next;
	else
		w->conns = c.next;
	if (c.next)
		c.next->prev = c.prev;
	iou_tls_close(t);
	iou_close(r, fd);
	atomic_fetch_sub(&srv->live, 1);
	if (!w->conns && w->stopper_waiting)
		fiber_unpark(w->stopper);
}

static void *accept_loop(void *arg)
{
	struct worker *w = arg;
	const struct fiber_options opts = { .name = "tls" };
	int ret = iou_accept_each(w->r, w->lfd, serve_conn, w, &opts);

	if (ret != -ECANCELED) {
		worker_fail(w, "accepting connections", ret);
		/* The stopper gets main's stop request and ends everything. */
	}
	return NULL;
}

/*
 * Interrupt the reads of established sessions so that their fibers send
 * close_notify.  The descriptors are gathered first: iou_cancel_fd()
 * suspends, and meanwhile connections end and leave the list.
 */
static void kick_readers(struct worker *w)
{
	unsigned n = 0, cap = 0;
	int *fds = NULL;

	for (struct conn *c = w->conns; c; c = c->next) {
		if (c->reading)
			cap++;
	}
	if (!cap || !(fds = malloc(cap * sizeof(*fds))))
		return;
	for (struct conn *c = w->conns; c && n < cap; c = c->next) {
		if (c->reading)
			fds[n++] = c->fd;
	}
	for (unsigned i = 0; i < n; i++)
		iou_cancel_fd(w->r, fds[i]);
	free(fds);
}

/* Waits for main's request to stop, then ends every session cleanly. */
static void *await_stop(void *arg)
{
	struct worker *w = arg;
	int64_t give_up;
	uint64_t value;
	int ret = iou_eventfd_read(w->r, w->stopfd, &value);

	if (ret < 0)
		worker_fail(w, "reading the stop eventfd", ret);
	w->stopping = true;
	fiber_cancel(w->acceptor);
	/* Handshakes in progress owe the client nothing: drop them. */
	for (struct conn *c = w->conns; c; c = c->next) {
		if (!c->established)
			fiber_cancel(c->fiber);
	}
	give_up = iou_deadline_after(GRACE);
	while (w->conns && iou_now() < give_up) {
		int64_t next = iou_deadline_after(KICK_INTERVAL);

		kick_readers(w);
		w->stopper_waiting = true;
		fiber_park(w->r, next < give_up ? next : give_up);
		w->stopper_waiting = false;
	}
	/* Clients that do not let us finish (not reading, say): cut them off. */
	while (w->conns) {
		for (struct conn *c = w->conns; c; c = c->next)
			fiber_cancel(c->fiber);
		w->stopper_waiting = true;
		fiber_park(w->r, iou_deadline_after(KICK_INTERVAL));
		w->stopper_waiting = false;
	}
	return NULL;
}

/* ---- worker set-up --------------------------------------------------------- */

static int open_listener(struct worker *w, uint16_t port)
{
	struct reactor *r = w->r;
	struct sockaddr_storage ss = w->srv->addr;
	socklen_t len = w->srv->addrlen;
	int on = 1, off = 0, ret;

	w->what = "creating a socket";
	ret = iou_socket(r, ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (ret < 0)
		return ret;
	w->lfd = ret;
	/* A restarted server must not wait for old connections' TIME_WAIT. */
	ret = iou_setsockopt(r, w->lfd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
	if (ret >= 0 && w->srv->nthreads > 1)
		ret = iou_setsockopt(r, w->lfd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on));
	/* "::" serves IPv4 too, whatever net.ipv6.bindv6only says. */
	if (ret >= 0 && ss.ss_family == AF_INET6)
		ret = iou_setsockopt(r, w->lfd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof(off));
	if (ret < 0)
		return ret;
	set_port(&ss, port);
	w->what = "binding";
	ret = iou_bind(r, w->lfd, (struct sockaddr *)&ss, len);
	if (ret < 0)
		return ret;
	if (port == 0 && getsockname(w->lfd, (struct sockaddr *)&ss, &len) < 0)
		return -errno;
	w->port = get_port(&ss);
	w->what = "listening";
	return iou_listen(r, w->lfd, SOMAXCONN);
}

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
	ret = open_listener(w, w->srv->port);
	if (ret < 0)
		return ret;
	w->what = "starting a fiber";
	if ((ret = fiber_spawn(w->r, await_stop, w, &w->stopper)) < 0 ||
	    (ret = fiber_spawn(w->r, accept_loop, w, &w->acceptor)) < 0)
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
		fiber_join(w->stopper, NULL);
	}
	if (w->r) {
		if (w->lfd >= 0)
			iou_close(w->r, w->lfd);
		w->lfd = -1;
		reactor_destroy(w->r);
		w->r = NULL;
	}
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
			perror("iou_tlsd: writing a stop eventfd");
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

/* Worker 0 runs on the main thread, next to main's waits. */
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
		fprintf(stderr, "iou_tlsd: %s %s port %u: %s\n", failed->what, srv->host,
			(unsigned)(failed->port ? failed->port : srv->port), strerror(-ret));
		status = 1;
		stop_workers(srv);
	} else {
		printf("iou_tlsd: listening on %s port %u (tls, %u thread%s)\n", srv->host,
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
			fprintf(stderr, "iou_tlsd: worker %u: %s: %s\n", i, w->what,
				iou_strerror(w->error));
			status = 1;
		}
	}
	return status;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "cert", required_argument, NULL, OPT_CERT },
		{ "key", required_argument, NULL, OPT_KEY },
		{ "address", required_argument, NULL, 'a' },
		{ "port", required_argument, NULL, 'p' },
		{ "threads", required_argument, NULL, 't' },
		{ "handshake-timeout", required_argument, NULL, OPT_HANDSHAKE_TIMEOUT },
		{ "idle-timeout", required_argument, NULL, OPT_IDLE_TIMEOUT },
		{ "max-conns", required_argument, NULL, OPT_MAX_CONNS },
		{ "alpn", required_argument, NULL, OPT_ALPN },
		{ "client-ca", required_argument, NULL, OPT_CLIENT_CA },
		{ "quiet", no_argument, NULL, 'q' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, OPT_VERSION },
		{ NULL, 0, NULL, 0 },
	};
	static struct server srv;
	struct iou_tls_server_options opts;
	const char *alpn[MAX_ALPN + 1] = { NULL };
	char *alpn_args[MAX_ALPN + 1];
	unsigned nalpn = 0, nargs = 0;
	const char *address = NULL, *certfile = NULL, *keyfile = NULL, *client_ca = NULL;
	double handshake_s = DEFAULT_HANDSHAKE_TIMEOUT, idle_s = DEFAULT_IDLE_TIMEOUT;
	char why[IOU_TLS_REASON_MAX];
	unsigned long v;
	sigset_t sigs;
	int c, sigfd = -1, status = 2;

	srv.port = DEFAULT_PORT;
	srv.nthreads = 1;
	srv.failfd = -1;
	srv.max_conns = DEFAULT_MAX_CONNS;
	opterr = 0; /* one line of our own instead of getopt's message */
	while ((c = getopt_long(argc, argv, ":a:p:t:qvh", longopts, NULL)) != -1) {
		switch (c) {
		case OPT_CERT:
			certfile = optarg;
			break;
		case OPT_KEY:
			keyfile = optarg;
			break;
		case 'a':
			address = optarg;
			break;
		case 'p':
			if (parse_uint(optarg, 65535, &v) < 0) {
				bad_usage("port '%s' must be 0..65535", optarg);
				goto out;
			}
			srv.port = (uint16_t)v;
			break;
		case 't':
			if (parse_uint(optarg, MAX_THREADS, &v) < 0 || v == 0) {
				bad_usage("threads '%s' must be 1..%d", optarg, MAX_THREADS);
				goto out;
			}
			srv.nthreads = (unsigned)v;
			break;
		case OPT_HANDSHAKE_TIMEOUT:
			if (parse_seconds("--handshake-timeout", optarg, &handshake_s))
				goto out;
			break;
		case OPT_IDLE_TIMEOUT:
			if (parse_seconds("--idle-timeout", optarg, &idle_s))
				goto out;
			break;
		case OPT_MAX_CONNS:
			if (parse_uint(optarg, MAX_MAX_CONNS, &v) < 0 || v == 0) {
				bad_usage("--max-conns '%s' must be 1..%d", optarg, MAX_MAX_CONNS);
				goto out;
			}
			srv.max_conns = v;
			break;
		case OPT_ALPN:
			if (nargs == MAX_ALPN) {
				bad_usage("--alpn: more than %d protocols", MAX_ALPN);
				goto out;
			}
			alpn_args[nargs] = strdup(optarg);
			if (!alpn_args[nargs] || add_alpn(alpn_args[nargs++], alpn, &nalpn))
				goto out;
			break;
		case OPT_CLIENT_CA:
			client_ca = optarg;
			break;
		case 'q':
			srv.quiet = true;
			break;
		case 'v':
			srv.verbose = true;
			break;
		case 'h':
			help();
			status = fflush(stdout) ? 1 : 0;
			goto out;
		case OPT_VERSION:
			printf("iou_tlsd (ioucontext) %s\n", IOU_VERSION_STRING);
			status = fflush(stdout) ? 1 : 0;
			goto out;
		case ':':
			bad_usage("option '%s' needs an argument", argv[optind - 1]);
			goto out;
		default:
			if (optopt)
				bad_usage("unknown option '-%c'", optopt);
			else
				bad_usage("unknown option '%s'", argv[optind - 1]);
			goto out;
		}
	}
	if (optind < argc) {
		bad_usage("unexpected argument '%s'", argv[optind]);
		goto out;
	}
	if (!certfile || !keyfile) {
		bad_usage("--cert FILE and --key FILE are required");
		goto out;
	}
	if (srv.quiet && srv.verbose) {
		bad_usage("-q and -v exclude each other");
		goto out;
	}
	if (address) {
		if (parse_address(&srv, address) < 0) {
			bad_usage("'%s' is not a numeric IPv4 or IPv6 address", address);
			goto out;
		}
	} else {
		/* "::" where the kernel has IPv6 (it serves IPv4 too), else 0.0.0.0. */
		int probe = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);

		parse_address(&srv, probe >= 0 ? "::" : "0.0.0.0");
		if (probe >= 0)
			close(probe);
	}
	srv.handshake_s = handshake_s;
	srv.handshake_ns = handshake_s > 0 ? llround(handshake_s * 1e9) : 0;
	srv.idle_s = idle_s;
	srv.idle_ns = idle_s > 0 ? llround(idle_s * 1e9) : 0;

	status = 1;
	iou_tls_server_options_init(&opts);
	opts.certfile = certfile;
	opts.keyfile = keyfile;
	opts.client_cafile = client_ca;
	opts.alpn = nalpn ? alpn : NULL;
	why[0] = '\0';
	c = iou_tls_server_config_new(&opts, &srv.cfg, why, sizeof(why));
	if (c < 0) {
		/* The reason names the file and what was wrong with it. */
		fprintf(stderr, "iou_tlsd: cannot load the TLS configuration: %s\n",
			why[0] ? why : iou_strerror(c));
		srv.cfg = NULL;
		goto out;
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
		perror("iou_tlsd: signalfd");
		goto out;
	}
	/* Logging to a closed pipe must not kill the server. */
	signal(SIGPIPE, SIG_IGN);
	atomic_init(&srv.live, 0);
	srv.failfd = eventfd(0, EFD_CLOEXEC);
	srv.workers = calloc(srv.nthreads, sizeof(*srv.workers));
	if (srv.failfd < 0 || !srv.workers || mtx_init(&srv.lock, mtx_plain) != thrd_success ||
	    cnd_init(&srv.changed) != thrd_success) {
		fprintf(stderr, "iou_tlsd: setting up: %s\n", strerror(errno ? errno : ENOMEM));
		goto out;
	}
	for (unsigned i = 0; i < srv.nthreads; i++) {
		struct worker *w = &srv.workers[i];

		*w = (struct worker){ .srv = &srv, .index = i, .lfd = -1 };
		w->stopfd = eventfd(0, EFD_CLOEXEC);
		if (w->stopfd < 0) {
			perror("iou_tlsd: eventfd");
			goto out;
		}
	}

	status = serve(&srv, sigfd);

	for (unsigned i = 0; i < srv.nthreads; i++)
		close(srv.workers[i].stopfd);
	cnd_destroy(&srv.changed);
	mtx_destroy(&srv.lock);
out:
	free(srv.workers);
	if (srv.failfd >= 0)
		close(srv.failfd);
	if (sigfd >= 0)
		close(sigfd);
	iou_tls_config_free(srv.cfg);
	for (unsigned i = 0; i < nargs; i++)
		free(alpn_args[i]);
	return status;
}
