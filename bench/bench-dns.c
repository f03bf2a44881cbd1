/* SPDX-License-Identifier: MIT */
/*
 * DNS lookup throughput: ioucontext's resolver (one reactor, many fibers
 * calling iou_dns_lookup()) against the usual way to get concurrency out of
 * getaddrinfo(3) (a pool of threads each calling it in a loop), in the same
 * run, against the same server, on the same list of names.
 *
 *   bench-dns --server ADDR:PORT --names FILE [--seconds S] [--warmup W]
 *             [--fibers N] [--threads T] [--mode iou|gai|both] [--reps R]
 *             [--server-pid PID]
 *
 * FILE has one name per line, optionally followed by the IPv4 address it
 * must resolve to ("n0.bench.test. 10.1.0.0"); '#' lines are skipped.  Both
 * sides walk the list round-robin, each fiber or thread from its own
 * offset, asking for AF_INET / SOCK_STREAM.  A lookup counts if it ends
 * within the S-second window that follows a W-second warm-up; a lookup
 * that fails, or answers another address than the file says, is a failure
 * and is not counted as done.  The sides alternate, R times each, and the
 * best window is reported.
 *
 * The ioucontext side asks --server directly.  getaddrinfo() can only ask
 * the servers of /etc/resolv.conf on port 53: bench/bench-dns.sh runs this
 * program in private network and mount namespaces where that file names a
 * dnsmasq on 127.0.0.1:53, which it also passes as --server, so that both
 * sides ask the same server.  With --server-pid, the server's CPU time over
 * each window is reported too, since on a small machine the server shares
 * the CPUs with the side being measured.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <limits.h>
#include <netdb.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <ioucontext/dns.h>
#include <ioucontext/ioucontext.h>

#include "bench.h"

/* One name of the list and what it must resolve to. */
struct name {
	char *name;
	struct in_addr addr; /* the expected answer, if has_addr */
	bool has_addr;
};

/* first_err for an answer with the wrong address: no EAI_* or -errno value. */
#define WRONG_ANSWER INT_MIN

static struct name *names;
static size_t n_names;

/* What the command line asks for. */
static const char *server;
static double seconds = 3.0, warmup = 0.5;
static long fibers = 256, threads = 64, reps = 3;
static long server_pid; /* 0: not given */

/* One side's measurement window and what happened in it. */
struct window {
	int64_t start, end;    /* CLOCK_MONOTONIC ns: lookups ending in [start, end) count */
	atomic_llong ok;       /* lookups that ended in the window with the right answer */
	atomic_llong failed;   /* ... that failed (any error) */
	atomic_llong wrong;    /* ... that answered another address than expected */
	atomic_int first_err;  /* the first failure's code, for the notes (0: none) */
	size_t first_err_name; /* its name, an index into names[] */
	double cpu;	       /* this process's CPU seconds over the window */
	double server_cpu;     /* the server's CPU seconds over the window, or -1 */
};

static void usage(const char *argv0)
{
	fprintf(stderr,
		"usage: %s --server ADDR:PORT --names FILE [--seconds S] [--warmup W]\n"
		"       [--fibers N] [--threads T] [--mode iou|gai|both] [--reps R] "
		"[--server-pid PID]\n",
		argv0);
	exit(2);
}

static double seconds_arg(const char *argv0, const char *s)
{
	char *end;
	double v = strtod(s, &end);

	if (end == s || *end || !(v >= 0) || v > 3600) {
		fprintf(stderr, "%s: bad number of seconds '%s'\n", argv0, s);
		exit(2);
	}
	return v;
}

static void read_names(const char *path)
{
	FILE *f = fopen(path, "r");
	char line[512];
	size_t cap = 0;

	if (!f)
		bench_die(path, errno);
	while (fgets(line, sizeof(line), f)) {
		char name[256], addr[64];
		int k = sscanf(line, "%255s %63s", name, addr);

		if (k < 1 || name[0] == '#')
			continue;
		if (n_names == cap) {
			cap = cap ? 2 * cap : 1024;
			names = realloc(names, cap * sizeof(*names));
			if (!names)
				bench_die("realloc", ENOMEM);
		}
		names[n_names].name = strdup(name);
		if (!names[n_names].name)
			bench_die("strdup", ENOMEM);
		names[n_names].has_addr = k == 2;
		if (k == 2 && inet_pton(AF_INET, addr, &names[n_names].addr) != 1) {
			fprintf(stderr, "bench-dns: %s: bad IPv4 address '%s'\n", path, addr);
			exit(2);
		}
		n_names++;
	}
	fclose(f);
	if (n_names == 0) {
		fprintf(stderr, "bench-dns: %s: no names\n", path);
		exit(2);
	}
}

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * IOU_SEC + ts.tv_nsec;
}

