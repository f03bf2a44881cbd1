/* SPDX-License-Identifier: MIT */
/*
 * Deterministic randomness for the TLS harnesses.  Their programs are
 * linked with -Wl,--wrap=syscall, which sends the rustls shim's calls of
 * syscall(2) (ring 0.16 draws every random byte with
 * syscall(SYS_getrandom, ...)) here: getrandom is served from a fixed
 * stream that each input restarts, everything else goes to the real
 * syscall().  So a given input meets the same client or server random, the
 * same key shares and the same signatures every time it runs, and a
 * recorded session against a real peer (make-seeds.sh) replays to a
 * completed handshake, which lets the fuzzer reach the record layer, the
 * reading and writing of application data and the close.
 *
 * For fuzzing only: nothing of it is in the libraries.
 */
#ifndef IOU_FUZZ_DETRAND_H
#define IOU_FUZZ_DETRAND_H

/** Restart the random stream (at the start of each input). */
void fuzz_detrand_reset(void);

/** How many getrandom calls were served since the program started. */
unsigned long fuzz_detrand_calls(void);

#endif
