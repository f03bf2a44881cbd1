/* SPDX-License-Identifier: MIT */
/* iou_tls's parse_args() for fuzz-args.c (args.h). */
#define IOU_EXAMPLE_NO_MAIN
#pragma GCC diagnostic ignored "-Wunused-function"
#include "../examples/iou_tls.c"

#include "args.h"
#include "fuzz.h"

int fuzz_args_iou_tls(int argc, char **argv)
{
	static struct program prog;
	struct args a = { .timeout = DEFAULT_TIMEOUT };
	unsigned long port;
	int ret;

	memset(&prog, 0, sizeof(prog));
	prog.fd = -1;
	prog.sigfd = -1;
	ret = parse_args(argc, argv, &prog, &a);
	FUZZ_CHECK(a.nargs <= MAX_ALPN && a.nalpn <= MAX_ALPN, "iou_tls: %u --alpn, %u protocols",
		   a.nargs, a.nalpn);
	for (unsigned i = 0; i < a.nalpn; i++)
		FUZZ_CHECK(a.alpn[i] && *a.alpn[i] && strlen(a.alpn[i]) <= 255,
			   "iou_tls: ALPN protocol %u", i);
	FUZZ_CHECK(!a.alpn[a.nalpn], "iou_tls: ALPN list not terminated");
	if (ret != ARGS_RUN) {
		FUZZ_CHECK(FUZZ_STATUS_OK(ret), "iou_tls: status %d", ret);
		free_args(&a);
		return ret;
	}
	FUZZ_CHECK(prog.host[0] && strnlen(prog.host, sizeof(prog.host)) < sizeof(prog.host),
		   "iou_tls: host");
	FUZZ_CHECK(!strchr(prog.host, '/') && !strchr(prog.host, ' '), "iou_tls: host '%s'",
		   prog.host);
	FUZZ_CHECK(parse_uint(prog.port, 65535, &port) == 0 && port >= 1, "iou_tls: port '%s'",
		   prog.port);
	FUZZ_CHECK(prog.servername && *prog.servername && !ip_literal(prog.servername),
		   "iou_tls: server name");
	FUZZ_CHECK(strnlen(prog.label, sizeof(prog.label)) < sizeof(prog.label), "iou_tls: label");
	FUZZ_CHECK(!a.certfile == !a.keyfile, "iou_tls: --cert without --key");
	free_args(&a);
	return ret;
}
