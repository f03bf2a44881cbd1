/* SPDX-License-Identifier: MIT */
/*
 * The TLS harnesses' connection driver and outcome checks (tls-side.h).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <string.h>

#include "fuzz.h"
#include "tls-side.h"

/* What ENTRY_WRITE sends first. */
static const char request[] = "GET / HTTP/1.0\r\n\r\n";

/* An error iou_strerror() names, and not a stall. */
static void check_error(const char *what, long rc)
{
	const char *name;

	FUZZ_CHECK(rc < 0, "%s: %ld is not an error", what, rc);
	FUZZ_CHECK(rc != -ETIMEDOUT, "%s stalled until the deadline", what);
	FUZZ_CHECK(rc >= INT32_MIN, "%s: %ld", what, rc);
	name = iou_strerror((int)rc);
	FUZZ_CHECK(name && strncmp(name, "Unknown error", 13) != 0, "%s: unnamed error %ld", what,
		   rc);
}

/* A failed handshake: the failure is sticky and described. */
static void failed(struct iou_tls *t, long rc)
{
	char buf[64];
	long again;

	check_error("the handshake", rc);
	again = iou_tls_handshake(t);
	check_error("a second handshake", again);
	if (IOU_IS_ETLS((int)rc))
		FUZZ_CHECK(again == rc, "handshake failed with %ld, then with %ld", rc, again);
	again = (long)iou_tls_read(t, buf, sizeof(buf));
	check_error("a read after the failure", again);
	again = (long)iou_tls_write(t, "x", 1);
	check_error("a write after the failure", again);
}

/*
 * An established session: echo what the peer sends until it ends the
 * stream.  @n is what a first read returned (@have), if there was one.
 */
static void session(struct iou_tls *t, char *buf, size_t size, long n, bool have)
{
	int version = iou_tls_version(t);

	FUZZ_CHECK(version == 0x0303 || version == 0x0304, "version %#x", version);
	FUZZ_CHECK(*iou_tls_cipher_suite(t), "no cipher suite");
	for (;;) {
		long w;

		if (!have)
			n = (long)iou_tls_read(t, buf, size);
		have = false;
		if (n == 0) {
			/* The peer's close_notify: the end, for good. */
			FUZZ_CHECK(iou_tls_read(t, buf, size) == 0, "a read after the end");
			w = iou_tls_shutdown(t);
			if (w < 0)
				check_error("shutdown", w);
			return;
		}
		if (n < 0) {
			check_error("a read", n);
			return;
		}
		FUZZ_CHECK((size_t)n <= size, "read %ld of %zu bytes", n, size);
		w = (long)iou_tls_write(t, buf, (size_t)n);
		if (w < 0) {
			check_error("a write", w);
			return;
		}
		FUZZ_CHECK(w == n, "wrote %ld of %ld bytes", w, n);
	}
}

void fuzz_tls_side(struct iou_tls *t, enum fuzz_tls_entry entry)
{
	char buf[4096];
	const char *reason;
	long rc = 0;

	switch (entry) {
	case ENTRY_HANDSHAKE:
		rc = iou_tls_handshake(t);
		break;
	case ENTRY_READ:
		rc = (long)iou_tls_read(t, buf, sizeof(buf));
		break;
	case ENTRY_WRITE:
		rc = (long)iou_tls_write(t, request, sizeof(request) - 1);
		FUZZ_CHECK(rc < 0 || rc == (long)sizeof(request) - 1, "wrote %ld bytes", rc);
		break;
	case ENTRY_FLUSH:
		rc = iou_tls_flush(t);
		FUZZ_CHECK(rc == 0 || rc == -EPIPE || rc == -ECONNRESET, "flush: %ld", rc);
		rc = iou_tls_handshake(t);
		break;
	}
	if (rc < 0)
		failed(t, rc);
	else
		session(t, buf, sizeof(buf), rc, entry == ENTRY_READ);

	reason = iou_tls_reason(t);
	FUZZ_CHECK(reason && strnlen(reason, IOU_TLS_REASON_MAX) < IOU_TLS_REASON_MAX,
		   "reason not terminated");
	FUZZ_CHECK(strlen(iou_tls_cipher_suite(t)) < 64, "cipher suite name");
	(void)iou_tls_alpn(t);
	rc = iou_tls_peer_subject(t, buf, sizeof(buf));
	FUZZ_CHECK(rc < 0 || strnlen(buf, sizeof(buf)) < sizeof(buf), "subject not terminated");
	iou_tls_close(t);
}
