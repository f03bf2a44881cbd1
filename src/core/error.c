/* SPDX-License-Identifier: MIT */
/*
 * iou_strerror(): names for -errno values and for the reserved ranges of
 * the add-on libraries (<ioucontext/error.h>).  Kept in the core so that a
 * program can print any result without linking the add-ons.
 */
#include <stdio.h>
#include <string.h>

#include <ioucontext/error.h>

#include "core.h"

static const char *const dns[] = {
	[1] = "No such name",
	[2] = "No data of the requested type",
	[3] = "Server failure",
	[4] = "Query refused by the server",
	[5] = "No DNS server answered in time",
	[6] = "Malformed response from the DNS server",
	[7] = "Lookup cancelled: the resolver was closed",
	[8] = "The DNS server could not parse the query",
	[9] = "Query not implemented by the DNS server",
	[10] = "Invalid domain name",
	[11] = "Could not contact any DNS server",
	[12] = "Unknown service",
	[13] = "Bad resolver configuration",
};

static const char *const tls[] = {
	[1] = "TLS failure",
	[2] = "Bad TLS configuration",
	[3] = "Certificate issuer unknown (not a trusted CA)",
	[4] = "Certificate not valid for the server name",
	[5] = "Certificate expired",
	[6] = "Certificate not valid yet",
	[7] = "Invalid certificate",
	[8] = "Peer sent no certificate",
	[9] = "Peer sent a fatal TLS alert",
	[10] = "TLS protocol error",
	[11] = "No TLS version or cipher suite in common",
	[12] = "No application protocol (ALPN) in common",
	[13] = "TLS connection truncated (closed without close_notify)",
	[14] = "TLS connection already shut down",
	[15] = "Unusable TLS server name",
	[16] = "Internal TLS error",
};

IOU_API const char *iou_strerror(int err)
{
	static _Thread_local char unknown[40];

	if (err == 0)
		return "Success";
	if (IOU_IS_EDNS(err)) {
		int i = -err - 10000;

		if (i < (int)(sizeof(dns) / sizeof(dns[0])) && dns[i])
			return dns[i];
	} else if (IOU_IS_ETLS(err)) {
		int i = -err - 11000;

		if (i < (int)(sizeof(tls) / sizeof(tls[0])) && tls[i])
			return tls[i];
	} else if (err < 0 && err > -4096) {
		const char *s = strerrordesc_np(-err);

		if (s)
			return s;
	}
	/* Not a known code: a per-thread buffer keeps this thread-safe. */
	snprintf(unknown, sizeof(unknown), "Unknown error %d", err);
	return unknown;
}
