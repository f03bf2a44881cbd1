/* SPDX-License-Identifier: MIT */
/*
 * The skeleton the example servers (iou_port7, iou_tlsd) share: THREADS
 * workers, each with its own reactor (pinned to its own CPU by the
 * library) and its own sockets bound to one address and port, started,
 * watched and stopped by the main thread.  The example plugs in three
 * hooks (struct workers_ops): set a worker up (its fibers spawned with
 * workers_spawn(), which the skeleton joins), make its fibers end, release
 * what it made.  Header-only; define EXAMPLE_NAME (the program's name, for
 * messages) before including it.
 *
 * Worker 0 is the main thread itself, so -t 1 is a single-threaded server;
 * workers 1 and up are a reactor group (<ioucontext/thread.h>) whose
 * members serve their mailboxes (reactor_serve()) until told to stop.
 * workers_serve() raises the soft RLIMIT_NOFILE to the hard limit, blocks
 * SIGINT and SIGTERM before any thread or reactor exists (every thread
 * inherits the mask), and sets worker 0 up first: with port 0 it learns the
 * kernel's pick, which the others then bind.  It then starts the group and
 * runs each member's set-up there as a fiber (fiber_spawn_on()), joining
 * each in turn.  When all are up it prints one line, "NAME: listening on
 * ADDR port PORT (PROTO, N threads)"; if one failed, everyone is stopped,
 * the first failure is printed instead and the exit status is 1.
 *
 * Stopping: a fiber of main's reactor reads SIGINT or SIGTERM from a
 * signalfd, runs worker 0's stop hook and posts every member a call that
 * runs its stop hook there, then reactor_stop().  A worker that hits a
 * fatal error calls workers_fail(), which posts to main's reactor, and
 * everyone stops the same way; the exit status is then 1.  Main runs its
 * reactor until worker 0's fibers have ended, tears it down and joins the
 * group.  A request to stop that comes while workers are still being set
 * up waits until all are: a stop hook never runs before its worker's
 * set-up has finished.
 */
#ifndef EXAMPLES_WORKERS_H
#define EXAMPLES_WORKERS_H

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "signals.h"
#include <ioucontext/ioucontext.h>

#ifndef EXAMPLE_NAME
#error "define EXAMPLE_NAME before including workers.h"
#endif

/* Workers (-t) at most. */
#define MAX_THREADS 256

/* Fibers a worker may spawn with workers_spawn(). */
#define WORKERS_FIBERS 4

struct workers;

/* One worker, as the skeleton sees it. */
struct worker_slot {
	struct workers *ws; /* the server it belongs to */
	unsigned index;	    /* 0: the main thread's */
	void *data;	    /* the example's own worker: set before workers_serve() */
	struct reactor *r;  /* its reactor, set before the start hook runs */
	uint16_t port;	    /* the port it bound: set by the start hook */
	const char *what;   /* start-up: the step under way, named if it fails */
	int status;	    /* start-up: 0, or the -errno it failed with (main's) */
	const char *fault;  /* run time: what failed first (workers_fail()) */
	int error;	    /* run time: that -errno, 0 if none */
	struct fiber *fibers[WORKERS_FIBERS]; /* workers_spawn()'s, joined at the end */
	unsigned nfibers;
	int64_t refused_at;	     /* run time: when refusals were last logged */
	unsigned long refused_quiet; /* refused since then, not yet logged */
};

/* What the example plugs in.  Each hook runs on the worker's own thread. */
struct workers_ops {
	/*
	 * Set the worker up on s->r: open its sockets, bound to ws->addr and
	 * port ws->port (0: the kernel's pick; set s->port to the port
	 * bound), and spawn its fibers with workers_spawn().  May suspend
	 * (worker 0: in the main thread's own context; the others: in a
	 * fiber).  On failure return a -errno with s->what naming the step;
	 * the other hooks still run.
	 */
	int (*start)(struct worker_slot *s);
	/*
	 * Make the worker's fibers end.  They may not have run yet; after a
	 * failed start only some may exist, or none.  Runs in a posted call
	 * or on the main thread's reactor: must not suspend.  May run twice.
	 */
	void (*stop)(struct worker_slot *s);
	/*
	 * Release what start made (sockets, buffers) once the worker's fibers
	 * are over, even if start never ran or failed half-way.
	 */
	void (*finish)(struct worker_slot *s);
};

