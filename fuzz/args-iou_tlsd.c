/* SPDX-License-Identifier: MIT */
/* iou_tlsd's parse_args() for fuzz-args.c (args.h). */
#define IOU_EXAMPLE_NO_MAIN
#pragma GCC diagnostic ignored "-Wunused-function"
#include "../examples/iou_tlsd.c"

#include "args.h"
#include "fuzz.h"

int fuzz_args_iou_tlsd(int argc, char **argv)
{
	static struct server srv;
	struct args a = { .nargs = 0 };
	int ret;

	memset(&srv, 0, sizeof(srv));
	srv.ws.proto = "tls";
	ret = parse_args(argc, argv, &srv, &a);
	FUZZ_CHECK(a.nargs <= MAX_ALPN && a.nalpn <= MAX_ALPN, "iou_tlsd: %u --alpn, %u protocols",
		   a.nargs, a.nalpn);
	for (unsigned i = 0; i < a.nalpn; i++)
		FUZZ_CHECK(a.alpn[i] && *a.alpn[i] && strlen(a.alpn[i]) <= 255,
			   "iou_tlsd: ALPN protocol %u", i);
	FUZZ_CHECK(!a.alpn[a.nalpn], "iou_tlsd: ALPN list not terminated");
	if (ret != ARGS_RUN) {
		FUZZ_CHECK(FUZZ_STATUS_OK(ret), "iou_tlsd: status %d", ret);
		free_args(&a);
		return ret;
	}
	FUZZ_CHECK(a.certfile && a.keyfile, "iou_tlsd: no certificate or key");
	FUZZ_CHECK(srv.ws.n >= 1 && srv.ws.n <= MAX_THREADS, "iou_tlsd: %u threads", srv.ws.n);
	FUZZ_CHECK(srv.max_conns >= 1 && srv.max_conns <= MAX_MAX_CONNS, "iou_tlsd: max conns %lu",
		   srv.max_conns);
	FUZZ_CHECK(!(srv.quiet && srv.verbose), "iou_tlsd: -q and -v");
	FUZZ_CHECK(srv.handshake_ns >= 0 && srv.idle_ns >= 0, "iou_tlsd: timeouts");
	FUZZ_CHECK(srv.ws.addr.ss_family == AF_INET || srv.ws.addr.ss_family == AF_INET6,
		   "iou_tlsd: family %d", srv.ws.addr.ss_family);
	free_args(&a);
	return ret;
}
