/* SPDX-License-Identifier: MIT */
/*
 * iou_timers: several periodic timers ticking side by side.  Each SECONDS
 * argument gets its own CLOCK_MONOTONIC timerfd and its own fiber, which
 * waits for it with iou_timerfd_read() and prints the monotonic time of
 * every firing in the timer's own column, so the columns show the periods
 * interleaving.  All timers start from one common instant.  With --count N
 * each timer stops after N firings and the program exits once all have;
 * without it the program runs until SIGINT or SIGTERM, which a fiber reads
 * from a signalfd through the reactor and answers by cancelling the timer
 * fibers, so the program always ends cleanly with status 0.
 *
 * Overruns: if a fiber reads its timer late and several periods have passed,
 * the timerfd reports them as one read with expirations > 1.  We print one
 * line for that read, suffixed " xN", and count all N expirations towards
 * --count (a timer may thus end with fewer lines than N, never with fewer
 * firings).
 *
 * Exit status: 0 when done or stopped by a signal, 1 on a runtime error, 2
 * on a usage error.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "signals.h"
#include <ioucontext/ioucontext.h>

/* Width of one output column: room for 9,999,999 s of uptime and a gap. */
#define COLUMN 16

/* Periods below a microsecond would print identical timestamps forever. */
#define MIN_PERIOD 1e-6
/* Longer than this is surely a typo (about 11.6 days). */
#define MAX_PERIOD 1e6

/* One timer and the fiber that reads it. */
struct timer {
	double seconds;	      /* the period as given */
	int64_t period;	      /* the period in nanoseconds */
	int fd;		      /* its timerfd, -1 until created */
	unsigned column;      /* where its timestamps go */
	struct fiber *fiber;  /* joinable: the handle stays valid for fiber_cancel() */
	struct program *prog; /* back pointer for the shared state */
};

/* What the fibers share. */
struct program {
	struct reactor *r;
	struct timer *timers;
	unsigned ntimers;
	unsigned running;	/* timer fibers not yet finished */
	uint64_t count;		/* firings per timer; 0: until a signal */
	int sigfd;		/* signalfd for SIGINT and SIGTERM */
	struct fiber *watcher;	/* the fiber reading sigfd */
	int error;		/* first runtime error (-errno), 0 if none */
	const char *error_what; /* what failed */
};

static void usage(FILE *to)
{
	fprintf(to, "usage: iou_timers [--count N] SECONDS...\n");
}

static void help(void)
{
	usage(stdout);
	printf("Run one periodic CLOCK_MONOTONIC timer per SECONDS argument (fractions\n"
	       "allowed, e.g. 0.25) and print the monotonic time of each firing in the\n"
	       "timer's column.  A late read that covers several periods prints once with\n"
	       "\" xN\" appended.\n"
	       "\n"
	       "  -c, --count N   stop each timer after N firings, then exit\n"
	       "  -h, --help      show this help\n"
	       "\n"
	       "Without --count, runs until SIGINT or SIGTERM.  Exit status: 0 done,\n"
	       "1 runtime error, 2 usage error.\n");
}

/* Usage errors: one line naming the problem, status 2. */
__attribute__((format(printf, 1, 2))) static int bad_usage(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fputs("iou_timers: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	return 2;
}

static int parse_period(const char *s, double *out)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (end == s || *end != '\0' || isnan(v))
		return bad_usage("period '%s' is not a number of seconds", s);
	if (v <= 0 && !(errno == ERANGE && !signbit(v)))
		return bad_usage("period '%s' must be positive", s);
	if (isinf(v) || v > MAX_PERIOD)
		return bad_usage("period '%s' is too large (at most 1000000 seconds)", s);
	if (v < MIN_PERIOD)
		return bad_usage("period '%s' is below one microsecond", s);
	*out = v;
	return 0;
}

/*
 * A negative period such as "-1" or "-0.5" looks like an option to getopt,
 * which would call it an unknown one.  Find such arguments first (skipping
 * the argument of --count) so that the error names the real problem.
 */
static int check_negative_periods(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		char *end;

		if (strcmp(a, "--") == 0)
			break;
		if (strcmp(a, "-c") == 0 || strcmp(a, "--count") == 0) {
			i++;
			continue;
		}
		if (a[0] != '-' || a[1] == '-' || a[1] == '\0')
			continue;
		(void)strtod(a, &end);
		if (end != a && *end == '\0')
			return parse_period(a, &(double){ 0 });
	}
	return 0;
}