/* The server: what the example sets before workers_serve(), then main's state. */
struct workers {
	const struct workers_ops *ops;
	const char *proto;	      /* "tcp+udp", "tls": for the listening line */
	unsigned n;		      /* workers, 1 to MAX_THREADS */
	struct sockaddr_storage addr; /* where to listen; each bind sets the port */
	socklen_t addrlen;
	char host[NI_MAXHOST]; /* the address as printed */
	uint16_t port;	       /* from -p; 0: worker 0's pick, learned */
	struct worker_slot slot[MAX_THREADS];

	/* The rest belongs to the main thread. */
	struct reactor *r;	     /* main's reactor, worker 0's */
	struct reactor_ref *home;    /* a handle on it for the members (n > 1) */
	struct reactor_group *group; /* workers 1 and up */
	int sigfd;
	struct fiber *signal; /* reads sigfd */
	bool up;	      /* set-up over: a stop request acts at once */
	bool stop_wanted;     /* a stop was asked for during set-up */
	bool stopping;	      /* the stop requests have gone out */
};

/* ---- options ---------------------------------------------------------------- */

/*
 * -a: a numeric address, optionally in brackets ("[::1]"), into ws->addr.
 * NULL: "::" where the kernel has IPv6 (it serves IPv4 too), else 0.0.0.0.
 */
static inline int workers_address(struct workers *ws, const char *text)
{
	struct addrinfo hints = {
		.ai_flags = AI_NUMERICHOST | AI_PASSIVE,
		.ai_socktype = SOCK_STREAM,
	};
	struct addrinfo *res;
	char buf[256];
	size_t len;

	if (!text) {
		int probe = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);

		if (probe >= 0)
			close(probe);
		text = probe >= 0 ? "::" : "0.0.0.0";
	}
	len = strlen(text);
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
	memcpy(&ws->addr, res->ai_addr, res->ai_addrlen);
	ws->addrlen = res->ai_addrlen;
	freeaddrinfo(res);
	/* Printed as the kernel will see it ("::ffff:1.2.3.4", "fe80::1%lo"). */
	if (getnameinfo((struct sockaddr *)&ws->addr, ws->addrlen, ws->host, sizeof(ws->host), NULL,
			0, NI_NUMERICHOST) != 0)
		return -EINVAL;
	return 0;
}

static inline void set_port(struct sockaddr_storage *ss, uint16_t port)
{
	if (ss->ss_family == AF_INET6)
		((struct sockaddr_in6 *)ss)->sin6_port = htons(port);
	else
		((struct sockaddr_in *)ss)->sin_port = htons(port);
}

static inline uint16_t get_port(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET6)
		return ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
	return ntohs(((const struct sockaddr_in *)ss)->sin_port);
}

/*
 * Spawn a fiber of worker @s, from its start hook; *@out (may be NULL)
 * receives the handle, valid until the skeleton joins the fiber after the
 * worker's reactor has stopped.  Return: 0, or fiber_spawn()'s -errno.
 */
static inline int workers_spawn(struct worker_slot *s, fiber_fn *fn, void *arg, struct fiber **out)
{
	int ret;

	if (s->nfibers == WORKERS_FIBERS)
		return -ENOSPC;
	ret = fiber_spawn(s->r, fn, arg, &s->fibers[s->nfibers]);
	if (ret < 0)
		return ret;
	if (out)
		*out = s->fibers[s->nfibers];
	s->nfibers++;
	return 0;
}

