/* SPDX-License-Identifier: MIT */
/*
 * An outside user of the installed libioucontext-tls, built by
 * tests/install/run.sh through pkg-config "ioucontext-tls" and CMake:
 * makes a client configuration from the CA file named in argv[1] and a
 * connection over a socketpair (no peer needed), and names a TLS error.
 */
#define _GNU_SOURCE
#include <ioucontext/ioucontext.h>
#include <ioucontext/tls.h>

#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	struct iou_tls_client_options o;
	struct iou_tls_config *c = NULL;
	struct iou_tls *t = NULL;
	char why[IOU_TLS_REASON_MAX];
	int sv[2], ret;

	if (argc != 2 || socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
		return 1;
	iou_tls_client_options_init(&o);
	o.cafile = argv[1];
	ret = iou_tls_client_config_new(&o, &c, why, sizeof(why));
	if (ret == 0)
		ret = iou_tls_client_new(reactor_get(), c, sv[0], "localhost", &t);
	if (ret < 0) {
		fprintf(stderr, "%s: %s\n", iou_strerror(ret), why);
		return 1;
	}
	iou_tls_close(t);
	iou_tls_config_free(c);
	close(sv[0]);
	close(sv[1]);
	printf("%s\n", iou_strerror(IOU_ETLS_CERT_EXPIRED));
	return strcmp(iou_strerror(IOU_ETLS_CERT_EXPIRED), "Certificate expired") != 0;
}
