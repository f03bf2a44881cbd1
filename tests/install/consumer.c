/* SPDX-License-Identifier: MIT */
/*
 * A program written as an outside user would write it, built against an
 * installed ioucontext by tests/install/run.sh: one fiber sleeps 1 ms and
 * sets a flag while main runs the reactor.  Prints the header version.
 */
#include <ioucontext/ioucontext.h>

#include <stdio.h>

static int flag;

static void *sleeper(void *arg)
{
	struct reactor *r = arg;
	int64_t start = iou_now();

	if (fiber_sleep(r, IOU_MSEC) != 0)
		return NULL;
	if (iou_now() - start >= IOU_MSEC)
		flag = 1;
	return NULL;
}

int main(void)
{
	struct reactor *r = reactor_get();
	int rc;

	if (!r) {
		fprintf(stderr, "consumer: reactor_get() failed\n");
		return 1;
	}
	rc = fiber_spawn(r, sleeper, r, NULL);
	if (rc != 0) {
		fprintf(stderr, "consumer: fiber_spawn: %d\n", rc);
		return 1;
	}
	rc = reactor_run(r);
	if (rc != 0) {
		fprintf(stderr, "consumer: reactor_run: %d\n", rc);
		return 1;
	}
	if (!flag || reactor_runnable(r)) {
		fprintf(stderr, "consumer: fiber did not sleep and finish\n");
		return 1;
	}
	rc = reactor_destroy(r);
	if (rc != 0) {
		fprintf(stderr, "consumer: reactor_destroy: %d\n", rc);
		return 1;
	}
	printf("ioucontext %s\n", IOU_VERSION_STRING);
	return 0;
}