/*
 * After worker @s's reactor has stopped: if every fiber finished (@ran),
 * joining them only frees their handles; otherwise the reactor's teardown,
 * which comes next, discards them unresumed.  Then the finish hook.
 */
static inline void workers_finish(struct worker_slot *s, bool ran)
{
	for (unsigned i = 0; ran && i < s->nfibers; i++)
		fiber_join(s->fibers[i], NULL);
	s->nfibers = 0;
	s->ws->ops->finish(s);
}

/* ---- stopping ------------------------------------------------------------------- */

/* A member's stop request, posted by main, run on the member's thread. */
static inline void workers_stop_call(struct reactor *r, void *arg, int status)
{
	struct worker_slot *s = arg;

	(void)r;
	if (status == 0)
		s->ws->ops->stop(s);
}

/*
 * Ask every worker to stop, once; during set-up, only note it.  Main's
 * thread; never suspends.  The posts cannot find a lane full: main sends
 * each member only its start-up fiber, one stop call and reactor_stop().
 */
static inline void workers_stop(struct workers *ws)
{
	unsigned members = reactor_group_size(ws->group);

	if (!ws->up) {
		ws->stop_wanted = true;
		return;
	}
	if (ws->stopping)
		return;
	ws->stopping = true;
	if (ws->signal)
		fiber_cancel(ws->signal);
	ws->ops->stop(&ws->slot[0]);
	for (unsigned i = 1; i <= members; i++) {
		struct reactor_ref *to = reactor_group_ref(ws->group, i - 1);
		/* Its stop hook first, then the end of its reactor_serve(). */
		int ret = reactor_post_try(ws->r, to, workers_stop_call, &ws->slot[i]);

		if (ret == 0)
			ret = reactor_stop(ws->r, to);
		/* -ESHUTDOWN: its reactor is gone (it never had one, or it failed). */
		if (ret < 0 && ret != -ESHUTDOWN)
			fprintf(stderr, EXAMPLE_NAME ": asking worker %u to stop: %s\n", i,
				iou_strerror(ret));
	}
}

/*
 * Connections worker @s refused: @n for error @err, either in the accept
 * loop (iou_accept_each_with()'s callback, which the example forwards with
 * @why NULL: at the descriptor limit or without memory for a connection
 * fiber), or in a connection's fiber (@why says what failed).  One line on
 * standard error, at most once a second per worker, counting the refusals
 * since the last line.  Never suspends (a plain write(2)).
 */
static inline void workers_refused(struct worker_slot *s, int err, unsigned n, const char *why)
{
	int64_t t = iou_now();
	char line[256], limit[64] = "";
	struct rlimit rl;
	int len;

	s->refused_quiet += n;
	if (!s->refused_quiet || (s->refused_at && t - s->refused_at < IOU_SEC))
		return;
	if (why)
		snprintf(limit, sizeof(limit), " (%s)", why);
	else if (err == -EMFILE && getrlimit(RLIMIT_NOFILE, &rl) == 0)
		snprintf(limit, sizeof(limit), " (descriptor limit %llu)",
			 (unsigned long long)rl.rlim_cur);
	else if (err == -ENOMEM)
		snprintf(limit, sizeof(limit), " (no memory for a connection fiber)");
	len = snprintf(line, sizeof(line),
		       EXAMPLE_NAME ": worker %u: refusing connections: %s%s; %lu refused\n",
		       s->index, iou_strerror(err), limit, s->refused_quiet);
	if (len > 0 && write(STDERR_FILENO, line, (size_t)len) < 0) {
		/* Nowhere left to say it. */
	}
	s->refused_at = t;
	s->refused_quiet = 0;
}

/* A member's fatal error, posted to main. */
static inline void workers_failed_call(struct reactor *r, void *arg, int status)
{
	(void)r;
	if (status == 0)
		workers_stop(arg);
}

