/* SPDX-License-Identifier: MIT */
/*
 * Memory per sleeping fiber and the most sleeping fibers one process holds.
 * Spawns N detached fibers (default 1,000,000) with 64 KiB stacks, each of
 * which goes to sleep until one common deadline; a watcher fiber spawned
 * last waits until every one of them is asleep and then samples resident
 * memory (/proc/self/statm), page-table memory (VmPTE in /proc/self/status)
 * and the number of memory mappings (/proc/self/maps).  The deadline lies
 * far enough ahead that no sleeper wakes before the sample is taken; if one
 * did, the run is marked invalid.  Then all wake together and finish, and
 * the time that takes is reported too.  A spawn failure (say -ENOMEM, or
 * the mapping limit) ends spawning and the count reached is reported.
 *
 * Usage: bench-sleepers [N [DELAY_MS]]
 *   N         fibers to spawn (default 1M)
 *   DELAY_MS  deadline, in ms after spawning ends (default: 1 s plus the
 *             time spawning took; putting a fiber to sleep costs less than
 *             spawning it, so all are asleep well before the deadline)
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <ioucontext/ioucontext.h>

#include "bench.h"

#define SLEEPER_STACK_SIZE ((size_t)64 * 1024)

/* One sample of the process's memory use. */
struct mem {
	long long rss; /* resident bytes (statm) */
	long long pte; /* page-table bytes (VmPTE) */
	long maps;     /* lines in /proc/self/maps */
};

/* Everything the sleepers, the watcher and main share. */
struct census {
	struct reactor *r;
	long spawned;	  /* sleepers spawned successfully */
	long asleep;	  /* sleepers that have gone to sleep */
	long woke;	  /* sleepers back from their sleep */
	long early;	  /* sleepers woken before the deadline (must be 0) */
	int64_t deadline; /* the common wake-up time */
	int64_t t_run;	  /* when main let the reactor run them */
	int64_t t_asleep; /* when the watcher saw them all asleep */
	int64_t t_woke;	  /* when the last sleeper finished */
	struct mem peak;  /* sampled with all sleepers asleep */
	int valid;	  /* the sample was taken before any wake-up */
};

static long long read_statm_rss(void)
{
	long long size, resident = -1;
	FILE *f = fopen("/proc/self/statm", "r");

	if (f) {
		if (fscanf(f, "%lld %lld", &size, &resident) != 2)
			resident = -1;
		fclose(f);
	}
	return resident < 0 ? -1 : resident * sysconf(_SC_PAGESIZE);
}

static long long read_status_kib(const char *field)
{
	size_t len = strlen(field);
	long long kib = -1;
	char line[256];
	FILE *f = fopen("/proc/self/status", "r");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, field, len) && line[len] == ':') {
			sscanf(line + len + 1, "%lld", &kib);
			break;
		}
	fclose(f);
	return kib;
}

static long count_maps(void)
{
	static char buf[1 << 16];
	long lines = 0;
	ssize_t got;
	int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -1;
	while ((got = read(fd, buf, sizeof(buf))) > 0)
		for (ssize_t i = 0; i < got; i++)
			lines += buf[i] == '\n';
	close(fd);
	return got < 0 ? -1 : lines;
}

static void mem_sample(struct mem *m)
{
	long long pte = read_status_kib("VmPTE");

	m->rss = read_statm_rss();
	m->pte = pte < 0 ? -1 : pte * 1024;
	m->maps = count_maps();
}

static void *sleeper(void *arg)
{
	struct census *c = arg;

	c->asleep++;
	fiber_sleep_until(c->r, c->deadline);
	if (iou_now() < c->deadline)
		c->early++;
	if (++c->woke == c->spawned)
		c->t_woke = iou_now();
	return NULL;
}

/* Spawned after the sleepers: samples memory once they all sleep. */
static void *watcher(void *arg)
{
	struct census *c = arg;

	fiber_yield(c->r);
	while (c->asleep < c->spawned && iou_now() < c->deadline)
		fiber_sleep(c->r, IOU_MSEC);
	c->t_asleep = iou_now();
	mem_sample(&c->peak);
	c->valid = c->asleep == c->spawned && c->woke == 0 && iou_now() < c->deadline;
	return NULL;
}

