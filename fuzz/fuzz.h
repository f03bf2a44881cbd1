/* SPDX-License-Identifier: MIT */
/*
 * What the fuzz harnesses share: the libFuzzer entry point each one
 * defines (also called by replay.c, the plain program that feeds the
 * committed corpora and crash inputs to a harness in every normal build),
 * a failure that names what went wrong and aborts (so that libFuzzer and
 * the replay both stop on it, with a stack trace under a sanitizer), and
 * the chunk sizes the network harnesses cut their input into, so that
 * partial records and messages reach the code under test.
 */
#ifndef IOU_FUZZ_H
#define IOU_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * One input: any bytes; returns 0 (libFuzzer's convention).  Harnesses set
 * up what they keep across inputs (the reactor, TLS configurations, the
 * fake DNS server) on their first input.
 */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/*
 * The sanitizers' report channel, where it exists: libFuzzer's
 * -close_fd_mask=2 closes the harness's stderr but keeps that one open.
 */
void __sanitizer_report_error_summary(const char *summary) __attribute__((weak));

/** A broken invariant: say which (on stderr and in the report), then abort. */
#define FUZZ_FAIL(...)                                                                           \
	do {                                                                                     \
		char fuzz_msg_[512];                                                             \
		int fuzz_n_ = snprintf(fuzz_msg_, sizeof(fuzz_msg_), "fuzz: %s:%d: ", __FILE__,  \
				       __LINE__);                                                \
		snprintf(fuzz_msg_ + fuzz_n_, sizeof(fuzz_msg_) - (size_t)fuzz_n_, __VA_ARGS__); \
		fprintf(stderr, "%s\n", fuzz_msg_);                                              \
		if (__sanitizer_report_error_summary)                                            \
			__sanitizer_report_error_summary(fuzz_msg_);                             \
		abort();                                                                         \
	} while (0)

/** FUZZ_FAIL unless @cond holds. */
#define FUZZ_CHECK(cond, ...)                   \
	do {                                    \
		if (!(cond))                    \
			FUZZ_FAIL(__VA_ARGS__); \
	} while (0)

/*
 * Piece sizes a network harness writes its peer's bytes in, chosen by the
 * low 3 bits of its flags byte; 0: all at once.
 */
static const size_t fuzz_chunks[8] = { 0, 1, 2, 5, 16, 100, 517, 1500 };

#endif