/*
 * Worker @s's fatal error @err (a -errno) in @what: record the first one
 * (main prints it at the end and exits 1) and have main stop everyone.
 * The worker's thread, in a fiber or not; never suspends.
 */
static inline void workers_fail(struct worker_slot *s, const char *what, int err)
{
	int ret;

	if (s->error)
		return;
	s->error = err;
	s->fault = what;
	if (s->index == 0) {
		workers_stop(s->ws);
		return;
	}
	ret = reactor_post_try(s->r, s->ws->home, workers_failed_call, s->ws);
	/* -ESHUTDOWN: main has torn its reactor down, so it is stopping us anyway. */
	if (ret < 0 && ret != -ESHUTDOWN)
		fprintf(stderr, EXAMPLE_NAME ": worker %u: telling the main thread: %s\n", s->index,
			iou_strerror(ret));
}

/* Main's fiber: waits for SIGINT or SIGTERM (or a stop, which cancels it). */
static inline void *workers_await_signal(void *arg)
{
	struct workers *ws = arg;
	struct signalfd_siginfo si;
	ssize_t ret = example_read_signal(ws->r, ws->sigfd, &si);

	if (ret < 0 && ret != -ECANCELED)
		workers_fail(&ws->slot[0], "reading the signalfd", (int)ret);
	workers_stop(ws);
	return NULL;
}

/* ---- starting --------------------------------------------------------------------- */

/* A member's start-up, as a fiber on its reactor; returns the start hook's result. */
static inline void *workers_start_member(void *arg)
{
	struct worker_slot *s = arg;

	return (void *)(intptr_t)s->ws->ops->start(s);
}

/* The body of workers 1 and up: serve what main posts until it says stop. */
static inline int workers_member(struct reactor *r, unsigned index, void *arg)
{
	struct workers *ws = arg;
	struct worker_slot *s = &ws->slot[index + 1];
	int ret;

	s->r = r;
	ret = reactor_serve(r);
	if (ret < 0)
		workers_fail(s, "running the reactor", ret);
	workers_finish(s, ret == 0);
	return ret < 0 ? ret : 0;
}

/* Start workers 1 and up and wait for each one's set-up. */
static inline void workers_start_members(struct workers *ws)
{
	const struct fiber_options opts = { .name = "start" };
	struct fiber_remote *start[MAX_THREADS] = { NULL };
	int ret;

	ws->slot[1].what = "creating a mailbox";
	ret = reactor_ref_get(ws->r, &ws->home);
	if (ret == 0) {
		ws->slot[1].what = "creating a thread";
		ret = reactor_group_start(ws->n - 1, workers_member, ws, &ws->group);
	}
	if (ret < 0) {
		ws->slot[1].status = ret;
		return;
	}
	for (unsigned i = 1; i < ws->n; i++) {
		struct reactor_ref *to = reactor_group_ref(ws->group, i - 1);
		struct worker_slot *s = &ws->slot[i];

		s->what = "starting a fiber";
		s->status = fiber_spawn_on(ws->r, to, &opts, workers_start_member, s, &start[i]);
	}
	for (unsigned i = 1; i < ws->n; i++) {
		struct worker_slot *s = &ws->slot[i];
		void *result = NULL;

		if (s->status == 0) {
			ret = fiber_remote_join(start[i], &result);
			s->status = ret < 0 ? ret : (int)(intptr_t)result;
		}
		/* Its reactor went first: workers_report() learns why from the group. */
		if (s->status == -ESHUTDOWN)
			s->what = "creating the reactor";
	}
}

