/* SPDX-License-Identifier: MIT */
/*
 * Clock tests: iou_now() is CLOCK_MONOTONIC in nanoseconds and never goes
 * back; iou_deadline_after() adds and saturates at both ends.
 */
#define _GNU_SOURCE
#include <time.h>

#include <ioucontext/ioucontext.h>

#include "harness.h"

static int test_now_is_monotonic_ns(void)
{
	struct timespec ts;
	int64_t a, b, c;

	a = iou_now();
	clock_gettime(CLOCK_MONOTONIC, &ts);
	b = (int64_t)ts.tv_sec * IOU_SEC + ts.tv_nsec;
	c = iou_now();
	ASSERT_LE(a, b);
	ASSERT_LE(b, c);
	for (int i = 0; i < 1000; i++) {
		int64_t d = iou_now();

		ASSERT_GE(d, c);
		c = d;
	}
	return 0;
}

static int test_deadline_after_saturates(void)
{
	int64_t now = iou_now();
	int64_t d = iou_deadline_after(5 * IOU_SEC);

	ASSERT_GE(d, now + 5 * IOU_SEC);
	ASSERT_LT(d, now + 6 * IOU_SEC);
	ASSERT_EQ(iou_deadline_after(INT64_MAX), IOU_DEADLINE_NEVER);
	ASSERT_EQ(iou_deadline_after(INT64_MAX - 1), IOU_DEADLINE_NEVER);
	ASSERT_LT(iou_deadline_after(INT64_MIN), 0);
	ASSERT_LT(iou_deadline_after(-IOU_SEC), iou_now());
	ASSERT_LT(IOU_DEADLINE_NOW, iou_now());
	return 0;
}

TEST_MAIN(T(test_now_is_monotonic_ns), T(test_deadline_after_saturates))