static double per_fiber(long long after, long long before, long n)
{
	if (after < 0 || before < 0 || n <= 0)
		return -1;
	return (double)(after - before) / (double)n;
}

int main(int argc, char **argv)
{
	long n = bench_count(argc, argv, 1, 1000000);
	long delay_ms = bench_count(argc, argv, 2, 0);
	struct fiber_options fo = { .stack_size = SLEEPER_STACK_SIZE };
	struct census c = { 0 };
	struct mem base, end;
	struct fiber *w;
	int64_t t0, t1, t_end;
	int rc, spawn_err = 0;

	rc = reactor_create(NULL, &c.r);
	if (rc < 0)
		bench_die("reactor_create", rc);
	printf("# bench-sleepers: %ld fibers with %zu KiB stacks; reactor cpu %d\n", n,
	       SLEEPER_STACK_SIZE / 1024, reactor_cpu(c.r));
	mem_sample(&base);

	t0 = iou_now();
	for (long i = 0; i < n; i++) {
		rc = fiber_spawn_with(c.r, &fo, sleeper, &c, NULL);
		if (rc < 0) {
			spawn_err = rc;
			break;
		}
		c.spawned++;
	}
	t1 = iou_now();
	if (spawn_err)
		printf("# spawning stopped after %ld fibers: %s\n", c.spawned,
		       strerror(-spawn_err));

	if (!delay_ms)
		delay_ms = 1000 + (t1 - t0) / IOU_MSEC;
	c.deadline = t1 + delay_ms * IOU_MSEC;
	rc = fiber_spawn(c.r, watcher, &c, &w);
	if (rc < 0)
		bench_die("fiber_spawn (watcher)", rc);
	c.t_run = iou_now();
	rc = fiber_join(w, NULL);
	if (rc < 0)
		bench_die("fiber_join (watcher)", rc);
	rc = reactor_run(c.r);
	if (rc < 0)
		bench_die("reactor_run", rc);
	t_end = iou_now();
	mem_sample(&end);

	if (!c.valid)
		printf("# INVALID: a sleeper woke before the sample (%ld of %ld asleep); "
		       "rerun with a longer DELAY_MS than %ld\n",
		       c.asleep, c.spawned, delay_ms);
	if (c.early)
		printf("# ERROR: %ld sleepers woke before their deadline\n", c.early);
	printf("# rss before %.1f MiB, all asleep %.1f MiB, after %.1f MiB; "
	       "deadline %ld ms after spawning\n",
	       base.rss / 1048576.0, c.peak.rss / 1048576.0, end.rss / 1048576.0, delay_ms);

	bench_result_int("sleepers", "requested", n);
	bench_result_int("sleepers", "reached", c.spawned);
	bench_result_int("sleepers", "asleep", c.asleep);
	bench_result_int("sleepers", "valid", c.valid && !c.early);
	bench_result("sleepers", "kib_per_fiber",
		     per_fiber(c.peak.rss, base.rss, c.spawned) / 1024);
	bench_result("sleepers", "pte_bytes_per_fiber", per_fiber(c.peak.pte, base.pte, c.spawned));
	bench_result_int("sleepers", "maps", c.peak.maps);
	bench_result("sleepers", "spawn_ns",
		     c.spawned ? (double)(t1 - t0) / (double)c.spawned : -1);
	bench_result("sleepers", "asleep_ms", (double)(c.t_asleep - c.t_run) / IOU_MSEC);
	bench_result("sleepers", "wake_ms",
		     c.spawned ? (double)(c.t_woke - c.deadline) / IOU_MSEC : -1);
	bench_result("sleepers", "wall_s", (double)(t_end - t0) / IOU_SEC);
	bench_result("sleepers", "rss_peak_mib", c.peak.rss / 1048576.0);
	bench_result("sleepers", "rss_end_mib", end.rss / 1048576.0);

	rc = reactor_destroy(c.r);
	if (rc < 0)
		bench_die("reactor_destroy", rc);
	return c.valid && !c.early ? 0 : 1;
}
