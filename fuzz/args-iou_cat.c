/* SPDX-License-Identifier: MIT */
/* iou_cat's parse_args() for fuzz-args.c (args.h). */
#define IOU_EXAMPLE_NO_MAIN
#pragma GCC diagnostic ignored "-Wunused-function"
#include "../examples/iou_cat.c"

#include "args.h"
#include "fuzz.h"

int fuzz_args_iou_cat(int argc, char **argv)
{
	struct cat c = { .limit = NO_LIMIT, .out = STDOUT_FILENO, .pipe = { -1, -1 } };
	int ret = parse_args(argc, argv, &c);

	if (ret != ARGS_RUN) {
		FUZZ_CHECK(FUZZ_STATUS_OK(ret), "iou_cat: status %d", ret);
		return ret;
	}
	FUZZ_CHECK(c.nnames >= 0 && c.nnames < argc, "iou_cat: %d names of %d", c.nnames, argc);
	for (int i = 0; i < c.nnames; i++)
		FUZZ_CHECK(c.names[i], "iou_cat: name %d is NULL", i);
	return ret;
}
