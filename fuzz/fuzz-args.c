/* SPDX-License-Identifier: MIT */
/*
 * Fuzz harness: the command-line parsing of the six example programs,
 * each compiled without its main() into a wrapper (args-<example>.c) that
 * calls its parse_args() and checks the result: an exit status of 0, 1 or
 * 2, or values within the documented ranges; nothing left allocated.
 *
 * Input: the first byte chooses the example (modulo 6: iou_cat, iou_dns,
 * iou_port7, iou_timers, iou_tls, iou_tlsd); the rest is the
 * command line, split into arguments at NUL bytes (an empty argument
 * between two NULs is kept; at most MAX_ARGS arguments are taken, the
 * rest of the input is ignored).  getopt is reset before each parse.
 */
#define _GNU_SOURCE
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "fuzz.h"

/* Arguments taken from one input (a command line longer than this is cut). */
#define MAX_ARGS 64

/*
 * The examples, in a fixed order so that a corpus input always means the
 * same one.  Those whose library is not built parse as iou_cat.
 */
#ifndef FUZZ_HAVE_DNS
#define fuzz_args_iou_dns fuzz_args_iou_cat
#endif
#if !defined(FUZZ_HAVE_DNS) || !defined(FUZZ_HAVE_TLS)
#define fuzz_args_iou_tls fuzz_args_iou_cat
#endif
#ifndef FUZZ_HAVE_TLS
#define fuzz_args_iou_tlsd fuzz_args_iou_cat
#endif
static const struct {
	const char *name;
	int (*parse)(int argc, char **argv);
} examples[] = {
	{ "iou_cat", fuzz_args_iou_cat },     { "iou_dns", fuzz_args_iou_dns },
	{ "iou_port7", fuzz_args_iou_port7 }, { "iou_timers", fuzz_args_iou_timers },
	{ "iou_tls", fuzz_args_iou_tls },     { "iou_tlsd", fuzz_args_iou_tlsd },
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *argv[MAX_ARGS + 2], *copy;
	unsigned which;
	int argc = 1;
	size_t off = 0;

	if (size < 1)
		return 0;
	which = data[0] % (sizeof(examples) / sizeof(examples[0]));
	data++;
	size--;
	/* One copy, NUL-terminated, cut at its NULs: the arguments point into it. */
	copy = malloc(size + 1);
	FUZZ_CHECK(copy, "out of memory");
	memcpy(copy, data, size);
	copy[size] = '\0';
	argv[0] = (char *)examples[which].name;
	while (size > 0 && off <= size && argc <= MAX_ARGS) {
		argv[argc++] = copy + off;
		off += strlen(copy + off) + 1;
	}
	argv[argc] = NULL;
	optind = 0; /* glibc: a full reset of getopt's state */
	examples[which].parse(argc, argv);
	free(copy);
	return 0;
}
