/* SPDX-License-Identifier: MIT */
/* iou_timers's parse_args() for fuzz-args.c (args.h). */
#define IOU_EXAMPLE_NO_MAIN
#pragma GCC diagnostic ignored "-Wunused-function"
#include "../examples/iou_timers.c"

#include "args.h"
#include "fuzz.h"

int fuzz_args_iou_timers(int argc, char **argv)
{
	struct program p = { .sigfd = -1 };
	int ret = parse_args(argc, argv, &p);

	if (ret != ARGS_RUN) {
		FUZZ_CHECK(FUZZ_STATUS_OK(ret), "iou_timers: status %d", ret);
		FUZZ_CHECK(!p.timers, "iou_timers: timers left allocated on status %d", ret);
		return ret;
	}
	FUZZ_CHECK(p.timers && p.ntimers >= 1 && p.ntimers < (unsigned)argc,
		   "iou_timers: %u timers", p.ntimers);
	FUZZ_CHECK(p.count <= INT64_MAX, "iou_timers: count");
	for (unsigned i = 0; i < p.ntimers; i++) {
		const struct timer *t = &p.timers[i];

		FUZZ_CHECK(t->seconds >= MIN_PERIOD && t->seconds <= MAX_PERIOD &&
				   t->period >= 1000,
			   "iou_timers: period %g (%" PRId64 " ns)", t->seconds, t->period);
	}
	free(p.timers);
	return ret;
}