/* Set worker 0 up here, then the others on their threads; 0 or -errno. */
static inline int workers_start(struct workers *ws)
{
	struct worker_slot *w0 = &ws->slot[0];
	int ret;

	w0->r = reactor_get();
	if (!w0->r) {
		/* reactor_get() says only NULL; creating it again tells why. */
		w0->what = "creating the reactor";
		ret = reactor_create(NULL, &w0->r);
		if (ret < 0)
			return w0->status = ret;
	}
	ws->r = w0->r;
	w0->status = ws->ops->start(w0);
	if (w0->status < 0)
		return w0->status;
	if (ws->port == 0)
		ws->port = w0->port; /* the others bind the port the first one got */
	if (ws->n > 1)
		workers_start_members(ws);
	for (unsigned i = 1; i < ws->n; i++)
		if (ws->slot[i].status < 0)
			return ws->slot[i].status;
	return 0;
}

/* ---- main ------------------------------------------------------------------------- */

/* Many clients at once need many descriptors: take all we are allowed. */
static inline void raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

/* What went wrong, on standard error; the exit status: 0 or 1. */
static inline int workers_report(struct workers *ws, const int *results)
{
	int status = 0;

	for (unsigned i = 0; i < ws->n; i++) {
		struct worker_slot *s = &ws->slot[i];

		if (s->status >= 0)
			continue;
		/* A member whose reactor went before its set-up ran: the group knows why. */
		if (s->status == -ESHUTDOWN && i > 0 && results[i - 1] < 0) {
			s->status = results[i - 1];
			if (s->r)
				s->what = "running the reactor";
		}
		fprintf(stderr, EXAMPLE_NAME ": %s %s port %u: %s\n", s->what, ws->host,
			(unsigned)(s->port ? s->port : ws->port), iou_strerror(s->status));
		status = 1;
		break;
	}
	for (unsigned i = 0; i < ws->n; i++) {
		struct worker_slot *s = &ws->slot[i];

		if (s->status >= 0 && s->error) {
			fprintf(stderr, EXAMPLE_NAME ": worker %u: %s: %s\n", i, s->fault,
				iou_strerror(s->error));
			status = 1;
		}
	}
	return status;
}

/*
 * Run the server until SIGINT or SIGTERM, or a worker's failure.  Call
 * with ops, proto, n, the address, the port and every slot's data set.
 * Return: the exit status, 0 after a signal, else 1 (messages printed).
 */
static inline int workers_serve(struct workers *ws)
{
	int results[MAX_THREADS] = { 0 };
	sigset_t sigs;
	int ret;

	for (unsigned i = 0; i < ws->n; i++) {
		ws->slot[i].ws = ws;
		ws->slot[i].index = i;
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
	    (ws->sigfd = signalfd(-1, &sigs, SFD_CLOEXEC | SFD_NONBLOCK)) < 0) {
		perror(EXAMPLE_NAME ": signalfd");
		return 1;
	}

	ret = workers_start(ws);
	ws->up = true;
	if (ret == 0) {
		printf(EXAMPLE_NAME ": listening on %s port %u (%s, %u thread%s)\n", ws->host,
		       (unsigned)ws->port, ws->proto, ws->n, ws->n == 1 ? "" : "s");
		fflush(stdout);
		ret = fiber_spawn(ws->r, workers_await_signal, ws, &ws->signal);
		if (ret < 0)
			workers_fail(&ws->slot[0], "starting a fiber", ret);
	}
	/* Stop after a failed start-up, or a failure that came during it. */
	if (ws->r && (ret < 0 || ws->stop_wanted))
		workers_stop(ws);

	if (ws->r) {
		bool ran;

		ret = reactor_run(ws->r);
		if (ret < 0)
			workers_fail(&ws->slot[0], "running the reactor", ret);
		ran = ret == 0;
		workers_finish(&ws->slot[0], ran);
		if (ran && ws->signal)
			fiber_join(ws->signal, NULL);
		/* Members' late posts to it now fail; the stop calls are on their way. */
		reactor_destroy(ws->r);
	}
	/* Without a reactor on this thread, a plain thrd_join() of each. */
	if (ws->group)
		reactor_group_join(ws->group, results);
	reactor_ref_put(ws->home);
	close(ws->sigfd);
	return workers_report(ws, results);
}

#endif
