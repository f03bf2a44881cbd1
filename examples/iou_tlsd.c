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
 * spread connections over them.  Worker 0 is the main thread itself,
 * workers 1 and up are a reactor group, so -t 1 is a single-threaded
 * server; starting, watching and stopping them is the skeleton of
 * workers.h.  In a worker, iou_accept_each() gives every connection its own
 * fiber, which runs the handshake and then the echo loop: a client that
 * stalls mid-handshake holds only its own fiber, never the others.
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
 *   limit iou_accept_each_with() refuses the excess the same way, as it
 *   does a connection whose fiber gets no stack (out of memory), and says
 *   so at most once a second per thread, -q or not: "iou_tlsd: worker N:
 *   refusing connections: REASON; N refused".
 * - A client that sends garbage or plaintext, resets, closes mid-handshake
 *   or times out is dropped and logged in one line on standard error:
 *   "iou_tlsd: ADDR:PORT: handshake failed: REASON".  -q silences these
 *   per-connection lines.  Every path closes the descriptor and frees the
 *   session.
 *
 * Stopping: SIGINT and SIGTERM (blocked before any thread exists, read from
 * a signalfd by a fiber of the main thread) make main run every worker's
 * stop_worker() on that worker's thread (a call posted to its reactor),
 * which wakes the worker's stopper fiber.  The worker then stops accepting,
 * drops connections still in their handshake, and interrupts the reads of
 * established ones with iou_cancel_fd(); each connection fiber, seeing the
 * stop, sends close_notify (within FAREWELL) and closes.  Connections that
 * have not finished after GRACE (a client not reading, say) are cancelled
 * outright.  Then the worker returns and main exits 0.  A worker that hits
 * a fatal error tells main (a posted call) and everyone stops the same way,
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
#include <sys/socket.h>
#include <unistd.h>

#define EXAMPLE_NAME "iou_tlsd"
#include "usage.h"
#include "workers.h"
#include <ioucontext/ioucontext.h>
#include <ioucontext/tls.h>

#define DEFAULT_PORT 12345
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
/* How long a close_notify may take at a stop or after an idle timeout. */
#define FAREWELL (1 * IOU_SEC)
/* At a stop: how often reads are interrupted again, and when to give up. */
#define KICK_INTERVAL (100 * IOU_MSEC)
#define GRACE (2 * IOU_SEC)
/* At most one "refused" line per thread per this interval. */
#define REFUSE_LOG_INTERVAL (1 * IOU_SEC)

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
	struct worker_slot *slot; /* the skeleton's record: index, what failed */

	/* The rest belongs to the worker thread alone. */
	struct reactor *r;
	int lfd;			  /* the listening socket, -1 when closed */
	struct fiber *acceptor, *stopper; /* workers_spawn()'s */
	struct conn *conns;		  /* live connections */
	bool stopping;			  /* asked to stop: no new connection may start */
	bool stopper_waiting;		  /* the stopper waits for conns to end */
	int64_t refused_at;		  /* when the last "refused" line was logged */
	unsigned long refused_quiet;	  /* refused since, not yet logged */
};

/* What every thread shares. */
struct server {
	struct workers ws;	    /* address, port, threads: the skeleton's */
	struct iou_tls_config *cfg; /* immutable: shared by every thread */
	int64_t handshake_ns;	    /* 0: no limit */
	int64_t idle_ns;	    /* 0: no limit */
	double handshake_s, idle_s; /* the same, for messages */
	unsigned long max_conns;
	atomic_ulong live; /* connections being served, all threads */
	bool quiet;	   /* -q: no per-connection lines */
	bool verbose;	   /* -v: a line for every handshake too */
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
			/*
			 * The client's close_notify: answer it.  The answer
			 * queues behind the echoes the client has yet to read,
			 * so it gets as long as any echo (--idle-timeout), not
			 * the FAREWELL of a stop.  Other failures only mean
			 * that the client has gone.
			 */
			set_deadline(r, srv->idle_ns);
			if (iou_tls_shutdown(t) == -ETIMEDOUT && !srv->quiet)
				log_line(r, "iou_tlsd: %s: not reading its echo for %g s: closing",
					 c->peer, srv->idle_s);
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
	const struct fiber_options fo = { .name = "tls" };
	const struct iou_accept_options opts = { .fiber = &fo, .refused = refused };
	int ret = iou_accept_each_with(w->r, w->lfd, serve_conn, w, &opts);