static void sleep_until_ns(int64_t t)
{
	struct timespec ts = { .tv_sec = t / IOU_SEC, .tv_nsec = t % IOU_SEC };

	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
}

/* CPU seconds of this whole process (every thread) so far. */
static double self_cpu(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
	       (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

/* CPU seconds of --server-pid so far (utime + stime), or -1. */
static double server_cpu(void)
{
	char path[64], buf[1024], *p;
	unsigned long long ut, st;
	size_t n;
	FILE *f;

	if (!server_pid)
		return -1;
	snprintf(path, sizeof(path), "/proc/%ld/stat", server_pid);
	f = fopen(path, "r");
	if (!f)
		return -1;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* Fields after the command name, which may hold spaces: skip past ')'. */
	p = strrchr(buf, ')');
	if (!p ||
	    sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
		return -1;
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static void window_init(struct window *w, int64_t t0)
{
	memset(w, 0, sizeof(*w));
	w->start = t0 + (int64_t)(warmup * 1e9);
	w->end = w->start + (int64_t)(seconds * 1e9);
}

/* The CPU figures over [start, end): sample at both ends. */
struct cpu_mark {
	double self, server;
};

static struct cpu_mark cpu_mark(void)
{
	return (struct cpu_mark){ .self = self_cpu(), .server = server_cpu() };
}

static void cpu_close(struct window *w, struct cpu_mark a)
{
	struct cpu_mark b = cpu_mark();

	w->cpu = b.self - a.self;
	w->server_cpu = a.server >= 0 && b.server >= 0 ? b.server - a.server : -1;
}

/*
 * Account for one lookup that ended at @t: 0 or an error; @a the answer's
 * first address when it succeeded.
 */
static void tally(struct window *w, size_t i, int64_t t, int err, const struct sockaddr *a)
{
	int zero = 0;

	if (t < w->start || t >= w->end)
		return;
	if (!err && names[i].has_addr) {
		const struct sockaddr_in *s = (const void *)a;

		if (!a || a->sa_family != AF_INET || s->sin_addr.s_addr != names[i].addr.s_addr) {
			atomic_fetch_add_explicit(&w->wrong, 1, memory_order_relaxed);
			err = WRONG_ANSWER;
		}
	}
	if (!err) {
		atomic_fetch_add_explicit(&w->ok, 1, memory_order_relaxed);
		return;
	}
	atomic_fetch_add_explicit(&w->failed, 1, memory_order_relaxed);
	if (atomic_compare_exchange_strong(&w->first_err, &zero, err))
		w->first_err_name = i;
}

static void note_window(const char *side, long rep, const struct window *w)
{
	double s = (double)(w->end - w->start) / 1e9;

	printf("# %s rep %ld: %.0f lookups/s (%lld ok, %lld failed, %lld wrong), "
	       "client cpu %.0f%%",
	       side, rep, (double)w->ok / s, (long long)w->ok, (long long)w->failed,
	       (long long)w->wrong, 100 * w->cpu / s);
	if (w->server_cpu >= 0)
		printf(", server cpu %.0f%%", 100 * w->server_cpu / s);
	printf("\n");
	if (w->first_err)
		printf("# %s rep %ld: first failure: %s: %s\n", side, rep,
		       names[w->first_err_name].name,
		       w->first_err == WRONG_ANSWER ? "wrong address" :
		       strcmp(side, "gai") == 0	    ? gai_strerror(w->first_err) :
						      iou_strerror(w->first_err));
	fflush(stdout);
}

/* ---- ioucontext: one reactor, N fibers ---------------------------------- */

struct iou_side {
	struct reactor *r;
	struct window w;
};

struct iou_fiber {
	struct iou_side *side;
	size_t next; /* index of the next name to ask */
};

static void *iou_lookups(void *arg)
{
	struct iou_fiber *me = arg;
	struct iou_side *side = me->side;
	const struct addrinfo hints = { .ai_family = AF_INET, .ai_socktype = SOCK_STREAM };

	while (iou_now() < side->w.end) {
		size_t i = me->next;
		struct addrinfo *res = NULL;
		int ret = iou_dns_lookup(side->r, names[i].name, NULL, &hints, &res);

		tally(&side->w, i, iou_now(), ret, res ? res->ai_addr : NULL);
		iou_dns_freeaddrinfo(res);
		me->next = i + 1 == n_names ? 0 : i + 1;
	}
	return NULL;
}

/* Takes the CPU figures at both ends of the window, from inside the reactor. */
static void *iou_sampler(void *arg)
{
	struct iou_side *side = arg;
	struct cpu_mark a;

	fiber_sleep_until(side->r, side->w.start);
	a = cpu_mark();
	fiber_sleep_until(side->r, side->w.end);
	cpu_close(&side->w, a);
	return NULL;
}

static void run_iou(struct window *out)
{
	struct reactor_options ro;
	struct iou_dns_options dopts;
	struct iou_side side;
	struct iou_fiber *fs = calloc((size_t)fibers, sizeof(*fs));
	int ret;

	if (!fs)
		bench_die("calloc", ENOMEM);
	/*
	 * A reactor per run, destroyed at the end: it pins this thread to one
	 * CPU, and the thread pool that runs next must start from the mask the
	 * program was given, not inherit that one CPU.
	 */
	reactor_options_init(&ro);
	if (ro.fiber_pool < (unsigned)fibers + 2)
		ro.fiber_pool = (unsigned)fibers + 2;
	ret = reactor_create(&ro, &side.r);
	if (ret < 0)
		bench_die("reactor_create", ret);
	iou_dns_options_init(&dopts);
	dopts.servers = server;
	dopts.search = false; /* the names are fully qualified */
	dopts.timeout_ms = 1000;
	dopts.tries = 2; /* as resolv.conf's "timeout:1 attempts:2" for the peer */
	ret = iou_dns_configure(side.r, &dopts);
	if (ret < 0) {
		fprintf(stderr, "bench-dns: iou_dns_configure(%s): %s\n", server,
			iou_strerror(ret));
		exit(1);
	}
	window_init(&side.w, iou_now());
	for (long k = 0; k < fibers; k++) {
		fs[k] = (struct iou_fiber){ .side = &side,
					    .next = (size_t)k * n_names / (size_t)fibers };
		ret = fiber_spawn(side.r, iou_lookups, &fs[k], NULL);
		if (ret < 0)
			bench_die("fiber_spawn", ret);
	}
	ret = fiber_spawn(side.r, iou_sampler, &side, NULL);
	if (ret < 0)
		bench_die("fiber_spawn", ret);
	ret = reactor_run(side.r);
	if (ret < 0)
		bench_die("reactor_run", ret);
	ret = reactor_destroy(side.r);
	if (ret < 0)
		bench_die("reactor_destroy", ret);
	free(fs);
	*out = side.w;
}

/* ---- the peer: T threads calling getaddrinfo() --------------------------- */

struct gai_thread {
	pthread_t tid;
	struct window *w;
	size_t next;
};

static void *gai_lookups(void *arg)
{
	struct gai_thread *me = arg;
	struct window *w = me->w;
	const struct addrinfo hints = { .ai_family = AF_INET, .ai_socktype = SOCK_STREAM };

	while (now_ns() < w->end) {
		size_t i = me->next;
		struct addrinfo *res = NULL;
		int ret = getaddrinfo(names[i].name, NULL, &hints, &res);

		tally(w, i, now_ns(), ret, ret == 0 && res ? res->ai_addr : NULL);
		if (ret == 0)
			freeaddrinfo(res);
		me->next = i + 1 == n_names ? 0 : i + 1;
	}
	return NULL;
}

static void run_gai(struct window *out, const cpu_set_t *mask)
{
	struct gai_thread *ts = calloc((size_t)threads, sizeof(*ts));
	struct window w;
	pthread_attr_t attr;
	struct cpu_mark a;
	int ret;

	if (!ts)
		bench_die("calloc", ENOMEM);
	/* Every thread may use every CPU the program was given. */
	pthread_attr_init(&attr);
	pthread_attr_setaffinity_np(&attr, sizeof(*mask), mask);
	pthread_attr_setstacksize(&attr, 256 * 1024);
	window_init(&w, now_ns());
	for (long k = 0; k < threads; k++) {
		ts[k] = (struct gai_thread){ .w = &w,
					     .next = (size_t)k * n_names / (size_t)threads };
		ret = pthread_create(&ts[k].tid, &attr, gai_lookups, &ts[k]);
		if (ret)
			bench_die("pthread_create", ret);
	}
	pthread_attr_destroy(&attr);
	sleep_until_ns(w.start);
	a = cpu_mark();
	sleep_until_ns(w.end);
	cpu_close(&w, a);
	for (long k = 0; k < threads; k++)
		pthread_join(ts[k].tid, NULL);
	free(ts);
	*out = w;
}

/* ---- main ------------------------------------------------------------------ */

static double rate(const struct window *w)
{
	return (double)w->ok / ((double)(w->end - w->start) / 1e9);
}

static void report(const char *side, const struct window *best, long long failed, long long wrong)
{
	char key[64];
	double s = (double)(best->end - best->start) / 1e9;

	snprintf(key, sizeof(key), "%s_lookups_per_s", side);
	bench_result("dns", key, rate(best));
	snprintf(key, sizeof(key), "%s_failures", side);
	bench_result_int("dns", key, failed);
	snprintf(key, sizeof(key), "%s_wrong", side);
	bench_result_int("dns", key, wrong);
	snprintf(key, sizeof(key), "%s_cpu_pct", side);
	bench_result("dns", key, 100 * best->cpu / s);
	if (best->server_cpu >= 0) {
		snprintf(key, sizeof(key), "%s_server_cpu_pct", side);
		bench_result("dns", key, 100 * best->server_cpu / s);
	}
}

int main(int argc, char **argv)
{
	const char *names_path = NULL, *mode = "both";
	struct window iou_best = { 0 }, gai_best = { 0 };
	long long iou_failed = 0, iou_wrong = 0, gai_failed = 0, gai_wrong = 0;
	bool do_iou, do_gai;
	cpu_set_t mask;

	for (int i = 1; i < argc; i++) {
		const char *opt = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;

		if (!val)
			usage(argv[0]);
		i++;
		if (!strcmp(opt, "--server"))
			server = val;
		else if (!strcmp(opt, "--names"))
			names_path = val;
		else if (!strcmp(opt, "--seconds"))
			seconds = seconds_arg(argv[0], val);
		else if (!strcmp(opt, "--warmup"))
			warmup = seconds_arg(argv[0], val);
		else if (!strcmp(opt, "--fibers"))
			fibers = bench_count(argc, argv, i, 256);
		else if (!strcmp(opt, "--threads"))
			threads = bench_count(argc, argv, i, 64);
		else if (!strcmp(opt, "--reps"))
			reps = bench_count(argc, argv, i, 3);
		else if (!strcmp(opt, "--server-pid"))
			server_pid = bench_count(argc, argv, i, 0);
		else if (!strcmp(opt, "--mode"))
			mode = val;
		else
			usage(argv[0]);
	}
	do_iou = !strcmp(mode, "iou") || !strcmp(mode, "both");
	do_gai = !strcmp(mode, "gai") || !strcmp(mode, "both");
	if (!names_path || (!do_iou && !do_gai) || (do_iou && !server) || seconds <= 0)
		usage(argv[0]);
	read_names(names_path);
	if (sched_getaffinity(0, sizeof(mask), &mask))
		bench_die("sched_getaffinity", errno);

	printf("# dns: %zu names from %s; server %s; %ld fibers / %ld threads; "
	       "%.1f s windows after %.1f s warm-up; best of %ld; %d CPUs\n",
	       n_names, names_path, server ? server : "(resolv.conf)", fibers, threads, seconds,
	       warmup, reps, CPU_COUNT(&mask));
	fflush(stdout);
	/* The sides alternate, so that drift in the machine hits both alike. */
	for (long rep = 1; rep <= reps; rep++) {
		struct window w;

		if (do_iou) {
			run_iou(&w);
			note_window("iou", rep, &w);
			iou_failed += w.failed;
			iou_wrong += w.wrong;
			if (rate(&w) > rate(&iou_best) || rep == 1)
				iou_best = w;
		}
		if (do_gai) {
			run_gai(&w, &mask);
			note_window("gai", rep, &w);
			gai_failed += w.failed;
			gai_wrong += w.wrong;
			if (rate(&w) > rate(&gai_best) || rep == 1)
				gai_best = w;
		}
	}
	printf("# lookups per second (best of %ld); failures and wrong answers over all runs\n",
	       reps);
	if (do_iou)
		report("iou", &iou_best, iou_failed, iou_wrong);
	if (do_gai)
		report("gai", &gai_best, gai_failed, gai_wrong);
	return 0;
}
