/* SPDX-License-Identifier: MIT */
/* iou_dns's parse_args() for fuzz-args.c (args.h). */
#define IOU_EXAMPLE_NO_MAIN
#pragma GCC diagnostic ignored "-Wunused-function"
#include "../examples/iou_dns.c"

#include "args.h"
#include "fuzz.h"

int fuzz_args_iou_dns(int argc, char **argv)
{
	static char servers[SERVERS_CAP];
	struct program p = { .family = AF_UNSPEC, .sigfd = -1 };
	double timeout = DEFAULT_TIMEOUT;
	int ret;

	memset(servers, 0, sizeof(servers));
	ret = parse_args(argc, argv, &p, servers, &timeout);
	FUZZ_CHECK(strnlen(servers, SERVERS_CAP) < SERVERS_CAP, "iou_dns: server list overflow");
	if (ret != ARGS_RUN) {
		FUZZ_CHECK(FUZZ_STATUS_OK(ret), "iou_dns: status %d", ret);
		return ret;
	}
	FUZZ_CHECK(p.nslots >= 1 && p.nslots <= MAX_WORKERS, "iou_dns: %u slots", p.nslots);
	FUZZ_CHECK(!p.names || (p.nnames >= 1 && p.nnames < (unsigned)argc), "iou_dns: %u names",
		   p.nnames);
	FUZZ_CHECK(p.family == AF_UNSPEC || p.family == AF_INET || p.family == AF_INET6,
		   "iou_dns: family %d", p.family);
	FUZZ_CHECK(timeout >= 0 && timeout <= EXAMPLE_MAX_SECONDS && p.timeout_ns >= 0,
		   "iou_dns: timeout %g", timeout);
	/* What the resolver is given must be what it takes. */
	if (*servers) {
		struct iou_dns_options o;
		struct reactor *r = reactor_get();

		FUZZ_CHECK(r, "no reactor");
		iou_dns_options_init(&o);
		o.servers = servers;
		o.hosts_file = false;
		ret = iou_dns_configure(r, &o);
		FUZZ_CHECK(ret == 0, "iou_dns: the resolver refuses --server list '%s': %s",
			   servers, iou_strerror(ret));
		iou_dns_close(r);
		ret = ARGS_RUN;
	}
	return ret;
}
