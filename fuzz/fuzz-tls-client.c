/* SPDX-License-Identifier: MIT */
/*
 * Fuzz harness: the TLS client (libioucontext-tls, through its C layer:
 * iou_tls_client_new() for "localhost" and the handshake, read and write
 * calls over a real socket in a reactor) fed arbitrary bytes as the
 * server's ciphertext.  The client verifies against the test CA of
 * tests/fixtures/tls, so a TLS 1.2 server flight's certificates (sent in
 * clear) are parsed and verified as a real server's would be.
 *
 * Input: one flags byte, then the server's bytes.  Flags: bits 0-2 the
 * piece size the bytes are sent in (fuzz_chunks), bit 3 close the peer's
 * end at the end instead of shutting its sending half, bits 4-5 the way
 * into the handshake (enum fuzz_tls_entry), bits 6-7 the client
 * configuration: the test CA; with ALPN; with a client certificate; no
 * verification at all (iou_tls_client_config_new_insecure_no_verify()),
 * with ALPN.  None resumes sessions: each input starts from scratch.
 *
 * Random values are the same for every input (detrand.h), so that a
 * server's bytes recorded by make-seeds.sh against this very harness
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
		struct iou_tls_client_options o;
		int ret;

		iou_tls_client_options_init(&o);
		o.cafile = FIXTURE("ca.pem");
		o.alpn = i & 1 ? alpn : NULL;
		if (i == 2) {
			o.certfile = FIXTURE("client.pem");
			o.keyfile = FIXTURE("client.key");
		}
		/* A session kept from one input would change the next one's hello. */
		o.no_resumption = true;
		if (i == 3)
			ret = iou_tls_client_config_new_insecure_no_verify(&o, &configs[i], why,
									   sizeof(why));
		else
			ret = iou_tls_client_config_new(&o, &configs[i], why, sizeof(why));
		FUZZ_CHECK(ret == 0, "client configuration %d: %s", i, why);
	}
}

/* One input's connection. */
struct run {
	const struct iou_tls_config *cfg;
	enum fuzz_tls_entry entry;
};

static void connect_side(struct reactor *r, int fd, void *arg)
{
	struct run *run = arg;
	struct iou_tls *t;
	int ret;

	fuzz_detrand_reset();
	ret = iou_tls_client_new(r, run->cfg, fd, "localhost", &t);

	FUZZ_CHECK(ret == 0, "iou_tls_client_new: %s", iou_strerror(ret));
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
	fuzz_peer_record(reactor, false, connect_side, &run);
	fuzz_peer_run(reactor, data + 1, size - 1, fuzz_chunks[flags & 7], flags & 8, connect_side,
		      &run);
	return 0;
}
