/* SPDX-License-Identifier: MIT */
/*
 * Fuzz harness: the TLS server (libioucontext-tls, through its C layer:
 * iou_tls_server_new() and the handshake, read and write calls over a real
 * socket in a reactor) fed arbitrary bytes as the client's ciphertext.
 *
 * Input: one flags byte, then the client's bytes.  Flags: bits 0-2 the
 * piece size the bytes are sent in (fuzz_chunks), bit 3 close the peer's
 * end at the end instead of shutting its sending half, bits 4-5 the way
 * into the handshake (enum fuzz_tls_entry), bits 6-7 the server
 * configuration: RSA; EC with ALPN; RSA requiring a client certificate;
 * EC asking for an optional one, with ALPN and no resumption.  The
 * certificates are tests/fixtures/tls.
 *
 * Random values are the same for every input (detrand.h), so that a
 * client's bytes recorded by make-seeds.sh against this very harness
 * (IOU_FUZZ_TLS_RECORD, peer.h) complete the handshake again, and the
 * fuzzer reaches application data, close_notify and the echo.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <string.h>

#include "detrand.h"
#include "fuzz.h"
#include "peer.h"
#include "tls-side.h"

#define FIXTURE(name) IOU_FUZZ_FIXTURES "/" name

static struct reactor *reactor;
static struct iou_tls_config *configs[4];

static void setup(void)
{
	static const char *const alpn[] = { "h2", "http/1.1", NULL };
	char why[IOU_TLS_REASON_MAX];

	signal(SIGPIPE, SIG_IGN);
	reactor = reactor_get();
	FUZZ_CHECK(reactor, "no reactor");
	for (int i = 0; i < 4; i++) {
		struct iou_tls_server_options o;
		int ret;

		iou_tls_server_options_init(&o);
		o.certfile = i & 1 ? FIXTURE("server-ec.pem") : FIXTURE("server-rsa.pem");
		o.keyfile = i & 1 ? FIXTURE("server-ec.key") : FIXTURE("server-rsa.key");
		o.alpn = i & 1 ? alpn : NULL;
		if (i >= 2)
			o.client_cafile = FIXTURE("ca.pem");
		o.client_cert_optional = i == 3;
		o.no_resumption = i == 3;
		ret = iou_tls_server_config_new(&o, &configs[i], why, sizeof(why));
		FUZZ_CHECK(ret == 0, "server configuration %d: %s", i, why);
	}
}

/* One input's connection. */
struct run {
	const struct iou_tls_config *cfg;
	enum fuzz_tls_entry entry;
};

static void serve(struct reactor *r, int fd, void *arg)
{
	struct run *run = arg;
	struct iou_tls *t;
	int ret;

	fuzz_detrand_reset();
	ret = iou_tls_server_new(r, run->cfg, fd, &t);

	FUZZ_CHECK(ret == 0, "iou_tls_server_new: %s", iou_strerror(ret));
	fuzz_tls_side(t, run->entry);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct run run;
	uint8_t flags;

	if (!reactor)
		setup();
	if (size < 1)
		return 0;
	flags = data[0];
	run.cfg = configs[flags >> 6];
	run.entry = (enum fuzz_tls_entry)((flags >> 4) & 3);
	fuzz_peer_record(reactor, true, serve, &run);
	fuzz_peer_run(reactor, data + 1, size - 1, fuzz_chunks[flags & 7], flags & 8, serve, &run);
	return 0;
}
