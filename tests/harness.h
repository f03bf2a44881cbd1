/* SPDX-License-Identifier: MIT */
/*
 * The test harness: ASSERT_* macros that print both sides and the location
 * on failure, a TEST() registry run in order by main(), TAP-style output,
 * and exit code 77 for "skipped" as CTest expects.  Header-only; each test
 * program includes it once.
 */
#ifndef IOU_TEST_HARNESS_H
#define IOU_TEST_HARNESS_H

#include <dirent.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#endif
#endif
#ifndef RUNNING_ON_VALGRIND
#define RUNNING_ON_VALGRIND 0
#endif

#if defined(__SANITIZE_ADDRESS__)
#define IOU_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define IOU_TEST_ASAN 1
#endif
#endif
#ifndef IOU_TEST_ASAN
#define IOU_TEST_ASAN 0
#endif

#if defined(__SANITIZE_THREAD__)
#define IOU_TEST_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define IOU_TEST_TSAN 1
#endif
#endif
#ifndef IOU_TEST_TSAN
#define IOU_TEST_TSAN 0
#endif

/* Slack factor for generous upper time bounds under slow instrumentation. */
static inline int test_slowdown(void)
{
	return RUNNING_ON_VALGRIND ? 20 : IOU_TEST_TSAN ? 10 : IOU_TEST_ASAN ? 4 : 1;
}

/* Open descriptors: entries in /proc/self/fd (the directory's own included). */
static inline int test_count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	if (!d)
		return -1;
	while ((e = readdir(d)))
		n += e->d_name[0] != '.';
	closedir(d);
	return n;
}

/*
 * @n, or fewer under ThreadSanitizer, for tests that keep many fibers alive
 * at once: TSan gives every fiber a context that counts as a thread, and
 * supports 8128 of them in all.
 */
static inline int test_max_fibers(int n)
{
	return IOU_TEST_TSAN && n > 4000 ? 4000 : n;
}

#define TEST_SKIP 77

/* The process's memory mappings (lines of /proc/self/maps), or -1. */
static inline int test_count_maps(void)
{
	FILE *fp = fopen("/proc/self/maps", "r");
	int n = 0, c;

	if (!fp)
		return -1;
	while ((c = fgetc(fp)) != EOF)
		n += c == '\n';
	fclose(fp);
	return n;
}

struct test_case {
	const char *name;
	int (*fn)(void); /* 0 pass, 1 fail, TEST_SKIP skip */
};

#define TEST_FAIL_AT(fmt, ...)                                                                \
	do {                                                                                  \
		fprintf(stderr, "  %s:%d: " fmt "\n", __FILE__, __LINE__, __VA_ARGS__);     \
		return 1;                                                                     \
	} while (0)

#define ASSERT_TRUE(c)                                                                        \
	do {                                                                                  \
		if (!(c))                                                                     \
			TEST_FAIL_AT("ASSERT_TRUE(%s) failed", #c);                           \
	} while (0)

#define ASSERT_CMP(a, op, b)                                                                  \
	do {                                                                                  \
		long long a_ = (long long)(a), b_ = (long long)(b);                           \
		if (!(a_ op b_))                                                              \
			TEST_FAIL_AT("ASSERT(%s %s %s): %lld vs %lld", #a, #op, #b, a_, b_);  \
	} while (0)

#define ASSERT_EQ(a, b) ASSERT_CMP(a, ==, b)
#define ASSERT_NE(a, b) ASSERT_CMP(a, !=, b)
#define ASSERT_LT(a, b) ASSERT_CMP(a, <, b)
#define ASSERT_LE(a, b) ASSERT_CMP(a, <=, b)
#define ASSERT_GT(a, b) ASSERT_CMP(a, >, b)
#define ASSERT_GE(a, b) ASSERT_CMP(a, >=, b)

#define ASSERT_PTR_EQ(a, b)                                                                   \
	do {                                                                                  \
		const void *a_ = (a), *b_ = (b);                                              \
		if (a_ != b_)                                                                 \
			TEST_FAIL_AT("ASSERT_PTR_EQ(%s, %s): %p vs %p", #a, #b, a_, b_);      \
	} while (0)

#define ASSERT_STREQ(a, b)                                                                    \
	do {                                                                                  \
		const char *a_ = (a), *b_ = (b);                                              \
		if (!a_ || !b_ || strcmp(a_, b_))                                             \
			TEST_FAIL_AT("ASSERT_STREQ(%s, %s): \"%s\" vs \"%s\"", #a, #b,        \
				     a_ ? a_ : "(null)", b_ ? b_ : "(null)");                 \
	} while (0)

/* For use inside fibers, which cannot return the failure: record and bail. */
static int test_fiber_failures;
#define FIBER_CHECK(c)                                                                        \
	do {                                                                                  \
		if (!(c)) {                                                                   \
			fprintf(stderr, "  %s:%d: FIBER_CHECK(%s) failed\n", __FILE__,        \
				__LINE__, #c);                                                \
			test_fiber_failures++;                                                \
		}                                                                             \
	} while (0)
#define ASSERT_NO_FIBER_FAILURES() ASSERT_EQ(test_fiber_failures, 0)

static inline int test_run(const struct test_case *tests, size_t n, int argc, char **argv)
{
	size_t i;
	int failed = 0, run = 0, skipped = 0;

	printf("1..%zu\n", n);
	for (i = 0; i < n; i++) {
		int rc;

		if (argc > 1 && strcmp(argv[1], tests[i].name)) {
			printf("ok %zu - %s # SKIP not selected\n", i + 1, tests[i].name);
			continue;
		}
		fflush(stdout);
		test_fiber_failures = 0;
		rc = tests[i].fn();
		run++;
		if (rc == TEST_SKIP) {
			printf("ok %zu - %s # SKIP\n", i + 1, tests[i].name);
			skipped++;
		} else if (rc) {
			printf("not ok %zu - %s\n", i + 1, tests[i].name);
			failed++;
		} else {
			printf("ok %zu - %s\n", i + 1, tests[i].name);
		}
		fflush(stdout);
	}
	if (failed)
		fprintf(stderr, "%d of %d tests failed\n", failed, run);
	if (!failed && run > 0 && skipped == run)
		return TEST_SKIP;
	return failed ? 1 : 0;
}

#define TEST_MAIN(...)                                                                        \
	int main(int argc, char **argv)                                                       \
	{                                                                                     \
		static const struct test_case tests_[] = { __VA_ARGS__ };                     \
		return test_run(tests_, sizeof(tests_) / sizeof(tests_[0]), argc, argv);      \
	}
#define T(fn) { #fn, fn }

#endif
