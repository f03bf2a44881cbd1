/* SPDX-License-Identifier: MIT */
/* iou_port7's parse_args() for fuzz-args.c (args.h). */
#define IOU_EXAMPLE_NO_MAIN
#pragma GCC diagnostic ignored "-Wunused-function"
#include "../examples/iou_port7.c"

#include "args.h"
#include "fuzz.h"

int fuzz_args_iou_port7(int argc, char **argv)
{
	static struct workers ws;
	int ret;

	memset(&ws, 0, sizeof(ws));
	ws.proto = "tcp+udp";
	ws.port = DEFAULT_PORT;
	ws.n = 1;
	ret = parse_args(argc, argv, &ws);
	if (ret != ARGS_RUN) {
		FUZZ_CHECK(FUZZ_STATUS_OK(ret), "iou_port7: status %d", ret);
		return ret;
	}
	FUZZ_CHECK(ws.n >= 1 && ws.n <= MAX_THREADS, "iou_port7: %u threads", ws.n);
	FUZZ_CHECK(ws.addr.ss_family == AF_INET || ws.addr.ss_family == AF_INET6,
		   "iou_port7: family %d", ws.addr.ss_family);
	FUZZ_CHECK(ws.addrlen > 0 && ws.addrlen <= sizeof(ws.addr), "iou_port7: addrlen %u",
		   (unsigned)ws.addrlen);
	FUZZ_CHECK(strnlen(ws.host, sizeof(ws.host)) < sizeof(ws.host), "iou_port7: host");
	return ret;
}
