/* SPDX-License-Identifier: MIT */
/*
 * Helpers shared by the C benchmarks: reading counts from the command line,
 * failing loudly, and printing results.  Every result is one line
 * "<benchmark> <name> <value>" on stdout, which bench/run-core.sh parses;
 * lines starting with '#' are commentary for humans and are ignored.
 */
#ifndef IOUCONTEXT_BENCH_H
#define IOUCONTEXT_BENCH_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Repetitions of each timed run; the best one is reported. */
#define BENCH_REPS 5

/*
 * argv[idx] as a positive count, or @def when absent.  Accepts plain
 * integers and the forms "1e6" and "10M"/"10k" so that large counts stay
 * readable on the command line.
 */
static inline long bench_count(int argc, char **argv, int idx, long def)
{
	char *end;
	double v;

	if (idx >= argc)
		return def;
	errno = 0;
	v = strtod(argv[idx], &end);
	if (end != argv[idx] && (*end == 'k' || *end == 'K'))
		v *= 1e3, end++;
	else if (end != argv[idx] && (*end == 'm' || *end == 'M'))
		v *= 1e6, end++;
	if (errno || end == argv[idx] || *end != '\0' || v < 1 || v > 1e12) {
		fprintf(stderr, "%s: bad count '%s'\n", argv[0], argv[idx]);
		exit(2);
	}
	return (long)v;
}

/* Report a failed call (a -errno result) and end the benchmark. */
static inline void bench_die(const char *what, int err)
{
	fprintf(stderr, "bench: %s: %s\n", what, strerror(err < 0 ? -err : err));
	exit(1);
}

/* One machine-readable result line. */
static inline void bench_result(const char *bench, const char *name, double value)
{
	printf("%s %s %.1f\n", bench, name, value);
	fflush(stdout);
}

/* One machine-readable result line with an integer value. */
static inline void bench_result_int(const char *bench, const char *name, long long value)
{
	printf("%s %s %lld\n", bench, name, value);
	fflush(stdout);
}

#endif