static int parse_count(const char *s, uint64_t *out)
{
	unsigned long long v;
	char *end;

	errno = 0;
	/* strtoull would quietly negate "-1" into a huge count. */
	if (*s == '-' || *s == '\0')
		return bad_usage("--count '%s' must be a positive integer", s);
	v = strtoull(s, &end, 10);
	if (*end != '\0' || v == 0)
		return bad_usage("--count '%s' must be a positive integer", s);
	if (errno == ERANGE || v > INT64_MAX)
		return bad_usage("--count '%s' is too large", s);
	*out = v;
	return 0;
}

static void fail(struct program *p, const char *what, int err)
{
	if (!p->error) {
		p->error = err;
		p->error_what = what;
	}
}

/* Write one whole line to stdout through the ring. */
static int emit(struct reactor *r, const char *line, size_t len)
{
	ssize_t ret = iou_write_all(r, STDOUT_FILENO, line, len, NULL);

	return ret < 0 ? (int)ret : 0;
}

/* The body of every timer fiber: read, print, repeat. */
static void *tick(void *arg)
{
	struct timer *t = arg;
	struct program *p = t->prog;
	/* Indentation, the timestamp, " x" and a count, a newline. */
	size_t room = (size_t)(t->column + 1) * COLUMN + 32;
	char *line = malloc(room);
	uint64_t fired = 0;

	if (!line)
		fail(p, "allocating a line", -ENOMEM);
	while (line && (p->count == 0 || fired < p->count)) {
		uint64_t n;
		int len, ret;

		ret = iou_timerfd_read(p->r, t->fd, &n);
		if (ret == -ECANCELED)
			break; /* a signal asked us to stop */
		if (ret < 0) {
			fail(p, "reading a timerfd", ret);
			break;
		}
		fired += n;
		len = snprintf(line, room, "%*s%*.6f", (int)(t->column * COLUMN), "", COLUMN,
			       (double)iou_now() / 1e9);
		if (n > 1)
			len += snprintf(line + len, room - (size_t)len, " x%" PRIu64, n);
		line[len++] = '\n';
		ret = emit(p->r, line, (size_t)len);
		if (ret == -ECANCELED)
			break;
		if (ret < 0) {
			fail(p, "writing to stdout", ret);
			break;
		}
	}
	/*
	 * The last timer to finish (or the first to fail) ends the signal
	 * watcher too, so that reactor_run() returns.
	 */
	if (--p->running == 0 || p->error)
		fiber_cancel(p->watcher);
	if (p->error) {
		for (unsigned i = 0; i < p->ntimers; i++)
			fiber_cancel(p->timers[i].fiber);
	}
	free(line);
	return NULL;
}

/* Waits for SIGINT or SIGTERM, then stops every timer. */
static void *watch_signals(void *arg)
{
	struct program *p = arg;
	struct signalfd_siginfo si;
	ssize_t ret = example_read_signal(p->r, p->sigfd, &si);

	if (ret == -ECANCELED)
		return NULL; /* the timers are done */
	if (ret < 0)
		fail(p, "reading the signalfd", (int)ret);
	for (unsigned i = 0; i < p->ntimers; i++)
		fiber_cancel(p->timers[i].fiber);
	return NULL;
}

/* The header: each column named by its period. */
static int print_header(struct program *p)
{
	size_t room = (size_t)p->ntimers * COLUMN + 2, len = 0;
	char *line = malloc(room), label[COLUMN * 2];
	int ret;

	if (!line)
		return -ENOMEM;
	for (unsigned i = 0; i < p->ntimers; i++) {
		snprintf(label, sizeof(label), "every %gs", p->timers[i].seconds);
		len += (size_t)snprintf(line + len, room - len, "%*.*s", COLUMN, COLUMN - 1, label);
	}
	line[len++] = '\n';
	ret = emit(p->r, line, len);
	free(line);
	return ret;
}

/*
 * Create and arm the timerfds.  Every timer's first expiry is one period
 * after the same instant, so the columns start in phase.
 */
static int arm_timers(struct program *p)
{
	struct timespec start;

	clock_gettime(CLOCK_MONOTONIC, &start);
	for (unsigned i = 0; i < p->ntimers; i++) {
		struct timer *t = &p->timers[i];
		struct itimerspec its = {
			.it_interval = { .tv_sec = t->period / IOU_SEC,
					 .tv_nsec = t->period % IOU_SEC },
		};
		int64_t first = (int64_t)start.tv_nsec + t->period;

		its.it_value.tv_sec = start.tv_sec + first / IOU_SEC;
		its.it_value.tv_nsec = first % IOU_SEC;
		t->fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);
		if (t->fd < 0)
			return -errno;
		if (timerfd_settime(t->fd, TFD_TIMER_ABSTIME, &its, NULL) < 0)
			return -errno;
	}
	return 0;
}

