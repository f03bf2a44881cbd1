/* SPDX-License-Identifier: MIT */
/*
 * An outside user of the installed libioucontext-dns, built by
 * tests/install/run.sh through pkg-config "ioucontext-dns": resolves a
 * numeric address (no server needed) and names a DNS error code.
 */
#define _GNU_SOURCE
#include <ioucontext/dns.h>
#include <ioucontext/ioucontext.h>

#include <netdb.h>
#include <stdio.h>
#include <string.h>

int main(void)
{
	struct reactor *r = reactor_get();
	struct addrinfo *ai = NULL;
	int ret;

	if (!r)
		return 1;
	ret = iou_dns_lookup(r, "127.0.0.1", "80", NULL, &ai);
	if (ret < 0 || !ai || ai->ai_family != AF_INET) {
		fprintf(stderr, "lookup of 127.0.0.1: %s\n", iou_strerror(ret));
		return 1;
	}
	iou_dns_freeaddrinfo(ai);
	printf("%s\n", iou_strerror(IOU_EDNS_NONAME));
	return strcmp(iou_strerror(IOU_EDNS_NONAME), "No such name") != 0;
}
