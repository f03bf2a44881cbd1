/* SPDX-License-Identifier: MIT */
/*
 * The library's clock: CLOCK_MONOTONIC in signed nanoseconds, and deadline
 * arithmetic that saturates instead of overflowing.
 */
#include <time.h>

#include "core.h"

IOU_API int64_t iou_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * IOU_SEC + ts.tv_nsec;
}

IOU_API int64_t iou_deadline_after(int64_t ns)
{
	int64_t now = iou_now();

	if (ns > 0 && now > IOU_DEADLINE_NEVER - ns)
		return IOU_DEADLINE_NEVER;
	if (ns < 0 && now < INT64_MIN - ns)
		return INT64_MIN;
	return now + ns;
}