static int run(struct program *p)
{
	int ret;

	ret = print_header(p);
	if (ret < 0) {
		fail(p, "writing to stdout", ret);
		return 0;
	}
	ret = arm_timers(p);
	if (ret < 0) {
		fail(p, "creating a timerfd", ret);
		return 0;
	}
	ret = fiber_spawn(p->r, watch_signals, p, &p->watcher);
	if (ret < 0) {
		fail(p, "starting a fiber", ret);
		return 0;
	}
	for (unsigned i = 0; i < p->ntimers; i++) {
		ret = fiber_spawn(p->r, tick, &p->timers[i], &p->timers[i].fiber);
		if (ret < 0) {
			/* The fibers already started stop through the watcher. */
			fail(p, "starting a fiber", ret);
			fiber_cancel(p->watcher);
			for (unsigned j = 0; j < i; j++)
				fiber_cancel(p->timers[j].fiber);
			break;
		}
		p->running++;
	}
	ret = reactor_run(p->r);
	if (ret < 0)
		fail(p, "running the reactor", ret);
	return ret;
}

/* parse_args()'s value when the program should go on and run. */
#define ARGS_RUN (-1)

/*
 * The command line into @p: --count, and one timer per SECONDS argument
 * in p->timers (calloc'd: the caller frees it after ARGS_RUN; on any
 * other return it is NULL).  Return: ARGS_RUN to go on, or the exit status
 * to end with now (0 after --help, 1 out of memory, 2 on a usage error,
 * its message printed).
 */
static int parse_args(int argc, char **argv, struct program *p)
{
	static const struct option longopts[] = { { "count", required_argument, NULL, 'c' },
						  { "help", no_argument, NULL, 'h' },
						  { NULL, 0, NULL, 0 } };
	int c, ret;

	if ((ret = check_negative_periods(argc, argv)) != 0)
		return ret;
	opterr = 0; /* one line of our own instead of getopt's message plus usage */
	while ((c = getopt_long(argc, argv, ":c:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'c':
			if ((ret = parse_count(optarg, &p->count)) != 0)
				return ret;
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
	if (optind >= argc)
		return bad_usage("%s", "no timer periods given (try --help)");
	p->ntimers = (unsigned)(argc - optind);
	p->timers = calloc(p->ntimers, sizeof(*p->timers));
	if (!p->timers) {
		fprintf(stderr, "iou_timers: out of memory\n");
		return 1;
	}
	for (unsigned i = 0; i < p->ntimers; i++) {
		struct timer *t = &p->timers[i];

		if ((ret = parse_period(argv[optind + (int)i], &t->seconds)) != 0) {
			free(p->timers);
			p->timers = NULL;
			return ret;
		}
		t->period = llround(t->seconds * 1e9);
		t->fd = -1;
		t->column = i;
		t->prog = p;
	}
	return ARGS_RUN;
}

#ifndef IOU_EXAMPLE_NO_MAIN
int main(int argc, char **argv)
{
	struct program p = { .sigfd = -1 };
	sigset_t sigs;
	int ret;

	if ((ret = parse_args(argc, argv, &p)) != ARGS_RUN)
		return ret;

	/*
	 * Signals become events on a signalfd.  They must be blocked before the
	 * reactor exists: fibers switch without touching the signal mask, so
	 * it cannot change once they run.
	 */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	if (sigprocmask(SIG_BLOCK, &sigs, NULL) < 0 ||
	    (p.sigfd = signalfd(-1, &sigs, SFD_CLOEXEC | SFD_NONBLOCK)) < 0) {
		fprintf(stderr, "iou_timers: signalfd: %s\n", strerror(errno));
		free(p.timers);
		return 1;
	}
	p.r = reactor_get();
	if (!p.r) {
		ret = reactor_create(NULL, &p.r);
		fprintf(stderr, "iou_timers: creating the reactor: %s\n", strerror(-ret));
		close(p.sigfd);
		free(p.timers);
		return 1;
	}

	/*
	 * After a clean run every fiber has finished and joining just releases
	 * the handles; if the reactor failed, reactor_destroy() discards them.
	 */
	if (run(&p) == 0) {
		for (unsigned i = 0; i < p.ntimers; i++) {
			if (p.timers[i].fiber)
				fiber_join(p.timers[i].fiber, NULL);
		}
		if (p.watcher)
			fiber_join(p.watcher, NULL);
	}
	for (unsigned i = 0; i < p.ntimers; i++) {
		if (p.timers[i].fd >= 0)
			close(p.timers[i].fd);
	}
	close(p.sigfd);
	reactor_destroy(p.r);
	free(p.timers);
	if (p.error) {
		fprintf(stderr, "iou_timers: %s: %s\n", p.error_what, strerror(-p.error));
		return 1;
	}
	return 0;
}
#endif
