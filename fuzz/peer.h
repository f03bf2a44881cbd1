/* SPDX-License-Identifier: MIT */
/*
 * The byte-stream peer of the TLS harnesses: runs the code under test in a
 * fiber over one end of a fresh AF_UNIX socketpair while the harness, as
 * the peer on the other end, writes the fuzz input into it in pieces, each
 * once the previous one has been received (so that records and messages
 * arrive cut where the input says), discards whatever the code under test
 * sends, and then shuts or closes its end.
 */
#ifndef IOU_FUZZ_PEER_H
#define IOU_FUZZ_PEER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ioucontext/ioucontext.h>

/*
 * Deadline of the code under test, per input: far beyond what any input
 * needs even under valgrind, so reaching it means a stall (a bug).
 */
#define FUZZ_STALL (10 * IOU_SEC)

/** The code under test: runs in a fiber (deadline FUZZ_STALL set) on socket @fd. */
typedef void fuzz_side_fn(struct reactor *r, int fd, void *arg);

/**
 * fuzz_peer_run() - run @fn(@r, fd, @arg) against a peer that sends @data.
 * @chunk:     bytes per piece written (0: all at once).
 * @close_end: after the last piece close the peer's end (later sends of
 *             the code under test fail) instead of shutting its sending
 *             half (the code under test sees the end of the stream).
 *
 * Call outside any fiber; returns once @fn has returned, both ends closed.
 * Aborts (FUZZ_FAIL) if the socketpair or the fiber cannot be made.
 */
void fuzz_peer_run(struct reactor *r, const uint8_t *data, size_t size, size_t chunk,
		   bool close_end, fuzz_side_fn *fn, void *arg);

/**
 * fuzz_peer_record() - with IOU_FUZZ_TLS_RECORD=PORT in the environment,
 * run @fn(@r, fd, @arg) once over a TCP connection with a real peer on
 * 127.0.0.1:PORT (@listen: accepted there; else connected to it), then
 * exit(0).  How make-seeds.sh records sessions (through a socat relay that
 * dumps the peer's bytes) that the harness replays in full.  Without the
 * variable, returns at once.
 */
void fuzz_peer_record(struct reactor *r, bool listen, fuzz_side_fn *fn, void *arg);

#endif
