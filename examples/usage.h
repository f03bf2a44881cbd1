/* SPDX-License-Identifier: MIT */
/*
 * Command-line helpers the example programs share: the one-line usage
 * error (exit status 2), decimal numbers with a bound, option values in
 * seconds, and comma-separated ALPN lists.  Header-only; define EXAMPLE_NAME (the program's name, for
 * messages) before including it.
 */
#ifndef EXAMPLES_USAGE_H
#define EXAMPLES_USAGE_H

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef EXAMPLE_NAME
#error "define EXAMPLE_NAME before including usage.h"
#endif

/* Largest number of seconds an option takes. */
#define EXAMPLE_MAX_SECONDS 1e6

/* ALPN protocols an option list may hold. */
#define MAX_ALPN 32

/* Print "NAME: message (see --help)" and return the usage exit status, 2. */
__attribute__((format(printf, 1, 2))) static inline int bad_usage(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fputs(EXAMPLE_NAME ": ", stderr);
	vfprintf(stderr, fmt, ap);
	fputs(" (see --help)\n", stderr);
	va_end(ap);
	return 2;
}

/* A decimal number up to @max (-p, -t and the like). */
static inline int parse_uint(const char *s, unsigned long max, unsigned long *out)
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

/*
 * Option @opt's value @s as seconds: 0, or between 1 ms and
 * EXAMPLE_MAX_SECONDS.  Returns 0, or bad_usage()'s 2.
 */
static inline int parse_seconds(const char *opt, const char *s, double *out)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (end == s || *end != '\0' || isnan(v))
		return bad_usage("%s '%s' is not a number of seconds", opt, s);
	if (v < 0)
		return bad_usage("%s '%s' must not be negative", opt, s);
	if (isinf(v) || v > EXAMPLE_MAX_SECONDS)
		return bad_usage("%s '%s' is too large (at most 1000000 seconds)", opt, s);
	if (v > 0 && v < 1e-3)
		return bad_usage("%s '%s' is below one millisecond", opt, s);
	*out = v;
	return 0;
}

/*
 * Split a comma-separated --alpn value (modified in place) into @list,
 * which holds @n entries so far and room for MAX_ALPN.  Returns 0 or 2.
 */
static inline int add_alpn(char *value, const char **list, unsigned *n)
{
	char *save = NULL, *tok;

	if (*value == '\0' || *value == ',' || value[strlen(value) - 1] == ',' ||
	    strstr(value, ",,"))
		return bad_usage("--alpn: empty protocol name");
	for (tok = strtok_r(value, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		if (strlen(tok) > 255)
			return bad_usage("--alpn: protocol name longer than 255 bytes");
		if (*n == MAX_ALPN)
			return bad_usage("--alpn: more than %d protocols", MAX_ALPN);
		list[(*n)++] = tok;
	}
	return 0;
}

#endif
