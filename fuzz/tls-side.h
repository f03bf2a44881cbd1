/* SPDX-License-Identifier: MIT */
/*
 * What the TLS harnesses do with their connection, whichever side it is:
 * one of four ways into the handshake (iou_tls_handshake(), a first read,
 * a first write, a flush then the handshake); then, if the handshake
 * completed (a recorded session replayed with the same random values,
 * detrand.h), echo what the peer sends until it ends the stream, and
 * shut down.  Checks, beyond the sanitizers': no call stalls until the
 * deadline; every error is one iou_strerror() names; a failed handshake
 * stays failed (the same TLS error again); a read after close_notify
 * returns 0 again; a reason is terminated; an established session has a
 * version and a suite; a write returns the whole length or an error.
 */
#ifndef IOU_FUZZ_TLS_SIDE_H
#define IOU_FUZZ_TLS_SIDE_H

#include <ioucontext/ioucontext.h>
#include <ioucontext/tls.h>

/** Ways into the handshake, chosen by bits 4-5 of the flags byte. */
enum fuzz_tls_entry {
	ENTRY_HANDSHAKE,
	ENTRY_READ,
	ENTRY_WRITE, /* writes an HTTP/1.0 request, which openssl s_server -www answers */
	ENTRY_FLUSH,
};

/** Run connection @t the @entry way, check the outcome, then close @t. */
void fuzz_tls_side(struct iou_tls *t, enum fuzz_tls_entry entry);

#endif