	if (ret != -ECANCELED) {
		workers_fail(w->slot, "accepting connections", ret);
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

/* Waits for main's request to stop (stop_worker()), then ends every session cleanly. */
static void *await_stop(void *arg)
{
	struct worker *w = arg;
	int64_t give_up;

	while (!w->stopping) {
		int ret = fiber_park(w->r, IOU_DEADLINE_NEVER);

		if (ret < 0) {
			workers_fail(w->slot, "waiting for the stop request", ret);
			break;
		}
	}
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

/* ---- worker set-up (the hooks of workers.h) ---------------------------------- */

static int open_listener(struct worker *w, uint16_t port)
{
	struct worker_slot *s = w->slot;
	struct reactor *r = w->r;
	struct sockaddr_storage ss = s->ws->addr;
	socklen_t len = s->ws->addrlen;
	int on = 1, off = 0, ret;

	s->what = "creating a socket";
	ret = iou_socket(r, ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (ret < 0)
		return ret;
	w->lfd = ret;
	/* A restarted server must not wait for old connections' TIME_WAIT. */
	ret = iou_setsockopt(r, w->lfd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
	if (ret >= 0 && s->ws->n > 1)
		ret = iou_setsockopt(r, w->lfd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on));
	/* "::" serves IPv4 too, whatever net.ipv6.bindv6only says. */
	if (ret >= 0 && ss.ss_family == AF_INET6)
		ret = iou_setsockopt(r, w->lfd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof(off));
	if (ret < 0)
		return ret;
	set_port(&ss, port);
	s->what = "binding";
	ret = iou_bind(r, w->lfd, (struct sockaddr *)&ss, len);
	if (ret < 0)
		return ret;
	if (port == 0 && getsockname(w->lfd, (struct sockaddr *)&ss, &len) < 0)
		return -errno;
	s->port = get_port(&ss);
	s->what = "listening";
	return iou_listen(r, w->lfd, SOMAXCONN);
}

static int worker_setup(struct worker_slot *s)
{
	struct worker *w = s->data;
	int ret;

	w->r = s->r;
	ret = open_listener(w, s->ws->port);
	if (ret < 0)
		return ret;
	s->what = "starting a fiber";
	if ((ret = workers_spawn(s, await_stop, w, &w->stopper)) < 0 ||
	    (ret = workers_spawn(s, accept_loop, w, &w->acceptor)) < 0)
		return ret;
	return 0;
}

/* Main's request to stop, run on the worker's thread: the stopper takes over. */
static void stop_worker(struct worker_slot *s)
{
	struct worker *w = s->data;

	w->stopping = true;
	if (w->stopper)
		fiber_unpark(w->stopper);
}

/* Close the listening socket once the worker's fibers are over. */
static void worker_finish(struct worker_slot *s)
{
	struct worker *w = s->data;

	if (w->lfd >= 0)
		iou_close(w->r, w->lfd);
	w->lfd = -1;
}

/* ---- main thread ------------------------------------------------------------ */

/* What the command line says besides what goes into struct server. */
struct args {
	const char *certfile, *keyfile, *client_ca;
	const char *alpn[MAX_ALPN + 1]; /* NULL-terminated, into alpn_args */
	char *alpn_args[MAX_ALPN + 1];	/* the --alpn values, strdup'd */
	unsigned nalpn, nargs;
};

/* Free what parse_args() allocated, whatever it returned. */
static void free_args(struct args *a)
{
	for (unsigned i = 0; i < a->nargs; i++)
		free(a->alpn_args[i]);
	a->nargs = 0;
}

/* parse_args()'s value when the program should go on and run. */
#define ARGS_RUN (-1)

/*
 * The command line into @srv (address, port, threads, limits, -q, -v) and
 * @a (files, ALPN; free_args() frees it afterwards, whatever the return).
 * Return: ARGS_RUN to go on, or the exit status to end with now (0 after
 * --help or --version, 1 if printing them failed, 2 on a usage error, its
 * message printed).
 */
static int parse_args(int argc, char **argv, struct server *srv, struct args *a)
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
	const char *address = NULL;
	double handshake_s = DEFAULT_HANDSHAKE_TIMEOUT, idle_s = DEFAULT_IDLE_TIMEOUT;
	unsigned long v;
	int c;

	srv->ws.port = DEFAULT_PORT;
	srv->ws.n = 1;
	srv->max_conns = DEFAULT_MAX_CONNS;
	opterr = 0; /* one line of our own instead of getopt's message */
	while ((c = getopt_long(argc, argv, ":a:p:t:qvh", longopts, NULL)) != -1) {
		switch (c) {
		case OPT_CERT:
			a->certfile = optarg;
			break;
		case OPT_KEY:
			a->keyfile = optarg;
			break;
		case 'a':
			address = optarg;
			break;
		case 'p':
			if (parse_uint(optarg, 65535, &v) < 0)
				return bad_usage("port '%s' must be 0..65535", optarg);
			srv->ws.port = (uint16_t)v;
			break;
		case 't':
			if (parse_uint(optarg, MAX_THREADS, &v) < 0 || v == 0)
				return bad_usage("threads '%s' must be 1..%d", optarg, MAX_THREADS);
			srv->ws.n = (unsigned)v;
			break;
		case OPT_HANDSHAKE_TIMEOUT:
			if (parse_seconds("--handshake-timeout", optarg, &handshake_s))
				return 2;
			break;
		case OPT_IDLE_TIMEOUT:
			if (parse_seconds("--idle-timeout", optarg, &idle_s))
				return 2;
			break;
		case OPT_MAX_CONNS:
			if (parse_uint(optarg, MAX_MAX_CONNS, &v) < 0 || v == 0)
				return bad_usage("--max-conns '%s' must be 1..%d", optarg,
						 MAX_MAX_CONNS);
			srv->max_conns = v;
			break;
		case OPT_ALPN:
			if (a->nargs == MAX_ALPN)
				return bad_usage("--alpn: more than %d protocols", MAX_ALPN);
			a->alpn_args[a->nargs] = strdup(optarg);
			if (!a->alpn_args[a->nargs])
				return bad_usage("out of memory");
			if (add_alpn(a->alpn_args[a->nargs++], a->alpn, &a->nalpn))
				return 2;
			break;
		case OPT_CLIENT_CA:
			a->client_ca = optarg;
			break;
		case 'q':
			srv->quiet = true;
			break;
		case 'v':
			srv->verbose = true;
			break;
		case 'h':
			help();
			return fflush(stdout) ? 1 : 0;
		case OPT_VERSION:
			printf("iou_tlsd (ioucontext) %s\n", IOU_VERSION_STRING);
			return fflush(stdout) ? 1 : 0;
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
	if (!a->certfile || !a->keyfile)
		return bad_usage("--cert FILE and --key FILE are required");
	if (srv->quiet && srv->verbose)
		return bad_usage("-q and -v exclude each other");
	/* Without -a, the default ("::" or 0.0.0.0) always parses. */
	if (workers_address(&srv->ws, address) < 0)
		return bad_usage("'%s' is not a numeric IPv4 or IPv6 address", address);
	srv->handshake_s = handshake_s;
	srv->handshake_ns = handshake_s > 0 ? llround(handshake_s * 1e9) : 0;
	srv->idle_s = idle_s;
	srv->idle_ns = idle_s > 0 ? llround(idle_s * 1e9) : 0;
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
	static struct server srv;
	struct args a = { .nargs = 0 };
	struct iou_tls_server_options opts;
	char why[IOU_TLS_REASON_MAX];
	int c, status;

	srv.ws.ops = &ops;
	srv.ws.proto = "tls";
	if ((status = parse_args(argc, argv, &srv, &a)) != ARGS_RUN)
		goto out;

	status = 1;
	iou_tls_server_options_init(&opts);
	opts.certfile = a.certfile;
	opts.keyfile = a.keyfile;
	opts.client_cafile = a.client_ca;
	opts.alpn = a.nalpn ? a.alpn : NULL;
	why[0] = '\0';
	c = iou_tls_server_config_new(&opts, &srv.cfg, why, sizeof(why));
	if (c < 0) {
		/* The reason names the file and what was wrong with it. */
		fprintf(stderr, "iou_tlsd: cannot load the TLS configuration: %s\n",
			why[0] ? why : iou_strerror(c));
		srv.cfg = NULL;
		goto out;
	}

	/* Logging to a closed pipe must not kill the server. */
	signal(SIGPIPE, SIG_IGN);
	atomic_init(&srv.live, 0);
	srv.workers = calloc(srv.ws.n, sizeof(*srv.workers));
	if (!srv.workers) {
		fprintf(stderr, "iou_tlsd: setting up: %s\n", strerror(ENOMEM));
		goto out;
	}
	for (unsigned i = 0; i < srv.ws.n; i++) {
		srv.workers[i] = (struct worker){ .srv = &srv, .slot = &srv.ws.slot[i], .lfd = -1 };
		srv.ws.slot[i].data = &srv.workers[i];
	}
	status = workers_serve(&srv.ws);
out:
	free(srv.workers);
	iou_tls_config_free(srv.cfg);
	free_args(&a);
	return status;
}
#endif
